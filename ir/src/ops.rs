//! The closed op set of the graph IR.
//!
//! Each variant documents its typing rule (checked by [`crate::infer`]) and its reference
//! semantics (executed by [`crate::interp`]). Arithmetic inside every op is f32; results are
//! rounded to the result dtype (round-to-nearest-even; fp8 saturating). Text names come from
//! [`Op::name`], the one table behind printer, parser and `lathe ops`.

use crate::module::{Graph, WeightId};
use crate::types::{DType, Dim, TensorType};

/// One operation. See each variant for operands, attributes, typing and semantics.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `input "name" {role=r} : T` — a runtime argument of the graph. No operands; the result
    /// type is the declared `T`, whose symbols are bound from the argument's shape when the
    /// graph runs. The optional role says what the argument is (see [`crate::program`]).
    Input(Input),
    /// `weight @name : T` — reads a module weight; `T` equals the weight's declared type.
    Weight(WeightId),
    /// `constant V : T` — a constant with constant shape. `V` is one number (splat) or a list of
    /// exactly `numel(T)` numbers (row-major); values are rounded to `T`'s dtype and must fit it
    /// ([`crate::infer::literal_fits`]: integers in range, bool 0 or 1, floats that do not
    /// overflow): `constant 300 : i8[]` does not verify.
    Constant(Constant),
    /// `iota {axis=a} : T` — `out[i0, ..., in] = i_a` converted to `T`'s dtype (int or float).
    Iota(Iota),
    /// `matmul %a, %b {transpose_a, transpose_b} : T` — `a[..., M, K] · b[..., K, N]` (a stored
    /// `[..., K, M]` with `transpose_a`, b stored `[..., N, K]` with `transpose_b`). Batch dims
    /// are equal, or one operand is rank 2 and is shared by every batch. Operands are float
    /// (not fp8: see `scaled_matmul`); products accumulate in f32; the result dtype is `T`'s.
    Matmul(Matmul),
    /// `scaled_matmul %a, %b, %sa, %sb {transpose_a, transpose_b} : T` — fp8 `a`, `b` as in
    /// `matmul`, with dequant scales `sa: f32[]` (per tensor) and `sb: f32[]` or `f32[N]` (per
    /// output channel): `out = (a·sa) · (b·sb)`, accumulated in f32, rounded to `T`.
    ScaledMatmul(Matmul),
    /// `attention %q, %k, %v, %kv_len {mask=causal, scale=s}` — reads `q[B,S,Hq,D]`,
    /// `k[B,T,Hkv,D]`, `v[B,T,Hkv,Dv]` (a cache or fresh keys; `T` is not statically 0),
    /// `kv_len: i64[B]` valid kv rows;
    /// returns `[B,S,Hq,Dv]` in q's dtype. q head `h` uses kv head `h / (Hq/Hkv)`. Causal: with
    /// `past = kv_len − S`, query `i` sees keys `j ≤ past+i`; bidirectional and cross: keys
    /// `j < kv_len`. Scores `scale·q·k`, softmax in f32. Positions are not its business: q and
    /// k arrive rotated (`rope`), and caches hold keys after RoPE. Never writes a cache:
    /// `scatter_cache` does.
    Attention(Attention),
    /// `rope %x, %pos {theta=θ, scale=f}` — rotary position embedding, rotate-half convention:
    /// `x[B,S,H,D]` (D even), `pos: i64[B,S]` → x's type. With `f_i = θ^(−2i/D)` and
    /// `a = (pos/scale)·f_i` (f32), `out[i] = x[i]·cos a − x[i+D/2]·sin a` and
    /// `out[i+D/2] = x[i+D/2]·cos a + x[i]·sin a` for `i < D/2`.
    Rope(RopeAttrs),
    /// `%y, %state = scan.ssd %x, %dt, %A, %B, %C, %state0 {chunk=c}` — the Mamba-2 SSD scan.
    /// `x[B,S,H,P]`, `dt[B,S,H]` (already biased, softplus'd and clamped: positive), `A[H]`
    /// (already `−exp(A_log)`: negative), `B, C [B,S,G,N]`, `state0[B,H,P,N]`; head `h` uses
    /// group `h / (H/G)`. `state_t = exp(dt_t·A_h)·state_{t−1} + dt_t·(x_t ⊗ B_t)`,
    /// `y_t = state_t · C_t`. Results: `y` in x's dtype, the final state in state0's dtype. No D
    /// skip, no gate. `chunk` is a lowering hint, never semantics.
    ScanSsd(ScanSsd),
    /// `%y, %state = conv1d.causal %x, %w, %b, %state0` — depthwise causal convolution,
    /// `x[B,S,C]`, `w[C,W]`, `b[C]`, `state0[B,W−1,C]` = the last `W−1` inputs before `x`.
    /// With `xx = concat(state0, x)` over time: `y[t,c] = b[c] + Σ_k w[c,k]·xx[t+k,c]`; the new
    /// state is the last `W−1` rows of `xx`.
    Conv1dCausal,
    /// `conv2d.patch %x, %w, %b {patch=p}` — ViT patchify: `x[B,C,H,W]`, `w[O,C,p,p]`, `b[O]`
    /// → `[B, (H/p)·(W/p), O]`, patches in row-major order; a stride-`p` convolution.
    Conv2dPatch(Conv2dPatch),
    /// Elementwise unary math on floats (`neg` also on ints); result type = operand type.
    Unary(UnaryOp),
    /// Elementwise binary math with numpy broadcasting; operands share a dtype.
    Binary(BinaryOp),
    /// `clamp %x {min=a, max=b}` — `min(max(x, a), b)`; either bound may be absent.
    Clamp(Clamp),
    /// `where %cond, %a, %b` — `cond ? a : b` with numpy broadcasting; cond is bool.
    Where,
    /// `cast %x : T` — converts to `T`'s dtype (floats round to nearest even, fp8 saturates,
    /// float→int truncates toward zero and saturates, NaN→0).
    Cast(DType),
    /// `reduce %x {kind=sum|max|mean, axes=[..], keep_dims}` — reduces the listed axes in f32.
    /// A sum over an empty axis is 0; a max or a mean over an axis that is statically empty is
    /// undefined and does not verify.
    Reduce(Reduce),
    /// `softmax %x {axis=a}` — numerically stable softmax along `axis`, f32 inside; the axis is
    /// not statically empty.
    Softmax(Softmax),
    /// `rms_norm %x, %w [, %z] {eps=e, groups=g}` — per row of the last axis `D`, split into `g`
    /// contiguous groups: with a gate `z` (Mamba-2's gated norm) `x ← x·silu(z)` first, then
    /// `x_g / sqrt(mean(x_g²) + e)`, times `w[D]`.
    RmsNorm(Norm),
    /// `layer_norm %x, %w, %b {eps=e}` — `(x − mean)/sqrt(var + e)·w + b` over the last axis.
    /// Both norms need a last axis of at least one element.
    LayerNorm(Norm),
    /// `reshape %x : T` — same elements, row-major, new shape `T` (same count; constant factors
    /// multiply to the same number and the same symbols appear on both sides).
    Reshape(Vec<Dim>),
    /// `transpose %x {perm=[..]}` — `out.shape[i] = x.shape[perm[i]]`.
    Transpose(Vec<usize>),
    /// `slice %x {axis=a, start=s, end=e}` — rows `[s, e)` of `axis`; negative `s`/`e` count
    /// from the end, an absent `end` means the end.
    Slice(Slice),
    /// `split %x {axis=a, sizes=[..]}` — consecutive pieces of a constant axis; one result each.
    Split(Split),
    /// `concat %a, %b, ... {axis=a}` — joins along `axis`.
    Concat(usize),
    /// `broadcast %x : T` — numpy broadcasting of `x` to `T`'s shape.
    Broadcast(Vec<Dim>),
    /// `gather %table, %idx` — `table[V, ...]`, integer `idx[...]` → `idx.shape ++ table.shape[1..]`
    /// (embedding lookup); an index outside `[0, V)` is a run-time error.
    Gather,
    /// `pixel_shuffle %x {factor=r}` — `x[B,H,W,C]` → `[B,H/r,W/r,C·r²]` with
    /// `out[b,i,j,(di·r+dj)·C+c] = x[b, r·i+di, r·j+dj, c]` (InternVL's downsample, v2 order).
    PixelShuffle(u64),
    /// `scatter_cache %cache, %new, %past` — the only op that writes a cache: `cache[B,T,...]`,
    /// `new[B,S,...]`, `past: i64[B]`; returns the cache with rows `[past, past+S)` replaced by
    /// `new`. Rows past the capacity `T` are a run-time error.
    ScatterCache,
    /// `amax %x` — `max |x|` over all elements as `f32[]` (0 for an empty tensor).
    Amax,
    /// `quantize %x, %scale : T` — fp8 `T`: `round_sat(x / scale)`; `scale` is a dequant scale,
    /// `f32[]` or `f32[last dim]`.
    Quantize(DType),
    /// `dequantize %q, %scale : T` — `q · scale` rounded to float `T`; scale as in `quantize`.
    Dequantize(DType),
    /// `fusion %a, ... {strategy=s} { body } : T...` — a region whose body graph runs on the
    /// operands (its `input` nodes take them in order) and whose results are the body's
    /// outputs; one group = one kernel launch with strategy `s`. Bodies nest at most
    /// [`crate::limits::MAX_FUSION_DEPTH`] deep.
    Fusion(Box<Fusion>),
    /// `sample %logits, %offset {seed, temperature, top_k, top_p}` — `logits[B,V]`, `offset: i64[]`
    /// → token ids `i64[B]`, `V` not statically 0 (a draw from no tokens is undefined).
    /// Temperature 0 is argmax; otherwise top-k, then top-p filtering and
    /// a draw with the uniform from Philox4x32-10 (key = seed, counter = [offset, row]).
    Sample(Sample),
}

