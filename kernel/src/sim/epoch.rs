//! Races between the threads of one CTA, by barrier epoch, on shared and global bytes alike.
//!
//! Between two `bar.sync` the warps of a CTA run in no specified order, so two warps touching
//! the same bytes in one epoch, one of them writing, is a race (`SharedRace` in shared memory,
//! `GlobalRace` in global memory) — unless both are atomics, which do not race with each other.
//! Within a warp, lanes are scheduled independently (Volta and later): two lanes exchanging
//! bytes need a `bar.warp.sync` between the accesses (`WarpSyncMissing`). Each byte keeps the
//! last write and read of the current epoch and which warps read or updated it atomically.
//! Epochs are numbered across every CTA of a run, so records of an earlier CTA are stale by
//! construction.

use super::{Cta, ErrorKind, Machine, SimError, Warp};

/// One access of a byte.
#[derive(Debug, Clone, Copy)]
pub(super) struct Touch {
    pub(super) epoch: u32,
    pub(super) warp: u16,
    pub(super) lane: u8,
    /// The warp's count of `bar.warp.sync` at the access.
    pub(super) wsync: u32,
    /// The instruction serial (the lanes of one instruction do not race with each other).
    pub(super) serial: u64,
    /// An atomic read-modify-write.
    pub(super) atomic: bool,
}

/// How an access uses bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    Read,
    Write,
    /// A read-modify-write by `atom`/`red`: a write that never races with another atomic.
    Atomic,
}

/// What the threads of the running CTA did to one byte in the current epoch.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct EpochLog {
    write: Option<Touch>,
    read: Option<Touch>,
    /// Warps that read it in `readers_epoch` (bit per warp).
    readers: u32,
    readers_epoch: u32,
    /// Warps that updated it atomically in `atomics_epoch`: the last writer alone would hide an
    /// earlier warp's atomic behind a later one's.
    atomics: u32,
    atomics_epoch: u32,
    /// Lanes of one warp that read it since that warp's last `bar.warp.sync` of the epoch, and
    /// whose (`Touch::key`): the last reader alone would let a lane's own read hide another
    /// lane's earlier one.
    read_lanes: u32,
    read_key: (u32, u16, u32),
    /// Likewise for atomics.
    atomic_lanes: u32,
    atomic_key: (u32, u16, u32),
}

impl Touch {
    /// The epoch, warp and `bar.warp.sync` count: accesses of one key are unordered between
    /// the warp's lanes.
    fn key(&self) -> (u32, u16, u32) {
        (self.epoch, self.warp, self.wsync)
    }
}

/// The lanes of `lanes` other than `me`, if `key` is `mine`.
fn other_lanes(lanes: u32, key: (u32, u16, u32), mine: (u32, u16, u32), me: u8) -> Option<u8> {
    let rest = lanes & !(1u32 << me);
    (key == mine && rest != 0).then(|| rest.trailing_zeros() as u8)
}

