//! Verifier negative cases (modules that parse but are ill-typed) and parse negative cases.

use lathe_ir::text::parse_module;
use lathe_ir::verify::verify;

use crate::common::{module, parse};

/// One ill-typed module: the verifier must report an error at a node running `op` whose
/// message contains `want`.
#[derive(Debug)]
pub struct Neg {
    /// The op the error must be reported at.
    pub op: &'static str,
    /// Module text (parses).
    pub src: String,
    /// Expected substring of the message.
    pub want: &'static str,
}

fn neg(op: &'static str, decls: &str, body: &str, want: &'static str) -> Neg {
    Neg { op, src: module(decls, body), want }
}

/// Every verifier negative case.
pub fn cases() -> Vec<Neg> {
    let syms = "  symbol B <= 4\n  symbol S <= 16\n";
    let mut c = vec![
        neg(
            "input",
            "",
            "    %0 = input \"x\" : f32[2]\n    %1 = input \"x\" : f32[2]\n    return %1\n",
            "input \"x\" is declared twice",
        ),
        neg(
            "weight",
            "  weight @w : f32[4] = synthetic 1\n",
            "    %0 = weight @w : f32[3]\n    return %0\n",
            "result type is f32[3] but the op produces f32[4]",
        ),
        neg("weight", "  weight @w : bf16[4] = synthetic 1\n", "    %0 = weight @w : f32[4]\n    return %0\n", "produces bf16[4]"),
        neg("constant", "", "    %0 = constant [1, 2] : f32[3]\n    return %0\n", "constant holds 2 values for 3 elements"),
        neg("constant", "", "    %0 = constant [1, 2.5] : i64[2]\n    return %0\n", "non-integer value 2.5"),
        neg("constant", syms, "    %0 = constant 0.0 : f32[S]\n    return %0\n", "must have constant dims"),
        // Literals fit their dtype: no wrapping, no saturation, no overflow to infinity.
        neg("constant", "", "    %0 = constant 300 : i8[]\n    return %0\n", "i8 constant holds 300, outside the range of i8"),
        neg("constant", "", "    %0 = constant [1, -1] : u8[2]\n    return %0\n", "u8 constant holds -1, outside the range"),
        neg("constant", "", "    %0 = constant 2147483648 : i32[]\n    return %0\n", "outside the range of i32"),
        neg("constant", "", "    %0 = constant 9223372036854775807 : i64[]\n    return %0\n", "outside the range of i64"),
        neg("constant", "", "    %0 = constant 0.5 : u8[3]\n    return %0\n", "u8 constant holds non-integer value 0.5"),
        neg("constant", "", "    %0 = constant inf : i32[]\n    return %0\n", "non-integer value inf"),
        neg("constant", "", "    %0 = constant 2 : bool[]\n    return %0\n", "bool constant holds 2 (expected 0 or 1)"),
        neg("constant", "", "    %0 = constant 1e39 : f32[]\n    return %0\n", "overflows f32 to infinity"),
        neg("constant", "", "    %0 = constant -70000 : f16[2]\n    return %0\n", "overflows f16 to infinity"),
        neg("constant", "", "    %0 = constant 500 : f8e4m3[]\n    return %0\n", "beyond the largest finite f8e4m3 value 448"),
        neg("constant", "", "    %0 = constant 1e5 : f8e5m2[]\n    return %0\n", "beyond the largest finite f8e5m2 value 57344"),
        // Size limits of types.
        neg("input", "", "    %0 = input \"x\" : f32[16777216, 16777216, 2]\n    return %0\n", "more than 281474976710656 elements"),
        neg("input", "  symbol S <= 4294967296\n", "    %0 = input \"x\" : f32[S, S]\n    return %0\n", "f32[S, S] has more than 281474976710656 elements at its symbols' bounds"),
        neg("input", "", "    %0 = input \"x\" : f32[18446744073709551615, 2]\n    return %0\n", "more than 281474976710656 elements"),
        neg("iota", "", "    %0 = iota {axis=0} : i64[4294967296, 65537]\n    return %0\n", "more than 281474976710656 elements"),
        neg("iota", "", "    %0 = iota {axis=2} : i64[2, 3]\n    return %0\n", "axis 2 out of range for i64[2, 3]"),
        neg("iota", "", "    %0 = iota {axis=0} : bool[2]\n    return %0\n", "iota cannot produce bool"),
        neg("iota", "", "    %0 = iota {axis=0} : i8[300]\n    return %0\n", "iota along axis 0 of i8[300]: i8 constant holds 299"),
        neg("iota", "  symbol S <= 257\n", "    %0 = iota {axis=1} : u8[2, S]\n    return %0\n", "u8 constant holds 256"),
        neg(
            "matmul",
            syms,
            "    %0 = input \"a\" : f32[S, 8]\n    %1 = input \"b\" : f32[4, 6]\n    %2 = matmul %0, %1 : f32[S, 6]\n    return %2\n",
            "contraction dims differ: 8 vs 4",
        ),
        neg(
            "matmul",
            "",
            "    %0 = input \"a\" : f32[2, 3, 8]\n    %1 = input \"b\" : f32[3, 8, 4]\n    %2 = matmul %0, %1 : f32[2, 3, 4]\n    return %2\n",
            "batch dims differ",
        ),
        neg(
            "matmul",
            "",
            "    %0 = input \"a\" : f8e4m3[2, 8]\n    %1 = input \"b\" : f32[8, 4]\n    %2 = matmul %0, %1 : f32[2, 4]\n    return %2\n",
            "lhs must be f32, f16 or bf16",
        ),
        neg(
            // The declared result shape disagrees with the transposes.
            "matmul",
            "",
            "    %0 = input \"a\" : f32[2, 8]\n    %1 = input \"b\" : f32[4, 8]\n    %2 = matmul %0, %1 {transpose_b} : f32[2, 8]\n    return %2\n",
            "result type is f32[2, 8] but the op produces f32[2, 4]",
        ),
        neg(
            "scaled_matmul",
            "",
            "    %0 = input \"a\" : bf16[2, 8]\n    %1 = input \"b\" : f8e4m3[4, 8]\n    %2 = input \"sa\" : f32[]\n    %3 = input \"sb\" : f32[]\n    %4 = scaled_matmul %0, %1, %2, %3 {transpose_b} : f32[2, 4]\n    return %4\n",
            "operands must be fp8",
        ),
        neg(
            "scaled_matmul",
            "",
            "    %0 = input \"a\" : f8e4m3[2, 8]\n    %1 = input \"b\" : f8e4m3[4, 8]\n    %2 = input \"sa\" : f32[]\n    %3 = input \"sb\" : f32[8]\n    %4 = scaled_matmul %0, %1, %2, %3 {transpose_b} : f32[2, 4]\n    return %4\n",
            "rhs scale must be f32[] or f32[4], got f32[8]",
        ),
        neg(
            "attention",
            syms,
            "    %0 = input \"q\" : f32[B, S, 4, 8]\n    %1 = input \"k\" : f32[B, 16, 3, 8]\n    %2 = input \"v\" : f32[B, 16, 3, 8]\n    %3 = input \"len\" : i64[B]\n    %4 = attention %0, %1, %2, %3 {mask=causal, scale=0.5} : f32[B, S, 4, 8]\n    return %4\n",
            "q heads 4 must be a multiple of kv heads 3",
        ),
        neg(
            "attention",
            syms,
            "    %0 = input \"q\" : f32[B, S, 4, 8]\n    %1 = input \"k\" : f32[B, 16, 2, 8]\n    %2 = input \"v\" : f32[B, 16, 2, 8]\n    %3 = input \"len\" : i32[B]\n    %4 = attention %0, %1, %2, %3 {mask=causal, scale=0.5} : f32[B, S, 4, 8]\n    return %4\n",
            "kv_len must be i64[B], got i32[B]",
        ),
        neg(
            "attention",
            syms,
            "    %0 = input \"q\" : f32[B, S, 4, 6]\n    %1 = input \"k\" : f32[B, 16, 2, 8]\n    %2 = input \"v\" : f32[B, 16, 2, 8]\n    %3 = input \"len\" : i64[B]\n    %4 = attention %0, %1, %2, %3 {mask=bidirectional, scale=0.5} : f32[B, S, 4, 8]\n    return %4\n",
            "q and k head dims differ: 6 vs 8",
        ),
        neg(
            "rope",
            syms,
            "    %0 = input \"x\" : f32[B, S, 4, 5]\n    %1 = input \"p\" : i64[B, S]\n    %2 = rope %0, %1 {theta=10000.0} : f32[B, S, 4, 5]\n    return %2\n",
            "rope needs an even head dim, got 5",
        ),
        neg(
            "rope",
            syms,
            "    %0 = input \"x\" : f32[B, S, 4, 8]\n    %1 = input \"p\" : i64[B]\n    %2 = rope %0, %1 {theta=10000.0} : f32[B, S, 4, 8]\n    return %2\n",
            "positions must be i64[B, S], got i64[B]",
        ),
        neg(
            "rope",
            syms,
            "    %0 = input \"x\" : f32[B, S, 4, 8]\n    %1 = input \"p\" : i64[B, S]\n    %2 = rope %0, %1 {theta=0.0} : f32[B, S, 4, 8]\n    return %2\n",
            "theta and scale must be finite and > 0, got 0 and 1",
        ),
        neg(
            "scan.ssd",
            syms,
            "    %0 = input \"x\" : f32[B, S, 4, 2]\n    %1 = input \"dt\" : f32[B, S, 4]\n    %2 = input \"A\" : f32[4]\n    %3 = input \"Bm\" : f32[B, S, 3, 5]\n    %4 = input \"Cm\" : f32[B, S, 3, 5]\n    %5 = input \"s0\" : f32[B, 4, 2, 5]\n    %6:2 = scan.ssd %0, %1, %2, %3, %4, %5 {chunk=64} : f32[B, S, 4, 2], f32[B, 4, 2, 5]\n    return %6#0\n",
            "heads 4 must be a multiple of groups 3",
        ),
        neg(
            "scan.ssd",
            syms,
            "    %0 = input \"x\" : f32[B, S, 4, 2]\n    %1 = input \"dt\" : f32[B, S, 4]\n    %2 = input \"A\" : f32[4]\n    %3 = input \"Bm\" : f32[B, S, 2, 5]\n    %4 = input \"Cm\" : f32[B, S, 2, 5]\n    %5 = input \"s0\" : f32[B, 4, 5, 2]\n    %6:2 = scan.ssd %0, %1, %2, %3, %4, %5 {chunk=64} : f32[B, S, 4, 2], f32[B, 4, 5, 2]\n    return %6#0\n",
            "state0 must be [B,H,P,N] = [B, 4, 2, 5]",
        ),
        neg(
            "scan.ssd",
            syms,
            "    %0 = input \"x\" : f32[B, S, 4, 2]\n    %1 = input \"dt\" : f32[B, S, 2]\n    %2 = input \"A\" : f32[4]\n    %3 = input \"Bm\" : f32[B, S, 2, 5]\n    %4 = input \"Cm\" : f32[B, S, 2, 5]\n    %5 = input \"s0\" : f32[B, 4, 2, 5]\n    %6:2 = scan.ssd %0, %1, %2, %3, %4, %5 {chunk=64} : f32[B, S, 4, 2], f32[B, 4, 2, 5]\n    return %6#0\n",
            "dt must be [B,S,H] of x: 2 vs 4",
        ),
        neg(
            "conv1d.causal",
            syms,
            "    %0 = input \"x\" : f32[B, S, 6]\n    %1 = input \"w\" : f32[6, 4]\n    %2 = input \"b\" : f32[6]\n    %3 = input \"s\" : f32[B, 4, 6]\n    %4:2 = conv1d.causal %0, %1, %2, %3 : f32[B, S, 6], f32[B, 4, 6]\n    return %4#0\n",
            "state must be [B, W-1, C] = [B, 3, 6], got f32[B, 4, 6]",
        ),
        neg(
            "conv1d.causal",
            syms,
            "    %0 = input \"x\" : f32[B, S, 6]\n    %1 = input \"w\" : f32[5, 4]\n    %2 = input \"b\" : f32[6]\n    %3 = input \"s\" : f32[B, 3, 6]\n    %4:2 = conv1d.causal %0, %1, %2, %3 : f32[B, S, 6], f32[B, 3, 6]\n    return %4#0\n",
            "w channels vs x channels: 5 vs 6",
        ),
        neg(
            "conv2d.patch",
            "",
            "    %0 = input \"x\" : f32[1, 3, 8, 10]\n    %1 = input \"w\" : f32[5, 3, 4, 4]\n    %2 = input \"b\" : f32[5]\n    %3 = conv2d.patch %0, %1, %2 {patch=4} : f32[1, 4, 5]\n    return %3\n",
            "image 8x10 is not a multiple of patch 4",
        ),
        neg(
            "conv2d.patch",
            "",
            "    %0 = input \"x\" : f32[1, 3, 8, 8]\n    %1 = input \"w\" : f32[5, 3, 2, 2]\n    %2 = input \"b\" : f32[5]\n    %3 = conv2d.patch %0, %1, %2 {patch=4} : f32[1, 4, 5]\n    return %3\n",
            "w must be [O, C, 4, 4]",
        ),
        neg(
            "conv2d.patch",
            "",
            "    %0 = input \"x\" : f32[1, 1, 9223372036854775807, 9223372036854775807]\n    %1 = input \"w\" : f32[2, 1, 1, 1]\n    %2 = input \"b\" : f32[2]\n    %3 = conv2d.patch %0, %1, %2 {patch=1} : f32[1, 1, 2]\n    return %3\n",
            "has more than 2^64 patches of 1",
        ),
        neg(
            "gelu",
            "",
            "    %0 = input \"x\" : f8e4m3[3]\n    %1 = gelu %0 {approx=tanh} : f8e4m3[3]\n    return %1\n",
            "operand must be f32, f16 or bf16, got f8e4m3[3]",
        ),
        neg(
            "neg",
            "",
            "    %0 = input \"x\" : u8[3]\n    %1 = neg %0 : u8[3]\n    return %1\n",
            "operand must be f32, f16 or bf16, got u8[3]",
        ),
        neg(
            "clamp",
            "",
            "    %0 = input \"x\" : f32[3]\n    %1 = clamp %0 {min=2, max=1} : f32[3]\n    return %1\n",
            "min 2 is above max 1",
        ),
        neg(
            "clamp",
            "",
            "    %0 = input \"x\" : bool[3]\n    %1 = clamp %0 {min=0} : bool[3]\n    return %1\n",
            "operand must be numeric",
        ),
        neg(
            "where",
            "",
            "    %0 = input \"c\" : i64[3]\n    %1 = input \"a\" : f32[3]\n    %2 = where %0, %1, %1 : f32[3]\n    return %2\n",
            "condition must be bool, got i64[3]",
        ),
        neg(
            "where",
            "",
            "    %0 = input \"c\" : bool[3]\n    %1 = input \"a\" : f32[3]\n    %2 = input \"b\" : bf16[3]\n    %3 = where %0, %1, %2 : f32[3]\n    return %3\n",
            "branch dtypes differ",
        ),
        neg(
            "cast",
            "",
            "    %0 = input \"x\" : f32[2, 3]\n    %1 = cast %0 : bf16[3, 2]\n    return %1\n",
            "result type is bf16[3, 2] but the op produces bf16[2, 3]",
        ),
        neg(
            "reduce",
            "",
            "    %0 = input \"x\" : f32[2, 3, 4]\n    %1 = reduce %0 {kind=sum, axes=[2, 0]} : f32[3]\n    return %1\n",
            "must be strictly increasing and below rank 3",
        ),
        neg(
            "reduce",
            "",
            "    %0 = input \"x\" : i64[2, 3]\n    %1 = reduce %0 {kind=mean, axes=[1]} : i64[2]\n    return %1\n",
            "cannot reduce i64[2, 3]",
        ),
        neg(
            "reduce",
            "",
            "    %0 = input \"x\" : f32[2, 3]\n    %1 = reduce %0 {kind=max, axes=[1]} : f32[2, 1]\n    return %1\n",
            "result type is f32[2, 1] but the op produces f32[2]",
        ),
        neg(
            "softmax",
            "",
            "    %0 = input \"x\" : f32[2, 3]\n    %1 = softmax %0 {axis=2} : f32[2, 3]\n    return %1\n",
            "axis 2 out of range for f32[2, 3]",
        ),
        neg(
            "softmax",
            "",
            "    %0 = input \"x\" : i32[2, 3]\n    %1 = softmax %0 {axis=1} : i32[2, 3]\n    return %1\n",
            "operand must be f32, f16 or bf16",
        ),
        neg(
            "rms_norm",
            "",
            "    %0 = input \"x\" : f32[2, 6]\n    %1 = input \"w\" : f32[6]\n    %2 = rms_norm %0, %1 {eps=1e-5, groups=4} : f32[2, 6]\n    return %2\n",
            "groups 4 must divide the normalized dim 6",
        ),
        neg(
            "rms_norm",
            "",
            "    %0 = input \"x\" : f32[2, 6]\n    %1 = input \"w\" : f32[6]\n    %2 = input \"z\" : f32[6]\n    %3 = rms_norm %0, %1, %2 {eps=1e-5, groups=2} : f32[2, 6]\n    return %3\n",
            "gate must be [2, 6], got f32[6]",
        ),
        neg(
            "rms_norm",
            "",
            "    %0 = input \"x\" : f32[2, 6]\n    %1 = input \"w\" : f32[3]\n    %2 = rms_norm %0, %1 {eps=1e-5} : f32[2, 6]\n    return %2\n",
            "weight must be [6], got f32[3]",
        ),
        neg(
            "rms_norm",
            "",
            "    %0 = input \"x\" : f32[2, 6]\n    %1 = input \"w\" : f32[6]\n    %2 = rms_norm %0, %1 {eps=-1.0} : f32[2, 6]\n    return %2\n",
            "eps must be finite and >= 0",
        ),
        neg(
            "layer_norm",
            "",
            "    %0 = input \"x\" : f32[2, 6]\n    %1 = input \"w\" : f32[6]\n    %2 = input \"b\" : f32[2, 6]\n    %3 = layer_norm %0, %1, %2 {eps=1e-5} : f32[2, 6]\n    return %3\n",
            "bias must be [6], got f32[2, 6]",
        ),
        neg(
            "reshape",
            "  symbol S <= 16\n",
            "    %0 = input \"x\" : f32[S, 6]\n    %1 = reshape %0 : f32[S, 4]\n    return %1\n",
            "cannot reshape [S, 6] to [S, 4]: element counts differ",
        ),
        neg(
            // Same count for one binding of S only: not a valid reshape.
            "reshape",
            "  symbol S <= 16\n",
            "    %0 = input \"x\" : f32[S, 2]\n    %1 = reshape %0 : f32[4]\n    return %1\n",
            "element counts differ",
        ),
        neg(
            "transpose",
            "",
            "    %0 = input \"x\" : f32[2, 3, 4]\n    %1 = transpose %0 {perm=[0, 1, 1]} : f32[2, 3, 3]\n    return %1\n",
            "perm [0, 1, 1] is not a permutation of 0..3",
        ),
        neg(
            "transpose",
            "",
            "    %0 = input \"x\" : f32[2, 3]\n    %1 = transpose %0 {perm=[1, 0, 2]} : f32[3, 2]\n    return %1\n",
            "is not a permutation of 0..2",
        ),
        neg(
            "slice",
            "",
            "    %0 = input \"x\" : f32[2, 8]\n    %1 = slice %0 {axis=1, start=6, end=10} : f32[2, 4]\n    return %1\n",
            "slice [6:10] of dim 8 is empty, out of range, or not static",
        ),
        neg(
            "slice",
            "  symbol S <= 16\n",
            "    %0 = input \"x\" : f32[S, 8]\n    %1 = slice %0 {axis=0, start=1} : f32[S, 8]\n    return %1\n",
            "of dim S is empty, out of range, or not static",
        ),
        neg(
            "split",
            "",
            "    %0 = input \"x\" : f32[2, 8]\n    %1:2 = split %0 {axis=1, sizes=[3, 4]} : f32[2, 3], f32[2, 4]\n    return %1#0\n",
            "sizes [3, 4] must sum to 8",
        ),
        neg(
            "split",
            "  symbol S <= 16\n",
            "    %0 = input \"x\" : f32[S, 8]\n    %1:2 = split %0 {axis=0, sizes=[1, 1]} : f32[1, 8], f32[1, 8]\n    return %1#0\n",
            "split axis must be a constant dimension, got S",
        ),
        neg(
            // Sizes whose sum overflows u64 must be an error, not a panic.
            "split",
            "",
            "    %0 = input \"x\" : f32[2, 8]\n    %1:3 = split %0 {axis=1, sizes=[9223372036854775807, 9223372036854775807, 10]} : f32[2, 9223372036854775807], f32[2, 9223372036854775807], f32[2, 10]\n    return %1#0\n",
            "must sum to 8",
        ),
        neg(
            "concat",
            "",
            "    %0 = input \"a\" : f32[2, 3]\n    %1 = input \"b\" : f32[4, 3]\n    %2 = concat %0, %1 {axis=1} : f32[2, 6]\n    return %2\n",
            "operand 1 is f32[4, 3], operand 0 is f32[2, 3]",
        ),
        neg(
            "concat",
            "",
            "    %0 = input \"a\" : f32[2, 3]\n    %1 = input \"b\" : i64[2, 3]\n    %2 = concat %0, %1 {axis=0} : f32[4, 3]\n    return %2\n",
            "operand 1 is i64[2, 3]",
        ),
        neg(
            // Axis lengths from text may add up past u64: an error, not an overflow panic.
            "concat",
            "",
            "    %0 = input \"a\" : f32[9223372036854775807, 1]\n    %1 = concat %0, %0, %0 {axis=0} : f32[1, 1]\n    return %1\n",
            "the concatenated axis 0 is longer than 2^64 - 1",
        ),
        neg(
            "broadcast",
            "",
            "    %0 = input \"x\" : f32[3, 2]\n    %1 = broadcast %0 : f32[4, 3, 3]\n    return %1\n",
            "do not broadcast",
        ),
        neg(
            "broadcast",
            "",
            "    %0 = input \"x\" : f32[3, 2]\n    %1 = broadcast %0 : f32[1, 2]\n    return %1\n",
            "cannot broadcast [3, 2] to [1, 2]",
        ),
        neg(
            "gather",
            "",
            "    %0 = input \"t\" : f32[8, 4]\n    %1 = input \"i\" : f32[3]\n    %2 = gather %0, %1 : f32[3, 4]\n    return %2\n",
            "indices must be integers, got f32[3]",
        ),
        neg(
            "gather",
            "",
            "    %0 = input \"t\" : f32[8, 4]\n    %1 = input \"i\" : i64[3]\n    %2 = gather %0, %1 : f32[3, 8]\n    return %2\n",
            "but the op produces f32[3, 4]",
        ),
        neg(
            "pixel_shuffle",
            "",
            "    %0 = input \"x\" : f32[1, 6, 4, 2]\n    %1 = pixel_shuffle %0 {factor=4} : f32[1, 1, 1, 32]\n    return %1\n",
            "factor 4 must divide height 6 and width 4",
        ),
        neg(
            "pixel_shuffle",
            "",
            "    %0 = input \"x\" : f32[4, 4, 2]\n    %1 = pixel_shuffle %0 {factor=2} : f32[2, 2, 8]\n    return %1\n",
            "x must have rank 4",
        ),
        neg(
            "pixel_shuffle",
            "",
            "    %0 = input \"x\" : f32[1, 2, 2, 9223372036854775807]\n    %1 = pixel_shuffle %0 {factor=2} : f32[1, 1, 1, 4]\n    return %1\n",
            "9223372036854775807 channels times factor 2 squared is more than 2^64 - 1",
        ),
        neg(
            "scatter_cache",
            "  symbol S <= 16\n",
            "    %0 = input \"c\" : f32[2, 16, 4]\n    %1 = input \"n\" : f32[2, S, 4]\n    %2 = input \"p\" : i64[]\n    %3 = scatter_cache %0, %1, %2 : f32[2, 16, 4]\n    return %3\n",
            "past must be i64[2], got i64[]",
        ),
        neg(
            "scatter_cache",
            "  symbol S <= 16\n",
            "    %0 = input \"c\" : f32[2, 16, 4]\n    %1 = input \"n\" : bf16[2, S, 4]\n    %2 = input \"p\" : i64[2]\n    %3 = scatter_cache %0, %1, %2 : f32[2, 16, 4]\n    return %3\n",
            "new rows bf16[2, S, 4] do not fit cache f32[2, 16, 4]",
        ),
        neg(
            "amax",
            "",
            "    %0 = input \"x\" : i32[4]\n    %1 = amax %0 : f32[]\n    return %1\n",
            "operand must be f32, f16 or bf16",
        ),
        neg(
            "amax",
            "",
            "    %0 = input \"x\" : f32[4]\n    %1 = amax %0 : f32[1]\n    return %1\n",
            "result type is f32[1] but the op produces f32[]",
        ),
        neg(
            "quantize",
            "",
            "    %0 = input \"x\" : f32[2, 4]\n    %1 = input \"s\" : f32[]\n    %2 = quantize %0, %1 : bf16[2, 4]\n    return %2\n",
            "quantize produces fp8, not bf16",
        ),
        neg(
            "quantize",
            "",
            "    %0 = input \"x\" : f32[2, 4]\n    %1 = input \"s\" : f32[2]\n    %2 = quantize %0, %1 : f8e4m3[2, 4]\n    return %2\n",
            "scale must be f32[] or f32[4], got f32[2]",
        ),
        neg(
            "dequantize",
            "",
            "    %0 = input \"q\" : bf16[2, 4]\n    %1 = input \"s\" : f32[]\n    %2 = dequantize %0, %1 : f32[2, 4]\n    return %2\n",
            "operand must be fp8, got bf16[2, 4]",
        ),
        neg(
            "dequantize",
            "",
            "    %0 = input \"q\" : f8e4m3[2, 4]\n    %1 = input \"s\" : f32[]\n    %2 = dequantize %0, %1 : f8e5m2[2, 4]\n    return %2\n",
            "dequantize produces f32, f16 or bf16, not f8e5m2",
        ),
        neg(
            "fusion",
            "",
            "    %0 = input \"x\" : f32[4]\n    %1 = fusion %0 {strategy=elementwise} {\n      %0 = input \"a\" : bf16[4]\n      %1 = exp %0 : bf16[4]\n      return %1\n    } : bf16[4]\n    return %1\n",
            "operand 0 is f32[4], body input \"a\" differs",
        ),
        neg(
            "fusion",
            "",
            "    %0 = input \"x\" : f32[4]\n    %1 = fusion %0 {strategy=elementwise} {\n      %0 = input \"a\" : f32[4]\n      %1 = exp %0 : f32[4]\n      return %1\n    } : f32[2, 2]\n    return %1\n",
            "result type is f32[2, 2] but the op produces f32[4]",
        ),
        neg(
            "fusion",
            "",
            "    %0 = input \"x\" : f32[4]\n    %1 = fusion %0 {strategy=elementwise} {\n      %0 = input \"a\" : f32[4]\n      return %0\n    } : f32[4]\n    %2 = input \"y\" : f32[4]\n    %3 = fusion %0, %2 {strategy=elementwise} {\n      %0 = input \"a\" : f32[4]\n      return %0\n    } : f32[4]\n    return %3\n",
            "body takes 1 inputs, fusion has 2 operands",
        ),
        neg(
            "sample",
            "",
            "    %0 = input \"l\" : f32[2, 8]\n    %1 = input \"o\" : i64[]\n    %2 = sample %0, %1 {seed=1, temperature=1.0, top_p=1.5} : i64[2]\n    return %2\n",
            "top_p must be in (0, 1]",
        ),
        neg(
            "sample",
            "",
            "    %0 = input \"l\" : f32[2, 8]\n    %1 = input \"o\" : i64[]\n    %2 = sample %0, %1 {seed=1, temperature=-1.0} : i64[2]\n    return %2\n",
            "temperature must be >= 0",
        ),
        neg(
            "sample",
            "",
            "    %0 = input \"l\" : f32[8]\n    %1 = input \"o\" : i64[]\n    %2 = sample %0, %1 {seed=1} : i64[1]\n    return %2\n",
            "logits must have rank 2",
        ),
        neg(
            "sample",
            "",
            "    %0 = input \"l\" : f32[2, 8]\n    %1 = input \"o\" : i64[1]\n    %2 = sample %0, %1 {seed=1, top_k=0} : i64[2]\n    return %2\n",
            "offset must be i64[], got i64[1]",
        ),
        // Results undefined over a statically empty axis (a sum over nothing is 0: allowed).
        neg(
            "reduce",
            "",
            "    %0 = input \"x\" : f32[2, 0]\n    %1 = reduce %0 {kind=max, axes=[1]} : f32[2]\n    return %1\n",
            "max over axis 1 of f32[2, 0] is empty",
        ),
        neg(
            "reduce",
            "",
            "    %0 = input \"x\" : f32[0, 3]\n    %1 = reduce %0 {kind=mean, axes=[0, 1]} : f32[]\n    return %1\n",
            "mean over axis 0 of f32[0, 3] is empty",
        ),
        neg(
            "reduce",
            "",
            "    %0 = input \"x\" : i32[3, 0]\n    %1 = reduce %0 {kind=max, axes=[1], keep_dims} : i32[3, 1]\n    return %1\n",
            "is empty: the result is undefined over no elements",
        ),
        neg(
            "softmax",
            "",
            "    %0 = input \"x\" : f32[2, 0]\n    %1 = softmax %0 {axis=1} : f32[2, 0]\n    return %1\n",
            "softmax axis 1 of f32[2, 0] is empty",
        ),
        neg(
            "rms_norm",
            "",
            "    %0 = input \"x\" : f32[2, 0]\n    %1 = input \"w\" : f32[0]\n    %2 = rms_norm %0, %1 {eps=1e-5} : f32[2, 0]\n    return %2\n",
            "the normalized last dim of f32[2, 0] is empty",
        ),
        neg(
            "layer_norm",
            "",
            "    %0 = input \"x\" : f32[2, 0]\n    %1 = input \"w\" : f32[0]\n    %2 = input \"b\" : f32[0]\n    %3 = layer_norm %0, %1, %2 {eps=1e-5} : f32[2, 0]\n    return %3\n",
            "the normalized last dim of f32[2, 0] is empty",
        ),
        neg(
            "sample",
            "",
            "    %0 = input \"l\" : f32[2, 0]\n    %1 = input \"o\" : i64[]\n    %2 = sample %0, %1 {seed=1} : i64[2]\n    return %2\n",
            "the vocabulary axis of f32[2, 0] is empty",
        ),
        neg(
            "attention",
            "",
            "    %0 = input \"q\" : f32[1, 2, 2, 4]\n    %1 = input \"k\" : f32[1, 0, 1, 4]\n    %2 = input \"v\" : f32[1, 0, 1, 4]\n    %3 = input \"len\" : i64[1]\n    %4 = attention %0, %1, %2, %3 {mask=bidirectional, scale=0.5} : f32[1, 2, 2, 4]\n    return %4\n",
            "the key axis of k is empty",
        ),
    ];
    for u in ["exp", "log", "sqrt", "rsqrt", "silu", "relu", "square", "sigmoid", "softplus", "tanh"] {
        c.push(neg(
            u,
            "",
            &format!("    %0 = input \"x\" : i64[3]\n    %1 = {u} %0 : i64[3]\n    return %1\n"),
            "operand must be f32, f16 or bf16, got i64[3]",
        ));
    }
    for b in ["add", "sub", "mul", "div", "max", "min"] {
        c.push(neg(
            b,
            "",
            &format!("    %0 = input \"a\" : f32[2, 3]\n    %1 = input \"b\" : bf16[2, 3]\n    %2 = {b} %0, %1 : f32[2, 3]\n    return %2\n"),
            "operand dtypes differ: f32[2, 3] vs bf16[2, 3]",
        ));
        c.push(neg(
            b,
            "",
            &format!("    %0 = input \"a\" : f32[2, 3]\n    %1 = input \"b\" : f32[2]\n    %2 = {b} %0, %1 : f32[2, 3]\n    return %2\n"),
            "shapes [2, 3] and [2] do not broadcast",
        ));
    }
    c.push(neg(
        "div",
        "",
        "    %0 = input \"a\" : i64[3]\n    %1 = div %0, %0 : i64[3]\n    return %1\n",
        "div is not defined on i64",
    ));
    c
}

