//! The printer: one line per declaration and statement, immediates as hex bits.

use std::fmt;

use super::{name_of, special_name, ACCESSES, BINOPS, CMPS, MODES, MUFUS, ROUNDINGS, UNOPS};
use crate::ir::{Inst, Kernel, LoopKind, Operand, Param, Reg, Stmt};
use crate::verify::ld_modifiers;

/// The kernel as text (see the module documentation for the grammar).
pub fn print(k: &Kernel) -> String {
    Printed(k).to_string()
}

struct Printed<'k>(&'k Kernel);

/// A word the lexer reads back as one token (otherwise the name is quoted).
fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

struct Quoted<'s>(&'s str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

struct Op(Operand);

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Operand::Reg(r) => write!(f, "%r{}", r.0),
            Operand::Imm(bits) => write!(f, "{bits:#x}"),
        }
    }
}

/// `%r1` for one value, `{%r1, %r2}` for any other count.
fn list(items: &[Operand]) -> String {
    if let [one] = items {
        return Op(*one).to_string();
    }
    let inner: Vec<String> = items.iter().map(|o| Op(*o).to_string()).collect();
    format!("{{{}}}", inner.join(", "))
}

fn vec_suffix(n: usize) -> String {
    if n == 1 {
        String::new()
    } else {
        format!(".v{n}")
    }
}

fn addr(a: Operand, offset: i64) -> String {
    match offset {
        0 => format!("[{}]", Op(a)),
        o if o > 0 => format!("[{} + {o}]", Op(a)),
        o => format!("[{} - {}]", Op(a), o.unsigned_abs()),
    }
}

impl fmt::Display for Printed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.0;
        f.write_str("kernel @")?;
        if is_word(&k.name) {
            f.write_str(&k.name)?;
        } else {
            write!(f, "{}", Quoted(&k.name))?;
        }
        writeln!(f, " max_threads={} shared={} local={} {{", k.max_threads, k.shared_bytes, k.local_bytes)?;
        for (i, p) in k.params.iter().enumerate() {
            match p {
                Param::Buffer { name, elem, align, access } => writeln!(
                    f,
                    "  param %p{i} : buffer {} align={align} {} {}",
                    elem.name(),
                    name_of(&ACCESSES, *access),
                    Quoted(name)
                )?,
                Param::Scalar { name, ty } => writeln!(f, "  param %p{i} : scalar {} {}", ty.name(), Quoted(name))?,
            }
        }
        // Runs of registers of one type share a line (at most 8, to stay readable).
        let mut i = 0;
        while i < k.regs.len() {
            let ty = k.regs[i];
            let run = k.regs[i..].iter().take(8).take_while(|t| **t == ty).count().max(1);
            let names: Vec<String> = (i..i + run).map(|r| format!("%r{r}")).collect();
            writeln!(f, "  reg {} : {}", names.join(", "), ty.name())?;
            i += run;
        }
        block(f, &k.body, 1)?;
        writeln!(f, "}}")
    }
}

fn block(f: &mut fmt::Formatter<'_>, stmts: &[Stmt], depth: usize) -> fmt::Result {
    let pad = "  ".repeat(depth);
    for s in stmts {
        match s {
            Stmt::Inst(i) => writeln!(f, "{pad}{}", inst(i))?,
            Stmt::If { cond, then, otherwise } => {
                writeln!(f, "{pad}if %r{} {{", cond.0)?;
                block(f, then, depth + 1)?;
                if otherwise.is_empty() {
                    writeln!(f, "{pad}}}")?;
                } else {
                    writeln!(f, "{pad}}} else {{")?;
                    block(f, otherwise, depth + 1)?;
                    writeln!(f, "{pad}}}")?;
                }
            }
            Stmt::Loop { kind: LoopKind::Count { index, count }, body } => {
                writeln!(f, "{pad}for %r{} in 0..{} {{", index.0, Op(*count))?;
                block(f, body, depth + 1)?;
                writeln!(f, "{pad}}}")?;
            }
            Stmt::Loop { kind: LoopKind::While { cond }, body } => {
                writeln!(f, "{pad}do {{")?;
                block(f, body, depth + 1)?;
                writeln!(f, "{pad}}} while %r{}", cond.0)?;
            }
        }
    }
    Ok(())
}

