//! The `row_reduce` template, first form: a group built around one RMSNorm (plain or group norm,
//! gated or not), with pointwise prologues (computing its input and weight), epilogues (on its
//! result) and `amax` epilogue reductions (each a per-thread running maximum, a warp `redux`,
//! and one atomic max per warp into a zeroed `f32[]`).
//!
//! **What one CTA computes**: one normalization group of one row — `d / groups` elements of the
//! last axis — so the grid is `rows · groups` CTAs of 256 threads. **Tiling**: thread `t` takes
//! elements `t, t + 256, …` (consecutive threads, consecutive elements: coalesced). **Passes**:
//! one to sum the squares (each thread in a register, then the warps by shuffles and the CTA
//! through 32 bytes of shared memory behind one barrier), one to scale and run the epilogue;
//! the input is computed (or loaded) in both passes rather than kept, so a long row needs no
//! shared memory. **Memory traffic**: the input read twice (the second time from L2), the weight
//! once, each result written once. **Cost model**: `bytes = 2·input + weight + results`.
//!
//! Numerics: the scale is `1 / sqrt(Σx²/n + eps)` with IEEE `sqrt` and division, as the
//! interpreter computes it; the squares are summed in a different order (per thread, then a
//! butterfly, then the warps), so results agree with the interpreter within the shared
//! tolerance for a reduction of the group's length, not bit for bit.

use std::collections::HashMap;

use lathe_ir::ops::Fusion;
use lathe_ir::{Dim, Op, ValueId};
use lathe_kernel::build::{f32_imm, KernelBuilder};
use lathe_kernel::ir::{
    Access as BufferAccess, Axis, BinOp, Inst, Kernel, Operand, Reg, ShflMode, Space, Special, Ty, UnOp,
};

use super::elementwise::{bind_operands, bind_results, bind_symbols, delinearize, dim_operand, storage, Binding, Emit};
use super::pointwise::Value;
use super::{unsupported, TemplateError};
use crate::group::index::{Expr, Ranges};

/// Threads per CTA.
pub const BLOCK: u32 = 256;

/// A compiled row-reduce group.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The kernel.
    pub kernel: Kernel,
    /// What each kernel parameter is, in order.
    pub bindings: Vec<Binding>,
    /// The launch: `∏ rows · groups` CTAs (`rows`: the input's leading dimensions) of [`BLOCK`].
    pub rows: Vec<Dim>,
    /// Normalization groups per row.
    pub groups: u64,
    /// Results the kernel accumulates into with atomics (`amax`): zeroed by a memset launch
    /// before it, as the launch rule says.
    pub accumulators: Vec<usize>,
}

