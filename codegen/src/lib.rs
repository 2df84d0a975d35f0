//! `lathe-codegen` — kernels to PTX and CUBIN (and, to come, fusion groups to kernels and plans
//! to artifacts).
//!
//! Today (L6, first increment): [`ptx::compile`] lowers a kernel of `lathe-kernel`'s IR to
//! textual LLVM IR (one documented mapping per op, `ptx::lower`), has LLVM 22's NVPTX backend
//! turn it into PTX (`ptx::llvm`), and checks the PTX against the kernel IR (`ptx::check`):
//! the simulator proves the kernel IR right, so what LLVM emits must keep its barriers, tensor
//! core ops, narrow conversions and memory traffic, and add no contraction, flush-to-zero or
//! stack. [`ptxas`] assembles PTX into a CUBIN for a target, parses its `-v` report (registers,
//! spills, stack, shared memory) and caches results by content hash. Still to come (DESIGN §6–7):
//! the group compiler, one template per strategy, and the artifact writer.
//!
//! LLVM IR is emitted as text and parsed by LLVM rather than built through inkwell's builder,
//! whose GEP builders are `unsafe fn`: this crate has no `unsafe` (docs/decisions.md).

pub mod group;
pub mod ptx;
pub mod ptxas;
pub mod simrun;
pub mod templates;
#[cfg(test)]
mod testing;

/// What can go wrong turning a kernel into PTX or CUBIN.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// The kernel does not verify, or not for the target.
    #[error("{0}")]
    Verify(String),
    /// The kernel uses something this code generator does not lower yet.
    #[error("kernel {kernel}: not supported by codegen yet: {what}")]
    Unsupported {
        /// The kernel.
        kernel: String,
        /// What.
        what: String,
    },
    /// LLVM refused the module or failed to emit PTX (a code generator bug).
    #[error("kernel {kernel}: LLVM: {message}")]
    Llvm {
        /// The kernel.
        kernel: String,
        /// LLVM's message.
        message: String,
    },
    /// The PTX does not keep what the kernel IR says (a code generator bug).
    #[error("kernel {kernel}: the PTX does not match the kernel IR: {message}")]
    Structure {
        /// The kernel.
        kernel: String,
        /// What differs.
        message: String,
    },
    /// ptxas could not be run, or refused the PTX.
    #[error("ptxas: {0}")]
    Ptxas(String),
}
