//! Test helpers shared by the templates' tests: one-group functions in IR text, run through
//! [`crate::simrun`] with every compiled group checked against the interpreter.

use std::collections::HashMap;

use lathe_interp::tensor::Tensor;
use lathe_ir::Dim;

use crate::simrun::{run_function_checked, simulate_sampled, GroupReport};

/// A one-group function: top-level inputs `inputs` (name, type) passed in order to a `strategy`
/// group with `body` (whose `input "argK"` nodes take them) and results `results`; `symbols`
/// declares the module's symbols (`"  symbol B <= 8\n"`).
pub fn one_group_with(symbols: &str, inputs: &[(&str, &str)], strategy: &str, body: &str, results: &[&str]) -> String {
    let mut t = format!("module @m {{\n  compute_dtype = f32\n{symbols}  func @main {{\n");
    for (k, (name, ty)) in inputs.iter().enumerate() {
        t += &format!("    %{k} = input \"{name}\" : {ty}\n");
    }
    let args: Vec<String> = (0..inputs.len()).map(|k| format!("%{k}")).collect();
    let n = inputs.len();
    let lhs = if results.len() == 1 { format!("%{n}") } else { format!("%{n}:{}", results.len()) };
    t += &format!(
        "    {lhs} = fusion {} {{strategy={strategy}}} {{\n{body}    }} : {}\n",
        args.join(", "),
        results.join(", ")
    );
    let rets: Vec<String> = if results.len() == 1 {
        vec![format!("%{n}")]
    } else {
        (0..results.len()).map(|k| format!("%{n}#{k}")).collect()
    };
    t + &format!("    return {}\n  }}\n}}\n", rets.join(", "))
}

/// [`one_group_with`] without symbols.
pub fn one_group(inputs: &[(&str, &str)], strategy: &str, body: &str, results: &[&str]) -> String {
    one_group_with("", inputs, strategy, body, results)
}

/// Runs `text`'s function on pseudo-random inputs in [−0.5, 0.5) (integers below `int_bound`;
/// symbols at the values `symbols` names) with its one group compiled and checked against the
/// interpreter; returns the group's report, after asserting it ran compiled and each result
/// within the shared tolerance of its dtype and the group's longest reduction (integers
/// exactly).
pub fn run_group(text: &str, int_bound: i64, symbols: &[(&str, u64)]) -> GroupReport {
    run_group_with(text, int_bound, symbols, |_| {})
}

/// [`run_group`] with the random inputs changed by `set` first (an input's values fixed).
pub fn run_group_with(
    text: &str,
    int_bound: i64,
    symbols: &[(&str, u64)],
    set: impl FnOnce(&mut HashMap<String, Tensor>),
) -> GroupReport {
    let m = lathe_ir::text::parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut inputs = random_inputs(&m, int_bound, symbols);
    set(&mut inputs);
    let (_, reports) =
        run_function_checked(&m, "main", &inputs, &lathe_interp::SyntheticOnly).unwrap_or_else(|e| panic!("{e}"));
    let [r] = reports.as_slice() else { panic!("one group") };
    assert_eq!(r.interpreted, None, "compiled\n{text}");
    assert!(r.instructions > 0);
    let c = r.check.as_ref().expect("checked");
    assert!(c.ints_equal, "integer results differ\n{text}");
    for (k, &(err, dtype)) in c.floats.iter().enumerate() {
        let tol = lathe_tests::tolerance(dtype, c.reduction as usize);
        assert!(err <= tol, "result {k}: normwise {err:.3e} over {tol:.3e} ({c:?})\n{text}");
    }
    r.clone()
}

/// `shape` with each symbol at the value `symbols` names (1 for the others).
pub fn concrete(m: &lathe_ir::Module, shape: &[Dim], symbols: &[(&str, u64)]) -> Vec<usize> {
    shape
        .iter()
        .map(|d| match d {
            Dim::Const(c) => *c as usize,
            Dim::Sym(s) => {
                let name = &m.symbols.get(*s).expect("a symbol").name;
                symbols.iter().find(|(n, _)| n == name).map_or(1, |(_, v)| *v as usize)
            }
        })
        .collect()
}

/// Pseudo-random inputs in [−0.5, 0.5) for function `main` of `m` (integers below `int_bound`;
/// symbols at the values `symbols` names, others 1).
fn random_inputs(m: &lathe_ir::Module, int_bound: i64, symbols: &[(&str, u64)]) -> HashMap<String, Tensor> {
    let f = m.function("main").expect("main");
    let mut inputs = HashMap::new();
    let mut seed = 9u32;
    for (i, _) in f.graph.params() {
        let shape = concrete(m, &i.ty.shape, symbols);
        let n: usize = shape.iter().product();
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed >> 8
        };
        let t = if i.ty.dtype.is_int() {
            Tensor::from_i64(i.ty.dtype, shape, (0..n).map(|_| i64::from(next()) % int_bound).collect())
        } else {
            Tensor::from_f32(i.ty.dtype, shape, (0..n).map(|_| next() as f32 / (1u32 << 24) as f32 - 0.5).collect())
        };
        inputs.insert(i.name.clone(), t);
    }
    inputs
}

/// Runs the one group of `text`'s function in the simulator on `ctas` sampled CTAs (the first,
/// the last and seeded others) and the whole function in the interpreter, on pseudo-random
/// inputs (the group's operands must be the function's inputs, in order), and compares every
/// element the sampled CTAs wrote within the shared tolerance of the result's dtype and
/// `reduction`. Returns how many elements were compared.
pub fn run_group_sampled(text: &str, symbols: &[(&str, u64)], ctas: usize, reduction: usize) -> usize {
    let m = lathe_ir::text::parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let inputs = random_inputs(&m, 1, symbols);
    let f = m.function("main").expect("main");
    let g = &f.graph;
    let group = g
        .order
        .iter()
        .find_map(|&n| match &g.nodes[n].op {
            lathe_ir::Op::Fusion(fu) => Some((fu, &g.nodes[n].args)),
            _ => None,
        })
        .expect("a group");
    let names: Vec<String> = g.params().map(|(i, _)| i.name.clone()).collect();
    let args: Vec<&Tensor> = names.iter().map(|n| &inputs[n]).collect();
    assert_eq!(args.len(), group.1.len(), "the group takes the function's inputs");
    let got = simulate_sampled(&m, group.0, &args, ctas, 7).unwrap_or_else(|e| panic!("{e}"));
    let want = lathe_interp::run(&m, "main", &inputs, &lathe_interp::SyntheticOnly).expect("the interpreter runs");
    let mut compared = 0;
    for (k, (a, (_, b))) in got.iter().zip(&want).enumerate() {
        let written: Vec<usize> = a
            .to_le_bytes()
            .chunks_exact(a.dtype.size_bytes())
            .enumerate()
            .filter(|(_, c)| c.iter().any(|&x| x != 0xFF))
            .map(|(i, _)| i)
            .collect();
        let (x, y) = (a.to_f64(), b.to_f64());
        let xs: Vec<f64> = written.iter().map(|&i| x[i]).collect();
        let ys: Vec<f64> = written.iter().map(|&i| y[i]).collect();
        lathe_tests::assert_close(&format!("result {k} (sampled)"), &xs, &ys, a.dtype, reduction);
        compared += written.len();
    }
    assert!(compared > 0, "the sampled CTAs wrote nothing");
    compared
}
