//! Templates: one Rust function per kernel strategy, building kernel IR for a fusion group, and
//! the pointwise emitter they share.

pub mod attention_decode;
pub mod elementwise;
pub mod gemv;
pub mod pointwise;
pub mod row_norm;
pub mod row_reduce;
pub mod sample;
pub mod scatter_cache;
pub mod ssd_decode;

/// Why a template cannot build a group's kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Something the template does not handle (yet), named.
    #[error("not supported by the template yet: {0}")]
    Unsupported(String),
}

/// [`TemplateError::Unsupported`] with `what`.
fn unsupported(what: impl Into<String>) -> TemplateError {
    TemplateError::Unsupported(what.into())
}

/// A dimension's constant value; a symbolic one is unsupported, named by `what`.
fn constant(d: &lathe_ir::Dim, what: &str) -> Result<u64, TemplateError> {
    match d {
        lathe_ir::Dim::Const(c) => Ok(*c),
        lathe_ir::Dim::Sym(_) => Err(unsupported(format!("a symbolic {what}"))),
    }
}
