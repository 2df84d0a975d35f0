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
pub mod fold_constants;
pub mod fuse_elementwise;
pub mod fuse_fp8;
pub mod fuse_ssd;
pub mod manager;
pub mod outline;
pub mod pipeline;
pub mod plan;
pub mod plan_memory;
pub mod quantize_fp8;
pub mod rewrite;
pub mod schedule_hybrid;
pub mod strategy;

use std::collections::BTreeMap;

use lathe_ir::Module;

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

/// Errors of pipelines and passes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PassError {
    /// The pipeline string is malformed.
    #[error("{0}")]
    Pipeline(String),
    /// No pass has that name.
    #[error("unknown pass `{name}` (valid: {valid})")]
    UnknownPass {
        /// What was asked for.
        name: String,
        /// Every registered name.
        valid: String,
    },
    /// A pass was given an option it does not have or a bad value.
    #[error("pass `{pass}`: {message}")]
    Option {
        /// The pass.
        pass: String,
        /// What is wrong, listing the valid options.
        message: String,
    },
    /// The module failed to verify after a pass: a bug in that pass.
    #[error("the module does not verify after `{pass}`: {errors}")]
    Verify {
        /// The pass that ran last.
        pass: String,
        /// The verifier's errors.
        errors: String,
    },
    /// A pass could not do its work.
    #[error("pass `{pass}`: {message}")]
    Failed {
        /// The pass.
        pass: String,
        /// Why.
        message: String,
    },
    /// Writing IR dumps failed.
    #[error("cannot write {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS message.
        message: String,
    },
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

/// A transformation of a module.
pub trait Pass {
    /// The registered kebab-case name.
    fn name(&self) -> &'static str;
    /// Runs on `m`, which verifies on entry and must verify on exit.
    fn run(&mut self, m: &mut Module, cx: &mut PassContext) -> Result<Changed, PassError>;
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
    /// Builds the pass from checked options.
    pub create: fn(&Options) -> Result<Box<dyn Pass>, PassError>,
}

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

    /// `key` as an unsigned integer.
    pub fn usize(&self, key: &str) -> Result<usize, PassError> {
        let v = self.text(key);
        v.parse().map_err(|_| PassError::Option {
            pass: self.pass.into(),
            message: format!("`{key}={v}` is not a non-negative integer"),
        })
    }

    /// `key` as a boolean.
    pub fn bool(&self, key: &str) -> Result<bool, PassError> {
        match self.text(key) {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            v => {
                Err(PassError::Option { pass: self.pass.into(), message: format!("`{key}={v}` is not true or false") })
            }
        }
    }
}

/// Every registered pass, in the order of the default pipeline.
pub fn registry() -> &'static [PassInfo] {
    &[
        canonicalize::INFO,
        cse::INFO,
        dce::INFO,
        fold_constants::INFO,
        quantize_fp8::INFO,
        fuse_fp8::INFO,
        fuse_ssd::INFO,
        fuse_elementwise::INFO,
        schedule_hybrid::INFO,
        plan_memory::INFO,
    ]
}

/// Builds a pass from a pipeline entry, checking its name and options.
pub fn create(spec: &PassSpec) -> Result<Box<dyn Pass>, PassError> {
    let info = registry().iter().find(|p| p.name == spec.name).ok_or_else(|| PassError::UnknownPass {
        name: spec.name.clone(),
        valid: registry().iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
    })?;
    let mut values: Vec<(&'static str, String)> =
        info.options.iter().map(|o| (o.name, o.default.to_string())).collect();
    for (k, v) in &spec.options {
        match values.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => {
                let valid: Vec<&str> = info.options.iter().map(|o| o.name).collect();
                return Err(PassError::Option {
                    pass: info.name.into(),
                    message: format!(
                        "unknown option `{k}` (valid: {})",
                        if valid.is_empty() { "none".to_string() } else { valid.join(", ") }
                    ),
                });
            }
        }
    }
    (info.create)(&Options { pass: info.name, values })
}

/// The default pipeline: keeps the module's numerics (no quantization).
pub const DEFAULT_PIPELINE: &str =
    "canonicalize,fold-constants,cse,dce,fuse-ssd,fuse-elementwise,schedule-hybrid,dce,plan-memory";

/// Replaces the pipeline name `default` by the default pipeline.
pub fn expand_default(pipeline: &str) -> String {
    pipeline
        .split(',')
        .map(|p| if p.trim() == "default" { DEFAULT_PIPELINE.to_string() } else { p.to_string() })
        .collect::<Vec<_>>()
        .join(",")
}
