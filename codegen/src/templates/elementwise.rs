//! The `elementwise` template: a fusion group of pointwise ops (with broadcasting) and movement
//! ops over one iteration space.
//!
//! **What one CTA computes**: 256 consecutive elements of the results (one thread each, in the
//! results' row-major order), so loads and stores of contiguous operands coalesce. **Tiling**:
//! none; the grid is `⌈N / 256⌉` CTAs for `N` elements. **Memory traffic**: each result element
//! written once; each operand element read once per result element that reaches it (a broadcast
//! operand is re-read, from cache). **Cost model**: `bytes = Σ results · size + Σ operands
//! reached · size`, no FLOPs worth counting against bandwidth.
//!
//! Each thread turns its linear index into a multi-index over the results' shape and computes
//! each result element by evaluating the body backwards from it: a pointwise op computes its
//! operands at the same index (moved to their own shapes by numpy broadcasting), a movement op
//! is index arithmetic (`group::index::trace`), and an operand of the group (an `input` node or a
//! weight) is a load, widened to f32. Every (value, index) is computed once per thread. A
//! `concat` reads every piece at its index clamped into the piece and selects the right one, so
//! the kernel has no branches but the bounds guard.

use std::collections::HashMap;

use lathe_ir::ops::Fusion;
use lathe_ir::{DType, Dim, Graph, Module, Op, SymbolId, ValueId};
use lathe_kernel::build::KernelBuilder;
use lathe_kernel::ir::{Access as BufferAccess, Axis, BinOp, Cmp, Kernel, Operand, Reg, Space, Special, Ty};

use super::pointwise::{self, Value};
use super::TemplateError;
use crate::group::index::{self, Access, Expr, Ranges};

/// Threads per CTA.
pub const BLOCK: u32 = 256;

/// What a kernel parameter is bound to at launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The group's operand `k` (its `k`-th `input` node).
    Operand(usize),
    /// A module weight, by the body's value that reads it.
    Weight(ValueId),
    /// The group's result `k`.
    Result(usize),
    /// The group's result `k`, updated in place: its memory is operand `operand`'s (a cache
    /// written by the function), so it starts as that operand's bytes.
    ResultInPlace {
        /// The result.
        result: usize,
        /// The operand whose memory it is.
        operand: usize,
    },
    /// A symbol's run-time value (`u64`).
    Symbol(SymbolId),
    /// Entry `k` of the group's scratch in the launch rule (`lathe_passes::launch`): a buffer
    /// of the group's own, zeroed when the arena is made if the rule says so, and otherwise of
    /// no defined contents at the launch.
    Scratch(usize),
}

/// A compiled elementwise group.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The kernel.
    pub kernel: Kernel,
    /// What each kernel parameter is, in order.
    pub bindings: Vec<Binding>,
    /// The iteration spaces (one per distinct result shape): the launch has `⌈N / BLOCK⌉` CTAs
    /// of [`BLOCK`] threads for `N` the largest element count among them.
    pub elements: Vec<Vec<Dim>>,
}

/// The register type a value of `dtype` is loaded as, and whether it widens to f32.
pub(super) fn storage(dtype: DType) -> Result<Ty, TemplateError> {
    match dtype {
        DType::F32 => Ok(Ty::F32),
        DType::BF16 => Ok(Ty::Bf16),
        DType::F16 => Ok(Ty::F16),
        DType::I64 => Ok(Ty::S64),
        DType::I32 => Ok(Ty::S32),
        // One byte each: loaded as the aligned pair holding it, stored in pairs by even lanes.
        DType::F8E4M3 | DType::F8E5M2 => Ok(Ty::B16),
        other => Err(TemplateError::Unsupported(format!("{other} values in an elementwise kernel"))),
    }
}

/// The packed register type of two `dtype` values, for the fp8 dtypes.
pub(super) fn fp8_pair(dtype: DType) -> Option<Ty> {
    match dtype {
        DType::F8E4M3 => Some(Ty::E4m3x2),
        DType::F8E5M2 => Some(Ty::E5m2x2),
        _ => None,
    }
}

/// The state of emitting a group's values at indices (shared by the templates).
pub(super) struct Emit<'a> {
    pub(super) g: &'a Graph,
    pub(super) ranges: Ranges,
    pub(super) b: KernelBuilder,
    /// The registers of the iteration indices.
    pub(super) vars: Vec<Reg>,
    pub(super) syms: HashMap<SymbolId, Reg>,
    /// Buffer base address of each value the kernel loads.
    pub(super) bases: HashMap<ValueId, Reg>,
    /// Values computed in the current block, by (value, index).
    pub(super) memo: HashMap<(ValueId, Vec<Expr>), Value>,
}

