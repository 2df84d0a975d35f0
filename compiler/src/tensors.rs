//! Interpreter tensors to and from safetensors files.

use std::path::Path;

use lathe_ir::interp::tensor::{Data, Tensor};
use lathe_ir::numerics as nx;
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
    let shape = view.shape().to_vec();
    let b = view.data();
    let n: usize = shape.iter().product();
    if b.len() != n * dtype.size_bytes() {
        return Err(CliError::input(format!("{what}: {} bytes for {n} elements of {dtype}", b.len())));
    }
    let w2 = |i: usize| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
    Ok(match dtype {
        DType::F32 => Tensor::from_f32(
            dtype,
            shape,
            b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        ),
        DType::BF16 => Tensor::from_f32(dtype, shape, (0..n).map(|i| nx::bf16_bits_to_f32(w2(i))).collect()),
        DType::F16 => Tensor::from_f32(dtype, shape, (0..n).map(|i| nx::f16_bits_to_f32(w2(i))).collect()),
        DType::F8E4M3 => Tensor::from_f32(dtype, shape, b.iter().map(|&c| nx::e4m3_to_f32(c)).collect()),
        DType::F8E5M2 => Tensor::from_f32(dtype, shape, b.iter().map(|&c| nx::e5m2_to_f32(c)).collect()),
        DType::I64 => Tensor::from_i64(
            dtype,
            shape,
            b.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect(),
        ),
        DType::I32 => Tensor::from_i64(
            dtype,
            shape,
            b.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
        ),
        DType::I8 => Tensor::from_i64(dtype, shape, b.iter().map(|&c| i64::from(c as i8)).collect()),
        DType::U8 | DType::Bool => Tensor::from_i64(dtype, shape, b.iter().map(|&c| i64::from(c)).collect()),
    })
}

/// Encodes a tensor's elements as little-endian bytes of its dtype.
pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    match (&t.data, t.dtype) {
        (Data::F(v), DType::F32) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        (Data::F(v), DType::BF16) => v.iter().flat_map(|&x| nx::f32_to_bf16_bits(x).to_le_bytes()).collect(),
        (Data::F(v), DType::F16) => v.iter().flat_map(|&x| nx::f32_to_f16_bits(x).to_le_bytes()).collect(),
        (Data::F(v), DType::F8E4M3) => v.iter().map(|&x| nx::f32_to_e4m3(x)).collect(),
        (Data::F(v), _) => v.iter().map(|&x| nx::f32_to_e5m2(x)).collect(),
        (Data::I(v), DType::I64) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        (Data::I(v), DType::I32) => v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
        (Data::I(v), _) => v.iter().map(|&x| x as u8).collect(),
    }
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
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, t)| to_bytes(t)).collect();
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
