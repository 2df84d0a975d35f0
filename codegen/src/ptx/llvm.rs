//! LLVM IR text → PTX through LLVM 22's NVPTX backend (inkwell, statically linked).
//!
//! The module is parsed and verified, optimized with LLVM's `default<O3>` pipeline with loop
//! unrolling and vectorization off (the kernel IR says what is unrolled and vectorized: templates
//! unroll explicitly, and the structural check compares instruction counts), and emitted as PTX
//! for the target's `sm_XX` with the PTX ISA version as the `+ptxXY` feature. No fast-math:
//! floating point is computed as written.

use std::sync::Once;

use inkwell::context::Context;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{CodeModel, FileType, InitializationConfig, RelocMode, Target as LlvmTarget, TargetTriple};
use inkwell::OptimizationLevel;
use lathe_kernel::target::Target;

/// The LLVM optimization pipeline (documented in docs/codegen.md).
pub const PIPELINE: &str = "default<O3>";

/// PTX for `ir` (an LLVM IR module as text) on `target`; LLVM's message on failure.
pub fn emit(ir: &str, target: Target) -> Result<String, String> {
    static INIT: Once = Once::new();
    INIT.call_once(|| LlvmTarget::initialize_nvptx(&InitializationConfig::default()));
    let triple = TargetTriple::create("nvptx64-nvidia-cuda");
    let llvm_target = LlvmTarget::from_triple(&triple).map_err(|e| e.to_string())?;
    let features = format!("+ptx{}{}", target.ptx.0, target.ptx.1);
    let machine = llvm_target
        .create_target_machine(
            &triple,
            target.sm.name(),
            &features,
            OptimizationLevel::Aggressive,
            RelocMode::Default,
            CodeModel::Default,
        )
        .ok_or_else(|| format!("no NVPTX target machine for {} {features}", target.sm.name()))?;
    let context = Context::create();
    let buffer = MemoryBuffer::create_from_memory_range_copy(ir.as_bytes(), "kernel");
    let module = context.create_module_from_ir(buffer).map_err(|e| e.to_string())?;
    module.set_data_layout(&machine.get_target_data().get_data_layout());
    module.verify().map_err(|e| e.to_string())?;
    let options = PassBuilderOptions::create();
    options.set_loop_unrolling(false);
    options.set_loop_vectorization(false);
    options.set_loop_slp_vectorization(false);
    options.set_loop_interleaving(false);
    module.run_passes(PIPELINE, &machine, options).map_err(|e| e.to_string())?;
    let out = machine.write_to_memory_buffer(&module, FileType::Assembly).map_err(|e| e.to_string())?;
    String::from_utf8(out.as_slice().to_vec()).map_err(|e| e.to_string())
}
