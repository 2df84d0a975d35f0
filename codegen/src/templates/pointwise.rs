//! The pointwise emitter: one pointwise graph op (`Op::Unary`, `Op::Binary`, `Op::Clamp`,
//! `Op::Where`, `Op::Cast`) on per-thread values, as kernel IR.
//!
//! Every template needs it: an elementwise kernel runs a chain of these per element, a row
//! reduction or a GEMM epilogue runs them on what it has in registers. [`emit`] appends the
//! instructions of one op to a [`KernelBuilder`] and returns the register holding the result.
//!
//! **Semantics** are the reference interpreter's at compute dtype f32 (`lathe-interp`,
//! `lathe-numerics`), within the project's tolerance; the per-op methods and their measured
//! error bounds are in docs/codegen.md ("Pointwise ops"). Only IEEE f32 arithmetic is used
//! (`add sub mul div sqrt fma min max`, comparisons, selects, integer operations on the bits),
//! never a MUFU approximation, so the simulator and the GPU compute the same bits. Every
//! constant is an f32 immediate.
//!
//! **What a value is.** A float tensor's element is an f32 register, whatever the tensor's
//! dtype (bf16, f16 and fp8 values are exact in f32); a bool tensor's element is a predicate.
//! Integer tensors have no [`Value`]: a group computing on integers is not this emitter's (its
//! caller refuses it), and casts to integer dtypes are refused with [`Unsupported`].
//!
//! **Rounding to the result dtype** is the caller's: `emit` returns the f32 result of the op,
//! and a template rounds it where the IR types say (numerics.md, "Numerics of fusion") with
//! [`round_to`] — the same rounding `cast` uses.

use lathe_ir::ops::{BinaryOp, Clamp, GeluApprox, UnaryOp};
use lathe_ir::{DType, Op};
use lathe_kernel::build::{f32_imm, int_imm, KernelBuilder};
use lathe_kernel::ir::{BinOp, Cmp, Inst, Operand, Reg, Rounding, Ty, UnOp};

/// A per-thread value as the emitter sees it: f32 (the compute type of every float op) or a
/// predicate (a bool tensor's element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// An `f32` register.
    F32(Reg),
    /// A `pred` register.
    Pred(Reg),
    /// An integer, as an `s64` register (an `i32` value kept sign-extended): the templates
    /// compute integer ops themselves; the emitter refuses them.
    I64(Reg),
}

/// An op (or operand) the emitter does not handle, named, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pointwise emitter: {op}: {reason}")]
pub struct Unsupported {
    /// The op as the graph IR names it (`cast to i32` for a cast).
    pub op: String,
    /// Why.
    pub reason: String,
}

/// Emits `op` (a pointwise graph op: `Unary`, `Binary`, `Clamp`, `Where`, `Cast`) on `args`,
/// returning its result: an f32 value before any rounding to the op's result dtype (see
/// [`round_to`]), or a predicate for bool results (`where` on bools, `cast` to bool).
///
/// `Err` names the op for what it does not support: a non-pointwise op, the wrong number of
/// operands, a bool operand where a float is expected (or the reverse), a cast to an integer
/// dtype (integer values are not supported here).
pub fn emit(b: &mut KernelBuilder, op: &Op, args: &[Value]) -> Result<Value, Unsupported> {
    let name = op_name(op);
    let fail = |reason: String| Unsupported { op: name.clone(), reason };
    let arity = match op {
        Op::Unary(_) | Op::Clamp(_) | Op::Cast(_) => 1,
        Op::Binary(_) => 2,
        Op::Where => 3,
        _ => return Err(fail("not a pointwise op".into())),
    };
    if args.len() != arity {
        return Err(fail(format!("takes {arity} operand(s), got {}", args.len())));
    }
    let float = |i: usize| match args[i] {
        Value::F32(r) => Ok(r),
        Value::Pred(_) => Err(fail(format!("operand {i} is a bool; this op computes on floats"))),
        Value::I64(_) => Err(fail(format!("operand {i} is an integer; integer values are not supported"))),
    };
    let e = &mut E { b };
    Ok(match op {
        Op::Unary(u) => Value::F32(unary(e, *u, float(0)?)),
        Op::Binary(o) => Value::F32(binary(e, *o, float(0)?, float(1)?)),
        Op::Clamp(c) => Value::F32(clamp(e, c, float(0)?)),
        Op::Where => {
            let Value::Pred(c) = args[0] else {
                return Err(fail("the condition (operand 0) must be a bool".into()));
            };
            match (args[1], args[2]) {
                (Value::F32(x), Value::F32(y)) => Value::F32(e.b.selp(Ty::F32, x, y, c)),
                (Value::Pred(x), Value::Pred(y)) => {
                    // (c and x) or (not c and y): `selp` has no predicate form.
                    let t = e.b.bin(BinOp::And, Ty::Pred, c, x);
                    let nc = e.b.un(UnOp::Not, Ty::Pred, c);
                    let f = e.b.bin(BinOp::And, Ty::Pred, nc, y);
                    Value::Pred(e.b.bin(BinOp::Or, Ty::Pred, t, f))
                }
                _ => return Err(fail("the branches must both be floats or both bools".into())),
            }
        }
        Op::Cast(to) => cast(e.b, *to, args[0]).map_err(|u| fail(u.reason))?,
        _ => return Err(fail("not a pointwise op".into())),
    })
}