/// Attributes of `input`.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// Argument name, unique within the graph.
    pub name: String,
    /// Declared type (may contain symbols).
    pub ty: TensorType,
    /// What the argument is to the program (tokens, a cache, ...), when it is one of those.
    pub role: Option<crate::program::InputRole>,
}

/// Attributes of `constant`.
#[derive(Debug, Clone, PartialEq)]
pub struct Constant {
    /// Declared type; constant dims only.
    pub ty: TensorType,
    /// The values: one (splat) or `numel` of them.
    pub values: Vec<f64>,
}

/// Attributes of `iota`.
#[derive(Debug, Clone, PartialEq)]
pub struct Iota {
    /// The axis whose index is written.
    pub axis: usize,
    /// Declared type.
    pub ty: TensorType,
}

/// Attributes of `matmul` and `scaled_matmul`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matmul {
    /// `a` is stored with its last two axes swapped.
    pub transpose_a: bool,
    /// `b` is stored with its last two axes swapped (the `[out, in]` layout of linear weights).
    pub transpose_b: bool,
    /// Result dtype.
    pub out: DType,
}

/// Which keys a query may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// Query `i` sees keys `j <= past + i`.
    Causal,
    /// All valid keys of the same sequence.
    Bidirectional,
    /// All valid keys of another sequence (encoder states).
    Cross,
}

