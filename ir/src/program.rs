//! What programs are: function kinds, the roles of their parameters, outputs, symbols and
//! weights, and the module's stage.
//!
//! These facts are written in the IR (and its text) by whoever knows them — the frontend — and
//! read by passes, the planner, the cost model, the CLI and, later, the artifact writer and the
//! runtime. Nothing downstream recovers a role from a name: a function called `decode` is just
//! a name; `kind=decode` is what makes it the decode step.

use std::fmt;

/// What a function computes, for the tools that run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FunctionKind {
    /// Any graph (tests, hand-written IR): no contract beyond its types.
    #[default]
    Generic,
    /// Logits of every position, no caches: `tokens[B,S] → logits[B,S,V]`.
    Eval,
    /// Prefill or chunked extension: `tokens[B,S], past[B], caches… → logits[B,V], caches…`,
    /// each cache output updating its input in place.
    Extend,
    /// One token per sequence: `extend` with `S = 1`.
    Decode,
    /// Image tiles to embeddings (NVLM-D's vision encoder).
    Vision,
}

impl FunctionKind {
    /// Every kind, in text-name order.
    pub const ALL: [FunctionKind; 5] =
        [FunctionKind::Generic, FunctionKind::Eval, FunctionKind::Extend, FunctionKind::Decode, FunctionKind::Vision];

    /// Text name (`kind=decode`).
    pub fn name(self) -> &'static str {
        match self {
            FunctionKind::Generic => "generic",
            FunctionKind::Eval => "eval",
            FunctionKind::Extend => "extend",
            FunctionKind::Decode => "decode",
            FunctionKind::Vision => "vision",
        }
    }

    /// Parses a text name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether programs of this kind read and update caches.
    pub fn has_caches(self) -> bool {
        matches!(self, FunctionKind::Extend | FunctionKind::Decode)
    }
}

impl fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a symbol means to a function: the dimensions that change from one call (step) to the
/// next. Their bounds are the symbols' own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepSymbol {
    /// Sequences per call (`B`).
    Batch,
    /// Tokens per sequence and call (`S`; a prefill chunk `C`).
    Seq,
}

impl StepSymbol {
    /// Every step symbol, in header order.
    pub const ALL: [StepSymbol; 2] = [StepSymbol::Batch, StepSymbol::Seq];

    /// Text name (`batch=B`, `seq=S` in a function header).
    pub fn name(self) -> &'static str {
        match self {
            StepSymbol::Batch => "batch",
            StepSymbol::Seq => "seq",
        }
    }
}

/// Which cache an input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheKind {
    /// Attention keys `[B, T, Hkv, D]` (after RoPE).
    Key,
    /// Attention values `[B, T, Hkv, Dv]`.
    Value,
    /// The causal conv's last `W−1` inputs `[B, W−1, C]`.
    Conv,
    /// The SSM state `[B, H, P, N]`.
    Ssm,
}

impl CacheKind {
    /// Every kind.
    pub const ALL: [CacheKind; 4] = [CacheKind::Key, CacheKind::Value, CacheKind::Conv, CacheKind::Ssm];

    /// Text name of the role (`role=k_cache`).
    pub fn role_name(self) -> &'static str {
        match self {
            CacheKind::Key => "k_cache",
            CacheKind::Value => "v_cache",
            CacheKind::Conv => "conv_state",
            CacheKind::Ssm => "ssm_state",
        }
    }

    /// Whether the cache grows with the context (its axis 1 is the capacity in tokens).
    pub fn grows_with_context(self) -> bool {
        matches!(self, CacheKind::Key | CacheKind::Value)
    }
}

/// The role of a runtime argument of a function (`input "x" {role=…}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputRole {
    /// Token ids `[B, S]`.
    Tokens,
    /// Tokens already held in the caches per sequence, `i64[B]`.
    Past,
    /// Valid key/value rows per sequence, `i64[B]` (cross attention).
    KvLen,
    /// A cache of one layer.
    Cache {
        /// The layer (block) index.
        layer: u32,
        /// Which cache.
        kind: CacheKind,
    },
    /// Image tiles.
    Image,
    /// The sampler's Philox counter offset, `i64[]`.
    RngOffset,
}

impl InputRole {
    /// The text name of the role (`role=tokens`, `role=k_cache`).
    pub fn name(self) -> &'static str {
        match self {
            InputRole::Tokens => "tokens",
            InputRole::Past => "past",
            InputRole::KvLen => "kv_len",
            InputRole::Cache { kind, .. } => kind.role_name(),
            InputRole::Image => "image",
            InputRole::RngOffset => "rng_offset",
        }
    }

    /// Parses a role name; cache roles take their `layer` separately.
    pub fn from_name(s: &str, layer: Option<u32>) -> Option<Self> {
        if let Some(kind) = CacheKind::ALL.into_iter().find(|k| k.role_name() == s) {
            return layer.map(|layer| InputRole::Cache { layer, kind });
        }
        Some(match s {
            "tokens" => InputRole::Tokens,
            "past" => InputRole::Past,
            "kv_len" => InputRole::KvLen,
            "image" => InputRole::Image,
            "rng_offset" => InputRole::RngOffset,
            _ => return None,
        })
    }

    /// Every role name, for messages.
    pub const NAMES: [&'static str; 9] =
        ["tokens", "past", "kv_len", "k_cache", "v_cache", "conv_state", "ssm_state", "image", "rng_offset"];

    /// The cache this input is, if any.
    pub fn cache(self) -> Option<(u32, CacheKind)> {
        match self {
            InputRole::Cache { layer, kind } => Some((layer, kind)),
            _ => None,
        }
    }
}

/// The role of a function result (`return %v as "logits" {role=logits}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputRole {
    /// Logits `f32[B, V]` (the last position) or `f32[B, S, V]` (every position).
    Logits,
    /// Sampled token ids `i64[B]`.
    Token,
    /// Embeddings (a vision encoder's output).
    Embeddings,
}

impl OutputRole {
    /// Every role.
    pub const ALL: [OutputRole; 3] = [OutputRole::Logits, OutputRole::Token, OutputRole::Embeddings];

    /// Text name.
    pub fn name(self) -> &'static str {
        match self {
            OutputRole::Logits => "logits",
            OutputRole::Token => "token",
            OutputRole::Embeddings => "embeddings",
        }
    }

    /// Parses a text name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// What a weight is to the model (`weight @w : T = … {block=3}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightRole {
    /// A parameter of block (layer) `i` of the layer pattern.
    Block(u32),
    /// The token embedding table (also the LM head when tied).
    Embedding,
    /// The LM head.
    LmHead,
}

impl WeightRole {
    /// The block index, for block parameters.
    pub fn block(self) -> Option<u32> {
        match self {
            WeightRole::Block(i) => Some(i),
            _ => None,
        }
    }
}

/// How far a module has come through the pipeline. Each stage adds rules the verifier checks
/// (rustc's MIR phases are the model: the phase lives on the body and validation runs per phase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Stage {
    /// Any verified graph.
    #[default]
    Graph,
    /// Every computing node sits in one fusion group whose strategy accepts it (one group = one
    /// kernel, with the launches its strategy's rule gives).
    Scheduled,
    /// Scheduled, and every function has a valid memory plan (every value one location, no two
    /// live values overlapping, in-place updates sound).
    Planned,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 3] = [Stage::Graph, Stage::Scheduled, Stage::Planned];

    /// Text name (`stage = scheduled`).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Graph => "graph",
            Stage::Scheduled => "scheduled",
            Stage::Planned => "planned",
        }
    }

    /// Parses a text name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
