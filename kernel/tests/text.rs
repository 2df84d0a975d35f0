//! The text form: every kernel reads back as itself, one small kernel prints as a reviewed
//! snapshot, malformed text fails at the right line and column, and thousands of mutants of the
//! printed corpus never panic the parser or the verifier.

use lathe_kernel::build::{f32_imm, int_imm, KernelBuilder};
use lathe_kernel::ir::{
    Access, Axis, BinOp, CacheHint, Cmp, Inst, Kernel, LoopKind, MmaElem, Mufu, Operand, Param, Reg, Rounding,
    ShflMode, Space, Special, Stmt, Ty, UnOp, VoteMode,
};
use lathe_kernel::text::{parse, print, MAX_INPUT_BYTES, MAX_NESTING};
use lathe_kernel::verify::{inst_name, verify};
use lathe_numerics::DType;

fn addr4(b: &mut KernelBuilder, base: Reg, i: Reg) -> Reg {
    let wide = b.cvt(Ty::U64, Ty::U32, None, false, i);
    let off = b.bin(BinOp::Mul, Ty::U64, wide, int_imm(4));
    b.bin(BinOp::Add, Ty::U64, base, off)
}

/// `c[i] = a[i] + b[i]` for `i < n`.
fn vector_add() -> Kernel {
    let mut b = KernelBuilder::new("vector_add", 128);
    let a = b.buffer("a", DType::F32, Access::ReadOnly);
    let x = b.buffer("b", DType::F32, Access::ReadOnly);
    let c = b.buffer("c", DType::F32, Access::Written);
    let n = b.scalar("n", Ty::U32);
    let tid = b.special(Special::Tid(Axis::X));
    let cta = b.special(Special::Ctaid(Axis::X));
    let ntid = b.special(Special::Ntid(Axis::X));
    let i = b.fma(Ty::U32, cta, ntid, tid);
    let inside = b.setp(Cmp::Lt, Ty::U32, i, n);
    b.if_then(inside, |b| {
        let pa = addr4(b, a, i);
        let pb = addr4(b, x, i);
        let pc = addr4(b, c, i);
        let va = b.ld(Space::Global, Ty::F32, 1, pa, 0, true)[0];
        let vb = b.ld(Space::Global, Ty::F32, 1, pb, 0, true)[0];
        let s = b.bin(BinOp::Add, Ty::F32, va, vb);
        b.st(Space::Global, Ty::F32, pc, 0, &[s.into()]);
    });
    b.finish()
}

/// A butterfly sum over a warp, then every other shuffle mode.
fn warp_shuffles() -> Kernel {
    let mut b = KernelBuilder::new("warp_shuffles", 32);
    let x = b.buffer("x", DType::F32, Access::ReadOnly);
    let y = b.buffer("y", DType::F32, Access::Written);
    let lane = b.special(Special::LaneId);
    let p = addr4(&mut b, x, lane);
    let mut v = b.ld1(Space::Global, Ty::F32, p, 0);
    for d in [16, 8, 4, 2, 1] {
        let o = b.shfl(ShflMode::Bfly, v, int_imm(d));
        v = b.bin(BinOp::Add, Ty::F32, v, o);
    }
    let up = b.shfl(ShflMode::Up, v, int_imm(1));
    let down = b.shfl(ShflMode::Down, up, int_imm(2));
    let idx = b.shfl(ShflMode::Idx, down, lane);
    let q = addr4(&mut b, y, lane);
    b.st(Space::Global, Ty::F32, q, 0, &[idx.into()]);
    b.finish()
}

/// A CTA sum through shared memory with barriers, a counted loop over the strides.
fn cta_sum() -> Kernel {
    let mut b = KernelBuilder::new("cta_sum", 256);
    let x = b.buffer("x", DType::BF16, Access::ReadOnly);
    let y = b.buffer("y", DType::F32, Access::Written);
    let s = b.shared(256 * 4, 16);
    let tid = b.special(Special::Tid(Axis::X));
    let p = addr4(&mut b, x, tid);
    let v = b.ld1(Space::Global, Ty::F32, p, 0);
    let zero = b.mov(Ty::U64, int_imm(i64::from(s)));
    let sp = addr4(&mut b, zero, tid);
    b.st(Space::Shared, Ty::F32, sp, 0, &[v.into()]);
    b.bar();
    let stride = b.mov(Ty::U32, int_imm(128));
    b.for_count(int_imm(8), |b, _| {
        let active = b.setp(Cmp::Lt, Ty::U32, tid, stride);
        b.if_then(active, |b| {
            let a = b.ld1(Space::Shared, Ty::F32, sp, 0);
            let c = b.ld1(Space::Shared, Ty::F32, sp, 512);
            let sum = b.bin(BinOp::Add, Ty::F32, a, c);
            b.st(Space::Shared, Ty::F32, sp, 0, &[sum.into()]);
        });
        b.bar();
    });
    let first = b.setp(Cmp::Eq, Ty::U32, tid, int_imm(0));
    b.if_then(first, |b| {
        let r = b.ld1(Space::Shared, Ty::F32, zero, 0);
        b.st(Space::Global, Ty::F32, y, 0, &[r.into()]);
    });
    b.finish()
}

