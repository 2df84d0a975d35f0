//! Errors of pipelines and passes, as data: each variant says what went wrong and carries the
//! facts (pass, option, function, node) up to the CLI, which decides how to show them. A pass
//! returns a [`Failure`]; the pass manager adds the pass's name, which is written once, in the
//! registry.

use std::path::PathBuf;
use std::sync::Arc;

use lathe_ir::verify::VerifyErrors;
use lathe_ir::Stage;

use crate::plan_memory::PlanError;

/// Errors of pipelines and passes.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PassError {
    /// The pipeline string is malformed.
    #[error("{error} in pipeline {text:?}")]
    Pipeline {
        /// The pipeline as given.
        text: String,
        /// What is wrong with it.
        error: PipelineSyntax,
    },
    /// No pass has that name.
    #[error("unknown pass `{name}` (valid: {})", valid.join(", "))]
    UnknownPass {
        /// What was asked for.
        name: String,
        /// Every registered name.
        valid: Vec<&'static str>,
    },
    /// A pass was given an option it does not have, or a bad value.
    #[error("pass `{pass}`: {error}")]
    Option {
        /// The pass.
        pass: &'static str,
        /// What is wrong.
        error: OptionError,
    },
    /// `--after PASS` names a pass the pipeline does not run.
    #[error("--after {pass}: the pipeline `{pipeline}` has no such pass")]
    NotInPipeline {
        /// The pass named.
        pass: String,
        /// The pipeline, canonical.
        pipeline: String,
    },
    /// A pass was asked to run on a module at a stage it does not take.
    #[error(
        "pass `{pass}` runs on a module at stage {}, but this module is {stage}",
        accepts.iter().map(|s| s.name()).collect::<Vec<_>>().join(" or ")
    )]
    Stage {
        /// The pass.
        pass: &'static str,
        /// The module's stage.
        stage: Stage,
        /// The stages the pass takes.
        accepts: &'static [Stage],
    },
    /// The module failed to verify after a pass: a bug in that pass.
    #[error("the module does not verify after `{pass}`: {errors}")]
    Verify {
        /// The pass that ran last (as written in the pipeline).
        pass: String,
        /// The verifier's errors.
        errors: VerifyErrors,
    },
    /// A pass could not do its work.
    #[error("pass `{pass}`: {failure}")]
    Failed {
        /// The pass.
        pass: &'static str,
        /// Why.
        failure: Box<Failure>,
    },
    /// Writing IR dumps failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: Arc<std::io::Error>,
    },
}

impl PassError {
    /// Whether the error is the input's fault (a bad pipeline, option or module) rather than a
    /// pass's (a module that no longer verifies, a failed rewrite).
    pub fn is_bad_input(&self) -> bool {
        match self {
            PassError::Pipeline { .. }
            | PassError::UnknownPass { .. }
            | PassError::Option { .. }
            | PassError::NotInPipeline { .. }
            | PassError::Stage { .. }
            | PassError::Io { .. } => true,
            PassError::Failed { failure, .. } => matches!(**failure, Failure::Plan(_)),
            PassError::Verify { .. } => false,
        }
    }
}

/// What is wrong with a pipeline string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineSyntax {
    /// Not a pass name where one belongs.
    #[error("expected a pass name, found {found:?}")]
    ExpectedPassName {
        /// What stands there.
        found: String,
    },
    /// `pass{` without its `}`.
    #[error("unclosed `{{` after `{pass}`")]
    Unclosed {
        /// The pass.
        pass: String,
    },
    /// An option without `=`.
    #[error("option {item:?} of `{pass}` is not key=value")]
    NotKeyValue {
        /// The pass.
        pass: String,
        /// The option as written.
        item: String,
    },
    /// An option whose key or value is not well formed.
    #[error("malformed option {item:?} of `{pass}`")]
    Malformed {
        /// The pass.
        pass: String,
        /// The option as written.
        item: String,
    },
    /// One option given twice.
    #[error("option `{key}` of `{pass}` is given twice")]
    Twice {
        /// The pass.
        pass: String,
        /// The option.
        key: String,
    },
    /// A `,` with nothing after it.
    #[error("trailing `,`")]
    TrailingComma,
    /// Two passes not separated by `,`.
    #[error("expected `,` before {rest:?}")]
    ExpectedComma {
        /// What follows.
        rest: String,
    },
}

/// What is wrong with an option of a pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionError {
    /// The pass has no such option.
    #[error("unknown option `{key}` (valid: {})", if valid.is_empty() { "none".to_string() } else { valid.join(", ") })]
    Unknown {
        /// The option given.
        key: String,
        /// The pass's options.
        valid: Vec<&'static str>,
    },
    /// An integer option with another value.
    #[error("`{key}={value}` is not a non-negative integer")]
    NotInteger {
        /// The option.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// A boolean option with another value.
    #[error("`{key}={value}` is not true or false")]
    NotBool {
        /// The option.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// A value outside the option's set.
    #[error("`{key}={value}` is not {expected}")]
    NotOneOf {
        /// The option.
        key: &'static str,
        /// Its value.
        value: String,
        /// What it may be, for the message.
        expected: &'static str,
    },
}

/// Why a pass could not do its work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// Outlining the groups of a function failed.
    #[error("@{function}: {error}")]
    Outline {
        /// The function.
        function: String,
        /// What went wrong.
        error: OutlineError,
    },
    /// A rewrite of a function went wrong (a pass bug, reported rather than panicking).
    #[error("@{function}: {error}")]
    Rewrite {
        /// The function.
        function: String,
        /// What went wrong.
        error: RewriteError,
    },
    /// A function has no valid memory plan.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Why groups could not be outlined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutlineError {
    /// A group names a node that is not in the graph's order.
    #[error("node {node} is not in the graph's order")]
    NotInOrder {
        /// Its arena index.
        node: usize,
    },
    /// Two groups name one node.
    #[error("node {node} is in two groups")]
    InTwoGroups {
        /// Its arena index.
        node: usize,
    },
    /// The groups would depend on each other.
    #[error("the groups depend on each other in a cycle")]
    Cycle,
}

/// Why a rewrite could not build its ops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// An op built from operands it does not accept.
    #[error("`{op}`: {message}")]
    IllTyped {
        /// The op.
        op: &'static str,
        /// The typing rule's message.
        message: String,
    },
    /// A rewrite changed the type of a value it replaces.
    #[error("the rewritten `{op}` does not keep its result type")]
    TypeChanged {
        /// The op.
        op: &'static str,
    },
    /// A fact the rewrite relies on does not hold.
    #[error("{0}")]
    Invariant(&'static str),
}
