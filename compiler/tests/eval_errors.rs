//! `lathe eval` on bad model directories and arguments: one clear line naming the file or
//! tensor, exit code 2, no panic, and no output file left behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const LATHE: &str = env!("CARGO_BIN_EXE_lathe");

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/nemotron_h_tiny")
}

/// A fresh copy of the tiny fixture in its own temp dir.
fn copy(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lathe-eval-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("model")).expect("mkdir");
    for f in ["config.json", "model.safetensors"] {
        fs::copy(fixture().join(f), dir.join("model").join(f)).expect("copy");
    }
    dir
}

/// Runs `lathe eval` and checks the failure contract; returns stderr.
fn fails(dir: &Path, model: &Path, tokens: &str) -> String {
    fails_with(dir, model, tokens, &[])
}

/// [`fails`] with extra arguments.
fn fails_with(dir: &Path, model: &Path, tokens: &str, extra: &[&str]) -> String {
    let out = dir.join("logits.safetensors");
    let r = Command::new(LATHE)
        .args(["eval"])
        .arg(model)
        .arg(format!("--tokens={tokens}"))
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .expect("run lathe");
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(r.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
    assert!(!out.exists(), "output file left behind");
    let strays: Vec<_> = fs::read_dir(dir)
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(strays.is_empty(), "temporary files left behind: {strays:?}");
    err
}

fn st_path(dir: &Path) -> PathBuf {
    dir.join("model/model.safetensors")
}

fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize
}

/// Rewrites the JSON header of the safetensors file with `edit`, keeping the data.
fn edit_header(dir: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let bytes = fs::read(st_path(dir)).expect("read");
    let n = header_len(&bytes);
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("json");
    edit(&mut header);
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    fs::write(st_path(dir), out).expect("write");
}

fn edit_config(dir: &Path, from: &str, to: &str) {
    let p = dir.join("model/config.json");
    let text = fs::read_to_string(&p).expect("read");
    assert!(text.contains(from), "{from} not in config");
    fs::write(p, text.replace(from, to)).expect("write");
}

#[test]
fn eval_succeeds_on_the_fixture() {
    let dir = copy("ok");
    let out = dir.join("logits.safetensors");
    let r = Command::new(LATHE)
        .arg("eval")
        .arg(dir.join("model"))
        .args(["--tokens", "1,2,3", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let bytes = fs::read(&out).expect("output");
    let n = header_len(&bytes);
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("json");
    assert_eq!(header["logits"]["dtype"], "F32");
    assert_eq!(header["logits"]["shape"], serde_json::json!([3, 96]));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn truncated_safetensors() {
    let dir = copy("truncated");
    let bytes = fs::read(st_path(&dir)).expect("read");
    fs::write(st_path(&dir), &bytes[..bytes.len() - 100]).expect("write");
    let e = fails(&dir, &dir.join("model"), "1,2");
    assert!(e.contains("model.safetensors") && e.contains("out of range"), "{e}");
    fs::write(st_path(&dir), &bytes[..5]).expect("write");
    let e = fails(&dir, &dir.join("model"), "1,2");
    assert!(e.contains("model.safetensors") && e.contains("truncated"), "{e}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn header_length_larger_than_the_file() {
    let dir = copy("hlen");
    let mut bytes = fs::read(st_path(&dir)).expect("read");
    let bogus = bytes.len() as u64 * 2;
    bytes[..8].copy_from_slice(&bogus.to_le_bytes());
    fs::write(st_path(&dir), bytes).expect("write");
    let e = fails(&dir, &dir.join("model"), "1");
    assert!(e.contains("model.safetensors") && e.contains("larger than the file"), "{e}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn header_offsets_out_of_range() {
    let dir = copy("offsets");
    edit_header(&dir, |h| h["backbone.norm_f.weight"]["data_offsets"] = serde_json::json!([0, 1u64 << 40]));
    let e = fails(&dir, &dir.join("model"), "1");
    assert!(e.contains("backbone.norm_f.weight") && e.contains("out of range"), "{e}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn missing_tensor() {
    let dir = copy("missing");
    edit_header(&dir, |h| {
        h.as_object_mut().expect("object").remove("backbone.layers.1.mixer.k_proj.weight");
    });
    let e = fails(&dir, &dir.join("model"), "1");
    assert!(e.contains("missing tensor \"backbone.layers.1.mixer.k_proj.weight\""), "{e}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn shape_and_dtype_mismatch_with_the_config() {
    let dir = copy("shape");
    edit_config(&dir, "\"intermediate_size\": 48", "\"intermediate_size\": 40");
    let e = fails(&dir, &dir.join("model"), "1");
    assert!(
        e.contains("backbone.layers.3.mixer.up_proj.weight") && e.contains("[48, 32]") && e.contains("[40, 32]"),
        "{e}"
    );
    let dir2 = copy("dtype");
    edit_header(&dir2, |h| {
        let t = &mut h["backbone.norm_f.weight"];
        t["dtype"] = "I32".into();
    });
    let e = fails(&dir2, &dir2.join("model"), "1");
    assert!(e.contains("backbone.norm_f.weight") && e.contains("i32"), "{e}");
    let _ = fs::remove_dir_all(dir);
    let _ = fs::remove_dir_all(dir2);
}

#[test]
fn unknown_model_type_lists_the_supported_ones() {
    let dir = copy("type");
    edit_config(&dir, "\"nemotron_h\"", "\"gpt2\"");
    let e = fails(&dir, &dir.join("model"), "1");
    assert!(e.contains("\"gpt2\"") && e.contains("nemotron_h") && e.contains("qwen2"), "{e}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn invalid_json() {
    let dir = copy("json");
    fs::write(dir.join("model/config.json"), "{\"model_type\": \"nemotron_h\",").expect("write");
    let e = fails(&dir, &dir.join("model"), "1");
    assert!(e.contains("config.json") && e.contains("invalid JSON"), "{e}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn tokens_outside_the_vocabulary_and_bad_token_lists() {
    let dir = copy("tokens");
    let e = fails(&dir, &dir.join("model"), "1,96");
    assert!(e.contains("token 96 at position 1") && e.contains("[0, 96)"), "{e}");
    let e = fails(&dir, &dir.join("model"), "-1");
    assert!(e.contains("token -1"), "{e}");
    let e = fails(&dir, &dir.join("model"), "1,x");
    assert!(e.contains("not an integer"), "{e}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn missing_directory() {
    let dir = copy("nodir");
    let e = fails(&dir, &dir.join("does-not-exist"), "1");
    assert!(e.contains("does-not-exist"), "{e}");
    let _ = fs::remove_dir_all(dir);
}

/// A model whose f32 weights cannot fit (the shape-only 56B config: 224 GB) is refused before
/// anything is synthesized; without `--shape-only` a directory without weights is refused first.
#[cfg(target_os = "linux")]
#[test]
fn a_model_too_large_for_memory_is_refused() {
    let dir = copy("memory");
    let big = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/configs/nemotron-h-56b-base-8k");
    let e = fails(&dir, &big, "1");
    assert!(e.contains("nemotron-h-56b-base-8k: no weights") && e.contains("--shape-only"), "{e}");
    let e = fails_with(&dir, &big, "1", &["--shape-only"]);
    assert!(e.contains("nemotron-h-56b-base-8k") && e.contains("this process may allocate"), "{e}");
    let _ = fs::remove_dir_all(dir);
}
