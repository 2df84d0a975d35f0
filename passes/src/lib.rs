//! `lathe-passes` — the pass manager and the optimization pipeline.
//!
//! # The central data structures
//! A [`Pass`] transforms a [`lathe_ir::Module`] in place and says whether it changed anything.
//! The [`registry`] lists every pass by kebab-case name with a one-line summary and its options;
//! pipelines are strings in MLIR's grammar ([`pipeline::Pipeline`]); the [`PassManager`] builds
//! the passes of a pipeline, runs them in order, verifies the module after each (on in tests),
//! and prints or dumps IR around the passes the user names (`--print-ir-before=cse`,
//! `--print-ir-after-all`, `--print-ir-after-change`, `--dump-ir-dir`), with timing and
//! statistics.
//!
//! # Invariants
//! Every pass takes a verified module to a verified module and preserves the interpreter's
//! results (exactly where it only moves ops; within the documented error where it changes
//! numerics, as quantization will). Each pass documents its pre- and post-conditions in its file.
//!
//! # The passes
//! canonicalize, fold-constants, cse, dce (exact cleanups); quantize-fp8 and fuse-fp8 (opt-in
//! fp8); fuse-ssd, fuse-elementwise and schedule-hybrid, which outline every computing node into
//! a `fusion` group with a [`lathe_ir::ops::KernelStrategy`] (the contract lives in
//! [`strategy`]); plan-memory, the arena plan. [`cost`] is the roofline cost model the CLI and
//! benches report.

pub mod canonicalize;
pub mod cost;
pub mod cse;
pub mod dce;
pub mod error;
pub mod fold_constants;
pub mod fuse_elementwise;
pub mod fuse_fp8;
pub mod fuse_ssd;
pub mod hoist_weights;
pub mod launch;
pub mod manager;
pub mod outline;
pub mod pipeline;
pub mod plan;
pub mod plan_memory;
pub mod quantize_fp8;
pub mod rewrite;
pub mod schedule_hybrid;
pub mod step;
pub mod strategy;
pub mod verify;

use std::collections::BTreeMap;

use lathe_ir::{Module, Stage};

pub use error::{Failure, OptionError, OutlineError, PassError, PipelineSyntax, RewriteError};
pub use manager::{Instrumentation, PassManager, RunReport};
pub use pipeline::{PassSpec, Pipeline};

/// Whether a pass changed the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// The module is different.
    Yes,
    /// The module is untouched.
    No,
}

impl From<bool> for Changed {
    fn from(b: bool) -> Self {
        if b {
            Changed::Yes
        } else {
            Changed::No
        }
    }
}

/// Per-run state shared with passes: named statistics counters.
#[derive(Debug, Default)]
pub struct PassContext {
    /// `(pass, counter) → value`.
    pub stats: BTreeMap<(String, String), u64>,
    current: String,
}

impl PassContext {
    /// Adds `n` to the counter `key` of the running pass.
    pub fn bump(&mut self, key: &str, n: u64) {
        if n > 0 {
            *self.stats.entry((self.current.clone(), key.to_string())).or_default() += n;
        }
    }
}

/// A transformation of a module. Its name, summary, options and stages are its registry entry
/// ([`PassInfo`]); the pass manager names it in errors.
pub trait Pass {
    /// Runs on `m`, which verifies on entry (at a stage the pass takes) and must verify on exit.
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, Failure>;
}

/// One option of a pass.
#[derive(Debug, Clone, Copy)]
pub struct OptionInfo {
    /// Kebab-case key.
    pub name: &'static str,
    /// Default value as text.
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// A registry entry.
#[derive(Clone, Copy)]
pub struct PassInfo {
    /// Kebab-case name.
    pub name: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Its options.
    pub options: &'static [OptionInfo],
    /// The module stages it runs on; another is an error before it starts.
    pub accepts: &'static [Stage],
    /// The stage a module reaches after it (the pass manager records it), if any.
    pub sets: Option<Stage>,
    /// Builds the pass from checked options.
    pub create: fn(&Options) -> Result<Box<dyn Pass>, PassError>,
}

/// Every stage: passes that keep whatever stage a module is at.
pub const ANY_STAGE: &[Stage] = &[Stage::Graph, Stage::Scheduled, Stage::Planned];
/// Only `graph`: passes that add nodes outside fusion groups.
pub const GRAPH_ONLY: &[Stage] = &[Stage::Graph];

impl std::fmt::Debug for PassInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassInfo").field("name", &self.name).finish()
    }
}

