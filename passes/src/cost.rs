//! The cost model: FLOPs and minimum HBM bytes of every launch, and the roofline time they
//! imply on a named GPU (DESIGN §11).
//!
//! A launch is a fusion group (or, before scheduling, one computing op). Its FLOPs are the sum
//! of its ops' arithmetic; its bytes are what it must move at least once: operands read, results
//! written, weights read — with two exceptions that follow the kernels: `attention` reads only
//! the `kv_len` valid rows of its caches, and `scatter_cache` writes only the new rows (the cache
//! is updated in place). Each launch is bound by whichever of compute and bandwidth takes longer;
//! a program's roofline is the sum over its launches. Shapes are evaluated at a [`Step`]: the
//! function's `batch` and `seq` symbols take the step's values, any other symbol its bound.

use std::collections::HashMap;

use lathe_ir::ops::MaskKind;
use lathe_ir::{Dim, Function, FunctionKind, Graph, InputRole, Module, Op, SymbolId, TensorType, ValueId};

pub use crate::step::Step;
use crate::strategy::is_data;

/// A GPU of the roofline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gpu {
    /// Name used on the command line.
    pub name: &'static str,
    /// HBM bandwidth, bytes/s.
    pub bandwidth: f64,
    /// Dense bf16 tensor-core rate, FLOP/s.
    pub bf16_flops: f64,
    /// Where the numbers come from.
    pub source: &'static str,
}

/// H100 SXM as measured (DESIGN §11): ~3.0 TB/s copy bandwidth, ~800 TFLOP/s bf16 GEMM.
pub const H100_SXM: Gpu = Gpu { name: "h100-sxm", bandwidth: 3.0e12, bf16_flops: 800e12, source: "measured" };
/// H200 from its datasheet (4.8 TB/s, 989 TFLOP/s dense bf16), derated by the H100's measured
/// fractions (0.9 of bandwidth, 0.8 of compute) until measured here.
pub const H200: Gpu =
    Gpu { name: "h200", bandwidth: 4.8e12 * 0.9, bf16_flops: 989e12 * 0.8, source: "datasheet, derated" };
/// Every GPU the cost model knows.
pub const GPUS: [Gpu; 2] = [H100_SXM, H200];

/// FLOPs and bytes of a launch or a program.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// Floating-point operations.
    pub flops: f64,
    /// Minimum HBM traffic in bytes.
    pub bytes: f64,
    /// Roofline time in seconds (per launch: the larger of the compute and the memory time).
    pub seconds: f64,
    /// Launches.
    pub launches: usize,
}

/// Concrete sizes under symbol bindings.
#[derive(Debug, Clone)]
pub struct Bindings {
    /// Symbol values.
    pub symbols: HashMap<SymbolId, u64>,
    /// Valid kv rows an attention reads (the context).
    pub kv_len: u64,
}

impl Bindings {
    /// The value of one dim.
    fn dim(&self, d: Dim) -> f64 {
        match d {
            Dim::Const(c) => c as f64,
            Dim::Sym(s) => self.symbols.get(&s).copied().unwrap_or(0) as f64,
        }
    }

    fn dims(&self, t: &TensorType) -> Vec<f64> {
        t.shape.iter().map(|&d| self.dim(d)).collect()
    }
    fn numel(&self, t: &TensorType) -> f64 {
        self.dims(t).iter().product()
    }
    fn bytes(&self, t: &TensorType) -> f64 {
        self.numel(t) * t.dtype.size_bytes() as f64
    }
}

/// FLOPs of one op whose operand and result types are given.
fn op_flops(b: &Bindings, op: &Op, args: &[&TensorType], results: &[&TensorType]) -> f64 {
    let out = results.first().map_or(0.0, |t| b.numel(t));
    match op {
        Op::Matmul(mm) | Op::ScaledMatmul(mm) => {
            let a = b.dims(args[0]);
            let k = if mm.transpose_a { a[a.len() - 2] } else { a[a.len() - 1] };
            2.0 * out * k
        }
        Op::Attention(at) => {
            // QKᵀ and PV over the attended (query, key) pairs: 2·B·Hq·(D + Dv) per pair. Causal
            // query i of S, with T valid keys, sees T − S + i + 1 of them: S·T − S(S−1)/2 pairs
            // (a first chunk, T = S, about half the square; a later chunk at offset T − S more).
            // T is the context bound to the cache's capacity; a causal call needs T ≥ S (priced as a
            // first chunk when the binding says less).
            let (q, k, v) = (b.dims(args[0]), b.dims(args[1]), b.dims(args[2]));
            let (s, t) = (q[1], (b.kv_len as f64).min(k[1]));
            let pairs = if at.mask == MaskKind::Causal {
                let t = t.max(s);
                s * t - s * (s - 1.0) / 2.0
            } else {
                s * t
            };
            2.0 * q[0] * q[2] * (q[3] + v[3]) * pairs
        }
        // Per step and state element: decay, outer-product update and the output dot.
        Op::ScanSsd(_) => 6.0 * b.numel(args[0]) * b.dims(args[3])[3],
        Op::Conv1dCausal => 2.0 * out * b.dims(args[1])[1],
        Op::Conv2dPatch(c) => 2.0 * out * b.dims(args[0])[1] * (c.patch * c.patch) as f64,
        Op::RmsNorm(_) | Op::LayerNorm(_) | Op::Softmax(_) => 5.0 * out,
        Op::Reduce(_) | Op::Amax => args.first().map_or(0.0, |t| b.numel(t)),
        op if is_data(op) || matches!(op, Op::Reshape(_) | Op::Broadcast(_)) => 0.0,
        _ => out,
    }
}

