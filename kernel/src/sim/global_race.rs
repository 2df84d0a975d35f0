//! Races between CTAs on global memory.
//!
//! The CTAs of one launch are not ordered with respect to each other: the hardware may run them
//! in any order, concurrently or one after another, and nothing in this IR lets one CTA wait
//! for another. So a plain access to global bytes that another CTA of the launch writes is a
//! race whatever the order — read then write, write then read, write then write — and so is a
//! plain access to bytes another CTA updates atomically (or an atomic on bytes another CTA
//! touches plainly). Atomics of different CTAs on the same bytes do not race: that is what they
//! are for.
//!
//! One hand-off is ordered: a CTA's plain writes read by a later CTA through a fence and an
//! atomic (the last-CTA pattern: each CTA writes its part, fences, bumps a counter; the one
//! whose bump completes the count fences and reads every part). The writer *releases* when a
//! thread runs `fence.acq_rel.gpu` and then an atomic, the fence after every plain global write
//! of its CTA — in an earlier barrier epoch, or earlier in the same thread — and the CTA writes
//! nothing plainly after that atomic. The reader *acquires* what was released on those bytes
//! when a thread's atomic on them is followed by a fence of the same thread; from then on that
//! thread, and every thread of its CTA after the next barrier, may read the releasing CTAs'
//! writes. In the simulator the writer has run to its end before the reader starts, so a kernel
//! that reads without the counter's say-so reads in some CTA order before the write — a race
//! the reverse order (`Options::cta_orders`) shows.
//!
//! The simulator runs CTAs one after another, so a race shows as a CTA touching a byte after
//! another CTA has. Per byte of every buffer the kernel may write (`Access::Written`; read-only
//! buffers cannot be written, the verifier and `global_slot` see to that) the tracker keeps the
//! CTA that wrote it plainly, the CTA that first read it plainly with a bit for "other CTAs read
//! it too", and the same for atomics. The granularity is the byte: CTAs writing neighbouring
//! bytes of one word (a `u8` output split by CTA) are not a race on the hardware either.
//!
//! Memory is spent only where accesses land: a buffer's log is split into pages of
//! [`PAGE`] bytes, each allocated (12 bytes of log per byte) the first time a tracked CTA
//! touches it. Sampled CTAs (`Options::ctas`) are the only CTAs that run, so only they are
//! tracked — a race with a CTA outside the sample is not seen.

use super::epoch::{EpochLog, Race, Touch, Use};
use super::{Arg, Cta, ErrorKind, Machine, SimError, Warp};
use crate::ir::{Access, Kernel, Param};

/// Bytes of buffer per lazily allocated page of log.
const PAGE: usize = 4096;

/// "Also read (or updated) by a CTA other than the one recorded".
const MORE: u32 = 1 << 31;

/// What CTAs did to one byte. CTAs are numbered by their position in the run order plus one,
/// so zero is "none".
#[derive(Debug, Clone, Copy, Default)]
struct ByteLog {
    /// The CTA that wrote it plainly (a second writer is already a race, so one is enough).
    writer: u32,
    /// The first CTA that read it plainly, `| MORE` once another CTA has too.
    reader: u32,
    /// The first CTA that updated it atomically, `| MORE` once another CTA has too.
    atomic: u32,
}

/// Bytes of buffer per page of the log within a CTA.
const WITHIN_PAGE: usize = 256;

/// What the warps of the running CTA did to global bytes in its barrier epochs, for the bytes
/// it touches only: pages are handed out as the CTA reaches them and taken back, uncleared,
/// when the next CTA starts (epochs are numbered across CTAs, so an earlier CTA's records are
/// stale by their epoch). Memory is the most any one CTA touches.
#[derive(Default)]
struct Within {
    /// (buffer, page) to its index in `pages`.
    map: std::collections::HashMap<(usize, usize), usize>,
    pages: Vec<Box<[EpochLog]>>,
    /// Pages handed out to the running CTA.
    used: usize,
}

impl Within {
    fn page(&mut self, buffer: usize, page: usize) -> &mut [EpochLog] {
        let next = self.used;
        let slot = *self.map.entry((buffer, page)).or_insert(next);
        if slot == next {
            self.used += 1;
            if self.pages.len() < self.used {
                self.pages.push(vec![EpochLog::default(); WITHIN_PAGE].into_boxed_slice());
            }
        }
        &mut self.pages[slot]
    }
}

/// The earlier access that an access races with.
#[derive(Debug, Clone, Copy)]
enum Other {
    Wrote(u32),
    Read(u32),
    Atomic(u32),
    /// A thread of the same CTA, in the same barrier epoch.
    Within(Race),
}

