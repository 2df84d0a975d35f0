//! The limits of `lathe_ir::limits` at the IR's front door: text nested too deep or too large is
//! refused by the parser with a located error (never a stack overflow), fusion bodies nested too
//! deep are refused by the verifier however the module was built, symbol bounds and type sizes
//! past the limits are errors, and everything the verifier accepts prints to text that parses.

use lathe_ir::builder::GraphBuilder;
use lathe_ir::limits::{MAX_ELEMENTS, MAX_FUSION_DEPTH, MAX_IR_BYTES, MAX_NESTING, MAX_RANK, MAX_SYMBOL_BOUND};
use lathe_ir::module::{Graph, Module, WeightSource};
use lathe_ir::ops::{Fusion, KernelStrategy, Op, UnaryOp};
use lathe_ir::text::parse::check_text_size;
use lathe_ir::text::{parse_module, print_module};
use lathe_ir::types::{DType, Dim, TensorType};
use lathe_ir::verify::verify;

/// Parses `src` on a thread with a small stack (256 KiB), so that a parser recursing once per
/// level of the input would overflow it long before 10,000 levels; returns the error text.
fn parse_error_on_small_stack(src: String) -> String {
    let handle = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || parse_module(&src).map(|_| ()).map_err(|e| e.to_string()))
        .expect("a thread");
    match handle.join() {
        Ok(Err(e)) => e,
        Ok(Ok(())) => panic!("deeply nested text parsed"),
        Err(_) => panic!("the parser panicked on deeply nested text"),
    }
}

/// `line:col: message` where the message says what is nested how deep.
fn assert_nesting_error(e: &str, line: usize, col: usize) {
    assert!(e.starts_with(&format!("{line}:{col}: ")), "{e:?} is not at {line}:{col}");
    assert!(e.contains(&format!("nested deeper than {MAX_NESTING}")), "{e:?}");
}

fn function(body: &str) -> String {
    format!("module @m {{\n  func @main {{\n{body}  }}\n}}\n")
}