/// FLOPs of a graph (fusion bodies included).
fn graph_flops(b: &Bindings, g: &Graph) -> f64 {
    g.order
        .iter()
        .map(|&n| {
            let node = &g.nodes[n];
            if let Op::Fusion(f) = &node.op {
                return graph_flops(b, &f.body);
            }
            let args: Vec<&TensorType> = node.args.iter().map(|&a| &g.values[a].ty).collect();
            let res: Vec<&TensorType> = node.results.iter().map(|&r| &g.values[r].ty).collect();
            op_flops(b, &node.op, &args, &res)
        })
        .sum()
}

/// Bytes a launch of `node` moves (see the module doc for the two exceptions).
fn launch_bytes(b: &Bindings, g: &Graph, node: &lathe_ir::Node) -> f64 {
    let (body, args, results): (Option<&Graph>, Vec<ValueId>, Vec<ValueId>) = match &node.op {
        Op::Fusion(f) => (Some(&f.body), node.args.clone(), node.results.clone()),
        _ => (None, node.args.clone(), node.results.clone()),
    };
    // Which operands are attended caches, and which results are scatter updates.
    let (cache_reads, in_place, scatters) = match body {
        Some(body) => {
            let inputs: Vec<ValueId> = body.inputs().map(|(_, v)| v).collect();
            let mut reads = Vec::new();
            let mut in_place = Vec::new();
            let mut scatter_rows = HashMap::new();
            for &n in &body.order {
                let inner = &body.nodes[n];
                match inner.op {
                    Op::Attention(_) => reads.extend(inner.args[1..3].iter().copied()),
                    Op::ScatterCache => {
                        scatter_rows.insert(inner.results[0], inner.args[1]);
                        in_place.push(inner.args[0]);
                    }
                    _ => {}
                }
            }
            // Map body values back to the launch's operands and results.
            let outer_reads: Vec<usize> =
                inputs.iter().enumerate().filter(|(_, v)| reads.contains(v)).map(|(i, _)| i).collect();
            let outer_in_place: Vec<usize> =
                inputs.iter().enumerate().filter(|(_, v)| in_place.contains(v)).map(|(i, _)| i).collect();
            let outer_scatter: HashMap<usize, f64> = body
                .outputs
                .iter()
                .enumerate()
                .filter_map(|(i, o)| scatter_rows.get(&o.value).map(|new| (i, b.bytes(&body.values[*new].ty))))
                .collect();
            (outer_reads, outer_in_place, outer_scatter)
        }
        None => match node.op {
            Op::Attention(_) => (vec![1, 2], Vec::new(), HashMap::new()),
            Op::ScatterCache => (Vec::new(), vec![0], HashMap::from([(0, b.bytes(&g.values[node.args[1]].ty))])),
            _ => (Vec::new(), Vec::new(), HashMap::new()),
        },
    };
    let mut bytes = 0.0;
    for (i, &a) in args.iter().enumerate() {
        let t = &g.values[a].ty;
        if cache_reads.contains(&i) {
            let d = b.dims(t);
            bytes += d[0] * (b.kv_len as f64).min(d[1]) * d[2..].iter().product::<f64>() * t.dtype.size_bytes() as f64;
        } else if in_place.contains(&i) {
            // The cache operand of a scatter is updated in place, not read.
        } else {
            bytes += b.bytes(t);
        }
    }
    for (i, &r) in results.iter().enumerate() {
        bytes += scatters.get(&i).copied().unwrap_or_else(|| b.bytes(&g.values[r].ty));
    }
    if let Some(body) = body {
        // Weights read inside the kernel; an embedding table only for the gathered rows.
        for &n in &body.order {
            if let Op::Weight(_) = body.nodes[n].op {
                let w = body.nodes[n].results[0];
                let gathered: Option<f64> = body.order.iter().find_map(|&u| {
                    let user = &body.nodes[u];
                    (matches!(user.op, Op::Gather) && user.args[0] == w)
                        .then(|| b.bytes(&body.values[user.results[0]].ty))
                });
                bytes += gathered.unwrap_or_else(|| b.bytes(&body.values[w].ty));
            }
        }
    } else if matches!(node.op, Op::Gather) {
        // The table operand was counted whole above; a gather reads only its rows.
        bytes -= b.bytes(&g.values[args[0]].ty) - b.bytes(&g.values[results[0]].ty);
    }
    bytes
}

