//! `lathe-tensorfile` — the one way lathe reads and writes safetensors files.
//!
//! # The central data structures
//! A [`Header`] is what one safetensors file says about its tensors (8-byte little-endian
//! header length, then JSON `name → {dtype, shape, data_offsets}`), validated against the file
//! before any byte of data is read: every entry's dtype is one lathe knows, its byte length is
//! exactly `numel · size(dtype)`, its offsets lie inside the data section, and no two entries
//! overlap. A [`Checkpoint`] is a directory of them: `model.safetensors`, or the shards listed
//! by `model.safetensors.index.json`, or any set of files an IR module names.
//!
//! # Data flow
//! Tensor bytes are read on demand by seeking to their offsets and streamed in blocks of the
//! original dtype ([`Checkpoint::stream`]): the interpreter decodes the blocks into its f32
//! storage, an artifact writer copies bf16 or fp8 bytes without widening them. [`write`]
//! serializes tensors given as raw little-endian bytes. No mmap, so the crate needs no `unsafe`.
//! It depends only on `lathe-numerics` (for [`DType`]) and `serde_json`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub use lathe_numerics::DType;
use serde_json::Value;

/// Errors of reading and writing tensor files; each names the file and, where there is one,
/// the tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorFileError {
    /// The file or directory could not be opened or read.
    #[error("{}: {message}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS message.
        message: String,
    },
    /// The file, its header or an index is malformed, truncated or inconsistent.
    #[error("{}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the tensor where there is one.
        message: String,
    },
    /// No tensor of that name.
    #[error("{}: no tensor \"{tensor}\"{}", path.display(), if has.is_empty() { String::new() } else { format!(" (has: {has})") })]
    MissingTensor {
        /// The file or directory searched.
        path: PathBuf,
        /// The tensor asked for.
        tensor: String,
        /// The names it holds, comma-separated (empty when there are too many to list).
        has: String,
    },
    /// A tensor is not of the dtype or shape the reader asked for.
    #[error("{}: tensor \"{tensor}\" is {found}, expected {expected}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// What the file holds.
        found: String,
        /// What was asked for.
        expected: String,
    },
}

type Result<T> = std::result::Result<T, TensorFileError>;

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> TensorFileError + '_ {
    move |e| TensorFileError::Io { path: path.to_path_buf(), message: e.to_string() }
}

fn malformed(path: &Path, message: impl Into<String>) -> TensorFileError {
    TensorFileError::Malformed { path: path.to_path_buf(), message: message.into() }
}

/// Where one tensor's data lies in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Its dtype.
    pub dtype: DType,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Absolute byte offset of its data in the file.
    pub offset: u64,
    /// Length of its data in bytes (`numel · size(dtype)`).
    pub len: u64,
}

impl TensorInfo {
    /// `F32[2, 3]`-style text for messages.
    pub fn describe(&self) -> String {
        format!("{}{:?}", self.dtype, self.shape)
    }
}

/// The validated header of one safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The file.
    pub path: PathBuf,
    /// Every tensor, by name.
    pub tensors: BTreeMap<String, TensorInfo>,
}

/// No real header is anywhere near this; a larger length field is corruption.
const MAX_HEADER_BYTES: u64 = 100 << 20;

impl Header {
    /// Reads and validates the header of `path`.
    pub fn read(path: &Path) -> Result<Header> {
        // Checked before opening: opening a FIFO would block, a device could be endless.
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        if !meta.is_file() {
            return Err(malformed(path, "not a regular file"));
        }
        let mut f = File::open(path).map_err(io_err(path))?;
        let size = meta.len();
        if size < 8 {
            return Err(malformed(path, format!("truncated: {size} bytes, shorter than the 8-byte header length")));
        }
        let mut len8 = [0u8; 8];
        f.read_exact(&mut len8).map_err(|e| malformed(path, format!("cannot read the header length: {e}")))?;
        let header_len = u64::from_le_bytes(len8);
        if header_len > size - 8 {
            return Err(malformed(path, format!("header length {header_len} is larger than the file ({size} bytes)")));
        }
        if header_len > MAX_HEADER_BYTES {
            return Err(malformed(path, format!("header length {header_len} is implausibly large")));
        }
        let mut header = vec![0u8; header_len as usize];
        f.read_exact(&mut header).map_err(|e| malformed(path, format!("cannot read the header: {e}")))?;
        Header::validate(path, &header, size)
    }

