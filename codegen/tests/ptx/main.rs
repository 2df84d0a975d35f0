//! Kernel IR → PTX → CUBIN: kernels of every instruction family lowered through LLVM, held to
//! the structural check, assembled by the pinned ptxas with their `-v` reports (no spills, no
//! stack); the check itself catches tampered PTX. (One of the few test binaries that link LLVM.)

// The pointwise emitter's tests share this binary: each test binary that links LLVM costs CI a
// link of over 100 MB.
mod pointwise;

use lathe_codegen::ptx::{self, check};
use lathe_codegen::{ptxas, CodegenError};
use lathe_kernel::ir::Kernel;
use lathe_kernel::target::{Sm, Target};
use lathe_kernel::text::parse;

fn kernel(text: &str) -> Kernel {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// `c[i] = a[i] + b[i]` for `i < n`, read-only inputs through `.nc`.
const VECTOR_ADD: &str = r#"
kernel @vector_add max_threads=256 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "a"
  param %p1 : buffer f32 align=16 readonly "b"
  param %p2 : buffer f32 align=16 written "c"
  param %p3 : scalar u32 "n"
  reg %r0, %r1, %r2 : u64
  reg %r3, %r4, %r5, %r6, %r7 : u32
  reg %r8 : pred
  reg %r9, %r10, %r11 : u64
  reg %r12, %r13 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = ld.param %p2
  %r3 = ld.param %p3
  %r4 = mov.special %tid.x
  %r5 = mov.special %ctaid.x
  %r6 = mov.special %ntid.x
  %r7 = fma.u32 %r5, %r6, %r4
  %r8 = setp.lt.u32 %r7, %r3
  if %r8 {
    %r9 = cvt.u64.u32 %r7
    %r9 = mul.u64 %r9, 4
    %r10 = add.u64 %r0, %r9
    %r11 = add.u64 %r1, %r9
    %r12 = ld.global.nc.f32 [%r10]
    %r13 = ld.global.nc.f32 [%r11]
    %r12 = add.f32 %r12, %r13
    %r10 = add.u64 %r2, %r9
    st.global.f32 [%r10], %r12
  }
}
"#;

/// One warp per row: strided partial sums in a counted loop, a butterfly of shuffles, lane 0
/// stores; a vote and a redux on the way.
const ROW_SUM: &str = r#"
kernel @row_sum max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  param %p2 : buffer i32 align=16 written "stats"
  reg %r0, %r1, %r2 : u64
  reg %r3, %r4, %r5, %r6, %r7 : u32
  reg %r8, %r9 : f32
  reg %r10 : u64
  reg %r11 : pred
  reg %r12, %r13 : b32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = ld.param %p2
  %r3 = mov.special %ctaid.x
  %r4 = mov.special %laneid
  %r5 = mul.u32 %r3, 256
  %r5 = add.u32 %r5, %r4
  %r8 = mov 0.0
  for %r6 in 0..8 {
    %r7 = mul.u32 %r6, 32
    %r7 = add.u32 %r5, %r7
    %r10 = cvt.u64.u32 %r7
    %r10 = fma.u64 %r10, 4, %r0
    %r9 = ld.global.nc.f32 [%r10]
    %r8 = add.f32 %r8, %r9
  }
  %r12 = shfl.sync.bfly.b32 %r8, 16, 0x1f, 0xffffffff
  %r9 = mov %r12
  %r8 = add.f32 %r8, %r9
  %r12 = shfl.sync.bfly.b32 %r8, 8, 0x1f, 0xffffffff
  %r9 = mov %r12
  %r8 = add.f32 %r8, %r9
  %r12 = shfl.sync.down.b32 %r8, 4, 0x1f, 0xffffffff
  %r9 = mov %r12
  %r8 = add.f32 %r8, %r9
  %r11 = setp.gt.f32 %r8, 0.0
  %r13 = vote.sync.ballot.b32 %r11, 0xffffffff
  %r12 = redux.sync.add.u32 %r4, 0xffffffff
  %r11 = setp.eq.u32 %r4, 0
  if %r11 {
    %r10 = cvt.u64.u32 %r3
    %r10 = mul.u64 %r10, 4
    %r10 = add.u64 %r1, %r10
    st.global.f32 [%r10], %r8
    %r10 = cvt.u64.u32 %r3
    %r10 = fma.u64 %r10, 8, %r2
    st.global.v2.b32 [%r10], {%r13, %r12}
  }
}
"#;

