//! `lathe-codegen` — fusion groups to kernels, kernels to PTX and CUBIN, plans to artifacts.
//!
//! This crate will hold (DESIGN §6–7): one template per `KernelStrategy` building kernel IR
//! (each with its cost model: FLOPs and bytes), the 1:1 lowering of kernel IR to LLVM NVPTX via
//! inkwell (LLVM 22, `ptx_kernel` calling convention, inline asm for what LLVM lacks), `ptxas`
//! invocation for CUBIN with its `-v` reports, and the writer of the `NAME.lathe/` artifact
//! (manifest, plan, kernels, weights) — atomic and deterministic.
//!
//! Nothing is implemented yet; it links no LLVM until it does.
