//! Running a scheduled function with its groups compiled: the `--backend sim` executor.
//!
//! The function's top level is data nodes and fusion groups. Each group whose template accepts
//! it (`elementwise`, `gather`, `conv1d_causal`, `scatter_cache`, `row_reduce`, `sample`) is
//! compiled to kernel IR and run in the SIMT simulator on the group's operands — symbols bound from the operands' shapes, weights loaded through the
//! same loader as the interpreter's, tensors passed as bytes of their dtypes; every other group
//! runs in the reference interpreter (its body as a function of a derived module). Both write the
//! same `Tensor`s, so any mix of the two computes the function. The report says which ran where,
//! and why a group was not compiled.

use std::collections::HashMap;

use lathe_interp::tensor::Tensor;
use lathe_interp::{Session, WeightLoader};
use lathe_ir::ops::{Fusion, KernelStrategy};
use lathe_ir::program::Stage;
use lathe_ir::{DType, Dim, Function, Graph, Module, Op, SymbolId, ValueId};
use lathe_kernel::sim::{run, Arg, Launch, Options};

use crate::templates::elementwise::{self, Binding};
use crate::templates::{attention_decode, gemv, row_reduce, sample, scatter_cache, ssd_decode};

/// A function's results, by name.
pub type Outputs = Vec<(String, Tensor)>;

/// Where one group ran.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupReport {
    /// The group's position among the function's groups.
    pub index: usize,
    /// Its strategy.
    pub strategy: KernelStrategy,
    /// `None`: compiled and run in the simulator; else why it ran in the interpreter.
    pub interpreted: Option<String>,
    /// Warp instructions the simulator executed for it.
    pub instructions: u64,
    /// Global sectors its loads and stores touched beyond the fewest that could hold their
    /// bytes (0: every request coalesced).
    pub excess_sectors: u64,
    /// Global sectors its loads and stores touched.
    pub sectors: u64,
    /// The most bytes one warp had in flight (the simulator's Little's-law counter).
    pub bytes_in_flight: u64,
    /// Extra shared-memory wavefronts its bank conflicts cost (0: none).
    pub bank_replays: u64,
    /// Per kernel parameter, what it is bound to and its requests' sectors and excess sectors
    /// (the weight stream apart from the activations; empty when interpreted).
    pub sectors_by_param: Vec<(Binding, u64, u64)>,
    /// With [`run_function_checked`], a compiled group's results against the interpreter's on
    /// the same operands (check (a) of DESIGN §10).
    pub check: Option<GroupCheck>,
}

impl GroupReport {
    /// The sectors and excess sectors of the parameter bound to `b` (zeros if none is).
    pub fn sectors_of(&self, b: &Binding) -> (u64, u64) {
        self.sectors_by_param.iter().find(|(x, _, _)| x == b).map_or((0, 0), |&(_, n, e)| (n, e))
    }
}

/// A compiled group's results against the interpreter's running its body on the same operands.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupCheck {
    /// Each float result's normwise error `max|sim − interp| / max|interp|` (the absolute
    /// error where the interpreter's result is all zeros; NaN where the two differ is
    /// infinite) and its dtype (whose rounding is the tolerance's `u`).
    pub floats: Vec<(f64, DType)>,
    /// Whether every integer result is identical.
    pub ints_equal: bool,
    /// The longest reduction in the group (a normalized row, a reduced axis, a convolution's
    /// taps, a scan's state; 1 without one): the tolerance's `K`.
    pub reduction: u64,
}

/// The longest reduction a group's body computes, with symbols at their bounds.
fn reduction_length(m: &Module, g: &Graph) -> u64 {
    let last = |v: ValueId| match g.values[v].ty.shape.last() {
        Some(Dim::Const(c)) => *c,
        Some(Dim::Sym(s)) => m.symbols.get(*s).map_or(1, |s| s.max),
        None => 1,
    };
    g.order
        .iter()
        .map(|&n| {
            let node = &g.nodes[n];
            match &node.op {
                Op::RmsNorm(a) => last(node.args[0]) / a.groups.max(1),
                Op::LayerNorm(_) | Op::Softmax(_) | Op::Reduce(_) | Op::Sample(_) => last(node.args[0]),
                Op::Amax => g.values[node.args[0]].ty.const_elements().unwrap_or(1),
                Op::Conv1dCausal => last(node.args[1]),
                Op::ScanSsd(_) => last(node.args[3]),
                // The keys a query attends to: the cache's capacity at most.
                Op::Attention(_) => match g.values[node.args[1]].ty.shape.get(1) {
                    Some(Dim::Const(c)) => *c,
                    Some(Dim::Sym(s)) => m.symbols.get(*s).map_or(1, |s| s.max),
                    None => 1,
                },
                _ => 1,
            }
        })
        .max()
        .unwrap_or(1)
        .max(1)
}

