//! The `row_reduce` template's layer-norm and softmax forms: a group around one `layer_norm` or
//! one `softmax` of the last axis, with pointwise prologues and epilogues.
//!
//! **What one CTA computes**: one row (the grid is one CTA per row of 256 threads, thread `t`
//! taking elements `t, t + 256, …`: coalesced).
//!
//! **Passes**: layer norm sums the row (the mean), then the squared deviations (the variance),
//! then writes `(x − mean)·inv·w + b` with `inv = 1/sqrt(var + eps)`; softmax takes the row's
//! maximum, then sums `exp(x − max)`, then writes `exp(x − max)/total` (a row of −inf gives
//! zeros, as in the interpreter). Each reduction is per thread, then a shuffle butterfly per
//! warp, then the warps through 32 bytes of shared memory between two barriers; the input is
//! recomputed (or reloaded, from L2) in each pass rather than kept.
//!
//! **Memory traffic**: the input three times, the weights once, each result once.
//!
//! **Numerics**: the reductions run in another order than the interpreter's and `exp` is the
//! pointwise emitter's (within 1 ulp of the interpreter's), so results agree within the
//! tolerance of a reduction over the row.

use std::collections::HashMap;

use lathe_ir::ops::Fusion;
use lathe_ir::{Dim, Module, Op, ValueId};
use lathe_kernel::build::{f32_imm, KernelBuilder};
use lathe_kernel::ir::{Axis, BinOp, Cmp, Inst, Operand, Reg, ShflMode, Space, Special, Ty, UnOp};

use super::elementwise::{bind_operands, bind_results, bind_symbols, delinearize, Emit};
use super::pointwise::{self, Value};
use super::row_reduce::{Compiled, BLOCK};
use super::{unsupported, TemplateError};
use crate::group::index::{Expr, Ranges};

/// What a CTA reduction needs: 4 bytes of shared memory per warp, lane 0's predicate and this
/// thread's warp slot.
#[derive(Debug, Clone, Copy)]
pub(super) struct CtaSlots {
    slots: u32,
    lane0: Reg,
    warp_slot: Reg,
}

impl CtaSlots {
    /// Declares the slots and computes the registers for thread `tid` (`u32`).
    pub(super) fn new(b: &mut KernelBuilder, tid: Reg) -> Self {
        let slots = b.shared(4 * (BLOCK / 32), 16);
        let lane = b.special(Special::LaneId);
        let lane0 = b.setp(Cmp::Eq, Ty::U32, lane, Operand::Imm(0));
        let warp = b.bin(BinOp::Div, Ty::U32, tid, Operand::Imm(32));
        let w64 = b.cvt(Ty::U64, Ty::U32, None, false, warp);
        let warp_slot = b.fma(Ty::U64, w64, Operand::Imm(4), Operand::Imm(u64::from(slots)));
        CtaSlots { slots, lane0, warp_slot }
    }

    /// Whether this thread is its warp's lane 0.
    pub(super) fn lane0(self) -> Reg {
        self.lane0
    }

    /// The row's value of f32 `v` under op `op` across the CTA ([`CtaSlots::reduce_as`]).
    pub(super) fn reduce(self, e: &mut Emit<'_>, v: Reg, op: BinOp) -> Reg {
        self.reduce_as(e, v, op, Ty::F32)
    }

    /// The row's value of `v` (f32, or u32 for `Add`/`Max`/`Min`) under op `op` across the CTA:
    /// each warp by a butterfly (`redux.sync` for u32), the warps through the shared slots,
    /// folded in warp order by every thread (the same in all of them); a barrier before and
    /// after, so the slots can be reused.
    pub(super) fn reduce_as(self, e: &mut Emit<'_>, v: Reg, op: BinOp, ty: Ty) -> Reg {
        let CtaSlots { slots, lane0, warp_slot } = self;
        let s = if ty == Ty::U32 {
            e.b.redux(op, Ty::U32, v)
        } else {
            let mut s = v;
            for d in [16u64, 8, 4, 2, 1] {
                let o = e.b.shfl(ShflMode::Bfly, s, Operand::Imm(d));
                s = e.b.bin(op, ty, s, o);
            }
            s
        };
        e.b.if_then(lane0, |b| b.st(Space::Shared, ty, warp_slot, 0, &[s.into()]));
        e.b.bar();
        let total = e.b.ld1(Space::Shared, ty, Operand::Imm(u64::from(slots)), 0);
        for w in 1..BLOCK / 32 {
            let x = e.b.ld1(Space::Shared, ty, Operand::Imm(u64::from(slots + 4 * w)), 0);
            e.b.push(Inst::Binary { op, ty, dst: total, a: total.into(), b: x.into() });
        }
        e.b.bar();
        total
    }
}

