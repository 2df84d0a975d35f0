//! `lathe-numerics` — the arithmetic every lathe backend agrees on, bit for bit.
//!
//! # What it holds
//! - [`DType`]: the closed set of element types (`f32 f16 bf16 f8e4m3 f8e5m2 i64 i32 i8 u8
//!   bool`), shared by the graph IR, the interpreter, the kernel IR and the artifact;
//! - [`float`]: conversions between f32 and the narrow formats, deciding rounding with integer
//!   arithmetic on the exact input (ties to even; fp8 saturating, as PTX `cvt.rn.satfinite`);
//! - [`math`]: the deterministic `exp` (f64 inside, rounded once), `erf`, and the activations
//!   built on them, each with a fixed operation order;
//! - [`random`]: Philox4x32-10, its uniform mapping and synthetic weights.
//!
//! # Why a leaf crate
//! The reference interpreter, the SIMT simulator and the GPU must compute the same bits, so
//! the definitions live once, below every crate that computes: `lathe-ir` re-exports [`DType`],
//! `lathe-interp` and the coming kernel simulator call these functions, and the code
//! generator emits instruction sequences whose results these functions define. It depends on
//! nothing.

pub mod dtype;
pub mod float;
pub mod math;
pub mod random;

pub use dtype::DType;
pub use float::*;
pub use math::*;
pub use random::*;

#[cfg(test)]
mod test_rng {
    /// SplitMix64, so the sampled inputs are reproducible without a dependency.
    pub(crate) struct SplitMix(pub(crate) u64);

    impl SplitMix {
        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        pub(crate) fn next_u32(&mut self) -> u32 {
            (self.next_u64() >> 32) as u32
        }
    }
}
