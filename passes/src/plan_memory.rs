//! `plan-memory` — where every intermediate value of a program lives: liveness, one arena with
//! reuse, and the in-place cache updates.
//!
//! # Model
//! A *launch* is a top-level node that is not data (`input`, `weight`, `constant`): after the
//! default pipeline exactly the `fusion` nodes (one fusion = one kernel launch); on an
//! unscheduled function every computing node counts as its own kernel, so the plan is defined
//! for any verified function. Launches are numbered 0, 1, … in the function's order, and
//! [`Buffer::first`]/[`Buffer::last`] are such numbers.
//!
//! Every result of a launch that is not a function output is an *intermediate buffer*. Inputs,
//! weights and constants are not (the runtime and the weights file own them), nor are function
//! outputs (written straight into the caller's output buffers, or into the cache they update,
//! below). A result nothing reads still gets a buffer for the launch that writes it.
//!
//! - **Size**: elements × dtype size with every symbol at its compile-time upper bound
//!   (`m.symbols[s].max`), the worst case, so one plan holds for every run. Each buffer takes
//!   its size rounded up to [`ALIGN`] = 256 bytes in the arena, and starts at a multiple of it.
//! - **Liveness**: the closed interval `[first, last]` from the launch that writes the value to
//!   the last launch that reads it (`last = first` when none does). Two buffers may share bytes
//!   only when their intervals are disjoint: a launch never writes over its own operands.
//! - **Reuse** — greedy by size with best fit (Pisarchyk & Lee 2020, TFLite's
//!   `GreedyBySizeOffsetCalculation`): buffers are placed largest first (ties: earlier `first`,
//!   then launch order); each goes into the *smallest* gap between the already placed buffers
//!   whose lifetimes overlap its own that fits it (the lowest such gap on a tie), or above all of
//!   them when none fits. Deterministic, O(n²) in the number of buffers. The arena size is
//!   [`MemoryPlan::peak_bytes`]; [`MemoryPlan::no_reuse_bytes`] is the sum of the aligned sizes
//!   (one slot per buffer), and `peak <= no_reuse` always holds (each buffer ends no higher than
//!   the sizes placed before it plus its own).
//! - **In-place cache updates**: an output that says it updates an input (`{updates=%k}`; the
//!   verifier has checked that the input is a cache of the same type) aliases that input: the
//!   launch that writes it writes into the input's memory, and it takes no arena space. That is
//!   sound only if no launch after the writer reads the input, since it would see the new
//!   contents; such a function is an error, as are an aliased value that no launch writes (a
//!   constant or weight returned as a cache update: there is no kernel to write it) and one
//!   value aliasing two inputs. The writer itself may read the input (`scatter_cache` and the
//!   SSD decode step read the old cache and write the new one: ordering the reads before the
//!   writes inside one kernel is that kernel's contract). An output returning the input itself
//!   is an update that writes nothing. Names play no part.
//!
//! # The pass
//! Pre: a verified module (scheduled or not). Post: the same module — the pass is an analysis:
//! it returns [`Changed::No`], fails when an in-place update would clobber a value still needed
//! or a size overflows `u64`, and records the statistics `peak-bytes-<func>` and
//! `no-reuse-bytes-<func>`. The IR carries no annotation because the plan is a pure function of
//! the scheduled module: codegen and `lathe inspect --stats` call [`plan`] again and get the same
//! offsets.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use lathe_ir::{Dim, Function, Graph, Module, NodeId, Op, Stage, TensorType, ValueId};

use crate::strategy::is_data;
use crate::{Changed, Failure, Options, Pass, PassContext, PassInfo};

/// Registry entry.
pub const INFO: PassInfo = PassInfo {
    name: "plan-memory",
    summary: "plan intermediate buffers in one arena (liveness, reuse) and check in-place cache updates",
    options: &[],
    accepts: &[Stage::Scheduled, Stage::Planned],
    sets: Some(Stage::Planned),
    create: |_: &Options| Ok(Box::new(PlanMemory)),
};

/// Alignment of every buffer's offset and of its slot size, in bytes.
pub const ALIGN: u64 = 256;

