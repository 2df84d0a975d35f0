//! The index algebra of the group compiler: where each element a kernel computes comes from.
//!
//! A group computes its results over an iteration space, the shape of a result; each thread (or
//! loop trip) holds a multi-index `i_0, …, i_{n-1}` into it. Movement ops (`reshape`,
//! `transpose`, `slice`, `split`, `concat`, `broadcast`, `pixel_shuffle`) move no data in a
//! kernel: they are index arithmetic. [`trace`] walks from a value back through the movement
//! ops that produce it to the value a kernel actually reads (an argument of the group, or a
//! value the group computes) and returns, as an [`Access`], the multi-index into that value as
//! integer [`Expr`]essions of the iteration indices and the symbols' run-time values. A `concat`
//! is piecewise: which operand an element comes from depends on its index along the axis, so
//! an access can be a [`Access::Piecewise`] choice between accesses.
//!
//! Expressions are simplified as they are built, from what is known of each term's range
//! (iteration indices are below their dimension, symbols at most their bound): a reshape that
//! splits or merges dimensions leaves plain indices instead of `div`/`rem` chains where the
//! ranges show it can: an expression in linear form `Σ kᵢ·tᵢ + c` divided by a constant `d`
//! splits into the terms whose coefficients `d` divides (the quotient) and the rest (the
//! remainder) when the rest stays below `d`; `(a·s + b) / s = a` for a symbol `s` when `b < s`.

use std::collections::HashMap;
use std::fmt;

use lathe_ir::{Dim, Graph, Module, Op, SymbolId, ValueId};
use lathe_kernel::build::KernelBuilder;
use lathe_kernel::ir::{BinOp, Operand, Reg, Ty};

/// An unsigned integer expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// A constant.
    Const(u64),
    /// Iteration index `k`.
    Var(usize),
    /// A symbol's run-time value.
    Sym(SymbolId),
    /// Sum.
    Add(Box<Expr>, Box<Expr>),
    /// Difference (never negative where it is built).
    Sub(Box<Expr>, Box<Expr>),
    /// Product.
    Mul(Box<Expr>, Box<Expr>),
    /// Quotient, rounded down.
    Div(Box<Expr>, Box<Expr>),
    /// Remainder.
    Rem(Box<Expr>, Box<Expr>),
    /// The smaller (a `concat` piece's index clamped into the piece, so every piece can be
    /// read branch-free and the right one selected).
    Min(Box<Expr>, Box<Expr>),
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Const(c) => write!(f, "{c}"),
            Expr::Var(k) => write!(f, "i{k}"),
            Expr::Sym(s) => write!(f, "s{}", s.index()),
            Expr::Add(a, b) => write!(f, "({a} + {b})"),
            Expr::Sub(a, b) => write!(f, "({a} - {b})"),
            Expr::Mul(a, b) => write!(f, "{a}·{b}"),
            Expr::Div(a, b) => write!(f, "({a} / {b})"),
            Expr::Rem(a, b) => write!(f, "({a} % {b})"),
            Expr::Min(a, b) => write!(f, "min({a}, {b})"),
        }
    }
}

/// What is known of the values an expression takes: at most `max`.
#[derive(Debug, Clone)]
pub struct Ranges {
    /// Largest value of each iteration index (its dimension's bound less one).
    vars: Vec<u64>,
    /// Largest value of each symbol.
    syms: HashMap<SymbolId, u64>,
}

impl Ranges {
    /// The ranges of the iteration space `shape` of module `m`.
    pub fn of(m: &Module, shape: &[Dim]) -> Ranges {
        let mut syms = HashMap::new();
        for (id, s) in m.symbols.iter() {
            syms.insert(id, s.max);
        }
        let vars = shape
            .iter()
            .map(|d| match d {
                Dim::Const(c) => c.saturating_sub(1),
                Dim::Sym(s) => syms.get(s).copied().unwrap_or(u64::MAX).saturating_sub(1),
            })
            .collect();
        Ranges { vars, syms }
    }

