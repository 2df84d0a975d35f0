//! `plan-memory`: exact offsets on small hand-scheduled functions, the in-place cache rules, and
//! the soundness of the plans of imported models after the default pipeline.

use std::collections::HashMap;
use std::path::PathBuf;

use lathe_frontend::import::{import, ImportOptions};
use lathe_ir::text::parse_module;
use lathe_ir::{Function, Module, ValueId};
use lathe_passes::plan_memory::{plan, MemoryPlan, ALIGN};
use lathe_passes::strategy::verify_schedule;
use lathe_passes::{Changed, Failure, PassError, PassManager};

#[path = "support/plan_check.rs"]
mod plan_check;
use plan_check::check_sound;

/// One launch of a test function: `%dst = OP` where `$i` in `op` is the i-th operand.
struct Launch<'a> {
    dst: &'a str,
    args: &'a [&'a str],
    op: &'a str,
    ty: &'a str,
}

/// A module `@m` with one function `@main`: the inputs `(name, type)` (a type may start with
/// the input's attributes, `{role=k_cache, layer=0} : f32[4]`), the launches — each wrapped in
/// its own elementwise fusion when `fused`, else written as a plain node — and the `return` line.
fn module(inputs: &[(&str, &str)], launches: &[Launch], ret: &str, fused: bool) -> Module {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut body = String::new();
    for (name, decl) in inputs {
        let (attrs, ty) = decl.split_once("} : ").map_or(("", *decl), |(a, t)| (a, t));
        let attrs = if attrs.is_empty() { String::new() } else { format!(" {attrs}}}") };
        body.push_str(&format!("    %{name} = input \"{name}\"{attrs} : {ty}\n"));
        types.insert(name.to_string(), ty.to_string());
    }
    for l in launches {
        let mut op = l.op.to_string();
        if fused {
            let operands: Vec<String> = l.args.iter().map(|a| format!("%{a}")).collect();
            body.push_str(&format!("    %{} = fusion {} {{strategy=elementwise}} {{\n", l.dst, operands.join(", ")));
            for (i, a) in l.args.iter().enumerate() {
                body.push_str(&format!("      %{i} = input \"arg{i}\" : {}\n", types[*a]));
                op = op.replace(&format!("${i}"), &format!("%{i}"));
            }
            let r = l.args.len();
            body.push_str(&format!("      %{r} = {op} : {}\n      return %{r}\n    }} : {}\n", l.ty, l.ty));
        } else {
            for (i, a) in l.args.iter().enumerate() {
                op = op.replace(&format!("${i}"), &format!("%{a}"));
            }
            body.push_str(&format!("    %{} = {op} : {}\n", l.dst, l.ty));
        }
        types.insert(l.dst.to_string(), l.ty.to_string());
    }
    let stage = if fused { "  stage = scheduled\n" } else { "" };
    let src = format!(
        "module @m {{\n  compute_dtype = f32\n{stage}  symbol S <= 25\n  func @main {{\n{body}    return {ret}\n  }}\n}}\n"
    );
    let m = parse_module(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    lathe_ir::verify::verify(&m).unwrap_or_else(|e| panic!("{e}\n{src}"));
    if fused {
        verify_schedule(&m).unwrap_or_else(|e| panic!("{e:?}\n{src}"));
    }
    m
}

fn main_plan(m: &Module) -> Result<MemoryPlan, String> {
    plan(m, m.function("main").expect("main")).map_err(|e| e.to_string())
}

/// `(first, last, offset, bytes)` of every buffer, in launch order.
fn layout(p: &MemoryPlan) -> Vec<(usize, usize, u64, u64)> {
    p.buffers.iter().map(|b| (b.first, b.last, b.offset, b.bytes)).collect()
}

fn chain(fused: bool) -> Module {
    let ty = "f32[S, 4]";
    module(
        &[("x", ty)],
        &[
            Launch { dst: "a", args: &["x"], op: "exp $0", ty },
            Launch { dst: "b", args: &["a"], op: "exp $0", ty },
            Launch { dst: "c", args: &["b"], op: "exp $0", ty },
            Launch { dst: "d", args: &["c"], op: "exp $0", ty },
        ],
        "%d as \"y\"",
        fused,
    )
}

#[test]
fn chain_alternates_two_buffers() {
    // a, b, c are f32[S ≤ 25, 4] = 400 bytes at the bound, 512 with alignment; d is the output.
    // b is written while a is read, c while b is read: a and c share the first slot.
    let p = main_plan(&chain(true)).expect("plan");
    assert_eq!(layout(&p), vec![(0, 1, 0, 400), (1, 2, 512, 400), (2, 3, 0, 400)]);
    assert_eq!((p.peak_bytes, p.no_reuse_bytes), (1024, 1536));
    assert!(p.in_place.is_empty());
    // The unscheduled function, one kernel per node, has the same plan.
    assert_eq!(main_plan(&chain(false)).expect("plan"), p);
}

#[test]
fn diamond_keeps_both_branches_live() {
    // a feeds b and c, which d joins: at launch 2, a (read), b (waiting) and c (written) are
    // live together, so the peak is three 256-byte buffers; d reuses a's slot.
    let ty = "f32[64]";
    for fused in [true, false] {
        let m = module(
            &[("x", ty)],
            &[
                Launch { dst: "a", args: &["x"], op: "exp $0", ty },
                Launch { dst: "b", args: &["a"], op: "exp $0", ty },
                Launch { dst: "c", args: &["a"], op: "neg $0", ty },
                Launch { dst: "d", args: &["b", "c"], op: "add $0, $1", ty },
                Launch { dst: "e", args: &["d"], op: "exp $0", ty },
            ],
            "%e as \"y\"",
            fused,
        );
        let p = main_plan(&m).expect("plan");
        assert_eq!(layout(&p), vec![(0, 2, 0, 256), (1, 3, 256, 256), (2, 3, 512, 256), (3, 4, 0, 256)]);
        assert_eq!((p.peak_bytes, p.no_reuse_bytes), (768, 1024));
    }
}

#[test]
fn best_fit_takes_the_tightest_gap() {
    // Lifetimes (launch numbers) and slots of 256 bytes: p [0,4] 4, q [1,7] 3, r [2,4] 2,
    // t [3,7] 2, u [5,6] 1 (the rest are outputs). Largest first: p@0, q@4, r@7, t@9. u lives
    // only with q and t, which leave the gaps [0,4) and [7,9): best fit takes 7, first fit
    // would take 0.
    let m = module(
        &[("x4", "f32[256]"), ("x3", "f32[192]"), ("x2", "f32[128]"), ("x1", "f32[64]")],
        &[
            Launch { dst: "p", args: &["x4"], op: "exp $0", ty: "f32[256]" },
            Launch { dst: "q", args: &["x3"], op: "exp $0", ty: "f32[192]" },
            Launch { dst: "r", args: &["x2"], op: "exp $0", ty: "f32[128]" },
            Launch { dst: "t", args: &["x2"], op: "neg $0", ty: "f32[128]" },
            Launch { dst: "o1", args: &["p", "r"], op: "concat $0, $1 {axis=0}", ty: "f32[384]" },
            Launch { dst: "u", args: &["x1"], op: "exp $0", ty: "f32[64]" },
            Launch { dst: "o2", args: &["u"], op: "exp $0", ty: "f32[64]" },
            Launch { dst: "o3", args: &["q", "t"], op: "concat $0, $1 {axis=0}", ty: "f32[320]" },
        ],
        "%o1 as \"o1\", %o2 as \"o2\", %o3 as \"o3\"",
        true,
    );
    let p = main_plan(&m).expect("plan");
    assert_eq!(
        layout(&p),
        vec![(0, 4, 0, 1024), (1, 7, 1024, 768), (2, 4, 1792, 512), (3, 7, 2304, 512), (5, 6, 1792, 256)]
    );
    assert_eq!((p.peak_bytes, p.no_reuse_bytes), (2816, 3072));
}

/// An input declaration of a cache of `layer` of type `ty`.
fn cache(layer: u32, ty: &str) -> String {
    format!("{{role=conv_state, layer={layer}}} : {ty}")
}

#[test]
fn caches_update_in_place() {
    // `cache` is replaced by a launch that reads it (as scatter_cache does), `kept` is returned
    // unchanged, and `x` is returned under its name with another type, updating nothing: only
    // the first two alias their input, because they say so.
    let ty = "f32[1, 4, 64]";
    let m = module(
        &[("cache", &cache(0, ty)), ("kept", &cache(1, ty)), ("x", ty)],
        &[
            Launch { dst: "t", args: &["x"], op: "exp $0", ty },
            Launch { dst: "new", args: &["cache", "t"], op: "add $0, $1", ty },
            Launch { dst: "y", args: &["new"], op: "slice $0 {axis=1, start=0, end=2}", ty: "f32[1, 2, 64]" },
        ],
        "%y as \"x\", %new as \"cache\" {updates=%cache}, %kept as \"kept\" {updates=%kept}",
        true,
    );
    let p = main_plan(&m).expect("plan");
    let pairs = in_place_names(m.function("main").expect("main"), &p);
    assert_eq!(pairs, vec![("cache", "cache"), ("kept", "kept")]);
    // Returned twice, plainly and as the cache's update, `new` still lives in the cache.
    let twice = module(
        &[("cache", &cache(0, ty)), ("x", ty)],
        &[Launch { dst: "new", args: &["cache", "x"], op: "add $0, $1", ty }],
        "%new as \"copy\", %new as \"cache\" {updates=%cache}",
        true,
    );
    let f = twice.function("main").expect("main");
    let p2 = main_plan(&twice).expect("plan");
    let new = f.graph.outputs[0].value;
    assert_eq!(p2.location(new), Some(lathe_passes::plan_memory::Location::InPlace(0)));
    // Only t is an intermediate: `new` lives in the cache, `y` in the caller's output.
    assert_eq!(layout(&p), vec![(0, 1, 0, 1024)]);
}

/// `(output name, input name)` of every in-place update of a plan.
fn in_place_names<'f>(f: &'f Function, p: &MemoryPlan) -> Vec<(&'f str, &'f str)> {
    let input_name = |v: ValueId| f.graph.inputs().find(|(_, iv)| *iv == v).map_or("?", |(n, _)| n);
    p.in_place.iter().map(|&(o, i)| (f.graph.outputs[o].name.as_str(), input_name(i))).collect()
}

