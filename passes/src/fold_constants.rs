//! `fold-constants` — evaluates ops whose operands are all constants.
//!
//! A node whose every operand is a `constant` and whose results have constant shapes of at most
//! `max-elements` elements each is replaced by `constant` nodes holding the values the
//! interpreter computes (so folding is exact by construction). Integer results beyond ±2^53,
//! which a constant's f64 values cannot hold exactly, are left unfolded. `sample` and `fusion`
//! are never folded. Nodes left without uses are removed.
//! Pre: a verified module. Post: a verified module computing bit-identical results.

use lathe_interp::eval_op;
use lathe_interp::tensor::{Data, Tensor};
use lathe_ir::ops::Constant;
use lathe_ir::{Graph, Module, Op, TensorType};

use crate::rewrite::{for_each_graph, remove_dead, Replacements};
use crate::{Changed, Failure, OptionInfo, Options, Pass, PassContext, PassInfo, ANY_STAGE};

/// Registry entry.
pub const INFO: PassInfo = PassInfo {
    name: "fold-constants",
    summary: "replace ops on constants by their values",
    options: &[OptionInfo { name: "max-elements", default: "4096", help: "largest result folded" }],
    accepts: ANY_STAGE,
    sets: None,
    create: |o: &Options| Ok(Box::new(FoldConstants { max_elements: o.usize("max-elements")? })),
};

/// The pass.
#[derive(Debug)]
pub struct FoldConstants {
    /// Largest result (in elements) that is folded.
    pub max_elements: usize,
}

fn constant_values(t: &Tensor) -> Option<Vec<f64>> {
    match &t.data {
        Data::F(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
        Data::I(v) => v.iter().map(|&x| (x.unsigned_abs() <= 1 << 53).then_some(x as f64)).collect(),
    }
}

fn fold_graph(m: &Module, g: &mut Graph, max_elements: usize) -> usize {
    let mut folded = 0;
    let mut rep = Replacements::default();
    let order = g.order.clone();
    for n in order {
        let args: Vec<_> = g.nodes[n].args.iter().map(|&a| rep.resolve(a)).collect();
        g.nodes[n].args = args;
        let node = &g.nodes[n];
        if node.args.is_empty() || matches!(node.op, Op::Sample(_) | Op::Fusion(_)) {
            continue;
        }
        let consts: Option<Vec<Tensor>> = node
            .args
            .iter()
            .map(|&a| match &g.nodes[g.values[a].def].op {
                // The interpreter's own evaluation, so folding reads the values it would.
                op @ Op::Constant(c) => eval_op(m, op, &[], &[&c.ty]).ok().and_then(|mut v| v.pop()),
                _ => None,
            })
            .collect();
        let Some(consts) = consts else { continue };
        let types: Vec<&TensorType> = node.results.iter().map(|&r| &g.values[r].ty).collect();
        if types.iter().any(|t| t.const_elements().is_none_or(|n| n as usize > max_elements)) {
            continue;
        }
        let refs: Vec<&Tensor> = consts.iter().collect();
        let Ok(outs) = eval_op(m, &node.op, &refs, &types) else { continue };
        let Some(values) = outs.iter().map(constant_values).collect::<Option<Vec<_>>>() else { continue };
        let results = node.results.clone();
        if let ([r], [v]) = (results.as_slice(), values.as_slice()) {
            // One result: the node becomes the constant in place.
            let ty = g.values[*r].ty.clone();
            let node = &mut g.nodes[n];
            node.op = Op::Constant(Constant { ty, values: v.clone() });
            node.args.clear();
        } else {
            // Several results (`split`): one new constant each, placed where the node was.
            let at = g.order.iter().position(|&x| x == n).unwrap_or(0);
            for (r, v) in results.iter().zip(values) {
                let ty = g.values[*r].ty.clone();
                let new = g.push_node(Op::Constant(Constant { ty: ty.clone(), values: v }), Vec::new(), vec![ty]);
                if let Some(moved) = g.order.pop() {
                    g.order.insert(at, moved);
                }
                rep.insert(*r, new[0]);
            }
        }
        folded += 1;
    }
    if folded > 0 {
        rep.apply(g);
        remove_dead(g);
    }
    folded
}

impl Pass for FoldConstants {
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, Failure> {
        let snapshot = header(m);
        let mut folded = 0;
        let max = self.max_elements;
        for_each_graph(m, &mut |g| folded += fold_graph(&snapshot, g, max));
        cx.bump("nodes-folded", folded as u64);
        Ok((folded > 0).into())
    }
}

/// The module without its functions: what evaluating or classifying one op needs (symbols and
/// weights), cheap to hold while the functions are edited.
pub fn header(m: &Module) -> Module {
    Module {
        name: m.name.clone(),
        compute_dtype: m.compute_dtype,
        stage: m.stage,
        symbols: m.symbols.clone(),
        weights: m.weights.clone(),
        functions: Vec::new(),
    }
}
