//! `schedule-hybrid` — puts every node not yet in a group into one, so the module is scheduled.
//!
//! Each remaining computing node becomes the main op of a group with the strategy that accepts
//! it (`gather`, `scatter_cache` — the K and V writes of one layer share a launch —,
//! `attention_prefill`/`attention_decode`, `row_reduce`, `sample`, ...), together with its
//! single-use pointwise epilogue and the weight-derived values only it uses. Decode and prefill
//! are scheduled separately because they are separate functions (`decode` has `S = 1`).
//! After it, `strategy::verify_schedule` holds: every launch is a fusion node.
//! Pre: a verified module. Post: a verified, scheduled module with bit-identical results.

use lathe_ir::ops::KernelStrategy;
use lathe_ir::{Graph, Module, NodeId, Op};

use crate::outline::{outline_groups, Group};
use crate::plan::Planner;
use crate::rewrite::for_each_function;
use crate::strategy::singleton;
use crate::{Changed, Options, Pass, PassContext, PassError, PassInfo};

/// Registry entry.
pub const INFO: PassInfo = PassInfo {
    name: "schedule-hybrid",
    summary: "give every remaining node a group and a kernel strategy (prefill and decode apart)",
    options: &[],
    create: |_: &Options| Ok(Box::new(ScheduleHybrid)),
};

/// The pass.
#[derive(Debug)]
pub struct ScheduleHybrid;

fn plan(m: &Module, g: &Graph) -> Vec<Group> {
    let mut p = Planner::new(g);
    let mut groups: Vec<Group> = Vec::new();
    // The cache writes of one layer (K and V) share one launch.
    let scatters: Vec<NodeId> =
        g.order.iter().copied().filter(|&n| matches!(g.nodes[n].op, Op::ScatterCache)).collect();
    for pair in scatters.chunks(2) {
        let mut group = pair.to_vec();
        p.absorb_private_producers(&mut group);
        p.take(&group);
        groups.push((group, KernelStrategy::ScatterCache));
    }
    for &n in &g.order {
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
        p.take(&group);
        groups.push((group, strategy));
    }
    groups
}

impl Pass for ScheduleHybrid {
    fn name(&self) -> &'static str {
        "schedule-hybrid"
    }

    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, PassError> {
        let header = crate::fold_constants::header(m);
        let mut made = 0;
        for_each_function(m, &mut |g| {
            let groups = plan(&header, g);
            made += groups.len();
            outline_groups(g, &groups)
        })
        .map_err(|message| PassError::Failed { pass: "schedule-hybrid".into(), message })?;
        cx.bump("groups", made as u64);
        Ok((made > 0).into())
    }
}
