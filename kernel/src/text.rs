//! The text form of kernel IR: a PTX-like syntax that [`print`] writes and [`parse`] reads
//! back, so that `parse(&print(k)) == Ok(k)` for every kernel whose constructs nest at most
//! [`MAX_NESTING`] deep. Kernels are read and reviewed as text (snapshots, hand-written test
//! kernels, `lathe kernel verify|run`); the parser is purely syntactic — it accepts undeclared
//! registers, parameter indices out of range and vectors of any width, because those are the
//! verifier's to report, and a printed kernel must read back whatever it holds.
//!
//! # Grammar
//!
//! One declaration or statement per line; `//` starts a comment; blank lines are ignored.
//!
//! ```text
//! kernel   := "kernel" "@" (WORD | STRING) "max_threads=" INT "shared=" INT "local=" INT "{" NL
//!             decl* stmt* "}" NL*
//! decl     := "param" "%p"N ":" "buffer" DTYPE "align=" INT ("readonly" | "written") STRING NL
//!           | "param" "%p"N ":" "scalar" TY STRING NL
//!           | "reg" "%r"N ("," "%r"N)* ":" TY NL          // N counts up from 0, in order
//! stmt     := inst NL
//!           | "if" REG "{" NL stmt* "}" ["else" "{" NL stmt* "}"] NL
//!           | "for" REG "in" "0" ".." operand "{" NL stmt* "}" NL
//!           | "do" "{" NL stmt* "}" "while" REG NL
//! inst     := REG "=" "mov" operand
//!           | REG "=" "mov.special" ("%tid" | "%ntid" | "%ctaid" | "%nctaid") "." ("x"|"y"|"z")
//!           | REG "=" "mov.special" "%laneid"
//!           | REG "=" "ld.param" "%p"N
//!           | REG "=" UNOP "." TY operand                      // neg abs not
//!           | REG "=" BINOP "." TY operand "," operand         // add sub mul div rem min max
//!                                                             // and or xor shl shr
//!           | REG "=" "fma." TY operand "," operand "," operand
//!           | REG "=" "setp." CMP "." TY operand "," operand  // eq ne lt le gt ge
//!           | REG "=" "selp." TY operand "," operand "," REG
//!           | REG "=" "cvt" [".rn" | ".rz"] [".satfinite"] "." TY "." TY operand   // to, from
//!           | REG "=" MUFU ".approx.f32" operand              // ex2 rsqrt rcp tanh
//!           | regs "=" "ld." SPACE [".nc"] [".v"N] "." TY addr
//!           | "st." SPACE [".v"N] "." TY addr "," operands
//!           | REG "=" "shfl.sync." MODE ".b32" operand "," operand "," operand "," INT
//!           | "bar.sync"
//!           | "bar.warp.sync" INT
//! regs     := REG | "{" [REG ("," REG)*] "}"               // a list when N ≠ 1
//! operands := operand | "{" [operand ("," operand)*] "}"
//! addr     := "[" operand [("+" | "-") INT] "]"            // the byte offset
//! operand  := REG | IMM
//! REG      := "%r"N
//! ```
//!
//! `.vN` must equal the number of registers or operands listed (absent means 1). A `mov`
//! without a type takes its destination's declared type for decimal literals.
//!
//! # Immediates
//!
//! An immediate is the raw bits of a value of the instruction's type, and the printer writes
//! it as hex (`0x3f800000`), which the parser takes verbatim: floats and bits round-trip
//! exactly. For hand-written text the parser also takes decimal literals, read at the type of
//! the operand's position (addresses `u64`, shift amounts and shuffle lanes `u32`, `cvt` its
//! source type, `mov` its destination's register type):
//! - at `f32`, `f16`, `bf16`: any decimal (`1`, `-2.5`, `1e-3`) is that value rounded to the
//!   nearest f32, then (f16, bf16) to nearest-even of the narrow type — a double rounding that
//!   hex bits avoid;
//! - at integer, bit and predicate types: a decimal integer that fits the type's width as
//!   unsigned or as signed, stored as 64-bit two's complement (`-1` is `0xffffffffffffffff`,
//!   as `build::int_imm` writes it); a float literal there is an error;
//! - packed types take hex only.
//!
//! # Limits
//!
//! The parser never panics and never recurses without bound: input above [`MAX_INPUT_BYTES`]
//! is refused, constructs nest at most [`MAX_NESTING`] deep, and every error names its line and
//! column (1-based, in characters).

