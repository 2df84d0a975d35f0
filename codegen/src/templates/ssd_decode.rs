//! The `ssd_decode_step` template: one Mamba-2 decode step between the projections — the
//! convolution's state update and output, SiLU, the splits into x, B and C, dt (+ bias,
//! softplus), the state update `h = exp(dt·A)·h + (dt·x) ⊗ B`, `y = h · C`, and the D skip — in one
//! launch (the gated group norm is out_proj's GEMV prologue: docs/decisions.md).
//!
//! **What one CTA computes**: one (sequence, head): its `P × N` state block (64 × 128 f32 on the
//! 8B, 32 KiB) and its `P` outputs. **Phases**: the threads compute the head's `x[p]` (through
//! the convolution and SiLU), its group's `B[n]` and `C[n]`, and `dt`, into shared memory; then
//! warp `w` updates state rows `p = w, w + 8, …`, lane `l` taking columns `n = l, l + 32, …`, so
//! each state row is read and written as contiguous 128-byte requests, and the row's `y[p]` is
//! the lanes' partial dot products summed by a butterfly; lane 0 runs the epilogue (the D skip,
//! reshapes) and stores. Results outside the (head, channel) space — the convolution's new state,
//! the gate slice the group passes on — are a grid-stride loop over their elements by all
//! threads of the grid. **Memory traffic**: the state read once and written once (`2·P·N·4`
//! bytes per head, the bulk), the projections' row once, B and C once per head (from L2).
//! **Cost model**: `bytes = 2·B·H·P·N·4 + …`; decode reads every layer's state once per token.
//!
//! Numerics: the state update is the interpreter's, term for term (`decay·h + dx·B`, each product
//! and the sum rounded on its own, `decay = exp(dt·A)` with the pointwise emitter's exp); `y` sums
//! over `n` per lane and then across lanes, where the interpreter sums in `n` order: within the
//! shared tolerance of an `N`-long reduction.

use std::collections::HashMap;

use lathe_ir::ops::Fusion;
use lathe_ir::{Dim, Module, Op, ValueId};
use lathe_kernel::build::{f32_imm, KernelBuilder};
use lathe_kernel::ir::{Axis, BinOp, Cmp, Inst, Kernel, Operand, Reg, ShflMode, Space, Special, Ty};

use super::elementwise::{bind_operands, bind_results, bind_symbols, delinearize, dim_operand, Binding, Emit};
use super::pointwise::{self, Value};
use super::{constant, unsupported, TemplateError};
use crate::group::index::{self, Expr, Ranges};

/// Threads per CTA: eight warps.
pub const BLOCK: u32 = 256;
const WARPS: u64 = 8;

/// A compiled decode step.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The kernel.
    pub kernel: Kernel,
    /// What each kernel parameter is, in order.
    pub bindings: Vec<Binding>,
    /// The batch dimension and the heads: the grid is `batch · heads` CTAs of [`BLOCK`].
    pub batch: Dim,
    /// Heads.
    pub heads: u64,
}

/// `v` with its reshapes stripped.
fn unreshaped(g: &lathe_ir::Graph, mut v: ValueId) -> ValueId {
    while let Op::Reshape(_) = g.nodes[g.values[v].def].op {
        v = g.nodes[g.values[v].def].args[0];
    }
    v
}

