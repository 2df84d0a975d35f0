//! The simulator on kernels written right (checked against a formula, with the counters that
//! describe their access patterns), on a few kernels written wrong, and on launches that do not
//! fit their kernel. The corpus of kernels written wrong on purpose, one or more per error kind,
//! each next to its corrected twin, is `tests/broken.rs`.

use lathe_kernel::build::{f32_imm, int_imm, KernelBuilder};
use lathe_kernel::ir::{Access, Axis, BinOp, Cmp, Kernel, ShflMode, Space, Special, Ty};
use lathe_kernel::sim::{run, Arg, Counters, ErrorKind, Launch, Options, SimError};
use lathe_numerics::DType;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn launch(grid: u32, block: u32) -> Launch {
    Launch { grid: [grid, 1, 1], block: [block, 1, 1] }
}

fn go(k: &Kernel, l: Launch, args: &mut [Arg]) -> Result<Counters, SimError> {
    run(k, &l, args, &Options::default())
}

/// The global thread index `ctaid.x * ntid.x + tid.x` as u32.
fn global_index(b: &mut KernelBuilder) -> lathe_kernel::ir::Reg {
    let tid = b.special(Special::Tid(Axis::X));
    let cta = b.special(Special::Ctaid(Axis::X));
    let ntid = b.special(Special::Ntid(Axis::X));
    b.fma(Ty::U32, cta, ntid, tid)
}

/// `base + 4·i` as a u64 address.
fn addr4(b: &mut KernelBuilder, base: lathe_kernel::ir::Reg, i: lathe_kernel::ir::Reg) -> lathe_kernel::ir::Reg {
    let wide = b.cvt(Ty::U64, Ty::U32, None, false, i);
    let off = b.bin(BinOp::Mul, Ty::U64, wide, int_imm(4));
    b.bin(BinOp::Add, Ty::U64, base, off)
}

/// `c[i] = a[i] + b[i]` for `i < n`; `guarded: false` drops the bounds check.
fn vector_add(guarded: bool) -> Kernel {
    let mut b = KernelBuilder::new("vector_add", 128);
    let a = b.buffer("a", DType::F32, Access::ReadOnly);
    let x = b.buffer("b", DType::F32, Access::ReadOnly);
    let c = b.buffer("c", DType::F32, Access::Written);
    let n = b.scalar("n", Ty::U32);
    let i = global_index(&mut b);
    let body = |b: &mut KernelBuilder| {
        let pa = addr4(b, a, i);
        let pb = addr4(b, x, i);
        let pc = addr4(b, c, i);
        let va = b.ld(Space::Global, Ty::F32, 1, pa, 0, true)[0];
        let vb = b.ld(Space::Global, Ty::F32, 1, pb, 0, true)[0];
        let s = b.bin(BinOp::Add, Ty::F32, va, vb);
        b.st(Space::Global, Ty::F32, pc, 0, &[s.into()]);
    };
    if guarded {
        let inside = b.setp(Cmp::Lt, Ty::U32, i, n);
        b.if_then(inside, body);
    } else {
        body(&mut b);
    }
    b.finish()
}

fn vector_add_args(n: usize) -> Vec<Arg> {
    let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let x: Vec<f32> = (0..n).map(|i| 1.0 - i as f32).collect();
    vec![Arg::Buffer(f32_bytes(&a)), Arg::Buffer(f32_bytes(&x)), Arg::Buffer(vec![0; n * 4]), Arg::Scalar(n as u64)]
}

#[test]
fn vector_add_matches_and_coalesces() {
    let k = vector_add(true);
    let mut args = vector_add_args(300);
    let c = go(&k, launch(3, 128), &mut args).expect("clean");
    let Arg::Buffer(out) = &args[2] else { panic!("buffer") };
    for (i, v) in f32s(out).into_iter().enumerate() {
        assert_eq!(v, i as f32 * 0.5 + (1.0 - i as f32), "c[{i}]");
    }
    // 12 warps, 10 with lanes in range; 3 accesses each; a full warp touches 4 sectors.
    assert_eq!(c.global_requests, 30, "{c:?}");
    assert_eq!(c.global_sectors, 9 * 3 * 4 + 3 * 2, "{c:?}");
    assert_eq!(c.global_excess_sectors, 0, "contiguous and aligned: {c:?}");
    assert_eq!(c.bytes_stored, 300 * 4);
}

