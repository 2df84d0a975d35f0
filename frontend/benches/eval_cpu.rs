//! CPU throughput of the reference interpreter's `eval` against transformers on the same
//! checkpoint. Not a test: it prints measurements.
//!
//! ```sh
//! .venv/bin/python tests/fixtures/gen.py --bench /tmp/lathe-bench   # checkpoint + torch time
//! LATHE_BENCH_DIR=/tmp/lathe-bench cargo bench -p lathe-frontend --bench eval_cpu
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use lathe_frontend::import::{import, CheckpointLoader, ImportOptions};
use lathe_ir::interp::{self, tensor::Tensor};
use lathe_ir::DType;

fn main() {
    let Some(dir) = std::env::var_os("LATHE_BENCH_DIR").map(PathBuf::from) else {
        eprintln!("eval_cpu: set LATHE_BENCH_DIR to a directory made by `gen.py --bench DIR`; skipping");
        return;
    };
    let timing: serde_json::Value =
        match std::fs::read(dir.join("torch_timing.json")).map(|b| serde_json::from_slice(&b)) {
            Ok(Ok(v)) => v,
            _ => {
                eprintln!("eval_cpu: {}/torch_timing.json is missing or invalid", dir.display());
                std::process::exit(2);
            }
        };
    let tokens: Vec<i64> =
        timing["token_ids"].as_array().map(|a| a.iter().filter_map(|v| v.as_i64()).collect()).unwrap_or_default();
    let t0 = Instant::now();
    let imp = match import(
        &dir,
        &ImportOptions { max_batch: 1, max_seq: Some(tokens.len() as u64), compute_dtype: DType::F32 },
    ) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("eval_cpu: {e}");
            std::process::exit(2);
        }
    };
    let import_s = t0.elapsed().as_secs_f64();
    let mut inputs = HashMap::new();
    inputs.insert("tokens".to_string(), Tensor::from_i64(DType::I64, vec![1, tokens.len()], tokens.clone()));
    let loader = CheckpointLoader { checkpoint: imp.checkpoint.as_ref() };
    // One session: the weights are read once, as an engine loads them once.
    let mut session = match interp::Session::new(&imp.module, &loader) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("eval_cpu: {e}");
            std::process::exit(1);
        }
    };
    let mut times = Vec::new();
    for run in 0..4 {
        // Profile the warm runs only (the first also reads the weights).
        if run == 1 && std::env::var_os("LATHE_PROFILE").is_some() {
            session.enable_profile();
        }
        let t = Instant::now();
        if let Err(e) = session.run("eval", &inputs) {
            eprintln!("eval_cpu: {e}");
            std::process::exit(1);
        }
        times.push(t.elapsed().as_secs_f64());
    }
    // The first run also reads the weights from the checkpoint; it is the warm-up, as for torch,
    // and the median of the others is reported.
    let mut warm = times[1..].to_vec();
    warm.sort_by(f64::total_cmp);
    let ours = warm[warm.len() / 2];
    let torch = timing["torch_seconds"].as_f64().unwrap_or(f64::NAN);
    println!("parameters        {}", timing["parameters"]);
    println!("tokens            {}", tokens.len());
    println!("import            {import_s:.3} s (headers, graph, verify)");
    println!(
        "lathe interp eval {ours:.3} s  ({:.0} tokens/s; first run, reading the weights: {:.3} s)",
        tokens.len() as f64 / ours,
        times[0]
    );
    println!(
        "transformers      {torch:.3} s  ({:.0} tokens/s, torch {}, {} threads)",
        tokens.len() as f64 / torch,
        timing["torch"],
        timing["threads"]
    );
    println!("speedup           {:.2}x", torch / ours);
    for (op, calls, t) in session.profile() {
        println!("  {op:<16} {calls:>6} calls {:>9.3} ms per run", t.as_secs_f64() * 1e3 / (times.len() - 1) as f64);
    }
}
