//! Kernel IR → textual LLVM IR for the NVPTX backend, one documented mapping per op.
//!
//! Every virtual register is a stack slot of its width (`i1`, `i16`, `i32`, `i64`) that the
//! optimizer promotes to SSA; values travel as bits, as in the simulator, and are bit-cast to
//! `float`, `half` or `bfloat` only where an operation computes on them. An operand read at a
//! type narrower or wider than its register is truncated or zero-extended, and a result is
//! truncated to its register's width: the simulator's `value` and `write`. Structured control
//! flow becomes branches (an `if` two blocks and a join; a counted loop tests its count before
//! the first trip and after each, a `while` loop after each trip, as the simulator runs them).
//!
//! Floating-point arithmetic carries no fast-math flags, so LLVM contracts nothing: PTX comes out
//! as `add.rn` / `mul.rn` (which ptxas does not fuse either) and `fma.rn` only where the kernel
//! IR has an `fma`. Shifts by the width or more are defined as the simulator defines them (zero,
//! or the sign for arithmetic right shifts), not left to LLVM's poison.
//!
//! Shared memory: all of a CTA's shared memory (the kernel's static bytes and a launch's
//! dynamic bytes) is one `extern .shared` array addressed from offset 0, so the kernel IR's
//! shared addresses are offsets into it and the runtime launches with `shared_bytes` (plus any
//! dynamic bytes) as the dynamic shared size. Local memory is one array per thread.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use lathe_kernel::ir::{
    BinOp, CacheHint, Cmp, Inst, Kernel, LoopKind, MmaElem, MmaShape, Mufu, Operand, Param, Reg, ShflMode, Space, Stmt,
    Ty, UnOp, VoteMode,
};
use lathe_kernel::sim::{convert_kind, ConvertKind};

/// Why a kernel could not be lowered: an op (or form) the lowering does not have yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl Unsupported {
    /// As a [`crate::CodegenError`] of kernel `kernel`.
    pub fn for_kernel(self, kernel: &str) -> crate::CodegenError {
        crate::CodegenError::Unsupported { kernel: kernel.to_string(), what: self.0 }
    }
}

type CodegenError = Unsupported;

/// The shared-memory array's name in LLVM IR and PTX.
pub const SHARED: &str = "lathe_smem";

/// The LLVM IR module of `k`.
pub fn module(k: &Kernel) -> Result<String, CodegenError> {
    let mut e = Emitter { k, body: String::new(), decls: BTreeSet::new(), next: 0, invariant: false, loops: 0 };
    e.kernel()?;
    let mut out = String::new();
    out.push_str("target triple = \"nvptx64-nvidia-cuda\"\n\n");
    let _ = writeln!(out, "@{SHARED} = external addrspace(3) global [0 x i8], align 16\n");
    for d in &e.decls {
        out.push_str(d);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&e.body);
    // `.minnctapersm 1` beside `.maxntid`: with a launch bound alone, ptxas budgets registers
    // for the most CTAs an SM could hold and spills to get there (a GEMV at 48 registers); the
    // templates size their CTAs and shared memory for the occupancy they want, so ptxas may use
    // the registers a kernel needs.
    let _ = writeln!(out, "\nattributes #0 = {{ \"nvvm.maxntid\"=\"{}\" \"nvvm.minctasm\"=\"1\" }}", k.max_threads);
    if e.invariant {
        out.push_str("\n!0 = !{}\n");
    }
    // Every loop is kept as the kernel IR has it: LLVM must not unroll or peel one (the
    // structural check counts instructions, and templates unroll where they mean to).
    if e.loops > 0 {
        out.push_str("\n!1 = !{!\"llvm.loop.unroll.disable\"}\n");
        for i in 0..e.loops {
            let id = i + 2;
            let _ = writeln!(out, "!{id} = distinct !{{!{id}, !1}}");
        }
    }
    Ok(out)
}

struct Emitter<'k> {
    k: &'k Kernel,
    body: String,
    decls: BTreeSet<String>,
    next: usize,
    /// Loops emitted so far (each back edge carries its `!llvm.loop` node).
    loops: usize,
    /// Whether a load carries `!invariant.load !0`.
    invariant: bool,
}

/// The LLVM integer type of `bits`.
fn int(bits: u32) -> &'static str {
    match bits {
        1 => "i1",
        8 => "i8",
        16 => "i16",
        32 => "i32",
        _ => "i64",
    }
}

/// A constant of `bits` bits.
fn constant(v: u64, bits: u32) -> String {
    match bits {
        1 => if v & 1 == 1 { "true" } else { "false" }.to_string(),
        64 => v.to_string(),
        n => (v & ((1u64 << n) - 1)).to_string(),
    }
}

fn unsupported(what: impl Into<String>) -> Unsupported {
    Unsupported(what.into())
}

