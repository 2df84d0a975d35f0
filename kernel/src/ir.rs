//! The kernel IR: what one thread of a launch executes, PTX-shaped but structured.
//!
//! A [`Kernel`] declares its ABI ([`Param`]: buffers with element type, alignment and access;
//! scalars), its launch bound (most threads per CTA), its static shared memory, a table of
//! typed virtual registers ([`Ty`] per [`Reg`]) and a body of [`Stmt`]s. Control flow is
//! structured — `if`/`else`, loops with a trip count, loops with a condition — so that the
//! point where divergent threads of a warp reconverge is always the end of the construct (the
//! SIMT model the simulator implements and that PTX codegen emits as branches to that point).
//!
//! Operands name registers or immediates; an immediate holds the raw bits of a value of the
//! instruction's type (`f32` 1.0 is `0x3f800000`), so no value is ever rounded on its way
//! through the IR. Instructions never imply a fused operation: `fma` is its own instruction.

use lathe_numerics::DType;
use serde::{Deserialize, Serialize};

/// The type of a virtual register (and of an instruction's operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ty {
    /// A predicate (one bit per thread).
    Pred,
    /// 16 untyped bits.
    B16,
    /// 32 untyped bits.
    B32,
    /// 64 untyped bits.
    B64,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Signed 32-bit integer.
    S32,
    /// Signed 64-bit integer.
    S64,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// IEEE single.
    F32,
    /// Two halves in 32 bits (element 0 in the low half).
    F16x2,
    /// Two bfloat16 in 32 bits (element 0 in the low half).
    Bf16x2,
    /// Two fp8 e4m3 in 16 bits.
    E4m3x2,
    /// Two fp8 e5m2 in 16 bits.
    E5m2x2,
}

impl Ty {
    /// Every type, for tables and tests.
    pub const ALL: [Ty; 15] = [
        Ty::Pred,
        Ty::B16,
        Ty::B32,
        Ty::B64,
        Ty::U32,
        Ty::U64,
        Ty::S32,
        Ty::S64,
        Ty::F16,
        Ty::Bf16,
        Ty::F32,
        Ty::F16x2,
        Ty::Bf16x2,
        Ty::E4m3x2,
        Ty::E5m2x2,
    ];

    /// Width in bits (a predicate counts as 1).
    pub fn bits(self) -> u32 {
        match self {
            Ty::Pred => 1,
            Ty::B16 | Ty::F16 | Ty::Bf16 | Ty::E4m3x2 | Ty::E5m2x2 => 16,
            Ty::B32 | Ty::U32 | Ty::S32 | Ty::F32 | Ty::F16x2 | Ty::Bf16x2 => 32,
            Ty::B64 | Ty::U64 | Ty::S64 => 64,
        }
    }

    /// Width in bytes in memory (a predicate has none).
    pub fn bytes(self) -> u32 {
        self.bits() / 8
    }

    /// The PTX spelling (`f32`, `bf16x2`, `e4m3x2`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Ty::Pred => "pred",
            Ty::B16 => "b16",
            Ty::B32 => "b32",
            Ty::B64 => "b64",
            Ty::U32 => "u32",
            Ty::U64 => "u64",
            Ty::S32 => "s32",
            Ty::S64 => "s64",
            Ty::F16 => "f16",
            Ty::Bf16 => "bf16",
            Ty::F32 => "f32",
            Ty::F16x2 => "f16x2",
            Ty::Bf16x2 => "bf16x2",
            Ty::E4m3x2 => "e4m3x2",
            Ty::E5m2x2 => "e5m2x2",
        }
    }

    /// The type of a PTX spelling.
    pub fn from_name(name: &str) -> Option<Ty> {
        Ty::ALL.into_iter().find(|t| t.name() == name)
    }

    /// A scalar float (f16, bf16, f32).
    pub fn is_float(self) -> bool {
        matches!(self, Ty::F16 | Ty::Bf16 | Ty::F32)
    }

    /// A packed pair of narrow floats.
    pub fn is_packed(self) -> bool {
        matches!(self, Ty::F16x2 | Ty::Bf16x2 | Ty::E4m3x2 | Ty::E5m2x2)
    }

    /// An integer (signed or unsigned) or untyped bits.
    pub fn is_int(self) -> bool {
        matches!(self, Ty::B16 | Ty::B32 | Ty::B64 | Ty::U32 | Ty::U64 | Ty::S32 | Ty::S64)
    }

    /// A signed integer.
    pub fn is_signed(self) -> bool {
        matches!(self, Ty::S32 | Ty::S64)
    }
}

