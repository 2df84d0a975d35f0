//! `lathe inspect --stats --json` on the real configs (shape-only) and a checkpoint, and
//! `lathe bench` on the tiny fixtures (what it reports, never how fast).

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

fn stats_with(dir: &str, extra: &[&str]) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(dir);
    let r = Command::new(env!("CARGO_BIN_EXE_lathe"))
        .arg("inspect")
        .arg(&path)
        .args(["--stats", "--json"])
        .args(extra)
        .output()
        .expect("run");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    serde_json::from_slice(&r.stdout).expect("one JSON object")
}

/// KV (bf16) of the attention layers + SSM state (f32) + conv state (bf16) of the Mamba layers,
/// per sequence at `context` tokens, from the config alone.
fn cache_closed_form(config: &serde_json::Value, context: u64) -> u64 {
    let u = |k: &str| config[k].as_u64().unwrap_or_else(|| panic!("{k}"));
    let pattern = config["hybrid_override_pattern"].as_str().expect("pattern");
    let (attn, mamba) = (pattern.matches('*').count() as u64, pattern.matches('M').count() as u64);
    let head = config.get("head_dim").or(config.get("attention_head_dim")).and_then(|v| v.as_u64()).expect("head dim");
    let d_inner = u("mamba_num_heads") * u("mamba_head_dim");
    let kv = 2 * attn * context * u("num_key_value_heads") * head * 2;
    let ssm = mamba * d_inner * u("ssm_state_size") * 4;
    let conv = mamba * (u("conv_kernel") - 1) * (d_inner + 2 * u("n_groups") * u("ssm_state_size")) * 2;
    kv + ssm + conv
}

#[test]
fn default_pipeline_launches_cache_bytes_and_roofline_on_real_configs() {
    // The 8B's decode budget is L7's: at most 145 launches a step, bf16 and W8A16 alike.
    for (dir, budget) in [("configs/nemotron-h-8b-base-8k", 145u64), ("configs/nemotron-h-47b-base-8k", 256)] {
        let fp8 = stats_with(dir, &["--pipeline", "quantize-fp8,default", "--context", "65536"]);
        let fp8_decode = fp8["kernels"]["decode"].as_u64().expect("decode launches");
        assert!(fp8_decode <= budget, "{dir}: {fp8_decode} launches with W8A16");
        let v = stats_with(dir, &["--pipeline", "default", "--context", "65536"]);
        let decode = v["kernels"]["decode"].as_u64().expect("decode launches");
        // Every decode launch but the first overlaps its predecessor (no memset in the step).
        assert_eq!(v["overlapping_launches"]["decode"].as_u64(), Some(decode - 1), "{dir}");
        let unfused = v["kernels_unfused"]["decode"].as_u64().expect("unfused");
        assert!(decode <= budget && unfused > 4 * decode, "{dir}: {decode} launches (unfused {unfused})");
        let config: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(dir).join("config.json"),
            )
            .expect("config"),
        )
        .expect("json");
        assert_eq!(v["cache_bytes"].as_u64(), Some(cache_closed_form(&config, 65536)), "{dir}");
        // Decode cannot beat reading every weight once at the roofline bandwidth.
        let weights = v["weight_bytes"].as_f64().expect("weights");
        let roofline_s = v["cost"]["decode"]["roofline_ms"].as_f64().expect("roofline") * 1e-3;
        let bw = v["gpu"]["bandwidth_bytes_per_s"].as_f64().expect("bandwidth");
        assert!(roofline_s >= 0.9 * weights / bw && roofline_s < 1.5 * weights / bw, "{dir}: {roofline_s}");
        let peak = v["peak_activation_bytes"].as_u64().expect("peak");
        let mem = &v["memory_by_program"]["extend"];
        assert!(
            peak > 0 && mem["peak"].as_u64() <= Some(peak) && mem["peak"].as_u64() < mem["no_reuse"].as_u64(),
            "{dir}: {v}"
        );
        for group in ["gemv", "ssd_decode_step", "attention_decode", "scatter_cache", "gather"] {
            assert!(v["groups_by_strategy"]["decode"][group].as_u64().is_some_and(|n| n > 0), "{dir}: no {group}");
        }
    }
    // The 8B at 65,536 tokens: 1 GiB of KV, 96 MiB of SSM state, 1.4 MiB of conv state.
    assert_eq!(stats_with("configs/nemotron-h-8b-base-8k", &["--context", "65536"])["cache_bytes"], 1_175_879_680u64);
}

