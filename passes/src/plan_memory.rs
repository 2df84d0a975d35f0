//! `plan-memory` — where every value of a program lives: one location for each (input, weight,
//! constant, arena slice, in place of an input, the per-step buffer, an output buffer), one
//! arena with reuse for the intermediates and the groups' scratch, and the in-place cache
//! updates.
//!
//! # Model
//! Launches are those of [`crate::launch::function_launches`] (a group's strategy's rule: the SSD
//! prefill scan takes three, a group with an fp8 `amax` a memset first; before scheduling, one
//! per computing node), numbered 0, 1, … in run order; [`Buffer::first`]/[`Buffer::last`] are
//! such numbers. A value is written by the first launch of its node and read until the last
//! launch of its last reader.
//!
//! Every top-level value gets exactly one [`Location`]:
//! - an `input` is the caller's input buffer — except the per-step values the runtime keeps
//!   itself ([`StepField`]: `past`, the RNG offset, and in `decode` the last token) and caches,
//!   which are input buffers updated in place;
//! - a `weight` is its artifact weight, a `constant` is baked into the artifact;
//! - a function output that updates a cache input (`{updates=%k}`) lives in that input's memory;
//!   any other output in the caller's output buffer;
//! - every other value — an intermediate — is an arena slice.
//!
//! Every [`crate::launch::Scratch`] buffer of a group is an arena slice too, live over the group's
//! launches. A result nothing reads still gets a slice for the launch that writes it.
//!
//! - **Size**: elements × dtype size with every symbol at its compile-time upper bound
//!   (`m.symbols[s].max`), the worst case, so one plan holds for every run. Each buffer takes
//!   its size rounded up to [`ALIGN`] = 256 bytes in the arena, and starts at a multiple of it.
//! - **Liveness**: the closed interval `[first, last]` of launches. Two buffers may share bytes
//!   only when their intervals are disjoint: a launch never writes over its own operands.
//! - **Reuse** — greedy by size with best fit (Pisarchyk & Lee 2020, TFLite's
//!   `GreedyBySizeOffsetCalculation`): buffers are placed largest first (ties: earlier `first`,
//!   then launch order); each goes into the *smallest* gap between the already placed buffers
//!   whose lifetimes overlap its own that fits it (the lowest such gap on a tie), or above all of
//!   them when none fits. Deterministic, O(n²) in the number of buffers. The arena size is
//!   [`MemoryPlan::peak_bytes`]; [`MemoryPlan::no_reuse_bytes`] is the sum of the aligned sizes
//!   (one slot per buffer), and `peak <= no_reuse` always holds. Scratch that must be zero when
//!   the arena is made (`zero_at_load`) gets a slot of its own, never shared.
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
//! Pre: a scheduled module. Post: the same module at stage `planned` — the pass is an analysis:
//! it returns [`Changed::No`], fails when an in-place update would clobber a value still needed
//! or a size overflows `u64`, and records the statistics `peak-bytes-<func>` and
//! `no-reuse-bytes-<func>`. The IR carries no annotation because the plan is a pure function of
//! the scheduled module: codegen and `lathe inspect --stats` call [`plan`] again and get the same
//! offsets.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use lathe_ir::{Dim, Function, Graph, Module, NodeId, Op, Stage, TensorType, ValueId, WeightId};

use crate::launch::{function_launches, LaunchList};
pub use crate::step::StepField;
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
        /// Which of its results (or scratch buffers).
        result: usize,
    },
    /// The buffers together do not fit in 64 bits.
    #[error("@{function}: the buffers exceed 2^64 bytes")]
    ArenaTooLarge {
        /// The function.
        function: String,
    },
    /// A group its strategy does not accept (the schedule verifier locates it).
    #[error("@{function}: a group has no launches: {message}")]
    Unscheduled {
        /// The function.
        function: String,
        /// Why its strategy does not accept it.
        message: String,
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

/// Where one value lives while its program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The caller's buffer for input number `k` (inputs counted in order).
    Input(usize),
    /// A weight of the artifact.
    Weight(WeightId),
    /// A constant, baked into the artifact.
    Constant,
    /// Arena buffer number `k` of [`MemoryPlan::buffers`].
    Arena(usize),
    /// The memory of input number `k`, which this value (a cache output) updates in place.
    InPlace(usize),
    /// A field of the per-step buffer.
    Step(StepField),
    /// The caller's buffer for output number `k`.
    Output(usize),
}