/// Every instruction kind and construct, at the types the verifier takes.
fn everything() -> Kernel {
    let mut b = KernelBuilder::new("everything", 1024);
    b.shared(4096, 16);
    b.local(64);
    let x = b.buffer("x \"quoted\"\t\\ µ", DType::F8E4M3, Access::ReadOnly);
    let y = b.buffer("y", DType::I64, Access::Written);
    let s = b.scalar("s", Ty::S64);
    let h = b.scalar("h", Ty::F16);
    let _ = (b.scalar("bits", Ty::B16), b.scalar("u", Ty::U64), b.scalar("pair", Ty::Bf16x2), h);
    for d in DType::ALL {
        b.buffer(d.name(), d, Access::Written);
    }
    let mut sp = Vec::new();
    for axis in [Axis::X, Axis::Y, Axis::Z] {
        for make in [Special::Tid, Special::Ntid, Special::Ctaid, Special::Nctaid] {
            sp.push(b.special(make(axis)));
        }
    }
    let lane = b.special(Special::LaneId);
    let f = b.cvt(Ty::F32, Ty::U32, Some(Rounding::Rn), false, lane);
    let ops = [
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Rem,
        BinOp::Min,
        BinOp::Max,
        BinOp::And,
        BinOp::Or,
        BinOp::Xor,
        BinOp::Shl,
        BinOp::Shr,
    ];
    let wide = b.cvt(Ty::S64, Ty::U32, None, false, lane);
    for op in ops {
        b.bin(op, Ty::U32, lane, int_imm(3));
        b.bin(op, Ty::S64, wide, int_imm(-7));
    }
    for op in [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Min, BinOp::Max] {
        b.bin(op, Ty::F32, f, f32_imm(-0.0));
    }
    let neg = b.un(UnOp::Neg, Ty::F32, f);
    b.un(UnOp::Abs, Ty::S32, int_imm(-5));
    b.un(UnOp::Not, Ty::B32, lane);
    b.fma(Ty::F32, f, neg, f32_imm(f32::NAN));
    b.fma(Ty::F32, f, f32_imm(f32::INFINITY), f32_imm(f32::MIN_POSITIVE));
    let mut preds = Vec::new();
    for cmp in [Cmp::Eq, Cmp::Ne, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge] {
        preds.push(b.setp(cmp, Ty::F32, f, f32_imm(1.5)));
        b.setp(cmp, Ty::S64, wide, int_imm(i64::MIN));
    }
    let p = b.bin(BinOp::And, Ty::Pred, preds[0], preds[1]);
    let np = b.un(UnOp::Not, Ty::Pred, p);
    b.selp(Ty::F32, f, f32_imm(2.0), np);
    let half = b.cvt(Ty::F16, Ty::F32, Some(Rounding::Rn), true, f);
    b.cvt(Ty::Bf16, Ty::F32, None, false, f);
    for to in [Ty::E4m3x2, Ty::E5m2x2, Ty::F16x2, Ty::Bf16x2] {
        b.cvt_pack(to, f, f32_imm(-0.5));
    }
    let e4 = b.cvt_pack(Ty::E4m3x2, f32_imm(2.0), f);
    b.cvt_unpack(Ty::E4m3x2, e4);
    b.cvt(Ty::F32, Ty::F16, None, false, half);
    b.cvt(Ty::S32, Ty::F32, Some(Rounding::Rz), false, f);
    for op in [Mufu::Ex2, Mufu::Rsqrt, Mufu::Rcp, Mufu::Tanh] {
        b.mufu(op, f);
    }
    let base = b.mov(Ty::U64, int_imm(0));
    let v4 = b.ld(Space::Shared, Ty::F32, 4, base, 32, false);
    let v2 = b.ld(Space::Local, Ty::B32, 2, base, 8, false);
    b.ld(Space::Global, Ty::F16x2, 2, x, 16, true);
    b.st(Space::Local, Ty::B32, base, 0, &[v2[1].into(), int_imm(7)]);
    b.st(Space::Shared, Ty::F32, base, 48, &[v4[3].into(), f32_imm(1.0), f.into(), v4[0].into()]);
    b.st(Space::Global, Ty::S64, y, 8, &[s.into()]);
    // Every cache hint where it is legal: the load operators and eviction priorities on plain
    // global loads, those `.nc` takes on `.nc` loads, the store operators and eviction
    // priorities on stores.
    for hint in CacheHint::ALL {
        if hint.on_load() {
            b.ld_hint(Space::Global, Ty::F32, 4, x, 32, false, Some(hint));
        }
        if hint.on_nc_load() {
            b.ld_hint(Space::Global, Ty::B32, 2, x, 0, true, Some(hint));
        }
        if hint.on_store() {
            b.st_hint(Space::Global, Ty::S64, y, 16, &[s.into()], Some(hint));
        }
    }
    b.st_hint(Space::Global, Ty::F32, y, 0, &[f.into(), f32_imm(2.0)], Some(CacheHint::Cs));
    let pair = b.ld(Space::Shared, Ty::B16, 1, base, -2, false)[0];
    b.cvt_unpack(Ty::E5m2x2, pair);
    b.atom(Space::Global, BinOp::Add, Ty::U32, y, 0, lane);
    b.atom(Space::Shared, BinOp::Add, Ty::F32, base, -4, f);
    b.red(Space::Shared, BinOp::Max, Ty::U64, base, 8, int_imm(3));
    b.red(Space::Global, BinOp::Max, Ty::S32, y, 4, int_imm(-1));
    for mode in [VoteMode::All, VoteMode::Any, VoteMode::Ballot] {
        b.vote(mode, p);
    }
    for (op, ty) in [(BinOp::Add, Ty::U32), (BinOp::Min, Ty::U32), (BinOp::Max, Ty::U32), (BinOp::Xor, Ty::B32)] {
        b.redux(op, ty, lane);
    }
    b.redux(BinOp::And, Ty::B32, int_imm(0xff));
    b.cp_async(true, 16, base, x, Some(lane.into()));
    b.cp_async(false, 4, int_imm(64), x, None);
    b.push(Inst::CpAsync {
        cg: false,
        size: 8,
        dst: base.into(),
        dst_offset: 8,
        src: x.into(),
        src_offset: -8,
        src_size: Some(int_imm(3)),
    });
    b.cp_async_commit();
    b.cp_async_wait(1);
    b.cp_async_wait_all();
    b.redux(BinOp::Min, Ty::S32, int_imm(-3));
    b.grid_dep_wait();
    b.grid_dep_launch_dependents();
    b.if_else(
        p,
        |b| {
            b.bar_warp(u32::MAX);
            b.do_while(|b| {
                let i = b.mov(Ty::U32, lane);
                b.setp(Cmp::Gt, Ty::U32, i, int_imm(40))
            });
        },
        |b| {
            b.bar_warp(0x0000_ffff);
            b.for_count(lane, |b, i| {
                b.bin(BinOp::Add, Ty::U32, i, int_imm(1));
            });
        },
    );
    b.bar();
    b.finish()
}

