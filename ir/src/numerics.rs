//! Bit-exact reference numerics shared by every lathe backend.
//!
//! The interpreter, the simulator and generated GPU code must agree bit for bit, so the
//! narrow-float conversions here decide rounding with integer arithmetic on the exact f32
//! input instead of trusting whatever conversion instruction a host happens to have, and the
//! elementwise helpers pin down the precision and operation order other backends reproduce.

/// Quiet NaN code emitted for both FP8 formats (`cvt.rn.satfinite` convention).
const FP8_NAN: u8 = 0x7F;

/// Largest finite magnitude code of E4M3 (448); 0x7F is NaN, there is no infinity.
const E4M3_MAX: u32 = 0x7E;

/// Largest finite magnitude code of E5M2 (57344); 0x7C is infinity.
const E5M2_MAX: u32 = 0x7B;

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// Nearest f32 to sqrt(2/pi); spelled out so every backend embeds the same constant.
const SQRT_2_OVER_PI_F32: f32 = 0.797_884_6;

/// Rounds a finite non-negative f32, given as its bits, to the nearest magnitude code of a
/// narrower binary format with `man_bits` stored mantissa bits and exponent bias `bias`,
/// ties to even.
///
/// The returned code may lie beyond the format's largest finite code (even beyond its
/// infinity code); the callers decide between infinity and saturation because the IEEE-like
/// and the saturating formats disagree there.
fn round_magnitude(abs_bits: u32, man_bits: u32, bias: i32) -> u32 {
    let biased = (abs_bits >> 23) as i32;
    let frac = abs_bits & 0x7F_FFFF;
    // An f32 subnormal behaves like exponent 1 without the hidden bit, which lets both
    // cases share the "value = sig * 2^(exp - 150)" form below.
    let (exp, sig) = if biased == 0 { (1, frac) } else { (biased, frac | 0x80_0000) };
    // Below biased exponent 1 the target is subnormal and its spacing stops shrinking; for
    // f32 subnormal inputs `exp` overstates the magnitude, which is harmless because every
    // target has a bias no larger than f32's, so they land in that clamped region anyway.
    let target_exp = (exp - 127 + bias).max(1);
    // How many low bits of `sig` fall below the target's spacing. At least 23 - man_bits,
    // so never zero for the formats here.
    let shift = (target_exp - bias - man_bits as i32) - (exp - 150);
    let q = if shift >= 32 {
        // sig < 2^24 <= 2^(shift - 1): strictly less than half the smallest step.
        0
    } else {
        let kept = sig >> shift;
        let rest = sig & ((1u32 << shift) - 1);
        let half = 1u32 << (shift - 1);
        if rest > half || (rest == half && kept & 1 == 1) {
            kept + 1
        } else {
            kept
        }
    };
    // For normal targets `q` carries the hidden bit, so adding it to (exp - 1) << man_bits
    // yields exp << man_bits | mantissa, and a round-up that overflows the mantissa carries
    // into the exponent for free; for subnormal targets the first term is zero.
    (((target_exp - 1) as u32) << man_bits) + q
}

/// Encodes to a 16-bit IEEE-style format (1 sign, `15 - man_bits` exponent bits) with
/// round-to-nearest-even and overflow to infinity.
fn encode_ieee16(x: f32, man_bits: u32, bias: i32) -> u16 {
    let bits = x.to_bits();
    let sign = (bits >> 16) & 0x8000;
    let abs = bits & 0x7FFF_FFFF;
    let inf = ((1u32 << (15 - man_bits)) - 1) << man_bits;
    let mag = if abs > 0x7F80_0000 {
        // Keep the leading payload bits but force the quiet bit so that a signalling NaN
        // never comes out of a conversion (and a payload truncated to zero stays a NaN).
        inf | (1 << (man_bits - 1)) | ((abs & 0x7F_FFFF) >> (23 - man_bits))
    } else if abs == 0x7F80_0000 {
        inf
    } else {
        round_magnitude(abs, man_bits, bias).min(inf)
    };
    (sign | mag) as u16
}

