//! The fuzz targets: one function per untrusted input format, shared by the cargo-fuzz
//! harness in `fuzz/` (libFuzzer, nightly) and the seeded stable driver `tests/tests/fuzz.rs`
//! that CI runs. Each takes arbitrary bytes; any outcome but a panic, an abort or a hang is a
//! pass — errors are the expected answer to most inputs. Where an input is accepted, the
//! target also checks what must then hold (a verified module prints and parses back to
//! itself; a header's tensors lie inside the file).

use std::path::Path;

use lathe_frontend::config::Config;
use lathe_frontend::import::{from_config, ImportOptions};
use lathe_ir::text::{parse_module, print_module};
use lathe_tensorfile::Header;

/// IR text: the parser, then the verifier, then a print/parse round trip of what verified.
pub fn ir_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(m) = parse_module(text) else { return };
    if lathe_ir::verify::verify(&m).is_err() {
        return;
    }
    let printed = print_module(&m);
    match parse_module(&printed) {
        Ok(back) => assert!(back == m.renumbered(), "a verified module does not print back to itself:\n{printed}"),
        Err(e) => panic!("a verified module prints as text that does not parse ({e}):\n{printed}"),
    }
}

/// `config.json`: the reader, the family's resolution and the shape-only import (every
/// program built and verified) of what resolves.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(c) = Config::parse(text, "config.json".into()) else { return };
    // Small symbol bounds keep each accepted config quick to build.
    let opts = ImportOptions { max_batch: 2, max_seq: Some(16), ..ImportOptions::default() };
    if let Err(e) = from_config(&c, &opts) {
        let message = e.to_string();
        assert!(!message.contains("internal error"), "a config reached the graph builder: {message}\n{text}");
    }
}

/// A safetensors file: its header validated against the file, then every tensor's bytes
/// checked to lie inside it without overlapping another.
pub fn safetensors_header(data: &[u8]) {
    let Ok(h) = Header::parse(Path::new("fuzz.safetensors"), data) else { return };
    let mut spans: Vec<(u64, u64)> =
        h.tensors.values().filter(|t| t.len > 0).map(|t| (t.offset, t.offset + t.len)).collect();
    spans.sort_unstable();
    for (begin, end) in &spans {
        assert!(*end <= data.len() as u64 && begin <= end, "a tensor lies outside the file");
    }
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "accepted tensors overlap");
}
