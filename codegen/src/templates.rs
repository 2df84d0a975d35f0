//! Templates: the pieces that turn fusion groups of the graph IR into kernel IR.
//!
//! Today only the piece every template shares: [`pointwise`], which emits one pointwise graph op
//! on per-thread values. The group compiler and the strategy templates (elementwise, row
//! reductions, GEMV/GEMM epilogues) come next and call it.

pub mod pointwise;
