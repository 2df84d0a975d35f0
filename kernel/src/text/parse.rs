//! The parser: recursive descent over lines, with the nesting depth carried down so that it
//! stops at [`MAX_NESTING`](super::MAX_NESTING).

use lathe_numerics::float::{bf16_bits_to_f32, f16_bits_to_f32, f32_to_bf16_bits, f32_to_f16_bits};
use lathe_numerics::DType;

use super::lex::{err_at, Lexer, Res, Tok, Token};
use super::{
    from_name, special_from_name, TextError, ACCESSES, BINOPS, CMPS, MAX_INPUT_BYTES, MAX_NESTING, MODES, MUFUS,
    ROUNDINGS, SPACES, UNOPS,
};
use crate::ir::{
    BinOp, CacheHint, Inst, Kernel, LoopKind, MmaElem, MmaShape, Operand, Param, Reg, Space, Stmt, Ty, VoteMode,
};

/// Reads kernel text (see the module documentation for the grammar).
pub fn parse(text: &str) -> Result<Kernel, TextError> {
    if text.len() > MAX_INPUT_BYTES {
        return err_at(1, 1, format!("input of {} bytes is above the limit of {MAX_INPUT_BYTES}", text.len()));
    }
    let mut p = Parser { lex: Lexer::new(text), peeked: None, regs: Vec::new() };
    p.kernel()
}

struct Parser<'a> {
    lex: Lexer<'a>,
    peeked: Option<Token>,
    /// The register types declared so far (for decimal literals of `mov`).
    regs: Vec<Ty>,
}

/// The destinations written left of `=`.
enum Dsts {
    None,
    One(Reg),
    List(Vec<Reg>),
}