/// Encodes to an OFP8 format with round-to-nearest-even and `satfinite` saturation.
fn encode_fp8_satfinite(x: f32, man_bits: u32, bias: i32, max_code: u32) -> u8 {
    let bits = x.to_bits();
    let abs = bits & 0x7FFF_FFFF;
    if abs > 0x7F80_0000 {
        return FP8_NAN;
    }
    let sign = (bits >> 24) & 0x80;
    // Infinity takes the same path as huge finite values: satfinite clamps both.
    let mag = round_magnitude(abs.min(0x7F7F_FFFF), man_bits, bias).min(max_code);
    (sign | mag) as u8
}

/// 2^n as an f64; only valid for normal exponents, which covers every format here.
fn pow2(n: i32) -> f64 {
    f64::from_bits(((n + 1023) as u64) << 52)
}

/// Exact value of a finite magnitude code of a narrow binary format.
fn decode_finite(mag: u32, man_bits: u32, bias: i32) -> f64 {
    let exp = (mag >> man_bits) as i32;
    let mant = mag & ((1 << man_bits) - 1);
    if exp == 0 {
        f64::from(mant) * pow2(1 - bias - man_bits as i32)
    } else {
        f64::from(mant | (1 << man_bits)) * pow2(exp - bias - man_bits as i32)
    }
}

/// Applies a sign bit to an exact magnitude and narrows to f32 (exact for every format
/// here, since they are all subsets of f32).
fn with_sign(negative: bool, magnitude: f64) -> f32 {
    let v = magnitude as f32;
    if negative {
        -v
    } else {
        v
    }
}

/// A quiet f32 NaN carrying the given sign.
fn signed_nan(negative: bool) -> f32 {
    f32::from_bits(if negative { 0xFFC0_0000 } else { 0x7FC0_0000 })
}

/// Converts an f32 to bfloat16 bits, rounding to nearest with ties to even.
///
/// Overflow rounds to infinity as IEEE prescribes; NaN stays a quiet NaN with its sign and
/// leading payload bits; infinities and signed zeros are preserved.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    encode_ieee16(x, 7, 127)
}

/// Converts bfloat16 bits to the f32 with the same value (exact; NaN payloads kept).
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// Converts an f32 to IEEE binary16 bits, rounding to nearest with ties to even.
///
/// Subnormal results are rounded correctly, overflow gives a signed infinity and NaN
/// becomes a quiet NaN that keeps its sign and leading payload bits.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    encode_ieee16(x, 10, 15)
}

/// Converts IEEE binary16 bits to the f32 with the same value (exact).
pub fn f16_bits_to_f32(b: u16) -> f32 {
    let negative = b & 0x8000 != 0;
    let mag = u32::from(b & 0x7FFF);
    if mag >= 0x7C00 {
        let payload = (mag & 0x3FF) << 13;
        let sign = if negative { 0x8000_0000 } else { 0 };
        if payload == 0 {
            return f32::from_bits(sign | 0x7F80_0000);
        }
        return f32::from_bits(sign | 0x7FC0_0000 | payload);
    }
    with_sign(negative, decode_finite(mag, 10, 15))
}

/// Converts an f32 to OCP OFP8 E4M3 (bias 7, max ±448, no infinities).
///
/// Rounds to nearest with ties to even and saturates like PTX `cvt.rn.satfinite`: finite
/// values and infinities beyond ±448 become ±448. NaN becomes 0x7F. Results that round to
/// zero keep their sign.
pub fn f32_to_e4m3(x: f32) -> u8 {
    encode_fp8_satfinite(x, 3, 7, E4M3_MAX)
}

/// Converts an f32 to OCP OFP8 E5M2 (bias 15, max ±57344, IEEE-like specials).
///
/// Rounds to nearest with ties to even and saturates like PTX `cvt.rn.satfinite`: finite
/// values and infinities beyond ±57344 become ±57344. NaN becomes 0x7F (a NaN in E5M2 as
/// well). Results that round to zero keep their sign.
pub fn f32_to_e5m2(x: f32) -> u8 {
    encode_fp8_satfinite(x, 2, 15, E5M2_MAX)
}

/// Decodes an OCP OFP8 E4M3 code to its exact f32 value; 0x7F and 0xFF are NaN.
pub fn e4m3_to_f32(b: u8) -> f32 {
    let negative = b & 0x80 != 0;
    let mag = u32::from(b & 0x7F);
    if mag == 0x7F {
        return signed_nan(negative);
    }
    with_sign(negative, decode_finite(mag, 3, 7))
}

