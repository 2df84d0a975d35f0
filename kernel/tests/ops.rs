//! The instructions past the first increment — atomics, warp votes and reductions, `cp.async`,
//! packed fp8 conversions and their unpacking to f16x2, `griddepcontrol`, cache hints on loads
//! and stores — each checked against
//! what it must compute, and in kernels written wrong on purpose (each failing with its exact
//! error kind) next to their corrected twins.

use lathe_kernel::build::{f32_imm, int_imm, KernelBuilder};
use lathe_kernel::ir::{
    Access, Axis, BinOp, CacheHint, Cmp, Inst, Kernel, Operand, Reg, Rounding, Space, Special, Ty, VoteMode,
};
use lathe_kernel::sim::{run, Arg, Counters, ErrorKind, Launch, Options, SimError};
use lathe_kernel::verify::verify;
use lathe_numerics::DType;

fn launch(grid: u32, block: u32) -> Launch {
    Launch { grid: [grid, 1, 1], block: [block, 1, 1] }
}

fn go(k: &Kernel, l: Launch, args: &mut [Arg]) -> Result<Counters, SimError> {
    run(k, &l, args, &Options::default())
}

fn words(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn buffer(args: &[Arg], i: usize) -> &[u8] {
    match &args[i] {
        Arg::Buffer(b) => b,
        Arg::Scalar(_) => panic!("argument {i} is a scalar"),
    }
}

/// `base + scale·i` as a u64 address.
fn addr(b: &mut KernelBuilder, base: Reg, i: Reg, scale: i64) -> Reg {
    let wide = b.cvt(Ty::U64, Ty::U32, None, false, i);
    let off = b.bin(BinOp::Mul, Ty::U64, wide, int_imm(scale));
    b.bin(BinOp::Add, Ty::U64, base, off)
}

fn tid(b: &mut KernelBuilder) -> Reg {
    b.special(Special::Tid(Axis::X))
}

// ---------------------------------------------------------------------------------------------
// Atomics

/// Every thread adds 1 to `bins[tid % 4]` and stores the value it saw to `old[global index]`.
fn histogram() -> Kernel {
    let mut b = KernelBuilder::new("histogram", 64);
    let bins = b.buffer("bins", DType::I32, Access::Written);
    let old = b.buffer("old", DType::I32, Access::Written);
    let t = tid(&mut b);
    let cta = b.special(Special::Ctaid(Axis::X));
    let g = b.fma(Ty::U32, cta, int_imm(64), t);
    let bin = b.bin(BinOp::And, Ty::U32, t, int_imm(3));
    let p = addr(&mut b, bins, bin, 4);
    let seen = b.atom(Space::Global, BinOp::Add, Ty::U32, p, 0, int_imm(1));
    let q = addr(&mut b, old, g, 4);
    b.st(Space::Global, Ty::U32, q, 0, &[seen.into()]);
    b.finish()
}

#[test]
fn global_atomic_adds_apply_in_lane_order_and_return_the_old_value() {
    let k = histogram();
    let mut args = vec![Arg::Buffer(vec![0; 16]), Arg::Buffer(vec![0; 128 * 4])];
    let c = go(&k, launch(2, 64), &mut args).expect("clean");
    assert_eq!(words(buffer(&args, 0)), vec![32; 4]);
    // CTAs, then warps, then lanes run in order: thread g is the (g / 4)-th to hit its bin.
    let old = words(buffer(&args, 1));
    for (g, v) in old.iter().enumerate() {
        assert_eq!(*v, g as u32 / 4, "old[{g}]");
    }
    // One request per warp for the atomic (4 bins in one sector) and one for the store.
    assert_eq!(c.global_requests, 4 * 2, "{c:?}");
}

/// Two warps take the max of their thread indices (signed, offset to be negative) into one
/// shared word with `red`, and into a second with `atom` (the old values are summed per
/// thread to prove they were written), then thread 0 publishes both; thread 32 initializes
/// them. `fence` puts a barrier between the initialization and the atomics; `peek` has warp 1 read the word with a plain
/// load while warp 0's atomics are in the same epoch.
fn shared_max(fence: bool, peek: bool) -> Kernel {
    let mut b = KernelBuilder::new("shared_max", 64);
    let out = b.buffer("out", DType::I32, Access::Written);
    b.shared(8, 8);
    let t = tid(&mut b);
    let first = b.setp(Cmp::Eq, Ty::U32, t, int_imm(0));
    let init = b.setp(Cmp::Eq, Ty::U32, t, int_imm(32));
    b.if_then(init, |b| {
        b.st(Space::Shared, Ty::S32, int_imm(0), 0, &[int_imm(i64::from(i32::MIN)), int_imm(-1000)]);
    });
    if fence {
        b.bar();
    }
    let ts = b.cvt(Ty::S32, Ty::U32, None, false, t);
    let v = b.bin(BinOp::Sub, Ty::S32, ts, int_imm(100));
    b.red(Space::Shared, BinOp::Max, Ty::S32, int_imm(0), 0, v);
    b.atom(Space::Shared, BinOp::Max, Ty::S32, int_imm(4), 0, v);
    if peek {
        let second = b.setp(Cmp::Eq, Ty::U32, t, int_imm(32));
        b.if_then(second, |b| {
            b.ld1(Space::Shared, Ty::S32, int_imm(0), 0);
        });
    }
    b.bar();
    b.if_then(first, |b| {
        let m = b.ld(Space::Shared, Ty::S32, 2, int_imm(0), 0, false);
        b.st(Space::Global, Ty::S32, out, 0, &[m[0].into(), m[1].into()]);
    });
    b.finish()
}

#[test]
fn shared_atomics_of_two_warps_do_not_race_but_a_plain_read_of_their_word_does() {
    let mut args = vec![Arg::Buffer(vec![0; 8])];
    go(&shared_max(true, false), launch(1, 64), &mut args).expect("clean");
    assert_eq!(words(buffer(&args, 0)), vec![(63 - 100) as u32, (63 - 100) as u32]);

    let e = go(&shared_max(true, true), launch(1, 64), &mut args).expect_err("race");
    assert_eq!(e.kind, ErrorKind::SharedRace, "{e}");
    assert_eq!(e.thread, Some([32, 0, 0]), "{e}");

    // Without the first barrier thread 32's initializing store races with warp 0's atomics.
    let e = go(&shared_max(false, false), launch(1, 64), &mut args).expect_err("race");
    assert_eq!(e.kind, ErrorKind::SharedRace, "{e}");
    assert!(e.at.as_ref().is_some_and(|(_, n)| n == "st.shared.v2.s32"), "{e}");
}

/// `red.global.add.f32` of `x[lane]` into `sum` (one warp), and the same into shared memory,
/// published to `sum[1]`.
fn float_sum() -> Kernel {
    let mut b = KernelBuilder::new("float_sum", 32);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let sum = b.buffer("sum", DType::F32, Access::Written);
    b.shared(4, 4);
    let lane = b.special(Special::LaneId);
    let first = b.setp(Cmp::Eq, Ty::U32, lane, int_imm(0));
    b.if_then(first, |b| b.st(Space::Shared, Ty::F32, int_imm(0), 0, &[f32_imm(0.0)]));
    b.bar_warp(u32::MAX);
    let p = addr(&mut b, x, lane, 4);
    let v = b.ld1(Space::Global, Ty::F32, p, 0);
    b.red(Space::Global, BinOp::Add, Ty::F32, sum, 0, v);
    b.red(Space::Shared, BinOp::Add, Ty::F32, int_imm(0), 0, v);
    b.bar_warp(u32::MAX);
    b.if_then(first, |b| {
        let s = b.ld1(Space::Shared, Ty::F32, int_imm(0), 0);
        b.st(Space::Global, Ty::F32, sum, 4, &[s.into()]);
    });
    b.finish()
}

fn run_float_sum(x: &[f32]) -> [f32; 2] {
    let mut args = vec![Arg::Buffer(x.iter().flat_map(|v| v.to_le_bytes()).collect()), Arg::Buffer(vec![0; 8])];
    go(&float_sum(), launch(1, 32), &mut args).expect("clean");
    let w = words(buffer(&args, 1));
    [f32::from_bits(w[0]), f32::from_bits(w[1])]
}

#[test]
fn float_atomic_adds_round_in_lane_order() {
    // 2^24 then 31 ones: each one is lost to rounding in lane order; in any order that sums
    // the ones first they would survive, so the result depends on the order.
    let mut x = vec![1.0f32; 32];
    x[0] = 16_777_216.0;
    let in_order = x.iter().fold(0.0f32, |a, v| a + v);
    let reversed = x.iter().rev().fold(0.0f32, |a, v| a + v);
    assert_ne!(in_order, reversed);
    assert_eq!(run_float_sum(&x), [in_order, in_order]);
    // Global float atomics flush subnormals; shared ones keep them.
    let mut tiny = vec![0.0f32; 32];
    tiny[3] = f32::from_bits(1);
    assert_eq!(run_float_sum(&tiny).map(f32::to_bits), [0, 1]);
}

#[test]
fn wide_and_signed_atomics() {
    let mut b = KernelBuilder::new("wide", 32);
    let out = b.buffer("out", DType::I64, Access::Written);
    let lane = b.special(Special::LaneId);
    let wide = b.cvt(Ty::U64, Ty::U32, None, false, lane);
    let big = b.bin(BinOp::Shl, Ty::U64, wide, int_imm(40));
    b.red(Space::Global, BinOp::Add, Ty::U64, out, 0, big);
    b.red(Space::Global, BinOp::Max, Ty::U64, out, 8, big);
    let ls = b.cvt(Ty::S32, Ty::U32, None, false, lane);
    let s = b.bin(BinOp::Sub, Ty::S32, int_imm(-5), ls);
    b.red(Space::Global, BinOp::Max, Ty::S32, out, 16, s);
    b.red(Space::Global, BinOp::Add, Ty::S32, out, 20, s);
    let k = b.finish();
    let mut args = vec![Arg::Buffer(vec![0; 24])];
    go(&k, launch(1, 32), &mut args).expect("clean");
    let o = buffer(&args, 0);
    let u64_at = |i: usize| u64::from_le_bytes(o[i..i + 8].try_into().expect("8 bytes"));
    assert_eq!(u64_at(0), (0..32u64).sum::<u64>() << 40);
    assert_eq!(u64_at(8), 31 << 40);
    let w = words(&o[16..]);
    // The max of 0 (the buffer's initial value) and negative numbers stays 0.
    assert_eq!(w[0], 0);
    assert_eq!(w[1] as i32, (0..32).map(|l| -5 - l).sum::<i32>());
}

#[test]
fn atomics_check_bounds_alignment_and_access() {
    let build = |offset: i64, access: Access| {
        let mut b = KernelBuilder::new("bad_atom", 32);
        let out = b.buffer("out", DType::I32, access);
        b.red(Space::Global, BinOp::Add, Ty::U32, out, offset, int_imm(1));
        b.finish()
    };
    let cases = [
        (8, Access::Written, ErrorKind::OutOfBounds),
        (2, Access::Written, ErrorKind::Misaligned),
        (0, Access::ReadOnly, ErrorKind::WriteReadOnly),
    ];
    for (offset, access, kind) in cases {
        let mut args = vec![Arg::Buffer(vec![0; 8])];
        let e = go(&build(offset, access), launch(1, 32), &mut args).expect_err("bad");
        assert_eq!(e.kind, kind, "{e}");
    }
    let mut args = vec![Arg::Buffer(vec![0; 8])];
    go(&build(4, Access::Written), launch(1, 32), &mut args).expect("clean");
    assert_eq!(words(buffer(&args, 0)), vec![0, 32]);
}

#[test]
fn the_verifier_refuses_atomics_this_ir_does_not_have() {
    let refused = [
        (Space::Global, BinOp::Max, Ty::F32),
        (Space::Global, BinOp::Min, Ty::U32),
        (Space::Shared, BinOp::Add, Ty::S64),
        (Space::Local, BinOp::Add, Ty::U32),
    ];
    for (space, op, ty) in refused {
        let mut b = KernelBuilder::new("refused", 32);
        b.atom(space, op, ty, int_imm(0), 0, int_imm(1));
        let k = b.finish();
        assert!(verify(&k).is_err(), "{space:?} {op:?} {ty:?}");
    }
    let mut b = KernelBuilder::new("wrong_dst", 32);
    let d = b.reg(Ty::F32);
    b.push(Inst::Atom {
        space: Space::Global,
        op: BinOp::Add,
        ty: Ty::U32,
        dst: Some(d),
        addr: Operand::Imm(0),
        offset: 0,
        src: Operand::Imm(1),
    });
    let e = verify(&b.finish()).expect_err("f32 register for a u32 atomic");
    assert!(e[0].message.contains("expected u32"), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// vote.sync and redux.sync

/// Lane 0 stores, for `x[lane]` (s32): all/any/ballot of `x > 0`, then the add, min and max at
/// s32 and u32, and the and, or and xor at b32.
fn votes_and_reductions() -> Kernel {
    let mut b = KernelBuilder::new("votes", 32);
    let x = b.buffer("x", DType::I32, Access::ReadOnly);
    let out = b.buffer("out", DType::I32, Access::Written);
    let lane = b.special(Special::LaneId);
    let p = addr(&mut b, x, lane, 4);
    // b32, which every 32-bit reduction type takes.
    let v = b.ld1(Space::Global, Ty::B32, p, 0);
    let pos = b.setp(Cmp::Gt, Ty::S32, v, int_imm(0));
    let mut results = Vec::new();
    for mode in [VoteMode::All, VoteMode::Any] {
        let r = b.vote(mode, pos);
        results.push(b.selp(Ty::U32, int_imm(1), int_imm(0), r));
    }
    results.push(b.vote(VoteMode::Ballot, pos));
    for ty in [Ty::S32, Ty::U32] {
        for op in [BinOp::Add, BinOp::Min, BinOp::Max] {
            results.push(b.redux(op, ty, v));
        }
    }
    for op in [BinOp::And, BinOp::Or, BinOp::Xor] {
        results.push(b.redux(op, Ty::B32, v));
    }
    let first = b.setp(Cmp::Eq, Ty::U32, lane, int_imm(0));
    b.if_then(first, |b| {
        for (i, r) in results.iter().enumerate() {
            b.st(Space::Global, Ty::B32, out, 4 * i as i64, &[(*r).into()]);
        }
    });
    b.finish()
}

#[test]
fn votes_and_reductions_combine_every_lane() {
    let k = votes_and_reductions();
    let cases: [Vec<i32>; 3] = [
        (0..32).map(|l| l * 7 - 100).collect(),
        (0..32).map(|l| l + 1).collect(),
        (0..32).map(|l| if l == 5 { 1 << 30 } else { -3 - l }).collect(),
    ];
    for x in cases {
        let mut args = vec![Arg::Buffer(x.iter().flat_map(|v| v.to_le_bytes()).collect()), Arg::Buffer(vec![0; 48])];
        go(&k, launch(1, 32), &mut args).expect("clean");
        let u: Vec<u32> = x.iter().map(|v| *v as u32).collect();
        let ballot = x.iter().enumerate().filter(|(_, v)| **v > 0).fold(0u32, |m, (l, _)| m | 1 << l);
        let want = vec![
            u32::from(x.iter().all(|v| *v > 0)),
            u32::from(x.iter().any(|v| *v > 0)),
            ballot,
            x.iter().fold(0i32, |a, v| a.wrapping_add(*v)) as u32,
            x.iter().copied().min().unwrap_or(0) as u32,
            x.iter().copied().max().unwrap_or(0) as u32,
            u.iter().fold(0u32, |a, v| a.wrapping_add(*v)),
            u.iter().copied().min().unwrap_or(0),
            u.iter().copied().max().unwrap_or(0),
            u.iter().fold(u32::MAX, |a, v| a & v),
            u.iter().fold(0, |a, v| a | v),
            u.iter().fold(0, |a, v| a ^ v),
        ];
        assert_eq!(words(buffer(&args, 1)), want, "{x:?}");
    }
}

/// The lanes below 16 sum their lane ids with `redux.sync.add.u32` under member mask `mask`.
fn half_warp_sum(mask: u32) -> Kernel {
    let mut b = KernelBuilder::new("half_warp_sum", 32);
    let out = b.buffer("out", DType::I32, Access::Written);
    let lane = b.special(Special::LaneId);
    let low = b.setp(Cmp::Lt, Ty::U32, lane, int_imm(16));
    b.if_then(low, |b| {
        let dst = b.reg(Ty::U32);
        b.push(Inst::Redux { op: BinOp::Add, ty: Ty::U32, dst, a: lane.into(), mask });
        let q = addr(b, out, lane, 4);
        b.st(Space::Global, Ty::U32, q, 0, &[dst.into()]);
    });
    b.finish()
}

#[test]
fn a_collective_under_divergence_needs_the_mask_of_the_lanes_executing_it() {
    let mut args = vec![Arg::Buffer(vec![0; 64])];
    let e = go(&half_warp_sum(u32::MAX), launch(1, 32), &mut args).expect_err("mask");
    assert_eq!(e.kind, ErrorKind::SyncMask, "{e}");
    assert!(e.at.as_ref().is_some_and(|(_, n)| n == "redux.sync.add.u32"), "{e}");
    go(&half_warp_sum(0xffff), launch(1, 32), &mut args).expect("clean");
    assert_eq!(words(buffer(&args, 0))[..16], [120; 16]);
}

#[test]
fn the_verifier_refuses_reductions_this_ir_does_not_have() {
    for (op, ty) in [(BinOp::Add, Ty::B32), (BinOp::And, Ty::U32), (BinOp::Mul, Ty::U32), (BinOp::Max, Ty::F32)] {
        let mut b = KernelBuilder::new("refused", 32);
        b.redux(op, ty, int_imm(1));
        assert!(verify(&b.finish()).is_err(), "{op:?} {ty:?}");
    }
    let mut b = KernelBuilder::new("vote_of_a_word", 32);
    let w = b.mov(Ty::U32, int_imm(1));
    let dst = b.reg(Ty::Pred);
    b.push(Inst::Vote { mode: VoteMode::Any, dst, a: w, mask: u32::MAX });
    assert!(verify(&b.finish()).is_err());
}

// ---------------------------------------------------------------------------------------------
// cp.async

const TILES: u32 = 4;

/// A double-buffered copy: 64 threads stream `TILES` tiles of 1024 bytes through two shared
/// stages with `cp.async.cg` (16 bytes per thread), the next tile's copy in flight while the
/// current one is read; thread `t` writes the 16 bytes thread `63 − t` copied (so the data
/// crosses threads and warps), to where they came from in `out`. `wait` is the
/// `cp.async.wait_group` before each tile is read (`None`: no wait at all).
fn double_buffer(wait: Option<u32>) -> Kernel {
    let mut b = KernelBuilder::new("double_buffer", 64);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let out = b.buffer("out", DType::F32, Access::Written);
    b.shared(2048, 16);
    let t = tid(&mut b);
    let mine = b.bin(BinOp::Mul, Ty::U32, t, int_imm(16));
    let other = b.bin(BinOp::Sub, Ty::U32, int_imm(63), t);
    let theirs = b.bin(BinOp::Mul, Ty::U32, other, int_imm(16));
    // Issues tile `tile` into its stage.
    let issue = |b: &mut KernelBuilder, tile: Operand| {
        let base = b.bin(BinOp::Mul, Ty::U32, tile, int_imm(1024));
        let g = b.bin(BinOp::Add, Ty::U32, base, mine);
        let src = addr(b, x, g, 1);
        let stage = b.bin(BinOp::And, Ty::U32, tile, int_imm(1));
        let s = b.fma(Ty::U32, stage, int_imm(1024), mine);
        let dst = b.cvt(Ty::U64, Ty::U32, None, false, s);
        b.cp_async(true, 16, dst, src, None);
    };
    issue(&mut b, int_imm(0));
    b.cp_async_commit();
    b.for_count(int_imm(i64::from(TILES)), |b, i| {
        let next = b.bin(BinOp::Add, Ty::U32, i, int_imm(1));
        let more = b.setp(Cmp::Lt, Ty::U32, next, int_imm(i64::from(TILES)));
        b.if_then(more, |b| issue(b, next.into()));
        // The last iteration commits an empty group, so `wait_group 1` still covers tile i.
        b.cp_async_commit();
        if let Some(n) = wait {
            b.cp_async_wait(n);
        }
        b.bar();
        let stage = b.bin(BinOp::And, Ty::U32, i, int_imm(1));
        let s = b.fma(Ty::U32, stage, int_imm(1024), theirs);
        let sa = b.cvt(Ty::U64, Ty::U32, None, false, s);
        let v = b.ld(Space::Shared, Ty::B32, 4, sa, 0, false);
        let base = b.bin(BinOp::Mul, Ty::U32, i, int_imm(1024));
        let g = b.bin(BinOp::Add, Ty::U32, base, theirs);
        let dst = addr(b, out, g, 1);
        let vals: Vec<Operand> = v.iter().map(|r| Operand::Reg(*r)).collect();
        b.st(Space::Global, Ty::B32, dst, 0, &vals);
        b.bar();
    });
    b.finish()
}

fn double_buffer_args() -> (Vec<Arg>, Vec<u8>) {
    let x: Vec<u8> = (0..TILES * 1024).map(|i| (i * 7 + i / 256) as u8).collect();
    (vec![Arg::Buffer(x.clone()), Arg::Buffer(vec![0; x.len()])], x)
}

#[test]
fn a_double_buffered_copy_delivers_the_input() {
    let (mut args, x) = double_buffer_args();
    let c = go(&double_buffer(Some(1)), launch(1, 64), &mut args).expect("clean");
    assert_eq!(buffer(&args, 1), &x[..]);
    assert_eq!(c.bytes_loaded, u64::from(TILES) * 1024, "{c:?}");
}

#[test]
fn reading_a_stage_before_its_wait_is_an_error() {
    for wait in [None, Some(2)] {
        let (mut args, _) = double_buffer_args();
        let e = go(&double_buffer(wait), launch(1, 64), &mut args).expect_err("pending");
        assert_eq!(e.kind, ErrorKind::CpAsyncPending, "{wait:?}: {e}");
        assert!(e.at.as_ref().is_some_and(|(_, n)| n == "ld.shared.v4.b32"), "{e}");
    }
}

/// One warp copies `x` with `cp.async.ca` of `size` bytes and source size `src_size`, then
/// (when `wait_all`) waits, crosses a barrier and writes shared memory back to `out`.
fn small_copy(size: u32, src_size: Option<Operand>, wait_all: bool) -> Kernel {
    let mut b = KernelBuilder::new("small_copy", 32);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let out = b.buffer("out", DType::F32, Access::Written);
    b.shared(32 * 16, 16);
    let lane = b.special(Special::LaneId);
    let off = b.bin(BinOp::Mul, Ty::U32, lane, int_imm(i64::from(size)));
    let src = addr(&mut b, x, off, 1);
    let dst = b.cvt(Ty::U64, Ty::U32, None, false, off);
    b.cp_async(size == 16, size, dst, src, src_size);
    b.bar();
    if wait_all {
        b.cp_async_wait_all();
        let v = b.ld(Space::Shared, Ty::B32, size as usize / 4, dst, 0, false);
        let o = addr(&mut b, out, off, 1);
        let vals: Vec<Operand> = v.iter().map(|r| Operand::Reg(*r)).collect();
        b.st(Space::Global, Ty::B32, o, 0, &vals);
    }
    b.finish()
}

#[test]
fn bytes_past_the_source_size_are_zero_and_only_read_bytes_are_bounds_checked() {
    let x: Vec<u8> = (0..32 * 8).map(|i| i as u8 | 1).collect();
    for (size, src_size, keep) in [(4, None, 4), (8, Some(int_imm(5)), 5), (8, Some(int_imm(0)), 0)] {
        let mut args = vec![Arg::Buffer(x.clone()), Arg::Buffer(vec![0xee; 32 * 8])];
        go(&small_copy(size, src_size, true), launch(1, 32), &mut args).expect("clean");
        let out = buffer(&args, 1);
        for lane in 0..32 {
            let at = lane * size as usize;
            let want: Vec<u8> = (0..size as usize).map(|k| if k < keep { x[at + k] } else { 0 }).collect();
            assert_eq!(&out[at..at + size as usize], &want[..], "size {size}, lane {lane}");
        }
    }
    // 16-byte copies of a 256-byte input: lanes 16.. read past its end, unless they read nothing.
    let mut args = vec![Arg::Buffer(x.clone()), Arg::Buffer(vec![0; 32 * 16])];
    let e = go(&small_copy(16, None, true), launch(1, 32), &mut args).expect_err("oob");
    assert_eq!((e.kind, e.thread), (ErrorKind::OutOfBounds, Some([16, 0, 0])), "{e}");
    let mut args = vec![Arg::Buffer(x), Arg::Buffer(vec![0; 32 * 16])];
    go(&small_copy(16, Some(int_imm(0)), true), launch(1, 32), &mut args).expect("nothing read");
}

#[test]
fn a_barrier_does_not_complete_copies_and_exiting_with_them_is_an_error() {
    let x = vec![1u8; 32 * 4];
    let mut args = vec![Arg::Buffer(x), Arg::Buffer(vec![0; 32 * 4])];
    let e = go(&small_copy(4, None, false), launch(1, 32), &mut args).expect_err("in flight at exit");
    assert_eq!((e.kind, e.thread), (ErrorKind::CpAsyncPending, Some([0, 0, 0])), "{e}");
}

#[test]
fn the_verifier_refuses_copy_sizes_cp_async_does_not_have() {
    for (cg, size, src_size) in [(true, 8, None), (false, 2, None), (false, 32, None), (false, 8, Some(int_imm(9)))] {
        let mut b = KernelBuilder::new("refused", 32);
        b.cp_async(cg, size, int_imm(0), int_imm(0), src_size);
        assert!(verify(&b.finish()).is_err(), "{cg} {size} {src_size:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// fp8 → f16x2 unpacking

/// Thread `i` (of 65,536) unpacks the code pair `x[i]` (16 bits) as e4m3x2 into `y[2i]` and as
/// e5m2x2 into `y[2i + 1]` (f16x2 words).
fn unpack_every_pair() -> Kernel {
    let mut b = KernelBuilder::new("unpack", 256);
    let x = b.buffer("x", DType::U8, Access::ReadOnly);
    let y = b.buffer("y", DType::U8, Access::Written);
    let t = tid(&mut b);
    let cta = b.special(Special::Ctaid(Axis::X));
    let i = b.fma(Ty::U32, cta, int_imm(256), t);
    let p = addr(&mut b, x, i, 2);
    let pair = b.ld1(Space::Global, Ty::B16, p, 0);
    let e4 = b.cvt_unpack(Ty::E4m3x2, pair);
    let e5 = b.cvt_unpack(Ty::E5m2x2, pair);
    let q = addr(&mut b, y, i, 8);
    b.st(Space::Global, Ty::B32, q, 0, &[e4.into(), e5.into()]);
    b.finish()
}

/// An fp8 code as the f16 of the same value, by `lathe-numerics`' decoder and encoder.
fn fp8_to_f16(e4m3: bool, code: u8) -> u32 {
    let v = if e4m3 { lathe_numerics::e4m3_to_f32(code) } else { lathe_numerics::e5m2_to_f32(code) };
    u32::from(lathe_numerics::f32_to_f16_bits(v))
}

#[test]
fn unpacking_every_fp8_pair_matches_lathe_numerics_with_the_upper_byte_high() {
    let k = unpack_every_pair();
    verify(&k).expect("verifies");
    let x: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    let mut args = vec![Arg::Buffer(x), Arg::Buffer(vec![0; 65536 * 8])];
    go(&k, launch(256, 256), &mut args).expect("clean");
    let y = words(buffer(&args, 1));
    for code in 0..=u16::MAX {
        let (hi, lo) = ((code >> 8) as u8, code as u8);
        let (e4, e5) = (y[2 * code as usize], y[2 * code as usize + 1]);
        assert_eq!(e4, fp8_to_f16(true, hi) << 16 | fp8_to_f16(true, lo), "e4m3x2 {code:#06x}");
        assert_eq!(e5, fp8_to_f16(false, hi) << 16 | fp8_to_f16(false, lo), "e5m2x2 {code:#06x}");
    }
    // Exact: each half holds the code's value (NaN stays NaN); e5m2 is the upper byte of an f16
    // (checked without lathe-numerics' decoder), and its NaNs and e4m3's come out quiet, signed.
    let half = |w: u32, upper: bool| (if upper { w >> 16 } else { w & 0xffff }) as u16;
    for code in 0..=255u8 {
        let (e4, e5) = (y[2 * (usize::from(code) << 8)], y[2 * usize::from(code) + 1]);
        let v4 = lathe_numerics::f16_bits_to_f32(half(e4, true));
        let want = lathe_numerics::e4m3_to_f32(code);
        assert!(v4 == want || (v4.is_nan() && want.is_nan()), "e4m3 {code:#04x}: {v4} vs {want}");
        let (sign, mag) = (u16::from(code & 0x80) << 8, code & 0x7f);
        match mag {
            0x7d..=0x7f => assert_eq!(half(e5, false), sign | 0x7e00, "e5m2 NaN {code:#04x}"),
            _ => assert_eq!(half(e5, false), u16::from(code) << 8, "e5m2 {code:#04x}"),
        }
        if mag == 0x7f {
            assert_eq!(half(e4, true), sign | 0x7e00, "e4m3 NaN {code:#04x}");
        }
    }
}

/// Thread `i` packs `(a[i], b[i])` into `pack` (e4m3x2 or e5m2x2), unpacks it, and stores the
/// result beside the same pair packed straight into f16x2.
fn pack_then_unpack(pack: Ty) -> Kernel {
    let mut b = KernelBuilder::new("round_trip", 256);
    let a = b.buffer("a", DType::F32, Access::ReadOnly);
    let bb = b.buffer("b", DType::F32, Access::ReadOnly);
    let y = b.buffer("y", DType::U8, Access::Written);
    let i = tid(&mut b);
    let pa = addr(&mut b, a, i, 4);
    let pb = addr(&mut b, bb, i, 4);
    let va = b.ld1(Space::Global, Ty::F32, pa, 0);
    let vb = b.ld1(Space::Global, Ty::F32, pb, 0);
    let fp8 = b.cvt_pack(pack, va, vb);
    let back = b.cvt_unpack(pack, fp8);
    let direct = b.cvt_pack(Ty::F16x2, va, vb);
    let q = addr(&mut b, y, i, 8);
    b.st(Space::Global, Ty::B32, q, 0, &[back.into(), direct.into()]);
    b.finish()
}

#[test]
fn packing_then_unpacking_a_representable_pair_is_the_identity() {
    for (pack, decode) in [
        (Ty::E4m3x2, lathe_numerics::e4m3_to_f32 as fn(u8) -> f32),
        (Ty::E5m2x2, lathe_numerics::e5m2_to_f32 as fn(u8) -> f32),
    ] {
        // Every finite value of the format, high, beside the values in reverse order, low.
        let vals: Vec<f32> = (0..=255u8).map(decode).filter(|v| v.is_finite()).collect();
        let n = vals.len();
        let rev: Vec<f32> = vals.iter().rev().copied().collect();
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut args = vec![Arg::Buffer(bytes(&vals)), Arg::Buffer(bytes(&rev)), Arg::Buffer(vec![0; n * 8])];
        go(&pack_then_unpack(pack), launch(1, n as u32), &mut args).expect("clean");
        let y = words(buffer(&args, 2));
        for j in 0..n {
            assert_eq!(y[2 * j], y[2 * j + 1], "{pack:?} ({}, {})", vals[j], rev[j]);
            let hi = lathe_numerics::f16_bits_to_f32((y[2 * j] >> 16) as u16);
            let lo = lathe_numerics::f16_bits_to_f32(y[2 * j] as u16);
            assert_eq!((hi.to_bits(), lo.to_bits()), (vals[j].to_bits(), rev[j].to_bits()), "{pack:?}");
        }
    }
}

#[test]
fn the_verifier_refuses_unpacks_this_ir_does_not_have() {
    let refused = |rounding: Option<Rounding>, satfinite: bool, to: Ty, src_ty: Ty| {
        let mut b = KernelBuilder::new("refused", 32);
        let src = b.mov(src_ty, int_imm(0x3c38));
        b.cvt(to, Ty::E4m3x2, rounding, satfinite, src);
        let e = verify(&b.finish()).expect_err("refused");
        e[0].to_string()
    };
    let e = refused(None, false, Ty::F16x2, Ty::B16);
    assert!(e.contains("cvt.f16x2.e4m3x2 takes rounding Some(Rn), not None"), "{e}");
    assert!(refused(Some(Rounding::Rz), false, Ty::F16x2, Ty::B16).contains("takes rounding"));
    assert!(refused(Some(Rounding::Rn), true, Ty::F16x2, Ty::B16).contains("has no .satfinite"));
    assert!(refused(Some(Rounding::Rn), false, Ty::F16x2, Ty::F16).contains("is f16, expected e4m3x2"));
    assert!(refused(Some(Rounding::Rn), false, Ty::Bf16x2, Ty::B16).contains("is not supported"));
    assert!(refused(Some(Rounding::Rn), false, Ty::F32, Ty::B16).contains("is not supported"));
    // A b16 or e4m3x2 register is a source, and the result is 32 bits.
    for src_ty in [Ty::B16, Ty::E4m3x2] {
        let mut b = KernelBuilder::new("unpack", 32);
        let src = b.mov(src_ty, int_imm(0x3c38));
        b.cvt_unpack(Ty::E4m3x2, src);
        verify(&b.finish()).unwrap_or_else(|e| panic!("{src_ty:?}: {e:?}"));
    }
    let mut b = KernelBuilder::new("narrow_dst", 32);
    let (src, dst) = (b.mov(Ty::B16, int_imm(0)), b.reg(Ty::B16));
    b.push(Inst::Cvt {
        to: Ty::F16x2,
        from: Ty::E5m2x2,
        rounding: Some(Rounding::Rn),
        satfinite: false,
        dst,
        src: src.into(),
    });
    assert!(verify(&b.finish()).is_err());
}

// ---------------------------------------------------------------------------------------------
// griddepcontrol

/// In one launch (no predecessor, no dependent) both PDL instructions are no-ops that count as
/// synchronisation; the discipline between launches is the multi-launch runner's to check.
#[test]
fn griddepcontrol_alone_is_a_no_op_counted_as_sync() {
    let mut b = KernelBuilder::new("pdl", 64);
    let y = b.buffer("y", DType::I32, Access::Written);
    b.grid_dep_wait();
    let t = tid(&mut b);
    let q = addr(&mut b, y, t, 4);
    b.st(Space::Global, Ty::U32, q, 0, &[t.into()]);
    b.grid_dep_launch_dependents();
    let k = b.finish();
    verify(&k).expect("verifies");
    let mut args = vec![Arg::Buffer(vec![0; 64 * 4])];
    let c = go(&k, launch(1, 64), &mut args).expect("clean");
    assert_eq!(words(buffer(&args, 0)), (0..64).collect::<Vec<u32>>());
    assert_eq!(c.sync, 2 * 2, "{c:?}");
}

// ---------------------------------------------------------------------------------------------
// Cache hints

/// `y[4g..4g+4] = 1.5 · x[4g..4g+4] + 0.25` for thread `g` of the grid, with one v4 load and
/// one v4 store carrying the given hints.
fn scale4(nc: bool, load: Option<CacheHint>, store: Option<CacheHint>) -> Kernel {
    let mut b = KernelBuilder::new("scale4", 64);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let y = b.buffer("y", DType::F32, Access::Written);
    let t = tid(&mut b);
    let cta = b.special(Special::Ctaid(Axis::X));
    let g = b.fma(Ty::U32, cta, int_imm(64), t);
    let src = addr(&mut b, x, g, 16);
    let v = b.ld_hint(Space::Global, Ty::F32, 4, src, 0, nc, load);
    let out: Vec<Operand> = v.iter().map(|r| b.fma(Ty::F32, *r, f32_imm(1.5), f32_imm(0.25)).into()).collect();
    let dst = addr(&mut b, y, g, 16);
    b.st_hint(Space::Global, Ty::F32, dst, 0, &out, store);
    b.finish()
}

fn scale4_args() -> Vec<Arg> {
    let x: Vec<u8> = (0..2 * 64 * 4).flat_map(|i| (i as f32 * 0.375 - 17.0).to_bits().to_le_bytes()).collect();
    let n = x.len();
    vec![Arg::Buffer(x), Arg::Buffer(vec![0; n])]
}

/// The simulator models no caches: every legal hint gives the unhinted kernel's output bit for
/// bit and the same counters, and keeps every check (an out-of-bounds hinted load fails,
/// named with its hint).
#[test]
fn cache_hints_change_no_result_and_no_counter() {
    let mut want = scale4_args();
    let plain = go(&scale4(false, None, None), launch(2, 64), &mut want).expect("clean");
    let y = buffer(&want, 1).to_vec();
    assert!(y.iter().any(|&b| b != 0));
    let mut runs = 0;
    for nc in [false, true] {
        for load in std::iter::once(None).chain(CacheHint::ALL.map(Some)) {
            let legal = load.is_none_or(|h| if nc { h.on_nc_load() } else { h.on_load() });
            if !legal {
                continue;
            }
            for store in [None, Some(CacheHint::Cs), Some(CacheHint::Wt), Some(CacheHint::L1NoAllocate)] {
                let k = scale4(nc, load, store);
                verify(&k).unwrap_or_else(|e| panic!("{nc} {load:?} {store:?}: {e:?}"));
                let mut args = scale4_args();
                let c = go(&k, launch(2, 64), &mut args).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(buffer(&args, 1), &y[..], "{nc} {load:?} {store:?}");
                assert_eq!(c, plain, "{nc} {load:?} {store:?}");
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 4 * (1 + 8) + 4 * (1 + 6));
    // Three CTAs for two CTAs' data: the third CTA's hinted load is out of bounds.
    let mut args = scale4_args();
    let e = go(&scale4(true, Some(CacheHint::Cs), Some(CacheHint::Cs)), launch(3, 64), &mut args).expect_err("oob");
    assert_eq!(e.kind, ErrorKind::OutOfBounds, "{e}");
    assert_eq!(e.at.as_ref().map(|(_, n)| n.as_str()), Some("ld.global.cs.nc.v4.f32"), "{e}");
    assert_eq!(e.cta, [2, 0, 0], "{e}");
}

#[test]
fn f32_division_and_square_root_are_ieee() {
    // y[i] = x[i] / x[i + 1] and sqrt(x[i]), against Rust's IEEE operations bit for bit.
    let k = lathe_kernel::text::parse(
        r#"
kernel @div_sqrt max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2 : u32
  reg %r3 : u64
  reg %r4, %r5, %r6, %r7 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r3 = cvt.u64.u32 %r2
  %r3 = mul.u64 %r3, 4
  %r0 = add.u64 %r0, %r3
  %r4 = ld.global.f32 [%r0]
  %r5 = ld.global.f32 [%r0 + 4]
  %r6 = div.f32 %r4, %r5
  %r7 = sqrt.f32 %r4
  %r1 = add.u64 %r1, %r3
  st.global.f32 [%r1], %r6
  st.global.f32 [%r1 + 128], %r7
}
"#,
    )
    .expect("parses");
    let xs: Vec<f32> = vec![
        1.0,
        3.0,
        -0.0,
        0.0,
        f32::INFINITY,
        -2.5,
        f32::NAN,
        1e-40,
        7.0,
        f32::MAX,
        1e-45,
        -1.0,
        2.0,
        9.0,
        0.1,
        0.3,
        16.0,
        1e30,
        1e-30,
        5.5,
        -3.25,
        123.456,
        1.0 / 3.0,
        2.0f32.sqrt(),
        4.0,
        f32::MIN_POSITIVE,
        6.0,
        8.5,
        0.5,
        1.5,
        2.5,
        3.5,
        4.5,
    ];
    let bytes: Vec<u8> = xs.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut args = vec![Arg::Buffer(bytes), Arg::Buffer(vec![0; 256])];
    run(&k, &Launch { grid: [1, 1, 1], block: [32, 1, 1] }, &mut args, &Options::default()).expect("clean");
    let Arg::Buffer(y) = &args[1] else { panic!("a buffer") };
    let out: Vec<f32> = y.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    for i in 0..32 {
        assert_eq!(out[i].to_bits(), (xs[i] / xs[i + 1]).to_bits(), "{} / {}", xs[i], xs[i + 1]);
        assert_eq!(out[32 + i].to_bits(), xs[i].sqrt().to_bits(), "sqrt {}", xs[i]);
    }
}