/// A 32×32 tile through padded shared memory: store a row, barrier, read a column.
const TRANSPOSE: &str = r#"
kernel @transpose max_threads=1024 shared=4224 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2, %r3, %r4, %r5 : u32
  reg %r6, %r7 : u64
  reg %r8 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r3 = mov.special %tid.y
  %r4 = fma.u32 %r3, 32, %r2
  %r6 = cvt.u64.u32 %r4
  %r6 = fma.u64 %r6, 4, %r0
  %r8 = ld.global.nc.f32 [%r6]
  %r5 = fma.u32 %r3, 33, %r2
  %r7 = cvt.u64.u32 %r5
  %r7 = mul.u64 %r7, 4
  st.shared.f32 [%r7], %r8
  bar.sync
  %r5 = fma.u32 %r2, 33, %r3
  %r7 = cvt.u64.u32 %r5
  %r7 = mul.u64 %r7, 4
  %r8 = ld.shared.f32 [%r7]
  %r6 = cvt.u64.u32 %r4
  %r6 = fma.u64 %r6, 4, %r1
  st.global.f32 [%r6], %r8
}
"#;

/// Two stages of 16-byte `cp.async` (the second with a source size), waited for in turn.
const CP_ASYNC: &str = r#"
kernel @copy2 max_threads=32 shared=1024 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2 : u32
  reg %r3, %r4, %r5 : u64
  reg %r6, %r7, %r8, %r9 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r3 = cvt.u64.u32 %r2
  %r3 = mul.u64 %r3, 16
  %r4 = add.u64 %r0, %r3
  cp.async.cg.shared.global [%r3], [%r4], 16
  cp.async.commit_group
  cp.async.cg.shared.global [%r3 + 512], [%r4 + 512], 16, 8
  cp.async.commit_group
  cp.async.wait_group 1
  {%r6, %r7, %r8, %r9} = ld.shared.v4.f32 [%r3]
  %r5 = add.u64 %r1, %r3
  st.global.v4.f32 [%r5], {%r6, %r7, %r8, %r9}
  cp.async.wait_all
  {%r6, %r7, %r8, %r9} = ld.shared.v4.f32 [%r3 + 512]
  st.global.v4.f32 [%r5 + 512], {%r6, %r7, %r8, %r9}
}
"#;

/// One m16n8k16 bf16 tile from `ldmatrix` fragments, and an m16n8k32 e4m3 product of the same
/// registers (sm_89+).
fn mma(fp8: bool) -> String {
    let fp8_line = if fp8 {
        "  {%r10, %r11, %r12, %r13} = mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%r2, %r3, %r4, %r5}, {%r6, %r7}, {%r10, %r11, %r12, %r13}\n"
    } else {
        ""
    };
    format!(
        r#"
kernel @mma_tile max_threads=32 shared=1024 local=0 {{
  param %p0 : buffer f32 align=16 written "d"
  reg %r0 : u64
  reg %r1 : u32
  reg %r2, %r3, %r4, %r5, %r6, %r7 : b32
  reg %r8, %r9 : u64
  reg %r10, %r11, %r12, %r13 : f32
  %r0 = ld.param %p0
  %r1 = mov.special %tid.x
  %r8 = cvt.u64.u32 %r1
  %r8 = mul.u64 %r8, 16
  st.shared.v4.b32 [%r8], {{%r1, %r1, %r1, %r1}}
  st.shared.v4.b32 [%r8 + 512], {{%r1, %r1, %r1, %r1}}
  bar.sync
  {{%r2, %r3, %r4, %r5}} = ldmatrix.sync.aligned.m8n8.x4.shared.b16 [%r8]
  {{%r6, %r7}} = ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 [%r8 + 512]
  {{%r10, %r11, %r12, %r13}} = mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{%r2, %r3, %r4, %r5}}, {{%r6, %r7}}, {{0.0, 0.0, 0.0, 0.0}}
{fp8_line}  %r9 = add.u64 %r0, %r8
  st.global.v4.f32 [%r9], {{%r10, %r11, %r12, %r13}}
}}
"#
    )
}

