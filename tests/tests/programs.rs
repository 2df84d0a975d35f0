//! What programs say they are — function kinds, step symbols, input and output roles, in-place
//! updates, weight roles, the module's stage — round-trips through the text format, and every
//! rule the verifier keeps about them is held by a negative case.

use lathe_ir::text::{parse_module, print_module};
use lathe_ir::verify::verify;
use lathe_ir::{CacheKind, FunctionKind, InputRole, OutputRole, Stage, StepSymbol, WeightRole};

/// A small decode-shaped program with every kind of role.
const PROGRAM: &str = r#"module @roles {
  compute_dtype = f32
  stage = graph
  symbol B <= 4
  symbol S <= 16
  weight @emb : f32[32, 8] = synthetic 1 {role=embedding}
  weight @head : f32[32, 8] = synthetic 2 {role=lm_head}
  weight @norm : f32[8] = synthetic 3 {block=7}
  func @step {kind=extend, batch=B, seq=S} {
    %0 = input "ids" {role=tokens} : i64[B, S]
    %1 = input "n" {role=past} : i64[B]
    %2 = input "kc" {role=k_cache, layer=7} : f32[B, 16, 2, 4]
    %3 = input "vc" {role=v_cache, layer=7} : f32[B, 16, 2, 4]
    %4 = input "conv" {role=conv_state, layer=2} : f32[B, 3, 8]
    %5 = input "ssm" {role=ssm_state, layer=2} : f32[B, 2, 4, 4]
    %6 = input "off" {role=rng_offset} : i64[]
    %7 = weight @emb : f32[32, 8]
    %8 = gather %7, %0 : f32[B, S, 8]
    %9 = reshape %8 : f32[B, S, 2, 4]
    %10 = scatter_cache %2, %9, %1 : f32[B, 16, 2, 4]
    %11 = scatter_cache %3, %9, %1 : f32[B, 16, 2, 4]
    %12 = exp %4 : f32[B, 3, 8]
    %13 = neg %5 : f32[B, 2, 4, 4]
    %14 = weight @head : f32[32, 8]
    %15 = matmul %8, %14 {transpose_b} : f32[B, S, 32]
    return %15 as "logits" {role=logits}, %10 as "kc" {updates=%2}, %11 as "vc" {updates=%3}, %12 as "conv" {updates=%4}, %13 as "ssm" {updates=%5}
  }
  func @plain {
    %0 = input "x" : f32[4]
    return %0 as "x"
  }
}
"#;

#[test]
fn roles_round_trip_and_are_read_back() {
    let m = parse_module(PROGRAM).unwrap_or_else(|e| panic!("{e}"));
    verify(&m).unwrap_or_else(|e| panic!("{e}"));
    // The printer leaves out what is the default (stage = graph), and prints it back the same.
    let text = print_module(&m);
    assert_eq!(text, PROGRAM.replace("  stage = graph\n", ""));
    assert_eq!(parse_module(&text).expect("reparse"), m.renumbered());
    let f = m.function_of_kind(FunctionKind::Extend).expect("extend");
    assert_eq!(f.name, "step");
    let (b, s) = (m.symbol("B").expect("B"), m.symbol("S").expect("S"));
    assert_eq!(f.step_symbols, vec![(StepSymbol::Batch, b), (StepSymbol::Seq, s)]);
    let roles: Vec<Option<InputRole>> = f.graph.params().map(|(i, _)| i.role).collect();
    assert_eq!(
        roles,
        vec![
            Some(InputRole::Tokens),
            Some(InputRole::Past),
            Some(InputRole::Cache { layer: 7, kind: CacheKind::Key }),
            Some(InputRole::Cache { layer: 7, kind: CacheKind::Value }),
            Some(InputRole::Cache { layer: 2, kind: CacheKind::Conv }),
            Some(InputRole::Cache { layer: 2, kind: CacheKind::Ssm }),
            Some(InputRole::RngOffset),
        ]
    );
    assert_eq!(f.graph.outputs[0].role, Some(OutputRole::Logits));
    let updated: Vec<_> = f.graph.outputs.iter().filter_map(|o| o.updates).collect();
    let caches: Vec<_> = f.graph.params().skip(2).take(4).map(|(_, v)| v).collect();
    assert_eq!(updated, caches);
    let roles: Vec<_> = m.weights.iter().map(|(_, w)| w.role).collect();
    assert_eq!(roles, vec![Some(WeightRole::Embedding), Some(WeightRole::LmHead), Some(WeightRole::Block(7))]);
    assert_eq!(m.function("plain").expect("plain").kind, FunctionKind::Generic);
    // A stage other than `graph` is printed and read back.
    let mut staged = m.clone();
    staged.stage = Stage::Scheduled;
    let text = print_module(&staged);
    assert!(text.contains("  stage = scheduled\n"), "{text}");
    assert_eq!(parse_module(&text).expect("reparse").stage, Stage::Scheduled);
}

