//! `lathe inspect MODEL --kernels`: one row per distinct kernel the templates make of the
//! scheduled program — strategy, grid, block, shared bytes, registers and spill bytes (ptxas,
//! for `--target`), FLOPs, bytes and roofline time (the cost model at `--context` on `--gpu`),
//! and for the decode program's kernels their sector efficiency (the simulator's counters on
//! [`SAMPLED_CTAS`] sampled CTAs, operands zero but for integers at the context's last
//! position, weights zero: the addresses, not the values, decide sectors); the groups no
//! template takes yet, counted by strategy and reason. `--kernel NAME` prints one kernel's IR
//! and PTX.

use std::collections::BTreeMap;

use lathe_codegen::templates::elementwise::Binding;
use lathe_codegen::{ptx, ptxas, simrun};
use lathe_interp::tensor::Tensor;
use lathe_ir::{Dim, FunctionKind, Module, Op};
use lathe_kernel::target::{Sm, Target};
use lathe_passes::cost::{node_cost, Gpu};
use lathe_passes::step::Step;
use serde_json::{json, Value};

use crate::error::CliError;

/// One distinct kernel.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its name (the first group it was made for: program, strategy, group index).
    pub name: String,
    /// The strategy.
    pub strategy: &'static str,
    /// How many groups of the program use it.
    pub groups: usize,
    /// Grid and block at the program's step for the context.
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Shared memory bytes (the kernel's; launched as dynamic shared memory).
    pub shared: u32,
    /// ptxas' report.
    pub report: ptxas::Report,
    /// The cost model's FLOPs, bytes and roofline microseconds for the first group.
    pub flops: f64,
    pub bytes: f64,
    pub roofline_us: f64,
    /// The kernel IR and the PTX.
    pub kernel: String,
    pub ptx: String,
    /// Decode kernels: the fraction of the sectors its global requests touched that held
    /// requested bytes, over all parameters and over the weights alone (no weight: `None`).
    pub sectors: Option<(f64, Option<f64>)>,
}

/// CTAs the sector measurement runs of each decode kernel (the first, the last and others).
pub const SAMPLED_CTAS: usize = 6;

/// The simulator's sector efficiency of group `node` (a fusion of `m`) with its kernel `c`:
/// operands of the shapes `dim` gives, zeros, integers at `int` (a position, a length).
fn sector_efficiency(
    m: &Module,
    g: &lathe_ir::Graph,
    node: &lathe_ir::Node,
    c: &simrun::Compiled,
    dim: &dyn Fn(&Dim) -> u64,
    int: i64,
) -> Option<(f64, Option<f64>)> {
    let Op::Fusion(group) = &node.op else { return None };
    let args: Vec<Tensor> = node
        .args
        .iter()
        .map(|&a| {
            let ty = &g.values[a].ty;
            let shape: Vec<usize> = ty.shape.iter().map(|d| dim(d) as usize).collect();
            let n = shape.iter().product();
            if ty.dtype.is_int() {
                Tensor::from_i64(ty.dtype, shape, vec![int; n])
            } else {
                Tensor::from_f32(ty.dtype, shape, vec![0.0; n])
            }
        })
        .collect();
    let refs: Vec<&Tensor> = args.iter().collect();
    let counters = simrun::sampled_counters(m, group, &refs, SAMPLED_CTAS, 0).ok()?;
    let frac = |n: u64, x: u64| if n == 0 { 1.0 } else { (n - x) as f64 / n as f64 };
    let (mut wn, mut wx) = (0, 0);
    for (b, &(n, x)) in c.bindings().iter().zip(&counters.sectors_by_param) {
        if matches!(b, Binding::Weight(_)) {
            wn += n;
            wx += x;
        }
    }
    let weights = c.bindings().iter().any(|b| matches!(b, Binding::Weight(_)));
    Some((frac(counters.global_sectors, counters.global_excess_sectors), weights.then(|| frac(wn, wx))))
}

/// The target of `--target`.
pub fn target(name: &str) -> Result<Target, CliError> {
    Sm::from_name(name).map(Target::new).ok_or_else(|| {
        let names: Vec<&str> = Sm::ALL.iter().map(|s| s.name()).collect();
        CliError::input(format!("--target {name}: unknown (known: {})", names.join(", ")))
    })
}

