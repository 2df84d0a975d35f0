//! `quantize-fp8` — fp8 linear layers (DESIGN §5), all in IR.
//!
//! Which matmuls: every linear layer — a `matmul %x, %w {transpose_b}` whose rhs is a rank-2
//! float module weight stored `[N = out, K = in]` — except the embedding and the LM head (weight
//! roles `embedding` and `lm_head`, so a tied head stays too) and except the blocks kept in high
//! precision: a block is a weight's `{block=i}` role, counted over the distinct indices the
//! module's weights hold; the first `keep-first` and the last `keep-last` of them stay as they
//! are, as Nemotron-H's FP8 recipe keeps its first and last 4 blocks in bf16. Names play no part.
//!
//! Rewrites (E = 448, the largest E4M3 value; F = 2^-126, the smallest positive normal f32):
//! - weight, per tensor: `s_w = max(amax(W) / E, F)`, `Wq = quantize(W, s_w) : f8e4m3[N, K]`;
//! - weight, per output channel: `s_w = max(cast(reduce_max(max(W, neg W), axis 1)) / E, F)`
//!   (`f32[N]`, each row's amax), `Wqt = quantize(transpose(W), s_w) : f8e4m3[K, N]`:
//!   quantize's scale runs along the last axis, so per-row scales need the transposed layout;
//! - W8A16: `matmul(x, W) {transpose_b} => matmul(x, dequantize(Wq, s_w) : dtype(x)) {transpose_b}`
//!   per tensor, and `=> matmul(x, dequantize(Wqt, s_w) : dtype(x))` per channel (the GEMV
//!   dequantizes in its prologue: decode is bound by weight bytes, which fp8 halves);
//! - W8A8: `s_x = max(amax(x) / E, F)` (dynamic, per tensor), `xq = quantize(x, s_x)`, and
//!   `matmul(x, W) {transpose_b} => scaled_matmul(xq, Wq, s_x, s_w) {transpose_b}` with the
//!   original result dtype; per channel `Wq = transpose(Wqt)`, the K-major `[N, K]` layout
//!   fp8 MMA needs.
//!
//! `auto` picks W8A16 where the matmul is decode-shaped ([`crate::strategy::is_gemv`]) and W8A8
//! elsewhere. The floor F keeps an all-zero tensor's scale from being 0 (0/0 = NaN): with it,
//! `|v| / s ≤ E` still holds for every element, so nothing saturates that should not.
//!
//! No weight data is read: the weight's amax, scale and fp8 tensor form a subgraph that depends
//! on the weight alone, which the artifact writer can evaluate at compile time to store fp8
//! bytes and their scales — up to the `quantize` and the scale, never through the W8A16
//! `dequantize`, which would store high-precision bytes again. One weight (and one activation)
//! is quantized once per function however many matmuls read it.
//!
//! Numerics change, by design: the error is the E4M3 rounding of each quantized operand,
//! relative step 2^-3 (see docs/passes.md for the bounds the tests hold it to).
//! Pre: a verified module, before the fusion passes (`--pipeline quantize-fp8,default`; matmuls
//! already inside fusion bodies are left alone). `fuse-ssd` keeps the fp8 ops of an `out_proj`
//! input out of the SSD groups, and `schedule-hybrid` moves each activation `amax` into the
//! group producing the activation.
//! Post: a verified module; `matmuls-quantized` and `matmuls-kept` count the linear layers.

use std::collections::{BTreeSet, HashMap};

use lathe_ir::infer::infer;
use lathe_ir::ops::{BinaryOp, Constant, Matmul, Reduce, ReduceKind, UnaryOp};
use lathe_ir::{DType, Graph, Module, Op, TensorType, ValueId, Weight, WeightId, WeightRole};

use crate::rewrite::{for_each_function, remove_dead};
use crate::strategy::is_gemv;
use crate::{Changed, Failure, OptionInfo, Options, Pass, PassContext, PassError, PassInfo, RewriteError, GRAPH_ONLY};

/// Registry entry.
pub const INFO: PassInfo = PassInfo {
    name: "quantize-fp8",
    summary: "fp8 linear layers: W8A16 for decode GEMVs, W8A8 for prefill GEMMs; first/last blocks kept",
    options: &[
        OptionInfo {
            name: "mode",
            default: "auto",
            help: "auto (w8a16 where the matmul is decode-shaped, w8a8 elsewhere), w8a16 or w8a8",
        },
        OptionInfo { name: "granularity", default: "tensor", help: "weight scales per tensor or per output channel" },
        OptionInfo { name: "keep-first", default: "4", help: "leading blocks left unquantized" },
        OptionInfo { name: "keep-last", default: "4", help: "trailing blocks left unquantized" },
        OptionInfo { name: "format", default: "e4m3", help: "fp8 format of weights and activations (e4m3)" },
    ],
    accepts: GRAPH_ONLY,
    sets: None,
    create: |o: &Options| Ok(Box::new(QuantizeFp8::from_options(o)?)),
};

