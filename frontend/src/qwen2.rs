//! Qwen2 / Llama (`model_type: qwen2` or `llama`): the decoder of NVLM-D.
//!
//! Pre-norm blocks: `h += o_proj(attention(RoPE(q), RoPE(k), v))` on `input_layernorm(h)`, then
//! `h += down(silu(gate(x)) · up(x))` on `post_attention_layernorm(h)`; GQA with q/k/v biases for
//! Qwen2 (`attention_bias` for Llama); RoPE in the rotate-half convention with
//! `rope_theta` (or `rope_parameters.rope_theta`). Only the default RoPE type is supported;
//! scaled variants are refused clearly.

use lathe_ir::limits::{MAX_DIM, MAX_LAYERS, MAX_VOCAB};
use lathe_ir::ops::{BinaryOp, RopeAttrs, UnaryOp};
use lathe_ir::{Function, Module, WeightRole};

use crate::config::Config;
use crate::graph::{Ctx, R};
use crate::programs::{begin, finish, gqa_attention, AttentionSpec, Program, Shapes};
use crate::{FrontendError, TensorSpec};

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2Config {
    /// Model width.
    pub hidden_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Number of blocks.
    pub layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: usize,
    /// Head size.
    pub head_dim: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// RMSNorm epsilon.
    pub eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// q/k/v biases.
    pub qkv_bias: bool,
    /// o_proj bias.
    pub o_bias: bool,
    /// LM head shares the embedding.
    pub tie_word_embeddings: bool,
    /// gate/up/down projections have biases.
    pub mlp_bias: bool,
}

impl Qwen2Config {
    /// Resolves a `qwen2`/`llama` config.
    pub fn from_config(c: &Config, qwen: bool) -> Result<Self, FrontendError> {
        let hidden = c.positive(&["hidden_size"])?;
        let heads = c.positive(&["num_attention_heads"])?;
        // transformers' defaults when the field is absent: Qwen2Config 32, LlamaConfig the query
        // heads.
        let kv = c.opt_at_most(&["num_key_value_heads"], MAX_DIM)?.unwrap_or(if qwen { 32 } else { heads });
        if heads % kv != 0 {
            return Err(
                c.invalid(format!("`num_attention_heads` {heads} is not a multiple of `num_key_value_heads` {kv}"))
            );
        }
        // As transformers resolves them: `rope_scaling` (when not null) replaces
        // `rope_parameters`; a `rope_theta` inside it beats the top-level one; `rope_type` beats
        // `type`.
        let (rope_key, rope) = match c.get("rope_scaling").filter(|v| !v.is_null()) {
            Some(v) => ("rope_scaling", Some(v)),
            None => ("rope_parameters", c.get("rope_parameters").filter(|v| !v.is_null())),
        };
        // A malformed RoPE description is refused: ignoring it would run the default base and
        // compute wrong logits without a word.
        let rope = match rope {
            None => None,
            Some(serde_json::Value::Object(o)) => Some(o),
            Some(v) => return Err(c.invalid(format!("`{rope_key}` must be an object, got {v}"))),
        };
        let kind_key =
            rope.and_then(|r| ["rope_type", "type"].into_iter().find(|k| r.get(*k).is_some_and(|v| !v.is_null())));
        if let (Some(r), Some(k)) = (rope, kind_key) {
            match r[k].as_str() {
                Some("default") => {}
                Some(kind) => {
                    return Err(FrontendError::Unsupported(format!(
                        "{}: rope type {kind:?} is not supported yet (only the default RoPE)",
                        c.path.display()
                    )))
                }
                None => return Err(c.invalid(format!("`{rope_key}.{k}` must be a string, got {}", r[k]))),
            }
        }
        let theta = match rope.and_then(|r| r.get("rope_theta")).filter(|v| !v.is_null()) {
            Some(v) => v
                .as_f64()
                .filter(|t| t.is_finite() && *t > 0.0)
                .ok_or_else(|| c.invalid(format!("`{rope_key}.rope_theta` must be a finite number > 0, got {v}")))?,
            None => c.opt_positive_f64(&["rope_theta"])?.unwrap_or(10000.0),
        };
        let head_dim = match c.opt_at_most(&["head_dim"], MAX_DIM)? {
            Some(d) => d,
            None if hidden >= heads => hidden / heads,
            None => {
                return Err(c.invalid(format!(
                    "no `head_dim`, and `hidden_size` {hidden} / `num_attention_heads` {heads} is 0"
                )))
            }
        };
        if head_dim % 2 != 0 {
            let what = if c.has(&["head_dim"]) {
                "`head_dim`".to_string()
            } else {
                "`hidden_size` / `num_attention_heads`".to_string()
            };
            return Err(c.invalid(format!("{what} = {head_dim} must be even: RoPE rotates pairs of dimensions")));
        }
        if qwen && c.opt_bool(&["use_sliding_window"])? == Some(true) {
            return Err(FrontendError::Unsupported(format!(
                "{}: `use_sliding_window: true` is not supported yet",
                c.path.display()
            )));
        }
        let attention_bias = c.opt_bool(&["attention_bias"])?;
        Ok(Qwen2Config {
            hidden_size: hidden,
            vocab_size: c.at_most(&["vocab_size"], MAX_VOCAB)?,
            layers: c.at_most(&["num_hidden_layers"], MAX_LAYERS)?,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            intermediate_size: c.positive(&["intermediate_size"])?,
            eps: c.opt_positive_f64(&["rms_norm_eps"])?.unwrap_or(1e-6),
            rope_theta: theta,
            // Qwen2 always has q/k/v biases and none on o_proj; Llama follows `attention_bias`.
            qkv_bias: if qwen { true } else { attention_bias.unwrap_or(false) },
            o_bias: if qwen { false } else { attention_bias.unwrap_or(false) },
            tie_word_embeddings: c.opt_bool(&["tie_word_embeddings"])?.unwrap_or(false),
            // Llama's `mlp_bias` (gate/up/down); Qwen2's MLP has none.
            mlp_bias: !qwen && c.opt_bool(&["mlp_bias"])?.unwrap_or(false),
        })
    }

