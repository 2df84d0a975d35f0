//! Checkpoint directory → verified module.
//!
//! 1. `config.json` names the family (`model_type`) and its shapes;
//! 2. the family lists the tensors the checkpoint must hold;
//! 3. with safetensors present, every listed tensor must exist with that shape and a float
//!    dtype, and no unexpected tensor may remain; a directory with only `config.json` imports
//!    shape-only, with synthetic weights in the config's dtype;
//! 4. weights are declared under their checkpoint names, then the programs are built.

use std::path::Path;

use lathe_ir::limits::MAX_CONTEXT;
use lathe_ir::{DType, Dim, Module, TensorType, WeightSource};
use lathe_tensorfile::{Checkpoint, WeightFiles};

use crate::config::Config;
use crate::nemotron_h::NemotronHConfig;
use crate::programs::{Program, Shapes};
use crate::qwen2::Qwen2Config;
use crate::{FrontendError, TensorSpec, SUPPORTED_MODEL_TYPES};

/// Options of an import.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Upper bound of the batch symbol `B`.
    pub max_batch: u64,
    /// Upper bound of the sequence symbol `S` and the cache capacity; `None` takes the config's
    /// `max_position_embeddings` (8192 when absent).
    pub max_seq: Option<u64>,
    /// Dtype of activations (f32 for `eval` on the CPU, bf16 for compiled artifacts).
    pub compute_dtype: DType,
    /// Describe the model by its config alone, with synthetic weights, whatever weight files
    /// the directory holds (`--shape-only`). Otherwise weights are read when the directory has
    /// them, and a weight file that is there but unreadable is an error.
    pub shape_only: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { max_batch: 8, max_seq: None, compute_dtype: DType::F32, shape_only: false }
    }
}

/// The resolved configuration of a supported family.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Family {
    /// `nemotron_h`, and `mamba2` as an all-Mamba Nemotron-H.
    NemotronH(NemotronHConfig),
    /// `qwen2` and `llama`.
    Qwen2(Qwen2Config),
}

impl Family {
    /// Resolves the family of a config.
    pub fn from_config(c: &Config) -> Result<Family, FrontendError> {
        let mt = c.opt_str(&["model_type"])?.ok_or_else(|| c.invalid("missing `model_type`".into()))?;
        match mt {
            "nemotron_h" => Ok(Family::NemotronH(NemotronHConfig::from_config(c)?)),
            "mamba2" => Ok(Family::NemotronH(crate::mamba2::from_config(c)?)),
            "qwen2" => Ok(Family::Qwen2(Qwen2Config::from_config(c, true)?)),
            "llama" => Ok(Family::Qwen2(Qwen2Config::from_config(c, false)?)),
            other => Err(FrontendError::UnknownModelType { found: other.into() }),
        }
    }

    /// Every tensor of the checkpoint with its shape and role.
    pub fn tensors(&self) -> Result<Vec<TensorSpec>, FrontendError> {
        match self {
            Family::NemotronH(c) => c.tensors(),
            Family::Qwen2(c) => Ok(c.tensors()),
        }
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match self {
            Family::NemotronH(c) => c.vocab_size,
            Family::Qwen2(c) => c.vocab_size,
        }
    }
}

/// An imported model: the module, its family, and the checkpoint its weights come from.
#[derive(Debug)]
pub struct Imported {
    /// Verified module with `eval`, `extend` and `decode`.
    pub module: Module,
    /// The family configuration.
    pub family: Family,
    /// The checkpoint (`None` for a shape-only import).
    pub checkpoint: Option<Checkpoint>,
}

fn config_dtype(c: &Config) -> Result<DType, FrontendError> {
    Ok(match c.opt_str(&["torch_dtype", "dtype"])? {
        None | Some("bfloat16") => DType::BF16,
        Some("float32") => DType::F32,
        Some("float16") => DType::F16,
        Some(other) => {
            return Err(c.invalid(format!("unsupported dtype {other:?} (expected bfloat16, float16 or float32)")))
        }
    })
}