/// The cost of one function: every launch (fusion groups, or each computing op when the
/// function is not scheduled) on `gpu` under `b`.
pub fn function_cost(m: &Module, f: &Function, b: &Bindings, gpu: &Gpu) -> Cost {
    let g = &f.graph;
    let mut total = Cost::default();
    for &n in &g.order {
        let node = &g.nodes[n];
        if is_data(&node.op) {
            continue;
        }
        let c = node_cost(m, g, node, b, gpu);
        total.flops += c.flops;
        total.bytes += c.bytes;
        total.seconds += c.seconds;
        total.launches += c.launches;
    }
    total
}

/// The cost of one computing node of `g` (a group, or a loose op): its FLOPs, its bytes (with
/// its scratch), its roofline time and its launches.
pub fn node_cost(m: &Module, g: &Graph, node: &lathe_ir::Node, b: &Bindings, gpu: &Gpu) -> Cost {
    {
        let flops = match &node.op {
            Op::Fusion(f) => graph_flops(b, &f.body),
            _ => {
                let args: Vec<&TensorType> = node.args.iter().map(|&a| &g.values[a].ty).collect();
                let res: Vec<&TensorType> = node.results.iter().map(|&r| &g.values[r].ty).collect();
                op_flops(b, &node.op, &args, &res)
            }
        };
        // The group's launches and scratch, from the one launch rule; a group no strategy accepts
        // (an unverified schedule) counts as one launch without scratch.
        let group = match &node.op {
            Op::Fusion(fu) => {
                crate::strategy::classify(m, fu).ok().map(|spec| crate::launch::group_launches(m, &fu.body, spec))
            }
            _ => None,
        };
        // Scratch is written once and read once.
        let scratch: f64 = group
            .as_ref()
            .map(|x| {
                x.scratch.iter().map(|s| 2.0 * s.bytes(&|d| b.dim(d) as u64).map_or(f64::INFINITY, |v| v as f64)).sum()
            })
            .unwrap_or(0.0);
        let bytes = launch_bytes(b, g, node) + scratch;
        Cost {
            flops,
            bytes,
            seconds: (flops / gpu.bf16_flops).max(bytes / gpu.bandwidth),
            launches: group.map_or(1, |x| x.launches.len()),
        }
    }
}

/// Bytes of the caches one sequence holds at `context` tokens: the cache inputs (by role) of the
/// `decode` program, with the KV capacity set to `context` (conv and SSM states do not grow);
/// `None` when the count does not fit in `u64`.
pub fn cache_bytes(m: &Module, context: u64) -> Option<u64> {
    let Some(f) = m.function_of_kind(FunctionKind::Decode) else { return Some(0) };
    f.graph.params().filter_map(|(i, _)| Some((i, i.role.and_then(InputRole::cache)?.1))).try_fold(
        0u64,
        |total, (i, kind)| {
            let elements = i.ty.shape.iter().enumerate().try_fold(1u64, |acc, (axis, d)| {
                acc.checked_mul(match (axis, d) {
                    (0, _) => 1,
                    (1, _) if kind.grows_with_context() => context,
                    (_, Dim::Const(c)) => *c,
                    (_, Dim::Sym(_)) => 1,
                })
            })?;
            total.checked_add(elements.checked_mul(i.ty.dtype.size_bytes() as u64)?)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One attention op, q `[1, S, 2, 4]`, k/v `[1, 16, 1, 4]`, priced at S = 4 with `kv_len` valid
    /// keys.
    fn attention_flops(mask: &str, kv_len: u64) -> f64 {
        let src = format!(
            r#"module @a {{
  compute_dtype = f32
  symbol S <= 16
  func @f {{
    %0 = input "q" : f32[1, S, 2, 4]
    %1 = input "k" : f32[1, 16, 1, 4]
    %2 = input "v" : f32[1, 16, 1, 4]
    %3 = input "len" : i64[1]
    %4 = attention %0, %1, %2, %3 {{mask={mask}, scale=0.5}} : f32[1, S, 2, 4]
    return %4
  }}
}}"#
        );
        let m = lathe_ir::text::parse::parse_module(&src).expect("parses");
        let symbols = m.symbols.iter().map(|(h, _)| (h, 4)).collect();
        function_cost(&m, &m.functions[0], &Bindings { symbols, kv_len }, &H100_SXM).flops
    }

    #[test]
    fn attention_counts_the_pairs_each_mask_attends() {
        // Per (query, key) pair and head: 2·D for QKᵀ and 2·Dv for PV = 16 FLOPs; 2 heads.
        // Causal queries 0..4 at offset 6 see 7, 8, 9, 10 keys: 34 pairs (not half of 40).
        assert_eq!(attention_flops("causal", 10), 34.0 * 16.0 * 2.0);
        assert_eq!(attention_flops("bidirectional", 10), 40.0 * 16.0 * 2.0);
        // A context beyond the cache is clamped to its 16 rows; fewer keys than queries is fine
        // for cross attention (4 · 2 pairs) and priced as a first chunk for causal (10 pairs).
        assert_eq!(attention_flops("bidirectional", 20), 64.0 * 16.0 * 2.0);
        assert_eq!(attention_flops("cross", 2), 8.0 * 16.0 * 2.0);
        assert_eq!(attention_flops("causal", 2), 10.0 * 16.0 * 2.0);
    }
}
