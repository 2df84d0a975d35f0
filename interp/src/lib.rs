//! `lathe-interp` — the reference interpreter: the executable semantics of every op.
//!
//! It is the oracle that passes, kernels and artifacts are checked against, so it favours
//! clarity of semantics, but it is not a toy: matrix products go through a real CPU GEMM and
//! the heavy ops run on rayon, so model tests finish in seconds. Each op computes in f32 and
//! rounds its results to their IR dtypes ([`tensor::round_slice`]).
//!
//! Run-time errors (an input of the wrong shape, a symbol above its bound, a token id outside
//! the vocabulary, a cache write past its capacity) are [`InterpError`]s, never panics.

pub mod cpu;
mod elementwise;
mod load;
pub mod tensor;

pub use load::CheckpointLoader;

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use elementwise::{binary, binary_in_place, broadcast_rows, unary, unary_in_place};
use lathe_ir::infer::type_str;
use lathe_ir::module::{Function, Graph, Module, ValueId, Weight, WeightId, WeightSource};
use lathe_ir::ops::{self, Op, ReduceKind};
use lathe_ir::types::{DType, Dim, SymbolId, TensorType};
use lathe_numerics as numerics;
use tensor::{broadcast_offsets, permute_offsets, round_slice, strides, take, Data, Tensor};

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InterpError {
    /// No function of that name.
    #[error("no function `@{0}` in the module (functions: {1})")]
    NoFunction(String, String),
    /// An argument is missing, unexpected, or does not match its declared type.
    #[error("input \"{name}\": {message}")]
    Input {
        /// Input name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A weight could not be loaded.
    #[error("weight `@{name}`: {message}")]
    Weight {
        /// Weight name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// An op failed on the values it was given.
    #[error("node {node} (`{op}`): {message}")]
    Op {
        /// Position of the node in the order.
        node: usize,
        /// Text name of the op.
        op: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The module does not verify.
    #[error("module does not verify: {0}")]
    Invalid(String),
}

/// Supplies the data of checkpoint weights. Loads may run on several threads at once.
pub trait WeightLoader: Sync {
    /// Loads `w` (of type `w.ty`). Called at most once per weight and run.
    fn load(&self, w: &Weight) -> Result<Tensor, String>;
}

/// A loader for modules whose weights are all synthetic; checkpoint weights are an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyntheticOnly;

impl WeightLoader for SyntheticOnly {
    fn load(&self, w: &Weight) -> Result<Tensor, String> {
        CheckpointLoader { checkpoint: None }.load(w)
    }
}

/// The data of a synthetic weight: element `i` is [`numerics::synthetic_value`]`(seed, i)`
/// rounded to the weight's dtype (integers take `trunc(100·v)`), identical on every backend.
pub fn synthetic_weight(ty: &TensorType, seed: u64) -> Result<Tensor, String> {
    let n = ty.const_elements().ok_or("synthetic weights need a constant shape")? as usize;
    let shape = ty.shape.iter().map(|d| d.as_const().unwrap_or(0) as usize).collect();
    let vals: Vec<f32> = (0..n as u64).map(|i| numerics::synthetic_value(seed, i)).collect();
    if ty.dtype.is_float() {
        Ok(Tensor::from_f32(ty.dtype, shape, vals))
    } else {
        Ok(Tensor::from_i64(ty.dtype, shape, vals.iter().map(|v| (v * 100.0) as i64).collect()))
    }
}

/// Runs function `func` of a verified module on named inputs; returns its named outputs in order
/// (unnamed outputs are called `out0`, `out1`, ...). A one-shot [`Session`].
pub fn run(
    m: &Module,
    func: &str,
    inputs: &HashMap<String, Tensor>,
    loader: &dyn WeightLoader,
) -> Result<Vec<(String, Tensor)>, InterpError> {
    Session::new(m, loader)?.run(func, inputs)
}

/// Function `func` of `m`, or an error listing the functions there are.
fn function<'m>(m: &'m Module, func: &str) -> Result<&'m Function, InterpError> {
    m.function(func).ok_or_else(|| {
        InterpError::NoFunction(
            func.into(),
            m.functions.iter().map(|f| format!("@{}", f.name)).collect::<Vec<_>>().join(", "),
        )
    })
}

/// Loads weight `w` through `loader` and checks it against its declared type.
fn load_weight(m: &Module, loader: &dyn WeightLoader, w: WeightId) -> Result<Tensor, InterpError> {
    let weight = &m.weights[w];
    let t = match &weight.source {
        // A derived weight is its graph, evaluated once with the interpreter's own ops (so it is
        // bit for bit what the same ops inline compute).
        WeightSource::Derived(g) => {
            let mut weights = HashMap::new();
            let mut env = Env { m, loader, syms: HashMap::new(), weights: &mut weights, profile: None };
            let mut outs = env.graph(g, Vec::new(), false)?;
            let t = outs.pop().ok_or_else(|| InterpError::Weight {
                name: weight.name.clone(),
                message: "its derived graph returns nothing".into(),
            })?;
            Arc::try_unwrap(t).unwrap_or_else(|t| (*t).clone())
        }
        _ => loader.load(weight).map_err(|message| InterpError::Weight { name: weight.name.clone(), message })?,
    };
    let want: Vec<usize> = weight.ty.shape.iter().map(|d| d.as_const().unwrap_or(0) as usize).collect();
    if t.shape != want || t.dtype != weight.ty.dtype {
        return Err(InterpError::Weight {
            name: weight.name.clone(),
            message: format!("loader gave {}{:?}, expected {}", t.dtype, t.shape, type_str(m, &weight.ty)),
        });
    }
    Ok(t)
}

/// The weights graph `g` reads, fusion bodies included, each once, in node order.
fn weights_read(g: &Graph, out: &mut Vec<WeightId>) {
    for &n in &g.order {
        match &g.nodes[n].op {
            Op::Weight(w) if !out.contains(w) => out.push(*w),
            Op::Fusion(f) => weights_read(&f.body, out),
            _ => {}
        }
    }
}

/// A verified module with its weights loaded once and kept across runs (a decode loop, a
/// benchmark).
pub struct Session<'a> {
    m: &'a Module,
    loader: &'a dyn WeightLoader,
    weights: HashMap<usize, Arc<Tensor>>,
    /// The functions whose weights are all loaded.
    preloaded: std::collections::HashSet<String>,
    profile: Option<std::collections::BTreeMap<&'static str, (u64, std::time::Duration)>>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("module", &self.m.name).field("weights_loaded", &self.weights.len()).finish()
    }
}

