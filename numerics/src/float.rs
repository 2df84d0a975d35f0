//! Narrow floating-point formats: bit-exact conversions between f32 and bf16, f16, E4M3 and E5M2.
//!
//! Rounding is decided with integer arithmetic on the exact f32 input (round to nearest, ties
//! to even) instead of whatever conversion instruction a host has, so every backend agrees bit
//! for bit. The fp8 encoders follow PTX `cvt.rn.satfinite`: out-of-range values (and ±Inf)
//! saturate to ±max and NaN becomes the quiet code `0x7F`.

/// Quiet NaN code emitted for both FP8 formats (`cvt.rn.satfinite` convention).
const FP8_NAN: u8 = 0x7F;

/// Largest finite magnitude code of E4M3 (448); 0x7F is NaN, there is no infinity.
const E4M3_MAX: u32 = 0x7E;

/// Largest finite magnitude code of E5M2 (57344); 0x7C is infinity.
const E5M2_MAX: u32 = 0x7B;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::SplitMix;

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
}