#[test]
fn strided_and_misaligned_requests_count_excess_sectors_and_broadcasts_do_not() {
    // y[i] = x[stride·i + shift] for one warp.
    let k = |stride: u64, shift: u64| {
        let mut b = KernelBuilder::new("gather", 32);
        let x = b.buffer("x", DType::F32, Access::ReadOnly);
        let y = b.buffer("y", DType::F32, Access::Written);
        let i = global_index(&mut b);
        let j = b.fma(Ty::U32, i, int_imm(stride as i64), int_imm(shift as i64));
        let px = addr4(&mut b, x, j);
        let v = b.ld(Space::Global, Ty::F32, 1, px, 0, true)[0];
        let py = addr4(&mut b, y, i);
        b.st(Space::Global, Ty::F32, py, 0, &[v.into()]);
        b.finish()
    };
    let excess = |stride: u64, shift: u64| {
        let mut args = vec![Arg::Buffer(vec![0; 4 * 80]), Arg::Buffer(vec![0; 4 * 32])];
        go(&k(stride, shift), launch(1, 32), &mut args).expect("clean").global_excess_sectors
    };
    assert_eq!(excess(1, 0), 0, "coalesced");
    assert_eq!(excess(0, 5), 0, "one address for the whole warp");
    // 128 bytes over 256: 8 sectors where 4 would hold them.
    assert_eq!(excess(2, 0), 4);
    // Contiguous but 4 bytes off a sector boundary: 5 sectors.
    assert_eq!(excess(1, 1), 1);
}

#[test]
fn an_unguarded_tail_is_out_of_bounds() {
    let k = vector_add(false);
    let mut args = vector_add_args(300);
    let e = go(&k, launch(3, 128), &mut args).expect_err("out of bounds");
    assert_eq!(e.kind, ErrorKind::OutOfBounds, "{e}");
    assert_eq!(e.cta, [2, 0, 0], "{e}");
    assert_eq!(e.thread, Some([44, 0, 0]), "{e}");
    assert!(e.to_string().contains("buffer `a` (1200 bytes)"), "{e}");
}

/// Sums 32 values of a warp with a butterfly of shuffles; every lane ends with the sum.
fn warp_sum(sync_lanes: u32) -> Kernel {
    let mut b = KernelBuilder::new("warp_sum", 32);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let y = b.buffer("y", DType::F32, Access::Written);
    let lane = b.special(Special::LaneId);
    let p = addr4(&mut b, x, lane);
    let mut v = b.ld1(Space::Global, Ty::F32, p, 0);
    for d in [16, 8, 4, 2, 1] {
        let o = b.shfl(ShflMode::Bfly, v, int_imm(d));
        v = b.bin(BinOp::Add, Ty::F32, v, o);
    }
    let first = b.setp(Cmp::Lt, Ty::U32, lane, int_imm(i64::from(sync_lanes)));
    b.if_then(first, |b| {
        let q = addr4(b, y, lane);
        b.st(Space::Global, Ty::F32, q, 0, &[v.into()]);
    });
    b.finish()
}

#[test]
fn a_butterfly_reduction_gives_every_lane_the_sum() {
    let xs: Vec<f32> = (0..32).map(|i| (i * i % 7) as f32).collect();
    let mut args = vec![Arg::Buffer(f32_bytes(&xs)), Arg::Buffer(vec![0; 32 * 4])];
    go(&warp_sum(32), launch(1, 32), &mut args).expect("clean");
    let Arg::Buffer(out) = &args[1] else { panic!("buffer") };
    let want: f32 = xs.iter().sum();
    assert!(f32s(out).iter().all(|&v| v == want), "{:?} vs {want}", f32s(out));
}

