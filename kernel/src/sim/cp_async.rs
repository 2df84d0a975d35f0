//! `cp.async`: copies that read global memory when issued and land in shared memory only when
//! a wait completes their group. Until then their destination bytes are off limits (reading
//! them would see stale data on the hardware, writing them would be overwritten), a barrier
//! does not complete them, and a thread must not exit with copies in flight.

use super::alu::{article, lanes};
use super::epoch::Use;
use super::{Arg, Cta, ErrorKind, Machine, SimError, Warp, WARP};
use crate::ir::{Inst, Ty};

/// One copy in flight.
#[derive(Debug, Clone)]
pub(super) struct Copy {
    /// The issuing thread (linear index in the CTA).
    pub(super) thread: u32,
    /// Its group, once committed (the thread's commit count at the commit).
    group: Option<u64>,
    /// The shared destination.
    dst: u64,
    /// The bytes to land: the source's first `src_size`, then zeros.
    data: Vec<u8>,
    /// The bytes read from global memory (`src_size`): in flight until the copy lands.
    read: u64,
}

impl Machine<'_> {
    pub(super) fn cp_async(
        &mut self,
        cta: &mut Cta,
        w: &Warp,
        wi: u32,
        pc: usize,
        inst: &Inst,
    ) -> Result<(), SimError> {
        let Inst::CpAsync { size, dst, dst_offset, src, src_offset, src_size, .. } = *inst else {
            return Ok(());
        };
        let size64 = u64::from(size);
        for lane in lanes(w.active) {
            let t = wi * WARP + lane;
            let d = self.value(cta, t, dst, Ty::U64, pc)?.wrapping_add(dst_offset as u64);
            let s = self.value(cta, t, src, Ty::U64, pc)?.wrapping_add(src_offset as u64);
            let n = match src_size {
                Some(o) => self.value(cta, t, o, Ty::U32, pc)?,
                None => size64,
            };
            if d % size64 != 0 || s % size64 != 0 {
                return Err(self.err(
                    ErrorKind::Misaligned,
                    cta,
                    Some(pc),
                    Some(t),
                    format!("{} {size}-byte cp.async from {s:#x} to shared {d:#x}", article(size.into())),
                ));
            }
            if n > size64 {
                return Err(self.err(
                    ErrorKind::OutOfBounds,
                    cta,
                    Some(pc),
                    Some(t),
                    format!("a source size of {n} bytes in {} {size}-byte cp.async", article(size.into())),
                ));
            }
            self.shared_range(cta, t, pc, d, size64)?;
            if let Some(b) = (d..d + size64).find(|&b| cta.pending[b as usize] > 0) {
                return Err(self.err(
                    ErrorKind::CpAsyncPending,
                    cta,
                    Some(pc),
                    Some(t),
                    format!("shared byte {b} is the destination of an earlier cp.async no wait has completed"),
                ));
            }
            let mut data = vec![0u8; size as usize];
            // Only the bytes actually read are bounds-checked: a zero source size reads
            // nothing, the way kernels guard a tile's ragged edge.
            if n > 0 {
                let (i, off) = self.global_slot(cta, pc, t, s, n, Use::Read, false)?;
                self.track_global(cta, w, pc, t, i, off, n, Use::Read)?;
                if let Arg::Buffer(b) = &self.args[i] {
                    data[..n as usize].copy_from_slice(&b[off as usize..(off + n) as usize]);
                }
                self.counters.global_requests += 1;
                self.counters.global_sectors += (s + n).div_ceil(32) - s / 32;
                self.counters.bytes_loaded += n;
            }
            for b in d..d + size64 {
                cta.pending[b as usize] += 1;
            }
            self.in_flight(cta, wi, n, 0);
            cta.copies.push(Copy { thread: t, group: None, dst: d, data, read: n });
        }
        Ok(())
    }

    pub(super) fn cp_async_group(
        &mut self,
        cta: &mut Cta,
        w: &Warp,
        wi: u32,
        pc: usize,
        inst: &Inst,
    ) -> Result<(), SimError> {
        self.serial += 1;
        let serial = self.serial;
        for lane in lanes(w.active) {
            let t = wi * WARP + lane;
            if matches!(inst, Inst::CpAsyncCommit | Inst::CpAsyncWaitAll) {
                let g = cta.groups[t as usize];
                for c in cta.copies.iter_mut().filter(|c| c.thread == t && c.group.is_none()) {
                    c.group = Some(g);
                }
                cta.groups[t as usize] += 1;
            }
            // Groups numbered below `done` are complete after this instruction.
            let done = match inst {
                Inst::CpAsyncWait { n } => cta.groups[t as usize].saturating_sub(u64::from(*n)),
                Inst::CpAsyncWaitAll => u64::MAX,
                _ => continue,
            };
            let (landing, rest): (Vec<Copy>, Vec<Copy>) = std::mem::take(&mut cta.copies)
                .into_iter()
                .partition(|c| c.thread == t && c.group.is_some_and(|g| g < done));
            cta.copies = rest;
            for c in landing {
                let size = c.data.len() as u64;
                self.in_flight(cta, wi, 0, c.read);
                for b in c.dst..c.dst + size {
                    cta.pending[b as usize] -= 1;
                }
                // The bytes land as a store of the waiting thread, with the race checks of one.
                self.track_shared(cta, w, wi, pc, lane, c.dst, size, serial, Use::Write)?;
                let at = c.dst as usize;
                cta.shared[at..at + c.data.len()].copy_from_slice(&c.data);
            }
        }
        Ok(())
    }
}
