//! A seeded generator of random *valid* modules, shared by the round-trip and robustness tests
//! of this crate and the pass tests of `lathe-passes`.
//!
//! Every module is built with [`GraphBuilder`] (so every node is typed by `infer` as it is
//! added) from a broad subset of the op set: leaves of every kind, elementwise ops with
//! broadcasting, casts to every dtype, reductions and norms, every shape op, fp8 ops, linear
//! ops, attention, the SSD scan, convolutions, sampling and nested fusion regions. Names are
//! chosen to stress the printer (dots, spaces, quotes, backslashes, non-ASCII), numbers to stress
//! the float printer (`-0.0`, `1e-30`, subnormals, infinities, NaN, non-round values).
//!
//! Alongside the module the generator returns, per function, concrete inputs that bind every
//! symbol consistently and keep every run-time check (slice bounds, gather indices, cache
//! rows, attention lengths) satisfied, so the interpreter mostly succeeds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::Rng;
use lathe_interp::tensor::Tensor;
use lathe_ir::builder::GraphBuilder;
use lathe_ir::module::{Function, Module, ValueId, WeightId, WeightSource};
use lathe_ir::ops::{
    Attention, BinaryOp, Clamp, Constant, Conv2dPatch, Fusion, Iota, KernelStrategy, MaskKind, Matmul, Norm, Op,
    Reduce, ReduceKind, RopeAttrs, Sample, ScanSsd, Slice, Softmax, Split, UnaryOp,
};
use lathe_ir::types::{DType, Dim, SymbolId, TensorType};

/// A generated module and, per function, named inputs for the interpreter.
#[derive(Debug)]
pub struct Case {
    /// The module; it verifies.
    pub module: Module,
    /// `(function name, inputs)` for every function.
    pub inputs: Vec<(String, HashMap<String, Tensor>)>,
}

type G<T> = Result<T, String>;

/// The float dtypes arithmetic ops accept.
const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];
const FP8: [DType; 2] = [DType::F8E4M3, DType::F8E5M2];
const ALL_FLOATS: [DType; 5] = [DType::F32, DType::F16, DType::BF16, DType::F8E4M3, DType::F8E5M2];
const SIGNED: [DType; 3] = [DType::I64, DType::I32, DType::I8];
const INDEX: [DType; 4] = [DType::I64, DType::I32, DType::I8, DType::U8];

/// Floats that are hard to print exactly: signed zero, tiny and huge magnitudes, subnormals,
/// infinities, values with no short decimal form, and the largest finite f16/f32/fp8 values.
pub const AWKWARD: [f64; 20] = [
    1e-30,
    -0.0,
    0.0,
    f64::INFINITY,
    f64::NEG_INFINITY,
    0.1,
    -1.0 / 3.0,
    5e-324,
    f64::MIN_POSITIVE,
    1e300,
    -2.5e-8,
    65504.0,
    448.0,
    3.4028234663852886e38,
    1.0000001192092896,
    0.30000000000000004,
    123456789.123,
    -7.0,
    1e16,
    f64::MIN_POSITIVE / 10.0,
];

const MODULE_NAMES: [&str; 8] = ["m", "tiny_hybrid", "nemotron-h.8b", "with space", "ünï", "q\"uote", "", "a\\b"];
const SYMBOL_NAMES: [&str; 11] = ["B", "S", "T", "seq_len", "_n", "Tok2", "return", "module", "symbol", "as", "x1"];
/// Symbol bounds, up to the limit; an op whose type would pass [`lathe_ir::limits`] at these
/// bounds is skipped.
const SYMBOL_BOUNDS: [u64; 8] = [1, 2, 3, 4, 16, 8192, 1 << 20, lathe_ir::limits::MAX_SYMBOL_BOUND];

/// The error of an op the generator skips (its types would pass the size limits, or it would
/// reduce over an empty axis); [`FnGen::ops`] goes on with the next op.
const SKIP: &str = "skip";
const WEIGHT_PREFIXES: [&str; 7] = ["model.layers.", "backbone.embeddings.", "w", "lm_head.", "a b.", "ünï.", "q\"x."];
const WEIGHT_SUFFIXES: [&str; 4] = [".weight", ".bias", "", ".A_log"];
const FILES: [&str; 4] =
    ["model.safetensors", "model-00001-of-00002.safetensors", "dir/sub dir/w.safetensors", "ü.safetensors"];
const FUNC_NAMES: [&str; 7] = ["main", "decode", "extend.step", "eval-all", "with space", "ünï", "q\"f"];
const INPUT_NAMES: [&str; 12] =
    ["x", "tokens.", "in put ", "q\"uote", "back\\slash", "tab\t", "ünï-", "", "new\nline", "%0", "@w", "return"];
const OUTPUT_NAMES: [&str; 7] = ["logits", "out.", "y z", "ünï", "q\"", "", "k_cache"];

fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.below(xs.len())]
}

fn chance(rng: &mut Rng, one_in: usize) -> bool {
    rng.below(one_in) == 0
}

fn shuffle<T>(rng: &mut Rng, xs: &mut [T]) {
    for i in (1..xs.len()).rev() {
        xs.swap(i, rng.below(i + 1));
    }
}

fn is_float(t: &TensorType) -> bool {
    FLOATS.contains(&t.dtype)
}

fn is_numeric(t: &TensorType) -> bool {
    is_float(t) || t.dtype.is_int()
}

fn const_of(d: Dim) -> Option<u64> {
    d.as_const()
}

/// The numpy broadcast of two shapes that are known to broadcast.
fn broadcast(a: &[Dim], b: &[Dim]) -> Vec<Dim> {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let pad = long.len() - short.len();
    long.iter()
        .enumerate()
        .map(|(i, &d)| match i.checked_sub(pad).map(|j| short[j]) {
            Some(e) if d == Dim::Const(1) => e,
            _ => d,
        })
        .collect()
}

