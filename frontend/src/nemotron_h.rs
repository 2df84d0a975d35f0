//! Nemotron-H (`model_type: nemotron_h`): hybrid Mamba-2 / attention / relu² MLP stacks.
//!
//! This file resolves the configuration (with every alias seen in published checkpoints) and
//! lists the tensors a checkpoint must hold, with their shapes. The graph builder that emits the
//! `extend`/`decode`/`eval` programs comes next (issue L2) and reads the same
//! [`NemotronHConfig`].
//!
//! Facts (from the reference implementations): the Mamba mixer width is
//! `mamba_num_heads · mamba_head_dim` (not `expand · hidden_size`); `in_proj` packs
//! `[z | x | B | C | dt]`; the conv runs over `[x | B | C]`; attention has no position
//! embedding; the MLP is `down(relu(up(x))²)` without a gate.

use lathe_ir::limits::{MAX_CONTEXT, MAX_LAYERS, MAX_VOCAB};
use lathe_ir::WeightRole;

use crate::config::Config;
use crate::{FrontendError, TensorSpec};

/// One layer of the hybrid pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// `M`: Mamba-2 mixer.
    Mamba,
    /// `*`: GQA self-attention without position embedding.
    Attention,
    /// `-`: relu² MLP.
    Mlp,
    /// `E`: mixture of experts (Nemotron 3); recognized so that it can be refused clearly.
    Moe,
}

/// The resolved configuration of a Nemotron-H checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct NemotronHConfig {
    /// Model width.
    pub hidden_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// One entry per layer.
    pub pattern: Vec<BlockKind>,
    /// Query heads of attention layers.
    pub num_attention_heads: usize,
    /// Key/value heads of attention layers.
    pub num_key_value_heads: usize,
    /// Attention head size.
    pub head_dim: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Mamba heads H.
    pub mamba_num_heads: usize,
    /// Mamba head size P.
    pub mamba_head_dim: usize,
    /// B/C groups G.
    pub n_groups: usize,
    /// SSM state size N.
    pub ssm_state_size: usize,
    /// Causal conv width W.
    pub conv_kernel: usize,
    /// SSD chunk length hint.
    pub chunk_size: usize,
    /// RMSNorm epsilon.
    pub eps: f64,
    /// dt clamp `(min, max)` applied after softplus; `(0, inf)` is no clamp.
    pub time_step_limit: (f64, f64),
    /// Whether the LM head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether the conv has a bias.
    pub use_conv_bias: bool,
    /// Whether in_proj/out_proj have biases.
    pub mamba_proj_bias: bool,
    /// Whether q/k/v/o projections have biases.
    pub attention_bias: bool,
    /// Whether up/down projections have biases.
    pub mlp_bias: bool,
}

