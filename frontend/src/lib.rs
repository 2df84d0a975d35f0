//! `lathe-frontend` — Hugging Face checkpoints into lathe IR.
//!
//! This crate will hold (issue L2, DESIGN §4): a tolerant reader of `config.json` (aliases,
//! `hybrid_override_pattern` or `layers_block_type`, `Infinity` in either spelling), safetensors
//! headers read at import (single files or shards with `model.safetensors.index.json`), and
//! one model builder per family (`nemotron_h`, `mamba2`, `qwen2`/`llama`, later `NVLM_D`) that
//! emits the `extend` / `decode` / `eval` programs with `lathe_ir::builder::GraphBuilder`.
//! Every mismatch between config and tensors becomes an error naming the tensor and both shapes.
//!
//! Nothing is implemented yet; no API is exported so that nothing pretends to work.
