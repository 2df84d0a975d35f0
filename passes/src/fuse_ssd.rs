//! `fuse-ssd` — groups the Mamba-2 mixer between its two projections.
//!
//! Recognizes the canonical chain `in_proj → split → conv1d.causal → silu → split → reshapes;
//! dt + dt_bias → softplus (→ clamp); −exp(A_log) → scan.ssd → + D·x → reshape → gated
//! rms_norm → out_proj` around every `scan.ssd` and outlines everything strictly between the two
//! matmuls (plus the weight-derived values only it uses):
//! - decode (`S = 1`): one `ssd_decode_step` group — conv state update, SiLU, the recurrence
//!   step and D skip in one launch; the gated group norm is left to the out_proj GEMV's
//!   prologue (a norm group spans more heads than one CTA of the step holds);
//! - prefill: two groups, `conv1d_causal` (the split, the conv and its SiLU) and
//!   `ssd_chunk_scan` (dt processing, the chunked scan with its state passing, D skip, gate and
//!   norm). The scan group is one launch: its kernel passes states between chunks itself.
//!
//! `chunk=N` sets the chunk length hint of the grouped scans (what the prefill kernels tile by).
//!
//! A scan whose surroundings do not match is left for `schedule-hybrid`.
//! Pre: a verified module. Post: a verified module with bit-identical results.

use lathe_ir::ops::KernelStrategy;
use lathe_ir::{Graph, Module, NodeId, Op};

use crate::outline::{outline_groups, Group};
use crate::plan::Planner;
use crate::rewrite::for_each_function;
use crate::{Changed, Failure, OptionInfo, Options, Pass, PassContext, PassInfo, GRAPH_ONLY};

/// Registry entry.
pub const INFO: PassInfo = PassInfo {
    name: "fuse-ssd",
    summary: "group the Mamba-2 mixer between in_proj and out_proj (1 launch decode, 2 prefill)",
    options: &[OptionInfo {
        name: "chunk",
        default: "0",
        help: "chunk length of the prefill scan kernels (0: the model's chunk_size)",
    }],
    accepts: GRAPH_ONLY,
    sets: None,
    create: |o: &Options| Ok(Box::new(FuseSsd { chunk: o.usize("chunk")? as u64 })),
};

/// The pass.
#[derive(Debug)]
pub struct FuseSsd {
    /// Chunk length set on every grouped scan (0 keeps each scan's hint).
    pub chunk: u64,
}

/// Sets the chunk hint of every `scan.ssd` in the fusion bodies of `g` (a lowering choice,
/// never semantics).
fn set_chunk(g: &mut Graph, chunk: u64) {
    let order = g.order.clone();
    for n in order {
        if let Op::Fusion(f) = &mut g.nodes[n].op {
            let inner = f.body.order.clone();
            for i in inner {
                if let Op::ScanSsd(s) = &mut f.body.nodes[i].op {
                    s.chunk = chunk;
                }
            }
        }
    }
}

fn is_matmul(op: &Op) -> bool {
    matches!(op, Op::Matmul(_) | Op::ScaledMatmul(_))
}

/// The first matmul met walking from `v` through free nodes, backward (producers) or forward
/// (users), without passing through another matmul.
fn nearest_matmul(p: &Planner<'_>, v: lathe_ir::ValueId, forward: bool) -> Option<NodeId> {
    let mut seen = std::collections::HashSet::new();
    let mut queue = std::collections::VecDeque::from([v]);
    while let Some(v) = queue.pop_front() {
        let next: Vec<NodeId> = if forward { p.users(v).to_vec() } else { vec![p.def(v)] };
        for n in next {
            if !seen.insert(n) {
                continue;
            }
            if is_matmul(p.op(n)) {
                return Some(n);
            }
            if p.free(n) {
                let node = &p.g.nodes[n];
                if forward {
                    queue.extend(node.results.iter().copied());
                } else {
                    queue.extend(node.args.iter().copied());
                }
            }
        }
    }
    None
}