/// Compiles row-reduce group `f` of module `m` as kernel `name`, when it is one RMSNorm (with or
/// without Mamba-2's gate) with pointwise neighbours.
// The builder's block closures return nothing: an immediately called closure inside each one
// collects the block's error with `?`.
#[allow(clippy::redundant_closure_call)]
pub fn compile(m: &lathe_ir::Module, f: &Fusion, name: &str) -> Result<Compiled, TemplateError> {
    let g = &f.body;
    let norms: Vec<_> = g.order.iter().copied().filter(|&n| matches!(g.nodes[n].op, Op::RmsNorm(_))).collect();
    // `amax` epilogue reductions ride along (each a running max, one atomic per warp).
    let rows_ops = g
        .order
        .iter()
        .filter(|&&n| lathe_passes::strategy::is_row_op(&g.nodes[n].op) && !matches!(g.nodes[n].op, Op::Amax))
        .count();
    let amaxes: Vec<(ValueId, ValueId)> = g
        .order
        .iter()
        .filter(|&&n| matches!(g.nodes[n].op, Op::Amax))
        .map(|&n| (g.nodes[n].args[0], g.nodes[n].results[0]))
        .collect();
    // The group's row ops, by name, for the errors below.
    let row_op_names = || {
        let names: Vec<&str> = g
            .order
            .iter()
            .filter(|&&n| lathe_passes::strategy::is_row_op(&g.nodes[n].op))
            .map(|&n| g.nodes[n].op.name())
            .collect();
        names.join(", ")
    };
    let [norm] = norms.as_slice() else {
        return Err(unsupported(format!("a row_reduce group not built around one rms_norm ({})", row_op_names())));
    };
    if rows_ops != 1 {
        return Err(unsupported(format!("a row_reduce group with more than one row op ({})", row_op_names())));
    }
    let node = &g.nodes[*norm];
    let Op::RmsNorm(attrs) = &node.op else { return Err(unsupported("rms_norm")) };
    let (x, w, y) = (node.args[0], node.args[1], node.results[0]);
    // Mamba-2's gated norm normalizes `x · silu(z)` (f32, unrounded, as the interpreter does).
    let gate = node.args.get(2).copied();
    let shape = g.values[x].ty.shape.clone();
    let Some(Dim::Const(d)) = shape.last().copied() else {
        return Err(unsupported("an rms_norm over a symbolic last axis"));
    };
    let groups = attrs.groups.max(1);
    let gs = d / groups;
    let is_amax = |v: ValueId| amaxes.iter().any(|&(_, r)| r == v);
    let outs: Vec<ValueId> = g.outputs.iter().map(|o| o.value).filter(|&v| !is_amax(v)).collect();
    if outs.iter().any(|&o| g.values[o].ty.shape != shape) {
        return Err(unsupported("a row_reduce result of another shape than the normalized rows"));
    }
    if amaxes.iter().any(|&(a, r)| g.values[a].ty.shape != shape || !g.outputs.iter().any(|o| o.value == r)) {
        return Err(unsupported("an amax of another shape, or not a result"));
    }
    let mut b = KernelBuilder::new(name, BLOCK);
    let mut bindings = Vec::new();
    let bases = bind_operands(g, &mut b, &mut bindings)?;
    let mut outputs = Vec::new();
    let mut amax_bufs = Vec::new();
    let mut accumulators = Vec::new();
    for (k, o) in g.outputs.iter().enumerate() {
        let dtype = g.values[o.value].ty.dtype;
        storage(dtype)?;
        let buf = b.buffer(&format!("out{k}"), dtype, BufferAccess::Written);
        match amaxes.iter().find(|&&(_, r)| r == o.value) {
            // An f32[] the launch's scratch rule zeroes; the kernel raises it with atomics.
            Some(&(arg, _)) => {
                amax_bufs.push((arg, buf));
                accumulators.push(k);
            }
            None => outputs.push((buf, dtype)),
        }
        bindings.push(Binding::Result(k));
    }
    let syms = bind_symbols(m, g, &mut b, &mut bindings);
    super::wait_for_inputs(&mut b);
    super::release_dependents(&mut b);
    let lead = &shape[..shape.len() - 1];
    let rank = shape.len();
    // This CTA's row (as a multi-index over the leading dimensions) and group.
    let cta = b.special(Special::Ctaid(Axis::X));
    let tid = b.special(Special::Tid(Axis::X));
    let c64 = b.cvt(Ty::U64, Ty::U32, None, false, cta);
    let grp = b.bin(BinOp::Rem, Ty::U64, c64, Operand::Imm(groups));
    let row = b.bin(BinOp::Div, Ty::U64, c64, Operand::Imm(groups));
    let mut vars = delinearize(&mut b, Operand::Reg(row), lead, &syms);
    let col = b.reg(Ty::U64);
    vars.push(col);
    vars[rank - 1] = col;
    let first = b.bin(BinOp::Mul, Ty::U64, grp, Operand::Imm(gs));
    let t64 = b.cvt(Ty::U64, Ty::U32, None, false, tid);
    let trips = gs.div_ceil(u64::from(BLOCK));
    let ranges = Ranges::of(m, &shape);
    let idx: Vec<Expr> = (0..rank).map(Expr::Var).collect();
    let mut e = Emit { g, ranges, b, vars, syms, bases, memo: HashMap::new() };

    // Pass 1: each thread's sum of squares.
    let acc = square_sum(&mut e, x, gate, &idx, col, first.into(), gs, t64)?;
    // The warp's sum by a butterfly, then the CTA's through shared memory.
    let mut s = acc;
    for dist in [16u64, 8, 4, 2, 1] {
        let o = e.b.shfl(ShflMode::Bfly, s, Operand::Imm(dist));
        s = e.b.bin(BinOp::Add, Ty::F32, s, o);
    }
    let slots = e.b.shared(4 * (BLOCK / 32), 16);
    let lane = e.b.special(Special::LaneId);
    let warp = e.b.bin(BinOp::Div, Ty::U32, tid, Operand::Imm(32));
    let lane0 = e.b.setp(lathe_kernel::ir::Cmp::Eq, Ty::U32, lane, Operand::Imm(0));
    let wofs = e.b.cvt(Ty::U64, Ty::U32, None, false, warp);
    let wofs = e.b.fma(Ty::U64, wofs, Operand::Imm(4), Operand::Imm(u64::from(slots)));
    e.b.if_then(lane0, |b| b.st(Space::Shared, Ty::F32, wofs, 0, &[s.into()]));
    e.b.bar();
    let total = e.b.mov(Ty::F32, f32_imm(0.0));
    for w in 0..BLOCK / 32 {
        let v = e.b.ld1(Space::Shared, Ty::F32, Operand::Imm(u64::from(slots + 4 * w)), 0);
        e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: total, a: total.into(), b: v.into() });
    }
    // scale = 1 / sqrt(Σx²/n + eps), IEEE.
    let mean = e.b.bin(BinOp::Div, Ty::F32, total, f32_imm(gs as f32));
    let var = e.b.bin(BinOp::Add, Ty::F32, mean, f32_imm(attrs.eps as f32));
    let root = e.b.un(UnOp::Sqrt, Ty::F32, var);
    let scale = e.b.bin(BinOp::Div, Ty::F32, f32_imm(1.0), root);

    // Running |max| of each amax operand, as the bits of a non-negative f32 (ordered as u32).
    let maxima: Vec<Reg> = amax_bufs.iter().map(|_| e.b.mov(Ty::U32, Operand::Imm(0))).collect();

    // Pass 2: scale, weight, epilogue, store.
    e.for_count(Operand::Imm(trips), |e, i| {
        let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
        let j = e.b.fma(Ty::U64, i64r, Operand::Imm(u64::from(BLOCK)), t64);
        let inb = e.b.setp(lathe_kernel::ir::Cmp::Lt, Ty::U64, j, Operand::Imm(gs));
        e.if_then(inb, |e| {
            let result = (|| {
                e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::U64, dst: col, a: first.into(), b: j.into() });
                e.memo.clear();
                let v = gated_input(e, x, gate, &idx)?;
                let Value::F32(wv) = e.value_at(w, vec![Expr::Var(rank - 1)])? else {
                    return Err(unsupported("a predicate weight"));
                };
                // v · scale · w, in the interpreter's order.
                let t = e.b.bin(BinOp::Mul, Ty::F32, v, scale);
                let r = e.b.bin(BinOp::Mul, Ty::F32, t, wv);
                let r = e.round(Value::F32(r), e.g.values[y].ty.dtype);
                e.memo.insert((y, idx.clone()), r);
                for (&o, &(buf, dtype)) in outs.iter().zip(&outputs) {
                    // Element (row, col) of a row-major result.
                    let out = e.value_at(o, idx.clone())?;
                    e.store_at(buf, dtype, &shape, &idx, out)?;
                }
                for (&(arg, _), &mx) in amax_bufs.iter().zip(&maxima) {
                    let Value::F32(v) = e.value_at(arg, idx.clone())? else {
                        return Err(unsupported("an amax of a predicate"));
                    };
                    let a = e.b.un(UnOp::Abs, Ty::F32, v);
                    let bits = e.b.mov(Ty::B32, a);
                    e.b.push(Inst::Binary { op: BinOp::Max, ty: Ty::U32, dst: mx, a: mx.into(), b: bits.into() });
                }
                Ok(())
            })();
            e.memo.clear();
            result
        })
    })?;
    // Each warp's maximum, raised into the result by its lane 0 (integer max of non-negative
    // f32 bits: the same in every order; a NaN, whose bits are the largest, wins as the
    // interpreter's NaN does).
    for (&(_, buf), &mx) in amax_bufs.iter().zip(&maxima) {
        let w = e.b.redux(BinOp::Max, Ty::U32, mx);
        e.b.if_then(lane0, |b| b.red(Space::Global, BinOp::Max, Ty::U32, buf, 0, w));
    }
    Ok(Compiled { kernel: e.b.finish(), bindings, rows: lead.to_vec(), groups, accumulators })
}

