//! Element types, dimensions and tensor types.

use crate::arena::Handle;
pub use lathe_numerics::DType;

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

    /// Number of elements if every dim is constant (`None` also when the count overflows `u64`).
    pub fn const_elements(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(d.as_const()?))
    }

    /// The product of the dims at their largest, each symbol at `bound(symbol)` and an empty
    /// dim counted as 1 (so strides stay below the product too): what the size limit bounds.
    /// `None` when a symbol has no bound or the product overflows `u64`.
    pub fn elements_at_bounds(&self, bound: impl Fn(SymbolId) -> Option<u64>) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |acc, d| {
            let n = match *d {
                Dim::Const(c) => c,
                Dim::Sym(s) => bound(s)?,
            };
            acc.checked_mul(n.max(1))
        })
    }
}