/// Builds the module of seed `seed`.
pub fn random_case(seed: u64) -> G<Case> {
    let mut rng = Rng::new(seed);
    let mut m = Module::new(pick(&mut rng, &MODULE_NAMES));
    m.compute_dtype = pick(&mut rng, &DType::ALL);
    let mut names = SYMBOL_NAMES.to_vec();
    shuffle(&mut rng, &mut names);
    for name in names.into_iter().take(rng.below(4)) {
        let max = pick(&mut rng, &SYMBOL_BOUNDS);
        m.add_symbol(name, max);
    }
    // Norm-sized weights, so that `rms_norm` often reads a real weight.
    for d in 1..=4u64 {
        let seed = rng.next_u64();
        m.add_weight(format!("norm.{d}.weight"), TensorType::fixed(DType::F32, &[d]), WeightSource::Synthetic { seed });
    }
    for i in 0..rng.below(8) {
        let name = format!("{}{i}{}", pick(&mut rng, &WEIGHT_PREFIXES), pick(&mut rng, &WEIGHT_SUFFIXES));
        let dtype = if chance(&mut rng, 4) { pick(&mut rng, &DType::ALL) } else { pick(&mut rng, &FLOATS) };
        let rank = 1 + rng.below(3);
        let shape: Vec<u64> = (0..rank).map(|_| 1 + rng.below(4) as u64).collect();
        let source = if chance(&mut rng, 3) {
            let file = pick(&mut rng, &FILES).to_string();
            WeightSource::Checkpoint { file, tensor: name.clone() }
        } else {
            WeightSource::Synthetic { seed: rng.next_u64() }
        };
        m.add_weight(name, TensorType::fixed(dtype, &shape), source);
    }
    let allow_empty = chance(&mut rng, 8);
    let mut functions = Vec::new();
    let mut inputs = Vec::new();
    for fi in 0..1 + rng.below(3) {
        let name = format!("{}{fi}", pick(&mut rng, &FUNC_NAMES));
        let bind: BTreeMap<SymbolId, u64> =
            m.symbols.iter().map(|(h, s)| (h, 1 + rng.below(s.max.min(3) as usize) as u64)).collect();
        let mut g = FnGen::new(&m, Rng::new(rng.next_u64()), bind, BTreeSet::new(), true, 0, allow_empty);
        g.ops(4 + rng.below(16))?;
        g.outputs()?;
        inputs.push((name.clone(), std::mem::take(&mut g.inputs)));
        functions.push(Function::new(name, g.b.into_graph()));
    }
    // A function that reads a checkpoint weight: the interpreter must fail the same way on both.
    let ckpt: Vec<WeightId> =
        m.weights.iter().filter(|(_, w)| matches!(w.source, WeightSource::Checkpoint { .. })).map(|(h, _)| h).collect();
    if !ckpt.is_empty() && chance(&mut rng, 2) {
        let w = pick(&mut rng, &ckpt);
        let mut b = GraphBuilder::new(&m);
        let v = b.push1(Op::Weight(w), &[]).map_err(|e| e.to_string())?;
        b.output("w", v);
        functions.push(Function::new("read.checkpoint", b.into_graph()));
        inputs.push(("read.checkpoint".into(), HashMap::new()));
    }
    m.functions = functions;
    Ok(Case { module: m, inputs })
}

/// Kinds of leaf a value can be made from.
#[derive(Debug, Clone, Copy)]
enum Leaf {
    Input,
    Weight,
    Constant,
    Iota,
}

/// Builds one graph (a function, or a fusion body when `top` is false).
struct FnGen<'m> {
    m: &'m Module,
    b: GraphBuilder<'m>,
    rng: Rng,
    /// The value each symbol takes when the function runs.
    bind: BTreeMap<SymbolId, u64>,
    /// Symbols bound by an input earlier in the order (only those may appear in non-inputs).
    bound: BTreeSet<SymbolId>,
    top: bool,
    depth: usize,
    allow_empty: bool,
    /// Values ops may use as operands (small ones only).
    pool: Vec<ValueId>,
    inputs: HashMap<String, Tensor>,
    n_inputs: usize,
}

impl<'m> FnGen<'m> {
    fn new(
        m: &'m Module,
        rng: Rng,
        bind: BTreeMap<SymbolId, u64>,
        bound: BTreeSet<SymbolId>,
        top: bool,
        depth: usize,
        allow_empty: bool,
    ) -> Self {
        FnGen {
            m,
            b: GraphBuilder::new(m),
            rng,
            bind,
            bound,
            top,
            depth,
            allow_empty,
            pool: Vec::new(),
            inputs: HashMap::new(),
            n_inputs: 0,
        }
    }

    fn ty(&self, v: ValueId) -> TensorType {
        self.b.ty(v).cloned().expect("a value of this graph")
    }

    /// The run-time value of a dim.
    fn size(&self, d: Dim) -> u64 {
        match d {
            Dim::Const(c) => c,
            Dim::Sym(s) => self.bind.get(&s).copied().unwrap_or(1),
        }
    }

    fn numel(&self, t: &TensorType) -> u64 {
        t.shape.iter().fold(1u64, |n, &d| n.saturating_mul(self.size(d)))
    }

    fn keep(&mut self, v: ValueId) {
        let t = self.ty(v);
        if self.numel(&t) <= 2048 && t.rank() <= 5 {
            self.pool.push(v);
        }
    }

    fn push(&mut self, op: Op, args: &[ValueId]) -> G<Vec<ValueId>> {
        let types: Vec<TensorType> = args.iter().map(|&a| self.ty(a)).collect();
        let refs: Vec<&TensorType> = types.iter().collect();
        if let Ok(results) = lathe_ir::infer::infer(self.m, &op, &refs) {
            self.within_limits(&results)?;
        }
        let rs = self.b.push(op.clone(), args).map_err(|e| format!("{e}\n  op: {op:?}\n  operands: {types:?}"))?;
        for &r in &rs {
            self.keep(r);
        }
        Ok(rs)
    }

    /// [`SKIP`] unless every type is within the size limits.
    fn within_limits(&self, types: &[TensorType]) -> G<()> {
        if types.iter().all(|t| lathe_ir::verify::type_within_limits(self.m, t).is_ok()) {
            Ok(())
        } else {
            Err(SKIP.into())
        }
    }

    fn push1(&mut self, op: Op, args: &[ValueId]) -> G<ValueId> {
        let rs = self.push(op, args)?;
        match rs.as_slice() {
            [v] => Ok(*v),
            _ => Err(format!("expected one result, got {}", rs.len())),
        }
    }

    /// A dimension: a small constant, sometimes a symbol (any symbol where an input can bind
    /// it, else one already bound), rarely zero.
    fn dim(&mut self) -> Dim {
        let syms: Vec<SymbolId> = if self.top {
            self.m.symbols.iter().map(|(h, _)| h).collect()
        } else {
            self.bound.iter().copied().collect()
        };
        if !syms.is_empty() && chance(&mut self.rng, 4) {
            return Dim::Sym(pick(&mut self.rng, &syms));
        }
        if self.allow_empty && chance(&mut self.rng, 30) {
            return Dim::Const(0);
        }
        Dim::Const(self.cdim())
    }