/// `PROGRAM` with `from` replaced by `to` (which must occur), and the verifier's message.
fn verifier_error(from: &str, to: &str) -> String {
    assert!(PROGRAM.contains(from), "{from:?} is not in the program");
    let src = PROGRAM.replacen(from, to, 1);
    let m = parse_module(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    verify(&m).expect_err("must not verify").to_string()
}

#[test]
fn the_verifier_keeps_every_rule_about_roles() {
    let cases: &[(&str, &str, &str)] = &[
        // Input roles are typed and unique.
        (
            "\"off\" {role=rng_offset} : i64[]",
            "\"off\" {role=rng_offset} : i32[]",
            "a `rng_offset` input must be i64[], got i32[]",
        ),
        ("{role=rng_offset} : i64[]", "{role=past} : i64[B]", "role `past` is given to two inputs"),
        ("{role=v_cache, layer=7}", "{role=k_cache, layer=7}", "role `k_cache of layer 7` is given to two inputs"),
        (
            "input \"x\" : f32[4]",
            "input \"x\" {role=conv_state, layer=0} : f32[4]",
            "a `conv_state` input must be a float [B, W-1, C], got f32[4]",
        ),
        // Updates name a cache input of the same type, once.
        ("%12 as \"conv\" {updates=%4}", "%12 as \"conv\" {updates=%6}", "updates input \"off\", which is not a cache"),
        ("%12 as \"conv\" {updates=%4}", "%12 as \"conv\" {updates=%8}", "updates a value that is not an input"),
        ("%13 as \"ssm\" {updates=%5}", "%13 as \"ssm\" {updates=%4}", "is f32[B, 2, 4, 4] but updates input \"conv\""),
        ("%11 as \"vc\" {updates=%3}", "%11 as \"vc\" {updates=%2}", "input \"kc\" is updated by two results"),
        // Every cache of an extend/decode program is updated.
        (", %13 as \"ssm\" {updates=%5}", "", "cache input \"ssm\" is updated by no result"),
        // Output roles are typed and unique.
        (
            "%15 as \"logits\" {role=logits}",
            "%0 as \"logits\" {role=logits}",
            "result \"logits\" of role `logits` has type i64[B, S]",
        ),
        ("%10 as \"kc\" {updates=%2}", "%10 as \"kc\" {role=logits, updates=%2}", "two results have role `logits`"),
        // Kinds: what each needs.
        (
            "%15 as \"logits\" {role=logits}",
            "%15 as \"logits\"",
            "a function of kind `extend` needs a result of role `logits` or `token`",
        ),
        ("\"n\" {role=past}", "\"n\"", "a function of kind `extend` needs a `past` input"),
        ("\"ids\" {role=tokens}", "\"ids\"", "a function of kind `extend` needs a `tokens` input"),
        ("{kind=extend, batch=B, seq=S}", "{kind=eval, batch=B, seq=S}", "a function of kind `eval` takes no caches"),
        (
            "{kind=extend, batch=B, seq=S}",
            "{kind=decode, batch=B}",
            "a `decode` function takes one token per sequence, not S",
        ),
        // Step symbols are the tokens' axes.
        ("{kind=extend, batch=B, seq=S}", "{kind=extend, batch=S, seq=S}", "`batch` is S but the tokens' axis is B"),
        (
            "{kind=extend, batch=B, seq=S}",
            "{kind=extend, batch=B}",
            "the tokens' axis S needs `seq=S` in the function header",
        ),
        // One function per kind.
        ("func @plain {", "func @plain {kind=vision} {\n  }\n  func @again {", "more than one function of kind"),
    ];
    let mut failures = Vec::new();
    for (from, to, want) in cases {
        let e = if *want == "more than one function of kind" {
            let src = PROGRAM.replacen("func @plain {", "func @plain {kind=extend, batch=B, seq=S} {", 1);
            match parse_module(&src).map(|m| verify(&m)) {
                Ok(Err(e)) => e.to_string(),
                other => format!("{other:?}"),
            }
        } else {
            verifier_error(from, to)
        };
        let want =
            if *want == "more than one function of kind" { "more than one function of kind `extend`" } else { want };
        if !e.contains(want) {
            failures.push(format!("{from:?} -> {to:?}: want {want:?}, got {e:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn role_syntax_errors_are_located() {
    let cases: &[(&str, &str, &str)] = &[
        ("{role=tokens}", "{role=token}", "unknown input role `token`"),
        ("{role=k_cache, layer=7}", "{role=k_cache}", "role `k_cache` needs `layer=N`"),
        ("\"ids\" {role=tokens}", "\"ids\" {role=tokens, layer=1}", "`layer` belongs to a cache role"),
        ("{kind=extend,", "{kind=prefill,", "unknown function kind `prefill`"),
        ("batch=B, seq=S}", "batch=Q, seq=S}", "unknown symbol `Q`"),
        ("{role=lm_head}", "{role=head}", "unknown weight role `head`"),
        ("{block=7}", "{block=7, role=embedding}", "a weight takes `block` or `role`, not both"),
        ("\"logits\" {role=logits}", "\"logits\" {role=probs}", "unknown output role `probs`"),
        ("{updates=%2}", "{updates=%2, updates=%3}", "attribute `updates` is given twice"),
        ("{updates=%2}", "{writes=%2}", "unknown attribute `writes` of a result"),
        ("stage = graph", "stage = fused", "unknown stage `fused`"),
    ];
    for (from, to, want) in cases {
        assert!(PROGRAM.contains(from), "{from:?}");
        let src = PROGRAM.replacen(from, to, 1);
        let e = parse_module(&src).expect_err("must not parse").to_string();
        assert!(e.contains(want), "{from:?} -> {to:?}: want {want:?}, got {e:?}");
        // Located at a line of the change.
        let line: usize = e.split(':').next().and_then(|l| l.parse().ok()).expect("line:col");
        assert!(
            src.lines().nth(line - 1).is_some_and(|l| l.contains(to.split_whitespace().next().unwrap_or(to))),
            "{e}"
        );
    }
}

/// A module with one derived weight, computed from `@w`.
const DERIVED: &str = r#"module @derived {
  compute_dtype = f32
  weight @w : f32[2, 3] = synthetic 5
  weight @w.neg : f32[3, 2] = derived {
    %0 = weight @w : f32[2, 3]
    %1 = transpose %0 {perm=[1, 0]} : f32[3, 2]
    %2 = neg %1 : f32[3, 2]
    return %2
  } {block=4}
  func @main {
    %0 = weight @w.neg : f32[3, 2]
    %1 = weight @w : f32[2, 3]
    %2 = transpose %1 {perm=[1, 0]} : f32[3, 2]
    %3 = neg %2 : f32[3, 2]
    return %0 as "derived", %3 as "inline"
  }
}
"#;

#[test]
fn derived_weights_round_trip_evaluate_and_verify() {
    let m = parse_module(DERIVED).unwrap_or_else(|e| panic!("{e}"));
    verify(&m).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(print_module(&m), DERIVED);
    // The interpreter computes a derived weight with the same ops as inline: the same bits.
    let out = lathe_interp::run(&m, "main", &Default::default(), &lathe_interp::SyntheticOnly).expect("runs");
    let bits = |i: usize| out[i].1.floats().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(out[0].1.shape, vec![3, 2]);
    assert_eq!(bits(0), bits(1));
    assert!(out[0].1.floats().iter().any(|&x| x != 0.0));
    // What the verifier refuses in a derived weight.
    let cases = [
        (
            "    %2 = neg %1 : f32[3, 2]\n    return %2\n  } {block=4}",
            "    %2 = neg %1 : f32[3, 2]\n    return %1, %2\n  } {block=4}",
            "returns 2 values, not one",
        ),
        (
            "    %2 = neg %1 : f32[3, 2]\n    return %2\n  } {block=4}",
            "    %2 = neg %1 : f32[3, 2]\n    return %0\n  } {block=4}",
            "returns f32[2, 3] but the weight is f32[3, 2]",
        ),
        (
            "    %0 = weight @w : f32[2, 3]\n    %1 = transpose",
            "    %0 = input \"x\" : f32[2, 3]\n    %1 = transpose",
            "a derived weight takes no inputs",
        ),
    ];
    for (from, to, want) in cases {
        assert!(DERIVED.contains(from), "{from:?}");
        let bad = parse_module(&DERIVED.replacen(from, to, 1)).unwrap_or_else(|e| panic!("{e}"));
        let e = verify(&bad).expect_err("must not verify").to_string();
        assert!(e.contains("derived weight `@w.neg`") && e.contains(want), "want {want:?}, got {e:?}");
    }
    // A derived weight reads only weights declared before it, so there are no cycles (the
    // parser cannot name a later weight; a module built in memory can).
    let mut m = lathe_ir::Module::new("cycle");
    let ty = lathe_ir::TensorType::fixed(lathe_ir::DType::F32, &[2]);
    let later = lathe_ir::arena::Handle::from_index(1).expect("handle");
    let mut g = lathe_ir::Graph::default();
    let r = g.push_node(lathe_ir::Op::Weight(later), Vec::new(), vec![ty.clone()]);
    g.outputs.push(lathe_ir::Output::new("", r[0]));
    m.add_weight("first", ty.clone(), lathe_ir::WeightSource::Derived(Box::new(g)));
    m.add_weight("second", ty, lathe_ir::WeightSource::Synthetic { seed: 1 });
    let e = verify(&m).expect_err("a forward reference").to_string();
    assert!(e.contains("derived weight `@first`") && e.contains("reads a weight declared after it"), "{e}");
}