impl MaskKind {
    /// Text name.
    pub fn name(self) -> &'static str {
        match self {
            MaskKind::Causal => "causal",
            MaskKind::Bidirectional => "bidirectional",
            MaskKind::Cross => "cross",
        }
    }
    /// Every mask kind.
    pub const ALL: [MaskKind; 3] = [MaskKind::Causal, MaskKind::Bidirectional, MaskKind::Cross];
}

/// Attributes of `attention`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    /// Mask kind.
    pub mask: MaskKind,
    /// Softmax scale (usually `1/sqrt(D)`).
    pub scale: f64,
}

/// Attributes of `rope`: rotary position embedding over the whole head (rotate-half).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeAttrs {
    /// Base θ of the inverse frequencies `θ^(−2i/D)`.
    pub theta: f64,
    /// Linear position scaling: position `p` is used as `p / scale`.
    pub scale: f64,
}

/// Attributes of `scan.ssd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanSsd {
    /// Chunk length hint for the chunked lowering.
    pub chunk: u64,
}

/// Attributes of `conv2d.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dPatch {
    /// Patch size (kernel = stride).
    pub patch: u64,
}

/// Approximation used by `gelu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeluApprox {
    /// `0.5·x·(1 + erf(x/√2))`.
    Erf,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    Tanh,
}