/// Compiles elementwise group `f` of module `m` as kernel `name`.
pub fn compile(m: &Module, f: &Fusion, name: &str) -> Result<Compiled, TemplateError> {
    let g = &f.body;
    let outs: Vec<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    let Some(&first) = outs.first() else {
        return Err(TemplateError::Unsupported("a group with no results".into()));
    };
    let _ = first;
    // Results of one shape share a pass; each distinct shape is its own guarded pass over the
    // same threads (a split's pieces, a convolution's output and its new state).
    let mut spaces: Vec<Vec<Dim>> = Vec::new();
    for &o in &outs {
        let sh = g.values[o].ty.shape.clone();
        if !spaces.contains(&sh) {
            spaces.push(sh);
        }
    }
    let mut b = KernelBuilder::new(name, BLOCK);
    let mut bindings = Vec::new();
    let bases = bind_operands(g, &mut b, &mut bindings)?;
    let outputs = bind_results(g, &outs, &mut b, &mut bindings)?;
    let syms = bind_symbols(m, g, &mut b, &mut bindings);
    super::wait_for_inputs(&mut b);
    super::release_dependents(&mut b);
    // The thread's linear index.
    let tid = b.special(Special::Tid(Axis::X));
    let cta = b.special(Special::Ctaid(Axis::X));
    let t32 = b.fma(Ty::U32, cta, Operand::Imm(u64::from(BLOCK)), tid);
    let t = b.cvt(Ty::U64, Ty::U32, None, false, t32);
    // fp8 results are stored two to a 16-bit store (the kernel IR has no byte stores): each
    // thread computes its element, and the even lane packs its own and its odd neighbour's
    // (fetched by a shuffle after the guard, where the whole warp runs). With an even last
    // axis, the pairs never straddle the bounds guard.
    let fp8 = outs.iter().any(|&o| fp8_pair(g.values[o].ty.dtype).is_some());
    if fp8 && spaces.iter().any(|s| !matches!(s.last(), Some(Dim::Const(c)) if c % 2 == 0)) {
        return Err(TemplateError::Unsupported(
            "an fp8 result whose last dimension is not a constant even number".into(),
        ));
    }
    let mut e = Emit { g, ranges: Ranges::of(m, &[]), b, vars: Vec::new(), syms, bases, memo: HashMap::new() };
    for shape in &spaces {
        let mut n = Operand::Imm(1);
        for d in shape {
            n = Operand::Reg(e.b.bin(BinOp::Mul, Ty::U64, n, dim_operand(d, &e.syms)));
        }
        let inside = e.b.setp(Cmp::Lt, Ty::U64, t, n);
        e.ranges = Ranges::of(m, shape);
        e.memo.clear();
        let mine: Vec<(ValueId, Reg, DType)> = outs
            .iter()
            .zip(&outputs)
            .filter(|(&o, _)| g.values[o].ty.shape == *shape)
            .map(|(&o, &(buf, dtype))| (o, buf, dtype))
            .collect();
        // Each fp8 result's element, set inside the guard (0 outside it).
        let narrow: Vec<Option<Reg>> = mine
            .iter()
            .map(|&(_, _, dtype)| fp8_pair(dtype).map(|_| e.b.mov(Ty::F32, lathe_kernel::build::f32_imm(0.0))))
            .collect();
        // The pass runs under its bounds guard; its registers are set inside it only.
        e.if_then(inside, |e| {
            e.vars = delinearize(&mut e.b, Operand::Reg(t), shape, &e.syms);
            let idx: Vec<Expr> = (0..shape.len()).map(Expr::Var).collect();
            for (&(o, buf, dtype), slot) in mine.iter().zip(&narrow) {
                let v = e.value_at(o, idx.clone())?;
                if let Some(dst) = *slot {
                    let Value::F32(x) = v else {
                        return Err(TemplateError::Unsupported(format!("a {dtype} result from this value")));
                    };
                    e.b.push(lathe_kernel::ir::Inst::Mov { dst, src: x.into() });
                    continue;
                }
                let bytes = dtype.size_bytes() as u64;
                let off = e.b.bin(BinOp::Mul, Ty::U64, t, Operand::Imm(bytes));
                let addr = e.b.bin(BinOp::Add, Ty::U64, buf, off);
                let (ty, stored) = e.stored(v, dtype)?;
                e.b.st(Space::Global, ty, addr, 0, &[stored.into()]);
            }
            e.memo.clear();
            Ok(())
        })?;
        for (&(_, buf, dtype), slot) in mine.iter().zip(&narrow) {
            let (Some(packed), Some(own)) = (fp8_pair(dtype), *slot) else { continue };
            let next = e.b.shfl(lathe_kernel::ir::ShflMode::Down, own, Operand::Imm(1));
            let parity = e.b.bin(BinOp::And, Ty::U32, tid, Operand::Imm(1));
            let even = e.b.setp(Cmp::Eq, Ty::U32, parity, Operand::Imm(0));
            let store = e.b.bin(BinOp::And, Ty::Pred, inside, even);
            // Element `t` in the low byte, `t + 1` in the high one (one byte per element).
            let p = e.b.cvt_pack(packed, next, own);
            let addr = e.b.bin(BinOp::Add, Ty::U64, buf, t);
            e.b.if_then(store, |b| b.st(Space::Global, Ty::B16, addr, 0, &[p.into()]));
        }
    }
    Ok(Compiled { kernel: e.b.finish(), bindings, elements: spaces })
}

/// A read-only buffer parameter for each operand (`input` node) and weight of `g`, in body
/// order; their base registers by value.
pub(super) fn bind_operands(
    g: &Graph,
    b: &mut KernelBuilder,
    bindings: &mut Vec<Binding>,
) -> Result<HashMap<ValueId, Reg>, TemplateError> {
    let mut bases = HashMap::new();
    let mut operand = 0;
    for &n in &g.order {
        let node = &g.nodes[n];
        let binding = match &node.op {
            Op::Input(_) => {
                operand += 1;
                Binding::Operand(operand - 1)
            }
            Op::Weight(_) => Binding::Weight(node.results[0]),
            _ => continue,
        };
        let v = node.results[0];
        let dtype = g.values[v].ty.dtype;
        storage(dtype)?;
        let base = b.buffer(&format!("in{}", bindings.len()), dtype, BufferAccess::ReadOnly);
        bases.insert(v, base);
        bindings.push(binding);
    }
    Ok(bases)
}

/// A `u64` scalar parameter for each symbol in `g`'s shapes; their registers.
pub(super) fn bind_symbols(
    m: &Module,
    g: &Graph,
    b: &mut KernelBuilder,
    bindings: &mut Vec<Binding>,
) -> HashMap<SymbolId, Reg> {
    let mut syms = HashMap::new();
    for (id, _) in m.symbols.iter() {
        if g.values.iter().any(|(_, v)| v.ty.shape.contains(&Dim::Sym(id))) {
            syms.insert(id, b.scalar(&format!("sym{}", id.index()), Ty::U64));
            bindings.push(Binding::Symbol(id));
        }
    }
    syms
}

