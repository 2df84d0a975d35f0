//! Interpreter cases: data ops, elementwise ops and casts.

use lathe_interp::tensor::{Data, Tensor};
use lathe_interp::InterpError;
use lathe_ir::DType;

use crate::common::{all_bf16, close, exact, f32t, ft, it, module, out, run, sigmoid, silu, try_run};

pub fn input_binds_symbols_and_rejects_bad_arguments() {
    let src = module(
        "  symbol B <= 2\n  symbol S <= 4\n",
        "    %0 = input \"x\" : f32[B, S]\n    %1 = input \"y\" : f32[S]\n    %2 = add %0, %1 : f32[B, S]\n    return %2 as \"z\"\n",
    );
    let y = f32t(&[3], &[10.0, 20.0, 30.0]);
    let z = run(&src, &[("x", f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])), ("y", y.clone())]);
    exact("z", out(&z, "z"), DType::F32, &[2, 3], &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    // B = 1 binds too: symbols take any value in 1..=max.
    let z = run(&src, &[("x", f32t(&[1, 3], &[1.0, 2.0, 3.0])), ("y", y.clone())]);
    exact("z, B = 1", out(&z, "z"), DType::F32, &[1, 3], &[11.0, 22.0, 33.0]);

    let input_err = |inputs: &[(&str, Tensor)], name: &str, want: &str| match try_run(&src, inputs) {
        Err(InterpError::Input { name: got, message }) => {
            assert_eq!(got, name, "{message}");
            assert!(message.contains(want), "input error {message:?} lacks {want:?}");
        }
        other => panic!("expected an input error for {name:?} containing {want:?}, got {other:?}"),
    };
    // A symbol above its bound, and a symbol of 0.
    input_err(&[("x", f32t(&[2, 5], &[0.0; 10])), ("y", f32t(&[5], &[0.0; 5]))], "x", "S = 5 is outside 1..=4");
    input_err(&[("x", f32t(&[2, 0], &[])), ("y", f32t(&[0], &[]))], "x", "S = 0 is outside 1..=4");
    // Two inputs binding one symbol differently.
    input_err(
        &[("x", f32t(&[2, 3], &[0.0; 6])), ("y", f32t(&[4], &[0.0; 4]))],
        "y",
        "S = 4, but an earlier input bound it to 3",
    );
    // Wrong dtype, wrong rank, wrong constant dim.
    input_err(&[("x", ft(DType::BF16, &[2, 3], &[0.0; 6])), ("y", y.clone())], "x", "expected f32[B, S], got bf16");
    input_err(&[("x", f32t(&[6], &[0.0; 6])), ("y", y.clone())], "x", "expected f32[B, S]");
    let src3 = module("", "    %0 = input \"x\" : f32[2, 3]\n    return %0\n");
    match try_run(&src3, &[("x", f32t(&[3, 2], &[0.0; 6]))]) {
        Err(InterpError::Input { name, message }) => assert!(name == "x" && message.contains("expected f32[2, 3]")),
        other => panic!("{other:?}"),
    }
    // Missing and unknown inputs.
    input_err(&[("x", f32t(&[2, 3], &[0.0; 6]))], "y", "missing");
    input_err(&[("x", f32t(&[2, 3], &[0.0; 6])), ("y", y.clone()), ("w", y.clone())], "w", "has no such input");
    // A tensor whose storage disagrees with its own shape or dtype is refused, not indexed.
    let short = Tensor { dtype: DType::F32, shape: vec![2, 3], data: Data::F(vec![1.0]) };
    let bad = "holds data that does not match its dtype f32 and shape [2, 3]";
    input_err(&[("x", short), ("y", y.clone())], "x", bad);
    let ints = Tensor { dtype: DType::F32, shape: vec![2, 3], data: Data::I(vec![0; 6]) };
    input_err(&[("x", ints), ("y", y)], "x", bad);
}