/// Imports a checkpoint directory (or a directory holding only `config.json`; then, and with
/// [`ImportOptions::shape_only`], `checkpoint` is `None` and the weights are synthetic).
pub fn import(dir: &Path, opts: &ImportOptions) -> Result<Imported, FrontendError> {
    let config = Config::read(dir)?;
    let family = Family::from_config(&config)?;
    let checkpoint = match opts.shape_only {
        true => None,
        false => match lathe_tensorfile::weight_files(dir)? {
            WeightFiles::Safetensors => Some(Checkpoint::open(dir)?),
            WeightFiles::None => None,
        },
    };
    let name = dir.file_name().map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned());
    build(dir, &name, &config, family, checkpoint, opts)
}

/// The shape-only import of a parsed config (synthetic weights), as [`import`] makes it of a
/// directory without weight files; what the config fuzz target drives.
pub fn from_config(config: &Config, opts: &ImportOptions) -> Result<Imported, FrontendError> {
    let family = Family::from_config(config)?;
    build(Path::new("."), "model", config, family, None, opts)
}

/// Declares the weights (from `checkpoint`, checked against the config, or synthetic) and
/// builds and verifies the programs.
fn build(
    dir: &Path,
    name: &str,
    config: &Config,
    family: Family,
    checkpoint: Option<Checkpoint>,
    opts: &ImportOptions,
) -> Result<Imported, FrontendError> {
    let expected = family.tensors()?;
    let mut m = Module::new(name);
    m.compute_dtype = opts.compute_dtype;
    let fallback = config_dtype(config)?;
    match &checkpoint {
        Some(ck) => {
            for TensorSpec { name: tensor, shape, role } in &expected {
                let (info, path) = ck
                    .info(tensor)
                    .map_err(|_| FrontendError::MissingTensor { dir: dir.to_path_buf(), tensor: tensor.clone() })?;
                if info.shape != *shape || !info.dtype.is_float() || info.dtype.is_fp8() {
                    return Err(FrontendError::TensorMismatch {
                        file: path.to_path_buf(),
                        tensor: tensor.clone(),
                        found: info.describe(),
                        expected: format!("a float (f32, f16 or bf16) tensor of shape {shape:?}"),
                    });
                }
                let file = ck.index.get(tensor).cloned().unwrap_or_default();
                let ty = TensorType::fixed(info.dtype, &shape.iter().map(|&d| d as u64).collect::<Vec<_>>());
                let w = m.add_weight(tensor, ty, WeightSource::Checkpoint { file, tensor: tensor.clone() });
                m.weights[w].role = *role;
            }
            if let Some((extra, file)) = ck.index.iter().find(|(n, _)| !expected.iter().any(|e| e.name == **n)) {
                return Err(FrontendError::Checkpoint {
                    path: dir.join(file),
                    message: format!("unexpected tensor \"{extra}\" (not implied by config.json)"),
                });
            }
        }
        None => {
            for (i, t) in expected.iter().enumerate() {
                let ty = TensorType::fixed(fallback, &t.shape.iter().map(|&d| d as u64).collect::<Vec<_>>());
                let w = m.add_weight(&t.name, ty, WeightSource::Synthetic { seed: i as u64 });
                m.weights[w].role = t.role;
            }
        }
    }
    // Checked even when the caller sets the bound: a config is valid or not whatever the command.
    let config_max = config.opt_at_most(&["max_position_embeddings"], MAX_CONTEXT)?.map_or(8192, |v| v as u64);
    let max_seq = opts.max_seq.unwrap_or(config_max).max(1);
    let b = m.add_symbol("B", opts.max_batch.max(1));
    let s = m.add_symbol("S", max_seq);
    let shapes = Shapes { batch: Dim::Sym(b), seq: Dim::Sym(s), capacity: max_seq };
    for program in Program::ALL {
        let f = match &family {
            Family::NemotronH(c) => crate::nemotron_h::build_program(c, &m, program, &shapes)?,
            Family::Qwen2(c) => c.build_program(&m, program, &shapes)?,
        };
        m.functions.push(f);
    }
    lathe_ir::verify::verify(&m).map_err(|e| FrontendError::Build(e.to_string()))?;
    Ok(Imported { module: m, family, checkpoint })
}

/// The model types lathe imports (for messages).
pub fn supported() -> &'static [&'static str] {
    SUPPORTED_MODEL_TYPES
}
