//! The text format: an MLIR-like, line-per-node syntax that round-trips exactly.
//!
//! ```text
//! module @demo {
//!   compute_dtype = f32
//!   symbol S <= 128
//!   weight @w : bf16[64, 64] = checkpoint "model.safetensors" "w"
//!   func @main {
//!     %0 = input "x" : f32[S, 64]
//!     %1 = weight @w : bf16[64, 64]
//!     %2 = matmul %0, %1 {transpose_b} : f32[S, 64]
//!     return %2 as "y"
//!   }
//! }
//! ```
//! The printer numbers results densely (`%k` is the k-th node with results, `%k#i` its i-th
//! result), so `parse(print(m)) == m.renumbered()`.

pub mod lex;
pub mod parse;
pub mod print;

pub use parse::{parse_module, parse_module_with_spans, ParseError, SourceMap};
pub use print::print_module;
