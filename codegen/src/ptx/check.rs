//! The structural check of emitted PTX against its kernel IR.
//!
//! The simulator proves the kernel IR right; the PTX that runs comes out of LLVM. So every
//! emitted kernel is held to what the kernel IR says, statically (instructions as written,
//! loops not unrolled — `llvm` turns unrolling off):
//! - as many CTA barriers, `mma`, `ldmatrix`, `cp.async` copies, atomics and GPU-wide fences as
//!   the kernel IR;
//! - no more f32 `fma` than the kernel IR has, and every other f32 add, subtract and multiply
//!   rounded on its own (`.rn`, which ptxas does not fuse either): no contraction (the LLVM IR
//!   carries no `contract` flags, so an `fma` can only disappear — merged with an identical
//!   one by common-subexpression elimination — never appear);
//! - no more packed conversions (`…x2`, the fp8 and half-pair packs and unpacks), for the same
//!   reason;
//! - no more bytes of loads and stores per thread (LLVM may merge accesses into vectors, drop a
//!   load of an address already loaded, and delete an access whose guard it proves false — a
//!   ragged trip a template unrolled — but never add one), at least one store where the kernel
//!   IR has any, and no access through a generic address;
//! - no `.ftz`, no approximate division or square root (the kernel IR's `div.f32` and `sqrt.f32`
//!   are IEEE: `div.rn`, `sqrt.rn`), and no local memory or stack frame unless the kernel
//!   declares local memory.

use lathe_kernel::ir::{Inst, Kernel, Space, Stmt, Ty};
use lathe_kernel::sim::{convert_kind, ConvertKind};

/// What the check counts, in the kernel IR and in the PTX.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// CTA barriers.
    pub barriers: usize,
    /// `mma.sync`.
    pub mma: usize,
    /// `ldmatrix`.
    pub ldmatrix: usize,
    /// `cp.async` copies (not commits or waits).
    pub cp_async: usize,
    /// Atomics (`atom`, `red`).
    pub atomics: usize,
    /// GPU-wide fences (`fence`, `membar`).
    pub fences: usize,
    /// f32 `fma`.
    pub fma: usize,
    /// Packed conversions (`cvt` to or from a `…x2` type).
    pub packs: usize,
    /// Bytes per thread of global loads, global stores, shared loads, shared stores.
    pub global_load_bytes: u64,
    pub global_store_bytes: u64,
    pub shared_load_bytes: u64,
    pub shared_store_bytes: u64,
}

/// What the kernel IR says, counted statically.
pub fn ir_counts(k: &Kernel) -> Counts {
    let mut c = Counts::default();
    walk(&k.body, &mut c);
    c
}

fn walk(stmts: &[Stmt], c: &mut Counts) {
    for s in stmts {
        match s {
            Stmt::Inst(i) => count(i, c),
            Stmt::If { then, otherwise, .. } => {
                walk(then, c);
                walk(otherwise, c);
            }
            Stmt::Loop { body, .. } => walk(body, c),
        }
    }
}

fn count(i: &Inst, c: &mut Counts) {
    match i {
        Inst::Bar => c.barriers += 1,
        Inst::Mma { .. } => c.mma += 1,
        Inst::Ldmatrix { .. } => c.ldmatrix += 1,
        Inst::CpAsync { .. } => c.cp_async += 1,
        Inst::Atom { .. } => c.atomics += 1,
        Inst::Fence => c.fences += 1,
        Inst::Fma { ty: Ty::F32, .. } => c.fma += 1,
        Inst::CvtPack { .. } => c.packs += 1,
        Inst::Cvt { to, from, .. } if convert_kind(*to, *from) == Some(ConvertKind::Fp8x2F16x2) => c.packs += 1,
        Inst::Ld { space, ty, dst, .. } => {
            let bytes = u64::from(ty.bytes()) * dst.len() as u64;
            match space {
                Space::Global => c.global_load_bytes += bytes,
                Space::Shared => c.shared_load_bytes += bytes,
                _ => {}
            }
        }
        Inst::St { space, ty, src, .. } => {
            let bytes = u64::from(ty.bytes()) * src.len() as u64;
            match space {
                Space::Global => c.global_store_bytes += bytes,
                Space::Shared => c.shared_store_bytes += bytes,
                _ => {}
            }
        }
        _ => {}
    }
}

/// The bytes one thread moves with a PTX memory instruction `op` (`ld.global.nc.v4.b32`).
fn access_bytes(op: &str) -> u64 {
    let parts: Vec<&str> = op.split('.').collect();
    let n = parts.iter().find_map(|p| p.strip_prefix('v').and_then(|n| n.parse::<u64>().ok())).unwrap_or(1);
    let bits = parts.last().and_then(|t| t.get(1..)).and_then(|b| b.parse::<u64>().ok()).unwrap_or(0);
    n * bits / 8
}

