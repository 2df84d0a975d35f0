//! The bytes-in-flight counter: how much global data a warp has requested and not yet used,
//! the quantity that (times the warps an SM holds) decides whether a kernel can cover memory
//! latency. Unrolling independent loads ahead of their use raises it; a load used at once
//! keeps it at one load's bytes.

use lathe_kernel::build::{int_imm, KernelBuilder};
use lathe_kernel::ir::{Access, Axis, BinOp, Kernel, Operand, Space, Special, Ty};
use lathe_kernel::sim::{run, Arg, Counters, Launch, Options};
use lathe_numerics::DType;

/// Each of 32 threads sums 4 vectors of 4 f32 (16 bytes each, a warp-wide 512 bytes per load)
/// and stores the sum; `ahead` issues the 4 loads before the first add, otherwise each load is
/// added in before the next is issued.
fn sum4(ahead: bool) -> Kernel {
    let mut b = KernelBuilder::new(if ahead { "ahead" } else { "in_turn" }, 32);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let y = b.buffer("y", DType::F32, Access::Written);
    let tid = b.special(Special::Tid(Axis::X));
    let wide = b.cvt(Ty::U64, Ty::U32, None, false, tid);
    let off16 = b.bin(BinOp::Mul, Ty::U64, wide, int_imm(16));
    let px = b.bin(BinOp::Add, Ty::U64, x, off16);
    let mut acc: Option<lathe_kernel::ir::Reg> = None;
    let mut add_in = |b: &mut KernelBuilder, v: Vec<lathe_kernel::ir::Reg>| {
        for r in v {
            acc = Some(match acc {
                None => b.bin(BinOp::Add, Ty::F32, r, lathe_kernel::build::f32_imm(0.0)),
                Some(a) => b.bin(BinOp::Add, Ty::F32, a, r),
            });
        }
    };
    if ahead {
        let loads: Vec<Vec<_>> = (0..4).map(|k| b.ld(Space::Global, Ty::F32, 4, px, 512 * k, true)).collect();
        for v in loads {
            add_in(&mut b, v);
        }
    } else {
        for k in 0..4 {
            let v = b.ld(Space::Global, Ty::F32, 4, px, 512 * k, true);
            add_in(&mut b, v);
        }
    }
    let off4 = b.bin(BinOp::Mul, Ty::U64, wide, int_imm(4));
    let py = b.bin(BinOp::Add, Ty::U64, y, off4);
    let s: Operand = acc.expect("four loads").into();
    b.st(Space::Global, Ty::F32, py, 0, &[s]);
    b.finish()
}

fn go(k: &Kernel) -> (Counters, Vec<f32>) {
    let x: Vec<u8> = (0..512).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut args = vec![Arg::Buffer(x), Arg::Buffer(vec![0; 128])];
    let c = run(k, &Launch { grid: [1, 1, 1], block: [32, 1, 1] }, &mut args, &Options::default()).expect("clean");
    let Arg::Buffer(y) = &args[1] else { panic!("a buffer") };
    (c, y.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[test]
fn loads_issued_ahead_of_their_use_are_in_flight_together() {
    let (ahead, ya) = go(&sum4(true));
    let (in_turn, yt) = go(&sum4(false));
    // Thread t sums elements 4t..4t+4 of each of the 4 blocks of 128 floats.
    for (t, (&a, &b)) in ya.iter().zip(&yt).enumerate() {
        let want: f32 = (0..4).flat_map(|k| (0..4).map(move |j| (128 * k + 4 * t + j) as f32)).sum();
        assert_eq!((a, b), (want, want), "thread {t}");
    }
    assert_eq!(ahead.max_bytes_in_flight, 4 * 512, "{ahead:?}");
    assert_eq!(in_turn.max_bytes_in_flight, 512, "{in_turn:?}");
    assert_eq!(ahead.bytes_loaded, in_turn.bytes_loaded);
}
