//! The fusion contract: which ops each [`KernelStrategy`] accepts, and the verifier rule that a
//! scheduled module holds every computing node in exactly one accepted group.
//!
//! After `schedule-hybrid`, a function's top level holds only data nodes (`input`, `weight`,
//! `constant`: no launch) and `fusion` nodes; each fusion is one kernel launch, so launch counts
//! are counts of fusion nodes. Weights and constants may also appear inside bodies (a kernel
//! reads them directly).

use lathe_ir::ops::KernelStrategy;
use lathe_ir::verify::{Location, VerifyError};
use lathe_ir::{Dim, Graph, Module, Op, TensorType};

/// Ops that produce no launch: arguments and data.
pub fn is_data(op: &Op) -> bool {
    matches!(op, Op::Input(_) | Op::Weight(_) | Op::Constant(_))
}

/// Index-only ops: free inside any kernel (address arithmetic).
pub fn is_movement(op: &Op) -> bool {
    matches!(op, Op::Reshape(_) | Op::Transpose(_) | Op::Slice(_) | Op::Split(_) | Op::Concat(_) | Op::Broadcast(_))
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
fn is_row_op(op: &Op) -> bool {
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

/// The nodes of `g` whose values depend only on weights and constants (no input): compile-time
/// values, such as an fp8 weight and its scale, which the artifact writer evaluates once.
pub fn compile_time_nodes(g: &Graph) -> std::collections::HashSet<lathe_ir::NodeId> {
    let mut set = std::collections::HashSet::new();
    for &n in &g.order {
        let node = &g.nodes[n];
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

/// Checks that `strategy` accepts the body of a group.
pub fn accepts(m: &Module, strategy: KernelStrategy, body: &Graph) -> Result<(), String> {
    // Values computed from weights and constants alone (an fp8 weight and its scale) are
    // evaluated once by the artifact writer, so any kernel may hold them.
    let compile_time = compile_time_nodes(body);
    let ops: Vec<&Op> = body
        .order
        .iter()
        .filter(|n| !compile_time.contains(n) || is_data(&body.nodes[**n].op))
        .map(|&n| &body.nodes[n].op)
        .collect();
    let count = |f: &dyn Fn(&Op) -> bool| ops.iter().filter(|o| f(o)).count();
    let only = |allowed: &dyn Fn(&Op) -> bool| -> Result<(), String> {
        match ops.iter().find(|o| !is_light(o) && !allowed(o)) {
            Some(o) => Err(format!("`{}` cannot be part of a {} kernel", o.name(), strategy.name())),
            None => Ok(()),
        }
    };
    let exactly_one = |name: &str, f: &dyn Fn(&Op) -> bool| -> Result<(), String> {
        match count(f) {
            1 => Ok(()),
            n => Err(format!("a {} kernel holds exactly one `{name}`, found {n}", strategy.name())),
        }
    };
    let first = |f: &dyn Fn(&Op) -> bool| body.order.iter().map(|&n| &body.nodes[n]).find(|n| f(&n.op));
    if body.order.iter().all(|&n| is_data(&body.nodes[n].op)) {
        return Err("a group must compute something".into());
    }
    match strategy {
        KernelStrategy::Elementwise => only(&|_| false),
        KernelStrategy::RowReduce => {
            only(&is_row_op)?;
            if !ops.iter().any(|o| is_row_op(o)) {
                Err("a row_reduce kernel needs a reduction or norm".into())
            } else {
                Ok(())
            }
        }
        KernelStrategy::Conv1dCausal => {
            only(&|o| matches!(o, Op::Conv1dCausal))?;
            exactly_one("conv1d.causal", &|o| matches!(o, Op::Conv1dCausal))
        }
        KernelStrategy::SsdChunkScan => {
            only(&|o| matches!(o, Op::ScanSsd(_) | Op::RmsNorm(_)))?;
            exactly_one("scan.ssd", &|o| matches!(o, Op::ScanSsd(_)))
        }
        KernelStrategy::SsdDecodeStep => {
            only(&|o| matches!(o, Op::ScanSsd(_) | Op::RmsNorm(_) | Op::Conv1dCausal))?;
            exactly_one("scan.ssd", &|o| matches!(o, Op::ScanSsd(_)))?;
            let scan = first(&|o| matches!(o, Op::ScanSsd(_))).ok_or("no scan")?;
            if body.values.get(scan.args[0]).is_some_and(|v| single_step(&v.ty)) {
                Ok(())
            } else {
                Err("an ssd_decode_step kernel scans exactly one step (S = 1)".into())
            }
        }
        KernelStrategy::SsdChunkState | KernelStrategy::SsdStatePass => Err(format!(
            "no op lowers to {} yet: `scan.ssd` is one op, scheduled as ssd_chunk_scan or ssd_decode_step",
            strategy.name()
        )),
        KernelStrategy::AttentionPrefill | KernelStrategy::AttentionDecode => {
            only(&|o| matches!(o, Op::Attention(_)))?;
            exactly_one("attention", &|o| matches!(o, Op::Attention(_)))?;
            let att = first(&|o| matches!(o, Op::Attention(_))).ok_or("no attention")?;
            let decode = body.values.get(att.args[0]).is_some_and(|v| single_step(&v.ty));
            match (strategy, decode) {
                (KernelStrategy::AttentionDecode, false) => Err("attention_decode takes one query per sequence".into()),
                _ => Ok(()),
            }
        }
        KernelStrategy::Gemm | KernelStrategy::Gemv => {
            only(&|o| {
                matches!(
                    o,
                    Op::Matmul(_)
                        | Op::ScaledMatmul(_)
                        | Op::RmsNorm(_)
                        | Op::Quantize(_)
                        | Op::Dequantize(_)
                        | Op::Amax
                )
            })?;
            exactly_one("matmul", &|o| matches!(o, Op::Matmul(_) | Op::ScaledMatmul(_)))?;
            let mm = first(&|o| matches!(o, Op::Matmul(_) | Op::ScaledMatmul(_))).ok_or("no matmul")?;
            let gemv = body.values.get(mm.args[0]).is_some_and(|v| is_gemv(m, &v.ty));
            match (strategy, gemv) {
                (KernelStrategy::Gemv, false) => Err(format!("gemv takes at most {GEMV_MAX_ROWS} rows")),
                _ => Ok(()),
            }
        }
        KernelStrategy::Gather => {
            only(&|o| matches!(o, Op::Gather))?;
            exactly_one("gather", &|o| matches!(o, Op::Gather))
        }
        KernelStrategy::Sample => {
            only(&|o| matches!(o, Op::Sample(_) | Op::RmsNorm(_) | Op::Softmax(_)))?;
            exactly_one("sample", &|o| matches!(o, Op::Sample(_)))
        }
        KernelStrategy::ScatterCache => only(&|o| matches!(o, Op::ScatterCache)),
    }
}

/// The strategy of a group holding `op` alone (with light ops around it).
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
        // Everything else is pointwise or movement; conv2d.patch and pixel_shuffle run as an
        // elementwise-indexed kernel until the vision encoder brings their own templates.
        _ => KernelStrategy::Elementwise,
    }
}

/// The scheduling rule: every non-data node of every function sits in a fusion group whose
/// strategy accepts its body. Returns every violation, located at its node.
pub fn verify_schedule(m: &Module) -> Result<(), Vec<VerifyError>> {
    let mut errs = Vec::new();
    for (fi, f) in m.functions.iter().enumerate() {
        let loc = Location { func: Some(fi), func_name: f.name.clone(), ..Location::default() };
        let g = &f.graph;
        for &n in &g.order {
            match &g.nodes[n].op {
                op if is_data(op) => {}
                Op::Fusion(fu) => {
                    if let Err(e) = accepts(m, fu.strategy, &fu.body) {
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

/// Launches of a scheduled function (its fusion groups).
pub fn launches(g: &Graph) -> usize {
    g.order.iter().filter(|&&n| matches!(g.nodes[n].op, Op::Fusion(_))).count()
}
