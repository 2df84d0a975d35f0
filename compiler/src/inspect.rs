//! `lathe inspect` output formats: IR as text, JSON or Graphviz dot (fusion groups as clusters
//! labelled by strategy), and the cost/cache statistics.

use std::collections::HashMap;
use std::fmt::Write as _;

use lathe_ir::infer::type_str;
use lathe_ir::{Graph, Module, Op, ValueId};
use lathe_passes::cost::{cache_bytes, function_cost, Gpu, Step, GPUS};
use serde_json::{json, Value};

use crate::error::CliError;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The IR text format.
    Text,
    /// JSON (the IR, or with `--stats` the statistics).
    Json,
    /// Graphviz dot.
    Dot,
}

/// Looks up a GPU of the cost model by name.
pub fn gpu(name: &str) -> Result<Gpu, CliError> {
    GPUS.iter().copied().find(|g| g.name == name).ok_or_else(|| {
        let names: Vec<&str> = GPUS.iter().map(|g| g.name).collect();
        CliError::input(format!("--gpu {name}: unknown (known: {})", names.join(", ")))
    })
}

/// The IR as JSON: functions, nodes with op, operands, types, and nested bodies.
pub fn ir_json(m: &Module) -> Value {
    fn graph(m: &Module, g: &Graph) -> Value {
        let mut ids: HashMap<ValueId, String> = HashMap::new();
        let mut nodes = Vec::new();
        for (k, &n) in g.order.iter().enumerate() {
            let node = &g.nodes[n];
            for (i, &r) in node.results.iter().enumerate() {
                ids.insert(r, if node.results.len() == 1 { format!("%{k}") } else { format!("%{k}#{i}") });
            }
            let mut v = json!({
                "id": k,
                "op": node.op.name(),
                "args": node.args.iter().map(|a| ids.get(a).cloned().unwrap_or_default()).collect::<Vec<_>>(),
                "types": node.results.iter().map(|&r| type_str(m, &g.values[r].ty)).collect::<Vec<_>>(),
            });
            if let Op::Fusion(f) = &node.op {
                v["strategy"] = json!(f.strategy.name());
                v["body"] = graph(m, &f.body);
            }
            nodes.push(v);
        }
        let outputs: Vec<Value> = g
            .outputs
            .iter()
            .map(|o| json!({"name": o.name, "value": ids.get(&o.value).cloned().unwrap_or_default()}))
            .collect();
        json!({"nodes": nodes, "outputs": outputs})
    }
    json!({
        "module": m.name,
        "compute_dtype": m.compute_dtype.name(),
        "functions": m.functions.iter().map(|f| json!({"name": f.name, "graph": graph(m, &f.graph)})).collect::<Vec<_>>(),
    })
}

/// Graphviz dot: one cluster per function, one nested cluster per fusion group.
pub fn dot(m: &Module) -> String {
    fn esc(s: &str) -> String {
        s.replace('\\', "\\\\").replace('"', "\\\"")
    }
    /// Emits the nodes of `g` with ids prefixed by `p`; returns the dot id producing each value.
    fn graph(m: &Module, g: &Graph, p: &str, inputs: &[String], out: &mut String) -> HashMap<ValueId, String> {
        let mut producer: HashMap<ValueId, String> = HashMap::new();
        let mut next_input = 0;
        for (k, &n) in g.order.iter().enumerate() {
            let node = &g.nodes[n];
            let id = format!("{p}n{k}");
            match &node.op {
                Op::Fusion(f) => {
                    let _ = writeln!(
                        out,
                        "subgraph \"cluster_{id}\" {{ label=\"{}\"; style=rounded; color=blue;",
                        f.strategy.name()
                    );
                    let args: Vec<String> =
                        node.args.iter().map(|a| producer.get(a).cloned().unwrap_or_default()).collect();
                    let inner = graph(m, &f.body, &format!("{id}_"), &args, out);
                    let _ = writeln!(out, "}}");
                    for (o, &r) in f.body.outputs.iter().zip(&node.results) {
                        if let Some(src) = inner.get(&o.value) {
                            producer.insert(r, src.clone());
                        }
                    }
                    continue;
                }
                Op::Input(_) if !inputs.is_empty() => {
                    // A body input: an edge from the outer producer of the operand.
                    let _ = writeln!(out, "\"{id}\" [label=\"arg{next_input}\", shape=point];");
                    if let Some(src) = inputs.get(next_input).filter(|s| !s.is_empty()) {
                        let _ = writeln!(out, "\"{src}\" -> \"{id}\";");
                    }
                    next_input += 1;
                }
                op => {
                    let types: Vec<String> = node.results.iter().map(|&r| type_str(m, &g.values[r].ty)).collect();
                    let shape =
                        if matches!(op, Op::Weight(_) | Op::Input(_) | Op::Constant(_)) { "note" } else { "box" };
                    let _ = writeln!(
                        out,
                        "\"{id}\" [label=\"{}\\n{}\", shape={shape}];",
                        esc(op.name()),
                        esc(&types.join(", "))
                    );
                    for a in &node.args {
                        if let Some(src) = producer.get(a) {
                            let _ = writeln!(out, "\"{src}\" -> \"{id}\";");
                        }
                    }
                }
            }
            for &r in &node.results {
                producer.insert(r, id.clone());
            }
        }
        producer
    }
    let mut out = format!("digraph \"{}\" {{\nrankdir=TB; node [fontsize=10];\n", esc(&m.name));
    for (i, f) in m.functions.iter().enumerate() {
        let _ = writeln!(out, "subgraph \"cluster_f{i}\" {{ label=\"@{}\";", esc(&f.name));
        graph(m, &f.graph, &format!("f{i}_"), &[], &mut out);
        let _ = writeln!(out, "}}");
    }
    out.push_str("}\n");
    out
}

/// Per-program cost at [`Step::at_context`] (a prefill of `context` tokens, or its last chunk; a
/// decode step reaching `context`), and the caches of one sequence at `context`.
pub fn cost_stats(m: &Module, context: u64, gpu: &Gpu) -> Result<Value, CliError> {
    let cache = cache_bytes(m, context)
        .ok_or_else(|| CliError::input(format!("--context {context}: the caches' size in bytes overflows")))?;
    let mut programs = serde_json::Map::new();
    for f in &m.functions {
        let step = Step::at_context(m, f, context);
        let c = function_cost(m, f, &step.bindings(m, f), gpu);
        programs.insert(
            f.name.clone(),
            json!({"flops": c.flops, "hbm_bytes": c.bytes, "roofline_ms": c.seconds * 1e3, "launches": c.launches}),
        );
    }
    Ok(json!({
        "gpu": {"name": gpu.name, "bandwidth_bytes_per_s": gpu.bandwidth, "bf16_flops": gpu.bf16_flops, "source": gpu.source},
        "context": context,
        "cost": programs,
        "cache_bytes": cache,
    }))
}
