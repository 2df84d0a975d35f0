//! Programs: launches one after another on shared buffers, the way a compiled model runs.
//!
//! Two things go wrong only across launches, and a program run catches both:
//!
//! - **Memory no launch wrote.** Activations, scratch and the memory plan's arena hold nothing
//!   meaningful until a launch writes them, and an arena region reused by a later buffer holds
//!   its previous tenant's bytes. A [`Buffer::poisoned`] buffer (and any range a
//!   [`Step::Poison`] marks, as the memory plan does when a region changes hands) has its bytes
//!   set to `0xff` and marked unwritten; a load, atomic or `cp.async` source reading an
//!   unwritten byte is `UninitializedMemory`. A split reduction whose zeroing launch is
//!   missing fails here instead of summing into garbage.
//! - **Programmatic dependent launch.** A launch marked `dependent` may start while its
//!   predecessor still runs, up to its `griddepcontrol.wait`, which waits for the predecessor
//!   to complete and its writes to be visible. Before its threads pass that wait, a dependent
//!   launch may only touch memory the launches still in flight leave alone: reading a buffer
//!   one of them writes, or writing one they read or write, is `DependentBeforeWait`. The
//!   launches in flight are the predecessor and, while that one is itself dependent, its own
//!   predecessor, and so on: `griddepcontrol.launch_dependents` may let a launch's successor
//!   start before the launch has waited for its own predecessor, so the chain is taken whole
//!   (conservative). Weights, which no launch writes, are what a dependent launch prefetches
//!   before its wait.

use std::ops::Range;

use super::epoch::Use;
use super::{Arg, Counters, Cta, ErrorKind, Launch, Machine, Options, SimError};
use crate::ir::{Access, Kernel, Param};

/// What poisoned bytes hold: all ones (a NaN in every float format, an implausible index).
pub const POISON: u8 = 0xff;

/// A buffer of a program.
#[derive(Debug, Clone, PartialEq)]
pub struct Buffer {
    /// Its name in messages.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Per byte (a bit each), written since it was last poisoned; `None` while every byte holds
    /// data (inputs, weights).
    written: Option<Vec<u64>>,
}

impl Buffer {
    /// A buffer holding data: inputs, weights, caches carried from an earlier step.
    pub fn data(name: impl Into<String>, bytes: Vec<u8>) -> Buffer {
        Buffer { name: name.into(), bytes, written: None }
    }

    /// `len` bytes no launch has written yet: scratch, activations, arena.
    pub fn poisoned(name: impl Into<String>, len: usize) -> Buffer {
        Buffer { name: name.into(), bytes: vec![POISON; len], written: Some(vec![0; len.div_ceil(64)]) }
    }

    /// Bytes `range` hold no data any more (clamped to the buffer).
    pub fn poison(&mut self, range: Range<usize>) {
        let range = range.start.min(self.bytes.len())..range.end.min(self.bytes.len());
        self.bytes[range.clone()].fill(POISON);
        let bits = self.written.get_or_insert_with(|| vec![u64::MAX; self.bytes.len().div_ceil(64)]);
        for b in range {
            bits[b / 64] &= !(1 << (b % 64));
        }
    }

    /// Whether every byte of `range` holds data.
    pub fn is_written(&self, range: Range<usize>) -> bool {
        match &self.written {
            None => range.end <= self.bytes.len(),
            Some(bits) => range.end <= self.bytes.len() && range.clone().all(|b| bits[b / 64] >> (b % 64) & 1 == 1),
        }
    }
}

/// What an argument of a launch is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// A buffer of the program, by index.
    Buffer(usize),
    /// A scalar's bits.
    Scalar(u64),
}

/// One step of a program.
#[derive(Debug, Clone)]
pub enum Step<'k> {
    /// A launch of `kernel`; `dependent` launches with programmatic dependent launch (it may
    /// start before the previous launch completes, up to its `griddepcontrol.wait`).
    Launch { kernel: &'k Kernel, launch: Launch, args: Vec<Bind>, dependent: bool },
    /// Bytes `range` of buffer `buffer` hold no data from here on.
    Poison { buffer: usize, range: Range<usize> },
}

