//! The invariants of a memory plan, checked against what is computed here from the graph and
//! the launch list (shared by the plan tests and the pipeline property test).

use std::collections::HashMap;

use lathe_ir::{Dim, Function, Module, Op, ValueId};
use lathe_passes::plan_memory::{MemoryPlan, ALIGN};
use lathe_passes::strategy::is_data;

/// Checks the invariants of a function's plan against what is computed here from the graph and
/// the launch list: every top-level value has exactly one location of the right kind; every
/// intermediate and every scratch buffer of every group has an arena buffer of its size at the
/// bounds, live over the launches computed here; offsets are aligned and inside the arena; two
/// buffers live at the same launch (or kept zero for the whole run) never share a byte.
pub fn check_sound(m: &Module, f: &Function, p: &MemoryPlan) {
    use lathe_passes::plan_memory::{Location, Owner, StepField};
    let g = &f.graph;
    let name = &f.name;
    let list = &p.launches;
    let span = |n: lathe_ir::NodeId| list.span(n).unwrap_or_else(|| panic!("@{name}: node {n:?} has no launches"));
    let bound = |d: &Dim| match d {
        Dim::Const(c) => *c,
        Dim::Sym(s) => m.symbols[*s].max,
    };
    let inputs: Vec<ValueId> = g.inputs().map(|(_, v)| v).collect();
    // Every top-level value: exactly one location, of the kind its definition asks for.
    let mut want: HashMap<ValueId, (usize, usize, u64)> = HashMap::new();
    for &n in &g.order {
        let node = &g.nodes[n];
        for &r in &node.results {
            let loc = p.location(r).unwrap_or_else(|| panic!("@{name}: {r:?} has no location"));
            let output = g.outputs.iter().position(|o| o.value == r);
            let ok = match (&node.op, loc) {
                (Op::Input(i), Location::Step(field)) => StepField::of(f.kind, i.role) == Some(field),
                (Op::Input(i), Location::Input(k)) => inputs[k] == r && StepField::of(f.kind, i.role).is_none(),
                (Op::Weight(w), Location::Weight(x)) => *w == x,
                (Op::Constant(_), Location::Constant) => true,
                (_, Location::InPlace(k)) => g.outputs.iter().any(|o| o.value == r && o.updates == Some(inputs[k])),
                (_, Location::Output(k)) => output == Some(k) && g.outputs[k].updates.is_none(),
                (op, Location::Arena(_)) => output.is_none() && !is_data(op),
                _ => false,
            };
            assert!(ok, "@{name}: {r:?} of `{}` is at {loc:?}", node.op.name());
            if let Location::Arena(_) = loc {
                let ty = g.ty(r);
                let bytes = ty.shape.iter().map(bound).product::<u64>() * ty.dtype.size_bytes() as u64;
                want.insert(r, (span(n).0, span(n).1, bytes));
            }
        }
        if !is_data(&node.op) {
            for &a in &node.args {
                if let Some(w) = want.get_mut(&a) {
                    w.1 = w.1.max(span(n).1);
                }
            }
        }
    }
    let values: Vec<_> = p.buffers.iter().filter_map(|b| b.value()).collect();
    assert_eq!(values.len(), want.len(), "@{name}: one arena buffer per intermediate");
    // Scratch: one buffer per scratch of each group, over the group's launches.
    let scratch: usize = list.groups().iter().map(|x| x.3.len()).sum();
    assert_eq!(p.buffers.len() - values.len(), scratch, "@{name}: one arena buffer per scratch");
    let slot = |b: u64| b.div_ceil(ALIGN) * ALIGN;
    for b in &p.buffers {
        match b.owner {
            Owner::Value(v) => assert_eq!(want.get(&v), Some(&(b.first, b.last, b.bytes)), "@{name}: {b:?}"),
            Owner::Scratch { node, index } => {
                let (_, first, count, s) = list.groups().iter().find(|x| x.0 == node).expect("the group");
                let bytes = s[index].bytes(&|d| bound(&d)).expect("fits");
                assert_eq!((b.first, b.last, b.bytes), (*first, first + count - 1, bytes), "@{name}: {b:?}");
            }
        }
        assert_eq!(b.offset % ALIGN, 0, "@{name}: {b:?}");
        assert!(b.offset + slot(b.bytes) <= p.peak_bytes, "@{name}: {b:?}");
    }
    for (i, x) in p.buffers.iter().enumerate() {
        for y in &p.buffers[i + 1..] {
            let live = x.zero_at_load || y.zero_at_load || (x.first <= y.last && y.first <= x.last);
            let disjoint = x.offset + slot(x.bytes) <= y.offset || y.offset + slot(y.bytes) <= x.offset;
            assert!(!live || disjoint, "@{name}: {x:?} and {y:?} are live together and share bytes");
        }
    }
    assert_eq!(p.no_reuse_bytes, p.buffers.iter().map(|b| slot(b.bytes)).sum::<u64>(), "@{name}");
    assert!(p.peak_bytes <= p.no_reuse_bytes, "@{name}");
}
