//! The `attention_decode` template: one query position per sequence against a KV cache, GQA,
//! split-KV for long caches, with pointwise epilogues.
//!
//! **Splits**: the launch rule (`lathe_passes::launch`) splits a cache of `T` rows over
//! [`lathe_passes::launch::ATTENTION_SPLIT_KEYS`] into `S = min(⌈T/512⌉, 64)` splits of
//! `C = ⌈T/S⌉` keys (rounded up to the CTA size). The grid is fixed at `B · Hkv · S` CTAs, so a
//! captured graph replays every step: each CTA reads the sequence's `kv_len` on the device and
//! takes keys `[s·C, min((s+1)·C, kv_len))`; a CTA past the visible keys exits at once. With one
//! split active (`kv_len ≤ C`) that CTA writes the output itself.
//!
//! **What one CTA computes**: one (sequence, KV head, split) for all of the KV head's query
//! heads, so each cached key and value row is read once for the group. **Phases**: warp `w`
//! takes keys `j = w, w + 8, …` of its range, lane `l` the head-dimension elements `l, l + 32,
//! …`, and the query heads' scores `q·k` meet by butterflies into shared memory (`G × C` f32);
//! the scores are scaled, their maximum `m` and `l = Σ exp(s − m)` cross the CTA, each weight
//! becomes `exp(s − m) / l`; then thread `(g, d)` sums `p_j · v[j, d]` over the keys in key
//! order. **Combine** (more than one split active): each CTA writes its partial output, `m` and
//! `l` to the scratch, thread 0 fences and bumps the (sequence, KV head)'s arrival counter; the
//! CTA whose bump completes the count puts the counter back to 0, fences, and combines the
//! splits in split order, `o = Σ_s l_s·e^(m_s − M) · o_s / Σ_s l_s·e^(m_s − M)` with
//! `M = max_s m_s`, then runs the epilogue. Nobody waits, so no CTA depends on another being
//! resident. **Memory traffic**: the visible keys and values once each
//! (`2 · kv_len · Hkv · D · size` per sequence), the query rows once per split, and
//! `(Dv + 2) · 4` bytes per split and query head written and read once.
//!
//! Numerics: the dot products are summed per lane and then across lanes, where the interpreter
//! multiplies matrices (its own order); the rest — scale, max, the pointwise emitter's `exp`,
//! the sum in key order within a thread's keys and then across the CTA, the division, and
//! `Σ p·v` in key order — follows the interpreter within a split; the combine re-weights the
//! splits exactly as the softmax over all keys would (in real arithmetic): within the shared
//! tolerance of a `kv_len`-long reduction.

use std::collections::HashMap;

use lathe_ir::ops::Fusion;
use lathe_ir::{Dim, Module, Op, ValueId};
use lathe_kernel::build::{f32_imm, KernelBuilder};
use lathe_kernel::ir::{Access, Axis, BinOp, Cmp, Inst, Kernel, Operand, Reg, ShflMode, Space, Special, Ty};
use lathe_passes::launch::{Extent, Scratch};

use super::elementwise::{bind_operands, bind_results, bind_symbols, Binding, Emit};
use super::pointwise::{self, Value};
use super::row_norm::CtaSlots;
use super::{constant, unsupported, TemplateError};
use crate::group::index::{Expr, Ranges};

/// Threads per CTA: eight warps.
pub const BLOCK: u32 = 256;
const WARPS: u64 = 8;
/// The most shared memory the scores of one split may take: the 48 KiB of static shared memory
/// less 1 KiB for the CTA's reduction slots and flag.
const SCORE_BYTES: u64 = 47 * 1024;

