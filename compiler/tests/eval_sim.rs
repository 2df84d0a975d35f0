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

/// `lathe eval MODEL ARGS… --out OUT`.
fn eval(model: &std::path::Path, args: &[&str], out: impl AsRef<std::path::Path>) -> std::process::Output {
    Command::new(LATHE).arg("eval").arg(model).args(args).arg("--out").arg(out.as_ref()).output().expect("run")
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
        let r = eval(&model, &["--tokens", &list.join(","), "--backend", "sim", "--verbose"], &out);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(r.status.success(), "{name}: {err}");
        assert!(err.contains("groups ran in the simulator"), "{name}: {err}");
        let got = f32s(&Header::read(&out).expect("out").read_bytes("logits").expect("logits"));
        lathe_tests::assert_close(name, &got, &want, DType::F32, layers * width);
    }
    // Some groups really ran in the simulator.
    let model = root().join("tests/fixtures/models/nemotron_h_tiny");
    let out = dir.join("again.safetensors");
    let r = eval(&model, &["--tokens", "5,4,3,2,1", "--backend", "sim", "--verbose"], &out);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.lines().any(|l| l.contains("elementwise") && l.contains("simulator (")), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Logits of `name` at bf16 compute on `backend`, and the reference's tokens and logits.
fn bf16_logits(dir: &std::path::Path, name: &str, backend: &str) -> (Vec<f64>, Vec<f64>, usize) {
    let model = root().join("tests/fixtures/models").join(name);
    let reference = Header::read(&model.join("reference.safetensors")).expect("reference");
    let tokens: Vec<String> = reference
        .read_bytes("tokens")
        .expect("tokens")
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")).to_string())
        .collect();
    let want = f32s(&reference.read_bytes("logits").expect("logits"));
    let out = dir.join(format!("{name}-{backend}.safetensors"));
    let r = eval(&model, &["--tokens", &tokens.join(","), "--backend", backend, "--compute-dtype", "bf16"], &out);
    assert!(r.status.success(), "{name} {backend}: {}", String::from_utf8_lossy(&r.stderr));
    let got = f32s(&Header::read(&out).expect("out").read_bytes("logits").expect("logits"));
    (got, want, tokens.len())
}

