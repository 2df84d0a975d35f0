//! Outlining: replaces sets of nodes by `fusion` nodes whose bodies hold them.
//!
//! Each group becomes one fusion node. Its operands are the values the group reads from outside
//! (in order of first use); weights and constants it reads are copied into the body instead (a
//! kernel reads them directly); its results are the values used outside the group or returned.
//! The graph is then re-ordered topologically, keeping the original order wherever it can, so a
//! set of groups that would depend on each other in a cycle is reported, not built.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use lathe_ir::ops::{Fusion, Input, KernelStrategy};
use lathe_ir::{Graph, NodeId, Op, Output, ValueId};

use crate::rewrite::Replacements;
use crate::strategy::is_data;
use crate::OutlineError;

/// One planned group: its nodes (any order) and its strategy.
pub type Group = (Vec<NodeId>, KernelStrategy);

/// Outlines every group of `groups` (disjoint sets of nodes of `g`) and renumbers `g`.
pub fn outline_groups(g: &mut Graph, groups: &[Group]) -> Result<(), OutlineError> {
    if groups.is_empty() {
        return Ok(());
    }
    let pos: HashMap<NodeId, usize> = g.order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut grouped: HashSet<NodeId> = HashSet::new();
    for (nodes, _) in groups {
        for &n in nodes {
            if !pos.contains_key(&n) {
                return Err(OutlineError::NotInOrder { node: n.index() });
            }
            if !grouped.insert(n) {
                return Err(OutlineError::InTwoGroups { node: n.index() });
            }
        }
    }
    let mut used_by: HashMap<ValueId, Vec<NodeId>> = HashMap::new();
    for &n in &g.order {
        for &a in &g.nodes[n].args {
            used_by.entry(a).or_default().push(n);
        }
    }
    let returned: HashSet<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    let mut rep = Replacements::default();
    let mut priority: HashMap<NodeId, usize> = HashMap::new();
    for (nodes, strategy) in groups {
        let mut nodes = nodes.clone();
        nodes.sort_by_key(|n| pos[n]);
        let inside: HashSet<NodeId> = nodes.iter().copied().collect();
        let mut body = Graph::default();
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        let mut operands = Vec::new();
        for &n in &nodes {
            for &a in &g.nodes[n].args {
                let d = g.values[a].def;
                if inside.contains(&d) || map.contains_key(&a) {
                    continue;
                }
                let ty = g.values[a].ty.clone();
                let def_op = &g.nodes[d].op;
                let inner = if is_data(def_op) && !matches!(def_op, Op::Input(_)) {
                    body.push_node(def_op.clone(), Vec::new(), vec![ty])
                } else {
                    let name = format!("arg{}", operands.len());
                    operands.push(a);
                    body.push_node(Op::Input(Input { name, ty: ty.clone(), role: None }), Vec::new(), vec![ty])
                };
                map.insert(a, inner[0]);
            }
            let node = &g.nodes[n];
            let args = node.args.iter().map(|a| map[a]).collect();
            let types = node.results.iter().map(|&r| g.values[r].ty.clone()).collect();
            let results = body.push_node(node.op.clone(), args, types);
            for (&old, new) in node.results.iter().zip(results) {
                map.insert(old, new);
            }
        }
        let mut outer = Vec::new();
        for &n in &nodes {
            for &r in &g.nodes[n].results {
                let escapes =
                    returned.contains(&r) || used_by.get(&r).is_some_and(|us| us.iter().any(|u| !inside.contains(u)));
                if escapes {
                    body.outputs.push(Output::new("", map[&r]));
                    outer.push(r);
                }
            }
        }
        if outer.is_empty() {
            // Dead code (nothing outside reads the group): it still computes, so it returns what
            // no member reads, and a later `dce` removes it.
            for &n in &nodes {
                for &r in &g.nodes[n].results {
                    if used_by.get(&r).is_none_or(|us| us.iter().all(|u| !inside.contains(u))) {
                        body.outputs.push(Output::new("", map[&r]));
                        outer.push(r);
                    }
                }
            }
        }
        let types = outer.iter().map(|&r| g.values[r].ty.clone()).collect();
        let results = g.push_node(Op::Fusion(Box::new(Fusion { strategy: *strategy, body })), operands, types);
        for (&old, &new) in outer.iter().zip(&results) {
            rep.insert(old, new);
        }
        if let Some(&f) = g.order.last() {
            priority.insert(f, pos[&nodes[0]]);
        }
    }
    rep.apply(g);
    // Re-order: the nodes left outside groups and the new fusion nodes, topologically, each as
    // close to where its first node stood as the dependencies allow.
    let keep: Vec<NodeId> = g.order.iter().copied().filter(|n| !grouped.contains(n)).collect();
    let prio = |n: NodeId| priority.get(&n).copied().or_else(|| pos.get(&n).copied()).unwrap_or(usize::MAX);
    let index: HashMap<NodeId, usize> = keep.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut pending = vec![0usize; keep.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); keep.len()];
    for (i, &n) in keep.iter().enumerate() {
        let deps: HashSet<usize> =
            g.nodes[n].args.iter().filter_map(|a| index.get(&g.values[*a].def).copied()).collect();
        pending[i] = deps.len();
        for d in deps {
            users[d].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<(usize, usize)>> =
        (0..keep.len()).filter(|&i| pending[i] == 0).map(|i| Reverse((prio(keep[i]), i))).collect();
    let mut order = Vec::with_capacity(keep.len());
    while let Some(Reverse((_, i))) = ready.pop() {
        order.push(keep[i]);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push(Reverse((prio(keep[u]), u)));
            }
        }
    }
    if order.len() != keep.len() {
        return Err(OutlineError::Cycle);
    }
    g.order = order;
    *g = g.renumbered();
    Ok(())
}