    /// Every tensor of the checkpoint with its shape and role.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let (h, q, kv, f) = (
            self.hidden_size,
            self.num_attention_heads * self.head_dim,
            self.num_key_value_heads * self.head_dim,
            self.intermediate_size,
        );
        let spec = |name: String, shape: Vec<usize>, role| TensorSpec { name, shape, role };
        let mut t =
            vec![spec("model.embed_tokens.weight".into(), vec![self.vocab_size, h], Some(WeightRole::Embedding))];
        for i in 0..self.layers {
            let block = Some(WeightRole::Block(i as u32));
            let mut add = |name: String, shape: Vec<usize>| t.push(spec(name, shape, block));
            let p = format!("model.layers.{i}");
            add(format!("{p}.input_layernorm.weight"), vec![h]);
            for (name, out) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                add(format!("{p}.self_attn.{name}.weight"), vec![out, h]);
                if self.qkv_bias {
                    add(format!("{p}.self_attn.{name}.bias"), vec![out]);
                }
            }
            add(format!("{p}.self_attn.o_proj.weight"), vec![h, q]);
            if self.o_bias {
                add(format!("{p}.self_attn.o_proj.bias"), vec![h]);
            }
            add(format!("{p}.post_attention_layernorm.weight"), vec![h]);
            for (name, out, inp) in [("gate_proj", f, h), ("up_proj", f, h), ("down_proj", h, f)] {
                add(format!("{p}.mlp.{name}.weight"), vec![out, inp]);
                if self.mlp_bias {
                    add(format!("{p}.mlp.{name}.bias"), vec![out]);
                }
            }
        }
        t.push(spec("model.norm.weight".into(), vec![h], None));
        if !self.tie_word_embeddings {
            t.push(spec("lm_head.weight".into(), vec![self.vocab_size, h], Some(WeightRole::LmHead)));
        }
        t
    }

    /// Emits one program.
    pub fn build_program(&self, m: &Module, program: Program, shapes: &Shapes) -> R<Function> {
        let mut cx = Ctx::new(m);
        let (b, s) = (shapes.batch, program.seq_dim(shapes));
        let (mut h, past) = begin(&mut cx, program, shapes, "model.embed_tokens.weight")?;
        let spec = AttentionSpec {
            q_heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            bias: self.qkv_bias,
            out_bias: self.o_bias,
            rope: Some(RopeAttrs { theta: self.rope_theta, scale: 1.0 }),
        };
        let mut caches = Vec::new();
        for i in 0..self.layers {
            let p = format!("model.layers.{i}");
            let x = cx.rms_norm(h, &format!("{p}.input_layernorm.weight"), self.eps, 1, None)?;
            let a = gqa_attention(
                &mut cx,
                x,
                &format!("{p}.self_attn"),
                i,
                &spec,
                b,
                s,
                past,
                program,
                shapes,
                &mut caches,
            )?;
            h = cx.binary(BinaryOp::Add, h, a)?;
            let x = cx.rms_norm(h, &format!("{p}.post_attention_layernorm.weight"), self.eps, 1, None)?;
            let gate = cx.linear(x, &format!("{p}.mlp.gate_proj"), self.mlp_bias)?;
            let gate = cx.unary(UnaryOp::Silu, gate)?;
            let up = cx.linear(x, &format!("{p}.mlp.up_proj"), self.mlp_bias)?;
            let y = cx.binary(BinaryOp::Mul, gate, up)?;
            let y = cx.linear(y, &format!("{p}.mlp.down_proj"), self.mlp_bias)?;
            h = cx.binary(BinaryOp::Add, h, y)?;
        }
        let head = if self.tie_word_embeddings { "model.embed_tokens" } else { "lm_head" };
        finish(cx, h, program, shapes, "model.norm.weight", self.eps, head, self.vocab_size, caches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str, qwen: bool) -> Result<Qwen2Config, FrontendError> {
        let c = Config::parse(text, std::path::PathBuf::from("config.json"))?;
        Qwen2Config::from_config(&c, qwen)
    }

    const BASE: &str = r#""hidden_size": 32, "num_attention_heads": 4, "vocab_size": 16, "num_hidden_layers": 1, "intermediate_size": 8"#;

    #[test]
    fn rope_and_head_settings_resolve_as_transformers_does() {
        // A theta inside the RoPE dict beats the top-level one; `rope_scaling` replaces
        // `rope_parameters` when not null.
        let c = resolve(
            &format!(
                r#"{{{BASE}, "num_key_value_heads": 2, "rope_theta": 1e6, "rope_parameters": {{"rope_type": "default", "rope_theta": 5e5}}}}"#
            ),
            true,
        );
        assert_eq!(c.expect("resolves").rope_theta, 5e5);
        let c = resolve(
            &format!(
                r#"{{{BASE}, "num_key_value_heads": 2, "rope_parameters": {{"rope_theta": 5e5}}, "rope_scaling": {{"rope_type": "default", "rope_theta": 7.0}}}}"#
            ),
            true,
        );
        assert_eq!(c.expect("resolves").rope_theta, 7.0);
        let c =
            resolve(&format!(r#"{{{BASE}, "num_key_value_heads": 2, "rope_theta": 1e6, "rope_scaling": null}}"#), true);
        assert_eq!(c.expect("resolves").rope_theta, 1e6);
        let e = resolve(
            &format!(r#"{{{BASE}, "num_key_value_heads": 2, "rope_scaling": {{"type": "linear", "factor": 2}}}}"#),
            true,
        );
        assert!(e.expect_err("scaled").to_string().contains("rope type \"linear\""));
        // Without `num_key_value_heads`: Qwen2 takes 32 (so 4 query heads do not divide), Llama
        // the query heads.
        let e = resolve(&format!("{{{BASE}}}"), true).expect_err("qwen2 default kv heads");
        assert!(e.to_string().contains("not a multiple of `num_key_value_heads` 32"), "{e}");
        assert_eq!(resolve(&format!("{{{BASE}}}"), false).expect("llama").num_key_value_heads, 4);
        // Llama's mlp_bias gives the MLP biases; Qwen2's sliding window is refused.
        let l = resolve(&format!(r#"{{{BASE}, "mlp_bias": true}}"#), false).expect("llama");
        assert!(l.tensors().iter().any(|t| t.name == "model.layers.0.mlp.down_proj.bias"));
        let e = resolve(&format!(r#"{{{BASE}, "num_key_value_heads": 2, "use_sliding_window": true}}"#), true);
        assert!(e.expect_err("sliding").to_string().contains("use_sliding_window"));
    }
}
