//! The target a kernel is compiled for — an SM architecture and a PTX ISA version — and what it
//! makes legal. The verifier checks a kernel on its own; [`check`] adds what depends on the
//! target (fp8 tensor cores and conversions need sm_89, `griddepcontrol` sm_90, L1 eviction
//! priorities on loads and stores PTX ISA 7.4; each architecture needs a minimum PTX ISA
//! version; the PTX lathe emits stays at or below 8.8, what the ptxas of CUDA 12.9 accepts).

use std::fmt;

use crate::ir::{Inst, Kernel, MmaElem, Stmt, Ty};
use crate::verify::{inst_name, KernelVerifyError};

/// An SM architecture lathe compiles for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sm {
    /// Ampere (A100).
    Sm80,
    /// Ada (L4, L40): adds fp8 `mma`.
    Sm89,
    /// Hopper (H100, H200), portable features.
    Sm90,
    /// Hopper with the architecture-specific features (`wgmma`, `setmaxnreg`).
    Sm90a,
}

/// A compilation target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// The architecture.
    pub sm: Sm,
    /// The PTX ISA version `(major, minor)` of the emitted `.version`.
    pub ptx: (u32, u32),
}

/// The highest PTX ISA version lathe emits (what ptxas 12.9 accepts).
pub const MAX_PTX: (u32, u32) = (8, 8);

impl Sm {
    /// Every architecture.
    pub const ALL: [Sm; 4] = [Sm::Sm80, Sm::Sm89, Sm::Sm90, Sm::Sm90a];

    /// `sm_80`, ...
    pub fn name(self) -> &'static str {
        match self {
            Sm::Sm80 => "sm_80",
            Sm::Sm89 => "sm_89",
            Sm::Sm90 => "sm_90",
            Sm::Sm90a => "sm_90a",
        }
    }

    /// The architecture of a name.
    pub fn from_name(name: &str) -> Option<Sm> {
        Sm::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The first PTX ISA version that knows the architecture.
    pub fn min_ptx(self) -> (u32, u32) {
        match self {
            Sm::Sm80 => (7, 0),
            Sm::Sm89 | Sm::Sm90 => (7, 8),
            Sm::Sm90a => (8, 0),
        }
    }
}

impl Target {
    /// The target lathe's H100/H200 artifacts use.
    pub const HOPPER: Target = Target { sm: Sm::Sm90, ptx: MAX_PTX };

    /// `sm` at the highest PTX version lathe emits.
    pub fn new(sm: Sm) -> Target {
        Target { sm, ptx: MAX_PTX }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (PTX ISA {}.{})", self.sm.name(), self.ptx.0, self.ptx.1)
    }
}

/// Checks what `target` makes legal in `k` (run [`crate::verify::verify`] as well).
pub fn check(k: &Kernel, target: &Target) -> Result<(), Vec<KernelVerifyError>> {
    let mut errors = Vec::new();
    let mut err = |at: String, message: String| errors.push(KernelVerifyError { kernel: k.name.clone(), at, message });
    if target.ptx > MAX_PTX {
        err(
            "kernel".into(),
            format!(
                "PTX ISA {}.{} is above {}.{}, the highest lathe emits",
                target.ptx.0, target.ptx.1, MAX_PTX.0, MAX_PTX.1
            ),
        );
    }
    let min = target.sm.min_ptx();
    if target.ptx < min {
        err(
            "kernel".into(),
            format!(
                "{} needs PTX ISA {}.{} or later, not {}.{}",
                target.sm.name(),
                min.0,
                min.1,
                target.ptx.0,
                target.ptx.1
            ),
        );
    }
    walk(&k.body, "body", &mut |at, inst| {
        if let Some(m) = needs(inst, target) {
            err(format!("{at} ({})", inst_name(inst)), m);
        }
    });
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Why `inst` is not legal on `target`, if it is not.
fn needs(inst: &Inst, target: &Target) -> Option<String> {
    match inst {
        Inst::Mma { atype, btype, .. } if [atype, btype].iter().any(|e| matches!(e, MmaElem::E4m3 | MmaElem::E5m2)) => {
            at_least("fp8 mma needs", Sm::Sm89, (8, 4), target)
        }
        Inst::CvtPack { to: Ty::E4m3x2 | Ty::E5m2x2, .. } | Inst::Cvt { from: Ty::E4m3x2 | Ty::E5m2x2, .. } => {
            at_least("fp8 conversions need", Sm::Sm89, (7, 8), target)
        }
        Inst::GridDepWait | Inst::GridDepLaunchDependents => at_least("griddepcontrol needs", Sm::Sm90, (7, 8), target),
        Inst::Prefetch { .. } => at_least("L2 prefetch with eviction priority needs", Sm::Sm80, (7, 4), target),
        // sm_70 and later, which every architecture here is.
        Inst::Ld { hint: Some(h), .. } | Inst::St { hint: Some(h), .. } if h.is_eviction_priority() => {
            at_least("L1 eviction priorities need", Sm::Sm80, (7, 4), target)
        }
        _ => None,
    }
}

/// `k` as it runs on `target`: below sm_90 without its `griddepcontrol` instructions (there no
/// launch overlaps another, so the wait orders nothing and the trigger starts nothing). The
/// templates emit them for every target; the code generator calls this before [`check`].
pub fn without_pdl<'k>(k: &'k Kernel, target: &Target) -> std::borrow::Cow<'k, Kernel> {
    fn strip(stmts: &[Stmt]) -> Vec<Stmt> {
        stmts
            .iter()
            .filter(|s| !matches!(s, Stmt::Inst(Inst::GridDepWait | Inst::GridDepLaunchDependents)))
            .map(|s| match s {
                Stmt::If { cond, then, otherwise } => {
                    Stmt::If { cond: *cond, then: strip(then), otherwise: strip(otherwise) }
                }
                Stmt::Loop { kind, body } => Stmt::Loop { kind: kind.clone(), body: strip(body) },
                other => other.clone(),
            })
            .collect()
    }
    if target.sm >= Sm::Sm90 {
        return std::borrow::Cow::Borrowed(k);
    }
    let mut out = k.clone();
    out.body = strip(&k.body);
    std::borrow::Cow::Owned(out)
}

/// `what` (`"fp8 mma needs"`) `sm` or later and PTX ISA `ptx` or later, if `target` has less.
fn at_least(what: &str, sm: Sm, ptx: (u32, u32), target: &Target) -> Option<String> {
    if target.sm < sm {
        Some(format!("{what} {} or later, not {}", sm.name(), target.sm.name()))
    } else if target.ptx < ptx {
        Some(format!("{what} PTX ISA {}.{} or later, not {}.{}", ptx.0, ptx.1, target.ptx.0, target.ptx.1))
    } else {
        None
    }
}

fn walk(stmts: &[Stmt], path: &str, f: &mut dyn FnMut(String, &Inst)) {
    for (i, s) in stmts.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match s {
            Stmt::Inst(inst) => f(at, inst),
            Stmt::If { then, otherwise, .. } => {
                walk(then, &format!("{at}.then"), f);
                walk(otherwise, &format!("{at}.else"), f);
            }
            Stmt::Loop { body, .. } => walk(body, &format!("{at}.body"), f),
        }
    }
}
