//! The text form of kernel IR: a PTX-like syntax that [`print()`] writes and [`parse`] reads
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
//!           | REG "=" "cvt.rn" [".satfinite"] "." PACKED ".f32" operand "," operand  // first → upper half
//!           | REG "=" "cvt.rn.f16x2." ("e4m3x2" | "e5m2x2") operand    // fp8 unpack: upper byte → upper half
//!           | REG "=" MUFU ".approx.f32" operand              // ex2 rsqrt rcp tanh
//!           | regs "=" "ld." SPACE ["." COP] [".nc"] ["." EVICT] [".v"N] "." TY addr  // one hint at most
//!           | "st." SPACE ["." (COP | EVICT)] [".v"N] "." TY addr "," operands
//!                 // COP: ca cg cs lu cv wb wt; EVICT: L1::evict_first L1::evict_last L1::no_allocate
//!           | REG "=" "shfl.sync." MODE ".b32" operand "," operand "," operand "," INT
//!           | "bar.sync"
//!           | "bar.warp.sync" INT
//!           | regs "=" "ldmatrix.sync.aligned.m8n8." ("x1"|"x2"|"x4") [".trans"] ".shared.b16" addr
//!           | regs "=" "mma.sync.aligned." ("m16n8k16"|"m16n8k32") ".row.col.f32." ELEM "." ELEM ".f32"
//!                 "{" REG ×4 "}" "," "{" REG ×2 "}" "," "{" operand ×4 "}"   // A, B, C; ELEM: bf16 f16 e4m3 e5m2
//!           | REG "=" "atom." SPACE "." BINOP "." TY addr "," operand   // the old value
//!           | "red." SPACE "." BINOP "." TY addr "," operand             // atom without it
//!           | REG "=" "vote.sync." ("all.pred" | "any.pred" | "ballot.b32") REG "," INT   // mask
//!           | REG "=" "redux.sync." BINOP "." TY operand "," INT                        // mask
//!           | "cp.async." ("ca" | "cg") ".shared.global" addr "," addr "," INT ["," operand]
//!           | "cp.async.commit_group" | "cp.async.wait_group" INT | "cp.async.wait_all"
//!           | "griddepcontrol.wait" | "griddepcontrol.launch_dependents"
//! regs     := REG | "{" [REG ("," REG)*] "}"               // a list when N ≠ 1
//! operands := operand | "{" [operand ("," operand)*] "}"
//! addr     := "[" operand [("+" | "-") INT] "]"            // the byte offset
//! operand  := REG | IMM
//! REG      := "%r"N
//! ```
//!
//! `.vN` must equal the number of registers or operands listed (absent means 1). A load or store
//! carries at most one cache hint, spelled where PTX puts it: a cache operator before `.nc`
//! (`ld.global.cg.nc.v4.f32`), an eviction priority after it (`ld.global.nc.L1::no_allocate`);
//! which hint suits which access (global only, load or store operators) is the verifier's to
//! judge, so `ld.shared.wb.f32` reads and prints back. A `mov`
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
//!   hex bits avoid; a literal that overflows the type is an error (infinities and NaNs are
//!   written as hex);
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

use crate::ir::{Access, Axis, BinOp, Cmp, Mufu, Rounding, ShflMode, Space, Special, UnOp};

mod lex;
mod parse;
mod print;

pub use parse::parse;
pub use print::print;

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
const UNOPS: [(UnOp, &str); 4] = [(UnOp::Neg, "neg"), (UnOp::Abs, "abs"), (UnOp::Not, "not"), (UnOp::Sqrt, "sqrt")];
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

/// A special register's name, as the text format and PTX spell it: `tid.x`, `laneid`.
pub fn special_name(s: Special) -> String {
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
