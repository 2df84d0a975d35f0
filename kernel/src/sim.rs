//! `sim`: a functional simulator of one launch, built to find what makes kernels wrong.
//!
//! # Execution model
//! A CTA's threads form warps of 32 consecutive linear thread indices. A warp executes the
//! flattened kernel in lock-step under an active mask, with a reconvergence stack: at an `if`
//! the lanes split (then first), at the end of the construct they join; a loop keeps the warp
//! while any lane iterates. Warps of a CTA run one after another until each reaches a barrier
//! or exits; when every warp waits, the barrier opens. Nothing depends on a random schedule:
//! every check below is decided from what the accesses are, so a result never flakes.
//!
//! # What it catches, each a typed error located by instruction, CTA and thread
//! - out-of-bounds global (per buffer), shared and local accesses, and misaligned vectors;
//! - reads of registers, shared or local bytes never written;
//! - `bar.sync` under divergence (it is `.aligned`), and barriers some threads of the CTA never
//!   reach (they exited: unequal loop trips, a barrier in one branch);
//! - shared-memory races by barrier epoch: two warps touching the same bytes between two
//!   barriers, one writing; and lanes of one warp exchanging data through shared memory
//!   without `bar.warp.sync` in between (threads of a warp are scheduled independently since
//!   Volta: lock-step here must not hide that); atomics never race with atomics, but a plain
//!   access to bytes another warp updates atomically in the epoch does;
//! - `shfl.sync` / `bar.warp.sync` / `vote.sync` / `redux.sync` with a member mask that does not match the lanes executing
//!   it, or reading an inactive lane; `ldmatrix` / `mma.sync` without the full warp;
//! - stores to a read-only buffer, `.nc` loads of a buffer the kernel writes;
//! - shared bytes of a `cp.async` touched before a wait completes its group, or copies still
//!   in flight when a thread exits (a barrier completes none);
//! - races between CTAs on global memory: a plain access to bytes another CTA of the launch
//!   writes, or updates atomically, or reads while this access writes (`global_race`);
//! - with `Options::cta_orders`, written buffers that differ between CTA orders: float atomics
//!   whose rounding depends on the order CTAs run in (`orders`);
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
//! for 16), bytes loaded and stored.

use std::fmt;

use crate::frag::{self, MmaInputs};
use crate::ir::{
    Axis, BinOp, Inst, Kernel, LoopKind, Mufu, Operand, Param, Reg, ShflMode, Special, Stmt, Ty, VoteMode,
};
use crate::verify::inst_name;
use global_race::GlobalUse;

mod alu;
mod atomic;
mod collective;
mod cp_async;
mod global_race;
mod memory;
mod orders;

use alu::{binary, compare, convert, f, lanes, pack, truncate, unary};
pub use alu::{convert_kind, ConvertKind};
pub use memory::bank_replays;
use memory::SharedByte;

/// Threads per warp.
pub const WARP: u32 = 32;

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
}

impl Default for Options {
    fn default() -> Self {
        Options { max_instructions: 200_000_000, ctas: None, cta_orders: 1 }
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
    /// A written buffer differs between two CTA orders (`Options::cta_orders`): float atomics
    /// whose rounding depends on the order CTAs run in.
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
    /// Warp-level shared loads and stores.
    pub shared_requests: u64,
    /// Extra shared wavefronts caused by bank conflicts.
    pub bank_replays: u64,
    /// Bytes read from global memory by active lanes.
    pub bytes_loaded: u64,
    /// Bytes written to global memory by active lanes.
    pub bytes_stored: u64,
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
    orders::run_orders(k, launch, program.into(), args, opts, ctas)
}

/// Runs the CTAs of `order` one after another on `args`.
fn run_in_order(
    k: &Kernel,
    launch: &Launch,
    program: std::rc::Rc<[Flat]>,
    args: &mut [Arg],
    opts: &Options,
    order: Vec<[u32; 3]>,
) -> Result<Counters, SimError> {
    let races = global_race::Tracker::new(k, args, order.clone());
    let mut m = Machine { k, launch, program, args, opts, counters: Counters::default(), serial: 0, races };
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
}

/// The state of one CTA.
struct Cta {
    id: [u32; 3],
    threads: u32,
    regs: Vec<u64>,
    init: Vec<bool>,
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

    fn tid(&self, linear: u32) -> [u32; 3] {
        let [bx, by, _] = self.launch.block;
        [linear % bx, (linear / bx) % by, linear / (bx * by)]
    }

