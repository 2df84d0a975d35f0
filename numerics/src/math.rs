//! Elementwise math with a pinned-down precision and operation order: the deterministic `exp`,
//! `erf`, and the activations built on them. Every backend reproduces these bit for bit.

/// Nearest f32 to sqrt(2/pi); spelled out so every backend embeds the same constant.
const SQRT_2_OVER_PI_F32: f32 = 0.797_884_6;

/// The error function, accurate to a few ulp (well under 1e-14 relative) for every input.
///
/// Method: for |x| < 3 the everywhere-positive series
/// `erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n (2x^2)^n x / (1*3*...*(2n+1))`, which has no
/// cancellation; for 3 <= |x| < 6 the classical continued fraction for erfc evaluated
/// bottom-up, where erfc < 2.3e-5 so its small relative error barely touches erf; beyond 6,
/// erfc is below half an ulp of 1 and erf is exactly ±1. Odd symmetry is applied last, so
/// erf(-0) = -0 and NaN propagates.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let magnitude = if a < 3.0 {
        erf_series(a)
    } else if a < 6.0 {
        1.0 - erfc_continued_fraction(a)
    } else {
        1.0
    };
    magnitude.copysign(x)
}

/// exp(-a^2) with the rounding error of a^2 compensated, because near |x| = 3 that error
/// would otherwise be amplified to ~1e-15 relative.
fn exp_neg_square(a: f64) -> f64 {
    let hi = a * a;
    let lo = a.mul_add(a, -hi);
    let e = (-hi).exp();
    e.mul_add(-lo, e)
}

/// The positive-term series for erf on [0, 3).
fn erf_series(a: f64) -> f64 {
    let two_a2 = 2.0 * a * a;
    let mut term = a;
    let mut sum = a;
    // Terms peak near n = a^2 < 9 and then shrink geometrically; ~45 terms suffice at 3.
    for n in 1..200 {
        term *= two_a2 / f64::from(2 * n + 1);
        sum += term;
        if term <= sum * 1e-17 {
            break;
        }
    }
    std::f64::consts::FRAC_2_SQRT_PI * exp_neg_square(a) * sum
}

/// erfc(a) for a in [3, 6) from
/// `erfc(a) = exp(-a^2)/sqrt(pi) / (a + (1/2)/(a + 1/(a + (3/2)/(a + ...))))`.
fn erfc_continued_fraction(a: f64) -> f64 {
    // 60 levels reach full double precision already at a = 3 (checked against mpmath).
    let mut t = a;
    for n in (1..=60).rev() {
        t = a + f64::from(n) * 0.5 / t;
    }
    0.5 * std::f64::consts::FRAC_2_SQRT_PI * exp_neg_square(a) / t
}

/// `e^x` for f32, the interpreter's one exponential.
///
/// Computed in f64 and rounded once: `x = k·ln2 + r` with `k` the nearest integer to `x/ln2`
/// (ln2 split in two so `k·ln2_hi` is exact), `e^r` by its Taylor polynomial to degree 11
/// (|r| ≤ 0.347, truncation < 7e-15 relative), scaled by `2^k` exactly. The f64 result is within
/// ~1e-14 relative of `e^x`, so the f32 result is the correctly rounded one except for inputs
/// whose value lies that close to a rounding boundary, where it is off by at most one ulp. It
/// uses no library call and no fused multiply-add, so every host gets the same bits, and it has
/// no branches, so loops over it vectorize. `x` ≥ 89 gives +inf, `x` ≤ -104 gives +0 (the
/// rounded value of `e^x` there), NaN gives NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with the low 21 bits of its mantissa zero.
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
    // 1.5·2^52: adding it rounds to an integer held in the low mantissa bits.
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    const C: [f64; 12] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
    ];
    // Clamping keeps 2^k a normal f64; beyond the bounds the rounded result is inf or 0 anyway.
    // NaN passes through `clamp` and every step after it.
    let xd = f64::from(x.clamp(-104.0, 89.0));
    let shifted = xd * std::f64::consts::LOG2_E + SHIFTER;
    let kd = shifted - SHIFTER;
    let r = (xd - kd * LN2_HI) - kd * LN2_LO;
    let mut p = C[11];
    for &c in C[..11].iter().rev() {
        p = p * r + c;
    }
    // k (in [-151, 129]) sits in the low bits of `shifted`; 2^k is built from its exponent field.
    let k = shifted.to_bits().wrapping_sub(SHIFTER.to_bits());
    let scale = f64::from_bits(k.wrapping_add(1023) << 52);
    (p * scale) as f32
}

/// SiLU, `x / (1 + exp(-x))`, evaluated in f32 in exactly that order with [`exp`].
///
/// For very negative x the denominator overflows to +Inf and the quotient is -0.0; x = -Inf
/// would give Inf/Inf = NaN, so it is defined as -0.0, the limit.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    let y = x / (1.0 + exp(-x));
    if x == f32::NEG_INFINITY {
        -0.0
    } else {
        y
    }
}

/// Logistic sigmoid, `1 / (1 + exp(-x))`, evaluated in f32 with [`exp`].
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Softplus with threshold 20 (torch's default and the Mamba kernels' convention): `x` if
/// `x > 20`, else `ln_1p(exp(x))`, evaluated in f32.
pub fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        exp(x).ln_1p()
    }
}

