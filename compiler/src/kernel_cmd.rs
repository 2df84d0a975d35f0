//! `lathe kernel verify|run`: the kernel playground, as `lathe interp` is for the graph IR. A
//! kernel in text form (`.lk`, docs/kernel.md) is parsed and verified, or run in the SIMT
//! simulator on buffers from safetensors files; a simulator error (race, out of bounds,
//! divergence, ...) is one located line and exit code 1.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use lathe_kernel::ir::{Access, Kernel, Param, Ty};
use lathe_kernel::sim::{self, Arg, Launch, Options};
use lathe_numerics::DType;
use lathe_tensorfile::TensorRef;

use crate::error::{self, CliError};

/// `lathe kernel ...`
#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// Parse and verify a kernel file; errors as file:line:col.
    Verify {
        /// The `.lk` file.
        file: PathBuf,
    },
    /// Run a kernel in the SIMT simulator and write the buffers it writes.
    Run(RunArgs),
    /// Lower a kernel to PTX (checked against its kernel IR) and assemble it with ptxas; print
    /// the PTX and the `-v` report (registers, spills, stack, shared memory).
    Ptx {
        /// The `.lk` file.
        file: PathBuf,
        /// The GPU architecture (`sm_80`, `sm_89`, `sm_90`, `sm_90a`).
        #[arg(long, default_value = "sm_90")]
        target: String,
        /// Print LLVM's PTX without the structural check or ptxas (to read what the check
        /// refuses).
        #[arg(long)]
        unchecked: bool,
    },
}

/// Arguments of `lathe kernel run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The `.lk` file.
    file: PathBuf,
    /// CTAs per axis: `X[,Y[,Z]]`.
    #[arg(long)]
    grid: String,
    /// Threads per CTA per axis: `X[,Y[,Z]]`.
    #[arg(long)]
    block: String,
    /// `NAME=FILE.safetensors` (a buffer: the file's tensor `NAME` or its only tensor),
    /// `NAME=zeros:N` (a buffer of N zero elements) or `NAME=VALUE` (a scalar).
    #[arg(long = "arg", value_name = "NAME=VALUE")]
    args: Vec<String>,
    /// Output safetensors file: every buffer the kernel writes, by parameter name.
    #[arg(long)]
    out: PathBuf,
    /// Print the simulator's counters.
    #[arg(long)]
    stats: bool,
    /// Run only N CTAs: the first, the last and N - 2 others drawn with a fixed seed.
    #[arg(long)]
    sample_ctas: Option<u32>,
    /// Bytes of dynamic shared memory the launch provides after the kernel's static shared
    /// memory (default 0).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    shared: u32,
}

/// Runs a `lathe kernel` command.
pub fn run(cmd: KernelCommand) -> Result<(), CliError> {
    match cmd {
        KernelCommand::Verify { file } => {
            load(&file)?;
            println!("{}: ok", file.display());
            Ok(())
        }
        KernelCommand::Run(a) => run_kernel(&a),
        KernelCommand::Ptx { file, target, unchecked } => {
            let k = load(&file)?;
            let target = crate::kernels_view::target(&target)?;
            if unchecked {
                let text = lathe_codegen::ptx::compile_unchecked(&k, target)
                    .map_err(|e| CliError::input(format!("{}: {e}", file.display())))?;
                print!("{text}");
                return Ok(());
            }
            let p = lathe_codegen::ptx::compile(&k, target)
                .map_err(|e| CliError::input(format!("{}: {e}", file.display())))?;
            let c = lathe_codegen::ptxas::assemble(&p.text, &k.name, target.sm)
                .map_err(|e| CliError::input(format!("{}: {e}", file.display())))?;
            print!("{}", p.text);
            let r = &c.report;
            println!(
                "// ptxas {}: {} registers, {} bytes spill stores, {} bytes spill loads, {} bytes stack, {} bytes shared",
                target.sm.name(),
                r.registers,
                r.spill_stores,
                r.spill_loads,
                r.stack,
                r.shared
            );
            Ok(())
        }
    }
}

/// Reads, parses and verifies a kernel file.
fn load(file: &Path) -> Result<Kernel, CliError> {
    let text = error::read_text(file, lathe_kernel::text::MAX_INPUT_BYTES as u64)?;
    let k = lathe_kernel::text::parse(&text).map_err(|e| CliError::located(format!("{}:{e}", file.display())))?;
    if let Err(errs) = lathe_kernel::verify::verify(&k) {
        let lines: Vec<String> = errs.iter().map(|e| format!("{}: {e}", file.display())).collect();
        return Err(CliError::located(lines.join("\n")));
    }
    Ok(k)
}

/// `X[,Y[,Z]]`, each at least 1.
fn dims(flag: &str, text: &str) -> Result<[u32; 3], CliError> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.is_empty() || parts.len() > 3 {
        return Err(CliError::input(format!("--{flag} {text:?}: expected X[,Y[,Z]]")));
    }
    let mut out = [1u32; 3];
    for (slot, p) in out.iter_mut().zip(&parts) {
        *slot = p.parse::<u32>().ok().filter(|&v| v >= 1).ok_or_else(|| {
            CliError::input(format!("--{flag} {text:?}: `{p}` is not a count from 1 to {}", u32::MAX))
        })?;
    }
    Ok(out)
}

