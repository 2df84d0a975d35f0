//! Planning groups before outlining: who uses what, which nodes are taken, and how a group grows
//! around its main op.

use std::collections::{HashMap, HashSet};

use lathe_ir::{Graph, NodeId, Op, ValueId};

use crate::strategy::{is_data, is_movement, is_pointwise};

/// Use lists and the nodes already given to a group.
#[derive(Debug)]
pub struct Planner<'g> {
    /// The graph being planned.
    pub g: &'g Graph,
    users: HashMap<ValueId, Vec<NodeId>>,
    returned: HashSet<ValueId>,
    compile_time: HashSet<NodeId>,
    /// Nodes given to a group so far.
    pub taken: HashSet<NodeId>,
}

impl<'g> Planner<'g> {
    /// A planner over `g`.
    pub fn new(g: &'g Graph) -> Self {
        let mut users: HashMap<ValueId, Vec<NodeId>> = HashMap::new();
        for &n in &g.order {
            for &a in &g.nodes[n].args {
                let list = users.entry(a).or_default();
                if !list.contains(&n) {
                    list.push(n);
                }
            }
        }
        let returned = g.outputs.iter().map(|o| o.value).collect();
        let compile_time = crate::strategy::compile_time_nodes(g);
        Planner { g, users, returned, compile_time, taken: HashSet::new() }
    }

    /// The nodes using `v`.
    pub fn users(&self, v: ValueId) -> &[NodeId] {
        self.users.get(&v).map_or(&[], Vec::as_slice)
    }

    /// The node defining `v`.
    pub fn def(&self, v: ValueId) -> NodeId {
        self.g.values[v].def
    }

    /// The op of a node.
    pub fn op(&self, n: NodeId) -> &'g Op {
        &self.g.nodes[n].op
    }

    /// Whether `n` can still join a group (computes, and is not taken).
    pub fn free(&self, n: NodeId) -> bool {
        !self.taken.contains(&n) && !is_data(self.op(n)) && !matches!(self.op(n), Op::Fusion(_))
    }

    /// Whether `v` is computed from data (weights, constants, inputs) by pointwise and movement
    /// ops only: the `-exp(A_log)`s, weight casts and zero states a kernel computes on the fly.
    pub fn data_derived(&self, v: ValueId) -> bool {
        let n = self.def(v);
        let op = self.op(n);
        is_data(op)
            || ((is_pointwise(op) || is_movement(op)) && self.g.nodes[n].args.iter().all(|&a| self.data_derived(a)))
    }

    /// Whether `v` depends only on weights and constants (see
    /// [`crate::strategy::compile_time_nodes`]).
    pub fn compile_time(&self, v: ValueId) -> bool {
        self.compile_time.contains(&self.def(v))
    }

    /// Adds to `group` the free, data-derived (or compile-time) producers of its operands that
    /// nothing outside the group uses, transitively.
    pub fn absorb_private_producers(&self, group: &mut Vec<NodeId>) {
        self.absorb_private(group, &|p, a| p.data_derived(a) || p.compile_time(a));
    }

    /// Adds to `group` the free pointwise and movement producers of its operands that nothing
    /// outside the group uses (an activation's fp8 scale computed from its amax), transitively.
    pub fn absorb_private_pointwise(&self, group: &mut Vec<NodeId>) {
        self.absorb_private(group, &|p, a| {
            let op = p.op(p.def(a));
            is_pointwise(op) || is_movement(op)
        });
    }

    /// Adds the free producers of the group's operands that `eligible` accepts and that only
    /// the group reads, transitively.
    fn absorb_private(&self, group: &mut Vec<NodeId>, eligible: &dyn Fn(&Self, ValueId) -> bool) {
        let mut i = 0;
        while i < group.len() {
            let n = group[i];
            for &a in &self.g.nodes[n].args {
                let p = self.def(a);
                if group.contains(&p) || !self.free(p) || !eligible(self, a) {
                    continue;
                }
                let private = self.g.nodes[p].results.iter().all(|&r| {
                    !self.returned.contains(&r) && self.users(r).iter().all(|u| group.contains(u) || *u == n)
                });
                if private {
                    group.push(p);
                }
            }
            i += 1;
        }
    }

    /// Extends `group` forward from `v` through single-use pointwise and movement ops (an
    /// epilogue: activations, casts, the residual add).
    pub fn absorb_epilogue(&self, group: &mut Vec<NodeId>, mut v: ValueId) {
        loop {
            if self.returned.contains(&v) {
                return;
            }
            let [u] = self.users(v) else { return };
            let u = *u;
            let op = self.op(u);
            if !self.free(u) || group.contains(&u) || !(is_pointwise(op) || is_movement(op)) {
                return;
            }
            let node = &self.g.nodes[u];
            let [r] = node.results.as_slice() else { return };
            // An operand computed from the group itself (gate·up where the up projection reads
            // the gate group's norm) would make the groups depend on each other.
            let members: HashSet<NodeId> = group.iter().copied().collect();
            if node.args.iter().any(|&a| a != v && self.reaches(a, &members)) {
                return;
            }
            group.push(u);
            v = *r;
        }
    }

    /// Whether `v` is computed, directly or through any nodes, from one of `targets`.
    pub fn reaches(&self, v: ValueId, targets: &HashSet<NodeId>) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![self.def(v)];
        while let Some(n) = stack.pop() {
            if targets.contains(&n) {
                return true;
            }
            if seen.insert(n) && !is_data(self.op(n)) {
                stack.extend(self.g.nodes[n].args.iter().map(|&a| self.def(a)));
            }
        }
        false
    }

    /// Marks the nodes of a group as taken.
    pub fn take(&mut self, group: &[NodeId]) {
        self.taken.extend(group.iter().copied());
    }

    /// Nodes reachable forward from `from` (exclusive), through free nodes.
    pub fn forward(&self, from: ValueId) -> HashSet<NodeId> {
        let mut seen = HashSet::new();
        let mut stack: Vec<ValueId> = vec![from];
        while let Some(v) = stack.pop() {
            for &u in self.users(v) {
                if self.free(u) && seen.insert(u) {
                    stack.extend(self.g.nodes[u].results.iter().copied());
                }
            }
        }
        seen
    }

    /// Nodes reaching `to` backward (inclusive of its definer), through free nodes.
    pub fn backward(&self, to: ValueId) -> HashSet<NodeId> {
        let mut seen = HashSet::new();
        let mut stack = vec![self.def(to)];
        while let Some(n) = stack.pop() {
            if self.free(n) && seen.insert(n) {
                stack.extend(self.g.nodes[n].args.iter().map(|&a| self.def(a)));
            }
        }
        seen
    }
}
