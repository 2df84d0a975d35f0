//! `lathe eval` and `lathe inspect`: commands on a model directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use lathe_frontend::import::{import, Family, ImportOptions, Imported};
use lathe_frontend::nemotron_h::BlockKind;
use lathe_interp::{tensor::Tensor, CheckpointLoader};
use lathe_ir::limits::MAX_PARAMETERS;
use lathe_ir::{DType, FunctionKind, Graph, InputRole, Module, Op, OutputRole};
use serde_json::{json, Value};

use crate::error::CliError;

/// Imports a model directory; every frontend error is bad input (exit code 2). A command that
/// computes with the weights (`needs_weights`) refuses a directory without weight files unless
/// `--shape-only` asked for synthetic ones: it would silently compute with random weights.
pub fn load_model(dir: &Path, opts: &ImportOptions, needs_weights: bool) -> Result<Imported, CliError> {
    let imp = import(dir, opts).map_err(|e| CliError::input(e.to_string()))?;
    check_parameters(&imp.module, dir)?;
    if needs_weights && !opts.shape_only && imp.checkpoint.is_none() {
        return Err(CliError::input(format!(
            "{}: no weights (model.safetensors or model.safetensors.index.json); pass --shape-only to run on synthetic weights",
            dir.display()
        )));
    }
    Ok(imp)
}

/// The model's own weights: checkpoint and synthetic ones, not those a pass derived from them.
fn model_weights(m: &Module) -> impl Iterator<Item = &lathe_ir::Weight> {
    m.weights.iter().map(|(_, w)| w).filter(|w| !matches!(w.source, lathe_ir::WeightSource::Derived(_)))
}

/// Weight elements the model holds (symbolic shapes count as 0; derived weights not at all).
/// Imports and IR files are held to [`MAX_PARAMETERS`], so the sum never comes near `u64::MAX`.
pub fn parameters(m: &Module) -> u64 {
    model_weights(m).fold(0u64, |a, w| a.saturating_add(w.ty.const_elements().unwrap_or(0)))
}

/// Refuses a module whose weights hold more than [`MAX_PARAMETERS`] elements (docs/limits.md).
pub fn check_parameters(m: &Module, what: &Path) -> Result<(), CliError> {
    let total = model_weights(m).try_fold(0u64, |a, w| a.checked_add(w.ty.const_elements().unwrap_or(0)));
    match total {
        Some(n) if n <= MAX_PARAMETERS => Ok(()),
        _ => Err(CliError::input(format!(
            "{}: the weights hold more than {MAX_PARAMETERS} elements, the most lathe takes (docs/limits.md)",
            what.display()
        ))),
    }
}

/// Refuses to interpret a module whose weights, held as f32 by the interpreter, plus `extra`
/// bytes (caches, inputs) would not fit in what this process may still allocate
/// ([`crate::sysmem::allocatable`]: available memory, cgroup limits, rlimits). A shape-only 8B
/// config would otherwise synthesize 32 GB of weights, and a failed allocation aborts.
/// The module comes through [`load_model`] or the IR loader, which held it to
/// [`MAX_PARAMETERS`] already.
pub fn check_memory(m: &Module, what: &Path, extra: u64) -> Result<(), CliError> {
    let parameters = parameters(m);
    let need = parameters.saturating_mul(4).saturating_add(extra);
    match crate::sysmem::allocatable() {
        Some(budget) if need > budget.bytes => Err(CliError::input(format!(
            "{}: the CPU interpreter needs {:.1} GB ({parameters} parameters as f32{}), more than the {:.1} GB this process may allocate ({})",
            what.display(),
            need as f64 / 1e9,
            if extra > 0 { ", and the caches and inputs" } else { "" },
            budget.bytes as f64 / 1e9,
            budget.source
        ))),
        _ => Ok(()),
    }
}

/// Parses `3,17,42` into token ids.
pub fn parse_tokens(text: &str) -> Result<Vec<i64>, CliError> {
    let toks: Vec<i64> = text
        .split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, t)| {
            t.parse::<i64>().map_err(|_| CliError::input(format!("--tokens: item {i} ({t:?}) is not an integer")))
        })
        .collect::<Result<_, _>>()?;
    if toks.is_empty() {
        return Err(CliError::input("--tokens: no tokens given"));
    }
    Ok(toks)
}

/// Where `eval` runs the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The reference interpreter.
    Cpu,
    /// Groups with templates compiled and run in the SIMT simulator, the rest interpreted.
    Sim {
        /// Fail if any group ran in the interpreter.
        strict: bool,
        /// Print where each group ran.
        verbose: bool,
    },
}