/// The bits of a scalar argument of type `ty`.
fn scalar(name: &str, ty: Ty, text: &str) -> Result<u64, CliError> {
    let bad = || CliError::input(format!("--arg {name}={text}: not a {} value", ty.name()));
    match ty {
        Ty::F32 => text.parse::<f32>().map(|v| u64::from(v.to_bits())).map_err(|_| bad()),
        t if t.is_signed() => {
            let v = text.parse::<i64>().map_err(|_| bad())?;
            let fits = t.bits() == 64 || (v >= -(1i64 << (t.bits() - 1)) && v < (1i64 << (t.bits() - 1)));
            if fits {
                Ok(v as u64)
            } else {
                Err(bad())
            }
        }
        t if t.is_int() => {
            let v = text.parse::<u64>().map_err(|_| bad())?;
            if t.bits() == 64 || v < (1u64 << t.bits()) {
                Ok(v)
            } else {
                Err(bad())
            }
        }
        _ => Err(CliError::input(format!("--arg {name}: scalars of type {} are not supported here", ty.name()))),
    }
}

fn run_kernel(a: &RunArgs) -> Result<(), CliError> {
    let k = load(&a.file)?;
    let launch = Launch { grid: dims("grid", &a.grid)?, block: dims("block", &a.block)? };
    let mut given: Vec<(String, String)> = Vec::new();
    for spec in &a.args {
        let (name, value) = spec
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| CliError::input(format!("--arg {spec:?}: expected NAME=VALUE")))?;
        if given.iter().any(|(n, _)| n == name) {
            return Err(CliError::input(format!("--arg {name} is given twice")));
        }
        if !k.params.iter().any(|p| p.name() == name) {
            let names: Vec<&str> = k.params.iter().map(Param::name).collect();
            return Err(CliError::input(format!(
                "--arg {name}: kernel {} has no parameter `{name}` (it has: {})",
                k.name,
                names.join(", ")
            )));
        }
        given.push((name.to_string(), value.to_string()));
    }
    let mut inputs: Vec<PathBuf> = vec![a.file.clone()];
    let mut args = Vec::new();
    for p in &k.params {
        let value = given
            .iter()
            .find(|(n, _)| n == p.name())
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| CliError::input(format!("kernel {}: no --arg for parameter `{}`", k.name, p.name())))?;
        args.push(match p {
            Param::Scalar { name, ty } => Arg::Scalar(scalar(name, *ty, value)?),
            Param::Buffer { name, elem, .. } => {
                if let Some(n) = value.strip_prefix("zeros:") {
                    let n: u64 = n.parse().map_err(|_| CliError::input(format!("--arg {name}={value}: bad count")))?;
                    let bytes = n
                        .checked_mul(elem.size_bytes() as u64)
                        .filter(|&b| b <= 1 << 32)
                        .ok_or_else(|| CliError::input(format!("--arg {name}={value}: more than 4 GiB")))?;
                    Arg::Buffer(vec![0; bytes as usize])
                } else {
                    let path = PathBuf::from(value);
                    let bytes = read_buffer(&path, name, *elem)?;
                    inputs.push(path);
                    Arg::Buffer(bytes)
                }
            }
        });
    }
    error::refuse_overwrite(&a.out, "--out", &inputs)?;
    // The first, the last and N - 2 others drawn with a fixed seed (a run reproduces).
    let ctas = a.sample_ctas.map(|n| sim::sample_ctas(launch.grid, n.max(2) as usize - 2, 0));
    let opts = Options { ctas, dynamic_shared: a.shared, ..Options::default() };
    let counters = sim::run(&k, &launch, &mut args, &opts).map_err(|e| CliError {
        code: 1,
        message: format!("{}: {e}", a.file.display()),
        located: false,
    })?;
    // Every written buffer, named by its parameter, as its element type.
    let mut shapes = Vec::new();
    for (p, arg) in k.params.iter().zip(&args) {
        if let (Param::Buffer { name, elem, access: Access::Written, .. }, Arg::Buffer(b)) = (p, arg) {
            shapes.push((name.as_str(), *elem, [b.len() / elem.size_bytes()], b.as_slice()));
        }
    }
    let refs: Vec<TensorRef<'_>> =
        shapes.iter().map(|(name, dtype, shape, bytes)| TensorRef { name, dtype: *dtype, shape, bytes }).collect();
    let mut data = Vec::new();
    lathe_tensorfile::write(&mut data, &refs, &a.out).map_err(|e| CliError::internal(e.to_string()))?;
    error::write_atomic(&a.out, &data)?;
    for (name, dtype, shape, _) in &shapes {
        println!("{name}: {dtype}{shape:?}");
    }
    if a.stats {
        println!("{counters:#?}");
    }
    Ok(())
}

/// A buffer's bytes from a safetensors file: its tensor `name`, or its only tensor, of the
/// parameter's element type.
fn read_buffer(path: &Path, name: &str, elem: DType) -> Result<Vec<u8>, CliError> {
    let (key, info, bytes) = crate::tensors::read_named(path, name)?;
    if info.dtype != elem {
        return Err(CliError::input(format!(
            "{}: tensor \"{key}\" is {}, parameter `{name}` takes {elem}",
            path.display(),
            info.dtype
        )));
    }
    Ok(bytes)
}