/// What an arena buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// An intermediate value (a result of a top-level launch of the function).
    Value(ValueId),
    /// Scratch buffer number `index` of the group at top-level node `node`.
    Scratch {
        /// The group.
        node: NodeId,
        /// Which of its scratch buffers.
        index: usize,
    },
}

/// One buffer's place in the arena.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    /// What it holds.
    pub owner: Owner,
    /// Byte offset in the arena, a multiple of [`ALIGN`].
    pub offset: u64,
    /// Size at the symbols' upper bounds (its slot is this rounded up to [`ALIGN`]).
    pub bytes: u64,
    /// The first launch writing it.
    pub first: usize,
    /// The last launch reading it (its writer's last launch when none does; a scratch buffer: its
    /// group's last).
    pub last: usize,
    /// It must be zero when the arena is made: it never shares bytes with another buffer.
    pub zero_at_load: bool,
}

impl Buffer {
    /// Bytes the buffer occupies in the arena: `bytes` rounded up to [`ALIGN`].
    pub fn slot_bytes(&self) -> u64 {
        // `plan` checked that every slot size fits.
        self.bytes.checked_next_multiple_of(ALIGN).unwrap_or(u64::MAX)
    }

    /// Whether the two lifetimes share a launch (or either is kept zero for the whole run).
    pub fn lives_with(&self, other: &Buffer) -> bool {
        self.zero_at_load || other.zero_at_load || (self.first <= other.last && other.first <= self.last)
    }

    /// The value it holds, if it holds one.
    pub fn value(&self) -> Option<ValueId> {
        match self.owner {
            Owner::Value(v) => Some(v),
            Owner::Scratch { .. } => None,
        }
    }
}

/// The memory plan of one function.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryPlan {
    /// Where every top-level value lives, by value index (exactly one location each).
    pub locations: Vec<Option<Location>>,
    /// Every arena buffer: intermediates and scratch, in launch order.
    pub buffers: Vec<Buffer>,
    /// Size of the arena.
    pub peak_bytes: u64,
    /// Sum of the slot sizes: the arena without reuse.
    pub no_reuse_bytes: u64,
    /// The in-place updates, in output order: `(index of the output, the input value it
    /// updates)`.
    pub in_place: Vec<(usize, ValueId)>,
    /// The launches the plan's liveness counts.
    pub launches: LaunchList,
}

impl MemoryPlan {
    /// The location of top-level value `v`.
    pub fn location(&self, v: ValueId) -> Option<Location> {
        self.locations.get(v.index()).copied().flatten()
    }

    /// The arena buffer of `v`, if `v` is an intermediate.
    pub fn buffer(&self, v: ValueId) -> Option<&Buffer> {
        match self.location(v)? {
            Location::Arena(k) => self.buffers.get(k),
            _ => None,
        }
    }
}

/// Bytes of a value of type `ty` with every symbol at its upper bound; `None` when that does not
/// fit in 64 bits (or a symbol is not the module's).
pub fn bytes_at_bounds(m: &Module, ty: &TensorType) -> Option<u64> {
    ty.shape.iter().try_fold(ty.dtype.size_bytes() as u64, |acc, d| acc.checked_mul(dim_at_bound(m, *d)?))
}

fn dim_at_bound(m: &Module, d: Dim) -> Option<u64> {
    m.dim_bound(d)
}