    /// Validates a whole safetensors file held in memory (`path` names it in messages): the
    /// same checks as [`Header::read`], for tests and the fuzz targets.
    pub fn parse(path: &Path, file: &[u8]) -> Result<Header> {
        let size = file.len() as u64;
        let Some((len8, rest)) = file.split_first_chunk::<8>() else {
            return Err(malformed(path, format!("truncated: {size} bytes, shorter than the 8-byte header length")));
        };
        let header_len = u64::from_le_bytes(*len8);
        if header_len > size - 8 {
            return Err(malformed(path, format!("header length {header_len} is larger than the file ({size} bytes)")));
        }
        if header_len > MAX_HEADER_BYTES {
            return Err(malformed(path, format!("header length {header_len} is implausibly large")));
        }
        Header::validate(path, &rest[..header_len as usize], size)
    }

    /// Checks the JSON `header` of a file of `size` bytes and records its tensors.
    fn validate(path: &Path, header: &[u8], size: u64) -> Result<Header> {
        let header_len = header.len() as u64;
        let Entries(entries) =
            serde_json::from_slice(header).map_err(|e| malformed(path, format!("header is not valid JSON: {e}")))?;
        if let Some(name) = first_duplicate(&entries) {
            return Err(malformed(path, format!("tensor \"{name}\" is listed twice in the header")));
        }
        let data_start = 8 + header_len;
        let data_len = size - data_start;
        let mut tensors = BTreeMap::new();
        let mut spans: Vec<(u64, u64, String)> = Vec::new();
        for (name, e) in entries {
            if name == "__metadata__" {
                continue;
            }
            let t = |m: &str| malformed(path, format!("tensor \"{name}\": {m}"));
            let dtype_name = e.get("dtype").and_then(Value::as_str).ok_or_else(|| t("missing dtype"))?;
            let dtype =
                DType::from_safetensors(dtype_name).ok_or_else(|| t(&format!("unsupported dtype {dtype_name}")))?;
            let shape = e
                .get("shape")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| t("missing or malformed shape"))?;
            let (begin, end) = e
                .get("data_offsets")
                .and_then(Value::as_array)
                .and_then(|a| match a.as_slice() {
                    [b, e] => Some((b.as_u64()?, e.as_u64()?)),
                    _ => None,
                })
                .ok_or_else(|| t("missing or malformed data_offsets"))?;
            if begin > end || end > data_len {
                return Err(t(&format!(
                    "data offsets [{begin}, {end}) are out of range: the data section holds {data_len} bytes"
                )));
            }
            let numel =
                shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).ok_or_else(|| t("shape overflows"))?;
            let want = numel.checked_mul(dtype.size_bytes() as u64).ok_or_else(|| t("shape overflows"))?;
            if end - begin != want {
                return Err(t(&format!("holds {} bytes but {dtype_name}{shape:?} needs {want}", end - begin)));
            }
            if want > 0 {
                spans.push((begin, end, name.clone()));
            }
            tensors.insert(name, TensorInfo { dtype, shape, offset: data_start + begin, len: want });
        }
        spans.sort();
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(malformed(
                    path,
                    format!(
                        "tensors \"{}\" and \"{}\" overlap (data offsets {}..{} and {}..{})",
                        w[0].2, w[1].2, w[0].0, w[0].1, w[1].0, w[1].1
                    ),
                ));
            }
        }
        Ok(Header { path: path.to_path_buf(), tensors })
    }

    /// The record of tensor `name`.
    pub fn get(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors.get(name).ok_or_else(|| TensorFileError::MissingTensor {
            path: self.path.clone(),
            tensor: name.into(),
            has: if self.tensors.len() <= 16 {
                self.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
            } else {
                String::new()
            },
        })
    }

    /// Streams the bytes of tensor `name` in blocks of at most [`BLOCK`] bytes (each a whole
    /// number of elements) to `sink`, in file order.
    pub fn stream(&self, name: &str, sink: &mut dyn FnMut(&[u8])) -> Result<()> {
        let info = self.get(name)?;
        let path = &self.path;
        let fail = |e: std::io::Error| malformed(path, format!("tensor \"{name}\": {e}"));
        let mut f = File::open(path).map_err(io_err(path))?;
        f.seek(SeekFrom::Start(info.offset)).map_err(fail)?;
        let mut left = info.len;
        let mut buf = vec![0u8; BLOCK.min(left as usize)];
        while left > 0 {
            let take = BLOCK.min(left as usize);
            f.read_exact(&mut buf[..take]).map_err(fail)?;
            sink(&buf[..take]);
            left -= take as u64;
        }
        Ok(())
    }

    /// The raw little-endian bytes of tensor `name`.
    pub fn read_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.get(name)?.len as usize);
        self.stream(name, &mut |b| out.extend_from_slice(b))?;
        Ok(out)
    }
}

