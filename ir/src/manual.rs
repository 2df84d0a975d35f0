//! The user's IR manual: one entry per op text name, printed by `lathe ops`.
//!
//! Kept beside the op enum so that a new op without an entry fails the test
//! `every_op_has_a_manual_entry`.

/// One manual entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpDoc {
    /// Text name.
    pub name: &'static str,
    /// Family heading.
    pub family: &'static str,
    /// Text syntax.
    pub syntax: &'static str,
    /// Operands and their shapes.
    pub operands: &'static str,
    /// Attributes (`-` when none).
    pub attributes: &'static str,
    /// One-line semantics.
    pub semantics: &'static str,
}

macro_rules! doc {
    ($name:literal, $fam:literal, $syn:literal, $opnds:expr, $attrs:literal, $sem:literal) => {
        OpDoc { name: $name, family: $fam, syntax: $syn, operands: $opnds, attributes: $attrs, semantics: $sem }
    };
}

const UNARY_OPERANDS: &str = "x: f32|f16|bf16 (neg also i64|i32|i8)";

/// Every op, grouped by family, in manual order.
pub const MANUAL: &[OpDoc] = &[
    doc!("input", "data", "%r = input \"name\" : T", "-", "-", "a runtime argument; symbols in T are bound from its shape"),
    doc!("weight", "data", "%r = weight @name : T", "-", "-", "reads a module weight (T = its declared type)"),
    doc!("constant", "data", "%r = constant 1.5 : T | constant [1, 2, 3] : T", "-", "-", "a splat or dense constant of constant shape, rounded to T; values must fit T (integers in range, bool 0 or 1, floats that do not overflow T)"),
    doc!("iota", "data", "%r = iota {axis=a} : T", "-", "axis", "out[i..] = index along axis, as T's dtype (an integer dtype must hold the largest index)"),
    doc!("matmul", "linear", "%r = matmul %a, %b {transpose_a, transpose_b} : T", "a [...,M,K], b [...,K,N] (or rank-2 b shared by all batches)", "transpose_a, transpose_b", "batched matrix product, f32 accumulation, rounded to T"),
    doc!("scaled_matmul", "linear", "%r = scaled_matmul %a, %b, %sa, %sb {transpose_b} : T", "a, b fp8; sa f32[]; sb f32[] or f32[N]", "transpose_a, transpose_b", "(a*sa) @ (b*sb) with dequant scales, f32 accumulation"),
    doc!("attention", "attention", "%o = attention %q, %k, %v, %kv_len {mask=causal, scale=s} : T", "q [B,S,Hq,D], k [B,T,Hkv,D] (T >= 1), v [B,T,Hkv,Dv], kv_len i64[B]", "mask (causal|bidirectional|cross), scale", "softmax(scale*q.k) v over visible keys; GQA head h -> kv h/(Hq/Hkv); causal: key j <= kv_len-S+i; q, k arrive rotated; reads caches, never writes"),
    doc!("rope", "attention", "%r = rope %x, %pos {theta=t, scale=f} : T", "x [B,S,H,D] (D even), pos i64[B,S]", "theta, scale (default 1)", "rotate-half rotary embedding at positions pos/scale with frequencies theta^(-2i/D), f32 inside"),
    doc!("scan.ssd", "scan", "%y:2 = scan.ssd %x, %dt, %A, %B, %C, %state0 {chunk=128} : T, S", "x [B,S,H,P], dt [B,S,H] (>0), A [H] (<0), B,C [B,S,G,N], state0 [B,H,P,N]", "chunk (lowering hint)", "Mamba-2 SSD: state_t = exp(dt*A)*state + dt*x(x)B, y_t = state_t.C; head h uses group h/(H/G); returns y and the final state"),
    doc!("conv1d.causal", "convolution", "%y:2 = conv1d.causal %x, %w, %b, %state0 : T, S", "x [B,S,C], w [C,W], b [C], state0 [B,W-1,C]", "-", "depthwise causal conv over concat(state0, x); returns y and the last W-1 inputs"),
    doc!("conv2d.patch", "convolution", "%r = conv2d.patch %x, %w, %b {patch=p} : T", "x [B,C,H,W], w [O,C,p,p], b [O]", "patch", "ViT patchify (stride = kernel = p) -> [B, H/p*W/p, O]"),
    doc!("neg", "elementwise", "%r = neg %x : T", UNARY_OPERANDS, "-", "-x"),
    doc!("exp", "elementwise", "%r = exp %x : T", UNARY_OPERANDS, "-", "e^x"),
    doc!("log", "elementwise", "%r = log %x : T", UNARY_OPERANDS, "-", "ln x"),
    doc!("sqrt", "elementwise", "%r = sqrt %x : T", UNARY_OPERANDS, "-", "sqrt x"),
    doc!("rsqrt", "elementwise", "%r = rsqrt %x : T", UNARY_OPERANDS, "-", "1/sqrt x"),
    doc!("silu", "elementwise", "%r = silu %x : T", UNARY_OPERANDS, "-", "x*sigmoid(x)"),
    doc!("gelu", "elementwise", "%r = gelu %x {approx=erf|tanh} : T", UNARY_OPERANDS, "approx (default erf)", "0.5x(1+erf(x/sqrt2)), or the tanh approximation"),
    doc!("relu", "elementwise", "%r = relu %x : T", UNARY_OPERANDS, "-", "max(x, 0)"),
    doc!("square", "elementwise", "%r = square %x : T", UNARY_OPERANDS, "-", "x*x (relu then square is Nemotron-H's relu2)"),
    doc!("sigmoid", "elementwise", "%r = sigmoid %x : T", UNARY_OPERANDS, "-", "1/(1+e^-x)"),
    doc!("softplus", "elementwise", "%r = softplus %x : T", UNARY_OPERANDS, "-", "ln(1+e^x), x itself above 20"),
    doc!("tanh", "elementwise", "%r = tanh %x : T", UNARY_OPERANDS, "-", "tanh x"),
    doc!("add", "elementwise", "%r = add %a, %b : T", "a, b: same dtype, numpy broadcasting", "-", "a + b"),
    doc!("sub", "elementwise", "%r = sub %a, %b : T", "a, b: same dtype, numpy broadcasting", "-", "a - b"),
    doc!("mul", "elementwise", "%r = mul %a, %b : T", "a, b: same dtype, numpy broadcasting", "-", "a * b"),
    doc!("div", "elementwise", "%r = div %a, %b : T", "a, b: same float dtype, numpy broadcasting", "-", "a / b"),
    doc!("max", "elementwise", "%r = max %a, %b : T", "a, b: same dtype, numpy broadcasting", "-", "max(a, b), NaN if either is NaN"),
    doc!("min", "elementwise", "%r = min %a, %b : T", "a, b: same dtype, numpy broadcasting", "-", "min(a, b), NaN if either is NaN"),
    doc!("clamp", "elementwise", "%r = clamp %x {min=a, max=b} : T", "x: numeric", "min, max (each optional)", "min(max(x, a), b)"),
    doc!("where", "elementwise", "%r = where %c, %a, %b : T", "c: bool; a, b: same dtype; broadcasting", "-", "c ? a : b"),
    doc!("cast", "elementwise", "%r = cast %x : T", "x: any dtype", "-", "convert to T's dtype: RNE, fp8 saturating, float->int truncating and saturating"),
    doc!("reduce", "reduction", "%r = reduce %x {kind=sum|max|mean, axes=[..], keep_dims} : T", "x: numeric", "kind, axes, keep_dims", "reduce the listed axes in f32; max and mean need non-empty axes (a sum over none is 0)"),
    doc!("softmax", "reduction", "%r = softmax %x {axis=a} : T", "x: float, the axis non-empty", "axis", "stable softmax along axis"),
    doc!("rms_norm", "reduction", "%r = rms_norm %x, %w[, %z] {eps=e, groups=g} : T", "x [...,D] (D >= 1), w [D], z (gate) like x", "eps, groups (default 1)", "per group of D/g: x/sqrt(mean(x^2)+e)*w; with z, x*silu(z) first (Mamba-2 gated norm)"),
    doc!("layer_norm", "reduction", "%r = layer_norm %x, %w, %b {eps=e} : T", "x [...,D] (D >= 1), w [D], b [D]", "eps", "(x-mean)/sqrt(var+e)*w + b"),
    doc!("reshape", "shape", "%r = reshape %x : T", "x: any", "-", "same elements, row-major, shape of T"),
    doc!("transpose", "shape", "%r = transpose %x {perm=[..]} : T", "x: any", "perm", "out.shape[i] = x.shape[perm[i]]"),
    doc!("slice", "shape", "%r = slice %x {axis=a, start=s[, end=e]} : T", "x: any", "axis, start, end (negative: from the end)", "rows [s, e) of one axis"),
    doc!("split", "shape", "%r:n = split %x {axis=a, sizes=[..]} : T1, ..., Tn", "x: any", "axis, sizes", "consecutive pieces of a constant axis"),
    doc!("concat", "shape", "%r = concat %a, %b, ... {axis=a} : T", "operands: same dtype and rank", "axis", "join along axis"),
    doc!("broadcast", "shape", "%r = broadcast %x : T", "x: any", "-", "numpy broadcasting to T's shape"),
    doc!("gather", "shape", "%r = gather %table, %idx : T", "table [V,...], idx: integer [...]", "-", "table rows at idx (embedding lookup); an index outside [0,V) is an error"),
    doc!("pixel_shuffle", "shape", "%r = pixel_shuffle %x {factor=r} : T", "x [B,H,W,C]", "factor", "-> [B,H/r,W/r,C*r*r], out[b,i,j,(di*r+dj)*C+c] = x[b,r*i+di,r*j+dj,c] (InternVL v2)"),
    doc!("scatter_cache", "shape", "%c = scatter_cache %cache, %new, %past : T", "cache [B,T,...], new [B,S,...], past i64[B]", "-", "the cache with rows [past, past+S) replaced; the only cache writer"),
    doc!("amax", "fp8", "%r = amax %x : f32[]", "x: float", "-", "max |x| over all elements (0 for an empty x)"),
    doc!("quantize", "fp8", "%q = quantize %x, %scale : T", "x: float; scale f32[] or f32[last dim]", "-", "saturating fp8 of x/scale (scale is a dequant scale)"),
    doc!("dequantize", "fp8", "%r = dequantize %q, %scale : T", "q: fp8; scale f32[] or f32[last dim]", "-", "q*scale rounded to T"),
    doc!("fusion", "structure", "%r:n = fusion %a, ... {strategy=s} { body; return ... } : T...", "any; the body's inputs take them in order", "strategy", "runs the body; one fusion group = one kernel launch; bodies nest at most 60 deep"),
    doc!("sample", "sampling", "%t = sample %logits, %offset {seed=s, temperature=t, top_k=k, top_p=p} : i64[B]", "logits [B,V] (V >= 1); offset i64[]", "seed, temperature (0 = argmax), top_k, top_p", "top-k, top-p, then a Philox4x32-10 draw (key seed, counter [offset, row])"),
];

/// The manual as aligned text, one block per op.
pub fn render() -> String {
    let mut out = String::from("lathe IR ops (text syntax; T = result type, e.g. bf16[B, S, 4096])\n");
    let mut family = "";
    for d in MANUAL {
        if d.family != family {
            family = d.family;
            out.push_str(&format!("\n== {family} ==\n"));
        }
        out.push_str(&format!(
            "{}\n    syntax:     {}\n    operands:   {}\n    attributes: {}\n    semantics:  {}\n",
            d.name, d.syntax, d.operands, d.attributes, d.semantics
        ));
    }
    out
}