    /// A positive constant dimension.
    fn cdim(&mut self) -> u64 {
        1 + self.rng.below(4) as u64
    }

    /// A dim that is a bound symbol or a positive constant (for shapes built from others).
    fn bound_dim(&mut self) -> Dim {
        let syms: Vec<SymbolId> = self.bound.iter().copied().collect();
        if !syms.is_empty() && chance(&mut self.rng, 4) {
            Dim::Sym(pick(&mut self.rng, &syms))
        } else {
            Dim::Const(self.cdim())
        }
    }

    fn shape(&mut self, lo: usize, hi: usize) -> Vec<Dim> {
        let rank = lo + self.rng.below(hi - lo + 1);
        (0..rank).map(|_| self.dim()).collect()
    }

    fn rand_ty(&mut self, dtypes: &[DType], lo: usize, hi: usize) -> TensorType {
        let dtype = pick(&mut self.rng, dtypes);
        TensorType::new(dtype, self.shape(lo, hi))
    }

    /// A pool value satisfying `pred` (recent ones preferred), or a fresh leaf of type `make`.
    fn operand(
        &mut self,
        pred: impl Fn(&TensorType) -> bool,
        make: impl FnOnce(&mut Self) -> TensorType,
    ) -> G<ValueId> {
        if !chance(&mut self.rng, 4) {
            let cands: Vec<ValueId> = self.pool.iter().copied().filter(|&v| pred(&self.ty(v))).collect();
            if !cands.is_empty() {
                // Half the time one of the newest, which makes long chains.
                let from = if chance(&mut self.rng, 2) { cands.len().saturating_sub(6) } else { 0 };
                return Ok(cands[from + self.rng.below(cands.len() - from)]);
            }
        }
        let t = make(self);
        if !pred(&t) {
            return Err(format!("generator made {t:?}, which its own predicate rejects"));
        }
        self.fresh(t)
    }

    /// An operand of exactly type `t`.
    fn exact(&mut self, t: TensorType) -> G<ValueId> {
        let want = t.clone();
        self.operand(move |u| *u == want, move |_| t)
    }

    /// A new leaf of type `ty`: an input, a weight of that type, a constant or an iota.
    fn fresh(&mut self, ty: TensorType) -> G<ValueId> {
        self.within_limits(std::slice::from_ref(&ty))?;
        let consts = ty.const_elements().is_some();
        let bound = ty.shape.iter().all(|d| match d {
            Dim::Const(_) => true,
            Dim::Sym(s) => self.bound.contains(s),
        });
        let weights: Vec<WeightId> = self
            .m
            .weights
            .iter()
            .filter(|(_, w)| w.ty == ty && matches!(w.source, WeightSource::Synthetic { .. }))
            .map(|(h, _)| h)
            .collect();
        let mut kinds = Vec::new();
        if self.top {
            kinds.push(Leaf::Input);
        }
        if !weights.is_empty() {
            kinds.extend([Leaf::Weight, Leaf::Weight]);
        }
        if consts {
            kinds.extend([Leaf::Constant, Leaf::Constant]);
        }
        if bound && ty.rank() >= 1 {
            kinds.push(Leaf::Iota);
        }
        if kinds.is_empty() {
            return Err(format!("no leaf can make {ty:?} here"));
        }
        match pick(&mut self.rng, &kinds) {
            Leaf::Input => self.input(ty),
            Leaf::Weight => {
                let w = pick(&mut self.rng, &weights);
                self.push1(Op::Weight(w), &[])
            }
            Leaf::Constant => {
                let n = ty.const_elements().unwrap_or(1);
                let values = self.const_values(ty.dtype, n);
                self.push1(Op::Constant(Constant { ty, values }), &[])
            }
            Leaf::Iota => {
                let axis = self.rng.below(ty.rank());
                // A narrow integer iota longer than its dtype's range is refused: count in i64
                // and cast.
                if !ty.dtype.is_float() && ty.dtype != DType::I64 {
                    let i = self.push1(Op::Iota(Iota { axis, ty: ty.with_dtype(DType::I64) }), &[])?;
                    self.push1(Op::Cast(ty.dtype), &[i])
                } else {
                    self.push1(Op::Iota(Iota { axis, ty }), &[])
                }
            }
        }
    }

    /// A top-level input with a random concrete argument.
    fn input(&mut self, ty: TensorType) -> G<ValueId> {
        let name = format!("{}{}", pick(&mut self.rng, &INPUT_NAMES), self.n_inputs);
        self.n_inputs += 1;
        let v = self.b.input(&name, ty.clone()).map_err(|e| e.to_string())?;
        let t = self.random_tensor(&ty);
        self.inputs.insert(name, t);
        for d in &ty.shape {
            if let Dim::Sym(s) = d {
                self.bound.insert(*s);
            }
        }
        self.keep(v);
        Ok(v)
    }

    fn random_tensor(&mut self, ty: &TensorType) -> Tensor {
        let shape: Vec<usize> = ty.shape.iter().map(|&d| self.size(d) as usize).collect();
        let n: usize = shape.iter().product();
        match ty.dtype {
            d if d.is_float() => {
                let scale = pick(&mut self.rng, &[1.0, 0.01, 100.0]);
                let vals = (0..n)
                    .map(|_| {
                        if chance(&mut self.rng, 50) {
                            pick(&mut self.rng, &AWKWARD) as f32
                        } else {
                            (self.rng.normal() * scale) as f32
                        }
                    })
                    .collect();
                Tensor::from_f32(d, shape, vals)
            }
            DType::U8 => Tensor::from_i64(DType::U8, shape, (0..n).map(|_| self.rng.below(4) as i64).collect()),
            DType::Bool => Tensor::from_i64(DType::Bool, shape, (0..n).map(|_| self.rng.below(2) as i64).collect()),
            d => Tensor::from_i64(d, shape, (0..n).map(|_| self.rng.below(7) as i64 - 3).collect()),
        }
    }

    /// Values of a constant: a splat, or `n` values when `n` is small.
    fn const_values(&mut self, dtype: DType, n: u64) -> Vec<f64> {
        let count = if n <= 48 && !chance(&mut self.rng, 3) { n as usize } else { 1 };
        (0..count).map(|_| self.scalar(dtype)).collect()
    }

