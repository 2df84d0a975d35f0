//! The arithmetic of one lane: integer and f32 operations, comparisons, conversions.

use lathe_numerics as num;

use super::{buffer_base, Arg, Cta, ErrorKind, Lanes, Machine, SimError, WARP};
use crate::ir::{BinOp, Cmp, Inst, Mufu, Operand, Rounding, Ty, UnOp};

/// The lanes of `mask`, lowest first.
pub(super) fn lanes(mask: u32) -> impl Iterator<Item = u32> {
    let mut rest = mask;
    std::iter::from_fn(move || {
        (rest != 0).then(|| {
            let l = rest.trailing_zeros();
            rest &= rest - 1;
            l
        })
    })
}

pub(super) fn le(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0u64, |a, &b| a << 8 | u64::from(b))
}

pub(super) fn f(bits: u64) -> f32 {
    f32::from_bits(bits as u32)
}

/// The bits of a value of `ty`, zero-extended.
pub(super) fn truncate(bits: u64, ty: Ty) -> u64 {
    match ty.bits() {
        1 => bits & 1,
        64 => bits,
        n => bits & ((1u64 << n) - 1),
    }
}

/// Sign-extends a value of `ty`.
pub(super) fn signed(bits: u64, ty: Ty) -> i64 {
    match ty.bits() {
        32 => bits as u32 as i32 as i64,
        16 => bits as u16 as i16 as i64,
        _ => bits as i64,
    }
}

pub(super) fn unary(op: UnOp, ty: Ty, x: u64) -> u64 {
    match (op, ty) {
        (UnOp::Not, Ty::Pred) => x ^ 1,
        (UnOp::Not, _) => !x,
        (UnOp::Neg, Ty::F32) => u64::from((-f(x)).to_bits()),
        (UnOp::Abs, Ty::F32) => u64::from(f(x).abs().to_bits()),
        (UnOp::Sqrt, _) => u64::from(f(x).sqrt().to_bits()),
        (UnOp::Neg, _) => signed(x, ty).wrapping_neg() as u64,
        (UnOp::Abs, _) => signed(x, ty).wrapping_abs() as u64,
    }
}

/// `None` on an integer division by zero.
pub(super) fn binary(op: BinOp, ty: Ty, x: u64, y: u64) -> Option<u64> {
    if ty == Ty::F32 {
        let (a, b) = (f(x), f(y));
        let r = match op {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            // IEEE division, `div.rn.f32`.
            BinOp::Div => a / b,
            BinOp::Min => a.min(b),
            BinOp::Max => a.max(b),
            _ => return Some(0),
        };
        return Some(u64::from(r.to_bits()));
    }
    let width = ty.bits().max(1);
    let sx = signed(x, ty);
    let sy = signed(y, ty);
    Some(match op {
        BinOp::Add => x.wrapping_add(y),
        BinOp::Sub => x.wrapping_sub(y),
        BinOp::Mul => x.wrapping_mul(y),
        BinOp::Div if y == 0 => return None,
        BinOp::Rem if y == 0 => return None,
        BinOp::Div if ty.is_signed() => sx.wrapping_div(sy) as u64,
        BinOp::Rem if ty.is_signed() => sx.wrapping_rem(sy) as u64,
        BinOp::Div => x / y,
        BinOp::Rem => x % y,
        BinOp::Min if ty.is_signed() => sx.min(sy) as u64,
        BinOp::Max if ty.is_signed() => sx.max(sy) as u64,
        BinOp::Min => x.min(y),
        BinOp::Max => x.max(y),
        BinOp::And => x & y,
        BinOp::Or => x | y,
        BinOp::Xor => x ^ y,
        BinOp::Shl if y >= u64::from(width) => 0,
        BinOp::Shl => x << y,
        BinOp::Shr if ty.is_signed() => (sx >> y.min(u64::from(width) - 1)) as u64,
        BinOp::Shr if y >= u64::from(width) => 0,
        BinOp::Shr => x >> y,
    })
}

