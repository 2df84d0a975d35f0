//! The builder templates use: registers by type, instructions appended to the innermost open
//! construct, structured `if`/loops through closures (so a construct is always closed).

use lathe_numerics::DType;

use crate::ir::{
    Access, BinOp, CacheHint, Cmp, Inst, Kernel, LoopKind, MmaElem, Mufu, Operand, Param, Reg, Rounding, ShflMode,
    Space, Special, Stmt, Ty, UnOp, VoteMode,
};

/// Builds one [`Kernel`].
#[derive(Debug)]
pub struct KernelBuilder {
    kernel: Kernel,
    /// The statement lists being filled, innermost last.
    open: Vec<Vec<Stmt>>,
}

/// The bits of an `f32` immediate.
pub fn f32_imm(x: f32) -> Operand {
    Operand::Imm(u64::from(x.to_bits()))
}

/// An integer immediate (two's complement bits, truncated to the instruction's width).
pub fn int_imm(x: i64) -> Operand {
    Operand::Imm(x as u64)
}

impl KernelBuilder {
    /// A kernel `name` of at most `max_threads` threads per CTA.
    pub fn new(name: impl Into<String>, max_threads: u32) -> Self {
        KernelBuilder {
            kernel: Kernel {
                name: name.into(),
                params: Vec::new(),
                max_threads,
                shared_bytes: 0,
                local_bytes: 0,
                regs: Vec::new(),
                body: Vec::new(),
            },
            open: vec![Vec::new()],
        }
    }

    /// Declares `bytes` of static shared memory; returns its base offset.
    pub fn shared(&mut self, bytes: u32, align: u32) -> u32 {
        let base = self.kernel.shared_bytes.next_multiple_of(align.max(1));
        self.kernel.shared_bytes = base + bytes;
        base
    }

    /// Declares `bytes` of local memory per thread.
    pub fn local(&mut self, bytes: u32) {
        self.kernel.local_bytes = self.kernel.local_bytes.max(bytes);
    }

    /// A new register of type `ty`.
    pub fn reg(&mut self, ty: Ty) -> Reg {
        self.kernel.regs.push(ty);
        Reg(self.kernel.regs.len() as u32 - 1)
    }

    /// Declares a buffer parameter; returns a register holding its address (`u64`).
    pub fn buffer(&mut self, name: &str, elem: DType, access: Access) -> Reg {
        self.kernel.params.push(Param::Buffer { name: name.into(), elem, align: 16, access });
        let dst = self.reg(Ty::U64);
        self.push(Inst::Param { dst, index: self.kernel.params.len() - 1 });
        dst
    }

    /// Declares a scalar parameter; returns a register holding its value.
    pub fn scalar(&mut self, name: &str, ty: Ty) -> Reg {
        self.kernel.params.push(Param::Scalar { name: name.into(), ty });
        let dst = self.reg(ty);
        self.push(Inst::Param { dst, index: self.kernel.params.len() - 1 });
        dst
    }

    /// Appends an instruction.
    pub fn push(&mut self, inst: Inst) {
        if let Some(list) = self.open.last_mut() {
            list.push(Stmt::Inst(inst));
        }
    }

    /// `%special` into a new `u32` register.
    pub fn special(&mut self, reg: Special) -> Reg {
        let dst = self.reg(Ty::U32);
        self.push(Inst::Special { dst, reg });
        dst
    }

    /// `dst = src` into a new register of type `ty`.
    pub fn mov(&mut self, ty: Ty, src: impl Into<Operand>) -> Reg {
        let dst = self.reg(ty);
        self.push(Inst::Mov { dst, src: src.into() });
        dst
    }

    /// `a op b` at `ty` into a new register.
    pub fn bin(&mut self, op: BinOp, ty: Ty, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        let dst = self.reg(ty);
        self.push(Inst::Binary { op, ty, dst, a: a.into(), b: b.into() });
        dst
    }

    /// `op a` at `ty` into a new register.
    pub fn un(&mut self, op: UnOp, ty: Ty, a: impl Into<Operand>) -> Reg {
        let dst = self.reg(ty);
        self.push(Inst::Unary { op, ty, dst, a: a.into() });
        dst
    }

