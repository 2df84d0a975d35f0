//! Property test of the text format: for random valid modules `m` (see `lathe_tests::modgen`),
//! `m` verifies, `parse(print(m)) == m.renumbered()`, printing is a fixed point, a copy of `m`
//! with scrambled arenas prints the same text, and the interpreter gives bit-identical results
//! on `m`, on `parse(print(m))` and on the scrambled copy.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use lathe_interp::tensor::{Data, Tensor};
use lathe_interp::{InterpError, SyntheticOnly};
use lathe_ir::arena::Handle;
use lathe_ir::builder::GraphBuilder;
use lathe_ir::module::{Graph, Module, NodeId, Output, ValueId, WeightSource};
use lathe_ir::ops::{Constant, Fusion, KernelStrategy, Op, Sample};
use lathe_ir::text::{parse_module, print_module};
use lathe_ir::types::{DType, Dim, TensorType};
use lathe_ir::verify::verify;
use lathe_tests::{modgen, Rng};

/// Number of random modules; seeds are `0..CASES`, so every run checks the same modules.
const CASES: u64 = 300;

type Outcome = Result<Vec<(String, Tensor)>, InterpError>;

/// Whether two interpreter outcomes agree bit for bit (errors by message).
fn same_outcome(a: &Outcome, b: &Outcome) -> Result<(), String> {
    match (a, b) {
        (Ok(xs), Ok(ys)) => {
            if xs.len() != ys.len() {
                return Err(format!("{} vs {} outputs", xs.len(), ys.len()));
            }
            for ((nx, x), (ny, y)) in xs.iter().zip(ys) {
                if nx != ny || x.dtype != y.dtype || x.shape != y.shape {
                    return Err(format!("output {nx:?} {}{:?} vs {ny:?} {}{:?}", x.dtype, x.shape, y.dtype, y.shape));
                }
                let same = match (&x.data, &y.data) {
                    (Data::F(p), Data::F(q)) => {
                        p.len() == q.len() && p.iter().zip(q).all(|(a, b)| a.to_bits() == b.to_bits())
                    }
                    (Data::I(p), Data::I(q)) => p == q,
                    _ => false,
                };
                if !same {
                    return Err(format!("output {nx:?} differs:\n  {:?}\n  {:?}", x.data, y.data));
                }
            }
            Ok(())
        }
        (Err(e), Err(f)) if e.to_string() == f.to_string() => Ok(()),
        _ => Err(format!("{a:?}\n  vs\n{b:?}")),
    }
}

/// Whether any float in the module (constants, attributes) is NaN, for which `==` cannot hold.
fn has_nan(text: &str) -> bool {
    text.contains("nan")
}

/// The first line where two texts differ, for messages.
fn first_difference(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let n = la.len().max(lb.len());
    (0..n)
        .find(|&i| la.get(i) != lb.get(i))
        .map_or_else(String::new, |i| format!("line {}:\n  {:?}\n  {:?}", i + 1, la.get(i), lb.get(i)))
}

/// The same graph with its node and value arenas in a random order (execution order and
/// outputs unchanged, fusion bodies scrambled too): a module the printer must renumber.
fn scramble(g: &Graph, rng: &mut Rng) -> Graph {
    let perm = |n: usize, rng: &mut Rng| {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, rng.below(i + 1));
        }
        p
    };
    let (node_at, value_at) = (perm(g.nodes.len(), rng), perm(g.values.len(), rng));
    let mut node_pos = vec![0; node_at.len()];
    let mut value_pos = vec![0; value_at.len()];
    node_at.iter().enumerate().for_each(|(k, &old)| node_pos[old] = k);
    value_at.iter().enumerate().for_each(|(k, &old)| value_pos[old] = k);
    let node = |h: NodeId| Handle::from_index(node_pos[h.index()]).expect("a handle");
    let value = |h: ValueId| Handle::from_index(value_pos[h.index()]).expect("a handle");
    let mut out = Graph::default();
    for &old in &node_at {
        let mut n = g.nodes.iter().nth(old).expect("a node").1.clone();
        n.args = n.args.iter().map(|&a| value(a)).collect();
        n.results = n.results.iter().map(|&r| value(r)).collect();
        if let Op::Fusion(f) = &mut n.op {
            f.body = scramble(&f.body, rng);
        }
        out.nodes.append(n);
    }
    for &old in &value_at {
        let mut v = g.values.iter().nth(old).expect("a value").1.clone();
        v.def = node(v.def);
        out.values.append(v);
    }
    out.order = g.order.iter().map(|&n| node(n)).collect();
    out.outputs = g
        .outputs
        .iter()
        .map(|o| Output { name: o.name.clone(), value: value(o.value), role: o.role, updates: o.updates.map(value) })
        .collect();
    out
}

