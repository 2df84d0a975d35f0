//! Running a launch in several CTA orders and warp orders: float atomics whose result depends
//! on the order.
//!
//! The hardware runs the CTAs of a launch in no specified order, so an f32 atomic add from
//! several CTAs into one word rounds in an order that changes from run to run, and the result
//! with it. The simulator runs CTAs one after another in one order; with `Options::cta_orders`
//! of `n` it also runs the launch in `n - 1` other deterministic orders — reverse, then
//! shuffles seeded by the order's index — each on a copy of the arguments as they were before
//! the launch, and compares every written buffer with the forward run's bit for bit. A launch
//! whose CTAs each write their own bytes, or combine with integer atomics, gives the same bytes
//! in every order (the cross-CTA race check rules out the rest); one that does not is
//! `OrderDependent`. Each order is checked like a plain run, so a race is still a race.
//!
//! Warps of a CTA likewise run in no specified order between barriers. By default each warp
//! runs until it reaches a barrier or exits, in index order; `Options::warp_orders` adds runs
//! with the warps in reverse order, round-robin one instruction at a time, and seeded
//! interleavings (a shuffled turn order each round, each turn 1 to 8 instructions); in the odd
//! orders the lanes of a warp also apply their atomics last lane first. The race checks make
//! every race-free kernel independent of these orders; what remains is what atomics leave to
//! the order — float sums of several threads on one word, the old values `atom` returns,
//! different atomic operations (`add`, `max`) on one word — which such a run reports as
//! `OrderDependent`.

use std::rc::Rc;

use super::program::Context;
use super::{run_in_order, Arg, Counters, Cta, ErrorKind, Flat, Launch, Machine, Options, SimError, Warp};
use crate::ir::{Access, Kernel, Param};

/// Runs `ctas` in forward order on `args`, then in `opts.cta_orders - 1` further CTA orders and
/// `opts.warp_orders - 1` further warp orders, each on a copy of the original arguments; the
/// forward run's counters.
pub(super) fn run_orders(
    k: &Kernel,
    launch: &Launch,
    program: Rc<[Flat]>,
    args: &mut [Arg],
    opts: &Options,
    ctas: Vec<[u32; 3]>,
    ctx: &mut Context,
) -> Result<Counters, SimError> {
    // One CTA has one order (a single warp has several: its lanes' atomics).
    let cta_extra = if ctas.len() > 1 { opts.cta_orders.saturating_sub(1) } else { 0 };
    let warp_extra = opts.warp_orders.saturating_sub(1);
    let (before, ctx_before) =
        if cta_extra + warp_extra > 0 { (args.to_vec(), ctx.clone()) } else { Default::default() };
    let counters = run_in_order(k, launch, Rc::clone(&program), args, opts, ctas.clone(), 0, ctx)?;
    let runs = (1..=cta_extra).map(|i| (i, 0)).chain((1..=warp_extra).map(|i| (0, i)));
    for (cta_order, warp_order) in runs {
        let what = if warp_order == 0 {
            format!("CTA order {}", order_name(cta_order))
        } else {
            format!("warp order {}", warp_order_name(warp_order))
        };
        let mut copy = before.clone();
        let mut ctx = ctx_before.clone();
        let order = permutation(&ctas, cta_order);
        run_in_order(k, launch, Rc::clone(&program), &mut copy, opts, order, warp_order, &mut ctx).map_err(
            |mut e| {
                e.message = format!("{} (in {what})", e.message);
                e
            },
        )?;
        compare(k, args, &copy, &what)?;
    }
    Ok(counters)
}

impl Machine<'_> {
    /// Runs the warps of `cta` until each waits at a barrier or has exited, in this machine's
    /// warp order: 0 each warp in turn to its barrier, 1 likewise from the last warp, 2
    /// round-robin one instruction at a time, from 3 on a seeded interleaving.
    pub(super) fn run_epoch(&mut self, cta: &mut Cta, warps: &mut [Warp]) -> Result<(), SimError> {
        let runnable = |w: &Warp| !w.done && !w.at_barrier;
        match self.warp_order {
            0 | 1 => {
                let n = warps.len();
                for i in 0..n {
                    let w = if self.warp_order == 0 { i } else { n - 1 - i };
                    if runnable(&warps[w]) {
                        self.run_warp(cta, &mut warps[w], w as u32, u64::MAX)?;
                    }
                }
            }
            order => {
                let mut next = splitmix(
                    (order as u64) << 32
                        ^ u64::from(cta.epoch)
                        ^ u64::from(cta.id[0]) << 48
                        ^ u64::from(cta.id[1]) << 40,
                );
                loop {
                    let mut turn: Vec<usize> = (0..warps.len()).filter(|&w| runnable(&warps[w])).collect();
                    if turn.is_empty() {
                        return Ok(());
                    }
                    if order > 2 {
                        shuffle(&mut turn, &mut next);
                    }
                    for w in turn {
                        let budget = if order == 2 { 1 } else { 1 + next() % 8 };
                        self.run_warp(cta, &mut warps[w], w as u32, budget)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The name of warp order `index` in messages.
fn warp_order_name(index: usize) -> String {
    match index {
        0 => "forward".into(),
        1 => "reverse".into(),
        2 => "round-robin".into(),
        _ => format!("interleaving {index}"),
    }
}

/// A splitmix64 stream seeded with `seed` (fixed, so a failure reproduces).
pub(super) fn splitmix(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Fisher–Yates with `next`.
fn shuffle<T>(v: &mut [T], next: &mut impl FnMut() -> u64) {
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// The name of order `index` in messages.
fn order_name(index: usize) -> String {
    match index {
        0 => "forward".into(),
        1 => "reverse".into(),
        _ => format!("shuffle {index}"),
    }
}

/// Order `index`: 0 forward, 1 reverse, then a shuffle seeded with `index`.
fn permutation(ctas: &[[u32; 3]], index: usize) -> Vec<[u32; 3]> {
    let mut v = ctas.to_vec();
    match index {
        0 => {}
        1 => v.reverse(),
        _ => shuffle(&mut v, &mut splitmix(index as u64)),
    }
    v
}

/// `OrderDependent` at the first written buffer whose bytes differ between the forward run
/// (`forward`) and the run in order `what` (`other`).
fn compare(k: &Kernel, forward: &[Arg], other: &[Arg], what: &str) -> Result<(), SimError> {
    for (p, (a, b)) in k.params.iter().zip(forward.iter().zip(other)) {
        let (Param::Buffer { name, elem, access: Access::Written, .. }, Arg::Buffer(a), Arg::Buffer(b)) = (p, a, b)
        else {
            continue;
        };
        let Some(byte) = a.iter().zip(b).position(|(x, y)| x != y) else {
            continue;
        };
        // Show the whole element holding the byte, as little-endian bits.
        let size = elem.size_bytes().clamp(1, 8);
        let start = byte / size * size;
        let bits = |buf: &[u8]| {
            let end = (start + size).min(buf.len());
            buf[start..end].iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x))
        };
        return Err(SimError {
            kind: ErrorKind::OrderDependent,
            kernel: k.name.clone(),
            at: None,
            cta: [0; 3],
            thread: None,
            message: format!(
                "buffer `{name}` differs at byte {byte} between the forward order and {what}: element {} \
                 is {:#x} in one and {:#x} in the other (float atomics round in the order CTAs and warps \
                 run, which the hardware does not fix)",
                start / size,
                bits(a),
                bits(b),
            ),
        });
    }
    Ok(())
}
