//! `dce` — dead code elimination.
//!
//! Removes every node whose results reach no output of its graph (function or fusion body).
//! Every op of the IR is free of side effects — caches are written by returning them — so
//! liveness is plain reachability. `input` nodes stay: they are the graph's signature.
//! Pre: a verified module. Post: a verified module with the same outputs and results.

use lathe_ir::Module;

use crate::rewrite::{for_each_graph, remove_dead};
use crate::{Changed, Failure, Options, Pass, PassContext, PassInfo, ANY_STAGE};

/// Registry entry.
pub const INFO: PassInfo = PassInfo {
    name: "dce",
    summary: "remove nodes whose results are never used",
    options: &[],
    accepts: ANY_STAGE,
    sets: None,
    create: |_: &Options| Ok(Box::new(Dce)),
};

/// The pass.
#[derive(Debug)]
pub struct Dce;

impl Pass for Dce {
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, Failure> {
        let mut removed = 0;
        for_each_graph(m, &mut |g| removed += remove_dead(g));
        cx.bump("nodes-removed", removed as u64);
        Ok((removed > 0).into())
    }
}