#[test]
fn every_case_parses_and_fails_verification_at_its_op() {
    for case in cases() {
        let m = parse(&case.src);
        let errs = match verify(&m) {
            Ok(()) => panic!("`{}`: module verifies, expected {:?}\n{}", case.op, case.want, case.src),
            Err(e) => e,
        };
        let hit = errs.0.iter().any(|e| e.op == Some(case.op) && e.message.contains(case.want));
        assert!(hit, "`{}`: no error at the op containing {:?}; got:\n{errs}\n{}", case.op, case.want, case.src);
        // The interpreter refuses what the verifier rejects, without panicking.
        let r = lathe_interp::run(&m, "main", &Default::default(), &lathe_interp::SyntheticOnly);
        assert!(matches!(r, Err(lathe_interp::InterpError::Invalid(_))), "`{}`: interpreter gave {r:?}", case.op);
    }
}

#[test]
fn verifier_errors_name_the_function_node_and_op() {
    let src = module(
        "",
        "    %0 = input \"a\" : f32[2, 8]\n    %1 = input \"b\" : f32[4, 6]\n    %2 = matmul %0, %1 : f32[2, 6]\n    %3 = softmax %2 {axis=5} : f32[2, 6]\n    return %3\n",
    );
    let errs = verify(&parse(&src)).expect_err("two ill-typed nodes");
    // Errors accumulate: the bad matmul does not hide the bad softmax after it.
    assert_eq!(errs.0.len(), 2, "{errs}");
    // Each names the printed value and shows the node as the printer writes it.
    assert_eq!(
        errs.0[0].to_string(),
        "in @main, %2 (`%2 = matmul %0, %1 : f32[2, 6]`): contraction dims differ: 8 vs 4"
    );
    assert_eq!(
        errs.0[1].to_string(),
        "in @main, %3 (`%3 = softmax %2 {axis=5} : f32[2, 6]`): axis 5 out of range for f32[2, 6]"
    );
}

