//! The arithmetic of one lane: integer and f32 operations, comparisons, conversions.

use lathe_numerics as num;

use super::WARP;
use crate::ir::{BinOp, Cmp, Rounding, Ty, UnOp};

pub(super) fn lanes(mask: u32) -> impl Iterator<Item = u32> {
    (0..WARP).filter(move |l| mask & (1 << l) != 0)
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