/// This thread's sum of the squares of a normalization group's `gs` elements (of `x`, gated by
/// `z` where given) at `idx`, element `j` (for `j = t, t + 256, …`) at column `first + j` of the
/// column variable `col`. Spare trips read the group's first element and add nothing.
#[allow(clippy::too_many_arguments, clippy::redundant_closure_call)]
pub(super) fn square_sum(
    e: &mut Emit,
    x: ValueId,
    gate: Option<ValueId>,
    idx: &[Expr],
    col: Reg,
    first: Operand,
    gs: u64,
    t64: Reg,
) -> Result<Reg, TemplateError> {
    let acc = e.b.mov(Ty::F32, f32_imm(0.0));
    e.for_count(Operand::Imm(gs.div_ceil(u64::from(BLOCK))), |e, i| {
        let result = (|| {
            let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
            let j = e.b.fma(Ty::U64, i64r, Operand::Imm(u64::from(BLOCK)), t64);
            let inb = e.b.setp(lathe_kernel::ir::Cmp::Lt, Ty::U64, j, Operand::Imm(gs));
            let jc = e.b.selp(Ty::U64, j, Operand::Imm(0), inb);
            e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::U64, dst: col, a: first, b: jc.into() });
            e.memo.clear();
            let v = gated_input(e, x, gate, idx)?;
            let sq = e.b.bin(BinOp::Mul, Ty::F32, v, v);
            let sq = e.b.selp(Ty::F32, sq, f32_imm(0.0), inb);
            e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: acc, a: acc.into(), b: sq.into() });
            Ok(())
        })();
        e.memo.clear();
        result
    })?;
    Ok(acc)
}

