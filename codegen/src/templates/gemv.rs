//! The `gemv` template: a decode-shaped matmul `y[m, n] = Σ_k x[m, k] · W[n, k]` (few rows `m`,
//! the weight in the `[out, in]` layout of linear layers) on CUDA cores, with its prologue (the
//! input row's RMSNorm, pointwise ops) and epilogue (residual add, activation, casts).
//!
//! **Projections**: a group may hold sibling matmuls of one input row (q, k and v of an
//! attention layer, put together by `fuse-elementwise`): their weights' rows follow each other
//! in one column order, each warp picks its projection's weight, column and scale by its column,
//! and runs that projection's epilogue — one launch, the input row staged and normed once, no
//! weight copied.
//!
//! **What one CTA computes**: eight output columns, one per warp, for every row. **Tiling**: the
//! input rows are staged in shared memory, `KT` columns at a time (all of `K` when the rows fit
//! in 40 KiB), each element computed once per CTA by the prologue and stored in the matmul's
//! input dtype (exactly what the IR rounds it to). A warp then streams its weight row: lane `l`
//! reads 16-byte chunks `l, l + 32, …` (`E` = 16 / input size elements each; 8 for bf16), so a
//! warp's load is 512 contiguous bytes — full sectors — and the matching input chunk is one
//! 16-byte shared load, conflict-free for the same reason. Each lane keeps one f32 accumulator
//! per row; four chunks are loaded before any is used (2 KiB in flight per warp, 16 KiB per CTA)
//! with the streaming hint `L1::no_allocate` (the weight is read once). The lanes' partial sums
//! meet by a butterfly, and lane `r` runs the epilogue of row `r` for its column and stores. **Memory
//! traffic**: the weight once (`N·K·size`), the input rows once per CTA (from L2), each result
//! once. **Cost model**: `bytes = N·K·size_w + M·K·size_x + M·N·size_y`, `FLOPs = 2·M·N·K`; at
//! batch 1 the weight stream is everything.
//!
//! Numerics: products and sums in f32 (`fma`), summed per lane in `k` order and then across
//! lanes by the butterfly, where the interpreter sums in `k` order: within the shared tolerance
//! of a `K`-long reduction. The RMSNorm scale is the interpreter's `1/sqrt(Σx²/K + eps)` (IEEE),
//! its squares summed per thread and across the CTA.

use std::collections::HashMap;

use lathe_ir::ops::Fusion;
use lathe_ir::{DType, Dim, Module, Op, ValueId};
use lathe_kernel::build::{f32_imm, KernelBuilder};
use lathe_kernel::ir::{Axis, BinOp, CacheHint, Cmp, Inst, Kernel, Operand, Reg, Space, Special, Ty, UnOp};

use super::elementwise::{bind_operands, bind_results, bind_symbols, delinearize, dim_operand, Binding, Emit};
use super::pointwise::Value;
use super::{unsupported, TemplateError};
use crate::group::index::{Expr, Ranges};

/// Threads per CTA: eight warps, one output column each.
pub const BLOCK: u32 = 256;
/// Warps per CTA.
pub const WARPS: u32 = BLOCK / 32;
/// Chunks each lane loads before it uses any.
const UNROLL: u64 = 4;
/// The most rows the CUDA-core form keeps accumulators for (more rows: tensor cores, later).
pub const MAX_ROWS: u64 = 16;
// Lane `r` of a warp runs row `r`'s epilogue.
const _: () = assert!(MAX_ROWS <= 32);
/// The staging buffer's budget.
const STAGE_BYTES: u64 = 40 * 1024;

/// A compiled GEMV group.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The kernel.
    pub kernel: Kernel,
    /// What each kernel parameter is, in order.
    pub bindings: Vec<Binding>,
    /// Output columns: the grid is `⌈columns / 8⌉` CTAs of [`BLOCK`].
    pub columns: u64,
}

