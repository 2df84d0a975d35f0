//! The kernel verifier: every register declared and of the type its instruction needs, every
//! parameter index in range, vector widths and launch bounds legal, and only what this
//! increment of the simulator executes (anything else is refused by name, never run wrong).
//! Errors are located by the statement path (`body[3].then[1]`) and the instruction.

use std::fmt;

use crate::ir::{
    BinOp, CacheHint, Inst, Kernel, LoopKind, MmaShape, Operand, Param, Reg, ShflMode, Space, Stmt, Ty, UnOp, VoteMode,
};

/// One verifier error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelVerifyError {
    /// The kernel.
    pub kernel: String,
    /// Where: the statement path (`body[3].then[1]`), or `kernel` for declarations.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for KernelVerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel {}: {}: {}", self.kernel, self.at, self.message)
    }
}

impl std::error::Error for KernelVerifyError {}

/// Largest CTA the hardware takes.
pub const MAX_THREADS: u32 = 1024;
/// Largest static shared memory per CTA (48 KiB without the opt-in).
pub const MAX_STATIC_SHARED: u32 = 48 << 10;

/// Verifies `k`; every error found.
pub fn verify(k: &Kernel) -> Result<(), Vec<KernelVerifyError>> {
    let mut v = Verifier { k, errors: Vec::new() };
    if k.max_threads == 0 || k.max_threads > MAX_THREADS {
        v.err("kernel", format!("launch bound {} is outside 1..={MAX_THREADS}", k.max_threads));
    }
    if k.shared_bytes > MAX_STATIC_SHARED {
        v.err("kernel", format!("{} bytes of static shared memory, above {MAX_STATIC_SHARED}", k.shared_bytes));
    }
    for p in &k.params {
        match p {
            Param::Buffer { name, align, .. } if !align.is_power_of_two() || *align > 256 => {
                v.err("kernel", format!("buffer `{name}`: alignment {align} is not a power of two up to 256"));
            }
            Param::Scalar { name, ty: Ty::Pred } => v.err("kernel", format!("scalar `{name}` cannot be a predicate")),
            _ => {}
        }
    }
    v.block(&k.body, "body");
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(v.errors)
    }
}

struct Verifier<'k> {
    k: &'k Kernel,
    errors: Vec<KernelVerifyError>,
}

