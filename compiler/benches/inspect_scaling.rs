//! Compile-time scaling: the wall time of `lathe inspect DIR --stats` (shape-only import, the
//! default pipeline for prefill and decode, memory plan, cost model) on Nemotron-H configs of
//! 100 to 10,000 layers, made from the tiny fixture's config with its layer pattern repeated.
//! L4b asks that this stay near linear in the number of layers; the bench prints each time,
//! the time per layer and the growth per doubling. A bench, not a test: nothing is asserted.
//!
//! ```sh
//! cargo bench -p lathe --bench inspect_scaling [-- LAYERS...]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

const DEFAULT_LAYERS: [usize; 8] = [100, 200, 400, 800, 1600, 3200, 6400, 10_000];
const ROUNDS: usize = 3;

fn main() {
    if let Err(e) = run() {
        eprintln!("inspect_scaling: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let layers: Vec<usize> = match std::env::args().skip(1).filter(|a| a != "--bench").collect::<Vec<_>>() {
        args if args.is_empty() => DEFAULT_LAYERS.to_vec(),
        args => args
            .iter()
            .map(|a| a.parse().map_err(|_| format!("`{a}` is not a layer count")))
            .collect::<Result<_, _>>()?,
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let src = root.join("tests/fixtures/models/nemotron_h_tiny/config.json");
    let text = std::fs::read_to_string(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    let base: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", src.display()))?;
    let pattern: Vec<Value> =
        base["layers_block_type"].as_array().cloned().ok_or("the fixture has no layers_block_type")?;
    let work = std::env::temp_dir().join(format!("lathe-inspect-scaling-{}", std::process::id()));
    let lathe = env!("CARGO_BIN_EXE_lathe");
    println!("{:>7} {:>10} {:>12} {:>10}", "layers", "min s", "us/layer", "x/doubling");
    let mut prev: Option<(usize, f64)> = None;
    let result = (|| {
        for &n in &layers {
            let dir = work.join(format!("l{n}"));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let mut cfg = base.clone();
            let types: Vec<Value> = pattern.iter().cycle().take(n).cloned().collect();
            cfg["layers_block_type"] = Value::Array(types);
            cfg["num_hidden_layers"] = Value::from(n);
            std::fs::write(dir.join("config.json"), cfg.to_string()).map_err(|e| format!("{}: {e}", dir.display()))?;
            let best = (0..ROUNDS).map(|_| time_inspect(lathe, &dir)).collect::<Result<Vec<f64>, String>>()?;
            let best = best.into_iter().fold(f64::INFINITY, f64::min);
            // Growth normalized to one doubling, so uneven steps (6,400 -> 10,000) compare.
            let growth = prev.map_or(String::from("-"), |(pn, pt)| {
                format!("{:.2}", (best / pt).powf(1.0 / (n as f64 / pn as f64).log2()))
            });
            println!("{n:>7} {best:>10.3} {:>12.1} {growth:>10}", best / n as f64 * 1e6);
            prev = Some((n, best));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn time_inspect(lathe: &str, dir: &Path) -> Result<f64, String> {
    let t0 = Instant::now();
    let out =
        Command::new(lathe).arg("inspect").arg(dir).arg("--stats").output().map_err(|e| format!("{lathe}: {e}"))?;
    let secs = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!("lathe inspect {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(secs)
}
