//! Weights into the interpreter: checkpoint tensors streamed from their files and decoded,
//! synthetic weights generated.

use lathe_ir::{Weight, WeightSource};
use lathe_tensorfile::Checkpoint;

use crate::tensor::{Data, Tensor};
use crate::{synthetic_weight, WeightLoader};

/// Loads checkpoint weights from a [`Checkpoint`] (its files' headers read and validated up
/// front) and generates synthetic ones. Without a checkpoint, a checkpoint weight is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckpointLoader<'a> {
    /// The checkpoint the module's `checkpoint` weights name (`None`: synthetic weights only).
    pub checkpoint: Option<&'a Checkpoint>,
}

impl WeightLoader for CheckpointLoader<'_> {
    fn load(&self, w: &Weight) -> Result<Tensor, String> {
        match (&w.source, self.checkpoint) {
            (WeightSource::Synthetic { seed }, _) => synthetic_weight(&w.ty, *seed),
            (WeightSource::Checkpoint { file, tensor }, Some(ck)) => {
                let shape: Vec<usize> = w.ty.shape.iter().map(|d| d.as_const().unwrap_or(0) as usize).collect();
                let numel: usize = shape.iter().product();
                let mut data = Data::with_capacity(w.ty.dtype, numel);
                ck.stream(file, tensor, w.ty.dtype, &shape, &mut |bytes| data.extend_from_le_bytes(w.ty.dtype, bytes))
                    .map_err(|e| e.to_string())?;
                Ok(Tensor { dtype: w.ty.dtype, shape, data })
            }
            (WeightSource::Checkpoint { file, tensor }, None) => {
                Err(format!("needs tensor \"{tensor}\" of {file}, but no checkpoint was given"))
            }
            // The session evaluates derived weights itself; a loader never sees one.
            (WeightSource::Derived(_), _) => Err("a derived weight is computed, not loaded".into()),
        }
    }
}
