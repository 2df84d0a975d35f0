//! Logits of the reference interpreter against transformers on the committed small checkpoints
//! (`*_tiny` and friends; `*_real` with real per-head sizes), made by tests/fixtures/gen.py.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lathe_frontend::import::{import, ImportOptions};
use lathe_interp::{tensor::Tensor, CheckpointLoader};
use lathe_ir::DType;
use lathe_tensorfile::Header;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name)
}

/// `tokens` and `logits` from the fixture's reference.safetensors.
fn reference(dir: &Path) -> (Vec<i64>, Vec<usize>, Vec<f64>) {
    let h = Header::read(&dir.join("reference.safetensors")).expect("header");
    let load = |n: &str| {
        let info = h.get(n).expect("tensor");
        Tensor::from_le_bytes(info.dtype, info.shape.clone(), &h.read_bytes(n).expect("bytes")).expect("decode")
    };
    let (t, l) = (load("tokens"), load("logits"));
    (t.ints().to_vec(), l.shape.clone(), l.to_f64())
}

/// The logits of `eval` on `tokens`, and the model's depth and widest reduction (from the roles
/// and shapes of its weights: blocks, and the longest row a linear layer reduces over).
fn eval_logits(dir: &Path, tokens: &[i64]) -> (Tensor, usize, usize) {
    let imp = import(dir, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let weights = || imp.module.weights.iter().map(|(_, w)| w);
    let blocks: std::collections::BTreeSet<u32> =
        weights().filter_map(|w| w.role.and_then(lathe_ir::WeightRole::block)).collect();
    let width =
        weights().filter(|w| w.ty.rank() == 2).filter_map(|w| w.ty.shape[1].as_const()).max().unwrap_or(1) as usize;
    let mut inputs = HashMap::new();
    inputs.insert("tokens".to_string(), Tensor::from_i64(DType::I64, vec![1, tokens.len()], tokens.to_vec()));
    let loader = CheckpointLoader { checkpoint: imp.checkpoint.as_ref() };
    let mut out = lathe_interp::run(&imp.module, "eval", &inputs, &loader).unwrap_or_else(|e| panic!("{e}"));
    (out.remove(0).1, blocks.len(), width)
}

fn argmax(row: &[f64]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, v)| if *v > row[best] { i } else { best })
}

fn check(name: &str) {
    let dir = fixture(name);
    let (tokens, shape, want) = reference(&dir);
    let (got, layers, width) = eval_logits(&dir, &tokens);
    assert_eq!(got.shape, [1, shape[0], shape[1]], "{name}");
    let got = got.to_f64();
    let err = lathe_tests::normwise_error(&got, &want);
    // f32 compute end to end; the budget grows with the model's depth and widest reduction and
    // stays far under 1e-4 for these small models.
    assert!(layers >= 2 && width >= 32, "{name}: {layers} blocks, width {width}");
    let tol = lathe_tests::model_tolerance(DType::F32, layers, width);
    assert!(tol < 1e-4);
    assert!(err <= tol, "{name}: normwise error {err:.3e} > {tol:.3e}");
    let v = shape[1];
    for t in 0..shape[0] {
        assert_eq!(
            argmax(&got[t * v..(t + 1) * v]),
            argmax(&want[t * v..(t + 1) * v]),
            "{name}: top-1 at position {t}"
        );
    }
    eprintln!("{name}: normwise error {err:.3e} (tolerance {tol:.3e}: {layers} blocks, width {width})");
}

#[test]
fn nemotron_h_tiny_matches_transformers() {
    check("nemotron_h_tiny");
}

#[test]
fn nemotron_h_bf16_matches_transformers() {
    check("nemotron_h_bf16");
}

#[test]
fn nemotron_h_sharded_matches_transformers() {
    check("nemotron_h_sharded");
}

#[test]
fn mamba2_tiny_matches_transformers() {
    check("mamba2_tiny");
}

#[test]
fn qwen2_tiny_matches_transformers() {
    check("qwen2_tiny");
}

#[test]
fn nemotron_h_f16_matches_transformers() {
    check("nemotron_h_f16");
}

/// A config that spells settings two ways with different values (`use_bias: true` beside
/// `mamba_proj_bias: false`, `layers_block_type` beside a different `hybrid_override_pattern`,
/// `layer_norm_epsilon` beside `rms_norm_eps`, `head_dim` beside `attention_head_dim`): lathe
/// reads the spelling transformers' modeling code reads, and matches its logits.
#[test]
fn nemotron_h_spellings_follow_transformers() {
    check("nemotron_h_spellings");
}

/// Real per-head sizes, so the tile paths real checkpoints take are the ones compared: attention
/// head dim 128 with GQA 8:1 (q 1024 wide on a 512-wide stream, NoPE), Mamba head dim 80, state
/// 128, 2 groups, chunk 128, bf16 weights; 136 tokens cross one SSD chunk boundary.
#[test]
fn nemotron_h_real_matches_transformers() {
    check("nemotron_h_real");
}

/// Mamba head dim 64, state 256, one group, chunk 128, bf16 weights, 136 tokens (two chunks).
#[test]
fn mamba2_real_matches_transformers() {
    check("mamba2_real");
}

/// Attention head dim 128 with RoPE (base 1e6), GQA 4:1, tied embeddings, bf16 weights, 136 tokens.
#[test]
fn qwen2_real_matches_transformers() {
    check("qwen2_real");
}
