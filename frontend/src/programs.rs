//! The programs every language model gets (DESIGN §3) and the pieces the families share.
//!
//! - `eval(tokens[B,S]) → logits[B,S,V]`: every position, no caches (the parity program).
//! - `extend(tokens[B,S], past[B], caches…) → (logits[B,V], caches…)`: the last position's
//!   logits; fixed-capacity caches are written by `scatter_cache` (KV) or replaced (conv and SSM
//!   states). Prefill is `extend` at `past = 0`.
//! - `decode`: `extend` specialized to `S = 1`.
//!
//! Every program says what it is (DESIGN §3): its kind, its step symbols (`batch=B, seq=S`),
//! the role of each input (`tokens`, `past`, and the caches with their layer and kind), the
//! `logits` result, and for each cache result the input it updates in place. Caches are also
//! named `layers.{i}.{k_cache,v_cache,conv_state,ssm_state}` for people; tools read the roles.
//! The SSM state is f32 (as the reference implementations keep it); KV and conv state use the
//! module's compute dtype.

use lathe_ir::ops::{Attention, MaskKind, Op, RopeAttrs};
use lathe_ir::{CacheKind, DType, Dim, FunctionKind, InputRole, OutputRole, StepSymbol, TensorType, ValueId};

use crate::graph::{Ctx, R};

/// Which program to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// Logits of every position, no caches.
    Eval,
    /// Prefill / chunked extension with caches.
    Extend,
    /// One token with caches.
    Decode,
}

impl Program {
    /// Every program, in module order.
    pub const ALL: [Program; 3] = [Program::Eval, Program::Extend, Program::Decode];

    /// Function name.
    pub fn name(self) -> &'static str {
        match self {
            Program::Eval => "eval",
            Program::Extend => "extend",
            Program::Decode => "decode",
        }
    }

    /// Whether the program reads and writes caches.
    pub fn has_caches(self) -> bool {
        self != Program::Eval
    }

    /// The function kind the program declares.
    pub fn kind(self) -> FunctionKind {
        match self {
            Program::Eval => FunctionKind::Eval,
            Program::Extend => FunctionKind::Extend,
            Program::Decode => FunctionKind::Decode,
        }
    }

    /// Whether logits of every position are returned.
    pub fn all_positions(self) -> bool {
        self == Program::Eval
    }

    /// The sequence dimension: the `S` symbol, or 1 for decode.
    pub fn seq_dim(self, shapes: &Shapes) -> Dim {
        if self == Program::Decode {
            Dim::Const(1)
        } else {
            shapes.seq
        }
    }
}

/// The dynamic dimensions and cache policy of a module.
#[derive(Debug, Clone, Copy)]
pub struct Shapes {
    /// Batch symbol `B`.
    pub batch: Dim,
    /// Sequence symbol `S`.
    pub seq: Dim,
    /// Cache capacity (tokens per sequence).
    pub capacity: u64,
}

impl Shapes {
    /// Dtype of the conv state cache for a given compute dtype.
    pub fn conv_state_dtype(&self, compute: DType) -> DType {
        compute
    }
}

/// A cache a program reads and returns updated: its input and the value that replaces it.
#[derive(Debug, Clone)]
pub struct CacheUpdate {
    /// Name of the input and of the result.
    pub name: String,
    /// The `input` value (role `k_cache`, ... with its layer).
    pub input: ValueId,
    /// The updated cache.
    pub value: ValueId,
}

/// Declares the cache input of `layer` of kind `kind` and type `ty`, named for people.
pub fn cache_input(cx: &mut Ctx<'_>, layer: usize, kind: CacheKind, ty: TensorType) -> R<(String, ValueId)> {
    let name = format!("layers.{layer}.{}", kind.role_name());
    let v = cx.b.input_with_role(&name, ty, InputRole::Cache { layer: layer as u32, kind })?;
    Ok((name, v))
}

/// Shape of one attention block.
#[derive(Debug, Clone, Copy)]
pub struct AttentionSpec {
    /// Query heads.
    pub q_heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head size.
    pub head_dim: usize,
    /// Whether q/k/v have biases.
    pub bias: bool,
    /// Whether o_proj has a bias.
    pub out_bias: bool,
    /// Rotary embedding of q and k, if any.
    pub rope: Option<RopeAttrs>,
}