/// The normalized value at `idx`: `x`, or `x · silu(z)` with a gate.
pub(super) fn gated_input(e: &mut Emit, x: ValueId, gate: Option<ValueId>, idx: &[Expr]) -> Result<Reg, TemplateError> {
    let Value::F32(v) = e.value_at(x, idx.to_vec())? else { return Err(unsupported("a predicate input")) };
    let Some(z) = gate else { return Ok(v) };
    let zv = e.value_at(z, idx.to_vec())?;
    let silu = Op::Unary(lathe_ir::ops::UnaryOp::Silu);
    let Value::F32(s) = super::pointwise::emit(&mut e.b, &silu, &[zv]).map_err(|x| unsupported(x.to_string()))? else {
        return Err(unsupported("a predicate gate"));
    };
    Ok(e.b.bin(BinOp::Mul, Ty::F32, v, s))
}

/// Whether the row ops of row-reduce group `f` are all `quantize` and `dequantize` (by a scale
/// computed before the group): its form is then elementwise, one thread per pair of elements
/// (the `elementwise` template stores fp8 results in pairs).
pub fn scales_only(f: &Fusion) -> bool {
    let g = &f.body;
    g.order
        .iter()
        .map(|&n| &g.nodes[n].op)
        .filter(|o| lathe_passes::strategy::is_row_op(o))
        .all(|o| matches!(o, Op::Quantize(_) | Op::Dequantize(_)))
}