/// Element `i` of a synthetic weight, from its documentation: `0.05·(2u − 1)` with `u` the
/// Philox uniform (top 24 bits of word 0) of counter `[i, i>>32, 0, 0]` and key `seed`.
fn synthetic(i: u64, seed: u64) -> f64 {
    let w = lathe_numerics::philox4x32_10([i as u32, (i >> 32) as u32, 0, 0], [seed as u32, (seed >> 32) as u32])[0];
    let u = f64::from(w >> 8) / 16_777_216.0;
    0.05 * (2.0 * u - 1.0)
}

pub fn weight_is_the_documented_synthetic_distribution() {
    let src = module(
        "  weight @w : f32[3, 5] = synthetic 7\n  weight @h : bf16[4] = synthetic 8\n  weight @c : f32[2] = checkpoint \"model.safetensors\" \"c\"\n",
        "    %0 = weight @w : f32[3, 5]\n    %1 = weight @h : bf16[4]\n    %2 = weight @w : f32[3, 5]\n    return %0 as \"w\", %1 as \"h\", %2 as \"w2\"\n",
    );
    let o = run(&src, &[]);
    let want: Vec<f64> = (0..15).map(|i| synthetic(i, 7)).collect();
    close("w", out(&o, "w"), DType::F32, &[3, 5], &want, 1);
    assert!(want.iter().all(|v| v.abs() < 0.05) && want.iter().any(|v| *v < 0.0) && want.iter().any(|v| *v > 0.0));
    assert_eq!(out(&o, "w"), out(&o, "w2"), "a weight read twice is the same tensor");
    let want: Vec<f64> = (0..4).map(|i| synthetic(i, 8)).collect();
    close("h", out(&o, "h"), DType::BF16, &[4], &want, 1);
    all_bf16("h", out(&o, "h"));
    // A checkpoint weight without a checkpoint is an error, not a panic.
    let src = module(
        "  weight @c : f32[2] = checkpoint \"model.safetensors\" \"c\"\n",
        "    %0 = weight @c : f32[2]\n    return %0\n",
    );
    match try_run(&src, &[]) {
        Err(InterpError::Weight { name, message }) => {
            assert_eq!(name, "c");
            assert!(message.contains("no checkpoint"), "{message}");
        }
        other => panic!("expected a weight error, got {other:?}"),
    }
}

pub fn constant_splat_dense_and_rounded() {
    let src = module(
        "",
        r#"    %0 = constant 1.5 : f32[2, 2]
    %1 = constant [1, -2, 0.25] : f32[3]
    %2 = constant 0.1 : bf16[]
    %3 = constant [448, -0.3, 17, 19] : f8e4m3[4]
    %4 = constant [7, -3] : i64[2]
    %5 = constant [1, 0, 1] : bool[3]
    return %0 as "splat", %1 as "dense", %2 as "bf16", %3 as "e4m3", %4 as "int", %5 as "bool"
"#,
    );
    let o = run(&src, &[]);
    exact("splat", out(&o, "splat"), DType::F32, &[2, 2], &[1.5; 4]);
    exact("dense", out(&o, "dense"), DType::F32, &[3], &[1.0, -2.0, 0.25]);
    // 0.1 = 1.6·2^-4; 1.6·2^7 = 204.8 rounds to 205: 205·2^-11.
    exact("bf16", out(&o, "bf16"), DType::BF16, &[], &[0.10009765625]);
    // e4m3: 448 is the largest finite value (500 would saturate: it does not verify); -0.3 lies
    // between -0.28125 and -0.3125 (step 1/32), nearer the latter; 17 and 19 are ties in
    // [16, 32) (step 2) and go to the even significand.
    exact("e4m3", out(&o, "e4m3"), DType::F8E4M3, &[4], &[448.0, -0.3125, 16.0, 20.0]);
    exact("int", out(&o, "int"), DType::I64, &[2], &[7.0, -3.0]);
    exact("bool", out(&o, "bool"), DType::Bool, &[3], &[1.0, 0.0, 1.0]);
}

