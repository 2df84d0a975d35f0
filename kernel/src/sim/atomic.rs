//! `atom` / `red`: read-modify-writes applied lane by lane, in lane order, through the same
//! bounds and race checks as plain accesses (an atomic never races with another atomic, but a
//! plain access racing one does).

use std::collections::BTreeSet;

use super::alu::{article, binary, f, lanes, le};
use super::epoch::Use;
use super::{Arg, Cta, Machine, SimError, Warp, WARP};
use crate::ir::{BinOp, Inst, Space, Ty};

impl Machine<'_> {
    pub(super) fn atom(&mut self, cta: &mut Cta, w: &Warp, wi: u32, pc: usize, inst: &Inst) -> Result<(), SimError> {
        let Inst::Atom { space, op, ty, dst, addr, offset, src } = *inst else {
            return Ok(());
        };
        self.serial += 1;
        let serial = self.serial;
        let size = u64::from(ty.bytes());
        let mut sectors = BTreeSet::new();
        let mut touched = Vec::new();
        // The hardware applies the lanes' updates in no specified order: forward here, and
        // from the last lane in the odd warp orders (`Options::warp_orders`), so a float sum
        // whose rounding depends on it shows as `OrderDependent`.
        let mut order: Vec<u32> = lanes(w.active).collect();
        if self.warp_order % 2 == 1 {
            order.reverse();
        }
        for lane in order {
            let t = wi * WARP + lane;
            let a = self.lane_address(cta, t, pc, addr, offset, size, |a| {
                format!("{} {size}-byte atomic at {} address {a:#x}", article(size), space.name())
            })?;
            let v = self.value(cta, t, src, ty, pc)?;
            let n = size as usize;
            let old = match space {
                Space::Global => {
                    let (i, off) = self.global_slot(cta, pc, t, a, size, Use::Atomic, false)?;
                    self.track_global(cta, w, pc, t, i, off, size, Use::Atomic)?;
                    sectors.insert(a / 32);
                    let Arg::Buffer(b) = &mut self.args[i] else {
                        return Ok(());
                    };
                    let at = off as usize;
                    let old = le(&b[at..at + n]);
                    let new = apply(op, ty, old, v, true);
                    b[at..at + n].copy_from_slice(&new.to_le_bytes()[..n]);
                    old
                }
                _ => {
                    self.track_shared(cta, w, wi, pc, lane, a, size, serial, Use::Atomic)?;
                    touched.push((lane, a));
                    let at = a as usize;
                    let old = le(&cta.shared[at..at + n]);
                    let new = apply(op, ty, old, v, false);
                    cta.shared[at..at + n].copy_from_slice(&new.to_le_bytes()[..n]);
                    old
                }
            };
            if let Some(d) = dst {
                self.write(cta, t, d, old);
            }
        }
        match space {
            Space::Global if !sectors.is_empty() => {
                self.counters.global_requests += 1;
                self.counters.global_sectors += sectors.len() as u64;
            }
            Space::Shared if !touched.is_empty() => {
                self.counters.shared_requests += 1;
                self.counters.bank_replays += super::bank_replays(&touched, size);
            }
            _ => {}
        }
        Ok(())
    }
}

/// The value an atomic stores: `old op v` at `ty`. A global f32 add flushes subnormal inputs
/// and its result to signed zero (the hardware's global atomic adds always run flush-to-zero;
/// shared ones keep subnormals).
fn apply(op: BinOp, ty: Ty, old: u64, v: u64, global: bool) -> u64 {
    if ty == Ty::F32 && global {
        let ftz = |x: f32| if x.is_subnormal() { 0.0f32.copysign(x) } else { x };
        let sum = ftz(ftz(f(old)) + ftz(f(v)));
        return u64::from(sum.to_bits());
    }
    // Add and max never divide, so `binary` always has a value; 0 keeps this total.
    binary(op, ty, old, v).unwrap_or(0)
}
