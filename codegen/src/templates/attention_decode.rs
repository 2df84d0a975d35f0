//! The `attention_decode` template, single-split form: one query position per sequence
//! against a KV cache of at most [`lathe_passes::launch::ATTENTION_SPLIT_KEYS`] rows (the launch
//! rule's one-launch case, no scratch), GQA, with pointwise epilogues.
//!
//! **What one CTA computes**: one (sequence, KV head) for all of the KV head's query heads, so
//! each cached key and value row is read once for the group. **Phases**: warp `w` takes keys
//! `j = w, w + 8, …` below `kv_len`, lane `l` the head-dimension elements `l, l + 32, …`, and
//! the query heads' scores `q·k` meet by butterflies into shared memory (`G × T` f32); the
//! scores are scaled, their maximum and `Σ exp(s − max)` cross the CTA, each weight becomes
//! `exp(s − max) / Σ`; then thread `(g, d)` sums `p_j · v[j, d]` over the keys in key order, as
//! the interpreter does, and runs the epilogue. **Memory traffic**: the visible keys and values
//! once each (`2 · kv_len · Hkv · D · size` per sequence); the query heads' rows once. The split
//! form for longer caches (several CTAs per head and the last one combining their partials,
//! with the launch rule's scratch) is the next step.
//!
//! Numerics: the dot products are summed per lane and then across lanes, where the interpreter
//! multiplies matrices (its own order); the rest — scale, max, the pointwise emitter's `exp`,
//! the sum in key order within a thread's keys and then across the CTA, the division, and
//! `Σ p·v` in key order — follows the interpreter: within the shared tolerance of a
//! `kv_len`-long reduction.

use std::collections::HashMap;

use lathe_ir::ops::Fusion;
use lathe_ir::{Dim, Module, Op, ValueId};
use lathe_kernel::build::{f32_imm, KernelBuilder};
use lathe_kernel::ir::{Axis, BinOp, Cmp, Inst, Kernel, Operand, Reg, ShflMode, Space, Special, Ty};

use super::elementwise::{bind_operands, bind_results, bind_symbols, Binding, Emit};
use super::pointwise::{self, Value};
use super::row_norm::CtaSlots;
use super::{constant, unsupported, TemplateError};
use crate::group::index::{Expr, Ranges};

