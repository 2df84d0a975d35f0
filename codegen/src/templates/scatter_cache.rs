//! The `scatter_cache` template: write the new rows of K/V caches in place.
//!
//! **What one CTA computes**: 256 consecutive elements of the new rows `new[B, S, …]` (one
//! thread each), each stored into its cache at row `past[b] + s`; the caches are updated in
//! place (each result's memory is its cache operand's), so nothing else of a cache is touched.
//! Pointwise prologues on the new rows (a cast) are computed on the way. **Memory traffic**: the
//! new rows read once and written once; `past` read per element (from cache). **Cost model**:
//! `bytes = 2 · new rows`. A row at or past the cache's capacity is an out-of-bounds store the
//! simulator reports (the runtime checks positions before a launch).

use std::collections::HashMap;

use lathe_ir::ops::Fusion;
use lathe_ir::{Module, Op, ValueId};
use lathe_kernel::build::KernelBuilder;
use lathe_kernel::ir::{Access as BufferAccess, Axis, BinOp, Cmp, Operand, Space, Special, Ty};

use super::elementwise::{bind_symbols, delinearize, dim_operand, storage, Binding, Compiled, Emit, BLOCK};
use super::pointwise::Value;
use super::{unsupported, TemplateError};
use crate::group::index::{Expr, Ranges};

/// Compiles scatter-cache group `f` of module `m` as kernel `name`.
// The builder's block closures return nothing: an immediately called closure inside the guard
// collects its error with `?`.
#[allow(clippy::redundant_closure_call)]
pub fn compile(m: &Module, f: &Fusion, name: &str) -> Result<Compiled, TemplateError> {
    let g = &f.body;
    // (cache operand value, new, past, result) of each scatter.
    let scatters: Vec<(ValueId, ValueId, ValueId, ValueId)> = g
        .order
        .iter()
        .filter(|&&n| matches!(g.nodes[n].op, Op::ScatterCache))
        .map(|&n| {
            let nd = &g.nodes[n];
            (nd.args[0], nd.args[1], nd.args[2], nd.results[0])
        })
        .collect();
    let Some(&(_, first_new, _, _)) = scatters.first() else {
        return Err(unsupported("a scatter_cache group without a scatter_cache"));
    };
    let shape = g.values[first_new].ty.shape.clone();
    if scatters.iter().any(|&(_, n, _, _)| g.values[n].ty.shape != shape) {
        return Err(unsupported("scatters of differently shaped new rows in one group"));
    }
    if g.outputs.iter().any(|o| !scatters.iter().any(|s| s.3 == o.value)) {
        return Err(unsupported("a scatter_cache group with a result that is not a cache"));
    }
    // Operands: every input but the caches (their memory is the results').
    let inputs: Vec<ValueId> =
        g.order.iter().filter(|&&n| matches!(g.nodes[n].op, Op::Input(_))).map(|&n| g.nodes[n].results[0]).collect();
    let is_cache = |v: ValueId| scatters.iter().any(|s| s.0 == v);
    let mut b = KernelBuilder::new(name, BLOCK);
    let mut bindings = Vec::new();
    let mut bases = HashMap::new();
    for (k, &v) in inputs.iter().enumerate() {
        if is_cache(v) {
            continue;
        }
        let dtype = g.values[v].ty.dtype;
        storage(dtype)?;
        bases.insert(v, b.buffer(&format!("in{k}"), dtype, BufferAccess::ReadOnly));
        bindings.push(Binding::Operand(k));
    }
    let mut outs = Vec::new();
    for (k, o) in g.outputs.iter().enumerate() {
        let &(cache, new, past, _) = scatters.iter().find(|s| s.3 == o.value).ok_or_else(|| unsupported("a result"))?;
        let operand =
            inputs.iter().position(|&v| v == cache).ok_or_else(|| unsupported("a cache that is not an operand"))?;
        let dtype = g.values[o.value].ty.dtype;
        storage(dtype)?;
        outs.push((b.buffer(&format!("cache{k}"), dtype, BufferAccess::Written), dtype, cache, new, past));
        bindings.push(Binding::ResultInPlace { result: k, operand });
    }
    let syms = bind_symbols(m, g, &mut b, &mut bindings);
    super::wait_for_inputs(&mut b);
    super::release_dependents(&mut b);
    let tid = b.special(Special::Tid(Axis::X));
    let cta = b.special(Special::Ctaid(Axis::X));
    let t32 = b.fma(Ty::U32, cta, Operand::Imm(u64::from(BLOCK)), tid);
    let t = b.cvt(Ty::U64, Ty::U32, None, false, t32);
    let mut n = Operand::Imm(1);
    for d in &shape {
        n = Operand::Reg(b.bin(BinOp::Mul, Ty::U64, n, dim_operand(d, &syms)));
    }
    let inside = b.setp(Cmp::Lt, Ty::U64, t, n);
    let ranges = Ranges::of(m, &shape);
    let mut e = Emit { g, ranges, b, vars: Vec::new(), syms, bases, memo: HashMap::new() };
    e.if_then(inside, |e| {
        let vars = delinearize(&mut e.b, Operand::Reg(t), &shape, &e.syms);
        e.vars = vars.clone();
        let idx: Vec<Expr> = (0..shape.len()).map(Expr::Var).collect();
        for &(buf, dtype, cache, new, past) in &outs {
            let v = e.value_at(new, idx.clone())?;
            let Value::I64(p) = e.value_at(past, vec![Expr::Var(0)])? else {
                return Err(unsupported("float positions"));
            };
            let p = e.b.cvt(Ty::U64, Ty::S64, None, false, p);
            let row = e.b.bin(BinOp::Add, Ty::U64, p, vars[1]);
            // The element's offset in the cache: [b, row, rest…] over the cache's shape.
            let cshape = g.values[cache].ty.shape.clone();
            let mut off = Operand::Reg(vars[0]);
            for (k, d) in cshape.iter().enumerate().skip(1) {
                let dd = dim_operand(d, &e.syms);
                let at = if k == 1 { row } else { vars[k] };
                off = Operand::Reg(e.b.fma(Ty::U64, off, dd, at));
            }
            let bytes = Operand::Imm(dtype.size_bytes() as u64);
            let off = e.b.bin(BinOp::Mul, Ty::U64, off, bytes);
            let addr = e.b.bin(BinOp::Add, Ty::U64, buf, off);
            let (ty, st) = e.stored(v, dtype)?;
            e.b.st(Space::Global, ty, addr, 0, &[st.into()]);
        }
        Ok(())
    })?;
    Ok(Compiled { kernel: e.b.finish(), bindings, elements: vec![shape] })
}