impl<'a> Session<'a> {
    /// Verifies `m`; weights are loaded on first use.
    pub fn new(m: &'a Module, loader: &'a dyn WeightLoader) -> Result<Self, InterpError> {
        lathe_ir::verify::verify(m).map_err(|e| InterpError::Invalid(e.to_string()))?;
        Ok(Session { m, loader, weights: HashMap::new(), preloaded: Default::default(), profile: None })
    }

    /// Starts recording the time spent in each op (by text name) over the following runs.
    pub fn enable_profile(&mut self) {
        self.profile.get_or_insert_with(Default::default);
    }

    /// `(op, calls, total time)` recorded so far, most expensive first.
    pub fn profile(&self) -> Vec<(&'static str, u64, std::time::Duration)> {
        let mut v: Vec<_> = self.profile.iter().flatten().map(|(k, (n, t))| (*k, *n, *t)).collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.2));
        v
    }

    /// [`Self::profile`], after which the record starts again from nothing (profiling stays on
    /// if it was on).
    pub fn take_profile(&mut self) -> Vec<(&'static str, u64, std::time::Duration)> {
        let v = self.profile();
        if let Some(p) = self.profile.as_mut() {
            p.clear();
        }
        v
    }

    /// Loads, on all cores, every weight function `func` reads that is not loaded yet (a run
    /// does this first; call it to time the loading apart). A failure reports the first failing
    /// weight in node order, as a sequential load would.
    pub fn load_weights(&mut self, func: &str) -> Result<(), InterpError> {
        let f = function(self.m, func)?;
        self.preload(f)
    }

    /// [`Self::load_weights`] of graph `g`: reading and decoding a checkpoint is most of a
    /// first run.
    fn preload(&mut self, f: &Function) -> Result<(), InterpError> {
        // Every run calls this (each decode step): once a function's weights are in, it is free.
        if self.preloaded.contains(&f.name) {
            return Ok(());
        }
        let g = &f.graph;
        let mut ids = Vec::new();
        weights_read(g, &mut ids);
        // Derived weights read the weights they are computed from: those load in parallel with
        // the rest, then the derived ones are evaluated, each once, from the session's copies.
        let derived_sources = ids.iter().filter_map(|w| match &self.m.weights[*w].source {
            WeightSource::Derived(d) => Some(d.as_ref()),
            _ => None,
        });
        let mut sources = Vec::new();
        for d in derived_sources {
            weights_read(d, &mut sources);
        }
        let mut plain: Vec<WeightId> = sources.into_iter().chain(ids.iter().copied()).collect();
        let mut seen = std::collections::HashSet::new();
        plain.retain(|w| {
            seen.insert(*w)
                && !self.weights.contains_key(&w.index())
                && !matches!(self.m.weights[*w].source, WeightSource::Derived(_))
        });
        let (m, loader) = (self.m, self.loader);
        let loaded: Vec<Result<Tensor, InterpError>> = plain.par_iter().map(|&w| load_weight(m, loader, w)).collect();
        for (w, t) in plain.into_iter().zip(loaded) {
            self.weights.insert(w.index(), Arc::new(t?));
        }
        let mut env = Env { m, loader, syms: HashMap::new(), weights: &mut self.weights, profile: None };
        for w in ids {
            env.weight(w).map_err(|e| match e {
                Fail::Msg(message) => InterpError::Weight { name: m.weights[w].name.clone(), message },
                Fail::Nested(e) => e,
            })?;
        }
        self.preloaded.insert(f.name.clone());
        Ok(())
    }

    /// Runs `func` on named inputs, as [`run`].
    pub fn run(&mut self, func: &str, inputs: &HashMap<String, Tensor>) -> Result<Vec<(String, Tensor)>, InterpError> {
        self.run_owned(func, inputs.clone())
    }

    /// [`Self::run`] on inputs it may consume: a cache passed in is updated in place instead of
    /// copied, so a decode step costs what it writes, not the size of its caches.
    pub fn run_owned(
        &mut self,
        func: &str,
        mut inputs: HashMap<String, Tensor>,
    ) -> Result<Vec<(String, Tensor)>, InterpError> {
        let m = self.m;
        let f = function(m, func)?;
        for name in inputs.keys() {
            if !f.graph.inputs().any(|(n, _)| n == name) {
                return Err(InterpError::Input { name: name.clone(), message: format!("`@{func}` has no such input") });
            }
        }
        let mut args = Vec::new();
        for (name, _) in f.graph.inputs() {
            let t = inputs
                .remove(name)
                .ok_or_else(|| InterpError::Input { name: name.into(), message: "missing".into() })?;
            args.push(Arc::new(t));
        }
        // Inputs are present before any weight is read; their types are checked as they bind.
        self.preload(f)?;
        let mut env = Env {
            m,
            loader: self.loader,
            syms: HashMap::new(),
            weights: &mut self.weights,
            profile: self.profile.as_mut(),
        };
        let outs = env.graph(&f.graph, args, true)?;
        let outs = outs.into_iter().map(|t| Arc::try_unwrap(t).unwrap_or_else(|t| (*t).clone()));
        Ok(f.graph
            .outputs
            .iter()
            .zip(outs)
            .enumerate()
            .map(|(i, (o, t))| {
                let name = if o.name.is_empty() { format!("out{i}") } else { o.name.clone() };
                (name, t)
            })
            .collect())
    }
}

/// A zero tensor of type `ty`, its symbolic dims (a batch) taken as 1.
pub fn zeros(ty: &TensorType) -> Tensor {
    let shape: Vec<usize> = ty.shape.iter().map(|d| if let Dim::Const(c) = d { *c as usize } else { 1 }).collect();
    let numel = shape.iter().product();
    if ty.dtype.is_float() {
        Tensor::from_f32(ty.dtype, shape, vec![0.0; numel])
    } else {
        Tensor::from_i64(ty.dtype, shape, vec![0; numel])
    }
}

/// Empty caches for one sequence of `f`: a zero tensor (see [`zeros`]) for every input whose
/// role is a cache, keyed by the input's name.
pub fn zero_caches(f: &Function) -> HashMap<String, Tensor> {
    f.graph
        .params()
        .filter(|(i, _)| i.role.and_then(lathe_ir::InputRole::cache).is_some())
        .map(|(i, _)| (i.name.clone(), zeros(&i.ty)))
        .collect()
}

/// Elementwise maps at least this long run in parallel.
const PARALLEL_MIN: usize = 1 << 16;

