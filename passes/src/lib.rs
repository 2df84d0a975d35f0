//! `lathe-passes` — the pass manager and the optimization pipeline.
//!
//! This crate will hold (issue L3, DESIGN §5): the `Pass` trait, a registry of named passes with
//! options, MLIR-style pipeline strings (`canonicalize,cse,fuse-ssd{chunk=128}`), a PassManager
//! with verify-after-each and IR printing, and one file per pass: canonicalize, cse, dce,
//! fold-constants, quantize-fp8, fuse-ssd, fuse-fp8, fuse-elementwise, schedule-hybrid and
//! plan-memory. After fusion every node sits in exactly one `fusion` group whose
//! `lathe_ir::ops::KernelStrategy` accepts it.
//!
//! Nothing is implemented yet: `lathe opt` runs only the empty pipeline and rejects pass names.