/// Bytes per streamed block: 1 MiB, a multiple of every element size.
pub const BLOCK: usize = 1 << 20;

/// The tensors of a checkpoint directory: its files' headers and which file holds each name.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// The directory.
    pub dir: PathBuf,
    /// Headers by file name (relative to `dir`).
    pub files: BTreeMap<String, Header>,
    /// For every tensor name, the file holding it.
    pub index: BTreeMap<String, String>,
}

/// Whether `name` is a plain file name (no directory part), as shard names must be.
/// The entries of a JSON object in file order, duplicates kept: a plain map keeps the last of
/// two equal keys without a word, and a header that names a tensor twice is corrupt.
struct Entries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> std::result::Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = a.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The `weight_map` of a shard index, read with its duplicates (the rest is skipped).
struct IndexFile(Option<Entries>);

impl<'de> serde::Deserialize<'de> for IndexFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = IndexFile;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object with a `weight_map` object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> std::result::Result<IndexFile, A::Error> {
                let mut map = None;
                while let Some(key) = a.next_key::<String>()? {
                    if key == "weight_map" {
                        if map.is_some() {
                            return Err(serde::de::Error::custom("`weight_map` is given twice"));
                        }
                        map = Some(a.next_value::<Entries>()?);
                    } else {
                        a.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(IndexFile(map))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The first key that occurs twice.
fn first_duplicate(entries: &[(String, Value)]) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    entries.iter().map(|(k, _)| k.as_str()).find(|k| !seen.insert(*k))
}

/// The text of an input file lathe reads whole (a shard index, `config.json`, IR or kernel
/// text): a regular file — checked before it is opened, since a FIFO would block and a device
/// may never end — of at most `max` bytes, read no further than that, in UTF-8.
pub fn read_text(path: &Path, max: u64) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(malformed(path, "not a regular file"));
    }
    let mut bytes = Vec::new();
    File::open(path).map_err(io_err(path))?.take(max + 1).read_to_end(&mut bytes).map_err(io_err(path))?;
    if bytes.len() as u64 > max {
        return Err(malformed(path, format!("larger than {max} bytes, the most lathe reads (docs/limits.md)")));
    }
    String::from_utf8(bytes)
        .map_err(|e| malformed(path, format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
}

/// What a model directory holds of weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFiles {
    /// `model.safetensors` or `model.safetensors.index.json` (to be opened by
    /// [`Checkpoint::open`], which checks them).
    Safetensors,
    /// No weight file of any kind: the directory describes a model by its config alone.
    None,
}

/// Whether `dir` holds safetensors weights, none at all, or weights lathe cannot read — an
/// error naming the file: a `model.safetensors` (or index) that is a dangling link, a
/// directory or anything but a regular file; shards without their index; weights only in
/// another format (`pytorch_model.bin`, `.pt`, `.pth`, `.ckpt`, `.gguf`, ...).
pub fn weight_files(dir: &Path) -> Result<WeightFiles> {
    for name in ["model.safetensors.index.json", "model.safetensors"] {
        let path = dir.join(name);
        // `symlink_metadata` sees a dangling link that `exists()` calls absent.
        if let Ok(link) = std::fs::symlink_metadata(&path) {
            return match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Ok(WeightFiles::Safetensors),
                Ok(_) => Err(malformed(&path, "not a regular file")),
                Err(e) if link.file_type().is_symlink() => {
                    Err(malformed(&path, format!("a dangling symbolic link ({e})")))
                }
                Err(e) => Err(io_err(&path)(e)),
            };
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    if let Some(shard) = names.iter().find(|n| n.ends_with(".safetensors")) {
        return Err(malformed(
            &dir.join(shard),
            "safetensors weights without model.safetensors.index.json (shards need their index)",
        ));
    }
    const OTHER: [&str; 7] = [".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack"];
    if let Some(other) = names.iter().find(|n| OTHER.iter().any(|x| n.ends_with(x))) {
        return Err(malformed(
            &dir.join(other),
            "weights in a format lathe does not read; convert the checkpoint to safetensors",
        ));
    }
    Ok(WeightFiles::None)
}

fn plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\\')
}

impl Checkpoint {
    /// The single file or the shards of a Hugging Face checkpoint directory:
    /// `model.safetensors.index.json` when present (its `weight_map` names the shards),
    /// else `model.safetensors`.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let files: Vec<String> = if std::fs::symlink_metadata(&index).is_ok() {
            let text = read_text(&index, MAX_HEADER_BYTES)?;
            let IndexFile(map) =
                serde_json::from_str(&text).map_err(|e| malformed(&index, format!("invalid JSON: {e}")))?;
            let Entries(map) = map.ok_or_else(|| malformed(&index, "missing `weight_map`"))?;
            if let Some(name) = first_duplicate(&map) {
                return Err(malformed(&index, format!("`weight_map` lists tensor \"{name}\" twice")));
            }
            let mut files = Vec::new();
            for (tensor, file) in &map {
                let file = file
                    .as_str()
                    .ok_or_else(|| malformed(&index, format!("`weight_map[\"{tensor}\"]` is not a file name")))?;
                if !plain_file_name(file) {
                    return Err(malformed(&index, format!("shard name {file:?} must be a plain file name")));
                }
                if !files.iter().any(|f| f == file) {
                    files.push(file.to_string());
                }
            }
            files
        } else if std::fs::symlink_metadata(&single).is_ok() {
            vec!["model.safetensors".into()]
        } else {
            return Err(TensorFileError::Io {
                path: dir.to_path_buf(),
                message: "no model.safetensors or model.safetensors.index.json".into(),
            });
        };
        Checkpoint::open_files(dir, &files)
    }

    /// The headers of the named files under `dir` (each read once; names are plain file names).
    pub fn open_files(dir: &Path, files: &[String]) -> Result<Checkpoint> {
        let mut ck = Checkpoint { dir: dir.to_path_buf(), ..Checkpoint::default() };
        let mut sorted: Vec<&String> = files.iter().collect();
        sorted.sort();
        for file in sorted {
            ck.add_file(file)?;
        }
        Ok(ck)
    }

    /// Reads the header of `file` (a plain file name under the directory) into the checkpoint,
    /// unless it is there already; a tensor name another file holds too is an error.
    pub fn add_file(&mut self, file: &str) -> Result<()> {
        if self.files.contains_key(file) {
            return Ok(());
        }
        if !plain_file_name(file) {
            return Err(malformed(&self.dir, format!("tensor file name {file:?} must be a plain file name")));
        }
        let header = Header::read(&self.dir.join(file))?;
        // Every name is checked before any is recorded: a refused file leaves the checkpoint as
        // it was.
        if let Some((name, prev)) = header.tensors.keys().find_map(|n| self.index.get(n).map(|p| (n, p))) {
            return Err(malformed(&header.path, format!("tensor \"{name}\" is also in {prev}")));
        }
        for name in header.tensors.keys() {
            self.index.insert(name.clone(), file.to_string());
        }
        self.files.insert(file.to_string(), header);
        Ok(())
    }

    /// The header of the file holding tensor `name`.
    pub fn header_of(&self, name: &str) -> Result<&Header> {
        self.index.get(name).and_then(|f| self.files.get(f)).ok_or_else(|| TensorFileError::MissingTensor {
            path: self.dir.clone(),
            tensor: name.into(),
            has: String::new(),
        })
    }

    /// The record of tensor `name` and the path of its file.
    pub fn info(&self, name: &str) -> Result<(&TensorInfo, &Path)> {
        let h = self.header_of(name)?;
        Ok((h.get(name)?, &h.path))
    }

    /// The header of file `file` (a name relative to the directory).
    pub fn file(&self, file: &str) -> Result<&Header> {
        self.files.get(file).ok_or_else(|| TensorFileError::Io {
            path: self.dir.join(file),
            message: "not a file of this checkpoint".into(),
        })
    }

    /// Streams tensor `name` of file `file` (see [`Header::stream`]), checking that it has the
    /// dtype and shape the caller expects.
    pub fn stream(
        &self,
        file: &str,
        name: &str,
        dtype: DType,
        shape: &[usize],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        let h = self.file(file)?;
        let info = h.get(name)?;
        if info.dtype != dtype || info.shape != shape {
            return Err(TensorFileError::Mismatch {
                path: h.path.clone(),
                tensor: name.into(),
                found: info.describe(),
                expected: format!("{dtype}{shape:?}"),
            });
        }
        h.stream(name, sink)
    }
}