/// The largest tensor the interpreter materializes (16 GiB of f32): beyond it a run fails
/// with an error instead of exhausting memory.
pub const MAX_ELEMENTS: usize = 1 << 32;

/// Evaluates one op on concrete operands (constant shapes only: no symbol is bound). Used by
/// constant folding, so that folding computes exactly what the interpreter would.
pub fn eval_op(m: &Module, op: &Op, args: &[&Tensor], types: &[&TensorType]) -> Result<Vec<Tensor>, InterpError> {
    let mut weights = HashMap::new();
    let mut env = Env { m, loader: &SyntheticOnly, syms: HashMap::new(), weights: &mut weights, profile: None };
    env.eval(op, args, types).map_err(|e| match e {
        Fail::Msg(message) => op_err(0, op, message),
        Fail::Nested(e) => e,
    })
}

struct Env<'a> {
    m: &'a Module,
    loader: &'a dyn WeightLoader,
    syms: HashMap<SymbolId, usize>,
    weights: &'a mut HashMap<usize, Arc<Tensor>>,
    /// Time spent per op name, when the session profiles.
    profile: Option<&'a mut std::collections::BTreeMap<&'static str, (u64, std::time::Duration)>>,
}

fn op_err(node: usize, op: &Op, message: impl Into<String>) -> InterpError {
    InterpError::Op { node, op: op.name(), message: message.into() }
}

