//! The fusion contract: which ops each [`KernelStrategy`] accepts, the typed description of a
//! group a code generator builds its kernel from ([`GroupSpec`]), and the verifier rule that a
//! scheduled module holds every computing node in exactly one accepted group.
//!
//! After `schedule-hybrid`, a function's top level holds only data nodes (`input`, `weight`,
//! `constant`: no launch) and `fusion` nodes; each fusion is one group, whose launches its
//! strategy's rule gives ([`crate::launch`]). Weights and constants may also appear inside bodies
//! (a kernel reads them directly).
//!
//! [`classify`] is the one function that decides whether a strategy accepts a group: the schedule
//! verifier calls it, the launch rules and the cost model read its [`GroupSpec`], and the code
//! generator will build its kernels from it.

use std::collections::HashSet;

use lathe_ir::ops::{Fusion, KernelStrategy};
use lathe_ir::verify::{Location, VerifyError};
use lathe_ir::{Dim, Graph, Module, NodeId, Op, TensorType};

/// Ops that produce no launch: arguments and data.
pub fn is_data(op: &Op) -> bool {
    matches!(op, Op::Input(_) | Op::Weight(_) | Op::Constant(_))
}

/// Index-only ops: free inside any kernel (address arithmetic). `pixel_shuffle` is a fixed
/// permutation of its operand's elements.
pub fn is_movement(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape(_)
            | Op::Transpose(_)
            | Op::Slice(_)
            | Op::Split(_)
            | Op::Concat(_)
            | Op::Broadcast(_)
            | Op::PixelShuffle(_)
    )
}

/// Pointwise ops (and iota, whose value is its index, and rope, which pairs element `i` with
/// `i ± D/2` of the same head: both are index arithmetic plus arithmetic any kernel can do).
pub fn is_pointwise(op: &Op) -> bool {
    op.is_elementwise() || matches!(op, Op::Iota(_) | Op::Rope(_))
}

/// Ops any kernel can absorb around its main op.
pub fn is_light(op: &Op) -> bool {
    // `amax` is an epilogue reduction any kernel can add (block max, then one atomic max).
    is_data(op) || is_movement(op) || is_pointwise(op) || matches!(op, Op::Amax)
}

/// Ops that turn weights into the form a kernel reads (fp8 codes and scales, casts, layouts):
/// on weights and constants alone they are evaluated once at compile time.
pub fn is_weight_transform(op: &Op) -> bool {
    is_pointwise(op) || is_movement(op) || matches!(op, Op::Amax | Op::Quantize(_) | Op::Dequantize(_) | Op::Reduce(_))
}

/// Row reductions and normalizations.
pub fn is_row_op(op: &Op) -> bool {
    matches!(
        op,
        Op::RmsNorm(_)
            | Op::LayerNorm(_)
            | Op::Softmax(_)
            | Op::Reduce(_)
            | Op::Amax
            | Op::Quantize(_)
            | Op::Dequantize(_)
    )
}

/// Ops a GEMM template is built around: matrix products and the ViT patch embedding (an
/// implicit GEMM over `C·p²`-long patch rows).
fn is_gemm_main(op: &Op) -> bool {
    matches!(op, Op::Matmul(_) | Op::ScaledMatmul(_) | Op::Conv2dPatch(_))
}

/// Largest number of rows a matmul of this lhs type can have, from the symbols' bounds.
fn max_rows(m: &Module, lhs: &TensorType) -> u64 {
    let r = lhs.rank();
    lhs.shape[..r.saturating_sub(1)]
        .iter()
        .map(|d| match d {
            Dim::Const(c) => *c,
            Dim::Sym(s) => m.symbols.get(*s).map_or(u64::MAX, |s| s.max),
        })
        .fold(1u64, u64::saturating_mul)
}

/// A matmul with at most this many rows is a GEMV (bound by streaming the weight).
pub const GEMV_MAX_ROWS: u64 = 64;

/// Whether a matmul node with lhs type `lhs` is decode-shaped.
pub fn is_gemv(m: &Module, lhs: &TensorType) -> bool {
    max_rows(m, lhs) <= GEMV_MAX_ROWS
}

/// Whether a value's sequence axis (axis 1 of `[B, S, ...]`) is the constant 1.
fn single_step(t: &TensorType) -> bool {
    t.shape.get(1) == Some(&Dim::Const(1))
}