/// A CTA of `n` threads sums `n` values through shared memory: a tree of halving strides
/// with a barrier after each level. `first_barrier: false` drops the barrier between the
/// stores and the first level.
fn cta_sum(n: u32, first_barrier: bool) -> Kernel {
    let mut b = KernelBuilder::new("cta_sum", n);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let y = b.buffer("y", DType::F32, Access::Written);
    let s = b.shared(n * 4, 16);
    let tid = b.special(Special::Tid(Axis::X));
    let p = addr4(&mut b, x, tid);
    let v = b.ld1(Space::Global, Ty::F32, p, 0);
    let zero = b.mov(Ty::U64, int_imm(i64::from(s)));
    let sp = addr4(&mut b, zero, tid);
    b.st(Space::Shared, Ty::F32, sp, 0, &[v.into()]);
    if first_barrier {
        b.bar();
    }
    let mut stride = n / 2;
    while stride > 0 {
        let active = b.setp(Cmp::Lt, Ty::U32, tid, int_imm(i64::from(stride)));
        b.if_then(active, |b| {
            let a = b.ld1(Space::Shared, Ty::F32, sp, 0);
            let c = b.ld1(Space::Shared, Ty::F32, sp, i64::from(stride) * 4);
            let sum = b.bin(BinOp::Add, Ty::F32, a, c);
            b.st(Space::Shared, Ty::F32, sp, 0, &[sum.into()]);
        });
        b.bar();
        stride /= 2;
    }
    let first = b.setp(Cmp::Eq, Ty::U32, tid, int_imm(0));
    b.if_then(first, |b| {
        let r = b.ld1(Space::Shared, Ty::F32, zero, 0);
        b.st(Space::Global, Ty::F32, y, 0, &[r.into()]);
    });
    b.finish()
}

#[test]
fn a_cta_reduction_through_shared_memory() {
    let xs: Vec<f32> = (0..256).map(|i| (i % 13) as f32).collect();
    let mut args = vec![Arg::Buffer(f32_bytes(&xs)), Arg::Buffer(vec![0; 4])];
    let c = go(&cta_sum(256, true), launch(1, 256), &mut args).expect("clean");
    let Arg::Buffer(out) = &args[1] else { panic!("buffer") };
    assert_eq!(f32s(out)[0], xs.iter().sum::<f32>());
    assert_eq!(c.bank_replays, 0, "consecutive words: no conflicts");
    // Without the first barrier, warp 0 reads what warp 4 writes later: a race.
    let mut args = vec![Arg::Buffer(f32_bytes(&xs)), Arg::Buffer(vec![0; 4])];
    let e = go(&cta_sum(256, false), launch(1, 256), &mut args).expect_err("race");
    assert_eq!(e.kind, ErrorKind::SharedRace, "{e}");
    assert!(e.to_string().contains("shared byte 512: read then written by warp 0 and warp 4"), "{e}");
}

/// Every lane writes a column of a 32×32 tile of shared memory (row stride `stride` words).
fn column_writes(stride: u32) -> Kernel {
    let mut b = KernelBuilder::new("columns", 32);
    b.shared(32 * stride * 4, 16);
    let lane = b.special(Special::LaneId);
    let row = b.bin(BinOp::Mul, Ty::U32, lane, int_imm(i64::from(stride)));
    let zero = b.mov(Ty::U64, int_imm(0));
    let p = addr4(&mut b, zero, row);
    b.st(Space::Shared, Ty::F32, p, 0, &[f32_imm(1.0)]);
    b.finish()
}

#[test]
fn padding_removes_bank_conflicts() {
    let c = go(&column_writes(32), launch(1, 32), &mut []).expect("clean");
    assert_eq!(c.bank_replays, 31, "stride 32: every lane in bank 0");
    let c = go(&column_writes(33), launch(1, 32), &mut []).expect("clean");
    assert_eq!(c.bank_replays, 0, "stride 33: 32 banks");
}

#[test]
fn launches_that_do_not_fit_the_kernel_are_refused() {
    let k = vector_add(true);
    let mut args = vector_add_args(4);
    let e = go(&k, launch(1, 256), &mut args).expect_err("too many threads");
    assert_eq!(e.kind, ErrorKind::BadLaunch);
    let e = go(&k, launch(1, 32), &mut args[..2]).expect_err("arguments");
    assert_eq!(e.kind, ErrorKind::BadLaunch);
    let opts = Options { ctas: Some(vec![[5, 0, 0]]), ..Options::default() };
    let e = run(&k, &launch(1, 32), &mut args, &opts).expect_err("outside");
    assert_eq!(e.kind, ErrorKind::BadLaunch);
}

