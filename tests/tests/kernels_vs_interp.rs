//! Hand-written kernels of the patterns the templates will use, run in the SIMT simulator and
//! checked against the reference interpreter on the same inputs (DESIGN §10: compiled kernels
//! vs the interpreter at the same compute dtype, with the shared tolerance), with the counters
//! that describe their memory behaviour.

use std::collections::HashMap;

use lathe_interp::tensor::Tensor;
use lathe_interp::SyntheticOnly;
use lathe_ir::text::parse_module;
use lathe_kernel::build::{int_imm, KernelBuilder};
use lathe_kernel::ir::{Access, Axis, BinOp, Kernel, Reg, ShflMode, Space, Special, Ty};
use lathe_kernel::sim::{run, Arg, Launch, Options};
use lathe_numerics::DType;
use lathe_tests::{assert_close, Rng};

/// The interpreter's result of a one-input, one-output function.
fn interp(text: &str, input: Tensor) -> Vec<f64> {
    let m = parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    lathe_ir::verify::verify(&m).unwrap_or_else(|e| panic!("{e:?}"));
    let inputs = HashMap::from([("x".to_string(), input)]);
    let mut out = lathe_interp::run(&m, "main", &inputs, &SyntheticOnly).expect("interpreter");
    out.remove(0).1.to_f64()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
}

/// `base + 4·i` as u64.
fn addr4(b: &mut KernelBuilder, base: Reg, i: Reg) -> Reg {
    let wide = b.cvt(Ty::U64, Ty::U32, None, false, i);
    let off = b.bin(BinOp::Mul, Ty::U64, wide, int_imm(4));
    b.bin(BinOp::Add, Ty::U64, base, off)
}

/// One warp per row of 32·`per_lane` floats: each lane sums its strided elements, then a
/// butterfly of shuffles sums the lanes; lane 0 writes the row's sum.
fn row_sum(per_lane: i64) -> Kernel {
    let mut b = KernelBuilder::new("row_sum", 32);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let y = b.buffer("y", DType::F32, Access::Written);
    let row = b.special(Special::Ctaid(Axis::X));
    let lane = b.special(Special::LaneId);
    let width = 32 * per_lane;
    let start = b.bin(BinOp::Mul, Ty::U32, row, int_imm(width));
    let first = b.bin(BinOp::Add, Ty::U32, start, lane);
    let acc = b.mov(Ty::F32, lathe_kernel::build::f32_imm(0.0));
    b.for_count(int_imm(per_lane), |b, k| {
        let step = b.bin(BinOp::Mul, Ty::U32, k, int_imm(32));
        let i = b.bin(BinOp::Add, Ty::U32, first, step);
        let p = addr4(b, x, i);
        let v = b.ld(Space::Global, Ty::F32, 1, p, 0, true)[0];
        let s = b.bin(BinOp::Add, Ty::F32, acc, v);
        b.push(lathe_kernel::ir::Inst::Mov { dst: acc, src: s.into() });
    });
    let mut v = acc;
    for d in [16, 8, 4, 2, 1] {
        let o = b.shfl(ShflMode::Bfly, v, int_imm(d));
        v = b.bin(BinOp::Add, Ty::F32, v, o);
    }
    let zero = b.setp(lathe_kernel::ir::Cmp::Eq, Ty::U32, lane, int_imm(0));
    b.if_then(zero, |b| {
        let p = addr4(b, y, row);
        b.st(Space::Global, Ty::F32, p, 0, &[v.into()]);
    });
    b.finish()
}

#[test]
fn a_warp_shuffle_row_reduction_matches_the_interpreter() {
    let (rows, width) = (24usize, 128usize);
    let xs = random(rows * width, 7);
    let mut args = vec![Arg::Buffer(f32_bytes(&xs)), Arg::Buffer(vec![0; rows * 4])];
    let launch = Launch { grid: [rows as u32, 1, 1], block: [32, 1, 1] };
    let c = run(&row_sum((width / 32) as i64), &launch, &mut args, &Options::default()).expect("clean");
    let Arg::Buffer(out) = &args[1] else { panic!("buffer") };
    let text = format!(
        "module @m {{\n  compute_dtype = f32\n  func @main {{\n    %0 = input \"x\" : f32[{rows}, {width}]\n    %1 = reduce %0 {{kind=sum, axes=[1]}} : f32[{rows}]\n    return %1\n  }}\n}}\n"
    );
    let want = interp(&text, Tensor::from_f32(DType::F32, vec![rows, width], xs));
    assert_close("row sums", &f32s(out), &want, DType::F32, width);
    // Every load of a warp reads 128 consecutive bytes: 4 sectors per request.
    let loads = (rows * width / 32) as u64;
    assert_eq!(c.global_requests, loads + rows as u64, "{c:?}");
    assert_eq!(c.global_sectors, loads * 4 + rows as u64, "{c:?}");
}

