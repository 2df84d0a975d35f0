//! `lathe-kernel` — the thread-level kernel IR and its SIMT simulator.
//!
//! This crate will hold (DESIGN §6): typed virtual registers, structured control flow, address
//! spaces, special registers, vector memory ops, shuffles, barriers, atomics, fp8 conversions and
//! tensor-core ops (`mma.sync`, `ldmatrix`, `cp.async`; later `wgmma`, TMA, `mbarrier`) with a
//! `Target` deciding legality; a verifier; and `sim`, a functional simulator with lock-step warps,
//! barriers, a shared-memory race detector and memory-transaction counters, so compiled kernels
//! are checked against `lathe_interp` without a GPU. It depends on no other lathe crate.
//!
//! Nothing is implemented yet.
