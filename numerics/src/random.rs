//! Counter-based random numbers: Philox4x32-10, its uniform mapping, and the synthetic weights
//! that shape-only imports and tests use. Counter-based, so CPU, simulator and GPU draw the same
//! numbers without shared state.

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

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

/// Element `index` of a synthetic weight with key `seed`: `0.05·(2u − 1)` with `u` the Philox
/// uniform of counter `[index, index >> 32, 0, 0]` — symmetric, small, and identical on every
/// backend.
pub fn synthetic_value(seed: u64, index: u64) -> f32 {
    let key = [seed as u32, (seed >> 32) as u32];
    let word = philox4x32_10([index as u32, (index >> 32) as u32, 0, 0], key)[0];
    0.05 * (2.0 * uniform_f32(word) - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::SplitMix;

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

    #[test]
    fn synthetic_values_are_small_symmetric_and_keyed() {
        let vals: Vec<f32> = (0..4096).map(|i| synthetic_value(7, i)).collect();
        assert!(vals.iter().all(|v| v.abs() <= 0.05));
        let mean = vals.iter().map(|&v| f64::from(v)).sum::<f64>() / vals.len() as f64;
        assert!(mean.abs() < 0.003, "{mean}");
        assert_ne!(synthetic_value(7, 0), synthetic_value(8, 0));
        assert_eq!(synthetic_value(7, 5), synthetic_value(7, 5));
    }
}