/// `x` (f32) rounded to float dtype `dtype` and widened back to f32, as the interpreter stores
/// a value of that dtype: `f32` as is; `bf16` and `f16` round to nearest even with overflow to
/// ±inf (`cvt.rn.{bf16,f16}.f32`, then `cvt.f32.*`, exact); `f8e4m3` and `f8e5m2` round to
/// nearest even and saturate at ±max, NaN staying NaN (`cvt.rn.satfinite.{e4m3x2,e5m2x2}.f32`,
/// the exact `cvt.rn.f16x2.*` unpack and `cvt.f32.f16`; sm_89 and newer). `Err` for non-float
/// dtypes.
pub fn round_to(b: &mut KernelBuilder, dtype: DType, x: Reg) -> Result<Reg, Unsupported> {
    let narrow = |b: &mut KernelBuilder, ty: Ty| {
        let h = b.cvt(ty, Ty::F32, Some(Rounding::Rn), false, x);
        b.cvt(Ty::F32, ty, None, false, h)
    };
    let fp8 = |b: &mut KernelBuilder, packed: Ty| {
        // Both halves hold x; the low f16 of the unpacked pair is x's fp8 value, exactly.
        let p = b.cvt_pack(packed, x, x);
        let pair = b.cvt_unpack(packed, p);
        let low = b.cvt(Ty::B16, Ty::B32, None, false, pair);
        b.cvt(Ty::F32, Ty::F16, None, false, low)
    };
    Ok(match dtype {
        DType::F32 => x,
        DType::BF16 => narrow(b, Ty::Bf16),
        DType::F16 => narrow(b, Ty::F16),
        DType::F8E4M3 => fp8(b, Ty::E4m3x2),
        DType::F8E5M2 => fp8(b, Ty::E5m2x2),
        other => return Err(Unsupported { op: format!("round to {other}"), reason: "not a float dtype".into() }),
    })
}

/// `cast` of one value: floats and bools to float dtypes and to bool; integer dtypes refused.
fn cast(b: &mut KernelBuilder, to: DType, x: Value) -> Result<Value, Unsupported> {
    let int = || Unsupported {
        op: format!("cast to {to}"),
        reason: "integer values are not supported by the pointwise emitter (it holds f32 and bool values)".into(),
    };
    Ok(match (x, to) {
        (Value::Pred(p), DType::Bool) => Value::Pred(p),
        // A float is true where it is not zero; NaN is true (`!(x == 0)`, the ordered compare
        // being false for NaN).
        (Value::F32(r), DType::Bool) => {
            let zero = b.setp(Cmp::Eq, Ty::F32, r, f32_imm(0.0));
            Value::Pred(b.un(UnOp::Not, Ty::Pred, zero))
        }
        (Value::Pred(p), t) if t.is_float() => {
            let r = b.selp(Ty::F32, f32_imm(1.0), f32_imm(0.0), p);
            Value::F32(round_to(b, t, r)?)
        }
        (Value::F32(r), t) if t.is_float() => Value::F32(round_to(b, t, r)?),
        _ => return Err(int()),
    })
}

/// The op's name for errors: the graph IR's, with the target dtype of a cast.
fn op_name(op: &Op) -> String {
    match op {
        Op::Cast(t) => format!("cast to {t}"),
        Op::Unary(UnaryOp::Gelu(GeluApprox::Erf)) => "gelu {approx=erf}".into(),
        Op::Unary(UnaryOp::Gelu(GeluApprox::Tanh)) => "gelu {approx=tanh}".into(),
        _ => op.name().into(),
    }
}

fn unary(e: &mut E, u: UnaryOp, x: Reg) -> Reg {
    match u {
        UnaryOp::Neg => e.neg(x),
        UnaryOp::Exp => exp_in(e, x),
        UnaryOp::Log => log_in(e, x),
        UnaryOp::Sqrt => e.sqrt(x),
        UnaryOp::Rsqrt => {
            let s = e.sqrt(x);
            e.div(c(1.0), s)
        }
        UnaryOp::Silu => silu_in(e, x),
        UnaryOp::Gelu(GeluApprox::Erf) => gelu_erf_in(e, x),
        UnaryOp::Gelu(GeluApprox::Tanh) => gelu_tanh_in(e, x),
        // `x > 0 || NaN ? x : +0`: `x <= 0` is false for NaN.
        UnaryOp::Relu => {
            let p = e.cmp(Cmp::Le, x, c(0.0));
            e.sel(p, c(0.0), x)
        }
        UnaryOp::Square => e.mul(x, x),
        UnaryOp::Sigmoid => sigmoid_in(e, x),
        UnaryOp::Softplus => softplus_in(e, x),
        UnaryOp::Tanh => tanh_in(e, x),
    }
}

fn binary(e: &mut E, o: BinaryOp, x: Reg, y: Reg) -> Reg {
    let op = match o {
        BinaryOp::Add => BinOp::Add,
        BinaryOp::Sub => BinOp::Sub,
        BinaryOp::Mul => BinOp::Mul,
        BinaryOp::Div => BinOp::Div,
        BinaryOp::Max => BinOp::Max,
        BinaryOp::Min => BinOp::Min,
    };
    let r = e.b.bin(op, Ty::F32, x, y);
    if matches!(o, BinaryOp::Max | BinaryOp::Min) {
        // The interpreter's max and min propagate NaN; PTX's ignore it.
        let px = e.not_nan(x);
        let py = e.not_nan(y);
        let both = e.b.bin(BinOp::And, Ty::Pred, px, py);
        e.sel(both, r, c(f32::NAN))
    } else {
        r
    }
}

