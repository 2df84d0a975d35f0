//! fp8: `quantize-fp8` (snapshots of `tests/lir_fp8/*.lir` held to the fp8 error bound instead
//! of bit equality, the tiny Nemotron-H's logits, the kept blocks of the 8B config) and
//! `fuse-fp8` (its requantize rule against an independent model of the numerics on all 256
//! codes, and the cases it must leave alone). The bit-exact `fuse-fp8` snapshots live with the
//! other exact passes in `tests/lir/`.

use std::collections::HashMap;
use std::path::PathBuf;

use lathe_interp::{tensor::Tensor, SyntheticOnly};
use lathe_ir::text::{parse_module, print_module};
use lathe_ir::{DType, Graph, Module, Op};
use lathe_numerics as numerics;
use lathe_passes::{PassManager, RunReport};
use lathe_tests::{normwise_error, unit_roundoff, Rng};

/// Runs `pipeline` on a copy of `m`, verifying after every pass.
fn run_pipeline(m: &Module, pipeline: &str) -> (Module, RunReport) {
    let mut pm = PassManager::parse(pipeline).unwrap_or_else(|e| panic!("{e}"));
    pm.instrumentation.verify_each = true;
    let mut out = m.clone();
    let report = pm.run(&mut out, &mut std::io::sink()).unwrap_or_else(|e| panic!("{pipeline}: {e}"));
    (out, report)
}

fn stat(r: &RunReport, pass: &str, key: &str) -> u64 {
    r.stats.get(&(pass.to_string(), key.to_string())).copied().unwrap_or(0)
}

fn count(g: &Graph, f: impl Fn(&Graph, &Op, &[lathe_ir::ValueId]) -> bool) -> usize {
    g.order.iter().filter(|&&n| f(g, &g.nodes[n].op, &g.nodes[n].args)).count()
}

/// Matmuls reading a dequantized operand (W8A16).
fn dequantized_matmuls(g: &Graph) -> usize {
    count(g, |g, op, args| {
        matches!(op, Op::Matmul(_)) && args.iter().any(|&a| matches!(g.nodes[g.values[a].def].op, Op::Dequantize(_)))
    })
}

fn scaled_matmuls(g: &Graph) -> usize {
    count(g, |_, op, _| matches!(op, Op::ScaledMatmul(_)))
}

/// The E4M3 unit roundoff: half its relative step 2^-3.
fn u8_e4m3() -> f64 {
    unit_roundoff(DType::F8E4M3)
}

