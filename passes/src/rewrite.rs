//! Graph edits shared by the passes: queued value replacements applied in one sweep, removal of
//! dead nodes, and visiting every graph of a module (fusion bodies included).

use std::collections::HashMap;

use lathe_ir::{Graph, Module, NodeId, Op, ValueId};

/// Replacements `old → new`, resolved transitively and applied to every use at once.
#[derive(Debug, Default)]
pub struct Replacements {
    map: HashMap<ValueId, ValueId>,
}

impl Replacements {
    /// Queues `old → new`.
    pub fn insert(&mut self, old: ValueId, new: ValueId) {
        if old != new {
            self.map.insert(old, new);
        }
    }

    /// The value `v` stands for after the queued replacements.
    pub fn resolve(&self, mut v: ValueId) -> ValueId {
        // Chains are acyclic: a value is only ever replaced by one defined earlier.
        while let Some(&n) = self.map.get(&v) {
            v = n;
        }
        v
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Rewrites every operand and output of `g`.
    pub fn apply(&self, g: &mut Graph) {
        if self.map.is_empty() {
            return;
        }
        let order = g.order.clone();
        for n in order {
            let args: Vec<ValueId> = g.nodes[n].args.iter().map(|&a| self.resolve(a)).collect();
            g.nodes[n].args = args;
        }
        for o in &mut g.outputs {
            o.value = self.resolve(o.value);
            o.updates = o.updates.map(|u| self.resolve(u));
        }
    }
}

/// Drops nodes none of whose results reach an output (inputs stay: they are the signature) and
/// renumbers the graph. Returns how many nodes were removed.
pub fn remove_dead(g: &mut Graph) -> usize {
    let mut live = vec![false; g.values.len()];
    for o in &g.outputs {
        live[o.value.index()] = true;
    }
    let mut keep: Vec<NodeId> = Vec::with_capacity(g.order.len());
    for &n in g.order.iter().rev() {
        let node = &g.nodes[n];
        if matches!(node.op, Op::Input(_)) || node.results.iter().any(|r| live[r.index()]) {
            keep.push(n);
            for a in &node.args {
                live[a.index()] = true;
            }
        }
    }
    keep.reverse();
    let removed = g.order.len() - keep.len();
    if removed > 0 || g.nodes.len() != g.order.len() {
        g.order = keep;
        *g = g.renumbered();
    }
    removed
}

/// Calls `f` on every graph of `m`: each function, then recursively each fusion body.
pub fn for_each_graph(m: &mut Module, f: &mut dyn FnMut(&mut Graph)) {
    fn visit(g: &mut Graph, f: &mut dyn FnMut(&mut Graph)) {
        let order = g.order.clone();
        for n in order {
            if let Op::Fusion(fu) = &mut g.nodes[n].op {
                visit(&mut fu.body, f);
            }
        }
        f(g);
    }
    for func in &mut m.functions {
        visit(&mut func.graph, f);
    }
}

/// Calls `f` on the top-level graph of every function, stopping at the first error, which comes
/// back with the function's name.
pub fn for_each_function<E>(m: &mut Module, f: &mut dyn FnMut(&mut Graph) -> Result<(), E>) -> Result<(), (String, E)> {
    for func in &mut m.functions {
        f(&mut func.graph).map_err(|e| (func.name.clone(), e))?;
    }
    Ok(())
}