#[test]
fn verifier_locates_errors_inside_fusion_bodies() {
    let src = module(
        "",
        "    %0 = input \"x\" : f32[4]\n    %1 = fusion %0 {strategy=elementwise} {\n      %0 = input \"a\" : f32[4]\n      %1 = exp %0 : f32[3]\n      return %1\n    } : f32[3]\n    return %1\n",
    );
    let errs = verify(&parse(&src)).expect_err("ill-typed body");
    let e = &errs.0[0];
    assert_eq!(e.op, Some("exp"));
    assert_eq!(e.loc.path.iter().map(|n| n.index()).collect::<Vec<_>>(), [1, 1], "{errs}");
    assert!(e.message.contains("result type is f32[3] but the op produces f32[4]"), "{errs}");
    assert_eq!(
        e.to_string(),
        "in @main, %1 › %1 (`%1 = exp %0 : f32[3]`): result type is f32[3] but the op produces f32[4]"
    );
}

/// `(source, line, column, message substring)` of texts that must not parse.
fn parse_negatives() -> Vec<(&'static str, usize, usize, &'static str)> {
    vec![
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f32[4]\n    %1 = frobnicate %0 : f32[4]\n    return %1\n  }\n}\n",
            4,
            10,
            "unknown op `frobnicate`",
        ),
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f32[4]\n    %1 = softmax %0 {axis=0, bogus=1} : f32[4]\n    return %1\n  }\n}\n",
            4,
            30,
            "unknown attribute `bogus` for `softmax`",
        ),
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f32[4]\n    %1 = softmax %0 : f32[4]\n    return %1\n  }\n}\n",
            4,
            10,
            "missing attribute `axis`",
        ),
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f32[4]\n    %1 = layer_norm %0, %0, %0 {eps=1e-5, groups=2} : f32[4]\n    return %1\n  }\n}\n",
            4,
            43,
            "unknown attribute `groups` for `layer_norm`",
        ),
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f32[4]\n    %1 = gelu %0 {approx=fast} : f32[4]\n    return %1\n  }\n}\n",
            4,
            19,
            "unknown gelu approx `fast`",
        ),
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f32[4]\n    %1 = reduce %0 {kind=prod, axes=[0]} : f32[]\n    return %1\n  }\n}\n",
            4,
            21,
            "unknown reduce kind `prod`",
        ),
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f32[4]\n    %1 = matmul %0, %0 {transpose_b=1} : f32[4]\n    return %1\n  }\n}\n",
            4,
            25,
            "attribute `transpose_b` is a flag",
        ),
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f32[S, 4]\n    return %0\n  }\n}\n",
            3,
            26,
            "unknown symbol `S`",
        ),
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f33[4]\n    return %0\n  }\n}\n",
            3,
            22,
            "unknown dtype `f33`",
        ),
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f32[4]\n    %1 = exp %2 : f32[4]\n    return %1\n  }\n}\n",
            4,
            14,
            "use of undefined value `%2`",
        ),
        (
            "module @p {\n  func @main {\n    %0 = weight @w : f32[4]\n    return %0\n  }\n}\n",
            3,
            17,
            "unknown weight `@w`",
        ),
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f32[4]\n    %1:2 = exp %0 : f32[4]\n    return %1\n  }\n}\n",
            4,
            5,
            "2 result name(s) but 1 result type(s)",
        ),
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f32[4]\n    %1 = attention %0, %0, %0, %0 {mask=diagonal, scale=1.0} : f32[4]\n    return %1\n  }\n}\n",
            4,
            36,
            "unknown mask `diagonal`",
        ),
        (
            "module @p {\n  symbol S <= 4294967297\n}\n",
            2,
            15,
            "symbol `S` has bound 4294967297, above the limit of 4294967296",
        ),
        (
            "module @p {\n  func @main {\n    %0 = input \"x\" : f32[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n    return %0\n  }\n}\n",
            3,
            74,
            "a type has at most 16 dimensions",
        ),
    ]
}

#[test]
fn parse_errors_carry_line_column_and_message() {
    for (src, line, col, want) in parse_negatives() {
        let e = parse_module(src).expect_err(src);
        assert_eq!((e.line, e.col), (line, col), "{e}\n{src}");
        assert!(e.message.contains(want), "{e} lacks {want:?}\n{src}");
        assert!(e.to_string().starts_with(&format!("{line}:{col}: ")), "{e}");
    }
}