/// Runs the pipeline, then the `eval` program on `tokens` with every op rounding to
/// `compute_dtype`, and returns `logits` as f32 `[len, vocab]`. With `decode_from = Some(k)`
/// (1 ≤ k ≤ len) the logits of position `k − 1` come from `extend` over the first `k` tokens (in
/// chunks the program takes), every later position's from one `decode` step, the caches carried
/// between calls by their roles, and the positions before `k − 1` from `eval` on the prefix
/// (causal: the same as over the whole sequence).
pub fn eval(
    dir: &Path,
    tokens: &[i64],
    pipeline: &crate::opt::PipelineArgs,
    shape_only: bool,
    backend: Backend,
    compute_dtype: DType,
    decode_from: Option<usize>,
) -> Result<Tensor, CliError> {
    let opts = ImportOptions { max_batch: 1, max_seq: Some(tokens.len() as u64), compute_dtype, shape_only };
    // Build the pipeline first: a bad pass name is reported before any weight is touched.
    pipeline.manager()?;
    if let Some(k) = decode_from {
        if k == 0 || k > tokens.len() {
            return Err(CliError::input(format!(
                "--decode-from {k}: must be between 1 and the {} tokens given",
                tokens.len()
            )));
        }
    }
    let mut imp = load_model(dir, &opts, true)?;
    check_memory(&imp.module, dir, 0)?;
    pipeline.run(&mut imp.module)?;
    let vocab = imp.family.vocab_size();
    if let Some((i, t)) = tokens.iter().enumerate().find(|(_, t)| **t < 0 || **t as usize >= vocab) {
        return Err(CliError::input(format!(
            "--tokens: token {t} at position {i} is outside the vocabulary [0, {vocab})"
        )));
    }
    let m = &imp.module;
    let loader = CheckpointLoader { checkpoint: imp.checkpoint.as_ref() };
    let program = |kind: FunctionKind| {
        m.function_of_kind(kind)
            .ok_or_else(|| CliError::internal(format!("the imported module has no `{kind}` program")))
    };
    let mut reports = Vec::new();
    let mut call =
        |f: &lathe_ir::Function, inputs: HashMap<String, Tensor>| -> Result<Vec<(String, Tensor)>, CliError> {
            match backend {
                Backend::Cpu => lathe_interp::run(m, &f.name, &inputs, &loader)
                    .map_err(|e| CliError::input(format!("{}: {e}", dir.display()))),
                Backend::Sim { .. } => {
                    let (out, r) = lathe_codegen::simrun::run_function(m, &f.name, &inputs, &loader)
                        .map_err(|e| CliError::input(format!("{}: {e}", dir.display())))?;
                    reports.extend(r.into_iter().map(|r| (f.name.clone(), r)));
                    Ok(out)
                }
            }
        };
    let logits_of = |f: &lathe_ir::Function, out: Vec<(String, Tensor)>| -> Result<(Tensor, Vec<Tensor>), CliError> {
        let at = f
            .graph
            .outputs
            .iter()
            .position(|o| o.role == Some(OutputRole::Logits))
            .ok_or_else(|| CliError::internal(format!("`{}` returns no logits", f.name)))?;
        let mut outs: Vec<Tensor> = out.into_iter().map(|(_, t)| t).collect();
        if at >= outs.len() {
            return Err(CliError::internal(format!("`{}` returned no logits", f.name)));
        }
        let logits = outs.remove(at);
        Ok((logits, outs))
    };
    let tokens_input = |f: &lathe_ir::Function| {
        f.graph
            .input_with_role(InputRole::Tokens)
            .map(|(i, _)| i.name.clone())
            .ok_or_else(|| CliError::internal(format!("`{}` has no tokens input", f.name)))
    };
    let eval_f = program(FunctionKind::Eval)?;
    let mut rows: Vec<f32> = Vec::with_capacity(tokens.len() * vocab);
    match decode_from {
        None => {
            let inputs = HashMap::from([(
                tokens_input(eval_f)?,
                Tensor::from_i64(DType::I64, vec![1, tokens.len()], tokens.to_vec()),
            )]);
            let (logits, _) = logits_of(eval_f, call(eval_f, inputs)?)?;
            rows.extend_from_slice(logits.floats());
        }
        Some(k) => {
            if k > 1 {
                let inputs = HashMap::from([(
                    tokens_input(eval_f)?,
                    Tensor::from_i64(DType::I64, vec![1, k - 1], tokens[..k - 1].to_vec()),
                )]);
                let (logits, _) = logits_of(eval_f, call(eval_f, inputs)?)?;
                rows.extend_from_slice(logits.floats());
            }
            let (extend, decode) = (program(FunctionKind::Extend)?, program(FunctionKind::Decode)?);
            let chunk = match extend.graph.input_with_role(InputRole::Tokens).and_then(|(i, _)| i.ty.shape.get(1)) {
                Some(lathe_ir::Dim::Const(c)) => *c as usize,
                Some(lathe_ir::Dim::Sym(s)) => m.symbols.get(*s).map_or(1, |s| s.max as usize),
                None => return Err(CliError::internal("`extend` has no tokens input")),
            }
            .max(1);
            let mut caches = Caches::new();
            // One call of a program at `past`: its caches in, its logits and new caches out.
            let mut step = |f: &lathe_ir::Function, toks: &[i64], past: usize| -> Result<Tensor, CliError> {
                let inputs = step_inputs(f, toks, past, &mut caches)
                    .map_err(|name| no_role(dir, &name, f, "`eval --decode-from`"))?;
                let outs: Vec<Tensor> = call(f, inputs)?.into_iter().map(|(_, t)| t).collect();
                let at = f.graph.outputs.iter().position(|o| o.role == Some(OutputRole::Logits));
                let logits = at
                    .and_then(|at| outs.get(at).cloned())
                    .ok_or_else(|| CliError::internal(format!("`{}` returned no logits", f.name)))?;
                keep_caches(f, outs, &mut caches);
                Ok(logits)
            };
            let mut last = None;
            for start in (0..k).step_by(chunk) {
                let end = (start + chunk).min(k);
                last = Some(step(extend, &tokens[start..end], start)?);
            }
            let last = last.ok_or_else(|| CliError::internal("no prefix to extend"))?;
            rows.extend_from_slice(last.floats());
            for (t, &tok) in tokens.iter().enumerate().skip(k) {
                let logits = step(decode, &[tok], t)?;
                rows.extend_from_slice(logits.floats());
            }
        }
    }
    if let Backend::Sim { strict, verbose } = backend {
        let interpreted: Vec<&(String, lathe_codegen::simrun::GroupReport)> =
            reports.iter().filter(|(_, r)| r.interpreted.is_some()).collect();
        if verbose {
            for (func, r) in &reports {
                match &r.interpreted {
                    None => eprintln!(
                        "{func} group {:>4} {:<16} simulator ({} warp instructions)",
                        r.index,
                        r.strategy.name(),
                        r.instructions
                    ),
                    Some(why) => {
                        eprintln!("{func} group {:>4} {:<16} interpreter: {why}", r.index, r.strategy.name())
                    }
                }
            }
            eprintln!(
                "{} of {} groups ran in the simulator, {} in the interpreter",
                reports.len() - interpreted.len(),
                reports.len(),
                interpreted.len()
            );
        }
        if strict {
            if let Some((func, r)) = interpreted.first() {
                return Err(CliError::input(format!(
                    "--strict: {} of {} groups have no template; the first, {func} group {} ({}): {}",
                    interpreted.len(),
                    reports.len(),
                    r.index,
                    r.strategy.name(),
                    r.interpreted.as_deref().unwrap_or("")
                )));
            }
        }
    }
    if rows.len() != tokens.len() * vocab {
        return Err(CliError::internal(format!("{} logits for {} positions of {vocab}", rows.len(), tokens.len())));
    }
    // bf16 logits widen to f32 exactly.
    Ok(Tensor::from_f32(DType::F32, vec![tokens.len(), vocab], rows))
}