impl Verifier<'_> {
    fn err(&mut self, at: &str, message: String) {
        self.errors.push(KernelVerifyError { kernel: self.k.name.clone(), at: at.into(), message });
    }

    fn block(&mut self, stmts: &[Stmt], path: &str) {
        for (i, s) in stmts.iter().enumerate() {
            let at = format!("{path}[{i}]");
            match s {
                Stmt::Inst(inst) => {
                    if let Err(m) = self.inst(inst) {
                        self.err(&format!("{at} ({})", inst_name(inst)), m);
                    }
                }
                Stmt::If { cond, then, otherwise } => {
                    if let Err(m) = self.reg(*cond, Ty::Pred) {
                        self.err(&at, format!("if: {m}"));
                    }
                    self.block(then, &format!("{at}.then"));
                    self.block(otherwise, &format!("{at}.else"));
                }
                Stmt::Loop { kind, body } => {
                    let r = match kind {
                        LoopKind::Count { index, count } => {
                            self.reg(*index, Ty::U32).and_then(|()| self.operand(*count, Ty::U32))
                        }
                        LoopKind::While { cond } => self.reg(*cond, Ty::Pred),
                    };
                    if let Err(m) = r {
                        self.err(&at, format!("loop: {m}"));
                    }
                    self.block(body, &format!("{at}.body"));
                }
            }
        }
    }

    fn reg(&self, r: Reg, want: Ty) -> Result<(), String> {
        match self.k.ty(r) {
            None => Err(format!("%r{} is not declared", r.0)),
            Some(t) if same_bits(t, want) => Ok(()),
            Some(t) => Err(format!("%r{} is {}, expected {}", r.0, t.name(), want.name())),
        }
    }

    fn operand(&self, o: Operand, want: Ty) -> Result<(), String> {
        match o {
            Operand::Reg(r) => self.reg(r, want),
            Operand::Imm(_) => Ok(()),
        }
    }

    fn inst(&self, inst: &Inst) -> Result<(), String> {
        match inst {
            Inst::Mov { dst, src } => {
                let t = self.k.ty(*dst).ok_or_else(|| format!("%r{} is not declared", dst.0))?;
                self.operand(*src, t)
            }
            Inst::Special { dst, .. } => self.reg(*dst, Ty::U32),
            Inst::Param { dst, index } => match self.k.params.get(*index) {
                None => Err(format!("parameter {index} does not exist ({} declared)", self.k.params.len())),
                Some(Param::Buffer { .. }) => self.reg(*dst, Ty::U64),
                Some(Param::Scalar { ty, .. }) => self.reg(*dst, *ty),
            },
            Inst::Unary { op, ty, dst, a } => {
                match op {
                    UnOp::Not if !ty.is_int() && *ty != Ty::Pred => {
                        return Err(format!("not.{} is not an op", ty.name()))
                    }
                    UnOp::Neg | UnOp::Abs if !(*ty == Ty::F32 || matches!(ty, Ty::S32 | Ty::S64)) => {
                        return Err(format!("{op:?} at {} is not supported", ty.name()))
                    }
                    UnOp::Sqrt if *ty != Ty::F32 => return Err(format!("sqrt.{} is not an op (f32 only)", ty.name())),
                    _ => {}
                }
                self.reg(*dst, *ty)?;
                self.operand(*a, *ty)
            }
            Inst::Binary { op, ty, dst, a, b } => {
                let float_ok =
                    matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Min | BinOp::Max);
                let bits_only = matches!(op, BinOp::And | BinOp::Or | BinOp::Xor);
                let ok = match ty {
                    Ty::F32 => float_ok,
                    Ty::Pred => bits_only,
                    t if t.is_int() => true,
                    _ => false,
                };
                if !ok {
                    return Err(format!(
                        "{op:?} at {} is not supported (float arithmetic is f32 in this version of the simulator)",
                        ty.name()
                    ));
                }
                self.reg(*dst, *ty)?;
                self.operand(*a, *ty)?;
                let bty = if matches!(op, BinOp::Shl | BinOp::Shr) { Ty::U32 } else { *ty };
                self.operand(*b, bty)
            }
            Inst::Fma { ty, dst, a, b, c } => {
                if !(*ty == Ty::F32 || ty.is_int()) {
                    return Err(format!("fma at {} is not supported", ty.name()));
                }
                self.reg(*dst, *ty)?;
                self.operand(*a, *ty)?;
                self.operand(*b, *ty)?;
                self.operand(*c, *ty)
            }
            Inst::Setp { ty, dst, a, b, .. } => {
                if !(*ty == Ty::F32 || ty.is_int()) {
                    return Err(format!("setp at {} is not supported", ty.name()));
                }
                self.reg(*dst, Ty::Pred)?;
                self.operand(*a, *ty)?;
                self.operand(*b, *ty)
            }
            Inst::Selp { ty, dst, a, b, p } => {
                self.reg(*p, Ty::Pred)?;
                self.reg(*dst, *ty)?;
                self.operand(*a, *ty)?;
                self.operand(*b, *ty)
            }
            Inst::Cvt { to, from, rounding, satfinite, dst, src } => {
                use crate::ir::Rounding;
                use crate::sim::ConvertKind;
                let Some(kind) = crate::sim::convert_kind(*to, *from) else {
                    return Err(format!("cvt.{}.{} is not supported", to.name(), from.name()));
                };
                // The rounding each conversion takes (what the simulator computes); the fp8
                // unpack is written `cvt.rn` in PTX, with nothing to round.
                let (want, sat_ok) = match kind {
                    ConvertKind::IntInt | ConvertKind::NarrowF32 => (None, false),
                    ConvertKind::IntF32 | ConvertKind::Fp8x2F16x2 => (Some(Rounding::Rn), false),
                    ConvertKind::F32Int => (Some(Rounding::Rz), false),
                    ConvertKind::F32Narrow => (Some(Rounding::Rn), true),
                };
                let implied_rn = want == Some(Rounding::Rn) && rounding.is_none() && kind != ConvertKind::Fp8x2F16x2;
                if *rounding != want && !implied_rn {
                    return Err(format!("cvt.{}.{} takes rounding {want:?}, not {rounding:?}", to.name(), from.name()));
                }
                if *satfinite && !sat_ok {
                    return Err(format!("cvt.{}.{} has no .satfinite", to.name(), from.name()));
                }
                self.reg(*dst, *to)?;
                self.operand(*src, *from)
            }
            Inst::CvtPack { to, satfinite, dst, a, b } => {
                match to {
                    Ty::E4m3x2 | Ty::E5m2x2 if !*satfinite => {
                        return Err(format!("cvt.rn.{}.f32 needs .satfinite", to.name()))
                    }
                    Ty::E4m3x2 | Ty::E5m2x2 | Ty::F16x2 | Ty::Bf16x2 => {}
                    _ => return Err(format!("cvt.rn.{}.f32 of two sources is not a packing conversion", to.name())),
                }
                self.reg(*dst, *to)?;
                self.operand(*a, Ty::F32)?;
                self.operand(*b, Ty::F32)
            }
            Inst::Mufu { dst, a, .. } => {
                self.reg(*dst, Ty::F32)?;
                self.operand(*a, Ty::F32)
            }
            Inst::Ld { space, ty, dst, addr, nc, hint, .. } => {
                vector(dst.len(), *ty)?;
                cache_hint(*space, *hint, Some(*nc))?;
                for r in dst {
                    self.reg(*r, *ty)?;
                }
                self.operand(*addr, Ty::U64)
            }
            Inst::St { space, ty, src, addr, hint, .. } => {
                vector(src.len(), *ty)?;
                cache_hint(*space, *hint, None)?;
                for o in src {
                    self.operand(*o, *ty)?;
                }
                self.operand(*addr, Ty::U64)
            }
            Inst::Shfl { mode, dst, a, b, c, .. } => {
                let whole_warp = match mode {
                    ShflMode::Up => Operand::Imm(0),
                    _ => Operand::Imm(31),
                };
                if *c != whole_warp {
                    return Err("only whole-warp shuffles (clamp 31, or 0 for `up`) are supported".into());
                }
                self.reg(*dst, Ty::B32)?;
                self.operand(*a, Ty::B32)?;
                self.operand(*b, Ty::U32)
            }
            Inst::Bar | Inst::BarWarp { .. } => Ok(()),
            Inst::Ldmatrix { dst, addr, .. } => {
                if !matches!(dst.len(), 1 | 2 | 4) {
                    return Err(format!("ldmatrix of {} matrices (1, 2 or 4)", dst.len()));
                }
                for r in dst {
                    self.reg(*r, Ty::B32)?;
                }
                self.operand(*addr, Ty::U64)
            }
            Inst::Mma { shape, atype, btype, d, a, b, c } => {
                // PTX pairs 16-bit inputs with k16 (both of one type) and fp8 with k32 (e4m3
                // and e5m2 may mix).
                let same_width = atype.bits() == btype.bits();
                let both_16 = atype == btype;
                if atype.shape() != *shape || !same_width || (atype.bits() == 16 && !both_16) {
                    return Err(format!(
                        "mma.{}.{}.{} is not an mma this IR has ({} takes {})",
                        shape.name(),
                        atype.name(),
                        btype.name(),
                        shape.name(),
                        match shape {
                            MmaShape::M16n8k16 => "bf16.bf16 or f16.f16",
                            MmaShape::M16n8k32 => "e4m3 or e5m2 for each of A and B",
                        }
                    ));
                }
                for r in a.iter().chain(b) {
                    self.reg(*r, Ty::B32)?;
                }
                for r in d {
                    self.reg(*r, Ty::F32)?;
                }
                for o in c {
                    self.operand(*o, Ty::F32)?;
                }
                Ok(())
            }
            Inst::Atom { space, op, ty, dst, addr, src, .. } => {
                let ok = match op {
                    BinOp::Add => matches!(ty, Ty::U32 | Ty::S32 | Ty::U64 | Ty::F32),
                    BinOp::Max => matches!(ty, Ty::U32 | Ty::S32 | Ty::U64),
                    _ => false,
                };
                if !ok {
                    return Err(format!("atom.{:?}.{} is not supported", op, ty.name()).to_lowercase());
                }
                if !matches!(space, Space::Global | Space::Shared) {
                    return Err(format!("atomics in the {} space are not supported", space.name()));
                }
                if let Some(d) = dst {
                    self.reg(*d, *ty)?;
                }
                self.operand(*src, *ty)?;
                self.operand(*addr, Ty::U64)
            }
            Inst::CpAsync { cg, size, dst, src, src_size, .. } => {
                let ok = if *cg { *size == 16 } else { matches!(size, 4 | 8 | 16) };
                if !ok {
                    return Err(format!(
                        "cp.async.{} copies {}, not {size} bytes",
                        if *cg { "cg" } else { "ca" },
                        if *cg { "16" } else { "4, 8 or 16" }
                    ));
                }
                if let Some(Operand::Imm(n)) = src_size {
                    if *n > u64::from(*size) {
                        return Err(format!("a source size of {n} bytes is above the copy's {size}"));
                    }
                }
                if let Some(o) = src_size {
                    self.operand(*o, Ty::U32)?;
                }
                self.operand(*dst, Ty::U64)?;
                self.operand(*src, Ty::U64)
            }
            Inst::CpAsyncCommit | Inst::CpAsyncWait { .. } | Inst::CpAsyncWaitAll => Ok(()),
            Inst::GridDepWait | Inst::GridDepLaunchDependents | Inst::Fence => Ok(()),
            Inst::Prefetch { addr, .. } => self.operand(*addr, Ty::U64),
            Inst::Vote { mode, dst, a, .. } => {
                self.reg(*dst, if *mode == VoteMode::Ballot { Ty::B32 } else { Ty::Pred })?;
                self.reg(*a, Ty::Pred)
            }
            Inst::Redux { op, ty, dst, a, .. } => {
                let ok = match op {
                    BinOp::Add | BinOp::Min | BinOp::Max => matches!(ty, Ty::U32 | Ty::S32),
                    BinOp::And | BinOp::Or | BinOp::Xor => *ty == Ty::B32,
                    _ => false,
                };
                if !ok {
                    return Err(format!("redux.sync.{:?}.{} is not an op", op, ty.name()).to_lowercase());
                }
                self.reg(*dst, *ty)?;
                self.operand(*a, *ty)
            }
        }
    }
}