/// What the parser must read back although the verifier refuses it: undeclared registers,
/// parameters out of range, vectors of 0 and 3, raw bits wider than the type, extreme offsets.
fn oddities() -> Kernel {
    let big = Reg(u32::MAX);
    Kernel {
        name: "odd name\n\"1\"".into(),
        params: vec![Param::Buffer { name: String::new(), elem: DType::Bool, align: 3, access: Access::Written }],
        max_threads: u32::MAX,
        shared_bytes: u32::MAX,
        local_bytes: 0,
        regs: vec![Ty::Pred, Ty::E4m3x2, Ty::E5m2x2, Ty::F16x2],
        body: vec![
            Stmt::Inst(Inst::Param { dst: big, index: usize::MAX }),
            Stmt::Inst(Inst::Mov { dst: Reg(9), src: Operand::Imm(u64::MAX) }),
            Stmt::Inst(Inst::Ld {
                space: Space::Local,
                ty: Ty::Pred,
                dst: vec![],
                addr: Operand::Imm(0x100),
                offset: i64::MIN,
                nc: true,
                hint: Some(CacheHint::Wb),
            }),
            Stmt::Inst(Inst::Ld {
                space: Space::Global,
                ty: Ty::U64,
                dst: vec![Reg(1), Reg(2), Reg(3)],
                addr: Operand::Reg(big),
                offset: i64::MAX,
                nc: false,
                hint: Some(CacheHint::L1NoAllocate),
            }),
            Stmt::Inst(Inst::Ld {
                space: Space::Shared,
                ty: Ty::F32,
                dst: vec![Reg(1)],
                addr: Operand::Imm(0),
                offset: 0,
                nc: true,
                hint: Some(CacheHint::Cv),
            }),
            Stmt::Inst(Inst::St {
                space: Space::Shared,
                ty: Ty::E5m2x2,
                src: vec![],
                addr: Operand::Imm(0),
                offset: -1,
                hint: Some(CacheHint::Lu),
            }),
            Stmt::Inst(Inst::Shfl {
                mode: ShflMode::Up,
                dst: Reg(0),
                a: Operand::Imm(1 << 40),
                b: Operand::Reg(Reg(7)),
                c: Operand::Imm(5),
                mask: 0,
            }),
            Stmt::If { cond: Reg(0), then: vec![], otherwise: vec![] },
            Stmt::Loop { kind: LoopKind::While { cond: Reg(3) }, body: vec![] },
            Stmt::Loop { kind: LoopKind::Count { index: Reg(8), count: Operand::Imm(0) }, body: vec![] },
            Stmt::Inst(Inst::Cvt {
                to: Ty::E4m3x2,
                from: Ty::Pred,
                rounding: Some(Rounding::Rz),
                satfinite: true,
                dst: Reg(1),
                src: Operand::Imm(1),
            }),
        ],
    }
}

/// `depth` nested `if`s around one barrier.
fn nested(depth: usize) -> Kernel {
    let mut body = vec![Stmt::Inst(Inst::Bar)];
    for _ in 0..depth {
        body = vec![Stmt::If { cond: Reg(0), then: body, otherwise: vec![] }];
    }
    Kernel {
        name: "deep".into(),
        params: vec![],
        max_threads: 32,
        shared_bytes: 0,
        local_bytes: 0,
        regs: vec![Ty::Pred],
        body,
    }
}

/// `ldmatrix` in every form and `mma` of every shape and input pairing.
fn tensor_cores() -> Kernel {
    let mut b = KernelBuilder::new("tensor_cores", 32);
    b.shared(1024, 16);
    let lane = b.special(Special::LaneId);
    let row = b.bin(BinOp::Mul, Ty::U32, lane, int_imm(16));
    let a64 = b.cvt(Ty::U64, Ty::U32, None, false, row);
    let x4 = b.ldmatrix(4, false, a64, 0);
    let t2 = b.ldmatrix(2, true, a64, 512);
    let _ = b.ldmatrix(1, false, a64, -16);
    let a = [x4[0], x4[1], x4[2], x4[3]];
    let bb = [t2[0], t2[1]];
    let c = [f32_imm(0.0), f32_imm(1.5), int_imm(0), f32_imm(-2.0)];
    let d = b.mma(MmaElem::Bf16, MmaElem::Bf16, a, bb, c);
    let d = b.mma(MmaElem::F16, MmaElem::F16, a, bb, d.map(Operand::Reg));
    let d = b.mma(MmaElem::E4m3, MmaElem::E5m2, a, bb, d.map(Operand::Reg));
    let _ = b.mma(MmaElem::E5m2, MmaElem::E4m3, a, bb, d.map(Operand::Reg));
    b.finish()
}