/// A virtual register: an index into [`Kernel::regs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reg(pub u32);

/// An instruction operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operand {
    /// A register.
    Reg(Reg),
    /// The raw bits of a value of the instruction's type (low bits used).
    Imm(u64),
}

impl From<Reg> for Operand {
    fn from(r: Reg) -> Self {
        Operand::Reg(r)
    }
}

/// A state space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Space {
    /// Device memory: the kernel's buffers.
    Global,
    /// Per-CTA on-chip memory (the kernel's static shared bytes).
    Shared,
    /// Per-thread private memory.
    Local,
}

impl Space {
    /// The PTX spelling.
    pub fn name(self) -> &'static str {
        match self {
            Space::Global => "global",
            Space::Shared => "shared",
            Space::Local => "local",
        }
    }
}

/// A cache hint of a global load or store: one PTX cache operator (`.ca .cg .cs .lu .cv` on
/// loads, `.wb .cg .cs .wt` on stores) or one L1 eviction priority (`.L1::evict_first`,
/// `.L1::evict_last`, `.L1::no_allocate` on either; PTX ISA 7.4, sm_70). PTX spells the two
/// kinds in separate forms of `ld`/`st` (`ld{.ss}{.cop}...` and
/// `ld{.ss}{.level1::eviction_priority}...`), so an instruction carries at most one of all of
/// them: one enum, held as `Option` (`None` is the default operator, `.ca` or `.wb`, printed as
/// nothing). Only global accesses take one (see the verifier). A hint changes where the bytes
/// are cached, never their value; the simulator models no caches and ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CacheHint {
    /// `.ca` (loads): cache at all levels, L1 and L2, normal eviction (the default load).
    Ca,
    /// `.cg` (loads and stores): cache at the global level, L2 and below, not L1.
    Cg,
    /// `.cs` (loads and stores): streaming, likely accessed once: allocated evict-first in L1
    /// and L2 so it does not displace what is reused (weights a decode GEMV reads once).
    Cs,
    /// `.lu` (loads): last use: the line is not needed again (on a global address PTX performs
    /// it as `.cs`).
    Lu,
    /// `.cv` (loads): volatile: do not cache, fetch again on every load (a matching L2 line of
    /// system memory is discarded).
    Cv,
    /// `.wb` (stores): write back at all coherent levels (the default store).
    Wb,
    /// `.wt` (stores): write through the L2 to system memory.
    Wt,
    /// `.L1::evict_first` (loads and stores): the L1 line is among the first evicted.
    L1EvictFirst,
    /// `.L1::evict_last` (loads and stores): the L1 line is among the last evicted (data reused
    /// within the CTA, a KV-cache block read by every head of a group).
    L1EvictLast,
    /// `.L1::no_allocate` (loads and stores): no L1 line is allocated.
    L1NoAllocate,
}

impl CacheHint {
    /// Every hint, for tables and tests.
    pub const ALL: [CacheHint; 10] = [
        CacheHint::Ca,
        CacheHint::Cg,
        CacheHint::Cs,
        CacheHint::Lu,
        CacheHint::Cv,
        CacheHint::Wb,
        CacheHint::Wt,
        CacheHint::L1EvictFirst,
        CacheHint::L1EvictLast,
        CacheHint::L1NoAllocate,
    ];