    fn run_cta(&mut self, id: [u32; 3]) -> Result<(), SimError> {
        let threads = self.launch.block.iter().product::<u32>();
        let nregs = self.k.regs.len();
        let mut cta = Cta {
            id,
            threads,
            regs: vec![0; threads as usize * nregs],
            init: vec![false; threads as usize * nregs],
            shared: vec![0; self.k.shared_bytes as usize],
            shared_meta: vec![SharedByte::default(); self.k.shared_bytes as usize],
            local: vec![0; threads as usize * self.k.local_bytes as usize],
            local_init: vec![false; threads as usize * self.k.local_bytes as usize],
            epoch: 1,
            unwritten_read: None,
            pending: vec![0; self.k.shared_bytes as usize],
            copies: Vec::new(),
            groups: vec![0; threads as usize],
        };
        let nwarps = threads.div_ceil(WARP);
        let mut warps: Vec<Warp> = (0..nwarps)
            .map(|w| {
                let n = (threads - w * WARP).min(WARP);
                let live = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
                Warp { pc: 0, live, active: live, stack: Vec::new(), done: false, at_barrier: false, wsync: 0 }
            })
            .collect();
        loop {
            for (w, warp) in warps.iter_mut().enumerate() {
                if !warp.done && !warp.at_barrier {
                    self.run_warp(&mut cta, warp, w as u32)?;
                }
            }
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
                        format!("the thread exits with {} cp.async copies no wait completed", cta.copies.len()),
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
            cta.epoch += 1;
        }
    }