    /// The largest value `e` can take (`u64::MAX`: unknown).
    pub fn max(&self, e: &Expr) -> u64 {
        match e {
            Expr::Const(c) => *c,
            Expr::Var(k) => self.vars.get(*k).copied().unwrap_or(u64::MAX),
            Expr::Sym(s) => self.syms.get(s).copied().unwrap_or(u64::MAX),
            Expr::Add(a, b) => self.max(a).saturating_add(self.max(b)),
            Expr::Sub(a, _) => self.max(a),
            Expr::Mul(a, b) => self.max(a).saturating_mul(self.max(b)),
            Expr::Div(a, b) => match b.as_ref() {
                Expr::Const(c) if *c > 0 => self.max(a) / c,
                _ => self.max(a),
            },
            Expr::Rem(a, b) => self.max(a).min(self.max(b).saturating_sub(1)),
            Expr::Min(a, b) => self.max(a).min(self.max(b)),
        }
    }
}

/// `a + b`, simplified.
pub fn add(a: Expr, b: Expr) -> Expr {
    match (a, b) {
        (Expr::Const(0), e) | (e, Expr::Const(0)) => e,
        (Expr::Const(x), Expr::Const(y)) => Expr::Const(x.wrapping_add(y)),
        (a, b) => Expr::Add(Box::new(a), Box::new(b)),
    }
}

/// `a − b`, simplified (`b ≤ a` wherever it is built).
pub fn sub(a: Expr, b: Expr) -> Expr {
    match (a, b) {
        (e, Expr::Const(0)) => e,
        (Expr::Const(x), Expr::Const(y)) => Expr::Const(x.wrapping_sub(y)),
        (a, b) if a == b => Expr::Const(0),
        (a, b) => Expr::Sub(Box::new(a), Box::new(b)),
    }
}

/// `a · b`, simplified.
pub fn mul(a: Expr, b: Expr) -> Expr {
    match (a, b) {
        (Expr::Const(0), _) | (_, Expr::Const(0)) => Expr::Const(0),
        (Expr::Const(1), e) | (e, Expr::Const(1)) => e,
        (Expr::Const(x), Expr::Const(y)) => Expr::Const(x.wrapping_mul(y)),
        (a, b) => Expr::Mul(Box::new(a), Box::new(b)),
    }
}

/// The terms `(a, c, b)` of `e = a·c + b` with `c` the constant or expression `d`, if `e` has
/// that form.
fn split_multiple(e: &Expr, d: &Expr) -> Option<(Expr, Expr)> {
    match e {
        Expr::Mul(a, c) if c.as_ref() == d => Some((a.as_ref().clone(), Expr::Const(0))),
        Expr::Mul(c, a) if c.as_ref() == d => Some((a.as_ref().clone(), Expr::Const(0))),
        Expr::Add(x, y) => {
            if let Some((a, b)) = split_multiple(x, d) {
                return Some((a, add(b, y.as_ref().clone())));
            }
            split_multiple(y, d).map(|(a, b)| (a, add(x.as_ref().clone(), b)))
        }
        _ => None,
    }
}

/// `e` as `Σ kᵢ·tᵢ + c` (constant coefficients over terms that are not sums or constant
/// multiples), if it is one.
fn linear(e: &Expr) -> Option<(Vec<(Expr, u64)>, u64)> {
    Some(match e {
        Expr::Const(c) => (Vec::new(), *c),
        Expr::Add(a, b) => {
            let (mut ta, ca) = linear(a)?;
            let (tb, cb) = linear(b)?;
            for (t, k) in tb {
                match ta.iter_mut().find(|(u, _)| *u == t) {
                    Some((_, j)) => *j = j.checked_add(k)?,
                    None => ta.push((t, k)),
                }
            }
            (ta, ca.checked_add(cb)?)
        }
        Expr::Mul(a, b) => match (a.as_ref(), b.as_ref()) {
            (Expr::Const(k), x) | (x, Expr::Const(k)) => {
                let (t, c) = linear(x)?;
                let t = t.into_iter().map(|(u, j)| j.checked_mul(*k).map(|j| (u, j))).collect::<Option<Vec<_>>>()?;
                (t, c.checked_mul(*k)?)
            }
            _ => (vec![(e.clone(), 1)], 0),
        },
        _ => (vec![(e.clone(), 1)], 0),
    })
}

/// `Σ kᵢ·tᵢ + c` as an expression.
fn from_linear(terms: &[(Expr, u64)], c: u64) -> Expr {
    terms.iter().fold(Expr::Const(c), |acc, (t, k)| add(acc, mul(t.clone(), Expr::Const(*k))))
}