    /// A constant value that fits `dtype` ([`lathe_ir::infer::literal_fits`]): awkward ones
    /// often, extremes of the integer types sometimes.
    fn scalar(&mut self, dtype: DType) -> f64 {
        for _ in 0..8 {
            let v = self.any_scalar(dtype);
            if lathe_ir::infer::literal_fits(dtype, v).is_ok() {
                return v;
            }
        }
        1.0
    }

    fn any_scalar(&mut self, dtype: DType) -> f64 {
        let r = &mut self.rng;
        match dtype {
            d if d.is_float() => match r.below(10) {
                0..=2 => pick(r, &AWKWARD),
                3 if chance(r, 4) => f64::NAN,
                4 => (r.below(9) as f64) - 4.0,
                _ => r.normal() * pick(r, &[1.0, 1e-3, 1e3, 1e-20]),
            },
            DType::Bool => r.below(2) as f64,
            DType::U8 => r.below(256) as f64,
            DType::I8 => r.below(256) as f64 - 128.0,
            DType::I32 => {
                if chance(r, 8) {
                    pick(r, &[2147483647.0, -2147483648.0, 65536.0])
                } else {
                    r.below(200) as f64 - 100.0
                }
            }
            _ => {
                if chance(r, 8) {
                    // The largest f64 below 2^63, and -2^63: the ends of i64.
                    pick(r, &[9.223372036854775e18, -9.223372036854776e18, 1e18, -1.0])
                } else {
                    r.below(200) as f64 - 100.0
                }
            }
        }
    }

    /// A shape that broadcasts against `shape`: a suffix with some dims set to 1, sometimes
    /// with a leading dim added.
    fn partner(&mut self, shape: &[Dim]) -> Vec<Dim> {
        let keep = self.rng.below(shape.len() + 1);
        let mut out: Vec<Dim> = shape[shape.len() - keep..]
            .iter()
            .map(|&d| if chance(&mut self.rng, 3) { Dim::Const(1) } else { d })
            .collect();
        if keep == shape.len() && shape.len() < 4 && chance(&mut self.rng, 5) {
            let d = self.bound_dim();
            out.insert(0, d);
        }
        out
    }

    /// Appends `n` random ops.
    fn ops(&mut self, n: usize) -> G<()> {
        for _ in 0..n {
            match self.op() {
                Err(e) if e == SKIP => {}
                r => r?,
            }
        }
        Ok(())
    }

    fn op(&mut self) -> G<()> {
        const TABLE: &[(usize, u8)] = &[
            (3, 0),  // leaf
            (4, 1),  // unary
            (4, 2),  // binary
            (2, 3),  // clamp
            (1, 4),  // where
            (3, 5),  // cast
            (2, 6),  // reduce
            (1, 7),  // softmax
            (2, 8),  // rms_norm
            (1, 9),  // layer_norm
            (2, 10), // reshape
            (1, 11), // transpose
            (2, 12), // slice
            (1, 13), // split
            (1, 14), // concat
            (1, 15), // broadcast
            (1, 16), // gather
            (1, 17), // pixel_shuffle
            (1, 18), // scatter_cache
            (1, 19), // amax
            (1, 20), // quantize
            (1, 21), // dequantize
            (2, 22), // matmul
            (1, 23), // scaled_matmul
            (1, 24), // attention
            (1, 25), // scan.ssd
            (1, 26), // conv1d.causal
            (1, 27), // conv2d.patch
            (2, 28), // fusion
            (1, 29), // sample
            (1, 30), // rope
        ];
        let total: usize = TABLE.iter().map(|t| t.0).sum();
        let mut k = self.rng.below(total);
        let mut which = 0;
        for &(w, id) in TABLE {
            if k < w {
                which = id;
                break;
            }
            k -= w;
        }
        match which {
            0 => {
                let t = self.rand_ty(&DType::ALL, 0, 3);
                self.fresh(t).map(drop)
            }
            1 => self.unary(),
            2 => self.binary(),
            3 => self.clamp(),
            4 => self.where_(),
            5 => self.cast(),
            6 => self.reduce(),
            7 => self.softmax(),
            8 | 9 => self.norm(which == 8),
            10 => self.reshape(),
            11 => self.transpose(),
            12 => self.slice(),
            13 => self.split(),
            14 => self.concat(),
            15 => self.broadcast(),
            16 => self.gather(),
            17 => self.pixel_shuffle(),
            18 => self.scatter_cache(),
            19 => self.amax(),
            20 => self.quantize(),
            21 => self.dequantize(),
            22 | 23 => self.matmul(which == 23),
            24 => self.attention(),
            25 => self.scan_ssd(),
            26 => self.conv1d(),
            27 => self.conv2d(),
            28 if self.depth < 2 => self.fusion(),
            30 => self.rope(),
            _ => self.sample(),
        }
    }

    fn any_operand(&mut self) -> G<ValueId> {
        self.operand(|_| true, |g| g.rand_ty(&DType::ALL, 0, 3))
    }

    fn float_operand(&mut self, lo: usize, hi: usize) -> G<ValueId> {
        self.operand(move |t| is_float(t) && (lo..=hi).contains(&t.rank()), move |g| g.rand_ty(&FLOATS, lo, hi))
    }

    fn unary(&mut self) -> G<()> {
        if chance(&mut self.rng, 6) {
            let x = self.operand(|t| SIGNED.contains(&t.dtype), |g| g.rand_ty(&SIGNED, 0, 3))?;
            return self.push1(Op::Unary(UnaryOp::Neg), &[x]).map(drop);
        }
        let u = pick(&mut self.rng, &UnaryOp::ALL);
        let x = self.float_operand(0, 4)?;
        self.push1(Op::Unary(u), &[x]).map(drop)
    }

    fn binary(&mut self) -> G<()> {
        let op = pick(&mut self.rng, &BinaryOp::ALL);
        let x = if op == BinaryOp::Div {
            self.float_operand(0, 4)?
        } else {
            self.operand(is_numeric, |g| {
                let d = if chance(&mut g.rng, 4) { pick(&mut g.rng, &INDEX) } else { pick(&mut g.rng, &FLOATS) };
                let shape = g.shape(0, 3);
                TensorType::new(d, shape)
            })?
        };
        let tx = self.ty(x);
        let y = if chance(&mut self.rng, 8) {
            x
        } else {
            let shape = self.partner(&tx.shape);
            self.exact(TensorType::new(tx.dtype, shape))?
        };
        let args = if chance(&mut self.rng, 2) { [x, y] } else { [y, x] };
        self.push1(Op::Binary(op), &args).map(drop)
    }