/// The interpreter's `clampf`: NaN stays NaN (PTX's `max`/`min` would drop it), else
/// `min(max(x, lo), hi)` with the bounds rounded to f32.
fn clamp(e: &mut E, cl: &Clamp, x: Reg) -> Reg {
    if cl.min.is_none() && cl.max.is_none() {
        return x;
    }
    let mut r = x;
    if let Some(lo) = cl.min {
        r = e.max(r, c(lo as f32));
    }
    if let Some(hi) = cl.max {
        r = e.min(r, c(hi as f32));
    }
    let ok = e.not_nan(x);
    e.sel(ok, r, x)
}

// ---------------------------------------------------------------------------------------------
// Transcendentals. The error bounds quoted are measured (docs/codegen.md, "Pointwise ops").

/// `e^x`, within 1 ulp of the correctly rounded value (see [`exp_mul`]); `+inf` from 88.72284
/// up, `+0` from -103.97 down, subnormal results in between, NaN for NaN.
pub fn exp(b: &mut KernelBuilder, x: Reg) -> Reg {
    exp_in(&mut E { b }, x)
}

/// `ln x`, within 1 ulp: `-inf` at ±0, NaN below 0 and for NaN, `+inf` at `+inf`.
pub fn log(b: &mut KernelBuilder, x: Reg) -> Reg {
    log_in(&mut E { b }, x)
}

/// `tanh x`, within 2 ulps (odd; ±1 from |x| = 9.01 on; NaN for NaN).
pub fn tanh(b: &mut KernelBuilder, x: Reg) -> Reg {
    tanh_in(&mut E { b }, x)
}

/// The interpreter's sigmoid, `1 / (1 + e^-x)` in f32 in that order, with [`exp`].
pub fn sigmoid(b: &mut KernelBuilder, x: Reg) -> Reg {
    sigmoid_in(&mut E { b }, x)
}

/// The interpreter's SiLU, `x / (1 + e^-x)` in f32 in that order, with [`exp`]; `-0` at `-inf`.
pub fn silu(b: &mut KernelBuilder, x: Reg) -> Reg {
    silu_in(&mut E { b }, x)
}

/// Softplus, `x` above 20, else `ln(1 + e^x)` (accurate to 2 ulps).
pub fn softplus(b: &mut KernelBuilder, x: Reg) -> Reg {
    softplus_in(&mut E { b }, x)
}

/// Exact GELU, `x·Φ(x)`, within 2 ulps of the correctly rounded value.
pub fn gelu_erf(b: &mut KernelBuilder, x: Reg) -> Reg {
    gelu_erf_in(&mut E { b }, x)
}

/// The interpreter's tanh GELU, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` in f32 in its
/// order, with [`tanh`].
pub fn gelu_tanh(b: &mut KernelBuilder, x: Reg) -> Reg {
    gelu_tanh_in(&mut E { b }, x)
}

/// `(sin a, cos a)` of an f32 angle, each within 2 ulps for `|a| ≤ 2²⁰` (RoPE's angles: a
/// position times a frequency of at most 1). NaN for NaN and ±inf.
///
/// Method: `k = round(a·2/π)` by the shifter trick; `r = a − k·π/2` with π/2 in three f32
/// parts, each step one fma (the product exact inside it; the first two differences are exact
/// for these `k`), so `r` is accurate to about an ulp even next to a zero of sin or cos; on `|r| ≤ π/4`, `sin r = r + r·z·p(z)` and `cos r = 1 − z/2 + z²·q(z)` with
/// `z = r²` and `p`, `q` the Taylor polynomials to `r¹¹` and `r¹²` (truncation below 2⁻⁴⁰),
/// `1 − z/2` kept in two parts so its rounding error is added back; then the quadrant `k mod 4`
/// swaps and negates.
pub fn sincos(b: &mut KernelBuilder, a: Reg) -> (Reg, Reg) {
    sincos_in(&mut E { b }, a)
}

/// π/2 in three f32 parts, each the nearest f32 to what the parts before leave (from π/2 to
/// 80 digits; f64's π/2 is too short for the third): their sum is within 1.1·10⁻²³ of π/2.
const PIO2: [u32; 3] = [0x3fc9_0fdb, 0xb33b_bd2e, 0xa6f7_2ced];