/// One tensor to write: name, dtype, shape and its little-endian bytes.
#[derive(Debug, Clone, Copy)]
pub struct TensorRef<'a> {
    /// Name (unique within the file).
    pub name: &'a str,
    /// Dtype of the bytes.
    pub dtype: DType,
    /// Shape; `bytes.len()` must be `numel · size(dtype)`.
    pub shape: &'a [usize],
    /// The data.
    pub bytes: &'a [u8],
}

/// Writes a safetensors file holding `tensors`, in the given order, to `w`. The header is
/// padded with spaces to a multiple of 8 bytes, as the reference implementation does.
pub fn write(w: &mut dyn Write, tensors: &[TensorRef<'_>], what: &Path) -> Result<()> {
    let mut names = std::collections::HashSet::new();
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for t in tensors {
        if !names.insert(t.name) {
            return Err(malformed(what, format!("two tensors are named \"{}\"", t.name)));
        }
        let numel = t.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        let want = numel.and_then(|n| n.checked_mul(t.dtype.size_bytes() as u64));
        if want != Some(t.bytes.len() as u64) {
            return Err(malformed(
                what,
                format!("tensor \"{}\": {} bytes do not hold {}{:?}", t.name, t.bytes.len(), t.dtype, t.shape),
            ));
        }
        let end = offset + t.bytes.len() as u64;
        header.insert(
            t.name.to_string(),
            serde_json::json!({"dtype": t.dtype.safetensors_name(), "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut text = serde_json::to_vec(&Value::Object(header)).map_err(|e| malformed(what, e.to_string()))?;
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let io = io_err(what);
    w.write_all(&(text.len() as u64).to_le_bytes()).map_err(&io)?;
    w.write_all(&text).map_err(&io)?;
    for t in tensors {
        w.write_all(t.bytes).map_err(&io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lathe-tensorfile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn raw_file(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
        let p = dir.join(name);
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(&p, bytes).expect("write");
        p
    }

    #[test]
    fn written_files_read_back_and_stream_in_order() {
        let dir = temp_dir("roundtrip");
        let a: Vec<u8> = (0..24).collect();
        let b = vec![7u8; 2];
        let path = dir.join("t.safetensors");
        let mut out = Vec::new();
        let tensors = [
            TensorRef { name: "a", dtype: DType::F32, shape: &[2, 3], bytes: &a },
            TensorRef { name: "b", dtype: DType::BF16, shape: &[1], bytes: &b },
        ];
        write(&mut out, &tensors, &path).expect("write");
        assert_eq!(out[..8].iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x)) % 8, 0);
        std::fs::write(&path, &out).expect("file");
        let h = Header::read(&path).expect("header");
        assert_eq!(h.get("a").expect("a").shape, vec![2, 3]);
        assert_eq!(h.read_bytes("a").expect("bytes"), a);
        assert_eq!(h.read_bytes("b").expect("bytes"), b);
        let ck = Checkpoint::open_files(&dir, &["t.safetensors".into()]).expect("checkpoint");
        let mut got = Vec::new();
        ck.stream("t.safetensors", "b", DType::BF16, &[1], &mut |x| got.extend_from_slice(x)).expect("stream");
        assert_eq!(got, b);
        let e = ck.stream("t.safetensors", "b", DType::F32, &[1], &mut |_| {}).expect_err("dtype");
        assert!(e.to_string().contains("tensor \"b\" is bf16[1], expected f32[1]"), "{e}");
        let e = write(&mut Vec::new(), &[tensors[0], tensors[0]], &path).expect_err("twice");
        assert!(e.to_string().contains("two tensors are named \"a\""), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn malformed_headers_are_refused_with_the_tensor_named() {
        let dir = temp_dir("bad");
        let cases: [(&str, &[u8], &str); 6] = [
            (r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &[0; 4], "out of range"),
            (r#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &[0; 8], "needs 12"),
            (r#"{"x":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#, &[0; 1], "unsupported dtype Q4"),
            (
                r#"{"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"y":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
                &[0; 6],
                "overlap",
            ),
            ("[1]", &[], "expected a JSON object"),
            (
                r#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
                &[0; 2],
                "tensor \"x\" is listed twice",
            ),
        ];
        for (i, (header, data, want)) in cases.iter().enumerate() {
            let p = raw_file(&dir, &format!("{i}.safetensors"), header, data);
            let e = Header::read(&p).expect_err(want);
            assert!(e.to_string().contains(want), "{header}: {e}");
        }
        std::fs::write(dir.join("short"), [1u8, 2]).expect("write");
        assert!(Header::read(&dir.join("short")).expect_err("short").to_string().contains("truncated"));
        assert!(Header::read(&dir).expect_err("dir").to_string().contains("not a regular file"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn shards_follow_the_index_and_names_are_unique() {
        let dir = temp_dir("shards");
        raw_file(&dir, "a.safetensors", r#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, &[1]);
        raw_file(&dir, "b.safetensors", r#"{"y":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, &[2]);
        let index = r#"{"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}"#;
        std::fs::write(dir.join("model.safetensors.index.json"), index).expect("index");
        let ck = Checkpoint::open(&dir).expect("open");
        assert_eq!(ck.header_of("y").expect("y").read_bytes("y").expect("bytes"), vec![2]);
        assert!(matches!(ck.info("z"), Err(TensorFileError::MissingTensor { .. })));
        raw_file(&dir, "b.safetensors", r#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, &[2]);
        let e = Checkpoint::open(&dir).expect_err("duplicate");
        assert!(e.to_string().contains("tensor \"x\" is also in a.safetensors"), "{e}");
        std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map": {"x": "../a"}}"#).expect("index");
        assert!(Checkpoint::open(&dir).expect_err("path").to_string().contains("plain file name"));
        let twice = r#"{"weight_map": {"x": "a.safetensors", "x": "b.safetensors"}}"#;
        std::fs::write(dir.join("model.safetensors.index.json"), twice).expect("index");
        assert!(Checkpoint::open(&dir).expect_err("twice").to_string().contains("lists tensor \"x\" twice"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn weight_files_are_safetensors_none_or_an_error() {
        let dir = temp_dir("discover");
        let fresh = |tag: &str| {
            let d = dir.join(tag);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("config.json"), "{}").expect("config");
            d
        };
        assert_eq!(weight_files(&fresh("none")).expect("none"), WeightFiles::None);
        let d = fresh("single");
        raw_file(&d, "model.safetensors", "{}", &[]);
        assert_eq!(weight_files(&d).expect("single"), WeightFiles::Safetensors);
        let refused = |d: &Path, want: &str| {
            let e = weight_files(d).expect_err(want).to_string();
            assert!(e.contains(want), "{e}");
        };
        let d = fresh("dangling");
        std::os::unix::fs::symlink(d.join("gone"), d.join("model.safetensors")).expect("link");
        refused(&d, "model.safetensors: a dangling symbolic link");
        let d = fresh("dir");
        std::fs::create_dir(d.join("model.safetensors")).expect("mkdir");
        refused(&d, "model.safetensors: not a regular file");
        let d = fresh("index-dir");
        std::fs::create_dir(d.join("model.safetensors.index.json")).expect("mkdir");
        refused(&d, "model.safetensors.index.json: not a regular file");
        let d = fresh("shards");
        raw_file(&d, "model-00001-of-00002.safetensors", "{}", &[]);
        refused(&d, "model-00001-of-00002.safetensors: safetensors weights without model.safetensors.index.json");
        let d = fresh("pickle");
        std::fs::write(d.join("pytorch_model.bin"), [0u8; 4]).expect("bin");
        refused(&d, "pytorch_model.bin: weights in a format lathe does not read");
        let d = fresh("fifo");
        let made = std::process::Command::new("mkfifo").arg(d.join("model.safetensors")).status();
        if made.is_ok_and(|s| s.success()) {
            refused(&d, "model.safetensors: not a regular file");
            // Opening the checkpoint refuses it as well, without blocking on the FIFO.
            let e = Checkpoint::open(&d).expect_err("fifo").to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