impl Parser<'_> {
    fn peek(&mut self) -> Res<&Token> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex.next()?);
        }
        match &self.peeked {
            Some(t) => Ok(t),
            None => err_at(self.lex.line, self.lex.col, "internal: no token"),
        }
    }

    fn next(&mut self) -> Res<Token> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex.next(),
        }
    }

    fn unexpected<T>(t: &Token, want: &str) -> Res<T> {
        err_at(t.line, t.col, format!("expected {want}, found {}", t.tok.describe()))
    }

    fn punct(&mut self, c: char) -> Res<Token> {
        let t = self.next()?;
        if t.tok == Tok::Punct(c) {
            Ok(t)
        } else {
            Self::unexpected(&t, &format!("`{c}`"))
        }
    }

    fn is_punct(&mut self, c: char) -> Res<bool> {
        Ok(self.peek()?.tok == Tok::Punct(c))
    }

    fn is_word(&mut self, w: &str) -> Res<bool> {
        Ok(matches!(&self.peek()?.tok, Tok::Word(x) if x == w))
    }

    fn keyword(&mut self, w: &str) -> Res<()> {
        let t = self.next()?;
        match &t.tok {
            Tok::Word(x) if x == w => Ok(()),
            _ => Self::unexpected(&t, &format!("`{w}`")),
        }
    }

    fn word(&mut self, what: &str) -> Res<(String, Token)> {
        let t = self.next()?;
        match &t.tok {
            Tok::Word(w) => Ok((w.clone(), t)),
            _ => Self::unexpected(&t, what),
        }
    }

    /// `name=` and an unsigned integer.
    fn attr(&mut self, name: &str) -> Res<u32> {
        self.keyword(name)?;
        self.punct('=')?;
        let t = self.next()?;
        self.uint(&t, u64::from(u32::MAX)).map(|v| v as u32)
    }

    /// An unsigned integer literal of at most `max`.
    fn uint(&mut self, t: &Token, max: u64) -> Res<u64> {
        let Tok::Num(n) = &t.tok else { return Self::unexpected(t, "an integer") };
        match int_literal(n) {
            Some(v) if v <= max => Ok(v),
            Some(_) => err_at(t.line, t.col, format!("{n} is above {max}")),
            None => err_at(t.line, t.col, format!("`{n}` is not an integer literal")),
        }
    }

    fn end_line(&mut self) -> Res<()> {
        let t = self.peek()?;
        match t.tok {
            Tok::Newline => {
                self.next()?;
                Ok(())
            }
            Tok::Eof => Ok(()),
            _ => {
                let t = t.clone();
                Self::unexpected(&t, "end of line")
            }
        }
    }

    fn skip_newlines(&mut self) -> Res<()> {
        while self.peek()?.tok == Tok::Newline {
            self.next()?;
        }
        Ok(())
    }

    /// `%pN` (`N` checked by the caller).
    fn param_ref(&mut self) -> Res<(usize, Token)> {
        let t = self.next()?;
        if let Tok::Pct(w) = &t.tok {
            if let Some(i) = w.strip_prefix('p').and_then(decimal) {
                if let Ok(i) = usize::try_from(i) {
                    return Ok((i, t));
                }
            }
        }
        Self::unexpected(&t, "a parameter `%pN`")
    }

    fn reg(&mut self) -> Res<Reg> {
        let t = self.next()?;
        Self::reg_of(&t)
    }

    fn reg_of(t: &Token) -> Res<Reg> {
        if let Tok::Pct(w) = &t.tok {
            if let Some(n) = w.strip_prefix('r').and_then(decimal) {
                return match u32::try_from(n) {
                    Ok(n) => Ok(Reg(n)),
                    Err(_) => err_at(t.line, t.col, format!("register number {n} is above {}", u32::MAX)),
                };
            }
        }
        Self::unexpected(t, "a register `%rN`")
    }

    fn ty(&mut self) -> Res<Ty> {
        let (w, t) = self.word("a type")?;
        Ty::from_name(&w).map_or_else(|| err_at(t.line, t.col, format!("unknown type `{w}`")), Ok)
    }

    fn kernel(&mut self) -> Res<Kernel> {
        self.skip_newlines()?;
        self.keyword("kernel")?;
        self.punct('@')?;
        let t = self.next()?;
        let name = match t.tok {
            Tok::Word(w) | Tok::Str(w) => w,
            _ => return Self::unexpected(&t, "the kernel's name"),
        };
        let max_threads = self.attr("max_threads")?;
        let shared_bytes = self.attr("shared")?;
        let local_bytes = self.attr("local")?;
        self.punct('{')?;
        self.end_line()?;
        let mut params = Vec::new();
        loop {
            self.skip_newlines()?;
            if self.is_word("param")? {
                self.next()?;
                params.push(self.param(params.len())?);
            } else if self.is_word("reg")? {
                self.next()?;
                self.reg_decl()?;
            } else {
                break;
            }
            self.end_line()?;
        }
        let body = self.block(0)?;
        self.skip_newlines()?;
        let t = self.next()?;
        if t.tok != Tok::Eof {
            return Self::unexpected(&t, "end of input after the kernel");
        }
        Ok(Kernel { name, params, max_threads, shared_bytes, local_bytes, regs: std::mem::take(&mut self.regs), body })
    }

    fn param(&mut self, index: usize) -> Res<Param> {
        let (i, t) = self.param_ref()?;
        if i != index {
            return err_at(t.line, t.col, format!("expected parameter %p{index} (parameters are numbered in order)"));
        }
        self.punct(':')?;
        let (kind, t) = self.word("`buffer` or `scalar`")?;
        match kind.as_str() {
            "buffer" => {
                let (d, dt) = self.word("an element type")?;
                let elem =
                    DType::from_name(&d).map_or_else(|| err_at(dt.line, dt.col, format!("unknown dtype `{d}`")), Ok)?;
                let align = self.attr("align")?;
                let (a, at) = self.word("`readonly` or `written`")?;
                let access = from_name(&ACCESSES, &a).map_or_else(
                    || err_at(at.line, at.col, format!("expected `readonly` or `written`, found `{a}`")),
                    Ok,
                )?;
                let name = self.string()?;
                Ok(Param::Buffer { name, elem, align, access })
            }
            "scalar" => {
                let ty = self.ty()?;
                let name = self.string()?;
                Ok(Param::Scalar { name, ty })
            }
            _ => err_at(t.line, t.col, format!("expected `buffer` or `scalar`, found `{kind}`")),
        }
    }

    fn string(&mut self) -> Res<String> {
        let t = self.next()?;
        match t.tok {
            Tok::Str(s) => Ok(s),
            _ => Self::unexpected(&t, "a quoted name"),
        }
    }

    fn reg_decl(&mut self) -> Res<()> {
        let mut n = 0;
        loop {
            let t = self.next()?;
            let r = Self::reg_of(&t)?;
            let want = self.regs.len() + n;
            if r.0 as usize != want {
                return err_at(t.line, t.col, format!("expected register %r{want} (registers are declared in order)"));
            }
            n += 1;
            if !self.is_punct(',')? {
                break;
            }
            self.next()?;
        }
        self.punct(':')?;
        let ty = self.ty()?;
        self.regs.extend(std::iter::repeat_n(ty, n));
        Ok(())
    }

    /// Statements up to the closing `}` (consumed); `depth` constructs enclose them.
    fn block(&mut self, depth: usize) -> Res<Vec<Stmt>> {
        let mut out = Vec::new();
        loop {
            self.skip_newlines()?;
            let t = self.peek()?.clone();
            match &t.tok {
                Tok::Punct('}') => {
                    self.next()?;
                    return Ok(out);
                }
                Tok::Eof => return Self::unexpected(&t, "`}`"),
                _ => {}
            }
            out.push(self.stmt(depth)?);
            self.end_line()?;
        }
    }

    /// `{`, end of line, and the nested block.
    fn nested(&mut self, depth: usize) -> Res<Vec<Stmt>> {
        let t = self.punct('{')?;
        if depth >= MAX_NESTING {
            return err_at(t.line, t.col, format!("constructs nest deeper than {MAX_NESTING}"));
        }
        self.end_line()?;
        self.block(depth + 1)
    }

    fn stmt(&mut self, depth: usize) -> Res<Stmt> {
        let t = self.next()?;
        match &t.tok {
            Tok::Word(w) if w == "if" => {
                let cond = self.reg()?;
                let then = self.nested(depth)?;
                let otherwise = if self.is_word("else")? {
                    self.next()?;
                    self.nested(depth)?
                } else {
                    Vec::new()
                };
                Ok(Stmt::If { cond, then, otherwise })
            }
            Tok::Word(w) if w == "for" => {
                let index = self.reg()?;
                self.keyword("in")?;
                let z = self.next()?;
                self.uint(&z, 0)?;
                let d = self.next()?;
                if d.tok != Tok::DotDot {
                    return Self::unexpected(&d, "`..`");
                }
                let count = self.operand(Some(Ty::U32))?;
                let body = self.nested(depth)?;
                Ok(Stmt::Loop { kind: LoopKind::Count { index, count }, body })
            }
            Tok::Word(w) if w == "do" => {
                let body = self.nested(depth)?;
                self.keyword("while")?;
                let cond = self.reg()?;
                Ok(Stmt::Loop { kind: LoopKind::While { cond }, body })
            }
            Tok::Word(m) => self.inst(Dsts::None, m, &t).map(Stmt::Inst),
            Tok::Pct(_) => {
                let dst = Self::reg_of(&t)?;
                self.punct('=')?;
                let (m, mt) = self.word("an instruction")?;
                self.inst(Dsts::One(dst), &m, &mt).map(Stmt::Inst)
            }
            Tok::Punct('{') => {
                let mut regs = Vec::new();
                if !self.is_punct('}')? {
                    loop {
                        regs.push(self.reg()?);
                        if !self.is_punct(',')? {
                            break;
                        }
                        self.next()?;
                    }
                }
                self.punct('}')?;
                self.punct('=')?;
                let (m, mt) = self.word("an instruction")?;
                self.inst(Dsts::List(regs), &m, &mt).map(Stmt::Inst)
            }
            _ => Self::unexpected(&t, "a statement"),
        }
    }

    /// A register or an immediate read at type `ty` (`None`: integers only, 64-bit).
    fn operand(&mut self, ty: Option<Ty>) -> Res<Operand> {
        let t = self.next()?;
        match &t.tok {
            Tok::Pct(_) => Self::reg_of(&t).map(Operand::Reg),
            Tok::Num(n) => imm(n, false, ty).map_or_else(|m| err_at(t.line, t.col, m), |v| Ok(Operand::Imm(v))),
            Tok::Punct('-') => {
                let n = self.next()?;
                match &n.tok {
                    Tok::Num(s) => imm(s, true, ty).map_or_else(|m| err_at(t.line, t.col, m), |v| Ok(Operand::Imm(v))),
                    _ => Self::unexpected(&n, "a number after `-`"),
                }
            }
            _ => Self::unexpected(&t, "a register or an immediate"),
        }
    }

    /// Operands separated by `,`, each at its type.
    fn operands<const N: usize>(&mut self, tys: [Option<Ty>; N]) -> Res<[Operand; N]> {
        let mut out = [Operand::Imm(0); N];
        for (i, ty) in tys.into_iter().enumerate() {
            if i > 0 {
                self.punct(',')?;
            }
            out[i] = self.operand(ty)?;
        }
        Ok(out)
    }

    /// `[addr]`, `[addr + off]` or `[addr - off]`.
    fn address(&mut self) -> Res<(Operand, i64)> {
        self.punct('[')?;
        let a = self.operand(Some(Ty::U64))?;
        let t = self.next()?;
        let offset = match t.tok {
            Tok::Punct(']') => return Ok((a, 0)),
            Tok::Punct(sign @ ('+' | '-')) => {
                let n = self.next()?;
                let m = self.uint(&n, u64::MAX)?;
                let off = if sign == '+' { i64::try_from(m).ok() } else { 0i64.checked_sub_unsigned(m) };
                off.map_or_else(|| err_at(n.line, n.col, "offset out of the range of i64"), Ok)?
            }
            _ => return Self::unexpected(&t, "`+`, `-` or `]`"),
        };
        self.punct(']')?;
        Ok((a, offset))
    }

    fn inst(&mut self, dsts: Dsts, mnemonic: &str, mt: &Token) -> Res<Inst> {
        let parts: Vec<&str> = mnemonic.split('.').collect();
        let bad = |m: String| err_at::<Inst>(mt.line, mt.col, m);
        let ty_at = |i: usize| -> Res<Ty> {
            let name = parts.get(i).copied().unwrap_or("");
            Ty::from_name(name)
                .map_or_else(|| err_at(mt.line, mt.col, format!("`{mnemonic}`: unknown type `{name}`")), Ok)
        };
        // Every instruction but `ld`, `st` and the barriers writes exactly one register.
        let one = |d: &Dsts| -> Res<Reg> {
            match d {
                Dsts::One(r) => Ok(*r),
                _ => err_at(mt.line, mt.col, format!("`{mnemonic}` writes one register: `%rN = {mnemonic} ...`")),
            }
        };
        let head = parts.first().copied().unwrap_or("");
        if let Some(op) = from_name(&BINOPS, head) {
            if parts.len() != 2 {
                return bad(format!("expected `{head}.TYPE`, found `{mnemonic}`"));
            }
            let ty = ty_at(1)?;
            let dst = one(&dsts)?;
            let bty = if matches!(op, BinOp::Shl | BinOp::Shr) { Ty::U32 } else { ty };
            let [a, b] = self.operands([Some(ty), Some(bty)])?;
            return Ok(Inst::Binary { op, ty, dst, a, b });
        }
        if let Some(op) = from_name(&UNOPS, head) {
            if parts.len() != 2 {
                return bad(format!("expected `{head}.TYPE`, found `{mnemonic}`"));
            }
            let ty = ty_at(1)?;
            let dst = one(&dsts)?;
            let [a] = self.operands([Some(ty)])?;
            return Ok(Inst::Unary { op, ty, dst, a });
        }
        if let Some(op) = from_name(&MUFUS, head) {
            if parts[1..] != ["approx", "f32"] {
                return bad(format!("expected `{head}.approx.f32`, found `{mnemonic}`"));
            }
            let dst = one(&dsts)?;
            let [a] = self.operands([Some(Ty::F32)])?;
            return Ok(Inst::Mufu { op, dst, a });
        }
        match parts.as_slice() {
            ["mov"] => {
                let dst = one(&dsts)?;
                let ty = self.regs.get(dst.0 as usize).copied();
                let [src] = self.operands([ty])?;
                Ok(Inst::Mov { dst, src })
            }
            ["mov", "special"] => {
                let dst = one(&dsts)?;
                let t = self.next()?;
                match &t.tok {
                    Tok::Pct(w) => match special_from_name(w) {
                        Some(reg) => Ok(Inst::Special { dst, reg }),
                        None => err_at(t.line, t.col, format!("unknown special register `%{w}`")),
                    },
                    _ => Self::unexpected(&t, "a special register (`%tid.x`, `%laneid`, ...)"),
                }
            }
            ["ld", "param"] => {
                let dst = one(&dsts)?;
                let (index, _) = self.param_ref()?;
                Ok(Inst::Param { dst, index })
            }
            ["fma", _] => {
                let ty = ty_at(1)?;
                let dst = one(&dsts)?;
                let [a, b, c] = self.operands([Some(ty); 3])?;
                Ok(Inst::Fma { ty, dst, a, b, c })
            }
            ["setp", cmp, _] => {
                let Some(cmp) = from_name(&CMPS, cmp) else {
                    return bad(format!("`{mnemonic}`: unknown comparison `{cmp}`"));
                };
                let ty = ty_at(2)?;
                let dst = one(&dsts)?;
                let [a, b] = self.operands([Some(ty); 2])?;
                Ok(Inst::Setp { cmp, ty, dst, a, b })
            }
            ["selp", _] => {
                let ty = ty_at(1)?;
                let dst = one(&dsts)?;
                let [a, b] = self.operands([Some(ty); 2])?;
                self.punct(',')?;
                let p = self.reg()?;
                Ok(Inst::Selp { ty, dst, a, b, p })
            }
            ["cvt", mods @ .., _, _] => {
                let mut rest = mods;
                let mut rounding = None;
                if let [r, tail @ ..] = rest {
                    if let Some(x) = from_name(&ROUNDINGS, r) {
                        rounding = Some(x);
                        rest = tail;
                    }
                }
                let satfinite = rest.first() == Some(&"satfinite");
                if satfinite {
                    rest = &rest[1..];
                }
                if let Some(m) = rest.first() {
                    return bad(format!("`{mnemonic}`: unexpected `.{m}` (cvt[.rn|.rz][.satfinite].TO.FROM)"));
                }
                let to = ty_at(parts.len() - 2)?;
                let from = ty_at(parts.len() - 1)?;
                let dst = one(&dsts)?;
                if to.is_packed() && from == Ty::F32 {
                    // The packing form: two f32 sources, the first into the upper half.
                    if rounding != Some(crate::ir::Rounding::Rn) {
                        return bad(format!("`{mnemonic}`: a packing conversion is `cvt.rn...`"));
                    }
                    let [a, b] = self.operands([Some(Ty::F32), Some(Ty::F32)])?;
                    return Ok(Inst::CvtPack { to, satfinite, dst, a, b });
                }
                let [src] = self.operands([Some(from)])?;
                Ok(Inst::Cvt { to, from, rounding, satfinite, dst, src })
            }
            ["ld", space, mods @ .., _] => {
                let space = self.space(space, mnemonic, mt)?;
                let (nc, hint, n) = memory_modifiers(mods, true)
                    .map_or_else(|m| err_at(mt.line, mt.col, format!("`{mnemonic}`: {m}")), Ok)?;
                let ty = ty_at(parts.len() - 1)?;
                let dst = match dsts {
                    Dsts::One(r) => vec![r],
                    Dsts::List(v) => v,
                    Dsts::None => return bad(format!("`{mnemonic}` writes registers: `%rN = {mnemonic} [...]`")),
                };
                if dst.len() != n {
                    return bad(format!("`{mnemonic}` loads {n} values into {} registers", dst.len()));
                }
                let (addr, offset) = self.address()?;
                Ok(Inst::Ld { space, ty, dst, addr, offset, nc, hint })
            }
            ["st", space, mods @ .., _] => {
                let space = self.space(space, mnemonic, mt)?;
                let (_, hint, n) = memory_modifiers(mods, false)
                    .map_or_else(|m| err_at(mt.line, mt.col, format!("`{mnemonic}`: {m}")), Ok)?;
                let ty = ty_at(parts.len() - 1)?;
                if !matches!(dsts, Dsts::None) {
                    return bad("`st` writes no register".into());
                }
                let (addr, offset) = self.address()?;
                self.punct(',')?;
                let t = self.peek()?.clone();
                let src = if self.is_punct('{')? {
                    self.next()?;
                    let mut v = Vec::new();
                    if !self.is_punct('}')? {
                        loop {
                            v.push(self.operand(Some(ty))?);
                            if !self.is_punct(',')? {
                                break;
                            }
                            self.next()?;
                        }
                    }
                    self.punct('}')?;
                    v
                } else {
                    vec![self.operand(Some(ty))?]
                };
                if src.len() != n {
                    return err_at(t.line, t.col, format!("`{mnemonic}` stores {n} values, {} given", src.len()));
                }
                Ok(Inst::St { space, ty, src, addr, offset, hint })
            }
            ["shfl", "sync", mode, "b32"] => {
                let Some(mode) = from_name(&MODES, mode) else {
                    return bad(format!("`{mnemonic}`: unknown shuffle mode `{mode}`"));
                };
                let dst = one(&dsts)?;
                let [a, b, c] = self.operands([Some(Ty::B32), Some(Ty::U32), Some(Ty::U32)])?;
                self.punct(',')?;
                let mask = self.mask()?;
                Ok(Inst::Shfl { mode, dst, a, b, c, mask })
            }
            ["ldmatrix", "sync", "aligned", "m8n8", xn, rest @ .., "shared", "b16"] => {
                let n = match *xn {
                    "x1" => 1,
                    "x2" => 2,
                    "x4" => 4,
                    _ => return bad(format!("`{mnemonic}`: `{xn}` is not x1, x2 or x4")),
                };
                let trans = match rest {
                    [] => false,
                    ["trans"] => true,
                    _ => return bad(format!("`{mnemonic}`: expected `.trans` or nothing before `.shared`")),
                };
                let dst = match dsts {
                    Dsts::One(r) => vec![r],
                    Dsts::List(v) => v,
                    Dsts::None => return bad(format!("`{mnemonic}` writes registers")),
                };
                if dst.len() != n {
                    return bad(format!("`{mnemonic}` loads {n} registers, {} named", dst.len()));
                }
                let (addr, offset) = self.address()?;
                Ok(Inst::Ldmatrix { trans, dst, addr, offset })
            }
            ["mma", "sync", "aligned", shape, "row", "col", "f32", at, bt, "f32"] => {
                let shape = match *shape {
                    "m16n8k16" => MmaShape::M16n8k16,
                    "m16n8k32" => MmaShape::M16n8k32,
                    _ => return bad(format!("`{mnemonic}`: unknown shape `{shape}`")),
                };
                let elem = |name: &str| {
                    [MmaElem::Bf16, MmaElem::F16, MmaElem::E4m3, MmaElem::E5m2].into_iter().find(|e| e.name() == name)
                };
                let (Some(atype), Some(btype)) = (elem(at), elem(bt)) else {
                    return bad(format!("`{mnemonic}`: unknown multiplicand types `{at}`, `{bt}`"));
                };
                let d: [Reg; 4] = match dsts {
                    Dsts::List(v) => v.try_into().map_err(|_| TextError {
                        line: mt.line,
                        col: mt.col,
                        message: format!("`{mnemonic}` writes four registers"),
                    })?,
                    _ => return bad(format!("`{mnemonic}` writes four registers: `{{%rA, %rB, %rC, %rD}} = ...`")),
                };
                let a = self.reg_array::<4>()?;
                self.punct(',')?;
                let b = self.reg_array::<2>()?;
                self.punct(',')?;
                self.punct('{')?;
                let c = self.operands([Some(Ty::F32); 4])?;
                self.punct('}')?;
                Ok(Inst::Mma { shape, atype, btype, d, a, b, c })
            }
            [kind @ ("atom" | "red"), space, op, _] => {
                let space = self.space(space, mnemonic, mt)?;
                let Some(op) = from_name(&BINOPS, op) else {
                    return bad(format!("`{mnemonic}`: unknown operation `{op}`"));
                };
                let ty = ty_at(3)?;
                let dst = match (dsts, *kind) {
                    (Dsts::One(r), "atom") => Some(r),
                    (Dsts::None, "red") => None,
                    (_, "atom") => {
                        return bad(format!("`{mnemonic}` writes one register: `%rN = {mnemonic} [...], x`"))
                    }
                    _ => return bad(format!("`{mnemonic}` writes no register (`atom` returns the old value)")),
                };
                let (addr, offset) = self.address()?;
                self.punct(',')?;
                let src = self.operand(Some(ty))?;
                Ok(Inst::Atom { space, op, ty, dst, addr, offset, src })
            }
            ["cp", "async", cache, "shared", "global"] => {
                let cg = match *cache {
                    "cg" => true,
                    "ca" => false,
                    _ => return bad(format!("`{mnemonic}`: unknown cache operator `{cache}` (ca or cg)")),
                };
                if !matches!(dsts, Dsts::None) {
                    return bad(format!("`{mnemonic}` writes no register"));
                }
                let (dst, dst_offset) = self.address()?;
                self.punct(',')?;
                let (src, src_offset) = self.address()?;
                self.punct(',')?;
                let t = self.next()?;
                let size = self.uint(&t, u64::from(u32::MAX))? as u32;
                let src_size = if self.is_punct(',')? {
                    self.next()?;
                    Some(self.operand(Some(Ty::U32))?)
                } else {
                    None
                };
                Ok(Inst::CpAsync { cg, size, dst, dst_offset, src, src_offset, src_size })
            }
            ["cp", "async", what] if matches!(dsts, Dsts::None) => match *what {
                "commit_group" => Ok(Inst::CpAsyncCommit),
                "wait_all" => Ok(Inst::CpAsyncWaitAll),
                "wait_group" => {
                    let t = self.next()?;
                    Ok(Inst::CpAsyncWait { n: self.uint(&t, u64::from(u32::MAX))? as u32 })
                }
                _ => bad(format!("unknown instruction `{mnemonic}`")),
            },
            ["vote", "sync", mode, rty] => {
                let Some(mode) =
                    [VoteMode::All, VoteMode::Any, VoteMode::Ballot].into_iter().find(|m| m.name() == *mode)
                else {
                    return bad(format!("`{mnemonic}`: unknown vote `{mode}`"));
                };
                let want = if mode == VoteMode::Ballot { "b32" } else { "pred" };
                if *rty != want {
                    return bad(format!("`{mnemonic}`: vote.sync.{} gives .{want}", mode.name()));
                }
                let dst = one(&dsts)?;
                let a = self.reg()?;
                self.punct(',')?;
                let mask = self.mask()?;
                Ok(Inst::Vote { mode, dst, a, mask })
            }
            ["redux", "sync", op, _] => {
                let Some(op) = from_name(&BINOPS, op) else {
                    return bad(format!("`{mnemonic}`: unknown operation `{op}`"));
                };
                let ty = ty_at(3)?;
                let dst = one(&dsts)?;
                let [a] = self.operands([Some(ty)])?;
                self.punct(',')?;
                let mask = self.mask()?;
                Ok(Inst::Redux { op, ty, dst, a, mask })
            }
            ["griddepcontrol", what @ ("wait" | "launch_dependents")] => match dsts {
                Dsts::None if *what == "wait" => Ok(Inst::GridDepWait),
                Dsts::None => Ok(Inst::GridDepLaunchDependents),
                _ => bad(format!("`{mnemonic}` writes no register")),
            },
            ["prefetch", "global", "L2::evict_last"] => match dsts {
                Dsts::None => {
                    let (addr, offset) = self.address()?;
                    Ok(Inst::Prefetch { addr, offset })
                }
                _ => bad("`prefetch` writes no register".into()),
            },
            ["fence", "acq_rel", "gpu"] => match dsts {
                Dsts::None => Ok(Inst::Fence),
                _ => bad("`fence.acq_rel.gpu` writes no register".into()),
            },
            ["bar", "sync"] => match dsts {
                Dsts::None => Ok(Inst::Bar),
                _ => bad("`bar.sync` writes no register".into()),
            },
            ["bar", "warp", "sync"] => match dsts {
                Dsts::None => Ok(Inst::BarWarp { mask: self.mask()? }),
                _ => bad("`bar.warp.sync` writes no register".into()),
            },
            _ => bad(format!("unknown instruction `{mnemonic}`")),
        }
    }

    /// `{%rA, %rB, ...}`: exactly `N` registers.
    fn reg_array<const N: usize>(&mut self) -> Res<[Reg; N]> {
        let open = self.punct('{')?;
        let mut out = [Reg(0); N];
        for (i, slot) in out.iter_mut().enumerate() {
            if i > 0 {
                self.punct(',')?;
            }
            *slot = self.reg()?;
        }
        if !self.is_punct('}')? {
            return err_at(open.line, open.col, format!("expected {N} registers in braces"));
        }
        self.next()?;
        Ok(out)
    }

    fn space(&self, name: &str, mnemonic: &str, mt: &Token) -> Res<Space> {
        SPACES
            .into_iter()
            .find(|s| s.name() == name)
            .map_or_else(|| err_at(mt.line, mt.col, format!("`{mnemonic}`: unknown state space `{name}`")), Ok)
    }

    fn mask(&mut self) -> Res<u32> {
        let t = self.next()?;
        self.uint(&t, u64::from(u32::MAX)).map(|v| v as u32)
    }
}

