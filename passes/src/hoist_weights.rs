//! `hoist-weights` — values computed from weights alone become derived weights, evaluated once
//! when the artifact is written.
//!
//! A value is *compile-time* when it depends only on weights and constants through weight
//! transforms ([`crate::strategy::compile_time_nodes`]). Such a value becomes a derived weight
//! (`weight @w : T = derived { … }`, its subgraph copied into the weight) when:
//! - something computed at run time reads it, a `dequantize` reads it, or a function returns it;
//! - its shape is constant (weights have constant shapes);
//! - its subgraph reads a weight and computes something: a view of a weight made only of
//!   movement ops stays inline (a kernel reads it through its index map, no copy);
//! - it is not a `dequantize`: an fp8 weight is dequantized inside the kernel that reads it, so
//!   the kernel streams the fp8 codes (W8A16 is about those bytes); its codes and scale are the
//!   derived weights.
//!
//! So `−exp(A_log)`, a weight cast, and an fp8 weight's codes and scale become weights; the
//! groups the fusion passes build then hold only what runs. Equal subgraphs (the same transform
//! in `eval`, `extend` and `decode`) share one derived weight. A derived weight takes the role
//! (block) of the first weight it reads and is named after it and the op that ends it
//! (`….A_log.neg`), with a number when that name is taken.
//!
//! Pre: a verified `graph` module. Post: a verified module computing bit-identical results (the
//! interpreter evaluates a derived weight with the same ops); nodes left unused are removed.

use std::collections::{HashMap, HashSet};

use lathe_ir::{Graph, Module, NodeId, Op, Output, ValueId, WeightId, WeightSource};

use crate::rewrite::{remove_dead, Replacements};
use crate::strategy::{compile_time_nodes, is_data, is_movement};
use crate::{Changed, Failure, Options, Pass, PassContext, PassInfo, GRAPH_ONLY};

/// Registry entry.
pub const INFO: PassInfo = PassInfo {
    name: "hoist-weights",
    summary: "values computed from weights alone (fp8 codes and scales, casts, -exp(A_log)) become derived weights",
    options: &[],
    accepts: GRAPH_ONLY,
    sets: None,
    create: |_: &Options| Ok(Box::new(HoistWeights)),
};

/// The pass.
#[derive(Debug)]
pub struct HoistWeights;

/// The subgraph computing `root` of `g` (nodes of `within`), copied into a graph of its own
/// returning it.
fn extract(g: &Graph, root: ValueId, within: &HashSet<NodeId>) -> Graph {
    let mut needed = HashSet::new();
    let mut stack = vec![g.values[root].def];
    while let Some(n) = stack.pop() {
        if within.contains(&n) && needed.insert(n) {
            stack.extend(g.nodes[n].args.iter().map(|&a| g.values[a].def));
        }
    }
    let mut out = Graph::default();
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for &n in g.order.iter().filter(|n| needed.contains(n)) {
        let node = &g.nodes[n];
        let args = node.args.iter().map(|a| map[a]).collect();
        let types = node.results.iter().map(|&r| g.values[r].ty.clone()).collect();
        for (&old, new) in node.results.iter().zip(out.push_node(node.op.clone(), args, types)) {
            map.insert(old, new);
        }
    }
    out.outputs.push(Output::new("", map[&root]));
    out
}

/// Whether a derived graph reads a weight and computes something beyond moving it (its values
/// are all of constant shape: `compile_time_nodes` keeps only those).
fn worth_hoisting(g: &Graph) -> bool {
    let ops = || g.order.iter().map(|&n| &g.nodes[n].op);
    ops().any(|op| matches!(op, Op::Weight(_))) && ops().any(|op| !is_data(op) && !is_movement(op))
}

/// What finds a derived graph among those made: the weights it reads and its size.
type Key = (Vec<WeightId>, usize);

/// The derived weights made so far, found by the weights they read and their size (a scan of
/// all of them per candidate would make the pass quadratic in the number of layers).
#[derive(Default)]
struct Made {
    by_key: HashMap<Key, Vec<(Graph, WeightId)>>,
    count: usize,
    /// Every weight name of the module, for fresh names.
    names: HashSet<String>,
}