impl Env<'_> {
    /// Binds the symbols of `ty` against a concrete shape, checking bounds and consistency.
    fn bind(&mut self, ty: &TensorType, t: &Tensor) -> Result<(), String> {
        let want = type_str(self.m, ty);
        let storage_ok = match &t.data {
            Data::F(v) => t.dtype.is_float() && v.len() == t.numel(),
            Data::I(v) => !t.dtype.is_float() && v.len() == t.numel(),
        };
        if !storage_ok {
            return Err(format!("holds data that does not match its dtype {} and shape {:?}", t.dtype, t.shape));
        }
        if t.dtype != ty.dtype || t.shape.len() != ty.rank() {
            return Err(format!("expected {want}, got {}{:?}", t.dtype, t.shape));
        }
        for (d, &n) in ty.shape.iter().zip(&t.shape) {
            match *d {
                Dim::Const(c) if c as usize != n => {
                    return Err(format!("expected {want}, got {}{:?}", t.dtype, t.shape))
                }
                Dim::Const(_) => {}
                Dim::Sym(s) => {
                    let sym = &self.m.symbols[s];
                    if n == 0 || n as u64 > sym.max {
                        return Err(format!("{} = {n} is outside 1..={}", sym.name, sym.max));
                    }
                    if let Some(&prev) = self.syms.get(&s) {
                        if prev != n {
                            return Err(format!("{} = {n}, but an earlier input bound it to {prev}", sym.name));
                        }
                    }
                    self.syms.insert(s, n);
                }
            }
        }
        Ok(())
    }

    /// The concrete shape of a type under the current symbol bindings.
    fn shape_of(&self, ty: &TensorType) -> Result<Vec<usize>, String> {
        let shape: Vec<usize> = ty
            .shape
            .iter()
            .map(|d| match *d {
                Dim::Const(c) => Ok(c as usize),
                Dim::Sym(s) => self
                    .syms
                    .get(&s)
                    .copied()
                    .ok_or_else(|| format!("symbol {} is not bound by any input", self.m.symbols[s].name)),
            })
            .collect::<Result<_, _>>()?;
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        match numel {
            Some(n) if n <= MAX_ELEMENTS => Ok(shape),
            _ => Err(format!("a tensor of shape {shape:?} exceeds the interpreter's limit of {MAX_ELEMENTS} elements")),
        }
    }

    fn graph(&mut self, g: &Graph, args: Vec<Arc<Tensor>>, top: bool) -> Result<Vec<Arc<Tensor>>, InterpError> {
        // Free each value after its last use to keep the peak near what a real plan needs.
        let mut last_use = vec![usize::MAX; g.values.len()];
        for (i, &n) in g.order.iter().enumerate() {
            for a in &g.nodes[n].args {
                last_use[a.index()] = i;
            }
        }
        for o in &g.outputs {
            last_use[o.value.index()] = usize::MAX;
        }
        // Every argument binds its symbols before any node runs: a symbol is a property of the
        // call, whichever node happens to come first in the order.
        if top {
            let inputs = g.order.iter().filter_map(|&n| match &g.nodes[n].op {
                Op::Input(inp) => Some(inp),
                _ => None,
            });
            for (inp, t) in inputs.zip(&args) {
                self.bind(&inp.ty, t).map_err(|message| InterpError::Input { name: inp.name.clone(), message })?;
            }
        }
        // Values are shared, not copied: a weight read, a fusion operand or an output is an Arc.
        let mut vals: Vec<Option<Arc<Tensor>>> = vec![None; g.values.len()];
        let mut args = args.into_iter();
        for (i, &n) in g.order.iter().enumerate() {
            let node = &g.nodes[n];
            let results: Vec<Arc<Tensor>> = if let Op::Input(_) = &node.op {
                vec![args.next().ok_or_else(|| op_err(i, &node.op, "missing argument"))?]
            } else if let Op::Weight(w) = &node.op {
                vec![self.weight(*w).map_err(|e| match e {
                    Fail::Msg(m) => op_err(i, &node.op, m),
                    Fail::Nested(e) => e,
                })?]
            } else if let Op::Fusion(f) = &node.op {
                // Operands that die here are handed over, not shared, so the body may reuse them.
                let mut args = Vec::with_capacity(node.args.len());
                for (k, a) in node.args.iter().enumerate() {
                    let once = !node.args[..k].contains(a) && !node.args[k + 1..].contains(a);
                    let v =
                        if last_use[a.index()] == i && once { vals[a.index()].take() } else { vals[a.index()].clone() };
                    args.push(v.ok_or_else(|| op_err(i, &node.op, "operand was freed"))?);
                }
                self.graph(&f.body, args, false)?
            } else {
                let types: Vec<&TensorType> = node.results.iter().map(|&r| &g.values[r].ty).collect();
                let t0 = std::time::Instant::now();
                let dying = |v: &ValueId| last_use[v.index()] == i;
                let r = match self.in_place(&node.op, &node.args, dying, &mut vals, &types) {
                    Some(r) => r.map(|t| vec![t]),
                    None => {
                        let operands: Vec<&Tensor> = node
                            .args
                            .iter()
                            .map(|a| vals[a.index()].as_deref().ok_or_else(|| op_err(i, &node.op, "operand was freed")))
                            .collect::<Result<_, _>>()?;
                        self.eval(&node.op, &operands, &types)
                    }
                }
                .map_err(|e| match e {
                    Fail::Msg(m) => op_err(i, &node.op, m),
                    Fail::Nested(e) => e,
                })?;
                if let Some(p) = self.profile.as_deref_mut() {
                    let e = p.entry(node.op.name()).or_default();
                    e.0 += 1;
                    e.1 += t0.elapsed();
                }
                r.into_iter().map(Arc::new).collect()
            };
            for (&r, t) in node.results.iter().zip(results) {
                vals[r.index()] = Some(t);
            }
            for a in &node.args {
                if last_use[a.index()] == i {
                    vals[a.index()] = None;
                }
            }
        }
        g.outputs
            .iter()
            .map(|o| {
                vals[o.value.index()].clone().ok_or_else(|| InterpError::Invalid("output was never computed".into()))
            })
            .collect()
    }

    /// Reshapes, float maps and cache writes whose operand dies at this node and is held by
    /// nothing else reuse its buffer instead of allocating: `None` when the op or its operands do not allow
    /// it. The results are those of [`Self::eval`] exactly.
    fn in_place(
        &self,
        op: &Op,
        args: &[ValueId],
        dying: impl Fn(&ValueId) -> bool,
        vals: &mut [Option<Arc<Tensor>>],
        types: &[&TensorType],
    ) -> Option<Result<Tensor, Fail>> {
        fn take_dying(vals: &mut [Option<Arc<Tensor>>], v: usize) -> Option<Tensor> {
            let arc = vals[v].take()?;
            Arc::try_unwrap(arc).map_err(|arc| vals[v] = Some(arc)).ok()
        }
        let is_float = |v: &ValueId| vals[v.index()].as_ref().is_some_and(|t| matches!(t.data, Data::F(_)));
        match (op, args) {
            (Op::Reshape(_), [x]) if dying(x) => {
                let shape = match types.first().map(|ty| self.shape_of(ty)) {
                    Some(Ok(s)) => s,
                    _ => return None,
                };
                let mut t = take_dying(vals, x.index())?;
                if shape.iter().product::<usize>() != t.numel() {
                    return Some(Err(Fail::Msg(format!("cannot reshape {:?} to {:?}", t.shape, shape))));
                }
                t.shape = shape;
                Some(Ok(t))
            }
            (Op::Unary(u), [x]) if dying(x) && is_float(x) => {
                Some(Ok(unary_in_place(*u, take_dying(vals, x.index())?)))
            }
            (Op::ScatterCache, [cache, new, past])
                if dying(cache)
                    && cache != new
                    && cache != past
                    && vals[new.index()].is_some()
                    && vals[past.index()].is_some() =>
            {
                let mut c = take_dying(vals, cache.index())?;
                let (new, past) = (vals[new.index()].as_deref()?, vals[past.index()].as_deref()?);
                Some(scatter_rows(&mut c, new, past).map(|()| c))
            }
            (Op::Binary(b), [x, y]) if x != y && is_float(x) && is_float(y) => {
                let (tx, ty) = (vals[x.index()].as_ref()?, vals[y.index()].as_ref()?);
                if tx.shape != ty.shape {
                    return None;
                }
                let dtype = tx.dtype;
                let (own, other, own_is_lhs) = if dying(x) && Arc::strong_count(tx) == 1 {
                    (take_dying(vals, x.index())?, y, true)
                } else if dying(y) && Arc::strong_count(ty) == 1 {
                    (take_dying(vals, y.index())?, x, false)
                } else {
                    return None;
                };
                let other = vals[other.index()].as_deref()?.floats();
                Some(Ok(binary_in_place(*b, dtype, own, other, own_is_lhs)))
            }
            _ => None,
        }
    }

    /// A weight, loaded on first use and shared afterwards.
    fn weight(&mut self, w: WeightId) -> Result<Arc<Tensor>, Fail> {
        if let Some(t) = self.weights.get(&w.index()) {
            return Ok(t.clone());
        }
        let t = match &self.m.weights[w].source {
            // A derived weight is its graph, evaluated once with the interpreter's own ops (bit
            // for bit what the same ops inline compute), its sources read from this session.
            WeightSource::Derived(g) => {
                let t = self.graph(g, Vec::new(), false).map_err(Fail::Nested)?.pop();
                t.ok_or_else(|| Fail::Msg("its derived graph returns nothing".into()))?
            }
            _ => Arc::new(load_weight(self.m, self.loader, w).map_err(Fail::Nested)?),
        };
        self.weights.insert(w.index(), t.clone());
        Ok(t)
    }

    fn eval(&mut self, op: &Op, x: &[&Tensor], types: &[&TensorType]) -> Result<Vec<Tensor>, Fail> {
        let out_ty = types.first().copied();
        let out_dtype = out_ty.map_or(DType::F32, |t| t.dtype);
        let one = |t: Tensor| Ok(vec![t]);
        match op {
            Op::Input(_) => Err(Fail::Msg("input evaluated as an op".into())),
            Op::Weight(_) | Op::Fusion(_) => Err(Fail::Msg("evaluated by the graph walk".into())),
            Op::Constant(c) => {
                let shape = self.shape_of(&c.ty)?;
                let n: usize = shape.iter().product();
                let vals: Vec<f64> = if c.values.len() == 1 { vec![c.values[0]; n] } else { c.values.clone() };
                one(make(c.ty.dtype, shape, vals))
            }
            Op::Iota(io) => {
                let shape = self.shape_of(&io.ty)?;
                let s = strides(&shape);
                let n: usize = shape.iter().product();
                let vals = (0..n).map(|i| ((i / s[io.axis]) % shape[io.axis]) as f64).collect();
                one(make(io.ty.dtype, shape, vals))
            }
            Op::Matmul(mm) => one(matmul(x[0], x[1], mm, None)?),
            Op::ScaledMatmul(mm) => one(matmul(x[0], x[1], mm, Some((x[2], x[3])))?),
            Op::Attention(at) => {
                let (q, k, v) = (x[0], x[1], x[2]);
                let d = cpu::AttnDims {
                    batch: q.shape[0],
                    q_len: q.shape[1],
                    kv_cap: k.shape[1],
                    q_heads: q.shape[2],
                    kv_heads: k.shape[2],
                    head_dim: q.shape[3],
                    v_dim: v.shape[3],
                };
                let mask = at.mask;
                let mut out = vec![0f32; d.batch * d.q_len * d.q_heads * d.v_dim];
                cpu::attention(&d, q.floats(), k.floats(), v.floats(), x[3].ints(), mask, at.scale as f32, &mut out)
                    .map_err(|e| Fail::Msg(e.0))?;
                one(Tensor::from_f32(q.dtype, vec![d.batch, d.q_len, d.q_heads, d.v_dim], out))
            }
            Op::Rope(r) => {
                let t = x[0];
                let dims = [t.shape[0], t.shape[1], t.shape[2], t.shape[3]];
                let mut out = vec![0f32; t.numel()];
                cpu::rope(dims, t.floats(), x[1].ints(), r.theta, r.scale, &mut out);
                one(Tensor::from_f32(t.dtype, t.shape.clone(), out))
            }
            Op::ScanSsd(_) => {
                let (xx, s0) = (x[0], x[5]);
                let d = cpu::SsdDims {
                    batch: xx.shape[0],
                    seq: xx.shape[1],
                    heads: xx.shape[2],
                    head_dim: xx.shape[3],
                    groups: x[3].shape[2],
                    state: x[3].shape[3],
                };
                let mut y = vec![0f32; xx.numel()];
                let mut st = vec![0f32; s0.numel()];
                cpu::ssd_scan(
                    &d,
                    xx.floats(),
                    x[1].floats(),
                    x[2].floats(),
                    x[3].floats(),
                    x[4].floats(),
                    s0.floats(),
                    &mut y,
                    &mut st,
                );
                Ok(vec![
                    Tensor::from_f32(xx.dtype, xx.shape.clone(), y),
                    Tensor::from_f32(s0.dtype, s0.shape.clone(), st),
                ])
            }
            Op::Conv1dCausal => {
                let (xx, w, st) = (x[0], x[1], x[3]);
                let (b, s, c, width) = (xx.shape[0], xx.shape[1], xx.shape[2], w.shape[1]);
                let mut y = vec![0f32; xx.numel()];
                let mut so = vec![0f32; st.numel()];
                cpu::conv1d_causal(
                    b,
                    s,
                    c,
                    width,
                    xx.floats(),
                    w.floats(),
                    x[2].floats(),
                    st.floats(),
                    &mut y,
                    &mut so,
                );
                Ok(vec![
                    Tensor::from_f32(xx.dtype, xx.shape.clone(), y),
                    Tensor::from_f32(st.dtype, st.shape.clone(), so),
                ])
            }
            Op::Conv2dPatch(cp) => {
                let (img, w) = (x[0], x[1]);
                let p = cp.patch as usize;
                let (b, c, h, wd, o) = (img.shape[0], img.shape[1], img.shape[2], img.shape[3], w.shape[0]);
                let np = (h / p) * (wd / p);
                let mut out = vec![0f32; b * np * o];
                cpu::conv2d_patch(b, c, h, wd, p, o, img.floats(), w.floats(), x[2].floats(), &mut out);
                one(Tensor::from_f32(img.dtype, vec![b, np, o], out))
            }
            Op::Unary(u) => one(unary(*u, x[0])),
            Op::Binary(b) => one(binary(*b, x[0], x[1])),
            Op::Clamp(c) => {
                let t = x[0];
                one(match &t.data {
                    Data::F(v) => {
                        let (lo, hi) = (c.min.map(|v| v as f32), c.max.map(|v| v as f32));
                        let vals = v.iter().map(|&e| clampf(e, lo, hi)).collect();
                        Tensor::from_f32(t.dtype, t.shape.clone(), vals)
                    }
                    Data::I(v) => {
                        let vals = v
                            .iter()
                            .map(|&e| {
                                let e = c.min.map_or(e, |lo| e.max(lo.ceil() as i64));
                                c.max.map_or(e, |hi| e.min(hi.floor() as i64))
                            })
                            .collect();
                        Tensor::from_i64(t.dtype, t.shape.clone(), vals)
                    }
                })
            }
            Op::Where => {
                let shape = self.shape_of(out_ty.ok_or_else(|| Fail::Msg("no result".into()))?)?;
                let oc = broadcast_offsets(&x[0].shape, &shape);
                let oa = broadcast_offsets(&x[1].shape, &shape);
                let ob = broadcast_offsets(&x[2].shape, &shape);
                let cond = x[0].ints();
                one(match (&x[1].data, &x[2].data) {
                    (Data::F(a), Data::F(b)) => Tensor {
                        dtype: out_dtype,
                        shape,
                        data: Data::F(
                            oc.iter()
                                .zip(oa.iter().zip(&ob))
                                .map(|(&c, (&i, &j))| if cond[c] != 0 { a[i] } else { b[j] })
                                .collect(),
                        ),
                    },
                    (Data::I(a), Data::I(b)) => Tensor {
                        dtype: out_dtype,
                        shape,
                        data: Data::I(
                            oc.iter()
                                .zip(oa.iter().zip(&ob))
                                .map(|(&c, (&i, &j))| if cond[c] != 0 { a[i] } else { b[j] })
                                .collect(),
                        ),
                    },
                    _ => return Err(Fail::Msg("branches differ in storage".into())),
                })
            }
            Op::Cast(to) => one(x[0].cast(*to)),
            Op::Reduce(r) => one(reduce(x[0], r)),
            Op::Softmax(s) => {
                let t = x[0];
                let (outer, d, inner) = around(&t.shape, s.axis);
                let moved = move_axis_last(t.floats(), outer, d, inner);
                let mut out = vec![0f32; moved.len()];
                cpu::softmax(outer * inner, d, &moved, &mut out);
                one(Tensor::from_f32(t.dtype, t.shape.clone(), move_last_back(&out, outer, d, inner)))
            }
            Op::RmsNorm(n) => {
                let t = x[0];
                let d = t.shape.last().copied().unwrap_or(1);
                let rows = t.numel() / d.max(1);
                let mut out = vec![0f32; t.numel()];
                let gate = x.get(2).map(|z| z.floats());
                cpu::rms_norm(rows, d, n.groups as usize, t.floats(), x[1].floats(), gate, n.eps as f32, &mut out);
                one(Tensor::from_f32(t.dtype, t.shape.clone(), out))
            }
            Op::LayerNorm(n) => {
                let t = x[0];
                let d = t.shape.last().copied().unwrap_or(1);
                let rows = t.numel() / d.max(1);
                let mut out = vec![0f32; t.numel()];
                cpu::layer_norm(rows, d, t.floats(), x[1].floats(), x[2].floats(), n.eps as f32, &mut out);
                one(Tensor::from_f32(t.dtype, t.shape.clone(), out))
            }
            Op::Reshape(_) => {
                let shape = self.shape_of(out_ty.ok_or_else(|| Fail::Msg("no result".into()))?)?;
                if shape.iter().product::<usize>() != x[0].numel() {
                    return Err(Fail::Msg(format!("cannot reshape {:?} to {:?}", x[0].shape, shape)));
                }
                one(Tensor { dtype: x[0].dtype, shape, data: x[0].data.clone() })
            }
            Op::Transpose(perm) => {
                let t = x[0];
                let offs = permute_offsets(&t.shape, perm);
                one(gather_offsets(t, perm.iter().map(|&p| t.shape[p]).collect(), &offs))
            }
            Op::Slice(s) => {
                let t = x[0];
                let n = t.shape[s.axis] as i64;
                let norm = |i: i64| if i < 0 { i + n } else { i };
                let (a, b) = (norm(s.start), s.end.map_or(n, norm));
                if !(0 <= a && a < b && b <= n) {
                    return Err(Fail::Msg(format!(
                        "slice [{}:{}] is out of range for a dim of {n}",
                        s.start,
                        s.end.map_or(String::new(), |e| e.to_string())
                    )));
                }
                one(slice_axis(t, s.axis, a as usize, b as usize))
            }
            Op::Split(sp) => {
                let mut start = 0usize;
                Ok(sp
                    .sizes
                    .iter()
                    .map(|&n| {
                        let piece = slice_axis(x[0], sp.axis, start, start + n as usize);
                        start += n as usize;
                        piece
                    })
                    .collect())
            }
            Op::Concat(axis) => one(concat(x, *axis)),
            Op::Broadcast(_) => {
                let shape = self.shape_of(out_ty.ok_or_else(|| Fail::Msg("no result".into()))?)?;
                one(broadcast_rows(x[0], shape))
            }
            Op::Gather => {
                let (table, idx) = (x[0], x[1]);
                let v = table.shape[0];
                let row: usize = table.shape[1..].iter().product();
                let mut offs = Vec::with_capacity(idx.numel() * row);
                for &i in idx.ints() {
                    if i < 0 || i as usize >= v {
                        return Err(Fail::Msg(format!("index {i} is outside [0, {v})")));
                    }
                    offs.extend((i as usize * row)..(i as usize + 1) * row);
                }
                let mut shape = idx.shape.clone();
                shape.extend_from_slice(&table.shape[1..]);
                one(gather_offsets(table, shape, &offs))
            }
            Op::PixelShuffle(r) => {
                let t = x[0];
                let r = *r as usize;
                let (b, h, w, c) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3]);
                let (ho, wo, co) = (h / r, w / r, c * r * r);
                let mut offs = Vec::with_capacity(t.numel());
                for bi in 0..b {
                    for i in 0..ho {
                        for j in 0..wo {
                            for k in 0..co {
                                let (blk, ch) = (k / c, k % c);
                                let (di, dj) = (blk / r, blk % r);
                                offs.push(((bi * h + r * i + di) * w + r * j + dj) * c + ch);
                            }
                        }
                    }
                }
                one(gather_offsets(t, vec![b, ho, wo, co], &offs))
            }
            Op::ScatterCache => {
                let mut out = x[0].clone();
                scatter_rows(&mut out, x[1], x[2])?;
                one(out)
            }
            Op::Amax => {
                let m = x[0].floats().iter().fold(0f32, |m, v| if v.abs() > m || v.is_nan() { v.abs() } else { m });
                one(Tensor::from_f32(DType::F32, vec![], vec![m]))
            }
            Op::Quantize(to) => one(scale_by(x[0], x[1], *to, true)),
            Op::Dequantize(to) => one(scale_by(x[0], x[1], *to, false)),
            Op::Sample(s) => {
                let (logits, off) = (x[0], x[1].ints().first().copied().unwrap_or(0) as u64);
                let (b, v) = (logits.shape[0], logits.shape[1]);
                let params = cpu::SampleParams {
                    temperature: s.temperature as f32,
                    top_k: s.top_k.map(|k| k as usize),
                    top_p: s.top_p.map(|p| p as f32),
                };
                let key = [s.seed as u32, (s.seed >> 32) as u32];
                let ids = (0..b)
                    .map(|row| {
                        let w = numerics::philox4x32_10(
                            [off as u32, (off >> 32) as u32, row as u32, (row as u64 >> 32) as u32],
                            key,
                        )[0];
                        let u = numerics::uniform_f32(w);
                        cpu::sample_row(&logits.floats()[row * v..(row + 1) * v], &params, u) as i64
                    })
                    .collect();
                one(Tensor::from_i64(DType::I64, vec![b], ids))
            }
        }
    }
}