/// The groups of one graph.
fn plan(g: &Graph) -> Vec<Group> {
    let mut p = Planner::new(g);
    let mut groups = Vec::new();
    let scans: Vec<NodeId> = g.order.iter().copied().filter(|&n| matches!(g.nodes[n].op, Op::ScanSsd(_))).collect();
    for s in scans {
        if !p.free(s) {
            continue;
        }
        // The projections: the nearest matmul the scan's x comes from, and the nearest one its
        // y flows into.
        let Some(m1) = nearest_matmul(&p, g.nodes[s].args[0], false) else { continue };
        let Some(m2) = nearest_matmul(&p, g.nodes[s].results[0], true) else { continue };
        let between_fwd = p.forward(g.nodes[m1].results[0]);
        let between_back = p.backward(g.nodes[m2].args[0]);
        let mut region: Vec<NodeId> = g
            .order
            .iter()
            .copied()
            .filter(|n| between_fwd.contains(n) && between_back.contains(n) && *n != m2)
            .collect();
        if !region.contains(&s) || region.iter().any(|&n| is_matmul(p.op(n))) {
            continue;
        }
        // Only what the SSD kernels hold: ops after the norm (an fp8 quantization of the out_proj
        // input, say) belong to the projection's group.
        // What depends on a dropped op is dropped too (in order, so one sweep suffices).
        let mut dropped = std::collections::HashSet::new();
        region.retain(|&n| {
            let op = p.op(n);
            let fits =
                crate::strategy::is_light(op) || matches!(op, Op::Conv1dCausal | Op::ScanSsd(_) | Op::RmsNorm(_));
            let after_dropped = g.nodes[n].args.iter().any(|&a| dropped.contains(&p.def(a)));
            if fits && !after_dropped {
                true
            } else {
                dropped.insert(n);
                false
            }
        });
        let decode = g.values[g.nodes[s].args[0]].ty.shape.get(1) == Some(&lathe_ir::Dim::Const(1));
        if decode {
            // The gated group norm leaves the decode step for out_proj's GEMV prologue: a norm
            // group spans more heads than one CTA of the step holds (8B: 16 heads of 64
            // channels), while the GEMV stages whole rows anyway (docs/decisions.md).
            let mut after_norm = std::collections::HashSet::new();
            region.retain(|&n| {
                let from_norm = g.nodes[n].args.iter().any(|&a| after_norm.contains(&p.def(a)));
                if matches!(p.op(n), Op::RmsNorm(_)) || from_norm {
                    after_norm.insert(n);
                    false
                } else {
                    true
                }
            });
        }
        p.absorb_private_producers(&mut region);
        if decode {
            p.take(&region);
            groups.push((region, KernelStrategy::SsdDecodeStep));
            continue;
        }
        let Some(conv) = region.iter().copied().find(|&n| matches!(p.op(n), Op::Conv1dCausal)) else { continue };
        // The conv group: the conv, what only it needs before it, and its activation.
        let before_conv = p.backward(g.nodes[conv].results[0]);
        let mut conv_group: Vec<NodeId> = region.iter().copied().filter(|n| before_conv.contains(n)).collect();
        p.absorb_epilogue(&mut conv_group, g.nodes[conv].results[0]);
        let scan_group: Vec<NodeId> = region.iter().copied().filter(|n| !conv_group.contains(n)).collect();
        p.take(&conv_group);
        p.take(&scan_group);
        groups.push((conv_group, KernelStrategy::Conv1dCausal));
        groups.push((scan_group, KernelStrategy::SsdChunkScan));
    }
    groups
}

impl Pass for FuseSsd {
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, Failure> {
        let chunk = self.chunk;
        let mut made = 0;
        for_each_function(m, &mut |g| {
            let groups = plan(g);
            made += groups.len();
            outline_groups(g, &groups)?;
            if chunk > 0 {
                set_chunk(g, chunk);
            }
            Ok(())
        })
        .map_err(|(function, error)| Failure::Outline { function, error })?;
        cx.bump("groups", made as u64);
        Ok((made > 0).into())
    }
}