pub fn iota_counts_along_its_axis() {
    let src = module(
        "  symbol S <= 8\n",
        r#"    %0 = input "x" : f32[S]
    %1 = iota {axis=1} : i64[2, 3]
    %2 = iota {axis=0} : f32[3, 2]
    %3 = iota {axis=0} : i32[S]
    %4 = iota {axis=0} : bf16[262]
    return %1 as "a1", %2 as "a0", %3 as "sym", %4 as "bf16"
"#,
    );
    let o = run(&src, &[("x", f32t(&[5], &[0.0; 5]))]);
    exact("a1", out(&o, "a1"), DType::I64, &[2, 3], &[0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    exact("a0", out(&o, "a0"), DType::F32, &[3, 2], &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0]);
    exact("sym", out(&o, "sym"), DType::I32, &[5], &[0.0, 1.0, 2.0, 3.0, 4.0]);
    // bf16 holds 8 significant bits: above 256 only even integers exist, and the odd ones are
    // ties that go to the even significand (257 → 256, 259 → 260).
    let got = out(&o, "bf16").to_f64();
    assert_eq!(got[..257], (0..257).map(f64::from).collect::<Vec<_>>()[..]);
    assert_eq!(got[257..], [256.0, 258.0, 260.0, 260.0, 260.0]);
}

pub fn unary_ops_match_f64_formulas() {
    let names = ["neg", "exp", "silu", "gelu", "relu", "square", "sigmoid", "softplus", "tanh"];
    let mut body = String::from("    %0 = input \"x\" : f32[7]\n    %1 = input \"p\" : f32[4]\n");
    for (i, n) in names.iter().enumerate() {
        let attrs = if *n == "gelu" { " {approx=tanh}" } else { "" };
        body.push_str(&format!("    %{} = {n} %0{attrs} : f32[7]\n", i + 2));
    }
    let k = names.len() + 2;
    for (j, n) in ["log", "sqrt", "rsqrt"].iter().enumerate() {
        body.push_str(&format!("    %{} = {n} %1 : f32[4]\n", k + j));
    }
    let rets: Vec<String> = names
        .iter()
        .chain(&["log", "sqrt", "rsqrt"])
        .enumerate()
        .map(|(i, n)| format!("%{} as \"{n}\"", i + 2))
        .collect();
    body.push_str(&format!("    return {}\n", rets.join(", ")));
    let x = [-25.0, -2.5, -0.7, 0.0, 0.3, 1.2, 25.0];
    let p = [0.01, 0.5, 2.0, 1e4];
    let o = run(&module("", &body), &[("x", f32t(&[7], &x)), ("p", f32t(&[4], &p))]);
    let gelu_tanh =
        |v: f64| 0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh());
    type F = fn(f64) -> f64;
    let formulas: [(&str, F); 9] = [
        ("neg", |v| -v),
        ("exp", f64::exp),
        ("silu", silu),
        ("gelu", |_| 0.0),
        ("relu", |v| v.max(0.0)),
        ("square", |v| v * v),
        ("sigmoid", sigmoid),
        // torch's threshold: x itself above 20.
        ("softplus", |v| if v > 20.0 { v } else { v.exp().ln_1p() }),
        ("tanh", f64::tanh),
    ];
    for (name, f) in formulas {
        let want: Vec<f64> = if name == "gelu" { x.map(gelu_tanh).to_vec() } else { x.map(f).to_vec() };
        close(name, out(&o, name), DType::F32, &[7], &want, 1);
    }
    let logs: [(&str, F); 3] = [("log", f64::ln), ("sqrt", f64::sqrt), ("rsqrt", |v| 1.0 / v.sqrt())];
    for (name, f) in logs {
        close(name, out(&o, name), DType::F32, &[4], &p.map(f), 1);
    }
    // Hand values at the edges: softplus(25) is 25 itself, relu(-0) and square(0) are exact.
    assert_eq!(out(&o, "softplus").floats()[6], 25.0);
    assert_eq!(out(&o, "relu").floats()[..4], [0.0; 4]);
    assert_eq!(out(&o, "sqrt").floats()[2], 2f32.sqrt());
    // Integer neg.
    let src = module("", "    %0 = input \"i\" : i64[3]\n    %1 = neg %0 : i64[3]\n    return %1 as \"n\"\n");
    let o = run(&src, &[("i", it(DType::I64, &[3], &[5, -7, 0]))]);
    exact("neg i64", out(&o, "n"), DType::I64, &[3], &[-5.0, 7.0, 0.0]);
}