fn plan_error(inputs: &[(&str, &str)], launches: &[Launch], ret: &str) -> String {
    let m = module(inputs, launches, ret, true);
    let e = main_plan(&m).expect_err("must be rejected");
    // The pass fails with the same message.
    let mut pm = PassManager::parse("plan-memory").expect("pipeline");
    let mut m2 = m.clone();
    match pm.run(&mut m2, &mut std::io::sink()) {
        Err(PassError::Failed { pass, failure }) if matches!(*failure, Failure::Plan(_)) => {
            assert_eq!((pass, failure.to_string()), ("plan-memory", e.clone()))
        }
        other => panic!("{other:?}"),
    }
    e
}

#[test]
fn clobbering_in_place_updates_are_errors() {
    let ty = "f32[1, 4, 64]";
    // The new cache is written at launch 0 while launch 1 still reads the old one.
    let e = plan_error(
        &[("cache", &cache(0, ty)), ("x", ty)],
        &[
            Launch { dst: "new", args: &["cache"], op: "exp $0", ty },
            Launch { dst: "z", args: &["cache", "x"], op: "add $0, $1", ty },
        ],
        "%new as \"cache\" {updates=%cache}, %z as \"z\"",
    );
    assert!(
        e.contains("@main: output `cache` updates input `cache` in place at launch 0") && e.contains("launch 1"),
        "{e}"
    );
    // The old cache is also returned under another name.
    let e = plan_error(
        &[("cache", &cache(0, ty))],
        &[Launch { dst: "new", args: &["cache"], op: "exp $0", ty }],
        "%new as \"cache\" {updates=%cache}, %cache as \"old\"",
    );
    assert!(e.contains("also returned as `old`"), "{e}");
    // One value cannot be the new contents of two caches.
    let e = plan_error(
        &[("k", &cache(0, ty)), ("v", &cache(1, ty))],
        &[Launch { dst: "new", args: &["k", "v"], op: "add $0, $1", ty }],
        "%new as \"k\" {updates=%k}, %new as \"v\" {updates=%v}",
    );
    assert!(e.contains("both `k` and `v`"), "{e}");
    // Two outputs updating one input would write the same cache twice (the verifier rejects it
    // too; `plan` does not rely on that).
    let src = r#"module @m {
  compute_dtype = f32
  func @main {
    %0 = input "cache" {role=conv_state, layer=0} : f32[1, 2, 4]
    %1 = exp %0 : f32[1, 2, 4]
    return %1 as "a" {updates=%0}, %1 as "b" {updates=%0}
  }
}
"#;
    let e = main_plan(&parse_module(src).expect("parse")).expect_err("twice");
    assert!(e.contains("two outputs update input `cache` in place"), "{e}");
}

