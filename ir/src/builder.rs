//! Building graphs with types checked as nodes are added.

use crate::infer::infer;
use crate::module::{Function, Graph, Module, Output, ValueId};
use crate::ops::{BinaryOp, Input, Op, UnaryOp};
use crate::program::{InputRole, OutputRole};
use crate::types::TensorType;

/// Error from the builder: the op and why its operands do not type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {message}")]
#[non_exhaustive]
pub struct BuildError {
    /// Text name of the op.
    pub op: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Appends typed nodes to a graph. Used by the frontend, the passes and the tests.
///
/// ```
/// use lathe_ir::{Module, DType, TensorType, builder::GraphBuilder};
/// let mut m = Module::new("demo");
/// let s = m.add_symbol("S", 16);
/// let mut b = GraphBuilder::new(&m);
/// let x = b.input("x", TensorType::new(DType::F32, [s.into(), 8u64.into()])).unwrap();
/// let y = b.silu(x).unwrap();
/// b.output("y", y);
/// let f = b.finish("main");
/// m.functions.push(f);
/// assert!(lathe_ir::verify::verify(&m).is_ok());
/// ```
#[derive(Debug)]
pub struct GraphBuilder<'m> {
    module: &'m Module,
    graph: Graph,
}

impl<'m> GraphBuilder<'m> {
    /// A builder for a new graph of `module` (read for weights and symbols).
    pub fn new(module: &'m Module) -> Self {
        GraphBuilder { module, graph: Graph::default() }
    }

    /// Appends `op` on `args`, returning all its results.
    pub fn push(&mut self, op: Op, args: &[ValueId]) -> Result<Vec<ValueId>, BuildError> {
        let types: Vec<&TensorType> = args
            .iter()
            .map(|&a| self.graph.values.get(a).map(|v| &v.ty))
            .collect::<Option<_>>()
            .ok_or_else(|| BuildError { op: op.name(), message: "operand is not a value of this graph".into() })?;
        let results = infer(self.module, &op, &types).map_err(|message| BuildError { op: op.name(), message })?;
        Ok(self.graph.push_node(op, args.to_vec(), results))
    }

    /// Appends a single-result op.
    pub fn push1(&mut self, op: Op, args: &[ValueId]) -> Result<ValueId, BuildError> {
        let name = op.name();
        let r = self.push(op, args)?;
        match r.as_slice() {
            [v] => Ok(*v),
            _ => Err(BuildError { op: name, message: format!("has {} results, not 1", r.len()) }),
        }
    }

    /// A graph input.
    pub fn input(&mut self, name: &str, ty: TensorType) -> Result<ValueId, BuildError> {
        self.push1(Op::Input(Input { name: name.into(), ty, role: None }), &[])
    }

    /// A graph input with a role.
    pub fn input_with_role(&mut self, name: &str, ty: TensorType, role: InputRole) -> Result<ValueId, BuildError> {
        self.push1(Op::Input(Input { name: name.into(), ty, role: Some(role) }), &[])
    }

    /// An elementwise unary op.
    pub fn unary(&mut self, u: UnaryOp, x: ValueId) -> Result<ValueId, BuildError> {
        self.push1(Op::Unary(u), &[x])
    }

    /// `silu(x)`.
    pub fn silu(&mut self, x: ValueId) -> Result<ValueId, BuildError> {
        self.unary(UnaryOp::Silu, x)
    }

    /// An elementwise binary op.
    pub fn binary(&mut self, b: BinaryOp, x: ValueId, y: ValueId) -> Result<ValueId, BuildError> {
        self.push1(Op::Binary(b), &[x, y])
    }

    /// The type of a value of this graph.
    pub fn ty(&self, v: ValueId) -> Option<&TensorType> {
        self.graph.values.get(v).map(|v| &v.ty)
    }

    /// Marks `v` as a named result.
    pub fn output(&mut self, name: &str, v: ValueId) {
        self.graph.outputs.push(Output::new(name, v));
    }

    /// Marks `v` as a named result with a role and, for a cache, the input it updates in place.
    pub fn output_with(&mut self, name: &str, v: ValueId, role: Option<OutputRole>, updates: Option<ValueId>) {
        self.graph.outputs.push(Output { name: name.into(), value: v, role, updates });
    }

    /// The finished graph (e.g. a fusion body).
    pub fn into_graph(self) -> Graph {
        self.graph
    }

    /// The finished graph as a named function.
    pub fn finish(self, name: &str) -> Function {
        Function::new(name, self.graph)
    }
}