/// Compiles a row-reduce group around one `layer_norm` or one last-axis `softmax`.
pub fn compile(m: &Module, f: &Fusion, name: &str) -> Result<Compiled, TemplateError> {
    let g = &f.body;
    let mains: Vec<_> = g
        .order
        .iter()
        .copied()
        .filter(|&n| lathe_passes::strategy::is_row_op(&g.nodes[n].op) && !matches!(g.nodes[n].op, Op::Amax))
        .collect();
    let [main] = mains.as_slice() else {
        return Err(unsupported("a row_reduce group with more than one row op"));
    };
    let node = &g.nodes[*main];
    let (x, y) = (node.args[0], node.results[0]);
    let shape = g.values[x].ty.shape.clone();
    let rank = shape.len();
    let layer = match &node.op {
        Op::LayerNorm(n) => Some((n.eps, node.args[1], node.args[2])),
        Op::Softmax(s) if s.axis == rank - 1 => None,
        Op::Softmax(_) => return Err(unsupported("a softmax over another axis than the last")),
        other => return Err(unsupported(format!("a row_reduce group around `{}`", other.name()))),
    };
    let Some(Dim::Const(d)) = shape.last().copied() else {
        return Err(unsupported("a row of symbolic length"));
    };
    let outs: Vec<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    if outs.iter().any(|&o| g.values[o].ty.shape != shape) {
        return Err(unsupported("a row_reduce result of another shape than the rows"));
    }
    let mut b = KernelBuilder::new(name, BLOCK);
    let mut bindings = Vec::new();
    let bases = bind_operands(g, &mut b, &mut bindings)?;
    let outputs = bind_results(g, &outs, &mut b, &mut bindings)?;
    let syms = bind_symbols(m, g, &mut b, &mut bindings);
    super::wait_for_inputs(&mut b);
    super::release_dependents(&mut b);
    let lead = shape[..rank - 1].to_vec();
    let cta = b.special(Special::Ctaid(Axis::X));
    let tid = b.special(Special::Tid(Axis::X));
    let c64 = b.cvt(Ty::U64, Ty::U32, None, false, cta);
    let mut vars = delinearize(&mut b, Operand::Reg(c64), &lead, &syms);
    let col = b.reg(Ty::U64);
    vars.push(col);
    let t64 = b.cvt(Ty::U64, Ty::U32, None, false, tid);
    let cta_slots = CtaSlots::new(&mut b, tid);
    let trips = d.div_ceil(u64::from(BLOCK));
    let idx: Vec<Expr> = (0..rank).map(Expr::Var).collect();
    let mut e = Emit { g, ranges: Ranges::of(m, &shape), b, vars, syms, bases, memo: HashMap::new() };
    // One pass over the row: `each(e, x, in_row)` per element; `in_row` is false on the ragged
    // last trip's spare threads (their `x` is element 0's).
    let trip = |e: &mut Emit<'_>,
                each: &mut dyn FnMut(&mut Emit<'_>, Reg, Reg) -> Result<(), TemplateError>|
     -> Result<(), TemplateError> {
        e.for_count(Operand::Imm(trips), |e, i| {
            e.memo.clear();
            let result = (|| {
                let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
                let j = e.b.fma(Ty::U64, i64r, Operand::Imm(u64::from(BLOCK)), t64);
                let inb = e.b.setp(Cmp::Lt, Ty::U64, j, Operand::Imm(d));
                let jc = e.b.selp(Ty::U64, j, Operand::Imm(0), inb);
                e.b.push(Inst::Mov { dst: col, src: jc.into() });
                let Value::F32(v) = e.value_at(x, idx.clone())? else {
                    return Err(unsupported("a non-float row"));
                };
                each(e, v, inb)
            })();
            e.memo.clear();
            result
        })
    };
    let store = |e: &mut Emit<'_>, r: Reg, inb: Reg| -> Result<(), TemplateError> {
        let r = e.round(Value::F32(r), g.values[y].ty.dtype);
        let memo = e.memo.clone();
        e.if_then(inb, |e| {
            e.memo = memo.clone();
            e.memo.insert((y, idx.clone()), r);
            let result = (|| {
                for (&o, &(buf, dtype)) in outs.iter().zip(&outputs) {
                    let out = e.value_at(o, idx.clone())?;
                    e.store_at(buf, dtype, &shape, &idx, out)?;
                }
                Ok(())
            })();
            e.memo.clear();
            result
        })
    };
    match layer {
        Some((eps, w, bias)) => {
            let acc = e.b.mov(Ty::F32, f32_imm(0.0));
            trip(&mut e, &mut |e, v, inb| {
                let v = e.b.selp(Ty::F32, v, f32_imm(0.0), inb);
                e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: acc, a: acc.into(), b: v.into() });
                Ok(())
            })?;
            let sum = cta_slots.reduce(&mut e, acc, BinOp::Add);
            let mean = e.b.bin(BinOp::Div, Ty::F32, sum, f32_imm(d as f32));
            let acc2 = e.b.mov(Ty::F32, f32_imm(0.0));
            trip(&mut e, &mut |e, v, inb| {
                let dv = e.b.bin(BinOp::Sub, Ty::F32, v, mean);
                let sq = e.b.bin(BinOp::Mul, Ty::F32, dv, dv);
                let sq = e.b.selp(Ty::F32, sq, f32_imm(0.0), inb);
                e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: acc2, a: acc2.into(), b: sq.into() });
                Ok(())
            })?;
            let ssq = cta_slots.reduce(&mut e, acc2, BinOp::Add);
            let var = e.b.bin(BinOp::Div, Ty::F32, ssq, f32_imm(d as f32));
            let ve = e.b.bin(BinOp::Add, Ty::F32, var, f32_imm(eps as f32));
            let root = e.b.un(UnOp::Sqrt, Ty::F32, ve);
            let inv = e.b.bin(BinOp::Div, Ty::F32, f32_imm(1.0), root);
            let last = Expr::Var(rank - 1);
            trip(&mut e, &mut |e, v, inb| {
                let (Value::F32(wv), Value::F32(bv)) =
                    (e.value_at(w, vec![last.clone()])?, e.value_at(bias, vec![last.clone()])?)
                else {
                    return Err(unsupported("non-float norm weights"));
                };
                // (x − mean)·inv·w + b, in the interpreter's order.
                let dv = e.b.bin(BinOp::Sub, Ty::F32, v, mean);
                let t = e.b.bin(BinOp::Mul, Ty::F32, dv, inv);
                let t = e.b.bin(BinOp::Mul, Ty::F32, t, wv);
                let r = e.b.bin(BinOp::Add, Ty::F32, t, bv);
                store(e, r, inb)
            })?;
        }
        None => {
            let mx = e.b.mov(Ty::F32, f32_imm(f32::NEG_INFINITY));
            trip(&mut e, &mut |e, v, inb| {
                let v = e.b.selp(Ty::F32, v, f32_imm(f32::NEG_INFINITY), inb);
                e.b.push(Inst::Binary { op: BinOp::Max, ty: Ty::F32, dst: mx, a: mx.into(), b: v.into() });
                Ok(())
            })?;
            let rmax = cta_slots.reduce(&mut e, mx, BinOp::Max);
            // A row of −inf: subtract 0 instead, and the exps below are all 0 (the zeros the
            // interpreter gives such a row), with a total of 0 guarded below.
            let all_inf = e.b.setp(Cmp::Eq, Ty::F32, rmax, f32_imm(f32::NEG_INFINITY));
            let shift = e.b.selp(Ty::F32, f32_imm(0.0), rmax, all_inf);
            let acc = e.b.mov(Ty::F32, f32_imm(0.0));
            trip(&mut e, &mut |e, v, inb| {
                let dv = e.b.bin(BinOp::Sub, Ty::F32, v, shift);
                let ex = pointwise::exp(&mut e.b, dv);
                let ex = e.b.selp(Ty::F32, ex, f32_imm(0.0), inb);
                e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: acc, a: acc.into(), b: ex.into() });
                Ok(())
            })?;
            let total = cta_slots.reduce(&mut e, acc, BinOp::Add);
            let zero_total = e.b.setp(Cmp::Eq, Ty::F32, total, f32_imm(0.0));
            let denom = e.b.selp(Ty::F32, f32_imm(1.0), total, zero_total);
            trip(&mut e, &mut |e, v, inb| {
                let dv = e.b.bin(BinOp::Sub, Ty::F32, v, shift);
                let ex = pointwise::exp(&mut e.b, dv);
                let r = e.b.bin(BinOp::Div, Ty::F32, ex, denom);
                let r = e.b.selp(Ty::F32, f32_imm(0.0), r, all_inf);
                store(e, r, inb)
            })?;
        }
    }
    Ok(Compiled { kernel: e.b.finish(), bindings, rows: lead, groups: 1, accumulators: Vec::new() })
}
