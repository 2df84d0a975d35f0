//! Running a launch in several CTA orders: float atomics whose result depends on the order.
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

use std::rc::Rc;

use super::{run_in_order, Arg, Counters, ErrorKind, Flat, Launch, Options, SimError};
use crate::ir::{Access, Kernel, Param};

/// Runs `ctas` in forward order on `args`, then in `opts.cta_orders - 1` further orders on
/// copies of the original arguments; the forward run's counters.
pub(super) fn run_orders(
    k: &Kernel,
    launch: &Launch,
    program: Rc<[Flat]>,
    args: &mut [Arg],
    opts: &Options,
    ctas: Vec<[u32; 3]>,
) -> Result<Counters, SimError> {
    // One CTA has one order.
    let extra = if ctas.len() > 1 { opts.cta_orders.saturating_sub(1) } else { 0 };
    let before = if extra > 0 { args.to_vec() } else { Vec::new() };
    let counters = run_in_order(k, launch, Rc::clone(&program), args, opts, ctas.clone())?;
    for index in 1..=extra {
        let order = permutation(&ctas, index);
        let mut copy = before.clone();
        run_in_order(k, launch, Rc::clone(&program), &mut copy, opts, order).map_err(|mut e| {
            e.message = format!("{} (in CTA order {})", e.message, order_name(index));
            e
        })?;
        compare(k, args, &copy, index)?;
    }
    Ok(counters)
}

/// The name of order `index` in messages.
fn order_name(index: usize) -> String {
    match index {
        0 => "forward".into(),
        1 => "reverse".into(),
        _ => format!("shuffle {index}"),
    }
}

/// Order `index`: 0 forward, 1 reverse, then a Fisher–Yates shuffle driven by splitmix64
/// seeded with `index` (fixed, so a failure reproduces).
fn permutation(ctas: &[[u32; 3]], index: usize) -> Vec<[u32; 3]> {
    let mut v = ctas.to_vec();
    match index {
        0 => {}
        1 => v.reverse(),
        _ => {
            let mut state = index as u64;
            let mut next = || {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            };
            for i in (1..v.len()).rev() {
                let j = (next() % (i as u64 + 1)) as usize;
                v.swap(i, j);
            }
        }
    }
    v
}

/// `OrderDependent` at the first written buffer whose bytes differ between the forward run
/// (`forward`) and order `index` (`other`).
fn compare(k: &Kernel, forward: &[Arg], other: &[Arg], index: usize) -> Result<(), SimError> {
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
                "buffer `{name}` differs at byte {byte} between CTA orders forward and {}: element {} is \
                 {:#x} in one and {:#x} in the other (float atomics round in the order CTAs run, which \
                 the hardware does not fix)",
                order_name(index),
                start / size,
                bits(a),
                bits(b),
            ),
        });
    }
    Ok(())
}