#[test]
fn quantize_fp8_snapshots_within_the_fp8_bound() {
    // One linear layer with both operands rounded to E4M3 (relative error ≤ u = 2^-4 each) has
    // products within (1+u)² − 1 = 2u + u² of the exact ones; W8A16 rounds one operand, u. To
    // first order these add along a chain, so a function is held to the sum over its quantized
    // matmuls, normwise.
    insta::glob!("lir_fp8/*.lir", |path| {
        let src = std::fs::read_to_string(path).expect("read");
        let before = parse_module(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        lathe_ir::verify::verify(&before).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let pipeline = src.lines().next().and_then(|l| l.strip_prefix("// pipeline:")).map(str::trim).expect("header");
        let (after, _) = run_pipeline(&before, pipeline);
        insta::assert_snapshot!(format!("// pipeline: {pipeline}\n{}", print_module(&after)));
        for f in &after.functions {
            let u = u8_e4m3();
            let bound = scaled_matmuls(&f.graph) as f64 * (2.0 * u + u * u) + dequantized_matmuls(&f.graph) as f64 * u;
            assert!(bound > 0.0, "{}: @{} quantized nothing", path.display(), f.name);
            for seed in 0..3 {
                let args = lathe_tests::random_inputs(&before, &f.name, seed);
                let want = lathe_interp::run(&before, &f.name, &args, &SyntheticOnly).expect("before");
                let got = lathe_interp::run(&after, &f.name, &args, &SyntheticOnly).expect("after");
                for ((name, a), (_, b)) in got.iter().zip(&want) {
                    let err = normwise_error(&a.to_f64(), &b.to_f64());
                    assert!(
                        err > 0.0 && err <= bound,
                        "{}: @{} {name}: error {err:.3e}, bound {bound:.3e}",
                        path.display(),
                        f.name
                    );
                }
            }
        }
    });
}

fn fixture(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(dir)
}

/// The fp8 error model for logits, as a relative RMS error: an E4M3 rounding has relative
/// error |δ| ≤ u = 2^-4, spread evenly, so RMS ≤ u/√3 (measured on the tiny model's weights:
/// 0.024–0.027 against 0.036); a dot product's error has the RMS of its terms' (independent over
/// K, they average rather than add); `n` quantized matmuls with `q` rounded operands each (2 for
/// W8A8, 1 for W8A16) add in quadrature along the residual stream, where the norms keep the gain
/// near 1.
fn fp8_rms_bound(n: usize, q: usize) -> f64 {
    u8_e4m3() / 3f64.sqrt() * ((n * q) as f64).sqrt()
}

/// `max|x| / rms(x)`.
fn peak_factor(v: &[f64]) -> f64 {
    v.iter().fold(0f64, |m, x| m.max(x.abs())) / (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
}

#[test]
fn tiny_nemotron_h_logits_stay_within_the_fp8_bound() {
    let mut rng = Rng::new(7);
    let (batch, seq, vocab) = (4, 32, 96);
    let tokens: Vec<i64> = (0..batch * seq).map(|_| rng.below(vocab) as i64).collect();
    let opts = lathe_frontend::import::ImportOptions { max_seq: Some(seq as u64), ..Default::default() };
    let imp =
        lathe_frontend::import::import(&fixture("models/nemotron_h_tiny"), &opts).unwrap_or_else(|e| panic!("{e}"));
    let loader = lathe_interp::CheckpointLoader { checkpoint: imp.checkpoint.as_ref() };
    let args = HashMap::from([("tokens".to_string(), Tensor::from_i64(DType::I64, vec![batch, seq], tokens))]);
    let logits = |m: &Module| lathe_interp::run(m, "eval", &args, &loader).expect("eval").remove(0).1.to_f64();
    let reference = logits(&imp.module);
    let top1 = |l: &[f64]| -> Vec<usize> {
        l.chunks(vocab).map(|r| r.iter().enumerate().fold(0, |b, (i, x)| if *x > r[b] { i } else { b })).collect()
    };
    let want_top1 = top1(&reference);
    let mut report = format!("tiny Nemotron-H, {batch}x{seq} tokens, all 4 blocks quantized (lm_head kept):\n");
    for (mode, q) in [("w8a8", 2), ("w8a16", 1)] {
        for granularity in ["tensor", "channel"] {
            let pipeline = format!("quantize-fp8{{mode={mode} granularity={granularity} keep-first=0 keep-last=0}}");
            let (quantized, stats) = run_pipeline(&imp.module, &pipeline);
            // in/out_proj twice, q/k/v/o, up/down: 10 per program; lm_head stays.
            assert_eq!(stat(&stats, "quantize-fp8", "matmuls-quantized"), 3 * 10, "{pipeline}");
            assert_eq!(stat(&stats, "quantize-fp8", "matmuls-kept"), 3, "{pipeline}");
            let eval = &quantized.function("eval").expect("eval").graph;
            let n = scaled_matmuls(eval) + dequantized_matmuls(eval);
            assert_eq!(n, 10, "{pipeline}");
            let got = logits(&quantized);
            let err: Vec<f64> = got.iter().zip(&reference).map(|(a, b)| a - b).collect();
            let rms = (err.iter().map(|e| e * e).sum::<f64>() / reference.iter().map(|b| b * b).sum::<f64>()).sqrt();
            let normwise = normwise_error(&got, &reference);
            let agree = top1(&got).iter().zip(&want_top1).filter(|(a, b)| a == b).count();
            let bound = fp8_rms_bound(n, q);
            report += &format!(
                "  {mode:>5} {granularity:>7}: rms {rms:.3e} (bound {bound:.3e}), normwise {normwise:.3e} (bound {:.3e}), \
                 peak factors error {:.1} logits {:.1}, top-1 {agree}/{}\n",
                2.0 * bound,
                peak_factor(&err),
                peak_factor(&reference),
                want_top1.len()
            );
            // The normwise error (max against max) is the RMS error times the ratio of the
            // error's peak factor to the logits': the error is heavier-tailed, by 1.6–2.0 here.
            assert!(rms > 0.0 && rms <= bound && normwise <= 2.0 * bound, "{pipeline}: {report}");
            assert!(8 * agree >= 7 * want_top1.len(), "{pipeline}: top-1 {agree}/{}", want_top1.len());
            // Quantized after fuse-ssd, the module goes through the default pipeline (fusion,
            // schedule) and computes exactly what the quantized module computes.
            let (scheduled, _) = run_pipeline(&imp.module, &format!("fuse-ssd,{pipeline},fuse-fp8,default"));
            assert_eq!(logits(&scheduled), got, "{pipeline} within the default pipeline");
        }
    }
    eprintln!("{report}");
}

/// The block `{i}` a checkpoint name `backbone.layers.{i}.…` spells: the test's own oracle for
/// the `block` roles the frontend gives weights (the pass reads only the roles).
fn block_of_name(name: &str) -> Option<u64> {
    name.strip_prefix("backbone.layers.")?.split_once('.')?.0.parse().ok()
}

#[test]
fn keep_first_and_last_four_blocks_of_the_8b_config() {
    let imp = lathe_frontend::import::import(&fixture("configs/nemotron-h-8b-base-8k"), &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(imp.checkpoint.is_none(), "shape-only import");
    let m = &imp.module;
    let (q, stats) = run_pipeline(m, "quantize-fp8");
    let blocks: std::collections::BTreeSet<u64> =
        m.weights.iter().filter_map(|(_, w)| block_of_name(&w.name)).collect();
    assert_eq!(blocks.len(), 52);
    for (_, w) in m.weights.iter() {
        assert_eq!(lathe_passes::quantize_fp8::block_index(w), block_of_name(&w.name), "{}", w.name);
    }
    let kept = |b: u64| !(4..48).contains(&b);
    // Linear layers per function: (quantized, kept) from the weight names.
    let mut want = (0, 0);
    for (_, w) in m.weights.iter() {
        let linear = ["in_proj", "out_proj", "q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
            .iter()
            .any(|p| w.name.ends_with(&format!("{p}.weight")));
        match block_of_name(&w.name) {
            Some(b) if linear && kept(b) => want.1 += 1,
            Some(_) if linear => want.0 += 1,
            _ => {}
        }
    }
    let functions = q.functions.len() as u64;
    assert_eq!(stat(&stats, "quantize-fp8", "matmuls-quantized"), want.0 * functions);
    // Kept: the blocks' linear layers and lm_head.
    assert_eq!(stat(&stats, "quantize-fp8", "matmuls-kept"), (want.1 + 1) * functions);
    for f in &q.functions {
        let g = &f.graph;
        let (scaled, dequantized) = (scaled_matmuls(g), dequantized_matmuls(g));
        if f.name == "decode" {
            assert_eq!((scaled, dequantized), (0, want.0 as usize), "decode is W8A16");
        } else {
            assert_eq!((scaled, dequantized), (want.0 as usize, 0), "@{} is W8A8", f.name);
        }
        for &n in &g.order {
            let node = &g.nodes[n];
            let weight = |v: lathe_ir::ValueId| match g.nodes[g.values[v].def].op {
                Op::Weight(w) => Some(m.weights[w].name.clone()),
                _ => None,
            };
            match &node.op {
                // Every plain matmul on a weight is a kept block's or lm_head.
                Op::Matmul(_) => {
                    if let Some(name) = weight(node.args[1]) {
                        let b = block_of_name(&name);
                        assert!(b.is_some_and(kept) || name == "lm_head.weight", "@{}: {name} unquantized", f.name);
                    }
                }
                // The embedding table is gathered as it is.
                Op::Gather => assert_eq!(weight(node.args[0]).as_deref(), Some("backbone.embeddings.weight")),
                Op::Amax | Op::Reduce(_) => {
                    if let Some(name) = weight(node.args[0]) {
                        let b = block_of_name(&name);
                        assert!(b.is_some_and(|b| !kept(b)), "@{}: {name} quantized", f.name);
                    }
                }
                _ => {}
            }
        }
    }
}

#[test]
fn quantized_linear_layers_match_a_direct_computation() {
    // The documented rewrites recomputed from the numerics primitives: scales from the amax of
    // the tensor (or of each weight row), floored at 2^-126; E4M3 codes of value/scale; the
    // products of dequantized values summed in f64.
    let (m_rows, n, k) = (3, 24, 40);
    let src = format!(
        "module @lin {{\n  compute_dtype = f32\n  weight @backbone.layers.0.mixer.in_proj.weight : bf16[{n}, {k}] = synthetic 5\n  \
         func @main {{\n    %0 = input \"x\" : f32[{m_rows}, {k}]\n    \
         %1 = weight @backbone.layers.0.mixer.in_proj.weight : bf16[{n}, {k}]\n    \
         %2 = matmul %0, %1 {{transpose_b}} : f32[{m_rows}, {n}]\n    return %2 as \"y\"\n  }}\n}}\n"
    );
    let m = parse_module(&src).expect("parse");
    let w =
        lathe_interp::synthetic_weight(&lathe_ir::TensorType::fixed(DType::BF16, &[n as u64, k as u64]), 5).expect("w");
    let w = w.floats();
    let args = lathe_tests::random_inputs(&m, "main", 11);
    let x = args["x"].floats();
    let amax = |v: &[f32]| v.iter().fold(0f32, |a, x| a.max(x.abs()));
    let scale = |a: f32| (a / 448.0).max(f32::MIN_POSITIVE);
    let fp8 = |v: f32, s: f32| numerics::e4m3_to_f32(numerics::f32_to_e4m3(v / s)) * s;
    for mode in ["w8a8", "w8a16"] {
        for granularity in ["tensor", "channel"] {
            let pipeline = format!("quantize-fp8{{mode={mode} granularity={granularity} keep-first=0 keep-last=0}}");
            let (q, _) = run_pipeline(&m, &pipeline);
            let got = lathe_interp::run(&q, "main", &args, &SyntheticOnly).expect("run").remove(0).1.to_f64();
            let sx = scale(amax(x));
            let mut want = vec![0f64; m_rows * n];
            for j in 0..n {
                let row = &w[j * k..(j + 1) * k];
                let sw = scale(if granularity == "channel" { amax(row) } else { amax(w) });
                for i in 0..m_rows {
                    want[i * n + j] = (0..k)
                        .map(|c| {
                            let xv = x[i * k + c];
                            let xv = if mode == "w8a8" { fp8(xv, sx) } else { xv };
                            f64::from(xv) * f64::from(fp8(row[c], sw))
                        })
                        .sum();
                }
            }
            lathe_tests::assert_close(&pipeline, &got, &want, DType::F32, k);
        }
    }
}

/// The E4M3 round trip through `via`, from the numerics primitives alone (no interpreter).
fn round_trip_exact(via: DType, s: f32) -> bool {
    let round = |x: f32| match via {
        DType::BF16 => numerics::round_to_bf16(x),
        DType::F16 => numerics::round_to_f16(x),
        _ => x,
    };
    (0..=255u8).all(|c| {
        let v = numerics::e4m3_to_f32(c);
        let back = numerics::f32_to_e4m3(round(v * s) / s);
        back == c || (v.is_nan() && numerics::e4m3_to_f32(back).is_nan())
    })
}

#[test]
fn requantize_rule_is_exact_on_all_256_codes() {
    let scales = [
        1.0,
        0.25,
        1.0 / 448.0,
        0.0371,
        -0.5,
        3.3e-3,
        2f32.powi(-20),
        2f32.powi(-30),
        200.0,
        1.0e30,
        1.0e37,
        1.0e-40,
        0.0,
        f32::INFINITY,
        f32::NAN,
    ];
    let codes = Tensor::from_le_bytes(DType::F8E4M3, vec![256], &(0..=255u8).collect::<Vec<_>>()).expect("codes");
    let mut folded = 0;
    for via in [DType::F32, DType::BF16, DType::F16] {
        for s in scales {
            let src = format!(
                "module @r {{\n  compute_dtype = f32\n  func @main {{\n    %0 = input \"q\" : f8e4m3[256]\n    \
                 %1 = constant {s:?} : f32[]\n    %2 = dequantize %0, %1 : {via}[256]\n    \
                 %3 = quantize %2, %1 : f8e4m3[256]\n    return %3 as \"r\"\n  }}\n}}\n"
            );
            let Ok(m) = parse_module(&src) else { panic!("{src}") };
            let (after, stats) = run_pipeline(&m, "fuse-fp8");
            let rewritten = stat(&stats, "fuse-fp8", "requantizes-folded") == 1;
            let exact = round_trip_exact(via, s);
            assert_eq!(rewritten, exact, "scale {s} via {via}");
            let args = HashMap::from([("q".to_string(), codes.clone())]);
            let want = lathe_interp::run(&m, "main", &args, &SyntheticOnly).expect("before").remove(0).1;
            let got = lathe_interp::run(&after, "main", &args, &SyntheticOnly).expect("after").remove(0).1;
            let same = |x: &Tensor, y: &Tensor| {
                x.floats().iter().zip(y.floats()).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()))
            };
            // Where it folds the results are bit-identical; where it does not, the pair is not
            // the identity on some code (the restriction is needed, not just cautious).
            assert!(same(&want, &got), "scale {s} via {via}");
            assert_eq!(same(&want, &codes), exact, "scale {s} via {via}");
            folded += usize::from(rewritten);
        }
    }
    assert!(folded >= 15, "the ordinary scales fold: {folded}");
}

#[test]
fn fuse_fp8_leaves_inexact_pairs_alone() {
    let src = "module @n {\n  compute_dtype = f32\n  func @main {\n    %0 = input \"q\" : f8e4m3[4, 4]\n    \
               %1 = constant 0.5 : f32[]\n    %2 = constant 0.25 : f32[]\n    %3 = dequantize %0, %1 : f32[4, 4]\n    \
               %4 = quantize %3, %2 : f8e4m3[4, 4]\n    %5 = input \"sd\" : f32[4]\n    \
               %6 = dequantize %0, %5 : f32[4, 4]\n    %7 = matmul %3, %6 {transpose_b} : f32[4, 4]\n    \
               return %4 as \"r\", %7 as \"y\"\n  }\n}\n";
    let m = parse_module(src).expect("parse");
    let (after, stats) = run_pipeline(&m, "fuse-fp8");
    assert!(stats.stats.is_empty(), "{:?}", stats.stats);
    assert_eq!(print_module(&after), print_module(&m));
}

#[test]
fn quantize_fp8_options_are_checked() {
    for (p, want) in [
        ("quantize-fp8{mode=w4a4}", "`mode=w4a4` is not auto, w8a16 or w8a8"),
        ("quantize-fp8{granularity=block}", "`granularity=block` is not tensor or channel"),
        ("quantize-fp8{format=e5m2}", "valid: e4m3"),
        ("quantize-fp8{keep-first=-1}", "not a non-negative integer"),
    ] {
        let e = PassManager::parse(p).expect_err(p).to_string();
        assert!(e.contains(want), "{p}: {e}");
    }
    assert!(!lathe_passes::DEFAULT_PIPELINE.contains("fp8"), "the default pipeline keeps bf16/f32 numerics");
}