fn corpus() -> Vec<Kernel> {
    vec![vector_add(), warp_shuffles(), cta_sum(), everything(), oddities(), nested(MAX_NESTING), tensor_cores()]
}

#[test]
fn the_built_kernels_verify() {
    for k in [vector_add(), warp_shuffles(), cta_sum(), everything(), tensor_cores()] {
        verify(&k).unwrap_or_else(|e| panic!("{}: {e:?}", k.name));
    }
}

#[test]
fn every_kernel_reads_back_as_itself() {
    for k in corpus() {
        let text = print(&k);
        let back = parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", k.name));
        assert_eq!(back, k, "{text}");
        assert_eq!(print(&back), text);
    }
}

fn flatten<'a>(stmts: &'a [Stmt], out: &mut Vec<&'a Inst>) {
    for s in stmts {
        match s {
            Stmt::Inst(i) => out.push(i),
            Stmt::If { then, otherwise, .. } => {
                flatten(then, out);
                flatten(otherwise, out);
            }
            Stmt::Loop { body, .. } => flatten(body, out),
        }
    }
}

/// The printed mnemonic is the verifier's name for the instruction (cvt adds its modifiers).
#[test]
fn mnemonics_agree_with_the_verifier() {
    let k = everything();
    let text = print(&k);
    let mnemonics: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !["kernel ", "param ", "reg ", "if ", "for ", "do ", "}"].iter().any(|p| l.starts_with(p)) && !l.is_empty()
        })
        .filter_map(|l| match l.split_once(" = ") {
            Some((_, rhs)) => rhs.split(' ').next(),
            None => l.split(' ').next(),
        })
        .collect();
    let mut insts = Vec::new();
    flatten(&k.body, &mut insts);
    assert_eq!(mnemonics.len(), insts.len());
    for (m, i) in mnemonics.iter().zip(insts) {
        let m = m.replace(".rn", "").replace(".rz", "").replace(".satfinite", "");
        assert_eq!(m, inst_name(i));
    }
}

#[test]
fn a_small_kernel_prints_as_its_snapshot() {
    let want = r#"kernel @vector_add max_threads=128 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "a"
  param %p1 : buffer f32 align=16 readonly "b"
  param %p2 : buffer f32 align=16 written "c"
  param %p3 : scalar u32 "n"
  reg %r0, %r1, %r2 : u64
  reg %r3, %r4, %r5, %r6, %r7 : u32
  reg %r8 : pred
  reg %r9, %r10, %r11, %r12, %r13, %r14, %r15, %r16 : u64
  reg %r17 : u64
  reg %r18, %r19, %r20 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = ld.param %p2
  %r3 = ld.param %p3
  %r4 = mov.special %tid.x
  %r5 = mov.special %ctaid.x
  %r6 = mov.special %ntid.x
  %r7 = fma.u32 %r5, %r6, %r4
  %r8 = setp.lt.u32 %r7, %r3
  if %r8 {
    %r9 = cvt.u64.u32 %r7
    %r10 = mul.u64 %r9, 0x4
    %r11 = add.u64 %r0, %r10
    %r12 = cvt.u64.u32 %r7
    %r13 = mul.u64 %r12, 0x4
    %r14 = add.u64 %r1, %r13
    %r15 = cvt.u64.u32 %r7
    %r16 = mul.u64 %r15, 0x4
    %r17 = add.u64 %r2, %r16
    %r18 = ld.global.nc.f32 [%r11]
    %r19 = ld.global.nc.f32 [%r14]
    %r20 = add.f32 %r18, %r19
    st.global.f32 [%r17], %r20
  }
}
"#;
    assert_eq!(print(&vector_add()), want);
}

#[test]
fn hand_written_text_with_decimal_literals_and_comments() {
    let text = r#"
// A hand-written kernel: decimal literals take the type of their position.
kernel @hand max_threads=32 shared=16 local=0 {
  param %p0 : buffer f32 align=16 written "out"   // where the results go
  reg %r0 : u64
  reg %r1, %r2 : f32
  reg %r3 : f16
  reg %r4 : s32
  reg %r5 : u32

  %r0 = ld.param %p0
  %r1 = mov 1.5
  %r2 = fma.f32 %r1, -2, 1e-3
  %r3 = mov -0.5
  %r4 = add.s32 %r4, -1
  %r5 = shl.u32 %r5, 4
  st.shared.v2.f32 [0 + 8], {%r1, 0.25}
  st.global.f32 [%r0 - 0x4], %r2
}
"#;
    let k = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let insts: Vec<&Inst> = k.body.iter().filter_map(|s| if let Stmt::Inst(i) = s { Some(i) } else { None }).collect();
    assert_eq!(insts[1], &Inst::Mov { dst: Reg(1), src: f32_imm(1.5) });
    assert_eq!(
        insts[2],
        &Inst::Fma { ty: Ty::F32, dst: Reg(2), a: Operand::Reg(Reg(1)), b: f32_imm(-2.0), c: f32_imm(1e-3) }
    );
    assert_eq!(insts[3], &Inst::Mov { dst: Reg(3), src: Operand::Imm(0xb800) });
    assert_eq!(
        insts[4],
        &Inst::Binary { op: BinOp::Add, ty: Ty::S32, dst: Reg(4), a: Operand::Reg(Reg(4)), b: int_imm(-1) }
    );
    assert_eq!(
        insts[6],
        &Inst::St {
            space: Space::Shared,
            ty: Ty::F32,
            src: vec![Operand::Reg(Reg(1)), f32_imm(0.25)],
            addr: Operand::Imm(0),
            offset: 8,
            hint: None,
        }
    );
    assert!(matches!(insts[7], Inst::St { offset: -4, .. }));
    assert_eq!(k.shared_bytes, 16);
}