    /// `a · b + c` at `ty` (fma.rn for floats).
    pub fn fma(&mut self, ty: Ty, a: impl Into<Operand>, b: impl Into<Operand>, c: impl Into<Operand>) -> Reg {
        let dst = self.reg(ty);
        self.push(Inst::Fma { ty, dst, a: a.into(), b: b.into(), c: c.into() });
        dst
    }

    /// `a cmp b` at `ty` into a new predicate.
    pub fn setp(&mut self, cmp: Cmp, ty: Ty, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        let dst = self.reg(Ty::Pred);
        self.push(Inst::Setp { cmp, ty, dst, a: a.into(), b: b.into() });
        dst
    }

    /// `p ? a : b` at `ty`.
    pub fn selp(&mut self, ty: Ty, a: impl Into<Operand>, b: impl Into<Operand>, p: Reg) -> Reg {
        let dst = self.reg(ty);
        self.push(Inst::Selp { ty, dst, a: a.into(), b: b.into(), p });
        dst
    }

    /// A conversion of `src` (of type `from`) to `to`.
    pub fn cvt(
        &mut self,
        to: Ty,
        from: Ty,
        rounding: Option<Rounding>,
        satfinite: bool,
        src: impl Into<Operand>,
    ) -> Reg {
        let dst = self.reg(to);
        self.push(Inst::Cvt { to, from, rounding, satfinite, dst, src: src.into() });
        dst
    }

    /// Packs two f32 values into `to` (`a` in the upper half, `b` in the lower); fp8 packs are
    /// `.satfinite`.
    pub fn cvt_pack(&mut self, to: Ty, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        let dst = self.reg(to);
        let satfinite = matches!(to, Ty::E4m3x2 | Ty::E5m2x2);
        self.push(Inst::CvtPack { to, satfinite, dst, a: a.into(), b: b.into() });
        dst
    }

    /// Unpacks two fp8 values (`from`: `e4m3x2` or `e5m2x2`, a 16-bit source) into a new
    /// `f16x2` register, `cvt.rn.f16x2.{from}`: the upper byte to the upper half.
    pub fn cvt_unpack(&mut self, from: Ty, src: impl Into<Operand>) -> Reg {
        self.cvt(Ty::F16x2, from, Some(Rounding::Rn), false, src)
    }

    /// A MUFU approximation of `a` (f32).
    pub fn mufu(&mut self, op: Mufu, a: impl Into<Operand>) -> Reg {
        let dst = self.reg(Ty::F32);
        self.push(Inst::Mufu { op, dst, a: a.into() });
        dst
    }

    /// A load of `n` values of `ty` from `space` at `addr + offset` (no cache hint).
    pub fn ld(&mut self, space: Space, ty: Ty, n: usize, addr: impl Into<Operand>, offset: i64, nc: bool) -> Vec<Reg> {
        self.ld_hint(space, ty, n, addr, offset, nc, None)
    }

    /// [`KernelBuilder::ld`] with a cache hint (`Some`: a global load's cache operator or L1
    /// eviction priority; the verifier checks which).
    #[allow(clippy::too_many_arguments)]
    pub fn ld_hint(
        &mut self,
        space: Space,
        ty: Ty,
        n: usize,
        addr: impl Into<Operand>,
        offset: i64,
        nc: bool,
        hint: Option<CacheHint>,
    ) -> Vec<Reg> {
        let dst: Vec<Reg> = (0..n).map(|_| self.reg(ty)).collect();
        self.push(Inst::Ld { space, ty, dst: dst.clone(), addr: addr.into(), offset, nc, hint });
        dst
    }

    /// A load of one value.
    pub fn ld1(&mut self, space: Space, ty: Ty, addr: impl Into<Operand>, offset: i64) -> Reg {
        let dst = self.reg(ty);
        self.push(Inst::Ld { space, ty, dst: vec![dst], addr: addr.into(), offset, nc: false, hint: None });
        dst
    }

