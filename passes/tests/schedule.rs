//! The fusion contract: after the default pipeline every computing node sits in a group its
//! strategy accepts; ill-formed groups are caught; launch counts of the real configs.

use std::path::PathBuf;

use lathe_frontend::import::{import, ImportOptions};
use lathe_ir::text::parse_module;
use lathe_ir::Module;
use lathe_passes::strategy::{groups, verify_schedule};
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
            assert!(groups(&f.graph) > 0, "{dir} @{}", f.name);
        }
    }
}

#[test]
fn real_config_launch_counts() {
    // DESIGN/L3 budgets: Nemotron-H-8B decode <= 150 launches per step, 47B <= 280.
    for (dir, budget) in [("configs/nemotron-h-8b-base-8k", 150), ("configs/nemotron-h-47b-base-8k", 280)] {
        let m = scheduled(dir);
        let decode = m.function("decode").expect("decode");
        let n = groups(&decode.graph);
        assert!(n <= budget, "{dir}: {n} decode launches > {budget}");
    }
}

fn schedule_error(body: &str) -> String {
    let src = format!(
        "module @m {{\n  compute_dtype = f32\n  stage = scheduled\n  symbol S <= 512\n  func @main {{\n{body}\n  }}\n}}\n"
    );
    let m = parse_module(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    lathe_ir::verify::verify(&m).unwrap_or_else(|e| panic!("{e}"));
    let e = lathe_ir::verify::VerifyErrors::from(verify_schedule(&m).expect_err("must be rejected")).to_string();
    // The stage's verifier, which `lathe verify` runs on a file, reports the same.
    let full = lathe_passes::verify::verify(&m).expect_err("the scheduled stage's rules").to_string();
    assert_eq!(full, e);
    e
}

#[test]
fn ill_formed_groups_are_rejected() {
    let e = schedule_error(
        r#"    %0 = input "x" : f32[4, 4]
    %1 = add %0, %0 : f32[4, 4]
    return %1"#,
    );
    assert!(
        e.contains("%1 (`%1 = add %0, %0 : f32[4, 4]`): `add` is in no fusion group, but the module is scheduled"),
        "{e}"
    );
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
    %1 = fusion %0 {strategy=scatter_cache} {
      %0 = input "a" : f32[4]
      %1 = exp %0 : f32[4]
      return %1
    } : f32[4]
    return %1"#,
    );
    assert!(e.contains("a scatter_cache kernel holds exactly one `scatter_cache`, found 0"), "{e}");
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
    assert!(groups(&m.function("decode").expect("decode").graph) <= 150);
    let extend = groups(&m.function("extend").expect("extend").graph);
    // W8A8 prefill: the number docs/fusion.md states (173 unquantized plus the norms that can no
    // longer sit in a GEMM prologue).
    assert_eq!(extend, 225, "docs/fusion.md states 225 W8A8 prefill launches on the 8B");
}

#[test]
fn chunked_prefill_bounds_extend_and_stays_exact() {
    use std::collections::HashMap;

    use lathe_interp::tensor::Tensor;
    use lathe_ir::DType;

    let dir = fixtures().join("models/nemotron_h_tiny");
    let imp = import(&dir, &ImportOptions { max_seq: Some(16), ..ImportOptions::default() }).expect("import");
    let mut m = imp.module.clone();
    let pipeline = "canonicalize,fold-constants,cse,dce,fuse-ssd,fuse-elementwise,schedule-hybrid{prefill-chunk=4},dce";
    let mut pm = PassManager::parse(pipeline).expect("pipeline");
    pm.instrumentation.verify_each = true;
    pm.run(&mut m, &mut std::io::sink()).unwrap_or_else(|e| panic!("{e}"));
    let loader = lathe_interp::CheckpointLoader { checkpoint: imp.checkpoint.as_ref() };
    let toks: Vec<i64> = vec![7, 3, 90, 12, 5, 61, 2];
    // eval of all 7 tokens on the unchunked module is the reference.
    let mut args = HashMap::new();
    args.insert("tokens".to_string(), Tensor::from_i64(DType::I64, vec![1, 7], toks.clone()));
    let full = lathe_interp::run(&imp.module, "eval", &args, &loader).expect("eval").remove(0).1.to_f64();
    // Chunks of 4 and 3 through the chunked extend, carrying every cache.
    let mut caches = lathe_interp::zero_caches(m.function("extend").expect("extend"));
    let mut last = Vec::new();
    for (start, chunk) in [(0usize, &toks[..4]), (4, &toks[4..])] {
        let mut inputs = caches.clone();
        inputs.insert("tokens".into(), Tensor::from_i64(DType::I64, vec![1, chunk.len()], chunk.to_vec()));
        inputs.insert("past".into(), Tensor::from_i64(DType::I64, vec![1], vec![start as i64]));
        let mut out: HashMap<String, Tensor> =
            lathe_interp::run(&m, "extend", &inputs, &loader).expect("extend").into_iter().collect();
        last = out.remove("logits").expect("logits").to_f64();
        caches = out;
    }
    let v = last.len();
    lathe_tests::assert_close("chunked prefill", &last, &full[6 * v..7 * v], DType::F32, 256);
    // A chunk longer than the bound is refused, not silently run.
    let mut inputs = caches.clone();
    inputs.insert("tokens".into(), Tensor::from_i64(DType::I64, vec![1, 5], vec![1; 5]));
    inputs.insert("past".into(), Tensor::from_i64(DType::I64, vec![1], vec![7]));
    let e = lathe_interp::run(&m, "extend", &inputs, &loader).expect_err("too long").to_string();
    assert!(e.contains("C = 5 is outside 1..=4"), "{e}");
}

#[test]
fn chunked_prefill_shrinks_the_8b_prefill_arena() {
    let peak = |pipeline: &str| {
        let imp = import(&fixtures().join("configs/nemotron-h-8b-base-8k"), &ImportOptions::default()).expect("import");
        let mut m = imp.module;
        PassManager::parse(pipeline).expect("pipeline").run(&mut m, &mut std::io::sink()).expect("run");
        let f = m.function("extend").expect("extend").clone();
        lathe_passes::plan_memory::plan(&m, &f).expect("plan").peak_bytes
    };
    let whole = peak("default");
    let chunked =
        peak("canonicalize,fold-constants,cse,dce,fuse-ssd,fuse-elementwise,schedule-hybrid{prefill-chunk=1024},dce");
    assert!(chunked * 4 < whole, "{chunked} vs {whole}");
}
