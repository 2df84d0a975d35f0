//! Warp collectives: shuffles, votes and reductions under their member masks, and the
//! whole-warp matrix instructions (`ldmatrix`, `mma.sync`).

use super::alu::{binary, f, lanes, le};
use super::{Cta, ErrorKind, Lanes, Machine, SimError, Warp, WARP};
use crate::frag::{self, MmaInputs};
use crate::ir::{Inst, Operand, Reg, ShflMode, Ty, VoteMode};

impl Machine<'_> {
    /// `shfl.sync`, `vote.sync`, `redux.sync`: every value is read before any is written (the
    /// destination may be a source).
    pub(super) fn collective(&self, cta: &mut Cta, w: &Warp, wi: u32, pc: usize, inst: &Inst) -> Result<(), SimError> {
        let active = w.active;
        let (dst, v): (Reg, Lanes) = match *inst {
            Inst::Shfl { mode, dst, a, b, mask, .. } => {
                self.check_mask(cta, w, wi, pc, mask)?;
                let vals = self.gather(cta, wi, active, a, Ty::B32, pc)?;
                let bv = self.gather(cta, wi, active, b, Ty::U32, pc)?;
                let mut out = vals;
                for lane in lanes(active) {
                    let d = bv[lane as usize] as u32;
                    // Out of range: the lane keeps its own value (the PTX ISA's rule).
                    let src = match mode {
                        ShflMode::Idx => Some(d & 31),
                        ShflMode::Up => lane.checked_sub(d),
                        ShflMode::Down => lane.checked_add(d).filter(|&j| j < WARP),
                        ShflMode::Bfly => Some(lane ^ d).filter(|&j| j < WARP),
                    };
                    if let Some(j) = src {
                        if active & (1 << j) == 0 {
                            return Err(self.err(
                                ErrorKind::ShflInactiveSource,
                                cta,
                                Some(pc),
                                Some(wi * WARP + lane),
                                format!("lane {lane} reads lane {j}, which does not execute the shuffle"),
                            ));
                        }
                        out[lane as usize] = vals[j as usize];
                    }
                }
                (dst, out)
            }
            Inst::Vote { mode, dst, a, mask } => {
                self.check_mask(cta, w, wi, pc, mask)?;
                let p = self.gather(cta, wi, active, Operand::Reg(a), Ty::Pred, pc)?;
                let ballot = lanes(active).filter(|&l| p[l as usize] & 1 == 1).fold(0u32, |m, l| m | 1 << l);
                let v = match mode {
                    VoteMode::All => u64::from(ballot == active),
                    VoteMode::Any => u64::from(ballot != 0),
                    VoteMode::Ballot => u64::from(ballot),
                };
                (dst, [v; WARP as usize])
            }
            Inst::Redux { op, ty, dst, a, mask } => {
                self.check_mask(cta, w, wi, pc, mask)?;
                let x = self.gather(cta, wi, active, a, ty, pc)?;
                // The verifier admits only ops that never divide.
                let acc = lanes(active).map(|l| x[l as usize]).reduce(|y, x| binary(op, ty, y, x).unwrap_or(0));
                (dst, [acc.unwrap_or(0); WARP as usize])
            }
            _ => return Ok(()),
        };
        self.scatter(cta, wi, active, dst, &v);
        Ok(())
    }

    /// `mma.sync`: the whole warp's fragments in, the product accumulated in the fixed order
    /// [`frag::mma`] states, every input read before any output is written (`d` may alias `c`).
    pub(super) fn mma(&self, cta: &mut Cta, w: &Warp, wi: u32, pc: usize, inst: &Inst) -> Result<(), SimError> {
        let Inst::Mma { shape, atype, btype, d, a, b, c } = *inst else {
            return Ok(());
        };
        self.full_warp(cta, w, wi, pc)?;
        let mut x = MmaInputs { a: [[0; 4]; 32], b: [[0; 2]; 32], c: [[0.0; 4]; 32] };
        for i in 0..4 {
            let av = self.gather(cta, wi, u32::MAX, Operand::Reg(a[i]), Ty::B32, pc)?;
            let cv = self.gather(cta, wi, u32::MAX, c[i], Ty::F32, pc)?;
            for (l, (av, cv)) in av.iter().zip(&cv).enumerate() {
                x.a[l][i] = *av as u32;
                x.c[l][i] = f(*cv);
            }
        }
        for (i, r) in b.iter().enumerate() {
            let bv = self.gather(cta, wi, u32::MAX, Operand::Reg(*r), Ty::B32, pc)?;
            for (slot, v) in x.b.iter_mut().zip(bv) {
                slot[i] = v as u32;
            }
        }
        let out = frag::mma(shape, atype, btype, &x);
        for (i, r) in d.iter().enumerate() {
            let v: Lanes = std::array::from_fn(|l| u64::from(out[l][i].to_bits()));
            self.scatter(cta, wi, u32::MAX, *r, &v);
        }
        Ok(())
    }

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
