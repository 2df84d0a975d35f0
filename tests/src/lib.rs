//! `lathe-tests` — integration tests, fixtures, and the one tolerance function.
//!
//! Every comparison between two executors (interpreter vs a closed form, passes before vs
//! after, simulator vs interpreter, GPU vs CPU, lathe vs transformers) goes through
//! [`tolerance`] and [`assert_close`], never an ad-hoc epsilon.
//!
//! # The tolerance model
//! Two executors that both follow lathe's numerics contract (f32 arithmetic inside ops, results
//! rounded to the IR dtype) can differ by (a) the order of f32 accumulation in reductions and
//! (b) the final rounding to the result dtype landing on neighbouring values. For a reduction of
//! length `K` in f32 (unit roundoff `u32 = 2^-24`), rounding errors of different orders behave
//! like a random walk: a typical bound is `c·sqrt(K)·u32` relative to the magnitude of the
//! terms, with `c = 8` giving headroom for correlated errors (the worst case is `K·u32`). The
//! final rounding contributes at most one unit roundoff of the result dtype per executor, so
//! `2·u_out`. The comparison is normwise: `max|a − b| ≤ tol · max|b|`, which stays meaningful
//! when individual elements are near zero.

use lathe_ir::DType;

pub mod fuzz;
pub mod modgen;

/// Unit roundoff (half an ulp at 1) of a dtype's significand.
pub fn unit_roundoff(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 2f64.powi(-24),
        DType::F16 => 2f64.powi(-11),
        DType::BF16 => 2f64.powi(-8),
        DType::F8E4M3 => 2f64.powi(-4),
        DType::F8E5M2 => 2f64.powi(-3),
        // Integers and bools must match exactly.
        DType::I64 | DType::I32 | DType::I8 | DType::U8 | DType::Bool => 0.0,
    }
}

/// The normwise relative tolerance between two executors for results of `dtype` produced by
/// reductions of length `reduction_len` (1 for elementwise results).
pub fn tolerance(dtype: DType, reduction_len: usize) -> f64 {
    if !dtype.is_float() {
        return 0.0;
    }
    let k = reduction_len.max(1) as f64;
    2.0 * unit_roundoff(dtype) + 8.0 * k.sqrt() * unit_roundoff(DType::F32)
}

/// An approximate operation of the GPU's multi-function unit (the kernel IR's MUFU ops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approx {
    /// `ex2.approx.f32`.
    Ex2,
    /// `rsqrt.approx.f32`.
    Rsqrt,
    /// `rcp.approx.f32`.
    Rcp,
    /// `tanh.approx.f32`.
    Tanh,
}

/// The relative error bound of one MUFU op, taken from what the PTX ISA documents for the
/// hardware, rounded up to a power of two: `ex2` 2^-22, `rsqrt` 2^-22 (2^-22.9 documented),
/// `rcp` 2^-23 (one ulp), `tanh` 2^-11 (measured on hardware nearer 2^-16.5; the documented bound
/// is what kernels may rely on). The simulator returns the correctly rounded value, so this is
/// how far a GPU's result may lie from the simulator's.
pub fn approx_error(op: Approx) -> f64 {
    match op {
        Approx::Ex2 | Approx::Rsqrt => 2f64.powi(-22),
        Approx::Rcp => 2f64.powi(-23),
        Approx::Tanh => 2f64.powi(-11),
    }
}

/// [`tolerance`] for results computed through the MUFU ops `approx` (each use on the path to
/// the result once): their relative errors add to the rounding terms, to first order.
pub fn tolerance_with_approx(dtype: DType, reduction_len: usize, approx: &[Approx]) -> f64 {
    if !dtype.is_float() {
        return 0.0;
    }
    tolerance(dtype, reduction_len) + approx.iter().map(|&op| approx_error(op)).sum::<f64>()
}

/// The tolerance for whole-model logits: rounding errors of each layer's reductions add up
/// through the residual stream, so a model of `layers` blocks whose widest reduction is `width`
/// is held to `tolerance(dtype, layers · width)`.
pub fn model_tolerance(dtype: DType, layers: usize, width: usize) -> f64 {
    tolerance(dtype, layers.max(1) * width.max(1))
}

/// The normwise bound for whole-model logits computed with every op's result rounded to bf16,
/// against an f32 reference (transformers at f32), for a model of `layers` blocks:
/// `8 · u_bf16 · √layers`. Each block rounds about sixteen values on the residual stream's
/// path (norm, projections, activation, scan or attention, output projection, residual add);
/// independent roundings of relative size `u` grow as a random walk, `√(16·layers)·u`, and a
/// factor of 2 covers the gain from the last hidden state to the logits. docs/numerics.md
/// gives the measured ratios on the fixtures.
pub fn bf16_model_bound(layers: usize) -> f64 {
    8.0 * unit_roundoff(DType::BF16) * (layers.max(1) as f64).sqrt()
}