/// A race found by [`EpochLog::access`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Race {
    /// Another warp's access in the same epoch (`what` it did and this access did).
    Warps { other: u16, what: &'static str },
    /// Another lane of the same warp with no `bar.warp.sync` between.
    Lanes { other: u8, what: &'static str },
    /// Other warps' reads or atomics in the same epoch, then this access (`what` says which).
    Earlier { what: &'static str },
}

impl EpochLog {
    /// Checks access `me` of kind `how` against the byte's record, then records it.
    pub(super) fn access(&mut self, me: Touch, how: Use) -> Result<(), Race> {
        let atomic = how == Use::Atomic;
        let writes = how != Use::Read;
        let bit = 1u32 << (me.warp % 32);
        let current = |x: Option<Touch>| x.filter(|x| x.epoch == me.epoch && x.serial != me.serial);
        let conflict = |other: Touch, what: &'static str| -> Result<(), Race> {
            if other.atomic && atomic {
                Ok(())
            } else if other.warp != me.warp {
                Err(Race::Warps { other: other.warp, what })
            } else if other.lane != me.lane && other.wsync == me.wsync {
                Err(Race::Lanes { other: other.lane, what })
            } else {
                Ok(())
            }
        };
        if !atomic && self.atomics_epoch == me.epoch && self.atomics & !bit != 0 {
            let what = if writes {
                "updated atomically by another warp, then written"
            } else {
                "updated atomically by another warp, then read"
            };
            return Err(Race::Earlier { what });
        }
        if let Some(prev) = current(self.write) {
            conflict(prev, if writes { "written" } else { "written then read" })?;
        }
        let mine = me.key();
        if !atomic {
            if let Some(other) = other_lanes(self.atomic_lanes, self.atomic_key, mine, me.lane) {
                let what = if writes { "updated atomically then written" } else { "updated atomically then read" };
                return Err(Race::Lanes { other, what });
            }
        }
        if writes {
            if let Some(other) = other_lanes(self.read_lanes, self.read_key, mine, me.lane) {
                return Err(Race::Lanes { other, what: "read then written" });
            }
        }
        if writes {
            if let Some(prev) = current(self.read) {
                conflict(prev, "read then written")?;
            }
            if self.readers_epoch == me.epoch && self.readers & !bit != 0 {
                return Err(Race::Earlier { what: "read by another warp, then written" });
            }
            // An atomic keeps a plain write of this epoch on record: that write is what a
            // later atomic of another warp races with (atomics among themselves are in
            // `atomics`).
            let plain_write = self.write.is_some_and(|x| x.epoch == me.epoch && !x.atomic);
            if !(atomic && plain_write) {
                self.write = Some(me);
            }
            if atomic {
                if self.atomics_epoch != me.epoch {
                    self.atomics_epoch = me.epoch;
                    self.atomics = 0;
                }
                self.atomics |= bit;
                if self.atomic_key != mine {
                    self.atomic_key = mine;
                    self.atomic_lanes = 0;
                }
                self.atomic_lanes |= 1 << me.lane;
            }
        } else {
            if self.read_key != mine {
                self.read_key = mine;
                self.read_lanes = 0;
            }
            self.read_lanes |= 1 << me.lane;
            self.read = Some(me);
            if self.readers_epoch != me.epoch {
                self.readers_epoch = me.epoch;
                self.readers = 0;
            }
            self.readers |= bit;
        }
        Ok(())
    }
}

impl Machine<'_> {
    /// The access of thread `t` of warp `w` (index `wi`) as a [`Touch`].
    pub(super) fn touch(&self, cta: &Cta, w: &Warp, t: u32, atomic: bool) -> Touch {
        Touch {
            epoch: cta.epoch,
            warp: (t / super::WARP) as u16,
            lane: (t % super::WARP) as u8,
            wsync: w.wsync,
            serial: self.serial,
            atomic,
        }
    }

    /// The error of `race` at thread `t`; `kind` is the space's race kind (`SharedRace` or
    /// `GlobalRace`), `byte` names the byte.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn race_error(&self, cta: &Cta, pc: usize, t: u32, race: Race, kind: ErrorKind, byte: &str) -> SimError {
        let (wi, lane) = (t / super::WARP, t % super::WARP);
        match race {
            Race::Warps { other, what } => self.err(
                kind,
                cta,
                Some(pc),
                Some(t),
                format!("{byte}: {what} by warp {other} and warp {wi} with no bar.sync between"),
            ),
            Race::Earlier { what } => {
                self.err(kind, cta, Some(pc), Some(t), format!("{byte}: {what} by warp {wi} with no bar.sync between"))
            }
            Race::Lanes { other, what } => self.err(
                ErrorKind::WarpSyncMissing,
                cta,
                Some(pc),
                Some(t),
                format!("{byte}: {what} by lanes {other} and {lane} of warp {wi} with no bar.warp.sync between"),
            ),
        }
    }
}