/// `a` split by the constant `d` as (quotient, remainder) when the linear form shows it exactly:
/// the terms whose coefficients `d` divides make the quotient, the rest the remainder, which
/// must stay below `d`.
fn divmod_linear(a: &Expr, d: u64, r: &Ranges) -> Option<(Expr, Expr)> {
    if d == 0 {
        return None;
    }
    let (terms, c) = linear(a)?;
    let (mut q, mut rest) = (Vec::new(), Vec::new());
    for (t, k) in terms {
        if k % d == 0 {
            q.push((t, k / d));
        } else {
            rest.push((t, k));
        }
    }
    let rest = from_linear(&rest, c % d);
    (r.max(&rest) < d).then(|| (from_linear(&q, c / d), rest))
}

/// The smallest value `e` can take, for divisors: constants are what they are, a symbol is at
/// least 1.
fn min_value(e: &Expr) -> u64 {
    match e {
        Expr::Const(c) => *c,
        Expr::Sym(_) => 1,
        Expr::Mul(a, b) => min_value(a).saturating_mul(min_value(b)),
        _ => 0,
    }
}

/// `a / d`, simplified with what `r` knows.
pub fn div(a: Expr, d: Expr, r: &Ranges) -> Expr {
    if d == Expr::Const(1) {
        return a;
    }
    if let (Expr::Const(x), Expr::Const(y)) = (&a, &d) {
        if *y > 0 {
            return Expr::Const(x / y);
        }
    }
    if r.max(&a) < min_value(&d) {
        return Expr::Const(0);
    }
    if let Expr::Const(c) = d {
        if let Some((q, _)) = divmod_linear(&a, c, r) {
            return q;
        }
    }
    if let Some((q, b)) = split_multiple(&a, &d) {
        if r.max(&b) < min_value(&d) {
            return q;
        }
    }
    Expr::Div(Box::new(a), Box::new(d))
}

/// `a % d`, simplified with what `r` knows.
pub fn rem(a: Expr, d: Expr, r: &Ranges) -> Expr {
    if d == Expr::Const(1) {
        return Expr::Const(0);
    }
    if r.max(&a) < min_value(&d) {
        return a;
    }
    if let Expr::Const(c) = d {
        if let Some((_, rest)) = divmod_linear(&a, c, r) {
            return rest;
        }
    }
    if let Some((_, b)) = split_multiple(&a, &d) {
        if r.max(&b) < min_value(&d) {
            return b;
        }
    }
    Expr::Rem(Box::new(a), Box::new(d))
}

/// A dimension as an expression.
pub fn dim(d: &Dim) -> Expr {
    match d {
        Dim::Const(c) => Expr::Const(*c),
        Dim::Sym(s) => Expr::Sym(*s),
    }
}

/// `index` (row-major over `shape`) as one linear offset.
pub fn linearize(index: &[Expr], shape: &[Dim]) -> Expr {
    index.iter().zip(shape).fold(Expr::Const(0), |acc, (i, d)| add(mul(acc, dim(d)), i.clone()))
}

/// Linear offset `offset` as a multi-index over `shape` (row-major).
pub fn delinearize(offset: Expr, shape: &[Dim], r: &Ranges) -> Vec<Expr> {
    let mut out = vec![Expr::Const(0); shape.len()];
    let mut rest = offset;
    for (k, d) in shape.iter().enumerate().rev() {
        if k == 0 {
            out[0] = rest.clone();
            break;
        }
        out[k] = rem(rest.clone(), dim(d), r);
        rest = div(rest, dim(d), r);
    }
    out
}

/// Where one element comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Element `index` of `value` (a value a kernel reads: a group argument or a value it
    /// computes).
    Element {
        /// The value.
        value: ValueId,
        /// Its multi-index.
        index: Vec<Expr>,
    },
    /// A `concat`: the piece `p` with `starts[p] ≤ at < starts[p + 1]` (the last piece has no
    /// end); `at` is the index along the joined axis.
    Piecewise {
        /// The index along the joined axis.
        at: Expr,
        /// Each piece's first index along it (the first is 0).
        starts: Vec<Expr>,
        /// Each piece's access.
        pieces: Vec<Access>,
    },
}

