//! Interpreter tensors to and from safetensors files, through `lathe-tensorfile`.

use std::path::Path;

use lathe_interp::tensor::Tensor;
use lathe_tensorfile::{Header, TensorInfo, TensorRef};

use crate::error::CliError;

/// Reads tensor `name` from a safetensors file; a file holding exactly one tensor may name it
/// differently. Only that tensor's bytes are read.
pub fn read_tensor(path: &Path, name: &str) -> Result<Tensor, CliError> {
    let (key, info, bytes) = read_named(path, name)?;
    Tensor::from_le_bytes(info.dtype, info.shape, &bytes)
        .map_err(|e| CliError::input(format!("{}: tensor \"{key}\": {e}", path.display())))
}

/// The tensor `name` of a safetensors file (or its only tensor, whatever its name): its name in
/// the file, its record and its raw bytes. Only that tensor's bytes are read.
pub fn read_named(path: &Path, name: &str) -> Result<(String, TensorInfo, Vec<u8>), CliError> {
    let header = Header::read(path).map_err(|e| CliError::input(e.to_string()))?;
    let key = if header.tensors.contains_key(name) || header.tensors.len() != 1 {
        name.to_string()
    } else {
        header.tensors.keys().next().cloned().unwrap_or_default()
    };
    let info = header.get(&key).map_err(|e| CliError::input(e.to_string()))?.clone();
    let bytes = header.read_bytes(&key).map_err(|e| CliError::input(e.to_string()))?;
    Ok((key, info, bytes))
}

/// Writes named tensors to `path` atomically: a temporary file in the same directory is
/// renamed over the target, so a failure leaves no partial output.
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), CliError> {
    // An unnamed result is called `outK`, which a named result may already be.
    let mut names = std::collections::HashSet::new();
    if let Some((name, _)) = tensors.iter().find(|(n, _)| !names.insert(n.as_str())) {
        return Err(CliError::input(format!(
            "{}: two results are named \"{name}\"; name every result of the function",
            path.display()
        )));
    }
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, t)| t.to_le_bytes()).collect();
    let refs: Vec<TensorRef<'_>> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| TensorRef { name, dtype: t.dtype, shape: &t.shape, bytes: b })
        .collect();
    let mut data = Vec::new();
    lathe_tensorfile::write(&mut data, &refs, path).map_err(|e| CliError::internal(e.to_string()))?;
    crate::error::write_atomic(path, &data)
}
