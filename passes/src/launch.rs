//! Launches and scratch, defined once: per strategy, the rule from a group ([`GroupSpec`]) to
//! the kernel launches that run it and the scratch buffers they need. `lathe inspect`, the cost
//! model and `plan-memory` all count and place these launches; the code generator will be tested
//! to emit exactly them.
//!
//! | strategy | launches | scratch |
//! |---|---|---|
//! | `ssd_chunk_scan` | `ssd_chunk_state` (each chunk's decay cumsum and final state), `ssd_state_pass` (sequential over chunks: the state entering each), `ssd_chunk_scan` (outputs, with D, gate and norm) | chunk states `f32[B, ⌈S/Q⌉, H, P, N]`, decay cumsums `f32[B, H, ⌈S/Q⌉·Q]` |
//! | `attention_decode` over more than [`ATTENTION_SPLIT_KEYS`] cache rows (at the capacity's bound) | one split-KV launch; the last CTA of each (sequence, KV head) combines the splits (no spin-wait) | partial outputs `f32[B, Hq, splits, Dv]`, maxima and sums `f32[B, Hq, splits, 2]`, arrival counters `u8[B, Hq, 4]` (a `u32` per query head; a KV head's group uses its first query head's) zeroed once when the arena is made (each use leaves them zero) |
//! | any group with an `amax` epilogue (an fp8 activation scale) | a `memset` zeroing its `f32[]` accumulators, then the kernel (block max, one atomic max per CTA) | — |
//! | every other | one launch of the strategy's kernel | — |
//!
//! The prefill scan takes three launches because a GPU gives no forward-progress guarantee to
//! CTAs spinning on each other: a single-pass scan with decoupled look-back would rely on it.

use std::collections::HashMap;

use lathe_ir::ops::{KernelStrategy, Op};
use lathe_ir::{DType, Dim, Function, Graph, Module, NodeId};

use crate::strategy::{classify, is_data, GroupSpec, StrategyError};

/// A kernel (or graph memset) a group launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaunchKind {
    /// The group's strategy's one kernel.
    Kernel(KernelStrategy),
    /// SSD prefill, first launch: per chunk, the cumulative decay and the chunk's own final state.
    SsdChunkState,
    /// SSD prefill, second launch: the state entering each chunk, passed along the chunks.
    SsdStatePass,
    /// Zeroes the group's atomic accumulators (a memset node of the step's CUDA graph).
    Memset,
}

impl LaunchKind {
    /// Text name (`gemm`, `ssd_chunk_state`, `memset`, ...).
    pub fn name(self) -> &'static str {
        match self {
            LaunchKind::Kernel(s) => s.name(),
            LaunchKind::SsdChunkState => "ssd_chunk_state",
            LaunchKind::SsdStatePass => "ssd_state_pass",
            LaunchKind::Memset => "memset",
        }
    }
}

/// One extent of a scratch buffer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// A dimension of the IR (constant or symbol).
    Dim(Dim),
    /// `⌈d / q⌉`: chunks of `q` along `d`.
    Chunks(Dim, u64),
    /// `⌈d / q⌉ · q`: `d` padded to whole chunks.
    Padded(Dim, u64),
}

/// A buffer a group's launches need besides their operands and results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scratch {
    /// What it holds, for plans and messages.
    pub name: &'static str,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<Extent>,
    /// Whether it must hold zeros when the arena is made (its kernel leaves it zero again).
    pub zero_at_load: bool,
}

impl Scratch {
    /// Its bytes with every dim valued by `dim` (`None` on overflow).
    pub fn bytes(&self, dim: &dyn Fn(Dim) -> u64) -> Option<u64> {
        self.shape.iter().try_fold(self.dtype.size_bytes() as u64, |acc, e| {
            let n = match *e {
                Extent::Dim(d) => dim(d),
                Extent::Chunks(d, q) => dim(d).div_ceil(q.max(1)),
                Extent::Padded(d, q) => dim(d).div_ceil(q.max(1)).checked_mul(q.max(1))?,
            };
            acc.checked_mul(n)
        })
    }
}

/// Keys per split of a decode attention: over more cache rows than this, the keys are split
/// across CTAs (flash-decoding) so that one sequence's few kv heads fill the GPU.
pub const ATTENTION_SPLIT_KEYS: u64 = 512;

/// Most splits of a decode attention.
pub const ATTENTION_MAX_SPLITS: u64 = 64;

/// The launches and scratch of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLaunches {
    /// The group's description.
    pub spec: GroupSpec,
    /// Its launches, in order.
    pub launches: Vec<LaunchKind>,
    /// Its scratch buffers.
    pub scratch: Vec<Scratch>,
}