/// Check (c) at bf16 (DESIGN §10, docs/numerics.md): every op rounded to bf16, the logits stay
/// within the model-level bound of transformers' f32 logits, and the top-1 token differs only
/// at near ties of the reference (a top-2 margin under one bf16 ulp of the largest logit); the
/// simulator's and the interpreter's bf16 logits agree within the shared bf16 tolerance (check
/// (a) at the model level).
#[test]
fn bf16_compute_stays_within_the_model_level_bound_of_transformers() {
    let dir = tmp("bf16");
    for (name, layers, width) in [
        ("nemotron_h_tiny", 4, 64),
        ("mamba2_tiny", 2, 64),
        ("qwen2_tiny", 2, 64),
        ("nemotron_h_real", 3, 1024),
        ("mamba2_real", 2, 512),
        ("qwen2_real", 2, 512),
    ] {
        let (cpu, want, positions) = bf16_logits(&dir, name, "cpu");
        let (sim, _, _) = bf16_logits(&dir, name, "sim");
        let vocab = want.len() / positions;
        for (backend, got) in [("cpu", &cpu), ("sim", &sim)] {
            let err = lathe_tests::normwise_error(got, &want);
            let bound = lathe_tests::bf16_model_bound(layers);
            assert!(err <= bound, "{name} {backend}: normwise error {err:.4} over the bf16 bound {bound:.4}");
            let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            let near_tie = 2.0 * lathe_tests::unit_roundoff(DType::BF16) * scale;
            let argmax = |v: &[f64]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
            for p in 0..positions {
                let (g, w) = (&got[p * vocab..][..vocab], &want[p * vocab..][..vocab]);
                let top = argmax(w);
                let second = (0..vocab).filter(|&i| i != top).map(|i| w[i]).fold(f64::NEG_INFINITY, f64::max);
                let margin = w[top] - second;
                assert!(
                    argmax(g) == top || margin < near_tie,
                    "{name} {backend}: position {p} picks {} over {top}, a reference margin of {margin:.4}",
                    argmax(g)
                );
            }
        }
        lathe_tests::assert_close(&format!("{name}: sim vs cpu at bf16"), &sim, &cpu, DType::BF16, layers * width);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The decode path against transformers (L7): the first K tokens through `extend`, every later
/// one through a `decode` step — the compiled GEMVs, decode steps and cache writes in the
/// simulator — with the same tolerance as `eval`. The tiny fixtures decode from the first token,
/// the real-size ones their last eight; every decode step runs wholly compiled (GEMVs with
/// their norms and RoPE, decode steps, attention, cache writes).
#[test]
fn decode_from_matches_transformers_on_every_fixture() {
    let dir = tmp("decode");
    for (name, layers, width, from) in [
        ("nemotron_h_tiny", 4, 64, 1),
        ("mamba2_tiny", 2, 64, 1),
        ("qwen2_tiny", 2, 64, 1),
        ("nemotron_h_real", 3, 1024, 128),
        ("mamba2_real", 2, 512, 128),
        ("qwen2_real", 2, 512, 128),
    ] {
        let model = root().join("tests/fixtures/models").join(name);
        let reference = Header::read(&model.join("reference.safetensors")).expect("reference");
        let tokens: Vec<String> = reference
            .read_bytes("tokens")
            .expect("tokens")
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")).to_string())
            .collect();
        let want = f32s(&reference.read_bytes("logits").expect("logits"));
        let out = dir.join(format!("{name}.safetensors"));
        let r = eval(
            &model,
            &["--tokens", &tokens.join(","), "--backend", "sim", "--verbose", "--decode-from", &from.to_string()],
            &out,
        );
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(r.status.success(), "{name}: {err}");
        assert!(
            err.lines().any(|l| l.starts_with("decode group") && l.contains("gemv") && l.contains("simulator (")),
            "{name}: {err}"
        );
        // Every fixture's decode step runs wholly compiled (Qwen2's RoPE in its q/k/v GEMV).
        assert!(
            !err.lines().any(|l| l.starts_with("decode group") && l.contains("interpreter")),
            "{name}: every decode group compiled: {err}"
        );
        let got = f32s(&Header::read(&out).expect("out").read_bytes("logits").expect("logits"));
        lathe_tests::assert_close(name, &got, &want, DType::F32, layers * width);
    }
    // K must name a prefix.
    let model = root().join("tests/fixtures/models/qwen2_tiny");
    for k in ["0", "4"] {
        let r = eval(&model, &["--tokens", "5,4,3", "--decode-from", k], dir.join("x.safetensors"));
        assert_eq!(r.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&r.stderr).contains("must be between 1 and the 3 tokens given"));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn strict_refuses_groups_without_a_template_and_flags_need_the_sim_backend() {
    let dir = tmp("strict");
    let model = root().join("tests/fixtures/models/nemotron_h_tiny");
    let out = dir.join("o.safetensors");
    let r = eval(&model, &["--tokens", "5,4,3", "--backend", "sim", "--strict"], &out);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--strict:") && err.contains("have no template; the first, eval group 5 (ssd_chunk_scan)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists(), "no output after an error");
    let r = eval(&model, &["--tokens", "5,4,3", "--strict"], &out);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--strict and --verbose go with --backend sim"));
    let r = eval(&model, &["--tokens", "5,4,3", "--backend", "cuda"], &out);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--backend cuda: not available"));
    let r = eval(&model, &["--tokens", "5,4,3", "--compute-dtype", "f16"], &out);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--compute-dtype f16: not supported (`f32` or `bf16`)"));
    assert!(!out.exists(), "no output after an error");
    let _ = std::fs::remove_dir_all(dir);
}
