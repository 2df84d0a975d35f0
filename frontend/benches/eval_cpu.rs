//! CPU throughput of the reference interpreter's `eval` against transformers on the same
//! checkpoint. Not a test: it prints measurements.
//!
//! ```sh
//! scripts/bench-cpu.sh            # checkpoint, then torch and lathe timed in turns
//! # or by hand:
//! .venv/bin/python tests/fixtures/gen.py --bench /tmp/lathe-bench   # checkpoint + torch time
//! LATHE_BENCH_DIR=/tmp/lathe-bench LATHE_PROFILE=1 cargo bench -p lathe-frontend --bench eval_cpu
//! ```
//!
//! `LATHE_BENCH_RUNS` sets the number of timed runs (10); `LATHE_PROFILE=1` adds the time per op.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use lathe_frontend::import::{import, ImportOptions};
use lathe_interp::{tensor::Tensor, CheckpointLoader};
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
        &ImportOptions {
            max_batch: 1,
            max_seq: Some(tokens.len() as u64),
            compute_dtype: DType::F32,
            shape_only: false,
        },
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
    let mut session = match lathe_interp::Session::new(&imp.module, &loader) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("eval_cpu: {e}");
            std::process::exit(1);
        }
    };
    // One warm-up run (it also reads the weights from the checkpoint), then timed runs; the VMs
    // this runs on are noisy, so the minimum (least disturbed) and the median are both reported,
    // beside the same two statistics of torch.
    let runs: usize = std::env::var("LATHE_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10).max(1);
    let mut times = Vec::new();
    for run in 0..=runs {
        // Profile the warm runs only.
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
    let mut warm = times[1..].to_vec();
    warm.sort_by(f64::total_cmp);
    let (ours_min, ours) = (warm[0], warm[warm.len() / 2]);
    let torch = timing["torch_seconds"].as_f64().unwrap_or(f64::NAN);
    let torch_min = timing["torch_min_seconds"].as_f64().unwrap_or(torch);
    let per_s = |s: f64| tokens.len() as f64 / s;
    println!("parameters        {}", timing["parameters"]);
    println!("tokens            {}", tokens.len());
    println!("import            {import_s:.3} s (headers, graph, verify)");
    println!("first run         {:.3} s (reads the weights)", times[0]);
    println!(
        "lathe interp eval min {ours_min:.3} s ({:.0} tok/s), median {ours:.3} s ({:.0} tok/s) of {runs} runs",
        per_s(ours_min),
        per_s(ours)
    );
    println!(
        "transformers      min {torch_min:.3} s ({:.0} tok/s), median {torch:.3} s ({:.0} tok/s); torch {}, {} threads",
        per_s(torch_min),
        per_s(torch),
        timing["torch"],
        timing["threads"]
    );
    println!("speedup           {:.2}x (min), {:.2}x (median)", torch_min / ours_min, torch / ours);
    for (op, calls, t) in session.profile() {
        println!("  {op:<16} {calls:>6} calls {:>9.3} ms per run", t.as_secs_f64() * 1e3 / runs as f64);
    }
}
