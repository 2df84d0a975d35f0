//! IR in, IR out: every `tests/lir/*.lir` names its pipeline in its first line
//! (`// pipeline: cse,dce`); the result is snapshotted, and the interpreter must give
//! bit-identical results before and after on random inputs (these passes only move or
//! evaluate ops exactly).

use std::collections::HashMap;

use lathe_interp::{tensor::Tensor, SyntheticOnly};
use lathe_ir::text::{parse_module, print_module};
use lathe_ir::DType;
use lathe_passes::PassManager;

fn pipeline_of(src: &str) -> &str {
    src.lines()
        .next()
        .and_then(|l| l.strip_prefix("// pipeline:"))
        .map(str::trim)
        .expect("first line `// pipeline: ...`")
}

fn same_bits(a: &Tensor, b: &Tensor) -> bool {
    a.dtype == b.dtype
        && a.shape == b.shape
        && a.to_f64().iter().zip(b.to_f64()).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

#[test]
fn pass_snapshots_and_differential() {
    insta::glob!("lir/*.lir", |path| {
        let src = std::fs::read_to_string(path).expect("read");
        let before = parse_module(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        lathe_ir::verify::verify(&before).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let pipeline = pipeline_of(&src);
        let mut pm = PassManager::parse(pipeline).unwrap_or_else(|e| panic!("{e}"));
        pm.instrumentation.verify_each = true;
        let mut after = before.clone();
        pm.run(&mut after, &mut std::io::sink()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        insta::assert_snapshot!(format!("// pipeline: {}\n{}", pm.pipeline(), print_module(&after)));
        for f in &before.functions {
            for seed in 0..3 {
                let args = lathe_tests::random_inputs(&before, &f.name, seed);
                let want = lathe_interp::run(&before, &f.name, &args, &SyntheticOnly).expect("before");
                let got = lathe_interp::run(&after, &f.name, &args, &SyntheticOnly).expect("after");
                assert_eq!(want.len(), got.len());
                for ((n1, a), (n2, b)) in want.iter().zip(&got) {
                    assert_eq!(n1, n2);
                    assert!(same_bits(a, b), "{}: output {n1} differs after {pipeline}", path.display());
                }
            }
        }
    });
}

#[test]
fn default_pipeline_keeps_model_logits() {
    // The default pipeline (fusion included) on every imported fixture, at f32 and at bf16
    // compute: the programs keep bit-identical results, so the logits contract against
    // transformers holds after it — and a fused kernel, which rounds exactly where the types
    // inside its group say (docs/numerics.md), computes what the unfused program computes.
    let cases = ["nemotron_h_tiny", "nemotron_h_bf16", "mamba2_tiny", "qwen2_tiny"]
        .into_iter()
        .flat_map(|name| [(name, DType::F32), (name, DType::BF16)]);
    for (name, compute_dtype) in cases {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name);
        let opts = lathe_frontend::import::ImportOptions { max_seq: Some(8), compute_dtype, ..Default::default() };
        let imp = lathe_frontend::import::import(&dir, &opts).unwrap_or_else(|e| panic!("{e}"));
        let before = imp.module.clone();
        let mut after = imp.module;
        let mut pm = PassManager::parse("default").expect("default pipeline");
        pm.instrumentation.verify_each = true;
        pm.run(&mut after, &mut std::io::sink()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let loader = lathe_interp::CheckpointLoader { checkpoint: imp.checkpoint.as_ref() };
        let mut args = HashMap::new();
        args.insert("tokens".to_string(), Tensor::from_i64(DType::I64, vec![1, 5], vec![3, 1, 4, 1, 5]));
        let want = lathe_interp::run(&before, "eval", &args, &loader).expect("before");
        let got = lathe_interp::run(&after, "eval", &args, &loader).expect("after");
        assert_eq!(want[0].1.dtype, DType::F32);
        assert!(same_bits(&want[0].1, &got[0].1), "{name} at {compute_dtype} compute");
    }
}

#[test]
fn unknown_passes_and_options_list_the_valid_ones() {
    let e = PassManager::parse("cse,fuse-everything").expect_err("unknown").to_string();
    assert!(e.contains("unknown pass `fuse-everything`") && e.contains("canonicalize") && e.contains("dce"), "{e}");
    let e = PassManager::parse("fold-constants{max-size=3}").expect_err("option").to_string();
    assert!(e.contains("unknown option `max-size`") && e.contains("max-elements"), "{e}");
    let e = PassManager::parse("fold-constants{max-elements=x}").expect_err("value").to_string();
    assert!(e.contains("not a non-negative integer"), "{e}");
    assert_eq!(
        PassManager::parse("fold-constants{max-elements=8},cse").expect("ok").pipeline(),
        "fold-constants{max-elements=8},cse"
    );
}

#[test]
fn instrumentation_prints_and_dumps() {
    let src = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lir/cse.lir"))
        .expect("read");
    let mut m = parse_module(&src).expect("parse");
    let mut pm = PassManager::parse("dce,cse").expect("pipeline");
    let dir = std::env::temp_dir().join(format!("lathe-dump-{}", std::process::id()));
    pm.instrumentation.print_before = vec!["cse".into()];
    pm.instrumentation.print_after_change = true;
    pm.instrumentation.dump_dir = Some(dir.clone());
    let mut log = Vec::new();
    let report = pm.run(&mut m, &mut log).expect("run");
    let log = String::from_utf8(log).expect("utf8");
    assert!(log.contains("IR before cse") && log.contains("IR after cse"), "{log}");
    assert!(!log.contains("IR after dce"), "dce changed nothing, so it is not printed: {log}");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .expect("dump")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for f in ["00-input.lir", "01-dce.lir", "02-cse.lir"] {
        assert!(files.contains(&f.to_string()), "{files:?}");
    }
    assert!(report.timing_text().contains("cse") && report.stats_text().contains("nodes-merged"));
    let _ = std::fs::remove_dir_all(dir);
}
