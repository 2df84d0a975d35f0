//! `lathe eval --backend sim`: the groups that have templates compiled and run in the SIMT
//! simulator, the others in the interpreter, over the same tensors; the logits match
//! transformers on every fixture as the interpreter's do. `--strict` refuses a program with
//! groups no template covers, naming the first.

use std::path::PathBuf;
use std::process::Command;

use lathe_ir::DType;
use lathe_tensorfile::Header;

const LATHE: &str = env!("CARGO_BIN_EXE_lathe");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmp(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lathe-eval-sim-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn f32s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()
}

#[test]
fn sim_backend_matches_transformers_on_every_fixture() {
    let dir = tmp("fixtures");
    for (name, layers, width) in [
        ("nemotron_h_tiny", 4, 64),
        ("mamba2_tiny", 2, 64),
        ("qwen2_tiny", 2, 64),
        ("nemotron_h_real", 3, 1024),
        ("mamba2_real", 2, 512),
        ("qwen2_real", 2, 512),
    ] {
        let model = root().join("tests/fixtures/models").join(name);
        let reference = Header::read(&model.join("reference.safetensors")).expect("reference");
        let tokens: Vec<i64> = reference
            .read_bytes("tokens")
            .expect("tokens")
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let want = f32s(&reference.read_bytes("logits").expect("logits"));
        let list: Vec<String> = tokens.iter().map(i64::to_string).collect();
        let out = dir.join(format!("{name}.safetensors"));
        let r = Command::new(LATHE)
            .arg("eval")
            .arg(&model)
            .args(["--tokens", &list.join(","), "--backend", "sim", "--verbose", "--out"])
            .arg(&out)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(r.status.success(), "{name}: {err}");
        assert!(err.contains("groups ran in the simulator"), "{name}: {err}");
        let got = f32s(&Header::read(&out).expect("out").read_bytes("logits").expect("logits"));
        lathe_tests::assert_close(name, &got, &want, DType::F32, layers * width);
    }
    // Some groups really ran in the simulator.
    let model = root().join("tests/fixtures/models/nemotron_h_tiny");
    let out = dir.join("again.safetensors");
    let r = Command::new(LATHE)
        .arg("eval")
        .arg(&model)
        .args(["--tokens", "5,4,3,2,1", "--backend", "sim", "--verbose", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.lines().any(|l| l.contains("elementwise") && l.contains("simulator (")), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn strict_refuses_groups_without_a_template_and_flags_need_the_sim_backend() {
    let dir = tmp("strict");
    let model = root().join("tests/fixtures/models/nemotron_h_tiny");
    let out = dir.join("o.safetensors");
    let r = Command::new(LATHE)
        .arg("eval")
        .arg(&model)
        .args(["--tokens", "5,4,3", "--backend", "sim", "--strict", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(err.contains("--strict:") && err.contains("have no template; the first, group 1 (gemv)"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists(), "no output after an error");
    let r = Command::new(LATHE)
        .arg("eval")
        .arg(&model)
        .args(["--tokens", "5,4,3", "--strict", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--strict and --verbose go with --backend sim"));
    let r = Command::new(LATHE)
        .arg("eval")
        .arg(&model)
        .args(["--tokens", "5,4,3", "--backend", "cuda", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--backend cuda: not available"));
    let _ = std::fs::remove_dir_all(dir);
}