fn sincos_in(e: &mut E, a: Reg) -> (Reg, Reg) {
    let t = e.fma(a, c(std::f32::consts::FRAC_2_PI), c(SHIFTER));
    let kf = e.sub(t, c(SHIFTER));
    let mut r = a;
    for part in PIO2 {
        r = e.fma(kf, c(-f32::from_bits(part)), r);
    }
    let z = e.mul(r, r);
    // sin r = r + r·z·(−1/3! + z/5! − z²/7! + z³/9! − z⁴/11!)
    let mut p = e.b.mov(Ty::F32, c(-inv_factorial(11)));
    for (n, sign) in [(9, 1.0f32), (7, -1.0), (5, 1.0), (3, -1.0)] {
        p = e.fma(p, z, c(sign * inv_factorial(n)));
    }
    let rz = e.mul(r, z);
    let sin_r = e.fma(rz, p, r);
    // cos r = (1 − z/2) + z²·(1/4! − z/6! + z²/8! − z³/10! + z⁴/12!), `1 − z/2` as w + wl.
    let mut q = e.b.mov(Ty::F32, c(inv_factorial(12)));
    for (n, sign) in [(10, -1.0f32), (8, 1.0), (6, -1.0), (4, 1.0)] {
        q = e.fma(q, z, c(sign * inv_factorial(n)));
    }
    let hz = e.mul(z, c(0.5));
    let w = e.sub(c(1.0), hz);
    let one_minus_w = e.sub(c(1.0), w);
    let wl = e.sub(one_minus_w, hz);
    let z2 = e.mul(z, z);
    let tail = e.fma(z2, q, wl);
    let cos_r = e.add(w, tail);
    // The quadrant: sin a = (sin r, cos r, −sin r, −cos r)[k mod 4], cos a = (cos r, −sin r,
    // −cos r, sin r)[k mod 4].
    let tb = e.bits(t);
    let k = e.int(BinOp::Sub, tb, int_imm(i64::from(SHIFTER.to_bits())));
    let odd = e.int(BinOp::And, k, int_imm(1));
    let odd = e.b.setp(Cmp::Ne, Ty::S32, odd, int_imm(0));
    let sin_neg = e.int(BinOp::And, k, int_imm(2));
    let sin_neg = e.b.setp(Cmp::Ne, Ty::S32, sin_neg, int_imm(0));
    let k1 = e.int(BinOp::Add, k, int_imm(1));
    let cos_neg = e.int(BinOp::And, k1, int_imm(2));
    let cos_neg = e.b.setp(Cmp::Ne, Ty::S32, cos_neg, int_imm(0));
    let s = e.sel(odd, cos_r, sin_r);
    let co = e.sel(odd, sin_r, cos_r);
    let ns = e.neg(s);
    let nc = e.neg(co);
    (e.sel(sin_neg, ns, s), e.sel(cos_neg, nc, co))
}

/// 1.5·2²³: adding it to a value below 2²² in magnitude rounds the value to an integer, held in
/// the low bits of the sum.
const SHIFTER: f32 = 12_582_912.0;

/// `1/n!` rounded to f32.
fn inv_factorial(n: u32) -> f32 {
    let f: f64 = (1..=n).map(f64::from).product();
    (1.0 / f) as f32
}

/// ln 2 split in two: `LN2_HI` the nearest f32, `ln2_lo()` the nearest f32 to the rest.
const LN2_HI: f32 = std::f32::consts::LN_2;
fn ln2_lo() -> f32 {
    (std::f64::consts::LN_2 - f64::from(LN2_HI)) as f32
}

/// `e^(x + xl) = 2^k·(1 + ph + pl)` for `|x| ≤ 104` (`xl`: a small correction to the argument,
/// or none), with `1 + ph + pl` accurate to about 2⁻²⁸ relative. Returns `(ph, pl, k)`, `k` an
/// s32 held in a b32 register.
///
/// Method (Cody–Waite with fused multiply-adds): `k = round(x·log2 e)` by the shifter trick;
/// `r1 = x − k·LN2_HI` is exact (the product is exact inside the fma and the difference fits
/// 24 bits); `r = r1 + (xl − k·ln2_lo)` rounds once, and `rerr`, its rounding error, is kept
/// (Fast2Sum). `e^r − 1 = r + r²·q(r)` with `q` the Taylor polynomial `1/2! + … + r⁶/8!`
/// (|r| ≤ 0.347: truncation below 2⁻³¹ relative), and its last step split into `ph + pl` with a
/// second fma. `pl` also carries `rerr·(1 + ph)`.
fn exp_reduce(e: &mut E, x: Reg, xl: Option<Reg>) -> (Reg, Reg, Reg) {
    let t = e.fma(x, c(std::f32::consts::LOG2_E), c(SHIFTER));
    let kf = e.sub(t, c(SHIFTER));
    let r1 = e.fma(kf, c(-LN2_HI), x);
    let rl = match xl {
        Some(l) => e.fma(kf, c(-ln2_lo()), l),
        None => e.mul(kf, c(-ln2_lo())),
    };
    let r = e.add(r1, rl);
    let d = e.sub(r1, r);
    let rerr = e.add(d, rl);
    let mut q = e.b.mov(Ty::F32, c(inv_factorial(8)));
    for n in (2..=7).rev() {
        q = e.fma(q, r, c(inv_factorial(n)));
    }
    let r2 = e.mul(r, r);
    let ph = e.fma(r2, q, r);
    let rest = e.sub(r, ph);
    let pl0 = e.fma(r2, q, rest);
    let s = e.add(pl0, rerr);
    let pl = e.fma(rerr, ph, s);
    let tb = e.bits(t);
    let k = e.int(BinOp::Sub, tb, int_imm(i64::from(SHIFTER.to_bits())));
    (ph, pl, k)
}

