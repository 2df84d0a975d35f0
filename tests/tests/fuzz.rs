//! The fuzz targets (`lathe_tests::fuzz`) driven on stable Rust: a seeded, iteration-bounded
//! run over each target, about a minute in all, that CI runs on every change. Inputs are the
//! seed corpus of `fuzz/corpus/<target>/` and mutants of it (byte flips, interesting tokens and
//! numbers, deletions, duplications, splices between seeds, truncations). The same seed gives
//! the same inputs, so a run never flakes; a failure prints the seed, the iteration and the
//! input (also written to the temp directory) to reproduce it. Every file of
//! `fuzz/regressions/<target>/` (crashes found earlier) runs first.
//!
//! Longer runs: `LATHE_FUZZ_ITERS=1000000 LATHE_FUZZ_SEED=7 cargo test -p lathe-tests --test fuzz`
//! on stable, or cargo-fuzz on nightly (docs/fuzzing.md).

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;

use lathe_tests::{fuzz, Rng};

/// Iterations per target in CI (together about a minute of CPU in the `ci` profile on the 2-core machine).
const ITERS: [(&str, u64); 3] = [("ir_text", 300_000), ("config", 600_000), ("safetensors_header", 3_000_000)];

/// Tokens that often make parsers take unusual paths.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    "(",
    ")",
    ",",
    ":",
    "\"",
    "-1",
    "0",
    "1e400",
    "-0.0",
    "NaN",
    "Infinity",
    "null",
    "true",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "1099511627776",
    "%0",
    "@w",
    "#1",
    "S",
    "<=",
    "fusion",
    "return",
    "f32",
    "i8",
    "\\u0000",
    "{\"__float__\": \"Infinity\"}",
    "[[[[[[[[",
    "\n",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(root().join(dir))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).ok()?)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// One mutant of `seed` (`other` is a second seed for splices).
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = if v.is_empty() { 0 } else { rng.below(v.len() + 1) };
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = [0u8, 0xff, b'0', b'9', b' ', b'"', b'[', b'{'][rng.below(8)];
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.bytes());
            }
            3 if at < v.len() => {
                let end = (at + 1 + rng.below(64)).min(v.len());
                v.drain(at..end);
            }
            4 if at < v.len() => {
                let end = (at + 1 + rng.below(64)).min(v.len());
                let piece: Vec<u8> = v[at..end].to_vec();
                v.splice(at..at, piece);
            }
            5 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(256)).min(other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
            6 => v.truncate(at),
            _ => {
                // A number in the text grows, shrinks or flips sign.
                if let Some(i) = (at..v.len()).find(|&i| v[i].is_ascii_digit()) {
                    let t = ["9999999999", "0", "-", "000", "1e30"][rng.below(5)];
                    v.splice(i..i, t.bytes());
                }
            }
        }
    }
    v
}

/// For safetensors files: sometimes rewrite the length field to match the mutated header, so
/// mutants reach the JSON checks rather than stopping at the length.
fn fix_length(rng: &mut Rng, mut v: Vec<u8>, seed: &[u8]) -> Vec<u8> {
    if rng.below(2) == 0 && seed.len() >= 8 && v.len() >= 8 {
        let old = u64::from_le_bytes(seed[..8].try_into().unwrap_or([0; 8])) as i64;
        let delta = v.len() as i64 - seed.len() as i64;
        let new = (old + delta).max(0) as u64;
        v[..8].copy_from_slice(&new.to_le_bytes());
    }
    v
}

fn check(target: &str, f: fn(&[u8]), input: &[u8], what: &str) {
    if panic::catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        let path = std::env::temp_dir().join(format!("lathe-fuzz-{target}-{}.bin", std::process::id()));
        let _ = std::fs::write(&path, input);
        // The default hook again, so that this message is printed.
        drop(panic::take_hook());
        panic!(
            "fuzz target {target} panicked on {what} (input saved to {}; add it to fuzz/regressions/{target}/):\n{}",
            path.display(),
            String::from_utf8_lossy(&input[..input.len().min(2000)])
        );
    }
}

fn drive(target: &str, f: fn(&[u8])) {
    for (name, input) in files(&format!("regressions/{target}")) {
        check(target, f, &input, &format!("regression {name}"));
    }
    let seeds = files(&format!("corpus/{target}"));
    assert!(!seeds.is_empty(), "fuzz/corpus/{target} has no seeds");
    let iters = std::env::var("LATHE_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| ITERS.iter().find(|(t, _)| *t == target).map_or(10_000, |(_, n)| *n));
    let seed = std::env::var("LATHE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut rng = Rng::new(seed);
    for (name, input) in &seeds {
        check(target, f, input, &format!("seed {name}"));
    }
    for i in 0..iters {
        let (_, a) = &seeds[rng.below(seeds.len())];
        let (_, b) = &seeds[rng.below(seeds.len())];
        let mut v = mutate(&mut rng, a, b);
        if target == "safetensors_header" {
            v = fix_length(&mut rng, v, a);
        }
        check(target, f, &v, &format!("iteration {i} of seed {seed}"));
    }
}

/// Silences the default panic message while targets run: a failure is reported once, by
/// [`check`], with its input.
fn quiet() {
    panic::set_hook(Box::new(|_| {}));
}

#[test]
fn ir_text_parser_and_verifier() {
    quiet();
    drive("ir_text", fuzz::ir_text);
}

#[test]
fn config_reader_and_import() {
    quiet();
    drive("config", fuzz::config);
}

#[test]
fn safetensors_header_reader() {
    quiet();
    drive("safetensors_header", fuzz::safetensors_header);
}