/// The nodes of `g` whose values depend only on weights and constants (no input) and have
/// constant shapes: compile-time values, such as an fp8 weight and its scale, which the artifact
/// writer can evaluate once.
pub fn compile_time_nodes(g: &Graph) -> HashSet<NodeId> {
    let mut set = HashSet::new();
    for &n in &g.order {
        let node = &g.nodes[n];
        if node.results.iter().any(|&r| g.values[r].ty.const_elements().is_none()) {
            continue;
        }
        let constant = match &node.op {
            Op::Weight(_) | Op::Constant(_) => true,
            op if is_weight_transform(op) => {
                !node.args.is_empty() && node.args.iter().all(|a| set.contains(&g.values[*a].def))
            }
            _ => false,
        };
        if constant {
            set.insert(n);
        }
    }
    set
}

/// Why a strategy does not accept a group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StrategyError {
    /// The body computes nothing (data only).
    #[error("a group must compute something")]
    ComputesNothing,
    /// An op the strategy's template cannot hold.
    #[error("`{op}` cannot be part of a {} kernel", strategy.name())]
    NotAccepted {
        /// The op.
        op: &'static str,
        /// The strategy.
        strategy: KernelStrategy,
    },
    /// The strategy is built around exactly one op of a kind (a cache write: at least one).
    #[error("a {} kernel holds exactly one `{op}`, found {found}", strategy.name())]
    ExactlyOne {
        /// The strategy.
        strategy: KernelStrategy,
        /// The op it is built around.
        op: &'static str,
        /// How many the body has.
        found: usize,
    },
    /// A row-reduce group without a reduction or norm.
    #[error("a row_reduce kernel needs a reduction or norm")]
    NoRowOp,
    /// A decode strategy on more than one step.
    #[error("{} takes one query per sequence", strategy.name())]
    NotOneStep {
        /// The strategy.
        strategy: KernelStrategy,
    },
    /// A GEMV on a matmul with too many rows.
    #[error("gemv takes at most {GEMV_MAX_ROWS} rows")]
    TooManyRows,
}

/// A group as its kernel template sees it: what the code generator builds from, what the launch
/// rules and the cost model read. Node lists are in body order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// The strategy.
    pub strategy: KernelStrategy,
    /// The op(s) the template is built around: the matmul, the scan, the attention, the
    /// norms of a row reduction, the cache writes; empty for `elementwise`.
    pub main: Vec<NodeId>,
    /// Computing nodes the main ops read, computed in the kernel before them (a norm before a
    /// GEMM, an activation's fp8 quantization, a conv before the decode scan).
    pub prologue: Vec<NodeId>,
    /// The other computing nodes: those on the main ops' results (activation, bias, residual,
    /// gate, D skip) and, for `elementwise`, every computing node.
    pub epilogue: Vec<NodeId>,
    /// `amax` epilogue reductions: each accumulates into a zeroed `f32[]` with atomics.
    pub reductions: Vec<NodeId>,
    /// Nodes computed from weights and constants alone, of constant shapes (compile-time values
    /// a kernel holds: weight views, an fp8 weight's dequantization).
    pub compile_time: Vec<NodeId>,
}

