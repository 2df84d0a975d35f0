//! Passes accept every module that verifies, op by op: for every op kind, a module holding
//! that one op on operands that are function inputs, weights or constants (every operand of one
//! kind, and seeded mixes), its results returned, dead, or read at run time. Each goes through
//! the default pipeline, the fp8 pipeline, every pass alone and `schedule-hybrid,plan-memory`
//! (no `dce` first), verified after every pass; a pass may refuse a module only with a clean
//! error of the input's (a plan that does not fit), never panic or leave a module that does not
//! verify. When the module runs on the interpreter, the default pipeline keeps its results bit
//! for bit.
//!
//! The random modules of the round-trip property test (`lathe_tests::modgen`) go through the
//! default and fp8 pipelines in `pipelines.rs`, and through every pass alone here; the op-by-op
//! modules cover what those rarely build: an op whose operands are all weights (a compile-time
//! value), or all constants, or whose result nobody reads.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use lathe_interp::tensor::{Data, Tensor};
use lathe_interp::SyntheticOnly;
use lathe_ir::builder::GraphBuilder;
use lathe_ir::module::{Module, ValueId, WeightSource};
use lathe_ir::ops::{
    Attention, BinaryOp, Clamp, Constant, Conv2dPatch, Fusion, GeluApprox, Iota, KernelStrategy, MaskKind, Matmul,
    Norm, Op, Reduce, ReduceKind, RopeAttrs, Sample, ScanSsd, Slice, Softmax, Split, UnaryOp,
};
use lathe_ir::text::print_module;
use lathe_ir::types::{DType, TensorType};
use lathe_passes::PassManager;
use lathe_tests::Rng;

/// One operand: its type and, when it is a constant, its values (a splat when one).
struct Operand {
    ty: TensorType,
    values: Vec<f64>,
}

fn f32s(shape: &[u64]) -> Operand {
    Operand { ty: TensorType::fixed(DType::F32, shape), values: vec![0.5] }
}

fn typed(dtype: DType, shape: &[u64], values: &[f64]) -> Operand {
    Operand { ty: TensorType::fixed(dtype, shape), values: values.to_vec() }
}

/// One op on operands of given types.
struct Case {
    name: String,
    op: Op,
    operands: Vec<Operand>,
}

fn case(op: Op, operands: Vec<Operand>) -> Case {
    Case { name: format!("{op:?}").chars().take(60).collect(), op, operands }
}

/// A fusion computing `a + b` on two `f32[2, 3]` values.
fn add_fusion(m: &Module, strategy: KernelStrategy) -> Op {
    let mut b = GraphBuilder::new(m);
    let body = (|| {
        let x = b.input("a", TensorType::fixed(DType::F32, &[2, 3]))?;
        let y = b.input("b", TensorType::fixed(DType::F32, &[2, 3]))?;
        let z = b.binary(BinaryOp::Add, x, y)?;
        b.output("", z);
        Ok::<_, lathe_ir::builder::BuildError>(())
    })();
    body.unwrap_or_else(|e| panic!("fusion body: {e}"));
    Op::Fusion(Box::new(Fusion { strategy, body: b.into_graph() }))
}

