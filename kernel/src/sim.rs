//! `sim`: a functional simulator of a launch (and of programs of launches, `program`), built to
//! find what makes kernels wrong.
//!
//! # Execution model
//! A CTA's threads form warps of 32 consecutive linear thread indices. A warp executes the
//! flattened kernel in lock-step under an active mask, with a reconvergence stack: at an `if`
//! the lanes split (then first), at the end of the construct they join; a loop keeps the warp
//! while any lane iterates. Warps of a CTA run one after another until each reaches a barrier
//! or exits; when every warp waits, the barrier opens (`Options::warp_orders` adds runs in
//! other, deterministic warp orders). Nothing depends on a random schedule: every check below
//! is decided from what the accesses are, so a result never flakes.
//!
//! # What it catches, each a typed error located by instruction, CTA and thread
//! - out-of-bounds global (per buffer), shared and local accesses, and misaligned vectors;
//! - reads of registers, shared or local bytes never written;
//! - `bar.sync` under divergence (it is `.aligned`), and barriers some threads of the CTA never
//!   reach (they exited: unequal loop trips, a barrier in one branch);
//! - races within a CTA by barrier epoch, in shared and global memory (`epoch`): two warps
//!   touching the same bytes between two barriers, one writing; and lanes of one warp
//!   exchanging data without `bar.warp.sync` in between (threads of a warp are scheduled independently since
//!   Volta: lock-step here must not hide that); atomics never race with atomics, but a plain
//!   access to bytes another warp updates atomically in the epoch does;
//! - `shfl.sync` / `bar.warp.sync` / `vote.sync` / `redux.sync` with a member mask that does not match the lanes executing
//!   it, or reading an inactive lane; `ldmatrix` / `mma.sync` without the full warp;
//! - stores to a read-only buffer, `.nc` loads of a buffer the kernel writes;
//! - shared bytes of a `cp.async` touched before a wait completes its group, or copies still
//!   in flight when a thread exits (a barrier completes none);
//! - races between CTAs on global memory: a plain access to bytes another CTA of the launch
//!   writes, or updates atomically, or reads while this access writes (`global_race`);
//! - with `Options::cta_orders` / `warp_orders`, written buffers that differ between orders:
//!   float atomics whose rounding depends on the order CTAs, warps or lanes run in (`orders`);
//! - in a program (`program`): reads of scratch or arena bytes no launch wrote, and a dependent
//!   launch touching its predecessors' buffers before `griddepcontrol.wait`;
//! - integer division by zero; a runaway kernel (an instruction cap per launch).
//!
//! # Numerics
//! f32 arithmetic is IEEE round-to-nearest-even (`fma` fused, one rounding); conversions to and
//! from the narrow floats are `lathe-numerics`' bit-exact ones; MUFU approximations return the
//! correctly rounded value (within the error the PTX ISA documents for the hardware's); `mma`
//! accumulates in the fixed order [`crate::frag`] states.
//!
//! # Counters
//! Warp instructions by class, global requests and the 32-byte sectors they touch, shared
//! requests and bank-conflict replays (per phase: 32 lanes for 4-byte accesses, 16 for 8, 8
//! for 16), bytes loaded and stored, and the most global bytes a warp had in flight (loaded, not
//! yet used).

use std::fmt;

use crate::ir::{Inst, Kernel, LoopKind, Operand, Param, Reg, Special, Stmt, Ty};
use crate::verify::inst_name;

mod alu;
mod atomic;
mod collective;
mod cp_async;
mod epoch;
mod global_race;
mod memory;
mod orders;
mod program;

pub use alu::{convert_kind, ConvertKind};
use alu::{lanes, truncate};
pub use memory::bank_replays;
use memory::SharedByte;
pub use program::{run_program, Bind, Buffer, Step, POISON};

/// Threads per warp.
pub const WARP: u32 = 32;

/// One value per lane of a warp.
type Lanes = [u64; WARP as usize];

/// The shape of a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// CTAs per axis.
    pub grid: [u32; 3],
    /// Threads per CTA per axis.
    pub block: [u32; 3],
}