/// `y·e^(x + xl)` as `(hi, lo)`: `hi` the result (within about 0.8 ulp for `y = 1`), `lo` its
/// rounding error, approximately (for callers that keep the result in two parts). `x` is
/// clamped to [-104, 89] first, where `e^x` is already `+0` or `+inf` in f32 (a NaN `x` becomes
/// -104: callers select NaN themselves). `y`: none for 1.
///
/// The scale `2^k` is applied in two factors, `2^k1` (inside: `y·2^k1` exact, then
/// `res = y·2^k1 + (y·2^k1·ph + y·2^k1·pl)`, one rounding in the last add) and `2^k2` (last,
/// exact unless the result is subnormal or overflows), so `k` in [-150, 128] needs no special
/// case and a subnormal result rounds once more at most.
fn exp_mul(e: &mut E, x: Reg, xl: Option<Reg>, y: Option<Reg>) -> (Reg, Reg) {
    let lo_clamped = e.max(x, c(-104.0));
    let xc = e.min(lo_clamped, c(89.0));
    let (ph, pl, k) = exp_reduce(e, xc, xl);
    let k1 = e.int(BinOp::Shr, k, int_imm(1));
    let k2 = e.int(BinOp::Sub, k, k1);
    let s1 = e.pow2(k1);
    let s1y = match y {
        Some(y) => e.mul(y, s1),
        None => s1,
    };
    let u = e.mul(s1y, pl);
    let v = e.fma(s1y, ph, u);
    let res = e.add(s1y, v);
    let d = e.sub(s1y, res);
    let lo = e.add(d, v);
    let s2 = e.pow2(k2);
    (e.mul(res, s2), e.mul(lo, s2))
}

fn exp_in(e: &mut E, x: Reg) -> Reg {
    let (hi, _) = exp_mul(e, x, None, None);
    let ok = e.not_nan(x);
    e.sel(ok, hi, x)
}

/// `ln x` for positive normal finite `x`, plus `eadj` (an f32 integer) times ln 2.
///
/// `x = 2^e·m` with `m` in [√½, √2) (from the bits: `e = (bits(x) − bits(√½)) >> 23`), `f = m − 1`
/// exact, and `ln(1 + f) = f − f²/2 + s·(f²/2 + R)` with `s = f/(2 + f)` and
/// `R = 2s²/3 + 2s⁴/5 + 2s⁶/7 + 2s⁸/9` (the series of `2·atanh s`, |s| ≤ 0.1716: truncation
/// about 2⁻²⁹ relative); the leading `f` is exact, so the rounding errors touch only the small
/// correction. Then `+ e·ln 2` with ln 2 in two parts, the last step one fma.
fn log_core(e: &mut E, x: Reg, eadj: Option<Reg>) -> Reg {
    let xb = e.bits(x);
    let ix = e.int(BinOp::Sub, xb, int_imm(i64::from(std::f32::consts::FRAC_1_SQRT_2.to_bits())));
    let ex = e.int(BinOp::Shr, ix, int_imm(23));
    let eshift = e.int(BinOp::Shl, ex, int_imm(23));
    let m = e.int(BinOp::Sub, xb, eshift);
    let f = e.sub(m, c(1.0));
    let den = e.add(f, c(2.0));
    let s = e.div(f, den);
    let z = e.mul(s, s);
    let coef = |n: u32| c((2.0 / f64::from(2 * n + 1)) as f32);
    let mut r = e.b.mov(Ty::F32, coef(4));
    for n in (1..=3).rev() {
        r = e.fma(r, z, coef(n));
    }
    let rr = e.mul(r, z);
    let half_f = e.mul(f, c(0.5));
    let hfsq = e.mul(half_f, f);
    let ef0 = e.b.cvt(Ty::F32, Ty::S32, Some(Rounding::Rn), false, ex);
    let ef = match eadj {
        Some(a) => e.add(ef0, a),
        None => ef0,
    };
    let w = e.add(hfsq, rr);
    let elo = e.mul(ef, c(ln2_lo()));
    let corr = e.fma(s, w, elo);
    let t1 = e.sub(hfsq, corr);
    let t2 = e.sub(t1, f);
    let nt2 = e.neg(t2);
    e.fma(ef, c(LN2_HI), nt2)
}

fn log_in(e: &mut E, x: Reg) -> Reg {
    // Subnormals (and zeros, replaced below) are scaled by 2^23 into the normal range.
    let sub = e.cmp(Cmp::Lt, x, c(f32::MIN_POSITIVE));
    let scaled = e.mul(x, c(8_388_608.0));
    let xs = e.sel(sub, scaled, x);
    let eadj = e.sel(sub, c(-23.0), c(0.0));
    let y = log_core(e, xs, Some(eadj));
    let is_inf = e.cmp(Cmp::Eq, x, c(f32::INFINITY));
    let y = e.sel(is_inf, c(f32::INFINITY), y);
    let is_zero = e.cmp(Cmp::Eq, x, c(0.0));
    let y = e.sel(is_zero, c(f32::NEG_INFINITY), y);
    // `x >= 0` is false below zero and for NaN.
    let ok = e.cmp(Cmp::Ge, x, c(0.0));
    e.sel(ok, y, c(f32::NAN))
}

/// `tanh x = sign(x)·E/(E + 2)` with `E = e^(2|x|) − 1`, |x| clamped to 9.5 (tanh is 1 in f32
/// from 9.01). `E` is computed without cancellation (`(2^k − 1) + 2^k·(ph + pl)`, exact
/// `2^k − 1` for the k ≤ 28 here), and the quotient is corrected for the rounding of `E + 2`
/// (exact, Fast2Sum) and of the division (the remainder `E − q·d`, exact with an fma):
/// `t = q + (rem − q·derr)/d`. The sign is copied from `x`'s bits, so `tanh(-0) = -0`.
fn tanh_in(e: &mut E, x: Reg) -> Reg {
    let ax = e.abs(x);
    let a = e.min(ax, c(9.5));
    let a2 = e.add(a, a);
    let (ph, pl, k) = exp_reduce(e, a2, None);
    let s = e.pow2(k);
    let spl = e.mul(s, pl);
    let v = e.fma(s, ph, spl);
    let sm1 = e.sub(s, c(1.0));
    let big_e = e.add(sm1, v);
    let d = e.add(big_e, c(2.0));
    let q = e.div(big_e, d);
    let d2 = e.sub(d, c(2.0));
    let derr = e.sub(big_e, d2);
    let nq = e.neg(q);
    let rem = e.fma(nq, d, big_e);
    let corr = e.fma(nq, derr, rem);
    let adj = e.div(corr, d);
    let t = e.add(q, adj);
    let tb = e.bits(t);
    let xb = e.bits(x);
    let sign = e.int(BinOp::And, xb, int_imm(i64::from(0x8000_0000u32)));
    let r = e.int(BinOp::Or, tb, sign);
    let ok = e.not_nan(x);
    e.sel(ok, r, x)
}