    /// A store of `src` values of `ty` (no cache hint).
    pub fn st(&mut self, space: Space, ty: Ty, addr: impl Into<Operand>, offset: i64, src: &[Operand]) {
        self.st_hint(space, ty, addr, offset, src, None);
    }

    /// [`KernelBuilder::st`] with a cache hint.
    pub fn st_hint(
        &mut self,
        space: Space,
        ty: Ty,
        addr: impl Into<Operand>,
        offset: i64,
        src: &[Operand],
        hint: Option<CacheHint>,
    ) {
        self.push(Inst::St { space, ty, src: src.to_vec(), addr: addr.into(), offset, hint });
    }

    /// `shfl.sync` among the whole warp.
    pub fn shfl(&mut self, mode: ShflMode, a: impl Into<Operand>, b: impl Into<Operand>) -> Reg {
        let dst = self.reg(Ty::B32);
        let c = Operand::Imm(if mode == ShflMode::Up { 0 } else { 31 });
        self.push(Inst::Shfl { mode, dst, a: a.into(), b: b.into(), c, mask: u32::MAX });
        dst
    }

    /// `bar.sync 0`.
    pub fn bar(&mut self) {
        self.push(Inst::Bar);
    }

    /// `bar.warp.sync mask`.
    pub fn bar_warp(&mut self, mask: u32) {
        self.push(Inst::BarWarp { mask });
    }

    /// `ldmatrix.sync.aligned.m8n8.x{n}{.trans}.shared.b16` into `n` new b32 registers; each
    /// lane passes the shared address of the row it supplies.
    pub fn ldmatrix(&mut self, n: usize, trans: bool, addr: impl Into<Operand>, offset: i64) -> Vec<Reg> {
        let dst: Vec<Reg> = (0..n).map(|_| self.reg(Ty::B32)).collect();
        self.push(Inst::Ldmatrix { trans, dst: dst.clone(), addr: addr.into(), offset });
        dst
    }

    /// `mma.sync.aligned` of the shape `atype` takes, `D = A·B + C`, into four new f32
    /// registers.
    pub fn mma(&mut self, atype: MmaElem, btype: MmaElem, a: [Reg; 4], b: [Reg; 2], c: [Operand; 4]) -> [Reg; 4] {
        let d = [self.reg(Ty::F32), self.reg(Ty::F32), self.reg(Ty::F32), self.reg(Ty::F32)];
        self.push(Inst::Mma { shape: atype.shape(), atype, btype, d, a, b, c });
        d
    }

    /// `atom.{space}.{op}.{ty} [addr + offset], src` into a new register (the old value).
    pub fn atom(
        &mut self,
        space: Space,
        op: BinOp,
        ty: Ty,
        addr: impl Into<Operand>,
        offset: i64,
        src: impl Into<Operand>,
    ) -> Reg {
        let dst = self.reg(ty);
        self.push(Inst::Atom { space, op, ty, dst: Some(dst), addr: addr.into(), offset, src: src.into() });
        dst
    }

    /// `red.{space}.{op}.{ty} [addr + offset], src`: the atomic without its result.
    pub fn red(
        &mut self,
        space: Space,
        op: BinOp,
        ty: Ty,
        addr: impl Into<Operand>,
        offset: i64,
        src: impl Into<Operand>,
    ) {
        self.push(Inst::Atom { space, op, ty, dst: None, addr: addr.into(), offset, src: src.into() });
    }

    /// `vote.sync` of predicate `a` over the whole warp: a predicate (`all`, `any`) or a b32
    /// mask (`ballot`).
    pub fn vote(&mut self, mode: VoteMode, a: Reg) -> Reg {
        let dst = self.reg(if mode == VoteMode::Ballot { Ty::B32 } else { Ty::Pred });
        self.push(Inst::Vote { mode, dst, a, mask: u32::MAX });
        dst
    }

    /// `redux.sync.{op}.{ty}` of `a` over the whole warp.
    pub fn redux(&mut self, op: BinOp, ty: Ty, a: impl Into<Operand>) -> Reg {
        let dst = self.reg(ty);
        self.push(Inst::Redux { op, ty, dst, a: a.into(), mask: u32::MAX });
        dst
    }