/// Exact GELU, `0.5 * x * (1 + erf(x / sqrt 2))`, computed in f64 and rounded once to f32.
pub fn gelu_erf(x: f32) -> f32 {
    let x = f64::from(x);
    (0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2))) as f32
}

/// Tanh-approximated GELU, `0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`,
/// evaluated in f32 left to right with `x^3` as `x * x * x`.
///
/// NaN for x = -Inf (0 * Inf), matching a literal evaluation of the formula.
pub fn gelu_tanh(x: f32) -> f32 {
    let inner = SQRT_2_OVER_PI_F32 * (x + 0.044_715 * x * x * x);
    0.5 * x * (1.0 + inner.tanh())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_known_values_and_symmetry() {
        // The first eight are the brief's table; the rest are mpmath (40 digits) rounded.
        let table = [
            (0.0, 0.0),
            (0.1, 0.1124629160182849),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (-1.0, -0.8427007929497149),
            (2.0, 0.9953222650189527),
            (3.0, 0.9999779095030014),
            (6.0, 1.0),
            (1e-10, 1.1283791670955126e-10),
            (0.01, 0.011283415555849616),
            (1.5, 0.9661051464753108),
            (2.5, 0.999593047982555),
            (2.75, 0.9998993780778803),
            (2.9999, 0.9999778955735178),
            (3.5, 0.9999992569016276),
            (4.0, 0.9999999845827421),
            (5.0, 0.9999999999984626),
            (27.0, 1.0),
        ];
        for (x, want) in table {
            let got = erf(x);
            assert!((got - want).abs() <= 1e-14 * want.abs(), "erf({x}) = {got}, want {want}");
        }
        let mut x = -8.0;
        while x <= 8.0 {
            assert_eq!(erf(-x).to_bits(), (-erf(x)).to_bits(), "odd at {x}");
            x += 0.0123;
        }
        assert!(erf(-0.0).is_sign_negative() && erf(f64::NAN).is_nan());
        assert_eq!(erf(f64::INFINITY), 1.0);
        assert_eq!(erf(f64::NEG_INFINITY), -1.0);
    }

    /// The next f32 up or down in value, for counting ulps.
    fn ulps_apart(a: f32, b: f32) -> u32 {
        let key = |v: f32| {
            let b = v.to_bits() as i64;
            if b & 0x8000_0000 != 0 {
                -(b & 0x7FFF_FFFF)
            } else {
                b
            }
        };
        (key(a) - key(b)).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_correctly_rounded_but_for_rare_ties() {
        // Every 61st f32 in [-105, 90] (about 2.5e7 inputs, all binades), against the f64
        // exponential rounded once: the correctly rounded value except in f64 hard cases.
        let (lo, hi) = ((-105.0f32).to_bits(), 90.0f32.to_bits());
        let (mut n, mut off_by_one) = (0u64, 0u64);
        let mut check = |x: f32| {
            let want = f64::from(x).exp() as f32;
            let got = exp(x);
            n += 1;
            if got.to_bits() != want.to_bits() {
                let d = ulps_apart(got, want);
                assert!(d <= 1, "exp({x:e}) = {got:e}, want {want:e}");
                off_by_one += 1;
            }
        };
        // Negative inputs count down from -0 to -105, positive ones up from +0 to 90.
        let mut b = 0x8000_0000u32;
        while b <= lo {
            check(f32::from_bits(b));
            b += 61;
        }
        let mut b = 0u32;
        while b <= hi {
            check(f32::from_bits(b));
            b += 61;
        }
        assert!(n > 20_000_000);
        assert!(off_by_one * 1_000_000 < n, "{off_by_one} of {n} off by one ulp");
        // The ends and the special values.
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(1.0), std::f32::consts::E);
        assert_eq!(exp(88.72283), f32::MAX.min(f64::from(88.72283f32).exp() as f32));
        assert_eq!(exp(88.8), f32::INFINITY);
        assert_eq!(exp(1000.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(-103.0), f64::from(-103.0f32).exp() as f32);
        assert!(exp(-103.0) > 0.0);
        assert_eq!(exp(-104.5).to_bits(), 0);
        assert_eq!(exp(f32::NEG_INFINITY).to_bits(), 0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn activation_spot_values() {
        assert_eq!(softplus(30.0), 30.0);
        assert_eq!(softplus(0.0), std::f32::consts::LN_2);
        assert_eq!(softplus(-200.0), 0.0);
        let s = silu(-100.0);
        assert!(s.is_finite() && s.abs() < 1e-40, "{s}");
        assert_eq!(silu(-1000.0), 0.0);
        assert_eq!(silu(f32::NEG_INFINITY), 0.0);
        assert_eq!(silu(0.0), 0.0);
        assert_eq!(silu(1.0), 1.0 / (1.0 + exp(-1.0)));
        assert_eq!(silu(20.0), 20.0);
        assert!(silu(f32::NAN).is_nan() && sigmoid(f32::NAN).is_nan());
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
        assert_eq!(gelu_erf(1.0), 0.8413447460685429_f64 as f32);
        assert_eq!(gelu_erf(0.0), 0.0);
        assert!((f64::from(gelu_tanh(1.0)) - 0.8411919906082768).abs() <= 1e-7);
        assert_eq!(gelu_tanh(0.0), 0.0);
        let c = (2.0 / std::f64::consts::PI).sqrt() as f32;
        assert_eq!(SQRT_2_OVER_PI_F32, c);
    }
}
