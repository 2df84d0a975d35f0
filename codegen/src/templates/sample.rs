//! The `sample` template: one token per row of `logits[B, V]`, exactly as the IR defines
//! `sample` — argmax at temperature 0; otherwise the logits divided by the temperature, the
//! `top_k` most likely kept, then the smallest prefix whose probability reaches `top_p`, and a
//! draw with the Philox4x32-10 uniform of counter `[offset, row]` — with pointwise prologues
//! computing the logits.
//!
//! **What one CTA computes**: one row's token (the grid is `B` CTAs of 256 threads; thread `t`
//! visits elements `t, t + 256, …`, coalesced). **The order**: the IR's sampling order is by
//! value, descending, then by index, ascending. Each element gets a distinct key — the value's
//! bits mapped to an unsigned integer of the same order, shifted left by `L = bits(V − 1)`,
//! with `V − 1 − index` below — so "the first `n` tokens in sampling order" is "the keys at or
//! above a threshold", and a threshold is found without sorting: bit by bit from the top, a
//! candidate threshold is kept if the weight above it (a count for `top_k`, probability mass for
//! `top_p` and for the draw) still satisfies the condition — one pass over the row and one CTA
//! reduction per key bit (`32 + L` passes per search). **Passes**: one for the maximum and the
//! first token in order; at temperature > 0, a search for `top_k` (if it cuts), one for the
//! normalizer, a search for `top_p` (if set), one for the kept mass and one search for the
//! draw. **Memory traffic**: the row re-read on every pass, from L2 after the first
//! (`V · size` bytes per pass). **Cost model**: bytes `B · V · size`, as for any row reduction;
//! the passes are the price of an exact order without a sort (a radix select with 8-bit digits
//! and shared-memory histograms would need 4–6 passes per search: the next step for L7).
//!
//! Numerics: keys, counts and the argmax are exact. Probabilities are `exp(z − zmax) / Σ` with
//! the pointwise emitter's `exp` (1 ulp) and a CTA-ordered sum where the interpreter sums in
//! sampling order, so a mass is within a few ulps of the interpreter's: the token is the
//! interpreter's unless the draw (or `top_p`) falls within that distance of a boundary between
//! two tokens' intervals.

use std::collections::HashMap;

use lathe_ir::ops::Fusion;
use lathe_ir::{Dim, Module, Op, ValueId};
use lathe_kernel::build::{f32_imm, KernelBuilder};
use lathe_kernel::ir::{Axis, BinOp, Cmp, Inst, Operand, Reg, Space, Special, Ty, UnOp};

use super::elementwise::{bind_operands, bind_results, bind_symbols, Emit};
use super::pointwise::{self, Value};
use super::row_norm::CtaSlots;
use super::row_reduce::{Compiled, BLOCK};
use super::{unsupported, TemplateError};
use crate::group::index::{Expr, Ranges};

/// Philox4x32-10's round multipliers and key increments (Salmon et al., SC'11).
const PHILOX_M: [u64; 2] = [0xD251_1F53, 0xCD9E_8D57];
const PHILOX_W: [u32; 2] = [0x9E37_79B9, 0xBB67_AE85];

/// What a search accumulates above a candidate threshold.
#[derive(Clone, Copy)]
enum Weight {
    /// One per token.
    Count,
    /// The token's probability `exp(z − zmax) / norm`.
    Mass { zmax: Reg, norm: Reg },
}

/// The per-CTA state the passes share.
struct Row {
    /// The row's length.
    v: u64,
    /// Bits of the index part of a key.
    l: u32,
    /// Loop trips of 256 covering the row.
    trips: u64,
    /// The thread index (`u64`).
    t64: Reg,
    /// The column register the index expressions read.
    col: Reg,
    /// `logits`, the temperature (0: argmax).
    logits: ValueId,
    temperature: f32,
    /// The CTA reductions' slots.
    cta_slots: CtaSlots,
}