    fn clamp(&mut self) -> G<()> {
        let x = self.operand(is_numeric, |g| g.rand_ty(&[DType::F32, DType::BF16, DType::I32, DType::I8], 0, 3))?;
        let finite_or_inf: Vec<f64> = AWKWARD.to_vec();
        let mut min = (!chance(&mut self.rng, 3)).then(|| pick(&mut self.rng, &finite_or_inf));
        let mut max = (!chance(&mut self.rng, 3)).then(|| pick(&mut self.rng, &finite_or_inf));
        if let (Some(a), Some(b)) = (min, max) {
            if a > b {
                (min, max) = (Some(b), Some(a));
            }
        }
        self.push1(Op::Clamp(Clamp { min, max }), &[x]).map(drop)
    }

    fn where_(&mut self) -> G<()> {
        let a = self.operand(|t| t.rank() <= 3, |g| g.rand_ty(&DType::ALL, 0, 3))?;
        let ta = self.ty(a);
        let sb = self.partner(&ta.shape);
        let both = broadcast(&ta.shape, &sb);
        let b = self.exact(TensorType::new(ta.dtype, sb))?;
        let sc = self.partner(&both);
        let c = self.exact(TensorType::new(DType::Bool, sc))?;
        let args = if chance(&mut self.rng, 2) { [c, a, b] } else { [c, b, a] };
        self.push1(Op::Where, &args).map(drop)
    }

    fn cast(&mut self) -> G<()> {
        let x = self.any_operand()?;
        let to = pick(&mut self.rng, &DType::ALL);
        self.push1(Op::Cast(to), &[x]).map(drop)
    }

    fn reduce(&mut self) -> G<()> {
        let x = self.operand(
            |t| is_numeric(t) && t.rank() >= 1,
            |g| {
                let d = if chance(&mut g.rng, 4) { pick(&mut g.rng, &SIGNED) } else { pick(&mut g.rng, &FLOATS) };
                let shape = g.shape(1, 4);
                TensorType::new(d, shape)
            },
        )?;
        let t = self.ty(x);
        let mut axes: Vec<usize> = (0..t.rank()).filter(|_| chance(&mut self.rng, 2)).collect();
        if axes.is_empty() {
            axes.push(self.rng.below(t.rank()));
        }
        // A max or a mean over an empty axis is undefined (the verifier refuses it): a sum.
        let empty = axes.iter().any(|&a| t.shape[a] == Dim::Const(0));
        let kinds: &[ReduceKind] = if empty {
            &[ReduceKind::Sum]
        } else if t.dtype.is_int() {
            &[ReduceKind::Sum, ReduceKind::Max]
        } else {
            &ReduceKind::ALL
        };
        let kind = pick(&mut self.rng, kinds);
        let keep_dims = chance(&mut self.rng, 2);
        self.push1(Op::Reduce(Reduce { kind, axes, keep_dims }), &[x]).map(drop)
    }

    fn softmax(&mut self) -> G<()> {
        let x = self.float_operand(1, 4)?;
        let t = self.ty(x);
        let axes: Vec<usize> = (0..t.rank()).filter(|&a| t.shape[a] != Dim::Const(0)).collect();
        if axes.is_empty() {
            return Err(SKIP.into());
        }
        let axis = pick(&mut self.rng, &axes);
        self.push1(Op::Softmax(Softmax { axis }), &[x]).map(drop)
    }

    fn eps(&mut self) -> f64 {
        pick(&mut self.rng, &[1e-5, 1e-6, 0.0, 1e-30, 0.1, 5e-324])
    }

    fn norm(&mut self, rms: bool) -> G<()> {
        let x = self.operand(
            |t| is_float(t) && t.last_dim().and_then(const_of).is_some_and(|d| d >= 1),
            |g| {
                let mut t = g.rand_ty(&FLOATS, 0, 3);
                let d = g.cdim();
                t.shape.push(Dim::Const(d));
                t
            },
        )?;
        let tx = self.ty(x);
        let d = tx.last_dim().and_then(const_of).unwrap_or(1);
        let wd = pick(&mut self.rng, &FLOATS);
        let w =
            self.operand(move |t| is_float(t) && t.shape == [Dim::Const(d)], move |_| TensorType::fixed(wd, &[d]))?;
        let eps = self.eps();
        if rms {
            let divisors: Vec<u64> = (1..=d).filter(|g| d.is_multiple_of(*g)).collect();
            let groups = pick(&mut self.rng, &divisors);
            let mut args = vec![x, w];
            if chance(&mut self.rng, 2) {
                let shape = tx.shape.clone();
                let zd = pick(&mut self.rng, &FLOATS);
                let z = self.operand(move |t| is_float(t) && t.shape == shape, |_| TensorType::new(zd, tx.shape))?;
                args.push(z);
            }
            self.push1(Op::RmsNorm(Norm { eps, groups }), &args).map(drop)
        } else {
            let bd = pick(&mut self.rng, &FLOATS);
            let b =
                self.operand(move |t| is_float(t) && t.shape == [Dim::Const(d)], move |_| TensorType::fixed(bd, &[d]))?;
            self.push1(Op::LayerNorm(Norm { eps, groups: 1 }), &[x, w, b]).map(drop)
        }
    }

    fn reshape(&mut self) -> G<()> {
        let x = self.operand(|t| t.rank() <= 4, |g| g.rand_ty(&DType::ALL, 0, 4))?;
        let t = self.ty(x);
        let mut product = 1u64;
        let mut dims: Vec<Dim> = Vec::new();
        for d in &t.shape {
            match d {
                Dim::Const(c) => product *= c,
                Dim::Sym(_) => dims.push(*d),
            }
        }
        if product == 0 {
            dims.push(Dim::Const(0));
        } else {
            // Split the constant product into random factors.
            let mut rest = product;
            while rest > 1 {
                let divisors: Vec<u64> = (2..=rest).filter(|f| rest.is_multiple_of(*f)).collect();
                let f = if chance(&mut self.rng, 2) { rest } else { pick(&mut self.rng, &divisors) };
                dims.push(Dim::Const(f));
                rest /= f;
            }
        }
        while dims.len() < 5 && chance(&mut self.rng, 3) {
            dims.push(Dim::Const(1));
        }
        shuffle(&mut self.rng, &mut dims);
        self.push1(Op::Reshape(dims), &[x]).map(drop)
    }