/// Atomics on global and shared memory, integer and float.
const ATOMICS: &str = r#"
kernel @atomics max_threads=64 shared=16 local=0 {
  param %p0 : buffer i32 align=16 written "hist"
  param %p1 : buffer f32 align=16 written "total"
  param %p2 : buffer i32 align=16 written "maxima"
  reg %r0, %r1, %r2 : u64
  reg %r3, %r4 : u32
  reg %r5 : f32
  reg %r6 : pred
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = ld.param %p2
  %r3 = mov.special %tid.x
  %r6 = setp.eq.u32 %r3, 0
  if %r6 {
    st.shared.u32 [0], 0
  }
  bar.sync
  red.shared.max.u32 [0], %r3
  %r4 = atom.global.add.u32 [%r0], 1
  %r5 = cvt.rn.f32.u32 %r4
  red.global.add.f32 [%r1], %r5
  bar.sync
  if %r6 {
    %r4 = ld.shared.u32 [0]
    st.global.u32 [%r2], %r4
  }
}
"#;

/// Conversions and the MUFU ops, one result each stored.
const CONVERSIONS: &str = r#"
kernel @conversions max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer i32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2, %r3 : f32
  reg %r4 : bf16
  reg %r5 : f16
  reg %r6 : s32
  reg %r7 : e4m3x2
  reg %r8 : f16x2
  reg %r9 : bf16x2
  reg %r10, %r11, %r12, %r13 : f32
  reg %r14 : u32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = ld.global.nc.f32 [%r0]
  %r4 = cvt.rn.satfinite.bf16.f32 %r2
  %r5 = cvt.rn.f16.f32 %r2
  %r3 = cvt.f32.bf16 %r4
  %r6 = cvt.rz.s32.f32 %r3
  %r7 = cvt.rn.satfinite.e4m3x2.f32 %r2, %r3
  %r8 = cvt.rn.f16x2.e4m3x2 %r7
  %r9 = cvt.rn.bf16x2.f32 %r2, %r3
  %r10 = ex2.approx.f32 %r2
  %r11 = rsqrt.approx.f32 %r2
  %r12 = rcp.approx.f32 %r2
  %r13 = tanh.approx.f32 %r2
  %r14 = cvt.u32.s32 %r6
  %r10 = div.f32 %r10, %r3
  %r11 = sqrt.f32 %r11
  st.global.v4.f32 [%r1], {%r10, %r11, %r12, %r13}
  st.global.v4.b32 [%r1 + 16], {%r14, %r8, %r9, %r3}
  st.global.b16 [%r1 + 32], %r5
  st.global.b16 [%r1 + 34], %r7
}
"#;

/// Programmatic dependent launch, cache hints, a warp barrier and local memory.
const MISC: &str = r#"
kernel @misc max_threads=32 shared=0 local=16 {
  param %p0 : buffer f32 align=16 readonly "w"
  param %p1 : buffer f32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2, %r3, %r4, %r5 : f32
  reg %r6 : u32
  reg %r7 : u64
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  {%r2, %r3, %r4, %r5} = ld.global.nc.L1::no_allocate.v4.f32 [%r0]
  griddepcontrol.wait
  %r6 = mov.special %laneid
  %r7 = cvt.u64.u32 %r6
  %r7 = and.u64 %r7, 3
  %r7 = mul.u64 %r7, 4
  st.local.v4.f32 [0], {%r2, %r3, %r4, %r5}
  %r2 = ld.local.f32 [%r7]
  bar.warp.sync 0xffffffff
  %r3 = ld.global.cs.f32 [%r1]
  %r2 = add.f32 %r2, %r3
  st.global.cs.f32 [%r1], %r2
  griddepcontrol.launch_dependents
}
"#;

