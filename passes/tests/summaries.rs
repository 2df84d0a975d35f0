//! Model-level summaries of the real configs after the default pipeline, snapshotted instead of
//! their full IR: op counts before, groups by strategy after and the launches their rules give,
//! the memory plan's arena, and the cost model's bytes and FLOPs per program at 8192 tokens of
//! context (`Step::at_context`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use lathe_frontend::import::{import, ImportOptions};
use lathe_ir::{DType, Graph, Module, Op};
use lathe_passes::cost::{cache_bytes, function_cost, Step, H100_SXM};
use lathe_passes::launch::function_launches;
use lathe_passes::plan_memory::plan;
use lathe_passes::strategy::groups;
use lathe_passes::PassManager;

fn op_counts(g: &Graph) -> BTreeMap<&'static str, usize> {
    let mut c = BTreeMap::new();
    for &n in &g.order {
        *c.entry(g.nodes[n].op.name()).or_default() += 1;
    }
    c
}

fn summary(m_before: &Module, m: &Module) -> String {
    let mut s = String::new();
    let context = 8192;
    for (f0, f) in m_before.functions.iter().zip(&m.functions) {
        let _ = writeln!(s, "@{}", f.name);
        let ops: Vec<String> = op_counts(&f0.graph).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(s, "  ops before: {}", ops.join(" "));
        let mut by_strategy: BTreeMap<&str, usize> = BTreeMap::new();
        for &n in &f.graph.order {
            if let Op::Fusion(fu) = &f.graph.nodes[n].op {
                *by_strategy.entry(fu.strategy.name()).or_default() += 1;
            }
        }
        let g: Vec<String> = by_strategy.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(s, "  groups: {} ({})", groups(&f.graph), g.join(" "));
        let launches = function_launches(m, f).unwrap_or_else(|(n, e)| panic!("@{} node {n:?}: {e}", f.name));
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for l in &launches.launches {
            *kinds.entry(l.kind.name()).or_default() += 1;
        }
        let k: Vec<String> = kinds.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(s, "  launches: {} ({})", launches.launches.len(), k.join(" "));
        let p = plan(m, f).unwrap_or_else(|e| panic!("{e}"));
        let _ = writeln!(s, "  arena: {} bytes at the bounds ({} without reuse)", p.peak_bytes, p.no_reuse_bytes);
        let c = function_cost(m, f, &Step::at_context(m, f, context).bindings(m, f), &H100_SXM);
        let _ = writeln!(
            s,
            "  cost: {:.4e} flops, {:.4e} bytes, {:.3} ms on {}",
            c.flops,
            c.bytes,
            c.seconds * 1e3,
            H100_SXM.name
        );
    }
    let _ = writeln!(s, "cache bytes per sequence at {context}: {}", cache_bytes(m, context).unwrap_or(u64::MAX));
    s
}

#[test]
fn real_config_summaries() {
    for name in ["nemotron-h-8b-base-8k", "nemotron-h-47b-base-8k", "nemotron-h-56b-base-8k", "nemotron-nano-9b-v2"] {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/configs").join(name);
        let opts = ImportOptions { compute_dtype: DType::BF16, ..ImportOptions::default() };
        let before = import(&dir, &opts).unwrap_or_else(|e| panic!("{e}")).module;
        let mut after = before.clone();
        let mut pm = PassManager::parse("default").expect("default");
        pm.instrumentation.verify_each = true;
        pm.run(&mut after, &mut std::io::sink()).unwrap_or_else(|e| panic!("{name}: {e}"));
        insta::assert_snapshot!(name, summary(&before, &after));
    }
}