fn sigmoid_in(e: &mut E, x: Reg) -> Reg {
    let nx = e.neg(x);
    let ex = exp_in(e, nx);
    let d = e.add(ex, c(1.0));
    e.div(c(1.0), d)
}

fn silu_in(e: &mut E, x: Reg) -> Reg {
    let nx = e.neg(x);
    let ex = exp_in(e, nx);
    let d = e.add(ex, c(1.0));
    let y = e.div(x, d);
    let minus_inf = e.cmp(Cmp::Eq, x, c(f32::NEG_INFINITY));
    e.sel(minus_inf, c(-0.0), y)
}

/// `x > 20 ? x : ln(1 + e^x)` (NaN: NaN). `e^x = y + yl` in two parts ([`exp_mul`]); with
/// `u = 1 + y`, `ln(1 + y + yl) = ln u + ((y − (u − 1)) + yl)/u` to first order, the rounding
/// error of `1 + y` being exact (`u − 1` is exact for `u ≥ 1`).
fn softplus_in(e: &mut E, x: Reg) -> Reg {
    let (y, yl) = exp_mul(e, x, None, None);
    let u = e.add(y, c(1.0));
    let um1 = e.sub(u, c(1.0));
    let err0 = e.sub(y, um1);
    let err = e.add(err0, yl);
    let lu = log_core(e, u, None);
    let corr = e.div(err, u);
    let v = e.add(lu, corr);
    // `x <= 20` is false above 20 and for NaN: both give x.
    let small = e.cmp(Cmp::Le, x, c(20.0));
    e.sel(small, v, x)
}

/// The interpreter's expression, evaluated left to right in f32 (`x³` as `((0.044715·x)·x)·x`).
fn gelu_tanh_in(e: &mut E, x: Reg) -> Reg {
    let a = e.mul(c(0.044_715), x);
    let a = e.mul(a, x);
    let a = e.mul(a, x);
    let s = e.add(x, a);
    let inner = e.mul(c(0.797_884_6), s);
    let t = tanh_in(e, inner);
    let h = e.mul(c(0.5), x);
    let p = e.add(t, c(1.0));
    e.mul(h, p)
}

/// Below this |x|, GELU(erf) uses the Taylor series of Φ; from it on, the tail formula.
const GELU_SMALL: f32 = 0.75;
/// Where the tail formula stops: from |x| = 14.5 on, `x·Φ(x)` is `x` or rounds to `-0`.
const GELU_TAIL_END: f32 = 14.5;
/// The tail's variable: `u = (t − GELU_BETA)/(t + GELU_K)` maps t in [0.75, 14.5] to about
/// [-0.76, 0.76].
const GELU_K: f32 = 1.5;
const GELU_BETA: f32 = 2.445_312_5;
/// `H(u) = t·Q(t)·e^(t²/2)` (Q the upper tail of the standard normal; H goes from 0.225 at
/// t = 0.75 to 1/√(2π) as t grows), as a polynomial of degree 12 in `u`, constant term first:
/// the Chebyshev interpolant at 13 nodes on the image of [0.75, 14.5], computed in f64 and
/// rounded to f32 (relative error 2⁻³¹·³ before rounding; `codegen/tests/ptx/pointwise.rs`
/// recomputes it).
pub const GELU_TAIL: [f32; 13] = [
    f32::from_bits(0x3eb4_1f32), // 3.518005e-1
    f32::from_bits(0x3de7_03bf), // 1.12800114e-1
    f32::from_bits(0xbd9d_6adf), // -7.6864e-2
    f32::from_bits(0x3abc_53fc), // 1.4368291e-3
    f32::from_bits(0x3c22_b4bf), // 9.930789e-3
    f32::from_bits(0x3af4_9458), // 1.8659933e-3
    f32::from_bits(0xbaa8_63f8), // -1.2847176e-3
    f32::from_bits(0xba6d_8816), // -9.061111e-4
    f32::from_bits(0xb8f9_77f8), // -1.1895591e-4
    f32::from_bits(0x3942_0709), // 1.8503903e-4
    f32::from_bits(0x3906_a27e), // 1.2839769e-4
    f32::from_bits(0xb687_9221), // -4.040325e-6
    f32::from_bits(0xb7de_49a6), // -2.6498758e-5
];

/// The parameters of the GELU tail: `(k, β, t0, t1)` of `u = (t − β)/(t + k)` on [t0, t1].
pub const GELU_TAIL_MAP: (f32, f32, f32, f32) = (GELU_K, GELU_BETA, GELU_SMALL, GELU_TAIL_END);