/// The largest finite E4M3 magnitude: an amax maps onto it.
pub const E4M3_MAX: f64 = 448.0;

/// The floor of every scale: the smallest positive normal f32, 2^-126. An all-zero tensor gets
/// this scale instead of 0 (which would make `0/0 = NaN`); for any tensor whose amax is below
/// `448·2^-126` it keeps `|x|/s < 448`, and dequantized values stay exact products in f32.
pub const SCALE_FLOOR: f64 = 1.175_494_350_822_287_5e-38;

/// Which operands are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// W8A16 for decode-shaped matmuls, W8A8 for the others.
    Auto,
    /// fp8 weights, dequantized for a high-precision matmul.
    W8A16,
    /// fp8 weights and activations, `scaled_matmul`.
    W8A8,
}

/// How many scales a weight gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One `f32[]` scale.
    Tensor,
    /// One scale per output channel, `f32[N]`.
    Channel,
}

/// The pass.
#[derive(Debug, Clone)]
pub struct QuantizeFp8 {
    /// Which operands are quantized.
    pub mode: Mode,
    /// Weight scale granularity.
    pub granularity: Granularity,
    /// Leading blocks left unquantized.
    pub keep_first: usize,
    /// Trailing blocks left unquantized.
    pub keep_last: usize,
    /// The fp8 dtype (E4M3).
    pub format: DType,
}

impl QuantizeFp8 {
    /// Builds the pass from checked options.
    pub fn from_options(o: &Options) -> Result<Self, PassError> {
        let mode = o.choice(
            "mode",
            &[("auto", Mode::Auto), ("w8a16", Mode::W8A16), ("w8a8", Mode::W8A8)],
            "auto, w8a16 or w8a8",
        )?;
        let granularity = o.choice(
            "granularity",
            &[("tensor", Granularity::Tensor), ("channel", Granularity::Channel)],
            "tensor or channel",
        )?;
        let format = o.choice("format", &[("e4m3", DType::F8E4M3)], "supported (valid: e4m3)")?;
        Ok(QuantizeFp8 {
            mode,
            granularity,
            keep_first: o.usize("keep-first")?,
            keep_last: o.usize("keep-last")?,
            format,
        })
    }
}

/// The block index of a weight, from its role (`{block=i}`).
pub fn block_index(w: &Weight) -> Option<u64> {
    w.role.and_then(WeightRole::block).map(u64::from)
}

/// Whether a weight is the embedding table or the LM head (never quantized), by its role.
pub fn is_embedding_or_head(w: &Weight) -> bool {
    matches!(w.role, Some(WeightRole::Embedding | WeightRole::LmHead))
}

/// The blocks kept in high precision: the first `first` and last `last` of the distinct block
/// indices among the module's weights.
pub fn kept_blocks(m: &Module, first: usize, last: usize) -> BTreeSet<u64> {
    let blocks: Vec<u64> =
        m.weights.iter().filter_map(|(_, w)| block_index(w)).collect::<BTreeSet<_>>().into_iter().collect();
    let n = blocks.len();
    blocks.iter().enumerate().filter(|&(i, _)| i < first || i + last >= n).map(|(_, &b)| b).collect()
}

/// A weight's quantized forms in one graph.
#[derive(Debug, Clone, Copy)]
struct QWeight {
    /// `f32[]` or `f32[N]`.
    scale: ValueId,
    /// fp8 `[N, K]` (per tensor: quantized directly; per channel: transposed back, made lazily).
    q_nk: Option<ValueId>,
    /// fp8 `[K, N]` (per channel only).
    q_kn: Option<ValueId>,
}

/// Appends typed nodes to a graph whose order is being rebuilt (each new node lands right
/// before the node being rewritten), with caches so shared operands are quantized once.
struct Rewriter<'a> {
    m: &'a Module,
    g: &'a mut Graph,
    scalars: HashMap<u64, ValueId>,
    weights: HashMap<WeightId, QWeight>,
    acts: HashMap<ValueId, (ValueId, ValueId)>,
    dequantized: HashMap<(WeightId, DType), ValueId>,
}