/// Checks one module; `Ok((ok, runs))` counts the interpreter runs (of functions that read no
/// checkpoint) and how many of them succeeded.
fn check(m: &Module, inputs: &[(String, HashMap<String, Tensor>)], seed: u64) -> Result<(usize, usize), String> {
    verify(m).map_err(|e| format!("the generated module does not verify:\n{e}"))?;
    let text = print_module(m);
    let parsed = parse_module(&text).map_err(|e| format!("the printed module does not parse: {e}"))?;
    verify(&parsed).map_err(|e| format!("the parsed module does not verify:\n{e}"))?;
    let renumbered = m.renumbered();
    // Debug text tells -0.0 from 0.0 and NaN equals NaN there; `==` is checked where it can hold.
    let (dp, dr) = (format!("{parsed:#?}"), format!("{renumbered:#?}"));
    if dp != dr {
        return Err(format!("parse(print(m)) != m.renumbered(); first difference at {}", first_difference(&dp, &dr)));
    }
    if !has_nan(&text) && parsed != renumbered {
        return Err("parse(print(m)) != m.renumbered() (PartialEq)".into());
    }
    let again = print_module(&parsed);
    if again != text {
        return Err(format!("printing is not a fixed point; first difference at {}", first_difference(&again, &text)));
    }
    // Arena order is not semantics: a scrambled copy verifies, prints the same text and
    // renumbers to the same module.
    let mut scrambled = m.clone();
    let mut rng = Rng::new(seed);
    for f in &mut scrambled.functions {
        f.graph = scramble(&f.graph, &mut rng);
    }
    verify(&scrambled).map_err(|e| format!("the scrambled module does not verify:\n{e}"))?;
    let st = print_module(&scrambled);
    if st != text {
        return Err(format!(
            "the scrambled module prints differently; first difference at {}",
            first_difference(&st, &text)
        ));
    }
    if format!("{:?}", scrambled.renumbered()) != format!("{renumbered:?}") {
        return Err("scrambled.renumbered() != m.renumbered()".into());
    }
    let (mut ok, mut runs) = (0, 0);
    for (func, args) in inputs {
        let a = lathe_interp::run(m, func, args, &SyntheticOnly);
        let b = lathe_interp::run(&parsed, func, args, &SyntheticOnly);
        same_outcome(&a, &b).map_err(|e| format!("@{func}: the interpreter disagrees: {e}"))?;
        let c = lathe_interp::run(&scrambled, func, args, &SyntheticOnly);
        same_outcome(&a, &c).map_err(|e| format!("@{func}: the interpreter disagrees on the scrambled module: {e}"))?;
        let reads_checkpoint = m
            .function(func)
            .is_some_and(|f| f.graph.nodes.iter().any(|(_, n)| matches!(n.op, Op::Weight(w) if matches!(m.weights[w].source, WeightSource::Checkpoint { .. }))));
        if !reads_checkpoint {
            runs += 1;
            ok += usize::from(a.is_ok());
        }
    }
    Ok((ok, runs))
}

/// Runs `check` and turns a panic into an error that carries the panic message.
fn check_caught(m: &Module, inputs: &[(String, HashMap<String, Tensor>)], seed: u64) -> Result<(usize, usize), String> {
    match catch_unwind(AssertUnwindSafe(|| check(m, inputs, seed))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panicked: {msg}"))
        }
    }
}

#[test]
fn random_modules_round_trip_through_text() {
    let mut failures = Vec::new();
    let (mut ok, mut runs, mut nodes) = (0, 0, 0);
    for seed in 0..CASES {
        let case = match modgen::random_case(seed) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("seed {seed}: the generator failed: {e}"));
                continue;
            }
        };
        nodes += case.module.functions.iter().map(|f| f.graph.nodes.len()).sum::<usize>();
        match check_caught(&case.module, &case.inputs, seed) {
            Ok((o, r)) => {
                ok += o;
                runs += r;
            }
            Err(e) => failures.push(format!("seed {seed}: {e}\n--- module ---\n{}", print_module(&case.module))),
        }
        if failures.len() >= 3 {
            break;
        }
    }
    assert!(failures.is_empty(), "{} failing case(s):\n\n{}", failures.len(), failures.join("\n\n"));
    // The property is only as strong as the modules: most runs must succeed (not stop at a
    // run-time error) and the modules must not be trivially small.
    assert!(ok * 10 >= runs * 9, "only {ok} of {runs} interpreter runs succeeded");
    assert!(nodes >= 20 * CASES as usize, "only {nodes} nodes in {CASES} modules");
}