fn all() -> Vec<(Kernel, Sm)> {
    vec![
        (kernel(VECTOR_ADD), Sm::Sm80),
        (kernel(ROW_SUM), Sm::Sm80),
        (kernel(TRANSPOSE), Sm::Sm80),
        (kernel(CP_ASYNC), Sm::Sm80),
        (kernel(&mma(false)), Sm::Sm80),
        (kernel(&mma(true)), Sm::Sm89),
        (kernel(ATOMICS), Sm::Sm80),
        (kernel(CONVERSIONS), Sm::Sm89),
        (kernel(MISC), Sm::Sm90),
    ]
}

#[test]
fn every_kernel_lowers_passes_the_structural_check_and_assembles_without_spills() {
    for (k, min) in all() {
        for sm in Sm::ALL.into_iter().filter(|&s| s >= min) {
            let target = Target::new(sm);
            let p =
                ptx::compile(&k, target).unwrap_or_else(|e| panic!("{e}\n{}", ptx::llvm_ir(&k).unwrap_or_default()));
            assert!(p.text.contains(".version 8.8"), "{}", p.text);
            assert!(p.text.contains(&format!(".target {}", sm.name())), "{}", p.text);
            assert!(p.text.contains(&format!(".maxntid {}", k.max_threads)), "{}: {}", k.name, p.text);
            let c = ptxas::assemble(&p.text, &k.name, sm).unwrap_or_else(|e| panic!("{e}\n{}", p.text));
            assert!(c.bytes.starts_with(b"\x7fELF"), "{}: a CUBIN is an ELF file", k.name);
            let r = &c.report;
            assert!(r.registers > 0, "{}: {r:?}", k.name);
            assert_eq!((r.spill_stores, r.spill_loads), (0, 0), "{} on {}: {r:?}", k.name, sm.name());
            if k.local_bytes == 0 {
                assert_eq!(r.stack, 0, "{} on {}: {r:?}", k.name, sm.name());
            }
        }
    }
}

#[test]
fn the_ptx_keeps_what_the_kernel_ir_says() {
    let k = kernel(VECTOR_ADD);
    let p = ptx::compile(&k, Target::HOPPER).expect("compiles");
    assert_eq!(p.text.matches("ld.global.nc").count(), 2, "{}", p.text);
    assert!(p.text.contains("add.rn.f32"), "{}", p.text);
    let counts = check::ir_counts(&k);
    assert_eq!((counts.global_load_bytes, counts.global_store_bytes), (8, 4));
    // The transpose keeps its barrier; the tile kernel its mma and ldmatrix; the conversions
    // their packs.
    let t = ptx::compile(&kernel(TRANSPOSE), Target::HOPPER).expect("compiles");
    assert_eq!(t.text.matches("bar.sync").count() + t.text.matches("barrier.sync").count(), 1, "{}", t.text);
    let m = ptx::compile(&kernel(&mma(true)), Target::HOPPER).expect("compiles");
    assert_eq!(m.text.matches("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32").count(), 1, "{}", m.text);
    assert_eq!(m.text.matches("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32").count(), 1, "{}", m.text);
    assert_eq!(m.text.matches("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16").count(), 1, "{}", m.text);
    let c = ptx::compile(&kernel(CONVERSIONS), Target::HOPPER).expect("compiles");
    assert!(c.text.contains("div.rn.f32") && c.text.contains("sqrt.rn.f32"), "IEEE division and root: {}", c.text);
}

