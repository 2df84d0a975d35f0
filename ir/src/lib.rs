//! `lathe-ir` — the graph IR of lathe.
//!
//! # The central data structure
//! A [`Module`] is one model: bounded symbols for dynamic dimensions (`S <= 8192`), weights
//! (name, type, where the bytes live) and named functions (`extend`, `decode`, `eval`). A
//! function is a [`module::Graph`]: arenas of nodes and values addressed by typed
//! [`arena::Handle`]s, plus an explicit execution order. Each node holds one [`ops::Op`] from
//! a closed enum — with first-class `scan.ssd` (Mamba-2 SSD) and `attention` — its operand
//! values and its typed results. Fused regions are `fusion` nodes holding a body graph.
//!
//! # Invariants
//! Checked by [`verify::verify`], handles and order first, then types: every node appears once
//! in the order, operands are defined before use, every result type equals what
//! [`infer::infer`] computes from the operand types and attributes; every size stays within
//! [`limits`] (symbol bounds, rank, elements at the symbols' bounds, fusion nesting), every
//! constant fits its dtype, and no max, mean, softmax, norm or draw runs over a statically empty
//! axis. A module that verifies never makes a pass, codegen or the interpreter panic; text
//! nested deeper than the parser's limit is refused before it recurses.
//!
//! # Numerics
//! Values are rounded exactly at the dtypes the IR gives them (round-to-nearest-even; fp8
//! saturating, per `lathe-numerics`); arithmetic inside every op is f32. The module's
//! `compute_dtype` records the dtype of intermediates chosen by the frontend: f32 for the CPU
//! interpreter and `eval`, bf16 for compiled artifacts. A fused kernel rounds exactly where the
//! types inside its group say (docs/numerics.md), so the interpreter computes what it computes.
//!
//! # Data flow
//! The frontend builds modules with [`builder::GraphBuilder`]; text goes in and out through
//! [`text`] (`parse(print(m)) == m.renumbered()`); the `lathe-interp` crate runs any function on the CPU and
//! is the oracle every pass and kernel is checked against.

pub mod arena;
pub mod builder;
pub mod infer;
pub mod limits;
pub mod manual;
pub mod module;
pub mod ops;
pub mod program;
pub mod text;
pub mod types;
pub mod verify;
mod verify_program;

pub use module::{Function, Graph, Module, Node, NodeId, Output, Value, ValueId, Weight, WeightId, WeightSource};
pub use ops::Op;
pub use program::{CacheKind, FunctionKind, InputRole, OutputRole, Stage, StepSymbol, WeightRole};
pub use types::{DType, Dim, Symbol, SymbolId, TensorType};
