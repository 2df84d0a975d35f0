//! The simulator's speed in warp instructions per second, on one core (the simulator is
//! single-threaded): an ALU-bound kernel (a loop of f32 `fma`) and a memory-bound one (a
//! coalesced vector add through global memory, every check on). Goals from issue L5, not
//! assertions: ≥ 5 M/s ALU-bound, ≥ 1 M/s with every check on. Prints, never fails on time.
//!
//! ```sh
//! cargo bench -p lathe-kernel --bench sim_rate            # release
//! cargo bench -p lathe-kernel --bench sim_rate --profile ci
//! ```

use std::time::Instant;

use lathe_kernel::build::{f32_imm, int_imm, KernelBuilder};
use lathe_kernel::ir::{Access, Axis, BinOp, Cmp, Kernel, Space, Special, Ty};
use lathe_kernel::sim::{run, Arg, Launch, Options};
use lathe_numerics::DType;

/// Each thread runs `iters` dependent f32 fmas.
fn alu(iters: i64) -> Kernel {
    let mut b = KernelBuilder::new("alu", 256);
    let y = b.buffer("y", DType::F32, Access::Written);
    let tid = b.special(Special::Tid(Axis::X));
    let acc = b.cvt(Ty::F32, Ty::U32, None, false, tid);
    b.for_count(int_imm(iters), |b, _| {
        let next = b.fma(Ty::F32, acc, f32_imm(0.999), f32_imm(0.5));
        b.push(lathe_kernel::ir::Inst::Mov { dst: acc, src: next.into() });
    });
    // Each CTA its own slice of `y`: a shared one would be a cross-CTA race.
    let cta = b.special(Special::Ctaid(Axis::X));
    let ntid = b.special(Special::Ntid(Axis::X));
    let i = b.fma(Ty::U32, cta, ntid, tid);
    let wide = b.cvt(Ty::U64, Ty::U32, None, false, i);
    let off = b.bin(BinOp::Mul, Ty::U64, wide, int_imm(4));
    let p = b.bin(BinOp::Add, Ty::U64, y, off);
    b.st(Space::Global, Ty::F32, p, 0, &[acc.into()]);
    b.finish()
}

/// `c[i] = a[i] + b[i]`, bounds-checked.
fn vector_add() -> Kernel {
    let mut b = KernelBuilder::new("vector_add", 256);
    let a = b.buffer("a", DType::F32, Access::ReadOnly);
    let x = b.buffer("b", DType::F32, Access::ReadOnly);
    let c = b.buffer("c", DType::F32, Access::Written);
    let n = b.scalar("n", Ty::U32);
    let tid = b.special(Special::Tid(Axis::X));
    let cta = b.special(Special::Ctaid(Axis::X));
    let ntid = b.special(Special::Ntid(Axis::X));
    let i = b.fma(Ty::U32, cta, ntid, tid);
    let inside = b.setp(Cmp::Lt, Ty::U32, i, n);
    b.if_then(inside, |b| {
        let wide = b.cvt(Ty::U64, Ty::U32, None, false, i);
        let off = b.bin(BinOp::Mul, Ty::U64, wide, int_imm(4));
        let pa = b.bin(BinOp::Add, Ty::U64, a, off);
        let pb = b.bin(BinOp::Add, Ty::U64, x, off);
        let pc = b.bin(BinOp::Add, Ty::U64, c, off);
        let va = b.ld(Space::Global, Ty::F32, 1, pa, 0, true)[0];
        let vb = b.ld(Space::Global, Ty::F32, 1, pb, 0, true)[0];
        let s = b.bin(BinOp::Add, Ty::F32, va, vb);
        b.st(Space::Global, Ty::F32, pc, 0, &[s.into()]);
    });
    b.finish()
}

fn rate(name: &str, k: &Kernel, launch: Launch, mut args: Vec<Arg>) {
    let mut best = f64::INFINITY;
    let mut instructions = 0;
    for _ in 0..3 {
        let t = Instant::now();
        match run(k, &launch, &mut args, &Options::default()) {
            Ok(c) => instructions = c.instructions,
            Err(e) => {
                eprintln!("sim_rate: {e}");
                std::process::exit(1);
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{name:<12} {instructions:>10} warp instructions  {best:>8.3} s  {:>8.2} M warp-instr/s",
        instructions as f64 / best / 1e6
    );
}

fn main() {
    rate("alu", &alu(10_000), Launch { grid: [8, 1, 1], block: [256, 1, 1] }, vec![Arg::Buffer(vec![0; 8 * 256 * 4])]);
    let n = 1 << 20;
    let bytes = vec![0u8; n * 4];
    rate(
        "vector_add",
        &vector_add(),
        Launch { grid: [(n / 256) as u32, 1, 1], block: [256, 1, 1] },
        vec![Arg::Buffer(bytes.clone()), Arg::Buffer(bytes.clone()), Arg::Buffer(bytes), Arg::Scalar(n as u64)],
    );
}