pub(super) fn compare(cmp: Cmp, ty: Ty, x: u64, y: u64) -> bool {
    let ord = if ty == Ty::F32 {
        match f(x).partial_cmp(&f(y)) {
            Some(o) => o,
            None => return false,
        }
    } else if ty.is_signed() {
        signed(x, ty).cmp(&signed(y, ty))
    } else {
        x.cmp(&y)
    };
    match cmp {
        Cmp::Eq => ord.is_eq(),
        Cmp::Ne => ord.is_ne(),
        Cmp::Lt => ord.is_lt(),
        Cmp::Le => ord.is_le(),
        Cmp::Gt => ord.is_gt(),
        Cmp::Ge => ord.is_ge(),
    }
}

/// The conversions this version executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertKind {
    /// Between integers (truncate, or sign/zero extend by the source type).
    IntInt,
    /// Integer to f32 (`.rn`).
    IntF32,
    /// f32 to integer (`.rzi`, saturating, NaN → 0).
    F32Int,
    /// f32 to f16/bf16 (`.rn`, optionally `.satfinite`).
    F32Narrow,
    /// f16/bf16 to f32 (exact).
    NarrowF32,
    /// Two fp8 (`e4m3x2`, `e5m2x2`) to `f16x2` (`.rn`, exact; the upper byte to the upper half).
    Fp8x2F16x2,
}

/// What kind of conversion `cvt.to.from` is, if this version executes it.
pub fn convert_kind(to: Ty, from: Ty) -> Option<ConvertKind> {
    let int = |t: Ty| t.is_int();
    match (to, from) {
        (a, b) if int(a) && int(b) => Some(ConvertKind::IntInt),
        (Ty::F32, b) if int(b) => Some(ConvertKind::IntF32),
        (a, Ty::F32) if int(a) => Some(ConvertKind::F32Int),
        (Ty::F16 | Ty::Bf16, Ty::F32) => Some(ConvertKind::F32Narrow),
        (Ty::F32, Ty::F16 | Ty::Bf16) => Some(ConvertKind::NarrowF32),
        (Ty::F16x2, Ty::E4m3x2 | Ty::E5m2x2) => Some(ConvertKind::Fp8x2F16x2),
        _ => None,
    }
}

pub(super) fn convert(to: Ty, from: Ty, _rounding: Option<Rounding>, satfinite: bool, x: u64) -> u64 {
    match convert_kind(to, from) {
        Some(ConvertKind::IntInt) => {
            let v = if from.is_signed() { signed(x, from) as u64 } else { x };
            truncate(v, to)
        }
        Some(ConvertKind::IntF32) => {
            let v = if from.is_signed() { signed(x, from) as f32 } else { x as f32 };
            u64::from(v.to_bits())
        }
        Some(ConvertKind::F32Int) => {
            let v = f(x);
            let r = match to {
                Ty::S32 => v as i32 as i64 as u64,
                Ty::S64 => v as i64 as u64,
                Ty::U32 => u64::from(v as u32),
                _ => v as u64,
            };
            truncate(r, to)
        }
        Some(ConvertKind::F32Narrow) => {
            let mut v = f(x);
            if satfinite && v.is_infinite() {
                v = v.signum() * f32::MAX;
            }
            let b = if to == Ty::F16 { num::f32_to_f16_bits(v) } else { num::f32_to_bf16_bits(v) };
            let b = if satfinite && !v.is_nan() {
                let max = if to == Ty::F16 { 0x7bff } else { 0x7f7f };
                let mag = (b & 0x7fff).min(max);
                (b & 0x8000) | mag
            } else {
                b
            };
            u64::from(b)
        }
        Some(ConvertKind::NarrowF32) => {
            let v = if from == Ty::F16 { num::f16_bits_to_f32(x as u16) } else { num::bf16_bits_to_f32(x as u16) };
            u64::from(v.to_bits())
        }
        Some(ConvertKind::Fp8x2F16x2) => unpack(from, x),
        None => 0,
    }
}