#[test]
fn a_cache_no_launch_writes_is_an_error() {
    let src = r#"module @m {
  compute_dtype = f32
  func @main {
    %0 = input "cache" {role=conv_state, layer=0} : f32[1, 2, 4]
    %1 = constant 0.0 : f32[1, 2, 4]
    return %1 as "cache" {updates=%0}
  }
}
"#;
    let m = parse_module(src).expect("parse");
    let e = main_plan(&m).expect_err("no writer");
    assert!(e.contains("no launch writes it (it is a `constant`)"), "{e}");
}

#[test]
fn the_pass_records_statistics_and_changes_nothing() {
    let mut m = chain(true);
    let before = m.clone();
    let mut pm = PassManager::parse("plan-memory").expect("pipeline");
    pm.instrumentation.verify_each = true;
    let report = pm.run(&mut m, &mut std::io::sink()).expect("run");
    // Nothing but the stage, which the pass manager records.
    assert_eq!(m, Module { stage: lathe_ir::Stage::Planned, ..before });
    assert_eq!(report.timings[0].2, Changed::No);
    let stat = |k: &str| report.stats.get(&("plan-memory".to_string(), k.to_string())).copied();
    assert_eq!((stat("peak-bytes-main"), stat("no-reuse-bytes-main")), (Some(1024), Some(1536)));
}

