//! `lathe kernel verify|run`: a kernel file is parsed and verified (errors as file:line:col,
//! exit 2) or run in the simulator on safetensors buffers, writing what it writes; a simulator
//! error is one located line with exit code 1.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lathe_kernel::build::{int_imm, KernelBuilder};
use lathe_kernel::ir::{Access, Axis, BinOp, Cmp, Kernel, Space, Special, Ty};
use lathe_numerics::DType;
use lathe_tensorfile::TensorRef;

const LATHE: &str = env!("CARGO_BIN_EXE_lathe");

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lathe-kernel-cli-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("scratch");
    d
}

/// `y[i] = 2·x[i] + bias` for `i < n` (`guard: false` drops the bounds check).
fn axpb(guard: bool) -> Kernel {
    let mut b = KernelBuilder::new("axpb", 64);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let y = b.buffer("y", DType::F32, Access::Written);
    let n = b.scalar("n", Ty::U32);
    let bias = b.scalar("bias", Ty::F32);
    let tid = b.special(Special::Tid(Axis::X));
    let cta = b.special(Special::Ctaid(Axis::X));
    let ntid = b.special(Special::Ntid(Axis::X));
    let i = b.fma(Ty::U32, cta, ntid, tid);
    let body = |b: &mut KernelBuilder| {
        let wide = b.cvt(Ty::U64, Ty::U32, None, false, i);
        let off = b.bin(BinOp::Mul, Ty::U64, wide, int_imm(4));
        let px = b.bin(BinOp::Add, Ty::U64, x, off);
        let py = b.bin(BinOp::Add, Ty::U64, y, off);
        let v = b.ld1(Space::Global, Ty::F32, px, 0);
        let r = b.fma(Ty::F32, v, lathe_kernel::build::f32_imm(2.0), bias);
        b.st(Space::Global, Ty::F32, py, 0, &[r.into()]);
    };
    if guard {
        let inside = b.setp(Cmp::Lt, Ty::U32, i, n);
        b.if_then(inside, body);
    } else {
        body(&mut b);
    }
    b.finish()
}

fn write_kernel(dir: &Path, k: &Kernel) -> PathBuf {
    let p = dir.join(format!("{}.lk", k.name));
    fs::write(&p, lathe_kernel::text::print(k)).expect("write kernel");
    p
}

fn write_f32(path: &Path, name: &str, v: &[f32]) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = Vec::new();
    let t = TensorRef { name, dtype: DType::F32, shape: &[v.len()], bytes: &bytes };
    lathe_tensorfile::write(&mut out, &[t], path).expect("serialize");
    fs::write(path, out).expect("write");
}