/// The distinct kernels of `m` (scheduled), and the groups no template takes, by reason.
pub fn collect(
    m: &Module,
    context: u64,
    gpu: &Gpu,
    target: Target,
) -> Result<(Vec<Row>, BTreeMap<String, usize>), CliError> {
    let mut rows: Vec<Row> = Vec::new();
    let mut by_text: BTreeMap<String, usize> = BTreeMap::new();
    let mut pending: BTreeMap<String, usize> = BTreeMap::new();
    for f in &m.functions {
        let b = Step::at_context(m, f, context).bindings(m, f);
        let dim = |d: &Dim| match d {
            Dim::Const(c) => *c,
            Dim::Sym(s) => b.symbols.get(s).copied().unwrap_or(1),
        };
        let mut index = 0;
        for &n in &f.graph.order {
            let node = &f.graph.nodes[n];
            let Op::Fusion(group) = &node.op else { continue };
            let strategy = group.strategy.name();
            let name = format!("{}_{}{}", f.name, strategy, index);
            index += 1;
            let c = match simrun::compile_group(m, group, &name) {
                Ok(c) => c,
                Err(why) => {
                    *pending.entry(format!("{strategy}: {why}")).or_default() += 1;
                    continue;
                }
            };
            // Kernels that differ only in their name are one kernel.
            let mut unnamed = c.kernel().clone();
            unnamed.name = "k".into();
            let text = lathe_kernel::text::print(&unnamed);
            if let Some(&i) = by_text.get(&text) {
                rows[i].groups += 1;
                continue;
            }
            let p = ptx::compile(c.kernel(), target).map_err(|e| CliError::internal(e.to_string()))?;
            let cubin = ptxas::assemble(&p.text, &name, target.sm).map_err(|e| CliError::input(e.to_string()))?;
            let launch = c.launch(&dim);
            let cost = node_cost(m, &f.graph, node, &b, gpu);
            // Integers at the context's last position (a cache length, a position); where
            // that is out of some operand's range (a token id past a small vocabulary), zero.
            let sectors = (f.kind == FunctionKind::Decode)
                .then(|| {
                    let last = context.saturating_sub(1) as i64;
                    sector_efficiency(m, &f.graph, node, &c, &dim, last)
                        .or_else(|| sector_efficiency(m, &f.graph, node, &c, &dim, 0))
                })
                .flatten();
            by_text.insert(text, rows.len());
            rows.push(Row {
                name,
                strategy,
                groups: 1,
                grid: launch.grid,
                block: launch.block,
                shared: c.kernel().shared_bytes,
                report: cubin.report,
                flops: cost.flops,
                bytes: cost.bytes,
                roofline_us: cost.seconds * 1e6,
                kernel: lathe_kernel::text::print(c.kernel()),
                ptx: p.text,
                sectors,
            });
        }
    }
    Ok((rows, pending))
}

/// The table as text.
pub fn text(rows: &[Row], pending: &BTreeMap<String, usize>, target: Target, context: u64, gpu: &Gpu) -> String {
    let mut out = format!(
        "{} distinct kernels for {} (context {context}, cost model {}; sectors: useful share of the sectors touched, \
         simulated on {SAMPLED_CTAS} CTAs of each decode kernel, all / weights):\n{:<40} {:<14} {:>6} {:>10} {:>6} {:>7} {:>5} {:>6} {:>12} {:>12} {:>10} {:>13}\n",
        rows.len(),
        target.sm.name(),
        gpu.name,
        "kernel",
        "strategy",
        "groups",
        "grid",
        "block",
        "shared",
        "regs",
        "spill",
        "FLOPs",
        "bytes",
        "roofline µs",
        "sectors %"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<40} {:<14} {:>6} {:>10} {:>6} {:>7} {:>5} {:>6} {:>12.3e} {:>12.3e} {:>10.3} {:>13}\n",
            r.name,
            r.strategy,
            r.groups,
            r.grid[0],
            r.block[0],
            r.shared,
            r.report.registers,
            r.report.spill_stores + r.report.spill_loads,
            r.flops,
            r.bytes,
            r.roofline_us,
            match r.sectors {
                None => "—".to_string(),
                Some((all, None)) => format!("{:.1}", 100.0 * all),
                Some((all, Some(w))) => format!("{:.1} / {:.1}", 100.0 * all, 100.0 * w),
            }
        ));
    }
    let waiting: usize = pending.values().sum();
    out.push_str(&format!("{waiting} groups have no template yet:\n"));
    for (why, n) in pending {
        out.push_str(&format!("{n:>6}  {why}\n"));
    }
    out
}

/// The table as JSON.
pub fn json(rows: &[Row], pending: &BTreeMap<String, usize>, target: Target) -> Value {
    json!({
        "target": target.sm.name(),
        "kernels": rows.iter().map(|r| json!({
            "name": r.name,
            "strategy": r.strategy,
            "groups": r.groups,
            "grid": r.grid,
            "block": r.block,
            "shared_bytes": r.shared,
            "registers": r.report.registers,
            "spill_bytes": r.report.spill_stores + r.report.spill_loads,
            "stack_bytes": r.report.stack,
            "flops": r.flops,
            "bytes": r.bytes,
            "roofline_us": r.roofline_us,
            "sector_efficiency": r.sectors.map(|s| s.0),
            "weight_sector_efficiency": r.sectors.and_then(|s| s.1),
        })).collect::<Vec<_>>(),
        "pending": pending,
    })
}