/// Releases and acquires through fences and atomics (the module's hand-off).
#[derive(Default)]
struct Handoff {
    /// Plain global writes of the running CTA so far (one per lane access).
    writes: u64,
    /// The running CTA's latest plain global write: its epoch, thread, and whether other
    /// threads wrote in that epoch too.
    last_write: Option<(u32, u32, bool)>,
    /// Per thread of the running CTA, the write count its latest fence covered (every write of
    /// the CTA up to then).
    fenced: std::collections::HashMap<u32, u64>,
    /// The running CTA's write count at its latest release.
    released_at: Option<u64>,
    /// Per thread, the CTAs its latest atomic acquired from, waiting for its fence.
    pending: std::collections::HashMap<u32, Vec<u32>>,
    /// What the running CTA acquired: (releasing CTA, the fence's epoch, the fencing thread).
    acquired: Vec<(u32, u32, u32)>,
    /// Per (buffer, byte) an atomic touched, the CTAs that released through it.
    releases: std::collections::HashMap<(usize, u64), Vec<u32>>,
    /// CTAs whose every plain write is released (known once they end).
    released: std::collections::HashSet<u32>,
}

impl Handoff {
    /// The CTA numbered `done` ends (0: none); the next one starts.
    fn next(&mut self, done: u32) {
        if done != 0 && self.released_at.is_some_and(|w| w == self.writes) {
            self.released.insert(done);
        }
        let (releases, released) = (std::mem::take(&mut self.releases), std::mem::take(&mut self.released));
        *self = Handoff { releases, released, ..Handoff::default() };
    }

    fn wrote(&mut self, thread: u32, epoch: u32) {
        self.writes += 1;
        self.last_write = Some(match self.last_write {
            Some((e, t, multi)) if e == epoch => (e, t, multi || t != thread),
            _ => (epoch, thread, false),
        });
    }

    fn fence(&mut self, thread: u32, epoch: u32) {
        let covers = match self.last_write {
            None => true,
            Some((e, t, multi)) => e < epoch || (!multi && t == thread),
        };
        if covers {
            self.fenced.insert(thread, self.writes);
        }
        for c in self.pending.remove(&thread).unwrap_or_default() {
            self.acquired.push((c, epoch, thread));
        }
    }

    fn atomic(&mut self, me: u32, buffer: usize, off: u64, thread: u32) {
        let key = (buffer, off);
        let before: Vec<u32> =
            self.releases.get(&key).map_or(Vec::new(), |v| v.iter().copied().filter(|&c| c != me).collect());
        self.pending.insert(thread, before);
        if self.fenced.get(&thread) == Some(&self.writes) {
            self.released_at = Some(self.writes);
            let list = self.releases.entry(key).or_default();
            if !list.contains(&me) {
                list.push(me);
            }
        }
    }

    /// Whether thread `thread` of the running CTA, in epoch `epoch`, may read what CTA `writer`
    /// wrote.
    fn may_read(&self, writer: u32, thread: u32, epoch: u32) -> bool {
        self.released.contains(&writer)
            && self.acquired.iter().any(|&(c, e, t)| c == writer && (epoch > e || thread == t))
    }
}

/// The per-launch record of which CTAs touched which global bytes.
pub(super) struct Tracker {
    /// The CTAs in the order they run (to name a CTA from its number).
    order: Vec<[u32; 3]>,
    /// The number of the running CTA.
    current: u32,
    /// Per parameter, its pages of log (empty for read-only buffers and scalars).
    logs: Vec<Vec<Option<Box<[ByteLog]>>>>,
    /// Which parameters are tracked.
    tracked: Vec<bool>,
    /// Races between the warps of the running CTA.
    within: Within,
    /// Hand-offs through fences and atomics.
    handoff: Handoff,
}

impl Tracker {
    /// A tracker for a launch of `k` on `args` whose CTAs run in `order`.
    pub(super) fn new(k: &Kernel, args: &[Arg], order: Vec<[u32; 3]>) -> Self {
        let tracked: Vec<bool> = k
            .params
            .iter()
            .zip(args)
            .map(|(p, a)| matches!((p, a), (Param::Buffer { access: Access::Written, .. }, Arg::Buffer(_))))
            .collect();
        let logs = args
            .iter()
            .zip(&tracked)
            .map(|(a, &t)| match a {
                Arg::Buffer(b) if t => vec![None; b.len().div_ceil(PAGE)],
                _ => Vec::new(),
            })
            .collect();
        Tracker { order, current: 0, logs, tracked, within: Within::default(), handoff: Handoff::default() }
    }

    /// The CTA at `position` of the run order starts.
    pub(super) fn enter(&mut self, position: usize) {
        self.handoff.next(self.current);
        // More than 2^31 CTAs cannot be simulated in any reasonable time; saturating keeps
        // the numbering total without a panic path.
        self.current = u32::try_from(position + 1).unwrap_or(MORE - 1).min(MORE - 1);
        self.within.map.clear();
        self.within.used = 0;
    }

    /// The CTA numbered `n` (one past its position).
    fn cta(&self, n: u32) -> [u32; 3] {
        ((n & !MORE) as usize).checked_sub(1).and_then(|p| self.order.get(p)).copied().unwrap_or([0; 3])
    }

