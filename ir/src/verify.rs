//! The verifier: collects every error with its location; handles and order first, then types.
//!
//! Contract: a module that verifies never makes a pass, codegen or the interpreter panic.

use std::collections::HashSet;
use std::fmt;

use crate::infer::{infer, type_str};
use crate::limits;
use crate::module::{Graph, Module, NodeId};
use crate::ops::Op;
use crate::text::print::{node_name, node_text};
use crate::types::{Dim, TensorType};

/// Where an error is: a function and the path of nodes through fusion bodies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// Index of the function in `Module::functions` (`None` for module-level errors).
    pub func: Option<usize>,
    /// Function name, for messages.
    pub func_name: String,
    /// Nodes from the function down into nested fusion bodies (empty: the function itself).
    pub path: Vec<NodeId>,
    /// The printed names of the nodes of `path` (`%7`, then `%2` inside `%7`'s body).
    pub names: Vec<String>,
}

impl Location {
    /// The location of node `n` of graph `g`, one level below `self`.
    pub fn at(&self, g: &Graph, n: NodeId) -> Location {
        self.below(n, node_name(g, n))
    }

    /// The location of node `n` printed as `name` (`%k`), one level below `self`.
    fn below(&self, n: NodeId, name: Option<String>) -> Location {
        let mut l = self.clone();
        l.path.push(n);
        l.names.push(name.unwrap_or_else(|| format!("node {}", n.index())));
        l
    }
}