enum Fail {
    Msg(String),
    Nested(InterpError),
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Msg(s)
    }
}

/// `scatter_cache`: writes the rows of `new` `[B, S, ...]` into `cache` `[B, cap, ...]` at
/// rows `past[b]..past[b] + S` of each sequence.
fn scatter_rows(cache: &mut Tensor, new: &Tensor, past: &Tensor) -> Result<(), Fail> {
    let (b, cap, s) = (cache.shape[0], cache.shape[1], new.shape[1]);
    let row: usize = cache.shape[2..].iter().product();
    for bi in 0..b {
        let p = past.ints()[bi];
        // Checked: `past` is run-time data and may be anything, i64::MAX included.
        if usize::try_from(p).ok().and_then(|p| p.checked_add(s)).is_none_or(|end| end > cap) {
            return Err(Fail::Msg(format!(
                "rows [{p}, {}) of sequence {bi} exceed the cache capacity {cap}",
                i128::from(p) + s as i128
            )));
        }
        let dst = (bi * cap + p as usize) * row;
        let src = bi * s * row;
        match (&mut cache.data, &new.data) {
            (Data::F(o), Data::F(n)) => o[dst..dst + s * row].copy_from_slice(&n[src..src + s * row]),
            (Data::I(o), Data::I(n)) => o[dst..dst + s * row].copy_from_slice(&n[src..src + s * row]),
            _ => return Err(Fail::Msg("cache and rows differ in storage".into())),
        }
    }
    Ok(())
}