/// Every op kind on small operands (several cases for ops with variants).
fn cases(m: &Module) -> Vec<Case> {
    let fp8 = |shape: &[u64]| typed(DType::F8E4M3, shape, &[1.0]);
    let mut out = vec![
        case(Op::Iota(Iota { axis: 1, ty: TensorType::fixed(DType::I32, &[2, 3]) }), vec![]),
        case(
            Op::Matmul(Matmul { transpose_a: false, transpose_b: false, out: DType::F32 }),
            vec![f32s(&[2, 3]), f32s(&[3, 4])],
        ),
        case(
            Op::Matmul(Matmul { transpose_a: false, transpose_b: true, out: DType::BF16 }),
            vec![f32s(&[2, 2, 3]), f32s(&[4, 3])],
        ),
        case(
            Op::ScaledMatmul(Matmul { transpose_a: false, transpose_b: true, out: DType::F32 }),
            vec![fp8(&[2, 3]), fp8(&[4, 3]), f32s(&[]), f32s(&[4])],
        ),
        case(
            Op::Attention(Attention { mask: MaskKind::Causal, scale: 0.5 }),
            vec![f32s(&[1, 2, 2, 4]), f32s(&[1, 3, 1, 4]), f32s(&[1, 3, 1, 4]), typed(DType::I64, &[1], &[3.0])],
        ),
        case(
            Op::Attention(Attention { mask: MaskKind::Bidirectional, scale: 0.5 }),
            vec![f32s(&[1, 1, 2, 4]), f32s(&[1, 3, 1, 4]), f32s(&[1, 3, 1, 2]), typed(DType::I64, &[1], &[2.0])],
        ),
        case(
            Op::Rope(RopeAttrs { theta: 10000.0, scale: 1.0 }),
            vec![f32s(&[1, 2, 2, 4]), typed(DType::I64, &[1, 2], &[0.0, 1.0])],
        ),
        case(
            Op::ScanSsd(ScanSsd { chunk: 2 }),
            vec![
                f32s(&[1, 2, 2, 2]),
                f32s(&[1, 2, 2]),
                typed(DType::F32, &[2], &[-1.0]),
                f32s(&[1, 2, 1, 2]),
                f32s(&[1, 2, 1, 2]),
                f32s(&[1, 2, 2, 2]),
            ],
        ),
        case(Op::Conv1dCausal, vec![f32s(&[1, 3, 2]), f32s(&[2, 3]), f32s(&[2]), f32s(&[1, 2, 2])]),
        case(Op::Conv2dPatch(Conv2dPatch { patch: 2 }), vec![f32s(&[1, 2, 4, 4]), f32s(&[3, 2, 2, 2]), f32s(&[3])]),
        case(Op::Clamp(Clamp { min: Some(-1.0), max: Some(1.0) }), vec![f32s(&[2, 3])]),
        case(Op::Clamp(Clamp { min: None, max: Some(1.0) }), vec![typed(DType::I32, &[2, 3], &[4.0])]),
        case(Op::Where, vec![typed(DType::Bool, &[2, 3], &[1.0]), f32s(&[2, 3]), f32s(&[3])]),
        case(Op::Softmax(Softmax { axis: 1 }), vec![f32s(&[2, 3])]),
        case(Op::Softmax(Softmax { axis: 0 }), vec![f32s(&[2, 3])]),
        case(Op::RmsNorm(Norm { eps: 1e-5, groups: 1 }), vec![f32s(&[2, 4]), f32s(&[4])]),
        case(Op::RmsNorm(Norm { eps: 1e-5, groups: 2 }), vec![f32s(&[2, 4]), f32s(&[4]), f32s(&[2, 4])]),
        case(Op::LayerNorm(Norm { eps: 1e-5, groups: 1 }), vec![f32s(&[2, 4]), f32s(&[4]), f32s(&[4])]),
        case(Op::Reshape(TensorType::fixed(DType::F32, &[3, 2]).shape), vec![f32s(&[2, 3])]),
        case(Op::Transpose(vec![1, 0]), vec![f32s(&[2, 3])]),
        case(Op::Slice(Slice { axis: 1, start: 1, end: None }), vec![f32s(&[2, 3])]),
        case(Op::Split(Split { axis: 1, sizes: vec![1, 2] }), vec![f32s(&[2, 3])]),
        case(Op::Concat(0), vec![f32s(&[2, 3]), f32s(&[1, 3])]),
        case(Op::Concat(1), vec![f32s(&[2, 3])]),
        case(Op::Broadcast(TensorType::fixed(DType::F32, &[4, 2, 3]).shape), vec![f32s(&[2, 3])]),
        case(Op::Broadcast(TensorType::fixed(DType::F32, &[2, 3]).shape), vec![f32s(&[1, 3])]),
        case(Op::Gather, vec![f32s(&[5, 3]), typed(DType::I64, &[2], &[1.0, 4.0])]),
        case(Op::Gather, vec![typed(DType::I32, &[5], &[7.0]), typed(DType::U8, &[2, 2], &[0.0, 1.0, 2.0, 3.0])]),
        case(Op::PixelShuffle(2), vec![f32s(&[1, 4, 4, 2])]),
        case(Op::ScatterCache, vec![f32s(&[1, 4, 2]), f32s(&[1, 2, 2]), typed(DType::I64, &[1], &[1.0])]),
        case(Op::Amax, vec![f32s(&[2, 3])]),
        case(Op::Amax, vec![f32s(&[])]),
        case(Op::Quantize(DType::F8E4M3), vec![f32s(&[2, 3]), f32s(&[])]),
        case(Op::Quantize(DType::F8E5M2), vec![f32s(&[2, 3]), f32s(&[3])]),
        case(Op::Dequantize(DType::BF16), vec![fp8(&[2, 3]), f32s(&[3])]),
        case(add_fusion(m, KernelStrategy::Elementwise), vec![f32s(&[2, 3]), f32s(&[2, 3])]),
        case(add_fusion(m, KernelStrategy::Gemm), vec![f32s(&[2, 3]), f32s(&[2, 3])]),
        case(
            Op::Sample(Sample { seed: 7, temperature: 0.0, top_k: None, top_p: None }),
            vec![f32s(&[2, 5]), typed(DType::I64, &[], &[0.0])],
        ),
        case(
            Op::Sample(Sample { seed: 7, temperature: 0.8, top_k: Some(3), top_p: Some(0.9) }),
            vec![f32s(&[2, 5]), typed(DType::I64, &[], &[3.0])],
        ),
    ];
    for u in UnaryOp::ALL {
        out.push(case(Op::Unary(u), vec![f32s(&[2, 3])]));
    }
    out.push(case(Op::Unary(UnaryOp::Gelu(GeluApprox::Tanh)), vec![typed(DType::BF16, &[3], &[1.0])]));
    out.push(case(Op::Unary(UnaryOp::Neg), vec![typed(DType::I8, &[3], &[5.0])]));
    for b in BinaryOp::ALL {
        out.push(case(Op::Binary(b), vec![f32s(&[2, 3]), f32s(&[3])]));
    }
    out.push(case(Op::Binary(BinaryOp::Mul), vec![typed(DType::I64, &[2], &[3.0]), typed(DType::I64, &[], &[2.0])]));
    for to in DType::ALL {
        out.push(case(Op::Cast(to), vec![f32s(&[2, 3])]));
    }
    out.push(case(Op::Cast(DType::F32), vec![typed(DType::Bool, &[2], &[1.0])]));
    for kind in ReduceKind::ALL {
        out.push(case(Op::Reduce(Reduce { kind, axes: vec![1], keep_dims: false }), vec![f32s(&[2, 3])]));
        out.push(case(Op::Reduce(Reduce { kind, axes: vec![0, 1], keep_dims: true }), vec![f32s(&[2, 3])]));
    }
    out.push(case(
        Op::Reduce(Reduce { kind: ReduceKind::Max, axes: vec![0], keep_dims: false }),
        vec![typed(DType::I32, &[3, 2], &[2.0])],
    ));
    out
}