fn lathe(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(LATHE).args(args.iter().map(|a| a.as_ref())).output().expect("run lathe")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn verify_accepts_a_kernel_and_locates_text_errors() {
    let dir = scratch("verify");
    let k = write_kernel(&dir, &axpb(true));
    let o = lathe(&[&"kernel", &"verify", &k]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = fs::read_to_string(&k).expect("read");
    let bad = dir.join("bad.lk");
    fs::write(&bad, text.replacen("fma.u32", "fma.q32", 1)).expect("write");
    let o = lathe(&[&"kernel", &"verify", &bad]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("bad.lk:") && e.contains("unknown type `q32`") && e.trim().lines().count() == 1, "{e}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn run_writes_the_buffers_the_kernel_writes() {
    let dir = scratch("run");
    let k = write_kernel(&dir, &axpb(true));
    let xs: Vec<f32> = (0..100).map(|i| i as f32 - 50.0).collect();
    write_f32(&dir.join("x.safetensors"), "x", &xs);
    let out = dir.join("out.safetensors");
    let x_arg = format!("x={}", dir.join("x.safetensors").display());
    let o = lathe(&[
        &"kernel",
        &"run",
        &k,
        &"--grid",
        &"2",
        &"--block",
        &"64",
        &"--arg",
        &x_arg,
        &"--arg",
        &"y=zeros:100",
        &"--arg",
        &"n=100",
        &"--arg",
        &"bias=0.5",
        &"--out",
        &out,
        &"--stats",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("y: f32[100]") && stdout.contains("global_sectors"), "{stdout}");
    let h = lathe_tensorfile::Header::read(&out).expect("output");
    let y: Vec<f32> =
        h.read_bytes("y").expect("y").chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(y, xs.iter().map(|v| 2.0 * v + 0.5).collect::<Vec<_>>());
    assert!(h.get("x").is_err(), "read-only buffers are not written out");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_simulator_error_is_one_located_line_with_exit_code_1() {
    let dir = scratch("oob");
    let k = write_kernel(&dir, &axpb(false));
    let out = dir.join("out.safetensors");
    let o = lathe(&[
        &"kernel",
        &"run",
        &k,
        &"--grid",
        &"2",
        &"--block",
        &"64",
        &"--arg",
        &"x=zeros:100",
        &"--arg",
        &"y=zeros:100",
        &"--arg",
        &"n=100",
        &"--arg",
        &"bias=0",
        &"--out",
        &out,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("OutOfBounds") && e.contains("CTA (1, 0, 0)") && e.contains("buffer `x`"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(!out.exists(), "no output after an error");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn bad_arguments_are_refused_in_one_line() {
    let dir = scratch("args");
    let k = write_kernel(&dir, &axpb(true));
    let out = dir.join("out.safetensors");
    for (extra, want) in [
        (vec!["--arg", "y=zeros:4", "--arg", "n=4", "--arg", "bias=0"], "no --arg for parameter `x`"),
        (vec!["--arg", "x=zeros:4", "--arg", "y=zeros:4", "--arg", "n=-4", "--arg", "bias=0"], "--arg n=-4: not a u32"),
        (vec!["--arg", "z=1"], "has no parameter `z`"),
        (vec!["--arg", "x="], "expected NAME=VALUE"),
    ] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"kernel", &"run", &k, &"--grid", &"1", &"--block", &"4", &"--out", &out];
        for e in &extra {
            args.push(e);
        }
        let o = lathe(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {e}");
        assert!(e.contains(want) && e.trim().lines().count() == 1, "{extra:?}: {e}");
    }
    let o = lathe(&[&"kernel", &"run", &k, &"--grid", &"0", &"--block", &"4", &"--out", &out]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--grid \"0\""), "{}", stderr(&o));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn shared_gives_the_launch_dynamic_shared_memory() {
    let dir = scratch("shared");
    // Each thread writes its word 64 bytes past the 64 static shared bytes and reads it back.
    let text = r#"
kernel @dynamic max_threads=32 shared=64 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  reg %r1 : u32
  reg %r2, %r3 : u64
  reg %r4 : u32
  %r0 = ld.param %p0
  %r1 = mov.special %tid.x
  %r2 = cvt.u64.u32 %r1
  %r2 = mul.u64 %r2, 4
  st.shared.u32 [%r2 + 64], %r1
  bar.warp.sync 0xffffffff
  %r4 = ld.shared.u32 [%r2 + 64]
  %r3 = add.u64 %r0, %r2
  st.global.u32 [%r3], %r4
}
"#;
    let k = dir.join("dynamic.lk");
    fs::write(&k, text).expect("kernel file");
    let out = dir.join("out.safetensors");
    let run = |extra: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"kernel", &"run", &k, &"--grid", &"1", &"--block", &"32", &"--arg", &"y=zeros:32", &"--out", &out];
        args.extend_from_slice(extra);
        lathe(&args)
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("OutOfBounds") && stderr(&o).contains("shared bytes [64, 68) of 64"), "{}", stderr(&o));
    assert!(!out.exists(), "no output after a simulator error");
    let o = run(&[&"--shared", &"128"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let h = lathe_tensorfile::Header::read(&out).expect("output");
    let y: Vec<u32> =
        h.read_bytes("y").expect("y").chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(y, (0..32).collect::<Vec<_>>());
    let _ = fs::remove_dir_all(dir);
}