/// One instruction's line (without indentation).
fn inst(i: &Inst) -> String {
    let r = |r: &Reg| format!("%r{}", r.0);
    let o = |o: &Operand| Op(*o).to_string();
    match i {
        Inst::Mov { dst, src } => format!("{} = mov {}", r(dst), o(src)),
        Inst::Special { dst, reg } => format!("{} = mov.special %{}", r(dst), special_name(*reg)),
        Inst::Param { dst, index } => format!("{} = ld.param %p{index}", r(dst)),
        Inst::Unary { op, ty, dst, a } => format!("{} = {}.{} {}", r(dst), name_of(&UNOPS, *op), ty.name(), o(a)),
        Inst::Binary { op, ty, dst, a, b } => {
            format!("{} = {}.{} {}, {}", r(dst), name_of(&BINOPS, *op), ty.name(), o(a), o(b))
        }
        Inst::Fma { ty, dst, a, b, c } => format!("{} = fma.{} {}, {}, {}", r(dst), ty.name(), o(a), o(b), o(c)),
        Inst::Setp { cmp, ty, dst, a, b } => {
            format!("{} = setp.{}.{} {}, {}", r(dst), name_of(&CMPS, *cmp), ty.name(), o(a), o(b))
        }
        Inst::Selp { ty, dst, a, b, p } => format!("{} = selp.{} {}, {}, {}", r(dst), ty.name(), o(a), o(b), r(p)),
        Inst::Cvt { to, from, rounding, satfinite, dst, src } => {
            let rnd = rounding.map_or(String::new(), |x| format!(".{}", name_of(&ROUNDINGS, x)));
            let sat = if *satfinite { ".satfinite" } else { "" };
            format!("{} = cvt{rnd}{sat}.{}.{} {}", r(dst), to.name(), from.name(), o(src))
        }
        Inst::CvtPack { to, satfinite, dst, a, b } => {
            let sat = if *satfinite { ".satfinite" } else { "" };
            format!("{} = cvt.rn{sat}.{}.f32 {}, {}", r(dst), to.name(), o(a), o(b))
        }
        Inst::Mufu { op, dst, a } => format!("{} = {}.approx.f32 {}", r(dst), name_of(&MUFUS, *op), o(a)),
        // The verifier's names, but with `.v0` for an empty vector, so that it reads back.
        Inst::Ld { space, ty, dst, addr: a, offset, nc, hint } => {
            let dsts: Vec<Operand> = dst.iter().map(|d| Operand::Reg(*d)).collect();
            format!(
                "{} = ld.{}{}{}.{} {}",
                list(&dsts),
                space.name(),
                ld_modifiers(*nc, *hint),
                vec_suffix(dst.len()),
                ty.name(),
                addr(*a, *offset)
            )
        }
        Inst::St { space, ty, src, addr: a, offset, hint } => {
            let h = hint.map_or(String::new(), |h| format!(".{}", h.name()));
            format!(
                "st.{}{h}{}.{} {}, {}",
                space.name(),
                vec_suffix(src.len()),
                ty.name(),
                addr(*a, *offset),
                list(src)
            )
        }
        Inst::Shfl { mode, dst, a, b, c, mask } => {
            format!("{} = shfl.sync.{}.b32 {}, {}, {}, {mask:#x}", r(dst), name_of(&MODES, *mode), o(a), o(b), o(c))
        }
        Inst::Bar => "bar.sync".into(),
        Inst::BarWarp { mask } => format!("bar.warp.sync {mask:#x}"),
        Inst::Ldmatrix { dst, addr: a, offset, .. } => {
            let dsts: Vec<Operand> = dst.iter().map(|d| Operand::Reg(*d)).collect();
            format!("{} = {} {}", list(&dsts), crate::verify::inst_name(i), addr(*a, *offset))
        }
        Inst::Mma { d, a, b, c, .. } => {
            let regs = |rs: &[Reg]| rs.iter().map(|x| Operand::Reg(*x)).collect::<Vec<_>>();
            format!(
                "{} = {} {}, {}, {}",
                list(&regs(d)),
                crate::verify::inst_name(i),
                list(&regs(a)),
                list(&regs(b)),
                list(c)
            )
        }
        Inst::Atom { dst, addr: a, offset, src, .. } => {
            let line = format!("{} {}, {}", crate::verify::inst_name(i), addr(*a, *offset), o(src));
            match dst {
                Some(d) => format!("{} = {line}", r(d)),
                None => line,
            }
        }
        Inst::CpAsync { size, dst, dst_offset, src, src_offset, src_size, .. } => {
            let tail = src_size.map_or(String::new(), |n| format!(", {}", o(&n)));
            format!(
                "{} {}, {}, {size}{tail}",
                crate::verify::inst_name(i),
                addr(*dst, *dst_offset),
                addr(*src, *src_offset)
            )
        }
        Inst::CpAsyncCommit
        | Inst::CpAsyncWaitAll
        | Inst::GridDepWait
        | Inst::GridDepLaunchDependents
        | Inst::Fence => crate::verify::inst_name(i),
        Inst::CpAsyncWait { n } => format!("cp.async.wait_group {n}"),
        Inst::Prefetch { addr: a, offset } => format!("{} {}", crate::verify::inst_name(i), addr(*a, *offset)),
        Inst::Vote { dst, a, mask, .. } => format!("{} = {} {}, {mask:#x}", r(dst), crate::verify::inst_name(i), r(a)),
        Inst::Redux { dst, a, mask, .. } => format!("{} = {} {}, {mask:#x}", r(dst), crate::verify::inst_name(i), o(a)),
    }
}