impl NemotronHConfig {
    /// Resolves a `nemotron_h` config.
    pub fn from_config(c: &Config) -> Result<Self, FrontendError> {
        // Where a setting has two spellings, the one transformers' `nemotron_h` reads wins
        // (docs/frontend.md): `layers_block_type` over `hybrid_override_pattern`, the old
        // `mamba_*` names over the new ones (its config class pops them over), `head_dim` over
        // `attention_head_dim`, `layer_norm_epsilon` over `rms_norm_eps`, `use_bias` alone for
        // the Mamba projections (`mamba_proj_bias` is never read).
        let pattern = if let Some(list) = c.opt_str_list(&["layers_block_type"])? {
            list.iter()
                .enumerate()
                .map(|(i, s)| match s.as_str() {
                    "mamba" | "linear_attention" => Ok(BlockKind::Mamba),
                    "attention" | "full_attention" => Ok(BlockKind::Attention),
                    "mlp" => Ok(BlockKind::Mlp),
                    "moe" => Ok(BlockKind::Moe),
                    _ => Err(c.invalid(format!(
                        "`layers_block_type[{i}]` is {s:?} (expected mamba, attention, mlp, moe, linear_attention or full_attention)"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?
        } else if let Some(p) = c.opt_str(&["hybrid_override_pattern"])? {
            p.chars()
                .enumerate()
                .map(|(i, ch)| match ch {
                    'M' => Ok(BlockKind::Mamba),
                    '*' => Ok(BlockKind::Attention),
                    '-' => Ok(BlockKind::Mlp),
                    'E' => Ok(BlockKind::Moe),
                    _ => Err(c.invalid(format!(
                        "`hybrid_override_pattern` has {ch:?} at position {i} (expected M, *, - or E)"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            return Err(c.invalid("missing `hybrid_override_pattern` or `layers_block_type`".into()));
        };
        if pattern.is_empty() {
            return Err(c.invalid("the layer pattern is empty".into()));
        }
        if pattern.len() as u64 > MAX_LAYERS {
            return Err(c.invalid(format!(
                "the layer pattern has {} layers; at most {MAX_LAYERS} are supported",
                pattern.len()
            )));
        }
        if let Some(n) = c.opt_at_most(&["num_hidden_layers"], MAX_LAYERS)? {
            if n != pattern.len() {
                return Err(
                    c.invalid(format!("`num_hidden_layers` is {n} but the pattern has {} layers", pattern.len()))
                );
            }
        }
        let cfg = NemotronHConfig {
            hidden_size: c.positive(&["hidden_size"])?,
            vocab_size: c.at_most(&["vocab_size"], MAX_VOCAB)?,
            num_attention_heads: c.positive(&["num_attention_heads"])?,
            num_key_value_heads: c.positive(&["num_key_value_heads"])?,
            head_dim: c.positive(&["head_dim", "attention_head_dim"])?,
            intermediate_size: c.positive(&["intermediate_size"])?,
            mamba_num_heads: c.positive(&["mamba_num_heads"])?,
            mamba_head_dim: c.positive(&["mamba_head_dim"])?,
            n_groups: c.positive(&["mamba_n_groups", "n_groups"])?,
            ssm_state_size: c.positive(&["ssm_state_size"])?,
            conv_kernel: c.positive(&["mamba_d_conv", "conv_kernel"])?,
            chunk_size: c.opt_at_most(&["mamba_chunk_size", "chunk_size"], MAX_CONTEXT)?.unwrap_or(128),
            eps: c.opt_positive_f64(&["layer_norm_epsilon", "rms_norm_eps"])?.unwrap_or(1e-5),
            time_step_limit: c.opt_range(&["time_step_limit", "mamba_dt_limit"])?.unwrap_or((0.0, f64::INFINITY)),
            // transformers' nemotron_h never ties the LM head to the embedding.
            tie_word_embeddings: false,
            use_conv_bias: c.opt_bool(&["mamba_conv_bias", "use_conv_bias"])?.unwrap_or(true),
            mamba_proj_bias: c.opt_bool(&["use_bias"])?.unwrap_or(false),
            // Its attention projections have no biases, whatever `attention_bias` says (below).
            attention_bias: false,
            mlp_bias: c.opt_bool(&["mlp_bias"])?.unwrap_or(false),
            pattern,
        };
        if c.opt_bool(&["attention_bias"])? == Some(true) {
            return Err(FrontendError::Unsupported(format!(
                "{}: `attention_bias: true` is not supported (transformers' nemotron_h has no attention biases)",
                c.path.display()
            )));
        }
        for (key, want) in [("mlp_hidden_act", "relu2"), ("mamba_hidden_act", "silu")] {
            if let Some(act) = c.opt_str(&[key])? {
                if act != want {
                    return Err(FrontendError::Unsupported(format!(
                        "{}: `{key}` is {act:?}; only {want:?} is supported",
                        c.path.display()
                    )));
                }
            }
        }
        if !cfg.num_attention_heads.is_multiple_of(cfg.num_key_value_heads) {
            return Err(c.invalid(format!(
                "`num_attention_heads` {} is not a multiple of `num_key_value_heads` {}",
                cfg.num_attention_heads, cfg.num_key_value_heads
            )));
        }
        if !cfg.mamba_num_heads.is_multiple_of(cfg.n_groups) {
            return Err(c.invalid(format!(
                "`mamba_num_heads` {} is not a multiple of `n_groups` {}",
                cfg.mamba_num_heads, cfg.n_groups
            )));
        }
        Ok(cfg)
    }

    /// The attention block of this config: GQA without position embedding.
    pub fn attention_spec(&self) -> crate::programs::AttentionSpec {
        crate::programs::AttentionSpec {
            q_heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            bias: self.attention_bias,
            out_bias: self.attention_bias,
            rope: None,
        }
    }

    /// The Mamba-2 mixer of this config.
    pub fn mamba_spec(&self) -> crate::mamba::MambaSpec {
        crate::mamba::MambaSpec {
            heads: self.mamba_num_heads,
            head_dim: self.mamba_head_dim,
            groups: self.n_groups,
            state: self.ssm_state_size,
            conv_kernel: self.conv_kernel,
            chunk: self.chunk_size,
            eps: self.eps,
            time_step_limit: self.time_step_limit,
            conv_bias: self.use_conv_bias,
            proj_bias: self.mamba_proj_bias,
        }
    }

    /// Mamba mixer width `H·P`.
    pub fn d_inner(&self) -> usize {
        self.mamba_num_heads * self.mamba_head_dim
    }

    /// Channels of the causal conv: `[x | B | C]`.
    pub fn conv_dim(&self) -> usize {
        self.d_inner() + 2 * self.n_groups * self.ssm_state_size
    }

    /// Rows of `in_proj`: `[z | x | B | C | dt]`.
    pub fn in_proj_rows(&self) -> usize {
        self.d_inner() + self.conv_dim() + self.mamba_num_heads
    }

    /// Layers of each kind: `(mamba, attention, mlp, moe)`.
    pub fn layer_counts(&self) -> (usize, usize, usize, usize) {
        let n = |k| self.pattern.iter().filter(|&&b| b == k).count();
        (n(BlockKind::Mamba), n(BlockKind::Attention), n(BlockKind::Mlp), n(BlockKind::Moe))
    }

    /// Every tensor the checkpoint holds, with its shape and role, in layer order.
    /// A MoE layer is refused: it is not supported yet.
    pub fn tensors(&self) -> Result<Vec<TensorSpec>, FrontendError> {
        let h = self.hidden_size;
        let spec = |name: String, shape: Vec<usize>, role| TensorSpec { name, shape, role };
        let mut t =
            vec![spec("backbone.embeddings.weight".into(), vec![self.vocab_size, h], Some(WeightRole::Embedding))];
        for (i, kind) in self.pattern.iter().enumerate() {
            let block = Some(WeightRole::Block(i as u32));
            let mut add = |name: String, shape: Vec<usize>| t.push(spec(name, shape, block));
            let linear = |add: &mut dyn FnMut(String, Vec<usize>), name: String, out: usize, inp: usize, bias: bool| {
                add(format!("{name}.weight"), vec![out, inp]);
                if bias {
                    add(format!("{name}.bias"), vec![out]);
                }
            };
            let p = format!("backbone.layers.{i}");
            add(format!("{p}.norm.weight"), vec![h]);
            let m = format!("{p}.mixer");
            match kind {
                BlockKind::Mamba => {
                    linear(&mut add, format!("{m}.in_proj"), self.in_proj_rows(), h, self.mamba_proj_bias);
                    add(format!("{m}.conv1d.weight"), vec![self.conv_dim(), 1, self.conv_kernel]);
                    if self.use_conv_bias {
                        add(format!("{m}.conv1d.bias"), vec![self.conv_dim()]);
                    }
                    for name in ["A_log", "D", "dt_bias"] {
                        add(format!("{m}.{name}"), vec![self.mamba_num_heads]);
                    }
                    add(format!("{m}.norm.weight"), vec![self.d_inner()]);
                    linear(&mut add, format!("{m}.out_proj"), h, self.d_inner(), self.mamba_proj_bias);
                }
                BlockKind::Attention => {
                    let (q, kv) = (self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim);
                    linear(&mut add, format!("{m}.q_proj"), q, h, self.attention_bias);
                    linear(&mut add, format!("{m}.k_proj"), kv, h, self.attention_bias);
                    linear(&mut add, format!("{m}.v_proj"), kv, h, self.attention_bias);
                    linear(&mut add, format!("{m}.o_proj"), h, q, self.attention_bias);
                }
                BlockKind::Mlp => {
                    linear(&mut add, format!("{m}.up_proj"), self.intermediate_size, h, self.mlp_bias);
                    linear(&mut add, format!("{m}.down_proj"), h, self.intermediate_size, self.mlp_bias);
                }
                BlockKind::Moe => {
                    return Err(FrontendError::Unsupported(format!(
                        "layer {i} is a mixture-of-experts ('E') block: nemotron_h MoE layers are not supported yet"
                    )))
                }
            }
        }
        t.push(spec("backbone.norm_f.weight".into(), vec![h], None));
        if !self.tie_word_embeddings {
            t.push(spec("lm_head.weight".into(), vec![self.vocab_size, h], Some(WeightRole::LmHead)));
        }
        Ok(t)
    }

    /// Number of weight elements the checkpoint holds.
    pub fn parameter_count(&self) -> Result<u64, FrontendError> {
        Ok(self.tensors()?.iter().map(|t| t.shape.iter().map(|&d| d as u64).product::<u64>()).sum())
    }
}

// ------------------------------------------------------------------------------ programs ----

use lathe_ir::ops::{BinaryOp, UnaryOp};
use lathe_ir::{Function, Module};

use crate::graph::{Ctx, R};
use crate::programs::{gqa_attention, Program, Shapes};

/// Emits one program (`eval`, `extend` or `decode`) of a Nemotron-H module whose weights are
/// declared under their checkpoint names.
pub fn build_program(cfg: &NemotronHConfig, m: &Module, program: Program, shapes: &Shapes) -> R<Function> {
    let mut cx = Ctx::new(m);
    let (b, s) = (shapes.batch, program.seq_dim(shapes));
    let (mut h, past) = crate::programs::begin(&mut cx, program, shapes, "backbone.embeddings.weight")?;
    let mut cache_outputs = Vec::new();
    for (i, kind) in cfg.pattern.iter().enumerate() {
        let p = format!("backbone.layers.{i}");
        let normed = cx.rms_norm(h, &format!("{p}.norm.weight"), cfg.eps, 1, None)?;
        let m_ = format!("{p}.mixer");
        let out = match kind {
            BlockKind::Mamba => crate::mamba::mixer(
                &mut cx,
                &cfg.mamba_spec(),
                normed,
                &m_,
                i,
                b,
                s,
                program,
                shapes,
                &mut cache_outputs,
            )?,
            BlockKind::Attention => {
                let spec = cfg.attention_spec();
                gqa_attention(&mut cx, normed, &m_, i, &spec, b, s, past, program, shapes, &mut cache_outputs)?
            }
            BlockKind::Mlp => {
                let up = cx.linear(normed, &format!("{m_}.up_proj"), cfg.mlp_bias)?;
                let r = cx.unary(UnaryOp::Relu, up)?;
                let sq = cx.unary(UnaryOp::Square, r)?;
                cx.linear(sq, &format!("{m_}.down_proj"), cfg.mlp_bias)?
            }
            BlockKind::Moe => {
                return Err(FrontendError::Unsupported(format!(
                    "layer {i} is a mixture-of-experts ('E') block: nemotron_h MoE layers are not supported yet"
                )))
            }
        };
        h = cx.binary(BinaryOp::Add, h, out)?;
    }
    let head = if cfg.tie_word_embeddings { "backbone.embeddings" } else { "lm_head" };
    crate::programs::finish(
        cx,
        h,
        program,
        shapes,
        "backbone.norm_f.weight",
        cfg.eps,
        head,
        cfg.vocab_size,
        cache_outputs,
    )
}