    /// The PTX spelling without its dot (`cg`, `L1::no_allocate`).
    pub fn name(self) -> &'static str {
        match self {
            CacheHint::Ca => "ca",
            CacheHint::Cg => "cg",
            CacheHint::Cs => "cs",
            CacheHint::Lu => "lu",
            CacheHint::Cv => "cv",
            CacheHint::Wb => "wb",
            CacheHint::Wt => "wt",
            CacheHint::L1EvictFirst => "L1::evict_first",
            CacheHint::L1EvictLast => "L1::evict_last",
            CacheHint::L1NoAllocate => "L1::no_allocate",
        }
    }

    /// The hint of a PTX spelling (without its dot).
    pub fn from_name(name: &str) -> Option<CacheHint> {
        CacheHint::ALL.into_iter().find(|h| h.name() == name)
    }

    /// An L1 eviction priority (PTX ISA 7.4, sm_70), not a cache operator.
    pub fn is_eviction_priority(self) -> bool {
        matches!(self, CacheHint::L1EvictFirst | CacheHint::L1EvictLast | CacheHint::L1NoAllocate)
    }

    /// Legal on a load: `.ca .cg .cs .lu .cv` and the eviction priorities.
    pub fn on_load(self) -> bool {
        !matches!(self, CacheHint::Wb | CacheHint::Wt)
    }

    /// Legal on a store: `.wb .cg .cs .wt` and the eviction priorities.
    pub fn on_store(self) -> bool {
        !matches!(self, CacheHint::Ca | CacheHint::Lu | CacheHint::Cv)
    }

    /// Legal on a `.nc` load: the cache operators `.ca .cg .cs` (PTX spells them before `.nc`,
    /// `ld.global.cg.nc`) and the eviction priorities (after it, `ld.global.nc.L1::evict_last`).
    pub fn on_nc_load(self) -> bool {
        !matches!(self, CacheHint::Lu | CacheHint::Cv | CacheHint::Wb | CacheHint::Wt)
    }
}

/// The axis of a three-dimensional special register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Axis {
    /// `.x`
    X,
    /// `.y`
    Y,
    /// `.z`
    Z,
}

impl Axis {
    /// 0, 1 or 2.
    pub fn index(self) -> usize {
        match self {
            Axis::X => 0,
            Axis::Y => 1,
            Axis::Z => 2,
        }
    }
}

/// A special register (read-only, `u32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Special {
    /// `%tid`: the thread's index in its CTA.
    Tid(Axis),
    /// `%ntid`: the CTA's shape.
    Ntid(Axis),
    /// `%ctaid`: the CTA's index in the grid.
    Ctaid(Axis),
    /// `%nctaid`: the grid's shape.
    Nctaid(Axis),
    /// `%laneid`: the thread's lane in its warp.
    LaneId,
}

/// An integer or float binary operation (the operands and the result have the instruction's
/// type; shifts take their amount as `u32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinOp {
    /// `add` (floats: `.rn`).
    Add,
    /// `sub` (floats: `.rn`).
    Sub,
    /// `mul` (integers: `.lo`; floats: `.rn`).
    Mul,
    /// `div` (integers only: division by zero is an error in the simulator).
    Div,
    /// `rem` (integers only).
    Rem,
    /// `min` (floats: NaN-ignoring, as PTX).
    Min,
    /// `max` (floats: NaN-ignoring, as PTX).
    Max,
    /// `and` (integers, bits, predicates).
    And,
    /// `or`.
    Or,
    /// `xor`.
    Xor,
    /// `shl` (amount clamped: shifting by the width or more gives 0).
    Shl,
    /// `shr` (arithmetic for signed types).
    Shr,
}

/// A comparison of `setp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cmp {
    /// `eq` (floats: ordered).
    Eq,
    /// `ne` (floats: ordered).
    Ne,
    /// `lt`.
    Lt,
    /// `le`.
    Le,
    /// `gt`.
    Gt,
    /// `ge`.
    Ge,
}

/// A unary operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnOp {
    /// `neg`.
    Neg,
    /// `abs`.
    Abs,
    /// `not` (bits, predicates).
    Not,
    /// `sqrt.rn` (f32): the correctly rounded square root.
    Sqrt,
}