/// One verifier error, as Cranelift's verifier reports them: where (function and the printed
/// value, `%5`, through fusion bodies), the printed node as context, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    /// Where.
    pub loc: Location,
    /// Text name of the op, when the error is at a node.
    pub op: Option<&'static str>,
    /// The node as the printer writes it (`%5 = add %3, %4 : f32[2]`), when the error is at one.
    pub context: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl VerifyError {
    /// An error at node `n` of graph `g` (located below `loc`), with the node printed as context.
    pub fn at_node(m: &Module, g: &Graph, loc: &Location, n: NodeId, message: String) -> VerifyError {
        VerifyError {
            loc: loc.at(g, n),
            op: g.nodes.get(n).map(|x| x.op.name()),
            context: Some(node_text(m, g, n)),
            message,
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.loc.func.is_some() {
            write!(f, "in @{}", self.loc.func_name)?;
            if !self.loc.names.is_empty() {
                write!(f, ", {}", self.loc.names.join(" › "))?;
            }
            match (&self.context, self.op) {
                (Some(c), _) => write!(f, " (`{c}`)")?,
                (None, Some(op)) => write!(f, " (`{op}`)")?,
                (None, None) => {}
            }
            write!(f, ": ")?;
        }
        f.write_str(&self.message)
    }
}

/// All errors of a module, in discovery order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct VerifyErrors(pub Vec<VerifyError>);

impl From<Vec<VerifyError>> for VerifyErrors {
    fn from(v: Vec<VerifyError>) -> Self {
        VerifyErrors(v)
    }
}

impl fmt::Display for VerifyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Verifies the whole module.
pub fn verify(m: &Module) -> Result<(), VerifyErrors> {
    let mut errs = Vec::new();
    let top = |message: String| VerifyError { loc: Location::default(), op: None, context: None, message };
    let mut names = HashSet::new();
    for (_, s) in m.symbols.iter() {
        let ok_name = s.name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && crate::types::DType::from_name(&s.name).is_none()
            // The lexer reads these words as numbers.
            && !matches!(s.name.as_str(), "inf" | "nan" | "NaN");
        if !ok_name {
            errs.push(top(format!("symbol name `{}` is not an identifier", s.name)));
        }
        if !names.insert(s.name.as_str()) {
            errs.push(top(format!("symbol `{}` is declared twice", s.name)));
        }
        if s.max == 0 {
            errs.push(top(format!("symbol `{}` needs an upper bound >= 1", s.name)));
        }
        if s.max > limits::MAX_SYMBOL_BOUND {
            errs.push(top(format!(
                "symbol `{}` has bound {}, above the limit of {}",
                s.name,
                s.max,
                limits::MAX_SYMBOL_BOUND
            )));
        }
    }
    let mut wnames = HashSet::new();
    for (wid, w) in m.weights.iter() {
        if !wnames.insert(w.name.as_str()) {
            errs.push(top(format!("weight `@{}` is declared twice", w.name)));
        }
        if w.ty.shape.iter().any(|d| d.as_const().is_none()) {
            errs.push(top(format!("weight `@{}` must have a constant shape", w.name)));
        } else if let Err(e) = type_within_limits(m, &w.ty) {
            errs.push(top(format!("weight `@{}`: {e}", w.name)));
        }
        if let crate::module::WeightSource::Derived(g) = &w.source {
            verify_derived(m, wid, w, g, &mut errs);
        }
    }
    let mut fnames = HashSet::new();
    for (fi, f) in m.functions.iter().enumerate() {
        if !fnames.insert(f.name.as_str()) {
            errs.push(top(format!("function `@{}` is defined twice", f.name)));
        }
        let loc = Location { func: Some(fi), func_name: f.name.clone(), ..Location::default() };
        let before = errs.len();
        verify_graph(m, &f.graph, &loc, true, &mut errs);
        if errs.len() == before {
            crate::verify_program::verify_function(m, f, &loc, &mut errs);
        }
    }
    for kind in crate::program::FunctionKind::ALL.into_iter().filter(|k| *k != crate::program::FunctionKind::Generic) {
        if m.functions.iter().filter(|f| f.kind == kind).count() > 1 {
            errs.push(top(format!("more than one function of kind `{kind}`")));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(VerifyErrors(errs))
    }
}

/// A derived weight: a graph without inputs, of constant shapes, reading only weights declared
/// before it, returning one value of the weight's type.
fn verify_derived(
    m: &Module,
    wid: crate::module::WeightId,
    w: &crate::module::Weight,
    g: &Graph,
    errs: &mut Vec<VerifyError>,
) {
    let before = errs.len();
    let loc = Location::default();
    verify_graph(m, g, &loc, false, errs);
    let mut problems: Vec<String> = errs
        .drain(before..)
        .map(|e| match &e.context {
            Some(c) => format!("`{c}`: {}", e.message),
            None => e.message,
        })
        .collect();
    if problems.is_empty() {
        for &n in &g.order {
            let node = &g.nodes[n];
            let text = || node_text(m, g, n);
            match &node.op {
                Op::Input(_) => problems.push(format!("`{}`: a derived weight takes no inputs", text())),
                Op::Weight(src) if src.index() >= wid.index() => {
                    problems.push(format!("`{}`: reads a weight declared after it (or itself)", text()))
                }
                Op::Fusion(_) | Op::Sample(_) | Op::ScatterCache => {
                    problems.push(format!("`{}`: not an op a derived weight computes", text()))
                }
                _ => {}
            }
            if node.results.iter().any(|&r| g.values[r].ty.const_elements().is_none()) {
                problems.push(format!("`{}`: a derived weight computes constant shapes only", text()));
            }
        }
        match g.outputs.as_slice() {
            [o] if g.values[o.value].ty == w.ty => {}
            [o] => problems.push(format!(
                "returns {} but the weight is {}",
                type_str(m, &g.values[o.value].ty),
                type_str(m, &w.ty)
            )),
            outs => problems.push(format!("returns {} values, not one", outs.len())),
        }
    }
    for p in problems {
        errs.push(VerifyError {
            loc: Location::default(),
            op: None,
            context: None,
            message: format!("derived weight `@{}`: {p}", w.name),
        });
    }
}

/// Checks a type against the size limits ([`limits::MAX_RANK`], and [`limits::MAX_ELEMENTS`]
/// for the product of its dims at the symbols' bounds, empty dims counted as 1): every size
/// computed from a type that verifies, strides and byte counts included, fits in `u64` with room
/// to spare. The error says what is over.
pub fn type_within_limits(m: &Module, t: &TensorType) -> Result<(), String> {
    if t.rank() > limits::MAX_RANK {
        return Err(format!(
            "type {} has {} dimensions, more than the limit of {}",
            type_str(m, t),
            t.rank(),
            limits::MAX_RANK
        ));
    }
    match t.elements_at_bounds(|s| m.symbols.get(s).map(|s| s.max)) {
        Some(n) if n <= limits::MAX_ELEMENTS => Ok(()),
        _ => Err(format!(
            "type {} has more than {} elements at its symbols' bounds",
            type_str(m, t),
            limits::MAX_ELEMENTS
        )),
    }
}

fn dims_ok(m: &Module, t: &TensorType) -> bool {
    t.shape.iter().all(|d| match d {
        Dim::Const(_) => true,
        Dim::Sym(s) => m.symbols.contains(*s),
    })
}

/// Verifies one graph (recursing into fusion bodies); `named` requires unique output names.
pub(crate) fn verify_graph(m: &Module, g: &Graph, loc: &Location, named: bool, errs: &mut Vec<VerifyError>) {
    let at = |n: Option<NodeId>, op: Option<&'static str>, message: String| match n {
        Some(n) => VerifyError { op, ..VerifyError::at_node(m, g, loc, n, message) },
        None => VerifyError { loc: loc.clone(), op, context: None, message },
    };
    let before = errs.len();
    // 1. Handles and order.
    let mut position = vec![None; g.nodes.len()];
    for (i, &n) in g.order.iter().enumerate() {
        match position.get_mut(n.index()) {
            None => errs.push(at(None, None, format!("order names node {} which does not exist", n.index()))),
            Some(Some(_)) => errs.push(at(Some(n), None, "node appears twice in the order".into())),
            Some(slot) => *slot = Some(i),
        }
    }
    for (n, node) in g.nodes.iter() {
        if position[n.index()].is_none() {
            errs.push(at(Some(n), Some(node.op.name()), "node is not in the order".into()));
        }
        for (i, &r) in node.results.iter().enumerate() {
            match g.values.get(r) {
                Some(v) if v.def == n && v.index as usize == i => {}
                _ => errs.push(at(
                    Some(n),
                    Some(node.op.name()),
                    format!("result {i} is not a value defined by this node"),
                )),
            }
        }
    }
    for (v, value) in g.values.iter() {
        let owned = g.nodes.get(value.def).is_some_and(|d| d.results.get(value.index as usize) == Some(&v));
        if !owned {
            errs.push(at(None, None, format!("value {} is not a result of its defining node", v.index())));
        }
    }
    // Operands must be defined earlier in the order.
    for (i, &n) in g.order.iter().enumerate() {
        let Some(node) = g.nodes.get(n) else { continue };
        for (k, &a) in node.args.iter().enumerate() {
            let def_pos = g.values.get(a).and_then(|v| position.get(v.def.index()).copied().flatten());
            match def_pos {
                None => {
                    errs.push(at(Some(n), Some(node.op.name()), format!("operand {k} is not a value of this graph")))
                }
                Some(p) if p >= i => {
                    errs.push(at(Some(n), Some(node.op.name()), format!("operand {k} is used before it is defined")))
                }
                Some(_) => {}
            }
        }
    }
    for (k, o) in g.outputs.iter().enumerate() {
        if !g.values.contains(o.value) {
            errs.push(at(None, None, format!("output {k} is not a value of this graph")));
        }
    }
    if errs.len() > before {
        return;
    }
    // 2. Types.
    let mut input_names = HashSet::new();
    let mut numbers: Option<Vec<Option<usize>>> = None;
    for &n in &g.order {
        let node = &g.nodes[n];
        let name = node.op.name();
        let results: Vec<&TensorType> = node.results.iter().map(|&r| &g.values[r].ty).collect();
        if let Some(t) = results.iter().find(|t| !dims_ok(m, t)) {
            errs.push(at(Some(n), Some(name), format!("result type {t:?} names an unknown symbol")));
            continue;
        }
        match &node.op {
            Op::Input(a) if !input_names.insert(a.name.as_str()) => {
                errs.push(at(Some(n), Some(name), format!("input \"{}\" is declared twice", a.name)));
            }
            // The text format has no syntax for a node without results (and such a region
            // computes nothing).
            Op::Fusion(f) if f.body.outputs.is_empty() => {
                errs.push(at(Some(n), Some(name), "a fusion must return at least one value".into()));
                continue;
            }
            // Bounded like the parser's nesting, so that the printer, the passes and the
            // interpreter, which recurse into bodies, recurse no deeper than that either.
            Op::Fusion(_) if loc.path.len() >= limits::MAX_FUSION_DEPTH => {
                errs.push(at(
                    Some(n),
                    Some(name),
                    format!("fusion bodies are nested deeper than {} levels", limits::MAX_FUSION_DEPTH),
                ));
                continue;
            }
            Op::Fusion(f) => {
                // Numbered once per graph, not per fusion: verification stays linear.
                let numbers = numbers.get_or_insert_with(|| crate::text::print::node_numbers(g));
                let sub = loc.below(n, numbers.get(n.index()).copied().flatten().map(|k| format!("%{k}")));
                let nested = errs.len();
                verify_graph(m, &f.body, &sub, false, errs);
                if errs.len() > nested {
                    continue;
                }
            }
            _ => {}
        }
        let args: Vec<&TensorType> = node.args.iter().map(|&a| &g.values[a].ty).collect();
        match infer(m, &node.op, &args) {
            Err(msg) => errs.push(at(Some(n), Some(name), msg)),
            Ok(want) => {
                let got: Vec<TensorType> = results.iter().map(|t| (*t).clone()).collect();
                if want != got {
                    let show = |ts: &[TensorType]| ts.iter().map(|t| type_str(m, t)).collect::<Vec<_>>().join(", ");
                    errs.push(at(
                        Some(n),
                        Some(name),
                        format!("result type is {} but the op produces {}", show(&got), show(&want)),
                    ));
                } else if let Some(e) = got.iter().find_map(|t| type_within_limits(m, t).err()) {
                    // After the typing rule, whose checked arithmetic names what overflows.
                    errs.push(at(Some(n), Some(name), e));
                }
            }
        }
    }
    if !named {
        // A fusion body's arguments and results are plain: roles belong to functions.
        for &n in &g.order {
            if let Op::Input(i) = &g.nodes[n].op {
                if i.role.is_some() {
                    errs.push(at(Some(n), Some("input"), "an input of a fusion body has no role".into()));
                }
            }
        }
        if g.outputs.iter().any(|o| o.role.is_some() || o.updates.is_some()) {
            errs.push(at(None, None, "a result of a fusion body has no role and updates nothing".into()));
        }
    }
    if named {
        let mut seen = HashSet::new();
        for o in &g.outputs {
            if !o.name.is_empty() && !seen.insert(o.name.as_str()) {
                errs.push(at(None, None, format!("output \"{}\" is returned twice", o.name)));
            }
        }
    }
}