/// Two f32 values packed into `to`: `hi` (the instruction's first source) in the upper half.
pub(super) fn pack(to: Ty, satfinite: bool, hi: f32, lo: f32) -> u64 {
    let one = |x: f32| -> u64 {
        match to {
            Ty::E4m3x2 => u64::from(num::f32_to_e4m3(x)),
            Ty::E5m2x2 => u64::from(num::f32_to_e5m2(x)),
            Ty::F16x2 => convert(Ty::F16, Ty::F32, Some(Rounding::Rn), satfinite, u64::from(x.to_bits())),
            _ => convert(Ty::Bf16, Ty::F32, Some(Rounding::Rn), satfinite, u64::from(x.to_bits())),
        }
    };
    let half = to.bits() / 2;
    one(hi) << half | one(lo)
}

/// Two fp8 codes of `from` (`e4m3x2` or `e5m2x2`) in the low 16 bits of `x` as an `f16x2`: the
/// upper byte to the upper half, as [`pack`] put it there. Every fp8 value is an f16 value, so
/// nothing rounds; a NaN code becomes the quiet f16 NaN of its sign (`0x7e00` / `0xfe00`).
pub(super) fn unpack(from: Ty, x: u64) -> u64 {
    let decode = if from == Ty::E4m3x2 { num::e4m3_to_f32 } else { num::e5m2_to_f32 };
    let half = |code: u64| u64::from(num::f32_to_f16_bits(decode(code as u8)));
    half((x >> 8) & 0xff) << 16 | half(x & 0xff)
}

/// "a" or "an" before a number of bytes spelled in digits ("an 8-byte", "a 16-byte").
pub(super) fn article(n: u64) -> &'static str {
    if n == 11 || n == 18 || n.to_string().starts_with('8') {
        "an"
    } else {
        "a"
    }
}

/// `f` of every lane.
#[inline]
fn map1(x: &Lanes, f: impl Fn(u64) -> u64) -> Lanes {
    std::array::from_fn(|l| f(x[l]))
}

/// `f` of every lane's pair.
#[inline]
fn map2(x: &Lanes, y: &Lanes, f: impl Fn(u64, u64) -> u64) -> Lanes {
    std::array::from_fn(|l| f(x[l], y[l]))
}

/// `f` of every lane's triple.
#[inline]
fn map3(x: &Lanes, y: &Lanes, z: &Lanes, f: impl Fn(u64, u64, u64) -> u64) -> Lanes {
    std::array::from_fn(|l| f(x[l], y[l], z[l]))
}

/// An f32 result as register bits.
#[inline]
fn bits(x: f32) -> u64 {
    u64::from(x.to_bits())
}

/// `binary` over a warp, the common operations without a dispatch per lane. Inactive lanes
/// compute garbage that is never written; a division by zero among them is not an error.
fn binary_lanes(op: BinOp, ty: Ty, x: &Lanes, y: &Lanes) -> Lanes {
    match (op, ty) {
        (BinOp::Add, Ty::F32) => map2(x, y, |a, b| bits(f(a) + f(b))),
        (BinOp::Sub, Ty::F32) => map2(x, y, |a, b| bits(f(a) - f(b))),
        (BinOp::Mul, Ty::F32) => map2(x, y, |a, b| bits(f(a) * f(b))),
        (_, Ty::F32) => map2(x, y, |a, b| binary(op, ty, a, b).unwrap_or(0)),
        // Integer results are truncated to the destination's width when written.
        (BinOp::Add, _) => map2(x, y, u64::wrapping_add),
        (BinOp::Sub, _) => map2(x, y, u64::wrapping_sub),
        (BinOp::Mul, _) => map2(x, y, u64::wrapping_mul),
        (BinOp::And, _) => map2(x, y, |a, b| a & b),
        (BinOp::Or, _) => map2(x, y, |a, b| a | b),
        (BinOp::Xor, _) => map2(x, y, |a, b| a ^ b),
        _ => map2(x, y, |a, b| binary(op, ty, a, b).unwrap_or(0)),
    }
}