    fn transpose(&mut self) -> G<()> {
        let x = self.any_operand()?;
        let mut perm: Vec<usize> = (0..self.ty(x).rank()).collect();
        shuffle(&mut self.rng, &mut perm);
        self.push1(Op::Transpose(perm), &[x]).map(drop)
    }

    fn slice(&mut self) -> G<()> {
        let x = self.operand(
            |t| t.rank() >= 1 && t.shape.iter().any(|d| d.as_const() != Some(0)),
            |g| {
                let d = g.cdim();
                let mut t = g.rand_ty(&DType::ALL, 0, 3);
                t.shape.push(Dim::Const(d));
                t
            },
        )?;
        let t = self.ty(x);
        let axes: Vec<usize> = (0..t.rank()).filter(|&a| t.shape[a].as_const() != Some(0)).collect();
        let axis = pick(&mut self.rng, &axes);
        let (start, end) = match t.shape[axis] {
            Dim::Const(n) => {
                let n = n as i64;
                let a = self.rng.below(n as usize) as i64;
                let b = a + 1 + self.rng.below((n - a) as usize) as i64;
                let start = if chance(&mut self.rng, 2) { a - n } else { a };
                let end = if b == n {
                    pick(&mut self.rng, &[None, Some(n)])
                } else if chance(&mut self.rng, 2) {
                    Some(b - n)
                } else {
                    Some(b)
                };
                (start, end)
            }
            Dim::Sym(s) => {
                let r = self.bind.get(&s).copied().unwrap_or(1) as i64;
                match self.rng.below(4) {
                    0 => (0, None),
                    1 => (-(1 + self.rng.below(r as usize) as i64), None),
                    2 => {
                        let a = self.rng.below(r as usize) as i64;
                        (a, Some(a + 1 + self.rng.below((r - a) as usize) as i64))
                    }
                    _ if r >= 2 => {
                        let e = -(1 + self.rng.below(r as usize - 1) as i64);
                        (e - 1 - self.rng.below((r + e) as usize) as i64, Some(e))
                    }
                    _ => (0, None),
                }
            }
        };
        self.push1(Op::Slice(Slice { axis, start, end }), &[x]).map(drop)
    }

    fn split(&mut self) -> G<()> {
        let x = self.operand(
            |t| t.shape.iter().any(|d| d.as_const().is_some()),
            |g| {
                let d = g.cdim() + 1;
                let mut t = g.rand_ty(&DType::ALL, 0, 2);
                t.shape.push(Dim::Const(d));
                t
            },
        )?;
        let t = self.ty(x);
        let axes: Vec<usize> = (0..t.rank()).filter(|&a| t.shape[a].as_const().is_some()).collect();
        let axis = pick(&mut self.rng, &axes);
        let mut rest = t.shape[axis].as_const().unwrap_or(0);
        let mut sizes = Vec::new();
        while rest > 0 && sizes.len() < 3 {
            let s = 1 + self.rng.below(rest as usize) as u64;
            sizes.push(s);
            rest -= s;
        }
        if rest > 0 || sizes.is_empty() || (self.allow_empty && chance(&mut self.rng, 4)) {
            sizes.push(rest);
        }
        self.push(Op::Split(Split { axis, sizes }), &[x]).map(drop)
    }

    fn concat(&mut self) -> G<()> {
        let x = self.operand(
            |t| t.shape.iter().any(|d| d.as_const().is_some()),
            |g| {
                let d = g.cdim();
                let mut t = g.rand_ty(&DType::ALL, 0, 2);
                t.shape.insert(0, Dim::Const(d));
                t
            },
        )?;
        let t = self.ty(x);
        let axes: Vec<usize> = (0..t.rank()).filter(|&a| t.shape[a].as_const().is_some()).collect();
        let axis = pick(&mut self.rng, &axes);
        let mut args = vec![x];
        for _ in 0..self.rng.below(3) {
            if chance(&mut self.rng, 4) {
                args.push(x);
            } else {
                let mut u = t.clone();
                u.shape[axis] = Dim::Const(self.cdim());
                args.push(self.exact(u)?);
            }
        }
        shuffle(&mut self.rng, &mut args);
        self.push1(Op::Concat(axis), &args).map(drop)
    }

    fn broadcast(&mut self) -> G<()> {
        let x = self.operand(|t| t.rank() <= 3, |g| g.rand_ty(&DType::ALL, 0, 3))?;
        let mut shape: Vec<Dim> = Vec::new();
        for _ in 0..self.rng.below(2) {
            shape.push(self.bound_dim());
        }
        for &d in &self.ty(x).shape {
            shape.push(if d == Dim::Const(1) && chance(&mut self.rng, 2) { self.bound_dim() } else { d });
        }
        self.push1(Op::Broadcast(shape), &[x]).map(drop)
    }

    fn gather(&mut self) -> G<()> {
        let table = self.operand(
            |t| (1..=3).contains(&t.rank()) && t.shape[0].as_const().is_some_and(|v| v >= 1),
            |g| {
                let v = g.cdim();
                let mut t = g.rand_ty(&DType::ALL, 0, 2);
                t.shape.insert(0, Dim::Const(v));
                t
            },
        )?;
        let v = self.ty(table).shape[0].as_const().unwrap_or(1).min(100);
        let dtype = pick(&mut self.rng, &INDEX);
        let rank = self.rng.below(3);
        let shape: Vec<u64> = (0..rank).map(|_| self.cdim()).collect();
        let n: u64 = shape.iter().product();
        let count = if chance(&mut self.rng, 4) { 1 } else { n };
        let values = (0..count).map(|_| self.rng.below(v as usize) as f64).collect();
        let idx = self.push1(Op::Constant(Constant { ty: TensorType::fixed(dtype, &shape), values }), &[])?;
        self.push1(Op::Gather, &[table, idx]).map(drop)
    }

    fn pixel_shuffle(&mut self) -> G<()> {
        let r = 1 + self.rng.below(2) as u64;
        let x = self.operand(
            move |t| {
                t.rank() == 4
                    && t.shape[1..].iter().all(|d| d.as_const().is_some())
                    && t.shape[1].as_const().is_some_and(|h| h % r == 0)
                    && t.shape[2].as_const().is_some_and(|w| w % r == 0)
            },
            move |g| {
                let b = g.bound_dim();
                let dtype = pick(&mut g.rng, &DType::ALL);
                let (h, w, c) = (r * (1 + g.rng.below(2) as u64), r * (1 + g.rng.below(2) as u64), g.cdim());
                TensorType::new(dtype, [b, Dim::Const(h), Dim::Const(w), Dim::Const(c)])
            },
        )?;
        self.push1(Op::PixelShuffle(r), &[x]).map(drop)
    }