/// The modifiers of a load (`load`) or store between its space and its type, in PTX's order:
/// `[.COP] [.nc] [.EVICT] [.vN]` for a load (a cache operator before `.nc`, an eviction
/// priority after it, at most one of the two), `[.HINT] [.vN]` for a store. Which hint an
/// instruction may take is the verifier's to judge; here any hint reads in its position, so
/// that whatever the printer writes reads back. Returns `.nc`, the hint and the vector width
/// (1 when absent).
fn memory_modifiers(mods: &[&str], load: bool) -> Result<(bool, Option<CacheHint>, usize), String> {
    let (mut nc, mut hint, mut width) = (false, None::<CacheHint>, None::<usize>);
    for m in mods {
        if let Some(n) = m.strip_prefix('v').and_then(decimal) {
            if width.is_some() {
                return Err(format!("unexpected `.{m}`"));
            }
            width = Some(usize::try_from(n).map_err(|_| format!("unexpected `.{m}`"))?);
        } else if *m == "nc" && load {
            match (nc, hint, width) {
                (true, ..) => return Err("a second `.nc`".into()),
                (_, Some(h), _) if h.is_eviction_priority() => {
                    return Err(format!("`.nc` goes before `.{}` (ld.global.nc.{}...)", h.name(), h.name()))
                }
                (_, _, Some(_)) => return Err("`.nc` goes before `.vN`".into()),
                _ => nc = true,
            }
        } else if let Some(h) = CacheHint::from_name(m) {
            if let Some(first) = hint {
                return Err(format!(
                    "a second cache hint `.{m}` after `.{}`: a load or store takes at most one",
                    first.name()
                ));
            }
            if width.is_some() {
                return Err(format!("`.{m}` goes before `.vN`"));
            }
            if nc && !h.is_eviction_priority() {
                return Err(format!("the cache operator `.{m}` goes before `.nc` (ld.global.{m}.nc...)"));
            }
            hint = Some(h);
        } else if *m == "nc" || (m.starts_with('v') && m[1..].bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!("unexpected `.{m}`"));
        } else {
            return Err(format!(
                "unknown cache hint or modifier `.{m}` (hints: .ca .cg .cs .lu .cv .wb .wt .L1::evict_first \
                 .L1::evict_last .L1::no_allocate)"
            ));
        }
    }
    Ok((nc, hint, width.unwrap_or(1)))
}