impl Rewriter<'_> {
    fn push(&mut self, op: Op, args: &[ValueId]) -> Result<ValueId, RewriteError> {
        let types: Vec<TensorType> = args.iter().map(|&a| self.g.values[a].ty.clone()).collect();
        let refs: Vec<&TensorType> = types.iter().collect();
        let name = op.name();
        let mut out = infer(self.m, &op, &refs).map_err(|message| RewriteError::IllTyped { op: name, message })?;
        match (out.pop(), out.is_empty()) {
            (Some(t), true) => Ok(self.g.push_node(op, args.to_vec(), vec![t])[0]),
            _ => Err(RewriteError::Invariant("a quantization op has one result")),
        }
    }

    fn scalar(&mut self, v: f64) -> Result<ValueId, RewriteError> {
        if let Some(&c) = self.scalars.get(&v.to_bits()) {
            return Ok(c);
        }
        let c = self.push(Op::Constant(Constant { ty: TensorType::scalar(DType::F32), values: vec![v] }), &[])?;
        self.scalars.insert(v.to_bits(), c);
        Ok(c)
    }

    /// `max(a / 448, 2^-126)` for an amax `a` (`f32[]` or `f32[N]`).
    fn scale_of(&mut self, amax: ValueId) -> Result<ValueId, RewriteError> {
        let e = self.scalar(E4M3_MAX)?;
        let floor = self.scalar(SCALE_FLOOR)?;
        let d = self.push(Op::Binary(BinaryOp::Div), &[amax, e])?;
        self.push(Op::Binary(BinaryOp::Max), &[d, floor])
    }

    fn weight(&mut self, id: WeightId, w: ValueId, gran: Granularity, fmt: DType) -> Result<QWeight, RewriteError> {
        if let Some(q) = self.weights.get(&id) {
            return Ok(*q);
        }
        let q = match gran {
            Granularity::Tensor => {
                let a = self.push(Op::Amax, &[w])?;
                let scale = self.scale_of(a)?;
                let q = self.push(Op::Quantize(fmt), &[w, scale])?;
                QWeight { scale, q_nk: Some(q), q_kn: None }
            }
            Granularity::Channel => {
                // |W| = max(W, −W); each row's max is its output channel's amax.
                let neg = self.push(Op::Unary(UnaryOp::Neg), &[w])?;
                let abs = self.push(Op::Binary(BinaryOp::Max), &[w, neg])?;
                let rows =
                    self.push(Op::Reduce(Reduce { kind: ReduceKind::Max, axes: vec![1], keep_dims: false }), &[abs])?;
                let rows = if self.g.values[rows].ty.dtype == DType::F32 {
                    rows
                } else {
                    self.push(Op::Cast(DType::F32), &[rows])?
                };
                let scale = self.scale_of(rows)?;
                let wt = self.push(Op::Transpose(vec![1, 0]), &[w])?;
                let q = self.push(Op::Quantize(fmt), &[wt, scale])?;
                QWeight { scale, q_nk: None, q_kn: Some(q) }
            }
        };
        self.weights.insert(id, q);
        Ok(q)
    }

    /// The `[N, K]` fp8 weight (per channel: the transposed-back `[K, N]` one).
    fn weight_nk(&mut self, id: WeightId, q: QWeight) -> Result<ValueId, RewriteError> {
        match (q.q_nk, q.q_kn) {
            (Some(v), _) => Ok(v),
            (None, Some(kn)) => {
                let v = self.push(Op::Transpose(vec![1, 0]), &[kn])?;
                self.weights.insert(id, QWeight { q_nk: Some(v), ..q });
                Ok(v)
            }
            (None, None) => Err(RewriteError::Invariant("a quantized weight has data")),
        }
    }

    /// `(quantize(x, s_x), s_x)` with the dynamic per-tensor scale.
    fn activation(&mut self, x: ValueId, fmt: DType) -> Result<(ValueId, ValueId), RewriteError> {
        if let Some(&q) = self.acts.get(&x) {
            return Ok(q);
        }
        let a = self.push(Op::Amax, &[x])?;
        let s = self.scale_of(a)?;
        let q = self.push(Op::Quantize(fmt), &[x, s])?;
        self.acts.insert(x, (q, s));
        Ok((q, s))
    }
}

/// What to do with one matmul.
enum Plan {
    Skip,
    Keep,
    Quantize { id: WeightId, w: ValueId, w8a8: bool },
}

