//! The module: symbols, weights and functions; a function is a graph of nodes in explicit order.

use crate::arena::{Arena, Handle};
use crate::ops::Op;
use crate::program::{FunctionKind, InputRole, OutputRole, Stage, StepSymbol, WeightRole};
use crate::types::{DType, Symbol, SymbolId, TensorType};

/// Where the bytes of a weight come from.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightSource {
    /// A tensor in a safetensors file of the checkpoint (path relative to the checkpoint dir).
    Checkpoint {
        /// The safetensors file.
        file: String,
        /// The tensor name inside that file.
        tensor: String,
    },
    /// Deterministic pseudo-random values (shape-only import, tests): element `i` is
    /// `lathe_numerics::synthetic_value(seed, i)` rounded to the weight's dtype.
    Synthetic {
        /// Seed of the generator.
        seed: u64,
    },
    /// A value computed from weights declared before it, once, when the artifact is written
    /// (fp8 codes and scales of a weight, a weight cast, `−exp(A_log)`): a graph without
    /// inputs returning exactly one value of the weight's type.
    Derived(Box<Graph>),
}

/// A named parameter tensor of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    /// Unique name (`@backbone.layers.0.mixer.in_proj.weight` in text).
    pub name: String,
    /// Its type; weights have constant shapes.
    pub ty: TensorType,
    /// Where the data lives.
    pub source: WeightSource,
    /// What it is to the model (its block, or the embedding or LM head), when known.
    pub role: Option<WeightRole>,
}

/// Handle of a [`Weight`].
pub type WeightId = Handle<Weight>;
/// Handle of a [`Node`] in its [`Graph`].
pub type NodeId = Handle<Node>;
/// Handle of a [`Value`] in its [`Graph`].
pub type ValueId = Handle<Value>;

/// One operation: an op, its operands and the values it defines.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What the node computes.
    pub op: Op,
    /// Operand values, defined earlier in the graph's order.
    pub args: Vec<ValueId>,
    /// Result values, in result order.
    pub results: Vec<ValueId>,
}

/// An SSA value: one result of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// Its type.
    pub ty: TensorType,
    /// The defining node.
    pub def: NodeId,
    /// Which result of `def` it is.
    pub index: u32,
}

/// A named result of a graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Name used when results are written out (empty for unnamed region results).
    pub name: String,
    /// The value returned.
    pub value: ValueId,
    /// What the result is (logits, a sampled token), when it is one of those.
    pub role: Option<OutputRole>,
    /// The input (a value of an `input` node of the same graph, of the same type) this result
    /// updates in place: a cache written by the function. Its memory is the input's.
    pub updates: Option<ValueId>,
}

impl Output {
    /// A plain named result.
    pub fn new(name: impl Into<String>, value: ValueId) -> Self {
        Output { name: name.into(), value, role: None, updates: None }
    }
}

/// A dataflow graph: arenas of nodes and values plus the explicit execution order.
///
/// Invariants (checked by the verifier): every node appears exactly once in `order`; every
/// operand is defined by a node earlier in `order`; `values[v].def` lists `v` among its results
/// at position `index`. The graph's inputs are its `input` nodes, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    /// All nodes.
    pub nodes: Arena<Node>,
    /// All values.
    pub values: Arena<Value>,
    /// Execution order.
    pub order: Vec<NodeId>,
    /// Results of the graph.
    pub outputs: Vec<Output>,
}

impl Graph {
    /// The type of a value (panics on a foreign handle; use on verified graphs).
    pub fn ty(&self, v: ValueId) -> &TensorType {
        &self.values[v].ty
    }

    /// The `input` nodes in order, with their names and result values.
    pub fn inputs(&self) -> impl Iterator<Item = (&str, ValueId)> + '_ {
        self.params().map(|(i, v)| (i.name.as_str(), v))
    }

    /// The `input` nodes in order, with their attributes (name, type, role) and result values.
    pub fn params(&self) -> impl Iterator<Item = (&crate::ops::Input, ValueId)> + '_ {
        self.order.iter().filter_map(|&n| {
            let node = self.nodes.get(n)?;
            match &node.op {
                Op::Input(a) => Some((a, *node.results.first()?)),
                _ => None,
            }
        })
    }

    /// The input with role `role`, if the graph has one.
    pub fn input_with_role(&self, role: InputRole) -> Option<(&crate::ops::Input, ValueId)> {
        self.params().find(|(i, _)| i.role == Some(role))
    }

    /// The role of value `v` when it is an input that has one.
    pub fn role_of(&self, v: ValueId) -> Option<InputRole> {
        let value = self.values.get(v)?;
        match &self.nodes.get(value.def)?.op {
            Op::Input(i) => i.role,
            _ => None,
        }
    }

    /// The output with role `role`, if any.
    pub fn output_with_role(&self, role: OutputRole) -> Option<&Output> {
        self.outputs.iter().find(|o| o.role == Some(role))
    }

    /// Appends a node with already-typed results, returning the result values. Does not check
    /// types: the builder and parser check before, the verifier after.
    pub fn push_node(&mut self, op: Op, args: Vec<ValueId>, result_types: Vec<TensorType>) -> Vec<ValueId> {
        let node = self.nodes.append(Node { op, args, results: Vec::new() });
        let results: Vec<ValueId> = result_types
            .into_iter()
            .enumerate()
            .map(|(i, ty)| self.values.append(Value { ty, def: node, index: i as u32 }))
            .collect();
        self.nodes[node].results = results.clone();
        self.order.push(node);
        results
    }

    /// Structural equality with ops compared by [`Op::same`] (floats by their bits).
    pub fn same(&self, other: &Graph) -> bool {
        self.order == other.order
            && self.outputs == other.outputs
            && self.values == other.values
            && self.nodes.len() == other.nodes.len()
            && self
                .nodes
                .iter()
                .zip(other.nodes.iter())
                .all(|((_, a), (_, b))| a.op.same(&b.op) && a.args == b.args && a.results == b.results)
    }

    /// A copy whose arenas hold exactly the nodes of `order`, in that order, with values
    /// numbered densely: the form the parser produces, so `parse(print(m)) == m.renumbered()`.
    pub fn renumbered(&self) -> Graph {
        let mut out = Graph::default();
        let mut map: Vec<Option<ValueId>> = vec![None; self.values.len()];
        for &n in &self.order {
            let node = &self.nodes[n];
            let args = node.args.iter().filter_map(|a| map.get(a.index()).copied().flatten()).collect();
            let mut op = node.op.clone();
            if let Op::Fusion(f) = &mut op {
                f.body = f.body.renumbered();
            }
            let types = node.results.iter().map(|&r| self.values[r].ty.clone()).collect();
            let new = out.push_node(op, args, types);
            for (&old, &new) in node.results.iter().zip(&new) {
                map[old.index()] = Some(new);
            }
        }
        let remap = |v: ValueId| map.get(v.index()).copied().flatten();
        out.outputs = self
            .outputs
            .iter()
            .filter_map(|o| {
                Some(Output {
                    name: o.name.clone(),
                    value: remap(o.value)?,
                    role: o.role,
                    updates: match o.updates {
                        Some(u) => Some(remap(u)?),
                        None => None,
                    },
                })
            })
            .collect();
        out
    }
}

