//! `lathe-runtime` — loads an artifact and runs its plan.
//!
//! This crate will hold (DESIGN §7–8): the artifact format (versioned manifest with hashes,
//! plan schema, kernel ABI), a loader that verifies it, and two executors: `sim` on the CPU
//! through `lathe_kernel::sim`, and `cuda` through cudarc with dynamic loading (a missing
//! libcuda is a clear error, never a panic), CUDA graphs for decode and sampling on device.
//! It depends only on `lathe-kernel`, so the runtime ships without the compiler or LLVM.
//!
//! Nothing is implemented yet.