impl QuantizeFp8 {
    fn plan(&self, m: &Module, g: &Graph, node: &lathe_ir::Node, kept: &BTreeSet<u64>) -> Plan {
        let (Op::Matmul(mm), [x, w]) = (&node.op, node.args.as_slice()) else { return Plan::Skip };
        let Op::Weight(id) = g.nodes[g.values[*w].def].op else { return Plan::Skip };
        let Some(weight) = m.weights.get(id) else { return Plan::Skip };
        let wt = &weight.ty;
        if !mm.transpose_b || wt.rank() != 2 || !wt.dtype.is_float() || wt.dtype.is_fp8() {
            return Plan::Skip;
        }
        if is_embedding_or_head(weight) || block_index(weight).is_some_and(|b| kept.contains(&b)) {
            return Plan::Keep;
        }
        let w8a8 = match self.mode {
            Mode::W8A8 => true,
            Mode::W8A16 => false,
            Mode::Auto => !is_gemv(m, &g.values[*x].ty),
        };
        Plan::Quantize { id, w: *w, w8a8 }
    }

    /// Rewrites one function's graph; returns `(quantized, kept)`.
    fn rewrite(&self, m: &Module, g: &mut Graph, kept: &BTreeSet<u64>) -> Result<(u64, u64), RewriteError> {
        let old = std::mem::take(&mut g.order);
        let mut rw = Rewriter {
            m,
            g,
            scalars: HashMap::new(),
            weights: HashMap::new(),
            acts: HashMap::new(),
            dequantized: HashMap::new(),
        };
        let (mut quantized, mut kept_n) = (0, 0);
        for n in old {
            let plan = self.plan(m, rw.g, &rw.g.nodes[n], kept);
            if let Plan::Quantize { id, w, w8a8 } = plan {
                let Op::Matmul(mm) = rw.g.nodes[n].op else {
                    return Err(RewriteError::Invariant("only matmuls are quantized"));
                };
                let x = rw.g.nodes[n].args[0];
                let q = rw.weight(id, w, self.granularity, self.format)?;
                let (op, args) = if w8a8 {
                    let wq = rw.weight_nk(id, q)?;
                    let (xq, sx) = rw.activation(x, self.format)?;
                    (Op::ScaledMatmul(Matmul { transpose_b: true, ..mm }), vec![xq, wq, sx, q.scale])
                } else {
                    let dt = rw.g.values[x].ty.dtype;
                    // Per channel the fp8 weight is [K, N]: no transpose_b.
                    let (src, transpose_b) = match (q.q_nk, q.q_kn) {
                        (_, Some(kn)) => (kn, false),
                        (Some(nk), None) => (nk, true),
                        (None, None) => return Err(RewriteError::Invariant("a quantized weight has data")),
                    };
                    let wd = match rw.dequantized.get(&(id, dt)) {
                        Some(&v) => v,
                        None => {
                            let v = rw.push(Op::Dequantize(dt), &[src, q.scale])?;
                            rw.dequantized.insert((id, dt), v);
                            v
                        }
                    };
                    (Op::Matmul(Matmul { transpose_b, ..mm }), vec![x, wd])
                };
                let types: Vec<TensorType> = args.iter().map(|&a| rw.g.values[a].ty.clone()).collect();
                let refs: Vec<&TensorType> = types.iter().collect();
                let result =
                    rw.g.nodes[n].results.first().copied().ok_or(RewriteError::Invariant("a matmul has a result"))?;
                let want = infer(m, &op, &refs).map_err(|message| RewriteError::IllTyped { op: op.name(), message })?;
                if want.as_slice() != [rw.g.values[result].ty.clone()] {
                    return Err(RewriteError::TypeChanged { op: op.name() });
                }
                rw.g.nodes[n].op = op;
                rw.g.nodes[n].args = args;
                quantized += 1;
            } else if let Plan::Keep = plan {
                kept_n += 1;
            }
            rw.g.order.push(n);
        }
        if quantized > 0 {
            // Weight reads the quantized forms replaced (a second read of a cached weight).
            remove_dead(g);
        }
        Ok((quantized, kept_n))
    }
}

impl Pass for QuantizeFp8 {
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, Failure> {
        let header = crate::fold_constants::header(m);
        let kept = kept_blocks(&header, self.keep_first, self.keep_last);
        let (mut quantized, mut kept_n) = (0, 0);
        for_each_function(m, &mut |g| {
            let (q, k) = self.rewrite(&header, g, &kept)?;
            quantized += q;
            kept_n += k;
            Ok(())
        })
        .map_err(|(function, error)| Failure::Rewrite { function, error })?;
        cx.bump("matmuls-quantized", quantized);
        cx.bump("matmuls-kept", kept_n);
        Ok((quantized > 0).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_floor_is_the_smallest_normal_f32() {
        assert_eq!(SCALE_FLOOR as f32, f32::MIN_POSITIVE);
        assert_eq!(f64::from(f32::MIN_POSITIVE), SCALE_FLOOR);
    }
}