fn make(dtype: DType, shape: Vec<usize>, vals: Vec<f64>) -> Tensor {
    if dtype.is_float() {
        Tensor::from_f32(dtype, shape, vals.into_iter().map(|v| v as f32).collect())
    } else {
        Tensor::from_i64(dtype, shape, vals.into_iter().map(|v| v as i64).collect())
    }
}

fn clampf(e: f32, lo: Option<f32>, hi: Option<f32>) -> f32 {
    if e.is_nan() {
        return e;
    }
    let e = lo.map_or(e, |lo| e.max(lo));
    hi.map_or(e, |hi| e.min(hi))
}

fn gather_offsets(t: &Tensor, shape: Vec<usize>, offs: &[usize]) -> Tensor {
    let data = match &t.data {
        Data::F(v) => Data::F(take(v, offs)),
        Data::I(v) => Data::I(take(v, offs)),
    };
    Tensor { dtype: t.dtype, shape, data }
}

/// `(outer, d, inner)` sizes around `axis`.
fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (shape[..axis].iter().product(), shape[axis], shape[axis + 1..].iter().product())
}

fn move_axis_last(v: &[f32], outer: usize, d: usize, inner: usize) -> Vec<f32> {
    if inner == 1 {
        return v.to_vec();
    }
    let mut out = Vec::with_capacity(v.len());
    for o in 0..outer {
        for i in 0..inner {
            out.extend((0..d).map(|k| v[(o * d + k) * inner + i]));
        }
    }
    out
}

