//! `fuse-fp8` — exact folds of fp8 quantize/dequantize pairs (Q/DQ graphs: fake-quantized
//! imports, or the dequantized operands `quantize-fp8` leaves).
//!
//! Rules, each `pattern => replacement`, applied only where the interpreter's results stay
//! bit-identical:
//! - `quantize(dequantize(q, s) : T, s) : dtype(q) => q` when `s` is a constant (the same value,
//!   or equal constants) with which every one of the 256 codes of `dtype(q)` survives the round
//!   trip through `T`, checked at compile time by running the two ops on all codes. Round trip:
//!   `q·s` rounded to `T` has relative error ≤ 2^-9 (bf16) and dividing by `s` adds 2^-24, far
//!   below half an E4M3 step (≥ 2^-5 relative), so it returns `q` unless `q·s` overflows or
//!   underflows `T`, or `s` is 0, ∞ or NaN — and never for E5M2, whose ±∞ codes saturate to
//!   ±57344 on the way back. A run-time scale (`amax`-derived) is not folded: an input holding
//!   ∞ makes it ∞ and the pair turns ±0 into NaN. (`dequantize(quantize(x, s), s)` is not an
//!   identity at all: it rounds `x` to fp8.)
//! - `matmul(dequantize(qa, sa) : f32, dequantize(qb, sb) : f32) => scaled_matmul(qa, qb, sa, sb)`
//!   with the same transposes and result dtype, when `sa` is `f32[]` and `sb` is `f32[]`, or
//!   `f32[N]` with `b` stored `[K, N]` (no `transpose_b`): dequantize scales the last axis, which
//!   is then the output channel `scaled_matmul` scales. Both compute the f32 products `q·s` and
//!   accumulate them alike; a bf16/f16 dequantize rounds those products, which `scaled_matmul`
//!   does not, so it is not folded, and neither is a per-channel `sb` with `transpose_b` (there
//!   it scales the input channel, even when `K = N` makes the shapes fit).
//!
//! `amax` next to its producer (the norm or epilogue computing the activation, so the scale
//! costs no extra pass over it) is a scheduling matter: the `row_reduce`, `gemm` and `gemv`
//! strategies accept `amax`, `quantize` and `dequantize`, and the grouping passes decide where
//! they go.
//! Pre: a verified module. Post: a verified module computing bit-identical results.

use std::collections::HashMap;

use lathe_interp::eval_op;
use lathe_interp::tensor::{Data, Tensor};
use lathe_ir::{DType, Graph, Module, Op, TensorType, ValueId};
use lathe_numerics as numerics;

use crate::rewrite::{for_each_graph, remove_dead, Replacements};
use crate::{Changed, Failure, Options, Pass, PassContext, PassInfo, GRAPH_ONLY};

/// Registry entry.
pub const INFO: PassInfo = PassInfo {
    name: "fuse-fp8",
    summary: "exact fp8 folds: requantize of a dequantize, matmul of two f32 dequantizes => scaled_matmul",
    options: &[],
    accepts: GRAPH_ONLY,
    sets: None,
    create: |_: &Options| Ok(Box::new(FuseFp8)),
};

/// The pass.
#[derive(Debug)]
pub struct FuseFp8;

/// Largest number of distinct constant scale values checked for one requantize.
const MAX_CHECKED_SCALES: usize = 4096;

/// Whether `quantize(dequantize(c, s) : via, s) : fp8` returns `c` for every code `c` of the fp8
/// dtype, computed with the interpreter's own ops on the codes' exact values (±∞ included, which
/// a GPU reads from E5M2 bytes as they are); NaN codes must come back NaN.
pub fn requantize_is_exact(fp8: DType, via: DType, scale: f32) -> bool {
    let decode = match fp8 {
        DType::F8E4M3 => numerics::e4m3_to_f32,
        DType::F8E5M2 => numerics::e5m2_to_f32,
        _ => return false,
    };
    if !via.is_float() || via.is_fp8() {
        return false;
    }
    let header = Module::new("requantize-check");
    let raw: Vec<f32> = (0..=255u8).map(decode).collect();
    let codes = Tensor { dtype: fp8, shape: vec![256], data: Data::F(raw.clone()) };
    let s = Tensor::from_f32(DType::F32, vec![], vec![scale]);
    let (tv, tq) = (TensorType::fixed(via, &[256]), TensorType::fixed(fp8, &[256]));
    let Ok(dq) = eval_op(&header, &Op::Dequantize(via), &[&codes, &s], &[&tv]) else { return false };
    let Some(dq) = dq.first() else { return false };
    let Ok(rq) = eval_op(&header, &Op::Quantize(fp8), &[dq, &s], &[&tq]) else { return false };
    let Some(rq) = rq.first() else { return false };
    rq.floats().len() == 256
        && rq.floats().iter().zip(&raw).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()))
}

/// The op defining `v`.
fn def(g: &Graph, v: ValueId) -> &lathe_ir::Node {
    &g.nodes[g.values[v].def]
}