#[test]
fn griddepcontrol_fences_and_the_fp8_unpack_read_as_ptx_spells_them() {
    let text = "kernel @pdl max_threads=32 shared=0 local=0 {
  reg %r0 : b16
  reg %r1, %r2 : f16x2
  reg %r3 : u64
  griddepcontrol.wait
  %r1 = cvt.rn.f16x2.e4m3x2 %r0
  %r2 = cvt.rn.f16x2.e5m2x2 0x3c38
  griddepcontrol.launch_dependents
  fence.acq_rel.gpu
  prefetch.global.L2::evict_last [%r3 + 64]
}
";
    let k = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let unpack =
        |from, dst, src| Inst::Cvt { to: Ty::F16x2, from, rounding: Some(Rounding::Rn), satfinite: false, dst, src };
    let want = [
        Inst::GridDepWait,
        unpack(Ty::E4m3x2, Reg(1), Operand::Reg(Reg(0))),
        unpack(Ty::E5m2x2, Reg(2), Operand::Imm(0x3c38)),
        Inst::GridDepLaunchDependents,
        Inst::Fence,
        Inst::Prefetch { addr: Operand::Reg(Reg(3)), offset: 64 },
    ];
    assert_eq!(k.body, want.map(Stmt::Inst).to_vec());
    verify(&k).expect("verifies");
    assert_eq!(print(&k), text);
}

/// Cache hints read and print as PTX spells them: a cache operator before `.nc`, an eviction
/// priority after it, before the vector width.
#[test]
fn cache_hints_read_as_ptx_spells_them() {
    let text = "kernel @hints max_threads=32 shared=0 local=0 {
  reg %r0 : u64
  reg %r1, %r2, %r3, %r4, %r5 : f32
  {%r1, %r2, %r3, %r4} = ld.global.cg.v4.f32 [%r0]
  {%r1, %r2, %r3, %r4} = ld.global.nc.L1::no_allocate.v4.f32 [%r0 + 16]
  %r5 = ld.global.cs.nc.f32 [%r0]
  %r5 = ld.global.L1::evict_last.f32 [%r0 - 4]
  %r5 = ld.global.nc.f32 [%r0]
  st.global.cs.f32 [%r0], %r5
  st.global.L1::evict_first.v2.f32 [%r0 + 8], {%r1, %r2}
  st.global.wt.f32 [%r0], 0x3f800000
}
";
    let k = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let ld = |dst: Vec<Reg>, offset, nc, hint| Inst::Ld {
        space: Space::Global,
        ty: Ty::F32,
        dst,
        addr: Operand::Reg(Reg(0)),
        offset,
        nc,
        hint,
    };
    let st = |src: Vec<Operand>, offset, hint| Inst::St {
        space: Space::Global,
        ty: Ty::F32,
        src,
        addr: Operand::Reg(Reg(0)),
        offset,
        hint,
    };
    let v4 = vec![Reg(1), Reg(2), Reg(3), Reg(4)];
    let r = |i| Operand::Reg(Reg(i));
    let want = [
        ld(v4.clone(), 0, false, Some(CacheHint::Cg)),
        ld(v4, 16, true, Some(CacheHint::L1NoAllocate)),
        ld(vec![Reg(5)], 0, true, Some(CacheHint::Cs)),
        ld(vec![Reg(5)], -4, false, Some(CacheHint::L1EvictLast)),
        ld(vec![Reg(5)], 0, true, None),
        st(vec![r(5)], 0, Some(CacheHint::Cs)),
        st(vec![r(1), r(2)], 8, Some(CacheHint::L1EvictFirst)),
        st(vec![f32_imm(1.0)], 0, Some(CacheHint::Wt)),
    ];
    assert_eq!(k.body, want.map(Stmt::Inst).to_vec());
    verify(&k).expect("verifies");
    assert_eq!(print(&k), text);
    let names: Vec<String> =
        k.body.iter().filter_map(|s| if let Stmt::Inst(i) = s { Some(inst_name(i)) } else { None }).collect();
    assert_eq!(names[1], "ld.global.nc.L1::no_allocate.v4.f32");
    assert_eq!(names[2], "ld.global.cs.nc.f32");
    // Without a hint a load keeps the name it always had.
    assert_eq!(names[4], "ld.global.nc.f32");
    for h in CacheHint::ALL {
        assert_eq!(CacheHint::from_name(h.name()), Some(h));
    }
}

