//! Safetensors checkpoints: headers read at import, tensor bytes read on demand.
//!
//! A checkpoint directory holds `model.safetensors`, or shards listed by
//! `model.safetensors.index.json` (`weight_map: tensor → file`). Import reads only the headers
//! (8-byte little-endian length, then JSON `name → {dtype, shape, data_offsets}`) and validates
//! every entry against the file size, so a truncated or corrupted file is refused before any
//! weight is touched. Tensor data is read later by seeking to its offsets — no mmap, so this
//! crate stays free of `unsafe`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use lathe_ir::interp::tensor::{Data, Tensor};
use lathe_ir::DType;
use serde_json::Value;

use crate::FrontendError;

/// Where one tensor lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The file holding it.
    pub file: PathBuf,
    /// Its dtype.
    pub dtype: DType,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Absolute byte offset of its data in the file.
    pub offset: u64,
    /// Length of its data in bytes.
    pub len: u64,
}

/// The tensors of a checkpoint directory, by name.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// The directory.
    pub dir: PathBuf,
    /// Every tensor, sorted by name.
    pub tensors: BTreeMap<String, TensorInfo>,
}

fn bad(path: &Path, message: impl Into<String>) -> FrontendError {
    FrontendError::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

/// The IR dtype of a safetensors dtype name.
pub fn dtype_of(name: &str) -> Option<DType> {
    Some(match name {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F8_E4M3" => DType::F8E4M3,
        "F8_E5M2" => DType::F8E5M2,
        "I64" => DType::I64,
        "I32" => DType::I32,
        "I8" => DType::I8,
        "U8" => DType::U8,
        "BOOL" => DType::Bool,
        _ => return None,
    })
}

/// Reads and validates the header of one safetensors file.
pub fn read_header(path: &Path) -> Result<BTreeMap<String, TensorInfo>, FrontendError> {
    let mut f = File::open(path).map_err(|e| FrontendError::Io { path: path.to_path_buf(), message: e.to_string() })?;
    let size = f.metadata().map_err(|e| FrontendError::Io { path: path.to_path_buf(), message: e.to_string() })?.len();
    let mut len8 = [0u8; 8];
    if size < 8 {
        return Err(bad(path, format!("truncated: {size} bytes, shorter than the 8-byte header length")));
    }
    f.read_exact(&mut len8).map_err(|e| bad(path, format!("cannot read the header length: {e}")))?;
    let header_len = u64::from_le_bytes(len8);
    if header_len > size - 8 {
        return Err(bad(path, format!("header length {header_len} is larger than the file ({size} bytes)")));
    }
    // No real header is anywhere near this; a larger one is a corrupted length field.
    if header_len > 100 << 20 {
        return Err(bad(path, format!("header length {header_len} is implausibly large")));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(|e| bad(path, format!("cannot read the header: {e}")))?;
    let json: Value =
        serde_json::from_slice(&header).map_err(|e| bad(path, format!("header is not valid JSON: {e}")))?;
    let Value::Object(entries) = json else {
        return Err(bad(path, "header is not a JSON object"));
    };
    let data_start = 8 + header_len;
    let data_len = size - data_start;
    let mut out = BTreeMap::new();
    for (name, e) in entries {
        if name == "__metadata__" {
            continue;
        }
        let t = |m: &str| bad(path, format!("tensor \"{name}\": {m}"));
        let dtype_name = e.get("dtype").and_then(Value::as_str).ok_or_else(|| t("missing dtype"))?;
        let dtype = dtype_of(dtype_name).ok_or_else(|| t(&format!("unsupported dtype {dtype_name}")))?;
        let shape = e
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| t("missing or malformed shape"))?;
        let offsets = e
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| match a.as_slice() {
                [b, e] => Some((b.as_u64()?, e.as_u64()?)),
                _ => None,
            })
            .ok_or_else(|| t("missing or malformed data_offsets"))?;
        let (begin, end) = offsets;
        if begin > end || end > data_len {
            return Err(t(&format!(
                "data offsets [{begin}, {end}) are out of range: the data section holds {data_len} bytes"
            )));
        }
        let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).ok_or_else(|| t("shape overflows"))?;
        let want = numel.checked_mul(dtype.size_bytes() as u64).ok_or_else(|| t("shape overflows"))?;
        if end - begin != want {
            return Err(t(&format!("holds {} bytes but {dtype_name}{shape:?} needs {want}", end - begin)));
        }
        out.insert(name, TensorInfo { file: path.to_path_buf(), dtype, shape, offset: data_start + begin, len: want });
    }
    Ok(out)
}