/// What a dependent launch may not do to an argument before `griddepcontrol.wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Early {
    /// Anything: no launch in flight touches it.
    Free,
    /// Write it: a launch in flight reads it.
    NoWrite,
    /// Touch it at all: a launch in flight writes it.
    NoAccess,
}

/// What a launch of a program knows beyond its arguments.
#[derive(Debug, Clone, Default)]
pub(super) struct Context {
    /// Per argument, the written-byte bits of a buffer with unwritten bytes.
    pub(super) written: Vec<Option<Vec<u64>>>,
    /// Per argument, the limit before `griddepcontrol.wait` (empty: not a dependent launch).
    pub(super) early: Vec<Early>,
    /// Per argument, the program buffer's name and the launches in flight that touch it.
    pub(super) labels: Vec<String>,
}

/// Runs `steps` in order on `buffers`; each launch's counters, or the first error (its message
/// names the step).
pub fn run_program(steps: &[Step<'_>], buffers: &mut [Buffer], opts: &Options) -> Result<Vec<Counters>, SimError> {
    let mut out = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let (kernel, launch, binds, dependent) = match step {
            Step::Poison { buffer, range } => {
                let b = buffers.get_mut(*buffer).ok_or_else(|| bad_step(n, None, format!("no buffer {buffer}")))?;
                b.poison(range.clone());
                continue;
            }
            Step::Launch { kernel, launch, args, dependent } => (*kernel, launch, args, *dependent),
        };
        let fail = |message: String| bad_step(n, Some(kernel), message);
        if binds.len() != kernel.params.len() {
            return Err(fail(format!("{} arguments for {} parameters", binds.len(), kernel.params.len())));
        }
        let mut seen = Vec::new();
        for b in binds {
            if let Bind::Buffer(i) = *b {
                if i >= buffers.len() {
                    return Err(fail(format!("no buffer {i}")));
                }
                if seen.contains(&i) {
                    return Err(fail(format!("buffer `{}` is bound to two parameters", buffers[i].name)));
                }
                seen.push(i);
            }
        }
        let early = if dependent { in_flight_limits(steps, n, kernel, binds) } else { Vec::new() };
        let mut ctx = Context {
            written: binds
                .iter()
                .map(|b| match b {
                    Bind::Buffer(i) => buffers[*i].written.take(),
                    Bind::Scalar(_) => None,
                })
                .collect(),
            early: early.iter().map(|(e, _)| *e).collect(),
            labels: binds
                .iter()
                .enumerate()
                .map(|(a, b)| match b {
                    Bind::Buffer(i) => {
                        let who = early.get(a).map(|(_, who)| who.as_str()).unwrap_or("");
                        format!("program buffer `{}`{who}", buffers[*i].name)
                    }
                    Bind::Scalar(_) => String::new(),
                })
                .collect(),
        };
        let mut args: Vec<Arg> = binds
            .iter()
            .map(|b| match b {
                Bind::Buffer(i) => Arg::Buffer(std::mem::take(&mut buffers[*i].bytes)),
                Bind::Scalar(v) => Arg::Scalar(*v),
            })
            .collect();
        let result = super::run_with(kernel, launch, &mut args, opts, &mut ctx);
        for ((b, a), w) in binds.iter().zip(args).zip(ctx.written) {
            if let (Bind::Buffer(i), Arg::Buffer(bytes)) = (b, a) {
                buffers[*i].bytes = bytes;
                buffers[*i].written = w;
            }
        }
        out.push(result.map_err(|mut e| {
            e.message = format!("step {n}: {}", e.message);
            e
        })?);
    }
    Ok(out)
}

/// The error of a step that cannot run.
fn bad_step(n: usize, k: Option<&Kernel>, message: String) -> SimError {
    SimError {
        kind: ErrorKind::BadLaunch,
        kernel: k.map(|k| k.name.clone()).unwrap_or_default(),
        at: None,
        cta: [0; 3],
        thread: None,
        message: format!("step {n}: {message}"),
    }
}

