//! `schedule-hybrid` — puts every node not yet in a group into one, so the module is scheduled.
//!
//! Each remaining computing node becomes the main op of a group with the strategy that accepts
//! it (`gather`, `scatter_cache` — the K and V writes of one layer, told by their caches'
//! roles, share a launch —,
//! `attention_prefill`/`attention_decode`, `row_reduce`, `sample`, ...), together with its
//! single-use pointwise epilogue and the weight-derived values only it uses. Decode and prefill
//! are scheduled separately because they are separate functions (`decode` has `S = 1`).
//! With `prefill-chunk=N`, the `extend` program is specialized to chunks of at most N tokens
//! (its own `seq` symbol `C`), so a long prompt is prefilled chunk by chunk with bounded
//! activation memory.
//! An `amax` of a value a group produces (an fp8 activation scale) joins that group as an
//! epilogue reduction instead of taking a launch. A value computed from weights and constants
//! alone joins the group that reads it; it gets a group of its own only when no one group does.
//! Fusion groups already there that their strategy does not accept (written by hand, or nested
//! in another group) are inlined first and their ops scheduled like any others.
//! After it, `strategy::verify_schedule` holds: every computing node sits in an accepted group.
//! Pre: a verified module. Post: a verified, scheduled module with bit-identical results.

use lathe_ir::ops::KernelStrategy;
use lathe_ir::{Dim, FunctionKind, Graph, InputRole, Module, NodeId, Op, Stage, StepSymbol};

use crate::outline::{inline_groups, outline_groups, Group};
use crate::plan::Planner;
use crate::rewrite::{for_each_function, Replacements};
use crate::strategy::{classify, compile_time_nodes, singleton};
use crate::{Changed, Failure, OptionInfo, Options, Pass, PassContext, PassInfo, ANY_STAGE};

/// Registry entry.
pub const INFO: PassInfo = PassInfo {
    name: "schedule-hybrid",
    summary: "give every remaining node a group and a kernel strategy (prefill and decode apart)",
    options: &[OptionInfo {
        name: "prefill-chunk",
        default: "0",
        help: "longest extend chunk in tokens (0: the model's max_seq); longer prompts run as several chunks",
    }],
    accepts: ANY_STAGE,
    sets: Some(Stage::Scheduled),
    create: |o: &Options| Ok(Box::new(ScheduleHybrid { prefill_chunk: o.usize("prefill-chunk")? as u64 })),
};

/// The pass.
#[derive(Debug)]
pub struct ScheduleHybrid {
    /// Longest extend chunk (0: no chunking).
    pub prefill_chunk: u64,
}

/// Chunked prefill: the `extend` program (kind `extend`) gets its own sequence symbol
/// `C <= chunk` in place of its `seq` step symbol, so its buffers are planned for one chunk; a
/// prompt longer than the chunk runs as several `extend` calls, each carrying the conv and SSM
/// states and the KV cache to the next (the programs are exact under chunking: two chunks of
/// extend equal one). The new symbol is named `C` (or `C1`, `C2`, … when taken). Returns
/// whether it applied.
fn chunk_prefill(m: &mut Module, chunk: u64) -> bool {
    let Some(fi) = m.functions.iter().position(|f| f.kind == FunctionKind::Extend) else { return false };
    let Some(s) = m.functions[fi].step_symbol(StepSymbol::Seq) else { return false };
    if chunk == 0 || chunk >= m.symbols[s].max {
        return false;
    }
    let name = Module::fresh_name("C", "", &|n| m.symbol(n).is_some());
    let c = m.add_symbol(name, chunk);
    let swap = |d: &mut Dim| {
        if *d == Dim::Sym(s) {
            *d = Dim::Sym(c);
        }
    };
    fn visit(g: &mut Graph, swap: &dyn Fn(&mut Dim)) {
        let values: Vec<_> = g.values.iter().map(|(h, _)| h).collect();
        for v in values {
            g.values[v].ty.shape.iter_mut().for_each(swap);
        }
        let order = g.order.clone();
        for n in order {
            match &mut g.nodes[n].op {
                Op::Input(i) => i.ty.shape.iter_mut().for_each(swap),
                Op::Iota(i) => i.ty.shape.iter_mut().for_each(swap),
                Op::Reshape(shape) | Op::Broadcast(shape) => shape.iter_mut().for_each(swap),
                Op::Fusion(f) => visit(&mut f.body, swap),
                _ => {}
            }
        }
    }
    let f = &mut m.functions[fi];
    visit(&mut f.graph, &swap);
    for (role, sym) in &mut f.step_symbols {
        if *role == StepSymbol::Seq {
            *sym = c;
        }
    }
    true
}