/// Compiles decode-step group `f` of module `m` as kernel `name`.
// The builder's block closures return nothing: an immediately called closure inside each one
// collects the block's error with `?`.
#[allow(clippy::redundant_closure_call)]
pub fn compile(m: &Module, f: &Fusion, name: &str) -> Result<Compiled, TemplateError> {
    let g = &f.body;
    let scans: Vec<_> = g.order.iter().copied().filter(|&n| matches!(g.nodes[n].op, Op::ScanSsd(_))).collect();
    let [sn] = scans.as_slice() else { return Err(unsupported("a decode step not built around one scan.ssd")) };
    if let Some(&n) = g.order.iter().find(|&&n| lathe_passes::strategy::is_row_op(&g.nodes[n].op)) {
        return Err(unsupported(format!("`{}` in a decode step (its norm belongs to out_proj)", g.nodes[n].op.name())));
    }
    let node = &g.nodes[*sn];
    let [x, dt, a, bm, cm, s0] = node.args[..] else { return Err(unsupported("scan.ssd operands")) };
    let (y, s1) = (node.results[0], node.results[1]);
    let xs = g.values[x].ty.shape.clone();
    let bs = g.values[bm].ty.shape.clone();
    if xs.len() != 4 || xs[1] != Dim::Const(1) {
        return Err(unsupported("a decode step whose x is not [B, 1, H, P]"));
    }
    let batch = xs[0];
    let (heads, p_len) = (constant(&xs[2], "head count")?, constant(&xs[3], "head dim")?);
    let (groups, n_len) = (constant(&bs[2], "group count")?, constant(&bs[3], "state size")?);
    if groups == 0 || heads % groups != 0 {
        return Err(unsupported(format!("{heads} heads in {groups} groups")));
    }
    // Lane l takes state columns l, l + 32, …; past N (a state smaller than a warp, as in the
    // tiny fixtures) it reads column 0 and contributes and stores nothing.
    let per_lane = n_len.div_ceil(32);
    let s0_dtype = g.values[s0].ty.dtype;
    if s0_dtype != lathe_ir::DType::F32 {
        return Err(unsupported(format!("a {s0_dtype} state")));
    }
    // Results: the head's outputs (computed from y at (b, h, p)), the new state, the rest.
    let outs: Vec<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    let ys = g.values[y].ty.shape.clone();
    let mut head_outs = Vec::new();
    let mut state_out = None;
    let mut side = Vec::new();
    for (k, &o) in outs.iter().enumerate() {
        let base = unreshaped(g, o);
        if base == s1 {
            state_out = Some(k);
        } else if g.values[base].ty.shape == ys {
            head_outs.push((k, base));
        } else {
            side.push((k, o));
        }
    }
    let Some(state_k) = state_out else { return Err(unsupported("a decode step that does not return its state")) };

    let mut b = KernelBuilder::new(name, BLOCK);
    let mut bindings = Vec::new();
    let bases = bind_operands(g, &mut b, &mut bindings)?;
    let outputs = bind_results(g, &outs, &mut b, &mut bindings)?;
    let syms = bind_symbols(m, g, &mut b, &mut bindings);
    super::wait_for_inputs(&mut b);
    // Shared: x[P], dt, B[N], C[N].
    let xs_at = b.shared(4 * p_len as u32, 16);
    let bc_at = b.shared(8 * n_len as u32, 16);
    let dt_at = b.shared(16, 16);
    let tid = b.special(Special::Tid(Axis::X));
    let cta = b.special(Special::Ctaid(Axis::X));
    let lane = b.special(Special::LaneId);
    let t64 = b.cvt(Ty::U64, Ty::U32, None, false, tid);
    let l64 = b.cvt(Ty::U64, Ty::U32, None, false, lane);
    let c64 = b.cvt(Ty::U64, Ty::U32, None, false, cta);
    let warp = b.bin(BinOp::Div, Ty::U64, t64, Operand::Imm(32));
    let bi = b.bin(BinOp::Div, Ty::U64, c64, Operand::Imm(heads));
    let hi = b.bin(BinOp::Rem, Ty::U64, c64, Operand::Imm(heads));
    let gi = b.bin(BinOp::Div, Ty::U64, hi, Operand::Imm(heads / groups));
    let zero = b.mov(Ty::U64, Operand::Imm(0));
    let pvar = b.reg(Ty::U64);
    let nvar = b.reg(Ty::U64);
    let mut e = Emit { g, ranges: Ranges::of(m, &xs), b, vars: Vec::new(), syms, bases, memo: HashMap::new() };
    let lead = [Expr::Var(0), Expr::Var(1), Expr::Var(2)];

    // Phase 1: x[p], B[n], C[n] and dt into shared memory.
    let float = |v: Value| match v {
        Value::F32(r) => Ok(r),
        _ => Err(unsupported("non-float scan operands")),
    };
    let fill =
        |e: &mut Emit<'_>, count: u64, at: u32, value: &dyn Fn(&mut Emit<'_>, Reg) -> Result<Reg, TemplateError>| {
            e.for_count(Operand::Imm(count.div_ceil(u64::from(BLOCK))), |e, i| {
                let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
                let j = e.b.fma(Ty::U64, i64r, Operand::Imm(u64::from(BLOCK)), t64);
                let inb = e.b.setp(Cmp::Lt, Ty::U64, j, Operand::Imm(count));
                e.if_then(inb, |e| {
                    e.memo.clear();
                    let v = value(e, j)?;
                    let addr = e.b.fma(Ty::U64, j, Operand::Imm(4), Operand::Imm(u64::from(at)));
                    e.b.st(Space::Shared, Ty::F32, addr, 0, &[v.into()]);
                    e.memo.clear();
                    Ok(())
                })
            })
        };
    e.ranges = Ranges::of(m, &xs);
    fill(&mut e, p_len, xs_at, &|e, j| {
        e.vars = vec![bi, zero, hi, j];
        float(e.value_at(x, vec![Expr::Var(0), Expr::Var(1), Expr::Var(2), Expr::Var(3)])?)
    })?;
    e.ranges = Ranges::of(m, &bs);
    fill(&mut e, n_len, bc_at, &|e, j| {
        e.vars = vec![bi, zero, gi, j];
        float(e.value_at(bm, vec![Expr::Var(0), Expr::Var(1), Expr::Var(2), Expr::Var(3)])?)
    })?;
    fill(&mut e, n_len, bc_at + 4 * n_len as u32, &|e, j| {
        e.vars = vec![bi, zero, gi, j];
        float(e.value_at(cm, vec![Expr::Var(0), Expr::Var(1), Expr::Var(2), Expr::Var(3)])?)
    })?;
    e.ranges = Ranges::of(m, &g.values[dt].ty.shape);
    fill(&mut e, 1, dt_at, &|e, _| {
        e.vars = vec![bi, zero, hi];
        float(e.value_at(dt, lead.to_vec())?)
    })?;
    e.b.bar();

    // The head's decay: exp(dt · A[h]).
    let dtv = e.b.ld1(Space::Shared, Ty::F32, Operand::Imm(u64::from(dt_at)), 0);
    e.ranges = Ranges::of(m, &g.values[a].ty.shape);
    e.vars = vec![hi];
    e.memo.clear();
    let av = float(e.value_at(a, vec![Expr::Var(0)])?)?;
    let da = e.b.bin(BinOp::Mul, Ty::F32, dtv, av);
    let decay = pointwise::exp(&mut e.b, da);
    // This lane's B and C.
    let mut bcs = Vec::new();
    for k in 0..per_lane {
        let n = e.b.bin(BinOp::Add, Ty::U64, l64, Operand::Imm(k * 32));
        let valid = e.b.setp(Cmp::Lt, Ty::U64, n, Operand::Imm(n_len));
        let n = e.b.selp(Ty::U64, n, Operand::Imm(0), valid);
        let at = e.b.fma(Ty::U64, n, Operand::Imm(4), Operand::Imm(u64::from(bc_at)));
        let bv = e.b.ld1(Space::Shared, Ty::F32, at, 0);
        let cv = e.b.ld1(Space::Shared, Ty::F32, at, 4 * n_len as i64);
        let cv = e.b.selp(Ty::F32, cv, f32_imm(0.0), valid);
        bcs.push((n, bv, cv, (n_len % 32 != 0).then_some(valid)));
    }

    // Phase 2: warp w updates rows p = w, w + 8, …
    let s1_dtype = g.values[s1].ty.dtype;
    let (s1_buf, _) = outputs[state_k];
    let ss = g.values[s0].ty.shape.clone();
    e.for_count(Operand::Imm(p_len.div_ceil(WARPS)), |e, i| {
        let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
        let p = e.b.fma(Ty::U64, i64r, Operand::Imm(WARPS), warp);
        let in_p = e.b.setp(Cmp::Lt, Ty::U64, p, Operand::Imm(p_len));
        let result = e.if_then(in_p, |e| {
            let xa = e.b.fma(Ty::U64, p, Operand::Imm(4), Operand::Imm(u64::from(xs_at)));
            let xv = e.b.ld1(Space::Shared, Ty::F32, xa, 0);
            let dx = e.b.bin(BinOp::Mul, Ty::F32, dtv, xv);
            let acc = e.b.mov(Ty::F32, f32_imm(0.0));
            e.ranges = Ranges::of(m, &ss);
            for &(n, bv, cv, valid) in &bcs {
                e.b.push(Inst::Mov { dst: pvar, src: p.into() });
                e.b.push(Inst::Mov { dst: nvar, src: n.into() });
                e.vars = vec![bi, hi, pvar, nvar];
                e.memo.clear();
                let s = float(e.value_at(s0, vec![Expr::Var(0), Expr::Var(1), Expr::Var(2), Expr::Var(3)])?)?;
                // decay·s + dx·B, each rounded on its own (the interpreter's order).
                let t1 = e.b.bin(BinOp::Mul, Ty::F32, decay, s);
                let t2 = e.b.bin(BinOp::Mul, Ty::F32, dx, bv);
                let s = e.b.bin(BinOp::Add, Ty::F32, t1, t2);
                let Value::F32(sr) = e.round(Value::F32(s), s1_dtype) else { unreachable!("a float") };
                let flat = index::linearize(&[Expr::Var(0), Expr::Var(1), Expr::Var(2), Expr::Var(3)], &ss);
                let flat = index::emit(&mut e.b, &flat, &e.vars, &e.syms).map_err(|x| unsupported(x.to_string()))?;
                let addr = e.b.fma(Ty::U64, flat, Operand::Imm(4), s1_buf);
                match valid {
                    Some(v) => e.b.if_then(v, |b| b.st(Space::Global, Ty::F32, addr, 0, &[sr.into()])),
                    None => e.b.st(Space::Global, Ty::F32, addr, 0, &[sr.into()]),
                }
                // (C is 0 past N, so a spare lane adds nothing.)
                let yc = e.b.bin(BinOp::Mul, Ty::F32, sr, cv);
                e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: acc, a: acc.into(), b: yc.into() });
            }
            let mut sum = acc;
            for d in [16u64, 8, 4, 2, 1] {
                let o = e.b.shfl(ShflMode::Bfly, sum, Operand::Imm(d));
                sum = e.b.bin(BinOp::Add, Ty::F32, sum, o);
            }
            // Lane 0: the row's epilogue (D skip, reshapes) and stores.
            let first = e.b.setp(Cmp::Eq, Ty::U64, l64, Operand::Imm(0));
            e.if_then(first, |e| {
                e.memo.clear();
                e.ranges = Ranges::of(m, &ys);
                e.b.push(Inst::Mov { dst: pvar, src: p.into() });
                e.vars = vec![bi, zero, hi, pvar];
                let idx = vec![Expr::Var(0), Expr::Var(1), Expr::Var(2), Expr::Var(3)];
                let yv = e.round(Value::F32(sum), e.g.values[y].ty.dtype);
                e.remember(y, &idx, yv);
                let Value::F32(xr) = e.round(Value::F32(xv), e.g.values[x].ty.dtype) else { unreachable!("a float") };
                e.remember(x, &idx, Value::F32(xr));
                for &(k, o) in &head_outs {
                    let (buf, dtype) = outputs[k];
                    let out = e.value_at(o, idx.clone())?;
                    e.store_at(buf, dtype, &ys, &idx, out)?;
                }
                e.memo.clear();
                Ok(())
            })
        });
        e.memo.clear();
        result
    })?;

    super::release_dependents(&mut e.b);
    // The other results: a grid-stride loop over their elements.
    let threads = e.b.reg(Ty::U64);
    let mut grid = dim_operand(&batch, &e.syms);
    grid = Operand::Reg(e.b.bin(BinOp::Mul, Ty::U64, grid, Operand::Imm(heads * u64::from(BLOCK))));
    e.b.push(Inst::Mov { dst: threads, src: grid });
    let gt = e.b.fma(Ty::U64, c64, Operand::Imm(u64::from(BLOCK)), t64);
    for &(k, o) in &side {
        let (buf, dtype) = outputs[k];
        let shape = g.values[o].ty.shape.clone();
        let mut count = Operand::Imm(1);
        for d in &shape {
            count = Operand::Reg(e.b.bin(BinOp::Mul, Ty::U64, count, dim_operand(d, &e.syms)));
        }
        // Trips: ⌈count / threads⌉.
        let c1 = e.b.bin(BinOp::Add, Ty::U64, count, threads);
        let c1 = e.b.bin(BinOp::Sub, Ty::U64, c1, Operand::Imm(1));
        let trips = e.b.bin(BinOp::Div, Ty::U64, c1, threads);
        let trips = e.b.cvt(Ty::U32, Ty::U64, None, false, trips);
        e.ranges = Ranges::of(m, &shape);
        e.for_count(trips, |e, i| {
            let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
            let el = e.b.fma(Ty::U64, i64r, threads, gt);
            let inb = e.b.setp(Cmp::Lt, Ty::U64, el, count);
            e.if_then(inb, |e| {
                e.memo.clear();
                e.vars = delinearize(&mut e.b, Operand::Reg(el), &shape, &e.syms);
                let idx: Vec<Expr> = (0..shape.len()).map(Expr::Var).collect();
                let v = e.value_at(o, idx)?;
                let off = e.b.bin(BinOp::Mul, Ty::U64, el, Operand::Imm(dtype.size_bytes() as u64));
                let addr = e.b.bin(BinOp::Add, Ty::U64, buf, off);
                let (ty, st) = e.stored(v, dtype)?;
                e.b.st(Space::Global, ty, addr, 0, &[st.into()]);
                e.memo.clear();
                Ok(())
            })
        })?;
    }
    Ok(Compiled { kernel: e.b.finish(), bindings, batch, heads })
}