/// A 32×32-tile transpose of an `n`×`n` matrix through shared memory with rows of `pitch`
/// words: a CTA of 32×8 threads reads the tile row by row (coalesced), writes it to shared,
/// and after a barrier reads it column by column to write the transposed tile row by row.
fn transpose(n: u32, pitch: u32) -> Kernel {
    let mut b = KernelBuilder::new("transpose", 256);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let y = b.buffer("y", DType::F32, Access::Written);
    let tile = b.shared(32 * pitch * 4, 16);
    let tx = b.special(Special::Tid(Axis::X));
    let ty = b.special(Special::Tid(Axis::Y));
    let bx = b.special(Special::Ctaid(Axis::X));
    let by = b.special(Special::Ctaid(Axis::Y));
    let col0 = b.bin(BinOp::Mul, Ty::U32, bx, int_imm(32));
    let row0 = b.bin(BinOp::Mul, Ty::U32, by, int_imm(32));
    let sbase = b.mov(Ty::U64, int_imm(i64::from(tile)));
    // Rows ty, ty+8, ty+16, ty+24 of the tile.
    for k in 0..4 {
        let r = b.bin(BinOp::Add, Ty::U32, ty, int_imm(8 * k));
        let grow = b.bin(BinOp::Add, Ty::U32, row0, r);
        let gcol = b.bin(BinOp::Add, Ty::U32, col0, tx);
        let gi = b.fma(Ty::U32, grow, int_imm(i64::from(n)), gcol);
        let p = addr4(&mut b, x, gi);
        let v = b.ld(Space::Global, Ty::F32, 1, p, 0, true)[0];
        let si = b.fma(Ty::U32, r, int_imm(i64::from(pitch)), tx);
        let sp = addr4(&mut b, sbase, si);
        b.st(Space::Shared, Ty::F32, sp, 0, &[v.into()]);
    }
    b.bar();
    for k in 0..4 {
        let r = b.bin(BinOp::Add, Ty::U32, ty, int_imm(8 * k));
        // Output row = input column: y[col0 + r][row0 + tx] = tile[tx][r].
        let si = b.fma(Ty::U32, tx, int_imm(i64::from(pitch)), r);
        let sp = addr4(&mut b, sbase, si);
        let v = b.ld1(Space::Shared, Ty::F32, sp, 0);
        let orow = b.bin(BinOp::Add, Ty::U32, col0, r);
        let ocol = b.bin(BinOp::Add, Ty::U32, row0, tx);
        let oi = b.fma(Ty::U32, orow, int_imm(i64::from(n)), ocol);
        let p = addr4(&mut b, y, oi);
        b.st(Space::Global, Ty::F32, p, 0, &[v.into()]);
    }
    b.finish()
}

#[test]
fn a_tiled_transpose_matches_and_padding_removes_its_bank_conflicts() {
    let n = 64u32;
    let xs = random((n * n) as usize, 11);
    let text = format!(
        "module @m {{\n  compute_dtype = f32\n  func @main {{\n    %0 = input \"x\" : f32[{n}, {n}]\n    %1 = transpose %0 {{perm=[1, 0]}} : f32[{n}, {n}]\n    return %1\n  }}\n}}\n"
    );
    let want = interp(&text, Tensor::from_f32(DType::F32, vec![n as usize, n as usize], xs.clone()));
    let launch = Launch { grid: [n / 32, n / 32, 1], block: [32, 8, 1] };
    let mut replays = Vec::new();
    for pitch in [32, 33] {
        let mut args = vec![Arg::Buffer(f32_bytes(&xs)), Arg::Buffer(vec![0; (n * n * 4) as usize])];
        let c = run(&transpose(n, pitch), &launch, &mut args, &Options::default()).expect("clean");
        let Arg::Buffer(out) = &args[1] else { panic!("buffer") };
        assert_eq!(f32s(out), want, "pitch {pitch}: a transpose is exact");
        replays.push(c.bank_replays);
        // Global traffic stays coalesced either way: 4 sectors per warp request.
        assert_eq!(c.global_sectors, c.global_requests * 4, "pitch {pitch}: {c:?}");
    }
    // Unpadded, the column reads hit one bank 32 ways (31 replays per warp read, 4 reads per
    // warp, 8 warps, 4 CTAs); padded to 33 words, none.
    assert_eq!(replays, vec![31 * 4 * 8 * 4, 0]);
}

#[test]
fn sampled_ctas_of_a_real_size_reduction_match_the_interpreter() {
    // Nemotron-H-8B's mixer out_proj shape: 4,096 rows of d_inner = 8,192. Only 8 of the 4,096
    // CTAs run (the first, the last, 6 seeded); their rows are compared with the interpreter's.
    let (rows, width) = (4096usize, 8192usize);
    let xs = random(rows * width, 11);
    let mut args = vec![Arg::Buffer(f32_bytes(&xs)), Arg::Buffer(vec![0; rows * 4])];
    let launch = Launch { grid: [rows as u32, 1, 1], block: [32, 1, 1] };
    let ctas = lathe_kernel::sim::sample_ctas(launch.grid, 6, 42);
    assert_eq!(ctas.len(), 8);
    assert_eq!((ctas[0], ctas[7]), ([0, 0, 0], [rows as u32 - 1, 0, 0]));
    let opts = Options { ctas: Some(ctas.clone()), ..Options::default() };
    let c = run(&row_sum((width / 32) as i64), &launch, &mut args, &opts).expect("clean");
    assert_eq!(c.global_sectors * 32, c.bytes_loaded + 8 * 32, "the rows stream at full sector efficiency: {c:?}");
    let Arg::Buffer(out) = &args[1] else { panic!("buffer") };
    let got = f32s(out);
    let text = format!(
        "module @m {{\n  compute_dtype = f32\n  func @main {{\n    %0 = input \"x\" : f32[{rows}, {width}]\n    %1 = reduce %0 {{kind=sum, axes=[1]}} : f32[{rows}]\n    return %1\n  }}\n}}\n"
    );
    let want = interp(&text, Tensor::from_f32(DType::F32, vec![rows, width], xs));
    let rows_run: Vec<usize> = ctas.iter().map(|c| c[0] as usize).collect();
    let pick = |v: &[f64]| rows_run.iter().map(|&r| v[r]).collect::<Vec<_>>();
    assert_close("sampled row sums", &pick(&got), &pick(&want), DType::F32, width);
    // The CTAs that did not run left their rows alone.
    assert!(got.iter().enumerate().all(|(r, &v)| rows_run.contains(&r) || v == 0.0));
}