/// Registers of equal width and kind interchange where PTX allows it: bits with anything of
/// their width.
fn same_bits(have: Ty, want: Ty) -> bool {
    if have == want {
        return true;
    }
    let bits = |t: Ty| matches!(t, Ty::B16 | Ty::B32 | Ty::B64);
    have != Ty::Pred && want != Ty::Pred && (bits(have) || bits(want)) && have.bits() == want.bits()
}

fn vector(n: usize, ty: Ty) -> Result<(), String> {
    if !matches!(n, 1 | 2 | 4) {
        return Err(format!("a vector of {n} values (1, 2 or 4)"));
    }
    if ty == Ty::Pred {
        return Err("predicates are not loaded or stored".into());
    }
    if n as u32 * ty.bytes() > 16 {
        return Err(format!("a vector of {n} × {} is wider than 16 bytes", ty.name()));
    }
    Ok(())
}

/// Whether a load (`load`: `Some(nc)`) or a store (`None`) in `space` takes `hint`: only global
/// accesses take one (strict: PTX also allows cache operators on local memory, which no kernel
/// here needs), loads the load operators, stores the store operators, both the L1 eviction
/// priorities, and `ld.global.nc` only `.ca`, `.cg`, `.cs` and the eviction priorities.
fn cache_hint(space: Space, hint: Option<CacheHint>, load: Option<bool>) -> Result<(), String> {
    let Some(h) = hint else { return Ok(()) };
    let what = if load.is_some() { "load" } else { "store" };
    if space != Space::Global {
        return Err(format!(
            "cache hint `.{}` on a {} {what}: only global loads and stores take a cache hint",
            h.name(),
            space.name()
        ));
    }
    match load {
        Some(_) if !h.on_load() => {
            Err(format!("`.{}` is a store cache operator; a load takes .ca, .cg, .cs, .lu or .cv", h.name()))
        }
        Some(true) if !h.on_nc_load() => Err(format!(
            "`.{}` on a .nc load: ld.global.nc takes .ca, .cg, .cs or an L1 eviction priority{}",
            h.name(),
            if h == CacheHint::Cv { " (a volatile load of data read-only for the kernel makes no sense)" } else { "" }
        )),
        None if !h.on_store() => {
            Err(format!("`.{}` is a load cache operator; a store takes .wb, .cg, .cs or .wt", h.name()))
        }
        _ => Ok(()),
    }
}

