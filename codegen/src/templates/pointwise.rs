//! The pointwise emitter: a pointwise graph op on per-thread values, in f32.
//!
//! (First increment: the arithmetic every group needs; the transcendental functions follow.)

use lathe_ir::ops::{BinaryOp, UnaryOp};
use lathe_ir::{DType, Op};
use lathe_kernel::build::{f32_imm, KernelBuilder};
use lathe_kernel::ir::{BinOp, Reg, Rounding, Ty, UnOp};

/// A per-thread value: f32 (every float op computes in f32) or a predicate (a bool element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// An f32 register.
    F32(Reg),
    /// A predicate register.
    Pred(Reg),
    /// An integer, as an `s64` register (an `i32` value is kept sign-extended).
    I64(Reg),
}

/// An op (or operand kind) the emitter does not handle, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pointwise `{0}`")]
pub struct Unsupported(pub String);

/// `op` on `args`.
pub fn emit(b: &mut KernelBuilder, op: &Op, args: &[Value]) -> Result<Value, Unsupported> {
    let f = |i: usize| match args.get(i) {
        Some(Value::F32(r)) => Ok(*r),
        _ => Err(Unsupported(format!("{} on a non-f32 operand", op.name()))),
    };
    Ok(Value::F32(match op {
        Op::Binary(bop) => {
            let k = match bop {
                BinaryOp::Add => BinOp::Add,
                BinaryOp::Sub => BinOp::Sub,
                BinaryOp::Mul => BinOp::Mul,
                BinaryOp::Div => BinOp::Div,
                BinaryOp::Max => BinOp::Max,
                BinaryOp::Min => BinOp::Min,
            };
            b.bin(k, Ty::F32, f(0)?, f(1)?)
        }
        Op::Unary(UnaryOp::Neg) => b.un(UnOp::Neg, Ty::F32, f(0)?),
        Op::Unary(UnaryOp::Relu) => b.bin(BinOp::Max, Ty::F32, f(0)?, f32_imm(0.0)),
        Op::Unary(UnaryOp::Square) => {
            let x = f(0)?;
            b.bin(BinOp::Mul, Ty::F32, x, x)
        }
        Op::Unary(UnaryOp::Sqrt) => b.un(UnOp::Sqrt, Ty::F32, f(0)?),
        Op::Where => {
            let Some(Value::Pred(p)) = args.first() else {
                return Err(Unsupported("where without a predicate".into()));
            };
            b.selp(Ty::F32, f(1)?, f(2)?, *p)
        }
        Op::Cast(DType::F32) => f(0)?,
        Op::Cast(to @ (DType::BF16 | DType::F16)) => {
            let ty = if *to == DType::BF16 { Ty::Bf16 } else { Ty::F16 };
            let n = b.cvt(ty, Ty::F32, Some(Rounding::Rn), false, f(0)?);
            b.cvt(Ty::F32, ty, None, false, n)
        }
        other => return Err(Unsupported(other.name().to_string())),
    }))
}