/// Classifies fusion group `f` of module `m`: its [`GroupSpec`] if its strategy accepts its
/// body, else why not.
pub fn classify(m: &Module, f: &Fusion) -> Result<GroupSpec, StrategyError> {
    let (strategy, body) = (f.strategy, &f.body);
    // Values computed from weights and constants alone (an fp8 weight and its scale) are
    // evaluated once by the artifact writer, so any kernel may hold them.
    let mut compile_time = compile_time_nodes(body);
    if body.order.iter().all(|&n| is_data(&body.nodes[n].op)) {
        return Err(StrategyError::ComputesNothing);
    }
    // A group that only computes from weights and constants (a value of symbolic shape, or one
    // returned as it is) computes them at run time like any other.
    if body.order.iter().all(|n| compile_time.contains(n) || is_data(&body.nodes[*n].op)) {
        compile_time.clear();
    }
    let computing: Vec<NodeId> =
        body.order.iter().copied().filter(|n| !compile_time.contains(n) && !is_data(&body.nodes[*n].op)).collect();
    let op = |n: NodeId| &body.nodes[n].op;
    let only = |allowed: &dyn Fn(&Op) -> bool| -> Result<(), StrategyError> {
        match computing.iter().map(|&n| op(n)).find(|o| !is_light(o) && !allowed(o)) {
            Some(o) => Err(StrategyError::NotAccepted { op: o.name(), strategy }),
            None => Ok(()),
        }
    };
    let exactly_one = |name: &'static str, f: &dyn Fn(&Op) -> bool| -> Result<NodeId, StrategyError> {
        let found: Vec<NodeId> = computing.iter().copied().filter(|&n| f(op(n))).collect();
        match found.as_slice() {
            [n] => Ok(*n),
            _ => Err(StrategyError::ExactlyOne { strategy, op: name, found: found.len() }),
        }
    };
    let arg_ty = |n: NodeId, i: usize| body.nodes[n].args.get(i).and_then(|&a| body.values.get(a)).map(|v| &v.ty);
    let main: Vec<NodeId> = match strategy {
        KernelStrategy::Elementwise => {
            only(&|_| false)?;
            Vec::new()
        }
        KernelStrategy::RowReduce => {
            only(&is_row_op)?;
            let rows: Vec<NodeId> = computing.iter().copied().filter(|&n| is_row_op(op(n))).collect();
            if rows.is_empty() {
                return Err(StrategyError::NoRowOp);
            }
            rows
        }
        KernelStrategy::Conv1dCausal => {
            only(&|o| matches!(o, Op::Conv1dCausal))?;
            vec![exactly_one("conv1d.causal", &|o| matches!(o, Op::Conv1dCausal))?]
        }
        KernelStrategy::SsdChunkScan => {
            only(&|o| matches!(o, Op::ScanSsd(_) | Op::RmsNorm(_)))?;
            vec![exactly_one("scan.ssd", &|o| matches!(o, Op::ScanSsd(_)))?]
        }
        KernelStrategy::SsdDecodeStep => {
            only(&|o| matches!(o, Op::ScanSsd(_) | Op::RmsNorm(_) | Op::Conv1dCausal))?;
            let scan = exactly_one("scan.ssd", &|o| matches!(o, Op::ScanSsd(_)))?;
            if !arg_ty(scan, 0).is_some_and(single_step) {
                return Err(StrategyError::NotOneStep { strategy });
            }
            vec![scan]
        }
        KernelStrategy::AttentionPrefill | KernelStrategy::AttentionDecode => {
            only(&|o| matches!(o, Op::Attention(_)))?;
            let att = exactly_one("attention", &|o| matches!(o, Op::Attention(_)))?;
            if strategy == KernelStrategy::AttentionDecode && !arg_ty(att, 0).is_some_and(single_step) {
                return Err(StrategyError::NotOneStep { strategy });
            }
            vec![att]
        }
        KernelStrategy::Gemm | KernelStrategy::Gemv => {
            only(&|o| is_gemm_main(o) || matches!(o, Op::RmsNorm(_) | Op::Quantize(_) | Op::Dequantize(_) | Op::Amax))?;
            // A GEMV may hold sibling projections of one input row (q, k and v): plain
            // matmuls of the same lhs in the same layout, streamed as one weight.
            let mms: Vec<NodeId> = computing.iter().copied().filter(|&n| is_gemm_main(op(n))).collect();
            let siblings = strategy == KernelStrategy::Gemv
                && mms.len() > 1
                && mms.iter().all(|&n| {
                    matches!(op(n), Op::Matmul(_))
                        && op(n) == op(mms[0])
                        && body.nodes[n].args[0] == body.nodes[mms[0]].args[0]
                });
            let mms = if siblings { mms } else { vec![exactly_one("matmul", &is_gemm_main)?] };
            if strategy == KernelStrategy::Gemv
                && !mms.iter().all(|&mm| is_gemm_main(op(mm)) && arg_ty(mm, 0).is_some_and(|t| is_gemv(m, t)))
            {
                return Err(StrategyError::TooManyRows);
            }
            mms
        }
        KernelStrategy::Gather => {
            only(&|o| matches!(o, Op::Gather))?;
            vec![exactly_one("gather", &|o| matches!(o, Op::Gather))?]
        }
        KernelStrategy::Sample => {
            only(&|o| matches!(o, Op::Sample(_) | Op::RmsNorm(_) | Op::Softmax(_)))?;
            vec![exactly_one("sample", &|o| matches!(o, Op::Sample(_)))?]
        }
        KernelStrategy::ScatterCache => {
            only(&|o| matches!(o, Op::ScatterCache))?;
            let writes: Vec<NodeId> =
                computing.iter().copied().filter(|&n| matches!(op(n), Op::ScatterCache)).collect();
            if writes.is_empty() {
                return Err(StrategyError::ExactlyOne { strategy, op: "scatter_cache", found: 0 });
            }
            writes
        }
    };
    // Prologue: what the main ops read, computed in the group; the rest follows them.
    let mut before: HashSet<NodeId> = HashSet::new();
    let mut stack: Vec<NodeId> =
        main.iter().flat_map(|&n| body.nodes[n].args.iter().map(|&a| body.values[a].def)).collect();
    while let Some(n) = stack.pop() {
        if !main.contains(&n) && before.insert(n) {
            stack.extend(body.nodes[n].args.iter().map(|&a| body.values[a].def));
        }
    }
    let reductions: Vec<NodeId> = if strategy == KernelStrategy::RowReduce {
        Vec::new()
    } else {
        computing.iter().copied().filter(|&n| matches!(op(n), Op::Amax)).collect()
    };
    let rest = |keep: &dyn Fn(NodeId) -> bool| -> Vec<NodeId> {
        computing.iter().copied().filter(|n| !main.contains(n) && !reductions.contains(n) && keep(*n)).collect()
    };
    Ok(GroupSpec {
        strategy,
        prologue: rest(&|n| before.contains(&n)),
        epilogue: rest(&|n| !before.contains(&n)),
        main,
        reductions,
        compile_time: body.order.iter().copied().filter(|n| compile_time.contains(n) && !is_data(op(*n))).collect(),
    })
}