/// The multi-index of linear index `t` (row-major over `shape`) as `u64` registers.
pub(super) fn delinearize(b: &mut KernelBuilder, t: Operand, shape: &[Dim], syms: &HashMap<SymbolId, Reg>) -> Vec<Reg> {
    let mut rest = t;
    let mut vars = vec![Reg(0); shape.len()];
    for (k, d) in shape.iter().enumerate().rev() {
        let d = dim_operand(d, syms);
        if k == 0 {
            vars[0] = b.mov(Ty::U64, rest);
        } else {
            vars[k] = b.bin(BinOp::Rem, Ty::U64, rest, d);
            rest = Operand::Reg(b.bin(BinOp::Div, Ty::U64, rest, d));
        }
    }
    vars
}

/// A written buffer parameter for each of `outs` (results `0..`); their registers and dtypes.
pub(super) fn bind_results(
    g: &Graph,
    outs: &[ValueId],
    b: &mut KernelBuilder,
    bindings: &mut Vec<Binding>,
) -> Result<Vec<(Reg, DType)>, TemplateError> {
    let mut outputs = Vec::new();
    for (k, &o) in outs.iter().enumerate() {
        let dtype = g.values[o].ty.dtype;
        storage(dtype)?;
        outputs.push((b.buffer(&format!("out{k}"), dtype, BufferAccess::Written), dtype));
        bindings.push(Binding::Result(k));
    }
    Ok(outputs)
}

/// A dimension as an operand: an immediate or its symbol's register.
pub(super) fn dim_operand(d: &Dim, syms: &HashMap<SymbolId, Reg>) -> Operand {
    match d {
        Dim::Const(c) => Operand::Imm(*c),
        Dim::Sym(s) => Operand::Reg(syms[s]),
    }
}