#[test]
fn sampled_ctas_run_alone() {
    let k = vector_add(true);
    let mut args = vector_add_args(300);
    let opts = Options { ctas: Some(vec![[2, 0, 0]]), ..Options::default() };
    run(&k, &launch(3, 128), &mut args, &opts).expect("clean");
    let Arg::Buffer(out) = &args[2] else { panic!("buffer") };
    let got = f32s(out);
    assert_eq!(got[0], 0.0, "CTA 0 did not run");
    assert_eq!(got[299], 299.0 * 0.5 + (1.0 - 299.0), "CTA 2 ran");
}

#[test]
fn conversions_match_lathe_numerics_bit_for_bit() {
    // Every bf16 and f16 code widened, then rounded back; and f32 values around the rounding
    // boundaries of both formats.
    let mut b = KernelBuilder::new("cvt", 256);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let y = b.buffer("y", DType::F32, Access::Written);
    let i = global_index(&mut b);
    let p = addr4(&mut b, x, i);
    let v = b.ld1(Space::Global, Ty::F32, p, 0);
    let h = b.cvt(Ty::F16, Ty::F32, Some(lathe_kernel::ir::Rounding::Rn), false, v);
    let bf = b.cvt(Ty::Bf16, Ty::F32, Some(lathe_kernel::ir::Rounding::Rn), false, v);
    let hw = b.cvt(Ty::F32, Ty::F16, None, false, h);
    let bw = b.cvt(Ty::F32, Ty::Bf16, None, false, bf);
    let q = addr4(&mut b, y, i);
    b.st(Space::Global, Ty::F32, q, 0, &[hw.into()]);
    let i2 = b.bin(BinOp::Add, Ty::U32, i, int_imm(65536 * 2));
    let q2 = addr4(&mut b, y, i2);
    b.st(Space::Global, Ty::F32, q2, 0, &[bw.into()]);
    let k = b.finish();
    let mut xs: Vec<f32> = (0..=u16::MAX).map(lathe_numerics::bf16_bits_to_f32).collect();
    xs.extend((0..=u16::MAX).map(|c| f32::from_bits(u32::from(c) << 13 | 0x1000).mul_add(1.0, 0.0)));
    let n = xs.len();
    let mut args = vec![Arg::Buffer(f32_bytes(&xs)), Arg::Buffer(vec![0; n * 4 * 2])];
    go(&k, launch((n / 256) as u32, 256), &mut args).expect("clean");
    let Arg::Buffer(out) = &args[1] else { panic!("buffer") };
    let got = f32s(out);
    for (j, &v) in xs.iter().enumerate() {
        let want_h = lathe_numerics::round_to_f16(v);
        let want_b = lathe_numerics::round_to_bf16(v);
        assert!(got[j].to_bits() == want_h.to_bits() || (got[j].is_nan() && want_h.is_nan()), "f16 of {v:e}");
        assert!(got[n + j].to_bits() == want_b.to_bits() || (got[n + j].is_nan() && want_b.is_nan()), "bf16 of {v:e}");
    }
}