pub fn gelu_matches_tabulated_normal_cdf() {
    // gelu(x) = x·Φ(x); Φ from tables: Φ(0.5) = 0.6914624612740131, Φ(1) = 0.8413447460685429,
    // Φ(2) = 0.9772498680518208, Φ(-1) = 1 − Φ(1), Φ(3) = 0.9986501019683699.
    let x = [-1.0, 0.0, 0.5, 1.0, 2.0, 3.0];
    let cdf =
        [1.0 - 0.8413447460685429, 0.5, 0.6914624612740131, 0.8413447460685429, 0.9772498680518208, 0.9986501019683699];
    let src = module(
        "",
        "    %0 = input \"x\" : f32[6]\n    %1 = gelu %0 {approx=erf} : f32[6]\n    %2 = gelu %0 : f32[6]\n    %3 = gelu %0 {approx=tanh} : f32[6]\n    return %1 as \"erf\", %2 as \"default\", %3 as \"tanh\"\n",
    );
    let o = run(&src, &[("x", f32t(&[6], &x))]);
    let want: Vec<f64> = x.iter().zip(cdf).map(|(v, c)| v * c).collect();
    close("gelu erf", out(&o, "erf"), DType::F32, &[6], &want, 1);
    assert_eq!(out(&o, "default"), out(&o, "erf"), "gelu defaults to erf");
    // The tanh form is an approximation: within 1e-3 of the exact GELU here, but not equal.
    let t = out(&o, "tanh").to_f64();
    assert!(t.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-3), "{t:?} vs {want:?}");
    assert!(t.iter().zip(&want).any(|(a, b)| (a - b).abs() > 1e-5), "tanh gelu equals erf gelu: {t:?}");
}

pub fn unary_bf16_results_are_rounded() {
    let src = module(
        "",
        "    %0 = input \"x\" : bf16[5]\n    %1 = exp %0 : bf16[5]\n    %2 = silu %0 : bf16[5]\n    %3 = neg %0 : bf16[5]\n    return %1 as \"exp\", %2 as \"silu\", %3 as \"neg\"\n",
    );
    let x = ft(DType::BF16, &[5], &[1.0, -0.3, 0.7, 2.5, -4.0]);
    let xv = x.to_f64();
    let o = run(&src, &[("x", x)]);
    for name in ["exp", "silu", "neg"] {
        all_bf16(name, out(&o, name));
    }
    // e = 1.359·2 → significand 1.359·128 = 173.97 → 174: 174/64 = 2.71875.
    assert_eq!(out(&o, "exp").floats()[0], 2.71875);
    close("exp bf16", out(&o, "exp"), DType::BF16, &[5], &xv.iter().map(|v| v.exp()).collect::<Vec<_>>(), 1);
    close("silu bf16", out(&o, "silu"), DType::BF16, &[5], &xv.iter().map(|&v| silu(v)).collect::<Vec<_>>(), 1);
    exact("neg bf16", out(&o, "neg"), DType::BF16, &[5], &xv.iter().map(|v| -v).collect::<Vec<_>>());
}