/// Decimal digits only (no sign, no `_`).
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An unsigned integer in decimal or `0x` hex.
fn int_literal(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()) => u64::from_str_radix(h, 16).ok(),
        Some(_) => None,
        None => decimal(s),
    }
}

/// The bits of literal `text` (after a `-` when `negative`) at type `ty`; see the module
/// documentation for the rules.
fn imm(text: &str, negative: bool, ty: Option<Ty>) -> Result<u64, String> {
    if text.starts_with("0x") || text.starts_with("0X") {
        if negative {
            return Err("a hex immediate is raw bits and takes no sign".into());
        }
        return int_literal(text).ok_or_else(|| format!("`{text}` is not 64 bits of hex"));
    }
    let sign = if negative { "-" } else { "" };
    match ty {
        Some(t @ (Ty::F32 | Ty::F16 | Ty::Bf16)) => {
            let x: f32 = format!("{sign}{text}").parse().map_err(|_| format!("`{sign}{text}` is not a number"))?;
            let (bits, back) = match t {
                Ty::F16 => (f32_to_f16_bits(x), f16_bits_to_f32(f32_to_f16_bits(x))),
                Ty::Bf16 => (f32_to_bf16_bits(x), bf16_bits_to_f32(f32_to_bf16_bits(x))),
                _ => return finite(x, t).map(|x| u64::from(x.to_bits())),
            };
            finite(back, t).map(|_| u64::from(bits))
        }
        Some(t) if t.is_packed() => Err(format!("a {} immediate is written as hex bits", t.name())),
        _ => {
            let Some(m) = decimal(text) else {
                let at = ty.map_or("this position".to_string(), |t| format!("type {}", t.name()));
                return Err(format!("`{sign}{text}` is not an integer (as needed at {at})"));
            };
            let bits = if negative {
                0i64.checked_sub_unsigned(m).ok_or_else(|| format!("-{m} is below the range of i64"))? as u64
            } else {
                m
            };
            if let Some(t) = ty {
                let w = t.bits();
                // Fits as unsigned (< 2^w) or as signed (≥ −2^(w−1)).
                let fits = if negative { w >= 64 || m <= 1u64 << (w - 1) } else { w >= 64 || m < 1u64 << w };
                if !fits {
                    return Err(format!("{sign}{text} does not fit in {}", t.name()));
                }
            }
            Ok(bits)
        }
    }
}

/// A decimal that overflows its type is refused: an infinity (or NaN) is written as hex bits,
/// where it is plainly meant.
fn finite(x: f32, t: Ty) -> Result<f32, String> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("the literal is out of the range of {} (write infinities and NaNs as hex bits)", t.name()))
    }
}
