//! `lathe opt --pipeline`, `lathe list-passes` and `lathe eval --pipeline` from the command line.

use std::path::PathBuf;
use std::process::Command;

const LATHE: &str = env!("CARGO_BIN_EXE_lathe");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmp(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lathe-pipeline-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[test]
fn opt_runs_passes_prints_and_dumps() {
    let dir = tmp("opt");
    let input = root().join("passes/tests/lir/cse.lir");
    let r = Command::new(LATHE)
        .arg("opt")
        .arg(&input)
        .args(["--pipeline", "cse,dce", "--print-ir-before=cse", "--timing", "--stats", "--dump-ir-dir"])
        .arg(dir.join("dump"))
        .output()
        .expect("run");
    let (out, err) = (String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
    assert!(r.status.success(), "{err}");
    assert_eq!(out.matches("matmul").count(), 2, "{out}");
    assert!(err.contains("IR before cse") && err.contains("pass timing") && err.contains("nodes-merged"), "{err}");
    let parsed = lathe_ir::text::parse_module(&out).expect("output parses");
    assert!(lathe_ir::verify::verify(&parsed).is_ok());
    for f in ["00-input.lir", "01-cse.lir", "02-dce.lir"] {
        assert!(dir.join("dump").join(f).is_file(), "{f}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_pipelines_exit_2_with_the_valid_names() {
    for (p, want) in [
        ("cse,nope", "unknown pass `nope`"),
        ("fold-constants{bogus=1}", "unknown option `bogus`"),
        ("cse,", "trailing"),
    ] {
        let r = Command::new(LATHE)
            .arg("opt")
            .arg(root().join("examples/tiny_hybrid.lir"))
            .args(["--pipeline", p])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{p}: {err}");
        assert!(err.contains(want), "{p}: {err}");
    }
    let r = Command::new(LATHE).arg("list-passes").output().expect("run");
    let out = String::from_utf8_lossy(&r.stdout);
    for p in lathe_passes_names() {
        assert!(out.contains(p), "{out}");
    }
}

fn lathe_passes_names() -> [&'static str; 4] {
    ["canonicalize", "cse", "dce", "fold-constants"]
}

#[test]
fn eval_with_the_default_pipeline_gives_the_same_logits() {
    let dir = tmp("eval");
    let model = root().join("tests/fixtures/models/nemotron_h_tiny");
    let mut files = Vec::new();
    for (name, pipeline) in [("plain", ""), ("default", "default")] {
        let out = dir.join(format!("{name}.safetensors"));
        let r = Command::new(LATHE)
            .arg("eval")
            .arg(&model)
            .args(["--tokens", "5,4,3,2,1", "--pipeline", pipeline, "--out"])
            .arg(&out)
            .output()
            .expect("run");
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        files.push(std::fs::read(out).expect("read"));
    }
    assert_eq!(files[0], files[1], "the default pipeline keeps logits bit-identical");
    let _ = std::fs::remove_dir_all(dir);
}