    /// Records that the running CTA touches bytes `[off, off + size)` of buffer `i`; the first
    /// byte that races and the other CTA's access, if one does.
    fn record(&mut self, i: usize, off: u64, size: u64, u: Use, me_thread: Touch) -> Option<(u64, Other)> {
        if !self.tracked.get(i).copied().unwrap_or(false) {
            return None;
        }
        let me = self.current;
        let thread = u32::from(me_thread.warp) * super::WARP + u32::from(me_thread.lane);
        let handoff = &self.handoff;
        let pages = &mut self.logs[i];
        let (start, end) = (off as usize, (off + size) as usize);
        let mut b = start;
        while b < end {
            let p = b / PAGE;
            let upto = end.min((p + 1) * PAGE);
            let page = pages.get_mut(p)?.get_or_insert_with(|| vec![ByteLog::default(); PAGE].into_boxed_slice());
            for at in b..upto {
                let log = &mut page[at % PAGE];
                // Another CTA's number in a field, if it holds one (zero is nobody; the first
                // recorded CTA being this one with MORE set means someone else too).
                let other = |f: u32| (f != 0 && f != me).then_some(f);
                let conflict = match u {
                    Use::Read => other(log.writer)
                        .filter(|&w| !handoff.may_read(w, thread, me_thread.epoch))
                        .map(Other::Wrote)
                        .or(other(log.atomic).map(Other::Atomic)),
                    Use::Write => other(log.writer)
                        .map(Other::Wrote)
                        .or(other(log.atomic).map(Other::Atomic))
                        .or(other(log.reader).map(Other::Read)),
                    Use::Atomic => other(log.writer).map(Other::Wrote).or(other(log.reader).map(Other::Read)),
                };
                if let Some(c) = conflict {
                    return Some((at as u64, c));
                }
                let add = |f: &mut u32| {
                    if *f == 0 {
                        *f = me;
                    } else if *f & !MORE != me {
                        *f |= MORE;
                    }
                };
                match u {
                    Use::Read => add(&mut log.reader),
                    Use::Write => log.writer = me,
                    Use::Atomic => add(&mut log.atomic),
                }
            }
            b = upto;
        }
        match u {
            Use::Write => self.handoff.wrote(thread, me_thread.epoch),
            Use::Atomic => self.handoff.atomic(me, i, off, thread),
            Use::Read => {}
        }
        let mut b = start;
        while b < end {
            let p = b / WITHIN_PAGE;
            let upto = end.min((p + 1) * WITHIN_PAGE);
            let page = self.within.page(i, p);
            for at in b..upto {
                if let Err(race) = page[at % WITHIN_PAGE].access(me_thread, u) {
                    return Some((at as u64, Other::Within(race)));
                }
            }
            b = upto;
        }
        None
    }
}

impl Tracker {
    /// Thread `thread` of the running CTA runs `fence.acq_rel.gpu` in barrier epoch `epoch`.
    pub(super) fn fence(&mut self, thread: u32, epoch: u32) {
        self.handoff.fence(thread, epoch);
    }
}

impl Machine<'_> {
    /// Records thread `t`'s access of `size` bytes at offset `off` of buffer `i` for the
    /// cross-CTA race check; `CrossCtaRace` if another CTA's access of those bytes races with it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn track_global(
        &mut self,
        cta: &Cta,
        w: &Warp,
        pc: usize,
        t: u32,
        i: usize,
        off: u64,
        size: u64,
        u: Use,
    ) -> Result<(), SimError> {
        if self.checks {
            self.program_checks(cta, pc, t, i, off, size, u)?;
        }
        let me = self.touch(cta, w, t, u == Use::Atomic);
        let Some((byte, other)) = self.races.record(i, off, size, u, me) else {
            return Ok(());
        };
        let name = self.k.params.get(i).map(Param::name).unwrap_or("?");
        if let Other::Within(race) = other {
            let what = format!("byte {byte} of buffer `{name}`");
            return Err(self.race_error(cta, pc, t, race, ErrorKind::GlobalRace, &what));
        }
        let what = match u {
            Use::Read => "a plain read of",
            Use::Write => "a plain write to",
            Use::Atomic => "an atomic on",
        };
        let (n, did) = match other {
            Other::Wrote(n) => (n, "wrote"),
            Other::Read(n) => (n, "read"),
            Other::Atomic(n) => (n, "updated atomically"),
            Other::Within(_) => (0, ""),
        };
        // With MORE set and this CTA recorded first, the other readers are not named.
        let who = if n & !MORE == self.races.current {
            "another CTA".to_string()
        } else {
            let c = self.races.cta(n);
            format!("CTA ({}, {}, {})", c[0], c[1], c[2])
        };
        Err(self.err(
            ErrorKind::CrossCtaRace,
            cta,
            Some(pc),
            Some(t),
            format!(
                "{what} byte {byte} of buffer `{name}`, which {who} of the same launch {did}: CTAs are not \
                 ordered, so only atomics may share global bytes within a launch"
            ),
        ))
    }
}