/// `x·Φ(x)`, Φ the standard normal CDF (`0.5·x·(1 + erf(x/√2))`), both pieces computed and one
/// selected:
///
/// - |x| < 0.75: `Φ(x) = 1/2 + x·P(x²)`, `P` the Taylor series of `(Φ(x) − 1/2)/x`,
///   `Σ_{n≤6} (−1)ⁿ vⁿ / (2ⁿ n! (2n+1) √(2π))` (truncation below 2⁻²⁸ relative), and
///   `gelu = x·fma(x, P, 1/2)` (so `gelu(-0) = -0`, and a subnormal x rounds once).
/// - otherwise, with `t = min(|x|, 14.5)`: `t·Q(t) = H(u)·e^(−t²/2)` ([`GELU_TAIL`]), `t²/2`
///   carried in two parts (`t·t` and its fma error) into [`exp_mul`], which multiplies `H(u)` by
///   the exponential with the scale applied last, so a subnormal result rounds once;
///   `gelu = −t·Q(t)` for x < 0 and `x − t·Q(t)` for x > 0 (no cancellation on either side;
///   beyond 14.5, `t·Q(t)` is below 1e-45 and the results round to `-0` and `x`).
///
/// `+inf` gives `+inf`; `-inf` gives NaN, as the interpreter's `0.5·x·(1 + erf)` (`-inf·0`).
fn gelu_erf_in(e: &mut E, x: Reg) -> Reg {
    // The small piece.
    let v = e.mul(x, x);
    let inv_sqrt_2pi = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
    let coef = |n: i32| {
        let fact: f64 = (1..=n).map(f64::from).product();
        let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
        c((sign * inv_sqrt_2pi / (2f64.powi(n) * fact * f64::from(2 * n + 1))) as f32)
    };
    let mut p = e.b.mov(Ty::F32, coef(6));
    for n in (0..6).rev() {
        p = e.fma(p, v, coef(n));
    }
    let phi = e.fma(x, p, c(0.5));
    let small = e.mul(x, phi);
    // The tail.
    let ax = e.abs(x);
    let t = e.min(ax, c(GELU_TAIL_END));
    let d = e.add(t, c(GELU_K));
    let num = e.sub(t, c(GELU_BETA));
    let u = e.div(num, d);
    let mut h = e.b.mov(Ty::F32, c(GELU_TAIL[GELU_TAIL.len() - 1]));
    for &k in GELU_TAIL[..GELU_TAIL.len() - 1].iter().rev() {
        h = e.fma(h, u, c(k));
    }
    let hi = e.mul(t, t);
    let nhi = e.neg(hi);
    let lo = e.fma(t, t, nhi);
    let arg = e.mul(hi, c(-0.5));
    let arg_lo = e.mul(lo, c(-0.5));
    let (tq, _) = exp_mul(e, arg, Some(arg_lo), Some(h));
    let neg_tq = e.neg(tq);
    let pos = e.sub(x, tq);
    let negative = e.cmp(Cmp::Le, x, c(0.0));
    let tail = e.sel(negative, neg_tq, pos);
    let is_small = e.cmp(Cmp::Lt, ax, c(GELU_SMALL));
    let y = e.sel(is_small, small, tail);
    // Specials: +inf stays (the tail gives inf − inf·0), -inf and NaN are NaN.
    let is_inf = e.cmp(Cmp::Eq, x, c(f32::INFINITY));
    let y = e.sel(is_inf, x, y);
    let finite_or_big = e.cmp(Cmp::Gt, x, c(f32::NEG_INFINITY));
    e.sel(finite_or_big, y, c(f32::NAN))
}

// ---------------------------------------------------------------------------------------------

/// An f32 immediate.
fn c(x: f32) -> Operand {
    f32_imm(x)
}

/// The builder with short names for the f32 and integer operations the math above uses.
struct E<'b> {
    b: &'b mut KernelBuilder,
}

impl E<'_> {
    fn add(&mut self, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        self.b.bin(BinOp::Add, Ty::F32, a, b)
    }
    fn sub(&mut self, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        self.b.bin(BinOp::Sub, Ty::F32, a, b)
    }
    fn mul(&mut self, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        self.b.bin(BinOp::Mul, Ty::F32, a, b)
    }
    /// IEEE division (`div.rn.f32`).
    fn div(&mut self, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        self.b.bin(BinOp::Div, Ty::F32, a, b)
    }
    /// PTX `min`: a NaN operand is ignored.
    fn min(&mut self, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        self.b.bin(BinOp::Min, Ty::F32, a, b)
    }
    /// PTX `max`: a NaN operand is ignored.
    fn max(&mut self, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        self.b.bin(BinOp::Max, Ty::F32, a, b)
    }
    fn fma(&mut self, a: impl Into<Operand>, b: impl Into<Operand>, c: impl Into<Operand>) -> Reg {
        self.b.fma(Ty::F32, a, b, c)
    }
    fn neg(&mut self, a: impl Into<Operand>) -> Reg {
        self.b.un(UnOp::Neg, Ty::F32, a)
    }
    fn abs(&mut self, a: impl Into<Operand>) -> Reg {
        self.b.un(UnOp::Abs, Ty::F32, a)
    }
    fn sqrt(&mut self, a: impl Into<Operand>) -> Reg {
        self.b.un(UnOp::Sqrt, Ty::F32, a)
    }
    /// An f32 comparison (ordered: false when either side is NaN).
    fn cmp(&mut self, cmp: Cmp, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        self.b.setp(cmp, Ty::F32, a, b)
    }
    /// `p ? a : b` at f32.
    fn sel(&mut self, p: Reg, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        self.b.selp(Ty::F32, a, b, p)
    }
    /// True where `x` is not NaN.
    fn not_nan(&mut self, x: Reg) -> Reg {
        self.cmp(Cmp::Eq, x, x)
    }
    /// `x`'s bits in a b32 register (read as s32 by [`E::int`], as f32 by the float ops).
    fn bits(&mut self, x: Reg) -> Reg {
        self.b.mov(Ty::B32, x)
    }
    /// An s32 operation into a b32 register (so the result can be read as f32 bits too).
    fn int(&mut self, op: BinOp, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        let dst = self.b.reg(Ty::B32);
        self.b.push(Inst::Binary { op, ty: Ty::S32, dst, a: a.into(), b: b.into() });
        dst
    }
    /// `2^k` for an s32 `k` in [-126, 127]: the exponent field built from `k`.
    fn pow2(&mut self, k: Reg) -> Reg {
        let biased = self.int(BinOp::Add, k, int_imm(127));
        self.int(BinOp::Shl, biased, int_imm(23))
    }
}