/// A multi-function-unit approximation (f32 only), with the error the PTX ISA documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mufu {
    /// `ex2.approx.ftz.f32`: 2^x, max relative error 2^-22.
    Ex2,
    /// `rsqrt.approx.f32`: max relative error 2^-22.9.
    Rsqrt,
    /// `rcp.approx.f32`: max relative error 2^-23.
    Rcp,
    /// `tanh.approx.f32`: max relative error 2^-10.987.
    Tanh,
}

/// The rounding of a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rounding {
    /// To nearest, ties to even (`.rn`).
    Rn,
    /// Toward zero (`.rz`); float to integer conversions use `.rzi`.
    Rz,
}

/// How `shfl.sync` picks the source lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShflMode {
    /// From lane `b`.
    Idx,
    /// From lane `lane − b` (lanes below `b` keep their value).
    Up,
    /// From lane `lane + b` (lanes past the end keep their value).
    Down,
    /// From lane `lane ^ b`.
    Bfly,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Inst {
    /// `dst = src`.
    Mov { dst: Reg, src: Operand },
    /// `dst = %special` (u32).
    Special { dst: Reg, reg: Special },
    /// `dst = param[index]`: a scalar's value, or a buffer's global address (u64).
    Param { dst: Reg, index: usize },
    /// `dst = op a` at type `ty`.
    Unary { op: UnOp, ty: Ty, dst: Reg, a: Operand },
    /// `dst = a op b` at type `ty`.
    Binary { op: BinOp, ty: Ty, dst: Reg, a: Operand, b: Operand },
    /// `dst = a · b + c`: floats `fma.rn` (one rounding), integers `mad.lo`.
    Fma { ty: Ty, dst: Reg, a: Operand, b: Operand, c: Operand },
    /// `dst (pred) = a cmp b` at type `ty`.
    Setp { cmp: Cmp, ty: Ty, dst: Reg, a: Operand, b: Operand },
    /// `dst = p ? a : b` at type `ty`.
    Selp { ty: Ty, dst: Reg, a: Operand, b: Operand, p: Reg },
    /// `dst (to) = cvt src (from)`, with a rounding where the conversion rounds and
    /// `.satfinite` where asked. `cvt.rn.f16x2.{e4m3x2,e5m2x2}` unpacks two fp8 values (a
    /// 16-bit source) into an `f16x2`, exactly: the UPPER byte becomes the UPPER half, the
    /// inverse of the packing order of [`Inst::CvtPack`].
    Cvt { to: Ty, from: Ty, rounding: Option<Rounding>, satfinite: bool, dst: Reg, src: Operand },
    /// `dst (to) = cvt.rn[.satfinite].to.f32 a, b`: two f32 values rounded to nearest into one
    /// packed register (`f16x2`, `bf16x2`, `e4m3x2`, `e5m2x2`; the fp8 forms are always
    /// `.satfinite`). As the PTX ISA states, the FIRST source goes to the UPPER half.
    CvtPack { to: Ty, satfinite: bool, dst: Reg, a: Operand, b: Operand },
    /// `dst = mufu(a)` (f32).
    Mufu { op: Mufu, dst: Reg, a: Operand },
    /// A load of `dst.len()` (1, 2 or 4) consecutive values of type `ty` from `space` at
    /// `addr + offset` (aligned to the whole vector); `nc` marks a read-only global load, `hint`
    /// a cache operator or L1 eviction priority (global only; `None`: the default, `.ca`).
    Ld {
        space: Space,
        ty: Ty,
        dst: Vec<Reg>,
        addr: Operand,
        offset: i64,
        nc: bool,
        /// Absent from the serde form when `None`, so unhinted kernels serialize as before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<CacheHint>,
    },
    /// A store of `src.len()` (1, 2 or 4) values; `hint` as for [`Inst::Ld`] (`None`: `.wb`).
    St {
        space: Space,
        ty: Ty,
        src: Vec<Operand>,
        addr: Operand,
        offset: i64,
        /// Absent from the serde form when `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<CacheHint>,
    },
    /// `shfl.sync` of a 32-bit value among the lanes of `mask` (`b`: lane or delta; `c`: the
    /// segment clamp, 31 for a whole warp).
    Shfl { mode: ShflMode, dst: Reg, a: Operand, b: Operand, c: Operand, mask: u32 },
    /// `bar.sync 0` (aligned: every thread of the CTA executes the same barrier).
    Bar,
    /// `bar.warp.sync mask`: orders the memory accesses of the lanes of `mask`.
    BarWarp { mask: u32 },
    /// `ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}.shared.b16`: the whole warp loads
    /// `dst.len()` (1, 2 or 4) 8×8 matrices of b16 from shared memory. Lane `8·m + r` supplies
    /// the address (`addr + offset`, 16-byte aligned) of row `r` of matrix `m`; register `m` of
    /// lane `l` receives elements `2·(l%4)` and `2·(l%4)+1` of row `l/4` of matrix `m` (low half
    /// first), or with `trans` of column `l/4` (rows `2·(l%4)`, `2·(l%4)+1`). Registers are
    /// 32-bit.
    Ldmatrix { trans: bool, dst: Vec<Reg>, addr: Operand, offset: i64 },
    /// `mma.sync.aligned.{shape}.row.col.f32.{atype}.{btype}.f32`: the whole warp computes
    /// `D = A·B + C` on fragments (A 16×K row-major in four 32-bit registers per lane, B K×8
    /// column-major in two, C and D 16×8 f32 in four); see `docs/kernel.md` for the element
    /// layout and the accumulation order. `d` may name the registers of `c`.
    Mma { shape: MmaShape, atype: MmaElem, btype: MmaElem, d: [Reg; 4], a: [Reg; 4], b: [Reg; 2], c: [Operand; 4] },
    /// `atom.{space}.{op}.{ty}` (with `dst`, which receives the value before the update) or
    /// `red.{space}.{op}.{ty}` (without): one indivisible read-modify-write of the value of
    /// type `ty` at `addr + offset` (aligned to its size) with `src`. `op` is `Add` (u32, s32,
    /// u64, f32) or `Max` (u32, s32, u64); the space is global or shared. The lanes of a warp
    /// apply in lane order; an f32 add rounds to nearest even (global: subnormal inputs and
    /// results flushed to signed zero, as the hardware does), so its result depends on the order.
    Atom { space: Space, op: BinOp, ty: Ty, dst: Option<Reg>, addr: Operand, offset: i64, src: Operand },
    /// `vote.sync.{all,any}.pred` / `vote.sync.ballot.b32`: the predicate `a` of every lane of
    /// `mask` (which must be the lanes executing it) combined: all true, any true, or a word
    /// with bit `l` set where lane `l`'s is true.
    Vote { mode: VoteMode, dst: Reg, a: Reg, mask: u32 },
    /// `redux.sync.{op}.{ty}`: `a` of every lane of `mask` (the lanes executing it) reduced with
    /// `op` — `Add`, `Min`, `Max` at u32 or s32 (add wraps), `And`, `Or`, `Xor` at b32 — the
    /// result in every lane.
    Redux { op: BinOp, ty: Ty, dst: Reg, a: Operand, mask: u32 },
    /// `cp.async.{ca,cg}.shared.global [dst + dst_offset], [src + src_offset], size{, src_size}`:
    /// an asynchronous copy of `size` bytes (`cg`: 16; `ca`: 4, 8 or 16; both addresses aligned
    /// to it) from global to shared memory, of which only the first `src_size` (u32, at most
    /// `size`; absent: all) are read and the rest are zero. The copy joins the thread's open
    /// group; its bytes land when a wait completes that group, and touching them before is an
    /// error in the simulator.
    CpAsync {
        cg: bool,
        size: u32,
        dst: Operand,
        dst_offset: i64,
        src: Operand,
        src_offset: i64,
        src_size: Option<Operand>,
    },
    /// `cp.async.commit_group`: closes the thread's open group of copies.
    CpAsyncCommit,
    /// `cp.async.wait_group n`: waits until at most the `n` most recent committed groups of
    /// the thread are still in flight.
    CpAsyncWait { n: u32 },
    /// `cp.async.wait_all`: commits the open group and waits for every copy of the thread.
    CpAsyncWaitAll,
    /// `griddepcontrol.wait` (programmatic dependent launch, sm_90): waits until the
    /// prerequisite grids have completed and their memory is visible; a dependent launch
    /// touches its predecessor's buffers only after it.
    GridDepWait,
    /// `griddepcontrol.launch_dependents` (sm_90): lets the dependent grid be scheduled before
    /// this one completes (a hint; it orders no memory).
    GridDepLaunchDependents,
    /// `fence.acq_rel.gpu`: the thread's memory accesses before it are ordered before those
    /// after it for every thread of the GPU. Paired through an atomic on the same bytes, it is
    /// how CTAs of one launch hand each other data: a CTA writes, fences and updates a counter
    /// (release); the CTA whose update sees every other arrival fences and reads (acquire) —
    /// the split-KV attention's last-CTA combine. Nobody waits.
    Fence,
    /// `prefetch.global.L2::evict_last [addr + offset]`: asks for the line holding the global
    /// address to be brought into L2 and kept there (sm_80). A hint: it reads nothing into a
    /// register and orders nothing, so a dependent launch may prefetch its weights before its
    /// `griddepcontrol.wait`. The address must still lie in a buffer.
    Prefetch { addr: Operand, offset: i64 },
}

