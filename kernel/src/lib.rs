//! `lathe-kernel` — the thread-level kernel IR and its SIMT simulator.
//!
//! # What it holds (first increment of issue L5)
//! - [`ir`]: typed virtual registers ([`ir::Ty`]: predicates, bits, integers, f16/bf16/f32 and
//!   the packed pairs), structured control flow (`if`/`else`, counted and conditional loops),
//!   state spaces (global, shared, local), vector loads and stores with `.nc`, special
//!   registers, `shfl.sync`, `bar.sync`, `bar.warp.sync`, explicit `fma`, conversions, the
//!   MUFU approximations and the tensor-core pair `ldmatrix` / `mma.sync` (m16n8k16 bf16/f16,
//!   m16n8k32 fp8); a kernel declares its ABI (buffers with element type, alignment and
//!   access; scalars), its launch bound and its static shared memory;
//! - [`build::KernelBuilder`]: what templates use to write kernels;
//! - [`frag`]: the fragment layouts as the PTX ISA's closed-form formulas and the fixed
//!   accumulation order of `mma` (what the simulator executes); [`layout`]: the same layouts
//!   transcribed from the ISA's figures as tables, for templates (tests check one against the
//!   other);
//! - [`verify`]: types, parameters, vector widths, launch bounds; what the simulator does not
//!   execute yet is refused by name;
//! - [`text`]: a PTX-like text form, printed and parsed back exactly;
//! - [`sim`]: a functional simulator of a launch that finds what makes kernels wrong (races by
//!   barrier epoch, barriers under divergence or not reached, out-of-bounds and misaligned
//!   accesses, uninitialized reads, wrong member masks, runaway kernels) and counts what decides
//!   speed (sectors per request, bank-conflict replays, instructions by class).
//!
//! # What comes next (L5)
//! Serde form, `Target` legality, atomics, votes and `redux`, `cp.async`, `stmatrix`, packed fp8
//! conversions, cross-CTA race and poisoned-arena checks, PDL discipline, the sampled-CTA bench
//! and `lathe kernel verify|run`. It depends on no other lathe crate but `lathe-numerics`.

pub mod build;
pub mod frag;
pub mod ir;
pub mod layout;
pub mod sim;
pub mod target;
pub mod text;
pub mod verify;