/// Where an operand comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Input,
    Weight,
    Constant,
}

/// What becomes of the op's results.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Use {
    /// `main` returns them.
    Returned,
    /// Nobody reads them; `main` returns an unrelated input.
    Dead,
    /// Each is cast to f32 and added to an input of its shape (a run-time use).
    Consumed,
    /// The op is dead, and its first operand also feeds a returned `cast`.
    DeadBesideLive,
}

const USES: [Use; 4] = [Use::Returned, Use::Dead, Use::Consumed, Use::DeadBesideLive];

/// A module with one function `main` computing `c.op` on operands from `sources`, its results
/// used as `usage` says.
fn build(c: &Case, sources: &[Source], usage: Use, rng: &mut Rng) -> Result<Module, String> {
    let mut m = Module::new("one_op");
    for (i, (o, s)) in c.operands.iter().zip(sources).enumerate() {
        if *s == Source::Weight {
            m.add_weight(format!("w{i}"), o.ty.clone(), WeightSource::Synthetic { seed: rng.next_u64() });
        }
    }
    let op = c.op.clone();
    let mut b = GraphBuilder::new(&m);
    let mut args: Vec<ValueId> = Vec::new();
    for (i, (o, s)) in c.operands.iter().zip(sources).enumerate() {
        let v = match s {
            Source::Input => b.input(&format!("x{i}"), o.ty.clone()),
            Source::Weight => {
                let w = m.weight(&format!("w{i}")).ok_or("a weight just added")?;
                b.push1(Op::Weight(w), &[])
            }
            Source::Constant => b.push1(Op::Constant(Constant { ty: o.ty.clone(), values: o.values.clone() }), &[]),
        };
        args.push(v.map_err(|e| format!("operand {i}: {e}"))?);
    }
    let results = b.push(op, &args).map_err(|e| e.to_string())?;
    let e = |e: lathe_ir::builder::BuildError| e.to_string();
    match usage {
        Use::Returned => {
            for (i, r) in results.into_iter().enumerate() {
                b.output(&format!("y{i}"), r);
            }
        }
        Use::Dead => {
            let keep = b.input("keep", TensorType::fixed(DType::F32, &[2])).map_err(e)?;
            b.output("keep", keep);
        }
        Use::Consumed => {
            for (i, r) in results.into_iter().enumerate() {
                let t = b.ty(r).cloned().ok_or("a result")?;
                let x = b.input(&format!("z{i}"), t.with_dtype(DType::F32)).map_err(e)?;
                let f = b.push1(Op::Cast(DType::F32), &[r]).map_err(e)?;
                let y = b.binary(BinaryOp::Add, f, x).map_err(e)?;
                b.output(&format!("y{i}"), y);
            }
        }
        Use::DeadBesideLive => match args.first() {
            Some(&a) => {
                let y = b.push1(Op::Cast(DType::F32), &[a]).map_err(e)?;
                b.output("y", y);
            }
            None => {
                let keep = b.input("keep", TensorType::fixed(DType::F32, &[2])).map_err(e)?;
                b.output("keep", keep);
            }
        },
    }
    m.functions.push(b.finish("main"));
    lathe_ir::verify::verify(&m).map_err(|e| format!("the case does not verify: {e}"))?;
    Ok(m)
}