/// The modifiers of a load between its space and its vector width, in PTX's order: a cache
/// operator before `.nc` (`.cg.nc`), an eviction priority after it (`.nc.L1::evict_last`).
pub(crate) fn ld_modifiers(nc: bool, hint: Option<CacheHint>) -> String {
    let nc = if nc { ".nc" } else { "" };
    match hint {
        None => nc.into(),
        Some(h) if h.is_eviction_priority() => format!("{nc}.{}", h.name()),
        Some(h) => format!(".{}{nc}", h.name()),
    }
}

/// A short name of an instruction for messages (`ld.global.v4.f32`); loads and stores with
/// their cache hint (`ld.global.cg.nc.v4.f32`, `st.global.L1::no_allocate.f32`).
pub fn inst_name(i: &Inst) -> String {
    let v = |n: usize| if n > 1 { format!(".v{n}") } else { String::new() };
    match i {
        Inst::Mov { .. } => "mov".into(),
        Inst::Special { .. } => "mov.special".into(),
        Inst::Param { .. } => "ld.param".into(),
        Inst::Unary { op, ty, .. } => format!("{}.{}", format!("{op:?}").to_lowercase(), ty.name()),
        Inst::Binary { op, ty, .. } => format!("{}.{}", format!("{op:?}").to_lowercase(), ty.name()),
        Inst::Fma { ty, .. } => format!("fma.{}", ty.name()),
        Inst::Setp { cmp, ty, .. } => format!("setp.{}.{}", format!("{cmp:?}").to_lowercase(), ty.name()),
        Inst::Selp { ty, .. } => format!("selp.{}", ty.name()),
        Inst::Cvt { to, from, .. } => format!("cvt.{}.{}", to.name(), from.name()),
        Inst::CvtPack { to, .. } => format!("cvt.{}.f32", to.name()),
        Inst::Mufu { op, .. } => format!("{}.approx.f32", format!("{op:?}").to_lowercase()),
        Inst::Ld { space, ty, dst, nc, hint, .. } => {
            format!("ld.{}{}{}.{}", space.name(), ld_modifiers(*nc, *hint), v(dst.len()), ty.name())
        }
        Inst::St { space, ty, src, hint, .. } => {
            let h = hint.map_or(String::new(), |h| format!(".{}", h.name()));
            format!("st.{}{h}{}.{}", space.name(), v(src.len()), ty.name())
        }
        Inst::Shfl { mode, .. } => format!("shfl.sync.{}.b32", format!("{mode:?}").to_lowercase()),
        Inst::Bar => "bar.sync".into(),
        Inst::BarWarp { .. } => "bar.warp.sync".into(),
        Inst::Ldmatrix { trans, dst, .. } => {
            format!("ldmatrix.sync.aligned.m8n8.x{}{}.shared.b16", dst.len(), if *trans { ".trans" } else { "" })
        }
        Inst::Mma { shape, atype, btype, .. } => {
            format!("mma.sync.aligned.{}.row.col.f32.{}.{}.f32", shape.name(), atype.name(), btype.name())
        }
        Inst::Atom { space, op, ty, dst, .. } => format!(
            "{}.{}.{}.{}",
            if dst.is_some() { "atom" } else { "red" },
            space.name(),
            format!("{op:?}").to_lowercase(),
            ty.name()
        ),
        Inst::Vote { mode, .. } => {
            format!("vote.sync.{}.{}", mode.name(), if *mode == VoteMode::Ballot { "b32" } else { "pred" })
        }
        Inst::CpAsync { cg, .. } => format!("cp.async.{}.shared.global", if *cg { "cg" } else { "ca" }),
        Inst::CpAsyncCommit => "cp.async.commit_group".into(),
        Inst::CpAsyncWait { .. } => "cp.async.wait_group".into(),
        Inst::CpAsyncWaitAll => "cp.async.wait_all".into(),
        Inst::GridDepWait => "griddepcontrol.wait".into(),
        Inst::GridDepLaunchDependents => "griddepcontrol.launch_dependents".into(),
        Inst::Fence => "fence.acq_rel.gpu".into(),
        Inst::Prefetch { .. } => "prefetch.global.L2::evict_last".into(),
        Inst::Redux { op, ty, .. } => format!("redux.sync.{}.{}", format!("{op:?}").to_lowercase(), ty.name()),
    }
}