/// Why a function has no memory plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A value's size at the symbols' bounds does not fit in 64 bits.
    #[error("@{function}: result {result} of launch {launch} (`{kind}`): its size at the symbols' bounds exceeds 2^64 bytes")]
    TooLarge {
        /// The function.
        function: String,
        /// The launch writing it.
        launch: usize,
        /// What the launch is (strategy or op).
        kind: &'static str,
        /// Which of its results.
        result: usize,
    },
    /// The buffers together do not fit in 64 bits.
    #[error("@{function}: the buffers exceed 2^64 bytes")]
    ArenaTooLarge {
        /// The function.
        function: String,
    },
    /// An output says it updates a value that is not an input.
    #[error("@{function}: output `{output}` updates a `{op}`, not an input")]
    UpdatesNonInput {
        /// The function.
        function: String,
        /// The output.
        output: String,
        /// What it names.
        op: &'static str,
    },
    /// Two outputs update one input.
    #[error("@{function}: two outputs update input `{input}` in place")]
    UpdatedTwice {
        /// The function.
        function: String,
        /// The input.
        input: String,
    },
    /// An in-place update no launch writes (a constant or weight returned as a cache).
    #[error(
        "@{function}: output `{output}` updates input `{input}` in place, but no launch writes it (it is a `{op}`)"
    )]
    NoWriter {
        /// The function.
        function: String,
        /// The output.
        output: String,
        /// The input.
        input: String,
        /// What the output is.
        op: &'static str,
    },
    /// A launch reads the input after another launch updated it in place.
    #[error(
        "@{function}: output `{output}` updates input `{input}` in place at launch {writer} (`{writer_kind}`), but launch {reader} (`{reader_kind}`) reads the input after it"
    )]
    ReadAfterUpdate {
        /// The function.
        function: String,
        /// The output.
        output: String,
        /// The input.
        input: String,
        /// The launch writing the update.
        writer: usize,
        /// What it is.
        writer_kind: &'static str,
        /// The later launch reading the old contents.
        reader: usize,
        /// What it is.
        reader_kind: &'static str,
    },
    /// The updated input is also returned as it was.
    #[error("@{function}: output `{output}` updates input `{input}` in place, but the input is also returned as `{returned_as}`")]
    AlsoReturned {
        /// The function.
        function: String,
        /// The output.
        output: String,
        /// The input.
        input: String,
        /// The other output returning the input.
        returned_as: String,
    },
    /// One value is the update of two inputs.
    #[error("@{function}: one value is returned as the in-place update of both `{first}` and `{second}`")]
    OneValueTwoInputs {
        /// The function.
        function: String,
        /// One input.
        first: String,
        /// The other.
        second: String,
    },
}

/// The pass.
#[derive(Debug)]
pub struct PlanMemory;

impl Pass for PlanMemory {
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, Failure> {
        for f in &m.functions {
            let p = plan(m, f)?;
            cx.bump(&format!("peak-bytes-{}", f.name), p.peak_bytes);
            cx.bump(&format!("no-reuse-bytes-{}", f.name), p.no_reuse_bytes);
        }
        Ok(Changed::No)
    }
}

/// One intermediate value's place in the arena.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    /// The value (a result of a top-level launch of the function).
    pub value: ValueId,
    /// Byte offset in the arena, a multiple of [`ALIGN`].
    pub offset: u64,
    /// Size at the symbols' upper bounds (its slot is this rounded up to [`ALIGN`]).
    pub bytes: u64,
    /// The launch writing it.
    pub first: usize,
    /// The last launch reading it (`first` when none does).
    pub last: usize,
}

impl Buffer {
    /// Bytes the buffer occupies in the arena: `bytes` rounded up to [`ALIGN`].
    pub fn slot_bytes(&self) -> u64 {
        // `plan` checked that every slot size fits.
        self.bytes.checked_next_multiple_of(ALIGN).unwrap_or(u64::MAX)
    }

    /// Whether the two lifetimes share a launch.
    pub fn lives_with(&self, other: &Buffer) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// The memory plan of one function.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryPlan {
    /// Every intermediate buffer, in launch order (then result order).
    pub buffers: Vec<Buffer>,
    /// Size of the arena.
    pub peak_bytes: u64,
    /// Sum of the slot sizes: the arena without reuse.
    pub no_reuse_bytes: u64,
    /// The in-place updates, in output order: `(index of the output, the input value it
    /// updates)`.
    pub in_place: Vec<(usize, ValueId)>,
}

impl MemoryPlan {
    /// The buffer of `v`, if `v` is an intermediate.
    pub fn buffer(&self, v: ValueId) -> Option<&Buffer> {
        self.buffers.iter().find(|b| b.value == v)
    }
}

/// Bytes of a value of type `ty` with every symbol at its upper bound; `None` when that does not
/// fit in 64 bits (or a symbol is not the module's).
pub fn bytes_at_bounds(m: &Module, ty: &TensorType) -> Option<u64> {
    ty.shape.iter().try_fold(ty.dtype.size_bytes() as u64, |acc, d| {
        let n = match d {
            Dim::Const(c) => *c,
            Dim::Sym(s) => m.symbols.get(*s)?.max,
        };
        acc.checked_mul(n)
    })
}