/// [`GroupCheck`] of `got` against `want`.
fn compare(got: &[Tensor], want: &[Tensor], reduction: u64) -> GroupCheck {
    let mut check = GroupCheck { floats: Vec::new(), ints_equal: true, reduction };
    for (a, b) in got.iter().zip(want) {
        if !a.dtype.is_float() {
            check.ints_equal &= a.ints() == b.ints() && a.shape == b.shape;
            continue;
        }
        let (x, y) = (a.floats(), b.floats());
        let scale = y.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
        let err = x.iter().zip(y).fold(if x.len() == y.len() { 0.0 } else { f64::INFINITY }, |m, (p, q)| {
            match (p.is_nan(), q.is_nan()) {
                (true, true) => m,
                (false, false) => m.max(f64::from((p - q).abs())),
                _ => f64::INFINITY,
            }
        });
        let e = if scale > 0.0 && scale.is_finite() { err / scale } else { err };
        check.floats.push((e, a.dtype));
    }
    check
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum SimRunError {
    /// The interpreter failed (on a group or a data node).
    #[error("interpreter: {0}")]
    Interp(String),
    /// The simulator reported an error in a compiled group (a code generator bug, or bad input).
    #[error("group {group} ({strategy}) in the simulator: {message}")]
    Sim {
        /// The group.
        group: usize,
        /// Its strategy.
        strategy: &'static str,
        /// The simulator's error.
        message: String,
    },
    /// Something about the function this executor does not handle.
    #[error("{0}")]
    Unsupported(String),
}

/// A group compiled by a template: its kernel, bindings and launch.
#[derive(Debug, Clone)]
pub enum Compiled {
    /// By the elementwise machinery (elementwise, gather, conv1d_causal, scatter_cache).
    Elementwise(elementwise::Compiled),
    /// One CTA per row: by `row_reduce` or `sample`.
    RowReduce(row_reduce::Compiled),
    /// By `gemv`.
    Gemv(gemv::Compiled),
    /// By `ssd_decode_step`.
    SsdDecode(ssd_decode::Compiled),
    /// By `attention_decode`.
    AttentionDecode(attention_decode::Compiled),
}

impl Compiled {
    /// The kernel.
    pub fn kernel(&self) -> &lathe_kernel::ir::Kernel {
        match self {
            Compiled::Elementwise(e) => &e.kernel,
            Compiled::RowReduce(r) => &r.kernel,
            Compiled::Gemv(g) => &g.kernel,
            Compiled::SsdDecode(d) => &d.kernel,
            Compiled::AttentionDecode(a) => &a.kernel,
        }
    }

    /// What each kernel parameter is bound to.
    pub fn bindings(&self) -> &[Binding] {
        match self {
            Compiled::Elementwise(e) => &e.bindings,
            Compiled::RowReduce(r) => &r.bindings,
            Compiled::Gemv(g) => &g.bindings,
            Compiled::SsdDecode(d) => &d.bindings,
            Compiled::AttentionDecode(a) => &a.bindings,
        }
    }

    /// The group's scratch buffers, as the launch rule has them ([`Binding::Scratch`] indexes
    /// them).
    pub fn scratch(&self) -> &[lathe_passes::launch::Scratch] {
        match self {
            Compiled::AttentionDecode(a) => &a.scratch,
            _ => &[],
        }
    }

    /// The group's launches, in order, for strategy `strategy`: a memset of its atomic
    /// accumulators first when it has any, then its kernel. The coverage test holds this and
    /// [`Compiled::scratch`] to the launch rule of L4 (`lathe_passes::launch`).
    pub fn launches(&self, strategy: KernelStrategy) -> Vec<lathe_passes::launch::LaunchKind> {
        use lathe_passes::launch::LaunchKind;
        let memset = matches!(self, Compiled::RowReduce(r) if !r.accumulators.is_empty());
        let mut v = Vec::new();
        if memset {
            v.push(LaunchKind::Memset);
        }
        v.push(LaunchKind::Kernel(strategy));
        v
    }

    /// The launch for dimensions of the values `dim` gives.
    pub fn launch(&self, dim: &dyn Fn(&Dim) -> u64) -> Launch {
        match self {
            Compiled::Elementwise(e) => {
                let n = e.elements.iter().map(|s| s.iter().map(dim).product::<u64>()).max().unwrap_or(1);
                let grid = n.div_ceil(u64::from(elementwise::BLOCK)).max(1) as u32;
                Launch { grid: [grid, 1, 1], block: [elementwise::BLOCK, 1, 1] }
            }
            Compiled::RowReduce(r) => {
                let rows: u64 = r.rows.iter().map(dim).product();
                Launch { grid: [(rows * r.groups).max(1) as u32, 1, 1], block: [row_reduce::BLOCK, 1, 1] }
            }
            Compiled::Gemv(g) => Launch {
                grid: [g.columns.div_ceil(u64::from(gemv::WARPS)).max(1) as u32, 1, 1],
                block: [gemv::BLOCK, 1, 1],
            },
            Compiled::SsdDecode(d) => {
                Launch { grid: [(dim(&d.batch) * d.heads).max(1) as u32, 1, 1], block: [ssd_decode::BLOCK, 1, 1] }
            }
            Compiled::AttentionDecode(a) => Launch {
                grid: [(dim(&a.batch) * a.kv_heads * a.splits).max(1) as u32, 1, 1],
                block: [attention_decode::BLOCK, 1, 1],
            },
        }
    }
}

/// The template's kernel of group `f` of `m`, named `name`; why not, if no template takes it.
pub fn compile_group(m: &Module, f: &Fusion, name: &str) -> Result<Compiled, String> {
    compile(m, f, name)
}

/// Tries the template of group `f`.
fn compile(m: &Module, f: &Fusion, name: &str) -> Result<Compiled, String> {
    match f.strategy {
        // A gather group is an elementwise one whose row number is data.
        KernelStrategy::Elementwise | KernelStrategy::Gather | KernelStrategy::Conv1dCausal => {
            elementwise::compile(m, f, name).map(Compiled::Elementwise).map_err(|e| e.to_string())
        }
        KernelStrategy::ScatterCache => {
            scatter_cache::compile(m, f, name).map(Compiled::Elementwise).map_err(|e| e.to_string())
        }
        // Quantizing and dequantizing are elementwise once the scale is known.
        KernelStrategy::RowReduce if row_reduce::scales_only(f) => {
            elementwise::compile(m, f, name).map(Compiled::Elementwise).map_err(|e| e.to_string())
        }
        KernelStrategy::RowReduce => {
            row_reduce::compile_any(m, f, name).map(Compiled::RowReduce).map_err(|e| e.to_string())
        }
        KernelStrategy::Gemv => gemv::compile(m, f, name).map(Compiled::Gemv).map_err(|e| e.to_string()),
        KernelStrategy::AttentionDecode => {
            attention_decode::compile(m, f, name).map(Compiled::AttentionDecode).map_err(|e| e.to_string())
        }
        KernelStrategy::SsdDecodeStep => {
            ssd_decode::compile(m, f, name).map(Compiled::SsdDecode).map_err(|e| e.to_string())
        }
        // One CTA per row, as a row reduction.
        KernelStrategy::Sample => sample::compile(m, f, name).map(Compiled::RowReduce).map_err(|e| e.to_string()),
        s => Err(format!("no {} template yet", s.name())),
    }
}

/// Runs function `func` of scheduled module `m` on `inputs`: compiled groups in the simulator,
/// the others in the interpreter. The function's results (as the interpreter names them) and
/// where each group ran.
pub fn run_function(
    m: &Module,
    func: &str,
    inputs: &HashMap<String, Tensor>,
    loader: &dyn WeightLoader,
) -> Result<(Outputs, Vec<GroupReport>), SimRunError> {
    execute(m, func, inputs, loader, false)
}

/// [`run_function`], with every compiled group also run in the interpreter on the same operands
/// and compared ([`GroupReport::check`]); the simulator's results go on.
pub fn run_function_checked(
    m: &Module,
    func: &str,
    inputs: &HashMap<String, Tensor>,
    loader: &dyn WeightLoader,
) -> Result<(Outputs, Vec<GroupReport>), SimRunError> {
    execute(m, func, inputs, loader, true)
}

/// Every weight graph `g` or its groups read, as a function of its own in `derived` (by name):
/// a derived weight (a layout or dtype the hoist pass made) is computed by the interpreter, not
/// loaded.
fn weight_functions(g: &Graph, derived: &mut Module) -> HashMap<lathe_ir::WeightId, String> {
    let mut fns: HashMap<lathe_ir::WeightId, String> = HashMap::new();
    let mut note = |g: &Graph| {
        for &n in &g.order {
            if let Op::Weight(w) = &g.nodes[n].op {
                if fns.contains_key(w) {
                    continue;
                }
                let mut body = Graph::default();
                let ty = g.values[g.nodes[n].results[0]].ty.clone();
                let r = body.push_node(Op::Weight(*w), Vec::new(), vec![ty]);
                body.outputs = vec![lathe_ir::Output::new("w", r[0])];
                let name = format!("__weight{}", w.index());
                derived.functions.push(Function::new(name.clone(), body));
                fns.insert(*w, name);
            }
        }
    };
    note(g);
    for &n in &g.order {
        if let Op::Fusion(fu) = &g.nodes[n].op {
            note(&fu.body);
        }
    }
    fns
}

/// The symbols' values, from the shapes of function `g`'s inputs.
fn input_symbols(g: &Graph, inputs: &HashMap<String, Tensor>) -> HashMap<SymbolId, u64> {
    let mut syms = HashMap::new();
    for &n in &g.order {
        if let Op::Input(i) = &g.nodes[n].op {
            if let Some(t) = inputs.get(&i.name) {
                for (d, &size) in i.ty.shape.iter().zip(&t.shape) {
                    if let Dim::Sym(s) = d {
                        syms.insert(*s, size as u64);
                    }
                }
            }
        }
    }
    syms
}

fn execute(
    m: &Module,
    func: &str,
    inputs: &HashMap<String, Tensor>,
    loader: &dyn WeightLoader,
    check: bool,
) -> Result<(Outputs, Vec<GroupReport>), SimRunError> {
    let f = m.function(func).ok_or_else(|| SimRunError::Unsupported(format!("no function `{func}`")))?;
    let g = &f.graph;
    let top_syms = input_symbols(g, inputs);
    let bound: Vec<(SymbolId, u64)> = top_syms.iter().map(|(s, v)| (*s, *v)).collect();
    // The groups as functions of a derived module, for the ones the interpreter runs.
    let mut derived = m.clone();
    derived.stage = Stage::Graph;
    // A body may use a symbol no operand of it binds (a broadcast to the batch): an extra input
    // per bound symbol, of that length, binds it.
    let with_symbols = |mut body: Graph| {
        for (s, _) in &bound {
            let ty = lathe_ir::TensorType { dtype: DType::F32, shape: vec![Dim::Sym(*s)] };
            let input = lathe_ir::ops::Input { name: format!("__sym{}", s.index()), ty: ty.clone(), role: None };
            body.push_node(Op::Input(input), Vec::new(), vec![ty]);
        }
        body
    };
    let weight_fns = weight_functions(g, &mut derived);
    let mut names = Vec::new();
    let mut loose: HashMap<lathe_ir::NodeId, String> = HashMap::new();
    for &n in &g.order {
        let node = &g.nodes[n];
        match &node.op {
            Op::Fusion(fu) => {
                let name = format!("__group{}", names.len());
                derived.functions.push(Function::new(name.clone(), with_symbols(fu.body.clone())));
                names.push(name);
            }
            Op::Input(_) | Op::Weight(_) => {}
            op => {
                // A node outside any group (a view between groups): one node of its own.
                let mut body = Graph::default();
                let args: Vec<ValueId> = node
                    .args
                    .iter()
                    .enumerate()
                    .map(|(k, a)| {
                        let ty = g.values[*a].ty.clone();
                        let input = lathe_ir::ops::Input { name: format!("a{k}"), ty: ty.clone(), role: None };
                        body.push_node(Op::Input(input), Vec::new(), vec![ty])[0]
                    })
                    .collect();
                let types = node.results.iter().map(|r| g.values[*r].ty.clone()).collect();
                let results = body.push_node(op.clone(), args, types);
                body.outputs =
                    results.iter().enumerate().map(|(k, v)| lathe_ir::Output::new(format!("r{k}"), *v)).collect();
                let name = format!("__node{}", loose.len());
                derived.functions.push(Function::new(name.clone(), with_symbols(body)));
                loose.insert(n, name);
            }
        }
    }
    let mut session = Session::new(&derived, loader).map_err(|e| SimRunError::Interp(e.to_string()))?;
    let mut env: HashMap<ValueId, Tensor> = HashMap::new();
    let mut reports = Vec::new();
    let mut index = 0;
    for &n in &g.order {
        let node = &g.nodes[n];
        match &node.op {
            Op::Input(i) => {
                let t =
                    inputs.get(&i.name).ok_or_else(|| SimRunError::Unsupported(format!("no input `{}`", i.name)))?;
                env.insert(node.results[0], t.clone());
            }
            Op::Weight(w) => {
                let t = load_weight(&mut session, &weight_fns, *w)?;
                env.insert(node.results[0], t);
            }
            Op::Fusion(fu) => {
                let args: Vec<&Tensor> = node
                    .args
                    .iter()
                    .map(|a| env.get(a).ok_or_else(|| SimRunError::Unsupported("an operand computed later".into())))
                    .collect::<Result<_, _>>()?;
                // The group's body in the interpreter, on the same operands.
                let interpret = |session: &mut Session| -> Result<Vec<Tensor>, SimRunError> {
                    let mut named: HashMap<String, Tensor> = body_inputs(&fu.body)
                        .into_iter()
                        .zip(args.iter())
                        .map(|(name, t)| (name, (*t).clone()))
                        .collect();
                    for (s, v) in &bound {
                        let t = Tensor::from_f32(DType::F32, vec![*v as usize], vec![0.0; *v as usize]);
                        named.insert(format!("__sym{}", s.index()), t);
                    }
                    let out = session.run(&names[index], &named).map_err(|e| SimRunError::Interp(e.to_string()))?;
                    Ok(out.into_iter().map(|(_, t)| t).collect())
                };
                let (outs, report) = match compile(m, fu, &format!("group{index}")) {
                    Ok(c) => {
                        let weights =
                            |w: lathe_ir::WeightId| load_weight(&mut session, &weight_fns, w).map(|t| t.to_le_bytes());
                        let (outs, counters) = simulate(fu, &c, &args, weights, index, &top_syms)?;
                        let check = match check {
                            true => {
                                let want = interpret(&mut session)?;
                                Some(compare(&outs, &want, reduction_length(m, &fu.body)))
                            }
                            false => None,
                        };
                        let report = GroupReport {
                            index,
                            strategy: fu.strategy,
                            interpreted: None,
                            instructions: counters.instructions,
                            excess_sectors: counters.global_excess_sectors,
                            sectors: counters.global_sectors,
                            bytes_in_flight: counters.max_bytes_in_flight,
                            bank_replays: counters.bank_replays,
                            sectors_by_param: c
                                .bindings()
                                .iter()
                                .enumerate()
                                .map(|(k, b)| {
                                    let (n, x) = counters.sectors_by_param.get(k).copied().unwrap_or((0, 0));
                                    (b.clone(), n, x)
                                })
                                .collect(),
                            check,
                        };
                        (outs, report)
                    }
                    Err(why) => {
                        let outs = interpret(&mut session)?;
                        let report = GroupReport {
                            index,
                            strategy: fu.strategy,
                            interpreted: Some(why),
                            instructions: 0,
                            excess_sectors: 0,
                            sectors: 0,
                            bytes_in_flight: 0,
                            bank_replays: 0,
                            sectors_by_param: Vec::new(),
                            check: None,
                        };
                        (outs, report)
                    }
                };
                for (r, t) in node.results.iter().zip(outs) {
                    env.insert(*r, t);
                }
                reports.push(report);
                index += 1;
            }
            _ => {
                let mut named = HashMap::new();
                for (k, a) in node.args.iter().enumerate() {
                    let t = env.get(a).ok_or_else(|| SimRunError::Unsupported("an operand computed later".into()))?;
                    named.insert(format!("a{k}"), t.clone());
                }
                for (s, v) in &bound {
                    named.insert(
                        format!("__sym{}", s.index()),
                        Tensor::from_f32(DType::F32, vec![*v as usize], vec![0.0; *v as usize]),
                    );
                }
                let out = session.run(&loose[&n], &named).map_err(|e| SimRunError::Interp(e.to_string()))?;
                for (r, (_, t)) in node.results.iter().zip(out) {
                    env.insert(*r, t);
                }
            }
        }
    }
    let outputs = g
        .outputs
        .iter()
        .map(|o| {
            env.get(&o.value)
                .cloned()
                .map(|t| (o.name.clone(), t))
                .ok_or_else(|| SimRunError::Unsupported(format!("result `{}` was not computed", o.name)))
        })
        .collect::<Result<_, _>>()?;
    Ok((outputs, reports))
}

/// Weight `w` as the interpreter has it (loaded, or computed for a derived weight).
fn load_weight(
    session: &mut Session<'_>,
    fns: &HashMap<lathe_ir::WeightId, String>,
    w: lathe_ir::WeightId,
) -> Result<Tensor, SimRunError> {
    let name = fns.get(&w).ok_or_else(|| SimRunError::Unsupported("a weight no function reads".into()))?;
    let mut out = session.run(name, &HashMap::new()).map_err(|e| SimRunError::Interp(e.to_string()))?;
    out.pop().map(|(_, t)| t).ok_or_else(|| SimRunError::Unsupported("a weight function without a result".into()))
}

/// Runs function `func` of scheduled module `m` as one program, the way a compiled step runs:
/// every group's kernel launched in order on shared buffers (`lathe_kernel::sim::run_program`),
/// each launch that the launch plan marks overlapping (`Launch::overlaps`) as a programmatic
/// dependent launch. Activations and non-zeroed scratch start poisoned, so a kernel reading
/// what no launch wrote fails (`UninitializedMemory`), and a dependent launch touching what its
/// predecessors still write before its `griddepcontrol.wait` fails (`DependentBeforeWait`). A
/// cache updated in place is its input's buffer. Every group must compile, and no launch may be
/// a memset (an fp8 activation scale's). The function's results, and each launch's counters.
pub fn run_as_program(
    m: &Module,
    func: &str,
    inputs: &HashMap<String, Tensor>,
    loader: &dyn WeightLoader,
) -> Result<(Outputs, Vec<lathe_kernel::sim::Counters>), SimRunError> {
    use lathe_kernel::sim::{run_program, Bind, Buffer, Step};
    let f = m.function(func).ok_or_else(|| SimRunError::Unsupported(format!("no function `{func}`")))?;
    let g = &f.graph;
    let syms = input_symbols(g, inputs);
    let dim = |d: &Dim| match d {
        Dim::Const(c) => *c,
        Dim::Sym(s) => syms.get(s).copied().unwrap_or(1),
    };
    let bytes_of =
        |ty: &lathe_ir::TensorType| ty.shape.iter().map(dim).product::<u64>() as usize * ty.dtype.size_bytes();
    let mut derived = m.clone();
    derived.stage = Stage::Graph;
    let weight_fns = weight_functions(g, &mut derived);
    let mut session = Session::new(&derived, loader).map_err(|e| SimRunError::Interp(e.to_string()))?;
    let plan = lathe_passes::launch::function_launches(m, f)
        .map_err(|(_, e)| SimRunError::Unsupported(format!("the launch plan: {e}")))?;
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut at: HashMap<ValueId, usize> = HashMap::new();
    let mut weight_at: HashMap<lathe_ir::WeightId, usize> = HashMap::new();
    let mut load = |w: lathe_ir::WeightId, buffers: &mut Vec<Buffer>| -> Result<usize, SimRunError> {
        if let Some(&i) = weight_at.get(&w) {
            return Ok(i);
        }
        let t = load_weight(&mut session, &weight_fns, w)?;
        buffers.push(Buffer::data(format!("weight {}", w.index()), t.to_le_bytes()));
        weight_at.insert(w, buffers.len() - 1);
        Ok(buffers.len() - 1)
    };
    // The function's inputs and weights first; then each group's kernel, its arguments and
    // whether it overlaps its predecessor.
    for &n in &g.order {
        let node = &g.nodes[n];
        match &node.op {
            Op::Input(i) => {
                let t =
                    inputs.get(&i.name).ok_or_else(|| SimRunError::Unsupported(format!("no input `{}`", i.name)))?;
                buffers.push(Buffer::data(i.name.clone(), t.to_le_bytes()));
                at.insert(node.results[0], buffers.len() - 1);
            }
            Op::Weight(w) => {
                let i = load(*w, &mut buffers)?;
                at.insert(node.results[0], i);
            }
            _ => {}
        }
    }
    let mut launches: Vec<(Compiled, Vec<Bind>, bool)> = Vec::new();
    for (index, &n) in g.order.iter().filter(|&&n| !matches!(g.nodes[n].op, Op::Input(_) | Op::Weight(_))).enumerate() {
        let node = &g.nodes[n];
        let Op::Fusion(fu) = &node.op else {
            return Err(SimRunError::Unsupported(format!("a `{}` outside any group", node.op.name())));
        };
        let c = compile(m, fu, &format!("group{index}")).map_err(SimRunError::Unsupported)?;
        let (first, last) = plan.span(n).ok_or_else(|| SimRunError::Unsupported("a group the plan lacks".into()))?;
        if first != last {
            return Err(SimRunError::Unsupported(format!("group {index}: a memset before its kernel")));
        }
        let overlaps = plan.launches[last].overlaps;
        let operand = |k: usize, at: &HashMap<ValueId, usize>| {
            node.args
                .get(k)
                .and_then(|v| at.get(v))
                .copied()
                .ok_or_else(|| SimRunError::Unsupported("an operand computed later".into()))
        };
        let mut args = Vec::new();
        for b in c.bindings() {
            args.push(match b {
                Binding::Operand(k) => Bind::Buffer(operand(*k, &at)?),
                Binding::Weight(v) => {
                    let Op::Weight(w) = &fu.body.nodes[fu.body.values[*v].def].op else {
                        return Err(SimRunError::Unsupported("a weight binding of another value".into()));
                    };
                    Bind::Buffer(load(*w, &mut buffers)?)
                }
                Binding::ResultInPlace { result, operand: k } => {
                    let i = operand(*k, &at)?;
                    at.insert(node.results[*result], i);
                    Bind::Buffer(i)
                }
                Binding::Result(k) => {
                    let r = node.results[*k];
                    buffers.push(Buffer::poisoned(format!("group {index} result {k}"), bytes_of(&g.values[r].ty)));
                    at.insert(r, buffers.len() - 1);
                    Bind::Buffer(buffers.len() - 1)
                }
                Binding::Symbol(sy) => Bind::Scalar(dim(&Dim::Sym(*sy))),
                Binding::Scratch(k) => {
                    let sc = &c.scratch()[*k];
                    let n = sc
                        .bytes(&|d| dim(&d))
                        .ok_or_else(|| SimRunError::Unsupported(format!("{} overflows", sc.name)))?;
                    let name = format!("group {index} {}", sc.name);
                    buffers.push(if sc.zero_at_load {
                        Buffer::data(name, vec![0; n as usize])
                    } else {
                        Buffer::poisoned(name, n as usize)
                    });
                    Bind::Buffer(buffers.len() - 1)
                }
            });
        }
        launches.push((c, args, overlaps));
    }
    let steps: Vec<Step<'_>> = launches
        .iter()
        .map(|(c, args, overlaps)| Step::Launch {
            kernel: c.kernel(),
            launch: c.launch(&dim),
            args: args.clone(),
            dependent: *overlaps,
        })
        .collect();
    let counters = run_program(&steps, &mut buffers, &Options::default()).map_err(|e| SimRunError::Sim {
        group: 0,
        strategy: "program",
        message: e.to_string(),
    })?;
    let mut outs = Vec::new();
    for o in &g.outputs {
        let i = *at
            .get(&o.value)
            .ok_or_else(|| SimRunError::Unsupported(format!("result `{}` computed by no group", o.name)))?;
        let ty = &g.values[o.value].ty;
        let shape = ty.shape.iter().map(|d| dim(d) as usize).collect();
        let t = Tensor::from_le_bytes(ty.dtype, shape, &buffers[i].bytes)
            .map_err(|e| SimRunError::Unsupported(format!("result `{}`: {e}", o.name)))?;
        outs.push((o.name.clone(), t));
    }
    Ok((outs, counters))
}

/// The names of a body's `input` nodes, in order (the group's operands).
fn body_inputs(g: &Graph) -> Vec<String> {
    g.order
        .iter()
        .filter_map(|&n| match &g.nodes[n].op {
            Op::Input(i) => Some(i.name.clone()),
            _ => None,
        })
        .collect()
}

/// Group `f` of `m` compiled and run in the simulator on `args` (its operands; no weights) for
/// `ctas` of its CTAs only — the first, the last and others drawn with `seed`
/// (`lathe_kernel::sim::sample_ctas`) — to check real-size kernels in bounded time. Results start
/// as all-ones bytes (NaN in every float format): the elements the sampled CTAs did not write
/// keep them.
pub fn simulate_sampled(
    m: &Module,
    f: &Fusion,
    args: &[&Tensor],
    ctas: usize,
    seed: u64,
) -> Result<Vec<Tensor>, SimRunError> {
    let c = compile(m, f, "group").map_err(SimRunError::Unsupported)?;
    let no_weights = |_| Err(SimRunError::Unsupported("a weight in a sampled run (pass it as an operand)".into()));
    simulate_with(f, &c, args, no_weights, 0, &HashMap::new(), Some((ctas, seed))).map(|(outs, _)| outs)
}

/// The simulator's counters for group `f` of `m` compiled, on `ctas` of its CTAs (sampled as
/// [`simulate_sampled`] does) with operands `args` and every weight all zeros — for what the
/// counters measure (sectors, requests, bytes in flight), not values. A weight's zeros are
/// allocated zeroed and touched only where the sampled CTAs read.
pub fn sampled_counters(
    m: &Module,
    f: &Fusion,
    args: &[&Tensor],
    ctas: usize,
    seed: u64,
) -> Result<lathe_kernel::sim::Counters, SimRunError> {
    let c = compile(m, f, "group").map_err(SimRunError::Unsupported)?;
    let zeros = |w: lathe_ir::WeightId| {
        let ty = &m.weights.get(w).ok_or_else(|| SimRunError::Unsupported("an unknown weight".into()))?.ty;
        let n: u64 = ty.shape.iter().map(|d| if let Dim::Const(c) = d { *c } else { 1 }).product();
        Ok(vec![0u8; n as usize * ty.dtype.size_bytes()])
    };
    simulate_with(f, &c, args, zeros, 0, &HashMap::new(), Some((ctas, seed))).map(|(_, counters)| counters)
}

/// Runs compiled group `f` on `args` in the simulator: its results and instruction count.
fn simulate(
    f: &Fusion,
    c: &Compiled,
    args: &[&Tensor],
    weights: impl FnMut(lathe_ir::WeightId) -> Result<Vec<u8>, SimRunError>,
    index: usize,
    top_syms: &HashMap<SymbolId, u64>,
) -> Result<(Vec<Tensor>, lathe_kernel::sim::Counters), SimRunError> {
    simulate_with(f, c, args, weights, index, top_syms, None)
}

/// [`simulate`], on all CTAs or (`sample = Some((n, seed))`) on `n` sampled ones.
fn simulate_with(
    f: &Fusion,
    c: &Compiled,
    args: &[&Tensor],
    mut weights: impl FnMut(lathe_ir::WeightId) -> Result<Vec<u8>, SimRunError>,
    index: usize,
    top_syms: &HashMap<SymbolId, u64>,
    sample: Option<(usize, u64)>,
) -> Result<(Vec<Tensor>, lathe_kernel::sim::Counters), SimRunError> {
    let g = &f.body;
    // Symbols from the operands' shapes (the function's bindings for the others).
    let mut syms: HashMap<SymbolId, u64> = top_syms.clone();
    let inputs: Vec<ValueId> =
        g.order.iter().filter(|&&n| matches!(g.nodes[n].op, Op::Input(_))).map(|&n| g.nodes[n].results[0]).collect();
    for (v, t) in inputs.iter().zip(args) {
        for (d, &size) in g.values[*v].ty.shape.iter().zip(&t.shape) {
            if let Dim::Sym(s) = d {
                syms.insert(*s, size as u64);
            }
        }
    }
    let concrete = |shape: &[Dim]| -> Result<Vec<usize>, SimRunError> {
        shape
            .iter()
            .map(|d| match d {
                Dim::Const(c) => Ok(*c as usize),
                Dim::Sym(s) => syms
                    .get(s)
                    .map(|&v| v as usize)
                    .ok_or_else(|| SimRunError::Unsupported("a symbol no operand binds".into())),
            })
            .collect()
    };
    for space in match c {
        Compiled::Elementwise(e) => e.elements.clone(),
        Compiled::RowReduce(r) => vec![r.rows.clone()],
        Compiled::Gemv(_) => Vec::new(),
        Compiled::SsdDecode(d) => vec![vec![d.batch]],
        Compiled::AttentionDecode(a) => vec![vec![a.batch]],
    } {
        concrete(&space)?;
    }
    let launch = c.launch(&|d: &Dim| match d {
        Dim::Const(v) => *v,
        Dim::Sym(s) => syms.get(s).copied().unwrap_or(1),
    });
    let (kernel, bindings) = (c.kernel(), c.bindings());
    let mut kargs = Vec::new();
    let mut results = Vec::new();
    for b in bindings {
        kargs.push(match b {
            Binding::Operand(k) => Arg::Buffer(args[*k].to_le_bytes()),
            Binding::Weight(v) => {
                let Op::Weight(w) = &g.nodes[g.values[*v].def].op else {
                    return Err(SimRunError::Unsupported("a weight binding of another value".into()));
                };
                Arg::Buffer(weights(*w)?)
            }
            Binding::ResultInPlace { result, operand } => {
                let ty = &g.values[g.outputs[*result].value].ty;
                results.push((kargs.len(), ty.dtype, concrete(&ty.shape)?));
                Arg::Buffer(args[*operand].to_le_bytes())
            }
            Binding::Result(k) => {
                let ty = &g.values[g.outputs[*k].value].ty;
                let shape = concrete(&ty.shape)?;
                let n: usize = shape.iter().product();
                results.push((kargs.len(), ty.dtype, shape));
                // Zeroed: what the launch rule's scratch zeroing gives an accumulating result;
                // all ones in a sampled run, to tell the elements it wrote.
                let fill = if sample.is_some() { 0xFF } else { 0 };
                Arg::Buffer(vec![fill; n * ty.dtype.size_bytes()])
            }
            Binding::Symbol(s) => {
                Arg::Scalar(*syms.get(s).ok_or_else(|| SimRunError::Unsupported("an unbound symbol".into()))?)
            }
            Binding::Scratch(k) => {
                let sc =
                    c.scratch().get(*k).ok_or_else(|| SimRunError::Unsupported("a scratch the rule lacks".into()))?;
                let bytes = sc
                    .bytes(&|d| match d {
                        Dim::Const(v) => v,
                        Dim::Sym(s) => syms.get(&s).copied().unwrap_or(1),
                    })
                    .ok_or_else(|| SimRunError::Unsupported(format!("{} overflows", sc.name)))?;
                // Zeroed where the rule zeroes it once; else all ones (NaN in every float
                // format), so that a read of what the launch did not write shows.
                Arg::Buffer(vec![if sc.zero_at_load { 0 } else { 0xFF }; bytes as usize])
            }
        });
    }
    let opts = match sample {
        Some((n, seed)) => Options {
            ctas: Some(lathe_kernel::sim::sample_ctas(launch.grid, n.saturating_sub(2), seed)),
            ..Options::default()
        },
        // A kernel whose CTAs hand data to each other (a split-KV combine through its
        // scratch) runs in forward and reverse CTA order too: another CTA arrives last, and
        // the results must be the same bits.
        None if !c.scratch().is_empty() => Options { cta_orders: 2, ..Options::default() },
        None => Options::default(),
    };
    let counters = run(kernel, &launch, &mut kargs, &opts).map_err(|e| SimRunError::Sim {
        group: index,
        strategy: f.strategy.name(),
        message: e.to_string(),
    })?;
    // The scratch the rule zeroes once must be left zero for the next launch.
    for (slot, b) in bindings.iter().enumerate() {
        if let (Binding::Scratch(k), Arg::Buffer(bytes)) = (b, &kargs[slot]) {
            if c.scratch().get(*k).is_some_and(|sc| sc.zero_at_load) && bytes.iter().any(|&x| x != 0) {
                return Err(SimRunError::Sim {
                    group: index,
                    strategy: f.strategy.name(),
                    message: format!("the launch left its {} non-zero", c.scratch()[*k].name),
                });
            }
        }
    }
    let mut outs = Vec::new();
    for (slot, dtype, shape) in results {
        let Arg::Buffer(bytes) = &kargs[slot] else {
            return Err(SimRunError::Unsupported("a result that is not a buffer".into()));
        };
        outs.push(
            Tensor::from_le_bytes(dtype, shape, bytes)
                .map_err(|e| SimRunError::Unsupported(format!("a kernel result of {e}")))?,
        );
    }
    Ok((outs, counters))
}

#[cfg(test)]
mod tests {
    use lathe_frontend::import::{import, ImportOptions};
    use lathe_interp::CheckpointLoader;
    use lathe_ir::program::InputRole;
    use lathe_passes::PassManager;

    use super::*;

    /// The `extend` program of a fixture from a non-empty cache: the simulator's groups (the
    /// cache writes among them) and the interpreter's give the same logits and caches within the
    /// tolerance of the model (the compiled transcendentals are within a few ulps of the
    /// interpreter's), and the cache rows the step does not write keep their bits.
    fn extend_matches(dir: &str) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(dir);
        let imp = import(&root, &ImportOptions { max_batch: 1, ..ImportOptions::default() }).expect("imports");
        let mut m = imp.module;
        PassManager::parse("default").expect("a pipeline").run(&mut m, &mut std::io::sink()).expect("schedules");
        let loader = CheckpointLoader { checkpoint: imp.checkpoint.as_ref() };
        let inputs = program_inputs(&m, "extend");
        let want = lathe_interp::run(&m, "extend", &inputs, &loader).expect("the interpreter runs");
        let (got, reports) = run_function(&m, "extend", &inputs, &loader).expect("runs");
        let sim: Vec<&str> = reports.iter().filter(|r| r.interpreted.is_none()).map(|r| r.strategy.name()).collect();
        assert!(sim.contains(&"scatter_cache"), "{dir}: the cache writes ran in the simulator: {sim:?}");
        assert!(got.iter().any(|(name, _)| name.contains("cache")), "{dir}: the updated caches are results");
        for ((name, a), (_, b)) in got.iter().zip(&want) {
            assert_eq!(a.shape, b.shape, "{dir} {name}");
            let (x, y) = (a.to_f64(), b.to_f64());
            lathe_tests::assert_close(&format!("{dir} {name}"), &x, &y, DType::F32, 4 * 64);
            if name.ends_with("k_cache") || name.ends_with("v_cache") {
                // Rows outside the written ones [past, past + S) keep the input's bits.
                let before = inputs[name.as_str()].floats();
                let row: usize = a.shape[2..].iter().product();
                for (r, (got_row, old_row)) in a.floats().chunks(row).zip(before.chunks(row)).enumerate() {
                    let t = r % a.shape[1];
                    if !(4..9).contains(&t) {
                        assert_eq!(got_row, old_row, "{dir} {name}: row {t} was not to be written");
                    }
                }
            }
        }
    }

    /// Inputs for program `func` of `m`: tokens, 4 past positions, caches and states already
    /// holding pseudo-random values; `S` = 5, other symbols 1.
    fn program_inputs(m: &Module, func: &str) -> HashMap<String, Tensor> {
        let f = m.functions.iter().find(|f| f.name == func).expect("the program");
        let mut inputs = HashMap::new();
        let mut seed = 3u32;
        for (i, _) in f.graph.params() {
            let shape = crate::testing::concrete(m, &i.ty.shape, &[("S", 5)]);
            let n: usize = shape.iter().product();
            let t = match i.role {
                Some(InputRole::Tokens) => {
                    Tensor::from_i64(DType::I64, shape, (0..n as i64).map(|k| (7 * k + 3) % 50).collect())
                }
                Some(InputRole::Past) => Tensor::from_i64(DType::I64, shape, vec![4; n]),
                _ => {
                    // A cache that already holds rows: the writes must leave them alone.
                    let vals = (0..n)
                        .map(|_| {
                            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                            (seed >> 9) as f32 / (1u32 << 23) as f32 - 0.5
                        })
                        .collect();
                    Tensor::from_f32(i.ty.dtype, shape, vals)
                }
            };
            inputs.insert(i.name.clone(), t);
        }
        inputs
    }

    /// The `decode` program of every fixture (one step from caches and states that hold
    /// values): each compiled group — the GEMVs with their norms, the Mamba-2 decode steps, the
    /// cache writes — against the interpreter on the same operands, within the shared
    /// tolerance; every fixture's step runs wholly compiled, and as one program of dependent
    /// launches ([`run_as_program`]) it gives the same bits.
    #[test]
    fn decode_steps_match_the_interpreter_per_kernel() {
        for dir in ["nemotron_h_tiny", "mamba2_tiny", "qwen2_tiny", "nemotron_h_real", "mamba2_real", "qwen2_real"] {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(dir);
            let opts = ImportOptions { max_batch: 1, compute_dtype: DType::BF16, ..ImportOptions::default() };
            let imp = import(&root, &opts).expect("imports");
            let mut m = imp.module;
            PassManager::parse("default").expect("a pipeline").run(&mut m, &mut std::io::sink()).expect("schedules");
            let loader = CheckpointLoader { checkpoint: imp.checkpoint.as_ref() };
            let inputs = program_inputs(&m, "decode");
            let (outs, reports) = run_function_checked(&m, "decode", &inputs, &loader).expect("runs");
            for r in reports.iter().filter(|r| r.interpreted.is_none()) {
                let c = r.check.as_ref().expect("checked");
                let what = format!("{dir}: decode group {} ({})", r.index, r.strategy.name());
                assert!(c.ints_equal, "{what}: integer results differ");
                for &(err, dtype) in &c.floats {
                    let tol = lathe_tests::tolerance(dtype, c.reduction as usize);
                    assert!(err <= tol, "{what}: normwise {err:.3e} over {tol:.3e} ({c:?})");
                }
            }
            let strategies: Vec<&str> = reports.iter().map(|r| r.strategy.name()).collect();
            assert!(strategies.contains(&"gemv"), "{dir}: {strategies:?}");
            let left: Vec<&GroupReport> = reports.iter().filter(|r| r.interpreted.is_some()).collect();
            assert!(left.is_empty(), "{dir}: the decode step runs compiled: {left:?}");
            // The same step as one program of launches on shared buffers, each kernel after a
            // kernel a programmatic dependent launch: no launch reads what none wrote or
            // touches an activation before its wait, and the results are the same bits.
            let (program, counters) =
                run_as_program(&m, "decode", &inputs, &loader).unwrap_or_else(|e| panic!("{dir}: {e}"));
            assert_eq!(counters.len(), reports.len(), "{dir}: one launch per group");
            assert_eq!(program.len(), outs.len());
            for ((name, a), (_, b)) in program.iter().zip(&outs) {
                assert_eq!(a.to_le_bytes(), b.to_le_bytes(), "{dir}: `{name}` differs as a program");
            }
        }
    }

    /// Check (a) of DESIGN §10, per kernel: in the `eval` program of every fixture (at f32 and
    /// bf16 compute; the real-size ones at bf16), each compiled group's results against the interpreter's on the same
    /// operands, within the shared tolerance of its result dtype and longest reduction
    /// (integers exactly).
    #[test]
    fn every_compiled_group_matches_the_interpreter_per_kernel() {
        let mut checked = 0;
        for dir in ["nemotron_h_tiny", "mamba2_tiny", "qwen2_tiny", "nemotron_h_real", "mamba2_real", "qwen2_real"] {
            // The real-size fixtures at bf16 alone: their GEMVs dominate the simulator's time.
            let dtypes: &[DType] = if dir.ends_with("_real") { &[DType::BF16] } else { &[DType::F32, DType::BF16] };
            for &compute_dtype in dtypes {
                let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(dir);
                let opts = ImportOptions { max_batch: 1, max_seq: Some(8), compute_dtype, shape_only: false };
                let imp = import(&root, &opts).expect("imports");
                let mut m = imp.module;
                PassManager::parse("default")
                    .expect("a pipeline")
                    .run(&mut m, &mut std::io::sink())
                    .expect("schedules");
                let f = m.functions.iter().find(|f| f.name == "eval").expect("an eval program");
                let (tokens, _) = f.graph.input_with_role(InputRole::Tokens).expect("tokens");
                let ids = (0..7).map(|k| (5 * k + 2) % 64).collect();
                let inputs = HashMap::from([(tokens.name.clone(), Tensor::from_i64(DType::I64, vec![1, 7], ids))]);
                let loader = CheckpointLoader { checkpoint: imp.checkpoint.as_ref() };
                let (_, reports) = run_function_checked(&m, "eval", &inputs, &loader).expect("runs");
                for r in reports.iter().filter(|r| r.interpreted.is_none()) {
                    let c = r.check.as_ref().expect("checked");
                    let what = format!("{dir} at {compute_dtype}: group {} ({})", r.index, r.strategy.name());
                    assert!(c.ints_equal, "{what}: integer results differ");
                    for &(err, dtype) in &c.floats {
                        let tol = lathe_tests::tolerance(dtype, c.reduction as usize);
                        assert!(err <= tol, "{what}: normwise {err:.3e} over {tol:.3e} ({c:?})");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "{checked} groups checked");
    }

    /// Coalescing (the simulator's `global_excess_sectors`): every template reads and writes
    /// contiguous, sector-aligned rows in full sectors — elementwise (f32 and bf16), every
    /// `row_reduce` form, gather, scatter_cache, conv1d_causal (its taps one vector load per
    /// channel), fp8 quantization (pairs stored by even lanes) and sample. A transposed operand
    /// is the control: its reads stride, and the counter sees it.
    #[test]
    fn templates_coalesce_on_contiguous_rows() {
        let x = ("x", "f32[4, 512]");
        let w = ("w", "f32[512]");
        let cases: Vec<(String, i64)> = vec![
            (
                crate::testing::one_group(&[x, ("y", "bf16[4, 512]")], "elementwise", "      %0 = input \"arg0\" : f32[4, 512]\n      %1 = input \"arg1\" : bf16[4, 512]\n      %2 = cast %1 : f32[4, 512]\n      %3 = add %0, %2 : f32[4, 512]\n      %4 = silu %3 : f32[4, 512]\n      %5 = cast %4 : bf16[4, 512]\n      return %4, %5\n", &["f32[4, 512]", "bf16[4, 512]"]),
                1,
            ),
            (
                crate::testing::one_group(&[x, w], "row_reduce", "      %0 = input \"arg0\" : f32[4, 512]\n      %1 = input \"arg1\" : f32[512]\n      %2 = rms_norm %0, %1 {eps=1e-5, groups=2} : f32[4, 512]\n      %3 = amax %2 : f32[]\n      return %2, %3\n", &["f32[4, 512]", "f32[]"]),
                1,
            ),
            (
                crate::testing::one_group(&[x, w], "row_reduce", "      %0 = input \"arg0\" : f32[4, 512]\n      %1 = input \"arg1\" : f32[512]\n      %2 = layer_norm %0, %1, %1 {eps=1e-5} : f32[4, 512]\n      return %2\n", &["f32[4, 512]"]),
                1,
            ),
            (
                crate::testing::one_group(&[x], "row_reduce", "      %0 = input \"arg0\" : f32[4, 512]\n      %1 = softmax %0 {axis=1} : f32[4, 512]\n      return %1\n", &["f32[4, 512]"]),
                1,
            ),
            (
                crate::testing::one_group(&[x], "row_reduce", "      %0 = input \"arg0\" : f32[4, 512]\n      %1 = reduce %0 {kind=sum, axes=[1]} : f32[4]\n      return %1\n", &["f32[4]"]),
                1,
            ),
            (
                crate::testing::one_group(&[("bf", "bf16[4, 512]"), ("s", "f32[]")], "row_reduce", "      %0 = input \"arg0\" : bf16[4, 512]\n      %1 = input \"arg1\" : f32[]\n      %2 = quantize %0, %1 : f8e4m3[4, 512]\n      return %2\n", &["f8e4m3[4, 512]"]),
                1,
            ),
            (
                crate::testing::one_group(&[("table", "f32[64, 256]"), ("ids", "i64[1, 8]")], "gather", "      %0 = input \"arg0\" : f32[64, 256]\n      %1 = input \"arg1\" : i64[1, 8]\n      %2 = gather %0, %1 : f32[1, 8, 256]\n      return %2\n", &["f32[1, 8, 256]"]),
                64,
            ),
            (
                crate::testing::one_group(&[("cache", "bf16[1, 16, 4, 64]"), ("new", "bf16[1, 4, 4, 64]"), ("past", "i64[1]")], "scatter_cache", "      %0 = input \"arg0\" : bf16[1, 16, 4, 64]\n      %1 = input \"arg1\" : bf16[1, 4, 4, 64]\n      %2 = input \"arg2\" : i64[1]\n      %3 = scatter_cache %0, %1, %2 : bf16[1, 16, 4, 64]\n      return %3\n", &["bf16[1, 16, 4, 64]"]),
                12,
            ),
            (
                crate::testing::one_group(&[("cx", "f32[1, 8, 256]"), ("cw", "f32[256, 4]"), ("cb", "f32[256]"), ("cs", "f32[1, 3, 256]")], "conv1d_causal", "      %0 = input \"arg0\" : f32[1, 8, 256]\n      %1 = input \"arg1\" : f32[256, 4]\n      %2 = input \"arg2\" : f32[256]\n      %3 = input \"arg3\" : f32[1, 3, 256]\n      %4:2 = conv1d.causal %0, %1, %2, %3 : f32[1, 8, 256], f32[1, 3, 256]\n      return %4#0, %4#1\n", &["f32[1, 8, 256]", "f32[1, 3, 256]"]),
                1,
            ),
            (
                crate::testing::one_group(&[("logits", "f32[2, 512]"), ("off", "i64[]")], "sample", "      %0 = input \"arg0\" : f32[2, 512]\n      %1 = input \"arg1\" : i64[]\n      %2 = sample %0, %1 {seed=3, temperature=0.9, top_k=8} : i64[2]\n      return %2\n", &["i64[2]"]),
                100,
            ),
        ];
        for (text, bound) in &cases {
            let r = crate::testing::run_group(text, *bound, &[]);
            assert_eq!(r.excess_sectors, 0, "{} group: uncoalesced requests\n{text}", r.strategy.name());
        }
        // The control: a transposed read strides by a row per lane.
        let text = crate::testing::one_group(&[("t", "f32[64, 64]")], "elementwise", "      %0 = input \"arg0\" : f32[64, 64]\n      %1 = transpose %0 {perm=[1, 0]} : f32[64, 64]\n      return %1\n", &["f32[64, 64]"]);
        assert!(crate::testing::run_group(&text, 1, &[]).excess_sectors > 0, "a transposed read is not coalesced");
    }

    #[test]
    fn extend_from_a_filled_cache_matches_the_interpreter() {
        extend_matches("qwen2_tiny");
        extend_matches("nemotron_h_tiny");
    }
}
