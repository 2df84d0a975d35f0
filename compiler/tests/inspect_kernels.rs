//! `lathe inspect MODEL --kernels`: every distinct kernel the templates make of a real config,
//! assembled by ptxas with its registers and no spills, with its launch and cost; the groups
//! without a template listed; one kernel's IR and PTX with `--kernel`.

use std::path::PathBuf;
use std::process::Command;

const LATHE: &str = env!("CARGO_BIN_EXE_lathe");

fn config(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/configs").join(name)
}

fn lathe(args: &[&str], model: &PathBuf) -> (i32, String, String) {
    let r = Command::new(LATHE).arg("inspect").arg(model).args(args).output().expect("run");
    (
        r.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

#[test]
fn every_kernel_of_the_8b_config_has_registers_no_spills_and_a_cost() {
    let model = config("nemotron-h-8b-base-8k");
    let (code, out, err) = lathe(&["--shape-only", "--kernels", "--json"], &model);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["target"], "sm_90");
    let kernels = v["kernels"].as_array().expect("kernels");
    assert!(kernels.len() >= 8, "{out}");
    let strategies: Vec<&str> = kernels.iter().filter_map(|k| k["strategy"].as_str()).collect();
    for s in ["gather", "elementwise", "scatter_cache", "gemv", "ssd_decode_step", "attention_decode"] {
        assert!(strategies.contains(&s), "{s} in {strategies:?}");
    }
    for k in kernels {
        assert!(k["registers"].as_u64().unwrap_or(0) > 0, "{k}");
        assert_eq!(k["spill_bytes"], 0, "{k}");
        assert!(k["grid"][0].as_u64().unwrap_or(0) >= 1 && k["block"][0] == 256, "{k}");
        assert!(k["bytes"].as_f64().unwrap_or(0.0) > 0.0, "{k}");
    }
    // Each decode kernel's sector efficiency from sampled CTAs: the GEMVs' weight streams in
    // full sectors, the decode attention's cache reads too.
    let decode: Vec<&serde_json::Value> =
        kernels.iter().filter(|k| k["name"].as_str().is_some_and(|n| n.starts_with("decode_"))).collect();
    assert!(decode.len() >= 6, "{out}");
    for k in &decode {
        let all = k["sector_efficiency"].as_f64().unwrap_or_else(|| panic!("measured: {k}"));
        assert!(all > 0.5 && all <= 1.0, "{k}");
        if k["strategy"] == "gemv" {
            assert_eq!(k["weight_sector_efficiency"].as_f64(), Some(1.0), "{k}");
        }
        if k["strategy"] == "attention_decode" {
            assert_eq!(k["sector_efficiency"].as_f64(), Some(1.0), "{k}");
        }
    }
    // What waits for later templates is listed by strategy and reason.
    let pending = v["pending"].as_object().expect("pending");
    assert!(pending.keys().any(|k| k.starts_with("gemm:")), "{pending:?}");
    // The text table and one kernel's IR and PTX.
    let (code, out, err) = lathe(&["--shape-only", "--kernels"], &model);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("distinct kernels for sm_90") && out.contains("groups have no template yet"), "{out}");
    let name = kernels[0]["name"].as_str().expect("a name");
    let (code, out, err) = lathe(&["--shape-only", "--kernels", "--kernel", name], &model);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("kernel @{name}")) && out.contains(&format!(".entry {name}")), "{out}");
}

#[test]
fn bad_kernel_flags_are_one_line_errors() {
    let model = config("nemotron-h-8b-base-8k");
    for (args, want) in [
        (vec!["--shape-only", "--kernels", "--kernel", "nope"], "--kernel nope: no such kernel"),
        (vec!["--shape-only", "--kernel", "x"], "--kernel NAME goes with --kernels"),
        (vec!["--shape-only", "--kernels", "--target", "sm_99"], "--target sm_99: unknown"),
    ] {
        let (code, _, err) = lathe(&args, &model);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want) && err.lines().count() == 1, "{args:?}: {err}");
    }
}