/// The caches of one sequence between program calls, by layer and kind.
pub type Caches = HashMap<(u32, lathe_ir::program::CacheKind), Tensor>;

/// The inputs of one call of program `f` on `toks` at position `past` (batch 1): the tokens,
/// the position, and each cache taken from `caches` (zeros the first time); the name of an
/// input no role supplies.
pub fn step_inputs(
    f: &lathe_ir::Function,
    toks: &[i64],
    past: usize,
    caches: &mut Caches,
) -> Result<HashMap<String, Tensor>, String> {
    let mut inputs = HashMap::new();
    for (i, _) in f.graph.params() {
        let t = match i.role {
            Some(InputRole::Tokens) => Tensor::from_i64(DType::I64, vec![1, toks.len()], toks.to_vec()),
            Some(InputRole::Past) => Tensor::from_i64(DType::I64, vec![1], vec![past as i64]),
            Some(InputRole::Cache { layer, kind }) => {
                caches.remove(&(layer, kind)).unwrap_or_else(|| lathe_interp::zeros(&i.ty))
            }
            _ => return Err(i.name.clone()),
        };
        inputs.insert(i.name.clone(), t);
    }
    Ok(inputs)
}

/// Keeps the caches a call of `f` returned (`outs`, in `f`'s output order) for the next call.
pub fn keep_caches(f: &lathe_ir::Function, outs: Vec<Tensor>, caches: &mut Caches) {
    for (o, t) in f.graph.outputs.iter().zip(outs) {
        if let Some(cache) = o.updates.and_then(|u| f.graph.role_of(u)).and_then(InputRole::cache) {
            caches.insert(cache, t);
        }
    }
}

