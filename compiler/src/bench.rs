//! `lathe bench`: the measured time of a model's serving programs beside their roofline on the
//! machine that runs them.
//!
//! One session (weights loaded once, timed apart) runs `runs` times: a prefill of `prompt`
//! tokens through `extend` from empty caches (in pieces of the program's largest chunk when the
//! pipeline bounded it), then `decode` steps of one token each. The roofline is the cost model's
//! (FLOPs and minimum bytes per launch, `passes::cost`) evaluated with this machine's rates,
//! measured at start: an f32 GEMM for the compute rate and a parallel copy for the memory
//! bandwidth. Measurements are printed, never asserted; the minimum and the median of the runs
//! are both reported because shared machines are noisy.

use std::path::Path;
use std::time::Instant;

use lathe_frontend::import::ImportOptions;
use lathe_interp::cpu;
use lathe_interp::CheckpointLoader;
use lathe_ir::{DType, Dim, Function, FunctionKind, InputRole, Module};
use lathe_passes::cost::{function_cost, Gpu, Step};
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::error::CliError;
use crate::model::Caches;
use crate::opt::PipelineArgs;

/// What to measure.
#[derive(Debug)]
pub struct Setup<'a> {
    /// Model directory.
    pub model: &'a Path,
    /// Prompt tokens per prefill.
    pub prompt: usize,
    /// Decode steps after each prefill.
    pub decode: usize,
    /// Timed repetitions of prefill + decode.
    pub runs: usize,
    /// Pipeline run before the interpreter.
    pub pipeline: &'a PipelineArgs,
    /// Also record the time per op of each phase.
    pub profile: bool,
    /// Run on synthetic weights from the config alone.
    pub shape_only: bool,
}

/// This machine's rates, measured now.
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    /// f32 GEMM rate, FLOP/s (the interpreter's GEMM on all its threads).
    pub flops: f64,
    /// Copy bandwidth, bytes/s (read + write, all cores).
    pub bandwidth: f64,
}