/// Moves every `amax` of a value produced by a fusion group into that group as an epilogue
/// reduction (a block max and one atomic max per CTA), so an fp8 activation scale costs no
/// launch of its own. Returns how many moved.
fn amax_into_producers(g: &mut Graph) -> usize {
    let mut rep = Replacements::default();
    let mut moved = Vec::new();
    let order = g.order.clone();
    for n in order {
        if !matches!(g.nodes[n].op, Op::Amax) {
            continue;
        }
        let x = g.nodes[n].args[0];
        let producer = g.values[x].def;
        let k = g.values[x].index as usize;
        let out_ty = g.values[g.nodes[n].results[0]].ty.clone();
        let Op::Fusion(f) = &mut g.nodes[producer].op else { continue };
        let Some(inner) = f.body.outputs.get(k).map(|o| o.value) else { continue };
        let r = f.body.push_node(Op::Amax, vec![inner], vec![out_ty.clone()]);
        f.body.outputs.push(lathe_ir::Output::new("", r[0]));
        let index = g.nodes[producer].results.len() as u32;
        let v = g.values.append(lathe_ir::Value { ty: out_ty, def: producer, index });
        g.nodes[producer].results.push(v);
        rep.insert(g.nodes[n].results[0], v);
        moved.push(n);
    }
    if !moved.is_empty() {
        rep.apply(g);
        g.order.retain(|n| !moved.contains(n));
        *g = g.renumbered();
    }
    moved.len()
}

fn plan(m: &Module, g: &Graph) -> Vec<Group> {
    let mut p = Planner::new(g);
    let mut groups: Vec<Group> = Vec::new();
    // The cache writes of one layer (K and V, by their caches' roles) share one launch.
    let mut by_layer: Vec<(Option<u32>, Vec<NodeId>)> = Vec::new();
    for &n in &g.order {
        if !matches!(g.nodes[n].op, Op::ScatterCache) {
            continue;
        }
        let layer = g.role_of(g.nodes[n].args[0]).and_then(InputRole::cache).map(|(layer, _)| layer);
        match by_layer.iter_mut().find(|(l, _)| layer.is_some() && *l == layer) {
            Some((_, group)) => group.push(n),
            None => by_layer.push((layer, vec![n])),
        }
    }
    for (_, mut group) in by_layer {
        p.absorb_private_producers(&mut group);
        p.take(&group);
        groups.push((group, KernelStrategy::ScatterCache));
    }
    // Values computed from weights and constants alone go with the group that reads them (a
    // private producer, which its kernel holds as a compile-time value); only those no single
    // group takes get a group of their own, after every run-time node has one. Made the main
    // op of a group first, such a value would leave a run-time epilogue without its main op
    // (`amax %w` then `add %x`: a row_reduce group whose only reduction is compile-time).
    let compile_time = compile_time_nodes(g);
    let run_time = g.order.iter().filter(|n| !compile_time.contains(n));
    let sweep: Vec<NodeId> = run_time.chain(g.order.iter().filter(|n| compile_time.contains(n))).copied().collect();
    for n in sweep {
        if !p.free(n) {
            continue;
        }
        let strategy = singleton(m, g, &g.nodes[n]);
        let mut group = vec![n];
        if let [r] = g.nodes[n].results.as_slice() {
            p.absorb_epilogue(&mut group, *r);
        }
        // The extras are pointwise, movement or weight-derived: every strategy accepts them.
        p.absorb_private_producers(&mut group);
        // An amax of what the group computes rides along as an epilogue reduction.
        let amaxes: Vec<NodeId> = group
            .iter()
            .flat_map(|&x| g.nodes[x].results.iter().flat_map(|&r| p.users(r).iter().copied()))
            .filter(|&u| p.free(u) && matches!(p.op(u), Op::Amax) && !group.contains(&u))
            .collect();
        for a in amaxes {
            if !group.contains(&a) {
                group.push(a);
            }
        }
        p.take(&group);
        groups.push((group, strategy));
    }
    groups
}

impl Pass for ScheduleHybrid {
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, Failure> {
        let chunked = chunk_prefill(m, self.prefill_chunk);
        let header = crate::fold_constants::header(m);
        let mut made = usize::from(chunked);
        for_each_function(m, &mut |g| {
            // A group its strategy does not accept (hand-written, or nested in another) is taken
            // apart and its ops scheduled like any others.
            made += inline_groups(g, &|f| classify(&header, f).is_err());
            made += amax_into_producers(g);
            let groups = plan(&header, g);
            made += groups.len();
            outline_groups(g, &groups)
        })
        .map_err(|(function, error)| Failure::Outline { function, error })?;
        cx.bump("groups", made as u64);
        Ok((made > 0).into())
    }
}