/// Inlines every top-level fusion of `g` that `reject` picks: its body's nodes take its place
/// (body inputs replaced by the fusion's operands), its results become the body's outputs.
/// Fusions in the inlined bodies become top-level nodes and are looked at too. Returns how many
/// fusions were inlined; the graph is renumbered when any was.
pub fn inline_groups(g: &mut Graph, reject: &dyn Fn(&Fusion) -> bool) -> usize {
    let mut inlined = 0;
    while let Some(pos) = g.order.iter().position(|&n| matches!(&g.nodes[n].op, Op::Fusion(f) if reject(f))) {
        let n = g.order[pos];
        let Op::Fusion(f) = g.nodes[n].op.clone() else { break };
        let args = g.nodes[n].args.clone();
        let tail = g.order.split_off(pos + 1);
        g.order.pop();
        let body = &f.body;
        let mut map: HashMap<ValueId, ValueId> = HashMap::new();
        let mut k = 0;
        for &b in &body.order {
            let node = &body.nodes[b];
            if let Op::Input(_) = node.op {
                if let (Some(&r), Some(&a)) = (node.results.first(), args.get(k)) {
                    map.insert(r, a);
                }
                k += 1;
                continue;
            }
            let operands = node.args.iter().map(|a| map.get(a).copied().unwrap_or(*a)).collect();
            let types = node.results.iter().map(|&r| body.values[r].ty.clone()).collect();
            let results = g.push_node(node.op.clone(), operands, types);
            for (&old, &new) in node.results.iter().zip(&results) {
                map.insert(old, new);
            }
        }
        g.order.extend(tail);
        let mut rep = Replacements::default();
        for (&r, o) in g.nodes[n].results.clone().iter().zip(&body.outputs) {
            rep.insert(r, map.get(&o.value).copied().unwrap_or(o.value));
        }
        rep.apply(g);
        inlined += 1;
    }
    if inlined > 0 {
        *g = g.renumbered();
    }
    inlined
}
