//! `fuse-elementwise` — folds norms, casts and pointwise ops into the matmuls around them, then
//! groups the remaining pointwise chains.
//!
//! For every matmul (one `gemm` group, or `gemv` when it has at most 64 rows — decode):
//! - prologue: walking back from the lhs, the movement ops, casts, an fp8 `quantize` (with the
//!   pointwise scale computation only it uses; the activation's `amax` stays its own reduction)
//!   and the `rms_norm` that produce it;
//! - for a GEMV, its siblings: the other plain matmuls of the same input row (q, k and v of an
//!   attention layer) join its group with their epilogues, so one launch streams the three
//!   weights one after another and the row's norm is computed once (not when an epilogue op
//!   would read two of the products, as a SwiGLU's `silu(gate) · up` does);
//! - epilogue: the single-use chain of pointwise ops on its result — bias, activation (relu²),
//!   cast, the residual add;
//! - the weight-derived values only the group uses (weight casts).
//!
//! Then each remaining chain of single-use pointwise/movement ops becomes one `elementwise`
//! group (`max-inputs` bounds the operands of such a group).
//!
//! Pre: a verified module. Post: a verified module with bit-identical results.

use lathe_ir::ops::KernelStrategy;
use std::collections::HashSet;

use lathe_ir::{Graph, Module, NodeId, Op};

use crate::outline::{outline_groups, Group};
use crate::plan::Planner;
use crate::rewrite::for_each_function;
use crate::strategy::{is_gemv, is_movement, is_pointwise};
use crate::{Changed, Failure, OptionInfo, Options, Pass, PassContext, PassInfo, GRAPH_ONLY};

/// Registry entry.
pub const INFO: PassInfo = PassInfo {
    name: "fuse-elementwise",
    summary: "norm prologues and pointwise epilogues into matmuls; pointwise chains into one kernel",
    options: &[OptionInfo { name: "max-inputs", default: "8", help: "most operands of an elementwise group" }],
    accepts: GRAPH_ONLY,
    sets: None,
    create: |o: &Options| Ok(Box::new(FuseElementwise { max_inputs: o.usize("max-inputs")? })),
};

/// The pass.
#[derive(Debug)]
pub struct FuseElementwise {
    /// Most operands of an elementwise group.
    pub max_inputs: usize,
}

/// The group of matmul `n`: its prologue (back from the lhs through movement, casts, an fp8
/// quantize and, with `norm`, one rms_norm), its epilogue and the producers only it uses.
fn build_gemm_group(p: &Planner<'_>, n: NodeId, norm: bool) -> Vec<NodeId> {
    let g = p.g;
    let mut group = vec![n];
    let mut v = g.nodes[n].args[0];
    loop {
        let d = p.def(v);
        let op = p.op(d);
        let shared_ok = norm && matches!(op, Op::RmsNorm(_));
        let single = g.nodes[d].results.iter().all(|&r| p.users(r).iter().all(|u| group.contains(u)));
        if !p.free(d) || group.contains(&d) || !(single || shared_ok) {
            break;
        }
        let fits =
            is_movement(op) || matches!(op, Op::Cast(_) | Op::Quantize(_)) || (norm && matches!(op, Op::RmsNorm(_)));
        if !fits {
            break;
        }
        group.push(d);
        if matches!(op, Op::RmsNorm(_)) {
            break;
        }
        v = g.nodes[d].args[0];
    }
    p.absorb_epilogue(&mut group, g.nodes[n].results[0]);
    p.absorb_private_producers(&mut group);
    // The activation's fp8 scale (from its amax, which stays a reduction of its own).
    p.absorb_private_pointwise(&mut group);
    group
}

/// Whether a value of `group` is read outside it by a node the group itself depends on.
fn feeds_back(p: &Planner<'_>, group: &[NodeId]) -> bool {
    let members: HashSet<NodeId> = group.iter().copied().collect();
    let outside_readers: HashSet<NodeId> = group
        .iter()
        .flat_map(|&x| p.g.nodes[x].results.iter().flat_map(|&r| p.users(r).iter().copied()))
        .filter(|u| !members.contains(u))
        .collect();
    if outside_readers.is_empty() {
        return false;
    }
    group
        .iter()
        .flat_map(|&x| p.g.nodes[x].args.iter().copied())
        .any(|a| !members.contains(&p.def(a)) && p.reaches(a, &outside_readers))
}