/// The value of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A buffer's bytes (read and written in place).
    Buffer(Vec<u8>),
    /// A scalar's bits.
    Scalar(u64),
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Most warp instructions of the launch before it fails as a runaway.
    pub max_instructions: u64,
    /// Run only these CTAs (`None`: all).
    pub ctas: Option<Vec<[u32; 3]>>,
    /// Run the launch in this many CTA orders (forward, reverse, then seeded shuffles), each on
    /// its own copy of the arguments, and require the written buffers to agree bit for bit
    /// (`OrderDependent` otherwise); the arguments end as the forward order leaves them. 0 and 1
    /// run forward only.
    pub cta_orders: usize,
    /// Likewise for the order warps of a CTA run in between barriers: each further order runs
    /// the launch again (reverse, round-robin one instruction at a time, then seeded
    /// interleavings) and must leave the written buffers bit for bit as the forward order does.
    /// A kernel the race checks pass gives the same bytes in every warp order; float atomics
    /// of several warps on one shared word do not.
    pub warp_orders: usize,
    /// Bytes of dynamic shared memory the launch provides, after the kernel's static shared
    /// memory (as a CUDA launch's dynamic shared size extends `extern __shared__`): kernels
    /// whose tiles need more than the 48 KiB of static shared memory address it from offset
    /// `Kernel::shared_bytes` on. Static plus dynamic is at most [`MAX_SHARED_PER_CTA`].
    pub dynamic_shared: u32,
}

/// CTAs to sample from `grid` (`Options::ctas`): the first, the last and up to `others` more
/// drawn without repetition by a generator seeded with `seed` (so a run reproduces), in linear
/// order. A grid of no more than `others + 2` CTAs is sampled whole.
pub fn sample_ctas(grid: [u32; 3], others: usize, seed: u64) -> Vec<[u32; 3]> {
    let [gx, gy, gz] = grid.map(u64::from);
    let total = gx * gy * gz;
    let at = |l: u64| [(l % gx) as u32, ((l / gx) % gy) as u32, (l / (gx * gy)) as u32];
    if total <= others as u64 + 2 {
        return (0..total).map(at).collect();
    }
    let mut picked = std::collections::BTreeSet::from([0, total - 1]);
    let mut next = orders::splitmix(seed);
    while picked.len() < others + 2 {
        picked.insert(1 + next() % (total - 2));
    }
    picked.into_iter().map(at).collect()
}

/// The most shared memory one CTA can have (sm_90: 227 KiB).
pub const MAX_SHARED_PER_CTA: u32 = 227 << 10;

impl Default for Options {
    fn default() -> Self {
        Options { max_instructions: 200_000_000, ctas: None, cta_orders: 1, warp_orders: 1, dynamic_shared: 0 }
    }
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The launch does not fit the kernel (shape, arguments).
    BadLaunch,
    /// An access outside its buffer, the shared memory or the local memory.
    OutOfBounds,
    /// A vector access not aligned to its size.
    Misaligned,
    /// A read of a register never written.
    UninitializedRegister,
    /// A read of shared or local bytes never written.
    UninitializedMemory,
    /// `bar.sync` with part of a warp active.
    BarrierDivergence,
    /// A barrier some threads of the CTA never reach.
    BarrierPartial,
    /// Two warps touch the same shared bytes between two barriers, one writing.
    SharedRace,
    /// Lanes of a warp exchange shared bytes without `bar.warp.sync`.
    WarpSyncMissing,
    /// A `.sync` op whose member mask does not match the executing lanes.
    SyncMask,
    /// A shuffle reads a lane that does not execute it.
    ShflInactiveSource,
    /// A store to a read-only buffer.
    WriteReadOnly,
    /// A `.nc` load of a buffer the kernel writes.
    NcOfWritten,
    /// Integer division by zero.
    DivisionByZero,
    /// Shared bytes a `cp.async` is still copying (no wait has completed it) are read or
    /// written, or a thread exits with copies in flight.
    CpAsyncPending,
    /// A plain access to global bytes another CTA of the launch writes, or reads or updates
    /// atomically while this access writes; an atomic on bytes another CTA accesses plainly.
    CrossCtaRace,
    /// Two warps of a CTA touch the same global bytes between two barriers, one writing.
    GlobalRace,
    /// A dependent launch (programmatic dependent launch) touches a buffer a launch still in
    /// flight writes, or writes one it reads, before its `griddepcontrol.wait` (`program`).
    DependentBeforeWait,
    /// A written buffer differs between two CTA orders (`Options::cta_orders`) or warp orders
    /// (`Options::warp_orders`): float atomics whose rounding depends on the order CTAs or
    /// warps run in.
    OrderDependent,
    /// The instruction cap was reached.
    InstructionCap,
}