/// Elementwise unary ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-x`.
    Neg,
    /// `e^x`.
    Exp,
    /// `ln x`.
    Log,
    /// `√x`.
    Sqrt,
    /// `1/√x`.
    Rsqrt,
    /// `x·sigmoid(x)`.
    Silu,
    /// Gaussian error linear unit.
    Gelu(GeluApprox),
    /// `max(x, 0)`.
    Relu,
    /// `x²`.
    Square,
    /// `1/(1+e^−x)`.
    Sigmoid,
    /// `ln(1+e^x)`, and `x` above 20.
    Softplus,
    /// `tanh x`.
    Tanh,
}

impl UnaryOp {
    /// Every unary op (gelu once per approximation).
    pub const ALL: [UnaryOp; 13] = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Silu,
        UnaryOp::Gelu(GeluApprox::Tanh),
        UnaryOp::Gelu(GeluApprox::Erf),
        UnaryOp::Relu,
        UnaryOp::Square,
        UnaryOp::Sigmoid,
        UnaryOp::Softplus,
        UnaryOp::Tanh,
    ];

    /// Text name.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Silu => "silu",
            UnaryOp::Gelu(_) => "gelu",
            UnaryOp::Relu => "relu",
            UnaryOp::Square => "square",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Softplus => "softplus",
            UnaryOp::Tanh => "tanh",
        }
    }
}

/// Elementwise binary ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a − b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a / b` (floats only).
    Div,
    /// `max(a, b)`.
    Max,
    /// `min(a, b)`.
    Min,
}

impl BinaryOp {
    /// Every binary op.
    pub const ALL: [BinaryOp; 6] =
        [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min];

    /// Text name.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
        }
    }
}

/// Attributes of `clamp`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clamp {
    /// Lower bound.
    pub min: Option<f64>,
    /// Upper bound.
    pub max: Option<f64>,
}

/// Reduction kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceKind {
    /// Sum.
    Sum,
    /// Maximum.
    Max,
    /// Arithmetic mean.
    Mean,
}

impl ReduceKind {
    /// Text name.
    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "sum",
            ReduceKind::Max => "max",
            ReduceKind::Mean => "mean",
        }
    }
    /// Every kind.
    pub const ALL: [ReduceKind; 3] = [ReduceKind::Sum, ReduceKind::Max, ReduceKind::Mean];
}

/// Attributes of `reduce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reduce {
    /// What to compute.
    pub kind: ReduceKind,
    /// Axes reduced, strictly increasing.
    pub axes: Vec<usize>,
    /// Keep reduced axes as size 1.
    pub keep_dims: bool,
}

/// Attributes of `softmax`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Softmax {
    /// The normalized axis.
    pub axis: usize,
}

/// Attributes of `rms_norm` and `layer_norm`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norm {
    /// Added to the variance.
    pub eps: f64,
    /// Number of contiguous groups of the last axis normalized separately (1 for layer_norm).
    pub groups: u64,
}

/// Attributes of `slice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    /// Sliced axis.
    pub axis: usize,
    /// First row (negative: from the end).
    pub start: i64,
    /// One past the last row (negative: from the end; `None`: the end).
    pub end: Option<i64>,
}

/// Attributes of `split`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Split axis (constant size).
    pub axis: usize,
    /// Piece sizes, summing to the axis size.
    pub sizes: Vec<u64>,
}

/// Attributes of `sample`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Philox key.
    pub seed: u64,
    /// Logits are divided by it; 0 means argmax.
    pub temperature: f64,
    /// Keep only the k most likely tokens.
    pub top_k: Option<u64>,
    /// Keep the smallest set whose probability reaches p.
    pub top_p: Option<f64>,
}