pub fn binary_ops_broadcast_like_numpy() {
    let src = module(
        "",
        r#"    %0 = input "a" : f32[2, 3]
    %1 = input "b" : f32[3]
    %2 = input "c" : f32[2, 1]
    %3 = add %0, %1 : f32[2, 3]
    %4 = sub %2, %0 : f32[2, 3]
    %5 = mul %1, %2 : f32[2, 3]
    %6 = div %0, %2 : f32[2, 3]
    %7 = max %0, %1 : f32[2, 3]
    %8 = min %2, %1 : f32[2, 3]
    return %3 as "add", %4 as "sub", %5 as "mul", %6 as "div", %7 as "max", %8 as "min"
"#,
    );
    let (a, b, c) = ([1.5, -2.0, 3.0, 0.25, 7.0, -1.0], [0.5, 1.0, -4.0], [2.0, -3.0]);
    let o = run(&src, &[("a", f32t(&[2, 3], &a)), ("b", f32t(&[3], &b)), ("c", f32t(&[2, 1], &c))]);
    let at = |i: usize, j: usize| a[i * 3 + j];
    type F = fn(f64, f64, f64) -> f64;
    let cases: [(&str, F); 6] = [
        ("add", |a, b, _| a + b),
        ("sub", |a, _, c| c - a),
        ("mul", |_, b, c| b * c),
        ("div", |a, _, c| a / c),
        ("max", |a, b, _| a.max(b)),
        ("min", |_, b, c| c.min(b)),
    ];
    for (name, f) in cases {
        let want: Vec<f64> = (0..6).map(|k| f(at(k / 3, k % 3), b[k % 3], c[k / 3])).collect();
        close(name, out(&o, name), DType::F32, &[2, 3], &want, 1);
    }
}

pub fn binary_ops_on_integers_and_nan() {
    let src = module(
        "",
        r#"    %0 = input "a" : i64[2, 2]
    %1 = input "b" : i64[2]
    %2 = add %0, %1 : i64[2, 2]
    %3 = sub %0, %1 : i64[2, 2]
    %4 = mul %0, %1 : i64[2, 2]
    %5 = max %0, %1 : i64[2, 2]
    %6 = min %0, %1 : i64[2, 2]
    %7 = input "x" : f32[3]
    %8 = input "y" : f32[3]
    %9 = max %7, %8 : f32[3]
    %10 = min %8, %7 : f32[3]
    return %2 as "add", %3 as "sub", %4 as "mul", %5 as "max", %6 as "min", %9 as "fmax", %10 as "fmin"
"#,
    );
    let nan = f64::NAN;
    let o = run(
        &src,
        &[
            ("a", it(DType::I64, &[2, 2], &[3, -4, 10, 0])),
            ("b", it(DType::I64, &[2], &[-5, 6])),
            ("x", f32t(&[3], &[nan, 1.0, -2.0])),
            ("y", f32t(&[3], &[1.0, nan, 5.0])),
        ],
    );
    exact("add", out(&o, "add"), DType::I64, &[2, 2], &[-2.0, 2.0, 5.0, 6.0]);
    exact("sub", out(&o, "sub"), DType::I64, &[2, 2], &[8.0, -10.0, 15.0, -6.0]);
    exact("mul", out(&o, "mul"), DType::I64, &[2, 2], &[-15.0, -24.0, -50.0, 0.0]);
    exact("max", out(&o, "max"), DType::I64, &[2, 2], &[3.0, 6.0, 10.0, 6.0]);
    exact("min", out(&o, "min"), DType::I64, &[2, 2], &[-5.0, -4.0, -5.0, 0.0]);
    // NaN in either operand gives NaN (torch.maximum), from either side.
    exact("fmax", out(&o, "fmax"), DType::F32, &[3], &[nan, nan, 5.0]);
    exact("fmin", out(&o, "fmin"), DType::F32, &[3], &[nan, nan, -2.0]);
}