/// Decodes an OCP OFP8 E5M2 code to its exact f32 value, including ±Inf and NaNs.
pub fn e5m2_to_f32(b: u8) -> f32 {
    let negative = b & 0x80 != 0;
    let mag = u32::from(b & 0x7F);
    if mag == 0x7C {
        return if negative { f32::NEG_INFINITY } else { f32::INFINITY };
    }
    if mag > 0x7C {
        return signed_nan(negative);
    }
    with_sign(negative, decode_finite(mag, 2, 15))
}

/// Rounds an f32 to the nearest bfloat16 value (ties to even), returned as f32.
pub fn round_to_bf16(x: f32) -> f32 {
    bf16_bits_to_f32(f32_to_bf16_bits(x))
}

/// Rounds an f32 to the nearest IEEE binary16 value (ties to even), returned as f32.
pub fn round_to_f16(x: f32) -> f32 {
    f16_bits_to_f32(f32_to_f16_bits(x))
}

/// Rounds an f32 to the nearest E4M3 value (ties to even, saturating), returned as f32.
pub fn round_to_e4m3(x: f32) -> f32 {
    e4m3_to_f32(f32_to_e4m3(x))
}

/// Rounds an f32 to the nearest E5M2 value (ties to even, saturating), returned as f32.
pub fn round_to_e5m2(x: f32) -> f32 {
    e5m2_to_f32(f32_to_e5m2(x))
}

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

/// Philox4x32-10 (Salmon et al., SC'11; Random123): one 128-bit block for a counter and key.
///
/// Ten rounds of two 32x32->64 multiplies with the Weyl-sequence key schedule, the key
/// being bumped before every round after the first.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        let p0 = u64::from(PHILOX_M0) * u64::from(c[0]);
        let p1 = u64::from(PHILOX_M1) * u64::from(c[2]);
        c = [((p1 >> 32) as u32) ^ c[1] ^ k[0], p1 as u32, ((p0 >> 32) as u32) ^ c[3] ^ k[1], p0 as u32];
    }
    c
}