/// Times `f` `reps` times and returns the fastest, in seconds.
fn fastest(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Measures the compute rate (an f32 GEMM of a prefill's shape, 256×1024·1024×4096) and the
/// memory bandwidth (a 64 MiB copy on all cores); the best of several tries each (about
/// 0.2 s), as the least disturbed is the closest to what the machine can do.
pub fn calibrate() -> Machine {
    const M: usize = 256;
    const K: usize = 1024;
    const N_OUT: usize = 4096;
    let a: Vec<f32> = (0..M * K).map(|i| (i % 17) as f32 * 0.01).collect();
    let w: Vec<f32> = (0..N_OUT * K).map(|i| (i % 13) as f32 * 0.01).collect();
    let mut c = vec![0.0f32; M * N_OUT];
    let mut gemm = || cpu::gemm(1, M, K, N_OUT, &a, 0, false, &w, 0, true, &mut c);
    gemm();
    let t = fastest(8, &mut gemm);
    const N: usize = 16 << 20;
    let src: Vec<f32> = (0..N).map(|i| i as f32).collect();
    let mut dst = vec![0.0f32; N];
    let mut copy = || dst.par_chunks_mut(1 << 16).zip(src.par_chunks(1 << 16)).for_each(|(d, s)| d.copy_from_slice(s));
    copy();
    let tc = fastest(5, &mut copy);
    Machine { flops: 2.0 * (M * K * N_OUT) as f64 / t, bandwidth: 2.0 * (N * 4) as f64 / tc }
}

/// The roofline of program `f` at `step`, on `machine`.
fn roofline(m: &Module, f: &Function, step: Step, machine: &Machine) -> f64 {
    // The cost model's machine: on the CPU its matrix rate is the f32 GEMM's.
    let cpu = Gpu { name: "cpu", bandwidth: machine.bandwidth, bf16_flops: machine.flops, source: "measured now" };
    function_cost(m, f, &step.bindings(m, f), &cpu).seconds
}

/// The most tokens one call of `f` takes (its `tokens` input's sequence dim).
fn max_chunk(m: &Module, f: &Function) -> Option<usize> {
    let (tokens, _) = f.graph.input_with_role(InputRole::Tokens)?;
    match tokens.ty.shape.get(1)? {
        Dim::Const(c) => Some(*c as usize),
        Dim::Sym(s) => Some(m.symbols[*s].max as usize),
    }
}

/// Calls and seconds per op name.
type OpTimes = std::collections::BTreeMap<&'static str, (u64, f64)>;

fn add_times(into: &mut OpTimes, profile: Vec<(&'static str, u64, std::time::Duration)>) {
    for (op, calls, t) in profile {
        let e = into.entry(op).or_default();
        e.0 += calls;
        e.1 += t.as_secs_f64();
    }
}

/// The most tokens (prompt + decode) a bench takes.
const MAX_CONTEXT: usize = 1 << 20;

/// Deterministic token ids in `[0, vocab)`.
fn token_ids(n: usize, vocab: usize) -> Vec<i64> {
    (0..n as u64)
        .map(|i| {
            let w = lathe_numerics::philox4x32_10([i as u32, (i >> 32) as u32, 0, 0], [0x1a7e, 0])[0];
            (u64::from(w) % vocab.max(1) as u64) as i64
        })
        .collect()
}

/// The median (the mean of the middle two for an even count); NaN for none.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs the benchmark and returns its report as JSON.
pub fn bench(setup: &Setup<'_>) -> Result<Value, CliError> {
    let Setup { model, prompt, decode, runs, pipeline, profile, shape_only } = *setup;
    if prompt == 0 || runs == 0 {
        return Err(CliError::input("--prompt and --runs must be at least 1"));
    }
    let capacity = prompt.checked_add(decode).filter(|&c| c <= MAX_CONTEXT).ok_or_else(|| {
        CliError::input(format!(
            "--prompt {prompt} + --decode {decode} exceeds the {MAX_CONTEXT} tokens a bench may hold"
        ))
    })?;
    let opts = ImportOptions { max_batch: 1, max_seq: Some(capacity as u64), compute_dtype: DType::F32, shape_only };
    pipeline.manager()?;
    let mut imp = crate::model::load_model(model, &opts, true)?;
    let caches = lathe_passes::cost::cache_bytes(&imp.module, capacity as u64)
        .ok_or_else(|| CliError::input(format!("{}: the caches' size overflows", model.display())))?;
    crate::model::check_memory(&imp.module, model, caches)?;
    pipeline.run(&mut imp.module)?;
    let m = &imp.module;
    let program = |kind: FunctionKind| {
        m.function_of_kind(kind)
            .ok_or_else(|| CliError::input(format!("{}: no program of kind `{kind}`", model.display())))
    };
    let (extend, decode_f) = (program(FunctionKind::Extend)?, program(FunctionKind::Decode)?);
    let chunk = max_chunk(m, extend)
        .ok_or_else(|| CliError::input(format!("{}: the `extend` program has no `tokens` input", model.display())))?;
    let machine = calibrate();
    let loader = CheckpointLoader { checkpoint: imp.checkpoint.as_ref() };
    let fail = |e: lathe_interp::InterpError| CliError::input(format!("{}: {e}", model.display()));
    let mut session = lathe_interp::Session::new(m, &loader).map_err(fail)?;
    let t = Instant::now();
    session.load_weights(&extend.name).map_err(fail)?;
    session.load_weights(&decode_f.name).map_err(fail)?;
    let load_s = t.elapsed().as_secs_f64();
    let toks = token_ids(capacity, imp.family.vocab_size());
    // One call of `f`: caches are carried between programs by their roles (layer and kind).
    let step =
        |session: &mut lathe_interp::Session<'_>, f: &Function, toks: &[i64], past: usize, mut caches: Caches| {
            let inputs = crate::model::step_inputs(f, toks, past, &mut caches)
                .map_err(|name| crate::model::no_role(model, &name, f, "a bench"))?;
            let out = session.run_owned(&f.name, inputs).map_err(fail)?;
            crate::model::keep_caches(f, out.into_iter().map(|(_, t)| t).collect(), &mut caches);
            Ok::<_, CliError>(caches)
        };
    let (mut prefill, mut per_token) = (Vec::new(), Vec::new());
    let (mut prefill_ops, mut decode_ops) = (OpTimes::new(), OpTimes::new());
    if profile {
        session.enable_profile();
    }
    for _ in 0..runs {
        let mut caches = Caches::new();
        let t = Instant::now();
        for start in (0..prompt).step_by(chunk.max(1)) {
            let end = (start + chunk).min(prompt);
            caches = step(&mut session, extend, &toks[start..end], start, caches)?;
        }
        prefill.push(t.elapsed().as_secs_f64());
        add_times(&mut prefill_ops, session.take_profile());
        for i in 0..decode {
            let t = Instant::now();
            caches = step(&mut session, decode_f, &toks[prompt + i..=prompt + i], prompt + i, caches)?;
            per_token.push(t.elapsed().as_secs_f64());
        }
        add_times(&mut decode_ops, session.take_profile());
    }
    let prefill_min = prefill.iter().copied().fold(f64::INFINITY, f64::min);
    let prefill_median = median(&mut prefill);
    let decode_min = per_token.iter().copied().fold(f64::INFINITY, f64::min);
    let decode_median = median(&mut per_token);
    // Prefill pieces each cost their own launch set; decode is priced at its middle step.
    let prefill_roof: f64 = (0..prompt)
        .step_by(chunk.max(1))
        .map(|s| {
            let seq = (s + chunk).min(prompt) - s;
            roofline(m, extend, Step { batch: 1, seq: seq as u64, past: s as u64, rng_offset: 0 }, &machine)
        })
        .sum();
    let decode_roof = roofline(m, decode_f, Step::decode((prompt + decode / 2 + 1) as u64), &machine);
    let parameters = crate::model::parameters(m);
    // Per prefill and per decoded token.
    let ops_json = |ops: &OpTimes, per: f64| -> Value {
        let mut v: Vec<_> = ops.iter().collect();
        v.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        v.into_iter()
            .map(|(op, (calls, s))| json!({"op": op, "calls": *calls as f64 / per, "ms": s * 1e3 / per}))
            .collect()
    };
    let profile = profile.then(|| {
        json!({
            "prefill": ops_json(&prefill_ops, runs as f64),
            "decode": ops_json(&decode_ops, (runs * decode).max(1) as f64),
        })
    });
    Ok(json!({
        "profile": profile,
        "model": m.name,
        "parameters": parameters,
        "backend": "cpu",
        "threads": rayon::current_num_threads(),
        "machine": {"f32_gemm_flops": machine.flops, "copy_bandwidth_bytes_per_s": machine.bandwidth},
        "weights_load_s": load_s,
        "runs": runs,
        "prefill": {
            "tokens": prompt, "chunk": chunk.min(prompt),
            "min_s": prefill_min, "median_s": prefill_median,
            "tokens_per_s": prompt as f64 / prefill_median,
            "roofline_s": prefill_roof,
        },
        "decode": {
            "steps": decode,
            "min_s_per_token": if decode > 0 { json!(decode_min) } else { Value::Null },
            "median_s_per_token": if decode > 0 { json!(decode_median) } else { Value::Null },
            "tokens_per_s": if decode > 0 { json!(1.0 / decode_median) } else { Value::Null },
            "roofline_s_per_token": if decode > 0 { json!(decode_roof) } else { Value::Null },
        },
    }))
}

/// Human-readable form of [`bench`]'s report.
pub fn text(v: &Value) -> String {
    let f = |p: &[&str]| p.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or(f64::NAN);
    let mut out = format!(
        "{} ({} parameters) on the CPU, {} threads\n",
        v["model"].as_str().unwrap_or("?"),
        v["parameters"],
        v["threads"]
    );
    out += &format!(
        "machine   {:.0} GFLOP/s f32 GEMM, {:.1} GB/s copy (measured now)\n",
        f(&["machine", "f32_gemm_flops"]) / 1e9,
        f(&["machine", "copy_bandwidth_bytes_per_s"]) / 1e9
    );
    out += &format!("weights   loaded in {:.3} s\n", f(&["weights_load_s"]));
    // The share of the roofline reached is taken at the fastest run, the least disturbed.
    let (pmin, roof) = (f(&["prefill", "min_s"]), f(&["prefill", "roofline_s"]));
    out += &format!(
        "prefill   {} tokens: min {pmin:.4} s, median {:.4} s ({:.0} tokens/s); roofline {roof:.4} s, {:.0}% of it at the min\n",
        v["prefill"]["tokens"],
        f(&["prefill", "median_s"]),
        f(&["prefill", "tokens_per_s"]),
        100.0 * roof / pmin
    );
    if v["decode"]["steps"].as_u64().unwrap_or(0) > 0 {
        let (dmin, roof) = (f(&["decode", "min_s_per_token"]), f(&["decode", "roofline_s_per_token"]));
        out += &format!(
            "decode    {} steps × {} runs: min {:.3} ms, median {:.3} ms per token ({:.1} tokens/s); roofline {:.3} ms, {:.0}% of it at the min\n",
            v["decode"]["steps"],
            v["runs"],
            dmin * 1e3,
            f(&["decode", "median_s_per_token"]) * 1e3,
            f(&["decode", "tokens_per_s"]),
            roof * 1e3,
            100.0 * roof / dmin
        );
    }
    for (phase, unit) in [("prefill", "per prefill"), ("decode", "per token")] {
        if let Some(ops) = v["profile"][phase].as_array().filter(|o| !o.is_empty()) {
            out += &format!("{phase} by op ({unit}):\n");
            for o in ops.iter().take(10) {
                let ms = o["ms"].as_f64().unwrap_or(f64::NAN);
                let calls = o["calls"].as_f64().unwrap_or(f64::NAN);
                out += &format!("  {:<18} {calls:>7.1} calls {ms:>10.3} ms\n", o["op"].as_str().unwrap_or("?"));
            }
        }
    }
    out
}