/// The rule: a group's launches and scratch from its spec. `body` is the group's body; `m` gives
/// the symbols' bounds.
pub fn group_launches(m: &Module, body: &Graph, spec: GroupSpec) -> GroupLaunches {
    let mut launches = Vec::new();
    let mut scratch = Vec::new();
    if !spec.reductions.is_empty()
        || (spec.strategy == KernelStrategy::RowReduce
            && spec.main.iter().any(|&n| matches!(body.nodes[n].op, Op::Amax)))
    {
        launches.push(LaunchKind::Memset);
    }
    let ty = |n: NodeId, i: usize| &body.values[body.nodes[n].args[i]].ty;
    match spec.strategy {
        KernelStrategy::SsdChunkScan => {
            launches.extend([LaunchKind::SsdChunkState, LaunchKind::SsdStatePass]);
            if let Some(&scan) = spec.main.first() {
                let (x, bm) = (ty(scan, 0), ty(scan, 3));
                let q = match &body.nodes[scan].op {
                    Op::ScanSsd(s) => s.chunk.max(1),
                    _ => 1,
                };
                let (b, s, h, p, n) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], bm.shape[3]);
                scratch.push(Scratch {
                    name: "ssd chunk states",
                    dtype: DType::F32,
                    shape: vec![Extent::Dim(b), Extent::Chunks(s, q), Extent::Dim(h), Extent::Dim(p), Extent::Dim(n)],
                    zero_at_load: false,
                });
                scratch.push(Scratch {
                    name: "ssd decay cumsums",
                    dtype: DType::F32,
                    shape: vec![Extent::Dim(b), Extent::Dim(h), Extent::Padded(s, q)],
                    zero_at_load: false,
                });
            }
        }
        KernelStrategy::AttentionDecode => {
            if let Some(&att) = spec.main.first() {
                let (q, k, v) = (ty(att, 0), ty(att, 1), ty(att, 2));
                let rows = m.dim_bound(k.shape[1]).unwrap_or(u64::MAX);
                let splits = rows.div_ceil(ATTENTION_SPLIT_KEYS).min(ATTENTION_MAX_SPLITS);
                if splits > 1 {
                    let (b, hq) = (Extent::Dim(q.shape[0]), Extent::Dim(q.shape[2]));
                    let s = Extent::Dim(Dim::Const(splits));
                    scratch.push(Scratch {
                        name: "attention split partial outputs",
                        dtype: DType::F32,
                        shape: vec![b, hq, s, Extent::Dim(v.shape[3])],
                        zero_at_load: false,
                    });
                    scratch.push(Scratch {
                        name: "attention split maxima and sums",
                        dtype: DType::F32,
                        shape: vec![b, hq, s, Extent::Dim(Dim::Const(2))],
                        zero_at_load: false,
                    });
                    scratch.push(Scratch {
                        name: "attention split counters",
                        dtype: DType::U8,
                        shape: vec![b, hq, Extent::Dim(Dim::Const(4))],
                        zero_at_load: true,
                    });
                }
            }
        }
        _ => {}
    }
    launches.push(LaunchKind::Kernel(spec.strategy));
    GroupLaunches { spec, launches, scratch }
}

/// One launch of a function, in run order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// The top-level node it belongs to (a fusion group; before scheduling, a computing node).
    pub node: NodeId,
    /// What runs.
    pub kind: LaunchKind,
    /// Whether it may overlap the launch before it (programmatic dependent launch): a kernel
    /// right after a kernel. Every template's kernel prefetches what no launch writes (its
    /// weights) and then waits (`griddepcontrol.wait`) before it touches an activation, so it
    /// may start while its predecessor drains; a memset (a graph node, not a kernel) and the
    /// kernel after one do not overlap.
    pub overlaps: bool,
}

/// The launches of a function, and per top-level computing node its launches and scratch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LaunchList {
    /// Every launch, in run order.
    pub launches: Vec<Launch>,
    /// Per computing top-level node, in order: the node, the index of its first launch in
    /// `launches`, how many it has, and its scratch.
    groups: Vec<(NodeId, usize, usize, Vec<Scratch>)>,
    /// Index into `groups` of each node's entry.
    position: HashMap<NodeId, usize>,
}

impl LaunchList {
    /// Appends the launches of top-level node `n`.
    pub fn push(&mut self, n: NodeId, kinds: Vec<LaunchKind>, scratch: Vec<Scratch>) {
        self.position.insert(n, self.groups.len());
        self.groups.push((n, self.launches.len(), kinds.len(), scratch));
        for kind in kinds {
            let overlaps =
                kind != LaunchKind::Memset && self.launches.last().is_some_and(|p| p.kind != LaunchKind::Memset);
            self.launches.push(Launch { node: n, kind, overlaps });
        }
    }

    /// Per computing top-level node, in order: the node, the index of its first launch in
    /// `launches`, how many it has, and its scratch.
    pub fn groups(&self) -> &[(NodeId, usize, usize, Vec<Scratch>)] {
        &self.groups
    }

    /// `(first, last)` launch index of top-level node `n`, if it launches.
    pub fn span(&self, n: NodeId) -> Option<(usize, usize)> {
        let g = &self.groups[*self.position.get(&n)?];
        Some((g.1, g.1 + g.2 - 1))
    }

    /// The scratch buffers of top-level node `n` (none if it does not launch).
    pub fn scratch(&self, n: NodeId) -> &[Scratch] {
        self.position.get(&n).map_or(&[], |&k| self.groups[k].3.as_slice())
    }
}

/// The launch list of function `f`: each fusion group by its strategy's rule; before
/// scheduling, each computing node is one launch of its own (an unfused kernel). A group its
/// strategy does not accept is an error (the schedule verifier reports it located).
pub fn function_launches(m: &Module, f: &Function) -> Result<LaunchList, (NodeId, StrategyError)> {
    let g = &f.graph;
    let mut list = LaunchList::default();
    for &n in &g.order {
        let op = &g.nodes[n].op;
        if is_data(op) {
            continue;
        }
        let (kinds, scratch) = match op {
            Op::Fusion(fu) => {
                let gl = group_launches(m, &fu.body, classify(m, fu).map_err(|e| (n, e))?);
                (gl.launches, gl.scratch)
            }
            _ => (vec![LaunchKind::Kernel(crate::strategy::singleton(m, g, &g.nodes[n]))], Vec::new()),
        };
        list.push(n, kinds, scratch);
    }
    Ok(list)
}