/// A compiled decode attention.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The kernel.
    pub kernel: Kernel,
    /// What each kernel parameter is, in order.
    pub bindings: Vec<Binding>,
    /// The batch dimension: the grid is `batch · kv_heads` CTAs of [`BLOCK`].
    pub batch: Dim,
    /// KV heads.
    pub kv_heads: u64,
    /// Splits of the keys: the grid is `batch · kv_heads · splits` CTAs.
    pub splits: u64,
    /// The launch rule's scratch (partial outputs, maxima and sums, arrival counters) when
    /// `splits > 1`; [`Binding::Scratch`] names an entry.
    pub scratch: Vec<Scratch>,
}

/// Compiles decode-attention group `f` of module `m` as kernel `name`.
// The builder's block closures return nothing: an immediately called closure inside each one
// collects the block's error with `?`.
#[allow(clippy::redundant_closure_call)]
pub fn compile(m: &Module, f: &Fusion, name: &str) -> Result<Compiled, TemplateError> {
    let g = &f.body;
    let atts: Vec<_> = g.order.iter().copied().filter(|&n| matches!(g.nodes[n].op, Op::Attention(_))).collect();
    let [an] = atts.as_slice() else { return Err(unsupported("a decode attention not built around one attention")) };
    let node = &g.nodes[*an];
    let Op::Attention(attrs) = &node.op else { return Err(unsupported("attention")) };
    let [q, k, v, len] = node.args[..] else { return Err(unsupported("attention operands")) };
    let out = node.results[0];
    let (qs, ks, vs) = (g.values[q].ty.shape.clone(), g.values[k].ty.shape.clone(), g.values[v].ty.shape.clone());
    let batch = qs[0];
    let hq = constant(&qs[2], "query head count")?;
    let d_len = constant(&qs[3], "head dim")?;
    let cap = constant(&ks[1], "cache capacity")?;
    let hkv = constant(&ks[2], "KV head count")?;
    let dv = constant(&vs[3], "value dim")?;
    if hkv == 0 || hq % hkv != 0 {
        return Err(unsupported(format!("{hq} query heads over {hkv} KV heads")));
    }
    let group = hq / hkv;
    // The launch rule's splits and scratch.
    let spec = lathe_passes::strategy::classify(m, f).map_err(|e| unsupported(e.to_string()))?;
    let scratch = lathe_passes::launch::group_launches(m, g, spec).scratch;
    let splits = match scratch.first().map(|s| s.shape.as_slice()) {
        None => 1,
        Some([_, _, Extent::Dim(Dim::Const(n)), _]) if scratch.len() == 3 => *n,
        Some(_) => return Err(unsupported("a split-KV scratch of another form than the launch rule's")),
    };
    // Keys per split: all of them, or the split's share rounded up to whole CTA strides.
    let chunk = if splits == 1 { cap } else { cap.div_ceil(splits).next_multiple_of(u64::from(BLOCK)) };
    // A query head's scores, one word past the chunk apart: the threads of one warp that read
    // the same key of two heads (a value dim not a multiple of 32) hit different banks.
    let row = chunk + 1;
    if 4 * group * row > SCORE_BYTES {
        return Err(unsupported(format!(
            "a decode attention whose {group} query heads' scores over {chunk} keys a split exceed {} KiB of shared memory",
            SCORE_BYTES / 1024
        )));
    }
    let outs: Vec<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    let os = g.values[out].ty.shape.clone();
    if outs.iter().any(|&o| g.values[o].ty.shape != os) {
        return Err(unsupported("a decode attention result of another shape than its output"));
    }

    let mut b = KernelBuilder::new(name, BLOCK);
    let mut bindings = Vec::new();
    let bases = bind_operands(g, &mut b, &mut bindings)?;
    let outputs = bind_results(g, &outs, &mut b, &mut bindings)?;
    let syms = bind_symbols(m, g, &mut b, &mut bindings);
    super::wait_for_inputs(&mut b);
    // Scratch: partial outputs f32[B, Hq, S, Dv], (max, sum) f32[B, Hq, S, 2], counters.
    let mut scratch_bufs = Vec::new();
    for (i, sc) in scratch.iter().enumerate() {
        scratch_bufs.push(b.buffer(sc.name, sc.dtype, Access::Written));
        bindings.push(Binding::Scratch(i));
    }
    let scores = b.shared((4 * group * row) as u32, 16);
    let flag = b.shared(4, 4);
    let tid = b.special(Special::Tid(Axis::X));
    let cta_slots = CtaSlots::new(&mut b, tid);
    let lane0 = cta_slots.lane0();
    let cta = b.special(Special::Ctaid(Axis::X));
    let lane = b.special(Special::LaneId);
    let t64 = b.cvt(Ty::U64, Ty::U32, None, false, tid);
    let l64 = b.cvt(Ty::U64, Ty::U32, None, false, lane);
    let c64 = b.cvt(Ty::U64, Ty::U32, None, false, cta);
    let warp = b.bin(BinOp::Div, Ty::U64, t64, Operand::Imm(32));
    // CTA = (sequence · Hkv + KV head) · S + split.
    let bh = b.bin(BinOp::Div, Ty::U64, c64, Operand::Imm(splits));
    let split = b.bin(BinOp::Rem, Ty::U64, c64, Operand::Imm(splits));
    let bi = b.bin(BinOp::Div, Ty::U64, bh, Operand::Imm(hkv));
    let hk = b.bin(BinOp::Rem, Ty::U64, bh, Operand::Imm(hkv));
    let start = b.bin(BinOp::Mul, Ty::U64, split, Operand::Imm(chunk));
    let zero = b.mov(Ty::U64, Operand::Imm(0));
    let (jvar, hvar, dvar) = (b.reg(Ty::U64), b.reg(Ty::U64), b.reg(Ty::U64));
    let mut e = Emit { g, ranges: Ranges::of(m, &[]), b, vars: Vec::new(), syms, bases, memo: HashMap::new() };
    let idx4 = vec![Expr::Var(0), Expr::Var(1), Expr::Var(2), Expr::Var(3)];
    let float = |v: Value| match v {
        Value::F32(r) => Ok(r),
        _ => Err(unsupported("non-float attention operands")),
    };
    // The sequence's visible keys.
    e.ranges = Ranges::of(m, &g.values[len].ty.shape);
    e.vars = vec![bi];
    let Value::I64(kv) = e.value_at(len, vec![Expr::Var(0)])? else {
        return Err(unsupported("a non-integer kv_len"));
    };
    let kv = e.b.cvt(Ty::U64, Ty::S64, None, false, kv);
    e.memo.clear();

    // Splits with visible keys: ⌈kv_len / C⌉, at least 1 (an empty cache still writes).
    let n_active = e.b.bin(BinOp::Add, Ty::U64, kv, Operand::Imm(chunk - 1));
    let n_active = e.b.bin(BinOp::Div, Ty::U64, n_active, Operand::Imm(chunk));
    let n_active = e.b.bin(BinOp::Max, Ty::U64, n_active, Operand::Imm(1));
    let active = e.b.setp(Cmp::Lt, Ty::U64, split, n_active);
    // This split's visible keys: [start, start + n_local).
    let left = e.b.bin(BinOp::Sub, Ty::U64, kv, start);
    let left = e.b.bin(BinOp::Min, Ty::U64, left, Operand::Imm(chunk));
    let n_local = e.b.selp(Ty::U64, left, Operand::Imm(0), active);
    let started = e.b.setp(Cmp::Lt, Ty::U64, start, kv);
    let n_local = e.b.selp(Ty::U64, n_local, Operand::Imm(0), started);
    let many = e.b.setp(Cmp::Gt, Ty::U64, n_active, Operand::Imm(1));
    let one = e.b.setp(Cmp::Le, Ty::U64, n_active, Operand::Imm(1));
    // `body(e, g, d)` for each (query head of the group, value element), thread t taking
    // elements t, t + 256, ….
    let each_element = |e: &mut Emit<'_>,
                        body: &mut dyn FnMut(&mut Emit<'_>, Reg, Reg) -> Result<(), TemplateError>|
     -> Result<(), TemplateError> {
        e.for_count(Operand::Imm((group * dv).div_ceil(u64::from(BLOCK))), |e, i| {
            let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
            let el = e.b.fma(Ty::U64, i64r, Operand::Imm(u64::from(BLOCK)), t64);
            let inb = e.b.setp(Cmp::Lt, Ty::U64, el, Operand::Imm(group * dv));
            e.if_then(inb, |e| {
                let gq = e.b.bin(BinOp::Div, Ty::U64, el, Operand::Imm(dv));
                let d = e.b.bin(BinOp::Rem, Ty::U64, el, Operand::Imm(dv));
                body(e, gq, d)
            })
        })
    };
    // The epilogue of output element (query head g of the group, d) from its f32 value.
    let epilogue = |e: &mut Emit<'_>, gq: Reg, d: Reg, acc: Reg| -> Result<(), TemplateError> {
        let h = e.b.fma(Ty::U64, hk, Operand::Imm(group), gq);
        e.b.push(Inst::Mov { dst: hvar, src: h.into() });
        e.b.push(Inst::Mov { dst: dvar, src: d.into() });
        e.ranges = Ranges::of(m, &os);
        e.vars = vec![bi, zero, hvar, dvar];
        e.memo.clear();
        let r = e.round(Value::F32(acc), g.values[out].ty.dtype);
        e.remember(out, &idx4, r);
        for (&o, &(buf, dtype)) in outs.iter().zip(&outputs) {
            let x = e.value_at(o, idx4.clone())?;
            e.store_at(buf, dtype, &os, &idx4, x)?;
        }
        e.memo.clear();
        Ok(())
    };
    e.if_then(active, |e| {
        // Phase 1: scores[g][jl] = q_g · k_(start + jl) for the split's visible keys, one
        // warp per key.
        let per_lane = d_len.div_ceil(32);
        e.for_count(Operand::Imm(chunk.div_ceil(WARPS)), |e, i| {
            let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
            let jl = e.b.fma(Ty::U64, i64r, Operand::Imm(WARPS), warp);
            let visible = e.b.setp(Cmp::Lt, Ty::U64, jl, n_local);
            e.if_then(visible, |e| {
                let j = e.b.bin(BinOp::Add, Ty::U64, start, jl);
                e.b.push(Inst::Mov { dst: jvar, src: j.into() });
                // This lane's elements of the key row.
                let mut kvals = Vec::new();
                for t in 0..per_lane {
                    let d = e.b.bin(BinOp::Add, Ty::U64, l64, Operand::Imm(32 * t));
                    let ok = e.b.setp(Cmp::Lt, Ty::U64, d, Operand::Imm(d_len));
                    let dc = e.b.selp(Ty::U64, d, Operand::Imm(0), ok);
                    e.b.push(Inst::Mov { dst: dvar, src: dc.into() });
                    e.ranges = Ranges::of(m, &ks);
                    e.vars = vec![bi, jvar, hk, dvar];
                    e.memo.clear();
                    let kx = float(e.value_at(k, idx4.clone())?)?;
                    kvals.push((dc, ok, kx));
                }
                for gq in 0..group {
                    let h = e.b.fma(Ty::U64, hk, Operand::Imm(group), Operand::Imm(gq));
                    let mut acc = e.b.mov(Ty::F32, f32_imm(0.0));
                    for &(dc, ok, kx) in &kvals {
                        e.b.push(Inst::Mov { dst: hvar, src: h.into() });
                        e.b.push(Inst::Mov { dst: dvar, src: dc.into() });
                        e.ranges = Ranges::of(m, &qs);
                        e.vars = vec![bi, zero, hvar, dvar];
                        e.memo.clear();
                        let qx = float(e.value_at(q, idx4.clone())?)?;
                        let p = e.b.bin(BinOp::Mul, Ty::F32, qx, kx);
                        let p = e.b.selp(Ty::F32, p, f32_imm(0.0), ok);
                        acc = e.b.bin(BinOp::Add, Ty::F32, acc, p);
                    }
                    for dist in [16u64, 8, 4, 2, 1] {
                        let o = e.b.shfl(ShflMode::Bfly, acc, Operand::Imm(dist));
                        acc = e.b.bin(BinOp::Add, Ty::F32, acc, o);
                    }
                    let at = e.b.fma(Ty::U64, jl, Operand::Imm(4), Operand::Imm(u64::from(scores) + 4 * gq * row));
                    e.b.if_then(lane0, |b| b.st(Space::Shared, Ty::F32, at, 0, &[acc.into()]));
                }
                e.memo.clear();
                Ok(())
            })
        })?;
        e.b.bar();

        // Phase 2: per query head, the scaled scores' maximum and the sum of their
        // exponentials (each thread over its keys in key order, then across the CTA); weights
        // exp(s − max) / Σ.
        let trips = chunk.div_ceil(u64::from(BLOCK));
        let scale = attrs.scale as f32;
        // `body(e, at)` for the shared address of each visible key's entry in a head's scores
        // (thread t takes keys t, t + 256, …).
        let each_key = |e: &mut Emit<'_>, base: u64, body: &mut dyn FnMut(&mut Emit<'_>, Reg)| {
            e.for_count(Operand::Imm(trips), |e, i| {
                let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
                let jl = e.b.fma(Ty::U64, i64r, Operand::Imm(u64::from(BLOCK)), t64);
                let visible = e.b.setp(Cmp::Lt, Ty::U64, jl, n_local);
                e.if_then(visible, |e| {
                    let at = e.b.fma(Ty::U64, jl, Operand::Imm(4), Operand::Imm(base));
                    body(e, at);
                    Ok(())
                })
            })
        };
        let mut stats = Vec::new();
        for gq in 0..group {
            let base = u64::from(scores) + 4 * gq * row;
            let mx = e.b.mov(Ty::F32, f32_imm(f32::NEG_INFINITY));
            each_key(e, base, &mut |e, at| {
                let s = e.b.ld1(Space::Shared, Ty::F32, at, 0);
                let s = e.b.bin(BinOp::Mul, Ty::F32, s, f32_imm(scale));
                e.b.st(Space::Shared, Ty::F32, at, 0, &[s.into()]);
                e.b.push(Inst::Binary { op: BinOp::Max, ty: Ty::F32, dst: mx, a: mx.into(), b: s.into() });
            })?;
            let mx = cta_slots.reduce(e, mx, BinOp::Max);
            let total = e.b.mov(Ty::F32, f32_imm(0.0));
            each_key(e, base, &mut |e, at| {
                let s = e.b.ld1(Space::Shared, Ty::F32, at, 0);
                let d = e.b.bin(BinOp::Sub, Ty::F32, s, mx);
                let x = pointwise::exp(&mut e.b, d);
                e.b.st(Space::Shared, Ty::F32, at, 0, &[x.into()]);
                e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: total, a: total.into(), b: x.into() });
            })?;
            let total = cta_slots.reduce(e, total, BinOp::Add);
            each_key(e, base, &mut |e, at| {
                let x = e.b.ld1(Space::Shared, Ty::F32, at, 0);
                let p = e.b.bin(BinOp::Div, Ty::F32, x, total);
                e.b.st(Space::Shared, Ty::F32, at, 0, &[p.into()]);
            })?;
            stats.push((mx, total));
        }
        e.b.bar();

        // Phase 3: thread (g, d) sums p_j · v[j, d] in key order; with one split active, the
        // epilogue; with more, the partial goes to the scratch.
        super::release_dependents(&mut e.b);
        let n32 = e.b.cvt(Ty::U32, Ty::U64, None, false, n_local);
        each_element(e, &mut |e, gq, d| {
            let base = e.b.fma(Ty::U64, gq, Operand::Imm(4 * row), Operand::Imm(u64::from(scores)));
            let acc = e.b.mov(Ty::F32, f32_imm(0.0));
            e.for_count(Operand::Reg(n32), |e, jj| {
                let jl = e.b.cvt(Ty::U64, Ty::U32, None, false, jj);
                let at = e.b.fma(Ty::U64, jl, Operand::Imm(4), base);
                let p = e.b.ld1(Space::Shared, Ty::F32, at, 0);
                let j = e.b.bin(BinOp::Add, Ty::U64, start, jl);
                e.b.push(Inst::Mov { dst: jvar, src: j.into() });
                e.b.push(Inst::Mov { dst: dvar, src: d.into() });
                e.ranges = Ranges::of(m, &vs);
                e.vars = vec![bi, jvar, hk, dvar];
                e.memo.clear();
                let vx = float(e.value_at(v, idx4.clone())?)?;
                let t = e.b.bin(BinOp::Mul, Ty::F32, p, vx);
                e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: acc, a: acc.into(), b: t.into() });
                e.memo.clear();
                Ok(())
            })?;
            if splits == 1 {
                return epilogue(e, gq, d, acc);
            }
            e.if_then(one, |e| epilogue(e, gq, d, acc))?;
            e.if_then(many, |e| {
                // partial[b, h, s, d]
                let h = e.b.fma(Ty::U64, hk, Operand::Imm(group), gq);
                let row = e.b.fma(Ty::U64, bi, Operand::Imm(hq), h);
                let row = e.b.fma(Ty::U64, row, Operand::Imm(splits), split);
                let at = e.b.fma(Ty::U64, row, Operand::Imm(dv), d);
                let at = e.b.fma(Ty::U64, at, Operand::Imm(4), scratch_bufs[0]);
                e.b.st(Space::Global, Ty::F32, at, 0, &[acc.into()]);
                Ok(())
            })
        })?;
        if splits == 1 {
            return Ok(());
        }
        e.if_then(many, |e| {
            // Thread 0: each head's (max, sum), then the release and the arrival.
            let first = e.b.setp(Cmp::Eq, Ty::U64, t64, Operand::Imm(0));
            e.if_then(first, |e| {
                for (gq, &(mx, total)) in stats.iter().enumerate() {
                    let h = e.b.fma(Ty::U64, hk, Operand::Imm(group), Operand::Imm(gq as u64));
                    let row = e.b.fma(Ty::U64, bi, Operand::Imm(hq), h);
                    let row = e.b.fma(Ty::U64, row, Operand::Imm(splits), split);
                    let at = e.b.fma(Ty::U64, row, Operand::Imm(8), scratch_bufs[1]);
                    e.b.st(Space::Global, Ty::F32, at, 0, &[mx.into(), total.into()]);
                }
                Ok(())
            })?;
            e.b.bar();
            e.if_then(first, |e| {
                // The counter of (sequence, KV head): the first query head's slot.
                let slot = e.b.fma(Ty::U64, bi, Operand::Imm(hq), Operand::Imm(0));
                let slot = e.b.fma(Ty::U64, hk, Operand::Imm(group), slot);
                let at = e.b.fma(Ty::U64, slot, Operand::Imm(4), scratch_bufs[2]);
                e.b.fence();
                let n32 = e.b.cvt(Ty::U32, Ty::U64, None, false, n_active);
                let old = e.b.atom(Space::Global, BinOp::Add, Ty::U32, at, 0, Operand::Imm(1));
                let last_old = e.b.bin(BinOp::Sub, Ty::U32, n32, Operand::Imm(1));
                let last = e.b.setp(Cmp::Eq, Ty::U32, old, last_old);
                // The last arrival puts the counter back to 0 for the next step.
                let back = e.b.bin(BinOp::Sub, Ty::U32, Operand::Imm(0), n32);
                e.b.if_then(last, |b| b.red(Space::Global, BinOp::Add, Ty::U32, at, 0, back));
                e.b.fence();
                let bit = e.b.selp(Ty::U32, Operand::Imm(1), Operand::Imm(0), last);
                e.b.st(Space::Shared, Ty::U32, Operand::Imm(u64::from(flag)), 0, &[bit.into()]);
                Ok(())
            })?;
            e.b.bar();
            let bit = e.b.ld1(Space::Shared, Ty::U32, Operand::Imm(u64::from(flag)), 0);
            let last = e.b.setp(Cmp::Ne, Ty::U32, bit, Operand::Imm(0));
            e.if_then(last, |e| {
                // The combine: thread (g, d) over the splits in split order.
                each_element(e, &mut |e, gq, d| {
                    let h = e.b.fma(Ty::U64, hk, Operand::Imm(group), gq);
                    let row0 = e.b.fma(Ty::U64, bi, Operand::Imm(hq), h);
                    let row0 = e.b.bin(BinOp::Mul, Ty::U64, row0, Operand::Imm(splits));
                    let na32 = e.b.cvt(Ty::U32, Ty::U64, None, false, n_active);
                    let big = e.b.mov(Ty::F32, f32_imm(f32::NEG_INFINITY));
                    e.for_count(Operand::Reg(na32), |e, si| {
                        let s64 = e.b.cvt(Ty::U64, Ty::U32, None, false, si);
                        let row = e.b.bin(BinOp::Add, Ty::U64, row0, s64);
                        let at = e.b.fma(Ty::U64, row, Operand::Imm(8), scratch_bufs[1]);
                        let ms = e.b.ld1(Space::Global, Ty::F32, at, 0);
                        e.b.push(Inst::Binary { op: BinOp::Max, ty: Ty::F32, dst: big, a: big.into(), b: ms.into() });
                        Ok(())
                    })?;
                    let (num, den) = (e.b.mov(Ty::F32, f32_imm(0.0)), e.b.mov(Ty::F32, f32_imm(0.0)));
                    e.for_count(Operand::Reg(na32), |e, si| {
                        let s64 = e.b.cvt(Ty::U64, Ty::U32, None, false, si);
                        let row = e.b.bin(BinOp::Add, Ty::U64, row0, s64);
                        let at = e.b.fma(Ty::U64, row, Operand::Imm(8), scratch_bufs[1]);
                        let ml = e.b.ld(Space::Global, Ty::F32, 2, at, 0, false);
                        let d_m = e.b.bin(BinOp::Sub, Ty::F32, ml[0], big);
                        let wexp = pointwise::exp(&mut e.b, d_m);
                        let w = e.b.bin(BinOp::Mul, Ty::F32, ml[1], wexp);
                        let at = e.b.fma(Ty::U64, row, Operand::Imm(dv), d);
                        let at = e.b.fma(Ty::U64, at, Operand::Imm(4), scratch_bufs[0]);
                        let o = e.b.ld1(Space::Global, Ty::F32, at, 0);
                        let t = e.b.bin(BinOp::Mul, Ty::F32, w, o);
                        e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: num, a: num.into(), b: t.into() });
                        e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: den, a: den.into(), b: w.into() });
                        Ok(())
                    })?;
                    let o = e.b.bin(BinOp::Div, Ty::F32, num, den);
                    epilogue(e, gq, d, o)
                })
            })
        })
    })?;
    Ok(Compiled { kernel: e.b.finish(), bindings, batch, kv_heads: hkv, splits, scratch })
}