    fn scatter_cache(&mut self) -> G<()> {
        let cache = self.operand(
            |t| (2..=4).contains(&t.rank()) && t.shape[..2].iter().all(|d| d.as_const().is_some_and(|c| c >= 1)),
            |g| {
                let (b, cap) = (g.cdim(), g.cdim() + 1);
                let mut t = g.rand_ty(&DType::ALL, 0, 2);
                t.shape.splice(0..0, [Dim::Const(b), Dim::Const(cap)]);
                t
            },
        )?;
        let tc = self.ty(cache);
        let (b, cap) = (tc.shape[0].as_const().unwrap_or(1), tc.shape[1].as_const().unwrap_or(1));
        let s = 1 + self.rng.below(cap as usize) as u64;
        let mut tn = tc.clone();
        tn.shape[1] = Dim::Const(s);
        let new = self.exact(tn)?;
        let past: Vec<f64> = (0..b).map(|_| self.rng.below((cap - s + 1) as usize) as f64).collect();
        let past = self.push1(Op::Constant(Constant { ty: TensorType::fixed(DType::I64, &[b]), values: past }), &[])?;
        self.push1(Op::ScatterCache, &[cache, new, past]).map(drop)
    }

    fn amax(&mut self) -> G<()> {
        let x = self.float_operand(0, 4)?;
        self.push1(Op::Amax, &[x]).map(drop)
    }

    /// A dequant scale for `x`: `f32[]` or `f32[last dim]`.
    fn scale_for(&mut self, x: &TensorType) -> G<ValueId> {
        let shape = match x.last_dim() {
            Some(d) if chance(&mut self.rng, 2) => vec![d],
            _ => vec![],
        };
        self.exact(TensorType::new(DType::F32, shape))
    }

    fn quantize(&mut self) -> G<()> {
        let x = self.float_operand(0, 3)?;
        let s = self.scale_for(&self.ty(x))?;
        let to = pick(&mut self.rng, &FP8);
        self.push1(Op::Quantize(to), &[x, s]).map(drop)
    }

    fn dequantize(&mut self) -> G<()> {
        let q = self.operand(|t| t.dtype.is_fp8(), |g| g.rand_ty(&FP8, 0, 3))?;
        let s = self.scale_for(&self.ty(q))?;
        let to = pick(&mut self.rng, &FLOATS);
        self.push1(Op::Dequantize(to), &[q, s]).map(drop)
    }

    fn matmul(&mut self, scaled: bool) -> G<()> {
        let dts: &'static [DType] = if scaled { &FP8 } else { &FLOATS };
        let a = self
            .operand(move |t| dts.contains(&t.dtype) && (2..=4).contains(&t.rank()), move |g| g.rand_ty(dts, 2, 3))?;
        let ta = self.ty(a);
        let ra = ta.rank();
        let transpose_a = chance(&mut self.rng, 3);
        let transpose_b = chance(&mut self.rng, 2);
        let k = if transpose_a { ta.shape[ra - 2] } else { ta.shape[ra - 1] };
        let n = self.bound_dim();
        let kn = if transpose_b { [n, k] } else { [k, n] };
        let mut shape_b: Vec<Dim> =
            if ra > 2 && chance(&mut self.rng, 2) { ta.shape[..ra - 2].to_vec() } else { vec![] };
        shape_b.extend(kn);
        let bd = pick(&mut self.rng, dts);
        let want = shape_b.clone();
        let b =
            self.operand(move |t| dts.contains(&t.dtype) && t.shape == want, move |_| TensorType::new(bd, shape_b))?;
        let out = pick(&mut self.rng, &ALL_FLOATS);
        let mm = Matmul { transpose_a, transpose_b, out };
        if scaled {
            let sa = self.exact(TensorType::scalar(DType::F32))?;
            let sb_shape = if chance(&mut self.rng, 2) { vec![n] } else { vec![] };
            let sb = self.exact(TensorType::new(DType::F32, sb_shape))?;
            self.push1(Op::ScaledMatmul(mm), &[a, b, sa, sb]).map(drop)
        } else {
            let (x, y) = if ra == 2 && chance(&mut self.rng, 4) {
                // A rank-2 lhs shared by a batched rhs.
                let batch = self.bound_dim();
                let mut sb = vec![batch];
                sb.extend(kn);
                (a, self.exact(TensorType::new(bd, sb))?)
            } else {
                (a, b)
            };
            self.push1(Op::Matmul(mm), &[x, y]).map(drop)
        }
    }

    fn rope(&mut self) -> G<()> {
        let rope = RopeAttrs {
            theta: pick(&mut self.rng, &[10000.0, 1e6, 0.5]),
            scale: pick(&mut self.rng, &[1.0, 8.0, 0.25]),
        };
        let (b, s) = (self.bound_dim(), self.bound_dim());
        let (h, d) = (self.cdim(), 2 * (1 + self.rng.below(3) as u64));
        let fd = pick(&mut self.rng, &FLOATS);
        let x = self.exact(TensorType::new(fd, [b, s, Dim::Const(h), Dim::Const(d)]))?;
        let pos = self.exact(TensorType::new(DType::I64, [b, s]))?;
        self.push1(Op::Rope(rope), &[x, pos]).map(drop)
    }

    fn attention(&mut self) -> G<()> {
        let mask = pick(&mut self.rng, &MaskKind::ALL);
        let b = self.cdim().min(2);
        let s = self.bound_dim();
        let s_now = self.size(s);
        let t = s_now + self.rng.below(3) as u64;
        let hkv = 1 + self.rng.below(2) as u64;
        let hq = hkv * (1 + self.rng.below(2) as u64);
        let d = self.cdim();
        let dv = self.cdim();
        let fd = pick(&mut self.rng, &FLOATS);
        let q = self.exact(TensorType::new(fd, [Dim::Const(b), s, Dim::Const(hq), Dim::Const(d)]))?;
        let kd = pick(&mut self.rng, &FLOATS);
        let k = self.exact(TensorType::fixed(kd, &[b, t, hkv, d]))?;
        let v = self.exact(TensorType::fixed(kd, &[b, t, hkv, dv]))?;
        let lo = if mask == MaskKind::Causal { s_now } else { 0 };
        let lens: Vec<f64> = (0..b).map(|_| (lo + self.rng.below((t - lo + 1) as usize) as u64) as f64).collect();
        let len = self.push1(Op::Constant(Constant { ty: TensorType::fixed(DType::I64, &[b]), values: lens }), &[])?;
        let scale = pick(&mut self.rng, &[0.5, 1e-30, -0.0, 0.35355339059327373, -3.0]);
        self.push1(Op::Attention(Attention { mask, scale }), &[q, k, v, len]).map(drop)
    }