/// Threads per CTA: eight warps.
pub const BLOCK: u32 = 256;
const WARPS: u64 = 8;

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
    if cap > lathe_passes::launch::ATTENTION_SPLIT_KEYS {
        return Err(unsupported(format!(
            "split-KV attention (a cache of {cap} rows, over {} per split: the combine step)",
            lathe_passes::launch::ATTENTION_SPLIT_KEYS
        )));
    }
    if hkv == 0 || hq % hkv != 0 {
        return Err(unsupported(format!("{hq} query heads over {hkv} KV heads")));
    }
    let group = hq / hkv;
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
    let scores = b.shared((4 * group * cap) as u32, 16);
    let tid = b.special(Special::Tid(Axis::X));
    let cta_slots = CtaSlots::new(&mut b, tid);
    let lane0 = cta_slots.lane0();
    let cta = b.special(Special::Ctaid(Axis::X));
    let lane = b.special(Special::LaneId);
    let t64 = b.cvt(Ty::U64, Ty::U32, None, false, tid);
    let l64 = b.cvt(Ty::U64, Ty::U32, None, false, lane);
    let c64 = b.cvt(Ty::U64, Ty::U32, None, false, cta);
    let warp = b.bin(BinOp::Div, Ty::U64, t64, Operand::Imm(32));
    let bi = b.bin(BinOp::Div, Ty::U64, c64, Operand::Imm(hkv));
    let hk = b.bin(BinOp::Rem, Ty::U64, c64, Operand::Imm(hkv));
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

    // Phase 1: scores[g][j] = q_g · k_j for the visible keys, one warp per key.
    let per_lane = d_len.div_ceil(32);
    e.for_count(Operand::Imm(cap.div_ceil(WARPS)), |e, i| {
        let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
        let j = e.b.fma(Ty::U64, i64r, Operand::Imm(WARPS), warp);
        let visible = e.b.setp(Cmp::Lt, Ty::U64, j, kv);
        e.if_then(visible, |e| {
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
                let at = e.b.fma(Ty::U64, j, Operand::Imm(4), Operand::Imm(u64::from(scores) + 4 * gq * cap));
                e.b.if_then(lane0, |b| b.st(Space::Shared, Ty::F32, at, 0, &[acc.into()]));
            }
            e.memo.clear();
            Ok(())
        })
    })?;
    e.b.bar();

    // Phase 2: per query head, the scaled scores' maximum and the sum of their exponentials
    // (each thread over its keys in key order, then across the CTA); weights exp(s − max) / Σ.
    let trips = cap.div_ceil(u64::from(BLOCK));
    let scale = attrs.scale as f32;
    // `body(e, at)` for the shared address of each visible key's entry in a head's scores
    // (thread t takes keys t, t + 256, …).
    let each_key = |e: &mut Emit<'_>, base: u64, body: &mut dyn FnMut(&mut Emit<'_>, Reg)| {
        e.for_count(Operand::Imm(trips), |e, i| {
            let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
            let j = e.b.fma(Ty::U64, i64r, Operand::Imm(u64::from(BLOCK)), t64);
            let visible = e.b.setp(Cmp::Lt, Ty::U64, j, kv);
            e.if_then(visible, |e| {
                let at = e.b.fma(Ty::U64, j, Operand::Imm(4), Operand::Imm(base));
                body(e, at);
                Ok(())
            })
        })
    };
    for gq in 0..group {
        let base = u64::from(scores) + 4 * gq * cap;
        let mx = e.b.mov(Ty::F32, f32_imm(f32::NEG_INFINITY));
        each_key(&mut e, base, &mut |e, at| {
            let s = e.b.ld1(Space::Shared, Ty::F32, at, 0);
            let s = e.b.bin(BinOp::Mul, Ty::F32, s, f32_imm(scale));
            e.b.st(Space::Shared, Ty::F32, at, 0, &[s.into()]);
            e.b.push(Inst::Binary { op: BinOp::Max, ty: Ty::F32, dst: mx, a: mx.into(), b: s.into() });
        })?;
        let mx = cta_slots.reduce(&mut e, mx, BinOp::Max);
        let total = e.b.mov(Ty::F32, f32_imm(0.0));
        each_key(&mut e, base, &mut |e, at| {
            let s = e.b.ld1(Space::Shared, Ty::F32, at, 0);
            let d = e.b.bin(BinOp::Sub, Ty::F32, s, mx);
            let x = pointwise::exp(&mut e.b, d);
            e.b.st(Space::Shared, Ty::F32, at, 0, &[x.into()]);
            e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: total, a: total.into(), b: x.into() });
        })?;
        let total = cta_slots.reduce(&mut e, total, BinOp::Add);
        each_key(&mut e, base, &mut |e, at| {
            let x = e.b.ld1(Space::Shared, Ty::F32, at, 0);
            let p = e.b.bin(BinOp::Div, Ty::F32, x, total);
            e.b.st(Space::Shared, Ty::F32, at, 0, &[p.into()]);
        })?;
    }
    e.b.bar();

    // Phase 3: thread (g, d) sums p_j · v[j, d] in key order, then the epilogue.
    let kv32 = e.b.cvt(Ty::U32, Ty::U64, None, false, kv);
    e.for_count(Operand::Imm((group * dv).div_ceil(u64::from(BLOCK))), |e, i| {
        let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
        let el = e.b.fma(Ty::U64, i64r, Operand::Imm(u64::from(BLOCK)), t64);
        let inb = e.b.setp(Cmp::Lt, Ty::U64, el, Operand::Imm(group * dv));
        e.if_then(inb, |e| {
            let gq = e.b.bin(BinOp::Div, Ty::U64, el, Operand::Imm(dv));
            let d = e.b.bin(BinOp::Rem, Ty::U64, el, Operand::Imm(dv));
            let base = e.b.fma(Ty::U64, gq, Operand::Imm(4 * cap), Operand::Imm(u64::from(scores)));
            let acc = e.b.mov(Ty::F32, f32_imm(0.0));
            e.for_count(Operand::Reg(kv32), |e, jj| {
                let j = e.b.cvt(Ty::U64, Ty::U32, None, false, jj);
                let at = e.b.fma(Ty::U64, j, Operand::Imm(4), base);
                let p = e.b.ld1(Space::Shared, Ty::F32, at, 0);
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
        })
    })?;
    Ok(Compiled { kernel: e.b.finish(), bindings, batch, kv_heads: hkv })
}

#[cfg(test)]
mod tests {
    use crate::testing::{one_group_with, run_group};

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
        // rows; each sequence's kv length is its past (drawn below `bound`) plus the new row;
        // batch 1 and 3.
        for (hq, hkv, d, t, bound) in [(8, 2, 64, 40, 40), (8, 1, 128, 512, 512), (2, 2, 8, 17, 17)] {
            for rows in [1, 3] {
                run_group(&decode_attention(hq, hkv, d, t), bound, &[("B", rows)]);
            }
        }
    }
}