fn bits(t: &Tensor) -> Vec<u64> {
    match &t.data {
        Data::F(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        Data::I(v) => v.iter().map(|&x| x as u64).collect(),
    }
}

type Outputs = Result<Vec<(String, Vec<usize>, Vec<u64>)>, String>;

fn outputs(m: &Module, args: &HashMap<String, Tensor>) -> Outputs {
    lathe_interp::run(m, "main", args, &SyntheticOnly)
        .map(|outs| outs.into_iter().map(|(n, t)| (n, t.shape.clone(), bits(&t))).collect())
        .map_err(|e| e.to_string())
}

/// Runs `pipeline` on a copy of `m` with verification after each pass; the module after it, or
/// `None` when a pass refused the module for a reason of the input's.
fn run_pipeline(m: &Module, pipeline: &str) -> Result<Option<Module>, String> {
    let mut pm = PassManager::parse(pipeline).map_err(|e| e.to_string())?;
    pm.instrumentation.verify_each = true;
    let mut after = m.clone();
    match catch_unwind(AssertUnwindSafe(|| pm.run(&mut after, &mut std::io::sink()))) {
        Ok(Ok(_)) => Ok(Some(after)),
        Ok(Err(e)) if e.is_bad_input() => Ok(None),
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => Err(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// The pipelines every module goes through.
fn pipelines() -> Vec<String> {
    let mut out = vec!["default".to_string(), "quantize-fp8,default".to_string()];
    let alone = lathe_passes::registry().iter().filter(|p| p.accepts.contains(&lathe_ir::Stage::Graph));
    out.extend(alone.map(|p| p.name.to_string()));
    out.push("schedule-hybrid,plan-memory".into());
    out
}

#[test]
fn every_op_on_inputs_weights_and_constants_survives_every_pass() {
    let empty = Module::new("one_op");
    let pipelines = pipelines();
    let mut failures: Vec<String> = Vec::new();
    let (mut modules, mut ran, mut compared) = (0, 0, 0);
    let mut rng = Rng::new(0x5eed);
    for c in cases(&empty) {
        let n = c.operands.len();
        let mut choices: Vec<Vec<Source>> =
            [Source::Input, Source::Weight, Source::Constant].into_iter().map(|s| vec![s; n]).collect();
        for _ in 0..3 {
            let pick = [Source::Input, Source::Weight, Source::Constant];
            choices.push((0..n).map(|_| pick[rng.below(3)]).collect());
        }
        if n == 0 {
            choices.truncate(1);
        }
        for sources in &choices {
            for usage in USES {
                let m = match build(&c, sources, usage, &mut rng) {
                    Ok(m) => m,
                    Err(e) => {
                        failures.push(format!("{} {sources:?} {usage:?}: {e}", c.name));
                        continue;
                    }
                };
                modules += 1;
                let args = lathe_tests::random_inputs(&m, "main", 1);
                let want = outputs(&m, &args);
                for p in &pipelines {
                    match run_pipeline(&m, p) {
                        Err(e) => failures.push(format!(
                            "{} {sources:?} {usage:?}: {p}: {e}\n--- module ---\n{}",
                            c.name,
                            print_module(&m)
                        )),
                        Ok(None) => {}
                        Ok(Some(after)) => {
                            ran += 1;
                            if p == "default" && want.is_ok() {
                                let got = outputs(&after, &args);
                                if got == want {
                                    compared += 1;
                                } else {
                                    failures.push(format!(
                                        "{} {sources:?}: results differ after the default pipeline: {want:?} vs {got:?}\n--- module ---\n{}",
                                        c.name,
                                        print_module(&m)
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("{modules} modules, {ran} pipeline runs went through, {compared} compared");
    // One example per distinct first line (op, pipeline and message without the operand kinds).
    let mut distinct: Vec<(String, &String)> = Vec::new();
    for f in &failures {
        let head = f.lines().next().unwrap_or_default();
        let key = head.split_once(' ').map_or(head, |k| k.0).to_string()
            + head.split_once("]").map_or("", |k| k.1).split_once(':').map_or("", |k| k.1);
        if !distinct.iter().any(|(k, _)| *k == key) {
            distinct.push((key, f));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s) in {modules} modules, {} distinct:\n  {}\n\nExamples:\n\n{}",
        failures.len(),
        distinct.len(),
        distinct.iter().map(|d| d.1.lines().next().unwrap_or_default()).collect::<Vec<_>>().join("\n  "),
        distinct.iter().take(3).map(|d| d.1.as_str()).collect::<Vec<_>>().join("\n\n")
    );
    // The property holds only if the modules go through: most pipelines must run, not refuse.
    assert!(
        ran * 10 >= modules * pipelines.len() * 9,
        "only {ran} of {} pipeline runs went through",
        modules * pipelines.len()
    );
    assert!(compared * 2 >= modules, "only {compared} of {modules} modules compared after the default pipeline");
}

/// The random modules of the round-trip property test through every pass alone and
/// `schedule-hybrid,plan-memory` (`pipelines.rs` runs the default and fp8 pipelines on them).
#[test]
fn random_modules_survive_every_pass_alone() {
    let pipelines: Vec<String> = pipelines().into_iter().skip(2).collect();
    let mut failures = Vec::new();
    let mut ran = 0;
    for seed in 0..150 {
        let Ok(case) = lathe_tests::modgen::random_case(seed) else { continue };
        for p in &pipelines {
            match run_pipeline(&case.module, p) {
                Ok(Some(_)) => ran += 1,
                Ok(None) => {}
                Err(e) => {
                    failures.push(format!("seed {seed}: {p}: {e}\n--- module ---\n{}", print_module(&case.module)))
                }
            }
        }
        if failures.len() >= 3 {
            break;
        }
    }
    assert!(failures.is_empty(), "{} failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
    assert!(ran >= 100 * pipelines.len(), "only {ran} pipeline runs went through");
}
