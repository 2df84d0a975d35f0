//! Passes accept every module that verifies: the default pipeline (and `quantize-fp8,default`)
//! run over the random modules of the round-trip property test (`lathe_tests::modgen`)
//! leave a module that verifies at its stage after every pass, whose memory plans keep their
//! invariants, and the default pipeline keeps the interpreter's results bit for bit. A pipeline may refuse a module only with a clean error
//! that is the input's (a size that does not fit at the symbols' bounds), never with a module
//! that no longer verifies or a panic.

#[path = "support/plan_check.rs"]
mod plan_check;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use lathe_interp::tensor::{Data, Tensor};
use lathe_interp::SyntheticOnly;
use lathe_ir::text::print_module;
use lathe_ir::Module;
use lathe_passes::PassManager;
use lathe_tests::modgen;

/// Number of random modules (seeds `0..CASES`, the round-trip test's first ones).
const CASES: u64 = 300;

fn bits(t: &Tensor) -> Vec<u64> {
    match &t.data {
        Data::F(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        Data::I(v) => v.iter().map(|&x| x as u64).collect(),
    }
}

/// What one pipeline did to one module.
enum Outcome {
    /// Ran, verified after every pass.
    Ran(Module),
    /// Refused cleanly for a reason of the input's.
    Refused(String),
}

fn run_pipeline(m: &Module, pipeline: &str) -> Result<Outcome, String> {
    let mut pm = PassManager::parse(pipeline).map_err(|e| e.to_string())?;
    pm.instrumentation.verify_each = true;
    let mut after = m.clone();
    match catch_unwind(AssertUnwindSafe(|| pm.run(&mut after, &mut std::io::sink()))) {
        Ok(Ok(_)) => Ok(Outcome::Ran(after)),
        Ok(Err(e)) if e.is_bad_input() => Ok(Outcome::Refused(e.to_string())),
        Ok(Err(e)) => Err(format!("{pipeline}: {e}")),
        Err(p) => Err(format!(
            "{pipeline} panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// The interpreter's outputs of every function, or its error message.
fn outputs(m: &Module, inputs: &[(String, HashMap<String, Tensor>)]) -> Vec<Outputs> {
    inputs
        .iter()
        .map(|(func, args)| {
            lathe_interp::run(m, func, args, &SyntheticOnly)
                .map(|outs| outs.into_iter().map(|(n, t)| (n, t.shape.clone(), bits(&t))).collect())
                .map_err(|e| e.to_string())
        })
        .collect()
}

type Outputs = Result<Vec<(String, Vec<usize>, Vec<u64>)>, String>;

/// The first output that differs, for messages.
fn describe_difference(want: &Outputs, got: &Outputs) -> String {
    match (want, got) {
        (Ok(w), Ok(g)) => w.iter().zip(g).find(|(a, b)| a != b).map_or_else(String::new, |(a, b)| {
            format!("output {:?}: {:?} vs {:?}", a.0, &a.2[..a.2.len().min(8)], &b.2[..b.2.len().min(8)])
        }),
        (w, g) => format!("{w:?} vs {g:?}"),
    }
}

#[test]
fn pipelines_accept_every_verified_module() {
    let mut failures = Vec::new();
    let (mut ran, mut refused, mut compared) = (0, 0, 0);
    for seed in 0..CASES {
        let Ok(case) = modgen::random_case(seed) else { continue };
        let m = &case.module;
        for pipeline in ["default", "quantize-fp8,default"] {
            match run_pipeline(m, pipeline) {
                Err(e) => failures.push(format!("seed {seed}: {e}\n--- module ---\n{}", print_module(m))),
                Ok(Outcome::Refused(why)) => {
                    refused += 1;
                    if refused <= 3 {
                        eprintln!("seed {seed}: {pipeline} refused: {why}");
                    }
                }
                Ok(Outcome::Ran(after)) => {
                    ran += 1;
                    // Every function of the planned module has a plan that keeps its invariants.
                    for f in &after.functions {
                        match lathe_passes::plan_memory::plan(&after, f) {
                            Ok(p) => {
                                let checked = catch_unwind(AssertUnwindSafe(|| plan_check::check_sound(&after, f, &p)));
                                if let Err(e) = checked {
                                    let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
                                    failures.push(format!(
                                        "seed {seed}: {pipeline}: @{}: the plan breaks an invariant: {msg}\n--- planned ---\n{}",
                                        f.name,
                                        print_module(&after)
                                    ));
                                }
                            }
                            Err(e) => failures.push(format!("seed {seed}: {pipeline}: planned, yet {e}")),
                        }
                    }
                    if pipeline != "default" {
                        continue;
                    }
                    // The default pipeline only moves ops: bit-identical results (or the same
                    // run-time error).
                    let (want, got) = (outputs(m, &case.inputs), outputs(&after, &case.inputs));
                    for (((func, _), w), g) in case.inputs.iter().zip(&want).zip(&got) {
                        match (w, g) {
                            (Ok(w), Ok(g)) if w == g => compared += 1,
                            (Err(_), Err(_)) => {}
                            _ => failures.push(format!(
                                "seed {seed} @{func}: results differ after the default pipeline:\n{}\n--- module ---\n{}\n--- after ---\n{}",
                                describe_difference(w, g),
                                print_module(m),
                                print_module(&after)
                            )),
                        }
                    }
                }
            }
            if failures.len() >= 3 {
                break;
            }
        }
        if failures.len() >= 3 {
            break;
        }
    }
    assert!(failures.is_empty(), "{} failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
    // Most modules must actually go through (not be refused), and most runs must be compared.
    assert!(ran >= 5 * refused, "{ran} pipelines ran, {refused} refused");
    assert!(compared >= CASES as usize, "only {compared} function results compared");
    eprintln!("{ran} pipelines ran, {refused} refused cleanly, {compared} function results bit-identical");
}
