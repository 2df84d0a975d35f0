//! The pass-manager side of the CLI: `--pipeline` and the IR printing/timing flags.

use std::path::PathBuf;

use clap::Args;
use lathe_ir::Module;
use lathe_passes::PassManager;

use crate::error::CliError;

/// Flags shared by the commands that run a pipeline.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Passes to run, in MLIR's grammar (`canonicalize,cse,fold-constants{max-elements=64}`);
    /// `default` names the default pipeline. See `lathe list-passes`.
    #[arg(long, default_value = "")]
    pub pipeline: String,
    /// Print the IR before these passes (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub print_ir_before: Vec<String>,
    /// Print the IR after these passes (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub print_ir_after: Vec<String>,
    /// Print the IR after every pass.
    #[arg(long)]
    pub print_ir_after_all: bool,
    /// Print the IR after every pass that changed it.
    #[arg(long)]
    pub print_ir_after_change: bool,
    /// Write the IR after every pass into this directory.
    #[arg(long)]
    pub dump_ir_dir: Option<PathBuf>,
    /// Print the time of each pass.
    #[arg(long)]
    pub timing: bool,
    /// Skip verifying the module after each pass.
    #[arg(long)]
    pub no_verify_each: bool,
    /// Stop after this pass of the pipeline (the IR after it is what is shown).
    #[arg(long)]
    pub after: Option<String>,
}

impl PipelineArgs {
    /// Builds the pass manager (unknown passes and options are bad input).
    pub fn manager(&self) -> Result<PassManager, CliError> {
        let mut pm = PassManager::parse(&self.pipeline).map_err(|e| CliError::input(e.to_string()))?;
        if let Some(after) = &self.after {
            pm.truncate_after(after).map_err(|e| CliError::input(e.to_string()))?;
        }
        let registered = |names: &[String]| -> Result<(), CliError> {
            match names.iter().find(|n| !lathe_passes::registry().iter().any(|p| p.name == n.as_str())) {
                Some(n) => {
                    Err(CliError::input(format!("unknown pass `{n}` in a --print-ir flag (see `lathe list-passes`)")))
                }
                None => Ok(()),
            }
        };
        registered(&self.print_ir_before)?;
        registered(&self.print_ir_after)?;
        let ins = &mut pm.instrumentation;
        ins.verify_each = !self.no_verify_each;
        ins.print_before = self.print_ir_before.clone();
        ins.print_after = self.print_ir_after.clone();
        ins.print_after_all = self.print_ir_after_all;
        ins.print_after_change = self.print_ir_after_change;
        ins.dump_dir = self.dump_ir_dir.clone();
        Ok(pm)
    }

    /// Runs the pipeline on `m`; IR prints and timing go to standard error.
    pub fn run(&self, m: &mut Module) -> Result<(), CliError> {
        self.run_with_stats(m, false)
    }

    /// Like [`PipelineArgs::run`], also printing the passes' statistics when `stats` is set.
    pub fn run_with_stats(&self, m: &mut Module, stats: bool) -> Result<(), CliError> {
        let mut pm = self.manager()?;
        let mut err = std::io::stderr();
        let report = pm.run(m, &mut err).map_err(|e| {
            if e.is_bad_input() {
                CliError::input(e.to_string())
            } else {
                CliError::internal(e.to_string())
            }
        })?;
        if self.timing {
            eprint!("{}", report.timing_text());
        }
        if stats {
            eprint!("{}", report.stats_text());
        }
        Ok(())
    }
}

/// `lathe list-passes`.
pub fn list_passes() -> String {
    let mut s = String::from("passes (use in --pipeline; `default` = ");
    s.push_str(lathe_passes::DEFAULT_PIPELINE);
    s.push_str(")\n");
    for p in lathe_passes::registry() {
        s.push_str(&format!("  {:<16} {}\n", p.name, p.summary));
        for o in p.options {
            s.push_str(&format!("      {}={:<8} {}\n", o.name, o.default, o.help));
        }
    }
    s
}
