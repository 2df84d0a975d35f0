//! Model-level summaries of the real configs after the default pipeline, snapshotted instead of
//! their full IR: op counts before, launches and groups by strategy after, and the cost model's
//! bytes and FLOPs per program (batch 1, 8192 tokens of context).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

use lathe_frontend::import::{import, ImportOptions};
use lathe_ir::{DType, Graph, Module, Op};
use lathe_passes::cost::{cache_bytes, function_cost, Bindings, H100_SXM};
use lathe_passes::strategy::launches;
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
        let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
        for &n in &f.graph.order {
            if let Op::Fusion(fu) = &f.graph.nodes[n].op {
                *groups.entry(fu.strategy.name()).or_default() += 1;
            }
        }
        let g: Vec<String> = groups.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(s, "  launches: {} ({})", launches(&f.graph), g.join(" "));
        let symbols: HashMap<_, _> =
            m.symbols.iter().map(|(h, sym)| (h, if sym.name == "S" { context.min(sym.max) } else { 1 })).collect();
        let c = function_cost(&f.graph, &Bindings { symbols, kv_len: context }, &H100_SXM);
        let _ = writeln!(
            s,
            "  cost: {:.4e} flops, {:.4e} bytes, {:.3} ms on {}",
            c.flops,
            c.bytes,
            c.seconds * 1e3,
            H100_SXM.name
        );
    }
    let _ = writeln!(s, "cache bytes per sequence at {context}: {}", cache_bytes(m, context));
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
