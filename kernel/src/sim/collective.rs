//! Warp collectives: member-mask checks and the whole-warp matrix instructions.

use super::alu::le;
use super::{Cta, ErrorKind, Machine, SimError, Warp, WARP};
use crate::frag;
use crate::ir::{Inst, Operand, Reg};

impl Machine<'_> {
    pub(super) fn check_mask(&self, cta: &Cta, w: &Warp, wi: u32, pc: usize, mask: u32) -> Result<(), SimError> {
        if mask & w.live != w.active || w.active & !mask != 0 {
            let lane = ((mask & w.live) ^ w.active).trailing_zeros().min(31);
            return Err(self.err(
                ErrorKind::SyncMask,
                cta,
                Some(pc),
                Some(wi * WARP + lane),
                format!("member mask {mask:#010x} but lanes {:#010x} execute it", w.active),
            ));
        }
        Ok(())
    }

    /// Warp-collective `.sync.aligned` matrix instructions need all 32 lanes (a partial last
    /// warp cannot execute them either).
    pub(super) fn full_warp(&self, cta: &Cta, w: &Warp, wi: u32, pc: usize) -> Result<(), SimError> {
        if w.active != u32::MAX {
            // The first live lane left out; a partial last warp has none, so its lane 0.
            let missing = w.live & !w.active;
            let lane = if missing != 0 { missing.trailing_zeros() } else { 0 };
            return Err(self.err(
                ErrorKind::SyncMask,
                cta,
                Some(pc),
                Some(wi * WARP + lane),
                format!("a whole-warp matrix instruction with lanes {:#010x} active (all 32 needed)", w.active),
            ));
        }
        Ok(())
    }

    /// `ldmatrix`: the row addresses go through the shared access path of `ld.shared` (bounds,
    /// races, uninitialized bytes, bank conflicts; the lane supplying a row counts as its
    /// reader), then every lane takes its elements by the closed-form layout.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ldmatrix(
        &mut self,
        cta: &mut Cta,
        w: &Warp,
        wi: u32,
        pc: usize,
        inst: &Inst,
        trans: bool,
        dst: &[Reg],
        addr: Operand,
        offset: i64,
    ) -> Result<(), SimError> {
        self.full_warp(cta, w, wi, pc)?;
        self.serial += 1;
        let rows = 8 * dst.len() as u32;
        let mut touched: Vec<(u32, u64)> = Vec::new();
        for lane in 0..rows {
            let t = wi * WARP + lane;
            let a = self.lane_address(cta, t, pc, addr, offset, 16, |a| {
                format!("ldmatrix row address {a:#x} is not 16-byte aligned")
            })?;
            touched.push((lane, a));
        }
        self.shared(cta, w, wi, pc, inst, &touched, 16, 2, false)?;
        let element = |cta: &Cta, m: usize, r: usize, c: usize| -> u64 {
            let at = (touched[8 * m + r].1 + 2 * c as u64) as usize;
            le(&cta.shared[at..at + 2])
        };
        for lane in 0..WARP {
            for (m, &reg) in dst.iter().enumerate() {
                let mut v = 0u64;
                for half in 0..2 {
                    let (mat, r, c) = frag::ldmatrix_pos(trans, lane as usize, m, half);
                    v |= element(cta, mat, r, c) << (16 * half);
                }
                self.write(cta, wi * WARP + lane, reg, v);
            }
        }
        Ok(())
    }
}
