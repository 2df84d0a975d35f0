//! libFuzzer entry for the `safetensors_header` target (`cargo +nightly fuzz run safetensors_header fuzz/corpus/safetensors_header`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lathe_tests::fuzz::safetensors_header(data));