    fn run_warp(&mut self, cta: &mut Cta, w: &mut Warp, wi: u32) -> Result<(), SimError> {
        let program = std::rc::Rc::clone(&self.program);
        while w.pc < program.len() {
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
                    self.exec(cta, w, wi, pc, inst)?;
                    w.pc += 1;
                }
                &Flat::If { cond, else_pc, end_pc } => {
                    let mut t = 0u32;
                    for lane in lanes(w.active) {
                        if self.read(cta, wi * WARP + lane, cond, pc)? & 1 == 1 {
                            t |= 1 << lane;
                        }
                    }
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
                        let mut go = 0u32;
                        for lane in lanes(w.active) {
                            let t = wi * WARP + lane;
                            self.write(cta, t, index, 0);
                            if self.value(cta, t, count, Ty::U32, pc)? as u32 > 0 {
                                go |= 1 << lane;
                            }
                        }
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
                    let mut go = 0u32;
                    for lane in lanes(w.active) {
                        let t = wi * WARP + lane;
                        let more = match kind {
                            LoopKind::Count { index, count } => {
                                let i = self.read(cta, t, *index, pc)? as u32 + 1;
                                self.write(cta, t, *index, u64::from(i));
                                i < self.value(cta, t, *count, Ty::U32, pc)? as u32
                            }
                            LoopKind::While { cond } => self.read(cta, t, *cond, pc)? & 1 == 1,
                        };
                        if more {
                            go |= 1 << lane;
                        }
                    }
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

    #[inline]
    fn reg_index(&self, t: u32, r: Reg) -> usize {
        t as usize * self.k.regs.len() + r.0 as usize
    }

    #[inline]
    fn read(&self, cta: &Cta, t: u32, r: Reg, pc: usize) -> Result<u64, SimError> {
        let i = self.reg_index(t, r);
        if !cta.init[i] {
            return Err(self.uninitialized(cta, t, r, pc));
        }
        Ok(cta.regs[i])
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
        cta.init[i] = true;
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

    fn exec(&mut self, cta: &mut Cta, w: &mut Warp, wi: u32, pc: usize, inst: &Inst) -> Result<(), SimError> {
        let base = wi * WARP;
        match inst {
            Inst::Ld { .. } | Inst::St { .. } => {
                self.counters.memory += 1;
                return self.memory(cta, w, wi, pc, inst);
            }
            Inst::Shfl { mode, dst, a, b, mask, .. } => {
                self.counters.sync += 1;
                self.check_mask(cta, w, wi, pc, *mask)?;
                let mut vals = [0u64; 32];
                for lane in lanes(w.active) {
                    vals[lane as usize] = self.value(cta, base + lane, *a, Ty::B32, pc)?;
                }
                for lane in lanes(w.active) {
                    let bv = self.value(cta, base + lane, *b, Ty::U32, pc)? as u32;
                    let src = match mode {
                        ShflMode::Idx => Some(bv & 31),
                        ShflMode::Up => lane.checked_sub(bv),
                        ShflMode::Down => lane.checked_add(bv).filter(|&j| j < WARP),
                        ShflMode::Bfly => Some(lane ^ bv).filter(|&j| j < WARP),
                    };
                    let v = match src {
                        Some(j) if w.active & (1 << j) == 0 => {
                            return Err(self.err(
                                ErrorKind::ShflInactiveSource,
                                cta,
                                Some(pc),
                                Some(base + lane),
                                format!("lane {lane} reads lane {j}, which does not execute the shuffle"),
                            ))
                        }
                        Some(j) => vals[j as usize],
                        None => vals[lane as usize],
                    };
                    self.write(cta, base + lane, *dst, v);
                }
                return Ok(());
            }
            Inst::BarWarp { mask } => {
                self.counters.sync += 1;
                self.check_mask(cta, w, wi, pc, *mask)?;
                w.wsync += 1;
                return Ok(());
            }
            Inst::Vote { mode, dst, a, mask } => {
                self.counters.sync += 1;
                self.check_mask(cta, w, wi, pc, *mask)?;
                let mut ballot = 0u32;
                for lane in lanes(w.active) {
                    if self.read(cta, base + lane, *a, pc)? & 1 == 1 {
                        ballot |= 1 << lane;
                    }
                }
                let v = match mode {
                    VoteMode::All => u64::from(ballot == w.active),
                    VoteMode::Any => u64::from(ballot != 0),
                    VoteMode::Ballot => u64::from(ballot),
                };
                for lane in lanes(w.active) {
                    self.write(cta, base + lane, *dst, v);
                }
                return Ok(());
            }
            Inst::Redux { op, ty, dst, a, mask } => {
                self.counters.sync += 1;
                self.check_mask(cta, w, wi, pc, *mask)?;
                let mut acc: Option<u64> = None;
                for lane in lanes(w.active) {
                    let x = self.value(cta, base + lane, *a, *ty, pc)?;
                    // The verifier admits only ops that never divide.
                    acc = Some(acc.map_or(Some(x), |y| binary(*op, *ty, y, x)).unwrap_or(0));
                }
                for lane in lanes(w.active) {
                    self.write(cta, base + lane, *dst, acc.unwrap_or(0));
                }
                return Ok(());
            }
            Inst::CpAsync { .. } => {
                self.counters.memory += 1;
                return self.cp_async(cta, w, wi, pc, inst);
            }
            Inst::CpAsyncCommit | Inst::CpAsyncWait { .. } | Inst::CpAsyncWaitAll => {
                self.counters.sync += 1;
                return self.cp_async_group(cta, w, wi, pc, inst);
            }
            // No-ops in a single launch; the PDL discipline belongs to the multi-launch runner.
            Inst::GridDepWait | Inst::GridDepLaunchDependents => {
                self.counters.sync += 1;
                return Ok(());
            }
            Inst::Atom { .. } => {
                self.counters.memory += 1;
                return self.atom(cta, w, wi, pc, inst);
            }
            Inst::Ldmatrix { trans, dst, addr, offset } => {
                self.counters.memory += 1;
                return self.ldmatrix(cta, w, wi, pc, inst, *trans, dst, *addr, *offset);
            }
            Inst::Mma { shape, atype, btype, d, a, b, c } => {
                self.counters.tensor += 1;
                self.full_warp(cta, w, wi, pc)?;
                let mut x = MmaInputs { a: [[0; 4]; 32], b: [[0; 2]; 32], c: [[0.0; 4]; 32] };
                for lane in 0..WARP {
                    let t = base + lane;
                    let l = lane as usize;
                    for i in 0..4 {
                        x.a[l][i] = self.read(cta, t, a[i], pc)? as u32;
                        x.c[l][i] = f(self.value(cta, t, c[i], Ty::F32, pc)?);
                    }
                    for (slot, r) in x.b[l].iter_mut().zip(b) {
                        *slot = self.read(cta, t, *r, pc)? as u32;
                    }
                }
                // Every input is read before any output is written: `d` may alias `c`.
                let out = frag::mma(*shape, *atype, *btype, &x);
                for lane in 0..WARP {
                    for (r, v) in d.iter().zip(out[lane as usize]) {
                        self.write(cta, base + lane, *r, u64::from(v.to_bits()));
                    }
                }
                return Ok(());
            }
            _ => self.counters.alu += 1,
        }
        for lane in lanes(w.active) {
            let t = base + lane;
            let (dst, bits) = match inst {
                Inst::Mov { dst, src } => (*dst, self.value(cta, t, *src, self.k.regs[dst.0 as usize], pc)?),
                Inst::Special { dst, reg } => (*dst, u64::from(self.special(cta, t, *reg))),
                Inst::Param { dst, index } => (
                    *dst,
                    match &self.args[*index] {
                        Arg::Buffer(_) => buffer_base(*index),
                        Arg::Scalar(v) => *v,
                    },
                ),
                Inst::Unary { op, ty, dst, a } => (*dst, unary(*op, *ty, self.value(cta, t, *a, *ty, pc)?)),
                Inst::Binary { op, ty, dst, a, b } => {
                    let x = self.value(cta, t, *a, *ty, pc)?;
                    let bty = if matches!(op, BinOp::Shl | BinOp::Shr) { Ty::U32 } else { *ty };
                    let y = self.value(cta, t, *b, bty, pc)?;
                    let r = binary(*op, *ty, x, y).ok_or_else(|| {
                        self.err(ErrorKind::DivisionByZero, cta, Some(pc), Some(t), "integer division by zero".into())
                    })?;
                    (*dst, r)
                }
                Inst::Fma { ty, dst, a, b, c } => {
                    let (x, y, z) = (
                        self.value(cta, t, *a, *ty, pc)?,
                        self.value(cta, t, *b, *ty, pc)?,
                        self.value(cta, t, *c, *ty, pc)?,
                    );
                    let r = if *ty == Ty::F32 {
                        u64::from(f(x).mul_add(f(y), f(z)).to_bits())
                    } else {
                        x.wrapping_mul(y).wrapping_add(z)
                    };
                    (*dst, r)
                }
                Inst::Setp { cmp, ty, dst, a, b } => {
                    let (x, y) = (self.value(cta, t, *a, *ty, pc)?, self.value(cta, t, *b, *ty, pc)?);
                    (*dst, u64::from(compare(*cmp, *ty, x, y)))
                }
                Inst::Selp { ty, dst, a, b, p } => {
                    let take_a = self.read(cta, t, *p, pc)? & 1 == 1;
                    (*dst, self.value(cta, t, if take_a { *a } else { *b }, *ty, pc)?)
                }
                Inst::Cvt { to, from, rounding, satfinite, dst, src } => {
                    let x = self.value(cta, t, *src, *from, pc)?;
                    (*dst, convert(*to, *from, *rounding, *satfinite, x))
                }
                Inst::CvtPack { to, satfinite, dst, a, b } => {
                    let hi = f(self.value(cta, t, *a, Ty::F32, pc)?);
                    let lo = f(self.value(cta, t, *b, Ty::F32, pc)?);
                    (*dst, pack(*to, *satfinite, hi, lo))
                }
                Inst::Mufu { op, dst, a } => {
                    let x = f64::from(f(self.value(cta, t, *a, Ty::F32, pc)?));
                    let y = match op {
                        Mufu::Ex2 => x.exp2(),
                        Mufu::Rsqrt => 1.0 / x.sqrt(),
                        Mufu::Rcp => 1.0 / x,
                        Mufu::Tanh => x.tanh(),
                    };
                    (*dst, u64::from((y as f32).to_bits()))
                }
                Inst::Ld { .. }
                | Inst::St { .. }
                | Inst::Shfl { .. }
                | Inst::Bar
                | Inst::BarWarp { .. }
                | Inst::Ldmatrix { .. }
                | Inst::Mma { .. }
                | Inst::Atom { .. }
                | Inst::Vote { .. }
                | Inst::Redux { .. }
                | Inst::CpAsync { .. }
                | Inst::CpAsyncCommit
                | Inst::CpAsyncWait { .. }
                | Inst::CpAsyncWaitAll
                | Inst::GridDepWait
                | Inst::GridDepLaunchDependents => {
                    continue;
                }
            };
            self.write(cta, t, dst, bits);
        }
        Ok(())
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

/// The value of an `Axis` for messages and tests.
pub fn axis_name(a: Axis) -> &'static str {
    match a {
        Axis::X => "x",
        Axis::Y => "y",
        Axis::Z => "z",
    }
}