#[cfg(test)]
mod tests {
    use lathe_kernel::build::{int_imm, KernelBuilder};
    use lathe_kernel::ir::{Access, Axis, BinOp, Space, Special, Ty};
    use lathe_kernel::sim::{run, Arg, Launch, Options};
    use lathe_numerics::DType;

    /// Ulps between two finite f32s of the same sign region (through their ordered bits).
    fn ulps(a: f32, b: f32) -> u64 {
        let key = |x: f32| {
            let i = x.to_bits() as i32;
            i64::from(if i < 0 { i32::MIN - i } else { i })
        };
        (key(a) - key(b)).unsigned_abs()
    }

    #[test]
    fn sincos_is_within_two_ulps_of_the_correctly_rounded_values() {
        let mut b = KernelBuilder::new("sincos", 128);
        let x = b.buffer("x", DType::F32, Access::ReadOnly);
        let ys = b.buffer("sin", DType::F32, Access::Written);
        let yc = b.buffer("cos", DType::F32, Access::Written);
        let tid = b.special(Special::Tid(Axis::X));
        let cta = b.special(Special::Ctaid(Axis::X));
        let i = b.fma(Ty::U32, cta, int_imm(128), tid);
        let i = b.cvt(Ty::U64, Ty::U32, None, false, i);
        let off = b.bin(BinOp::Mul, Ty::U64, i, int_imm(4));
        let at = b.bin(BinOp::Add, Ty::U64, x, off);
        let a = b.ld1(Space::Global, Ty::F32, at, 0);
        let (s, c) = super::sincos(&mut b, a);
        let at = b.bin(BinOp::Add, Ty::U64, ys, off);
        b.st(Space::Global, Ty::F32, at, 0, &[s.into()]);
        let at = b.bin(BinOp::Add, Ty::U64, yc, off);
        b.st(Space::Global, Ty::F32, at, 0, &[c.into()]);
        let k = b.finish();
        // RoPE's angles — positions up to 2^17 times the frequencies of head dims 64 and 128
        // at theta 10^4 and 10^6 — and the neighbourhoods of multiples of π/4.
        let mut xs: Vec<f32> = Vec::new();
        for (theta, d) in [(1e4f32, 64u32), (1e6, 128)] {
            for i in 0..d / 2 {
                let f = 1.0f32 / theta.powf((2 * i) as f32 / d as f32);
                for p in [0u32, 1, 2, 3, 7, 100, 1000, 4095, 4096, 8191, 32767, 65535, 100_000, 131_071] {
                    xs.push(p as f32 * f);
                }
            }
        }
        for m in (-400i32..400).filter(|&m| m != 0) {
            let a = m as f32 * std::f32::consts::FRAC_PI_4;
            xs.extend([a, f32::from_bits(a.to_bits() + 1), f32::from_bits(a.to_bits().wrapping_sub(1))]);
        }
        xs.extend([0.0, -0.0, 1e-30, 1048576.0, -1048576.0]);
        let n = xs.len().next_multiple_of(128);
        xs.resize(n, 0.5);
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut args = vec![Arg::Buffer(bytes(&xs)), Arg::Buffer(vec![0; 4 * n]), Arg::Buffer(vec![0; 4 * n])];
        let launch = Launch { grid: [(n / 128) as u32, 1, 1], block: [128, 1, 1] };
        run(&k, &launch, &mut args, &Options::default()).expect("runs");
        let floats = |a: &Arg| match a {
            Arg::Buffer(b) => {
                b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<f32>>()
            }
            Arg::Scalar(_) => unreachable!("a buffer"),
        };
        let (sins, coss) = (floats(&args[1]), floats(&args[2]));
        let mut worst = 0;
        for (k, &a) in xs.iter().enumerate() {
            let (ws, wc) = ((f64::from(a)).sin() as f32, (f64::from(a)).cos() as f32);
            let (es, ec) = (ulps(sins[k], ws), ulps(coss[k], wc));
            assert!(es <= 2 && ec <= 2, "a = {a:e}: sin {:e} vs {ws:e}, cos {:e} vs {wc:e}", sins[k], coss[k]);
            worst = worst.max(es).max(ec);
        }
        assert!(worst <= 2, "{worst}");
    }
}