/// The strategy of a group holding `op` alone (with light ops around it). Every op that
/// computes has one: `conv2d.patch` is an implicit GEMM, `pixel_shuffle` a movement.
pub fn singleton(m: &Module, g: &Graph, node: &lathe_ir::Node) -> KernelStrategy {
    let arg_ty = |i: usize| node.args.get(i).and_then(|&a| g.values.get(a)).map(|v| &v.ty);
    match &node.op {
        Op::Matmul(_) | Op::ScaledMatmul(_) => {
            if arg_ty(0).is_some_and(|t| is_gemv(m, t)) {
                KernelStrategy::Gemv
            } else {
                KernelStrategy::Gemm
            }
        }
        Op::Conv2dPatch(_) => KernelStrategy::Gemm,
        Op::Attention(_) => {
            if arg_ty(0).is_some_and(single_step) {
                KernelStrategy::AttentionDecode
            } else {
                KernelStrategy::AttentionPrefill
            }
        }
        Op::ScanSsd(_) => {
            if arg_ty(0).is_some_and(single_step) {
                KernelStrategy::SsdDecodeStep
            } else {
                KernelStrategy::SsdChunkScan
            }
        }
        Op::Conv1dCausal => KernelStrategy::Conv1dCausal,
        Op::Gather => KernelStrategy::Gather,
        Op::Sample(_) => KernelStrategy::Sample,
        Op::ScatterCache => KernelStrategy::ScatterCache,
        op if is_row_op(op) => KernelStrategy::RowReduce,
        // Everything else is pointwise or movement.
        _ => KernelStrategy::Elementwise,
    }
}

/// The scheduling rule: every non-data node of every function sits in a fusion group whose
/// strategy accepts its body ([`classify`]). Returns every violation, located at its node.
pub fn verify_schedule(m: &Module) -> Result<(), Vec<VerifyError>> {
    let mut errs = Vec::new();
    for (fi, f) in m.functions.iter().enumerate() {
        let loc = Location { func: Some(fi), func_name: f.name.clone(), ..Location::default() };
        let g = &f.graph;
        for &n in &g.order {
            match &g.nodes[n].op {
                op if is_data(op) => {}
                Op::Fusion(fu) => {
                    if let Err(e) = classify(m, fu) {
                        errs.push(VerifyError::at_node(m, g, &loc, n, format!("{}: {e}", fu.strategy.name())));
                    }
                }
                op => errs.push(VerifyError::at_node(
                    m,
                    g,
                    &loc,
                    n,
                    format!("`{}` is in no fusion group, but the module is {}", op.name(), m.stage),
                )),
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// Fusion groups of a scheduled function (one each; [`crate::launch`] gives their launches).
pub fn groups(g: &Graph) -> usize {
    g.order.iter().filter(|&&n| matches!(g.nodes[n].op, Op::Fusion(_))).count()
}
