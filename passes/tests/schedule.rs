//! The fusion contract: after the default pipeline every computing node sits in a group its
//! strategy accepts; ill-formed groups are caught; launch counts of the real configs.

use std::path::PathBuf;

use lathe_frontend::import::{import, ImportOptions};
use lathe_ir::text::parse_module;
use lathe_ir::Module;
use lathe_passes::strategy::{launches, verify_schedule};
use lathe_passes::PassManager;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn scheduled(dir: &str) -> Module {
    let imp = import(&fixtures().join(dir), &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut m = imp.module;
    let mut pm = PassManager::parse("default").expect("default");
    pm.instrumentation.verify_each = true;
    pm.run(&mut m, &mut std::io::sink()).unwrap_or_else(|e| panic!("{dir}: {e}"));
    m
}

#[test]
fn default_pipeline_schedules_every_fixture() {
    for dir in ["models/nemotron_h_tiny", "models/mamba2_tiny", "models/qwen2_tiny", "models/nemotron_h_sharded"] {
        let m = scheduled(dir);
        verify_schedule(&m).unwrap_or_else(|e| panic!("{dir}: {e:?}"));
        for f in &m.functions {
            assert!(launches(&f.graph) > 0, "{dir} @{}", f.name);
        }
    }
}

#[test]
fn real_config_launch_counts() {
    // DESIGN/L3 budgets: Nemotron-H-8B decode <= 150 launches per step, 47B <= 280.
    for (dir, budget) in [("configs/nemotron-h-8b-base-8k", 150), ("configs/nemotron-h-47b-base-8k", 280)] {
        let m = scheduled(dir);
        let decode = m.function("decode").expect("decode");
        let n = launches(&decode.graph);
        assert!(n <= budget, "{dir}: {n} decode launches > {budget}");
    }
}

fn schedule_error(body: &str) -> String {
    let src = format!("module @m {{\n  compute_dtype = f32\n  symbol S <= 512\n  func @main {{\n{body}\n  }}\n}}\n");
    let m = parse_module(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    lathe_ir::verify::verify(&m).unwrap_or_else(|e| panic!("{e}"));
    verify_schedule(&m).expect_err("must be rejected").join("\n")
}

#[test]
fn ill_formed_groups_are_rejected() {
    let e = schedule_error(
        r#"    %0 = input "x" : f32[4, 4]
    %1 = add %0, %0 : f32[4, 4]
    return %1"#,
    );
    assert!(e.contains("`add`) is in no fusion group"), "{e}");
    let e = schedule_error(
        r#"    %0 = input "x" : f32[4, 4]
    %1 = fusion %0 {strategy=gemm} {
      %0 = input "a" : f32[4, 4]
      %1 = matmul %0, %0 : f32[4, 4]
      %2 = matmul %1, %0 : f32[4, 4]
      return %2
    } : f32[4, 4]
    return %1"#,
    );
    assert!(e.contains("exactly one `matmul`, found 2"), "{e}");
    let e = schedule_error(
        r#"    %0 = input "x" : f32[4, 4]
    %1 = fusion %0 {strategy=elementwise} {
      %0 = input "a" : f32[4, 4]
      %1 = softmax %0 {axis=1} : f32[4, 4]
      return %1
    } : f32[4, 4]
    return %1"#,
    );
    assert!(e.contains("`softmax` cannot be part of a elementwise kernel"), "{e}");
    let e = schedule_error(
        r#"    %0 = input "x" : f32[S, 8]
    %1 = input "w" : f32[8, 8]
    %2 = fusion %0, %1 {strategy=gemv} {
      %0 = input "a" : f32[S, 8]
      %1 = input "b" : f32[8, 8]
      %2 = matmul %0, %1 : f32[S, 8]
      return %2
    } : f32[S, 8]
    return %2"#,
    );
    assert!(e.contains("gemv takes at most 64 rows"), "{e}");
    let e = schedule_error(
        r#"    %0 = input "q" : f32[1, 4, 2, 8]
    %1 = input "len" : i64[1]
    %2 = fusion %0, %1 {strategy=attention_decode} {
      %0 = input "q" : f32[1, 4, 2, 8]
      %1 = input "len" : i64[1]
      %2 = attention %0, %0, %0, %1 {mask=causal, scale=0.5} : f32[1, 4, 2, 8]
      return %2
    } : f32[1, 4, 2, 8]
    return %2"#,
    );
    assert!(e.contains("attention_decode takes one query per sequence"), "{e}");
    let e = schedule_error(
        r#"    %0 = input "x" : f32[4]
    %1 = fusion %0 {strategy=ssd_chunk_state} {
      %0 = input "a" : f32[4]
      %1 = exp %0 : f32[4]
      return %1
    } : f32[4]
    return %1"#,
    );
    assert!(e.contains("no op lowers to ssd_chunk_state yet"), "{e}");
}

#[test]
fn fp8_pipeline_schedules_and_keeps_decode_launches() {
    // quantize-fp8 before the default pipeline: W8A16 in decode keeps the launch count (the
    // weight's fp8 codes and scale are compile-time values inside the GEMV group); W8A8 in
    // prefill adds one amax reduction per quantized activation.
    let imp = import(&fixtures().join("configs/nemotron-h-8b-base-8k"), &ImportOptions::default()).expect("import");
    let mut m = imp.module;
    let mut pm = PassManager::parse("quantize-fp8,default").expect("pipeline");
    pm.instrumentation.verify_each = true;
    pm.run(&mut m, &mut std::io::sink()).unwrap_or_else(|e| panic!("{e}"));
    verify_schedule(&m).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(launches(&m.function("decode").expect("decode").graph) <= 150);
    let extend = launches(&m.function("extend").expect("extend").graph);
    assert!(extend <= 173 + 64, "{extend}");
}
