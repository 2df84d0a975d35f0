//! Interpreter tensors to and from safetensors files.

use std::path::Path;

use lathe_ir::interp::tensor::Tensor;
use lathe_ir::DType;
use safetensors::tensor::{Dtype as StDtype, TensorView};
use safetensors::SafeTensors;

use crate::error::CliError;

fn st_dtype(d: DType) -> StDtype {
    match d {
        DType::F32 => StDtype::F32,
        DType::F16 => StDtype::F16,
        DType::BF16 => StDtype::BF16,
        DType::F8E4M3 => StDtype::F8_E4M3,
        DType::F8E5M2 => StDtype::F8_E5M2,
        DType::I64 => StDtype::I64,
        DType::I32 => StDtype::I32,
        DType::I8 => StDtype::I8,
        DType::U8 => StDtype::U8,
        DType::Bool => StDtype::BOOL,
    }
}

fn ir_dtype(d: StDtype) -> Option<DType> {
    Some(match d {
        StDtype::F32 => DType::F32,
        StDtype::F16 => DType::F16,
        StDtype::BF16 => DType::BF16,
        StDtype::F8_E4M3 => DType::F8E4M3,
        StDtype::F8_E5M2 => DType::F8E5M2,
        StDtype::I64 => DType::I64,
        StDtype::I32 => DType::I32,
        StDtype::I8 => DType::I8,
        StDtype::U8 => DType::U8,
        StDtype::BOOL => DType::Bool,
        _ => return None,
    })
}

/// Decodes one safetensors view into a tensor.
pub fn from_view(view: &TensorView<'_>, what: &str) -> Result<Tensor, CliError> {
    let dtype = ir_dtype(view.dtype())
        .ok_or_else(|| CliError::input(format!("{what}: unsupported dtype {:?}", view.dtype())))?;
    Tensor::from_le_bytes(dtype, view.shape().to_vec(), view.data())
        .map_err(|e| CliError::input(format!("{what}: {e}")))
}

/// Reads tensor `name` from a safetensors file; a file holding exactly one tensor may name it
/// differently.
pub fn read_tensor(path: &Path, name: &str) -> Result<Tensor, CliError> {
    let bytes = std::fs::read(path).map_err(|e| CliError::input(format!("{}: {e}", path.display())))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| CliError::input(format!("{}: not a valid safetensors file ({e})", path.display())))?;
    let names: Vec<String> = st.names().into_iter().map(|n| n.to_string()).collect();
    let key = if names.iter().any(|n| n == name) {
        name.to_string()
    } else if let [only] = names.as_slice() {
        only.clone()
    } else {
        return Err(CliError::input(format!("{}: no tensor \"{name}\" (has: {})", path.display(), names.join(", "))));
    };
    let view = st.tensor(&key).map_err(|e| CliError::input(format!("{}: tensor \"{key}\": {e}", path.display())))?;
    from_view(&view, &format!("{}: tensor \"{key}\"", path.display()))
}

/// Writes named tensors to `path` atomically: a temporary file in the same directory is
/// renamed over the target, so a failure leaves no partial output.
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), CliError> {
    // safetensors keys are unique (its serializer panics on a repeated one); an unnamed result
    // is called `outK`, which a named result may already be.
    let mut names = std::collections::HashSet::new();
    if let Some((name, _)) = tensors.iter().find(|(n, _)| !names.insert(n.as_str())) {
        return Err(CliError::input(format!(
            "{}: two results are named \"{name}\"; name every result of the function",
            path.display()
        )));
    }
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, t)| t.to_le_bytes()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| {
            TensorView::new(st_dtype(t.dtype), t.shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| CliError::internal(format!("tensor \"{name}\": {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let data = safetensors::tensor::serialize(views, None).map_err(|e| CliError::internal(e.to_string()))?;
    crate::error::write_atomic(path, &data)
}