/// `group` (the group of GEMV `n`) with the sibling projections of `n`'s input row — plain
/// matmuls of the same lhs and attributes, as q, k and v read one normed row — and their
/// epilogues: one launch streams their weights one after another. A sibling stays out when
/// taking it would close a cycle or when an epilogue op would read two of the products (a
/// SwiGLU's `silu(gate) · up` pairs columns that different warps compute).
fn with_siblings(p: &Planner<'_>, n: NodeId, mut group: Vec<NodeId>) -> Vec<NodeId> {
    let g = p.g;
    if !matches!(p.op(n), Op::Matmul(_)) {
        return group;
    }
    let lhs = g.nodes[n].args[0];
    for &s in p.users(lhs) {
        if s == n || !p.free(s) || group.contains(&s) || p.op(s) != p.op(n) || g.nodes[s].args[0] != lhs {
            continue;
        }
        let mut candidate = group.clone();
        candidate.push(s);
        p.absorb_epilogue(&mut candidate, g.nodes[s].results[0]);
        p.absorb_private_producers(&mut candidate);
        if !feeds_back(p, &candidate) && !mixes_products(g, &candidate) {
            group = candidate;
        }
    }
    group
}

/// Whether a node of `group` reads (transitively, within it) the products of two of its matmuls.
fn mixes_products(g: &Graph, group: &[NodeId]) -> bool {
    let mut reached: std::collections::HashMap<NodeId, usize> = std::collections::HashMap::new();
    for &mm in group.iter().filter(|&&x| matches!(g.nodes[x].op, Op::Matmul(_) | Op::ScaledMatmul(_))) {
        let mut seen = HashSet::new();
        let mut stack = vec![mm];
        while let Some(x) = stack.pop() {
            for &r in &g.nodes[x].results {
                for &u in group {
                    if g.nodes[u].args.contains(&r) && seen.insert(u) {
                        stack.push(u);
                    }
                }
            }
        }
        for u in seen {
            *reached.entry(u).or_default() += 1;
        }
    }
    reached.values().any(|&c| c > 1)
}

fn plan(m: &Module, g: &Graph, max_inputs: usize) -> Vec<Group> {
    let mut p = Planner::new(g);
    let mut groups = Vec::new();
    for &n in &g.order {
        if !p.free(n) || !matches!(p.op(n), Op::Matmul(_) | Op::ScaledMatmul(_)) {
            continue;
        }
        let mut group = build_gemm_group(&p, n, true);
        if feeds_back(&p, &group) {
            // A shared norm whose other readers feed this group (the amax of an fp8 activation)
            // would close a cycle: leave the norm to its own launch.
            group = build_gemm_group(&p, n, false);
        }
        let lhs = &g.values[g.nodes[n].args[0]].ty;
        let strategy = if is_gemv(m, lhs) { KernelStrategy::Gemv } else { KernelStrategy::Gemm };
        if strategy == KernelStrategy::Gemv {
            group = with_siblings(&p, n, group);
        }
        p.take(&group);
        groups.push((group, strategy));
    }
    // Chains of single-use pointwise/movement ops.
    for &n in &g.order {
        let op = p.op(n);
        if !p.free(n) || !(is_pointwise(op) || is_movement(op)) {
            continue;
        }
        let mut group = vec![n];
        if let [r] = g.nodes[n].results.as_slice() {
            p.absorb_epilogue(&mut group, *r);
        }
        p.absorb_private_producers(&mut group);
        let inputs: HashSet<_> = group
            .iter()
            .flat_map(|&x| g.nodes[x].args.iter().map(|&a| p.def(a)))
            .filter(|d| !group.contains(d))
            .collect();
        if group.len() < 2 || inputs.len() > max_inputs {
            continue;
        }
        p.take(&group);
        groups.push((group, KernelStrategy::Elementwise));
    }
    groups
}

impl Pass for FuseElementwise {
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, Failure> {
        let header = crate::fold_constants::header(m);
        let max = self.max_inputs;
        let mut made = 0;
        for_each_function(m, &mut |g| {
            let groups = plan(&header, g, max);
            made += groups.len();
            outline_groups(g, &groups)
        })
        .map_err(|(function, error)| Failure::Outline { function, error })?;
        cx.bump("groups", made as u64);
        Ok((made > 0).into())
    }
}
