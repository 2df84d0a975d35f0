//! Memory accesses: `ld`/`st` on global, shared and local memory, with the checks each takes
//! (bounds, alignment, read-only and `.nc` discipline, uninitialized bytes, shared races by
//! barrier epoch, `bar.warp.sync` between lanes, cross-CTA races) and the counters (requests,
//! sectors, bank-conflict replays, bytes).

use std::collections::{BTreeSet, HashMap};

use super::alu::{article, lanes, le};
use super::epoch::{EpochLog, Touch, Use};
use super::{buffer_base, Arg, Cta, ErrorKind, Machine, SimError, Warp, WARP};
use crate::ir::{Access, Inst, Operand, Param, Space, Ty};

/// Per-byte record of shared memory.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SharedByte {
    /// Some thread of the CTA has written it.
    written: bool,
    /// The race record of the current epoch.
    log: EpochLog,
}

impl Machine<'_> {
    pub(super) fn memory(&mut self, cta: &mut Cta, w: &Warp, wi: u32, pc: usize, inst: &Inst) -> Result<(), SimError> {
        let (space, ty, n, addr, offset, nc, store) = match inst {
            Inst::Ld { space, ty, dst, addr, offset, nc, .. } => (*space, *ty, dst.len(), *addr, *offset, *nc, false),
            Inst::St { space, ty, src, addr, offset, .. } => (*space, *ty, src.len(), *addr, *offset, false, true),
            _ => return Ok(()),
        };
        self.serial += 1;
        let elem = ty.bytes() as u64;
        let size = elem * n as u64;
        let mut touched: Vec<(u32, u64)> = Vec::new();
        for lane in lanes(w.active) {
            let t = wi * WARP + lane;
            let a = self.lane_address(cta, t, pc, addr, offset, size, |a| {
                format!("{} {size}-byte {} access at address {a:#x}", article(size), space.name())
            })?;
            touched.push((lane, a));
        }
        match space {
            Space::Global => self.global(cta, w, wi, pc, inst, &touched, size, elem, nc, store),
            Space::Shared => self.shared(cta, w, wi, pc, inst, &touched, size, elem, store),
            Space::Local => {
                for &(lane, a) in &touched {
                    let t = wi * WARP + lane;
                    let lb = u64::from(self.k.local_bytes);
                    if a.checked_add(size).is_none_or(|end| end > lb) {
                        return Err(self.err(
                            ErrorKind::OutOfBounds,
                            cta,
                            Some(pc),
                            Some(t),
                            format!("local bytes [{a}, {}) of {lb}", a.saturating_add(size)),
                        ));
                    }
                    let base = t as usize * self.k.local_bytes as usize + a as usize;
                    if store {
                        for k in 0..n {
                            let v = self.src_bits(cta, t, inst, k, ty, pc)?;
                            let at = base + k * elem as usize;
                            cta.local[at..at + elem as usize].copy_from_slice(&v.to_le_bytes()[..elem as usize]);
                            cta.local_init[at..at + elem as usize].fill(true);
                        }
                    } else {
                        if !cta.local_init[base..base + size as usize].iter().all(|&b| b) {
                            return Err(self.err(
                                ErrorKind::UninitializedMemory,
                                cta,
                                Some(pc),
                                Some(t),
                                format!("local bytes [{a}, {}) are read before they are written", a + size),
                            ));
                        }
                        for k in 0..n {
                            let at = base + k * elem as usize;
                            let v = le(&cta.local[at..at + elem as usize]);
                            self.dst_write(cta, t, inst, k, v);
                        }
                    }
                }
                Ok(())
            }
        }
    }

    pub(super) fn src_bits(
        &self,
        cta: &Cta,
        t: u32,
        inst: &Inst,
        k: usize,
        ty: Ty,
        pc: usize,
    ) -> Result<u64, SimError> {
        match inst {
            Inst::St { src, .. } => self.value(cta, t, src[k], ty, pc),
            _ => Ok(0),
        }
    }

    /// Thread `t`'s address `base + offset` (wrapping, as the hardware adds), which must be a
    /// multiple of `align`; `describe` words the misaligned access.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn lane_address(
        &self,
        cta: &Cta,
        t: u32,
        pc: usize,
        base: Operand,
        offset: i64,
        align: u64,
        describe: impl FnOnce(u64) -> String,
    ) -> Result<u64, SimError> {
        let a = self.value(cta, t, base, Ty::U64, pc)?.wrapping_add(offset as u64);
        if a % align != 0 {
            return Err(self.err(ErrorKind::Misaligned, cta, Some(pc), Some(t), describe(a)));
        }
        Ok(a)
    }

    /// Shared bytes `[a, a + size)` lie inside the kernel's shared memory.
    pub(super) fn shared_range(&self, cta: &Cta, t: u32, pc: usize, a: u64, size: u64) -> Result<(), SimError> {
        let total = u64::from(self.shared_total());
        if a.checked_add(size).is_none_or(|end| end > total) {
            return Err(self.err(
                ErrorKind::OutOfBounds,
                cta,
                Some(pc),
                Some(t),
                format!("shared bytes [{a}, {}) of {total}", a.saturating_add(size)),
            ));
        }
        Ok(())
    }

    pub(super) fn dst_write(&self, cta: &mut Cta, t: u32, inst: &Inst, k: usize, v: u64) {
        if let Inst::Ld { dst, .. } = inst {
            self.write(cta, t, dst[k], v);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn global(
        &mut self,
        cta: &mut Cta,
        w: &Warp,
        wi: u32,
        pc: usize,
        inst: &Inst,
        touched: &[(u32, u64)],
        size: u64,
        elem: u64,
        nc: bool,
        store: bool,
    ) -> Result<(), SimError> {
        if touched.is_empty() {
            return Ok(());
        }
        self.counters.global_requests += 1;
        let mut sectors = BTreeSet::new();
        let mut first_param = None;
        // The bytes the request touches, as merged intervals: the fewest sectors that could
        // hold them is what a coalesced access would touch.
        let mut spans: Vec<(u64, u64)> = touched.iter().map(|&(_, a)| (a, a + size)).collect();
        spans.sort_unstable();
        let mut unique = 0;
        let mut reach = 0;
        for &(lo, hi) in &spans {
            let lo = lo.max(reach);
            if hi > lo {
                unique += hi - lo;
                reach = hi;
            }
        }
        for &(lane, a) in touched {
            let t = wi * WARP + lane;
            let u = if store { Use::Write } else { Use::Read };
            let (i, off) = self.global_slot(cta, pc, t, a, size, u, nc)?;
            first_param.get_or_insert(i);
            self.track_global(cta, w, pc, t, i, off, size, u)?;
            for s in (a / 32)..(a + size).div_ceil(32) {
                sectors.insert(s);
            }
            let n = (size / elem) as usize;
            for k in 0..n {
                let at = (off + k as u64 * elem) as usize;
                if store {
                    let v = self.src_bits(cta, t, inst, k, self.k_ty(inst), pc)?;
                    if let Arg::Buffer(b) = &mut self.args[i] {
                        b[at..at + elem as usize].copy_from_slice(&v.to_le_bytes()[..elem as usize]);
                    }
                } else {
                    let v = match &self.args[i] {
                        Arg::Buffer(b) => le(&b[at..at + elem as usize]),
                        Arg::Scalar(_) => 0,
                    };
                    self.dst_write(cta, t, inst, k, v);
                }
            }
            if store {
                self.counters.bytes_stored += size;
            } else {
                self.counters.bytes_loaded += size;
            }
        }
        let excess = (sectors.len() as u64).saturating_sub(unique.div_ceil(32));
        self.counters.global_sectors += sectors.len() as u64;
        self.counters.global_excess_sectors += excess;
        if let Some(i) = first_param {
            let by = &mut self.counters.sectors_by_param;
            if by.len() <= i {
                by.resize(i + 1, (0, 0));
            }
            by[i].0 += sectors.len() as u64;
            by[i].1 += excess;
        }
        if let Inst::Ld { dst, .. } = inst {
            // The loaded bytes are in flight until their registers are first read.
            let per_reg = elem * touched.len() as u64;
            for r in dst {
                let slot = self.reg_slot(wi, *r);
                let overwritten = std::mem::replace(&mut cta.unread[slot], per_reg);
                self.in_flight(cta, wi, per_reg, overwritten);
            }
        }
        Ok(())
    }

    /// The buffer and byte offset of a global access of `size` bytes at `a` by thread `t`, after
    /// the checks every global access takes: inside a buffer, no store to a read-only one, no
    /// `.nc` load of one the kernel writes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn global_slot(
        &self,
        cta: &Cta,
        pc: usize,
        t: u32,
        a: u64,
        size: u64,
        how: Use,
        nc: bool,
    ) -> Result<(usize, u64), SimError> {
        let (store, atomic) = (how != Use::Read, how == Use::Atomic);
        let no_buffer =
            || self.err(ErrorKind::OutOfBounds, cta, Some(pc), Some(t), format!("address {a:#x} is in no buffer"));
        let index = (a >> 40).checked_sub(1).map(|i| i as usize);
        let Some(i) = index.filter(|&i| i < self.args.len()) else {
            return Err(no_buffer());
        };
        let Param::Buffer { name, access, .. } = &self.k.params[i] else {
            return Err(no_buffer());
        };
        let off = a - buffer_base(i);
        let len = match &self.args[i] {
            Arg::Buffer(b) => b.len() as u64,
            Arg::Scalar(_) => 0,
        };
        if off.checked_add(size).is_none_or(|end| end > len) {
            return Err(self.err(
                ErrorKind::OutOfBounds,
                cta,
                Some(pc),
                Some(t),
                format!("bytes [{off}, {}) of buffer `{name}` ({len} bytes)", off.saturating_add(size)),
            ));
        }
        if store && *access == Access::ReadOnly {
            return Err(self.err(
                ErrorKind::WriteReadOnly,
                cta,
                Some(pc),
                Some(t),
                format!("{} to read-only buffer `{name}`", if atomic { "an atomic" } else { "a store" }),
            ));
        }
        if nc && *access == Access::Written {
            return Err(self.err(
                ErrorKind::NcOfWritten,
                cta,
                Some(pc),
                Some(t),
                format!("a .nc load of buffer `{name}`, which this kernel writes"),
            ));
        }
        Ok((i, off))
    }

    pub(super) fn k_ty(&self, inst: &Inst) -> Ty {
        match inst {
            Inst::Ld { ty, .. } | Inst::St { ty, .. } => *ty,
            _ => Ty::B32,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn shared(
        &mut self,
        cta: &mut Cta,
        w: &Warp,
        wi: u32,
        pc: usize,
        inst: &Inst,
        touched: &[(u32, u64)],
        size: u64,
        elem: u64,
        store: bool,
    ) -> Result<(), SimError> {
        if touched.is_empty() {
            return Ok(());
        }
        self.counters.shared_requests += 1;
        self.counters.bank_replays += bank_replays(touched, size);
        let serial = self.serial;
        let how = if store { Use::Write } else { Use::Read };
        for &(lane, a) in touched {
            let t = wi * WARP + lane;
            self.track_shared(cta, w, wi, pc, lane, a, size, serial, how)?;
            let n = (size / elem) as usize;
            for k in 0..n {
                let at = (a + k as u64 * elem) as usize;
                if store {
                    let v = self.src_bits(cta, t, inst, k, self.k_ty(inst), pc)?;
                    cta.shared[at..at + elem as usize].copy_from_slice(&v.to_le_bytes()[..elem as usize]);
                } else {
                    let v = le(&cta.shared[at..at + elem as usize]);
                    self.dst_write(cta, t, inst, k, v);
                }
            }
        }
        Ok(())
    }

    /// The checks of one lane's access to shared bytes `[a, a + size)` and their record: bounds,
    /// races by epoch (atomics never race with atomics), `bar.warp.sync` between lanes, reads of
    /// bytes never written, and bytes a `cp.async` has not delivered yet.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn track_shared(
        &self,
        cta: &mut Cta,
        w: &Warp,
        wi: u32,
        pc: usize,
        lane: u32,
        a: u64,
        size: u64,
        serial: u64,
        how: Use,
    ) -> Result<(), SimError> {
        let t = wi * WARP + lane;
        self.shared_range(cta, t, pc, a, size)?;
        let me = Touch { serial, ..self.touch(cta, w, t, how == Use::Atomic) };
        for byte in a..a + size {
            if cta.pending.get(byte as usize).is_some_and(|&n| n > 0) {
                return Err(self.err(
                    ErrorKind::CpAsyncPending,
                    cta,
                    Some(pc),
                    Some(t),
                    format!("shared byte {byte} is the destination of a cp.async no wait has completed yet"),
                ));
            }
            let mut rec = cta.shared_meta[byte as usize];
            if let Err(race) = rec.log.access(me, how) {
                return Err(self.race_error(cta, pc, t, race, ErrorKind::SharedRace, &format!("shared byte {byte}")));
            }
            if how != Use::Write && !rec.written && cta.unwritten_read.is_none() {
                cta.unwritten_read = Some(self.err(
                    ErrorKind::UninitializedMemory,
                    cta,
                    Some(pc),
                    Some(t),
                    format!("shared byte {byte} is read before any thread writes it"),
                ));
            }
            rec.written |= how != Use::Read;
            cta.shared_meta[byte as usize] = rec;
        }
        Ok(())
    }
}

/// Extra wavefronts of one shared access: lanes go in phases (32 lanes of 4-byte accesses,
/// 16 of 8, 8 of 16); within a phase each bank serves one 4-byte word per wavefront (lanes
/// reading the same word share it).
pub fn bank_replays(touched: &[(u32, u64)], size: u64) -> u64 {
    let per_phase = (128 / size.clamp(4, 16)) as u32;
    let mut phases: HashMap<u32, HashMap<u64, BTreeSet<u64>>> = HashMap::new();
    for &(lane, a) in touched {
        let banks = phases.entry(lane / per_phase).or_default();
        for word in (a / 4)..(a + size).div_ceil(4) {
            banks.entry(word % 32).or_default().insert(word);
        }
    }
    phases.values().map(|banks| banks.values().map(|w| w.len() as u64).max().unwrap_or(1) - 1).sum()
}