    fn scan_ssd(&mut self) -> G<()> {
        let (b, s) = (self.bound_dim(), self.bound_dim());
        let g = 1 + self.rng.below(2) as u64;
        let h = g * (1 + self.rng.below(2) as u64);
        let (p, n) = (self.cdim(), self.cdim());
        let (hd, pd, gd, nd) = (Dim::Const(h), Dim::Const(p), Dim::Const(g), Dim::Const(n));
        let mut f = || pick(&mut self.rng, &FLOATS);
        let dts = [f(), f(), f(), f(), f()];
        let x = self.exact(TensorType::new(dts[0], [b, s, hd, pd]))?;
        let dt = self.exact(TensorType::new(dts[1], [b, s, hd]))?;
        let a = self.exact(TensorType::new(dts[2], [hd]))?;
        let bm = self.exact(TensorType::new(dts[3], [b, s, gd, nd]))?;
        let cm = self.exact(TensorType::new(dts[3], [b, s, gd, nd]))?;
        let s0 = self.exact(TensorType::new(dts[4], [b, hd, pd, nd]))?;
        let chunk = pick(&mut self.rng, &[1, 4, 128, 1 << 40]);
        self.push(Op::ScanSsd(ScanSsd { chunk }), &[x, dt, a, bm, cm, s0]).map(drop)
    }

    fn conv1d(&mut self) -> G<()> {
        let (b, s, c) = (self.bound_dim(), self.bound_dim(), self.cdim());
        let w = self.cdim();
        let mut f = || pick(&mut self.rng, &FLOATS);
        let dts = [f(), f(), f(), f()];
        let x = self.exact(TensorType::new(dts[0], [b, s, Dim::Const(c)]))?;
        let wt = self.exact(TensorType::fixed(dts[1], &[c, w]))?;
        let bias = self.exact(TensorType::fixed(dts[2], &[c]))?;
        let st = self.exact(TensorType::new(dts[3], [b, Dim::Const(w - 1), Dim::Const(c)]))?;
        self.push(Op::Conv1dCausal, &[x, wt, bias, st]).map(drop)
    }

    fn conv2d(&mut self) -> G<()> {
        let p = 1 + self.rng.below(2) as u64;
        let (b, c, o) = (self.bound_dim(), self.cdim(), self.cdim());
        let (h, w) = (p * self.cdim().min(2), p * self.cdim().min(2));
        let mut f = || pick(&mut self.rng, &FLOATS);
        let dts = [f(), f(), f()];
        let x = self.exact(TensorType::new(dts[0], [b, Dim::Const(c), Dim::Const(h), Dim::Const(w)]))?;
        let wt = self.exact(TensorType::fixed(dts[1], &[o, c, p, p]))?;
        let bias = self.exact(TensorType::fixed(dts[2], &[o]))?;
        self.push1(Op::Conv2dPatch(Conv2dPatch { patch: p }), &[x, wt, bias]).map(drop)
    }

    fn fusion(&mut self) -> G<()> {
        let mut args = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            args.push(self.any_operand()?);
        }
        let mut sub = FnGen::new(
            self.m,
            Rng::new(self.rng.next_u64()),
            self.bind.clone(),
            self.bound.clone(),
            false,
            self.depth + 1,
            self.allow_empty,
        );
        for (i, &a) in args.iter().enumerate() {
            let name = if chance(&mut self.rng, 2) {
                format!("in{i}")
            } else {
                format!("{}{i}", pick(&mut self.rng, &INPUT_NAMES))
            };
            let v = sub.b.input(&name, self.ty(a)).map_err(|e| e.to_string())?;
            sub.pool.push(v);
        }
        sub.ops(1 + self.rng.below(5))?;
        let nout = 1 + self.rng.below(2);
        let last = sub.pool.len().saturating_sub(3);
        for _ in 0..nout {
            let v = sub.pool[last + sub.rng.below(sub.pool.len() - last)];
            let name = if chance(&mut self.rng, 2) { String::new() } else { pick(&mut self.rng, &OUTPUT_NAMES).into() };
            sub.b.output(&name, v);
        }
        let strategy = pick(&mut self.rng, &KernelStrategy::ALL);
        let body = sub.b.into_graph();
        self.push(Op::Fusion(Box::new(Fusion { strategy, body })), &args).map(drop)
    }

    fn sample(&mut self) -> G<()> {
        let logits = self.float_operand(2, 2)?;
        if self.ty(logits).shape[1] == Dim::Const(0) {
            return Err(SKIP.into());
        }
        let offset = self.exact(TensorType::scalar(DType::I64))?;
        let seed = self.rng.next_u64();
        let temperature = pick(&mut self.rng, &[0.0, 0.0, 1.0, 0.7, 1e-30, 2.5, 1e10]);
        let top_k = chance(&mut self.rng, 2).then(|| 1 + self.rng.below(5) as u64);
        let top_p = chance(&mut self.rng, 2).then(|| pick(&mut self.rng, &[1.0, 0.9, 0.5, 1e-30, 0.25]));
        self.push1(Op::Sample(Sample { seed, temperature, top_k, top_p }), &[logits, offset]).map(drop)
    }

    /// Returns 1 to 3 pool values (the newest always) under unique names.
    fn outputs(&mut self) -> G<()> {
        if self.pool.is_empty() {
            let t = self.rand_ty(&DType::ALL, 0, 2);
            match self.fresh(t) {
                Err(e) if e == SKIP => self.fresh(TensorType::scalar(DType::F32)).map(drop)?,
                r => r.map(drop)?,
            }
        }
        let newest = *self.pool.last().ok_or("empty pool")?;
        let mut outs = vec![newest];
        for _ in 0..self.rng.below(3) {
            outs.push(pick(&mut self.rng, &self.pool.clone()));
        }
        for (i, v) in outs.into_iter().enumerate() {
            let name = if chance(&mut self.rng, 6) {
                String::new()
            } else {
                format!("{}{i}", pick(&mut self.rng, &OUTPUT_NAMES))
            };
            self.b.output(&name, v);
        }
        Ok(())
    }
}
