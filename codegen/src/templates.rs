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

/// Programmatic dependent launch, the part every template shares: a kernel may start while the
/// launch before it drains (the launch plan marks each kernel after a kernel as overlapping,
/// `lathe_passes::launch::Launch::overlaps`). It first issues only what touches no buffer a
/// launch writes — a GEMV's L2 prefetch of its weight rows — and then waits
/// (`griddepcontrol.wait`: the predecessor has completed and its writes are visible) before its
/// first access to an activation, a cache or scratch. Below sm_90 the instructions are dropped
/// (`lathe_kernel::target::without_pdl`): no launch overlaps there.
fn wait_for_inputs(b: &mut lathe_kernel::build::KernelBuilder) {
    b.grid_dep_wait();
}

/// `griddepcontrol.launch_dependents`: the next launch may be scheduled from here (it still
/// waits for this grid to complete before it reads what this grid writes). Light kernels give
/// it at once; the GEMV, the decode step and the attention once their main loop is issued, so
/// the dependent's CTAs do not take SM slots from their own.
fn release_dependents(b: &mut lathe_kernel::build::KernelBuilder) {
    b.grid_dep_launch_dependents();
}

/// A dimension's constant value; a symbolic one is unsupported, named by `what`.
fn constant(d: &lathe_ir::Dim, what: &str) -> Result<u64, TemplateError> {
    match d {
        lathe_ir::Dim::Const(c) => Ok(*c),
        lathe_ir::Dim::Sym(_) => Err(unsupported(format!("a symbolic {what}"))),
    }
}