/// Maps a random 32-bit word to a uniform f32 in [0, 1): `(word >> 8) * 2^-24`.
///
/// Only the top 24 bits are used so that every result is exact in f32 and 1.0 can never
/// be produced by rounding.
pub fn uniform_f32(word: u32) -> f32 {
    (word >> 8) as f32 * (1.0 / 16_777_216.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64, so the sampled inputs are reproducible without a dependency.
    struct SplitMix(u64);

    impl SplitMix {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn next_u32(&mut self) -> u32 {
            (self.next_u64() >> 32) as u32
        }
    }

    /// Value of a magnitude code read straight from the format definition, ignoring what
    /// the all-ones exponent means; used for decoding checks and to place midpoints.
    fn spec_magnitude(code: u32, exp_bits: u32, man_bits: u32, bias: i32) -> f64 {
        let e = ((code >> man_bits) & ((1 << exp_bits) - 1)) as i32;
        let m = f64::from(code & ((1 << man_bits) - 1)) / f64::from(1u32 << man_bits);
        if e == 0 {
            2f64.powi(1 - bias) * m
        } else {
            2f64.powi(e - bias) * (1.0 + m)
        }
    }

    struct Fp8 {
        encode: fn(f32) -> u8,
        decode: fn(u8) -> f32,
        exp_bits: u32,
        man_bits: u32,
        bias: i32,
        max_code: u8,
    }

    const E4M3: Fp8 =
        Fp8 { encode: f32_to_e4m3, decode: e4m3_to_f32, exp_bits: 4, man_bits: 3, bias: 7, max_code: 0x7E };
    const E5M2: Fp8 =
        Fp8 { encode: f32_to_e5m2, decode: e5m2_to_f32, exp_bits: 5, man_bits: 2, bias: 15, max_code: 0x7B };

    impl Fp8 {
        fn is_nan_code(&self, c: u8) -> bool {
            if self.exp_bits == 4 {
                c & 0x7F == 0x7F
            } else {
                c & 0x7F > 0x7C
            }
        }
        /// Decoding per the OFP8 spec text: specials first, then sign/exponent/mantissa.
        fn spec_decode(&self, c: u8) -> f64 {
            let neg = c & 0x80 != 0;
            if self.is_nan_code(c) {
                return f64::NAN;
            }
            let mag = if self.exp_bits == 5 && c & 0x7F == 0x7C {
                f64::INFINITY
            } else {
                spec_magnitude(u32::from(c & 0x7F), self.exp_bits, self.man_bits, self.bias)
            };
            if neg {
                -mag
            } else {
                mag
            }
        }
        /// Brute-force nearest finite code, ties to the even code; nearest-finite is the
        /// same thing as round-then-satfinite, so this is an independent oracle.
        fn brute_encode(&self, x: f32) -> u8 {
            if x.is_nan() {
                return 0x7F;
            }
            let a = f64::from(x.abs());
            let sign = if x.is_sign_negative() { 0x80 } else { 0 };
            // Distances to far-away codes are not exact in f64 for huge inputs; above the
            // maximum the nearest finite code is the maximum anyway.
            if a >= self.spec_decode(self.max_code) {
                return self.max_code | sign;
            }
            let mut best = 0u8;
            let dist = |c: u8| (self.spec_decode(c) - a).abs();
            for c in 1..=self.max_code {
                if dist(c) < dist(best) || (dist(c) == dist(best) && c % 2 == 0) {
                    best = c;
                }
            }
            best | sign
        }
    }

    fn exact_f32(v: f64) -> f32 {
        let f = v as f32;
        assert_eq!(f64::from(f), v, "{v} is not exact in f32");
        f
    }

    #[test]
    fn fp8_decode_matches_spec_for_all_codes() {
        for fmt in [&E4M3, &E5M2] {
            for c in 0..=255u8 {
                let (ours, spec) = ((fmt.decode)(c), fmt.spec_decode(c));
                if spec.is_nan() {
                    assert!(ours.is_nan(), "code {c:#04x}");
                } else {
                    assert_eq!(f64::from(ours).to_bits(), spec.to_bits(), "code {c:#04x}");
                }
            }
        }
        assert_eq!(e4m3_to_f32(0x7E), 448.0);
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9));
        assert_eq!(e5m2_to_f32(0x7B), 57344.0);
        assert_eq!(e5m2_to_f32(0x01), 2f32.powi(-16));
        assert_eq!(e5m2_to_f32(0xFC), f32::NEG_INFINITY);
    }

    #[test]
    fn fp8_encode_inverts_decode() {
        for fmt in [&E4M3, &E5M2] {
            for c in 0..=255u8 {
                if !fmt.is_nan_code(c) && c & 0x7F <= fmt.max_code {
                    assert_eq!((fmt.encode)((fmt.decode)(c)), c, "code {c:#04x}");
                }
            }
        }
        assert_eq!(f32_to_e4m3(-0.0), 0x80);
        assert_eq!(f32_to_e5m2(-0.0), 0x80);
    }

    #[test]
    fn fp8_midpoints_round_to_even_and_neighbours_round_outward() {
        for fmt in [&E4M3, &E5M2] {
            for lo in 0..fmt.max_code {
                let hi = lo + 1;
                let mid = exact_f32((fmt.spec_decode(lo) + fmt.spec_decode(hi)) / 2.0);
                let even = if lo % 2 == 0 { lo } else { hi };
                let below = f32::from_bits(mid.to_bits() - 1);
                let above = f32::from_bits(mid.to_bits() + 1);
                for (x, want) in [(mid, even), (below, lo), (above, hi)] {
                    assert_eq!((fmt.encode)(x), want, "x = {x:e}");
                    assert_eq!((fmt.encode)(-x), want | 0x80, "x = -{x:e}");
                }
            }
        }
        // Largest subnormal / smallest normal tie goes to the (even) normal.
        assert_eq!(f32_to_e4m3(2f32.powi(-6) - 2f32.powi(-10)), 0x08);
        assert_eq!(f32_to_e5m2(2f32.powi(-14) - 2f32.powi(-17)), 0x04);
    }

    #[test]
    fn fp8_saturates_and_handles_specials() {
        let e4m3_big = [448.5, 464.0, 464.03125, 480.0, 1e10, f32::MAX, f32::INFINITY];
        for x in e4m3_big {
            assert_eq!(f32_to_e4m3(x), 0x7E, "{x}");
            assert_eq!(f32_to_e4m3(-x), 0xFE, "-{x}");
        }
        // 61440 is the tie between 57344 and the unrepresentable 65536; plain RNE would
        // give Inf (57344 has an odd mantissa), satfinite keeps the maximum.
        for x in [57345.0, 61440.0, 61441.0, 65536.0, 1e30, f32::INFINITY] {
            assert_eq!(f32_to_e5m2(x), 0x7B, "{x}");
            assert_eq!(f32_to_e5m2(-x), 0xFB, "-{x}");
        }
        for nan in [f32::NAN, -f32::NAN, f32::from_bits(0x7F80_0001)] {
            assert_eq!(f32_to_e4m3(nan), 0x7F);
            assert_eq!(f32_to_e5m2(nan), 0x7F);
        }
        assert!(e5m2_to_f32(0x7F).is_nan() && round_to_e4m3(f32::NAN).is_nan());
        assert_eq!(round_to_e4m3(1000.0), 448.0);
        assert_eq!(round_to_e5m2(-1e9), -57344.0);
    }

    #[test]
    fn fp8_tiny_values() {
        for (fmt, min_sub) in [(&E4M3, 2f32.powi(-9)), (&E5M2, 2f32.powi(-16))] {
            let half = min_sub / 2.0;
            let cases = [
                (half, 0x00),
                (f32::from_bits(half.to_bits() + 1), 0x01),
                (f32::from_bits(half.to_bits() - 1), 0x00),
                (f32::from_bits(1), 0x00),
                (f32::MIN_POSITIVE, 0x00),
                (min_sub * 1.5, 0x02),
            ];
            for (x, want) in cases {
                assert_eq!((fmt.encode)(x), want, "{x:e}");
                assert_eq!((fmt.encode)(-x), want | 0x80, "-{x:e}");
            }
        }
    }

    #[test]
    fn fp8_encoders_match_brute_force_on_samples() {
        let mut rng = SplitMix(7);
        for i in 0..200_000 {
            let bits = rng.next_u32();
            let x = if i % 4 == 0 {
                f32::from_bits(bits)
            } else {
                // Exponents around the FP8 ranges, where all the interesting rounding is.
                let exp = 127 - 20 + (bits >> 23) % 38;
                f32::from_bits((bits & 0x807F_FFFF) | (exp << 23))
            };
            for fmt in [&E4M3, &E5M2] {
                assert_eq!((fmt.encode)(x), fmt.brute_encode(x), "x = {x:e}");
            }
        }
    }

    fn assert_same_f32(ours: f32, oracle: f32, what: &str) {
        if oracle.is_nan() {
            assert!(ours.is_nan(), "{what}");
        } else {
            assert_eq!(ours.to_bits(), oracle.to_bits(), "{what}");
        }
    }

    #[test]
    fn bit16_decoders_match_half_exhaustively() {
        for b in 0..=u16::MAX {
            let bf = half::bf16::from_bits(b).to_f32();
            assert_same_f32(bf16_bits_to_f32(b), bf, &format!("bf16 {b:#06x}"));
            let h = half::f16::from_bits(b).to_f32();
            assert_same_f32(f16_bits_to_f32(b), h, &format!("f16 {b:#06x}"));
        }
    }

    /// Checks our encoder against `half` (and the NaN/round-trip rules) for one input.
    fn check_16(x: f32) {
        let (bf, h) = (f32_to_bf16_bits(x), f32_to_f16_bits(x));
        let (hbf, hh) = (half::bf16::from_f32(x), half::f16::from_f32(x));
        if x.is_nan() {
            assert!(hbf.is_nan() && hh.is_nan());
            assert_eq!(bf & 0x7FC0, 0x7FC0, "bf16 NaN not quiet for {:#x}", x.to_bits());
            assert_eq!(h & 0x7E00, 0x7E00, "f16 NaN not quiet for {:#x}", x.to_bits());
            assert_eq!(bf >> 15, h >> 15);
            assert_eq!(u32::from(bf >> 15), x.to_bits() >> 31);
        } else {
            assert_eq!(bf, hbf.to_bits(), "bf16 of {x:e} ({:#x})", x.to_bits());
            assert_eq!(h, hh.to_bits(), "f16 of {x:e} ({:#x})", x.to_bits());
        }
    }

    /// (encode, decode, exp_bits, man_bits, bias) of the two 16-bit formats.
    type Fmt16 = (fn(f32) -> u16, fn(u16) -> f32, u32, u32, i32);
    const FMT16: [Fmt16; 2] =
        [(f32_to_bf16_bits, bf16_bits_to_f32, 8, 7, 127), (f32_to_f16_bits, f16_bits_to_f32, 5, 10, 15)];

    #[test]
    fn bit16_encoders_on_codes_midpoints_and_their_neighbours() {
        for (encode, decode, exp_bits, man_bits, bias) in FMT16 {
            let inf = ((1u16 << exp_bits) - 1) << man_bits;
            for c in 0..inf {
                let v = decode(c);
                assert_eq!(encode(v), c);
                assert_eq!(encode(-v), c | 0x8000);
                // For the largest finite code the upper neighbour is the infinity code read
                // as if it were finite, so its midpoint is IEEE's overflow threshold.
                let lo = spec_magnitude(u32::from(c), exp_bits, man_bits, bias);
                let hi = spec_magnitude(u32::from(c) + 1, exp_bits, man_bits, bias);
                let mid = exact_f32((lo + hi) / 2.0);
                let even = if c % 2 == 0 { c } else { c + 1 };
                let below = f32::from_bits(mid.to_bits() - 1);
                let above = f32::from_bits(mid.to_bits() + 1);
                // Independent IEEE RNE check, not relying on `half`.
                for (x, want) in [(mid, even), (below, c), (above, c + 1)] {
                    assert_eq!(encode(x), want, "{x:e}");
                    assert_eq!(encode(-x), want | 0x8000, "-{x:e}");
                }
                for x in [v, mid, below, above] {
                    check_16(x);
                    check_16(-x);
                }
            }
        }
        check_16(f32::INFINITY);
        check_16(f32::NEG_INFINITY);
        check_16(f32::MAX);
        check_16(f32::from_bits(1));
        assert_eq!(f32_to_f16_bits(65520.0), 0x7C00);
        assert_eq!(f32_to_bf16_bits(f32::MAX), 0x7F80);
    }

    #[test]
    fn bit16_encoders_match_half_on_random_bits() {
        let mut rng = SplitMix(0x1a7e);
        for _ in 0..3_000_000 {
            check_16(f32::from_bits(rng.next_u32()));
        }
        for nan_bits in [0x7F80_0001, 0xFF80_0001, 0x7FC0_0000, 0xFFFF_FFFF, 0x7F80_2000] {
            check_16(f32::from_bits(nan_bits));
            assert!(round_to_bf16(f32::from_bits(nan_bits)).is_nan());
            assert!(round_to_f16(f32::from_bits(nan_bits)).is_nan());
        }
        assert_eq!(round_to_f16(1.0 + 2f32.powi(-11)), 1.0);
        assert_eq!(round_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
    }

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

    #[test]
    fn philox_matches_random123_known_answers() {
        // Random123 tests/kat_vectors lines 27-29 (DEShawResearch/random123 @ 9545ff6).
        let kats: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
            ([0; 4], [0; 2], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]),
            ([u32::MAX; 4], [u32::MAX; 2], [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]),
            (
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0],
                [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
            ),
        ];
        for (ctr, key, want) in kats {
            assert_eq!(philox4x32_10(ctr, key), want);
        }
    }

    #[test]
    fn uniform_f32_is_in_unit_interval() {
        assert_eq!(uniform_f32(0), 0.0);
        assert_eq!(uniform_f32(0xFF), 0.0);
        assert_eq!(uniform_f32(0x100), 2f32.powi(-24));
        assert_eq!(uniform_f32(u32::MAX), 1.0 - 2f32.powi(-24));
        assert_eq!(uniform_f32(0x8000_0000), 0.5);
        let mut rng = SplitMix(3);
        for _ in 0..100_000 {
            let u = uniform_f32(rng.next_u32());
            assert!((0.0..1.0).contains(&u));
        }
    }
}