/// The values of a constant `f32` scale.
fn constant_scale(g: &Graph, v: ValueId) -> Option<&[f64]> {
    match &def(g, v).op {
        Op::Constant(c) if c.ty.dtype == DType::F32 && !c.values.is_empty() => Some(&c.values),
        _ => None,
    }
}

/// Whether the scales `a` and `b` are one value: the same SSA value or equal constants.
fn same_scale(g: &Graph, a: ValueId, b: ValueId) -> bool {
    if a == b {
        return true;
    }
    match (&def(g, a).op, &def(g, b).op) {
        (Op::Constant(x), Op::Constant(y)) => {
            x.ty == y.ty
                && x.values.len() == y.values.len()
                && x.values.iter().zip(&y.values).all(|(p, q)| (*p as f32).to_bits() == (*q as f32).to_bits())
        }
        _ => false,
    }
}

/// Folds in one graph; returns `(requantizes, scaled_matmuls)`.
fn fuse_graph(m: &Module, g: &mut Graph, exact: &mut HashMap<(DType, DType, u32), bool>) -> (u64, u64) {
    let mut rep = Replacements::default();
    let (mut requant, mut scaled) = (0, 0);
    let order = g.order.clone();
    for n in order {
        let args: Vec<ValueId> = g.nodes[n].args.iter().map(|&a| rep.resolve(a)).collect();
        g.nodes[n].args = args.clone();
        let Some(&result) = g.nodes[n].results.first() else { continue };
        match g.nodes[n].op.clone() {
            // quantize(dequantize(q, s) : T, s) : dtype(q) => q, for constant s where exact
            Op::Quantize(to) => {
                let inner = def(g, args[0]);
                let Op::Dequantize(via) = inner.op else { continue };
                let (q, s_inner) = (inner.args[0], inner.args[1]);
                if g.values[q].ty.dtype != to || !same_scale(g, args[1], s_inner) {
                    continue;
                }
                let Some(values) = constant_scale(g, args[1]) else { continue };
                let mut distinct: Vec<u32> = values.iter().map(|&v| (v as f32).to_bits()).collect();
                distinct.sort_unstable();
                distinct.dedup();
                if distinct.len() > MAX_CHECKED_SCALES {
                    continue;
                }
                let ok = distinct.iter().all(|&bits| {
                    *exact.entry((to, via, bits)).or_insert_with(|| requantize_is_exact(to, via, f32::from_bits(bits)))
                });
                if ok && g.values[q].ty == g.values[result].ty {
                    rep.insert(result, q);
                    requant += 1;
                }
            }
            // matmul(dequantize(qa, sa) : f32, dequantize(qb, sb) : f32) => scaled_matmul(qa, qb, sa, sb)
            Op::Matmul(mm) => {
                let (a, b) = (def(g, args[0]), def(g, args[1]));
                let (Op::Dequantize(DType::F32), Op::Dequantize(DType::F32)) = (&a.op, &b.op) else { continue };
                let (qa, sa, qb, sb) = (a.args[0], a.args[1], b.args[0], b.args[1]);
                let sb_ok = match g.values[sb].ty.rank() {
                    0 => true,
                    1 => !mm.transpose_b,
                    _ => false,
                };
                if g.values[sa].ty.rank() != 0 || !sb_ok {
                    continue;
                }
                let op = Op::ScaledMatmul(mm);
                let new_args = vec![qa, qb, sa, sb];
                let types: Vec<&TensorType> = new_args.iter().map(|&v| &g.values[v].ty).collect();
                match lathe_ir::infer::infer(m, &op, &types) {
                    Ok(t) if t.as_slice() == [g.values[result].ty.clone()] => {
                        g.nodes[n].op = op;
                        g.nodes[n].args = new_args;
                        scaled += 1;
                    }
                    _ => continue,
                }
            }
            _ => {}
        }
    }
    if requant + scaled > 0 {
        rep.apply(g);
        remove_dead(g);
    }
    (requant, scaled)
}

impl Pass for FuseFp8 {
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, Failure> {
        let header = crate::fold_constants::header(m);
        let mut exact = HashMap::new();
        let (mut requant, mut scaled) = (0, 0);
        for_each_graph(m, &mut |g| {
            let (r, s) = fuse_graph(&header, g, &mut exact);
            requant += r;
            scaled += s;
        });
        cx.bump("requantizes-folded", requant);
        cx.bump("scaled-matmuls", scaled);
        Ok((requant + scaled > 0).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requantize_round_trip_holds_for_ordinary_scales_only() {
        for s in [1.0, 0.5, 1.0 / 448.0, 0.37, 3.0e-3, 1.7e5] {
            for via in [DType::F32, DType::BF16] {
                assert!(requantize_is_exact(DType::F8E4M3, via, s), "{s} via {via}");
            }
        }
        for s in [0.0, f32::INFINITY, f32::NAN, 1.0e37, 1.0e-44] {
            assert!(!requantize_is_exact(DType::F8E4M3, DType::F32, s), "{s}");
        }
        // 448·200 overflows f16; E5M2's ±∞ saturate on the way back.
        assert!(!requantize_is_exact(DType::F8E4M3, DType::F16, 200.0));
        assert!(!requantize_is_exact(DType::F8E5M2, DType::F32, 1.0));
    }
}