/// Why an index could not be traced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index of `{op}`: {message}")]
pub struct TraceError {
    /// The op.
    pub op: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The access of element `index` of `value` of `g` (with `r` from its module), through the movement ops that
/// produce it, to a value that is not a movement op's result.
pub fn trace(g: &Graph, value: ValueId, index: Vec<Expr>, r: &Ranges) -> Result<Access, TraceError> {
    let v = &g.values[value];
    let node = &g.nodes[v.def];
    let arg = |k: usize| node.args[k];
    let shape_of = |x: ValueId| g.values[x].ty.shape.clone();
    let err = |message: String| TraceError { op: node.op.name(), message };
    match &node.op {
        Op::Broadcast(_) => {
            let from = shape_of(arg(0));
            let lead = index.len() - from.len();
            let inner = from
                .iter()
                .zip(&index[lead..])
                .map(|(d, i)| if *d == Dim::Const(1) { Expr::Const(0) } else { i.clone() })
                .collect();
            trace(g, arg(0), inner, r)
        }
        Op::Transpose(perm) => {
            let mut inner = vec![Expr::Const(0); perm.len()];
            for (k, &p) in perm.iter().enumerate() {
                inner[p] = index[k].clone();
            }
            trace(g, arg(0), inner, r)
        }
        Op::Reshape(_) => {
            let out = v.ty.shape.clone();
            let from = shape_of(arg(0));
            let flat = linearize(&index, &out);
            trace(g, arg(0), delinearize(flat, &from, r), r)
        }
        Op::Slice(s) => {
            let from = shape_of(arg(0));
            let size = dim(&from[s.axis]);
            let start =
                if s.start >= 0 { Expr::Const(s.start as u64) } else { sub(size, Expr::Const(s.start.unsigned_abs())) };
            let mut inner = index;
            inner[s.axis] = add(inner[s.axis].clone(), start);
            trace(g, arg(0), inner, r)
        }
        Op::Split(s) => {
            let offset: u64 = s.sizes[..v.index as usize].iter().sum();
            let mut inner = index;
            inner[s.axis] = add(inner[s.axis].clone(), Expr::Const(offset));
            trace(g, arg(0), inner, r)
        }
        Op::Concat(axis) => {
            let mut starts = Vec::new();
            let mut pieces = Vec::new();
            let mut at = Expr::Const(0);
            for &a in &node.args {
                starts.push(at.clone());
                let mut inner = index.clone();
                // Clamped into the piece (a wrapped difference included): every piece is read
                // in bounds, and the kernel selects the right one.
                let last = sub(dim(&shape_of(a)[*axis]), Expr::Const(1));
                inner[*axis] = Expr::Min(Box::new(sub(inner[*axis].clone(), at.clone())), Box::new(last));
                pieces.push(trace(g, a, inner, r)?);
                at = add(at, dim(&shape_of(a)[*axis]));
            }
            Ok(Access::Piecewise { at: index[*axis].clone(), starts, pieces })
        }
        Op::PixelShuffle(f) => {
            // out[b, i, j, (di·r + dj)·C + c] = x[b, r·i + di, r·j + dj, c]
            let from = shape_of(arg(0));
            let c = dim(&from[3]);
            let rr = Expr::Const(*f);
            let last = index[3].clone();
            let ch = rem(last.clone(), c.clone(), r);
            let q = div(last, c, r);
            let (di, dj) = (div(q.clone(), rr.clone(), r), rem(q, rr.clone(), r));
            let inner = vec![
                index[0].clone(),
                add(mul(rr.clone(), index[1].clone()), di),
                add(mul(rr, index[2].clone()), dj),
                ch,
            ];
            trace(g, arg(0), inner, r)
        }
        op if lathe_passes::strategy::is_movement(op) => Err(err("not a movement op this algebra knows".into())),
        _ => Ok(Access::Element { value, index }),
    }
}

/// Kernel IR computing `e` as a `u64`: iteration index `k` is `vars[k]`, symbol `s` is
/// `syms[s]` (registers of type `u64`). Constants fold into immediates.
pub fn emit(
    b: &mut KernelBuilder,
    e: &Expr,
    vars: &[Reg],
    syms: &HashMap<SymbolId, Reg>,
) -> Result<Operand, TraceError> {
    let missing = |what: String| TraceError { op: "index", message: what };
    Ok(match e {
        Expr::Const(c) => Operand::Imm(*c),
        Expr::Var(k) => Operand::Reg(*vars.get(*k).ok_or_else(|| missing(format!("no register for index {k}")))?),
        Expr::Sym(s) => {
            Operand::Reg(*syms.get(s).ok_or_else(|| missing(format!("no register for symbol {}", s.index())))?)
        }
        Expr::Add(x, y) | Expr::Sub(x, y) | Expr::Mul(x, y) | Expr::Div(x, y) | Expr::Rem(x, y) | Expr::Min(x, y) => {
            let op = match e {
                Expr::Add(..) => BinOp::Add,
                Expr::Sub(..) => BinOp::Sub,
                Expr::Mul(..) => BinOp::Mul,
                Expr::Div(..) => BinOp::Div,
                Expr::Rem(..) => BinOp::Rem,
                _ => BinOp::Min,
            };
            let (a, c) = (emit(b, x, vars, syms)?, emit(b, y, vars, syms)?);
            Operand::Reg(b.bin(op, Ty::U64, a, c))
        }
    })
}

/// The value of `e` with iteration indices `vars` and symbol values `syms` (for tests and the
/// interpreter of the expressions).
pub fn eval(e: &Expr, vars: &[u64], syms: &HashMap<SymbolId, u64>) -> u64 {
    match e {
        Expr::Const(c) => *c,
        Expr::Var(k) => vars[*k],
        Expr::Sym(s) => syms[s],
        Expr::Add(a, b) => eval(a, vars, syms).wrapping_add(eval(b, vars, syms)),
        Expr::Sub(a, b) => eval(a, vars, syms).wrapping_sub(eval(b, vars, syms)),
        Expr::Mul(a, b) => eval(a, vars, syms).wrapping_mul(eval(b, vars, syms)),
        Expr::Div(a, b) => eval(a, vars, syms).checked_div(eval(b, vars, syms)).unwrap_or(0),
        Expr::Rem(a, b) => eval(a, vars, syms).checked_rem(eval(b, vars, syms)).unwrap_or(0),
        Expr::Min(a, b) => eval(a, vars, syms).min(eval(b, vars, syms)),
    }
}

/// The (value, multi-index) an access resolves to for iteration indices `vars`.
pub fn resolve(a: &Access, vars: &[u64], syms: &HashMap<SymbolId, u64>) -> (ValueId, Vec<u64>) {
    match a {
        Access::Element { value, index } => (*value, index.iter().map(|e| eval(e, vars, syms)).collect()),
        Access::Piecewise { at, starts, pieces } => {
            let at = eval(at, vars, syms);
            let p = starts.iter().rposition(|s| eval(s, vars, syms) <= at).unwrap_or(0);
            resolve(&pieces[p], vars, syms)
        }
    }
}

/// How many div/rem operations an access costs per element (the cost of a non-simplifying
/// reshape, for the cost model and tests).
pub fn divisions(a: &Access) -> usize {
    fn e(x: &Expr) -> usize {
        match x {
            Expr::Div(a, b) | Expr::Rem(a, b) => 1 + e(a) + e(b),
            Expr::Add(a, b) | Expr::Sub(a, b) | Expr::Mul(a, b) | Expr::Min(a, b) => e(a) + e(b),
            _ => 0,
        }
    }
    match a {
        Access::Element { index, .. } => index.iter().map(e).sum(),
        Access::Piecewise { at, starts, pieces } => {
            e(at) + starts.iter().map(e).sum::<usize>() + pieces.iter().map(divisions).sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use lathe_interp::tensor::Tensor;
    use lathe_interp::SyntheticOnly;
    use lathe_ir::text::parse_module;
    use lathe_ir::DType;

    use super::*;

    /// Runs function `main` of `text` on `x` = 0, 1, 2, … (each element its own linear index),
    /// then checks that for every element of every result the traced access lands on the
    /// element of `x` the interpreter put there. Symbols take `syms` (by name).
    fn check(text: &str, x_shape: &[usize], syms: &[(&str, u64)]) -> usize {
        let m = parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        lathe_ir::verify::verify(&m).unwrap_or_else(|e| panic!("{e:?}"));
        let n: usize = x_shape.iter().product();
        let x = Tensor::from_f32(DType::F32, x_shape.to_vec(), (0..n).map(|i| i as f32).collect());
        let out = lathe_interp::run(&m, "main", &HashMap::from([("x".to_string(), x)]), &SyntheticOnly)
            .unwrap_or_else(|e| panic!("{e}"));
        let g = &m.functions.first().expect("a function").graph;
        let values: HashMap<SymbolId, u64> = syms
            .iter()
            .map(|(name, v)| (m.symbols.iter().find(|(_, s)| s.name == *name).expect("a symbol").0, *v))
            .collect();
        let input =
            g.order.iter().find_map(|&nd| matches!(g.nodes[nd].op, Op::Input(_)).then(|| g.nodes[nd].results[0]));
        let input = input.expect("an input");
        let mut divisions_total = 0;
        for ((_, t), o) in out.iter().zip(&g.outputs) {
            let res = o.value;
            let shape = &g.values[res].ty.shape;
            let r = Ranges::of(&m, shape);
            let vars: Vec<Expr> = (0..shape.len()).map(Expr::Var).collect();
            let access = trace(g, res, vars, &r).unwrap_or_else(|e| panic!("{e}"));
            divisions_total += divisions(&access);
            let dims: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
            for (flat, &want) in t.to_f64().iter().enumerate() {
                let mut idx = vec![0u64; dims.len()];
                let mut rest = flat as u64;
                for k in (0..dims.len()).rev() {
                    idx[k] = rest % dims[k];
                    rest /= dims[k];
                }
                let (v, at) = resolve(&access, &idx, &values);
                assert_eq!(v, input, "{text}: element {idx:?} traced to another value");
                let lin = at.iter().zip(x_shape).fold(0u64, |a, (&i, &d)| a * d as u64 + i);
                assert_eq!(lin as f64, want, "{text}: element {idx:?} of the result: traced {at:?}");
            }
        }
        divisions_total
    }

    #[test]
    fn chains_of_movement_ops_trace_to_the_elements_the_interpreter_moves() {
        let module = |body: &str, x: &str| {
            format!(
                "module @m {{\n  compute_dtype = f32\n  func @main {{\n    %0 = input \"x\" : f32{x}\n{body}  }}\n}}\n"
            )
        };
        // transpose, then a reshape across the permuted axes, then a slice.
        check(
            &module(
                "    %1 = transpose %0 {perm=[2, 0, 1]} : f32[4, 2, 3]\n    %2 = reshape %1 : f32[8, 3]\n    %3 = slice %2 {axis=0, start=1, end=7} : f32[6, 3]\n    return %3\n",
                "[2, 3, 4]",
            ),
            &[2, 3, 4],
            &[],
        );
        // split pieces, each transposed, joined again by concat (piecewise), then broadcast.
        check(
            &module(
                "    %1:2 = split %0 {axis=1, sizes=[2, 3]} : f32[3, 2], f32[3, 3]\n    %3 = concat %1#1, %1#0 {axis=1} : f32[3, 5]\n    %4 = reshape %3 : f32[1, 15]\n    %5 = broadcast %4 : f32[2, 15]\n    return %5\n",
                "[3, 5]",
            ),
            &[3, 5],
            &[],
        );
        // pixel shuffle, and a negative slice start.
        check(
            &module(
                "    %1 = pixel_shuffle %0 {factor=2} : f32[1, 2, 2, 12]\n    %2 = slice %1 {axis=3, start=-5} : f32[1, 2, 2, 5]\n    return %2\n",
                "[1, 4, 4, 3]",
            ),
            &[1, 4, 4, 3],
            &[],
        );
    }

    #[test]
    fn reshapes_that_split_or_merge_dimensions_need_no_division() {
        let text = "module @m {\n  compute_dtype = f32\n  symbol S <= 16\n  func @main {\n    %0 = input \"x\" : f32[S, 24]\n    %1 = reshape %0 : f32[S, 4, 6]\n    %2 = transpose %1 {perm=[1, 0, 2]} : f32[4, S, 6]\n    return %2\n  }\n}\n";
        // x[s, 6·h + d] for out[h, s, d]: the merge of (4, 6) into 24 simplifies away.
        assert_eq!(check(text, &[5, 24], &[("S", 5)]), 0);
        // A reshape that does not align with the dimensions needs div/rem, and still traces.
        let text = "module @m {\n  compute_dtype = f32\n  func @main {\n    %0 = input \"x\" : f32[6, 4]\n    %1 = reshape %0 : f32[4, 6]\n    return %1\n  }\n}\n";
        assert!(check(text, &[6, 4], &[]) > 0);
    }

    #[test]
    fn emitted_index_arithmetic_computes_what_the_expressions_say() {
        use lathe_kernel::ir::{Access as BufferAccess, Axis, Space, Special};
        use lathe_kernel::sim::{run, Arg, Launch, Options};
        // out[h, s, d] of a reshape that does not align (div/rem stay) and a transpose, over a
        // symbolic S: each thread computes the traced offset into x and stores it.
        let text = "module @m {\n  compute_dtype = f32\n  symbol S <= 8\n  func @main {\n    %0 = input \"x\" : f32[S, 10]\n    %1 = reshape %0 : f32[S, 2, 5]\n    %2 = transpose %1 {perm=[2, 0, 1]} : f32[5, S, 2]\n    %3 = reshape %2 : f32[5, S, 2]\n    return %3\n  }\n}\n";
        let m = parse_module(text).expect("parses");
        let g = &m.functions.first().expect("a function").graph;
        let out = g.outputs[0].value;
        let shape = g.values[out].ty.shape.clone();
        let r = Ranges::of(&m, &shape);
        let access = trace(g, out, (0..3).map(Expr::Var).collect(), &r).expect("traces");
        let Access::Element { index, .. } = &access else { panic!("one element") };
        let s_id = m.symbols.iter().next().expect("S").0;
        let mut b = KernelBuilder::new("offsets", 128);
        let y = b.buffer("y", DType::I64, BufferAccess::Written);
        let s_param = b.scalar("S", Ty::U64);
        // thread t ↦ (h, s, d) over [5, S, 2].
        let tid = b.special(Special::Tid(Axis::X));
        let t = b.cvt(Ty::U64, Ty::U32, None, false, tid);
        let d = b.bin(BinOp::Rem, Ty::U64, t, Operand::Imm(2));
        let q = b.bin(BinOp::Div, Ty::U64, t, Operand::Imm(2));
        let sv = b.bin(BinOp::Rem, Ty::U64, q, s_param);
        let h = b.bin(BinOp::Div, Ty::U64, q, s_param);
        let syms = HashMap::from([(s_id, s_param)]);
        let at = emit(&mut b, &linearize(index, &[Dim::Sym(s_id), Dim::Const(10)]), &[h, sv, d], &syms).expect("emits");
        let off = b.bin(BinOp::Mul, Ty::U64, t, Operand::Imm(8));
        let p = b.bin(BinOp::Add, Ty::U64, y, off);
        b.st(Space::Global, Ty::U64, p, 0, &[at]);
        let k = b.finish();
        let s_val = 6u64;
        let n = 5 * s_val as usize * 2;
        let mut args = vec![Arg::Buffer(vec![0; n * 8]), Arg::Scalar(s_val)];
        run(&k, &Launch { grid: [1, 1, 1], block: [n as u32, 1, 1] }, &mut args, &Options::default()).expect("runs");
        let Arg::Buffer(ys) = &args[0] else { panic!("a buffer") };
        let syms_v = HashMap::from([(s_id, s_val)]);
        for (i, c) in ys.chunks_exact(8).enumerate() {
            let i = i as u64;
            let vars = [i / 2 / s_val, (i / 2) % s_val, i % 2];
            let (_, idx) = resolve(&access, &vars, &syms_v);
            let want = idx[0] * 10 + idx[1];
            assert_eq!(u64::from_le_bytes(c.try_into().expect("8 bytes")), want, "thread {i}");
        }
        // The same kernel lowers and assembles.
        crate::ptx::compile(&k, lathe_kernel::target::Target::HOPPER).expect("compiles");
    }

    #[test]
    fn simplification_follows_the_ranges() {
        let m = parse_module("module @m {\n  compute_dtype = f32\n  func @main {\n    %0 = input \"x\" : f32[3, 7]\n    return %0\n  }\n}\n")
            .expect("parses");
        let r = Ranges::of(&m, &[Dim::Const(3), Dim::Const(7)]);
        let flat = add(mul(Expr::Var(0), Expr::Const(7)), Expr::Var(1));
        assert_eq!(div(flat.clone(), Expr::Const(7), &r), Expr::Var(0));
        assert_eq!(rem(flat.clone(), Expr::Const(7), &r), Expr::Var(1));
        // i1 < 7 is not below 5: no simplification.
        assert!(matches!(div(flat, Expr::Const(5), &r), Expr::Div(..)));
        assert_eq!(rem(Expr::Var(1), Expr::Const(8), &r), Expr::Var(1));
        assert_eq!(div(Expr::Var(1), Expr::Const(8), &r), Expr::Const(0));
    }
}
