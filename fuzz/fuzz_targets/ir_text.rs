//! libFuzzer entry for the `ir_text` target (`cargo +nightly fuzz run ir_text fuzz/corpus/ir_text`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lathe_tests::fuzz::ir_text(data));
