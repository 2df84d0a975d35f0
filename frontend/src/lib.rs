//! `lathe-frontend` — Hugging Face checkpoints into lathe IR.
//!
//! # What it holds today
//! - [`config::Config`]: a tolerant reader of `config.json` (aliases, `Infinity` as a bare token
//!   or as `{"__float__": "Infinity"}`), every error naming the file and the field;
//! - [`nemotron_h::NemotronHConfig`]: the resolved Nemotron-H configuration (hybrid pattern from
//!   `hybrid_override_pattern` or `layers_block_type` in either naming) and the list of tensors a
//!   checkpoint must hold — the basis of shape-only import and of config/tensor checks.
//!
//! # What comes next (issue L2, DESIGN §4)
//! Safetensors headers read at import (single files or shards with
//! `model.safetensors.index.json`), and one graph builder per family (`nemotron_h`, `mamba2`,
//! `qwen2`/`llama`, later `NVLM_D`) emitting `extend`/`decode`/`eval` with
//! `lathe_ir::builder::GraphBuilder`.

pub mod config;
pub mod nemotron_h;

use std::path::PathBuf;

/// The model types the frontend recognizes.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["nemotron_h"];

/// Errors of the frontend; each names the file, field or tensor concerned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FrontendError {
    /// A file or directory could not be read.
    #[error("{}: {message}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS message.
        message: String,
    },
    /// `config.json` is malformed or inconsistent.
    #[error("{}: {message}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The model type is not one lathe supports.
    #[error("unknown model_type {found:?} (supported: {})", SUPPORTED_MODEL_TYPES.join(", "))]
    UnknownModelType {
        /// What the config says.
        found: String,
    },
    /// A feature of the checkpoint that lathe does not support yet.
    #[error("{0}")]
    Unsupported(String),
}