impl Emitter<'_> {
    fn tmp(&mut self) -> String {
        self.next += 1;
        format!("%t{}", self.next)
    }

    fn label(&mut self, what: &str) -> String {
        self.next += 1;
        format!("{what}{}", self.next)
    }

    fn line(&mut self, s: impl AsRef<str>) {
        self.body.push_str("  ");
        self.body.push_str(s.as_ref());
        self.body.push('\n');
    }

    fn declare(&mut self, d: impl Into<String>) {
        self.decls.insert(d.into());
    }

    fn reg_bits(&self, r: Reg) -> u32 {
        self.k.regs[r.0 as usize].bits()
    }

    /// `v` (an integer of `from` bits) as `to` bits: truncated or zero-extended.
    fn resize(&mut self, v: String, from: u32, to: u32) -> String {
        if from == to {
            return v;
        }
        let t = self.tmp();
        let op = if from > to { "trunc" } else { "zext" };
        self.line(format!("{t} = {op} {} {v} to {}", int(from), int(to)));
        t
    }

    /// An operand's bits at type `ty` (an integer of `ty.bits()` bits).
    fn operand(&mut self, o: Operand, ty: Ty) -> String {
        match o {
            Operand::Imm(v) => constant(v, ty.bits()),
            Operand::Reg(r) => {
                let w = self.reg_bits(r);
                let t = self.tmp();
                self.line(format!("{t} = load {}, ptr %r{}", int(w), r.0));
                self.resize(t, w, ty.bits())
            }
        }
    }

    /// Writes `v` (an integer of `bits` bits) to `dst`, truncated or extended to its width.
    fn write(&mut self, dst: Reg, v: String, bits: u32) {
        let w = self.reg_bits(dst);
        let v = self.resize(v, bits, w);
        self.line(format!("store {} {v}, ptr %r{}", int(w), dst.0));
    }

    fn bits_as_float(&mut self, v: String) -> String {
        let t = self.tmp();
        self.line(format!("{t} = bitcast i32 {v} to float"));
        t
    }

    fn float_as_bits(&mut self, v: String) -> String {
        let t = self.tmp();
        self.line(format!("{t} = bitcast float {v} to i32"));
        t
    }

    /// An f32 operand as a `float`.
    fn float(&mut self, o: Operand) -> String {
        let v = self.operand(o, Ty::F32);
        self.bits_as_float(v)
    }

    fn call(&mut self, ret: &str, name: &str, args: &[(&str, String)]) -> String {
        let sig: Vec<&str> = args.iter().map(|(t, _)| *t).collect();
        self.declare(format!("declare {ret} @{name}({})", sig.join(", ")));
        let list: Vec<String> = args.iter().map(|(t, v)| format!("{t} {v}")).collect();
        if ret == "void" {
            self.line(format!("call void @{name}({})", list.join(", ")));
            String::new()
        } else {
            let t = self.tmp();
            self.line(format!("{t} = call {ret} @{name}({})", list.join(", ")));
            t
        }
    }

    /// Inline PTX: `asm` with `constraints`, returning `ret` (`void` for none).
    fn asm(&mut self, ret: &str, asm: &str, constraints: &str, args: &[(&str, String)]) -> String {
        let list: Vec<String> = args.iter().map(|(t, v)| format!("{t} {v}")).collect();
        let call = format!("call {ret} asm sideeffect \"{asm}\", \"{constraints}\"({})", list.join(", "));
        if ret == "void" {
            self.line(call);
            String::new()
        } else {
            let t = self.tmp();
            self.line(format!("{t} = {call}"));
            t
        }
    }

    fn kernel(&mut self) -> Result<(), CodegenError> {
        let k = self.k;
        let params: Vec<String> = k
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Param::Buffer { align, .. } => format!("ptr addrspace(1) align {align} %p{i}"),
                Param::Scalar { ty, .. } => format!("{} %p{i}", int(ty.bits())),
            })
            .collect();
        let _ = writeln!(self.body, "define ptx_kernel void @{}({}) #0 {{\nentry:", k.name, params.join(", "));
        for (i, ty) in k.regs.iter().enumerate() {
            self.line(format!("%r{i} = alloca {}", int(ty.bits())));
        }
        if k.local_bytes > 0 {
            self.line(format!("%local = alloca [{} x i8], align 16", k.local_bytes));
        }
        self.block(&k.body)?;
        self.line("ret void");
        self.body.push_str("}\n");
        Ok(())
    }

    fn block(&mut self, stmts: &[Stmt]) -> Result<(), CodegenError> {
        for s in stmts {
            match s {
                Stmt::Inst(i) => self.inst(i)?,
                Stmt::If { cond, then, otherwise } => {
                    let (t, f, end) = (self.label("then"), self.label("else"), self.label("endif"));
                    let c = self.operand(Operand::Reg(*cond), Ty::Pred);
                    self.line(format!("br i1 {c}, label %{t}, label %{f}"));
                    let _ = writeln!(self.body, "{t}:");
                    self.block(then)?;
                    self.line(format!("br label %{end}"));
                    let _ = writeln!(self.body, "{f}:");
                    self.block(otherwise)?;
                    self.line(format!("br label %{end}"));
                    let _ = writeln!(self.body, "{end}:");
                }
                Stmt::Loop { kind, body } => {
                    let (top, exit) = (self.label("loop"), self.label("endloop"));
                    match kind {
                        LoopKind::Count { index, count } => {
                            self.write(*index, "0".into(), 32);
                            // A constant trip count reaches LLVM through an opaque `mov`: knowing
                            // it, LLVM rewrites a two-trip loop's exit test as a phi of constants
                            // and SimplifyCFG threads the first trip out of the loop, duplicating
                            // its memory operations (and with a known count it may peel or
                            // unroll). The loop stays the kernel IR's loop.
                            let n = match *count {
                                Operand::Imm(c) => {
                                    let t = self.tmp();
                                    self.line(format!("{t} = call i32 asm \"mov.u32 $0, {};\", \"=r\"()", c as u32));
                                    t
                                }
                                _ => self.operand(*count, Ty::U32),
                            };
                            match *count {
                                // A constant count needs no entry test (and no predicate live
                                // across everything before the loop).
                                Operand::Imm(0) => self.line(format!("br label %{exit}")),
                                Operand::Imm(_) => self.line(format!("br label %{top}")),
                                _ => {
                                    let go = self.tmp();
                                    self.line(format!("{go} = icmp ugt i32 {n}, 0"));
                                    self.line(format!("br i1 {go}, label %{top}, label %{exit}"));
                                }
                            }
                            let _ = writeln!(self.body, "{top}:");
                            self.block(body)?;
                            let i = self.operand(Operand::Reg(*index), Ty::U32);
                            let j = self.tmp();
                            self.line(format!("{j} = add i32 {i}, 1"));
                            self.write(*index, j.clone(), 32);
                            let more = self.tmp();
                            self.line(format!("{more} = icmp ult i32 {j}, {n}"));
                            let id = self.loop_id();
                            self.line(format!("br i1 {more}, label %{top}, label %{exit}, !llvm.loop !{id}"));
                        }
                        LoopKind::While { cond } => {
                            self.line(format!("br label %{top}"));
                            let _ = writeln!(self.body, "{top}:");
                            self.block(body)?;
                            let c = self.operand(Operand::Reg(*cond), Ty::Pred);
                            let id = self.loop_id();
                            self.line(format!("br i1 {c}, label %{top}, label %{exit}, !llvm.loop !{id}"));
                        }
                    }
                    let _ = writeln!(self.body, "{exit}:");
                }
            }
        }
        Ok(())
    }

    /// The metadata id of a new loop's `!llvm.loop` node.
    fn loop_id(&mut self) -> usize {
        self.loops += 1;
        self.loops + 1
    }

    fn inst(&mut self, inst: &Inst) -> Result<(), CodegenError> {
        match *inst {
            Inst::Mov { dst, src } => {
                let ty = self.k.regs[dst.0 as usize];
                let v = self.operand(src, ty);
                self.write(dst, v, ty.bits());
            }
            Inst::Special { dst, reg } => {
                let name = lathe_kernel::text::special_name(reg);
                let v = self.call("i32", &format!("llvm.nvvm.read.ptx.sreg.{name}"), &[]);
                self.write(dst, v, 32);
            }
            Inst::Param { dst, index } => match &self.k.params[index] {
                Param::Buffer { .. } => {
                    let t = self.tmp();
                    self.line(format!("{t} = ptrtoint ptr addrspace(1) %p{index} to i64"));
                    self.write(dst, t, 64);
                }
                Param::Scalar { ty, .. } => {
                    let bits = ty.bits();
                    self.write(dst, format!("%p{index}"), bits);
                }
            },
            Inst::Unary { op, ty, dst, a } => {
                let x = self.operand(a, ty);
                let bits = ty.bits();
                let r = match (op, ty) {
                    (UnOp::Not, _) => {
                        let t = self.tmp();
                        self.line(format!("{t} = xor {} {x}, {}", int(bits), if bits == 1 { "true" } else { "-1" }));
                        t
                    }
                    (UnOp::Neg, Ty::F32) => {
                        let f = self.bits_as_float(x);
                        let t = self.tmp();
                        self.line(format!("{t} = fneg float {f}"));
                        self.float_as_bits(t)
                    }
                    (UnOp::Abs, Ty::F32) => {
                        let f = self.bits_as_float(x);
                        let t = self.call("float", "llvm.fabs.f32", &[("float", f)]);
                        self.float_as_bits(t)
                    }
                    (UnOp::Sqrt, _) => {
                        let f = self.bits_as_float(x);
                        let t = self.call("float", "llvm.sqrt.f32", &[("float", f)]);
                        self.float_as_bits(t)
                    }
                    (UnOp::Neg, _) => {
                        let t = self.tmp();
                        self.line(format!("{t} = sub {} 0, {x}", int(bits)));
                        t
                    }
                    (UnOp::Abs, _) => {
                        let it = int(bits);
                        self.call(it, &format!("llvm.abs.{it}"), &[(it, x), ("i1", "false".into())])
                    }
                };
                self.write(dst, r, bits);
            }
            Inst::Binary { op, ty, dst, a, b } => {
                let r = self.binary(op, ty, a, b)?;
                self.write(dst, r, ty.bits());
            }
            Inst::Fma { ty, dst, a, b, c } => {
                let r = if ty == Ty::F32 {
                    let (x, y, z) = (self.float(a), self.float(b), self.float(c));
                    let f = self.call("float", "llvm.fma.f32", &[("float", x), ("float", y), ("float", z)]);
                    self.float_as_bits(f)
                } else {
                    let it = int(ty.bits());
                    let (x, y, z) = (self.operand(a, ty), self.operand(b, ty), self.operand(c, ty));
                    let (p, s) = (self.tmp(), self.tmp());
                    self.line(format!("{p} = mul {it} {x}, {y}"));
                    self.line(format!("{s} = add {it} {p}, {z}"));
                    s
                };
                self.write(dst, r, ty.bits());
            }
            Inst::Setp { cmp, ty, dst, a, b } => {
                let t = self.tmp();
                if ty == Ty::F32 {
                    let (x, y) = (self.float(a), self.float(b));
                    // Ordered: every comparison with a NaN is false, `ne` included.
                    let c = match cmp {
                        Cmp::Eq => "oeq",
                        Cmp::Ne => "one",
                        Cmp::Lt => "olt",
                        Cmp::Le => "ole",
                        Cmp::Gt => "ogt",
                        Cmp::Ge => "oge",
                    };
                    self.line(format!("{t} = fcmp {c} float {x}, {y}"));
                } else {
                    let (x, y) = (self.operand(a, ty), self.operand(b, ty));
                    let s = ty.is_signed();
                    let c = match cmp {
                        Cmp::Eq => "eq",
                        Cmp::Ne => "ne",
                        Cmp::Lt if s => "slt",
                        Cmp::Le if s => "sle",
                        Cmp::Gt if s => "sgt",
                        Cmp::Ge if s => "sge",
                        Cmp::Lt => "ult",
                        Cmp::Le => "ule",
                        Cmp::Gt => "ugt",
                        Cmp::Ge => "uge",
                    };
                    self.line(format!("{t} = icmp {c} {} {x}, {y}", int(ty.bits())));
                }
                self.write(dst, t, 1);
            }
            Inst::Selp { ty, dst, a, b, p } => {
                let c = self.operand(Operand::Reg(p), Ty::Pred);
                let (x, y) = (self.operand(a, ty), self.operand(b, ty));
                let t = self.tmp();
                self.line(format!("{t} = select i1 {c}, {} {x}, {} {y}", int(ty.bits()), int(ty.bits())));
                self.write(dst, t, ty.bits());
            }
            Inst::Cvt { to, from, satfinite, dst, src, .. } => {
                let r = self.cvt(to, from, satfinite, src)?;
                self.write(dst, r, to.bits());
            }
            Inst::CvtPack { to, satfinite, dst, a, b } => {
                let (x, y) = (self.float(a), self.float(b));
                let sat = if satfinite { ".satfinite" } else { "" };
                let r = match to {
                    // The first source is the upper element, as in PTX's operand order.
                    Ty::E4m3x2 => self.call("i16", "llvm.nvvm.ff.to.e4m3x2.rn", &[("float", x), ("float", y)]),
                    Ty::E5m2x2 => self.call("i16", "llvm.nvvm.ff.to.e5m2x2.rn", &[("float", x), ("float", y)]),
                    Ty::F16x2 | Ty::Bf16x2 => {
                        let (name, vt) =
                            if to == Ty::F16x2 { ("ff2f16x2", "<2 x half>") } else { ("ff2bf16x2", "<2 x bfloat>") };
                        let v = self.call(vt, &format!("llvm.nvvm.{name}.rn{sat}"), &[("float", x), ("float", y)]);
                        let t = self.tmp();
                        self.line(format!("{t} = bitcast {vt} {v} to i32"));
                        t
                    }
                    _ => return Err(unsupported(format!("cvt pack to {}", to.name()))),
                };
                self.write(dst, r, to.bits());
            }
            Inst::Mufu { op, dst, a } => {
                let x = self.float(a);
                let f = match op {
                    Mufu::Ex2 => self.call("float", "llvm.nvvm.ex2.approx.f32", &[("float", x)]),
                    Mufu::Rsqrt => self.call("float", "llvm.nvvm.rsqrt.approx.f", &[("float", x)]),
                    // No intrinsic for these without .ftz: inline PTX.
                    Mufu::Rcp => self.asm("float", "rcp.approx.f32 $0, $1;", "=f,f", &[("float", x)]),
                    Mufu::Tanh => self.asm("float", "tanh.approx.f32 $0, $1;", "=f,f", &[("float", x)]),
                };
                let r = self.float_as_bits(f);
                self.write(dst, r, 32);
            }
            Inst::Ld { space, ty, ref dst, addr, offset, nc, hint } => {
                self.load(space, ty, dst, addr, offset, nc, hint)?
            }
            Inst::St { space, ty, ref src, addr, offset, hint } => self.store(space, ty, src, addr, offset, hint)?,
            Inst::Shfl { mode, dst, a, b, c, mask } => {
                let m = match mode {
                    ShflMode::Idx => "idx",
                    ShflMode::Up => "up",
                    ShflMode::Down => "down",
                    ShflMode::Bfly => "bfly",
                };
                let (x, y, z) = (self.operand(a, Ty::B32), self.operand(b, Ty::U32), self.operand(c, Ty::U32));
                let v = self.call(
                    "i32",
                    &format!("llvm.nvvm.shfl.sync.{m}.i32"),
                    &[("i32", constant(u64::from(mask), 32)), ("i32", x), ("i32", y), ("i32", z)],
                );
                self.write(dst, v, 32);
            }
            Inst::Bar => {
                self.call("void", "llvm.nvvm.barrier.cta.sync.aligned.all", &[("i32", "0".into())]);
            }
            Inst::BarWarp { mask } => {
                self.call("void", "llvm.nvvm.bar.warp.sync", &[("i32", constant(u64::from(mask), 32))]);
            }
            Inst::Vote { mode, dst, a, mask } => {
                let p = self.operand(Operand::Reg(a), Ty::Pred);
                let m = constant(u64::from(mask), 32);
                match mode {
                    VoteMode::Ballot => {
                        let v = self.call("i32", "llvm.nvvm.vote.ballot.sync", &[("i32", m), ("i1", p)]);
                        self.write(dst, v, 32);
                    }
                    VoteMode::All | VoteMode::Any => {
                        let name = if mode == VoteMode::All { "all" } else { "any" };
                        let v = self.call("i1", &format!("llvm.nvvm.vote.{name}.sync"), &[("i32", m), ("i1", p)]);
                        self.write(dst, v, 1);
                    }
                }
            }
            Inst::Redux { op, ty, dst, a, mask } => {
                let name = match (op, ty.is_signed()) {
                    (BinOp::Add, _) => "add",
                    (BinOp::Min, true) => "min",
                    (BinOp::Max, true) => "max",
                    (BinOp::Min, false) => "umin",
                    (BinOp::Max, false) => "umax",
                    (BinOp::And, _) => "and",
                    (BinOp::Or, _) => "or",
                    (BinOp::Xor, _) => "xor",
                    _ => return Err(unsupported(format!("redux.sync.{op:?}"))),
                };
                let x = self.operand(a, Ty::B32);
                let v = self.call(
                    "i32",
                    &format!("llvm.nvvm.redux.sync.{name}"),
                    &[("i32", x), ("i32", constant(u64::from(mask), 32))],
                );
                self.write(dst, v, 32);
            }
            Inst::Atom { space, op, ty, dst, addr, offset, src } => {
                let p = self.pointer(space, addr, offset)?;
                let pt = pointer_type(space);
                let scope = if space == Space::Shared { "block" } else { "device" };
                let align = ty.bytes();
                let v = self.operand(src, ty);
                let old = if ty == Ty::F32 && op == BinOp::Add {
                    let f = self.bits_as_float(v);
                    let t = self.tmp();
                    self.line(format!(
                        "{t} = atomicrmw fadd {pt} {p}, float {f} syncscope(\"{scope}\") monotonic, align {align}"
                    ));
                    self.float_as_bits(t)
                } else {
                    let rmw = match (op, ty.is_signed()) {
                        (BinOp::Add, _) => "add",
                        (BinOp::Max, true) => "max",
                        (BinOp::Max, false) => "umax",
                        _ => return Err(unsupported(format!("atom.{op:?}.{}", ty.name()))),
                    };
                    let t = self.tmp();
                    self.line(format!(
                        "{t} = atomicrmw {rmw} {pt} {p}, {} {v} syncscope(\"{scope}\") monotonic, align {align}",
                        int(ty.bits())
                    ));
                    t
                };
                if let Some(d) = dst {
                    self.write(d, old, ty.bits());
                }
            }
            Inst::Ldmatrix { trans, ref dst, addr, offset } => {
                let p = self.pointer(Space::Shared, addr, offset)?;
                let n = dst.len();
                let name =
                    format!("llvm.nvvm.ldmatrix.sync.aligned.m8n8.x{n}{}.b16", if trans { ".trans" } else { "" });
                if n == 1 {
                    let v = self.call("i32", &name, &[("ptr addrspace(3)", p)]);
                    self.write(dst[0], v, 32);
                } else {
                    let st = format!("{{{}}}", vec!["i32"; n].join(", "));
                    let v = self.call(&st, &name, &[("ptr addrspace(3)", p)]);
                    for (i, d) in dst.iter().enumerate() {
                        let e = self.tmp();
                        self.line(format!("{e} = extractvalue {st} {v}, {i}"));
                        self.write(*d, e, 32);
                    }
                }
            }
            Inst::Mma { shape, atype, btype, d, a, b, c } => self.mma(shape, atype, btype, d, a, b, c)?,
            Inst::CpAsync { cg, size, dst, dst_offset, src, src_offset, src_size } => {
                let d = self.pointer(Space::Shared, dst, dst_offset)?;
                let s = self.pointer(Space::Global, src, src_offset)?;
                let level = if cg { "cg" } else { "ca" };
                let mut args = vec![("ptr addrspace(3)", d), ("ptr addrspace(1)", s)];
                let suffix = match src_size {
                    Some(n) => {
                        args.push(("i32", self.operand(n, Ty::U32)));
                        ".s"
                    }
                    None => "",
                };
                self.call("void", &format!("llvm.nvvm.cp.async.{level}.shared.global.{size}{suffix}"), &args);
            }
            Inst::CpAsyncCommit => {
                self.call("void", "llvm.nvvm.cp.async.commit.group", &[]);
            }
            Inst::CpAsyncWait { n } => {
                self.call("void", "llvm.nvvm.cp.async.wait.group", &[("i32 immarg", n.to_string())]);
            }
            Inst::CpAsyncWaitAll => {
                self.call("void", "llvm.nvvm.cp.async.wait.all", &[]);
            }
            Inst::GridDepWait => {
                self.call("void", "llvm.nvvm.griddepcontrol.wait", &[]);
            }
            Inst::GridDepLaunchDependents => {
                self.call("void", "llvm.nvvm.griddepcontrol.launch.dependents", &[]);
            }
            Inst::Fence => self.line("fence syncscope(\"device\") acq_rel"),
            Inst::Prefetch { addr, offset } => {
                // LLVM's prefetch intrinsic has no eviction priority: inline PTX.
                let a = self.operand(addr, Ty::U64);
                self.asm("void", &format!("prefetch.global.L2::evict_last [$0+{offset}];"), "l", &[("i64", a)]);
            }
        }
        Ok(())
    }

    fn binary(&mut self, op: BinOp, ty: Ty, a: Operand, b: Operand) -> Result<String, CodegenError> {
        let bits = ty.bits();
        let it = int(bits);
        if ty == Ty::F32 {
            let (x, y) = (self.float(a), self.float(b));
            let f = match op {
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
                    // `fdiv` without fast-math flags is `div.rn.f32`, IEEE division.
                    let o = match op {
                        BinOp::Add => "fadd",
                        BinOp::Sub => "fsub",
                        BinOp::Div => "fdiv",
                        _ => "fmul",
                    };
                    let t = self.tmp();
                    self.line(format!("{t} = {o} float {x}, {y}"));
                    t
                }
                // PTX min/max.f32 return the other operand for one NaN: LLVM's minnum/maxnum.
                BinOp::Min => self.call("float", "llvm.minnum.f32", &[("float", x), ("float", y)]),
                BinOp::Max => self.call("float", "llvm.maxnum.f32", &[("float", x), ("float", y)]),
                _ => return Err(unsupported(format!("{op:?}.f32"))),
            };
            return Ok(self.float_as_bits(f));
        }
        let x = self.operand(a, ty);
        if matches!(op, BinOp::Shl | BinOp::Shr) {
            // The amount is a u32; amounts of the width or more give 0 (the sign for `shr.s`).
            let n = self.operand(b, Ty::U32);
            let n = self.resize(n, 32, bits);
            let w = constant(u64::from(bits), bits);
            let t = self.tmp();
            if op == BinOp::Shr && ty.is_signed() {
                let c =
                    self.call(it, &format!("llvm.umin.{it}"), &[(it, n), (it, constant(u64::from(bits - 1), bits))]);
                self.line(format!("{t} = ashr {it} {x}, {c}"));
                return Ok(t);
            }
            let o = if op == BinOp::Shl { "shl" } else { "lshr" };
            let (big, s) = (self.tmp(), self.tmp());
            self.line(format!("{big} = icmp uge {it} {n}, {w}"));
            self.line(format!("{s} = {o} {it} {x}, {n}"));
            self.line(format!("{t} = select i1 {big}, {it} 0, {it} {s}"));
            return Ok(t);
        }
        let y = self.operand(b, ty);
        let s = ty.is_signed();
        let simple = match op {
            BinOp::Add => Some("add"),
            BinOp::Sub => Some("sub"),
            BinOp::Mul => Some("mul"),
            BinOp::Div => Some(if s { "sdiv" } else { "udiv" }),
            BinOp::Rem => Some(if s { "srem" } else { "urem" }),
            BinOp::And => Some("and"),
            BinOp::Or => Some("or"),
            BinOp::Xor => Some("xor"),
            _ => None,
        };
        if let Some(o) = simple {
            let t = self.tmp();
            self.line(format!("{t} = {o} {it} {x}, {y}"));
            return Ok(t);
        }
        let f = match (op, s) {
            (BinOp::Min, true) => "smin",
            (BinOp::Min, false) => "umin",
            (BinOp::Max, true) => "smax",
            (BinOp::Max, false) => "umax",
            _ => return Err(unsupported(format!("{op:?}.{}", ty.name()))),
        };
        Ok(self.call(it, &format!("llvm.{f}.{it}"), &[(it, x), (it, y)]))
    }

    fn cvt(&mut self, to: Ty, from: Ty, satfinite: bool, src: Operand) -> Result<String, CodegenError> {
        let kind = convert_kind(to, from).ok_or_else(|| unsupported(format!("cvt.{}.{}", to.name(), from.name())))?;
        let x = self.operand(src, from);
        let (fb, tb) = (from.bits(), to.bits());
        Ok(match kind {
            ConvertKind::IntInt => {
                if fb == tb {
                    x
                } else {
                    let op = if fb > tb {
                        "trunc"
                    } else if from.is_signed() {
                        "sext"
                    } else {
                        "zext"
                    };
                    let t = self.tmp();
                    self.line(format!("{t} = {op} {} {x} to {}", int(fb), int(tb)));
                    t
                }
            }
            ConvertKind::IntF32 => {
                let op = if from.is_signed() { "sitofp" } else { "uitofp" };
                let t = self.tmp();
                self.line(format!("{t} = {op} {} {x} to float", int(fb)));
                self.float_as_bits(t)
            }
            ConvertKind::F32Int => {
                // `.rzi`, saturating, NaN to 0: LLVM's saturating conversions.
                let f = self.bits_as_float(x);
                let it = int(tb);
                let op = if to.is_signed() { "fptosi" } else { "fptoui" };
                self.call(it, &format!("llvm.{op}.sat.{it}.f32"), &[("float", f)])
            }
            ConvertKind::F32Narrow => {
                let mut f = self.bits_as_float(x);
                let (ft, max) = if to == Ty::F16 { ("half", 0x7bffu32) } else { ("bfloat", 0x7f7f) };
                if satfinite {
                    // Infinities become ±f32::MAX before rounding, which then saturates below.
                    let (inf, sgn) = (self.tmp(), self.tmp());
                    let a = self.call("float", "llvm.fabs.f32", &[("float", f.clone())]);
                    self.line(format!("{inf} = fcmp oeq float {a}, 0x7FF0000000000000"));
                    let big = self.call(
                        "float",
                        "llvm.copysign.f32",
                        &[("float", "0x47EFFFFFE0000000".into()), ("float", f.clone())],
                    );
                    self.line(format!("{sgn} = select i1 {inf}, float {big}, float {f}"));
                    f = sgn;
                }
                let (h, b) = (self.tmp(), self.tmp());
                self.line(format!("{h} = fptrunc float {f} to {ft}"));
                self.line(format!("{b} = bitcast {ft} {h} to i16"));
                if satfinite {
                    // A finite value beyond the narrow format's range is its largest finite value;
                    // NaN stays NaN.
                    let (nan, mag, clamped, sign, out) = (self.tmp(), self.tmp(), self.tmp(), self.tmp(), self.tmp());
                    self.line(format!("{nan} = fcmp uno float {f}, 0.0"));
                    self.line(format!("{mag} = and i16 {b}, 32767"));
                    let m = self.call("i16", "llvm.umin.i16", &[("i16", mag), ("i16", max.to_string())]);
                    self.line(format!("{sign} = and i16 {b}, -32768"));
                    self.line(format!("{clamped} = or i16 {sign}, {m}"));
                    self.line(format!("{out} = select i1 {nan}, i16 {b}, i16 {clamped}"));
                    out
                } else {
                    b
                }
            }
            ConvertKind::NarrowF32 => {
                let ft = if from == Ty::F16 { "half" } else { "bfloat" };
                let (h, f) = (self.tmp(), self.tmp());
                self.line(format!("{h} = bitcast i16 {x} to {ft}"));
                self.line(format!("{f} = fpext {ft} {h} to float"));
                self.float_as_bits(f)
            }
            ConvertKind::Fp8x2F16x2 => {
                let name = if from == Ty::E4m3x2 { "e4m3x2" } else { "e5m2x2" };
                let v = self.call("<2 x half>", &format!("llvm.nvvm.{name}.to.f16x2.rn"), &[("i16", x)]);
                let t = self.tmp();
                self.line(format!("{t} = bitcast <2 x half> {v} to i32"));
                t
            }
        })
    }

    /// A pointer to `addr + offset` in `space`.
    fn pointer(&mut self, space: Space, addr: Operand, offset: i64) -> Result<String, CodegenError> {
        let a = self.operand(addr, Ty::U64);
        let a = if offset != 0 {
            let t = self.tmp();
            self.line(format!("{t} = add i64 {a}, {offset}"));
            t
        } else {
            a
        };
        let t = self.tmp();
        match space {
            Space::Global => self.line(format!("{t} = inttoptr i64 {a} to ptr addrspace(1)")),
            Space::Shared => self.line(format!("{t} = getelementptr i8, ptr addrspace(3) @{SHARED}, i64 {a}")),
            Space::Local => self.line(format!("{t} = getelementptr i8, ptr %local, i64 {a}")),
        }
        Ok(t)
    }

    #[allow(clippy::too_many_arguments)]
    fn load(
        &mut self,
        space: Space,
        ty: Ty,
        dst: &[Reg],
        addr: Operand,
        offset: i64,
        nc: bool,
        hint: Option<CacheHint>,
    ) -> Result<(), CodegenError> {
        let bits = ty.bits();
        let n = dst.len();
        if let Some(h) = hint {
            // LLVM has no cache operators or eviction priorities on loads: inline PTX.
            let a = self.operand(addr, Ty::U64);
            let vec = if n > 1 { format!(".v{n}") } else { String::new() };
            let outs: Vec<String> = (0..n).map(|i| format!("${i}")).collect();
            let outs = if n > 1 { format!("{{{}}}", outs.join(", ")) } else { outs[0].clone() };
            let (cop, evict) = if h.is_eviction_priority() {
                (String::new(), format!(".{}", h.name()))
            } else {
                (format!(".{}", h.name()), String::new())
            };
            let asm =
                format!("ld.global{cop}{}{evict}{vec}.b{bits} {outs}, [${n}+{offset}];", if nc { ".nc" } else { "" });
            let c = reg_constraint(bits);
            let mut cons: Vec<String> = (0..n).map(|_| format!("={c}")).collect();
            cons.push("l".into());
            let ret = if n > 1 { format!("{{{}}}", vec![int(bits); n].join(", ")) } else { int(bits).to_string() };
            let v = self.asm(&ret, &asm, &cons.join(","), &[("i64", a)]);
            for (i, d) in dst.iter().enumerate() {
                let e = if n > 1 {
                    let e = self.tmp();
                    self.line(format!("{e} = extractvalue {ret} {v}, {i}"));
                    e
                } else {
                    v.clone()
                };
                self.write(*d, e, bits);
            }
            return Ok(());
        }
        let p = self.pointer(space, addr, offset)?;
        let pt = pointer_type(space);
        let align = u64::from(ty.bytes()) * n as u64;
        let inv = if nc && space == Space::Global {
            self.invariant = true;
            ", !invariant.load !0"
        } else {
            ""
        };
        if n == 1 {
            let t = self.tmp();
            self.line(format!("{t} = load {}, {pt} {p}, align {align}{inv}", int(bits)));
            self.write(dst[0], t, bits);
        } else {
            let vt = format!("<{n} x {}>", int(bits));
            let v = self.tmp();
            self.line(format!("{v} = load {vt}, {pt} {p}, align {align}{inv}"));
            for (i, d) in dst.iter().enumerate() {
                let e = self.tmp();
                self.line(format!("{e} = extractelement {vt} {v}, i32 {i}"));
                self.write(*d, e, bits);
            }
        }
        Ok(())
    }

    fn store(
        &mut self,
        space: Space,
        ty: Ty,
        src: &[Operand],
        addr: Operand,
        offset: i64,
        hint: Option<CacheHint>,
    ) -> Result<(), CodegenError> {
        let bits = ty.bits();
        let n = src.len();
        let vals: Vec<String> = src.iter().map(|o| self.operand(*o, ty)).collect();
        if let Some(h) = hint {
            let a = self.operand(addr, Ty::U64);
            let vec = if n > 1 { format!(".v{n}") } else { String::new() };
            let ins: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
            let ins = if n > 1 { format!("{{{}}}", ins.join(", ")) } else { ins[0].clone() };
            let asm = format!("st.global.{}{vec}.b{bits} [$0+{offset}], {ins};", h.name());
            let c = reg_constraint(bits);
            let mut cons = vec!["l".to_string()];
            cons.extend((0..n).map(|_| c.to_string()));
            cons.push("~{memory}".into());
            let mut args = vec![("i64", a)];
            args.extend(vals.into_iter().map(|v| (int(bits), v)));
            self.asm("void", &asm, &cons.join(","), &args);
            return Ok(());
        }
        let p = self.pointer(space, addr, offset)?;
        let pt = pointer_type(space);
        let align = u64::from(ty.bytes()) * n as u64;
        if n == 1 {
            self.line(format!("store {} {}, {pt} {p}, align {align}", int(bits), vals[0]));
        } else {
            let vt = format!("<{n} x {}>", int(bits));
            let mut v = "poison".to_string();
            for (i, x) in vals.iter().enumerate() {
                let t = self.tmp();
                self.line(format!("{t} = insertelement {vt} {v}, {} {x}, i32 {i}", int(bits)));
                v = t;
            }
            self.line(format!("store {vt} {v}, {pt} {p}, align {align}"));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn mma(
        &mut self,
        shape: MmaShape,
        atype: MmaElem,
        btype: MmaElem,
        d: [Reg; 4],
        a: [Reg; 4],
        b: [Reg; 2],
        c: [Operand; 4],
    ) -> Result<(), CodegenError> {
        let (name, frag) = match (shape, atype, btype) {
            (MmaShape::M16n8k16, MmaElem::Bf16, MmaElem::Bf16) => {
                ("llvm.nvvm.mma.m16n8k16.row.col.bf16".to_string(), "i32")
            }
            (MmaShape::M16n8k16, MmaElem::F16, MmaElem::F16) => {
                ("llvm.nvvm.mma.m16n8k16.row.col.f32.f32".to_string(), "<2 x half>")
            }
            (MmaShape::M16n8k32, x, y) if x.bits() == 8 && y.bits() == 8 => {
                (format!("llvm.nvvm.mma.m16n8k32.row.col.f32.{}.{}.f32", x.name(), y.name()), "i32")
            }
            _ => return Err(unsupported(format!("mma {} {} {}", shape.name(), atype.name(), btype.name()))),
        };
        let mut args: Vec<(&str, String)> = Vec::new();
        for r in a.iter().chain(&b) {
            let v = self.operand(Operand::Reg(*r), Ty::B32);
            let v = if frag == "i32" {
                v
            } else {
                let t = self.tmp();
                self.line(format!("{t} = bitcast i32 {v} to {frag}"));
                t
            };
            args.push((frag, v));
        }
        for o in c {
            let f = self.float(o);
            args.push(("float", f));
        }
        let st = "{float, float, float, float}";
        let v = self.call(st, &name, &args);
        for (i, r) in d.iter().enumerate() {
            let (e, bits) = (self.tmp(), self.tmp());
            self.line(format!("{e} = extractvalue {st} {v}, {i}"));
            self.line(format!("{bits} = bitcast float {e} to i32"));
            self.write(*r, bits, 32);
        }
        Ok(())
    }
}

fn pointer_type(space: Space) -> &'static str {
    match space {
        Space::Global => "ptr addrspace(1)",
        Space::Shared => "ptr addrspace(3)",
        _ => "ptr",
    }
}

/// The inline-asm register constraint of an integer of `bits` bits.
fn reg_constraint(bits: u32) -> &'static str {
    match bits {
        16 => "h",
        64 => "l",
        _ => "r",
    }
}