/// Compiles a row-reduce group by the form its main op takes: a `reduce` ([`compile_reduce`]) or
/// an RMSNorm ([`compile`]).
pub fn compile_any(m: &lathe_ir::Module, f: &Fusion, name: &str) -> Result<Compiled, TemplateError> {
    let has = |p: &dyn Fn(&Op) -> bool| f.body.order.iter().any(|&n| p(&f.body.nodes[n].op));
    if has(&|o| matches!(o, Op::Reduce(_))) {
        compile_reduce(m, f, name)
    } else if has(&|o| matches!(o, Op::LayerNorm(_) | Op::Softmax(_))) {
        super::row_norm::compile(m, f, name)
    } else {
        compile(m, f, name)
    }
}

/// Compiles a row-reduce group built around one `reduce` of the last axis (sum, max or mean; f32
/// or integer) with pointwise prologues and epilogues: one CTA per row, each thread folding its
/// strided elements, the CTA's partials folded through shared memory by thread 0 (a first
/// form: the rows these groups reduce are short), which then computes the epilogue and stores.
// The builder's block closures return nothing: an immediately called closure inside each one
// collects the block's error with `?`.
#[allow(clippy::redundant_closure_call)]
pub fn compile_reduce(m: &lathe_ir::Module, f: &Fusion, name: &str) -> Result<Compiled, TemplateError> {
    use lathe_ir::ops::ReduceKind;
    let g = &f.body;
    let reduces: Vec<_> = g.order.iter().copied().filter(|&n| matches!(g.nodes[n].op, Op::Reduce(_))).collect();
    let rows_ops = g.order.iter().filter(|&&n| lathe_passes::strategy::is_row_op(&g.nodes[n].op)).count();
    let ([node_id], 1) = (reduces.as_slice(), rows_ops) else {
        return Err(unsupported("a row_reduce group not built around one reduce"));
    };
    let node = &g.nodes[*node_id];
    let Op::Reduce(red) = &node.op else { return Err(unsupported("reduce")) };
    let (x, y) = (node.args[0], node.results[0]);
    let shape = g.values[x].ty.shape.clone();
    let rank = shape.len();
    if red.axes != [rank - 1] {
        return Err(unsupported("a reduce over other axes than the last"));
    }
    let last = shape[rank - 1];
    let lead = shape[..rank - 1].to_vec();
    let out_shape = g.values[y].ty.shape.clone();
    let outs: Vec<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    if outs.iter().any(|&o| g.values[o].ty.shape != out_shape) {
        return Err(unsupported("a result of another shape than the reduced rows"));
    }
    let int = g.values[x].ty.dtype.is_int();
    let ty = if int { Ty::S64 } else { Ty::F32 };
    let mut b = KernelBuilder::new(name, BLOCK);
    let mut bindings = Vec::new();
    let bases = bind_operands(g, &mut b, &mut bindings)?;
    let outputs = bind_results(g, &outs, &mut b, &mut bindings)?;
    let syms = bind_symbols(m, g, &mut b, &mut bindings);
    super::wait_for_inputs(&mut b);
    super::release_dependents(&mut b);
    let cta = b.special(Special::Ctaid(Axis::X));
    let tid = b.special(Special::Tid(Axis::X));
    let c64 = b.cvt(Ty::U64, Ty::U32, None, false, cta);
    let rest = Operand::Reg(c64);
    let mut vars = delinearize(&mut b, rest, &lead, &syms);
    let col = b.reg(Ty::U64);
    vars.push(col);
    let t64 = b.cvt(Ty::U64, Ty::U32, None, false, tid);
    // The row's length (a symbol's value at run time) and the trips of 256 covering it.
    let d = dim_operand(&last, &syms);
    let dp = b.bin(BinOp::Add, Ty::U64, d, Operand::Imm(u64::from(BLOCK) - 1));
    let trips64 = b.bin(BinOp::Div, Ty::U64, dp, Operand::Imm(u64::from(BLOCK)));
    let trips = b.cvt(Ty::U32, Ty::U64, None, false, trips64);
    let ranges = Ranges::of(m, &shape);
    let idx: Vec<Expr> = (0..rank).map(Expr::Var).collect();
    let mut e = Emit { g, ranges, b, vars, syms, bases, memo: HashMap::new() };
    // The fold's identity and step.
    let identity = match (red.kind, int) {
        (ReduceKind::Max, true) => Operand::Imm(i64::MIN as u64),
        (ReduceKind::Max, false) => f32_imm(f32::NEG_INFINITY),
        (_, true) => Operand::Imm(0),
        (_, false) => f32_imm(0.0),
    };
    let step = if red.kind == ReduceKind::Max { BinOp::Max } else { BinOp::Add };
    let acc = e.b.mov(ty, identity);
    e.for_count(trips, |e, i| {
        let result = (|| {
            let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
            let j = e.b.fma(Ty::U64, i64r, Operand::Imm(u64::from(BLOCK)), t64);
            let inb = e.b.setp(lathe_kernel::ir::Cmp::Lt, Ty::U64, j, d);
            let jc = e.b.selp(Ty::U64, j, Operand::Imm(0), inb);
            e.b.push(Inst::Mov { dst: col, src: jc.into() });
            e.memo.clear();
            let v = match e.value_at(x, idx.clone())? {
                Value::F32(r) | Value::I64(r) => r,
                Value::Pred(_) => return Err(unsupported("a predicate reduce")),
            };
            let v = e.b.selp(ty, v, identity, inb);
            e.b.push(Inst::Binary { op: step, ty, dst: acc, a: acc.into(), b: v.into() });
            Ok(())
        })();
        e.memo.clear();
        result
    })?;
    // Partials through shared memory (densely: a gap would let LLVM widen the loads); thread 0
    // folds them in thread order.
    let width = ty.bytes();
    let slots = e.b.shared(width * BLOCK, 16);
    let at = e.b.fma(Ty::U64, t64, Operand::Imm(u64::from(width)), Operand::Imm(u64::from(slots)));
    e.b.st(Space::Shared, ty, at, 0, &[acc.into()]);
    e.b.bar();
    let first = e.b.setp(lathe_kernel::ir::Cmp::Eq, Ty::U32, tid, Operand::Imm(0));
    e.if_then(first, |e| {
        let result = (|| {
            let total = e.b.mov(ty, identity);
            for k in 0..BLOCK {
                let v = e.b.ld1(Space::Shared, ty, Operand::Imm(u64::from(slots + width * k)), 0);
                e.b.push(Inst::Binary { op: step, ty, dst: total, a: total.into(), b: v.into() });
            }
            let r = if red.kind == ReduceKind::Mean {
                if int {
                    return Err(unsupported("an integer mean"));
                }
                let n = e.b.cvt(Ty::F32, Ty::U64, Some(lathe_kernel::ir::Rounding::Rn), false, d);
                e.b.bin(BinOp::Div, Ty::F32, total, n)
            } else {
                total
            };
            let r = if int { Value::I64(r) } else { e.round(Value::F32(r), g.values[y].ty.dtype) };
            let ridx: Vec<Expr> = if red.keep_dims {
                (0..rank - 1).map(Expr::Var).chain(std::iter::once(Expr::Const(0))).collect()
            } else {
                (0..rank - 1).map(Expr::Var).collect()
            };
            e.memo.clear();
            e.memo.insert((y, ridx.clone()), r);
            for (&o, &(buf, dtype)) in outs.iter().zip(&outputs) {
                let out = e.value_at(o, ridx.clone())?;
                e.store_at(buf, dtype, &out_shape, &ridx, out)?;
            }
            Ok(())
        })();
        e.memo.clear();
        result
    })?;
    Ok(Compiled { kernel: e.b.finish(), bindings, rows: lead, groups: 1, accumulators: Vec::new() })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use lathe_interp::tensor::Tensor;
    use lathe_interp::SyntheticOnly;
    use lathe_ir::ops::KernelStrategy;
    use lathe_ir::text::parse_module;
    use lathe_ir::DType;
    use lathe_kernel::sim::{run, Arg, Launch, Options};

    use super::*;

    /// Runs the group `main` of `text` (operands `x`, `r`, `w` in that order) in the simulator and
    /// in the interpreter with `s` rows, and compares every result with the shared tolerance of a
    /// reduction over one normalization group.
    fn check(text: &str, s: usize, d: usize) {
        let m = parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        lathe_ir::verify::verify(&m).unwrap_or_else(|e| panic!("{e:?}"));
        let g = m.functions.first().expect("a function").graph.clone();
        let f = Fusion { strategy: KernelStrategy::RowReduce, body: g.clone() };
        lathe_passes::strategy::classify(&m, &f).expect("a row_reduce group");
        let c = compile_any(&m, &f, "norm").unwrap_or_else(|e| panic!("{e}"));
        let mut rng = lathe_tests::Rng::new(7);
        let mut vals = |n: usize| (0..n).map(|_| rng.uniform(-2.0, 2.0) as f32).collect::<Vec<f32>>();
        let (x, r, w) = (vals(s * d), vals(s * d), vals(d));
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let operands = [bytes(&x), bytes(&r), bytes(&w)];
        let mut args = Vec::new();
        let mut results = Vec::new();
        for b in &c.bindings {
            args.push(match b {
                Binding::Operand(k) => Arg::Buffer(operands[*k].clone()),
                Binding::Result(k) => {
                    results.push(args.len());
                    let n: usize = g.values[g.outputs[*k].value]
                        .ty
                        .shape
                        .iter()
                        .map(|x| match x {
                            Dim::Const(c) => *c as usize,
                            Dim::Sym(_) => s,
                        })
                        .product();
                    Arg::Buffer(vec![0; n * 4])
                }
                Binding::Symbol(_) => Arg::Scalar(s as u64),
                Binding::Weight(_) | Binding::ResultInPlace { .. } | Binding::Scratch(_) => {
                    panic!("no weights, caches or scratch here")
                }
            });
        }
        let launch = Launch { grid: [(s as u64 * c.groups) as u32, 1, 1], block: [BLOCK, 1, 1] };
        run(&c.kernel, &launch, &mut args, &Options::default())
            .unwrap_or_else(|e| panic!("{e}\n{}", lathe_kernel::text::print(&c.kernel)));
        let inputs = HashMap::from([
            ("x".to_string(), Tensor::from_f32(DType::F32, vec![s, d], x)),
            ("r".to_string(), Tensor::from_f32(DType::F32, vec![s, d], r)),
            ("w".to_string(), Tensor::from_f32(DType::F32, vec![d], w)),
        ]);
        let want = lathe_interp::run(&m, "main", &inputs, &SyntheticOnly).expect("the interpreter runs");
        let gs = d / c.groups as usize;
        for (&slot, (name, t)) in results.iter().zip(&want) {
            let Arg::Buffer(b) = &args[slot] else { panic!("a buffer") };
            let got: Vec<f64> =
                b.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect();
            lathe_tests::assert_close(&format!("result {name}"), &got, &t.to_f64(), DType::F32, gs);
        }
        crate::ptx::compile(&c.kernel, lathe_kernel::target::Target::HOPPER).unwrap_or_else(|e| panic!("{e}"));
    }

    fn module(d: usize, groups: usize) -> String {
        format!(
            "module @m {{\n  compute_dtype = f32\n  symbol S <= 16\n  func @main {{\n    %0 = input \"x\" : f32[S, {d}]\n    %1 = input \"r\" : f32[S, {d}]\n    %2 = input \"w\" : f32[{d}]\n    %3 = add %0, %1 : f32[S, {d}]\n    %4 = rms_norm %3, %2 {{eps=1e-5, groups={groups}}} : f32[S, {d}]\n    %5 = mul %4, %0 : f32[S, {d}]\n    %6 = amax %5 : f32[]\n    return %3, %5, %6\n  }}\n}}\n"
        )
    }

    #[test]
    fn a_residual_add_rms_norm_its_epilogue_and_amax_match_the_interpreter() {
        // 640 elements: three trips of 256 threads, the last ragged.
        check(&module(640, 1), 5, 640);
    }

    #[test]
    fn reductions_of_the_last_axis_match_the_interpreter() {
        // The position bookkeeping of the decode programs: max over positions, plus one, in i64.
        let text = "module @m {\n  compute_dtype = f32\n  symbol B <= 4\n  symbol S <= 64\n  func @main {\n    %0 = iota {axis=1} : i64[B, S]\n    %1 = reduce %0 {kind=max, axes=[1]} : i64[B]\n    %2 = constant 1 : i64[]\n    %3 = add %1, %2 : i64[B]\n    return %3\n  }\n}\n";
        let m = parse_module(text).expect("parses");
        let g = m.functions.first().expect("a function").graph.clone();
        let f = Fusion { strategy: KernelStrategy::RowReduce, body: g.clone() };
        lathe_passes::strategy::classify(&m, &f).expect("a row_reduce group");
        let c = compile_any(&m, &f, "positions").expect("compiles");
        let (b, s) = (3u64, 40u64);
        let mut args: Vec<Arg> = c
            .bindings
            .iter()
            .map(|x| match x {
                Binding::Result(_) => Arg::Buffer(vec![0; (b * 8) as usize]),
                Binding::Symbol(id) => {
                    Arg::Scalar(if m.symbols.get(*id).expect("a symbol").name == "B" { b } else { s })
                }
                _ => panic!("no operands"),
            })
            .collect();
        run(&c.kernel, &Launch { grid: [b as u32, 1, 1], block: [BLOCK, 1, 1] }, &mut args, &Options::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let out = args.iter().find_map(|a| match a {
            Arg::Buffer(v) => Some(v.clone()),
            _ => None,
        });
        let got: Vec<i64> =
            out.expect("a result").chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8"))).collect();
        assert_eq!(got, vec![s as i64; b as usize], "max position + 1 = S for every batch row");
        crate::ptx::compile(&c.kernel, lathe_kernel::target::Target::HOPPER).unwrap_or_else(|e| panic!("{e}"));
        // An f32 mean of a row of 300 with an epilogue, against the interpreter.
        let text = "module @m {\n  compute_dtype = f32\n  symbol S <= 16\n  func @main {\n    %0 = input \"x\" : f32[S, 300]\n    %1 = input \"r\" : f32[S, 300]\n    %2 = input \"w\" : f32[300]\n    %3 = mul %0, %1 : f32[S, 300]\n    %4 = reduce %3 {kind=mean, axes=[1], keep_dims} : f32[S, 1]\n    %5 = relu %4 : f32[S, 1]\n    return %5\n  }\n}\n";
        check(text, 5, 300);
    }

    #[test]
    fn layer_norm_and_softmax_rows_match_the_interpreter() {
        let text = |main: &str| {
            format!(
                "module @m {{\n  compute_dtype = f32\n  symbol S <= 16\n  func @main {{\n    %0 = input \"x\" : f32[S, 600]\n    %1 = input \"r\" : f32[S, 600]\n    %2 = input \"w\" : f32[600]\n    %3 = add %0, %1 : f32[S, 600]\n    %4 = {main} : f32[S, 600]\n    %5 = mul %4, %0 : f32[S, 600]\n    return %5\n  }}\n}}\n"
            )
        };
        // 600 elements: three trips of 256, the last ragged.
        check(&text("layer_norm %3, %2, %2 {eps=1e-5}"), 4, 600);
        check(&text("softmax %3 {axis=1}"), 4, 600);
    }

    #[test]
    fn a_group_norm_normalizes_each_group_on_its_own_cta() {
        // 4 groups of 96: fewer elements than threads per CTA.
        check(&module(384, 4), 3, 384);
    }

    #[test]
    fn mamba2s_gated_group_norm_matches_the_interpreter() {
        // norm(x · silu(z)) in 2 groups of 320 (two trips of 256, the second ragged), gate `r`.
        let text = module(640, 2).replace("rms_norm %3, %2 {", "rms_norm %3, %2, %1 {");
        assert!(text.contains("%2, %1 {eps"), "{text}");
        check(&text, 4, 640);
    }
}