/// The error for an input of `f` that no role supplies, for `who`.
pub fn no_role(dir: &Path, name: &str, f: &lathe_ir::Function, who: &str) -> CliError {
    CliError::input(format!("{}: input \"{name}\" of `@{}` has no role {who} can supply", dir.display(), f.name))
}

/// Counts ops by text name, fusion bodies included.
fn count_ops(g: &Graph, counts: &mut BTreeMap<String, u64>) {
    for &n in &g.order {
        let op = &g.nodes[n].op;
        *counts.entry(op.name().to_string()).or_default() += 1;
        if let Op::Fusion(f) = op {
            count_ops(&f.body, counts);
        }
    }
}

/// Op counts of every function of a module.
pub fn op_counts(m: &Module) -> BTreeMap<String, BTreeMap<String, u64>> {
    m.functions
        .iter()
        .map(|f| {
            let mut c = BTreeMap::new();
            count_ops(&f.graph, &mut c);
            (f.name.clone(), c)
        })
        .collect()
}

/// Kernels per program: fusion groups once scheduled (a mixed function counts its groups and its
/// loose computing ops), one per computing op before.
pub fn kernel_counts(m: &Module) -> BTreeMap<String, u64> {
    m.functions
        .iter()
        .map(|f| {
            let g = &f.graph;
            let n = g.order.iter().filter(|&&n| !lathe_passes::strategy::is_data(&g.nodes[n].op)).count();
            (f.name.clone(), n as u64)
        })
        .collect()
}

/// Launches per program, by the strategies' launch rules (`lathe_passes::launch`): what a
/// compiled program enqueues (a split prefill scan, a memset before an atomic reduction).
pub fn launch_counts(m: &Module) -> BTreeMap<String, Value> {
    m.functions
        .iter()
        .map(|f| {
            let v = match lathe_passes::launch::function_launches(m, f) {
                Ok(l) => json!(l.launches.len()),
                Err((_, e)) => json!({ "error": e.to_string() }),
            };
            (f.name.clone(), v)
        })
        .collect()
}

/// Launches per program that may overlap their predecessor (programmatic dependent launch).
fn overlap_counts(m: &Module) -> BTreeMap<String, u64> {
    m.functions
        .iter()
        .filter_map(|f| {
            let l = lathe_passes::launch::function_launches(m, f).ok()?;
            Some((f.name.clone(), l.launches.iter().filter(|x| x.overlaps).count() as u64))
        })
        .collect()
}

/// Fusion groups by strategy, per program.
fn groups_by_strategy(m: &Module) -> BTreeMap<String, BTreeMap<String, u64>> {
    m.functions
        .iter()
        .map(|f| {
            let mut c = BTreeMap::new();
            for &n in &f.graph.order {
                if let Op::Fusion(fu) = &f.graph.nodes[n].op {
                    *c.entry(fu.strategy.name().to_string()).or_default() += 1;
                }
            }
            (f.name.clone(), c)
        })
        .collect()
}