impl Checkpoint {
    /// Reads the headers of every safetensors file of `dir`.
    pub fn open(dir: &Path) -> Result<Checkpoint, FrontendError> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let files: Vec<PathBuf> = if index.is_file() {
            let text = std::fs::read_to_string(&index)
                .map_err(|e| FrontendError::Io { path: index.clone(), message: e.to_string() })?;
            let json: Value = serde_json::from_str(&text).map_err(|e| bad(&index, format!("invalid JSON: {e}")))?;
            let map =
                json.get("weight_map").and_then(Value::as_object).ok_or_else(|| bad(&index, "missing `weight_map`"))?;
            let mut files: Vec<PathBuf> = Vec::new();
            for (tensor, file) in map {
                let file = file
                    .as_str()
                    .ok_or_else(|| bad(&index, format!("`weight_map[\"{tensor}\"]` is not a file name")))?;
                if file.contains('/') || file.contains('\\') || file == ".." {
                    return Err(bad(&index, format!("shard name {file:?} must be a plain file name")));
                }
                let p = dir.join(file);
                if !files.contains(&p) {
                    files.push(p);
                }
            }
            files.sort();
            files
        } else if single.is_file() {
            vec![single]
        } else {
            return Err(FrontendError::Io {
                path: dir.to_path_buf(),
                message: "no model.safetensors or model.safetensors.index.json".into(),
            });
        };
        let mut tensors = BTreeMap::new();
        for f in &files {
            for (name, info) in read_header(f)? {
                if let Some(prev) = tensors.insert(name.clone(), info) {
                    return Err(bad(f, format!("tensor \"{name}\" is also in {}", prev.file.display())));
                }
            }
        }
        Ok(Checkpoint { dir: dir.to_path_buf(), tensors })
    }

    /// The record of tensor `name` and its file, positioned at the tensor's first byte.
    fn open_at(&self, name: &str) -> Result<(&TensorInfo, File), FrontendError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| FrontendError::MissingTensor { dir: self.dir.clone(), tensor: name.into() })?;
        let io = |e: std::io::Error| bad(&info.file, format!("tensor \"{name}\": {e}"));
        let mut f = File::open(&info.file).map_err(io)?;
        f.seek(SeekFrom::Start(info.offset)).map_err(io)?;
        Ok((info, f))
    }

    /// Reads and decodes one tensor, streaming its bytes through a small buffer into the
    /// tensor's storage (no copy of the raw bytes is held).
    pub fn read_tensor(&self, name: &str) -> Result<Tensor, FrontendError> {
        /// Bytes per read; a multiple of every element size.
        const BLOCK: usize = 1 << 20;
        let (info, mut f) = self.open_at(name)?;
        let io = |e: std::io::Error| bad(&info.file, format!("tensor \"{name}\": {e}"));
        let len = info.len as usize;
        let mut data = Data::with_capacity(info.dtype, len / info.dtype.size_bytes().max(1));
        let mut buf = vec![0u8; BLOCK.min(len)];
        let mut left = len;
        while left > 0 {
            let take = BLOCK.min(left);
            f.read_exact(&mut buf[..take]).map_err(io)?;
            data.extend_from_le_bytes(info.dtype, &buf[..take]);
            left -= take;
        }
        Ok(Tensor { dtype: info.dtype, shape: info.shape.clone(), data })
    }

    /// Reads the raw little-endian bytes of one tensor.
    pub fn read_bytes(&self, name: &str) -> Result<Vec<u8>, FrontendError> {
        let (info, mut f) = self.open_at(name)?;
        let io = |e: std::io::Error| bad(&info.file, format!("tensor \"{name}\": {e}"));
        let mut buf = vec![0u8; info.len as usize];
        f.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }
}