pub fn clamp_bounds_and_nan() {
    let src = module(
        "",
        r#"    %0 = input "x" : f32[6]
    %1 = clamp %0 {min=-1.5, max=2} : f32[6]
    %2 = clamp %0 {min=0.0} : f32[6]
    %3 = clamp %0 {max=-1} : f32[6]
    %4 = input "h" : bf16[3]
    %5 = clamp %4 {max=0.1} : bf16[3]
    %6 = input "i" : i32[4]
    %7 = clamp %6 {min=-3, max=3} : i32[4]
    return %1 as "both", %2 as "min", %3 as "max", %5 as "bf16", %7 as "int"
"#,
    );
    let nan = f64::NAN;
    let o = run(
        &src,
        &[
            ("x", f32t(&[6], &[-3.0, -1.0, 0.5, 2.0, 5.0, nan])),
            ("h", ft(DType::BF16, &[3], &[-1.0, 0.05, 4.0])),
            ("i", it(DType::I32, &[4], &[-10, 0, 3, 7])),
        ],
    );
    exact("both", out(&o, "both"), DType::F32, &[6], &[-1.5, -1.0, 0.5, 2.0, 2.0, nan]);
    exact("min", out(&o, "min"), DType::F32, &[6], &[0.0, 0.0, 0.5, 2.0, 5.0, nan]);
    exact("max", out(&o, "max"), DType::F32, &[6], &[-3.0, -1.0, -1.0, -1.0, -1.0, nan]);
    // The bound itself is rounded to the result dtype: 0.1 → 0.10009765625 in bf16;
    // 0.05 → 0.0500488... (bf16 of 0.05) passes through.
    let small = f64::from(lathe_numerics::round_to_bf16(0.05));
    exact("bf16", out(&o, "bf16"), DType::BF16, &[3], &[-1.0, small, 0.10009765625]);
    exact("int", out(&o, "int"), DType::I32, &[4], &[-3.0, 0.0, 3.0, 3.0]);
}

pub fn where_selects_with_broadcasting() {
    let src = module(
        "",
        r#"    %0 = input "c" : bool[2, 1]
    %1 = input "a" : f32[2, 3]
    %2 = input "b" : f32[3]
    %3 = where %0, %1, %2 : f32[2, 3]
    %4 = input "m" : bool[3]
    %5 = input "i" : i64[2, 3]
    %6 = input "j" : i64[]
    %7 = where %4, %5, %6 : i64[2, 3]
    return %3 as "f", %7 as "i"
"#,
    );
    let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let b = [-1.0, -2.0, -3.0];
    let o = run(
        &src,
        &[
            ("c", it(DType::Bool, &[2, 1], &[0, 1])),
            ("a", f32t(&[2, 3], &a)),
            ("b", f32t(&[3], &b)),
            ("m", it(DType::Bool, &[3], &[1, 0, 1])),
            ("i", it(DType::I64, &[2, 3], &[10, 11, 12, 13, 14, 15])),
            ("j", it(DType::I64, &[], &[-9])),
        ],
    );
    exact("where f32", out(&o, "f"), DType::F32, &[2, 3], &[-1.0, -2.0, -3.0, 4.0, 5.0, 6.0]);
    exact("where i64", out(&o, "i"), DType::I64, &[2, 3], &[10.0, -9.0, 12.0, 13.0, -9.0, 15.0]);
}