/// Hints the verifier refuses still read and print back (the parser is syntactic), and the
/// verifier names the statement and the hint: hints off global memory, store operators on
/// loads and load operators on stores, `.lu` and `.cv` on `.nc` loads.
#[test]
fn the_verifier_refuses_hints_where_ptx_has_none() {
    let cases = [
        ("%r1 = ld.shared.cg.f32 [%r0]", "ld.shared.cg.f32", "on a shared load: only global"),
        ("%r1 = ld.local.L1::evict_last.f32 [%r0]", "ld.local.L1::evict_last.f32", "on a local load"),
        ("st.shared.cs.f32 [%r0], %r1", "st.shared.cs.f32", "on a shared store"),
        ("%r1 = ld.global.wb.f32 [%r0]", "ld.global.wb.f32", "`.wb` is a store cache operator"),
        ("%r1 = ld.global.wt.f32 [%r0]", "ld.global.wt.f32", "`.wt` is a store cache operator"),
        ("st.global.ca.f32 [%r0], %r1", "st.global.ca.f32", "`.ca` is a load cache operator"),
        ("st.global.lu.f32 [%r0], %r1", "st.global.lu.f32", "`.lu` is a load cache operator"),
        ("st.global.cv.f32 [%r0], %r1", "st.global.cv.f32", "`.cv` is a load cache operator"),
        ("%r1 = ld.global.cv.nc.f32 [%r0]", "ld.global.cv.nc.f32", "a volatile load"),
        ("%r1 = ld.global.lu.nc.f32 [%r0]", "ld.global.lu.nc.f32", "ld.global.nc takes .ca, .cg, .cs"),
    ];
    for (line, name, msg) in cases {
        let text =
            format!("kernel @k max_threads=32 shared=16 local=16 {{\n  reg %r0 : u64\n  reg %r1 : f32\n  {line}\n}}\n");
        let k = parse(&text).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(print(&k), text);
        let e = verify(&k).expect_err(line);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].at, format!("body[0] ({name})"), "{e:?}");
        assert!(e[0].message.contains(msg), "{line}: {}", e[0]);
    }
    // The same refusals from the builder.
    let mut b = KernelBuilder::new("built", 32);
    let p = b.mov(Ty::U64, int_imm(0));
    b.ld_hint(Space::Shared, Ty::F32, 1, p, 0, false, Some(CacheHint::Ca));
    b.st_hint(Space::Global, Ty::F32, p, 0, &[f32_imm(1.0)], Some(CacheHint::Lu));
    b.ld_hint(Space::Global, Ty::F32, 1, p, 0, true, Some(CacheHint::Cv));
    b.ld_hint(Space::Global, Ty::F32, 1, p, 0, true, Some(CacheHint::Cg));
    let e = verify(&b.finish()).expect_err("three refusals");
    let at: Vec<&str> = e.iter().map(|e| e.at.as_str()).collect();
    assert_eq!(at, ["body[1] (ld.shared.ca.f32)", "body[2] (st.global.lu.f32)", "body[3] (ld.global.cv.nc.f32)"]);
}

