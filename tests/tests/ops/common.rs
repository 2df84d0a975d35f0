//! Helpers shared by the per-op cases: module text, running the interpreter, tensors, and the
//! record of which ops an interpreter case actually ran.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use lathe_interp::tensor::Tensor;
use lathe_interp::{InterpError, SyntheticOnly};
use lathe_ir::{DType, Graph, Module, Op};

thread_local! {
    /// Op names of every module an interpreter case ran on this thread (one case per test).
    static RAN: RefCell<BTreeSet<&'static str>> = const { RefCell::new(BTreeSet::new()) };
}

/// Forgets what earlier cases on this thread ran.
pub fn reset_ran() {
    RAN.with(|r| r.borrow_mut().clear());
}

/// The op names run since [`reset_ran`].
pub fn ran() -> BTreeSet<&'static str> {
    RAN.with(|r| r.borrow().clone())
}

/// Every op name in a graph, fusion bodies included.
pub fn ops_of(g: &Graph, into: &mut BTreeSet<&'static str>) {
    for (_, n) in g.nodes.iter() {
        into.insert(n.op.name());
        if let Op::Fusion(f) = &n.op {
            ops_of(&f.body, into);
        }
    }
}

/// Every op name in a module.
pub fn module_ops(m: &Module) -> BTreeSet<&'static str> {
    let mut s = BTreeSet::new();
    for f in &m.functions {
        ops_of(&f.graph, &mut s);
    }
    s
}

/// A module `@ops` computing in f32 with the given declarations (symbols, weights; each line
/// indented and newline-terminated) and one function `@main` with the given body.
pub fn module(decls: &str, body: &str) -> String {
    format!("module @ops {{\n  compute_dtype = f32\n{decls}  func @main {{\n{body}  }}\n}}\n")
}

/// Parses, panicking with the error and the source.
pub fn parse(src: &str) -> Module {
    lathe_ir::text::parse_module(src).unwrap_or_else(|e| panic!("parse error {e}\n{src}"))
}

/// Parses and verifies a module that the case means to be valid.
pub fn valid(src: &str) -> Module {
    let m = parse(src);
    if let Err(e) = lathe_ir::verify::verify(&m) {
        panic!("module does not verify:\n{e}\n{src}");
    }
    m
}

/// Runs `func` of a module given as text; records its ops for the coverage check.
pub fn try_run_fn(src: &str, func: &str, inputs: &[(&str, Tensor)]) -> Result<HashMap<String, Tensor>, InterpError> {
    let m = valid(src);
    RAN.with(|r| r.borrow_mut().extend(module_ops(&m)));
    let inputs: HashMap<String, Tensor> = inputs.iter().map(|(n, t)| ((*n).to_string(), t.clone())).collect();
    lathe_interp::run(&m, func, &inputs, &SyntheticOnly).map(|outs| outs.into_iter().collect())
}

/// Runs `@main`.
pub fn try_run(src: &str, inputs: &[(&str, Tensor)]) -> Result<HashMap<String, Tensor>, InterpError> {
    try_run_fn(src, "main", inputs)
}

/// Runs `@main`, panicking on an interpreter error.
pub fn run(src: &str, inputs: &[(&str, Tensor)]) -> HashMap<String, Tensor> {
    try_run(src, inputs).unwrap_or_else(|e| panic!("interpreter error: {e}\n{src}"))
}

/// The interpreter error of a run that must fail at a node running `op`, with a message
/// containing `want`.
pub fn run_err(src: &str, inputs: &[(&str, Tensor)], op: &str, want: &str) -> String {
    match try_run(src, inputs) {
        Ok(_) => panic!("run succeeded, expected a `{op}` error containing {want:?}\n{src}"),
        Err(e) => {
            let text = e.to_string();
            match &e {
                InterpError::Op { op: got, message, .. } => {
                    assert_eq!(*got, op, "error at the wrong op: {text}");
                    assert!(message.contains(want), "error {text:?} lacks {want:?}");
                }
                other => panic!("expected an op error at `{op}`, got {other:?}"),
            }
            text
        }
    }
}

/// A float tensor (values rounded to `dtype`).
pub fn ft(dtype: DType, shape: &[usize], v: &[f64]) -> Tensor {
    assert_eq!(shape.iter().product::<usize>(), v.len(), "test tensor: shape {shape:?} vs {} values", v.len());
    Tensor::from_f32(dtype, shape.to_vec(), v.iter().map(|&x| x as f32).collect())
}

/// An f32 tensor.
pub fn f32t(shape: &[usize], v: &[f64]) -> Tensor {
    ft(DType::F32, shape, v)
}

/// An integer or bool tensor.
pub fn it(dtype: DType, shape: &[usize], v: &[i64]) -> Tensor {
    assert_eq!(shape.iter().product::<usize>(), v.len(), "test tensor: shape {shape:?} vs {} values", v.len());
    Tensor::from_i64(dtype, shape.to_vec(), v.to_vec())
}

/// `n` values uniform in `[lo, hi)`.
pub fn uniform(rng: &mut lathe_tests::Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.uniform(lo, hi)).collect()
}

/// An output by name.
pub fn out<'a>(outs: &'a HashMap<String, Tensor>, name: &str) -> &'a Tensor {
    outs.get(name).unwrap_or_else(|| panic!("no output {name:?} (have {:?})", outs.keys().collect::<Vec<_>>()))
}

/// Checks dtype and shape, then values against `expected` with the shared tolerance.
pub fn close(what: &str, t: &Tensor, dtype: DType, shape: &[usize], expected: &[f64], reduction_len: usize) {
    assert_eq!(t.dtype, dtype, "{what}: dtype");
    assert_eq!(t.shape, shape, "{what}: shape");
    lathe_tests::assert_close(what, &t.to_f64(), expected, dtype, reduction_len);
}

/// Checks dtype, shape and exact values (ops that only move data, integer results).
pub fn exact(what: &str, t: &Tensor, dtype: DType, shape: &[usize], expected: &[f64]) {
    assert_eq!(t.dtype, dtype, "{what}: dtype");
    assert_eq!(t.shape, shape, "{what}: shape");
    let got = t.to_f64();
    let same = got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .all(|(a, b)| (a == b && a.is_sign_negative() == b.is_sign_negative()) || (a.is_nan() && b.is_nan()));
    assert!(same, "{what}: got {got:?}, expected {expected:?}");
}

/// Asserts every value of a float tensor is representable in bf16.
pub fn all_bf16(what: &str, t: &Tensor) {
    assert_eq!(t.dtype, DType::BF16, "{what}: dtype");
    for (i, &v) in t.floats().iter().enumerate() {
        assert!(
            lathe_numerics::round_to_bf16(v).to_bits() == v.to_bits() || v.is_nan(),
            "{what}: element {i} = {v} is not a bf16 value"
        );
    }
}

/// Logistic sigmoid in f64.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// SiLU in f64.
pub fn silu(x: f64) -> f64 {
    x * sigmoid(x)
}

/// Row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The multi-index of flat offset `i` in `shape`.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}
