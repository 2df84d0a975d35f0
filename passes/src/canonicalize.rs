//! `canonicalize` — local rewrites toward a canonical form.
//!
//! Every rule is exact (the interpreter's results stay bit-identical), directional and never
//! makes the graph bigger. Rules, each `pattern => replacement`:
//! - `reshape x : type(x) => x`, and `reshape (reshape x) => reshape x`
//! - `cast x : dtype(x) => x`
//! - `broadcast x : type(x) => x`
//! - `transpose x {perm=identity} => x`, and `transpose (transpose x p) q => transpose x (p∘q)`
//! - `slice x` covering its whole axis `=> x`; `concat x` of one operand `=> x`
//! - `clamp x {}` without bounds `=> x`; `neg (neg x) => x`
//! - `x * 1 => x`, `x / 1 => x`, `x - 0 => x`, `x + (-0) => x` when the constant is a splat and
//!   the result has `x`'s type (`x + 0` is not rewritten: it turns −0 into +0)
//! - `reduce x` over axes of extent 1 `=> reshape x` for integers (any kind) and float `max`
//!   (a float sum or mean of one element is not rewritten: it turns −0 into +0). Decode's
//!   `kv_len = past + max(positions) + 1` over its one position so needs no row reduction.
//!
//! Nodes left without uses are removed.
//! Pre: a verified module. Post: a verified module computing bit-identical results.

use lathe_ir::ops::{BinaryOp, ReduceKind, UnaryOp};
use lathe_ir::{Dim, Graph, Module, Op, ValueId};

use crate::rewrite::{for_each_graph, remove_dead, Replacements};
use crate::{Changed, Failure, Options, Pass, PassContext, PassInfo, ANY_STAGE};

/// Registry entry.
pub const INFO: PassInfo = PassInfo {
    name: "canonicalize",
    summary: "exact local rewrites: identities, double reshapes/transposes/negations",
    options: &[],
    accepts: ANY_STAGE,
    sets: None,
    create: |_: &Options| Ok(Box::new(Canonicalize)),
};

/// The pass.
#[derive(Debug)]
pub struct Canonicalize;

/// The op defining `v`.
fn def(g: &Graph, v: ValueId) -> &Op {
    &g.nodes[g.values[v].def].op
}

/// Whether `v` is a constant whose every element satisfies `pred`.
fn splat(g: &Graph, v: ValueId, pred: impl Fn(f64) -> bool) -> bool {
    matches!(def(g, v), Op::Constant(c) if !c.values.is_empty() && c.values.iter().all(|&x| pred(x)))
}

/// Applies the rules to one graph; returns how many fired.
fn canonicalize_graph(g: &mut Graph) -> usize {
    let mut rep = Replacements::default();
    let mut fired = 0;
    let order = g.order.clone();
    for n in order {
        let args: Vec<ValueId> = g.nodes[n].args.iter().map(|&a| rep.resolve(a)).collect();
        g.nodes[n].args = args.clone();
        let Some(&result) = g.nodes[n].results.first() else { continue };
        let same_type = |g: &Graph, a: ValueId| g.values[a].ty == g.values[result].ty;
        let mut forward: Option<ValueId> = None;
        let mut new_node: Option<(Op, Vec<ValueId>)> = None;
        match &g.nodes[n].op {
            // reshape x : type(x) => x; cast x : dtype(x) => x; broadcast x : type(x) => x;
            // slice of a whole axis => x; concat x => x
            Op::Reshape(_) | Op::Cast(_) | Op::Broadcast(_) | Op::Slice(_) | Op::Concat(_)
                if args.len() == 1 && same_type(g, args[0]) =>
            {
                forward = Some(args[0]);
            }
            // reshape (reshape x) => reshape x
            Op::Reshape(shape) => {
                if let Op::Reshape(_) = def(g, args[0]) {
                    let inner = g.nodes[g.values[args[0]].def].args[0];
                    new_node = Some((Op::Reshape(shape.clone()), vec![inner]));
                }
            }
            // transpose x {identity} => x; transpose (transpose x p) q => transpose x (p∘q)
            Op::Transpose(q) => {
                if q.iter().enumerate().all(|(i, &p)| i == p) {
                    forward = Some(args[0]);
                } else if let Op::Transpose(p) = def(g, args[0]) {
                    let inner = g.nodes[g.values[args[0]].def].args[0];
                    let composed: Vec<usize> = q.iter().map(|&i| p[i]).collect();
                    if composed.iter().enumerate().all(|(i, &p)| i == p) {
                        forward = Some(inner);
                    } else {
                        new_node = Some((Op::Transpose(composed), vec![inner]));
                    }
                }
            }
            // clamp x {} => x
            Op::Clamp(c) if c.min.is_none() && c.max.is_none() => forward = Some(args[0]),
            // neg (neg x) => x
            Op::Unary(UnaryOp::Neg) => {
                if let Op::Unary(UnaryOp::Neg) = def(g, args[0]) {
                    forward = Some(g.nodes[g.values[args[0]].def].args[0]);
                }
            }
            // x * 1 => x; x / 1 => x; x - 0 => x; x + (-0) => x
            Op::Binary(b) if same_type(g, args[0]) => {
                let identity = match b {
                    BinaryOp::Mul | BinaryOp::Div => splat(g, args[1], |x| x == 1.0),
                    BinaryOp::Sub => splat(g, args[1], |x| x == 0.0 && x.is_sign_positive()),
                    BinaryOp::Add => splat(g, args[1], |x| x == 0.0 && x.is_sign_negative()),
                    BinaryOp::Max | BinaryOp::Min => false,
                };
                if identity {
                    forward = Some(args[0]);
                }
            }
            // reduce x over axes of extent 1 => reshape x (one element: itself)
            Op::Reduce(r)
                if r.axes.iter().all(|&a| g.values[args[0]].ty.shape.get(a) == Some(&Dim::Const(1)))
                    && (g.values[args[0]].ty.dtype.is_int() || r.kind == ReduceKind::Max) =>
            {
                if same_type(g, args[0]) {
                    forward = Some(args[0]);
                } else {
                    new_node = Some((Op::Reshape(g.values[result].ty.shape.clone()), vec![args[0]]));
                }
            }
            _ => {}
        }
        if let Some(v) = forward {
            rep.insert(result, v);
            fired += 1;
        } else if let Some((op, args)) = new_node {
            g.nodes[n].op = op;
            g.nodes[n].args = args;
            fired += 1;
        }
    }
    if fired > 0 {
        rep.apply(g);
        remove_dead(g);
    }
    fired
}

impl Pass for Canonicalize {
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, Failure> {
        let mut fired = 0;
        for_each_graph(m, &mut |g| fired += canonicalize_graph(g));
        cx.bump("rewrites", fired as u64);
        Ok((fired > 0).into())
    }
}