/// Plans every value, scratch buffer and in-place update of `f` (see the module docs).
pub fn plan(m: &Module, f: &Function) -> Result<MemoryPlan, PlanError> {
    let g = &f.graph;
    let list = function_launches(m, f)
        .map_err(|(_, e)| PlanError::Unscheduled { function: f.name.clone(), message: e.to_string() })?;
    let span = |n: NodeId| list.span(n);
    // Launches read in increasing order, so the last insert is the last read.
    let mut last_read: HashMap<ValueId, usize> = HashMap::new();
    let mut written_by: HashMap<ValueId, usize> = HashMap::new();
    for &(n, _, _, _) in list.groups() {
        let Some((first, last)) = span(n) else { continue };
        for &a in &g.nodes[n].args {
            last_read.insert(a, last);
        }
        for &r in &g.nodes[n].results {
            written_by.insert(r, first);
        }
    }
    let in_place = in_place_updates(f, &list, &last_read, &written_by)?;

    let mut locations: Vec<Option<Location>> = vec![None; g.values.len()];
    let mut buffers = Vec::new();
    let input_index: HashMap<ValueId, usize> = g.inputs().enumerate().map(|(k, (_, v))| (v, k)).collect();
    // Per value: the first output returning it, and the input it updates if any output says so.
    let mut output_of: HashMap<ValueId, usize> = HashMap::new();
    let mut update_of: HashMap<ValueId, ValueId> = HashMap::new();
    for (k, o) in g.outputs.iter().enumerate() {
        output_of.entry(o.value).or_insert(k);
        if let Some(u) = o.updates {
            update_of.entry(o.value).or_insert(u);
        }
    }
    for &n in &g.order {
        let node = &g.nodes[n];
        let here = match &node.op {
            Op::Input(i) => {
                let v = node.results[0];
                let k = input_index.get(&v).copied().unwrap_or(0);
                Some(StepField::of(f.kind, i.role).map_or(Location::Input(k), Location::Step))
            }
            Op::Weight(w) => Some(Location::Weight(*w)),
            Op::Constant(_) => Some(Location::Constant),
            _ => None,
        };
        if let Some(loc) = here {
            locations[node.results[0].index()] = Some(loc);
            continue;
        }
        let Some((first, last_launch)) = span(n) else { continue };
        for &r in &node.results {
            // A result that updates a cache lives in the cache's memory (also when it is returned
            // a second time, plainly: that output is read from there); any other output in the
            // caller's output buffer.
            if let Some(&i) = update_of.get(&r).and_then(|u| input_index.get(u)) {
                locations[r.index()] = Some(Location::InPlace(i));
                continue;
            }
            if let Some(&k) = output_of.get(&r) {
                locations[r.index()] = Some(Location::Output(k));
                continue;
            }
            let bytes = bytes_at_bounds(m, &g.values[r].ty)
                .filter(|b| b.checked_next_multiple_of(ALIGN).is_some())
                .ok_or_else(|| PlanError::TooLarge {
                    function: f.name.clone(),
                    launch: first,
                    kind: launch_name(g, n),
                    result: g.values[r].index as usize,
                })?;
            let last = last_read.get(&r).map_or(last_launch, |&l| l.max(last_launch));
            locations[r.index()] = Some(Location::Arena(buffers.len()));
            buffers.push(Buffer { owner: Owner::Value(r), offset: 0, bytes, first, last, zero_at_load: false });
        }
        let scratch = list.scratch(n);
        for (index, s) in scratch.iter().enumerate() {
            let bytes = s
                .bytes(&|d| dim_at_bound(m, d).unwrap_or(u64::MAX))
                .filter(|b| b.checked_next_multiple_of(ALIGN).is_some())
                .ok_or_else(|| PlanError::TooLarge {
                    function: f.name.clone(),
                    launch: first,
                    kind: launch_name(g, n),
                    result: node.results.len() + index,
                })?;
            buffers.push(Buffer {
                owner: Owner::Scratch { node: n, index },
                offset: 0,
                bytes,
                first,
                last: last_launch,
                zero_at_load: s.zero_at_load,
            });
        }
    }
    // Outputs that return an input, weight or constant as they are keep its location.
    let mut no_reuse_bytes: u64 = 0;
    for b in &buffers {
        no_reuse_bytes = no_reuse_bytes
            .checked_add(b.slot_bytes())
            .ok_or_else(|| PlanError::ArenaTooLarge { function: f.name.clone() })?;
    }
    // Every buffer ends at or below the slots placed before it plus its own, so no offset
    // below exceeds `no_reuse_bytes`, which fits.
    let peak_bytes = assign_offsets(&mut buffers);
    Ok(MemoryPlan { locations, buffers, peak_bytes, no_reuse_bytes, in_place, launches: list })
}