/// For dependent launch `n`, per argument: what it may not do before `griddepcontrol.wait`,
/// and the words naming the launches in flight that decide it.
fn in_flight_limits(steps: &[Step<'_>], n: usize, kernel: &Kernel, binds: &[Bind]) -> Vec<(Early, String)> {
    // The launches that may still run: back through the chain of dependent launches.
    let mut flight: Vec<(usize, &Kernel, &[Bind])> = Vec::new();
    for (m, step) in steps[..n].iter().enumerate().rev() {
        if let Step::Launch { kernel, args, dependent, .. } = step {
            flight.push((m, kernel, args));
            if !dependent {
                break;
            }
        }
    }
    binds
        .iter()
        .zip(&kernel.params)
        .map(|(b, p)| {
            let Bind::Buffer(i) = *b else {
                return (Early::Free, String::new());
            };
            let writes_here = matches!(p, Param::Buffer { access: Access::Written, .. });
            let mut limit = Early::Free;
            let mut who = String::new();
            for &(m, k, args) in &flight {
                let Some(q) = args.iter().position(|x| *x == Bind::Buffer(i)) else {
                    continue;
                };
                let writes_there = matches!(k.params[q], Param::Buffer { access: Access::Written, .. });
                let l = if writes_there {
                    Early::NoAccess
                } else if writes_here {
                    Early::NoWrite
                } else {
                    continue;
                };
                if limit != Early::NoAccess {
                    limit = l;
                    let did = if writes_there { "writes" } else { "reads" };
                    who = format!(", which step {m} (`{}`) {did} and may still be running", k.name);
                }
            }
            (limit, who)
        })
        .collect()
}

impl Machine<'_> {
    /// The checks a program adds to an access of bytes `[off, off + size)` of argument `i` by
    /// thread `t`: unwritten bytes, and the dependent-launch limit before its wait.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn program_checks(
        &mut self,
        cta: &Cta,
        pc: usize,
        t: u32,
        i: usize,
        off: u64,
        size: u64,
        u: Use,
    ) -> Result<(), SimError> {
        let name = || self.k.params.get(i).map(Param::name).unwrap_or("?");
        let label = || self.ctx.labels.get(i).map(String::as_str).unwrap_or("");
        let early = self.ctx.early.get(i).copied().unwrap_or(Early::Free);
        let waited = cta.waited[(t / super::WARP) as usize] >> (t % super::WARP) & 1 == 1;
        if !waited && (early == Early::NoAccess || (early == Early::NoWrite && u != Use::Read)) {
            let what = match u {
                Use::Read => "a read of",
                Use::Write => "a write to",
                Use::Atomic => "an atomic on",
            };
            return Err(self.err(
                ErrorKind::DependentBeforeWait,
                cta,
                Some(pc),
                Some(t),
                format!(
                    "{what} bytes [{off}, {}) of buffer `{}` ({}) before griddepcontrol.wait in a dependent launch",
                    off + size,
                    name(),
                    label()
                ),
            ));
        }
        let Some(bits) = self.ctx.written.get_mut(i).and_then(Option::as_mut) else {
            return Ok(());
        };
        let (start, end) = (off as usize, (off + size) as usize);
        if u != Use::Write {
            if let Some(b) = (start..end).find(|&b| bits[b / 64] >> (b % 64) & 1 == 0) {
                return Err(self.err(
                    ErrorKind::UninitializedMemory,
                    cta,
                    Some(pc),
                    Some(t),
                    format!(
                        "byte {b} of buffer `{}` ({}) holds no data: nothing wrote it since it was poisoned \
                         (scratch, activations and arena hold nothing until a launch writes them)",
                        name(),
                        label()
                    ),
                ));
            }
        }
        if u != Use::Read {
            for b in start..end {
                bits[b / 64] |= 1 << (b % 64);
            }
        }
        Ok(())
    }
}
