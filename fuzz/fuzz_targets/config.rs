//! libFuzzer entry for the `config` target (`cargo +nightly fuzz run config fuzz/corpus/config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lathe_tests::fuzz::config(data));