/// Greedy by size, best fit: sets every offset and returns the arena size. Buffers kept zero for
/// the whole run share bytes with none: they lie first, one after another; the rest above them.
///
/// Placed buffers are indexed by the launches they live across, so finding the ones that live
/// with a new buffer costs what overlaps it, not every buffer placed: planning stays near linear
/// in the number of layers (a layer's values live across a few launches).
fn assign_offsets(buffers: &mut [Buffer]) -> u64 {
    let mut zero_end = 0u64;
    for b in buffers.iter_mut().filter(|b| b.zero_at_load) {
        b.offset = zero_end;
        zero_end = zero_end.saturating_add(b.slot_bytes());
    }
    let mut order: Vec<usize> = (0..buffers.len()).filter(|&i| !buffers[i].zero_at_load).collect();
    order.sort_by_key(|&i| (Reverse(buffers[i].slot_bytes()), buffers[i].first, i));
    let launches = buffers.iter().map(|b| b.last.saturating_add(1)).max().unwrap_or(0);
    // Per launch, the placed buffers live across it.
    let mut at: Vec<Vec<usize>> = vec![Vec::new(); launches];
    // The last query that saw each buffer (to take each once).
    let mut seen: Vec<usize> = vec![usize::MAX; buffers.len()];
    let mut live: Vec<(u64, u64)> = Vec::new();
    let mut peak = zero_end;
    for (query, i) in order.into_iter().enumerate() {
        let (size, first, last) = (buffers[i].slot_bytes(), buffers[i].first, buffers[i].last);
        live.clear();
        for launch in &at[first..=last] {
            for &j in launch {
                if seen[j] != query {
                    seen[j] = query;
                    live.push((buffers[j].offset, buffers[j].offset.saturating_add(buffers[j].slot_bytes())));
                }
            }
        }
        live.sort_unstable();
        // (gap size, gap start) of the tightest gap that fits.
        let mut best: Option<(u64, u64)> = None;
        let mut end = zero_end;
        for &(lo, hi) in &live {
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
        for slot in &mut at[first..=last] {
            slot.push(i);
        }
    }
    peak
}

/// What a top-level node launches as, for messages: its strategy or op.
fn launch_name(g: &Graph, n: NodeId) -> &'static str {
    match &g.nodes[n].op {
        Op::Fusion(fu) => fu.strategy.name(),
        op => op.name(),
    }
}

/// The outputs that update an input in place (`{updates=%input}`), checked.
fn in_place_updates(
    f: &Function,
    list: &LaunchList,
    last_read: &HashMap<ValueId, usize>,
    written_by: &HashMap<ValueId, usize>,
) -> Result<Vec<(usize, ValueId)>, PlanError> {
    let g = &f.graph;
    let kind_at = |launch: usize| list.launches.get(launch).map_or("?", |l| launch_name(g, l.node));
    let mut pairs = Vec::new();
    let mut returned: HashMap<ValueId, &str> = HashMap::new();
    for o in &g.outputs {
        returned.entry(o.value).or_insert(o.name.as_str());
    }
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
            // Launches of the writer's own group may read the old contents (the kernel orders its
            // reads before its writes); a later group may not.
            let writer_node = list.launches.get(w).map(|l| l.node);
            let writer_last = writer_node.and_then(|n| list.span(n)).map_or(w, |s| s.1);
            if let Some(&r) = last_read.get(&iv).filter(|&&r| r > writer_last) {
                return Err(PlanError::ReadAfterUpdate {
                    function: f.name.clone(),
                    output: o.name.clone(),
                    input: input.to_string(),
                    writer: w,
                    writer_kind: kind_at(w),
                    reader: r,
                    reader_kind: kind_at(r),
                });
            }
            if let Some(&p) = returned.get(&iv) {
                return Err(PlanError::AlsoReturned {
                    function: f.name.clone(),
                    output: o.name.clone(),
                    input: input.to_string(),
                    returned_as: p.to_string(),
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
