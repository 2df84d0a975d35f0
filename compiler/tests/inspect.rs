//! `lathe inspect --stats --json` on the real configs (shape-only) and a checkpoint.

use std::path::PathBuf;
use std::process::Command;

fn stats(dir: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(dir);
    let r = Command::new(env!("CARGO_BIN_EXE_lathe"))
        .arg("inspect")
        .arg(&path)
        .args(["--stats", "--json"])
        .output()
        .expect("run");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    serde_json::from_slice(&r.stdout).expect("one JSON object")
}

#[test]
fn real_configs_report_exact_parameters_and_layers() {
    let v = stats("configs/nemotron-h-8b-base-8k");
    assert_eq!(v["parameters"], 8_100_852_736u64);
    assert_eq!(v["weight_bytes"], 2 * 8_100_852_736u64, "bf16 weights");
    assert_eq!(v["layers"], serde_json::json!({"mamba": 24, "attention": 4, "mlp": 24}));
    assert_eq!(v["shape_only"], true);
    assert_eq!(v["ops"]["scan.ssd"], 24);
    assert_eq!(v["ops"]["attention"], 4);
    assert_eq!(v["ops"]["conv1d.causal"], 24);
    for (dir, layers) in [
        ("configs/nemotron-h-47b-base-8k", (45, 5, 48)),
        ("configs/nemotron-h-56b-base-8k", (54, 10, 54)),
        ("configs/nemotron-nano-9b-v2", (27, 4, 25)),
    ] {
        let v = stats(dir);
        assert_eq!(
            v["layers"],
            serde_json::json!({"mamba": layers.0, "attention": layers.1, "mlp": layers.2}),
            "{dir}"
        );
        assert!(v["parameters"].as_u64().is_some_and(|p| p > 8_000_000_000), "{dir}");
    }
}

#[test]
fn checkpoint_stats_count_what_the_files_hold() {
    let v = stats("models/qwen2_tiny");
    assert_eq!(v["shape_only"], false);
    // embed 96·32, lm_head 96·32, per layer: norms 2·32, q 32·32+32, k/v 2·(16·32+16), o 32·32, mlp 3·64·32; final norm 32.
    let layer = 2 * 32 + (32 * 32 + 32) + 2 * (16 * 32 + 16) + 32 * 32 + 3 * 64 * 32;
    assert_eq!(v["parameters"], 2 * 96 * 32 + 2 * layer + 32);
    assert_eq!(v["weight_bytes"], 4 * (2 * 96 * 32 + 2 * layer + 32));
}