impl Row {
    /// One pass over the row: `each(e, z, key)` per element, `z` the tempered logit (NaN at
    /// temperature 0 stays NaN; above it NaN is −inf), `key` its sampling-order key (`u64`; 0
    /// for a NaN and on the spare threads of the ragged last trip: no token's key).
    fn pass(
        &self,
        e: &mut Emit<'_>,
        each: &mut dyn FnMut(&mut Emit<'_>, Reg, Reg) -> Result<(), TemplateError>,
    ) -> Result<(), TemplateError> {
        e.for_count(Operand::Imm(self.trips), |e, i| {
            e.memo.clear();
            let result = (|| {
                let i64r = e.b.cvt(Ty::U64, Ty::U32, None, false, i);
                let j = e.b.fma(Ty::U64, i64r, Operand::Imm(u64::from(BLOCK)), self.t64);
                let inb = e.b.setp(Cmp::Lt, Ty::U64, j, Operand::Imm(self.v));
                let jc = e.b.selp(Ty::U64, j, Operand::Imm(0), inb);
                e.b.push(Inst::Mov { dst: self.col, src: jc.into() });
                let Value::F32(l) = e.value_at(self.logits, vec![Expr::Var(0), Expr::Var(1)])? else {
                    return Err(unsupported("non-float logits"));
                };
                let z = if self.temperature == 0.0 {
                    l
                } else {
                    // `max` ignores NaN: a NaN logit becomes −inf, as in the interpreter.
                    let q = e.b.bin(BinOp::Div, Ty::F32, l, f32_imm(self.temperature));
                    e.b.bin(BinOp::Max, Ty::F32, q, f32_imm(f32::NEG_INFINITY))
                };
                // −0 and +0 are one value of the order (a tie broken by index): + 0 makes −0 +0.
                let z = e.b.bin(BinOp::Add, Ty::F32, z, f32_imm(0.0));
                let ord = order_bits(e, z);
                let hi = e.b.cvt(Ty::U64, Ty::U32, None, false, ord);
                let hi = e.b.bin(BinOp::Shl, Ty::U64, hi, Operand::Imm(u64::from(self.l)));
                let low = e.b.bin(BinOp::Sub, Ty::U64, Operand::Imm(self.v - 1), jc);
                let key = e.b.bin(BinOp::Or, Ty::U64, hi, low);
                // The compares are ordered: `z == z` fails for NaN alone.
                let same = e.b.setp(Cmp::Eq, Ty::F32, z, z);
                let key = e.b.selp(Ty::U64, key, Operand::Imm(0), same);
                let key = e.b.selp(Ty::U64, key, Operand::Imm(0), inb);
                each(e, z, key)
            })();
            e.memo.clear();
            result
        })
    }

    /// The largest key threshold `c` whose weight `Σ_{key ≥ max(c, floor)} w` satisfies `ok`
    /// (0 when none does), found bit by bit from the top.
    fn search(
        &self,
        e: &mut Emit<'_>,
        weight: Weight,
        floor: Reg,
        ok: &dyn Fn(&mut Emit<'_>, Reg) -> Reg,
    ) -> Result<Reg, TemplateError> {
        let bits = 32 + self.l;
        let t = e.b.mov(Ty::U64, Operand::Imm(0));
        e.for_count(Operand::Imm(u64::from(bits)), |e, i| {
            let bit = e.b.bin(BinOp::Sub, Ty::U32, Operand::Imm(u64::from(bits - 1)), i);
            let one = e.b.bin(BinOp::Shl, Ty::U64, Operand::Imm(1), bit);
            let c = e.b.bin(BinOp::Or, Ty::U64, t, one);
            let at = e.b.bin(BinOp::Max, Ty::U64, c, floor);
            let (ty, zero) = match weight {
                Weight::Count => (Ty::U32, Operand::Imm(0)),
                Weight::Mass { .. } => (Ty::F32, f32_imm(0.0)),
            };
            let acc = e.b.mov(ty, zero);
            self.pass(e, &mut |e, z, key| {
                let above = e.b.setp(Cmp::Ge, Ty::U64, key, at);
                let w = match weight {
                    Weight::Count => e.b.mov(Ty::U32, Operand::Imm(1)),
                    Weight::Mass { zmax, norm } => probability(e, z, zmax, norm),
                };
                let w = e.b.selp(ty, w, zero, above);
                e.b.push(Inst::Binary { op: BinOp::Add, ty, dst: acc, a: acc.into(), b: w.into() });
                Ok(())
            })?;
            let total = self.cta_slots.reduce_as(e, acc, BinOp::Add, ty);
            let keep = ok(e, total);
            e.b.push(Inst::Selp { ty: Ty::U64, dst: t, a: c.into(), b: t.into(), p: keep });
            Ok(())
        })?;
        Ok(t)
    }
}

/// `z`'s bits as an unsigned integer in `z`'s order (negatives complemented, the sign bit set
/// on the rest).
fn order_bits(e: &mut Emit<'_>, z: Reg) -> Reg {
    let bits = e.b.mov(Ty::B32, z);
    let neg = e.b.setp(Cmp::Ge, Ty::U32, bits, Operand::Imm(0x8000_0000));
    let flip = e.b.selp(Ty::U32, Operand::Imm(0xFFFF_FFFF), Operand::Imm(0x8000_0000), neg);
    e.b.bin(BinOp::Xor, Ty::U32, bits, flip)
}

/// `exp(z − zmax) / norm`, the interpreter's probability of a kept token.
fn probability(e: &mut Emit<'_>, z: Reg, zmax: Reg, norm: Reg) -> Reg {
    let d = e.b.bin(BinOp::Sub, Ty::F32, z, zmax);
    let x = pointwise::exp(&mut e.b, d);
    e.b.bin(BinOp::Div, Ty::F32, x, norm)
}

/// Philox4x32-10's first output word for `counter` (four `u32` registers) and a compile-time
/// key; the key schedule is folded into immediates.
fn philox(e: &mut Emit<'_>, counter: [Reg; 4], seed: u64) -> Reg {
    let mut c = counter;
    let mut k = [seed as u32, (seed >> 32) as u32];
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(PHILOX_W[0]), k[1].wrapping_add(PHILOX_W[1])];
        }
        let wide = |e: &mut Emit<'_>, m: u64, x: Reg| {
            let x = e.b.cvt(Ty::U64, Ty::U32, None, false, x);
            let p = e.b.bin(BinOp::Mul, Ty::U64, x, Operand::Imm(m));
            let hi = e.b.bin(BinOp::Shr, Ty::U64, p, Operand::Imm(32));
            (e.b.cvt(Ty::U32, Ty::U64, None, false, hi), e.b.cvt(Ty::U32, Ty::U64, None, false, p))
        };
        let (hi0, lo0) = wide(e, PHILOX_M[0], c[0]);
        let (hi1, lo1) = wide(e, PHILOX_M[1], c[2]);
        let a = e.b.bin(BinOp::Xor, Ty::U32, hi1, c[1]);
        let a = e.b.bin(BinOp::Xor, Ty::U32, a, Operand::Imm(u64::from(k[0])));
        let b = e.b.bin(BinOp::Xor, Ty::U32, hi0, c[3]);
        let b = e.b.bin(BinOp::Xor, Ty::U32, b, Operand::Imm(u64::from(k[1])));
        c = [a, lo1, b, lo0];
    }
    c[0]
}

