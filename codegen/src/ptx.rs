//! Kernel IR → PTX: lowering to LLVM IR ([`lower`]), LLVM's NVPTX backend ([`llvm`]), and the
//! structural check of what comes out ([`check`]).

pub mod check;
pub mod llvm;
pub mod lower;

use lathe_kernel::ir::Kernel;
use lathe_kernel::target::{self, Target};
use lathe_kernel::verify;

use crate::CodegenError;

/// A kernel's PTX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ptx {
    /// The kernel's name (its `.entry`).
    pub kernel: String,
    /// The target it was emitted for.
    pub target: Target,
    /// The PTX module text.
    pub text: String,
}

/// The PTX of `k` for `target`: verified, lowered, emitted by LLVM, checked against the kernel
/// IR. Below sm_90 the kernel's `griddepcontrol` instructions are dropped first
/// (`target::without_pdl`).
pub fn compile(k: &Kernel, target: Target) -> Result<Ptx, CodegenError> {
    let k = &*target::without_pdl(k, &target);
    let join = |errs: Vec<verify::KernelVerifyError>| {
        CodegenError::Verify(errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
    };
    verify::verify(k).map_err(join)?;
    target::check(k, &target).map_err(join)?;
    let ir = lower::module(k).map_err(|e| e.for_kernel(&k.name))?;
    let text = llvm::emit(&ir, target).map_err(|message| CodegenError::Llvm { kernel: k.name.clone(), message })?;
    check::structure(k, &text).map_err(|message| CodegenError::Structure { kernel: k.name.clone(), message })?;
    Ok(Ptx { kernel: k.name.clone(), target, text })
}

/// The PTX of `k` without the structural check (for `lathe kernel ptx --unchecked`: to read
/// what LLVM made of a kernel the check refuses).
pub fn compile_unchecked(k: &Kernel, target: Target) -> Result<String, CodegenError> {
    let k = &*target::without_pdl(k, &target);
    let ir = lower::module(k).map_err(|e| e.for_kernel(&k.name))?;
    llvm::emit(&ir, target).map_err(|message| CodegenError::Llvm { kernel: k.name.clone(), message })
}

/// The LLVM IR `compile` hands to LLVM (for `lathe inspect` and debugging).
pub fn llvm_ir(k: &Kernel) -> Result<String, CodegenError> {
    lower::module(k).map_err(|e| e.for_kernel(&k.name))
}
