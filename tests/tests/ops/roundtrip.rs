//! Parse round-trip cases: each module parses, verifies, prints, and
//! `parse(print(m)) == m.renumbered()` with `print` a fixed point.

use lathe_ir::text::{parse_module, print_module};

use crate::common::{module, module_ops, valid};

/// Symbols most cases use.
const SYMS: &str = "  symbol B <= 4\n  symbol S <= 16\n";

/// `(op, module text)`: each module contains the op it is filed under.
pub fn cases() -> Vec<(&'static str, String)> {
    let mut c: Vec<(&'static str, String)> = vec![
        (
            "input",
            module(
                SYMS,
                r#"    %0 = input "tokens" : i64[B, S]
    %1 = input "a \"quoted\" name\twith tab" : bf16[B, S, 8]
    return %0 as "tokens", %1 as "x"
"#,
            ),
        ),
        (
            "weight",
            module(
                "  weight @model.layers.0.w : bf16[4, 8] = checkpoint \"model-00001.safetensors\" \"model.layers.0.w\"\n  weight @\"odd name\" : f32[3] = synthetic 42\n",
                r#"    %0 = weight @model.layers.0.w : bf16[4, 8]
    %1 = weight @"odd name" : f32[3]
    return %0, %1 as "odd"
"#,
            ),
        ),
        (
            "constant",
            module(
                "",
                r#"    %0 = constant 1.5 : f32[2, 3]
    %1 = constant [1, -2, 3.25e-7, -inf, inf, -0.0] : f32[6]
    %2 = constant [0, 5, -9] : i64[3]
    %3 = constant 0.1 : bf16[]
    %4 = constant [1, 0] : bool[2]
    return %0, %1, %2, %3, %4
"#,
            ),
        ),
        (
            "iota",
            module(
                SYMS,
                r#"    %0 = input "x" : f32[B, S]
    %1 = iota {axis=1} : i64[B, S]
    %2 = iota {axis=0} : bf16[3, 2]
    return %1, %2
"#,
            ),
        ),
        (
            "matmul",
            module(
                SYMS,
                r#"    %0 = input "a" : f32[B, 8, S]
    %1 = input "b" : bf16[B, 4, 8]
    %2 = matmul %0, %1 {transpose_a, transpose_b} : f32[B, S, 4]
    %3 = input "w" : f32[4, 6]
    %4 = matmul %2, %3 : bf16[B, S, 6]
    return %4 as "y"
"#,
            ),
        ),
        (
            "scaled_matmul",
            module(
                SYMS,
                r#"    %0 = input "a" : f8e4m3[S, 16]
    %1 = input "b" : f8e5m2[32, 16]
    %2 = input "sa" : f32[]
    %3 = input "sb" : f32[32]
    %4 = scaled_matmul %0, %1, %2, %3 {transpose_b} : bf16[S, 32]
    return %4
"#,
            ),
        ),
        (
            "attention",
            module(
                SYMS,
                r#"    %0 = input "q" : bf16[B, S, 8, 16]
    %1 = input "k" : bf16[B, 32, 2, 16]
    %2 = input "v" : bf16[B, 32, 2, 8]
    %3 = input "len" : i64[B]
    %4 = attention %0, %1, %2, %3 {mask=causal, scale=0.25} : bf16[B, S, 8, 8]
    %5 = attention %0, %1, %2, %3 {mask=bidirectional, scale=0.125} : bf16[B, S, 8, 8]
    %6 = attention %0, %1, %2, %3 {mask=cross, scale=1} : bf16[B, S, 8, 8]
    return %4, %5, %6
"#,
            ),
        ),
        (
            "rope",
            module(
                SYMS,
                r#"    %0 = input "q" : bf16[B, S, 8, 16]
    %1 = input "pos" : i64[B, S]
    %2 = rope %0, %1 {theta=500000.0, scale=8.0} : bf16[B, S, 8, 16]
    %3 = rope %0, %1 {theta=10000} : bf16[B, S, 8, 16]
    return %2, %3
"#,
            ),
        ),
        (
            "scan.ssd",
            module(
                SYMS,
                r#"    %0 = input "x" : bf16[B, S, 8, 4]
    %1 = input "dt" : f32[B, S, 8]
    %2 = input "A" : f32[8]
    %3 = input "Bm" : bf16[B, S, 2, 16]
    %4 = input "Cm" : bf16[B, S, 2, 16]
    %5 = input "s0" : f32[B, 8, 4, 16]
    %6:2 = scan.ssd %0, %1, %2, %3, %4, %5 {chunk=128} : bf16[B, S, 8, 4], f32[B, 8, 4, 16]
    %7 = silu %6#0 : bf16[B, S, 8, 4]
    return %7 as "y", %6#1 as "state"
"#,
            ),
        ),
        (
            "conv1d.causal",
            module(
                "  symbol B <= 4\n  symbol S <= 16\n  weight @conv.w : f32[6, 4] = synthetic 1\n  weight @conv.b : f32[6] = synthetic 2\n",
                r#"    %0 = input "x" : f32[B, S, 6]
    %1 = weight @conv.w : f32[6, 4]
    %2 = weight @conv.b : f32[6]
    %3 = input "state" : f32[B, 3, 6]
    %4:2 = conv1d.causal %0, %1, %2, %3 : f32[B, S, 6], f32[B, 3, 6]
    return %4#0 as "y", %4#1 as "state"
"#,
            ),
        ),
        (
            "conv2d.patch",
            module(
                SYMS,
                r#"    %0 = input "img" : f32[B, 3, 8, 12]
    %1 = input "w" : f32[5, 3, 4, 4]
    %2 = input "b" : f32[5]
    %3 = conv2d.patch %0, %1, %2 {patch=4} : f32[B, 6, 5]
    return %3
"#,
            ),
        ),
        (
            "clamp",
            module(
                SYMS,
                r#"    %0 = input "x" : f32[S]
    %1 = clamp %0 {min=-1.5, max=2} : f32[S]
    %2 = clamp %1 {min=0.0} : f32[S]
    %3 = clamp %2 {max=1e-3} : f32[S]
    %4 = input "i" : i32[S]
    %5 = clamp %4 {min=-3, max=3} : i32[S]
    return %3, %5
"#,
            ),
        ),
        (
            "where",
            module(
                SYMS,
                r#"    %0 = input "c" : bool[S, 1]
    %1 = input "a" : f32[S, 4]
    %2 = input "b" : f32[4]
    %3 = where %0, %1, %2 : f32[S, 4]
    return %3
"#,
            ),
        ),
        (
            "cast",
            module(
                SYMS,
                r#"    %0 = input "x" : f32[S, 4]
    %1 = cast %0 : bf16[S, 4]
    %2 = cast %1 : f8e4m3[S, 4]
    %3 = cast %2 : f8e5m2[S, 4]
    %4 = cast %3 : f16[S, 4]
    %5 = cast %4 : i8[S, 4]
    %6 = cast %5 : u8[S, 4]
    %7 = cast %6 : bool[S, 4]
    %8 = cast %7 : i64[S, 4]
    return %8
"#,
            ),
        ),
        (
            "reduce",
            module(
                SYMS,
                r#"    %0 = input "x" : f32[B, S, 4]
    %1 = reduce %0 {kind=sum, axes=[0, 2]} : f32[S]
    %2 = reduce %0 {kind=max, axes=[1], keep_dims} : f32[B, 1, 4]
    %3 = reduce %0 {kind=mean, axes=[0, 1, 2], keep_dims} : f32[1, 1, 1]
    return %1, %2, %3
"#,
            ),
        ),
        (
            "softmax",
            module(
                SYMS,
                r#"    %0 = input "x" : bf16[B, S, 4]
    %1 = softmax %0 {axis=1} : bf16[B, S, 4]
    return %1
"#,
            ),
        ),
        (
            "rms_norm",
            module(
                "  symbol S <= 16\n  weight @norm : f32[8] = synthetic 3\n",
                r#"    %0 = input "x" : f32[S, 8]
    %1 = weight @norm : f32[8]
    %2 = rms_norm %0, %1 {eps=1e-06, groups=1} : f32[S, 8]
    %3 = rms_norm %2, %1 {eps=0.0, groups=4} : f32[S, 8]
    %4 = input "z" : f32[S, 8]
    %5 = rms_norm %3, %1, %4 {eps=1e-05, groups=2} : f32[S, 8]
    return %5
"#,
            ),
        ),
        (
            "rms_norm",
            // `groups` is optional in text and defaults to 1.
            module(
                "",
                r#"    %0 = input "x" : f32[2, 8]
    %1 = input "w" : f32[8]
    %2 = rms_norm %0, %1 {eps=1e-5} : f32[2, 8]
    return %2
"#,
            ),
        ),
        (
            "layer_norm",
            module(
                SYMS,
                r#"    %0 = input "x" : f32[B, S, 8]
    %1 = input "w" : f32[8]
    %2 = input "b" : f32[8]
    %3 = layer_norm %0, %1, %2 {eps=1e-12} : f32[B, S, 8]
    return %3
"#,
            ),
        ),
        (
            "reshape",
            module(
                SYMS,
                r#"    %0 = input "x" : f32[B, S, 8]
    %1 = reshape %0 : f32[S, B, 2, 4]
    %2 = reshape %1 : f32[S, 8, B]
    return %2
"#,
            ),
        ),
        (
            "transpose",
            module(
                SYMS,
                r#"    %0 = input "x" : f32[B, S, 2, 4]
    %1 = transpose %0 {perm=[0, 2, 1, 3]} : f32[B, 2, S, 4]
    return %1
"#,
            ),
        ),
        (
            "slice",
            module(
                SYMS,
                r#"    %0 = input "x" : f32[B, S, 8]
    %1 = slice %0 {axis=1, start=-1} : f32[B, 1, 8]
    %2 = slice %0 {axis=2, start=2, end=-2} : f32[B, S, 4]
    %3 = slice %0 {axis=1, start=0} : f32[B, S, 8]
    return %1, %2, %3
"#,
            ),
        ),
        (
            "split",
            module(
                SYMS,
                r#"    %0 = input "x" : f32[B, S, 10]
    %1:3 = split %0 {axis=2, sizes=[4, 0, 6]} : f32[B, S, 4], f32[B, S, 0], f32[B, S, 6]
    return %1#2, %1#0
"#,
            ),
        ),
        (
            "concat",
            module(
                SYMS,
                r#"    %0 = input "a" : f32[S, 2]
    %1 = input "b" : f32[S, 3]
    %2 = concat %0, %1, %0 {axis=1} : f32[S, 7]
    %3 = concat %2 {axis=0} : f32[S, 7]
    return %3
"#,
            ),
        ),
        (
            "broadcast",
            module(
                SYMS,
                r#"    %0 = input "x" : f32[S, 1]
    %1 = broadcast %0 : f32[B, S, 5]
    return %1
"#,
            ),
        ),
        (
            "gather",
            module(
                "  symbol B <= 4\n  symbol S <= 16\n  weight @embed : bf16[32, 8] = synthetic 9\n",
                r#"    %0 = input "tokens" : i64[B, S]
    %1 = weight @embed : bf16[32, 8]
    %2 = gather %1, %0 : bf16[B, S, 8]
    return %2
"#,
            ),
        ),
        (
            "pixel_shuffle",
            module(
                SYMS,
                r#"    %0 = input "x" : bf16[B, 4, 6, 3]
    %1 = pixel_shuffle %0 {factor=2} : bf16[B, 2, 3, 12]
    return %1
"#,
            ),
        ),
        (
            "scatter_cache",
            module(
                SYMS,
                r#"    %0 = input "cache" : bf16[B, 16, 2, 4]
    %1 = input "new" : bf16[B, S, 2, 4]
    %2 = input "past" : i64[B]
    %3 = scatter_cache %0, %1, %2 : bf16[B, 16, 2, 4]
    return %3 as "cache"
"#,
            ),
        ),
        (
            "amax",
            module(
                SYMS,
                r#"    %0 = input "x" : bf16[S, 4]
    %1 = amax %0 : f32[]
    return %1
"#,
            ),
        ),
        (
            "quantize",
            module(
                SYMS,
                r#"    %0 = input "x" : f32[S, 4]
    %1 = input "s" : f32[4]
    %2 = quantize %0, %1 : f8e4m3[S, 4]
    %3 = input "t" : f32[]
    %4 = quantize %0, %3 : f8e5m2[S, 4]
    return %2, %4
"#,
            ),
        ),
        (
            "dequantize",
            module(
                SYMS,
                r#"    %0 = input "q" : f8e4m3[S, 4]
    %1 = input "s" : f32[]
    %2 = dequantize %0, %1 : bf16[S, 4]
    %3 = input "t" : f32[4]
    %4 = dequantize %0, %3 : f32[S, 4]
    return %2, %4
"#,
            ),
        ),
        (
            "fusion",
            module(
                SYMS,
                r#"    %0 = input "x" : f32[S, 4]
    %1 = input "y" : f32[S, 4]
    // A two-result region with a nested region inside.
    %2:2 = fusion %0, %1 {strategy=elementwise} {
      %0 = input "a" : f32[S, 4]
      %1 = input "b" : f32[S, 4]
      %2 = fusion %0 {strategy=row_reduce} {
        %0 = input "c" : f32[S, 4]
        %1 = softmax %0 {axis=1} : f32[S, 4]
        return %1
      } : f32[S, 4]
      %3 = mul %2, %1 : f32[S, 4]
      return %3, %0
    } : f32[S, 4], f32[S, 4]
    return %2#0 as "y", %2#1 as "x"
"#,
            ),
        ),
        (
            "sample",
            module(
                SYMS,
                r#"    %0 = input "logits" : bf16[B, 32]
    %1 = input "offset" : i64[]
    %2 = sample %0, %1 {seed=1234, temperature=0.7, top_k=5, top_p=0.9} : i64[B]
    %3 = sample %0, %1 {seed=0, temperature=0.0} : i64[B]
    return %2, %3
"#,
            ),
        ),
    ];
    for u in ["neg", "exp", "log", "sqrt", "rsqrt", "silu", "relu", "square", "sigmoid", "softplus", "tanh"] {
        c.push((
            u,
            module(SYMS, &format!("    %0 = input \"x\" : bf16[B, S]\n    %1 = {u} %0 : bf16[B, S]\n    return %1\n")),
        ));
    }
    c.push(("neg", module("", "    %0 = input \"x\" : i8[3]\n    %1 = neg %0 : i8[3]\n    return %1\n")));
    c.push((
        "gelu",
        module(
            SYMS,
            "    %0 = input \"x\" : f32[S]\n    %1 = gelu %0 {approx=tanh} : f32[S]\n    %2 = gelu %1 {approx=erf} : f32[S]\n    %3 = gelu %2 : f32[S]\n    return %3\n",
        ),
    ));
    for b in ["add", "sub", "mul", "div", "max", "min"] {
        c.push((
            b,
            module(
                SYMS,
                &format!("    %0 = input \"a\" : f32[B, 1, 4]\n    %1 = input \"b\" : f32[S, 1]\n    %2 = {b} %0, %1 : f32[B, S, 4]\n    return %2\n"),
            ),
        ));
    }
    c
}