/// How `vote.sync` combines the lanes' predicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VoteMode {
    /// True where every lane's predicate is.
    All,
    /// True where some lane's predicate is.
    Any,
    /// The predicates as a 32-bit mask, bit per lane.
    Ballot,
}

impl VoteMode {
    /// The PTX spelling.
    pub fn name(self) -> &'static str {
        match self {
            VoteMode::All => "all",
            VoteMode::Any => "any",
            VoteMode::Ballot => "ballot",
        }
    }
}

/// The shape of an `mma.sync` (M×N×K).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MmaShape {
    /// `m16n8k16` (16-bit inputs).
    M16n8k16,
    /// `m16n8k32` (8-bit inputs).
    M16n8k32,
}

impl MmaShape {
    /// The PTX spelling.
    pub fn name(self) -> &'static str {
        match self {
            MmaShape::M16n8k16 => "m16n8k16",
            MmaShape::M16n8k32 => "m16n8k32",
        }
    }

    /// The reduction length K.
    pub fn k(self) -> usize {
        match self {
            MmaShape::M16n8k16 => 16,
            MmaShape::M16n8k32 => 32,
        }
    }
}

/// The element type of an `mma.sync` multiplicand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MmaElem {
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
    /// fp8 e4m3 (finite, NaN at S.1111.111).
    E4m3,
    /// fp8 e5m2.
    E5m2,
}

