//! Races between the CTAs of one launch on global memory (`CrossCtaRace`) and float atomics
//! whose result depends on the order CTAs run in (`OrderDependent`): each broken kernel fails
//! with its error, located, next to a corrected twin that runs clean.

use lathe_kernel::build::{int_imm, KernelBuilder};
use lathe_kernel::ir::{Access, Axis, BinOp, Cmp, Kernel, Operand, Reg, Space, Special, Ty};
use lathe_kernel::sim::{run, Arg, Counters, ErrorKind, Launch, Options, SimError};
use lathe_numerics::DType;

fn launch(grid: u32, block: u32) -> Launch {
    Launch { grid: [grid, 1, 1], block: [block, 1, 1] }
}

fn go(k: &Kernel, l: Launch, args: &mut [Arg]) -> Result<Counters, SimError> {
    run(k, &l, args, &Options::default())
}

fn go_orders(k: &Kernel, l: Launch, args: &mut [Arg], orders: usize) -> Result<Counters, SimError> {
    run(k, &l, args, &Options { cta_orders: orders, ..Options::default() })
}

fn words(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn bytes(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn buffer(args: &[Arg], i: usize) -> &[u8] {
    match &args[i] {
        Arg::Buffer(b) => b,
        Arg::Scalar(_) => panic!("argument {i} is a scalar"),
    }
}

/// `base + scale·i` as a u64 address.
fn addr(b: &mut KernelBuilder, base: Reg, i: impl Into<Operand>, scale: i64) -> Reg {
    let wide = b.cvt(Ty::U64, Ty::U32, None, false, i);
    let off = b.bin(BinOp::Mul, Ty::U64, wide, int_imm(scale));
    b.bin(BinOp::Add, Ty::U64, base, off)
}

/// `(%ctaid.x, %tid.x, %ctaid.x · %ntid.x + %tid.x)`.
fn ids(b: &mut KernelBuilder) -> (Reg, Reg, Reg) {
    let cta = b.special(Special::Ctaid(Axis::X));
    let t = b.special(Special::Tid(Axis::X));
    let n = b.special(Special::Ntid(Axis::X));
    let g = b.fma(Ty::U32, cta, n, t);
    (cta, t, g)
}

/// The error, with its kind checked.
fn expect(r: Result<Counters, SimError>, kind: ErrorKind) -> SimError {
    match r {
        Err(e) if e.kind == kind => e,
        other => panic!("expected {kind:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Cross-CTA races

/// Every thread writes `out[g] = g`, then copies `out[src]` to `res[g]`, where `src` is `g`
/// (its own element) or, with `shift`, the element `shift` places on, wrapping (another CTA's
/// when `shift` is the CTA size).
fn copy_back(shift: u32) -> Kernel {
    let mut b = KernelBuilder::new("copy_back", 32);
    let out = b.buffer("out", DType::I32, Access::Written);
    let res = b.buffer("res", DType::I32, Access::Written);
    let (_, _, g) = ids(&mut b);
    let p = addr(&mut b, out, g, 4);
    b.st(Space::Global, Ty::U32, p, 0, &[g.into()]);
    let s = b.bin(BinOp::Add, Ty::U32, g, int_imm(i64::from(shift)));
    let src = b.bin(BinOp::Rem, Ty::U32, s, int_imm(64));
    let q = addr(&mut b, out, src, 4);
    let v = b.ld1(Space::Global, Ty::U32, q, 0);
    let r = addr(&mut b, res, g, 4);
    b.st(Space::Global, Ty::U32, r, 0, &[v.into()]);
    b.finish()
}

fn copy_back_args() -> Vec<Arg> {
    vec![Arg::Buffer(vec![0; 256]), Arg::Buffer(vec![0; 256])]
}

#[test]
fn ctas_writing_and_reading_their_own_slices_are_clean() {
    let mut args = copy_back_args();
    go(&copy_back(0), launch(2, 32), &mut args).expect("clean");
    assert_eq!(words(buffer(&args, 1)), (0..64).collect::<Vec<u32>>());
}

#[test]
fn reading_elements_another_cta_writes_is_a_cross_cta_race() {
    // CTA 0 reads out[32..64) before CTA 1 writes it: read then write, caught at CTA 1's store
    // of out[32] (byte 128), its first thread.
    let mut args = copy_back_args();
    let e = expect(go(&copy_back(32), launch(2, 32), &mut args), ErrorKind::CrossCtaRace);
    assert_eq!(e.cta, [1, 0, 0], "{e}");
    assert_eq!(e.thread, Some([0, 0, 0]), "{e}");
    assert_eq!(e.at.as_ref().map(|a| a.1.as_str()), Some("st.global.u32"), "{e}");
    assert!(e.message.contains("byte 128 of buffer `out`") && e.message.contains("CTA (0, 0, 0)"), "{e}");
    assert!(e.message.contains("plain write") && e.message.contains("read"), "{e}");
}

/// CTA 0 writes `out[tid] = tid + 1`; CTA 1 copies `src[tid]` to `res[tid]`, where `src` is
/// `out` (what CTA 0 wrote) or `input` (a read-only buffer: the twin).
fn producer_consumer(read_out: bool) -> Kernel {
    let mut b = KernelBuilder::new("producer_consumer", 32);
    let out = b.buffer("out", DType::I32, Access::Written);
    let input = b.buffer("input", DType::I32, Access::ReadOnly);
    let res = b.buffer("res", DType::I32, Access::Written);
    let (cta, t, _) = ids(&mut b);
    let first = b.setp(Cmp::Eq, Ty::U32, cta, int_imm(0));
    b.if_else(
        first,
        |b| {
            let p = addr(b, out, t, 4);
            let v = b.bin(BinOp::Add, Ty::U32, t, int_imm(1));
            b.st(Space::Global, Ty::U32, p, 0, &[v.into()]);
        },
        |b| {
            let p = addr(b, if read_out { out } else { input }, t, 4);
            let v = b.ld1(Space::Global, Ty::U32, p, 0);
            let q = addr(b, res, t, 4);
            b.st(Space::Global, Ty::U32, q, 0, &[v.into()]);
        },
    );
    b.finish()
}

fn producer_consumer_args() -> Vec<Arg> {
    vec![Arg::Buffer(vec![0; 128]), Arg::Buffer(bytes(&[7; 32])), Arg::Buffer(vec![0; 128])]
}

#[test]
fn a_cta_reading_what_another_wrote_is_a_cross_cta_race() {
    let mut args = producer_consumer_args();
    let e = expect(go(&producer_consumer(true), launch(2, 32), &mut args), ErrorKind::CrossCtaRace);
    // Write then read: caught at CTA 1's load of out[0].
    assert_eq!((e.cta, e.thread), ([1, 0, 0], Some([0, 0, 0])), "{e}");
    assert_eq!(e.at.as_ref().map(|a| a.1.as_str()), Some("ld.global.u32"), "{e}");
    assert!(e.message.contains("byte 0 of buffer `out`, which CTA (0, 0, 0)"), "{e}");

    let mut args = producer_consumer_args();
    go(&producer_consumer(false), launch(2, 32), &mut args).expect("clean");
    assert_eq!(words(buffer(&args, 2)), vec![7; 32]);
}

#[test]
fn only_sampled_ctas_are_tracked() {
    // CTA 0 never runs, so nothing it would write is seen: the race needs both in the sample.
    let one = Options { ctas: Some(vec![[1, 0, 0]]), ..Options::default() };
    run(&producer_consumer(true), &launch(2, 32), &mut producer_consumer_args(), &one).expect("only CTA 1");
    let both = Options { ctas: Some(vec![[0, 0, 0], [1, 0, 0]]), ..Options::default() };
    let r = run(&producer_consumer(true), &launch(2, 32), &mut producer_consumer_args(), &both);
    expect(r, ErrorKind::CrossCtaRace);
}

#[test]
fn ctas_writing_the_two_halves_of_one_word_do_not_race() {
    // Tracking is per byte: a 16-bit output split by CTA is fine on the hardware too.
    let mut b = KernelBuilder::new("halves", 32);
    let out = b.buffer("out", DType::BF16, Access::Written);
    let (cta, t, _) = ids(&mut b);
    let first = b.setp(Cmp::Eq, Ty::U32, t, int_imm(0));
    b.if_then(first, |b| {
        let p = addr(b, out, cta, 2);
        let v = b.cvt(Ty::B16, Ty::U32, None, false, cta);
        b.st(Space::Global, Ty::B16, p, 0, &[v.into()]);
    });
    let mut args = vec![Arg::Buffer(vec![0; 8])];
    go(&b.finish(), launch(4, 32), &mut args).expect("clean");
    assert_eq!(buffer(&args, 0), &[0, 0, 1, 0, 2, 0, 3, 0]);
}

/// A three-point stencil over `tmp`, which the same launch writes: `tmp[g] = 2·in[g]`, then
/// `out[g] = tmp[g-1] + tmp[g] + tmp[g+1]` (clamped at the ends). The halo elements at a CTA's
/// edges belong to the neighbouring CTAs.
fn fused_stencil() -> Kernel {
    let mut b = KernelBuilder::new("fused_stencil", 32);
    let input = b.buffer("in", DType::I32, Access::ReadOnly);
    let tmp = b.buffer("tmp", DType::I32, Access::Written);
    let out = b.buffer("out", DType::I32, Access::Written);
    let (_, _, g) = ids(&mut b);
    let p = addr(&mut b, input, g, 4);
    let x = b.ld1(Space::Global, Ty::U32, p, 0);
    let y = b.bin(BinOp::Mul, Ty::U32, x, int_imm(2));
    let q = addr(&mut b, tmp, g, 4);
    b.st(Space::Global, Ty::U32, q, 0, &[y.into()]);
    b.bar();
    stencil_body(&mut b, tmp, out, g);
    b.finish()
}

/// `out[g] = src[g-1] + src[g] + src[g+1]` over 96 elements, clamped at the ends.
fn stencil_body(b: &mut KernelBuilder, src: Reg, out: Reg, g: Reg) {
    let lo = b.bin(BinOp::Max, Ty::U32, g, int_imm(1));
    let left = b.bin(BinOp::Sub, Ty::U32, lo, int_imm(1));
    let up = b.bin(BinOp::Add, Ty::U32, g, int_imm(1));
    let right = b.bin(BinOp::Min, Ty::U32, up, int_imm(95));
    let mut sum = None;
    for i in [left, g, right] {
        let p = addr(b, src, i, 4);
        let v = b.ld1(Space::Global, Ty::U32, p, 0);
        sum = Some(match sum {
            None => v,
            Some(s) => b.bin(BinOp::Add, Ty::U32, s, v),
        });
    }
    let q = addr(b, out, g, 4);
    if let Some(s) = sum {
        b.st(Space::Global, Ty::U32, q, 0, &[s.into()]);
    }
}

/// The twin's second launch: the stencil over `tmp`, now a read-only input.
fn stencil() -> Kernel {
    let mut b = KernelBuilder::new("stencil", 32);
    let tmp = b.buffer("tmp", DType::I32, Access::ReadOnly);
    let out = b.buffer("out", DType::I32, Access::Written);
    let (_, _, g) = ids(&mut b);
    stencil_body(&mut b, tmp, out, g);
    b.finish()
}

/// The twin's first launch: `tmp[g] = 2·in[g]`.
fn double() -> Kernel {
    let mut b = KernelBuilder::new("double", 32);
    let input = b.buffer("in", DType::I32, Access::ReadOnly);
    let tmp = b.buffer("tmp", DType::I32, Access::Written);
    let (_, _, g) = ids(&mut b);
    let p = addr(&mut b, input, g, 4);
    let x = b.ld1(Space::Global, Ty::U32, p, 0);
    let y = b.bin(BinOp::Mul, Ty::U32, x, int_imm(2));
    let q = addr(&mut b, tmp, g, 4);
    b.st(Space::Global, Ty::U32, q, 0, &[y.into()]);
    b.finish()
}

#[test]
fn a_halo_read_of_a_neighbours_output_is_a_cross_cta_race_and_two_launches_fix_it() {
    let input: Vec<u32> = (0..96).collect();
    let mut args = vec![Arg::Buffer(bytes(&input)), Arg::Buffer(vec![0; 384]), Arg::Buffer(vec![0; 384])];
    let e = expect(go(&fused_stencil(), launch(3, 32), &mut args), ErrorKind::CrossCtaRace);
    // CTA 0 reads tmp[32] (its right halo) before CTA 1 writes it: caught at CTA 1's store.
    assert_eq!((e.cta, e.thread), ([1, 0, 0], Some([0, 0, 0])), "{e}");
    assert!(e.message.contains("byte 128 of buffer `tmp`, which CTA (0, 0, 0)"), "{e}");

    // The barrier only orders the threads of one CTA; a second launch orders all of them.
    let mut first = vec![Arg::Buffer(bytes(&input)), Arg::Buffer(vec![0; 384])];
    go(&double(), launch(3, 32), &mut first).expect("clean");
    let mut second = vec![first.remove(1), Arg::Buffer(vec![0; 384])];
    go(&stencil(), launch(3, 32), &mut second).expect("clean");
    let want: Vec<u32> = (0..96u32).map(|g| 2 * (g.saturating_sub(1) + g + (g + 1).min(95))).collect();
    assert_eq!(words(buffer(&second, 1)), want);
}

/// Every thread adds 1 to `counter` and stores the value its `atom` returned to `ticket[g]`;
/// with `peek`, thread 0 of the last CTA also reads the counter with a plain load.
fn counter(peek: bool) -> Kernel {
    let mut b = KernelBuilder::new("counter", 32);
    let count = b.buffer("counter", DType::I32, Access::Written);
    let ticket = b.buffer("ticket", DType::I32, Access::Written);
    let (cta, t, g) = ids(&mut b);
    let old = b.atom(Space::Global, BinOp::Add, Ty::U32, count, 0, int_imm(1));
    let p = addr(&mut b, ticket, g, 4);
    b.st(Space::Global, Ty::U32, p, 0, &[old.into()]);
    if peek {
        let last = b.setp(Cmp::Eq, Ty::U32, cta, int_imm(3));
        let first = b.setp(Cmp::Eq, Ty::U32, t, int_imm(0));
        let both = b.bin(BinOp::And, Ty::Pred, last, first);
        b.if_then(both, |b| {
            let v = b.ld1(Space::Global, Ty::U32, count, 0);
            b.st(Space::Global, Ty::U32, p, 0, &[v.into()]);
        });
    }
    b.finish()
}

#[test]
fn atomics_of_all_ctas_on_one_counter_do_not_race_but_a_plain_read_of_it_does() {
    let mut args = vec![Arg::Buffer(vec![0; 4]), Arg::Buffer(vec![0; 512])];
    go(&counter(false), launch(4, 32), &mut args).expect("clean");
    assert_eq!(words(buffer(&args, 0)), vec![128]);
    let mut tickets = words(buffer(&args, 1));
    tickets.sort_unstable();
    assert_eq!(tickets, (0..128).collect::<Vec<u32>>());

    let mut args = vec![Arg::Buffer(vec![0; 4]), Arg::Buffer(vec![0; 512])];
    let e = expect(go(&counter(true), launch(4, 32), &mut args), ErrorKind::CrossCtaRace);
    assert_eq!((e.cta, e.thread), ([3, 0, 0], Some([0, 0, 0])), "{e}");
    assert_eq!(e.at.as_ref().map(|a| a.1.as_str()), Some("ld.global.u32"), "{e}");
    assert!(e.message.contains("buffer `counter`") && e.message.contains("updated atomically"), "{e}");
    assert!(e.message.contains("CTA (0, 0, 0)"), "{e}");
}

/// CTA `producer` writes `data[tid] = tid` and thread 0 then raises `flag` (a plain store, or
/// an atomic add with `atomic`); the other CTA spins until it sees the flag (a plain load, or
/// an atomic add of 0) and copies `data` to `res`.
fn spin_wait(producer: u32, atomic: bool) -> Kernel {
    let mut b = KernelBuilder::new("spin_wait", 32);
    let data = b.buffer("data", DType::I32, Access::Written);
    let flag = b.buffer("flag", DType::I32, Access::Written);
    let res = b.buffer("res", DType::I32, Access::Written);
    let (cta, t, _) = ids(&mut b);
    let produce = b.setp(Cmp::Eq, Ty::U32, cta, int_imm(i64::from(producer)));
    b.if_else(
        produce,
        |b| {
            let p = addr(b, data, t, 4);
            b.st(Space::Global, Ty::U32, p, 0, &[t.into()]);
            b.bar();
            let first = b.setp(Cmp::Eq, Ty::U32, t, int_imm(0));
            b.if_then(first, |b| {
                if atomic {
                    b.red(Space::Global, BinOp::Add, Ty::U32, flag, 0, int_imm(1));
                } else {
                    b.st(Space::Global, Ty::U32, flag, 0, &[int_imm(1)]);
                }
            });
        },
        |b| {
            b.do_while(|b| {
                let f = if atomic {
                    b.atom(Space::Global, BinOp::Add, Ty::U32, flag, 0, int_imm(0))
                } else {
                    b.ld1(Space::Global, Ty::U32, flag, 0)
                };
                b.setp(Cmp::Eq, Ty::U32, f, int_imm(0))
            });
            let p = addr(b, data, t, 4);
            let v = b.ld1(Space::Global, Ty::U32, p, 0);
            let q = addr(b, res, t, 4);
            b.st(Space::Global, Ty::U32, q, 0, &[v.into()]);
        },
    );
    b.finish()
}

fn spin_args() -> Vec<Arg> {
    vec![Arg::Buffer(vec![0; 128]), Arg::Buffer(vec![0; 4]), Arg::Buffer(vec![0; 128])]
}

#[test]
fn a_cta_spinning_on_a_flag_another_cta_sets_is_a_cross_cta_race() {
    // The consumer's poll of the flag reads what the producer (which ran first) wrote.
    let e = expect(go(&spin_wait(0, false), launch(2, 32), &mut spin_args()), ErrorKind::CrossCtaRace);
    assert_eq!((e.cta, e.thread), ([1, 0, 0], Some([0, 0, 0])), "{e}");
    assert!(e.message.contains("byte 0 of buffer `flag`, which CTA (0, 0, 0)"), "{e}");

    // Atomics on the flag do not race with each other, but the data it guards still does:
    // nothing in this IR orders the producer's plain stores before the consumer's loads
    // (that takes a second launch).
    let e = expect(go(&spin_wait(0, true), launch(2, 32), &mut spin_args()), ErrorKind::CrossCtaRace);
    assert_eq!(e.cta, [1, 0, 0], "{e}");
    assert!(e.message.contains("byte 0 of buffer `data`, which CTA (0, 0, 0)"), "{e}");

    // A consumer that runs first waits for a CTA that runs after it: the simulator runs CTAs
    // one after another, so it spins to the instruction cap — the hardware may hang the same
    // way when the producer is not resident.
    let capped = Options { max_instructions: 10_000, ..Options::default() };
    let r = run(&spin_wait(1, false), &launch(2, 32), &mut spin_args(), &capped);
    expect(r, ErrorKind::InstructionCap);
}

// ---------------------------------------------------------------------------------------------
// Order dependence

/// Thread 0 of CTA `c` adds `x[c]` to `sum` with a global f32 atomic.
fn float_sum() -> Kernel {
    let mut b = KernelBuilder::new("float_sum", 32);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let sum = b.buffer("sum", DType::F32, Access::Written);
    let (cta, t, _) = ids(&mut b);
    let first = b.setp(Cmp::Eq, Ty::U32, t, int_imm(0));
    b.if_then(first, |b| {
        let p = addr(b, x, cta, 4);
        let v = b.ld1(Space::Global, Ty::F32, p, 0);
        b.red(Space::Global, BinOp::Add, Ty::F32, sum, 0, v);
    });
    b.finish()
}

fn float_sum_args(x: &[f32]) -> Vec<Arg> {
    vec![Arg::Buffer(x.iter().flat_map(|v| v.to_le_bytes()).collect()), Arg::Buffer(bytes(&[0]))]
}

#[test]
fn a_float_atomic_sum_across_ctas_depends_on_their_order() {
    // Forward: 2^24 + 1 rounds back to 2^24 (ties to even), twice. Reverse: 1 + 1 = 2 first,
    // and 2^24 + 2 is exact. So the two orders provably differ.
    let x = [16_777_216.0f32, 1.0, 1.0];
    let forward = x.iter().fold(0.0f32, |a, v| a + v);
    let reverse = x.iter().rev().fold(0.0f32, |a, v| a + v);
    assert_eq!((forward, reverse), (16_777_216.0, 16_777_218.0));

    // One order (the default) runs clean: the dependence is invisible.
    let mut args = float_sum_args(&x);
    go(&float_sum(), launch(3, 32), &mut args).expect("clean in one order");
    assert_eq!(words(buffer(&args, 1)), vec![forward.to_bits()]);

    let mut args = float_sum_args(&x);
    let e = expect(go_orders(&float_sum(), launch(3, 32), &mut args, 3), ErrorKind::OrderDependent);
    assert!(e.message.contains("buffer `sum`") && e.message.contains("byte 0"), "{e}");
    assert!(e.message.contains("reverse"), "{e}");
    assert!(e.message.contains(&format!("{:#x}", forward.to_bits())), "{e}");
    assert!(e.message.contains(&format!("{:#x}", reverse.to_bits())), "{e}");

    // Values whose sum is exact in every order are not flagged.
    let mut args = float_sum_args(&[1.0, 2.0, 4.0]);
    go_orders(&float_sum(), launch(3, 32), &mut args, 3).expect("exact in every order");
    assert_eq!(words(buffer(&args, 1)), vec![7.0f32.to_bits()]);
}

/// Every thread adds 1 to `bins[x[g] % 8]` with a u32 atomic.
fn histogram() -> Kernel {
    let mut b = KernelBuilder::new("histogram", 64);
    let x = b.buffer("x", DType::I32, Access::ReadOnly);
    let bins = b.buffer("bins", DType::I32, Access::Written);
    let (_, _, g) = ids(&mut b);
    let p = addr(&mut b, x, g, 4);
    let v = b.ld1(Space::Global, Ty::U32, p, 0);
    let bin = b.bin(BinOp::Rem, Ty::U32, v, int_imm(8));
    let q = addr(&mut b, bins, bin, 4);
    b.red(Space::Global, BinOp::Add, Ty::U32, q, 0, int_imm(1));
    b.finish()
}

#[test]
fn an_integer_atomic_histogram_is_the_same_in_every_order() {
    let x: Vec<u32> = (0..256u32).map(|i| i.wrapping_mul(2_654_435_761) >> 7).collect();
    let mut want = vec![0u32; 8];
    for v in &x {
        want[(v % 8) as usize] += 1;
    }
    let mut args = vec![Arg::Buffer(bytes(&x)), Arg::Buffer(vec![0; 32])];
    let c = go_orders(&histogram(), launch(4, 64), &mut args, 3).expect("clean");
    assert_eq!(words(buffer(&args, 1)), want);
    // The counters are the forward run's alone.
    let once = go(&histogram(), launch(4, 64), &mut [Arg::Buffer(bytes(&x)), Arg::Buffer(vec![0; 32])]);
    assert_eq!(Ok(c), once);
}

// ---------------------------------------------------------------------------------------------
// The last-CTA hand-off: fences and an atomic counter order one CTA's writes before another's
// reads.

/// How a last-CTA kernel is (mis)written.
#[derive(Clone, Copy)]
struct Handoff {
    /// Thread 0 fences between the barrier after the writes and its counter update.
    release: bool,
    /// Thread 0 fences after its counter update, before the barrier the readers wait at.
    acquire: bool,
    /// Only the CTA whose update completes the count reads (else every CTA does).
    guarded: bool,
}

/// `G` CTAs of 32 threads: thread `t` of CTA `c` writes `part[32c + t] = 32c + t + 1`; the last
/// CTA to arrive (a counter, put back to 0 by it) writes `sum[t] = Σ_c part[32c + t]`.
fn last_cta(h: Handoff, ctas: u32) -> Kernel {
    let mut b = KernelBuilder::new("last_cta", 32);
    let part = b.buffer("part", DType::I32, Access::Written);
    let count = b.buffer("counter", DType::I32, Access::Written);
    let sum = b.buffer("sum", DType::I32, Access::Written);
    let flag = b.shared(4, 4);
    let (_, t, g) = ids(&mut b);
    let p = addr(&mut b, part, g, 4);
    let v = b.bin(BinOp::Add, Ty::U32, g, int_imm(1));
    b.st(Space::Global, Ty::U32, p, 0, &[v.into()]);
    b.bar();
    let first = b.setp(Cmp::Eq, Ty::U32, t, int_imm(0));
    b.if_then(first, |b| {
        if h.release {
            b.fence();
        }
        let old = b.atom(Space::Global, BinOp::Add, Ty::U32, count, 0, int_imm(1));
        let last = b.setp(Cmp::Eq, Ty::U32, old, int_imm(i64::from(ctas) - 1));
        b.if_then(last, |b| {
            b.red(Space::Global, BinOp::Add, Ty::U32, count, 0, int_imm(-i64::from(ctas)));
        });
        if h.acquire {
            b.fence();
        }
        let bit = b.selp(Ty::U32, int_imm(1), int_imm(0), last);
        b.st(Space::Shared, Ty::U32, Operand::Imm(u64::from(flag)), 0, &[bit.into()]);
    });
    b.bar();
    let bit = b.ld1(Space::Shared, Ty::U32, Operand::Imm(u64::from(flag)), 0);
    let last = b.setp(Cmp::Ne, Ty::U32, bit, int_imm(0));
    let reads = if h.guarded { last } else { b.setp(Cmp::Eq, Ty::U32, t, t) };
    b.if_then(reads, |b| {
        let mut acc = b.mov(Ty::U32, int_imm(0));
        for c in 0..ctas {
            let j = b.bin(BinOp::Add, Ty::U32, t, int_imm(i64::from(32 * c)));
            let q = addr(b, part, j, 4);
            let x = b.ld1(Space::Global, Ty::U32, q, 0);
            acc = b.bin(BinOp::Add, Ty::U32, acc, x);
        }
        let s = addr(b, sum, t, 4);
        b.st(Space::Global, Ty::U32, s, 0, &[acc.into()]);
    });
    b.finish()
}

#[test]
fn the_last_cta_reads_what_the_others_released_through_a_fence_and_a_counter() {
    let ctas = 5u32;
    let run = |h: Handoff| {
        let mut args =
            vec![Arg::Buffer(vec![0; 4 * 32 * ctas as usize]), Arg::Buffer(vec![0; 4]), Arg::Buffer(vec![0; 128])];
        let r = go_orders(&last_cta(h, ctas), launch(ctas, 32), &mut args, 4);
        (r, args)
    };
    // Correct: in every CTA order, whichever CTA comes last sums every part, and the counter is
    // back to 0 for the next launch.
    let (r, args) = run(Handoff { release: true, acquire: true, guarded: true });
    r.expect("clean in every order");
    let want: Vec<u32> = (0..32).map(|t| (0..ctas).map(|c| 32 * c + t + 1).sum()).collect();
    assert_eq!(words(buffer(&args, 2)), want);
    assert_eq!(words(buffer(&args, 1)), vec![0]);
    // Without either fence the last CTA's reads race; reading without the counter's say-so,
    // the first CTA reads parts before the others write them.
    for (h, at) in [
        (Handoff { release: false, acquire: true, guarded: true }, "ld.global.u32"),
        (Handoff { release: true, acquire: false, guarded: true }, "ld.global.u32"),
        (Handoff { release: true, acquire: true, guarded: false }, "st.global.u32"),
    ] {
        let e = expect(run(h).0, ErrorKind::CrossCtaRace);
        assert_eq!(e.at.as_ref().map(|a| a.1.as_str()), Some(at), "{e}");
        assert!(e.message.contains("buffer `part`"), "{e}");
    }
}