/// Compiles GEMV group `f` of module `m` as kernel `name`.
// The builder's block closures return nothing: an immediately called closure inside each one
// collects the block's error with `?`.
#[allow(clippy::redundant_closure_call)]
pub fn compile(m: &Module, f: &Fusion, name: &str) -> Result<Compiled, TemplateError> {
    let g = &f.body;
    let mms: Vec<_> = g.order.iter().copied().filter(|&n| matches!(g.nodes[n].op, Op::Matmul(_))).collect();
    if mms.is_empty() || g.order.iter().any(|&n| matches!(g.nodes[n].op, Op::ScaledMatmul(_) | Op::Conv2dPatch(_))) {
        let other = g.order.iter().find(|&&n| matches!(g.nodes[n].op, Op::ScaledMatmul(_) | Op::Conv2dPatch(_)));
        return Err(unsupported(match other {
            Some(&n) => format!("a gemv around `{}`", g.nodes[n].op.name()),
            None => "a gemv group not built around a matmul".into(),
        }));
    }
    let lhs = g.nodes[mms[0]].args[0];
    let mut segs: Vec<Segment> = Vec::new();
    let mut k_len = 0;
    for &mm in &mms {
        let node = &g.nodes[mm];
        let Op::Matmul(attrs) = &node.op else { return Err(unsupported("matmul")) };
        let (w, y) = (node.args[1], node.results[0]);
        if attrs.transpose_a || !attrs.transpose_b {
            return Err(unsupported("a gemv whose weight is not in the [out, in] layout (transpose_b)"));
        }
        if node.args[0] != lhs {
            return Err(unsupported("gemv projections of different input rows"));
        }
        let (n, k) = match g.values[w].ty.shape.as_slice() {
            [Dim::Const(n), Dim::Const(k)] => (*n, *k),
            _ => return Err(unsupported("a gemv weight that is not a constant [N, K] matrix")),
        };
        k_len = k;
        // The weight as stored: itself, or (W8A16) the fp8 codes a `dequantize` by a per-tensor
        // scale turns into it, dequantized in the loop exactly as the IR says.
        let dequant = match &g.nodes[g.values[w].def].op {
            Op::Dequantize(to) => {
                let dn = &g.nodes[g.values[w].def];
                let (q, sc) = (dn.args[0], dn.args[1]);
                if !g.values[sc].ty.shape.is_empty() {
                    return Err(unsupported("a W8A16 gemv whose dequantize scale is not per tensor"));
                }
                Some((q, sc, *to))
            }
            _ => None,
        };
        let first = segs.last().map_or(0, |s: &Segment| s.first + s.columns);
        segs.push(Segment { w, y, columns: n, first, dequant, stored: dequant.map_or(w, |(q, _, _)| q) });
    }
    let n_cols: u64 = segs.iter().map(|s| s.columns).sum();
    let xty = g.values[lhs].ty.clone();
    let x_dtype = xty.dtype;
    let w_dtype = g.values[segs[0].stored].ty.dtype;
    if segs.iter().any(|s| g.values[s.stored].ty.dtype != w_dtype || s.dequant.is_some() != segs[0].dequant.is_some()) {
        return Err(unsupported("gemv projections whose weights are stored in different forms"));
    }
    let floats = |d: DType| matches!(d, DType::F32 | DType::BF16 | DType::F16);
    if !floats(x_dtype) || !(floats(w_dtype) || (segs[0].dequant.is_some() && w_dtype == DType::F8E4M3)) {
        return Err(unsupported(format!("a gemv of {x_dtype} rows and {w_dtype} weights")));
    }
    let lead = xty.shape[..xty.rank() - 1].to_vec();
    let max_rows: u64 = lead
        .iter()
        .map(|d| match d {
            Dim::Const(c) => *c,
            Dim::Sym(s) => m.symbols.get(*s).map_or(u64::MAX, |s| s.max),
        })
        .fold(1u64, u64::saturating_mul);
    if max_rows > MAX_ROWS {
        return Err(unsupported(format!(
            "a gemv of up to {max_rows} rows (the CUDA-core form keeps {MAX_ROWS}; more rows take the tensor-core form)"
        )));
    }
    let outs: Vec<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    // Each result is computed at one product's element (a value of its shape, perhaps
    // reshaped: row-major order is kept, so the element's flat position is the product's) or,
    // not reading a product, at the input's element (the normalized row other groups reuse),
    // stored by CTA 0 while it stages the rows.
    // RoPE on a projection's heads (q and k): the rotation pairs column j of a head with
    // j ± D/2, so such a projection's columns are dealt out in pairs (below).
    let strip = |mut v: ValueId| {
        while let Op::Reshape(_) = g.nodes[g.values[v].def].op {
            v = g.nodes[g.values[v].def].args[0];
        }
        v
    };
    let mut ropes: Vec<Option<RopeSeg>> = vec![None; segs.len()];
    for &n in g.order.iter().filter(|&&n| matches!(g.nodes[n].op, Op::Rope(_))) {
        let node = &g.nodes[n];
        let Op::Rope(attrs) = &node.op else { continue };
        let (x, pos) = (node.args[0], node.args[1]);
        let xb = strip(x);
        let read: Vec<usize> = (0..segs.len()).filter(|&i| reads(g, xb, segs[i].y)).collect();
        let (&[i], [.., Dim::Const(h), Dim::Const(d)]) = (read.as_slice(), g.values[x].ty.shape.as_slice()) else {
            return Err(unsupported("a gemv `rope` not on one projection's [.., heads, dim] values"));
        };
        if g.values[xb].ty.shape != g.values[segs[i].y].ty.shape || ropes[i].is_some() || h * d != segs[i].columns {
            return Err(unsupported("a gemv `rope` on other values than one projection's heads"));
        }
        if d % 8 != 0 {
            return Err(unsupported(format!("a gemv `rope` over head dim {d}, not a multiple of 8")));
        }
        ropes[i] = Some(RopeSeg { x: xb, pos, out: node.results[0], dim: *d, theta: attrs.theta, scale: attrs.scale });
    }
    if ropes.iter().any(Option::is_some) && segs.iter().any(|s| s.first % u64::from(WARPS) != 0) {
        return Err(unsupported("a gemv `rope` next to projections not of whole CTAs of columns"));
    }
    // Per segment, its results (index into `outs`, the value at the product's shape).
    let mut epilogue: Vec<Vec<(usize, ValueId)>> = vec![Vec::new(); segs.len()];
    let mut prologue = Vec::new();
    for (k, &o) in outs.iter().enumerate() {
        let base = strip(o);
        if let Some(i) = ropes.iter().position(|r| r.is_some_and(|r| r.out == base)) {
            epilogue[i].push((k, base));
            continue;
        }
        let shape = &g.values[base].ty.shape;
        let read: Vec<usize> = (0..segs.len()).filter(|&i| reads(g, base, segs[i].y)).collect();
        // (A square weight makes the two shapes one: what reads a product decides.)
        match read.as_slice() {
            [] if *shape == xty.shape => prologue.push((k, base)),
            [i] if *shape == g.values[segs[*i].y].ty.shape => epilogue[*i].push((k, base)),
            [_, _, ..] => return Err(unsupported("a gemv result computed from two projections' products")),
            [i] if ropes[*i].is_some() => {
                return Err(unsupported("a gemv result computed from a rotated projection but not its `rope`"))
            }
            _ => return Err(unsupported("a gemv result of another shape than the product or its input")),
        }
    }
    // The prologue's row op: at most one RMSNorm over the whole row.
    let norms: Vec<_> = g.order.iter().copied().filter(|&n| matches!(g.nodes[n].op, Op::RmsNorm(_))).collect();
    if g.order.iter().any(|&n| {
        lathe_passes::strategy::is_row_op(&g.nodes[n].op)
            && !matches!(g.nodes[n].op, Op::RmsNorm(_))
            && !segs.iter().any(|s| g.values[s.w].def == n)
    }) {
        return Err(unsupported("a gemv with a row op besides one rms_norm (amax, quantize)"));
    }
    let norm = match norms.as_slice() {
        [] => None,
        [n] => {
            let nd = &g.nodes[*n];
            let Op::RmsNorm(a) = &nd.op else { return Err(unsupported("rms_norm")) };
            if g.values[nd.results[0]].ty.shape != xty.shape {
                return Err(unsupported("a gemv prologue norm of another shape than the row"));
            }
            Some((nd.args[0], nd.args[1], nd.args.get(2).copied(), nd.results[0], a.eps, a.groups.max(1)))
        }
        _ => return Err(unsupported("a gemv with two norms")),
    };

    // The chunk a lane loads at a time, in input and weight bytes.
    let x_size = x_dtype.size_bytes() as u64;
    let w_size = w_dtype.size_bytes() as u64;
    // E elements per chunk: 16 bytes of the wider of the two dtypes, so neither chunk is more
    // than one vector load.
    let e_per = 16 / x_size.max(w_size);
    let x_chunk = e_per * x_size;
    let w_chunk = e_per * w_size;
    if k_len % e_per != 0 {
        return Err(unsupported(format!("a gemv over K = {k_len}, not a multiple of {e_per} (the chunk)")));
    }
    // Tile: a multiple of one unrolled warp step (32 lanes × UNROLL chunks), within the budget.
    let step = 32 * UNROLL * e_per;
    let budget = (STAGE_BYTES / (max_rows * x_size)) / step * step;
    let kt = k_len.next_multiple_of(step).min(budget.max(step));
    let tiles = k_len.div_ceil(kt);

    let mut b = KernelBuilder::new(name, BLOCK);
    let mut bindings = Vec::new();
    let bases = bind_operands(g, &mut b, &mut bindings)?;
    let outputs = bind_results(g, &outs, &mut b, &mut bindings)?;
    let syms = bind_symbols(m, g, &mut b, &mut bindings);
    let mut w_bases = Vec::new();
    for seg in &segs {
        let Some(&base) = bases.get(&seg.stored) else {
            return Err(unsupported("a gemv weight the kernel does not read from memory (computed in the group)"));
        };
        w_bases.push(base);
    }
    let stage = b.shared((max_rows * kt * x_size) as u32, 16);
    let norm_groups = norm.map_or(1, |n| n.5);
    let scale_slots = b.shared(4 * (max_rows * norm_groups) as u32, 16);
    let group_slots = b.shared(4 * WARPS * norm_groups as u32, 16);
    let sum_slots = b.shared(4 * max_rows as u32 * WARPS, 16);
    let rope_slots = if ropes.iter().any(Option::is_some) { b.shared(4 * max_rows as u32 * WARPS, 16) } else { 0 };
    let tid = b.special(Special::Tid(Axis::X));
    let cta = b.special(Special::Ctaid(Axis::X));
    let lane = b.special(Special::LaneId);
    let warp = b.bin(BinOp::Div, Ty::U32, tid, Operand::Imm(32));
    let lane0 = b.setp(Cmp::Eq, Ty::U32, lane, Operand::Imm(0));
    let w64 = b.cvt(Ty::U64, Ty::U32, None, false, warp);
    let t64 = b.cvt(Ty::U64, Ty::U32, None, false, tid);
    let l64 = b.cvt(Ty::U64, Ty::U32, None, false, lane);
    let c64 = b.cvt(Ty::U64, Ty::U32, None, false, cta);
    let col = b.fma(Ty::U64, c64, Operand::Imm(u64::from(WARPS)), w64);
    let col_ok = b.setp(Cmp::Lt, Ty::U64, col, Operand::Imm(n_cols));
    let col_c = b.selp(Ty::U64, col, Operand::Imm(0), col_ok);
    // The warp's projection (the segments follow each other in column order): its weight and
    // its column within it, chosen per warp.
    // A rotated projection deals its columns out in pairs: warp `w` of a CTA takes pair
    // `4·block + w mod 4` of the projection's `(head, i < D/2)` pairs, column `i` for `w < 4`
    // and `i + D/2` for the others, so each rotation's two columns meet in one CTA (warps `w`
    // and `w ^ 4`).
    let mut w_base = w_bases[0];
    let mut seg_col = col_c;
    let mut in_seg = Vec::new();
    let mut pair = Vec::new();
    for ((seg, &base), rope) in segs.iter().zip(&w_bases).zip(&ropes) {
        let from = b.setp(Cmp::Ge, Ty::U64, col_c, Operand::Imm(seg.first));
        let below = b.setp(Cmp::Lt, Ty::U64, col_c, Operand::Imm(seg.first + seg.columns));
        in_seg.push(b.bin(BinOp::And, Ty::Pred, from, below));
        let local = b.bin(BinOp::Sub, Ty::U64, col_c, Operand::Imm(seg.first));
        let local = match rope {
            Some(r) => {
                let half = r.dim / 2;
                let blk = b.bin(BinOp::Div, Ty::U64, local, Operand::Imm(u64::from(WARPS)));
                let quarter = b.bin(BinOp::Rem, Ty::U64, w64, Operand::Imm(4));
                let p = b.fma(Ty::U64, blk, Operand::Imm(4), quarter);
                let head = b.bin(BinOp::Div, Ty::U64, p, Operand::Imm(half));
                let i = b.bin(BinOp::Rem, Ty::U64, p, Operand::Imm(half));
                let upper = b.setp(Cmp::Ge, Ty::U64, w64, Operand::Imm(4));
                let shift = b.selp(Ty::U64, Operand::Imm(half), Operand::Imm(0), upper);
                let at = b.fma(Ty::U64, head, Operand::Imm(r.dim), i);
                pair.push(Some((i, upper)));
                b.bin(BinOp::Add, Ty::U64, at, shift)
            }
            None => {
                pair.push(None);
                local
            }
        };
        if seg.first > 0 {
            w_base = b.selp(Ty::U64, base, w_base, from);
            seg_col = b.selp(Ty::U64, local, seg_col, from);
        } else {
            seg_col = local;
        }
    }
    // Before the wait (programmatic dependent launch): the warp's weight row into L2, lane `l`
    // taking 128-byte lines `l, l + 32, …` — no launch writes a weight.
    let row_bytes = k_len * w_size;
    let lines = row_bytes.div_ceil(128);
    let row_start = b.bin(BinOp::Mul, Ty::U64, seg_col, Operand::Imm(row_bytes));
    let row_start = b.bin(BinOp::Add, Ty::U64, row_start, w_base);
    b.for_count(Operand::Imm(lines.div_ceil(32)), |b, it| {
        let it64 = b.cvt(Ty::U64, Ty::U32, None, false, it);
        let line = b.fma(Ty::U64, it64, Operand::Imm(32), l64);
        let inside = b.setp(Cmp::Lt, Ty::U64, line, Operand::Imm(lines));
        b.if_then(inside, |b| {
            let at = b.fma(Ty::U64, line, Operand::Imm(128), row_start);
            b.prefetch(at, 0);
        });
    });
    super::wait_for_inputs(&mut b);
    // The run-time row count.
    let mut rows = Operand::Imm(1);
    for d in &lead {
        rows = Operand::Reg(b.bin(BinOp::Mul, Ty::U64, rows, dim_operand(d, &syms)));
    }
    let rank = xty.rank();
    let kvar = b.reg(Ty::U64);
    let mut e = Emit { g, ranges: Ranges::of(m, &xty.shape), b, vars: Vec::new(), syms, bases, memo: HashMap::new() };
    let idx: Vec<Expr> = (0..rank).map(Expr::Var).collect();
    // Row indices are clamped to the last run-time row: a row past the count computes what is
    // never stored.
    let last_row = minus_one(&mut e, rows);
    let row_vars = |e: &mut Emit<'_>, r: u64| {
        let rc = e.b.bin(BinOp::Min, Ty::U64, Operand::Imm(r), last_row);
        let mut v = delinearize(&mut e.b, Operand::Reg(rc), &lead, &e.syms);
        v.push(kvar);
        v
    };

    // The norm's scale per row and normalization group: 1 / sqrt(Σx²/gs + eps) over the
    // group's `gs = K / groups` elements; each thread sums its elements of every group, and the
    // row's group sums cross the CTA together (two barriers a row).
    let first_thread = e.b.setp(Cmp::Eq, Ty::U64, t64, Operand::Imm(0));
    if let Some((x, _, gate, _, eps, groups)) = norm {
        let gs = k_len / groups;
        for r in 0..max_rows {
            e.vars = row_vars(&mut e, r);
            let mut accs = Vec::new();
            for q in 0..groups {
                accs.push(super::row_reduce::square_sum(&mut e, x, gate, &idx, kvar, Operand::Imm(q * gs), gs, t64)?);
            }
            // Each warp's sums by butterflies into its slots; after one barrier every thread
            // folds the warps' slots in warp order (the same in all of them).
            let warp_base = e.b.fma(Ty::U64, w64, Operand::Imm(4 * groups), Operand::Imm(u64::from(group_slots)));
            let mut warp_sums = Vec::new();
            for &acc in &accs {
                let mut s = acc;
                for d in [16u64, 8, 4, 2, 1] {
                    let o = e.b.shfl(lathe_kernel::ir::ShflMode::Bfly, s, Operand::Imm(d));
                    s = e.b.bin(BinOp::Add, Ty::F32, s, o);
                }
                warp_sums.push(s);
            }
            e.b.if_then(lane0, |b| {
                for (q, &s) in warp_sums.iter().enumerate() {
                    b.st(Space::Shared, Ty::F32, warp_base, 4 * q as i64, &[s.into()]);
                }
            });
            e.b.bar();
            for q in 0..groups {
                let total = e.b.mov(Ty::F32, f32_imm(0.0));
                for w in 0..u64::from(WARPS) {
                    let at = u64::from(group_slots) + 4 * (w * groups + q);
                    let v = e.b.ld1(Space::Shared, Ty::F32, Operand::Imm(at), 0);
                    e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: total, a: total.into(), b: v.into() });
                }
                let mean = e.b.bin(BinOp::Div, Ty::F32, total, f32_imm(gs as f32));
                let var = e.b.bin(BinOp::Add, Ty::F32, mean, f32_imm(eps as f32));
                let root = e.b.un(UnOp::Sqrt, Ty::F32, var);
                let scale = e.b.bin(BinOp::Div, Ty::F32, f32_imm(1.0), root);
                // Thread 0 keeps the scale in shared memory for the staging loop.
                let at = Operand::Imm(u64::from(scale_slots) + 4 * (r * groups + q));
                e.b.if_then(first_thread, |b| b.st(Space::Shared, Ty::F32, at, 0, &[scale.into()]));
            }
            // The slots are reused by the next row.
            e.b.bar();
        }
    }

    // The per-tensor dequantization scale of the warp's projection.
    let mut scale = None;
    for (seg, &from) in segs.iter().zip(&in_seg) {
        if let Some((_, sc, _)) = seg.dequant {
            e.memo.clear();
            let Value::F32(s) = e.value_at(sc, Vec::new())? else { return Err(unsupported("a predicate scale")) };
            e.memo.clear();
            scale = Some(match scale {
                None => s,
                Some(prev) => e.b.selp(Ty::F32, s, prev, from),
            });
        }
    }
    let to = segs[0].dequant.map(|d| d.2);
    let accs: Vec<Reg> = (0..max_rows).map(|_| e.b.mov(Ty::F32, f32_imm(0.0))).collect();
    let x_ty = match x_dtype {
        DType::F32 => Ty::F32,
        DType::BF16 => Ty::Bf16,
        _ => Ty::F16,
    };
    e.for_count(Operand::Imm(tiles), |e, tile| {
        let t64k = e.b.cvt(Ty::U64, Ty::U32, None, false, tile);
        let k0 = e.b.bin(BinOp::Mul, Ty::U64, t64k, Operand::Imm(kt));
        // Stage the rows' inputs for this tile (0 past K): element `e = r·kt + j` of the stage
        // is row `r`'s column `k0 + j` (one loop over all rows: no per-row predicates).
        e.for_count(Operand::Imm(max_rows * kt / u64::from(BLOCK)), |e, i| {
            let result = (|| {
                let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
                let el = e.b.fma(Ty::U64, i64r, Operand::Imm(u64::from(BLOCK)), t64);
                let r = e.b.bin(BinOp::Div, Ty::U64, el, Operand::Imm(kt));
                let j = e.b.bin(BinOp::Rem, Ty::U64, el, Operand::Imm(kt));
                let rc = e.b.bin(BinOp::Min, Ty::U64, r, last_row);
                let mut vars = delinearize(&mut e.b, Operand::Reg(rc), &lead, &e.syms);
                vars.push(kvar);
                e.vars = vars;
                let k = e.b.bin(BinOp::Add, Ty::U64, k0, j);
                let ok = e.b.setp(Cmp::Lt, Ty::U64, k, Operand::Imm(k_len));
                let kc = e.b.selp(Ty::U64, k, Operand::Imm(0), ok);
                e.b.push(Inst::Mov { dst: kvar, src: kc.into() });
                e.memo.clear();
                if let Some((x, nw, gate, out, _, groups)) = norm {
                    let v = super::row_reduce::gated_input(e, x, gate, &idx)?;
                    let Value::F32(wv) = e.value_at(nw, vec![Expr::Var(rank - 1)])? else {
                        return Err(unsupported("a predicate norm weight"));
                    };
                    // The (row, group) scale, from shared memory.
                    let q = e.b.bin(BinOp::Div, Ty::U64, kc, Operand::Imm(k_len / groups));
                    let slot = e.b.fma(Ty::U64, r, Operand::Imm(groups), q);
                    let at = e.b.fma(Ty::U64, slot, Operand::Imm(4), Operand::Imm(u64::from(scale_slots)));
                    let sc = e.b.ld1(Space::Shared, Ty::F32, at, 0);
                    let t = e.b.bin(BinOp::Mul, Ty::F32, v, sc);
                    let t = e.b.bin(BinOp::Mul, Ty::F32, t, wv);
                    let t = e.round(Value::F32(t), e.g.values[out].ty.dtype);
                    e.remember(out, &idx, t);
                }
                let Value::F32(v) = e.value_at(lhs, idx.clone())? else {
                    return Err(unsupported("a gemv of non-float rows"));
                };
                let v = e.b.selp(Ty::F32, v, f32_imm(0.0), ok);
                let v = if x_ty == Ty::F32 {
                    v
                } else {
                    e.b.cvt(x_ty, Ty::F32, Some(lathe_kernel::ir::Rounding::Rn), false, v)
                };
                let at = e.b.fma(Ty::U64, el, Operand::Imm(x_size), Operand::Imm(u64::from(stage)));
                e.b.st(Space::Shared, x_ty, at, 0, &[v.into()]);
                if prologue.is_empty() {
                    return Ok(());
                }
                // CTA 0 stores the results computed from the input rows.
                let first = e.b.setp(Cmp::Eq, Ty::U64, c64, Operand::Imm(0));
                let real = e.b.setp(Cmp::Lt, Ty::U64, r, rows);
                let mine = e.b.bin(BinOp::And, Ty::Pred, first, ok);
                let mine = e.b.bin(BinOp::And, Ty::Pred, mine, real);
                let memo = e.memo.clone();
                e.if_then(mine, |e| {
                    e.memo = memo;
                    for &(k, o) in &prologue {
                        let (buf, dtype) = outputs[k];
                        let out = e.value_at(o, idx.clone())?;
                        e.store_at(buf, dtype, &xty.shape, &idx, out)?;
                    }
                    Ok(())
                })
            })();
            e.memo.clear();
            result
        })?;
        e.b.bar();
        // Stream the weight row of this warp's column.
        e.for_count(Operand::Imm(kt / (32 * UNROLL * e_per)), |e, it| {
            let it64 = e.b.cvt(Ty::U64, Ty::U32, None, false, it);
            let mut chunks = Vec::new();
            for u in 0..UNROLL {
                // Chunk c = (it·UNROLL + u)·32 + lane of the tile.
                let c = e.b.fma(Ty::U64, it64, Operand::Imm(32 * UNROLL), Operand::Imm(32 * u));
                let c = e.b.bin(BinOp::Add, Ty::U64, c, l64);
                let kk = e.b.fma(Ty::U64, c, Operand::Imm(e_per), k0);
                // Past K the chunk reads chunk 0, and its words are zeroed (all-zero bits are +0
                // in every float format).
                let ok = e.b.setp(Cmp::Lt, Ty::U64, kk, Operand::Imm(k_len));
                let kc = e.b.selp(Ty::U64, kk, Operand::Imm(0), ok);
                let ok = e.b.selp(Ty::U32, Operand::Imm(0xFFFF_FFFF), Operand::Imm(0), ok);
                let off = e.b.fma(Ty::U64, seg_col, Operand::Imm(k_len), kc);
                let addr = e.b.fma(Ty::U64, off, Operand::Imm(w_size), w_base);
                let words = e.b.ld_hint(
                    Space::Global,
                    Ty::B32,
                    (w_chunk / 4) as usize,
                    addr,
                    0,
                    true,
                    Some(CacheHint::L1NoAllocate),
                );
                chunks.push((c, ok, words));
            }
            for (c, ok, words) in chunks {
                let words: Vec<Reg> = words.into_iter().map(|w| e.b.bin(BinOp::And, Ty::B32, w, ok)).collect();
                let mut wv = unpack(e, &words, w_dtype);
                if let (Some(to), Some(s)) = (to, scale) {
                    // q · scale rounded to the dequantized dtype: the IR's weight, exactly.
                    wv = wv
                        .into_iter()
                        .map(|v| {
                            let p = e.b.bin(BinOp::Mul, Ty::F32, v, s);
                            let Value::F32(r) = e.round(Value::F32(p), to) else { unreachable!("a float") };
                            r
                        })
                        .collect();
                }
                for (r, &acc) in accs.iter().enumerate() {
                    let at = e.b.fma(
                        Ty::U64,
                        c,
                        Operand::Imm(x_chunk),
                        Operand::Imm(u64::from(stage) + r as u64 * kt * x_size),
                    );
                    let xw = e.b.ld(Space::Shared, Ty::B32, (x_chunk / 4) as usize, at, 0, false);
                    let xv = unpack(e, &xw, x_dtype);
                    for (a, b) in xv.into_iter().zip(&wv) {
                        e.b.push(Inst::Fma { ty: Ty::F32, dst: acc, a: a.into(), b: (*b).into(), c: acc.into() });
                    }
                }
            }
            Ok(())
        })?;
        // The next tile overwrites the staged rows.
        e.b.bar();
        Ok(())
    })?;

    super::release_dependents(&mut e.b);
    // The column's sums (every lane holds all of them after the butterfly); lane `r` runs the
    // epilogue of row `r` — one guard, not one per row.
    let mut sums = Vec::new();
    for &acc in &accs {
        let mut s = acc;
        for d in [16u64, 8, 4, 2, 1] {
            let o = e.b.shfl(lathe_kernel::ir::ShflMode::Bfly, s, Operand::Imm(d));
            s = e.b.bin(BinOp::Add, Ty::F32, s, o);
        }
        sums.push(s);
    }
    // Lane 0 lays the sums out in the warp's shared slots and lane `r` reads row `r`'s.
    let warp_sums = e.b.fma(Ty::U64, w64, Operand::Imm(4 * max_rows), Operand::Imm(u64::from(sum_slots)));
    e.b.if_then(lane0, |b| {
        for (r, &s) in sums.iter().enumerate() {
            b.st(Space::Shared, Ty::F32, warp_sums, 4 * r as i64, &[s.into()]);
        }
    });
    e.b.bar_warp(u32::MAX);
    let lr = e.b.bin(BinOp::Min, Ty::U64, l64, Operand::Imm(max_rows - 1));
    let at = e.b.fma(Ty::U64, lr, Operand::Imm(4), warp_sums);
    let mine = e.b.ld1(Space::Shared, Ty::F32, at, 0);
    let row_ok = e.b.setp(Cmp::Lt, Ty::U64, l64, rows);
    let store = e.b.bin(BinOp::And, Ty::Pred, row_ok, col_ok);
    // A rotated projection's values before the rotation: lane `r` computes row `r`'s (a row
    // past the count, the last row's) and lays it out in the warp's shared slot for the
    // partner warp; one barrier for the CTA.
    let mut pre = vec![None; segs.len()];
    if ropes.iter().any(Option::is_some) {
        let lane_row = e.b.bin(BinOp::Min, Ty::U64, l64, last_row);
        let slot = e.b.fma(Ty::U64, w64, Operand::Imm(4 * max_rows), Operand::Imm(u64::from(rope_slots)));
        let slot = e.b.fma(Ty::U64, lr, Operand::Imm(4), slot);
        let kept = e.b.setp(Cmp::Lt, Ty::U64, l64, Operand::Imm(max_rows));
        for (i, (seg, rope)) in segs.iter().zip(&ropes).enumerate() {
            let Some(r) = rope else { continue };
            let out_shape = g.values[seg.y].ty.shape.clone();
            e.ranges = Ranges::of(m, &out_shape);
            let y_dtype = g.values[seg.y].ty.dtype;
            let x = e.b.reg(Ty::F32);
            e.if_then(in_seg[i], |e| {
                e.memo.clear();
                let mut vars = delinearize(&mut e.b, Operand::Reg(lane_row), &lead, &e.syms);
                vars.push(seg_col);
                e.vars = vars;
                let v = e.round(Value::F32(mine), y_dtype);
                e.remember(seg.y, &idx, v);
                let Value::F32(v) = e.value_at(r.x, idx.clone())? else {
                    return Err(unsupported("a `rope` of non-float values"));
                };
                e.b.push(Inst::Mov { dst: x, src: v.into() });
                e.b.if_then(kept, |b| b.st(Space::Shared, Ty::F32, slot, 0, &[x.into()]));
                e.memo.clear();
                Ok(())
            })?;
            pre[i] = Some(x);
        }
        e.b.bar();
    }
    for (i, ((seg, results), &mine_seg)) in segs.iter().zip(&epilogue).zip(&in_seg).enumerate() {
        let out_shape = g.values[seg.y].ty.shape.clone();
        e.ranges = Ranges::of(m, &out_shape);
        let y_dtype = g.values[seg.y].ty.dtype;
        let here = e.b.bin(BinOp::And, Ty::Pred, store, mine_seg);
        e.if_then(here, |e| {
            e.memo.clear();
            let mut vars = delinearize(&mut e.b, Operand::Reg(l64), &lead, &e.syms);
            vars.push(seg_col);
            e.vars = vars;
            let v = e.round(Value::F32(mine), y_dtype);
            e.remember(seg.y, &idx, v);
            if let (Some(r), Some(x), Some((pi, upper))) = (ropes[i], pre[i], pair[i]) {
                // The partner warp's value, and the rotation as the interpreter computes it.
                let partner_warp = e.b.bin(BinOp::Xor, Ty::U64, w64, Operand::Imm(4));
                let at =
                    e.b.fma(Ty::U64, partner_warp, Operand::Imm(4 * max_rows), Operand::Imm(u64::from(rope_slots)));
                let at = e.b.fma(Ty::U64, lr, Operand::Imm(4), at);
                let other = e.b.ld1(Space::Shared, Ty::F32, at, 0);
                let lead_idx: Vec<Expr> = (0..rank - 1).map(Expr::Var).collect();
                let Value::I64(p) = e.value_at(r.pos, lead_idx)? else {
                    return Err(unsupported("a `rope` position that is not an integer"));
                };
                let v = rotate(e, r, pi, upper, p, x, other);
                let v = e.round(Value::F32(v), g.values[r.out].ty.dtype);
                e.remember(r.out, &idx, v);
            }
            for &(k, o) in results {
                let (buf, dtype) = outputs[k];
                let out = e.value_at(o, idx.clone())?;
                e.store_at(buf, dtype, &out_shape, &idx, out)?;
            }
            e.memo.clear();
            Ok(())
        })?;
    }
    Ok(Compiled { kernel: e.b.finish(), bindings, columns: n_cols })
}