fn move_last_back(v: &[f32], outer: usize, d: usize, inner: usize) -> Vec<f32> {
    if inner == 1 {
        return v.to_vec();
    }
    let mut out = vec![0f32; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            for k in 0..d {
                out[(o * d + k) * inner + i] = v[(o * inner + i) * d + k];
            }
        }
    }
    out
}

fn slice_axis(t: &Tensor, axis: usize, a: usize, b: usize) -> Tensor {
    let (outer, d, inner) = around(&t.shape, axis);
    let mut shape = t.shape.clone();
    shape[axis] = b - a;
    // Rows [a, b) of each outer block are contiguous: copy them as runs.
    fn runs<T: Copy>(v: &[T], outer: usize, d: usize, inner: usize, a: usize, b: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(outer * (b - a) * inner);
        for o in 0..outer {
            out.extend_from_slice(&v[(o * d + a) * inner..(o * d + b) * inner]);
        }
        out
    }
    let data = match &t.data {
        Data::F(v) => Data::F(runs(v, outer, d, inner, a, b)),
        Data::I(v) => Data::I(runs(v, outer, d, inner, a, b)),
    };
    Tensor { dtype: t.dtype, shape, data }
}

fn concat(xs: &[&Tensor], axis: usize) -> Tensor {
    let first = xs[0];
    let outer: usize = first.shape[..axis].iter().product();
    let inner: usize = first.shape[axis + 1..].iter().product();
    let total: usize = xs.iter().map(|t| t.shape[axis]).sum();
    let mut shape = first.shape.clone();
    shape[axis] = total;
    let data = match &first.data {
        Data::F(_) => {
            let mut out = Vec::with_capacity(outer * total * inner);
            for o in 0..outer {
                for t in xs {
                    let n = t.shape[axis] * inner;
                    out.extend_from_slice(&t.floats()[o * n..(o + 1) * n]);
                }
            }
            Data::F(out)
        }
        Data::I(_) => {
            let mut out = Vec::with_capacity(outer * total * inner);
            for o in 0..outer {
                for t in xs {
                    let n = t.shape[axis] * inner;
                    out.extend_from_slice(&t.ints()[o * n..(o + 1) * n]);
                }
            }
            Data::I(out)
        }
    };
    Tensor { dtype: first.dtype, shape, data }
}

fn reduce(t: &Tensor, r: &ops::Reduce) -> Tensor {
    let rank = t.shape.len();
    // Move reduced axes last, then reduce contiguous rows in order.
    let mut perm: Vec<usize> = (0..rank).filter(|a| !r.axes.contains(a)).collect();
    perm.extend(&r.axes);
    let offs = permute_offsets(&t.shape, &perm);
    let kept: Vec<usize> = (0..rank).filter(|a| !r.axes.contains(a)).map(|a| t.shape[a]).collect();
    let rows: usize = kept.iter().product();
    let d: usize = r.axes.iter().map(|&a| t.shape[a]).product();
    let shape: Vec<usize> = (0..rank)
        .filter_map(|a| if r.axes.contains(&a) { r.keep_dims.then_some(1) } else { Some(t.shape[a]) })
        .collect();
    match &t.data {
        Data::F(v) => {
            let vals = (0..rows)
                .map(|i| {
                    let row = offs[i * d..(i + 1) * d].iter().map(|&o| v[o]);
                    match r.kind {
                        ReduceKind::Sum => row.sum::<f32>(),
                        ReduceKind::Mean => row.sum::<f32>() / d as f32,
                        ReduceKind::Max => row.fold(f32::NEG_INFINITY, |m, x| if x > m || x.is_nan() { x } else { m }),
                    }
                })
                .collect();
            Tensor::from_f32(t.dtype, shape, vals)
        }
        Data::I(v) => {
            let vals = (0..rows)
                .map(|i| {
                    let row = offs[i * d..(i + 1) * d].iter().map(|&o| v[o]);
                    match r.kind {
                        ReduceKind::Max => row.max().unwrap_or(i64::MIN),
                        _ => row.fold(0i64, i64::wrapping_add),
                    }
                })
                .collect();
            Tensor::from_i64(t.dtype, shape, vals)
        }
    }
}

/// `x / scale` (quantize, saturating into fp8) or `x · scale` (dequantize); a scale of rank 1
/// applies per element of the last axis.
fn scale_by(t: &Tensor, scale: &Tensor, to: DType, divide: bool) -> Tensor {
    let s = scale.floats();
    let last = t.shape.last().copied().unwrap_or(1).max(1);
    let vals = t
        .floats()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let sc = if s.len() == 1 { s[0] } else { s[i % last] };
            if divide {
                v / sc
            } else {
                v * sc
            }
        })
        .collect();
    Tensor::from_f32(to, t.shape.clone(), vals)
}

