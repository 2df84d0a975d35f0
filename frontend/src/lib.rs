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
pub mod graph;
pub mod import;
pub mod mamba;
pub mod mamba2;
pub mod nemotron_h;
pub mod programs;
pub mod qwen2;

use std::path::PathBuf;

/// One tensor a checkpoint must hold: its name, shape and what it is to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Checkpoint tensor name.
    pub name: String,
    /// Shape the config implies.
    pub shape: Vec<usize>,
    /// Its block, or the embedding or LM head.
    pub role: Option<lathe_ir::WeightRole>,
}

/// The model types the frontend recognizes.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["nemotron_h", "mamba2", "qwen2", "llama"];

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
    /// A safetensors file or index is malformed, truncated or inconsistent.
    #[error("{}: {message}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the tensor where there is one.
        message: String,
    },
    /// A safetensors file of the checkpoint could not be read or is malformed.
    #[error(transparent)]
    TensorFile(#[from] lathe_tensorfile::TensorFileError),
    /// The config needs a tensor the checkpoint does not have.
    #[error("{}: missing tensor \"{tensor}\"", dir.display())]
    MissingTensor {
        /// The checkpoint directory.
        dir: PathBuf,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor's shape or dtype disagrees with the config.
    #[error("{}: tensor \"{tensor}\" is {found}, the config implies {expected}", file.display())]
    TensorMismatch {
        /// The file holding it.
        file: PathBuf,
        /// The tensor name.
        tensor: String,
        /// What the checkpoint holds.
        found: String,
        /// What the config implies.
        expected: String,
    },
    /// Building the graph failed: a bug in a model builder, reported rather than panicking.
    #[error("internal error while building the graph: {0}")]
    Build(String),
    /// A feature of the checkpoint that lathe does not support yet.
    #[error("{0}")]
    Unsupported(String),
}