/// `lathe inspect --stats` of an imported model as JSON; `unfused` are the launch counts before
/// the pipeline ran.
pub fn stats(imp: &Imported, unfused: &BTreeMap<String, u64>) -> Value {
    let m = &imp.module;
    let parameters = parameters(m);
    let weight_bytes: u64 =
        model_weights(m).map(|w| w.ty.const_elements().unwrap_or(0) * w.ty.dtype.size_bytes() as u64).sum();
    let (model_type, layers) = match &imp.family {
        Family::NemotronH(c) => {
            let n = |k| c.pattern.iter().filter(|&&b| b == k).count();
            (
                if c.pattern.iter().all(|&b| b == BlockKind::Mamba) { "mamba2" } else { "nemotron_h" },
                json!({"mamba": n(BlockKind::Mamba), "attention": n(BlockKind::Attention), "mlp": n(BlockKind::Mlp)}),
            )
        }
        Family::Qwen2(c) => ("qwen2", json!({"mamba": 0, "attention": c.layers, "mlp": c.layers})),
        _ => ("unknown", json!({})),
    };
    let per_program = op_counts(m);
    let kernels = kernel_counts(m);
    let launches = launch_counts(m);
    let overlapping = overlap_counts(m);
    // Peak activation memory per program, from the memory plan at the symbols' bounds.
    let peaks: BTreeMap<String, Value> = m
        .functions
        .iter()
        .map(|f| {
            let v = lathe_passes::plan_memory::plan(m, f).map_or_else(
                |e| json!({ "error": e.to_string() }),
                |p| json!({"peak": p.peak_bytes, "no_reuse": p.no_reuse_bytes}),
            );
            (f.name.clone(), v)
        })
        .collect();
    let peak_activation_bytes = peaks.values().filter_map(|v| v["peak"].as_u64()).max();
    // Programs by kind: what a function is called plays no part.
    let of_kind = |k: FunctionKind| m.function_of_kind(k).map(|f| f.name.clone()).unwrap_or_default();
    let (extend, decode, eval) =
        (of_kind(FunctionKind::Extend), of_kind(FunctionKind::Decode), of_kind(FunctionKind::Eval));
    let by_program =
        |c: &BTreeMap<String, u64>| json!({"prefill": c.get(&extend), "decode": c.get(&decode), "eval": c.get(&eval)});
    json!({
        "kernels": by_program(&kernels),
        "launches": json!({"prefill": launches.get(&extend), "decode": launches.get(&decode), "eval": launches.get(&eval)}),
        "overlapping_launches": by_program(&overlapping),
        "kernels_unfused": by_program(unfused),
        "groups_by_strategy": groups_by_strategy(m),
        "peak_activation_bytes": peak_activation_bytes,
        "memory_by_program": peaks,
        "model": m.name,
        "model_type": model_type,
        "shape_only": imp.checkpoint.is_none(),
        "parameters": parameters,
        "weight_bytes": weight_bytes,
        "layers": layers,
        "ops": per_program.get(&extend).cloned().unwrap_or_default(),
        "ops_by_program": per_program,
    })
}

/// Human-readable form of [`stats`].
pub fn stats_text(v: &Value) -> String {
    let mut out = String::new();
    let get = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    out.push_str(&format!("model:        {} ({})\n", get("model"), get("model_type")));
    out.push_str(&format!("parameters:   {}\n", get("parameters")));
    out.push_str(&format!("weight bytes: {}\n", get("weight_bytes")));
    out.push_str(&format!("layers:       {}\n", get("layers")));
    out.push_str(&format!("kernels:      {} (unfused {})\n", get("kernels"), get("kernels_unfused")));
    out.push_str(&format!("launches:     {}\n", get("launches")));
    if let Some(peak) = v.get("peak_activation_bytes").and_then(Value::as_u64) {
        out.push_str(&format!("peak activations: {peak} bytes\n"));
    }
    if let Some(cache) = v.get("cache_bytes").and_then(Value::as_u64) {
        out.push_str(&format!("cache per sequence at {} tokens: {cache} bytes\n", get("context")));
    }
    if let Some(Value::Object(cost)) = v.get("cost") {
        let gpu = v.get("gpu").and_then(|g| g.get("name")).cloned().unwrap_or(Value::Null);
        for (program, c) in cost {
            let ms = c.get("roofline_ms").and_then(Value::as_f64).unwrap_or(f64::NAN);
            let gb = c.get("hbm_bytes").and_then(Value::as_f64).unwrap_or(f64::NAN) / 1e9;
            let tf = c.get("flops").and_then(Value::as_f64).unwrap_or(f64::NAN) / 1e12;
            out.push_str(&format!("roofline {program:<7} {ms:>10.3} ms on {gpu} ({gb:.3} GB, {tf:.3} TFLOP)\n"));
        }
    }
    if let Some(Value::Object(ops)) = v.get("ops") {
        out.push_str("ops (extend):\n");
        for (k, n) in ops {
            out.push_str(&format!("  {k:<16} {n}\n"));
        }
    }
    out
}