/// Each malformed text fails at its line and column.
#[test]
fn malformed_text_fails_where_it_is_wrong() {
    let head = "kernel @k max_threads=32 shared=0 local=0 {\n  reg %r0 : u32\n  reg %r1 : pred\n";
    let cases: Vec<(String, usize, usize, &str)> = vec![
        ("".into(), 1, 1, "expected `kernel`"),
        ("kernal @k".into(), 1, 1, "expected `kernel`"),
        ("kernel k".into(), 1, 8, "expected `@`"),
        ("kernel @k max_threads=x".into(), 1, 23, "expected an integer"),
        ("kernel @k max_threads=99999999999 shared=0 local=0 {".into(), 1, 23, "above"),
        ("kernel @k max_threads=1 local=0 shared=0 {\n}".into(), 1, 25, "expected `shared`"),
        (format!("{head}  %r0 = add.u32 %r0, 1\n"), 5, 1, "expected `}`"),
        (format!("{head}  %r0 = add.u33 %r0, 1\n}}"), 4, 9, "unknown type `u33`"),
        (format!("{head}  %r0 = frob.u32 %r0\n}}"), 4, 9, "unknown instruction `frob.u32`"),
        (format!("{head}  %r0 = add.u32 %r0 1\n}}"), 4, 21, "expected `,`"),
        (format!("{head}  %r0 = add.u32 %r0, 1 2\n}}"), 4, 24, "expected end of line"),
        (format!("{head}  %r0 = add.u32 %r0, 4294967296\n}}"), 4, 22, "does not fit in u32"),
        (format!("{head}  %r0 = add.u32 %r0, 1.5\n}}"), 4, 22, "not an integer"),
        (format!("{head}  %r0 = add.u32 %r0, -0x1\n}}"), 4, 22, "takes no sign"),
        (format!("{head}  %r0 = add.f16x2 %r0, 1\n}}"), 4, 24, "hex bits"),
        (format!("{head}  %r0 = mov %q0\n}}"), 4, 13, "expected a register"),
        (format!("{head}  %r0 = add.f32 %r0, 1e39\n}}"), 4, 22, "out of the range of f32"),
        (format!("{head}  %r0 = add.f16 %r0, -70000\n}}"), 4, 22, "out of the range of f16"),
        (format!("{head}  %r0 = add.bf16 %r0, 1.5x\n}}"), 4, 23, "not a number"),
        (format!("{head}  %r0 = mov %r99999999999\n}}"), 4, 13, "above"),
        (format!("{head}  reg %r5 : u32\n}}"), 4, 7, "expected register %r2"),
        (format!("{head}  param %p1 : scalar u32 \"n\"\n}}"), 4, 9, "expected parameter %p0"),
        (
            "kernel @k max_threads=1 shared=0 local=0 {\n  param %p0 : buffer f99 align=4 readonly \"a\"\n}".into(),
            2,
            22,
            "unknown dtype",
        ),
        (
            "kernel @k max_threads=1 shared=0 local=0 {\n  param %p0 : scalar u32 \"a\n}".into(),
            2,
            26,
            "unterminated string",
        ),
        (
            "kernel @k max_threads=1 shared=0 local=0 {\n  param %p0 : scalar u32 \"a\\q\"\n}".into(),
            2,
            28,
            "unknown escape",
        ),
        (format!("{head}  if %r1 {{ bar.sync }}\n}}"), 4, 12, "expected end of line"),
        (format!("{head}  if %r1 {{\n  bar.sync\n"), 6, 1, "expected `}`"),
        (format!("{head}  for %r0 in 1..4 {{\n  }}\n}}"), 4, 14, "above 0"),
        (format!("{head}  do {{\n  }} until %r1\n}}"), 5, 5, "expected `while`"),
        (format!("{head}  {{%r0, %r0}} = ld.global.v4.u32 [%r0]\n}}"), 4, 16, "loads 4 values into 2 registers"),
        (format!("{head}  st.global.v2.u32 [%r0], %r0\n}}"), 4, 27, "stores 2 values, 1 given"),
        (format!("{head}  st.global.u32 [%r0 * 4], %r0\n}}"), 4, 22, "unexpected character '*'"),
        (format!("{head}  st.global.u32 [%r0, 4], %r0\n}}"), 4, 21, "expected `+`, `-` or `]`"),
        (format!("{head}  st.global.u32 [%r0 - 9223372036854775809], %r0\n}}"), 4, 24, "range of i64"),
        (format!("{head}  st.texture.u32 [%r0], %r0\n}}"), 4, 3, "unknown state space"),
        (format!("{head}  %r0 = st.global.u32 [%r0], %r0\n}}"), 4, 9, "writes no register"),
        (format!("{head}  add.u32 %r0, %r0\n}}"), 4, 3, "writes one register"),
        (format!("{head}  %r0 = shfl.sync.rot.b32 %r0, 1, 31, 0xffffffff\n}}"), 4, 9, "unknown shuffle mode"),
        (format!("{head}  bar.warp.sync 0x1ffffffff\n}}"), 4, 17, "above"),
        (format!("{head}  %r0 = mov.special %tid.w\n}}"), 4, 21, "unknown special register"),
        (format!("{head}  %r0 = cvt.rn.rz.f32.u32 %r0\n}}"), 4, 9, "unexpected `.rz`"),
        (format!("{head}  %r0 = ex2.f32 %r0\n}}"), 4, 9, "expected `ex2.approx.f32`"),
        (format!("{head}  %r0 = mov 1 # 2\n}}"), 4, 15, "unexpected character '#'"),
        (format!("{head}  %r0 = red.global.add.u32 [%r0], 1\n}}"), 4, 9, "writes no register"),
        (format!("{head}  atom.global.add.u32 [%r0], 1\n}}"), 4, 3, "writes one register"),
        (format!("{head}  red.global.nand.u32 [%r0], 1\n}}"), 4, 3, "unknown operation `nand`"),
        (format!("{head}  %r1 = vote.sync.all.b32 %r1, 0xffffffff\n}}"), 4, 9, "gives .pred"),
        (format!("{head}  %r1 = vote.sync.most.pred %r1, 0xffffffff\n}}"), 4, 9, "unknown vote"),
        (format!("{head}  %r0 = redux.sync.add.u32 %r0\n}}"), 4, 31, "expected `,`"),
        (format!("{head}  cp.async.cx.shared.global [%r0], [%r0], 16\n}}"), 4, 3, "unknown cache operator"),
        (format!("{head}  cp.async.wait_group\n}}"), 4, 22, "expected an integer"),
        (format!("{head}  %r0 = griddepcontrol.wait\n}}"), 4, 9, "writes no register"),
        (format!("{head}  griddepcontrol.wait %r0\n}}"), 4, 23, "expected end of line"),
        (format!("{head}  griddepcontrol.launch\n}}"), 4, 3, "unknown instruction `griddepcontrol.launch`"),
        (format!("{head}  %r0 = cvt.rn.f16x2.e4m3x2 1\n}}"), 4, 29, "hex bits"),
        (format!("{head}  %r0 = ld.global.cx.u32 [%r0]\n}}"), 4, 9, "unknown cache hint or modifier `.cx`"),
        (format!("{head}  %r0 = ld.global.L1::evict_normal.u32 [%r0]\n}}"), 4, 9, "unknown cache hint"),
        (format!("{head}  %r0 = ld.global.cg.cs.u32 [%r0]\n}}"), 4, 9, "a second cache hint `.cs` after `.cg`"),
        (format!("{head}  %r0 = ld.global.cg.L1::evict_last.u32 [%r0]\n}}"), 4, 9, "a second cache hint"),
        (format!("{head}  st.global.L1::no_allocate.wt.u32 [%r0], %r0\n}}"), 4, 3, "a second cache hint"),
        (format!("{head}  %r0 = ld.global.nc.cg.u32 [%r0]\n}}"), 4, 9, "`.cg` goes before `.nc`"),
        (format!("{head}  %r0 = ld.global.L1::evict_last.nc.u32 [%r0]\n}}"), 4, 9, "`.nc` goes before"),
        (format!("{head}  %r0 = ld.global.nc.nc.u32 [%r0]\n}}"), 4, 9, "a second `.nc`"),
        (format!("{head}  {{%r0, %r0}} = ld.global.v2.cs.u32 [%r0]\n}}"), 4, 16, "`.cs` goes before `.vN`"),
        (format!("{head}  st.global.nc.u32 [%r0], %r0\n}}"), 4, 3, "unexpected `.nc`"),
        (format!("{head}  %r0 = ld.global.L1:evict_last.u32 [%r0]\n}}"), 4, 9, "unknown type `L1`"),
        (format!("{head}}}\n}}"), 5, 1, "expected end of input"),
    ];
    let mut wrong = Vec::new();
    for (text, line, col, msg) in cases {
        match parse(&text) {
            Ok(k) => wrong.push(format!("{text:?} parsed: {k:?}")),
            Err(e) if (e.line, e.col) != (line, col) || !e.message.contains(msg) => {
                wrong.push(format!("{text:?}: got {e}, want {line}:{col}: ...{msg}..."));
            }
            Err(e) => assert_eq!(e.to_string(), format!("{line}:{col}: {}", e.message)),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn nesting_past_the_limit_is_an_error_not_a_stack_overflow() {
    let text = print(&nested(MAX_NESTING + 1));
    let e = parse(&text).expect_err("too deep");
    assert_eq!((e.line, e.col), (MAX_NESTING + 3, 2 * MAX_NESTING + 10), "{e}");
    assert!(e.message.contains("nest deeper than 64"), "{e}");
    // Far deeper text fails the same way, at once.
    let deep = format!("kernel @k max_threads=1 shared=0 local=0 {{\n{}", "if %r0 {\n".repeat(100_000));
    let e = parse(&deep).expect_err("too deep");
    assert_eq!(e.line, MAX_NESTING + 2, "{e}");
}

#[test]
fn input_past_the_size_limit_is_refused_up_front() {
    let mut text = print(&vector_add());
    text.push_str(&" ".repeat(MAX_INPUT_BYTES + 1 - text.len()));
    let e = parse(&text).expect_err("too large");
    assert_eq!((e.line, e.col), (1, 1), "{e}");
    assert!(e.message.contains("above the limit"), "{e}");
    text.pop();
    assert_eq!(parse(&text), Ok(vector_add()));
}

/// xorshift64*: a tiny seeded generator, so the mutants are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: [&str; 24] = [
    "{",
    "}",
    "[",
    "]",
    ",",
    "=",
    ":",
    "+",
    "-",
    "..",
    "\n",
    "%r0",
    "%r4294967296",
    "%p9",
    "0x",
    "1e400",
    "-1",
    "\"",
    "if %r0 {\n",
    "} else {",
    "ld.global.v4.f32",
    "cvt.rn.satfinite.f16.f32",
    "//",
    "@",
];

/// One mutant of `text`: a truncation, byte flips, a token inserted, a span deleted or a line
/// repeated.
fn mutate(text: &str, rng: &mut Rng) -> String {
    if text.is_empty() {
        return TOKENS[rng.below(TOKENS.len())].into();
    }
    let mut bytes = text.as_bytes().to_vec();
    match rng.below(5) {
        0 => bytes.truncate(rng.below(bytes.len())),
        1 => {
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(bytes.len());
                bytes[i] = match rng.below(3) {
                    0 => rng.next() as u8,
                    1 => b" \n{}[]%,=.-0x9"[rng.below(14)],
                    _ => bytes[i] ^ (1 << rng.below(8)),
                };
            }
        }
        2 => {
            let at = rng.below(bytes.len());
            let tok = TOKENS[rng.below(TOKENS.len())];
            bytes.splice(at..at, tok.bytes());
        }
        3 => {
            let at = rng.below(bytes.len());
            let end = (at + 1 + rng.below(40)).min(bytes.len());
            bytes.drain(at..end);
        }
        _ => {
            let lines: Vec<&str> = text.lines().collect();
            let i = rng.below(lines.len());
            let mut out = lines.clone();
            out.insert(i, lines[i]);
            return out.join("\n");
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn mutants_never_panic_and_what_parses_reads_back() {
    let texts: Vec<String> = corpus().iter().map(print).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut parsed, mut verified) = (0, 0);
    for n in 0..4000 {
        let base = &texts[n % texts.len()];
        let mut text = mutate(base, &mut rng);
        if rng.below(4) == 0 {
            text = mutate(&text, &mut rng);
        }
        match parse(&text) {
            Ok(k) => {
                parsed += 1;
                if verify(&k).is_ok() {
                    verified += 1;
                }
                // Whatever parses is a kernel, and prints as text that reads back as it.
                assert_eq!(parse(&print(&k)).as_ref(), Ok(&k), "{text}");
            }
            Err(e) => assert!(e.line >= 1 && e.col >= 1, "{e}"),
        }
    }
    // The mutations must exercise both sides: some mutants still parse, most do not.
    assert!(parsed > 100 && parsed < 3000, "{parsed} of 4000 parsed");
    assert!(verified > 10, "{verified} verified");
}

/// The serde form (what an artifact ships for the simulator executor) carries every kernel of
/// the corpus exactly, floats by their bits.
#[test]
fn every_kernel_survives_the_serde_form() {
    for k in corpus() {
        let json = serde_json::to_string(&k).unwrap_or_else(|e| panic!("{}: {e}", k.name));
        let back = serde_json::from_str::<Kernel>(&json);
        if k.name == "deep" {
            // 64 nested constructs take some 260 JSON levels, past serde_json's limit of 128:
            // a clean error, never a stack overflow (docs/kernel.md).
            let e = back.expect_err("too deep for serde_json");
            assert!(e.to_string().contains("recursion limit"), "{e}");
            continue;
        }
        let back = back.unwrap_or_else(|e| panic!("{}: {e}", k.name));
        assert!(back == k, "{}: the serde form changed the kernel", k.name);
    }
    // A hint travels by name; a load or store without one serializes without the field, as
    // before hints existed, and JSON without it reads as no hint.
    let plain = serde_json::to_string(&vector_add()).expect("serialize");
    assert!(!plain.contains("hint"), "{plain}");
    assert!(serde_json::from_str::<Kernel>(&plain).expect("reads") == vector_add());
    let hinted = serde_json::to_string(&everything()).expect("serialize");
    assert!(hinted.contains(r#""hint":"L1NoAllocate""#), "{hinted}");
    let shallow = nested(24);
    let json = serde_json::to_string(&shallow).expect("serialize");
    assert!(serde_json::from_str::<Kernel>(&json).expect("24 levels") == shallow);
    let bad = r#"{"name":"k","params":[{"Buffer":{"name":"x","elem":"f33","align":16,"access":"ReadOnly"}}],"max_threads":32,"shared_bytes":0,"local_bytes":0,"regs":[],"body":[]}"#;
    let e = serde_json::from_str::<Kernel>(bad).expect_err("unknown dtype");
    assert!(e.to_string().contains("unknown dtype `f33`"), "{e}");
}