/// Options of one pass instance, validated against its [`OptionInfo`]s.
#[derive(Debug, Clone)]
pub struct Options {
    pass: &'static str,
    values: Vec<(&'static str, String)>,
}

impl Options {
    /// The value of `key` (its default when not given).
    pub fn text(&self, key: &str) -> &str {
        self.values.iter().find(|(k, _)| *k == key).map_or("", |(_, v)| v.as_str())
    }

    /// The error of option `key` of this pass.
    pub fn error(&self, error: OptionError) -> PassError {
        PassError::Option { pass: self.pass, error }
    }

    /// `key` as an unsigned integer.
    pub fn usize(&self, key: &'static str) -> Result<usize, PassError> {
        let v = self.text(key);
        v.parse().map_err(|_| self.error(OptionError::NotInteger { key, value: v.to_string() }))
    }

    /// `key` as a boolean.
    pub fn bool(&self, key: &'static str) -> Result<bool, PassError> {
        match self.text(key) {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            v => Err(self.error(OptionError::NotBool { key, value: v.to_string() })),
        }
    }

    /// `key` as one of `choices` (`(text, value)`); `expected` lists them for the message.
    pub fn choice<T: Copy>(
        &self,
        key: &'static str,
        choices: &[(&str, T)],
        expected: &'static str,
    ) -> Result<T, PassError> {
        let v = self.text(key);
        choices
            .iter()
            .find(|(name, _)| *name == v)
            .map(|(_, t)| *t)
            .ok_or_else(|| self.error(OptionError::NotOneOf { key, value: v.to_string(), expected }))
    }
}

/// Every registered pass, in the order of the default pipeline.
pub fn registry() -> &'static [PassInfo] {
    &[
        canonicalize::INFO,
        cse::INFO,
        dce::INFO,
        fold_constants::INFO,
        hoist_weights::INFO,
        quantize_fp8::INFO,
        fuse_fp8::INFO,
        fuse_ssd::INFO,
        fuse_elementwise::INFO,
        schedule_hybrid::INFO,
        plan_memory::INFO,
    ]
}

/// The registry entry of pass `name`.
pub fn info(name: &str) -> Result<&'static PassInfo, PassError> {
    registry().iter().find(|p| p.name == name).ok_or_else(|| PassError::UnknownPass {
        name: name.to_string(),
        valid: registry().iter().map(|p| p.name).collect(),
    })
}

/// Builds a pass from a pipeline entry, checking its name and options.
pub fn create(spec: &PassSpec) -> Result<Box<dyn Pass>, PassError> {
    let info = info(&spec.name)?;
    let mut values: Vec<(&'static str, String)> =
        info.options.iter().map(|o| (o.name, o.default.to_string())).collect();
    for (k, v) in &spec.options {
        match values.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => {
                let valid = info.options.iter().map(|o| o.name).collect();
                return Err(PassError::Option {
                    pass: info.name,
                    error: OptionError::Unknown { key: k.clone(), valid },
                });
            }
        }
    }
    (info.create)(&Options { pass: info.name, values })
}

/// The default pipeline: keeps the module's numerics (no quantization).
pub const DEFAULT_PIPELINE: &str =
    "canonicalize,fold-constants,cse,dce,hoist-weights,fuse-ssd,fuse-elementwise,schedule-hybrid,dce,plan-memory";

/// Replaces the pipeline name `default` by the default pipeline.
pub fn expand_default(pipeline: &str) -> String {
    pipeline
        .split(',')
        .map(|p| if p.trim() == "default" { DEFAULT_PIPELINE.to_string() } else { p.to_string() })
        .collect::<Vec<_>>()
        .join(",")
}
