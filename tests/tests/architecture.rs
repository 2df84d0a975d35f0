//! The crate graph drawn in docs/architecture.md is the one the manifests declare: every
//! `lathe-*` normal dependency of every crate, no more and no fewer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `crate folder name → lathe crates it depends on` (normal dependencies only), from Cargo.toml.
fn manifest_graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for dir in
        ["numerics", "tensorfile", "ir", "interp", "frontend", "passes", "kernel", "codegen", "runtime", "compiler"]
    {
        let text = std::fs::read_to_string(root.join(dir).join("Cargo.toml")).expect("manifest");
        let deps = text
            .split("\n[")
            .find(|s| s.starts_with("dependencies]"))
            .map(|s| {
                s.lines()
                    .filter_map(|l| l.strip_prefix("lathe-"))
                    .filter_map(|l| l.split(['.', ' ', '=']).next())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let name = if dir == "compiler" { "lathe (CLI)".to_string() } else { dir.to_string() };
        graph.insert(name, deps);
    }
    graph
}

/// The same map from the edge list in docs/architecture.md (`a ──► b, c`).
fn documented_graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs");
    let block = text.split("```").nth(1).expect("the edge list");
    let mut graph = BTreeMap::new();
    for line in block.lines().filter(|l| l.contains("──►")) {
        let (from, to) = line.split_once("──►").expect("arrow");
        let deps =
            to.split(',').map(str::trim).filter(|d| !d.is_empty() && !d.starts_with('(')).map(str::to_string).collect();
        graph.insert(from.trim().to_string(), deps);
    }
    graph
}

#[test]
fn docs_draw_the_crate_graph_of_the_manifests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert_eq!(documented_graph(&root), manifest_graph(&root));
}