fn matmul(a: &Tensor, b: &Tensor, mm: &ops::Matmul, scales: Option<(&Tensor, &Tensor)>) -> Result<Tensor, Fail> {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k) = if mm.transpose_a { (a.shape[ra - 1], a.shape[ra - 2]) } else { (a.shape[ra - 2], a.shape[ra - 1]) };
    let n = if mm.transpose_b { b.shape[rb - 2] } else { b.shape[rb - 1] };
    let (batch_shape, a_stride, b_stride) = match (ra, rb) {
        (_, 2) => (a.shape[..ra - 2].to_vec(), m * k, 0),
        (2, _) => (b.shape[..rb - 2].to_vec(), 0, k * n),
        _ => (a.shape[..ra - 2].to_vec(), m * k, k * n),
    };
    let batch: usize = batch_shape.iter().product();
    let (av, bv);
    let (a_data, b_data): (&[f32], &[f32]) = match scales {
        None => (a.floats(), b.floats()),
        Some((sa, sb)) => {
            let s = sa.floats().first().copied().unwrap_or(1.0);
            av = a.floats().iter().map(|&v| v * s).collect::<Vec<f32>>();
            let sbv = sb.floats();
            bv = b
                .floats()
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    // Per-output-channel scale: channel = column n of the logical [K, N] matrix.
                    let ch = if sbv.len() == 1 {
                        0
                    } else if mm.transpose_b {
                        (i / k) % n
                    } else {
                        i % n
                    };
                    v * sbv[ch]
                })
                .collect::<Vec<f32>>();
            (&av, &bv)
        }
    };
    // Pure broadcast along a rank-2 rhs is one big GEMM over all batch rows when `a` is not
    // transposed: that is the shape of every linear layer.
    let mut out = vec![0f32; batch * m * n];
    if b_stride == 0 && !mm.transpose_a && batch > 1 {
        cpu::gemm(1, batch * m, k, n, a_data, 0, false, b_data, 0, mm.transpose_b, &mut out);
    } else {
        cpu::gemm(batch, m, k, n, a_data, a_stride, mm.transpose_a, b_data, b_stride, mm.transpose_b, &mut out);
    }
    round_slice(mm.out, &mut out);
    let mut shape = batch_shape;
    shape.extend([m, n]);
    Ok(Tensor { dtype: mm.out, shape, data: Data::F(out) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache written in place (directly and inside a fusion body, where the dying operand is
    /// handed over) gives what the copying path gives, and the caller's tensors stay as they
    /// were; `run_owned` consumes its inputs and agrees with `run`.
    #[test]
    fn caches_update_in_place_without_touching_the_callers_copy() {
        let src = r#"module @m {
  compute_dtype = f32
  func @step {
    %0 = input "k" : f32[1, 4, 2]
    %1 = input "v" : f32[1, 4, 2]
    %2 = input "rows" : f32[1, 1, 2]
    %3 = input "past" : i64[1]
    %4 = scatter_cache %0, %2, %3 : f32[1, 4, 2]
    %5 = fusion %1, %2, %3 {strategy=elementwise} {
      %0 = input "c" : f32[1, 4, 2]
      %1 = input "r" : f32[1, 1, 2]
      %2 = input "p" : i64[1]
      %3 = scatter_cache %0, %1, %2 : f32[1, 4, 2]
      return %3
    } : f32[1, 4, 2]
    return %4 as "k", %5 as "v"
  }
}"#;
        let m = lathe_ir::text::parse::parse_module(src).expect("parses");
        let cache: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let inputs = HashMap::from([
            ("k".to_string(), Tensor::from_f32(DType::F32, vec![1, 4, 2], cache.clone())),
            ("v".to_string(), Tensor::from_f32(DType::F32, vec![1, 4, 2], cache.clone())),
            ("rows".to_string(), Tensor::from_f32(DType::F32, vec![1, 1, 2], vec![-1.0, -2.0])),
            ("past".to_string(), Tensor::from_i64(DType::I64, vec![1], vec![2])),
        ]);
        let mut want = cache.clone();
        want[4..6].copy_from_slice(&[-1.0, -2.0]);
        let mut session = Session::new(&m, &SyntheticOnly).expect("session");
        let got = session.run("step", &inputs).expect("runs");
        assert_eq!(got[0].1.floats(), want.as_slice());
        assert_eq!(got[1].1.floats(), want.as_slice());
        assert_eq!(inputs["k"].floats(), cache.as_slice());
        assert_eq!(inputs["v"].floats(), cache.as_slice());
        let owned = session.run_owned("step", inputs.clone()).expect("runs");
        assert_eq!(owned, got);
        // A write past the capacity is still an error, in place too.
        let mut bad = inputs;
        bad.insert("past".into(), Tensor::from_i64(DType::I64, vec![1], vec![4]));
        let e = session.run_owned("step", bad).expect_err("past the end").to_string();
        assert!(e.contains("exceed the cache capacity 4"), "{e}");
    }

    /// Values that die at a reshape or an elementwise op are reused in place; values that live
    /// on (read again later, or returned) must come out untouched.
    #[test]
    fn buffer_reuse_never_clobbers_a_live_value() {
        let src = r#"module @m {
  compute_dtype = f32
  func @main {
    %0 = input "x" : f32[2, 3]
    %1 = silu %0 : f32[2, 3]
    %2 = add %0, %1 : f32[2, 3]
    %3 = reshape %2 : f32[3, 2]
    %4 = neg %3 : f32[3, 2]
    %5 = mul %4, %4 : f32[3, 2]
    %6 = reshape %5 : f32[2, 3]
    %7 = sub %1, %6 : f32[2, 3]
    %8 = exp %7 : f32[2, 3]
    return %2 as "sum", %8 as "out", %1 as "silu"
  }
}"#;
        let m = lathe_ir::text::parse::parse_module(src).expect("parses");
        let x: Vec<f32> = vec![-2.0, -0.5, 0.0, 0.25, 1.5, 3.0];
        let inputs = HashMap::from([("x".to_string(), Tensor::from_f32(DType::F32, vec![2, 3], x.clone()))]);
        let got = run(&m, "main", &inputs, &SyntheticOnly).expect("runs");
        let silu: Vec<f32> = x.iter().map(|&v| numerics::silu(v)).collect();
        let sum: Vec<f32> = x.iter().zip(&silu).map(|(a, b)| a + b).collect();
        let out: Vec<f32> = silu.iter().zip(&sum).map(|(s, v)| numerics::exp(s - (-v) * (-v))).collect();
        assert_eq!(got[0].1.floats(), sum.as_slice());
        assert_eq!(got[0].1.shape, vec![2, 3]);
        assert_eq!(got[1].1.floats(), out.as_slice());
        assert_eq!(got[2].1.floats(), silu.as_slice());
        // The caller's input is not touched either.
        assert_eq!(inputs["x"].floats(), x.as_slice());
    }
}