#[test]
fn every_case_round_trips() {
    for (op, src) in cases() {
        let m = valid(&src);
        assert!(module_ops(&m).contains(op), "round-trip case filed under `{op}` does not use it:\n{src}");
        let printed = print_module(&m);
        let again =
            parse_module(&printed).unwrap_or_else(|e| panic!("`{op}`: printed text does not parse: {e}\n{printed}"));
        assert_eq!(again, m.renumbered(), "`{op}`: parse(print(m)) != m.renumbered()\n{printed}");
        assert!(lathe_ir::verify::verify(&again).is_ok(), "`{op}`: reparsed module does not verify");
        assert_eq!(print_module(&again), printed, "`{op}`: print is not a fixed point");
    }
}

#[test]
fn printer_renumbers_densely_and_drops_comments() {
    // Sparse, out-of-order names and comments in; dense names out.
    let src = module(
        "",
        r#"    // a comment
    %x = input "x" : f32[2]
    %7:2 = split %x {axis=0, sizes=[1, 1]} : f32[1], f32[1]
    %3 = add %7#1, %7#0 : f32[1] // trailing comment
    return %3 as "y"
"#,
    );
    let printed = print_module(&valid(&src));
    let body: Vec<&str> = printed.lines().skip_while(|l| !l.contains("func @main")).skip(1).take(4).collect();
    assert_eq!(
        body,
        [
            "    %0 = input \"x\" : f32[2]",
            "    %1:2 = split %0 {axis=0, sizes=[1, 1]} : f32[1], f32[1]",
            "    %2 = add %1#1, %1#0 : f32[1]",
            "    return %2 as \"y\"",
        ]
    );
}

#[test]
fn attribute_values_print_exactly() {
    // Floats print in the shortest form that reads back to the same bits.
    let src = module(
        "",
        r#"    %0 = input "x" : f32[4]
    %1 = clamp %0 {min=0.1, max=3.0000000000000004} : f32[4]
    %2 = rms_norm %1, %0 {eps=1e-5, groups=4} : f32[4]
    return %2
"#,
    );
    let printed = print_module(&valid(&src));
    assert!(printed.contains("clamp %0 {min=0.1, max=3.0000000000000004}"), "{printed}");
    assert!(printed.contains("rms_norm %1, %0 {eps=1e-5, groups=4}"), "{printed}");
}