/// Every awkward float survives print → parse bit for bit, as a constant and as attributes.
#[test]
fn awkward_floats_round_trip_bit_exactly() {
    let values = [
        -0.0,
        0.0,
        1e-30,
        5e-324,
        -5e-324,
        f64::MIN_POSITIVE,
        f64::MIN_POSITIVE / 10.0,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        0.1,
        1.0 / 3.0,
        -2.5e-8,
        1e16,
        1e15 + 0.3,
        9.007199254740993e15,
        123456789.123,
    ];
    for v in values.into_iter().chain(modgen::AWKWARD) {
        // Built without the builder's typing: an f32 constant past f32's range (`f64::MAX`) does
        // not verify (it would overflow to infinity), but its text must round-trip all the same.
        let mut m = Module::new("floats");
        let mut g = Graph::default();
        let (vec2, row) = (TensorType::fixed(DType::F32, &[2]), TensorType::fixed(DType::F32, &[1, 2]));
        let c = g.push_node(Op::Constant(Constant { ty: vec2.clone(), values: vec![v, -v] }), vec![], vec![vec2]);
        let l = g.push_node(Op::Constant(Constant { ty: row.clone(), values: vec![v] }), vec![], vec![row]);
        let i64s = TensorType::scalar(DType::I64);
        let o = g.push_node(Op::Constant(Constant { ty: i64s.clone(), values: vec![0.0] }), vec![], vec![i64s]);
        let temperature = if v.is_finite() && v >= 0.0 { v } else { 1.0 };
        let sample = Op::Sample(Sample { seed: u64::MAX, temperature, top_k: None, top_p: None });
        let s = g.push_node(sample, vec![l[0], o[0]], vec![TensorType::fixed(DType::I64, &[1])]);
        g.outputs = vec![Output::new("c", c[0]), Output::new("s", s[0])];
        m.functions.push(lathe_ir::Function::new("main", g));
        let text = print_module(&m);
        let parsed = parse_module(&text).unwrap_or_else(|e| panic!("{v:e}: {e}\n{text}"));
        let Op::Constant(pc) = &parsed.functions[0].graph.nodes.iter().next().expect("a node").1.op else {
            panic!("{v:e}: first node is not a constant\n{text}");
        };
        let bits = |x: &[f64]| x.iter().map(|f| if f.is_nan() { u64::MAX } else { f.to_bits() }).collect::<Vec<_>>();
        assert_eq!(bits(&pc.values), bits(&[v, -v]), "{v:e} does not round-trip:\n{text}");
        assert_eq!(print_module(&parsed), text, "{v:e}: printing is not a fixed point");
    }
}

/// Extremes of the integer fields: u64 seeds, i64 slice bounds and constants, and symbol
/// bounds and dims as large as `lathe_ir::limits` allows.
#[test]
fn integer_extremes_round_trip() {
    use lathe_ir::limits::{MAX_ELEMENTS, MAX_SYMBOL_BOUND};
    let mut m = Module::new("ints");
    let s = m.add_symbol("S", MAX_SYMBOL_BOUND);
    m.add_symbol("T", MAX_SYMBOL_BOUND);
    m.add_weight("w.0", TensorType::fixed(DType::F32, &[2]), WeightSource::Synthetic { seed: u64::MAX });
    m.add_weight("w.1", TensorType::fixed(DType::F32, &[2]), WeightSource::Synthetic { seed: 1 << 63 });
    let mut b = GraphBuilder::new(&m);
    let x = b.input("x", TensorType::new(DType::F32, [Dim::Sym(s), Dim::Const(MAX_ELEMENTS / MAX_SYMBOL_BOUND)]));
    let y = b
        .push1(Op::Slice(lathe_ir::ops::Slice { axis: 0, start: i64::MIN, end: Some(i64::MIN + 1) }), &[x.expect("x")])
        .expect("slice");
    b.output("y", y);
    let big = b.input("big", TensorType::fixed(DType::I8, &[MAX_ELEMENTS, 0])).expect("big");
    b.output("big", big);
    let ends = [i64::MIN as f64, 9.223372036854775e18];
    let c = b.push1(Op::Constant(Constant { ty: TensorType::fixed(DType::I64, &[2]), values: ends.to_vec() }), &[]);
    b.output("ends", c.expect("constant"));
    m.functions.push(b.finish("main"));
    verify(&m).expect("verifies");
    let text = print_module(&m);
    let parsed = parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(parsed, m.renumbered(), "{text}");
    assert_eq!(print_module(&parsed), text);
}

/// Symbol names the lexer reads as numbers cannot be printed as a bare symbol: the verifier
/// rejects them, so every module that verifies can be printed and parsed back.
#[test]
fn symbols_named_like_numbers_do_not_verify() {
    for name in ["inf", "nan", "NaN"] {
        let mut m = Module::new("m");
        m.add_symbol(name, 4);
        let text = print_module(&m);
        assert!(verify(&m).is_err(), "symbol `{name}` verifies but its text does not parse: {:?}", parse_module(&text));
    }
}

/// A fusion without results has no text form (`%N = ` needs a result): it must not verify.
#[test]
fn fusion_without_results_does_not_verify() {
    let mut m = Module::new("m");
    let mut body = GraphBuilder::new(&m);
    body.input("a", TensorType::fixed(DType::F32, &[2])).expect("body input");
    let body = body.into_graph();
    let mut b = GraphBuilder::new(&m);
    let x = b.input("x", TensorType::fixed(DType::F32, &[2])).expect("input");
    let fusion = Op::Fusion(Box::new(Fusion { strategy: KernelStrategy::Elementwise, body }));
    assert_eq!(b.push(fusion, &[x]).expect("typed").len(), 0);
    b.output("x", x);
    m.functions.push(b.finish("main"));
    let text = print_module(&m);
    assert!(
        verify(&m).is_err(),
        "a result-less fusion verifies, but its text does not parse: {:?}",
        parse_module(&text)
    );
}