/// Compiles sample group `f` of module `m` as kernel `name`.
// The builder's block closures return nothing: an immediately called closure inside each one
// collects the block's error with `?`.
#[allow(clippy::redundant_closure_call)]
pub fn compile(m: &Module, f: &Fusion, name: &str) -> Result<Compiled, TemplateError> {
    let g = &f.body;
    let samples: Vec<_> = g.order.iter().copied().filter(|&n| matches!(g.nodes[n].op, Op::Sample(_))).collect();
    let [sn] = samples.as_slice() else {
        return Err(unsupported("a sample group not built around one sample"));
    };
    if let Some(&n) = g.order.iter().find(|&&n| lathe_passes::strategy::is_row_op(&g.nodes[n].op)) {
        return Err(unsupported(format!("`{}` before the draw in a sample group", g.nodes[n].op.name())));
    }
    let node = &g.nodes[*sn];
    let Op::Sample(attrs) = &node.op else { return Err(unsupported("sample")) };
    let (logits, offset, token) = (node.args[0], node.args[1], node.results[0]);
    let shape = g.values[logits].ty.shape.clone();
    let (rows, v) = match shape.as_slice() {
        [b, Dim::Const(v)] if *v > 0 => (*b, *v),
        _ => return Err(unsupported("logits that are not [B, V] with a constant V")),
    };
    let outs: Vec<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    if outs != [token] {
        return Err(unsupported("a sample group with results besides the tokens"));
    }
    let temperature = attrs.temperature as f32;
    let mut b = KernelBuilder::new(name, BLOCK);
    let mut bindings = Vec::new();
    let bases = bind_operands(g, &mut b, &mut bindings)?;
    let outputs = bind_results(g, &outs, &mut b, &mut bindings)?;
    let syms = bind_symbols(m, g, &mut b, &mut bindings);
    super::wait_for_inputs(&mut b);
    super::release_dependents(&mut b);
    let cta = b.special(Special::Ctaid(Axis::X));
    let tid = b.special(Special::Tid(Axis::X));
    let row = b.cvt(Ty::U64, Ty::U32, None, false, cta);
    let col = b.reg(Ty::U64);
    let t64 = b.cvt(Ty::U64, Ty::U32, None, false, tid);
    let cta_slots = CtaSlots::new(&mut b, tid);
    let first_thread = b.setp(Cmp::Eq, Ty::U32, tid, Operand::Imm(0));
    let l = 64 - (v - 1).leading_zeros();
    let r = Row { v, l, trips: v.div_ceil(u64::from(BLOCK)), t64, col, logits, temperature, cta_slots };
    let ranges = Ranges::of(m, &shape);
    let mut e = Emit { g, ranges, b, vars: vec![row, col], syms, bases, memo: HashMap::new() };

    // The first token in sampling order: the largest key.
    let best = e.b.mov(Ty::U64, Operand::Imm(0));
    r.pass(&mut e, &mut |e, _, key| {
        e.b.push(Inst::Binary { op: BinOp::Max, ty: Ty::U64, dst: best, a: best.into(), b: key.into() });
        Ok(())
    })?;
    // Keys are under 2^56: the value part (32 bits) and the index part reduce as u32 pairs.
    let hi = e.b.bin(BinOp::Shr, Ty::U64, best, Operand::Imm(u64::from(l)));
    let hi = e.b.cvt(Ty::U32, Ty::U64, None, false, hi);
    let top = cta_slots.reduce_as(&mut e, hi, BinOp::Max, Ty::U32);
    let mask = (1u64 << l) - 1;
    let low = e.b.bin(BinOp::And, Ty::U64, best, Operand::Imm(mask));
    let low = e.b.cvt(Ty::U32, Ty::U64, None, false, low);
    let mine = e.b.setp(Cmp::Eq, Ty::U32, hi, top);
    let low = e.b.selp(Ty::U32, low, Operand::Imm(0), mine);
    let low = cta_slots.reduce_as(&mut e, low, BinOp::Max, Ty::U32);
    let top64 = e.b.cvt(Ty::U64, Ty::U32, None, false, top);
    let top64 = e.b.bin(BinOp::Shl, Ty::U64, top64, Operand::Imm(u64::from(l)));
    let low64 = e.b.cvt(Ty::U64, Ty::U32, None, false, low);
    let first = e.b.bin(BinOp::Or, Ty::U64, top64, low64);
    // Key 0 (every logit NaN, at temperature 0) is token 0, as in the interpreter.
    let none = e.b.setp(Cmp::Eq, Ty::U32, top, Operand::Imm(0));
    let chosen = e.b.selp(Ty::U64, Operand::Imm(v - 1), first, none);

    if temperature != 0.0 {
        // zmax from its order bits; an infinite maximum picks the first token.
        let neg = e.b.setp(Cmp::Lt, Ty::U32, top, Operand::Imm(0x8000_0000));
        let flip = e.b.selp(Ty::U32, Operand::Imm(0xFFFF_FFFF), Operand::Imm(0x8000_0000), neg);
        let zbits = e.b.bin(BinOp::Xor, Ty::B32, top, flip);
        let zmax = e.b.mov(Ty::F32, zbits);
        let mag = e.b.un(UnOp::Abs, Ty::F32, zmax);
        let finite = e.b.setp(Cmp::Lt, Ty::F32, mag, f32_imm(f32::INFINITY));
        // Every token's key is at least 2^L (the value part of −inf is not 0), so threshold 1
        // keeps them all and never the spare threads' key 0.
        let all = e.b.mov(Ty::U64, Operand::Imm(1));
        e.if_then(finite, |e| {
            // top_k: the largest threshold with at least k tokens at or above it.
            let tk = match attrs.top_k {
                Some(k) if k.max(1) < v => {
                    let k = k.max(1);
                    let t = r.search(e, Weight::Count, all, &|e, n| e.b.setp(Cmp::Ge, Ty::U32, n, Operand::Imm(k)))?;
                    e.b.bin(BinOp::Max, Ty::U64, t, all)
                }
                _ => all,
            };
            let sum = e.b.mov(Ty::F32, f32_imm(0.0));
            r.pass(e, &mut |e, z, key| {
                let kept = e.b.setp(Cmp::Ge, Ty::U64, key, tk);
                let d = e.b.bin(BinOp::Sub, Ty::F32, z, zmax);
                let x = pointwise::exp(&mut e.b, d);
                let x = e.b.selp(Ty::F32, x, f32_imm(0.0), kept);
                e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: sum, a: sum.into(), b: x.into() });
                Ok(())
            })?;
            let norm = cta_slots.reduce_as(e, sum, BinOp::Add, Ty::F32);
            let mass = Weight::Mass { zmax, norm };
            // top_p: the smallest prefix (largest threshold) whose mass reaches p.
            let tp = match attrs.top_p {
                Some(p) => {
                    let p = p as f32;
                    let t = r.search(e, mass, tk, &|e, s| e.b.setp(Cmp::Ge, Ty::F32, s, f32_imm(p)))?;
                    e.b.bin(BinOp::Max, Ty::U64, t, tk)
                }
                None => tk,
            };
            let kept = e.b.mov(Ty::F32, f32_imm(0.0));
            r.pass(e, &mut |e, z, key| {
                let inside = e.b.setp(Cmp::Ge, Ty::U64, key, tp);
                let q = probability(e, z, zmax, norm);
                let q = e.b.selp(Ty::F32, q, f32_imm(0.0), inside);
                e.b.push(Inst::Binary { op: BinOp::Add, ty: Ty::F32, dst: kept, a: kept.into(), b: q.into() });
                Ok(())
            })?;
            let kept = cta_slots.reduce_as(e, kept, BinOp::Add, Ty::F32);
            // The uniform of counter [offset, row] under key = seed.
            let Value::I64(off) = e.value_at(offset, Vec::new())? else {
                return Err(unsupported("a non-integer offset"));
            };
            let off_lo = e.b.cvt(Ty::U32, Ty::S64, None, false, off);
            let off_hi = e.b.bin(BinOp::Shr, Ty::S64, off, Operand::Imm(32));
            let off_hi = e.b.cvt(Ty::U32, Ty::S64, None, false, off_hi);
            let row_lo = e.b.cvt(Ty::U32, Ty::U64, None, false, row);
            let row_hi = e.b.bin(BinOp::Shr, Ty::U64, row, Operand::Imm(32));
            let row_hi = e.b.cvt(Ty::U32, Ty::U64, None, false, row_hi);
            let word = philox(e, [off_lo, off_hi, row_lo, row_hi], attrs.seed);
            let top24 = e.b.bin(BinOp::Shr, Ty::U32, word, Operand::Imm(8));
            let uf = e.b.cvt(Ty::F32, Ty::U32, Some(lathe_kernel::ir::Rounding::Rn), false, top24);
            let u = e.b.bin(BinOp::Mul, Ty::F32, uf, f32_imm(1.0 / 16_777_216.0));
            let target = e.b.bin(BinOp::Mul, Ty::F32, u, kept);
            // The draw: the first token whose running mass exceeds the target (the last kept one
            // if rounding leaves none).
            let td = r.search(e, mass, tp, &|e, s| e.b.setp(Cmp::Gt, Ty::F32, s, target))?;
            let td = e.b.bin(BinOp::Max, Ty::U64, td, tp);
            e.b.push(Inst::Mov { dst: chosen, src: td.into() });
            Ok(())
        })?;
    }
    // Token = V − 1 − the key's index part, stored by thread 0.
    let index = e.b.bin(BinOp::And, Ty::U64, chosen, Operand::Imm(mask));
    let tok = e.b.bin(BinOp::Sub, Ty::U64, Operand::Imm(v - 1), index);
    let tok = e.b.cvt(Ty::S64, Ty::U64, None, false, tok);
    let (buf, _) = outputs[0];
    let addr = e.b.fma(Ty::U64, row, Operand::Imm(8), buf);
    e.b.if_then(first_thread, |b| b.st(Space::Global, Ty::S64, addr, 0, &[tok.into()]));
    Ok(Compiled { kernel: e.b.finish(), bindings, rows: vec![rows], groups: 1, accumulators: Vec::new() })
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
    use crate::templates::elementwise::Binding;

    fn module(dtype: &str, v: usize, attrs: &str) -> String {
        format!(
            "module @m {{\n  compute_dtype = f32\n  symbol B <= 8\n  func @main {{\n    %0 = input \"x\" : {dtype}[B, {v}]\n    %1 = input \"off\" : i64[]\n    %2 = constant 2.0 : f32[]\n    %3 = cast %0 : f32[B, {v}]\n    %4 = mul %3, %2 : f32[B, {v}]\n    %5 = sample %4, %1 {{{attrs}}} : i64[B]\n    return %5\n  }}\n}}\n"
        )
    }

    /// Tokens of the compiled group and of the interpreter for `logits` (`rows × v`, rounded to
    /// `dtype`) at draw offset `off`.
    fn tokens(text: &str, dtype: DType, v: usize, logits: &[f32], off: i64) -> (Vec<i64>, Vec<i64>) {
        let m = parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        lathe_ir::verify::verify(&m).unwrap_or_else(|e| panic!("{e:?}"));
        let g = m.functions.first().expect("a function").graph.clone();
        let f = Fusion { strategy: KernelStrategy::Sample, body: g };
        lathe_passes::strategy::classify(&m, &f).expect("a sample group");
        let c = compile(&m, &f, "sample").unwrap_or_else(|e| panic!("{e}"));
        let rows = logits.len() / v;
        let x = Tensor::from_f32(dtype, vec![rows, v], logits.to_vec());
        let offset = Tensor::from_i64(DType::I64, vec![], vec![off]);
        let mut args: Vec<Arg> = c
            .bindings
            .iter()
            .map(|b| match b {
                Binding::Operand(0) => Arg::Buffer(x.to_le_bytes()),
                Binding::Operand(_) => Arg::Buffer(offset.to_le_bytes()),
                Binding::Result(_) => Arg::Buffer(vec![0; rows * 8]),
                Binding::Symbol(_) => Arg::Scalar(rows as u64),
                other => panic!("no {other:?} here"),
            })
            .collect();
        let launch = Launch { grid: [rows as u32, 1, 1], block: [BLOCK, 1, 1] };
        run(&c.kernel, &launch, &mut args, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
        let Some(Arg::Buffer(out)) = c.bindings.iter().position(|b| matches!(b, Binding::Result(_))).map(|i| &args[i])
        else {
            panic!("a result buffer")
        };
        let got = out.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        let inputs = HashMap::from([("x".to_string(), x), ("off".to_string(), offset)]);
        let want = lathe_interp::run(&m, "main", &inputs, &SyntheticOnly).expect("the interpreter runs");
        (got, want[0].1.ints().to_vec())
    }

    fn random_logits(seed: u64, n: usize, spread: f64, step: Option<f64>) -> Vec<f32> {
        let mut rng = lathe_tests::Rng::new(seed);
        (0..n)
            .map(|_| {
                let x = rng.normal() * spread;
                step.map_or(x, |s| (x / s).round() * s) as f32
            })
            .collect()
    }

    #[test]
    fn argmax_takes_the_first_maximum_and_skips_nan() {
        // 1000 columns: four trips of 256, the last ragged.
        let v = 1000;
        let text = module("f32", v, "seed=1, temperature=0.0");
        let mut logits = random_logits(3, 4 * v, 1.0, Some(0.25));
        // Row 1: its maximum twice (the first wins), a NaN above everything else; row 2: every
        // logit NaN (token 0); row 3: −0 at 7 and +0 at 5 the only non-negative values.
        logits[v + 900] = 9.0;
        logits[v + 17] = 9.0;
        logits[v + 3] = f32::NAN;
        logits[2 * v..3 * v].iter_mut().for_each(|x| *x = f32::NAN);
        logits[3 * v..].iter_mut().for_each(|x| *x = -x.abs() - 1.0);
        logits[3 * v + 7] = -0.0;
        logits[3 * v + 5] = 0.0;
        let (got, want) = tokens(&text, DType::F32, v, &logits, 0);
        assert_eq!(got, want);
        assert_eq!(&got[1..], &[17, 0, 5]);
    }

    #[test]
    fn draws_with_top_k_and_top_p_match_the_interpreter() {
        let v = 1000;
        let cases = [
            ("seed=7, temperature=0.8", None),
            ("seed=7, temperature=1.0, top_k=5", None),
            ("seed=11, temperature=0.7, top_p=0.9", None),
            ("seed=3, temperature=1.3, top_k=50, top_p=0.95", None),
            // bf16 logits in steps of 0.5: many exact ties, broken by index in every search.
            ("seed=5, temperature=1.0, top_k=40, top_p=0.8", Some(0.5)),
        ];
        for (k, (attrs, step)) in cases.into_iter().enumerate() {
            let dtype = if step.is_some() { DType::BF16 } else { DType::F32 };
            let text = module(if step.is_some() { "bf16" } else { "f32" }, v, attrs);
            let logits = random_logits(20 + k as u64, 3 * v, 1.5, step);
            let mut distinct = std::collections::BTreeSet::new();
            for off in 0..8 {
                let (got, want) = tokens(&text, dtype, v, &logits, off);
                assert_eq!(got, want, "{attrs}, offset {off}");
                distinct.extend(got);
            }
            // The draws really depend on the offset (and the filters let more than one through).
            assert!(distinct.len() > 3, "{attrs}: {distinct:?}");
        }
    }

    #[test]
    fn a_vocabulary_of_131072_lowers_and_assembles_without_spills() {
        let m = parse_module(&module("bf16", 131_072, "seed=1, temperature=0.6, top_k=50, top_p=0.9")).expect("parses");
        let f = Fusion { strategy: KernelStrategy::Sample, body: m.functions[0].graph.clone() };
        let c = compile(&m, &f, "sample").expect("compiles");
        let p = crate::ptx::compile(&c.kernel, lathe_kernel::target::Target::HOPPER).unwrap_or_else(|e| panic!("{e}"));
        let cubin =
            crate::ptxas::assemble(&p.text, "sample", lathe_kernel::target::Sm::Sm90).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (cubin.report.spill_stores, cubin.report.spill_loads, cubin.report.stack),
            (0, 0, 0),
            "{:?}",
            cubin.report
        );
    }
}