/// The most bytes live at one launch: no arena can be smaller.
fn live_lower_bound(p: &MemoryPlan) -> u64 {
    let n = p.buffers.iter().map(|b| b.last + 1).max().unwrap_or(0);
    (0..n)
        .map(|i| {
            p.buffers.iter().filter(|b| b.first <= i && i <= b.last).map(|b| b.bytes.div_ceil(ALIGN) * ALIGN).sum()
        })
        .max()
        .unwrap_or(0)
}

fn scheduled(dir: &str) -> (Module, lathe_passes::RunReport) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(dir);
    let mut m = import(&path, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}")).module;
    let mut pm = PassManager::parse("default").expect("default");
    pm.instrumentation.verify_each = true;
    let report = pm.run(&mut m, &mut std::io::sink()).unwrap_or_else(|e| panic!("{dir}: {e}"));
    (m, report)
}

#[test]
fn imported_models_get_sound_plans() {
    for dir in ["models/nemotron_h_tiny", "configs/nemotron-h-8b-base-8k"] {
        let (m, report) = scheduled(dir);
        for f in &m.functions {
            let p = plan(&m, f).unwrap_or_else(|e| panic!("{dir}: {e}"));
            check_sound(&m, f, &p);
            assert!(p.peak_bytes >= live_lower_bound(&p));
            // The default pipeline ends with plan-memory, which reported the same numbers.
            let stat = report.stats.get(&("plan-memory".to_string(), format!("peak-bytes-{}", f.name)));
            assert_eq!(stat, Some(&p.peak_bytes), "{dir} @{}", f.name);
            println!(
                "{dir} @{}: {} buffers, peak {} B, no reuse {} B, live lower bound {} B, {} in place",
                f.name,
                p.buffers.len(),
                p.peak_bytes,
                p.no_reuse_bytes,
                live_lower_bound(&p),
                p.in_place.len()
            );
            if dir.contains("8b") && (f.name == "decode" || f.name == "extend") {
                assert!(p.peak_bytes < p.no_reuse_bytes, "{dir} @{}: no reuse", f.name);
            }
        }
    }
}

#[test]
fn every_cache_of_the_8b_decode_updates_in_place() {
    let (m, _) = scheduled("configs/nemotron-h-8b-base-8k");
    let decode = m.function("decode").expect("decode");
    let p = plan(&m, decode).expect("plan");
    let pairs = in_place_names(decode, &p);
    assert!(pairs.iter().all(|(o, i)| o == i && o.starts_with("layers.")), "{pairs:?}");
    let count = |kind: lathe_ir::CacheKind| {
        p.in_place
            .iter()
            .filter(|&&(_, i)| {
                decode.graph.role_of(i).and_then(lathe_ir::InputRole::cache).is_some_and(|c| c.1 == kind)
            })
            .count()
    };
    use lathe_ir::CacheKind::{Conv, Key, Ssm, Value};
    assert_eq!([count(Conv), count(Ssm), count(Key), count(Value)], [24, 24, 4, 4], "{pairs:?}");
    assert_eq!(p.in_place.len(), 56);
    // No cache takes arena space: each is written where its input lives.
    let outputs: Vec<ValueId> = decode.graph.outputs.iter().map(|o| o.value).collect();
    assert!(p.buffers.iter().all(|b| b.value().is_none_or(|v| !outputs.contains(&v))));
}

/// The planner's sizes are checked even on a module that does not verify (text refuses the
/// bound already: `lathe_ir::limits::MAX_SYMBOL_BOUND`).
#[test]
fn sizes_beyond_u64_are_errors() {
    let src = r#"module @m {
  compute_dtype = f32
  symbol N <= 4096
  func @main {
    %0 = input "x" : f32[N]
    %1 = exp %0 : f32[N]
    %2 = neg %1 : f32[N]
    return %2 as "y"
  }
}
"#;
    let e = parse_module(&src.replace("4096", "4611686018427387904")).expect_err("a bound past the limit");
    assert!(e.to_string().contains("above the limit"), "{e}");
    let mut m = parse_module(src).expect("parse");
    let n = m.symbol("N").expect("N");
    m.symbols[n].max = 1 << 62;
    let e = main_plan(&m).expect_err("2^62 f32 values");
    assert!(e.contains("@main: result 0 of launch 0 (`exp`)") && e.contains("exceeds 2^64 bytes"), "{e}");
}