#[cfg(test)]
mod tests {
    use crate::testing::{one_group_with, run_group};

    /// A Mamba-2 decode step as `fuse-ssd` outlines it: `h` heads of `p` channels, `g` groups of
    /// state `n`, a width-4 convolution.
    fn step(h: u64, p: u64, g: u64, n: u64) -> String {
        let (di, conv) = (h * p, h * p + 2 * g * n);
        let width = di + conv + h;
        let body = format!(
            "      %0 = input \"arg0\" : bf16[B, 1, {width}]\n      %1:3 = split %0 {{axis=2, sizes=[{di}, {conv}, {h}]}} : bf16[B, 1, {di}], bf16[B, 1, {conv}], bf16[B, 1, {h}]\n      %2 = input \"arg1\" : bf16[{conv}, 4]\n      %3 = input \"arg2\" : bf16[{conv}]\n      %4 = input \"arg3\" : bf16[B, 3, {conv}]\n      %5:2 = conv1d.causal %1#1, %2, %3, %4 : bf16[B, 1, {conv}], bf16[B, 3, {conv}]\n      %6 = silu %5#0 : bf16[B, 1, {conv}]\n      %7:3 = split %6 {{axis=2, sizes=[{di}, {gn}, {gn}]}} : bf16[B, 1, {di}], bf16[B, 1, {gn}], bf16[B, 1, {gn}]\n      %8 = reshape %7#0 : bf16[B, 1, {h}, {p}]\n      %9 = reshape %7#1 : bf16[B, 1, {g}, {n}]\n      %10 = reshape %7#2 : bf16[B, 1, {g}, {n}]\n      %11 = input \"arg4\" : bf16[{h}]\n      %12 = add %1#2, %11 : bf16[B, 1, {h}]\n      %13 = softplus %12 : bf16[B, 1, {h}]\n      %14 = input \"arg5\" : f32[{h}]\n      %15 = input \"arg6\" : f32[B, {h}, {p}, {n}]\n      %16:2 = scan.ssd %8, %13, %14, %9, %10, %15 {{chunk=128}} : bf16[B, 1, {h}, {p}], f32[B, {h}, {p}, {n}]\n      %17 = input \"arg7\" : bf16[{h}]\n      %18 = reshape %17 : bf16[{h}, 1]\n      %19 = mul %8, %18 : bf16[B, 1, {h}, {p}]\n      %20 = add %16#0, %19 : bf16[B, 1, {h}, {p}]\n      %21 = reshape %20 : bf16[B, 1, {di}]\n      return %1#0, %5#1, %16#1, %21\n",
            gn = g * n
        );
        one_group_with(
            "  symbol B <= 8\n",
            &[
                ("zxbcdt", &format!("bf16[B, 1, {width}]")),
                ("conv_w", &format!("bf16[{conv}, 4]")),
                ("conv_b", &format!("bf16[{conv}]")),
                ("conv_state", &format!("bf16[B, 3, {conv}]")),
                ("dt_bias", &format!("bf16[{h}]")),
                ("a", &format!("f32[{h}]")),
                ("ssm_state", &format!("f32[B, {h}, {p}, {n}]")),
                ("d", &format!("bf16[{h}]")),
            ],
            "ssd_decode_step",
            &body,
            &[
                &format!("bf16[B, 1, {di}]"),
                &format!("bf16[B, 3, {conv}]"),
                &format!("f32[B, {h}, {p}, {n}]"),
                &format!("bf16[B, 1, {di}]"),
            ],
        )
    }

    #[test]
    fn a_decode_step_matches_the_interpreter() {
        // 4 heads of 16 channels in 2 groups of state 32; then 3 heads of 20 (rows not a
        // multiple of the 8 warps) in 1 group of 64; a state of 8, smaller than a warp; batch 1
        // and 3.
        for (h, p, g, n) in [(4, 16, 2, 32), (3, 20, 1, 64), (2, 4, 1, 8)] {
            for rows in [1, 3] {
                let r = run_group(&step(h, p, g, n), 1, &[("B", rows)]);
                assert!(
                    r.excess_sectors * 10 <= r.sectors,
                    "({h}, {p}, {g}, {n}) at {rows}: {} of {} sectors partial",
                    r.excess_sectors,
                    r.sectors
                );
            }
        }
    }

    #[test]
    fn an_eight_b_shaped_decode_step_matches_the_interpreter_on_sampled_ctas() {
        // Nemotron-H-8B's mixer: 128 heads of 64 channels, 8 groups of state 128; 8 of the 128
        // CTAs, and the side results' elements those CTAs' threads write.
        let n = crate::testing::run_group_sampled(&step(128, 64, 8, 128), &[("B", 1)], 8, 128);
        assert!(n >= 8 * 64, "{n} elements compared");
    }
}