#[test]
fn packed_conversions_put_the_first_source_high_and_match_lathe_numerics() {
    // Every e4m3 and e5m2 code decoded, and the midpoints between neighbouring codes of both, each
    // packed as the high source beside its negation as the low one.
    let mut xs: Vec<f32> = (0..=255u8).map(lathe_numerics::e4m3_to_f32).collect();
    xs.extend((0..=255u8).map(lathe_numerics::e5m2_to_f32));
    xs.extend((0..127u8).map(|c| (lathe_numerics::e4m3_to_f32(c) + lathe_numerics::e4m3_to_f32(c + 1)) / 2.0));
    // e5m2's finite codes end at 0x7b (0x7c is infinity).
    xs.extend((0..0x7bu8).map(|c| (lathe_numerics::e5m2_to_f32(c) + lathe_numerics::e5m2_to_f32(c + 1)) / 2.0));
    xs.extend([1e6, -1e6, f32::INFINITY, 1e-12]);
    let n = xs.len();
    let mut b = KernelBuilder::new("pack", 256);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let y = b.buffer("y", DType::U8, Access::Written);
    let i = global_index(&mut b);
    let inside = b.setp(Cmp::Lt, Ty::U32, i, int_imm(n as i64));
    b.if_then(inside, |b| {
        let p = addr4(b, x, i);
        let v = b.ld1(Space::Global, Ty::F32, p, 0);
        let neg = b.un(lathe_kernel::ir::UnOp::Neg, Ty::F32, v);
        let e4 = b.cvt_pack(Ty::E4m3x2, v, neg);
        let e5 = b.cvt_pack(Ty::E5m2x2, v, neg);
        let h2 = b.cvt_pack(Ty::F16x2, v, neg);
        // Bytes: [e4m3 pair (2) | e5m2 pair (2) | f16 pair (4)] per element.
        let wide = b.cvt(Ty::U64, Ty::U32, None, false, i);
        let off = b.bin(BinOp::Mul, Ty::U64, wide, int_imm(8));
        let q = b.bin(BinOp::Add, Ty::U64, y, off);
        b.st(Space::Global, Ty::B16, q, 0, &[e4.into()]);
        b.st(Space::Global, Ty::B16, q, 2, &[e5.into()]);
        b.st(Space::Global, Ty::B32, q, 4, &[h2.into()]);
    });
    let k = b.finish();
    let mut args = vec![Arg::Buffer(f32_bytes(&xs)), Arg::Buffer(vec![0; n * 8])];
    go(&k, launch(n.div_ceil(256) as u32, 256), &mut args).expect("clean");
    let Arg::Buffer(out) = &args[1] else { panic!("buffer") };
    for (j, &v) in xs.iter().enumerate() {
        let o = &out[j * 8..j * 8 + 8];
        // Little-endian: the low byte (second source) comes first in memory.
        assert_eq!([o[1], o[0]], [lathe_numerics::f32_to_e4m3(v), lathe_numerics::f32_to_e4m3(-v)], "e4m3 of {v:e}");
        assert_eq!([o[3], o[2]], [lathe_numerics::f32_to_e5m2(v), lathe_numerics::f32_to_e5m2(-v)], "e5m2 of {v:e}");
        let hi = u16::from_le_bytes([o[6], o[7]]);
        let lo = u16::from_le_bytes([o[4], o[5]]);
        assert_eq!((hi, lo), (lathe_numerics::f32_to_f16_bits(v), lathe_numerics::f32_to_f16_bits(-v)), "f16 of {v:e}");
    }
}

#[test]
fn dynamic_shared_memory_extends_the_static_shared_memory() {
    // Each thread stores to and loads back its word at 64 + 4·tid: past the 64 static bytes,
    // in the launch's dynamic shared memory.
    let k = lathe_kernel::text::parse(
        r#"
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
"#,
    )
    .expect("parses");
    let l = launch(1, 32);
    let mut args = vec![Arg::Buffer(vec![0; 128])];
    let e = run(&k, &l, &mut args, &Options::default()).expect_err("no dynamic shared memory");
    assert_eq!(e.kind, ErrorKind::OutOfBounds, "{e}");
    assert!(e.message.contains("shared bytes [64, 68) of 64"), "{e}");
    let opts = Options { dynamic_shared: 128, ..Options::default() };
    run(&k, &l, &mut args, &opts).expect("128 dynamic bytes hold the 32 words");
    let Arg::Buffer(out) = &args[0] else { panic!("buffer") };
    let words: Vec<u32> = out.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(words, (0..32).collect::<Vec<_>>());
    let too_much = Options { dynamic_shared: lathe_kernel::sim::MAX_SHARED_PER_CTA, ..Options::default() };
    let e = run(&k, &l, &mut args, &too_much).expect_err("past 227 KiB");
    assert_eq!(e.kind, ErrorKind::BadLaunch, "{e}");
}
