//! `lathe` — the command line of the lathe compiler.
//!
//! Subcommands: `verify`, `opt`, `interp`, `ops`, `list-passes`, `eval`, `inspect`, `bench`. Errors print one line per problem as
//! `file:line:col: message` where a position exists, and exit with code 2 for bad input.

mod bench;
mod error;
mod inspect;
mod kernel_cmd;
mod kernels_view;
mod model;
mod opt;
mod sysmem;
mod tensors;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lathe_interp::CheckpointLoader;
use lathe_ir::limits::{MAX_CONTEXT, MAX_IR_BYTES};
use lathe_ir::text::{parse_module_with_spans, print_module, SourceMap};
use lathe_ir::{Module, WeightSource};
use lathe_tensorfile::Checkpoint;

use error::CliError;

#[derive(Debug, Parser)]
#[command(name = "lathe", version, about = "Ahead-of-time compiler for hybrid Mamba-Transformer and multimodal LLMs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and verify an IR file; print every error as file:line:col.
    Verify {
        /// The `.lir` file.
        file: PathBuf,
    },
    /// Run a pass pipeline over an IR file and print the result.
    Opt {
        /// The `.lir` file.
        file: PathBuf,
        #[command(flatten)]
        pipeline: opt::PipelineArgs,
        /// Print the passes' statistics.
        #[arg(long)]
        stats: bool,
        /// Write the IR here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// List the registered passes with their options.
    ListPasses,
    /// Run a function of an IR file on safetensors inputs with the reference interpreter.
    Interp {
        /// The `.lir` file.
        file: PathBuf,
        /// The function to run.
        #[arg(long, default_value = "main")]
        func: String,
        /// `name=file.safetensors`: the tensor `name` of the file (or its only tensor).
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// Directory that checkpoint weight files are relative to (default: the IR file's).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Output safetensors file with one tensor per function result.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the IR manual: every op with its syntax, operands, attributes and semantics.
    Ops,
    /// The kernel playground: verify a kernel file, or run it in the SIMT simulator.
    #[command(subcommand)]
    Kernel(kernel_cmd::KernelCommand),
    /// Logits of every position of a token sequence, computed by the reference interpreter.
    Eval {
        /// A checkpoint directory (config.json + safetensors) or a shape-only directory.
        model: PathBuf,
        /// Comma-separated token ids, e.g. `3,17,42`.
        #[arg(long)]
        tokens: String,
        /// Output safetensors file; it holds one tensor `logits`, f32 [tokens, vocab].
        #[arg(long)]
        out: PathBuf,
        /// Describe the model by config.json alone, with synthetic weights (any weight files
        /// are not read).
        #[arg(long)]
        shape_only: bool,
        /// Where to run: `cpu` (the reference interpreter) or `sim` (the program scheduled by
        /// the pipeline — `default` unless `--pipeline` names one — and the groups that have
        /// templates compiled and run in the SIMT simulator, the others in the interpreter);
        /// `cuda` arrives with the runtime.
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// With `--backend sim`: fail if any group has no template (ran in the interpreter).
        #[arg(long)]
        strict: bool,
        /// With `--backend sim`: print where each group ran (stderr).
        #[arg(long)]
        verbose: bool,
        /// The dtype every op rounds its result to (`f32` or `bf16`), the same for both
        /// backends; the logits written are f32 either way.
        #[arg(long, default_value = "f32")]
        compute_dtype: String,
        /// Check the decode path: the first K tokens through `extend`, every later token
        /// through one `decode` step (the earlier positions' logits from `eval` on the prefix).
        #[arg(long, value_name = "K")]
        decode_from: Option<usize>,
        /// The pipeline that runs before the interpreter (`default` keeps f32/bf16 numerics).
        #[command(flatten)]
        pipeline: opt::PipelineArgs,
    },
    /// Time a model's prefill and decode and print them beside their roofline on this machine.
    Bench {
        /// A checkpoint directory (config.json + safetensors) or a shape-only directory.
        model: PathBuf,
        /// Prompt tokens per prefill.
        #[arg(long, default_value_t = 128)]
        prompt: usize,
        /// Decode steps after each prefill.
        #[arg(long, default_value_t = 32)]
        decode: usize,
        /// Timed repetitions of prefill + decode (after loading the weights).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where to run: `cpu` (the reference interpreter); `sim` and `cuda` arrive with codegen.
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also report the time per op of prefill and of decode.
        #[arg(long)]
        profile: bool,
        /// Describe the model by config.json alone, with synthetic weights (any weight files
        /// are not read).
        #[arg(long)]
        shape_only: bool,
        /// The pipeline that runs before the interpreter.
        #[command(flatten)]
        pipeline: opt::PipelineArgs,
    },
    /// Show a model or IR file: its IR, or with --stats its parameters, layers and ops.
    Inspect {
        /// A model directory or a `.lir` file.
        path: PathBuf,
        /// Print statistics instead of the IR.
        #[arg(long)]
        stats: bool,
        /// Print statistics as one JSON object (the same as `--stats --format json`).
        #[arg(long)]
        json: bool,
        /// Output format of the IR or the statistics.
        #[arg(long, value_enum, default_value = "text")]
        format: inspect::Format,
        /// Context length (tokens per sequence) for cache bytes and the cost model: 1 to 2^24.
        #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..=MAX_CONTEXT))]
        context: u64,
        /// GPU of the cost model (`h100-sxm`, `h200`).
        #[arg(long, default_value = "h100-sxm")]
        gpu: String,
        /// Describe the model by config.json alone, with synthetic weights (any weight files
        /// are not read).
        #[arg(long)]
        shape_only: bool,
        /// One row per distinct kernel the templates make: strategy, grid, block, shared bytes,
        /// registers, spill bytes, FLOPs, bytes, roofline µs (runs the default pipeline unless
        /// `--pipeline` names one).
        #[arg(long)]
        kernels: bool,
        /// With `--kernels`: the architecture ptxas assembles for.
        #[arg(long, default_value = "sm_90")]
        target: String,
        /// With `--kernels`: print this kernel's IR and PTX instead of the table.
        #[arg(long)]
        kernel: Option<String>,
        /// The pipeline to run first (`default` schedules every op into kernels).
        #[command(flatten)]
        pipeline: opt::PipelineArgs,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.located {
                eprintln!("{e}");
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::from(u8::try_from(e.code).unwrap_or(1))
        }
    }
}

/// A command line clap refuses: help and version print as clap prints them; an error prints
/// its first line only (clap adds usage and a hint on further lines) and exits with 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
    }
    let text = e.render().to_string();
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("error: invalid command line");
    eprintln!("{}", line.trim_end());
    ExitCode::from(2)
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Verify { file } => {
            load(&file)?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::Opt { file, pipeline, stats, output } => {
            if let Some(out) = &output {
                error::refuse_overwrite(out, "--output", std::slice::from_ref(&file))?;
            }
            let mut m = load(&file)?;
            pipeline.run_with_stats(&mut m, stats)?;
            let text = print_module(&m);
            match output {
                Some(path) => error::write_atomic(&path, text.as_bytes()),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        Command::Interp { file, func, inputs, weights, out } => {
            let m = load(&file)?;
            let mut args = HashMap::new();
            let mut read = vec![file.clone()];
            for spec in &inputs {
                let (name, path) = spec
                    .split_once('=')
                    .filter(|(n, p)| !n.is_empty() && !p.is_empty())
                    .ok_or_else(|| CliError::input(format!("--input {spec:?}: expected NAME=FILE.safetensors")))?;
                read.push(PathBuf::from(path));
                let t = tensors::read_tensor(Path::new(path), name)?;
                if args.insert(name.to_string(), t).is_some() {
                    return Err(CliError::input(format!("--input {name:?} is given twice")));
                }
            }
            // The weights as f32 and the inputs must fit before anything is loaded.
            let input_bytes = args
                .values()
                .fold(0u64, |a, t| a.saturating_add((t.shape.iter().product::<usize>() as u64).saturating_mul(8)));
            model::check_memory(&m, &file, input_bytes)?;
            let dir = weights.unwrap_or_else(|| file.parent().map(Path::to_path_buf).unwrap_or_default());
            // Every file the module's checkpoint weights name, headers checked before the run.
            let mut checkpoint = Checkpoint { dir, ..Checkpoint::default() };
            for (_, w) in m.weights.iter() {
                if let WeightSource::Checkpoint { file: f, .. } = &w.source {
                    checkpoint.add_file(f).map_err(|e| CliError::input(format!("weight `@{}`: {e}", w.name)))?;
                }
            }
            read.extend(checkpoint.files.keys().map(|f| checkpoint.dir.join(f)));
            error::refuse_overwrite(&out, "--out", &read)?;
            let loader = CheckpointLoader { checkpoint: Some(&checkpoint) };
            let outs = lathe_interp::run(&m, &func, &args, &loader)
                .map_err(|e| CliError::input(format!("{}: {e}", file.display())))?;
            tensors::write_tensors(&out, &outs)?;
            for (name, t) in &outs {
                println!("{name}: {}{:?}", t.dtype, t.shape);
            }
            Ok(())
        }
        Command::ListPasses => {
            print!("{}", opt::list_passes());
            Ok(())
        }
        Command::Kernel(cmd) => kernel_cmd::run(cmd),
        Command::Ops => {
            print!("{}", lathe_ir::manual::render());
            Ok(())
        }
        Command::Eval {
            model,
            tokens,
            out,
            shape_only,
            backend,
            strict,
            verbose,
            compute_dtype,
            decode_from,
            pipeline,
        } => {
            let compute_dtype = match compute_dtype.as_str() {
                "f32" => lathe_ir::DType::F32,
                "bf16" => lathe_ir::DType::BF16,
                other => {
                    return Err(CliError::input(format!("--compute-dtype {other}: not supported (`f32` or `bf16`)")))
                }
            };
            let backend = match backend.as_str() {
                "cpu" => model::Backend::Cpu,
                "sim" => model::Backend::Sim { strict, verbose },
                other => {
                    return Err(CliError::input(format!(
                        "--backend {other}: not available (`cpu`, the reference interpreter, or `sim`, compiled \
                         groups in the SIMT simulator; `cuda` arrives with the runtime)"
                    )))
                }
            };
            if (strict || verbose) && backend == model::Backend::Cpu {
                return Err(CliError::input("--strict and --verbose go with --backend sim"));
            }
            error::refuse_overwrite(&out, "--out", &error::model_inputs(&model))?;
            let tokens = model::parse_tokens(&tokens)?;
            // The simulator runs compiled groups: without a pipeline named, the default one
            // schedules the program into them.
            let mut pipeline = pipeline;
            if backend != model::Backend::Cpu && pipeline.pipeline.is_empty() {
                pipeline.pipeline = "default".into();
            }
            let logits = model::eval(&model, &tokens, &pipeline, shape_only, backend, compute_dtype, decode_from)?;
            tensors::write_tensors(&out, &[("logits".to_string(), logits)])
        }
        Command::Bench { model, prompt, decode, runs, backend, json, profile, shape_only, pipeline } => {
            if backend != "cpu" {
                return Err(CliError::input(format!(
                    "--backend {backend}: not available yet (only `cpu`, the reference interpreter)"
                )));
            }
            let v = bench::bench(&bench::Setup {
                model: &model,
                prompt,
                decode,
                runs,
                pipeline: &pipeline,
                profile,
                shape_only,
            })?;
            if json {
                println!("{v}");
            } else {
                print!("{}", bench::text(&v));
            }
            Ok(())
        }
        Command::Inspect { path, stats, json, format, context, gpu, shape_only, kernels, target, kernel, pipeline } => {
            let gpu = inspect::gpu(&gpu)?;
            if kernel.is_some() && !kernels {
                return Err(CliError::input("--kernel NAME goes with --kernels"));
            }
            let target = kernels_view::target(&target)?;
            // The kernels are the scheduled program's: without a pipeline named, the default one.
            let mut pipeline = pipeline;
            if kernels && pipeline.pipeline.is_empty() {
                pipeline.pipeline = "default".into();
            }
            pipeline.manager()?;
            let (m, model_stats) = if path.is_dir() {
                // Inspection shows what a compile produces: bf16 activations.
                let opts = lathe_frontend::import::ImportOptions {
                    compute_dtype: lathe_ir::DType::BF16,
                    shape_only,
                    ..lathe_frontend::import::ImportOptions::default()
                };
                // Inspection reads shapes only: a directory without weight files is fine.
                let mut imp = model::load_model(&path, &opts, false)?;
                let unfused = model::kernel_counts(&imp.module);
                pipeline.run(&mut imp.module)?;
                let v = model::stats(&imp, &unfused);
                (imp.module, Some(v))
            } else {
                let mut m = load(&path)?;
                let unfused = model::kernel_counts(&m);
                pipeline.run(&mut m)?;
                let v = serde_json::json!({
                    "ops_by_program": model::op_counts(&m),
                    "kernels_by_program": model::kernel_counts(&m),
                    "launches_by_program": model::launch_counts(&m),
                    "kernels_unfused_by_program": unfused,
                });
                (m, Some(v))
            };
            if kernels {
                let (rows, pending) = kernels_view::collect(&m, context, &gpu, target)?;
                match kernel {
                    Some(name) => {
                        let r = rows.iter().find(|r| r.name == name).ok_or_else(|| {
                            CliError::input(format!("--kernel {name}: no such kernel (`--kernels` lists them)"))
                        })?;
                        print!("{}\n{}", r.kernel, r.ptx);
                    }
                    None if json || format == inspect::Format::Json => {
                        println!("{}", kernels_view::json(&rows, &pending, target))
                    }
                    None => print!("{}", kernels_view::text(&rows, &pending, target, context, &gpu)),
                }
                return Ok(());
            }
            if stats || json {
                let mut v = model_stats.unwrap_or_default();
                if let (Some(obj), serde_json::Value::Object(extra)) =
                    (v.as_object_mut(), inspect::cost_stats(&m, context, &gpu)?)
                {
                    obj.extend(extra);
                }
                if json || format == inspect::Format::Json {
                    println!("{v}");
                } else {
                    print!("{}", model::stats_text(&v));
                }
            } else {
                match format {
                    inspect::Format::Text => print!("{}", print_module(&m)),
                    inspect::Format::Json => println!("{}", inspect::ir_json(&m)),
                    inspect::Format::Dot => print!("{}", inspect::dot(&m)),
                }
            }
            Ok(())
        }
    }
}

/// Reads, parses and verifies an IR file; errors are located `file:line:col`.
fn load(file: &Path) -> Result<Module, CliError> {
    let src = error::read_text(file, MAX_IR_BYTES)?;
    let (m, spans) = parse_module_with_spans(&src).map_err(|e| CliError::located(format!("{}:{e}", file.display())))?;
    model::check_parameters(&m, file)?;
    // The verifier of the module's stage: a file that says `stage = scheduled` is held to it.
    if let Err(errs) = lathe_passes::verify::verify(&m) {
        let lines: Vec<String> = errs.0.iter().map(|e| locate(file, &spans, e)).collect();
        return Err(CliError::located(lines.join("\n")));
    }
    Ok(m)
}

fn locate(file: &Path, spans: &SourceMap, e: &lathe_ir::verify::VerifyError) -> String {
    let pos = e.loc.func.and_then(|f| {
        // The innermost node that has a recorded position.
        (1..=e.loc.path.len()).rev().find_map(|k| spans.get(&(f, e.loc.path[..k].to_vec())))
    });
    match pos {
        Some(p) => format!("{}:{}:{}: {}", file.display(), p.line, p.col, e),
        None => format!("{}: {}", file.display(), e),
    }
}
