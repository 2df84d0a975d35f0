//! Names carry no meaning: renaming every function, symbol, input, output and weight of an
//! imported model gives the same schedule, memory plan and costs. Passes and the cost model read
//! the roles programs declare (kinds, step symbols, input roles, updates, weight blocks).

use std::collections::HashMap;
use std::path::PathBuf;

use lathe_frontend::import::{import, ImportOptions};
use lathe_ir::ops::Op;
use lathe_ir::text::print_module;
use lathe_ir::{Graph, Module};
use lathe_passes::cost::{cache_bytes, function_cost, Step, H100_SXM};
use lathe_passes::plan_memory::plan;
use lathe_passes::PassManager;

/// Old name → new name, per kind of name.
#[derive(Default)]
struct Names {
    functions: HashMap<String, String>,
    symbols: HashMap<String, String>,
    weights: HashMap<String, String>,
    inputs: HashMap<String, String>,
    outputs: HashMap<String, String>,
}

impl Names {
    fn inverse(&self) -> Names {
        let inv = |m: &HashMap<String, String>| m.iter().map(|(a, b)| (b.clone(), a.clone())).collect();
        Names {
            functions: inv(&self.functions),
            symbols: inv(&self.symbols),
            weights: inv(&self.weights),
            inputs: inv(&self.inputs),
            outputs: inv(&self.outputs),
        }
    }
}

/// Every top-level input and output of `g` renamed by `names` (made up on the way when
/// `fresh`); fusion bodies keep their own argument names.
fn rename_graph(g: &mut Graph, names: &mut Names, fresh: bool) {
    let order = g.order.clone();
    for n in order {
        if let Op::Input(i) = &mut g.nodes[n].op {
            let k = names.inputs.len();
            let new = names.inputs.entry(i.name.clone());
            i.name =
                if fresh { new.or_insert_with(|| format!("arg_{k}")).clone() } else { names.inputs[&i.name].clone() };
        }
    }
    for o in &mut g.outputs {
        let k = names.outputs.len();
        if fresh {
            o.name = names.outputs.entry(o.name.clone()).or_insert_with(|| format!("result_{k}")).clone();
        } else {
            o.name = names.outputs[&o.name].clone();
        }
    }
}

/// `old` mapped; a name the map does not hold but that extends one it does (a derived weight,
/// `<weight>.<op>`) keeps its extension.
fn lookup(map: &HashMap<String, String>, old: &str) -> String {
    if let Some(new) = map.get(old) {
        return new.clone();
    }
    let mut cut = old.len();
    while let Some(dot) = old[..cut].rfind('.') {
        if let Some(new) = map.get(&old[..dot]) {
            return format!("{new}{}", &old[dot..]);
        }
        cut = dot;
    }
    old.to_string()
}

/// `m` with every name replaced: made up (`fresh`, filling `names`) or looked up in `names`.
fn rename(m: &Module, names: &mut Names, fresh: bool) -> Module {
    let mut m = m.clone();
    let pick = |map: &mut HashMap<String, String>, old: &str, prefix: &str| -> String {
        let k = map.len();
        if fresh {
            map.entry(old.to_string()).or_insert_with(|| format!("{prefix}{k}")).clone()
        } else {
            lookup(map, old)
        }
    };
    let symbols: Vec<_> = m.symbols.iter().map(|(h, _)| h).collect();
    for s in symbols {
        m.symbols[s].name = pick(&mut names.symbols, &m.symbols[s].name, "Z");
    }
    let weights: Vec<_> = m.weights.iter().map(|(h, _)| h).collect();
    for w in weights {
        m.weights[w].name = pick(&mut names.weights, &m.weights[w].name, "param_");
    }
    for f in &mut m.functions {
        f.name = pick(&mut names.functions, &f.name, "program_");
        rename_graph(&mut f.graph, names, fresh);
    }
    m
}

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(path)
}

fn run(m: &mut Module, pipeline: &str) {
    let mut pm = PassManager::parse(pipeline).unwrap_or_else(|e| panic!("{e}"));
    pm.instrumentation.verify_each = true;
    pm.run(m, &mut std::io::sink()).unwrap_or_else(|e| panic!("{pipeline}: {e}"));
}

#[test]
fn renamed_models_get_the_same_schedule_plan_and_costs() {
    let cases = [
        ("models/nemotron_h_tiny", "default"),
        ("models/qwen2_tiny", "default"),
        ("configs/nemotron-h-8b-base-8k", "quantize-fp8,default"),
        ("configs/nemotron-h-8b-base-8k", "schedule-hybrid{prefill-chunk=1024},plan-memory"),
    ];
    for (dir, pipeline) in cases {
        let opts = ImportOptions { compute_dtype: lathe_ir::DType::BF16, ..ImportOptions::default() };
        let m = import(&fixture(dir), &opts).unwrap_or_else(|e| panic!("{dir}: {e}")).module;
        let mut names = Names::default();
        let mut renamed = rename(&m, &mut names, true);
        // The renaming is complete: no old name of a function, symbol, weight or input is left.
        assert!(renamed.functions.iter().all(|f| f.name.starts_with("program_")));
        assert!(renamed.symbols.iter().all(|(_, s)| s.name.starts_with('Z')));
        assert!(renamed.weights.iter().all(|(_, w)| w.name.starts_with("param_")));
        assert!(renamed.functions.iter().all(|f| f.graph.inputs().all(|(n, _)| n.starts_with("arg_"))));
        let mut original = m.clone();
        run(&mut original, pipeline);
        run(&mut renamed, pipeline);
        // The same IR, once the names are mapped back.
        let back = rename(&renamed, &mut names.inverse(), false);
        assert_eq!(print_module(&back), print_module(&original), "{dir} {pipeline}");
        // The same plans and costs, computed on the renamed module itself.
        for (f, g) in original.functions.iter().zip(&renamed.functions) {
            assert_eq!(plan(&original, f), plan(&renamed, g), "{dir} {pipeline} @{}", f.name);
            for context in [1, 4096] {
                let cost = |m: &Module, f: &lathe_ir::Function| {
                    function_cost(m, f, &Step::at_context(m, f, context).bindings(m, f), &H100_SXM)
                };
                assert_eq!(cost(&original, f), cost(&renamed, g), "{dir} @{} at {context}", f.name);
            }
        }
        assert_eq!(cache_bytes(&original, 8192), cache_bytes(&renamed, 8192), "{dir}");
        assert!(cache_bytes(&original, 8192).is_some_and(|b| b > 0), "{dir}: the decode program's caches are found");
    }
}