    /// `cp.async` of `size` bytes from global `src` to shared `dst` (`cg` for 16 bytes past L1),
    /// reading only `src_size` bytes where given and zero-filling the rest.
    pub fn cp_async(
        &mut self,
        cg: bool,
        size: u32,
        dst: impl Into<Operand>,
        src: impl Into<Operand>,
        src_size: Option<Operand>,
    ) {
        self.push(Inst::CpAsync { cg, size, dst: dst.into(), dst_offset: 0, src: src.into(), src_offset: 0, src_size });
    }

    /// `cp.async.commit_group`.
    pub fn cp_async_commit(&mut self) {
        self.push(Inst::CpAsyncCommit);
    }

    /// `cp.async.wait_group n`.
    pub fn cp_async_wait(&mut self, n: u32) {
        self.push(Inst::CpAsyncWait { n });
    }

    /// `cp.async.wait_all`.
    pub fn cp_async_wait_all(&mut self) {
        self.push(Inst::CpAsyncWaitAll);
    }

    /// `prefetch.global.L2::evict_last [addr + offset]` (see [`Inst::Prefetch`]).
    pub fn prefetch(&mut self, addr: impl Into<Operand>, offset: i64) {
        self.push(Inst::Prefetch { addr: addr.into(), offset });
    }

    /// `fence.acq_rel.gpu`: orders this thread's memory accesses GPU-wide (see [`Inst::Fence`]).
    pub fn fence(&mut self) {
        self.push(Inst::Fence);
    }

    /// `griddepcontrol.wait`: the dependent launch's wait for its prerequisite grids.
    pub fn grid_dep_wait(&mut self) {
        self.push(Inst::GridDepWait);
    }

    /// `griddepcontrol.launch_dependents`: lets the dependent launch start early.
    pub fn grid_dep_launch_dependents(&mut self) {
        self.push(Inst::GridDepLaunchDependents);
    }

    /// Collects the statements `f` appends.
    fn block(&mut self, f: impl FnOnce(&mut Self)) -> Vec<Stmt> {
        self.open.push(Vec::new());
        f(self);
        self.open.pop().unwrap_or_default()
    }

    /// `if (cond) { then }`.
    pub fn if_then(&mut self, cond: Reg, then: impl FnOnce(&mut Self)) {
        let then = self.block(then);
        if let Some(list) = self.open.last_mut() {
            list.push(Stmt::If { cond, then, otherwise: Vec::new() });
        }
    }

    /// `if (cond) { then } else { otherwise }`.
    pub fn if_else(&mut self, cond: Reg, then: impl FnOnce(&mut Self), otherwise: impl FnOnce(&mut Self)) {
        let then = self.block(then);
        let otherwise = self.block(otherwise);
        if let Some(list) = self.open.last_mut() {
            list.push(Stmt::If { cond, then, otherwise });
        }
    }

    /// `for i in 0..count { body(i) }` with a `u32` index.
    pub fn for_count(&mut self, count: impl Into<Operand>, body: impl FnOnce(&mut Self, Reg)) {
        let index = self.reg(Ty::U32);
        let body = self.block(|b| body(b, index));
        if let Some(list) = self.open.last_mut() {
            list.push(Stmt::Loop { kind: LoopKind::Count { index, count: count.into() }, body });
        }
    }

    /// `do { body } while (cond)`: `body` returns the predicate that continues the loop.
    pub fn do_while(&mut self, body: impl FnOnce(&mut Self) -> Reg) {
        let mut cond = Reg(0);
        let stmts = self.block(|b| cond = body(b));
        if let Some(list) = self.open.last_mut() {
            list.push(Stmt::Loop { kind: LoopKind::While { cond }, body: stmts });
        }
    }

    /// The kernel.
    pub fn finish(mut self) -> Kernel {
        self.kernel.body = self.open.pop().unwrap_or_default();
        self.kernel
    }
}
