//! Cached programs agree with `eval`: extend of S tokens then N decode steps gives the logits of
//! an eval of S+N tokens, and extending in two chunks equals one extend.

use std::collections::HashMap;
use std::path::PathBuf;

use lathe_frontend::import::{import, ImportOptions, Imported};
use lathe_interp::{tensor::Tensor, CheckpointLoader};
use lathe_ir::DType;

fn load(name: &str) -> Imported {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name);
    import(&dir, &ImportOptions { max_seq: Some(32), ..ImportOptions::default() }).unwrap_or_else(|e| panic!("{e}"))
}

fn tokens(n: usize) -> Vec<i64> {
    (0..n as i64).map(|i| (i * 37 + 11) % 96).collect()
}

fn run(imp: &Imported, func: &str, inputs: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let loader = CheckpointLoader { checkpoint: imp.checkpoint.as_ref() };
    lathe_interp::run(&imp.module, func, &inputs, &loader)
        .unwrap_or_else(|e| panic!("{func}: {e}"))
        .into_iter()
        .collect()
}

fn step(
    imp: &Imported,
    func: &str,
    toks: &[i64],
    past: i64,
    caches: &HashMap<String, Tensor>,
) -> (Vec<f64>, HashMap<String, Tensor>) {
    let mut inputs = caches.clone();
    inputs.insert("tokens".into(), Tensor::from_i64(DType::I64, vec![1, toks.len()], toks.to_vec()));
    inputs.insert("past".into(), Tensor::from_i64(DType::I64, vec![1], vec![past]));
    let mut out = run(imp, func, inputs);
    let logits = out.remove("logits").expect("logits").to_f64();
    (logits, out)
}

fn eval(imp: &Imported, toks: &[i64]) -> Vec<f64> {
    let mut inputs = HashMap::new();
    inputs.insert("tokens".into(), Tensor::from_i64(DType::I64, vec![1, toks.len()], toks.to_vec()));
    run(imp, "eval", inputs).remove("logits").expect("logits").to_f64()
}

fn check(name: &str) {
    let imp = load(name);
    let v = imp.family.vocab_size();
    let (s, n) = (6, 4);
    let toks = tokens(s + n);
    let full = eval(&imp, &toks);
    let row = |t: usize| full[t * v..(t + 1) * v].to_vec();
    let (logits, mut caches) =
        step(&imp, "extend", &toks[..s], 0, &lathe_interp::zero_caches(imp.module.function("extend").expect("extend")));
    lathe_tests::assert_close(&format!("{name} extend"), &logits, &row(s - 1), DType::F32, 256);
    for j in 0..n {
        let (logits, next) = step(&imp, "decode", &toks[s + j..s + j + 1], (s + j) as i64, &caches);
        lathe_tests::assert_close(&format!("{name} decode {j}"), &logits, &row(s + j), DType::F32, 256);
        caches = next;
    }
    // Two chunks of extend equal one extend of both, logits and caches.
    let (one, one_caches) =
        step(&imp, "extend", &toks, 0, &lathe_interp::zero_caches(imp.module.function("extend").expect("extend")));
    let (_, mid) =
        step(&imp, "extend", &toks[..s], 0, &lathe_interp::zero_caches(imp.module.function("extend").expect("extend")));
    let (two, two_caches) = step(&imp, "extend", &toks[s..], s as i64, &mid);
    lathe_tests::assert_close(&format!("{name} two chunks"), &two, &one, DType::F32, 256);
    for (k, t) in &one_caches {
        lathe_tests::assert_close(&format!("{name} cache {k}"), &two_caches[k].to_f64(), &t.to_f64(), DType::F32, 256);
    }
}

#[test]
fn nemotron_h_decode_matches_eval() {
    check("nemotron_h_tiny");
}

#[test]
fn mamba2_decode_matches_eval() {
    check("mamba2_tiny");
}

#[test]
fn qwen2_decode_matches_eval() {
    check("qwen2_tiny");
}
