//! Mamba-2 (`model_type: mamba2`): a stack of Mamba-2 mixers.
//!
//! Its checkpoint layout (`backbone.embeddings`, `backbone.layers.{i}.{norm,mixer}`,
//! `backbone.norm_f`, `lm_head`) and block structure (pre-norm, mixer, residual) are exactly those
//! of a Nemotron-H whose pattern is all `M`, so it resolves to a [`NemotronHConfig`] and shares
//! that family's tensor list and programs.

use lathe_ir::limits::{MAX_CONTEXT, MAX_DIM, MAX_LAYERS, MAX_VOCAB};

use crate::config::Config;
use crate::nemotron_h::{BlockKind, NemotronHConfig};
use crate::FrontendError;

/// Resolves a `mamba2` config into the equivalent all-Mamba Nemotron-H configuration.
pub fn from_config(c: &Config) -> Result<NemotronHConfig, FrontendError> {
    let hidden = c.positive(&["hidden_size", "d_model"])?;
    let layers = c.at_most(&["num_hidden_layers", "n_layer"], MAX_LAYERS)?;
    let heads = c.positive(&["num_heads"])?;
    let head_dim = c.positive(&["head_dim"])?;
    let expand = c.opt_at_most(&["expand"], MAX_DIM)?.unwrap_or(2);
    if heads * head_dim != expand * hidden {
        return Err(c.invalid(format!(
            "`num_heads` × `head_dim` = {} must equal `expand` × `hidden_size` = {}",
            heads * head_dim,
            expand * hidden
        )));
    }
    let groups = c.positive(&["n_groups"])?;
    if heads % groups != 0 {
        return Err(c.invalid(format!("`num_heads` {heads} is not a multiple of `n_groups` {groups}")));
    }
    Ok(NemotronHConfig {
        hidden_size: hidden,
        vocab_size: c.at_most(&["vocab_size"], MAX_VOCAB)?,
        pattern: vec![BlockKind::Mamba; layers],
        // No attention or MLP layers: these only keep the struct total.
        num_attention_heads: 1,
        num_key_value_heads: 1,
        head_dim: 1,
        intermediate_size: 1,
        mamba_num_heads: heads,
        mamba_head_dim: head_dim,
        n_groups: groups,
        ssm_state_size: c.positive(&["state_size", "ssm_state_size"])?,
        conv_kernel: c.positive(&["conv_kernel"])?,
        chunk_size: c.opt_at_most(&["chunk_size"], MAX_CONTEXT)?.unwrap_or(256),
        eps: c.opt_positive_f64(&["layer_norm_epsilon"])?.unwrap_or(1e-5),
        time_step_limit: c.opt_range(&["time_step_limit"])?.unwrap_or((0.0, f64::INFINITY)),
        // transformers' Mamba2Config: not tied unless the config says so.
        tie_word_embeddings: c.opt_bool(&["tie_word_embeddings"])?.unwrap_or(false),
        use_conv_bias: c.opt_bool(&["use_conv_bias"])?.unwrap_or(true),
        mamba_proj_bias: c.opt_bool(&["use_bias"])?.unwrap_or(false),
        attention_bias: false,
        mlp_bias: false,
    })
}