/// `max|actual − expected| / max|expected|` (absolute error when `expected` is all zeros).
pub fn normwise_error(actual: &[f64], expected: &[f64]) -> f64 {
    let scale = expected.iter().fold(0f64, |m, v| m.max(v.abs()));
    let err = actual.iter().zip(expected).fold(
        0f64,
        |m, (a, e)| {
            if a.is_nan() && e.is_nan() {
                m
            } else {
                m.max((a - e).abs())
            }
        },
    );
    if scale > 0.0 {
        err / scale
    } else {
        err
    }
}

/// Panics with a located message unless `actual ≈ expected` within [`tolerance`].
pub fn assert_close(what: &str, actual: &[f64], expected: &[f64], dtype: DType, reduction_len: usize) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    let nan_mismatch = actual.iter().zip(expected).position(|(a, e)| a.is_nan() != e.is_nan());
    assert!(nan_mismatch.is_none(), "{what}: NaN at element {nan_mismatch:?} in only one side");
    let err = normwise_error(actual, expected);
    let tol = tolerance(dtype, reduction_len);
    assert!(err <= tol, "{what}: normwise error {err:.3e} exceeds tolerance {tol:.3e} ({dtype}, K = {reduction_len})");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_grows_with_reduction_and_narrow_dtypes() {
        assert!(tolerance(DType::F32, 4096) > tolerance(DType::F32, 16));
        assert!(tolerance(DType::BF16, 16) > tolerance(DType::F16, 16));
        assert!(tolerance(DType::F16, 16) > tolerance(DType::F32, 16));
        assert_eq!(tolerance(DType::I64, 100), 0.0);
        // An f32 GEMM with K = 4096 must be held far tighter than the 1e-4 model-level budget.
        assert!(tolerance(DType::F32, 4096) < 4e-5);
    }

    #[test]
    fn approximate_ops_widen_the_tolerance_by_their_documented_error() {
        let plain = tolerance(DType::F32, 64);
        assert_eq!(tolerance_with_approx(DType::F32, 64, &[]), plain);
        let softmax = tolerance_with_approx(DType::F32, 64, &[Approx::Ex2, Approx::Rcp]);
        assert!((softmax - plain - 2f64.powi(-22) - 2f64.powi(-23)).abs() < 1e-18);
        // A tanh-approximated GELU is held to about 2^-11, far looser than f32 rounding.
        assert!(tolerance_with_approx(DType::F32, 1, &[Approx::Tanh]) > 4.8e-4);
        assert_eq!(tolerance_with_approx(DType::I32, 64, &[Approx::Tanh]), 0.0);
    }

    #[test]
    fn normwise_error_is_relative_to_the_largest_reference() {
        assert_eq!(normwise_error(&[1.0, 2.5], &[1.0, 2.0]), 0.25);
        assert_eq!(normwise_error(&[0.5], &[0.0]), 0.5);
    }

    #[test]
    #[should_panic(expected = "exceeds tolerance")]
    fn assert_close_rejects_a_one_percent_error_in_f32() {
        assert_close("x", &[1.01], &[1.0], DType::F32, 1);
    }

    #[test]
    fn assert_close_accepts_one_bf16_rounding_step() {
        // Neighbouring bf16 values around 1.0 differ by 2^-7 = 2 u_bf16: within 2·u_out + slack.
        assert_close("x", &[1.0 + 2f64.powi(-7)], &[1.0], DType::BF16, 1);
    }
}

/// A small seeded generator (SplitMix64) for property and robustness tests: reproducible,
/// dependency-free, good enough to pick shapes, ops and mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * 2f64.powi(-53)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Approximately standard normal (sum of 12 uniforms minus 6).
    pub fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

/// Random arguments for every input of `func`: normal floats, integers in `0..3`, random bools;
/// every symbol bound to `min(3, its bound)`.
pub fn random_inputs(
    m: &lathe_ir::Module,
    func: &str,
    seed: u64,
) -> std::collections::HashMap<String, lathe_interp::tensor::Tensor> {
    use lathe_interp::tensor::Tensor;
    let Some(f) = m.function(func) else { return Default::default() };
    let mut rng = Rng::new(seed);
    f.graph
        .inputs()
        .map(|(name, v)| {
            let ty = f.graph.ty(v);
            let shape: Vec<usize> = ty
                .shape
                .iter()
                .map(|d| match d {
                    lathe_ir::Dim::Const(c) => *c as usize,
                    lathe_ir::Dim::Sym(s) => m.symbols[*s].max.min(3) as usize,
                })
                .collect();
            let n = shape.iter().product();
            let t = if ty.dtype.is_float() {
                Tensor::from_f32(ty.dtype, shape, (0..n).map(|_| rng.normal() as f32).collect())
            } else if ty.dtype == DType::Bool {
                Tensor::from_i64(ty.dtype, shape, (0..n).map(|_| rng.below(2) as i64).collect())
            } else {
                Tensor::from_i64(ty.dtype, shape, (0..n).map(|_| rng.below(3) as i64).collect())
            };
            (name.to_string(), t)
        })
        .collect()
}