/// Plans the intermediate buffers and in-place updates of `f` (see the module docs).
pub fn plan(m: &Module, f: &Function) -> Result<MemoryPlan, PlanError> {
    let g = &f.graph;
    let launches: Vec<_> = g.order.iter().copied().filter(|&n| !is_data(&g.nodes[n].op)).collect();
    // Launches read in increasing order, so the last insert is the last read.
    let mut last_read: HashMap<ValueId, usize> = HashMap::new();
    let mut written_by: HashMap<ValueId, usize> = HashMap::new();
    for (i, &n) in launches.iter().enumerate() {
        for &a in &g.nodes[n].args {
            last_read.insert(a, i);
        }
        for &r in &g.nodes[n].results {
            written_by.insert(r, i);
        }
    }
    let in_place = in_place_updates(f, &launches, &last_read, &written_by)?;

    let mut buffers = Vec::new();
    for (i, &n) in launches.iter().enumerate() {
        for &r in &g.nodes[n].results {
            if g.outputs.iter().any(|o| o.value == r) {
                continue;
            }
            let bytes = bytes_at_bounds(m, &g.values[r].ty)
                .and_then(|b| b.checked_next_multiple_of(ALIGN).map(|_| b))
                .ok_or_else(|| PlanError::TooLarge {
                    function: f.name.clone(),
                    launch: i,
                    kind: launch_name(g, n),
                    result: g.values[r].index as usize,
                })?;
            let last = last_read.get(&r).map_or(i, |&l| l.max(i));
            buffers.push(Buffer { value: r, offset: 0, bytes, first: i, last });
        }
    }
    let mut no_reuse_bytes: u64 = 0;
    for b in &buffers {
        no_reuse_bytes = no_reuse_bytes
            .checked_add(b.slot_bytes())
            .ok_or_else(|| PlanError::ArenaTooLarge { function: f.name.clone() })?;
    }
    // Every buffer ends at or below the slots placed before it plus its own, so no offset
    // below exceeds `no_reuse_bytes`, which fits.
    let peak_bytes = assign_offsets(&mut buffers);
    Ok(MemoryPlan { buffers, peak_bytes, no_reuse_bytes, in_place })
}

/// Greedy by size, best fit: sets every offset and returns the arena size.
fn assign_offsets(buffers: &mut [Buffer]) -> u64 {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by_key(|&i| (Reverse(buffers[i].slot_bytes()), buffers[i].first, i));
    let mut placed: Vec<usize> = Vec::with_capacity(buffers.len());
    let mut peak = 0;
    for i in order {
        let size = buffers[i].slot_bytes();
        let mut live: Vec<(u64, u64)> = placed
            .iter()
            .map(|&j| &buffers[j])
            .filter(|b| b.lives_with(&buffers[i]))
            .map(|b| (b.offset, b.offset.saturating_add(b.slot_bytes())))
            .collect();
        live.sort_unstable();
        // (gap size, gap start) of the tightest gap that fits.
        let mut best: Option<(u64, u64)> = None;
        let mut end = 0;
        for (lo, hi) in live {
            if lo > end {
                let gap = lo - end;
                if gap >= size && best.is_none_or(|(g, _)| gap < g) {
                    best = Some((gap, end));
                }
            }
            end = end.max(hi);
        }
        let offset = best.map_or(end, |(_, start)| start);
        buffers[i].offset = offset;
        peak = u64::max(peak, offset.saturating_add(size));
        placed.push(i);
    }
    peak
}

/// What a launch is, for messages: its strategy or op.
fn launch_name(g: &Graph, n: NodeId) -> &'static str {
    match &g.nodes[n].op {
        Op::Fusion(fu) => fu.strategy.name(),
        op => op.name(),
    }
}

/// The outputs that update an input in place (`{updates=%input}`), checked.
fn in_place_updates(
    f: &Function,
    launches: &[NodeId],
    last_read: &HashMap<ValueId, usize>,
    written_by: &HashMap<ValueId, usize>,
) -> Result<Vec<(usize, ValueId)>, PlanError> {
    let g = &f.graph;
    let mut pairs = Vec::new();
    let mut aliased: HashMap<ValueId, &str> = HashMap::new();
    let mut updated: HashSet<ValueId> = HashSet::new();
    for (k, o) in g.outputs.iter().enumerate() {
        let Some(iv) = o.updates else { continue };
        let input = match &g.nodes[g.values[iv].def].op {
            Op::Input(i) => i.name.as_str(),
            op => {
                return Err(PlanError::UpdatesNonInput {
                    function: f.name.clone(),
                    output: o.name.clone(),
                    op: op.name(),
                })
            }
        };
        if !updated.insert(iv) {
            return Err(PlanError::UpdatedTwice { function: f.name.clone(), input: input.to_string() });
        }
        if o.value != iv {
            let Some(&w) = written_by.get(&o.value) else {
                return Err(PlanError::NoWriter {
                    function: f.name.clone(),
                    output: o.name.clone(),
                    input: input.to_string(),
                    op: g.nodes[g.values[o.value].def].op.name(),
                });
            };
            if let Some(&r) = last_read.get(&iv).filter(|&&r| r > w) {
                return Err(PlanError::ReadAfterUpdate {
                    function: f.name.clone(),
                    output: o.name.clone(),
                    input: input.to_string(),
                    writer: w,
                    writer_kind: launch_name(g, launches[w]),
                    reader: r,
                    reader_kind: launch_name(g, launches[r]),
                });
            }
            if let Some(p) = g.outputs.iter().find(|p| p.value == iv) {
                return Err(PlanError::AlsoReturned {
                    function: f.name.clone(),
                    output: o.name.clone(),
                    input: input.to_string(),
                    returned_as: p.name.clone(),
                });
            }
            if let Some(other) = aliased.insert(o.value, input) {
                return Err(PlanError::OneValueTwoInputs {
                    function: f.name.clone(),
                    first: other.to_string(),
                    second: input.to_string(),
                });
            }
        }
        pairs.push((k, iv));
    }
    Ok(pairs)
}