/// A named program of the module (`extend`, `decode`, `eval`, or any test function).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Function {
    /// Unique name.
    pub name: String,
    /// What it computes; tools find programs by kind, never by name.
    pub kind: FunctionKind,
    /// The symbols that change from call to call (`batch=B, seq=S`), with their role.
    pub step_symbols: Vec<(StepSymbol, SymbolId)>,
    /// Its body.
    pub graph: Graph,
}

impl Function {
    /// A generic function (no kind, no step symbols).
    pub fn new(name: impl Into<String>, graph: Graph) -> Self {
        Function { name: name.into(), kind: FunctionKind::Generic, step_symbols: Vec::new(), graph }
    }

    /// The symbol playing `role` in this function, if any.
    pub fn step_symbol(&self, role: StepSymbol) -> Option<SymbolId> {
        self.step_symbols.iter().find(|(r, _)| *r == role).map(|(_, s)| *s)
    }
}

/// The unit of compilation: symbols, weights and functions of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    /// Name of the module (the model).
    pub name: String,
    /// The dtype in which ops compute intermediate values (§ numerics): f32 for the CPU
    /// interpreter and `eval`, bf16 for compiled artifacts.
    pub compute_dtype: DType,
    /// How far through the pipeline the module is; the verifier checks that stage's rules.
    pub stage: Stage,
    /// Bounded dynamic dimensions.
    pub symbols: Arena<Symbol>,
    /// Parameters.
    pub weights: Arena<Weight>,
    /// Programs.
    pub functions: Vec<Function>,
}

impl Module {
    /// An empty module computing in `f32`.
    pub fn new(name: impl Into<String>) -> Self {
        Module {
            name: name.into(),
            compute_dtype: DType::F32,
            stage: Stage::Graph,
            symbols: Arena::new(),
            weights: Arena::new(),
            functions: Vec::new(),
        }
    }

    /// Declares a symbol `name <= max`.
    pub fn add_symbol(&mut self, name: impl Into<String>, max: u64) -> SymbolId {
        self.symbols.append(Symbol { name: name.into(), max })
    }

    /// Declares a weight.
    pub fn add_weight(&mut self, name: impl Into<String>, ty: TensorType, source: WeightSource) -> WeightId {
        self.weights.append(Weight { name: name.into(), ty, source, role: None })
    }

    /// Finds a symbol by name.
    pub fn symbol(&self, name: &str) -> Option<SymbolId> {
        self.symbols.iter().find(|(_, s)| s.name == name).map(|(h, _)| h)
    }

    /// The largest value dim `d` takes: a constant, or a symbol's bound (`None` for a symbol not
    /// of this module).
    pub fn dim_bound(&self, d: crate::types::Dim) -> Option<u64> {
        match d {
            crate::types::Dim::Const(c) => Some(c),
            crate::types::Dim::Sym(s) => self.symbols.get(s).map(|s| s.max),
        }
    }

    /// A name for something new: `stem` if no name is taken by it (`taken` says), else `stem1`,
    /// `stem2`, … (`stem.1`, … when `sep` is `.`).
    pub fn fresh_name(stem: &str, sep: &str, taken: &dyn Fn(&str) -> bool) -> String {
        let mut candidate = stem.to_string();
        let mut i = 0u64;
        while taken(&candidate) {
            i += 1;
            candidate = format!("{stem}{sep}{i}");
        }
        candidate
    }

    /// Finds a weight by name.
    pub fn weight(&self, name: &str) -> Option<WeightId> {
        self.weights.iter().find(|(_, w)| w.name == name).map(|(h, _)| h)
    }

    /// Finds a function by name.
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The function of kind `kind` (the verifier allows at most one of each kind but generic).
    pub fn function_of_kind(&self, kind: FunctionKind) -> Option<&Function> {
        self.functions.iter().find(|f| f.kind == kind)
    }

    /// The module with every function renumbered (see [`Graph::renumbered`]).
    pub fn renumbered(&self) -> Module {
        let mut m = self.clone();
        for f in &mut m.functions {
            f.graph = f.graph.renumbered();
        }
        m
    }
}