#[cfg(test)]
mod tests {
    use lathe_interp::tensor::Tensor;
    use lathe_ir::DType;

    use crate::templates::elementwise::Binding;
    use crate::testing::{one_group_with, run_group, run_group_with};

    /// `hq` query heads over `hkv` KV heads of dim `d`, a cache of `t` rows.
    fn decode_attention(hq: u64, hkv: u64, d: u64, t: u64) -> String {
        let body = format!(
            "      %0 = input \"arg0\" : bf16[B, 1, {hq}, {d}]\n      %1 = input \"arg1\" : bf16[B, {t}, {hkv}, {d}]\n      %2 = input \"arg2\" : bf16[B, {t}, {hkv}, {d}]\n      %3 = input \"arg3\" : i64[B]\n      %5 = constant 1 : i64[]\n      %6 = add %3, %5 : i64[B]\n      %4 = attention %0, %1, %2, %6 {{mask=causal, scale=1.0}} : bf16[B, 1, {hq}, {d}]\n      return %4\n"
        );
        one_group_with(
            "  symbol B <= 4\n",
            &[
                ("q", &format!("bf16[B, 1, {hq}, {d}]")),
                ("k", &format!("bf16[B, {t}, {hkv}, {d}]")),
                ("v", &format!("bf16[B, {t}, {hkv}, {d}]")),
                ("past", "i64[B]"),
            ],
            "attention_decode",
            &body,
            &[&format!("bf16[B, 1, {hq}, {d}]")],
        )
    }