/// A simulator error, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    /// What.
    pub kind: ErrorKind,
    /// The kernel.
    pub kernel: String,
    /// The instruction (index in the flattened kernel and its name), if one.
    pub at: Option<(usize, String)>,
    /// The CTA.
    pub cta: [u32; 3],
    /// The first offending thread (its `%tid`).
    pub thread: Option<[u32; 3]>,
    /// Details.
    pub message: String,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel {}", self.kernel)?;
        if let Some((i, name)) = &self.at {
            write!(f, ", instruction {i} ({name})")?;
        }
        write!(f, ", CTA ({}, {}, {})", self.cta[0], self.cta[1], self.cta[2])?;
        if let Some(t) = self.thread {
            write!(f, ", thread ({}, {}, {})", t[0], t[1], t[2])?;
        }
        write!(f, ": {:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for SimError {}

/// What a launch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Warp instructions executed.
    pub instructions: u64,
    /// ALU instructions (arithmetic, moves, conversions, compares).
    pub alu: u64,
    /// Memory instructions.
    pub memory: u64,
    /// Synchronisation and shuffles.
    pub sync: u64,
    /// Tensor-core instructions (`mma.sync`).
    pub tensor: u64,
    /// Warp-level global loads and stores.
    pub global_requests: u64,
    /// 32-byte sectors those touched (summed per request).
    pub global_sectors: u64,
    /// Sectors of plain loads and stores beyond the fewest that could hold the bytes each
    /// request touched (`⌈unique bytes / 32⌉`): 0 when every request is coalesced (contiguous
    /// and sector-aligned, or a broadcast of one address).
    pub global_excess_sectors: u64,
    /// Warp-level shared loads and stores.
    pub shared_requests: u64,
    /// Extra shared wavefronts caused by bank conflicts.
    pub bank_replays: u64,
    /// The most bytes of global memory one warp had in flight at once: loaded into registers
    /// no instruction has read yet (a load's bytes retire at the first read of its
    /// destination), plus `cp.async` bytes no wait has completed yet. With the occupancy
    /// (warps per SM) this is the Little's-law quantity — bytes in flight per SM — that
    /// decides whether a kernel can keep the memory system busy.
    pub max_bytes_in_flight: u64,
    /// Bytes read from global memory by active lanes.
    pub bytes_loaded: u64,
    /// Bytes written to global memory by active lanes.
    pub bytes_stored: u64,
    /// Per kernel parameter (by index; scalars stay zero), the sectors of the plain loads and
    /// stores whose first active lane addressed that buffer, and the excess among them (as
    /// `global_excess_sectors`): a weight stream's efficiency apart from the activations'.
    pub sectors_by_param: Vec<(u64, u64)>,
}

/// The flattened program: instructions and the markers of structured control flow.
#[derive(Debug, Clone)]
enum Flat {
    Inst(Inst),
    If { cond: Reg, else_pc: usize, end_pc: usize },
    Else { end_pc: usize },
    EndIf,
    LoopStart { kind: LoopKind, end_pc: usize },
    LoopEnd { kind: LoopKind, start_pc: usize },
}

fn flatten(stmts: &[Stmt], out: &mut Vec<Flat>) {
    for s in stmts {
        match s {
            Stmt::Inst(i) => out.push(Flat::Inst(i.clone())),
            Stmt::If { cond, then, otherwise } => {
                let at = out.len();
                out.push(Flat::If { cond: *cond, else_pc: 0, end_pc: 0 });
                flatten(then, out);
                let else_at = out.len();
                out.push(Flat::Else { end_pc: 0 });
                flatten(otherwise, out);
                let end = out.len();
                out.push(Flat::EndIf);
                out[at] = Flat::If { cond: *cond, else_pc: else_at + 1, end_pc: end };
                out[else_at] = Flat::Else { end_pc: end };
            }
            Stmt::Loop { kind, body } => {
                let at = out.len();
                out.push(Flat::LoopStart { kind: kind.clone(), end_pc: 0 });
                flatten(body, out);
                let end = out.len();
                out.push(Flat::LoopEnd { kind: kind.clone(), start_pc: at });
                out[at] = Flat::LoopStart { kind: kind.clone(), end_pc: end };
            }
        }
    }
}

/// A reconvergence-stack entry.
#[derive(Debug, Clone, Copy)]
enum Entry {
    If { saved: u32, else_mask: u32 },
    Loop { saved: u32 },
}

#[derive(Debug, Clone)]
struct Warp {
    pc: usize,
    /// Lanes that exist (the CTA may not fill the last warp).
    live: u32,
    active: u32,
    stack: Vec<Entry>,
    done: bool,
    at_barrier: bool,
    /// `bar.warp.sync` executed so far.
    wsync: u32,
}

/// Global address of buffer `k`: buffers sit 2^40 apart, above zero.
fn buffer_base(k: usize) -> u64 {
    (k as u64 + 1) << 40
}