/// A fused region.
#[derive(Debug, Clone, PartialEq)]
pub struct Fusion {
    /// How the group is lowered (one launch).
    pub strategy: KernelStrategy,
    /// The subgraph; its `input` nodes take the fusion's operands in order.
    pub body: Graph,
}

/// How a fusion group becomes one kernel: the closed set of codegen templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelStrategy {
    /// Elementwise ops (with broadcasting) over one iteration space.
    Elementwise,
    /// Row-wise reductions and norms with their elementwise neighbours.
    RowReduce,
    /// The depthwise causal convolution with its activation.
    Conv1dCausal,
    /// SSD prefill: the chunked scan (its launches: per-chunk states, the state passing
    /// between chunks, then per-chunk outputs with D skip, gate and norm where fused).
    SsdChunkScan,
    /// SSD decode: one recurrence step.
    SsdDecodeStep,
    /// Attention over many queries.
    AttentionPrefill,
    /// Attention for one query per sequence.
    AttentionDecode,
    /// Tensor-core matrix multiply with fused prologue/epilogue (also the ViT patch embedding,
    /// an implicit GEMM).
    Gemm,
    /// Matrix-vector multiply (decode), weight-bandwidth bound.
    Gemv,
    /// Embedding lookup.
    Gather,
    /// Token sampling.
    Sample,
    /// Cache writes.
    ScatterCache,
}

impl KernelStrategy {
    /// Every strategy.
    pub const ALL: [KernelStrategy; 12] = [
        KernelStrategy::Elementwise,
        KernelStrategy::RowReduce,
        KernelStrategy::Conv1dCausal,
        KernelStrategy::SsdChunkScan,
        KernelStrategy::SsdDecodeStep,
        KernelStrategy::AttentionPrefill,
        KernelStrategy::AttentionDecode,
        KernelStrategy::Gemm,
        KernelStrategy::Gemv,
        KernelStrategy::Gather,
        KernelStrategy::Sample,
        KernelStrategy::ScatterCache,
    ];

    /// Text name.
    pub fn name(self) -> &'static str {
        match self {
            KernelStrategy::Elementwise => "elementwise",
            KernelStrategy::RowReduce => "row_reduce",
            KernelStrategy::Conv1dCausal => "conv1d_causal",
            KernelStrategy::SsdChunkScan => "ssd_chunk_scan",
            KernelStrategy::SsdDecodeStep => "ssd_decode_step",
            KernelStrategy::AttentionPrefill => "attention_prefill",
            KernelStrategy::AttentionDecode => "attention_decode",
            KernelStrategy::Gemm => "gemm",
            KernelStrategy::Gemv => "gemv",
            KernelStrategy::Gather => "gather",
            KernelStrategy::Sample => "sample",
            KernelStrategy::ScatterCache => "scatter_cache",
        }
    }

    /// Parses a text name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Whether two floats have the same bits (`0.0` and `-0.0` differ; a NaN equals itself).
fn same_bits(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits()
}

/// [`same_bits`] of optional floats.
fn same_opt_bits(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => same_bits(x, y),
        (None, None) => true,
        _ => false,
    }
}

impl Op {
    /// Whether `self` and `other` are the same op with the same attributes, floats compared by
    /// their bits: `constant 0.0` and `constant -0.0` differ (they print and compute differently)
    /// and a NaN attribute equals itself. This is the equality under which two nodes on the same
    /// operands compute bit-identical results (what `cse` merges by); `==` compares floats as
    /// numbers.
    pub fn same(&self, other: &Op) -> bool {
        match (self, other) {
            (Op::Constant(a), Op::Constant(b)) => {
                a.ty == b.ty
                    && a.values.len() == b.values.len()
                    && a.values.iter().zip(&b.values).all(|(x, y)| same_bits(*x, *y))
            }
            (Op::Attention(a), Op::Attention(b)) => a.mask == b.mask && same_bits(a.scale, b.scale),
            (Op::Rope(a), Op::Rope(b)) => same_bits(a.theta, b.theta) && same_bits(a.scale, b.scale),
            (Op::Clamp(a), Op::Clamp(b)) => same_opt_bits(a.min, b.min) && same_opt_bits(a.max, b.max),
            (Op::RmsNorm(a), Op::RmsNorm(b)) | (Op::LayerNorm(a), Op::LayerNorm(b)) => {
                same_bits(a.eps, b.eps) && a.groups == b.groups
            }
            (Op::Sample(a), Op::Sample(b)) => {
                a.seed == b.seed
                    && same_bits(a.temperature, b.temperature)
                    && a.top_k == b.top_k
                    && same_opt_bits(a.top_p, b.top_p)
            }
            (Op::Fusion(a), Op::Fusion(b)) => a.strategy == b.strategy && a.body.same(&b.body),
            // The other ops have no float attributes: `==` is bitwise.
            _ => self == other,
        }
    }