#[test]
fn the_structural_check_catches_tampered_ptx() {
    let k = kernel(TRANSPOSE);
    let p = ptx::compile(&k, Target::HOPPER).expect("compiles");
    let no_barrier: String = p.text.lines().filter(|l| !l.contains("bar")).collect::<Vec<_>>().join("\n");
    let e = check::structure(&k, &no_barrier).expect_err("a lost barrier");
    assert!(e.contains("barriers: 1") && e.contains("barriers: 0"), "{e}");
    let contracted = p.text.replacen("ld.shared.b32", "add.f32 %r1, %r1, %r1;\n\tld.shared.b32", 1);
    assert!(check::structure(&k, &contracted).expect_err("a fusable add").contains("no `.rn`"));
    // An fma the kernel IR does not have (a contraction) is refused; fewer would be a merge.
    let fused = p.text.replacen("ld.shared.b32", "fma.rn.f32 %r1, %r1, %r1, %r1;\n\tld.shared.b32", 1);
    let e = check::structure(&k, &fused).expect_err("an extra fma");
    assert!(e.contains("fma: 1"), "{e}");
    let ftz = p.text.replacen("ld.shared.b32", "cvt.ftz.f32.f32 %r1, %r1;\n\tld.shared.b32", 1);
    assert!(check::structure(&k, &ftz).expect_err("ftz").contains("flush-to-zero"));
    let stack = p.text.replacen("ld.shared.b32", "ld.local.b32 %r1, [%SP];\n\tld.shared.b32", 1);
    assert!(check::structure(&k, &stack).expect_err("stack").contains("local memory"));
    let generic = p.text.replacen("ld.shared.b32", "ld.b32", 1);
    assert!(check::structure(&k, &generic).expect_err("generic").contains("generic address"));
}

#[test]
fn what_the_lowering_lacks_and_what_ptxas_refuses_are_clear_errors() {
    // A kernel the verifier refuses for the target: fp8 mma below sm_89.
    let e = ptx::compile(&kernel(&mma(true)), Target::new(Sm::Sm80)).expect_err("sm_80 has no fp8 mma");
    assert!(matches!(e, CodegenError::Verify(_)), "{e}");
    // PTX ptxas refuses names the kernel and the architecture.
    let e =
        ptxas::assemble(".version 8.8\n.target sm_90\n.address_size 64\n.visible .entry k() { bogus; }", "k", Sm::Sm90)
            .expect_err("not PTX");
    assert!(e.to_string().starts_with("ptxas: kernel k for sm_90:"), "{e}");
}

#[test]
fn ptxas_reports_parse_and_results_are_cached_by_content() {
    let log = "ptxas info    : 0 bytes gmem\nptxas info    : Compiling entry function 'k' for 'sm_90'\n\
               ptxas info    : Function properties for k\n    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n\
               ptxas info    : Used 40 registers, used 1 barriers, 64 bytes smem, 384 bytes cmem[0]\n";
    let r = ptxas::parse_report(log, "k").expect("a report");
    assert_eq!(r, ptxas::Report { registers: 40, spill_stores: 4, spill_loads: 4, stack: 8, shared: 64, barriers: 1 });
    assert!(ptxas::parse_report(log, "other").is_err());
    assert_ne!(ptxas::content_hash(&[b"a", b"bc"]), ptxas::content_hash(&[b"ab", b"c"]));
    let k = kernel(VECTOR_ADD);
    let p = ptx::compile(&k, Target::HOPPER).expect("compiles");
    let first = ptxas::assemble(&p.text, &k.name, Sm::Sm90).expect("assembles");
    let again = ptxas::assemble(&p.text, &k.name, Sm::Sm90).expect("assembles");
    assert!(again.cached, "the second run is a cache hit");
    assert_eq!((first.bytes, first.report), (again.bytes, again.report));
}