    #[test]
    fn decode_attention_matches_the_interpreter() {
        // GQA 4:1 at head dim 64, 8:1 at 128, 1:1 at 8 (lanes idle); caches of 40, 512 and 17
        // rows (one split); each sequence's kv length is its past (drawn below `bound`) plus
        // the new row; batch 1 and 3.
        for (hq, hkv, d, t, bound) in [(8, 2, 64, 40, 40), (8, 1, 128, 512, 512), (2, 2, 8, 17, 17)] {
            for rows in [1, 3] {
                let r = run_group(&decode_attention(hq, hkv, d, t), bound, &[("B", rows)]);
                assert_eq!(r.bank_replays, 0, "shared-memory bank conflicts at GQA {hq}:{hkv}, dim {d}");
            }
        }
    }

    #[test]
    fn split_kv_attention_combines_in_the_last_cta_to_arrive() {
        // Caches over 512 rows split (9 splits of 512 keys at 4097 rows, 2 at 600); kv lengths
        // 1 and 17 (one split active: no combine), 600, 1000 and 4097 (the combine over 2 and 9
        // splits, the last one partial); GQA 1, 4 and 8 at head dims 64, 80 and 128; batch 2
        // with the sequences' lengths different. The simulator runs the CTAs forward and in
        // reverse, so another CTA arrives last, for the same bits.
        for (hq, hkv, d, t, lens) in
            [(4, 4, 64, 600, [1, 600]), (8, 2, 80, 4097, [17, 4097]), (8, 1, 128, 4097, [4097, 1000])]
        {
            let text = decode_attention(hq, hkv, d, t);
            let r = run_group_with(&text, 1, &[("B", 2)], |inputs| {
                let past = lens.iter().map(|&l| l - 1).collect();
                inputs.insert("past".into(), Tensor::from_i64(DType::I64, vec![2], past));
            });
            assert_eq!(r.interpreted, None);
            assert_eq!(r.bank_replays, 0, "shared-memory bank conflicts at GQA {hq}:{hkv}, dim {d}");
            // The cached keys and values stream in full sectors.
            for cache in [1, 2] {
                let (n, x) = r.sectors_of(&Binding::Operand(cache));
                assert!(n > 0 && x == 0, "{x} of {n} sectors of operand {cache} partial at dim {d}");
            }
        }
    }

    #[test]
    fn the_8b_attention_layer_at_4097_keys_matches_the_interpreter() {
        // Nemotron-H-8B's decode attention: 32 query heads over 8 KV heads of 128, an 8192-row
        // cache (16 splits of 512), at 4097 visible keys: 72 of the 128 CTAs combine over 9
        // splits; every CTA runs (the combine needs all of a head's splits).
        let text = decode_attention(32, 8, 128, 8192);
        let r = run_group_with(&text, 1, &[("B", 1)], |inputs| {
            inputs.insert("past".into(), Tensor::from_i64(DType::I64, vec![1], vec![4096]));
        });
        assert_eq!(r.interpreted, None);
    }
}
