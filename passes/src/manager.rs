//! The pass manager: runs a pipeline with verification, IR printing, dumps, timing and stats.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lathe_ir::text::print_module;
use lathe_ir::Module;

use crate::{create, info, Changed, Pass, PassContext, PassError, PassInfo, PassSpec, Pipeline};

/// What to do around each pass.
#[derive(Debug, Clone, Default)]
pub struct Instrumentation {
    /// Verify after every pass (on in tests; cheap next to the passes).
    pub verify_each: bool,
    /// Print the IR before these passes.
    pub print_before: Vec<String>,
    /// Print the IR after these passes.
    pub print_after: Vec<String>,
    /// Print the IR after every pass.
    pub print_after_all: bool,
    /// Print the IR after every pass that changed it.
    pub print_after_change: bool,
    /// Write the IR after every pass as `NN-pass.lir` here (`00-input.lir` first).
    pub dump_dir: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// `(pass, time, changed)` in order.
    pub timings: Vec<(String, Duration, Changed)>,
    /// `(pass, counter) → value`.
    pub stats: std::collections::BTreeMap<(String, String), u64>,
}

impl RunReport {
    /// `--timing` output: one line per pass and the total.
    pub fn timing_text(&self) -> String {
        let total: Duration = self.timings.iter().map(|t| t.1).sum();
        let mut s = String::from("pass timing:\n");
        for (name, t, changed) in &self.timings {
            let pct = if total.is_zero() { 0.0 } else { 100.0 * t.as_secs_f64() / total.as_secs_f64() };
            let _ = writeln!(
                s,
                "  {:>10.3} ms {pct:>5.1}%  {name}{}",
                t.as_secs_f64() * 1e3,
                if *changed == Changed::Yes { "" } else { "  (no change)" }
            );
        }
        let _ = writeln!(s, "  {:>10.3} ms 100.0%  total", total.as_secs_f64() * 1e3);
        s
    }

    /// `--stats` output.
    pub fn stats_text(&self) -> String {
        let mut s = String::from("pass statistics:\n");
        for ((pass, key), v) in &self.stats {
            let _ = writeln!(s, "  {pass:<16} {key:<20} {v}");
        }
        s
    }
}

/// A pipeline ready to run.
pub struct PassManager {
    passes: Vec<(PassSpec, &'static PassInfo, Box<dyn Pass>)>,
    /// Instrumentation.
    pub instrumentation: Instrumentation,
}

impl std::fmt::Debug for PassManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.passes.iter().map(|(s, _, _)| s.to_string()).collect();
        f.debug_struct("PassManager").field("passes", &names).finish()
    }
}

impl PassManager {
    /// Builds every pass of a pipeline string (unknown names and options are errors).
    pub fn parse(pipeline: &str) -> Result<PassManager, PassError> {
        let p = Pipeline::parse(&crate::expand_default(pipeline))?;
        let passes = p
            .passes
            .into_iter()
            .map(|spec| Ok((info(&spec.name)?, create(&spec)?, spec)))
            .map(|r: Result<_, PassError>| r.map(|(i, pass, spec)| (spec, i, pass)))
            .collect::<Result<_, _>>()?;
        Ok(PassManager { passes, instrumentation: Instrumentation::default() })
    }

    /// Drops the passes after the first one named `pass` (`--after`); an error when the
    /// pipeline has no such pass.
    pub fn truncate_after(&mut self, pass: &str) -> Result<(), PassError> {
        match self.passes.iter().position(|(s, _, _)| s.name == pass) {
            Some(i) => {
                self.passes.truncate(i + 1);
                Ok(())
            }
            None => Err(PassError::NotInPipeline { pass: pass.to_string(), pipeline: self.pipeline() }),
        }
    }

    /// The pipeline in canonical form.
    pub fn pipeline(&self) -> String {
        Pipeline { passes: self.passes.iter().map(|(s, _, _)| s.clone()).collect() }.to_string()
    }

    /// Runs the pipeline on `m`, writing requested IR prints to `log`. Each pass must take the
    /// module's stage; a pass with a stage of its own (`schedule-hybrid`, `plan-memory`) moves
    /// the module there; with `verify_each`, the module is verified at its stage after each pass.
    pub fn run(&mut self, m: &mut Module, log: &mut dyn Write) -> Result<RunReport, PassError> {
        let ins = self.instrumentation.clone();
        let mut cx = PassContext::default();
        let mut report = RunReport::default();
        let io = |path: PathBuf| move |e: std::io::Error| PassError::Io { path: path.clone(), source: Arc::new(e) };
        if let Some(dir) = &ins.dump_dir {
            std::fs::create_dir_all(dir).map_err(io(dir.clone()))?;
            let p = dir.join("00-input.lir");
            std::fs::write(&p, print_module(m)).map_err(io(p.clone()))?;
        }
        for (i, (spec, info, pass)) in self.passes.iter_mut().enumerate() {
            let name = info.name;
            if !info.accepts.contains(&m.stage) {
                return Err(PassError::Stage { pass: name, stage: m.stage, accepts: info.accepts });
            }
            if ins.print_before.iter().any(|p| p == name) {
                writeln!(log, "// ----- IR before {spec} -----\n{}", print_module(m)).map_err(io("the log".into()))?;
            }
            cx.current = name.to_string();
            let t0 = Instant::now();
            let changed =
                pass.run(m, &mut cx).map_err(|failure| PassError::Failed { pass: name, failure: Box::new(failure) })?;
            report.timings.push((spec.to_string(), t0.elapsed(), changed));
            if let Some(stage) = info.sets {
                m.stage = m.stage.max(stage);
            }
            if ins.verify_each {
                crate::verify::verify(m).map_err(|errors| PassError::Verify { pass: spec.to_string(), errors })?;
            }
            let print = ins.print_after_all
                || (ins.print_after_change && changed == Changed::Yes)
                || ins.print_after.iter().any(|p| p == name);
            if print {
                writeln!(log, "// ----- IR after {spec} -----\n{}", print_module(m)).map_err(io("the log".into()))?;
            }
            if let Some(dir) = &ins.dump_dir {
                let p = dir.join(format!("{:02}-{name}.lir", i + 1));
                std::fs::write(&p, print_module(m)).map_err(io(p.clone()))?;
            }
        }
        report.stats = cx.stats;
        Ok(report)
    }
}