/// PTX with what a point release of LLVM 22 rewrites taken out: comments and the banner, register
/// and label numbers and register counts (`%r12` → `%r`, `$L__BB0_3` → `$L__BB`,
/// `%r<9>` → `%r<>`), whitespace runs.
fn normalized(ptx: &str) -> String {
    let mut out = Vec::new();
    for line in ptx.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut s = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            s.push(c);
            if c == '%' || c == '$' {
                // Keep the register class or label prefix, drop its number.
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_alphabetic() || d == '_' {
                        s.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                while chars.peek().is_some_and(|d| d.is_ascii_digit() || *d == '_') {
                    chars.next();
                }
            }
        }
        // Register counts (`.reg .b32 %r<9>;`) go too.
        let s = match (s.find('<'), s.find('>')) {
            (Some(a), Some(b)) if s.starts_with(".reg") && a < b => format!("{}<>{}", &s[..a], &s[b + 1..]),
            _ => s,
        };
        out.push(s.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    out.join("\n") + "\n"
}

#[test]
fn small_kernels_match_their_normalized_ptx_snapshots() {
    // `LATHE_BLESS=1` rewrites the snapshots (after checking the difference is intended).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    for (name, text) in [("vector_add", VECTOR_ADD), ("transpose", TRANSPOSE), ("atomics", ATOMICS)] {
        let p = ptx::compile(&kernel(text), Target::HOPPER).expect("compiles");
        let got = normalized(&p.text);
        let path = dir.join(format!("{name}.ptx"));
        if std::env::var_os("LATHE_BLESS").is_some() {
            std::fs::create_dir_all(&dir).expect("snapshot dir");
            std::fs::write(&path, &got).expect("snapshot written");
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (LATHE_BLESS=1 writes it)", path.display()));
        assert_eq!(got, want, "{name}: the PTX differs from {} (LATHE_BLESS=1 rewrites it)", path.display());
    }
}

/// Every fusion group the default pipeline (and `quantize-fp8,default`) makes of the fixtures and
/// the real configs (shape only): compiled by its template, or pending for a named reason — no
/// group is skipped silently. The distinct kernels the templates make are assembled by ptxas for
/// sm_90 without spills.
#[test]
fn every_group_of_the_fixtures_and_real_configs_is_compiled_or_pending_by_name() {
    use std::collections::{BTreeMap, BTreeSet};

    use lathe_frontend::import::{import, ImportOptions};
    use lathe_ir::Op;
    use lathe_passes::PassManager;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let dirs = [
        "models/nemotron_h_tiny",
        "models/mamba2_tiny",
        "models/qwen2_tiny",
        "models/nemotron_h_real",
        "models/mamba2_real",
        "models/qwen2_real",
        "configs/nemotron-h-8b-base-8k",
        "configs/nemotron-h-47b-base-8k",
        "configs/nemotron-h-56b-base-8k",
        "configs/nemotron-nano-9b-v2",
    ];
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut kernels = BTreeSet::new();
    for dir in dirs {
        let shape_only = dir.starts_with("configs/");
        // The fixtures at f32 (as `lathe eval` runs them), the real configs also at bf16 (as
        // they are deployed).
        let dtypes: &[lathe_ir::DType] =
            if shape_only { &[lathe_ir::DType::F32, lathe_ir::DType::BF16] } else { &[lathe_ir::DType::F32] };
        for (pipeline, &compute_dtype) in
            ["default", "quantize-fp8,default"].iter().flat_map(|p| dtypes.iter().map(move |d| (*p, d)))
        {
            let opts = ImportOptions { shape_only, compute_dtype, ..ImportOptions::default() };
            let mut m = import(&root.join(dir), &opts).unwrap_or_else(|e| panic!("{dir}: {e}")).module;
            let mut pm = PassManager::parse(pipeline).expect("a pipeline");
            pm.run(&mut m, &mut std::io::sink()).unwrap_or_else(|e| panic!("{dir} {pipeline}: {e}"));
            for f in &m.functions {
                for &n in &f.graph.order {
                    let Op::Fusion(group) = &f.graph.nodes[n].op else { continue };
                    let spec = lathe_passes::strategy::classify(&m, group).unwrap_or_else(|e| panic!("{dir}: {e}"));
                    let name = spec.strategy.name();
                    let key = match lathe_codegen::simrun::compile_group(&m, group, "group") {
                        Ok(c) => {
                            // Launches and scratch as the launch rule of L4 has them.
                            let rule = lathe_passes::launch::group_launches(&m, &group.body, spec.clone());
                            assert_eq!(c.launches(spec.strategy), rule.launches, "{dir}: {name} launches");
                            assert_eq!(c.scratch(), rule.scratch.as_slice(), "{dir}: {name} scratch");
                            let bound: std::collections::HashSet<usize> = c
                                .bindings()
                                .iter()
                                .filter_map(|b| match b {
                                    lathe_codegen::templates::elementwise::Binding::Scratch(k) => Some(*k),
                                    _ => None,
                                })
                                .collect();
                            assert_eq!(bound.len(), rule.scratch.len(), "{dir}: {name}: every scratch is a parameter");
                            kernels.insert(lathe_kernel::text::print(c.kernel()));
                            format!("{name}: compiled")
                        }
                        Err(e) if e.starts_with(&format!("no {name} template")) => {
                            format!("{name}: pending (its template is a later increment)")
                        }
                        Err(e) => format!("{name}: pending: {e}"),
                    };
                    *tally.entry(key).or_default() += 1;
                }
            }
        }
    }
    for (k, n) in &tally {
        println!("{n:>5}  {k}");
    }
    assert!(tally.get("elementwise: compiled").copied().unwrap_or(0) > 0, "{tally:#?}");
    assert!(tally.get("row_reduce: compiled").copied().unwrap_or(0) > 0, "{tally:#?}");
    // What is pending is listed by name above; a group of a template that exists may only wait
    // for the ops and forms named here.
    assert!(tally.get("gather: compiled").copied().unwrap_or(0) > 0, "{tally:#?}");
    for k in tally.keys().filter(|k| {
        [
            "elementwise",
            "row_reduce",
            "gather",
            "scatter_cache",
            "conv1d_causal",
            "sample",
            "gemv",
            "ssd_decode_step",
            "attention_decode",
        ]
        .iter()
        .any(|s| k.starts_with(&format!("{s}: pending")))
    }) {
        assert!(
            [
                "pointwise `",
                "not supported by the template yet: `",
                "values in an elementwise kernel",
                "a constant that is not a splat",
                "not built around one rms_norm (",
                "more than one row op (",
                "another shape than the normalized rows",
                "the tensor-core form",
            ]
            .iter()
            .any(|p| k.contains(p)),
            "a group pending for an unlisted reason: {k}"
        );
    }
    // A failing kernel is written out for `lathe kernel ptx`.
    let keep = |text: &str| {
        let path = std::env::temp_dir().join("lathe-coverage-failed.lk");
        let _ = std::fs::write(&path, text);
        path.display().to_string()
    };
    for text in &kernels {
        let k = parse(text).expect("reads back");
        let p = ptx::compile(&k, Target::HOPPER).unwrap_or_else(|e| panic!("{e} ({})", keep(text)));
        let c = ptxas::assemble(&p.text, &k.name, Sm::Sm90).unwrap_or_else(|e| panic!("{e} ({})", keep(text)));
        assert_eq!((c.report.spill_stores, c.report.spill_loads), (0, 0), "{:?} ({})", c.report, keep(text));
    }
    println!("{} distinct kernels assembled for sm_90 without spills", kernels.len());
    // The sample for sm_80: every kernel whose instructions Ampere has (the fp8 conversions of
    // the quantize groups and W8A16 GEMVs need sm_89 — asserted above as the only reason to
    // skip one), assembled for sm_80 without spills.
    let ampere = Target::new(Sm::Sm80);
    let mut on_ampere = 0;
    for text in &kernels {
        let k = parse(text).expect("reads back");
        if let Err(errs) = lathe_kernel::target::check(&lathe_kernel::target::without_pdl(&k, &ampere), &ampere) {
            assert!(errs.iter().all(|e| e.message.contains("sm_89")), "{}: {errs:?}", k.name);
            continue;
        }
        let p = ptx::compile(&k, ampere).unwrap_or_else(|e| panic!("{e}"));
        let c = ptxas::assemble(&p.text, &k.name, Sm::Sm80).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.report.spill_stores, c.report.spill_loads), (0, 0), "sm_80: {:?}", c.report);
        on_ampere += 1;
    }
    assert!(on_ampere > 0, "no kernel runs on sm_80");
    println!("{on_ampere} of them assembled for sm_80 without spills (the rest convert fp8: sm_89+)");
}