impl Emit<'_> {
    /// `for i in 0..count { body(self, i) }`, emitted into the builder `self` owns; `body`'s
    /// error, if any, once the loop is closed.
    pub(super) fn for_count(
        &mut self,
        count: impl Into<Operand>,
        body: impl FnOnce(&mut Self, Reg) -> Result<(), TemplateError>,
    ) -> Result<(), TemplateError> {
        let mut outer = std::mem::replace(&mut self.b, KernelBuilder::new("scratch", 1));
        let mut result = Ok(());
        outer.for_count(count, |b, i| {
            std::mem::swap(&mut self.b, b);
            result = body(self, i);
            std::mem::swap(&mut self.b, b);
        });
        self.b = outer;
        result
    }

    /// `if (cond) { body(self) }`, as `for_count`.
    pub(super) fn if_then(
        &mut self,
        cond: Reg,
        body: impl FnOnce(&mut Self) -> Result<(), TemplateError>,
    ) -> Result<(), TemplateError> {
        let mut outer = std::mem::replace(&mut self.b, KernelBuilder::new("scratch", 1));
        let mut result = Ok(());
        outer.if_then(cond, |b| {
            std::mem::swap(&mut self.b, b);
            result = body(self);
            std::mem::swap(&mut self.b, b);
        });
        self.b = outer;
        result
    }

    /// Value `v` at multi-index `idx` (over `v`'s shape), as f32 or a predicate.
    pub(super) fn value_at(&mut self, v: ValueId, idx: Vec<Expr>) -> Result<Value, TemplateError> {
        let key = (v, idx.clone());
        if let Some(x) = self.memo.get(&key) {
            return Ok(*x);
        }
        let access =
            index::trace(self.g, v, idx, &self.ranges).map_err(|e| TemplateError::Unsupported(e.to_string()))?;
        let x = self.access(&access)?;
        self.memo.insert(key, x);
        Ok(x)
    }

    fn access(&mut self, a: &Access) -> Result<Value, TemplateError> {
        match a {
            Access::Element { value, index } => self.produce(*value, index.clone()),
            Access::Piecewise { at, starts, pieces } => {
                let at = index::emit(&mut self.b, at, &self.vars, &self.syms)
                    .map_err(|e| TemplateError::Unsupported(e.to_string()))?;
                let mut out: Option<Value> = None;
                for (start, piece) in starts.iter().zip(pieces) {
                    let x = self.access(piece)?;
                    out = Some(match out {
                        None => x,
                        Some(prev) => {
                            let s = index::emit(&mut self.b, start, &self.vars, &self.syms)
                                .map_err(|e| TemplateError::Unsupported(e.to_string()))?;
                            let here = self.b.setp(Cmp::Ge, Ty::U64, at, s);
                            match (x, prev) {
                                (Value::F32(a), Value::F32(b)) => Value::F32(self.b.selp(Ty::F32, a, b, here)),
                                (Value::Pred(a), Value::Pred(b)) => {
                                    // p = here ? a : b, on predicates.
                                    let ai = self.b.selp(Ty::U32, Operand::Imm(1), Operand::Imm(0), a);
                                    let bi = self.b.selp(Ty::U32, Operand::Imm(1), Operand::Imm(0), b);
                                    let v = self.b.selp(Ty::U32, ai, bi, here);
                                    Value::Pred(self.b.setp(Cmp::Ne, Ty::U32, v, Operand::Imm(0)))
                                }
                                _ => return Err(TemplateError::Unsupported("concat of mixed types".into())),
                            }
                        }
                    });
                }
                out.ok_or_else(|| TemplateError::Unsupported("an empty concat".into()))
            }
        }
    }

    /// The element `index` of `v`, a value no movement op produces.
    fn produce(&mut self, v: ValueId, index: Vec<Expr>) -> Result<Value, TemplateError> {
        let node = &self.g.nodes[self.g.values[v].def];
        if let Some(&base) = self.bases.get(&v) {
            let ty = self.g.values[v].ty.clone();
            let off = index::linearize(&index, &ty.shape);
            let off = index::emit(&mut self.b, &off, &self.vars, &self.syms)
                .map_err(|e| TemplateError::Unsupported(e.to_string()))?;
            return self.load(base, off, ty.dtype);
        }
        if let Op::Constant(c) = &node.op {
            // A splat is an immediate, rounded to its dtype as the interpreter holds it.
            if let ([x], true) = (c.values.as_slice(), c.ty.dtype.is_int()) {
                let v = lathe_interp::tensor::wrap_int(c.ty.dtype, *x as i64);
                return Ok(Value::I64(self.b.mov(Ty::S64, Operand::Imm(v as u64))));
            }
            if let [x] = c.values.as_slice() {
                let x = *x as f32;
                let x = match c.ty.dtype {
                    DType::F32 => x,
                    DType::BF16 => lathe_numerics::round_to_bf16(x),
                    DType::F16 => lathe_numerics::round_to_f16(x),
                    other => return Err(TemplateError::Unsupported(format!("a {other} constant"))),
                };
                return Ok(Value::F32(self.b.mov(Ty::F32, lathe_kernel::build::f32_imm(x))));
            }
            return Err(TemplateError::Unsupported("a constant that is not a splat".into()));
        }
        let op = node.op.clone();
        if let Op::Gather = &op {
            return self.gather(node.args[0], node.args[1], &index);
        }
        if let Op::Conv1dCausal = &op {
            return self.conv1d(node.args.clone(), self.g.values[v].index, &index, self.g.values[v].ty.dtype);
        }
        if let Op::Iota(io) = &op {
            // Its value is its index along the axis.
            let i = index::emit(&mut self.b, &index[io.axis], &self.vars, &self.syms)
                .map_err(|e| TemplateError::Unsupported(e.to_string()))?;
            let dtype = self.g.values[v].ty.dtype;
            return match dtype {
                DType::I64 | DType::I32 => Ok(Value::I64(self.b.cvt(Ty::S64, Ty::U64, None, false, i))),
                _ => {
                    let f = self.b.cvt(Ty::F32, Ty::U64, Some(lathe_kernel::ir::Rounding::Rn), false, i);
                    Ok(self.round(Value::F32(f), dtype))
                }
            };
        }
        if let Op::Quantize(to) | Op::Dequantize(to) = &op {
            return self.scale_by(node.args[0], node.args[1], &index, *to, matches!(op, Op::Quantize(_)));
        }
        if !lathe_passes::strategy::is_pointwise(&op) || matches!(op, Op::Rope(_)) {
            return Err(TemplateError::Unsupported(format!("`{}` in an elementwise kernel", op.name())));
        }
        let out_shape = self.g.values[v].ty.shape.clone();
        let args = node.args.clone();
        let mut vals = Vec::new();
        for a in args {
            // numpy broadcasting: the operand's dimensions align right; size-1 dimensions read 0.
            let ashape = self.g.values[a].ty.shape.clone();
            let lead = out_shape.len() - ashape.len();
            let aidx = ashape
                .iter()
                .zip(&index[lead..])
                .map(|(d, i)| if *d == Dim::Const(1) { Expr::Const(0) } else { i.clone() })
                .collect();
            vals.push(self.value_at(a, aidx)?);
        }
        let dtype = self.g.values[v].ty.dtype;
        if dtype.is_int() || vals.iter().any(|x| matches!(x, Value::I64(_))) {
            return self.integer(&op, &vals, dtype);
        }
        let x = pointwise::emit(&mut self.b, &op, &vals).map_err(|e| TemplateError::Unsupported(e.to_string()))?;
        // The interpreter holds every value in its dtype: a narrow intermediate is rounded.
        Ok(self.round(x, dtype))
    }

    /// `table[idx[i], j…]` for `index = i ++ j`: the row number is data (an element of `idx`),
    /// the rest index arithmetic. The table must be a buffer the kernel reads (a weight or an
    /// operand); a row outside the table is an out-of-bounds read the simulator reports (the
    /// runtime checks tokens before a launch).
    fn gather(&mut self, table: ValueId, idx: ValueId, index: &[Expr]) -> Result<Value, TemplateError> {
        let k = self.g.values[idx].ty.shape.len();
        let Value::I64(row) = self.value_at(idx, index[..k].to_vec())? else {
            return Err(TemplateError::Unsupported("a gather with float indices".into()));
        };
        let Some(&base) = self.bases.get(&table) else {
            return Err(TemplateError::Unsupported("a gather from a computed table".into()));
        };
        let tty = self.g.values[table].ty.clone();
        let inner = index::linearize(&index[k..], &tty.shape[1..]);
        let inner = index::emit(&mut self.b, &inner, &self.vars, &self.syms)
            .map_err(|e| TemplateError::Unsupported(e.to_string()))?;
        let width: u64 = tty.shape[1..]
            .iter()
            .map(|d| match d {
                Dim::Const(c) => Ok(*c),
                Dim::Sym(_) => Err(TemplateError::Unsupported("a gather table of symbolic width".into())),
            })
            .product::<Result<u64, _>>()?;
        let row = self.b.cvt(Ty::U64, Ty::S64, None, false, row);
        let off = self.b.fma(Ty::U64, row, Operand::Imm(width), inner);
        self.load(base, off, tty.dtype)
    }

    /// Element `off` (an element offset) of the `dtype` buffer at `base`, widened: floats to
    /// f32, integers to s64. An fp8 element is read as the aligned 16-bit pair holding it,
    /// unpacked exactly to two halves (`cvt.rn.f16x2.{e4m3x2,e5m2x2}`), the one at the odd
    /// address the upper.
    fn load(&mut self, base: Reg, off: impl Into<Operand>, dtype: DType) -> Result<Value, TemplateError> {
        let bytes = dtype.size_bytes() as u64;
        let off: Operand =
            if bytes == 1 { off.into() } else { self.b.bin(BinOp::Mul, Ty::U64, off, Operand::Imm(bytes)).into() };
        let addr = self.b.bin(BinOp::Add, Ty::U64, base, off);
        let st = storage(dtype)?;
        if let Some(packed) = fp8_pair(dtype) {
            let even = self.b.bin(BinOp::And, Ty::U64, addr, Operand::Imm(!1));
            let pair = self.b.ld(Space::Global, Ty::B16, 1, even, 0, true)[0];
            let halves = self.b.cvt_unpack(packed, pair);
            let odd = self.b.bin(BinOp::And, Ty::U64, addr, Operand::Imm(1));
            let odd = self.b.cvt(Ty::U32, Ty::U64, None, false, odd);
            let shift = self.b.bin(BinOp::Mul, Ty::U32, odd, Operand::Imm(16));
            let half = self.b.bin(BinOp::Shr, Ty::B32, halves, shift);
            let half = self.b.cvt(Ty::B16, Ty::B32, None, false, half);
            return Ok(Value::F32(self.b.cvt(Ty::F32, Ty::F16, None, false, half)));
        }
        let x = self.b.ld(Space::Global, st, 1, addr, 0, true)[0];
        Ok(match st {
            Ty::F32 => Value::F32(x),
            Ty::S64 => Value::I64(x),
            Ty::S32 => Value::I64(self.b.cvt(Ty::S64, Ty::S32, None, false, x)),
            _ => Value::F32(self.b.cvt(Ty::F32, st, None, false, x)),
        })
    }

    /// Element `index` of result `which` of `conv1d.causal x, w, b, state0` (`xx =
    /// concat(state0, x)` over time): `y[b, t, c] = bias[c] + Σ_k w[c, k]·xx[b, t + k, c]`, summed
    /// in `k` order with separate multiplies and adds (the interpreter's order, so the same bits),
    /// and the new state `xx[b, S + j, c]`.
    fn conv1d(&mut self, args: Vec<ValueId>, which: u32, index: &[Expr], dtype: DType) -> Result<Value, TemplateError> {
        let (x, w, bias, state0) = (args[0], args[1], args[2], args[3]);
        let Some(Dim::Const(width)) = self.g.values[w].ty.shape.get(1).copied() else {
            return Err(TemplateError::Unsupported("a convolution of symbolic width".into()));
        };
        let s_dim = index::dim(&self.g.values[x].ty.shape[1]);
        let hist = width - 1;
        // xx[b, u, c]: state0 below `hist`, x above; both read at clamped rows, one selected.
        let xx = |e: &mut Self, u: Expr| -> Result<Value, TemplateError> {
            let from_state = Expr::Min(Box::new(u.clone()), Box::new(Expr::Const(hist.saturating_sub(1))));
            let from_x = Expr::Min(
                Box::new(index::sub(u.clone(), Expr::Const(hist))),
                Box::new(index::sub(s_dim.clone(), Expr::Const(1))),
            );
            let xv = e.value_at(x, vec![index[0].clone(), from_x, index[2].clone()])?;
            if hist == 0 {
                return Ok(xv);
            }
            let sv = e.value_at(state0, vec![index[0].clone(), from_state, index[2].clone()])?;
            let at =
                index::emit(&mut e.b, &u, &e.vars, &e.syms).map_err(|x| TemplateError::Unsupported(x.to_string()))?;
            let in_x = e.b.setp(Cmp::Ge, Ty::U64, at, Operand::Imm(hist));
            match (xv, sv) {
                (Value::F32(a), Value::F32(b)) => Ok(Value::F32(e.b.selp(Ty::F32, a, b, in_x))),
                _ => Err(TemplateError::Unsupported("a convolution of non-float values".into())),
            }
        };
        if which == 1 {
            let u = index::add(s_dim.clone(), index[1].clone());
            return xx(self, u);
        }
        // The channel's taps in one vector load (a 16-byte row for f32 width 4): consecutive
        // threads, consecutive rows — coalesced, where one load per tap would stride.
        self.weight_row(w, &index[2], width)?;
        let Value::F32(mut acc) = self.value_at(bias, vec![index[2].clone()])? else {
            return Err(TemplateError::Unsupported("a non-float bias".into()));
        };
        for k in 0..width {
            let Value::F32(xv) = xx(self, index::add(index[1].clone(), Expr::Const(k)))? else {
                return Err(TemplateError::Unsupported("a non-float input".into()));
            };
            let Value::F32(wv) = self.value_at(w, vec![index[2].clone(), Expr::Const(k)])? else {
                return Err(TemplateError::Unsupported("a non-float weight".into()));
            };
            let p = self.b.bin(BinOp::Mul, Ty::F32, wv, xv);
            acc = self.b.bin(BinOp::Add, Ty::F32, acc, p);
        }
        Ok(self.round(Value::F32(acc), dtype))
    }

    /// `quantize` (`divide`: `x / scale` rounded to fp8 `to`, saturating) or `dequantize`
    /// (`x · scale` rounded to float `to`) of element `index`; `scale` is `f32[]` or one per
    /// element of the last axis. IEEE division, as the interpreter divides.
    fn scale_by(
        &mut self,
        x: ValueId,
        scale: ValueId,
        index: &[Expr],
        to: DType,
        divide: bool,
    ) -> Result<Value, TemplateError> {
        let sidx = match self.g.values[scale].ty.shape.len() {
            0 => Vec::new(),
            _ => index.last().cloned().into_iter().collect(),
        };
        let (Value::F32(v), Value::F32(s)) = (self.value_at(x, index.to_vec())?, self.value_at(scale, sidx)?) else {
            return Err(TemplateError::Unsupported("a quantize or dequantize of non-float values".into()));
        };
        let r = self.b.bin(if divide { BinOp::Div } else { BinOp::Mul }, Ty::F32, v, s);
        Ok(self.round(Value::F32(r), to))
    }

    /// Row `c` of the `[C, width]` buffer `w` (a weight or operand the kernel reads) in one
    /// vector load when the row is 2 or 4 elements of a float dtype the kernel loads, its
    /// elements memoized as `w[c, k]`; otherwise nothing (each tap is then its own load).
    fn weight_row(&mut self, w: ValueId, c: &Expr, width: u64) -> Result<(), TemplateError> {
        let Some(&base) = self.bases.get(&w) else { return Ok(()) };
        let dtype = self.g.values[w].ty.dtype;
        let st = storage(dtype)?;
        if !matches!(width, 2 | 4) || !matches!(st, Ty::F32 | Ty::Bf16 | Ty::F16) {
            return Ok(());
        }
        let row = index::emit(&mut self.b, c, &self.vars, &self.syms)
            .map_err(|e| TemplateError::Unsupported(e.to_string()))?;
        let off = self.b.bin(BinOp::Mul, Ty::U64, row, Operand::Imm(width * dtype.size_bytes() as u64));
        let addr = self.b.bin(BinOp::Add, Ty::U64, base, off);
        let taps = self.b.ld(Space::Global, st, width as usize, addr, 0, true);
        for (k, x) in taps.into_iter().enumerate() {
            let x = if st == Ty::F32 { x } else { self.b.cvt(Ty::F32, st, None, false, x) };
            self.memo.insert((w, vec![c.clone(), Expr::Const(k as u64)]), Value::F32(x));
        }
        Ok(())
    }

    /// An integer pointwise op (`s64` arithmetic, wrapped to the result's width as the
    /// interpreter wraps it), or a cast between integers and floats.
    fn integer(&mut self, op: &Op, vals: &[Value], dtype: DType) -> Result<Value, TemplateError> {
        use lathe_ir::ops::BinaryOp;
        let int = |x: &Value| match x {
            Value::I64(r) => Ok(*r),
            _ => Err(TemplateError::Unsupported(format!("`{}` mixing integers and floats", op.name()))),
        };
        let r = match op {
            Op::Binary(b) => {
                let k = match b {
                    BinaryOp::Add => BinOp::Add,
                    BinaryOp::Sub => BinOp::Sub,
                    BinaryOp::Mul => BinOp::Mul,
                    BinaryOp::Max => BinOp::Max,
                    BinaryOp::Min => BinOp::Min,
                    BinaryOp::Div => return Err(TemplateError::Unsupported("integer `div` (floats only)".into())),
                };
                self.b.bin(k, Ty::S64, int(&vals[0])?, int(&vals[1])?)
            }
            Op::Unary(lathe_ir::ops::UnaryOp::Neg) => self.b.un(lathe_kernel::ir::UnOp::Neg, Ty::S64, int(&vals[0])?),
            Op::Cast(to) if to.is_int() => int(&vals[0])?,
            Op::Cast(to) => {
                // Integer → float, rounded to the float dtype.
                let f = self.b.cvt(Ty::F32, Ty::S64, Some(lathe_kernel::ir::Rounding::Rn), false, int(&vals[0])?);
                return Ok(self.round(Value::F32(f), *to));
            }
            other => return Err(TemplateError::Unsupported(format!("integer `{}`", other.name()))),
        };
        let r = match dtype {
            DType::I32 => {
                let n = self.b.cvt(Ty::S32, Ty::S64, None, false, r);
                self.b.cvt(Ty::S64, Ty::S32, None, false, n)
            }
            DType::I64 => r,
            other => return Err(TemplateError::Unsupported(format!("{other} values in an elementwise kernel"))),
        };
        Ok(Value::I64(r))
    }

    /// Records `x` as value `v` at `idx`, under both spellings its consumers may ask for it by:
    /// the index expressions as given, and with a size-1 dimension's index as the constant 0
    /// (how a broadcasting pointwise consumer asks for its operands).
    pub(super) fn remember(&mut self, v: ValueId, idx: &[Expr], x: Value) {
        let shape = &self.g.values[v].ty.shape;
        let broadcast: Vec<Expr> =
            idx.iter().zip(shape).map(|(i, d)| if *d == Dim::Const(1) { Expr::Const(0) } else { i.clone() }).collect();
        self.memo.insert((v, idx.to_vec()), x);
        self.memo.insert((v, broadcast), x);
    }

    /// Stores `v` as element `idx` (index expressions over the current variables) of the
    /// row-major `shape` buffer at `buf` holding `dtype`.
    pub(super) fn store_at(
        &mut self,
        buf: Reg,
        dtype: DType,
        shape: &[Dim],
        idx: &[Expr],
        v: Value,
    ) -> Result<(), TemplateError> {
        let flat = index::linearize(idx, shape);
        let flat = index::emit(&mut self.b, &flat, &self.vars, &self.syms)
            .map_err(|x| TemplateError::Unsupported(x.to_string()))?;
        let off = self.b.bin(BinOp::Mul, Ty::U64, flat, Operand::Imm(dtype.size_bytes() as u64));
        let addr = self.b.bin(BinOp::Add, Ty::U64, buf, off);
        let (ty, st) = self.stored(v, dtype)?;
        self.b.st(Space::Global, ty, addr, 0, &[st.into()]);
        Ok(())
    }

    /// `v` as stored in a `dtype` buffer: the register type and register.
    pub(super) fn stored(&mut self, v: Value, dtype: DType) -> Result<(Ty, Reg), TemplateError> {
        let ty = storage(dtype)?;
        Ok(match (v, ty) {
            (Value::F32(x), Ty::F32) => (ty, x),
            (Value::F32(x), Ty::Bf16 | Ty::F16) => {
                (ty, self.b.cvt(ty, Ty::F32, Some(lathe_kernel::ir::Rounding::Rn), false, x))
            }
            (Value::I64(x), Ty::S64) => (ty, x),
            (Value::I64(x), Ty::S32) => (ty, self.b.cvt(Ty::S32, Ty::S64, None, false, x)),
            _ => return Err(TemplateError::Unsupported(format!("a result of {dtype} from this value"))),
        })
    }

    /// `x` rounded to `dtype`'s precision (and back to f32), as the interpreter stores it.
    pub(super) fn round(&mut self, x: Value, dtype: DType) -> Value {
        let ty = match (x, dtype) {
            (Value::F32(_), DType::BF16) => Ty::Bf16,
            (Value::F32(_), DType::F16) => Ty::F16,
            (Value::F32(r), DType::F8E4M3 | DType::F8E5M2) => {
                // round_to takes every float dtype; these two cannot fail.
                return pointwise::round_to(&mut self.b, dtype, r).map_or(x, Value::F32);
            }
            _ => return x,
        };
        let Value::F32(r) = x else { return x };
        let n = self.b.cvt(ty, Ty::F32, Some(lathe_kernel::ir::Rounding::Rn), false, r);
        Value::F32(self.b.cvt(Ty::F32, ty, None, false, n))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use lathe_interp::tensor::Tensor;
    use lathe_interp::SyntheticOnly;
    use lathe_ir::ops::KernelStrategy;
    use lathe_ir::text::parse_module;
    use lathe_kernel::sim::{run, Arg, Launch, Options};

    use super::*;

    /// Compiles function `main` of `text` as an elementwise group, runs it in the simulator and
    /// in the interpreter on the same pseudo-random inputs (symbols take `syms`), and requires
    /// the same bits (the ops here are IEEE-exact in both).
    fn check(text: &str, syms: &[(&str, u64)]) -> Compiled {
        check_as(KernelStrategy::Elementwise, text, syms)
    }

    fn check_as(strategy: KernelStrategy, text: &str, syms: &[(&str, u64)]) -> Compiled {
        let m = parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        lathe_ir::verify::verify(&m).unwrap_or_else(|e| panic!("{e:?}"));
        let g = m.functions.first().expect("a function").graph.clone();
        let f = Fusion { strategy, body: g.clone() };
        lathe_passes::strategy::classify(&m, &f).expect("a group its strategy accepts");
        let c = compile(&m, &f, "group").unwrap_or_else(|e| panic!("{e}"));
        let sym_value = |id: SymbolId| {
            let name = &m.symbols.get(id).expect("a symbol").name;
            syms.iter().find(|(n, _)| n == name).expect("a value for every symbol").1
        };
        let concrete = |shape: &[Dim]| -> Vec<usize> {
            shape
                .iter()
                .map(|d| match d {
                    Dim::Const(c) => *c as usize,
                    Dim::Sym(s) => sym_value(*s) as usize,
                })
                .collect()
        };
        // Inputs: pseudo-random values in [-2, 2), rounded to their dtype.
        let mut inputs = HashMap::new();
        let mut args = Vec::new();
        let mut seed = 1u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        };
        let inputs_in_order: Vec<(String, ValueId)> = g
            .order
            .iter()
            .filter_map(|&n| match &g.nodes[n].op {
                Op::Input(i) => Some((i.name.clone(), g.nodes[n].results[0])),
                _ => None,
            })
            .collect();
        let mut input_bytes = Vec::new();
        for (name, v) in &inputs_in_order {
            let ty = &g.values[*v].ty;
            let shape = concrete(&ty.shape);
            let vals: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| next()).collect();
            let t = Tensor::from_f32(ty.dtype, shape, vals);
            input_bytes.push(t.to_le_bytes());
            inputs.insert(name.clone(), t);
        }
        let mut results = Vec::new();
        for b in &c.bindings {
            args.push(match b {
                Binding::Operand(k) => Arg::Buffer(input_bytes[*k].clone()),
                Binding::Result(k) => {
                    let ty = &g.values[g.outputs[*k].value].ty;
                    let n: usize = concrete(&ty.shape).iter().product();
                    results.push((args.len(), ty.dtype, concrete(&ty.shape)));
                    Arg::Buffer(vec![0; n * ty.dtype.size_bytes()])
                }
                Binding::Symbol(s) => Arg::Scalar(sym_value(*s)),
                Binding::Weight(_) | Binding::ResultInPlace { .. } | Binding::Scratch(_) => {
                    panic!("no weights, caches or scratch here")
                }
            });
        }
        let n: u64 = c.elements.iter().map(|e| concrete(e).iter().product::<usize>() as u64).max().unwrap_or(1);
        let launch = Launch { grid: [n.div_ceil(u64::from(BLOCK)) as u32, 1, 1], block: [BLOCK, 1, 1] };
        run(&c.kernel, &launch, &mut args, &Options { warp_orders: 2, ..Options::default() })
            .unwrap_or_else(|e| panic!("{e}\n{}", lathe_kernel::text::print(&c.kernel)));
        let want = lathe_interp::run(&m, "main", &inputs, &SyntheticOnly).expect("the interpreter runs");
        for ((slot, dtype, shape), (_, t)) in results.iter().zip(&want) {
            let Arg::Buffer(bytes) = &args[*slot] else { panic!("a buffer") };
            let got = Tensor::from_le_bytes(*dtype, shape.clone(), bytes).expect("the result's bytes");
            let got = got.floats();
            assert_eq!(got.len(), t.floats().len());
            for (i, (a, b)) in got.iter().zip(t.floats()).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "element {i}: simulator {a}, interpreter {b}\n{text}");
            }
        }
        crate::ptx::compile(&c.kernel, lathe_kernel::target::Target::HOPPER).unwrap_or_else(|e| panic!("{e}"));
        c
    }

    fn module(symbols: &str, body: &str) -> String {
        format!("module @m {{\n  compute_dtype = f32\n{symbols}  func @main {{\n{body}  }}\n}}\n")
    }

    #[test]
    fn pointwise_ops_with_broadcasting_over_a_symbolic_shape_match_the_interpreter() {
        let text = module(
            "  symbol S <= 64\n",
            "    %0 = input \"a\" : f32[S, 6]\n    %1 = input \"b\" : f32[6]\n    %2 = input \"c\" : bf16[S, 1]\n    %3 = mul %0, %1 : f32[S, 6]\n    %4 = cast %2 : f32[S, 1]\n    %5 = add %3, %4 : f32[S, 6]\n    %6 = relu %5 : f32[S, 6]\n    %7 = cast %6 : bf16[S, 6]\n    return %6, %7\n",
        );
        let c = check(&text, &[("S", 45)]);
        assert_eq!(c.bindings.len(), 6, "three operands, two results, one symbol: {:?}", c.bindings);
    }

    #[test]
    fn a_causal_convolution_and_its_new_state_match_the_interpreter_bit_for_bit() {
        let text = module(
            "  symbol B <= 4\n  symbol S <= 64\n",
            "    %0 = input \"x\" : f32[B, S, 6]\n    %1 = input \"w\" : f32[6, 4]\n    %2 = input \"bias\" : f32[6]\n    %3 = input \"st\" : f32[B, 3, 6]\n    %4:2 = conv1d.causal %0, %1, %2, %3 : f32[B, S, 6], f32[B, 3, 6]\n    %5 = relu %4#0 : f32[B, S, 6]\n    return %5, %4#1\n",
        );
        // A short sequence (its new state reaches into the old one) and a long one.
        check_as(KernelStrategy::Conv1dCausal, &text, &[("B", 2), ("S", 2)]);
        check_as(KernelStrategy::Conv1dCausal, &text, &[("B", 3), ("S", 9)]);
    }

    #[test]
    fn movement_ops_between_pointwise_ops_are_index_arithmetic() {
        // exp-free chain: a transposed operand scaled, joined with another, sliced, squared.
        let text = module(
            "",
            "    %0 = input \"x\" : f32[4, 6]\n    %1 = input \"y\" : f32[6, 3]\n    %2 = transpose %0 {perm=[1, 0]} : f32[6, 4]\n    %3 = constant 2.0 : f32[]\n    %4 = broadcast %3 : f32[6, 4]\n    %5 = mul %2, %4 : f32[6, 4]\n    %6 = concat %5, %1 {axis=1} : f32[6, 7]\n    %7 = slice %6 {axis=1, start=1, end=6} : f32[6, 5]\n    %8 = square %7 : f32[6, 5]\n    return %8\n",
        );
        check(&text, &[]);
    }

    #[test]
    fn quantizing_to_fp8_and_back_matches_the_interpreter_bit_for_bit() {
        // A per-tensor scale (the activation's, from an earlier amax) and a per-channel one; the
        // scales are random in [-2, 2), so some quotients saturate at ±448 and ±57344.
        let text = module(
            "  symbol S <= 64\n",
            "    %0 = input \"x\" : bf16[S, 10]\n    %1 = input \"s\" : f32[]\n    %2 = input \"c\" : f32[10]\n    %3 = quantize %0, %1 : f8e4m3[S, 10]\n    %4 = cast %0 : f32[S, 10]\n    %5 = mul %4, %4 : f32[S, 10]\n    %6 = quantize %5, %2 : f8e5m2[S, 10]\n    %7 = dequantize %3, %2 : bf16[S, 10]\n    return %3, %6, %7\n",
        );
        // 7 rows of 10: 70 elements, a partial warp; 60 rows: three CTAs, the last partial.
        check_as(KernelStrategy::RowReduce, &text, &[("S", 7)]);
        check_as(KernelStrategy::RowReduce, &text, &[("S", 60)]);
        // Dequantizing fp8 operands: each element read from the aligned pair holding it, also
        // through a transpose (odd and even addresses in any order).
        let text = module(
            "",
            "    %0 = input \"q\" : f8e4m3[6, 5]\n    %1 = input \"s\" : f32[]\n    %2 = transpose %0 {perm=[1, 0]} : f8e4m3[5, 6]\n    %3 = dequantize %2, %1 : f32[5, 6]\n    return %3\n",
        );
        check_as(KernelStrategy::RowReduce, &text, &[]);
    }

    #[test]
    fn an_fp8_result_with_an_odd_last_axis_is_refused_by_name() {
        let text = module(
            "",
            "    %0 = input \"x\" : f32[4, 5]\n    %1 = input \"s\" : f32[]\n    %2 = quantize %0, %1 : f8e4m3[4, 5]\n    return %2\n",
        );
        let m = parse_module(&text).expect("parses");
        let f = Fusion { strategy: KernelStrategy::RowReduce, body: m.functions[0].graph.clone() };
        let e = compile(&m, &f, "q").expect_err("an odd fp8 row");
        assert!(e.to_string().contains("not a constant even number"), "{e}");
    }
}