pub fn cast_rounds_saturates_and_truncates() {
    let src = module(
        "",
        r#"    %0 = input "x" : f32[6]
    %1 = cast %0 : bf16[6]
    %2 = input "e" : f32[8]
    %3 = cast %2 : f8e4m3[8]
    %4 = cast %2 : f8e5m2[8]
    %5 = input "h" : f32[3]
    %6 = cast %5 : f16[3]
    %7 = input "t" : f32[8]
    %8 = cast %7 : i32[8]
    %9 = cast %7 : u8[8]
    %10 = cast %7 : bool[8]
    %11 = input "i" : i64[4]
    %12 = cast %11 : i8[4]
    %13 = cast %11 : f32[4]
    %14 = cast %1 : f32[6]
    return %1 as "bf16", %3 as "e4m3", %4 as "e5m2", %6 as "f16", %8 as "i32", %9 as "u8", %10 as "bool", %12 as "i8", %13 as "i2f", %14 as "widen"
"#,
    );
    let p = |e: i32| 2f64.powi(e);
    let o = run(
        &src,
        &[
            // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even wins (1). 1 + 3·2^-8 is a tie between
            // 1 + 2^-7 (odd) and 1 + 2^-6 (even). 1 + 2^-9 is below the tie; 1 + 2^-8 + 2^-20 above.
            (
                "x",
                f32t(&[6], &[1.0 + p(-8), 1.0 + 3.0 * p(-8), 1.0 + p(-9), 1.0 + p(-8) + p(-20), -0.1, f64::INFINITY]),
            ),
            ("e", f32t(&[8], &[500.0, -500.0, 464.0, 17.0, 19.0, 1.1, 1.375, 60000.0])),
            ("h", f32t(&[3], &[65520.0, 1.0 + p(-11), 65504.0])),
            ("t", f32t(&[8], &[2.7, -2.7, 3e10, -3e10, f64::NAN, 254.9, -0.0, 0.3])),
            ("i", it(DType::I64, &[4], &[300, -129, 16_777_217, 5])),
        ],
    );
    exact(
        "bf16",
        out(&o, "bf16"),
        DType::BF16,
        &[6],
        &[1.0, 1.0 + p(-6), 1.0, 1.0 + p(-7), -0.10009765625, f64::INFINITY],
    );
    exact("widen", out(&o, "widen"), DType::F32, &[6], &out(&o, "bf16").to_f64());
    // e4m3 saturates (no infinities; 464 is past the 448 boundary); 17, 19 are ties (step 2);
    // 1.1 → 1.125 (step 1/8); 1.375 is exact; 60000 saturates.
    exact("e4m3", out(&o, "e4m3"), DType::F8E4M3, &[8], &[448.0, -448.0, 448.0, 16.0, 20.0, 1.125, 1.375, 448.0]);
    // e5m2 (2 significand bits, max 57344): 500 → 512 (step 64 in [256, 512): 500 is nearer 512);
    // 464 → 448; 17 → 16 (step 4, 17 nearest 16); 19 → 20; 1.1 → 1.0; 1.375 ties to 1.5; 60000 saturates.
    exact("e5m2", out(&o, "e5m2"), DType::F8E5M2, &[8], &[512.0, -512.0, 448.0, 16.0, 20.0, 1.0, 1.5, 57344.0]);
    // f16 keeps IEEE overflow: 65520 is the tie above the max 65504 and rounds to infinity.
    exact("f16", out(&o, "f16"), DType::F16, &[3], &[f64::INFINITY, 1.0, 65504.0]);
    // Float → int truncates toward zero, saturates, and maps NaN to 0.
    exact("i32", out(&o, "i32"), DType::I32, &[8], &[2.0, -2.0, 2147483647.0, -2147483648.0, 0.0, 254.0, 0.0, 0.0]);
    exact("u8", out(&o, "u8"), DType::U8, &[8], &[2.0, 0.0, 255.0, 0.0, 0.0, 254.0, 0.0, 0.0]);
    // To bool: nonzero is true. NaN → bool is not specified by the op's doc, so it is skipped.
    let b = out(&o, "bool");
    assert_eq!((b.dtype, b.shape.as_slice()), (DType::Bool, &[8][..]));
    let want = [1, 1, 1, 1, -1, 1, 0, 1];
    for (i, (&got, &w)) in b.ints().iter().zip(&want).enumerate() {
        assert!(w < 0 || got == w, "bool[{i}] = {got}, expected {w}");
    }
    // Int → int wraps (two's complement); int → f32 rounds to nearest even (2^24 + 1 → 2^24).
    exact("i8", out(&o, "i8"), DType::I8, &[4], &[44.0, 127.0, 1.0, 5.0]);
    exact("i2f", out(&o, "i2f"), DType::F32, &[4], &[300.0, -129.0, 16_777_216.0, 5.0]);
}