impl Machine<'_> {
    /// An ALU instruction (no memory, no lane exchange) over the active lanes of warp `wi`:
    /// operands are read for the whole warp, computed lane by lane, written back under the
    /// active mask.
    pub(super) fn alu(&self, cta: &mut Cta, wi: u32, active: u32, pc: usize, inst: &Inst) -> Result<(), SimError> {
        let g = |o: Operand, ty: Ty, mask: u32| self.gather(cta, wi, mask, o, ty, pc);
        let (dst, v) = match *inst {
            Inst::Mov { dst, src } => (dst, g(src, self.k.regs[dst.0 as usize], active)?),
            Inst::Special { dst, reg } => {
                (dst, std::array::from_fn(|l| u64::from(self.special(cta, wi * WARP + l as u32, reg))))
            }
            Inst::Param { dst, index } => (
                dst,
                [match &self.args[index] {
                    Arg::Buffer(_) => buffer_base(index),
                    Arg::Scalar(v) => *v,
                }; WARP as usize],
            ),
            Inst::Unary { op, ty, dst, a } => (dst, map1(&g(a, ty, active)?, |x| unary(op, ty, x))),
            Inst::Binary { op, ty, dst, a, b } => {
                let x = g(a, ty, active)?;
                let y = g(b, if matches!(op, BinOp::Shl | BinOp::Shr) { Ty::U32 } else { ty }, active)?;
                if matches!(op, BinOp::Div | BinOp::Rem) && ty != Ty::F32 {
                    if let Some(lane) = lanes(active).find(|&l| y[l as usize] == 0) {
                        return Err(self.err(
                            ErrorKind::DivisionByZero,
                            cta,
                            Some(pc),
                            Some(wi * WARP + lane),
                            "integer division by zero".into(),
                        ));
                    }
                }
                (dst, binary_lanes(op, ty, &x, &y))
            }
            Inst::Fma { ty, dst, a, b, c } => {
                let (x, y, z) = (g(a, ty, active)?, g(b, ty, active)?, g(c, ty, active)?);
                let v = if ty == Ty::F32 {
                    map3(&x, &y, &z, |a, b, c| bits(f(a).mul_add(f(b), f(c))))
                } else {
                    map3(&x, &y, &z, |a, b, c| a.wrapping_mul(b).wrapping_add(c))
                };
                (dst, v)
            }
            Inst::Setp { cmp, ty, dst, a, b } => {
                let (x, y) = (g(a, ty, active)?, g(b, ty, active)?);
                (dst, map2(&x, &y, |x, y| u64::from(compare(cmp, ty, x, y))))
            }
            Inst::Selp { ty, dst, a, b, p } => {
                // Each lane reads only the operand it selects.
                let p = g(Operand::Reg(p), Ty::Pred, active)?;
                let take_a = lanes(active).filter(|&l| p[l as usize] & 1 == 1).fold(0u32, |m, l| m | 1 << l);
                let (x, y) = (g(a, ty, take_a)?, g(b, ty, active & !take_a)?);
                (dst, std::array::from_fn(|l| if take_a & (1 << l) != 0 { x[l] } else { y[l] }))
            }
            Inst::Cvt { to, from, rounding, satfinite, dst, src } => {
                (dst, map1(&g(src, from, active)?, |x| convert(to, from, rounding, satfinite, x)))
            }
            Inst::CvtPack { to, satfinite, dst, a, b } => {
                let (x, y) = (g(a, Ty::F32, active)?, g(b, Ty::F32, active)?);
                (dst, map2(&x, &y, |hi, lo| pack(to, satfinite, f(hi), f(lo))))
            }
            Inst::Mufu { op, dst, a } => (dst, map1(&g(a, Ty::F32, active)?, |x| mufu(op, f(x)))),
            _ => return Ok(()),
        };
        self.scatter(cta, wi, active, dst, &v);
        Ok(())
    }
}

/// A MUFU op: the correctly rounded value (the hardware's approximation lies within the error
/// the PTX ISA documents for it; the tolerance of a comparison carries that term).
fn mufu(op: Mufu, x: f32) -> u64 {
    let x = f64::from(x);
    let y = match op {
        Mufu::Ex2 => x.exp2(),
        Mufu::Rsqrt => 1.0 / x.sqrt(),
        Mufu::Rcp => 1.0 / x,
        Mufu::Tanh => x.tanh(),
    };
    bits(y as f32)
}