    /// The text name of the op (`scan.ssd`, `rms_norm`, `add`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input(_) => "input",
            Op::Weight(_) => "weight",
            Op::Constant(_) => "constant",
            Op::Iota(_) => "iota",
            Op::Matmul(_) => "matmul",
            Op::ScaledMatmul(_) => "scaled_matmul",
            Op::Attention(_) => "attention",
            Op::Rope(_) => "rope",
            Op::ScanSsd(_) => "scan.ssd",
            Op::Conv1dCausal => "conv1d.causal",
            Op::Conv2dPatch(_) => "conv2d.patch",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Clamp(_) => "clamp",
            Op::Where => "where",
            Op::Cast(_) => "cast",
            Op::Reduce(_) => "reduce",
            Op::Softmax(_) => "softmax",
            Op::RmsNorm(_) => "rms_norm",
            Op::LayerNorm(_) => "layer_norm",
            Op::Reshape(_) => "reshape",
            Op::Transpose(_) => "transpose",
            Op::Slice(_) => "slice",
            Op::Split(_) => "split",
            Op::Concat(_) => "concat",
            Op::Broadcast(_) => "broadcast",
            Op::Gather => "gather",
            Op::PixelShuffle(_) => "pixel_shuffle",
            Op::ScatterCache => "scatter_cache",
            Op::Amax => "amax",
            Op::Quantize(_) => "quantize",
            Op::Dequantize(_) => "dequantize",
            Op::Fusion(_) => "fusion",
            Op::Sample(_) => "sample",
        }
    }

    /// Number of operands the op takes, as `(min, max)`; `max = None` is unbounded.
    pub fn arity(&self) -> (usize, Option<usize>) {
        match self {
            Op::Input(_) | Op::Weight(_) | Op::Constant(_) | Op::Iota(_) => (0, Some(0)),
            Op::Unary(_) | Op::Clamp(_) | Op::Cast(_) | Op::Reduce(_) | Op::Softmax(_) => (1, Some(1)),
            Op::Reshape(_) | Op::Transpose(_) | Op::Slice(_) | Op::Split(_) | Op::Broadcast(_) => (1, Some(1)),
            Op::PixelShuffle(_) | Op::Amax => (1, Some(1)),
            Op::Binary(_) | Op::Gather | Op::Quantize(_) | Op::Dequantize(_) | Op::Sample(_) => (2, Some(2)),
            Op::Rope(_) => (2, Some(2)),
            Op::Matmul(_) => (2, Some(2)),
            Op::Where | Op::ScatterCache | Op::LayerNorm(_) | Op::Conv2dPatch(_) => (3, Some(3)),
            Op::RmsNorm(_) => (2, Some(3)),
            Op::ScaledMatmul(_) | Op::Attention(_) | Op::Conv1dCausal => (4, Some(4)),
            Op::ScanSsd(_) => (6, Some(6)),
            Op::Concat(_) => (1, None),
            Op::Fusion(_) => (0, None),
        }
    }

    /// Whether the op is a pure elementwise map of its operands (with broadcasting).
    pub fn is_elementwise(&self) -> bool {
        matches!(self, Op::Unary(_) | Op::Binary(_) | Op::Clamp(_) | Op::Where | Op::Cast(_))
    }
}