/// Causal GQA self-attention `o_proj(attention(q_proj x, k_proj x, v_proj x))` with weights
/// under `p` (`{p}.q_proj.weight`, ...). With RoPE, q and the new k are rotated at their
/// positions first, so caches hold keys after RoPE (as vLLM and TensorRT-LLM keep them) and no
/// step re-rotates the cache; with caches, K and V are then scattered into `{cache}.k_cache` /
/// `{cache}.v_cache` at `past`.
#[allow(clippy::too_many_arguments)]
pub fn gqa_attention(
    cx: &mut Ctx<'_>,
    x: ValueId,
    p: &str,
    layer: usize,
    spec: &AttentionSpec,
    b: Dim,
    s: Dim,
    past: Option<ValueId>,
    program: Program,
    shapes: &Shapes,
    caches: &mut Vec<CacheUpdate>,
) -> R<ValueId> {
    let c = |v: usize| Dim::Const(v as u64);
    let (hq, hkv, d) = (spec.q_heads, spec.kv_heads, spec.head_dim);
    let q = cx.linear(x, &format!("{p}.q_proj"), spec.bias)?;
    let q = cx.reshape(q, vec![b, s, c(hq), c(d)])?;
    let k = cx.linear(x, &format!("{p}.k_proj"), spec.bias)?;
    let k = cx.reshape(k, vec![b, s, c(hkv), c(d)])?;
    let v = cx.linear(x, &format!("{p}.v_proj"), spec.bias)?;
    let v = cx.reshape(v, vec![b, s, c(hkv), c(d)])?;
    let (q, k) = match spec.rope {
        Some(r) => {
            let pos = cx.positions(b, s, past)?;
            (cx.b.push1(Op::Rope(r), &[q, pos])?, cx.b.push1(Op::Rope(r), &[k, pos])?)
        }
        None => (q, k),
    };
    let seq = cx.seq_len(b, s)?;
    let (k, v, kv_len) = match past {
        Some(past) if program.has_caches() => {
            let ty = TensorType::new(cx.dt, [b, Dim::Const(shapes.capacity), c(hkv), c(d)]);
            let (kn, ki) = cache_input(cx, layer, CacheKind::Key, ty.clone())?;
            let (vn, vi) = cache_input(cx, layer, CacheKind::Value, ty)?;
            let kc = cx.b.push1(Op::ScatterCache, &[ki, k, past])?;
            let vc = cx.b.push1(Op::ScatterCache, &[vi, v, past])?;
            caches.push(CacheUpdate { name: kn, input: ki, value: kc });
            caches.push(CacheUpdate { name: vn, input: vi, value: vc });
            let len = cx.binary(lathe_ir::ops::BinaryOp::Add, past, seq)?;
            (kc, vc, len)
        }
        _ => (k, v, seq),
    };
    let attn = Attention { mask: MaskKind::Causal, scale: 1.0 / (d as f64).sqrt() };
    let o = cx.b.push1(Op::Attention(attn), &[q, k, v, kv_len])?;
    let o = cx.reshape(o, vec![b, s, c(hq * d)])?;
    cx.linear(o, &format!("{p}.o_proj"), spec.out_bias)
}

/// The start every language-model program shares: `tokens` (and `past` with caches) inputs and
/// the embedding lookup in the compute dtype. Returns the hidden state and `past`.
pub fn begin(cx: &mut Ctx<'_>, program: Program, shapes: &Shapes, embedding: &str) -> R<(ValueId, Option<ValueId>)> {
    let (b, s) = (shapes.batch, program.seq_dim(shapes));
    let tokens = cx.b.input_with_role("tokens", TensorType::new(DType::I64, [b, s]), InputRole::Tokens)?;
    let past = if program.has_caches() {
        Some(cx.b.input_with_role("past", TensorType::new(DType::I64, [b]), InputRole::Past)?)
    } else {
        None
    };
    let emb = cx.weight_raw(embedding)?;
    let x = cx.b.push1(Op::Gather, &[emb, tokens])?;
    Ok((cx.cast(x, cx.dt)?, past))
}

/// The end every language-model program shares: the last position only (unless `eval`), the
/// final RMSNorm `norm`, the LM head `head` (a `[vocab, hidden]` linear), f32 logits (role
/// `logits`), then the caches as results updating their inputs; the function's kind and step
/// symbols.
#[allow(clippy::too_many_arguments)]
pub fn finish(
    mut cx: Ctx<'_>,
    mut h: ValueId,
    program: Program,
    shapes: &Shapes,
    norm: &str,
    eps: f64,
    head: &str,
    vocab: usize,
    caches: Vec<CacheUpdate>,
) -> R<lathe_ir::Function> {
    if !program.all_positions() {
        h = cx.b.push1(Op::Slice(lathe_ir::ops::Slice { axis: 1, start: -1, end: None }), &[h])?;
    }
    let hn = cx.rms_norm(h, norm, eps, 1, None)?;
    let logits = cx.linear(hn, head, false)?;
    let mut logits = cx.cast(logits, DType::F32)?;
    if !program.all_positions() {
        logits = cx.reshape(logits, vec![shapes.batch, Dim::Const(vocab as u64)])?;
    }
    cx.b.output_with("logits", logits, Some(OutputRole::Logits), None);
    for c in caches {
        cx.b.output_with(&c.name, c.value, None, Some(c.input));
    }
    let mut f = cx.b.finish(program.name());
    f.kind = program.kind();
    for (role, d) in [(StepSymbol::Batch, shapes.batch), (StepSymbol::Seq, program.seq_dim(shapes))] {
        if let Dim::Sym(sym) = d {
            f.step_symbols.push((role, sym));
        }
    }
    Ok(f)
}
