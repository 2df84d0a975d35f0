//! `cse` — common subexpression elimination.
//!
//! Two nodes with equal ops (attributes included) on the same operands compute the same values,
//! since no op has side effects: the later one's results are replaced by the earlier one's and
//! it is removed. Float attributes compare by their bits ([`lathe_ir::Op::same`]): `constant 0.0`
//! and `constant -0.0` are different constants. Weights read twice become one read; identical constants merge. `input` nodes
//! never merge (they are distinct arguments). Works per graph, fusion bodies included.
//! Pre: a verified module. Post: a verified module computing bit-identical results.

use std::collections::HashMap;

use lathe_ir::{Graph, Module, NodeId, Op, ValueId};

use crate::rewrite::{for_each_graph, Replacements};
use crate::{Changed, Failure, Options, Pass, PassContext, PassInfo, ANY_STAGE};

/// Registry entry.
pub const INFO: PassInfo = PassInfo {
    name: "cse",
    summary: "merge nodes that compute the same op on the same operands",
    options: &[],
    accepts: ANY_STAGE,
    sets: None,
    create: |_: &Options| Ok(Box::new(Cse)),
};

/// The pass.
#[derive(Debug)]
pub struct Cse;

/// Merges duplicates in one graph; returns how many nodes were merged away.
fn cse_graph(g: &mut Graph) -> usize {
    let mut seen: HashMap<(&'static str, Vec<ValueId>), Vec<NodeId>> = HashMap::new();
    let mut rep = Replacements::default();
    let mut merged_nodes = Vec::new();
    let order = g.order.clone();
    for n in order {
        let args: Vec<ValueId> = g.nodes[n].args.iter().map(|&a| rep.resolve(a)).collect();
        g.nodes[n].args = args.clone();
        let node = &g.nodes[n];
        if matches!(node.op, Op::Input(_)) {
            continue;
        }
        let key = (node.op.name(), args);
        let candidates = seen.entry(key).or_default();
        let same = candidates.iter().copied().find(|&c| {
            let other = &g.nodes[c];
            // Attributes by their bits: `constant 0.0` is not `constant -0.0`.
            other.op.same(&node.op)
                && other.results.len() == node.results.len()
                && other.results.iter().zip(&node.results).all(|(a, b)| g.values[*a].ty == g.values[*b].ty)
        });
        match same {
            Some(c) => {
                for (&old, &new) in node.results.iter().zip(&g.nodes[c].results) {
                    rep.insert(old, new);
                }
                merged_nodes.push(n);
            }
            None => candidates.push(n),
        }
    }
    if !merged_nodes.is_empty() {
        rep.apply(g);
        g.order.retain(|n| !merged_nodes.contains(n));
        *g = g.renumbered();
    }
    merged_nodes.len()
}

impl Pass for Cse {
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, Failure> {
        let mut merged = 0;
        for_each_graph(m, &mut |g| merged += cse_graph(g));
        cx.bump("nodes-merged", merged as u64);
        Ok((merged > 0).into())
    }
}