/// What the PTX does, counted statically; an error for what it must never do.
pub fn ptx_counts(ptx: &str, local_allowed: bool) -> Result<Counts, String> {
    let mut c = Counts::default();
    for (n, raw) in ptx.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or("").trim();
        if !local_allowed && (line.contains(".local") || line.contains("__local_depot") || line.contains("%SP")) {
            return Err(format!("line {}: local memory or a stack frame: `{line}`", n + 1));
        }
        let Some(op) = line.split_whitespace().next() else { continue };
        if op.starts_with('.') || op.ends_with(':') || op.starts_with('{') || op.starts_with('}') || op.starts_with('@')
        {
            // Directives, labels, braces; a guarded instruction is counted by its opcode below.
            if !op.starts_with('@') {
                continue;
            }
        }
        let op = if op.starts_with('@') { line.split_whitespace().nth(1).unwrap_or("") } else { op };
        if op.contains(".ftz") {
            return Err(format!("line {}: flush-to-zero the kernel IR does not ask for: `{line}`", n + 1));
        }
        if matches!(op, "add.f32" | "sub.f32" | "mul.f32") {
            return Err(format!("line {}: an f32 op ptxas may contract (no `.rn`): `{line}`", n + 1));
        }
        if matches!(op, "div.approx.f32" | "div.full.f32" | "sqrt.approx.f32") {
            return Err(format!("line {}: an approximate division or square root: `{line}`", n + 1));
        }
        if op.starts_with("mad.") && op.ends_with("f32") {
            return Err(format!("line {}: a contracted multiply-add: `{line}`", n + 1));
        }
        let head = |p: &str| op == p || op.starts_with(&format!("{p}."));
        if head("bar.sync") || head("barrier.sync") || head("barrier.cta.sync") {
            c.barriers += 1;
        } else if head("mma.sync") {
            c.mma += 1;
        } else if head("ldmatrix") {
            c.ldmatrix += 1;
        } else if op.starts_with("cp.async.ca.") || op.starts_with("cp.async.cg.") {
            c.cp_async += 1;
        } else if head("atom") || head("red") {
            c.atomics += 1;
        } else if head("fence") || head("membar") {
            c.fences += 1;
        } else if head("fma") && op.ends_with(".f32") {
            c.fma += 1;
        } else if head("cvt") && op.contains("x2") {
            c.packs += 1;
        } else if head("ld") || head("st") {
            let store = op.starts_with("st");
            let space = op.split('.').nth(1).unwrap_or("");
            match (space, store) {
                ("global", false) => c.global_load_bytes += access_bytes(op),
                ("global", true) => c.global_store_bytes += access_bytes(op),
                ("shared", false) => c.shared_load_bytes += access_bytes(op),
                ("shared", true) => c.shared_store_bytes += access_bytes(op),
                ("param" | "local", _) => {}
                _ => return Err(format!("line {}: an access through a generic address: `{line}`", n + 1)),
            }
        }
    }
    Ok(c)
}

/// Checks `ptx` against `k`; what differs, if anything. Memory accesses, `fma` and packed
/// conversions may only shrink (LLVM merges identical ones and deletes provably dead ones);
/// barriers, `mma`, `ldmatrix`, `cp.async`, atomics and fences must match.
pub fn structure(k: &Kernel, ptx: &str) -> Result<(), String> {
    let want = ir_counts(k);
    let got = ptx_counts(ptx, k.local_bytes > 0)?;
    let fewer_ok = got.global_load_bytes <= want.global_load_bytes
        && got.shared_load_bytes <= want.shared_load_bytes
        && got.global_store_bytes <= want.global_store_bytes
        && got.shared_store_bytes <= want.shared_store_bytes
        && (got.global_store_bytes > 0) == (want.global_store_bytes > 0)
        && got.fma <= want.fma
        && got.packs <= want.packs;
    let same_rest = Counts {
        global_load_bytes: want.global_load_bytes,
        shared_load_bytes: want.shared_load_bytes,
        global_store_bytes: want.global_store_bytes,
        shared_store_bytes: want.shared_store_bytes,
        fma: want.fma,
        packs: want.packs,
        ..got.clone()
    } == want;
    let loads_ok = fewer_ok;
    if !(loads_ok && same_rest) {
        return Err(format!("kernel IR {want:?}, PTX {got:?}"));
    }
    Ok(())
}