/// Runs `k` over `launch` with `args` (buffers are updated in place); the counters, or the
/// first error.
pub fn run(k: &Kernel, launch: &Launch, args: &mut [Arg], opts: &Options) -> Result<Counters, SimError> {
    run_with(k, launch, args, opts, &mut program::Context::default())
}

/// [`run`] as a step of a program (`program`): `ctx` says which bytes hold data (and is updated
/// with what the launch writes) and what a dependent launch may touch before its wait.
fn run_with(
    k: &Kernel,
    launch: &Launch,
    args: &mut [Arg],
    opts: &Options,
    ctx: &mut program::Context,
) -> Result<Counters, SimError> {
    let bad = |message: String| SimError {
        kind: ErrorKind::BadLaunch,
        kernel: k.name.clone(),
        at: None,
        cta: [0; 3],
        thread: None,
        message,
    };
    if let Err(errs) = crate::verify::verify(k) {
        return Err(bad(errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")));
    }
    let threads = launch.block.iter().try_fold(1u32, |a, &d| a.checked_mul(d)).unwrap_or(u32::MAX);
    if threads == 0 || threads > k.max_threads {
        return Err(bad(format!("a CTA of {threads} threads; the kernel takes 1..={}", k.max_threads)));
    }
    if launch.grid.contains(&0) {
        return Err(bad("an empty grid".into()));
    }
    if k.shared_bytes.checked_add(opts.dynamic_shared).is_none_or(|t| t > MAX_SHARED_PER_CTA) {
        return Err(bad(format!(
            "{} bytes of static and {} of dynamic shared memory; a CTA has at most {MAX_SHARED_PER_CTA}",
            k.shared_bytes, opts.dynamic_shared
        )));
    }
    if args.len() != k.params.len() {
        return Err(bad(format!("{} arguments for {} parameters", args.len(), k.params.len())));
    }
    for (p, a) in k.params.iter().zip(args.iter()) {
        match (p, a) {
            (Param::Buffer { .. }, Arg::Buffer(_)) | (Param::Scalar { .. }, Arg::Scalar(_)) => {}
            _ => return Err(bad(format!("argument `{}` is of the wrong kind", p.name()))),
        }
    }
    let mut program = Vec::new();
    flatten(&k.body, &mut program);
    let ctas: Vec<[u32; 3]> = match &opts.ctas {
        Some(list) => list.clone(),
        None => {
            let mut v = Vec::new();
            for z in 0..launch.grid[2] {
                for y in 0..launch.grid[1] {
                    for x in 0..launch.grid[0] {
                        v.push([x, y, z]);
                    }
                }
            }
            v
        }
    };
    if let Some(cta) = ctas.iter().find(|c| (0..3).any(|i| c[i] >= launch.grid[i])) {
        return Err(bad(format!("CTA {cta:?} is outside the grid {:?}", launch.grid)));
    }
    orders::run_orders(k, launch, program.into(), args, opts, ctas, ctx)
}

/// Runs the CTAs of `order` one after another on `args`, their warps in warp order
/// `warp_order` (`orders`).
#[allow(clippy::too_many_arguments)]
fn run_in_order(
    k: &Kernel,
    launch: &Launch,
    program: std::rc::Rc<[Flat]>,
    args: &mut [Arg],
    opts: &Options,
    order: Vec<[u32; 3]>,
    warp_order: usize,
    ctx: &mut program::Context,
) -> Result<Counters, SimError> {
    let races = global_race::Tracker::new(k, args, order.clone());
    let checks = !ctx.early.is_empty() || ctx.written.iter().any(Option::is_some);
    let mut m = Machine {
        k,
        launch,
        program,
        args,
        opts,
        counters: Counters::default(),
        serial: 0,
        races,
        warp_order,
        epochs: 0,
        ctx,
        checks,
    };
    for (position, &cta) in order.iter().enumerate() {
        m.races.enter(position);
        m.run_cta(cta)?;
    }
    Ok(m.counters)
}

struct Machine<'a> {
    k: &'a Kernel,
    launch: &'a Launch,
    /// Shared so that a warp walks it without copying an instruction per step.
    program: std::rc::Rc<[Flat]>,
    args: &'a mut [Arg],
    opts: &'a Options,
    counters: Counters,
    serial: u64,
    /// Which CTAs touched which bytes of the written buffers (cross-CTA races).
    races: global_race::Tracker,
    /// The order warps run in between barriers (`orders::run_epoch`).
    warp_order: usize,
    /// The last barrier epoch begun: epochs are numbered across the CTAs of a run, so one
    /// CTA's race records are stale for the next (`epoch`).
    epochs: u32,
    /// What the program knows beyond the arguments (`program`).
    ctx: &'a mut program::Context,
    /// Whether `ctx` asks for any check (unwritten bytes, a dependent launch's limits).
    checks: bool,
}

/// The state of one CTA.
struct Cta {
    id: [u32; 3],
    threads: u32,
    /// Registers, warp-major: warp `w`'s register `r` is 32 slots from `32 * (w * nregs + r)`.
    regs: Vec<u64>,
    /// Per warp and register, the lanes that have written it.
    init: Vec<u32>,
    shared: Vec<u8>,
    shared_meta: Vec<SharedByte>,
    local: Vec<u8>,
    local_init: Vec<bool>,
    epoch: u32,
    /// The first read of shared bytes nobody had written yet: reported when the epoch ends,
    /// unless a later write by another warp in the same epoch shows it was a race.
    unwritten_read: Option<SimError>,
    /// Per shared byte, how many `cp.async` copies not yet completed by a wait write it.
    pending: Vec<u32>,
    /// The `cp.async` copies in flight.
    copies: Vec<cp_async::Copy>,
    /// Per thread, the groups of copies it has committed so far.
    groups: Vec<u64>,
    /// Per warp and register (`reg_slot`), bytes a global load put there that no instruction
    /// has read yet.
    unread: Vec<u64>,
    /// Per warp, the bytes in flight (`Counters::max_bytes_in_flight`).
    in_flight: Vec<u64>,
    /// Per warp, the lanes past `griddepcontrol.wait`.
    waited: Vec<u32>,
}

impl Machine<'_> {
    fn err(&self, kind: ErrorKind, cta: &Cta, pc: Option<usize>, thread: Option<u32>, message: String) -> SimError {
        let at = pc.map(|pc| match &self.program[pc] {
            Flat::Inst(i) => (pc, inst_name(i)),
            Flat::If { .. } | Flat::Else { .. } | Flat::EndIf => (pc, "if".to_string()),
            Flat::LoopStart { .. } | Flat::LoopEnd { .. } => (pc, "loop".to_string()),
        });
        SimError { kind, kernel: self.k.name.clone(), at, cta: cta.id, thread: thread.map(|t| self.tid(t)), message }
    }

    /// The CTA's shared memory: static plus the launch's dynamic bytes.
    fn shared_total(&self) -> u32 {
        self.k.shared_bytes + self.opts.dynamic_shared
    }

    fn next_epoch(&mut self) -> u32 {
        self.epochs += 1;
        self.epochs
    }

    fn tid(&self, linear: u32) -> [u32; 3] {
        let [bx, by, _] = self.launch.block;
        [linear % bx, (linear / bx) % by, linear / (bx * by)]
    }

    fn run_cta(&mut self, id: [u32; 3]) -> Result<(), SimError> {
        let threads = self.launch.block.iter().product::<u32>();
        let nregs = self.k.regs.len();
        let nwarps = threads.div_ceil(WARP);
        let mut cta = Cta {
            id,
            threads,
            regs: vec![0; nwarps as usize * WARP as usize * nregs],
            init: vec![0; nwarps as usize * nregs],
            shared: vec![0; self.shared_total() as usize],
            shared_meta: vec![SharedByte::default(); self.shared_total() as usize],
            local: vec![0; threads as usize * self.k.local_bytes as usize],
            local_init: vec![false; threads as usize * self.k.local_bytes as usize],
            epoch: self.next_epoch(),
            unwritten_read: None,
            pending: vec![0; self.shared_total() as usize],
            copies: Vec::new(),
            groups: vec![0; threads as usize],
            unread: vec![0; nwarps as usize * nregs],
            in_flight: vec![0; nwarps as usize],
            waited: vec![0; nwarps as usize],
        };
        let mut warps: Vec<Warp> = (0..nwarps)
            .map(|w| {
                let n = (threads - w * WARP).min(WARP);
                let live = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
                Warp { pc: 0, live, active: live, stack: Vec::new(), done: false, at_barrier: false, wsync: 0 }
            })
            .collect();
        loop {
            self.run_epoch(&mut cta, &mut warps)?;
            if let Some(e) = cta.unwritten_read.take() {
                return Err(e);
            }
            if warps.iter().all(|w| w.done) {
                if let Some(c) = cta.copies.first() {
                    return Err(self.err(
                        ErrorKind::CpAsyncPending,
                        &cta,
                        None,
                        Some(c.thread),
                        format!(
                            "the thread exits with {} cp.async copies no wait completed",
                            cta.copies.iter().filter(|x| x.thread == c.thread).count()
                        ),
                    ));
                }
                return Ok(());
            }
            // Every warp waits at a barrier or has exited.
            let waiting: u32 = warps.iter().filter(|w| w.at_barrier).map(|w| w.live.count_ones()).sum();
            if let Some((w, pc)) = warps.iter().enumerate().find(|(_, w)| w.at_barrier).map(|(i, w)| (i, w.pc - 1)) {
                if waiting < cta.threads {
                    return Err(self.err(
                        ErrorKind::BarrierPartial,
                        &cta,
                        Some(pc),
                        Some(w as u32 * WARP),
                        format!(
                            "bar.sync reached by {waiting} of the CTA's {} threads; the others exited without reaching it",
                            cta.threads
                        ),
                    ));
                }
            }
            for w in &mut warps {
                w.at_barrier = false;
            }
            cta.epoch = self.next_epoch();
        }
    }

    /// Runs warp `wi` until it reaches a barrier, exits, or has run `budget` instructions.
    fn run_warp(&mut self, cta: &mut Cta, w: &mut Warp, wi: u32, budget: u64) -> Result<(), SimError> {
        let program = std::rc::Rc::clone(&self.program);
        let mut left = budget;
        while w.pc < program.len() {
            if left == 0 {
                return Ok(());
            }
            left -= 1;
            self.counters.instructions += 1;
            if self.counters.instructions > self.opts.max_instructions {
                return Err(self.err(
                    ErrorKind::InstructionCap,
                    cta,
                    Some(w.pc),
                    None,
                    format!("more than {} warp instructions in one launch", self.opts.max_instructions),
                ));
            }
            let pc = w.pc;
            match &program[pc] {
                Flat::Inst(Inst::Bar) => {
                    self.counters.sync += 1;
                    if w.active != w.live {
                        let lane = (w.live & !w.active).trailing_zeros();
                        return Err(self.err(
                            ErrorKind::BarrierDivergence,
                            cta,
                            Some(pc),
                            Some(wi * WARP + lane),
                            format!("bar.sync with lanes {:#010x} of {:#010x} active", w.active, w.live),
                        ));
                    }
                    w.pc += 1;
                    w.at_barrier = true;
                    return Ok(());
                }
                Flat::Inst(inst) => {
                    if cta.in_flight[wi as usize] > 0 {
                        self.retire_loads(cta, wi, inst);
                    }
                    self.exec(cta, w, wi, pc, inst)?;
                    w.pc += 1;
                }
                &Flat::If { cond, else_pc, end_pc } => {
                    let t = self.true_lanes(cta, wi, w.active, cond, pc)?;
                    let e = w.active & !t;
                    w.stack.push(Entry::If { saved: w.active, else_mask: e });
                    if t != 0 {
                        w.active = t;
                        w.pc += 1;
                    } else {
                        w.active = e;
                        if let Some(Entry::If { else_mask, .. }) = w.stack.last_mut() {
                            *else_mask = 0;
                        }
                        w.pc = if e != 0 { else_pc } else { end_pc };
                    }
                }
                &Flat::Else { end_pc } => match w.stack.last_mut() {
                    Some(Entry::If { else_mask, .. }) if *else_mask != 0 => {
                        w.active = *else_mask;
                        *else_mask = 0;
                        w.pc += 1;
                    }
                    _ => w.pc = end_pc,
                },
                Flat::EndIf => {
                    if let Some(Entry::If { saved, .. }) = w.stack.pop() {
                        w.active = saved;
                    }
                    w.pc += 1;
                }
                Flat::LoopStart { kind, end_pc } => {
                    w.stack.push(Entry::Loop { saved: w.active });
                    if let &LoopKind::Count { index, count } = kind {
                        self.scatter(cta, wi, w.active, index, &[0; WARP as usize]);
                        let n = self.gather(cta, wi, w.active, count, Ty::U32, pc)?;
                        let go = lanes(w.active).filter(|&l| n[l as usize] > 0).fold(0u32, |m, l| m | 1 << l);
                        if go == 0 {
                            w.stack.pop();
                            w.pc = *end_pc + 1;
                            continue;
                        }
                        w.active = go;
                    }
                    w.pc += 1;
                }
                Flat::LoopEnd { kind, start_pc } => {
                    let go = match *kind {
                        LoopKind::Count { index, count } => {
                            let mut i = self.gather(cta, wi, w.active, Operand::Reg(index), Ty::U32, pc)?;
                            for x in &mut i {
                                *x = u64::from((*x as u32).wrapping_add(1));
                            }
                            self.scatter(cta, wi, w.active, index, &i);
                            let n = self.gather(cta, wi, w.active, count, Ty::U32, pc)?;
                            lanes(w.active).filter(|&l| i[l as usize] < n[l as usize]).fold(0u32, |m, l| m | 1 << l)
                        }
                        LoopKind::While { cond } => self.true_lanes(cta, wi, w.active, cond, pc)?,
                    };
                    if go != 0 {
                        w.active = go;
                        w.pc = *start_pc + 1;
                    } else {
                        if let Some(Entry::Loop { saved }) = w.stack.pop() {
                            w.active = saved;
                        }
                        w.pc += 1;
                    }
                }
            }
        }
        w.done = true;
        Ok(())
    }

    /// Where thread `t`'s register `r` lives: a warp's copy of a register is 32 consecutive
    /// slots, so an instruction reads and writes whole warps at once.
    #[inline]
    fn reg_index(&self, t: u32, r: Reg) -> usize {
        self.reg_slot(t / WARP, r) * WARP as usize + (t % WARP) as usize
    }

    /// The index of warp `wi`'s copy of `r` in `Cta::init` (and, times 32, in `Cta::regs`).
    #[inline]
    fn reg_slot(&self, wi: u32, r: Reg) -> usize {
        wi as usize * self.k.regs.len() + r.0 as usize
    }

    #[inline]
    fn read(&self, cta: &Cta, t: u32, r: Reg, pc: usize) -> Result<u64, SimError> {
        if cta.init[self.reg_slot(t / WARP, r)] & (1 << (t % WARP)) == 0 {
            return Err(self.uninitialized(cta, t, r, pc));
        }
        Ok(cta.regs[self.reg_index(t, r)])
    }

    #[cold]
    #[inline(never)]
    fn uninitialized(&self, cta: &Cta, t: u32, r: Reg, pc: usize) -> SimError {
        self.err(
            ErrorKind::UninitializedRegister,
            cta,
            Some(pc),
            Some(t),
            format!("%r{} is read before it is written", r.0),
        )
    }

    #[inline]
    fn write(&self, cta: &mut Cta, t: u32, r: Reg, bits: u64) {
        let i = self.reg_index(t, r);
        let ty = self.k.regs[r.0 as usize];
        cta.regs[i] = truncate(bits, ty);
        cta.init[self.reg_slot(t / WARP, r)] |= 1 << (t % WARP);
    }

    /// An operand's bits at type `ty`.
    #[inline]
    fn value(&self, cta: &Cta, t: u32, o: Operand, ty: Ty, pc: usize) -> Result<u64, SimError> {
        Ok(truncate(
            match o {
                Operand::Reg(r) => self.read(cta, t, r, pc)?,
                Operand::Imm(b) => b,
            },
            ty,
        ))
    }

    /// An operand's bits at type `ty` in every lane of warp `wi`, every lane of `active` checked
    /// written (the other lanes' values are unspecified).
    #[inline]
    fn gather(&self, cta: &Cta, wi: u32, active: u32, o: Operand, ty: Ty, pc: usize) -> Result<Lanes, SimError> {
        match o {
            Operand::Imm(b) => Ok([truncate(b, ty); WARP as usize]),
            Operand::Reg(r) => {
                let slot = self.reg_slot(wi, r);
                let missing = active & !cta.init[slot];
                if missing != 0 {
                    return Err(self.uninitialized(cta, wi * WARP + missing.trailing_zeros(), r, pc));
                }
                let at = slot * WARP as usize;
                let mut v: Lanes = cta.regs[at..at + WARP as usize].try_into().expect("a warp's register is 32 slots");
                if self.k.regs[r.0 as usize].bits() > ty.bits() {
                    for x in &mut v {
                        *x = truncate(*x, ty);
                    }
                }
                Ok(v)
            }
        }
    }

    /// The loads whose destinations `inst` reads are no longer in flight.
    fn retire_loads(&self, cta: &mut Cta, wi: u32, inst: &Inst) {
        inst.for_each_source(|r| {
            let slot = self.reg_slot(wi, r);
            let bytes = std::mem::take(&mut cta.unread[slot]);
            cta.in_flight[wi as usize] -= bytes;
        });
    }

    /// Warp `wi` has `bytes` more in flight (`retire` less).
    fn in_flight(&mut self, cta: &mut Cta, wi: u32, bytes: u64, retire: u64) {
        let v = &mut cta.in_flight[wi as usize];
        *v = *v + bytes - retire;
        self.counters.max_bytes_in_flight = self.counters.max_bytes_in_flight.max(*v);
    }

    /// The lanes of `active` where predicate `p` is true.
    fn true_lanes(&self, cta: &Cta, wi: u32, active: u32, p: Reg, pc: usize) -> Result<u32, SimError> {
        let v = self.gather(cta, wi, active, Operand::Reg(p), Ty::Pred, pc)?;
        Ok(lanes(active).filter(|&l| v[l as usize] & 1 == 1).fold(0, |m, l| m | 1 << l))
    }

    /// Writes `v` to `dst` in the lanes of `active`.
    #[inline]
    fn scatter(&self, cta: &mut Cta, wi: u32, active: u32, dst: Reg, v: &Lanes) {
        let ty = self.k.regs[dst.0 as usize];
        let slot = self.reg_slot(wi, dst);
        let at = slot * WARP as usize;
        let regs = &mut cta.regs[at..at + WARP as usize];
        if active == u32::MAX {
            for (r, &x) in regs.iter_mut().zip(v) {
                *r = truncate(x, ty);
            }
        } else {
            for lane in lanes(active) {
                regs[lane as usize] = truncate(v[lane as usize], ty);
            }
        }
        cta.init[slot] |= active;
    }

    fn exec(&mut self, cta: &mut Cta, w: &mut Warp, wi: u32, pc: usize, inst: &Inst) -> Result<(), SimError> {
        match inst {
            Inst::Ld { .. } | Inst::St { .. } => {
                self.counters.memory += 1;
                self.memory(cta, w, wi, pc, inst)
            }
            Inst::Shfl { .. } | Inst::Vote { .. } | Inst::Redux { .. } => {
                self.counters.sync += 1;
                self.collective(cta, w, wi, pc, inst)
            }
            Inst::BarWarp { mask } => {
                self.counters.sync += 1;
                self.check_mask(cta, w, wi, pc, *mask)?;
                w.wsync += 1;
                Ok(())
            }
            Inst::CpAsync { .. } => {
                self.counters.memory += 1;
                self.cp_async(cta, w, wi, pc, inst)
            }
            Inst::CpAsyncCommit | Inst::CpAsyncWait { .. } | Inst::CpAsyncWaitAll => {
                self.counters.sync += 1;
                self.cp_async_group(cta, w, wi, pc, inst)
            }
            // Past the wait, the lanes may touch what the launches in flight touch (`program`);
            // letting dependents start early changes nothing a kernel can observe.
            Inst::GridDepWait => {
                self.counters.sync += 1;
                cta.waited[wi as usize] |= w.active;
                Ok(())
            }
            Inst::GridDepLaunchDependents => {
                self.counters.sync += 1;
                Ok(())
            }
            Inst::Prefetch { addr, offset } => {
                // A hint: only that each lane's address lies in a buffer.
                self.counters.memory += 1;
                for lane in (0..WARP).filter(|l| w.active & (1 << l) != 0) {
                    let t = wi * WARP + lane;
                    let a = self.value(cta, t, *addr, Ty::U64, pc)?.wrapping_add(*offset as u64);
                    self.global_slot(cta, pc, t, a, 1, epoch::Use::Read, false)?;
                }
                Ok(())
            }
            Inst::Fence => {
                self.counters.sync += 1;
                for lane in (0..WARP).filter(|l| w.active & (1 << l) != 0) {
                    self.races.fence(wi * WARP + lane, cta.epoch);
                }
                Ok(())
            }
            Inst::Atom { .. } => {
                self.counters.memory += 1;
                self.atom(cta, w, wi, pc, inst)
            }
            Inst::Ldmatrix { trans, dst, addr, offset } => {
                self.counters.memory += 1;
                self.ldmatrix(cta, w, wi, pc, inst, *trans, dst, *addr, *offset)
            }
            Inst::Mma { .. } => {
                self.counters.tensor += 1;
                self.mma(cta, w, wi, pc, inst)
            }
            _ => {
                self.counters.alu += 1;
                self.alu(cta, wi, w.active, pc, inst)
            }
        }
    }

    fn special(&self, cta: &Cta, t: u32, s: Special) -> u32 {
        let tid = self.tid(t);
        match s {
            Special::Tid(a) => tid[a.index()],
            Special::Ntid(a) => self.launch.block[a.index()],
            Special::Ctaid(a) => cta.id[a.index()],
            Special::Nctaid(a) => self.launch.grid[a.index()],
            Special::LaneId => t % WARP,
        }
    }
}
