//! Building blocks shared by the model builders: typed weight reads, linear layers, norms.

use std::collections::HashMap;

use lathe_ir::builder::{BuildError, GraphBuilder};
use lathe_ir::ops::{BinaryOp, Constant, Iota, Matmul, Norm, Op, Reduce, ReduceKind, Split, UnaryOp};
use lathe_ir::{DType, Dim, Module, TensorType, ValueId, WeightId};

use crate::FrontendError;

impl From<BuildError> for FrontendError {
    fn from(e: BuildError) -> Self {
        FrontendError::Build(e.to_string())
    }
}

/// A graph under construction with the module's compute dtype at hand.
#[derive(Debug)]
pub struct Ctx<'m> {
    /// The builder.
    pub b: GraphBuilder<'m>,
    /// The module (for weight lookups).
    pub m: &'m Module,
    /// Dtype of activations.
    pub dt: DType,
    /// The token positions `i64[B,S]`, once a block has asked for them.
    positions: Option<ValueId>,
    /// The module's weights by name (a scan per lookup would make building quadratic in layers).
    weights: HashMap<&'m str, WeightId>,
}

/// Result alias of the builders.
pub type R<T> = Result<T, FrontendError>;

impl<'m> Ctx<'m> {
    /// A context for a new graph of `m`.
    pub fn new(m: &'m Module) -> Self {
        let weights = m.weights.iter().map(|(w, decl)| (decl.name.as_str(), w)).collect();
        Ctx { b: GraphBuilder::new(m), m, dt: m.compute_dtype, positions: None, weights }
    }

    /// The type of a value.
    pub fn ty(&self, v: ValueId) -> R<TensorType> {
        self.b.ty(v).cloned().ok_or_else(|| FrontendError::Build("value of another graph".into()))
    }

    /// Reads weight `name` as declared.
    pub fn weight_raw(&mut self, name: &str) -> R<ValueId> {
        let w =
            *self.weights.get(name).ok_or_else(|| FrontendError::Build(format!("weight `{name}` was not declared")))?;
        Ok(self.b.push1(Op::Weight(w), &[])?)
    }

    /// Reads weight `name` converted to `dtype`.
    pub fn weight_as(&mut self, name: &str, dtype: DType) -> R<ValueId> {
        let w = self.weight_raw(name)?;
        self.cast(w, dtype)
    }

    /// Converts `v` to `dtype` (no node when it already is).
    pub fn cast(&mut self, v: ValueId, dtype: DType) -> R<ValueId> {
        if self.ty(v)?.dtype == dtype {
            Ok(v)
        } else {
            Ok(self.b.push1(Op::Cast(dtype), &[v])?)
        }
    }

    /// `x · Wᵀ (+ b)` for a linear layer stored `[out, in]`.
    pub fn linear(&mut self, x: ValueId, prefix: &str, bias: bool) -> R<ValueId> {
        let w = self.weight_raw(&format!("{prefix}.weight"))?;
        let out = self.dt;
        let y = self.b.push1(Op::Matmul(Matmul { transpose_a: false, transpose_b: true, out }), &[x, w])?;
        if bias {
            let b = self.weight_as(&format!("{prefix}.bias"), out)?;
            return self.binary(BinaryOp::Add, y, b);
        }
        Ok(y)
    }

    /// An elementwise binary op.
    pub fn binary(&mut self, op: BinaryOp, a: ValueId, b: ValueId) -> R<ValueId> {
        Ok(self.b.binary(op, a, b)?)
    }

    /// An elementwise unary op.
    pub fn unary(&mut self, op: UnaryOp, a: ValueId) -> R<ValueId> {
        Ok(self.b.unary(op, a)?)
    }

    /// RMSNorm over the last axis with weight `name` (groups and an optional gate).
    pub fn rms_norm(&mut self, x: ValueId, name: &str, eps: f64, groups: u64, gate: Option<ValueId>) -> R<ValueId> {
        let w = self.weight_raw(name)?;
        let mut args = vec![x, w];
        args.extend(gate);
        Ok(self.b.push1(Op::RmsNorm(Norm { eps, groups }), &args)?)
    }

    /// Reshapes to `shape`.
    pub fn reshape(&mut self, x: ValueId, shape: Vec<Dim>) -> R<ValueId> {
        Ok(self.b.push1(Op::Reshape(shape), &[x])?)
    }

    /// Splits the last axis into pieces.
    pub fn split_last(&mut self, x: ValueId, sizes: &[usize]) -> R<Vec<ValueId>> {
        let axis = self.ty(x)?.rank().saturating_sub(1);
        Ok(self.b.push(Op::Split(Split { axis, sizes: sizes.iter().map(|&s| s as u64).collect() }), &[x])?)
    }

    /// A tensor of `shape` filled with `value`.
    pub fn fill(&mut self, dtype: DType, shape: Vec<Dim>, value: f64) -> R<ValueId> {
        let c = self.b.push1(Op::Constant(Constant { ty: TensorType::scalar(dtype), values: vec![value] }), &[])?;
        Ok(self.b.push1(Op::Broadcast(shape), &[c])?)
    }

    /// A constant of constant shape.
    pub fn constant(&mut self, dtype: DType, shape: &[u64], values: Vec<f64>) -> R<ValueId> {
        Ok(self.b.push1(Op::Constant(Constant { ty: TensorType::fixed(dtype, shape), values }), &[])?)
    }

    /// The position of every token of the program, `i64[B,S]`: `past + i` for token `i` when the
    /// program has caches (`past: i64[B]`), `i` otherwise. Built once per graph.
    pub fn positions(&mut self, b: Dim, s: Dim, past: Option<ValueId>) -> R<ValueId> {
        if let Some(p) = self.positions {
            return Ok(p);
        }
        let index = || Op::Iota(Iota { axis: 1, ty: TensorType::new(DType::I64, [b, s]) });
        let p = match past {
            Some(past) => {
                let past = self.reshape(past, vec![b, Dim::Const(1)])?;
                if s == Dim::Const(1) {
                    past
                } else {
                    let i = self.b.push1(index(), &[])?;
                    self.binary(BinaryOp::Add, past, i)?
                }
            }
            None => self.b.push1(index(), &[])?,
        };
        self.positions = Some(p);
        Ok(p)
    }

    /// The length `S` of axis 1 of `x[B, S, ...]` as an `i64[B]` vector (each entry `S`).
    pub fn seq_len(&mut self, b: Dim, s: Dim) -> R<ValueId> {
        let pos = self.b.push1(Op::Iota(Iota { axis: 1, ty: TensorType::new(DType::I64, [b, s]) }), &[])?;
        let last =
            self.b.push1(Op::Reduce(Reduce { kind: ReduceKind::Max, axes: vec![1], keep_dims: false }), &[pos])?;
        let one = self.constant(DType::I64, &[], vec![1.0])?;
        self.binary(BinaryOp::Add, last, one)
    }
}