/// A projection's rotary embedding: `out = rope(x, pos)` with `x` (up to reshapes) of the
/// product's shape, over heads of `dim`.
#[derive(Debug, Clone, Copy)]
struct RopeSeg {
    /// The rotated values at the product's shape (the reshapes into heads stripped).
    x: ValueId,
    /// Positions `[.., S]` (the rows' lead dimensions).
    pos: ValueId,
    /// The rotation's result.
    out: ValueId,
    /// Head dimension `D`.
    dim: u64,
    theta: f64,
    scale: f64,
}

/// Rotates this lane's value `x` with its partner's `other` as the interpreter does: pair `i`
/// (`u64`), `upper` for the column `i + D/2`, position `p` (`s64`). `f_i = 1/θ^(2i/D)` is the
/// interpreter's f32 value, picked from a table folded into the kernel; `a = (p/scale)·f_i` in
/// f32; then `x·cos a − other·sin a` (lower) or `x·cos a + other·sin a` (upper), each product
/// rounded, as written.
fn rotate(e: &mut Emit<'_>, r: RopeSeg, i: Reg, upper: Reg, p: Reg, x: Reg, other: Reg) -> Reg {
    let half = r.dim / 2;
    let theta = r.theta as f32;
    let mut f = e.b.mov(Ty::F32, f32_imm(1.0));
    for k in 1..half {
        let fk = 1.0f32 / theta.powf((2 * k) as f32 / r.dim as f32);
        let is_k = e.b.setp(Cmp::Eq, Ty::U64, i, Operand::Imm(k));
        f = e.b.selp(Ty::F32, f32_imm(fk), f, is_k);
    }
    let pf = e.b.cvt(Ty::F32, Ty::S64, Some(lathe_kernel::ir::Rounding::Rn), false, p);
    let pf = if r.scale == 1.0 { pf } else { e.b.bin(BinOp::Div, Ty::F32, pf, f32_imm(r.scale as f32)) };
    let a = e.b.bin(BinOp::Mul, Ty::F32, pf, f);
    let (sin, cos) = super::pointwise::sincos(&mut e.b, a);
    let xc = e.b.bin(BinOp::Mul, Ty::F32, x, cos);
    let os = e.b.bin(BinOp::Mul, Ty::F32, other, sin);
    let plus = e.b.bin(BinOp::Add, Ty::F32, xc, os);
    let minus = e.b.bin(BinOp::Sub, Ty::F32, xc, os);
    e.b.selp(Ty::F32, plus, minus, upper)
}

