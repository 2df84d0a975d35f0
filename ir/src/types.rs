//! Element types, dimensions and tensor types.

use std::fmt;

use crate::arena::Handle;

/// Element type of a tensor. The closed set every layer of lathe agrees on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16: binary32 with the low 16 mantissa bits dropped.
    BF16,
    /// OCP FP8 E4M3 (max ±448, no infinities).
    F8E4M3,
    /// OCP FP8 E5M2 (max ±57344, with infinities).
    F8E5M2,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Boolean.
    Bool,
}

impl DType {
    /// Every dtype, in text-name order of the manual.
    pub const ALL: [DType; 10] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F8E4M3,
        DType::F8E5M2,
        DType::I64,
        DType::I32,
        DType::I8,
        DType::U8,
        DType::Bool,
    ];

    /// The text name (`f32`, `bf16`, `f8e4m3`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F8E4M3 => "f8e4m3",
            DType::F8E5M2 => "f8e5m2",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::Bool => "bool",
        }
    }

    /// Parses a text name.
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Size of one element in bytes.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::F8E4M3 | DType::F8E5M2 | DType::I8 | DType::U8 | DType::Bool => 1,
            DType::I64 => 8,
        }
    }

    /// Floating-point dtypes (fp8 included).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F8E4M3 | DType::F8E5M2)
    }

    /// The two fp8 formats.
    pub fn is_fp8(self) -> bool {
        matches!(self, DType::F8E4M3 | DType::F8E5M2)
    }

    /// Integer dtypes (bool excluded).
    pub fn is_int(self) -> bool {
        matches!(self, DType::I64 | DType::I32 | DType::I8 | DType::U8)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A named dynamic dimension with a compile-time upper bound (`S <= 8192`).
///
/// Every symbol is bounded so that every buffer has a concrete worst-case size at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// The name used in types (`B`, `S`, ...): an identifier starting with a letter.
    pub name: String,
    /// The largest value the dimension may take; the smallest is 1.
    pub max: u64,
}

/// Handle of a [`Symbol`] in [`crate::Module::symbols`].
pub type SymbolId = Handle<Symbol>;

/// One dimension of a tensor type: a constant or a bounded symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A dimension known at compile time.
    Const(u64),
    /// A dynamic dimension, bound when the program runs.
    Sym(SymbolId),
}

impl Dim {
    /// The constant value, if any.
    pub fn as_const(self) -> Option<u64> {
        match self {
            Dim::Const(c) => Some(c),
            Dim::Sym(_) => None,
        }
    }
}

impl From<u64> for Dim {
    fn from(v: u64) -> Self {
        Dim::Const(v)
    }
}

impl From<SymbolId> for Dim {
    fn from(s: SymbolId) -> Self {
        Dim::Sym(s)
    }
}

/// A tensor type: element type and shape (`bf16[B, S, 4096]`). Rank 0 is a scalar (`f32[]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first (row-major).
    pub shape: Vec<Dim>,
}

impl TensorType {
    /// A tensor type from a dtype and dims.
    pub fn new(dtype: DType, shape: impl IntoIterator<Item = Dim>) -> Self {
        TensorType { dtype, shape: shape.into_iter().collect() }
    }

    /// A type with constant dims only.
    pub fn fixed(dtype: DType, shape: &[u64]) -> Self {
        TensorType { dtype, shape: shape.iter().map(|&d| Dim::Const(d)).collect() }
    }

    /// A scalar.
    pub fn scalar(dtype: DType) -> Self {
        TensorType { dtype, shape: Vec::new() }
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The same shape with another dtype.
    pub fn with_dtype(&self, dtype: DType) -> Self {
        TensorType { dtype, shape: self.shape.clone() }
    }

    /// The last dimension, if the rank is at least 1.
    pub fn last_dim(&self) -> Option<Dim> {
        self.shape.last().copied()
    }

    /// Number of elements if every dim is constant.
    pub fn const_elements(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(d.as_const()?))
    }
}