#[test]
fn inspect_formats_and_after() {
    let run = |args: &[&str]| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/nemotron_h_tiny");
        let r = Command::new(env!("CARGO_BIN_EXE_lathe")).arg("inspect").arg(&path).args(args).output().expect("run");
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        String::from_utf8(r.stdout).expect("utf8")
    };
    let dot = run(&["--pipeline", "default", "--format", "dot"]);
    assert!(
        dot.starts_with("digraph") && dot.contains("label=\"ssd_decode_step\"") && dot.contains("label=\"gemv\""),
        "{dot}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&["--pipeline", "default", "--format", "json"])).expect("json");
    assert!(json["functions"][0]["graph"]["nodes"].as_array().is_some_and(|n| !n.is_empty()));
    let after = run(&["--pipeline", "default", "--after", "fuse-ssd"]);
    assert!(after.contains("strategy=ssd_decode_step") && !after.contains("strategy=gemv"), "{after}");
    let r = Command::new(env!("CARGO_BIN_EXE_lathe"))
        .arg("inspect")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/nemotron_h_tiny"))
        .args(["--pipeline", "cse", "--after", "fuse-ssd"])
        .output()
        .expect("run");
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("no such pass"));
}

fn bench(dir: &str, args: &[&str]) -> std::process::Output {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(dir);
    Command::new(env!("CARGO_BIN_EXE_lathe")).arg("bench").arg(&path).args(args).output().expect("run")
}

#[test]
fn bench_reports_prefill_and_decode_against_the_roofline() {
    for dir in ["models/nemotron_h_tiny", "models/qwen2_tiny", "models/mamba2_tiny"] {
        let r = bench(dir, &["--prompt", "7", "--decode", "3", "--runs", "2", "--json"]);
        assert!(r.status.success(), "{dir}: {}", String::from_utf8_lossy(&r.stderr));
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("one JSON object");
        assert_eq!(v["prefill"]["tokens"], 7, "{dir}");
        assert_eq!(v["decode"]["steps"], 3, "{dir}");
        assert_eq!(v["runs"], 2, "{dir}");
        let positive = |p: &[&str]| p.iter().fold(&v, |v, k| &v[*k]).as_f64().is_some_and(|x| x > 0.0 && x.is_finite());
        for p in [
            &["machine", "f32_gemm_flops"][..],
            &["machine", "copy_bandwidth_bytes_per_s"],
            &["prefill", "min_s"],
            &["prefill", "median_s"],
            &["prefill", "roofline_s"],
            &["decode", "median_s_per_token"],
            &["decode", "roofline_s_per_token"],
        ] {
            assert!(positive(p), "{dir}: {p:?} in {v}");
        }
        assert!(v["prefill"]["min_s"].as_f64() <= v["prefill"]["median_s"].as_f64(), "{dir}");
    }
    // A prefill longer than the pipeline's chunk goes in pieces; the text form names both phases.
    let chunked = "canonicalize,fold-constants,cse,dce,fuse-ssd,fuse-elementwise,schedule-hybrid{prefill-chunk=4},dce";
    let r = bench("models/nemotron_h_tiny", &["--prompt", "10", "--decode", "1", "--runs", "1", "--pipeline", chunked]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(text.contains("prefill   10 tokens") && text.contains("decode    1 steps"), "{text}");
}

#[test]
fn bench_rejects_bad_arguments_in_one_line() {
    for (args, want) in [
        (&["--backend", "cuda"][..], "--backend cuda: not available yet"),
        (&["--prompt", "0"], "--prompt and --runs must be at least 1"),
        (&["--runs", "0"], "--prompt and --runs must be at least 1"),
        (&["--pipeline", "no-such-pass"], "no-such-pass"),
        (&["--prompt", "18446744073709551615", "--decode", "1"], "exceeds the 1048576 tokens"),
    ] {
        let r = bench("models/nemotron_h_tiny", args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want) && err.trim().lines().count() == 1 && !err.contains("panicked"), "{args:?}: {err}");
    }
    let r = bench("models/does_not_exist", &[]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("does_not_exist"));
}