impl MmaElem {
    /// The PTX spelling.
    pub fn name(self) -> &'static str {
        match self {
            MmaElem::Bf16 => "bf16",
            MmaElem::F16 => "f16",
            MmaElem::E4m3 => "e4m3",
            MmaElem::E5m2 => "e5m2",
        }
    }

    /// Width in bits.
    pub fn bits(self) -> u32 {
        match self {
            MmaElem::Bf16 | MmaElem::F16 => 16,
            MmaElem::E4m3 | MmaElem::E5m2 => 8,
        }
    }

    /// The shape PTX pairs with this element type (the one this IR supports).
    pub fn shape(self) -> MmaShape {
        match self {
            MmaElem::Bf16 | MmaElem::F16 => MmaShape::M16n8k16,
            MmaElem::E4m3 | MmaElem::E5m2 => MmaShape::M16n8k32,
        }
    }
}

/// A loop's iteration rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LoopKind {
    /// `for index in 0..count` (a `u32` register set by the loop; `count` may differ per
    /// thread: the warp stays in the loop while any of its threads does).
    Count { index: Reg, count: Operand },
    /// Do the body, then again while predicate `cond` (per thread) holds.
    While { cond: Reg },
}

/// A statement: an instruction or a structured construct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Stmt {
    /// One instruction.
    Inst(Inst),
    /// `if (cond) then else`; divergent lanes reconverge after it.
    If { cond: Reg, then: Vec<Stmt>, otherwise: Vec<Stmt> },
    /// A loop; lanes that leave early wait for the others after it.
    Loop { kind: LoopKind, body: Vec<Stmt> },
}