use std::fmt;

use lathe_numerics::float::{f32_to_bf16_bits, f32_to_f16_bits};
use lathe_numerics::DType;

use crate::ir::{
    Access, Axis, BinOp, Cmp, Inst, Kernel, LoopKind, Mufu, Operand, Param, Reg, Rounding, ShflMode, Space, Special,
    Stmt, Ty, UnOp,
};

/// Largest text [`parse`] reads.
pub const MAX_INPUT_BYTES: usize = 64 << 20;

/// Deepest nesting of `if`/`for`/`do` constructs [`parse`] reads.
pub const MAX_NESTING: usize = 64;

/// A parse error at a place in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

impl std::error::Error for TextError {}

// The spellings, each table backing both the printer and the parser.

const BINOPS: [(BinOp, &str); 12] = [
    (BinOp::Add, "add"),
    (BinOp::Sub, "sub"),
    (BinOp::Mul, "mul"),
    (BinOp::Div, "div"),
    (BinOp::Rem, "rem"),
    (BinOp::Min, "min"),
    (BinOp::Max, "max"),
    (BinOp::And, "and"),
    (BinOp::Or, "or"),
    (BinOp::Xor, "xor"),
    (BinOp::Shl, "shl"),
    (BinOp::Shr, "shr"),
];
const UNOPS: [(UnOp, &str); 3] = [(UnOp::Neg, "neg"), (UnOp::Abs, "abs"), (UnOp::Not, "not")];
const CMPS: [(Cmp, &str); 6] =
    [(Cmp::Eq, "eq"), (Cmp::Ne, "ne"), (Cmp::Lt, "lt"), (Cmp::Le, "le"), (Cmp::Gt, "gt"), (Cmp::Ge, "ge")];
const MUFUS: [(Mufu, &str); 4] = [(Mufu::Ex2, "ex2"), (Mufu::Rsqrt, "rsqrt"), (Mufu::Rcp, "rcp"), (Mufu::Tanh, "tanh")];
const MODES: [(ShflMode, &str); 4] =
    [(ShflMode::Idx, "idx"), (ShflMode::Up, "up"), (ShflMode::Down, "down"), (ShflMode::Bfly, "bfly")];
const ROUNDINGS: [(Rounding, &str); 2] = [(Rounding::Rn, "rn"), (Rounding::Rz, "rz")];
const SPACES: [Space; 3] = [Space::Global, Space::Shared, Space::Local];
const ACCESSES: [(Access, &str); 2] = [(Access::ReadOnly, "readonly"), (Access::Written, "written")];
const AXES: [(Axis, &str); 3] = [(Axis::X, "x"), (Axis::Y, "y"), (Axis::Z, "z")];
/// The constructor of an axis-indexed special register.
type AxisSpecial = fn(Axis) -> Special;
const SPECIALS: [(AxisSpecial, &str); 4] =
    [(Special::Tid, "tid"), (Special::Ntid, "ntid"), (Special::Ctaid, "ctaid"), (Special::Nctaid, "nctaid")];