/// One projection of a GEMV: its weight's columns follow the previous projection's.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// The weight as the matmul reads it.
    w: ValueId,
    /// The product.
    y: ValueId,
    /// Its output columns (`N` of its weight).
    columns: u64,
    /// Its first column in the kernel's column order.
    first: u64,
    /// W8A16: the fp8 codes, the per-tensor scale and the dequantized dtype.
    dequant: Option<(ValueId, ValueId, DType)>,
    /// The weight as stored in memory (the codes under a dequantize).
    stored: ValueId,
}

/// `rows − 1` (`rows` ≥ 1: a launch has at least one row).
fn minus_one(e: &mut Emit<'_>, rows: Operand) -> Reg {
    e.b.bin(BinOp::Sub, Ty::U64, rows, Operand::Imm(1))
}

/// Whether value `v` of `g` is computed from value `y`.
fn reads(g: &lathe_ir::Graph, v: ValueId, y: ValueId) -> bool {
    let mut stack = vec![v];
    let mut seen = std::collections::HashSet::new();
    while let Some(x) = stack.pop() {
        if x == y {
            return true;
        }
        if seen.insert(x) {
            stack.extend(g.nodes[g.values[x].def].args.iter().copied());
        }
    }
    false
}

/// The f32 values of a chunk of 32-bit words holding `dtype` elements, element 0 in the low
/// bits: one f32, two bf16 or f16, or four fp8 e4m3 per word (each pair unpacked exactly by
/// `cvt.rn.f16x2.e4m3x2`, then widened).
fn unpack(e: &mut Emit<'_>, words: &[Reg], dtype: DType) -> Vec<Reg> {
    let mut out = Vec::new();
    for &w in words {
        match dtype {
            DType::F32 => out.push(e.b.mov(Ty::F32, w)),
            DType::F8E4M3 => {
                for half in [0u64, 16] {
                    let h = if half == 0 { w } else { e.b.bin(BinOp::Shr, Ty::B32, w, Operand::Imm(16)) };
                    let pair = e.b.cvt(Ty::B16, Ty::B32, None, false, h);
                    let f16x2 = e.b.cvt_unpack(Ty::E4m3x2, pair);
                    let lo = e.b.cvt(Ty::B16, Ty::B32, None, false, f16x2);
                    let hi = e.b.bin(BinOp::Shr, Ty::B32, f16x2, Operand::Imm(16));
                    let hi = e.b.cvt(Ty::B16, Ty::B32, None, false, hi);
                    out.push(e.b.cvt(Ty::F32, Ty::F16, None, false, lo));
                    out.push(e.b.cvt(Ty::F32, Ty::F16, None, false, hi));
                }
            }
            DType::BF16 => {
                // A bf16's bits are the upper half of its f32's.
                let lo = e.b.bin(BinOp::Shl, Ty::B32, w, Operand::Imm(16));
                let hi = e.b.bin(BinOp::And, Ty::B32, w, Operand::Imm(0xFFFF_0000));
                out.push(e.b.mov(Ty::F32, lo));
                out.push(e.b.mov(Ty::F32, hi));
            }
            _ => {
                let lo = e.b.cvt(Ty::B16, Ty::B32, None, false, w);
                let hi = e.b.bin(BinOp::Shr, Ty::B32, w, Operand::Imm(16));
                let hi = e.b.cvt(Ty::B16, Ty::B32, None, false, hi);
                out.push(e.b.cvt(Ty::F32, Ty::F16, None, false, lo));
                out.push(e.b.cvt(Ty::F32, Ty::F16, None, false, hi));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use lathe_interp::tensor::Tensor;
    use lathe_ir::DType;

    use crate::templates::elementwise::Binding;
    use crate::testing::{one_group_with, run_group, run_group_with};

    /// `y = rms_norm(x)·Wᵀ + r` over `rows` rows of `K` and `N` columns in `dt`.
    fn norm_residual(dt: &str, k: u64, n: u64) -> String {
        let body = format!(
            "      %0 = input \"arg0\" : {dt}[B, 1, {k}]\n      %1 = input \"arg1\" : {dt}[{k}]\n      %2 = rms_norm %0, %1 {{eps=1e-5, groups=1}} : {dt}[B, 1, {k}]\n      %3 = input \"arg2\" : {dt}[{n}, {k}]\n      %4 = matmul %2, %3 {{transpose_b}} : {dt}[B, 1, {n}]\n      %5 = input \"arg3\" : {dt}[B, 1, {n}]\n      %6 = add %5, %4 : {dt}[B, 1, {n}]\n      return %6\n"
        );
        one_group_with(
            "  symbol B <= 16\n",
            &[
                ("x", &format!("{dt}[B, 1, {k}]")),
                ("nw", &format!("{dt}[{k}]")),
                ("w", &format!("{dt}[{n}, {k}]")),
                ("r", &format!("{dt}[B, 1, {n}]")),
            ],
            "gemv",
            &body,
            &[&format!("{dt}[B, 1, {n}]")],
        )
    }

    #[test]
    fn a_normed_gemv_with_a_residual_matches_the_interpreter_on_ragged_shapes() {
        // K = 208 (not a multiple of a warp's 256-element step; rows of whole sectors), N = 37
        // (not a multiple of 8 warps); rows 1, 3, 8 and 9 of a bound of 16; bf16 and f32.
        for dt in ["bf16", "f32"] {
            let text = norm_residual(dt, 208, 37);
            for rows in [1, 3, 8, 9] {
                let r = run_group(&text, 1, &[("B", rows)]);
                // The weight streams in full sectors; the staged rows too, and each lane's
                // result is its own row's element (a partial sector per row): the activations'
                // requests are at least 90% full.
                let (ws, wx) = r.sectors_of(&Binding::Operand(2));
                assert!(ws > 0 && wx == 0, "{dt}, {rows} rows: {wx} of the weight's {ws} sectors partial");
                let (s, x) = (r.sectors - ws, r.excess_sectors - wx);
                assert!(x * 10 <= s, "{dt}, {rows} rows: {x} of the activations' {s} sectors partial");
                assert_eq!(r.bank_replays, 0, "shared-memory bank conflicts");
            }
        }
    }

    #[test]
    fn a_long_row_is_staged_in_tiles() {
        // 16 rows of 2600 bf16 exceed the 40 KiB stage: tiles of 1024, the last partial.
        run_group(&norm_residual("bf16", 2600, 19), 1, &[("B", 16)]);
        run_group(&norm_residual("bf16", 2600, 19), 1, &[("B", 2)]);
    }

    #[test]
    fn what_the_cuda_core_form_does_not_take_is_named() {
        let m =
            lathe_ir::text::parse_module(&norm_residual("bf16", 64, 8).replace("B <= 16", "B <= 64")).expect("parses");
        let f = lathe_ir::ops::Fusion {
            strategy: lathe_ir::ops::KernelStrategy::Gemv,
            body: match &m.functions[0].graph.nodes[m.functions[0].graph.order[4]].op {
                lathe_ir::Op::Fusion(f) => f.body.clone(),
                other => panic!("{}", other.name()),
            },
        };
        let e = super::compile(&m, &f, "g").expect_err("64 rows");
        assert!(e.to_string().contains("tensor-core form"), "{e}");
    }

    #[test]
    fn a_q_projection_returns_its_normed_input_and_reshaped_heads() {
        // The attention layer's q GEMV: the normalized row is a result (k and v reuse it),
        // stored once by CTA 0; the product is reshaped to heads.
        // A square weight, as in the 8B's q projection: the normed row and the product have one
        // shape.
        let body = "      %0 = input \"arg0\" : bf16[B, 1, 208]\n      %1 = input \"arg1\" : bf16[208]\n      %2 = rms_norm %0, %1 {eps=1e-5, groups=1} : bf16[B, 1, 208]\n      %3 = input \"arg2\" : bf16[208, 208]\n      %4 = matmul %2, %3 {transpose_b} : bf16[B, 1, 208]\n      %5 = reshape %4 : bf16[B, 1, 13, 16]\n      return %2, %5\n";
        let text = one_group_with(
            "  symbol B <= 8\n",
            &[("x", "bf16[B, 1, 208]"), ("nw", "bf16[208]"), ("w", "bf16[208, 208]")],
            "gemv",
            body,
            &["bf16[B, 1, 208]", "bf16[B, 1, 13, 16]"],
        );
        for rows in [1, 3] {
            run_group(&text, 1, &[("B", rows)]);
        }
    }

    /// Three projections of one normed row (q, k, v) of `n` columns each; with `fp8` each
    /// weight is fp8 codes with its own per-tensor scale. q's product is reshaped into heads,
    /// k's gets a residual (an epilogue of one segment only).
    fn projections(k: u64, [nq, nk, nv]: [u64; 3], fp8: bool) -> String {
        let mut inputs = vec![("x".to_string(), format!("bf16[B, 1, {k}]")), ("nw".to_string(), format!("bf16[{k}]"))];
        let mut body = format!(
            "      %0 = input \"arg0\" : bf16[B, 1, {k}]\n      %1 = input \"arg1\" : bf16[{k}]\n      %2 = rms_norm %0, %1 {{eps=1e-5, groups=1}} : bf16[B, 1, {k}]\n"
        );
        let mut next = 3;
        let mut arg = 2;
        let mut products = Vec::new();
        for (name, n) in [("q", nq), ("k", nk), ("v", nv)] {
            let w = if fp8 {
                inputs.push((format!("{name}8"), format!("f8e4m3[{n}, {k}]")));
                inputs.push((format!("{name}s"), "f32[]".to_string()));
                body += &format!(
                    "      %{next} = input \"arg{arg}\" : f8e4m3[{n}, {k}]\n      %{} = input \"arg{}\" : f32[]\n      %{} = dequantize %{next}, %{} : bf16[{n}, {k}]\n",
                    next + 1,
                    arg + 1,
                    next + 2,
                    next + 1
                );
                next += 3;
                arg += 2;
                next - 1
            } else {
                inputs.push((format!("{name}w"), format!("bf16[{n}, {k}]")));
                body += &format!("      %{next} = input \"arg{arg}\" : bf16[{n}, {k}]\n");
                next += 1;
                arg += 1;
                next - 1
            };
            body += &format!("      %{next} = matmul %2, %{w} {{transpose_b}} : bf16[B, 1, {n}]\n");
            products.push(next);
            next += 1;
        }
        inputs.push(("r".to_string(), format!("bf16[B, 1, {nk}]")));
        body += &format!(
            "      %{next} = reshape %{} : bf16[B, 1, {}, 2]\n      %{} = input \"arg{arg}\" : bf16[B, 1, {nk}]\n      %{} = add %{}, %{} : bf16[B, 1, {nk}]\n      return %{next}, %{}, %{}\n",
            products[0],
            nq / 2,
            next + 1,
            next + 2,
            next + 1,
            products[1],
            next + 2,
            products[2]
        );
        let inputs: Vec<(&str, &str)> = inputs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        one_group_with(
            "  symbol B <= 16\n",
            &inputs,
            "gemv",
            &body,
            &[&format!("bf16[B, 1, {}, 2]", nq / 2), &format!("bf16[B, 1, {nk}]"), &format!("bf16[B, 1, {nv}]")],
        )
    }

    #[test]
    fn sibling_projections_share_one_launch() {
        // Segments of 38, 13 and 9 columns (none a multiple of the 8 warps: CTAs straddle
        // them), K = 208; bf16 weights and fp8 codes with a scale each; rows 1, 3 and 9.
        for fp8 in [false, true] {
            let text = projections(208, [38, 13, 9], fp8);
            for rows in [1, 3, 9] {
                let r = run_group(&text, 1, &[("B", rows)]);
                assert!(r.excess_sectors * 10 <= r.sectors, "{} of {} sectors partial", r.excess_sectors, r.sectors);
                assert_eq!(r.bank_replays, 0, "shared-memory bank conflicts");
            }
        }
    }

    /// Qwen2's attention projections at decode: q (`hq` heads) and k, v (`hkv` heads) of dim
    /// `d` from one normed row, biases, and RoPE (θ = 10⁶) on q and k at positions `pos`.
    fn rotated_projections(k: u64, hq: u64, hkv: u64, d: u64) -> String {
        let (nq, nkv) = (hq * d, hkv * d);
        let body = format!(
            "      %0 = input \"arg0\" : bf16[B, 1, {k}]\n      %1 = input \"arg1\" : bf16[{k}]\n      %2 = rms_norm %0, %1 {{eps=1e-6, groups=1}} : bf16[B, 1, {k}]\n      %3 = input \"arg2\" : bf16[{nq}, {k}]\n      %4 = matmul %2, %3 {{transpose_b}} : bf16[B, 1, {nq}]\n      %5 = input \"arg3\" : bf16[{nq}]\n      %6 = add %4, %5 : bf16[B, 1, {nq}]\n      %7 = reshape %6 : bf16[B, 1, {hq}, {d}]\n      %8 = input \"arg4\" : bf16[{nkv}, {k}]\n      %9 = matmul %2, %8 {{transpose_b}} : bf16[B, 1, {nkv}]\n      %10 = reshape %9 : bf16[B, 1, {hkv}, {d}]\n      %11 = input \"arg5\" : bf16[{nkv}, {k}]\n      %12 = matmul %2, %11 {{transpose_b}} : bf16[B, 1, {nkv}]\n      %13 = reshape %12 : bf16[B, 1, {hkv}, {d}]\n      %14 = input \"arg6\" : i64[B, 1]\n      %15 = rope %7, %14 {{theta=1000000.0, scale=1.0}} : bf16[B, 1, {hq}, {d}]\n      %16 = rope %10, %14 {{theta=1000000.0, scale=1.0}} : bf16[B, 1, {hkv}, {d}]\n      return %15, %16, %13\n"
        );
        one_group_with(
            "  symbol B <= 16\n",
            &[
                ("x", &format!("bf16[B, 1, {k}]")),
                ("nw", &format!("bf16[{k}]")),
                ("wq", &format!("bf16[{nq}, {k}]")),
                ("bq", &format!("bf16[{nq}]")),
                ("wk", &format!("bf16[{nkv}, {k}]")),
                ("wv", &format!("bf16[{nkv}, {k}]")),
                ("pos", "i64[B, 1]"),
            ],
            "gemv",
            &body,
            &[
                &format!("bf16[B, 1, {hq}, {d}]"),
                &format!("bf16[B, 1, {hkv}, {d}]"),
                &format!("bf16[B, 1, {hkv}, {d}]"),
            ],
        )
    }

    #[test]
    fn rope_in_the_epilogue_rotates_pairs_that_meet_in_one_cta() {
        // Head dims 64, 80 and 128 (pairs 32, 40 and 64 apart: other CTAs' columns in column
        // order), GQA 4:1, 2:1 and 1:1; positions up to 131,071 (angles up to 1.3·10⁵ rad,
        // where an error of an ulp in the frequency would show); rows 1, 3 and 9.
        for (hq, hkv, d) in [(4, 1, 64), (2, 1, 80), (2, 2, 128)] {
            let text = rotated_projections(64, hq, hkv, d);
            for rows in [1u64, 3, 9] {
                let r = run_group_with(&text, 1, &[("B", rows)], |inputs| {
                    let pos = (0..rows as i64).map(|i| [0, 131_071, 4097, 77, 65_536][i as usize % 5]).collect();
                    inputs.insert("pos".into(), Tensor::from_i64(DType::I64, vec![rows as usize, 1], pos));
                });
                assert_eq!(r.interpreted, None);
                assert_eq!(r.bank_replays, 0, "shared-memory bank conflicts");
            }
        }
    }

    /// A W8A16 group: the weight's fp8 codes dequantized by a per-tensor scale inside the group.
    fn w8a16(k: u64, n: u64) -> String {
        let body = format!(
            "      %0 = input \"arg0\" : bf16[B, 1, {k}]\n      %1 = input \"arg1\" : f8e4m3[{n}, {k}]\n      %2 = input \"arg2\" : f32[]\n      %3 = dequantize %1, %2 : bf16[{n}, {k}]\n      %4 = matmul %0, %3 {{transpose_b}} : bf16[B, 1, {n}]\n      return %4\n"
        );
        one_group_with(
            "  symbol B <= 8\n",
            &[("x", &format!("bf16[B, 1, {k}]")), ("q", &format!("f8e4m3[{n}, {k}]")), ("s", "f32[]")],
            "gemv",
            &body,
            &[&format!("bf16[B, 1, {n}]")],
        )
    }

    #[test]
    fn w8a16_weights_dequantize_in_the_loop() {
        for rows in [1, 5] {
            let r = run_group(&w8a16(208, 21), 1, &[("B", rows)]);
            // 8-byte weight chunks, 256 bytes a warp: full sectors.
            assert!(r.excess_sectors * 10 <= r.sectors, "{} of {} sectors partial", r.excess_sectors, r.sectors);
        }
    }

    #[test]
    fn every_fp8_code_dequantizes_exactly() {
        // The 256 codes as an [8, 32] weight (the two NaN codes in the last row); one-hot input
        // rows pick each column k, so y[n] is the dequantized weight itself, rounded to bf16 —
        // compared bit for bit with lathe-numerics' decoding of the code times the scale.
        use std::collections::HashMap;

        use lathe_interp::tensor::Tensor;
        use lathe_ir::DType;
        let text = w8a16(32, 8);
        let m = lathe_ir::text::parse_module(&text).expect("parses");
        let mut codes: Vec<u8> = (0..=255u8).filter(|c| c & 0x7F != 0x7F).collect();
        codes.extend([0x7F, 0xFF]);
        let scale = 0.37f32;
        for k in 0..32 {
            let x: Vec<f32> = (0..32).map(|j| if j == k { 1.0 } else { 0.0 }).collect();
            let inputs = HashMap::from([
                ("x".to_string(), Tensor::from_f32(DType::BF16, vec![1, 1, 32], x)),
                ("q".to_string(), Tensor::from_le_bytes(DType::F8E4M3, vec![8, 32], &codes).expect("codes")),
                ("s".to_string(), Tensor::from_f32(DType::F32, vec![], vec![scale])),
            ]);
            let (out, reports) =
                crate::simrun::run_function(&m, "main", &inputs, &lathe_interp::SyntheticOnly).expect("runs");
            assert_eq!(reports[0].interpreted, None);
            let y = out[0].1.floats();
            for n in 0..8 {
                let code = codes[n * 32 + k];
                let want = lathe_numerics::round_to_bf16(lathe_numerics::e4m3_to_f32(code) * scale);
                let got = y[n];
                // Equal values (−0 sums to +0 with the other columns' zeros), NaN for the NaN
                // codes and for their row (0 · NaN).
                assert!(
                    got == want || (got.is_nan() && want.is_nan()) || (n == 7 && got.is_nan()),
                    "code {code:#04x}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn mamba2s_gated_group_norm_in_the_out_projection_prologue() {
        // out_proj of a Mamba-2 layer at decode: y·silu(z) normalized in 4 groups of 208, the
        // residual added; rows 1 and 3.
        let body = "      %0 = input \"arg0\" : bf16[B, 1, 832]\n      %1 = input \"arg1\" : bf16[832]\n      %2 = input \"arg2\" : bf16[B, 1, 832]\n      %3 = rms_norm %0, %1, %2 {eps=1e-5, groups=4} : bf16[B, 1, 832]\n      %4 = input \"arg3\" : bf16[40, 832]\n      %5 = matmul %3, %4 {transpose_b} : bf16[B, 1, 40]\n      %6 = input \"arg4\" : bf16[B, 1, 40]\n      %7 = add %6, %5 : bf16[B, 1, 40]\n      return %7\n";
        let text = one_group_with(
            "  symbol B <= 8\n",
            &[
                ("y", "bf16[B, 1, 832]"),
                ("nw", "bf16[832]"),
                ("z", "bf16[B, 1, 832]"),
                ("w", "bf16[40, 832]"),
                ("r", "bf16[B, 1, 40]"),
            ],
            "gemv",
            body,
            &["bf16[B, 1, 40]"],
        );
        for rows in [1, 3] {
            run_group(&text, 1, &[("B", rows)]);
        }
    }

    /// The bytes in flight per SM (item 1 of L7: ≥ 32 KiB to cover memory latency at the copy
    /// bandwidth of an H200 — 4.8 TB/s × ~700 ns over 132 SMs is ~25 KiB): the simulator's most
    /// bytes in flight per warp, times the warps of the CTAs an SM holds at the registers ptxas
    /// reports and the shared memory the kernel declares.
    #[test]
    fn a_decode_gemv_keeps_enough_bytes_in_flight_per_sm() {
        let text = norm_residual("bf16", 4096, 16);
        let r = run_group(&text, 1, &[("B", 1)]);
        let m = lathe_ir::text::parse_module(&text).expect("parses");
        let f = lathe_ir::ops::Fusion {
            strategy: lathe_ir::ops::KernelStrategy::Gemv,
            body: match &m.functions[0].graph.nodes[m.functions[0].graph.order[4]].op {
                lathe_ir::Op::Fusion(f) => f.body.clone(),
                other => panic!("{}", other.name()),
            },
        };
        let c = super::compile(&m, &f, "gemv").expect("compiles");
        let p = crate::ptx::compile(&c.kernel, lathe_kernel::target::Target::HOPPER).expect("lowers");
        let cubin = crate::ptxas::assemble(&p.text, "gemv", lathe_kernel::target::Sm::Sm90).expect("assembles");
        let regs = u64::from(cubin.report.registers.max(1));
        // Hopper: 64 Ki registers (allocated per warp in 256s), 228 KiB shared (1 KiB reserved
        // per CTA), 2048 threads per SM.
        let per_warp_regs = (regs * 32).next_multiple_of(256);
        let by_regs = 65536 / (per_warp_regs * u64::from(super::WARPS));
        let by_shared = (228 * 1024) / (u64::from(c.kernel.shared_bytes) + 1024);
        let ctas = by_regs.min(by_shared).min(2048 / u64::from(super::BLOCK));
        let per_sm = ctas * u64::from(super::WARPS) * r.bytes_in_flight;
        assert!(r.bytes_in_flight >= 2048, "{} bytes in flight per warp", r.bytes_in_flight);
        assert!(
            per_sm >= 32 * 1024,
            "{per_sm} bytes in flight per SM: {ctas} CTAs ({regs} registers, {} shared bytes)",
            c.kernel.shared_bytes
        );
    }

    #[test]
    fn eight_b_shaped_decode_gemvs_match_the_interpreter_on_sampled_ctas() {
        // Nemotron-H-8B's in_proj (RMSNorm over 4096, 18,560 columns) and out_proj (the gated
        // norm in 8 groups of 1024, 4096 columns, the residual), batch 1: 8 CTAs each.
        let n = crate::testing::run_group_sampled(&norm_residual("bf16", 4096, 18560), &[("B", 1)], 8, 4096);
        assert_eq!(n, 8 * 8, "8 CTAs of 8 columns");
        let body = "      %0 = input \"arg0\" : bf16[B, 1, 8192]\n      %1 = input \"arg1\" : bf16[8192]\n      %2 = input \"arg2\" : bf16[B, 1, 8192]\n      %3 = rms_norm %0, %1, %2 {eps=1e-5, groups=8} : bf16[B, 1, 8192]\n      %4 = input \"arg3\" : bf16[4096, 8192]\n      %5 = matmul %3, %4 {transpose_b} : bf16[B, 1, 4096]\n      %6 = input \"arg4\" : bf16[B, 1, 4096]\n      %7 = add %6, %5 : bf16[B, 1, 4096]\n      return %7\n";
        let text = one_group_with(
            "  symbol B <= 8\n",
            &[
                ("y", "bf16[B, 1, 8192]"),
                ("nw", "bf16[8192]"),
                ("z", "bf16[B, 1, 8192]"),
                ("w", "bf16[4096, 8192]"),
                ("r", "bf16[B, 1, 4096]"),
            ],
            "gemv",
            body,
            &["bf16[B, 1, 4096]"],
        );
        crate::testing::run_group_sampled(&text, &[("B", 1)], 8, 8192);
    }
}