/// Whether a kernel writes a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    /// Read only (eligible for `.nc` loads).
    ReadOnly,
    /// Written (and possibly read).
    Written,
}

/// A kernel parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Param {
    /// A global buffer: its address is the parameter's value.
    Buffer {
        /// Name (for messages and the launch's arguments).
        name: String,
        /// The element type the kernel reads it as.
        #[serde(with = "dtype_by_name")]
        elem: DType,
        /// Alignment of its base address in bytes (a power of two, at most 256).
        align: u32,
        /// Read only or written.
        access: Access,
    },
    /// A scalar passed by value.
    Scalar {
        /// Name.
        name: String,
        /// Its type (not a predicate).
        ty: Ty,
    },
}

impl Param {
    /// The parameter's name.
    pub fn name(&self) -> &str {
        match self {
            Param::Buffer { name, .. } | Param::Scalar { name, .. } => name,
        }
    }
}

/// A kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    /// Name (an identifier).
    pub name: String,
    /// Parameters, in ABI order.
    pub params: Vec<Param>,
    /// Most threads per CTA (`.maxntid`).
    pub max_threads: u32,
    /// Static shared memory per CTA in bytes.
    pub shared_bytes: u32,
    /// Private (local) memory per thread in bytes.
    pub local_bytes: u32,
    /// The type of each virtual register.
    pub regs: Vec<Ty>,
    /// The body.
    pub body: Vec<Stmt>,
}

impl Inst {
    /// Calls `f` with every register the instruction reads (not the ones it only writes).
    pub fn for_each_source(&self, mut f: impl FnMut(Reg)) {
        let mut op = |o: &Operand| {
            if let Operand::Reg(r) = o {
                f(*r);
            }
        };
        match self {
            Inst::Mov { src, .. } | Inst::Cvt { src, .. } => op(src),
            Inst::Unary { a, .. } | Inst::Mufu { a, .. } | Inst::Redux { a, .. } => op(a),
            Inst::Binary { a, b, .. } | Inst::Setp { a, b, .. } | Inst::CvtPack { a, b, .. } => {
                op(a);
                op(b);
            }
            Inst::Fma { a, b, c, .. } | Inst::Shfl { a, b, c, .. } => {
                op(a);
                op(b);
                op(c);
            }
            Inst::Selp { a, b, p, .. } => {
                op(a);
                op(b);
                op(&Operand::Reg(*p));
            }
            Inst::Ld { addr, .. } | Inst::Ldmatrix { addr, .. } | Inst::Prefetch { addr, .. } => op(addr),
            Inst::St { src, addr, .. } => {
                src.iter().for_each(&mut op);
                op(addr);
            }
            Inst::Mma { a, b, c, .. } => {
                a.iter().chain(b).for_each(|r| op(&Operand::Reg(*r)));
                c.iter().for_each(op);
            }
            Inst::Atom { addr, src, .. } => {
                op(addr);
                op(src);
            }
            Inst::Vote { a, .. } => op(&Operand::Reg(*a)),
            Inst::CpAsync { dst, src, src_size, .. } => {
                op(dst);
                op(src);
                src_size.iter().for_each(op);
            }
            Inst::Special { .. }
            | Inst::Param { .. }
            | Inst::Bar
            | Inst::BarWarp { .. }
            | Inst::CpAsyncCommit
            | Inst::CpAsyncWait { .. }
            | Inst::CpAsyncWaitAll
            | Inst::GridDepWait
            | Inst::GridDepLaunchDependents
            | Inst::Fence => {}
        }
    }
}

impl Kernel {
    /// The type of register `r` (`None` if it is not declared).
    pub fn ty(&self, r: Reg) -> Option<Ty> {
        self.regs.get(r.0 as usize).copied()
    }
}

/// A [`DType`] in the serde form by its name (`f32`, `bf16`, ...): `lathe-numerics` stays free
/// of serde.
mod dtype_by_name {
    use lathe_numerics::DType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &DType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(d.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DType, D::Error> {
        let name = String::deserialize(d)?;
        DType::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown dtype `{name}`")))
    }
}