fn name_of<T: PartialEq + Copy>(table: &[(T, &'static str)], v: T) -> &'static str {
    table.iter().find(|(t, _)| *t == v).map_or("?", |(_, n)| n)
}

fn from_name<T: Copy>(table: &[(T, &'static str)], name: &str) -> Option<T> {
    table.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
}

fn special_name(s: Special) -> String {
    let (base, axis) = match s {
        Special::Tid(a) => ("tid", a),
        Special::Ntid(a) => ("ntid", a),
        Special::Ctaid(a) => ("ctaid", a),
        Special::Nctaid(a) => ("nctaid", a),
        Special::LaneId => return "laneid".into(),
    };
    format!("{base}.{}", name_of(&AXES, axis))
}

fn special_from_name(name: &str) -> Option<Special> {
    if name == "laneid" {
        return Some(Special::LaneId);
    }
    let (base, axis) = name.split_once('.')?;
    let make = from_name(&SPECIALS, base)?;
    Some(make(from_name(&AXES, axis)?))
}

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
        Inst::Mufu { op, dst, a } => format!("{} = {}.approx.f32 {}", r(dst), name_of(&MUFUS, *op), o(a)),
        Inst::Ld { space, ty, dst, addr: a, offset, nc } => {
            let dsts: Vec<Operand> = dst.iter().map(|d| Operand::Reg(*d)).collect();
            let nc = if *nc { ".nc" } else { "" };
            format!(
                "{} = ld.{}{nc}{}.{} {}",
                list(&dsts),
                space.name(),
                vec_suffix(dst.len()),
                ty.name(),
                addr(*a, *offset)
            )
        }
        Inst::St { space, ty, src, addr: a, offset } => {
            format!("st.{}{}.{} {}, {}", space.name(), vec_suffix(src.len()), ty.name(), addr(*a, *offset), list(src))
        }
        Inst::Shfl { mode, dst, a, b, c, mask } => {
            format!("{} = shfl.sync.{}.b32 {}, {}, {}, {mask:#x}", r(dst), name_of(&MODES, *mode), o(a), o(b), o(c))
        }
        Inst::Bar => "bar.sync".into(),
        Inst::BarWarp { mask } => format!("bar.warp.sync {mask:#x}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An identifier, keyword or dotted mnemonic (`ld.global.nc.f32`).
    Word(String),
    /// `%` and the word after it (`r5`, `p0`, `tid.x`).
    Pct(String),
    /// A numeric literal as written (`12`, `0x3f800000`, `2.5e-3`).
    Num(String),
    /// A string literal, unescaped.
    Str(String),
    /// One of `{ } [ ] , = : + - @`.
    Punct(char),
    /// `..`
    DotDot,
    Newline,
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Pct(w) => format!("`%{w}`"),
            Tok::Num(n) => format!("`{n}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::DotDot => "`..`".into(),
            Tok::Newline => "end of line".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    col: usize,
}

type Res<T> = Result<T, TextError>;

fn err_at<T>(line: usize, col: usize, message: impl Into<String>) -> Res<T> {
    Err(TextError { line, col, message: message.into() })
}

struct Lexer<'a> {
    src: &'a str,
    /// Byte position.
    pos: usize,
    line: usize,
    col: usize,
}

impl Lexer<'_> {
    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.src[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek_char().is_some_and(&keep) {
            self.bump();
        }
        self.src[start..self.pos].to_string()
    }

    fn next(&mut self) -> Res<Token> {
        loop {
            match self.peek_char() {
                Some(' ' | '\t' | '\r') => {
                    self.bump();
                }
                Some('/') if self.peek_second() == Some('/') => {
                    while self.peek_char().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
        let (line, col) = (self.line, self.col);
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
        let tok = match self.peek_char() {
            None => Tok::Eof,
            Some('\n') => {
                self.bump();
                Tok::Newline
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => Tok::Word(self.take_while(word)),
            Some('%') => {
                self.bump();
                let w = self.take_while(word);
                if w.is_empty() {
                    return err_at(line, col, "`%` must be followed by a name");
                }
                Tok::Pct(w)
            }
            Some(c) if c.is_ascii_digit() => Tok::Num(self.number()),
            Some('"') => Tok::Str(self.string(line, col)?),
            Some('.') if self.peek_second() == Some('.') => {
                self.bump();
                self.bump();
                Tok::DotDot
            }
            Some(c @ ('{' | '}' | '[' | ']' | ',' | '=' | ':' | '+' | '-' | '@')) => {
                self.bump();
                Tok::Punct(c)
            }
            Some(c) => return err_at(line, col, format!("unexpected character {c:?}")),
        };
        Ok(Token { tok, line, col })
    }

    /// Digits, hex after `0x`, or a decimal with fraction and exponent; `0..n` stays a range.
    fn number(&mut self) -> String {
        let start = self.pos;
        if self.peek_char() == Some('0') && matches!(self.peek_second(), Some('x' | 'X')) {
            self.bump();
            self.bump();
            self.take_while(|c| c.is_ascii_alphanumeric());
            return self.src[start..self.pos].to_string();
        }
        self.take_while(|c| c.is_ascii_digit());
        if self.peek_char() == Some('.') && self.peek_second().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
            self.take_while(|c| c.is_ascii_digit());
        }
        if matches!(self.peek_char(), Some('e' | 'E')) {
            let rest = &self.src[self.pos + 1..];
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.starts_with(|c: char| c.is_ascii_digit()) {
                self.bump();
                if matches!(self.peek_char(), Some('+' | '-')) {
                    self.bump();
                }
                self.take_while(|c| c.is_ascii_digit());
            }
        }
        // Letters glued to a number (`12ab`) are kept so that the error names them.
        self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
        self.src[start..self.pos].to_string()
    }

    fn string(&mut self, line: usize, col: usize) -> Res<String> {
        self.bump();
        let mut out = String::new();
        loop {
            let (l, c) = (self.line, self.col);
            match self.bump() {
                None | Some('\n') => return err_at(line, col, "unterminated string"),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('u') if self.peek_char() == Some('{') => {
                        self.bump();
                        let hex = self.take_while(|c| c.is_ascii_hexdigit());
                        let ch = (hex.len() <= 6 && self.bump() == Some('}'))
                            .then(|| u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32))
                            .flatten();
                        match ch {
                            Some(ch) => out.push(ch),
                            None => return err_at(l, c, "bad `\\u{...}` escape"),
                        }
                    }
                    _ => return err_at(l, c, "unknown escape in string"),
                },
                Some(ch) => out.push(ch),
            }
        }
    }
}

/// Reads kernel text (see the module documentation for the grammar).
pub fn parse(text: &str) -> Result<Kernel, TextError> {
    if text.len() > MAX_INPUT_BYTES {
        return err_at(1, 1, format!("input of {} bytes is above the limit of {MAX_INPUT_BYTES}", text.len()));
    }
    let mut p = Parser { lex: Lexer { src: text, pos: 0, line: 1, col: 1 }, peeked: None, regs: Vec::new() };
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
                let [src] = self.operands([Some(from)])?;
                Ok(Inst::Cvt { to, from, rounding, satfinite, dst, src })
            }
            ["ld", space, mods @ .., _] => {
                let space = self.space(space, mnemonic, mt)?;
                let (nc, rest) = match mods {
                    ["nc", rest @ ..] => (true, rest),
                    rest => (false, rest),
                };
                let n =
                    vector_width(rest).map_or_else(|m| err_at(mt.line, mt.col, format!("`{mnemonic}`: {m}")), Ok)?;
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
                Ok(Inst::Ld { space, ty, dst, addr, offset, nc })
            }
            ["st", space, mods @ .., _] => {
                let space = self.space(space, mnemonic, mt)?;
                let n =
                    vector_width(mods).map_or_else(|m| err_at(mt.line, mt.col, format!("`{mnemonic}`: {m}")), Ok)?;
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
                Ok(Inst::St { space, ty, src, addr, offset })
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

/// The count of `.vN` (1 when absent).
fn vector_width(mods: &[&str]) -> Result<usize, String> {
    match mods {
        [] => Ok(1),
        [v] => v
            .strip_prefix('v')
            .and_then(decimal)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("unexpected `.{v}`")),
        [_, m, ..] => Err(format!("unexpected `.{m}`")),
    }
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
            Ok(match t {
                Ty::F16 => u64::from(f32_to_f16_bits(x)),
                Ty::Bf16 => u64::from(f32_to_bf16_bits(x)),
                _ => u64::from(x.to_bits()),
            })
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