impl Made {
    /// Equal derived graphs have equal keys.
    fn key(g: &Graph) -> Key {
        let reads = g
            .order
            .iter()
            .filter_map(|&n| match g.nodes[n].op {
                Op::Weight(w) => Some(w),
                _ => None,
            })
            .collect();
        (reads, g.order.len())
    }
}

/// Hoists the compile-time values of one graph into `m`'s weights (shared through `made`);
/// returns how many values now read a derived weight.
fn hoist_graph(m: &mut Module, g: &mut Graph, made: &mut Made) -> usize {
    let ct = compile_time_nodes(g);
    let returned: HashSet<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    let mut users: HashMap<ValueId, Vec<NodeId>> = HashMap::new();
    for &n in &g.order {
        for &a in &g.nodes[n].args {
            users.entry(a).or_default().push(n);
        }
    }
    let runtime_reader = |r: ValueId| {
        returned.contains(&r)
            || users
                .get(&r)
                .is_some_and(|us| us.iter().any(|u| !ct.contains(u) || matches!(g.nodes[*u].op, Op::Dequantize(_))))
    };
    let mut roots = Vec::new();
    for &n in &g.order {
        let node = &g.nodes[n];
        if !ct.contains(&n) || is_data(&node.op) || matches!(node.op, Op::Dequantize(_)) {
            continue;
        }
        for &r in &node.results {
            if runtime_reader(r) && g.values[r].ty.const_elements().is_some() {
                roots.push((n, r));
            }
        }
    }
    let mut rep = Replacements::default();
    let mut hoisted = 0;
    let mut reads: Vec<(NodeId, Vec<ValueId>)> = Vec::new();
    for (n, r) in roots {
        let derived = extract(g, r, &ct).renumbered();
        if !worth_hoisting(&derived) {
            continue;
        }
        let key = Made::key(&derived);
        let w = match made.by_key.get(&key).and_then(|c| c.iter().find(|(d, _)| d.same(&derived))) {
            Some((_, w)) => *w,
            None => {
                let first = derived.order.iter().find_map(|&x| match derived.nodes[x].op {
                    Op::Weight(w) => Some(w),
                    _ => None,
                });
                let base = first.map_or_else(|| "derived".to_string(), |w| m.weights[w].name.clone());
                let stem = format!("{base}.{}", g.nodes[n].op.name());
                let name = Module::fresh_name(&stem, ".", &|c| made.names.contains(c));
                made.names.insert(name.clone());
                let role = first.and_then(|w| m.weights[w].role);
                let w = m.add_weight(name, g.values[r].ty.clone(), WeightSource::Derived(Box::new(derived.clone())));
                m.weights[w].role = role;
                made.by_key.entry(key).or_default().push((derived, w));
                made.count += 1;
                w
            }
        };
        let ty = g.values[r].ty.clone();
        let v = g.push_node(Op::Weight(w), Vec::new(), vec![ty])[0];
        // The new read goes where the value was computed (`push_node` put it last).
        g.order.pop();
        reads.push((n, vec![v]));
        rep.insert(r, v);
        hoisted += 1;
    }
    if hoisted > 0 {
        let mut order = Vec::with_capacity(g.order.len() + reads.len());
        for &n in &g.order {
            for (at, vs) in &reads {
                if *at == n {
                    order.extend(vs.iter().map(|&v| g.values[v].def));
                }
            }
            order.push(n);
        }
        g.order = order;
        rep.apply(g);
        remove_dead(g);
    }
    hoisted
}

impl Pass for HoistWeights {
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, Failure> {
        let mut made = Made { names: m.weights.iter().map(|(_, w)| w.name.clone()).collect(), ..Made::default() };
        let mut hoisted = 0;
        for i in 0..m.functions.len() {
            let mut g = std::mem::take(&mut m.functions[i].graph);
            hoisted += hoist_graph(m, &mut g, &mut made);
            m.functions[i].graph = g;
        }
        cx.bump("values-hoisted", hoisted as u64);
        cx.bump("weights-derived", made.count as u64);
        Ok((hoisted > 0).into())
    }
}