#[test]
fn an_attribute_nested_30000_lists_deep_is_refused() {
    let depth = 30_000;
    let body = format!(
        "    %0 = input \"x\" : f32[2, 3]\n    %1 = transpose %0 {{perm={}{}}} : f32[3, 2]\n    return %1\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let e = parse_error_on_small_stack(function(&body));
    // Line 4 holds the transpose; `{` of its attributes is level 3, so the 62nd `[` is level 65.
    let col = "    %1 = transpose %0 {perm=".len() + 62;
    assert_nesting_error(&e, 4, col);
}

#[test]
fn thirty_thousand_unclosed_brackets_are_refused() {
    let src = format!("module @m {{\n  weight @w : f32{}", "[".repeat(30_000));
    let e = parse_error_on_small_stack(src);
    // `{` is level 1: the 64th `[` is level 65.
    assert_nesting_error(&e, 2, "  weight @w : f32".len() + 64);
}

#[test]
fn ten_thousand_nested_fusion_bodies_are_refused() {
    let depth = 10_000;
    let mut body = String::from("    %0 = input \"x\" : f32[2]\n");
    for _ in 0..depth {
        body.push_str("    %1 = fusion %0 {strategy=elementwise} {\n      %0 = input \"a\" : f32[2]\n");
    }
    body.push_str("      %1 = exp %0 : f32[2]\n      return %1\n");
    for _ in 0..depth {
        body.push_str("    } : f32[2]\n    return %1\n");
    }
    let e = parse_error_on_small_stack(function(&body));
    // Module and function are levels 1 and 2, the body of the k-th fusion level 2 + k: the
    // type of the input of the 62nd body opens level 65 (its line is the 2·62+3-th).
    assert_nesting_error(&e, 2 * 62 + 3, "      %0 = input \"a\" : f32".len() + 1);
}

#[test]
fn text_larger_than_the_limit_is_refused() {
    assert!(check_text_size(MAX_IR_BYTES).is_ok());
    let e = check_text_size(MAX_IR_BYTES + 1).expect_err("over the limit").to_string();
    assert!(e.starts_with("1:1: ") && e.contains("larger than the limit"), "{e}");
}

/// `depth` fusions nested in one another around `exp`, built through the API.
fn nested_fusions(depth: usize) -> Module {
    let mut m = Module::new("deep");
    let ty = TensorType::fixed(DType::F32, &[2]);
    let mut body: Option<Graph> = None;
    for _ in 0..=depth {
        let mut b = GraphBuilder::new(&m);
        let x = b.input("a", ty.clone()).expect("input");
        let y = match body.take() {
            None => b.unary(UnaryOp::Exp, x).expect("exp"),
            Some(inner) => {
                let f = Op::Fusion(Box::new(Fusion { strategy: KernelStrategy::Elementwise, body: inner }));
                b.push1(f, &[x]).expect("fusion")
            }
        };
        b.output("", y);
        body = Some(b.into_graph());
    }
    let mut f = lathe_ir::Function::new("main", body.expect("a graph"));
    f.graph.outputs[0].name = "y".into();
    m.functions.push(f);
    m
}

#[test]
fn fusion_nesting_is_bounded_for_modules_built_by_the_api() {
    // As deep as the verifier allows: verifies, prints, and the text parses back.
    let m = nested_fusions(MAX_FUSION_DEPTH);
    verify(&m).unwrap_or_else(|e| panic!("{MAX_FUSION_DEPTH} nested fusions: {e}"));
    let text = print_module(&m);
    let back = parse_module(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, m.renumbered());
    let args = lathe_tests::random_inputs(&m, "main", 1);
    lathe_interp::run(&m, "main", &args, &lathe_interp::SyntheticOnly).expect("runs");
    // One more is refused, at the fusion whose body is too deep; the printer does not recurse
    // past the limit either.
    let m = nested_fusions(MAX_FUSION_DEPTH + 1);
    let e = verify(&m).expect_err("too deep").to_string();
    assert!(e.contains(&format!("fusion bodies are nested deeper than {MAX_FUSION_DEPTH} levels")), "{e}");
    assert!(print_module(&m).contains("{…}"));
    // Far deeper: refused just the same, without recursing into every level.
    let m = nested_fusions(2000);
    let e = lathe_interp::run(&m, "main", &Default::default(), &lathe_interp::SyntheticOnly).expect_err("too deep");
    assert!(e.to_string().contains("nested deeper than"), "{e}");
}

#[test]
fn symbol_bounds_past_the_limit_do_not_verify() {
    let mut m = Module::new("m");
    m.add_symbol("S", MAX_SYMBOL_BOUND);
    verify(&m).expect("the bound at the limit is fine");
    m.add_symbol("T", MAX_SYMBOL_BOUND + 1);
    let e = verify(&m).expect_err("past the limit").to_string();
    assert!(e.contains("symbol `T` has bound 4294967297, above the limit of 4294967296"), "{e}");
}

#[test]
fn type_sizes_past_the_limits_do_not_verify() {
    let with_input = |m: &mut Module, ty: TensorType| {
        let mut b = GraphBuilder::new(m);
        let x = b.input("x", ty).expect("input");
        b.output("x", x);
        let f = b.finish("main");
        m.functions = vec![f];
        verify(m)
    };
    let mut m = Module::new("m");
    let s = m.add_symbol("S", 1 << 24);
    // At the limit: fine.
    with_input(&mut m, TensorType::new(DType::F32, [Dim::Sym(s), Dim::Sym(s)])).expect("2^48 elements");
    with_input(&mut m, TensorType::fixed(DType::F32, &[1; MAX_RANK])).expect("rank 16");
    with_input(&mut m, TensorType::fixed(DType::F32, &[0, MAX_ELEMENTS])).expect("empty");
    // Past it.
    let cases = [
        (TensorType::new(DType::F32, [Dim::Sym(s), Dim::Sym(s), Dim::Const(2)]), "more than 281474976710656 elements"),
        (TensorType::fixed(DType::F32, &[u64::MAX, u64::MAX]), "more than 281474976710656 elements"),
        (TensorType::fixed(DType::F32, &[0, u64::MAX, 2]), "more than 281474976710656 elements"),
        (TensorType::fixed(DType::F32, &[1; MAX_RANK + 1]), "has 17 dimensions, more than the limit of 16"),
    ];
    for (ty, want) in cases {
        let e = with_input(&mut m, ty.clone()).expect_err("past a limit").to_string();
        assert!(e.starts_with("in @main, %0 (`%0 = input \"x\""), "{ty:?}: {e}");
        assert!(e.contains(want), "{ty:?}: {e}");
    }
    // Weights too.
    let mut m = Module::new("m");
    m.add_weight("w", TensorType::fixed(DType::BF16, &[1 << 25, 1 << 24]), WeightSource::Synthetic { seed: 1 });
    let e = verify(&m).expect_err("a weight past the limit").to_string();
    assert!(e.contains("weight `@w`: type bf16[33554432, 16777216] has more than"), "{e}");
}
