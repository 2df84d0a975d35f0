//! Typing rules: the result types of an op from its operand types and attributes.
//!
//! The builder calls [`infer`] to type new nodes; the verifier calls it to check declared
//! result types. Messages name the offending operand and both shapes.

use crate::module::Module;
use crate::ops::{MaskKind, Op, UnaryOp};
use crate::types::{DType, Dim, TensorType};

/// Renders a type with the module's symbol names (`bf16[B, S, 64]`).
pub fn type_str(m: &Module, t: &TensorType) -> String {
    format!("{}[{}]", t.dtype, shape_str(m, &t.shape))
}

/// Renders a shape with the module's symbol names (`B, S, 64`).
pub fn shape_str(m: &Module, shape: &[Dim]) -> String {
    shape.iter().map(|d| dim_str(m, *d)).collect::<Vec<_>>().join(", ")
}

/// Renders one dim.
pub fn dim_str(m: &Module, d: Dim) -> String {
    match d {
        Dim::Const(c) => c.to_string(),
        Dim::Sym(s) => m.symbols.get(s).map_or_else(|| format!("?sym{}", s.index()), |s| s.name.clone()),
    }
}

type R<T> = Result<T, String>;

fn float(m: &Module, what: &str, t: &TensorType) -> R<()> {
    if t.dtype.is_float() && !t.dtype.is_fp8() {
        Ok(())
    } else {
        Err(format!("{what} must be f32, f16 or bf16, got {}", type_str(m, t)))
    }
}

fn rank(m: &Module, what: &str, t: &TensorType, r: usize) -> R<()> {
    if t.rank() == r {
        Ok(())
    } else {
        Err(format!("{what} must have rank {r}, got {}", type_str(m, t)))
    }
}

fn same_dim(m: &Module, what: &str, a: Dim, b: Dim) -> R<()> {
    if a == b {
        Ok(())
    } else {
        Err(format!("{what}: {} vs {}", dim_str(m, a), dim_str(m, b)))
    }
}

fn const_dim(m: &Module, what: &str, d: Dim) -> R<u64> {
    d.as_const().ok_or_else(|| format!("{what} must be a constant dimension, got {}", dim_str(m, d)))
}

/// Numpy broadcasting of two shapes (right-aligned; equal dims or a constant 1).
pub fn broadcast_shapes(m: &Module, a: &[Dim], b: &[Dim]) -> R<Vec<Dim>> {
    let r = a.len().max(b.len());
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let da = (i + a.len()).checked_sub(r).map_or(Dim::Const(1), |j| a[j]);
        let db = (i + b.len()).checked_sub(r).map_or(Dim::Const(1), |j| b[j]);
        out.push(match (da, db) {
            _ if da == db => da,
            (Dim::Const(1), d) | (d, Dim::Const(1)) => d,
            _ => return Err(format!("shapes [{}] and [{}] do not broadcast", shape_str(m, a), shape_str(m, b))),
        });
    }
    Ok(out)
}

/// Whether two shapes hold the same number of elements for every binding of the symbols. A
/// product of constant dims past `u128` cannot be compared, and counts as different (no such
/// type verifies: see [`crate::limits::MAX_ELEMENTS`]).
pub fn same_numel(a: &[Dim], b: &[Dim]) -> bool {
    let split = |s: &[Dim]| {
        let mut c = Some(1u128);
        let mut syms = Vec::new();
        for d in s {
            match d {
                Dim::Const(v) => c = c.and_then(|c| c.checked_mul(u128::from(*v))),
                Dim::Sym(x) => syms.push(x.index()),
            }
        }
        // A zero makes the product zero whatever overflowed before it.
        if s.contains(&Dim::Const(0)) {
            c = Some(0);
        }
        syms.sort_unstable();
        (c, syms)
    };
    let (ca, sa) = split(a);
    let (cb, sb) = split(b);
    match (ca, cb) {
        // An empty tensor is empty whatever its symbols are.
        (Some(0), Some(0)) => true,
        (Some(ca), Some(cb)) => ca == cb && sa == sb,
        _ => false,
    }
}

/// Whether constant value `v` fits dtype `dtype`, and why not.
///
/// - integers (`i64`, `i32`, `i8`, `u8`): a whole number in the dtype's range, so `300` is not
///   an `i8` and `-1` not a `u8` (no wrapping, no saturation);
/// - `bool`: 0 or 1;
/// - floats: any value the dtype rounds to a finite value, and NaN and ±infinity as they are.
///   A finite value is first rounded to f32 (the interpreter's arithmetic), then to the dtype;
///   one that overflows there (to infinity in f32, f16 and bf16; past the largest finite value
///   of f8e4m3 (448) or f8e5m2 (57344), which saturate) is refused: a finite literal must
///   not silently become infinity or the largest finite value.
pub fn literal_fits(dtype: DType, v: f64) -> Result<(), String> {
    let range = |lo: f64, hi_exclusive: f64| -> Result<(), String> {
        if !v.is_finite() || v.fract() != 0.0 {
            Err(format!("{dtype} constant holds non-integer value {v}"))
        } else if v < lo || v >= hi_exclusive {
            Err(format!("{dtype} constant holds {v}, outside the range of {dtype}"))
        } else {
            Ok(())
        }
    };
    match dtype {
        DType::I64 => range(-(2f64.powi(63)), 2f64.powi(63)),
        DType::I32 => range(-(2f64.powi(31)), 2f64.powi(31)),
        DType::I8 => range(-128.0, 128.0),
        DType::U8 => range(0.0, 256.0),
        DType::Bool if v == 0.0 || v == 1.0 => Ok(()),
        DType::Bool => Err(format!("bool constant holds {v} (expected 0 or 1)")),
        _ if !v.is_finite() => Ok(()),
        DType::F32 | DType::F16 | DType::BF16 => {
            let x = v as f32;
            let rounded = match dtype {
                DType::F16 => lathe_numerics::round_to_f16(x),
                DType::BF16 => lathe_numerics::round_to_bf16(x),
                _ => x,
            };
            if rounded.is_finite() {
                Ok(())
            } else {
                Err(format!("{dtype} constant holds {v}, which overflows {dtype} to infinity"))
            }
        }
        DType::F8E4M3 | DType::F8E5M2 => {
            // The codes of the largest finite values: 0x7E is 448 in E4M3, 0x7B 57344 in E5M2.
            let max = if dtype == DType::F8E4M3 {
                lathe_numerics::e4m3_to_f32(0x7E)
            } else {
                lathe_numerics::e5m2_to_f32(0x7B)
            };
            if (v as f32).abs() <= max {
                Ok(())
            } else {
                Err(format!("{dtype} constant holds {v}, beyond the largest finite {dtype} value {max}"))
            }
        }
    }
}

/// Refuses a reduction over an axis that is statically empty, for ops whose result would be
/// undefined there (a max, a mean, a softmax, a norm, a draw from no tokens).
fn nonempty(d: Dim, what: impl FnOnce() -> String) -> R<()> {
    if d == Dim::Const(0) {
        Err(format!("{} is empty: the result is undefined over no elements", what()))
    } else {
        Ok(())
    }
}

fn scale_ok(m: &Module, what: &str, scale: &TensorType, x: &TensorType) -> R<()> {
    if scale.dtype != DType::F32 {
        return Err(format!("{what} must be f32, got {}", type_str(m, scale)));
    }
    match scale.shape.as_slice() {
        [] => Ok(()),
        [d] if Some(*d) == x.last_dim() => Ok(()),
        _ => Err(format!(
            "{what} must be f32[] or f32[{}], got {}",
            x.last_dim().map_or("?".into(), |d| dim_str(m, d)),
            type_str(m, scale)
        )),
    }
}

/// Result types of `op` applied to operands of types `args`.
pub fn infer(m: &Module, op: &Op, args: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (lo, hi) = op.arity();
    if args.len() < lo || hi.is_some_and(|h| args.len() > h) {
        let want = match hi {
            Some(h) if h == lo => format!("{lo}"),
            Some(h) => format!("{lo} to {h}"),
            None => format!("at least {lo}"),
        };
        return Err(format!("takes {want} operands, got {}", args.len()));
    }
    let one = |t: TensorType| Ok(vec![t]);
    match op {
        Op::Input(a) => one(a.ty.clone()),
        Op::Weight(w) => match m.weights.get(*w) {
            Some(w) => one(w.ty.clone()),
            None => Err(format!("unknown weight #{}", w.index())),
        },
        Op::Constant(c) => {
            let n =
                c.ty.const_elements()
                    .ok_or_else(|| format!("constant type {} must have constant dims", type_str(m, &c.ty)))?;
            if c.values.len() != 1 && c.values.len() as u64 != n {
                return Err(format!("constant holds {} values for {} elements", c.values.len(), n));
            }
            if let Some(e) = c.values.iter().find_map(|&v| literal_fits(c.ty.dtype, v).err()) {
                return Err(e);
            }
            one(c.ty.clone())
        }
        Op::Iota(a) => {
            if a.axis >= a.ty.rank() {
                return Err(format!("axis {} out of range for {}", a.axis, type_str(m, &a.ty)));
            }
            if a.ty.dtype == DType::Bool {
                return Err("iota cannot produce bool".into());
            }
            // In an integer dtype the largest index written must fit, as a literal must: an
            // `i8` iota of 300 would wrap. (A float iota rounds like any float result.)
            let len = match a.ty.shape[a.axis] {
                _ if a.ty.dtype.is_float() => None,
                Dim::Const(c) => Some(c),
                Dim::Sym(s) => m.symbols.get(s).map(|s| s.max),
            };
            if let Some(len) = len.filter(|&n| n > 0) {
                if let Err(e) = literal_fits(a.ty.dtype, (len - 1) as f64) {
                    return Err(format!("iota along axis {} of {}: {e}", a.axis, type_str(m, &a.ty)));
                }
            }
            one(a.ty.clone())
        }
        Op::Matmul(mm) | Op::ScaledMatmul(mm) => {
            let (a, b) = (args[0], args[1]);
            if let Op::ScaledMatmul(_) = op {
                if !a.dtype.is_fp8() || !b.dtype.is_fp8() {
                    return Err(format!("operands must be fp8, got {} and {}", type_str(m, a), type_str(m, b)));
                }
            } else {
                float(m, "lhs", a)?;
                float(m, "rhs", b)?;
            }
            if !mm.out.is_float() {
                return Err(format!("result dtype must be float, got {}", mm.out));
            }
            if a.rank() < 2 || b.rank() < 2 {
                return Err(format!("operands need rank >= 2, got {} and {}", type_str(m, a), type_str(m, b)));
            }
            let (ra, rb) = (a.rank(), b.rank());
            let (am, ak) =
                if mm.transpose_a { (a.shape[ra - 1], a.shape[ra - 2]) } else { (a.shape[ra - 2], a.shape[ra - 1]) };
            let (bk, bn) =
                if mm.transpose_b { (b.shape[rb - 1], b.shape[rb - 2]) } else { (b.shape[rb - 2], b.shape[rb - 1]) };
            same_dim(m, "contraction dims differ", ak, bk)?;
            let batch = match (ra, rb) {
                (_, 2) => a.shape[..ra - 2].to_vec(),
                (2, _) => b.shape[..rb - 2].to_vec(),
                _ if a.shape[..ra - 2] == b.shape[..rb - 2] => a.shape[..ra - 2].to_vec(),
                _ => return Err(format!("batch dims differ: {} vs {}", type_str(m, a), type_str(m, b))),
            };
            if let Op::ScaledMatmul(_) = op {
                let (sa, sb) = (args[2], args[3]);
                if sa.dtype != DType::F32 || sa.rank() != 0 {
                    return Err(format!("lhs scale must be f32[], got {}", type_str(m, sa)));
                }
                let per_channel = sb.shape.as_slice() == [bn];
                if sb.dtype != DType::F32 || !(sb.rank() == 0 || per_channel) {
                    return Err(format!("rhs scale must be f32[] or f32[{}], got {}", dim_str(m, bn), type_str(m, sb)));
                }
            }
            let mut shape = batch;
            shape.extend([am, bn]);
            one(TensorType::new(mm.out, shape))
        }
        Op::Attention(at) => {
            let (q, k, v, len) = (args[0], args[1], args[2], args[3]);
            for (what, t) in [("q", q), ("k", k), ("v", v)] {
                float(m, what, t)?;
                rank(m, what, t, 4)?;
            }
            same_dim(m, "q and k batch differ", q.shape[0], k.shape[0])?;
            same_dim(m, "k and v batch differ", k.shape[0], v.shape[0])?;
            same_dim(m, "k and v lengths differ", k.shape[1], v.shape[1])?;
            same_dim(m, "k and v heads differ", k.shape[2], v.shape[2])?;
            same_dim(m, "q and k head dims differ", q.shape[3], k.shape[3])?;
            if len.dtype != DType::I64 || len.shape.as_slice() != [q.shape[0]] {
                return Err(format!("kv_len must be i64[{}], got {}", dim_str(m, q.shape[0]), type_str(m, len)));
            }
            let hq = const_dim(m, "q heads", q.shape[2])?;
            let hkv = const_dim(m, "kv heads", k.shape[2])?;
            if hkv == 0 || hq % hkv != 0 {
                return Err(format!("q heads {hq} must be a multiple of kv heads {hkv}"));
            }
            if at.mask == MaskKind::Causal && q.shape[1] == Dim::Const(0) {
                return Err("causal attention needs at least one query".into());
            }
            nonempty(k.shape[1], || "the key axis of k".into())?;
            if !at.scale.is_finite() {
                return Err(format!("scale must be finite, got {}", at.scale));
            }
            one(TensorType::new(q.dtype, [q.shape[0], q.shape[1], q.shape[2], v.shape[3]]))
        }
        Op::Rope(r) => {
            let (x, pos) = (args[0], args[1]);
            float(m, "x", x)?;
            rank(m, "x", x, 4)?;
            if pos.dtype != DType::I64 || pos.shape.as_slice() != &x.shape[..2] {
                return Err(format!(
                    "positions must be i64[{}], got {}",
                    shape_str(m, &x.shape[..2]),
                    type_str(m, pos)
                ));
            }
            if const_dim(m, "head dim", x.shape[3])? % 2 != 0 {
                return Err(format!("rope needs an even head dim, got {}", dim_str(m, x.shape[3])));
            }
            if !(r.theta.is_finite() && r.theta > 0.0 && r.scale.is_finite() && r.scale > 0.0) {
                return Err(format!("theta and scale must be finite and > 0, got {} and {}", r.theta, r.scale));
            }
            one(x.clone())
        }
        Op::ScanSsd(_) => {
            let (x, dt, a, bm, cm, s0) = (args[0], args[1], args[2], args[3], args[4], args[5]);
            for (what, t, r) in [("x", x, 4), ("dt", dt, 3), ("A", a, 1), ("B", bm, 4), ("C", cm, 4), ("state0", s0, 4)]
            {
                float(m, what, t)?;
                rank(m, what, t, r)?;
            }
            let [b, s, h, p] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
            same_dim(m, "dt must be [B,S,H] of x", dt.shape[0], b)?;
            same_dim(m, "dt must be [B,S,H] of x", dt.shape[1], s)?;
            same_dim(m, "dt must be [B,S,H] of x", dt.shape[2], h)?;
            same_dim(m, "A must be [H]", a.shape[0], h)?;
            if bm.shape != cm.shape {
                return Err(format!("B and C differ: {} vs {}", type_str(m, bm), type_str(m, cm)));
            }
            same_dim(m, "B batch vs x batch", bm.shape[0], b)?;
            same_dim(m, "B length vs x length", bm.shape[1], s)?;
            let (g, n) = (bm.shape[2], bm.shape[3]);
            let hc = const_dim(m, "heads", h)?;
            let gc = const_dim(m, "groups", g)?;
            if gc == 0 || hc % gc != 0 {
                return Err(format!("heads {hc} must be a multiple of groups {gc}"));
            }
            if s0.shape != [b, h, p, n] {
                return Err(format!(
                    "state0 must be [B,H,P,N] = [{}], got {}",
                    shape_str(m, &[b, h, p, n]),
                    type_str(m, s0)
                ));
            }
            Ok(vec![x.clone(), s0.clone()])
        }
        Op::Conv1dCausal => {
            let (x, w, bias, st) = (args[0], args[1], args[2], args[3]);
            for (what, t, r) in [("x", x, 3), ("w", w, 2), ("bias", bias, 1), ("state", st, 3)] {
                float(m, what, t)?;
                rank(m, what, t, r)?;
            }
            let c = x.shape[2];
            same_dim(m, "w channels vs x channels", w.shape[0], c)?;
            same_dim(m, "bias channels vs x channels", bias.shape[0], c)?;
            let width = const_dim(m, "conv width", w.shape[1])?;
            if width == 0 {
                return Err("conv width must be at least 1".into());
            }
            let want = [x.shape[0], Dim::Const(width - 1), c];
            if st.shape != want {
                return Err(format!("state must be [B, W-1, C] = [{}], got {}", shape_str(m, &want), type_str(m, st)));
            }
            Ok(vec![x.clone(), st.clone()])
        }
        Op::Conv2dPatch(cp) => {
            let (x, w, bias) = (args[0], args[1], args[2]);
            for (what, t, r) in [("x", x, 4), ("w", w, 4), ("bias", bias, 1)] {
                float(m, what, t)?;
                rank(m, what, t, r)?;
            }
            let p = cp.patch;
            if p == 0 {
                return Err("patch must be at least 1".into());
            }
            let o = w.shape[0];
            same_dim(m, "w input channels vs x channels", w.shape[1], x.shape[1])?;
            if w.shape[2] != Dim::Const(p) || w.shape[3] != Dim::Const(p) {
                return Err(format!("w must be [O, C, {p}, {p}], got {}", type_str(m, w)));
            }
            same_dim(m, "bias vs output channels", bias.shape[0], o)?;
            let hh = const_dim(m, "image height", x.shape[2])?;
            let ww = const_dim(m, "image width", x.shape[3])?;
            if hh % p != 0 || ww % p != 0 {
                return Err(format!("image {hh}x{ww} is not a multiple of patch {p}"));
            }
            let patches = (hh / p)
                .checked_mul(ww / p)
                .ok_or_else(|| format!("image {hh}x{ww} has more than 2^64 patches of {p}"))?;
            one(TensorType::new(x.dtype, [x.shape[0], Dim::Const(patches), o]))
        }
        Op::Unary(u) => {
            let x = args[0];
            let ok = x.dtype.is_float() && !x.dtype.is_fp8()
                || (*u == UnaryOp::Neg && matches!(x.dtype, DType::I64 | DType::I32 | DType::I8));
            if !ok {
                return Err(format!("operand must be f32, f16 or bf16, got {}", type_str(m, x)));
            }
            one(x.clone())
        }
        Op::Binary(bop) => {
            let (a, b) = (args[0], args[1]);
            if a.dtype != b.dtype {
                return Err(format!("operand dtypes differ: {} vs {}", type_str(m, a), type_str(m, b)));
            }
            let numeric =
                (a.dtype.is_float() && !a.dtype.is_fp8()) || (a.dtype.is_int() && *bop != crate::ops::BinaryOp::Div);
            if !numeric {
                return Err(format!("{} is not defined on {}", bop.name(), a.dtype));
            }
            one(TensorType::new(a.dtype, broadcast_shapes(m, &a.shape, &b.shape)?))
        }
        Op::Clamp(c) => {
            let x = args[0];
            if !(x.dtype.is_float() && !x.dtype.is_fp8() || x.dtype.is_int()) {
                return Err(format!("operand must be numeric, got {}", type_str(m, x)));
            }
            if let (Some(lo), Some(hi)) = (c.min, c.max) {
                if lo > hi {
                    return Err(format!("min {lo} is above max {hi}"));
                }
            }
            if c.min.is_some_and(f64::is_nan) || c.max.is_some_and(f64::is_nan) {
                return Err("clamp bounds must not be NaN".into());
            }
            one(x.clone())
        }
        Op::Where => {
            let (c, a, b) = (args[0], args[1], args[2]);
            if c.dtype != DType::Bool {
                return Err(format!("condition must be bool, got {}", type_str(m, c)));
            }
            if a.dtype != b.dtype {
                return Err(format!("branch dtypes differ: {} vs {}", type_str(m, a), type_str(m, b)));
            }
            let s = broadcast_shapes(m, &c.shape, &a.shape)?;
            one(TensorType::new(a.dtype, broadcast_shapes(m, &s, &b.shape)?))
        }
        Op::Cast(to) => one(args[0].with_dtype(*to)),
        Op::Reduce(r) => {
            let x = args[0];
            if !(x.dtype.is_float() && !x.dtype.is_fp8() || x.dtype.is_int() && r.kind != crate::ops::ReduceKind::Mean)
            {
                return Err(format!("cannot reduce {}", type_str(m, x)));
            }
            if r.axes.is_empty() || r.axes.windows(2).any(|w| w[0] >= w[1]) || r.axes.iter().any(|&a| a >= x.rank()) {
                return Err(format!("axes {:?} must be strictly increasing and below rank {}", r.axes, x.rank()));
            }
            // A sum over nothing is 0; a max or a mean over nothing is undefined.
            if r.kind != crate::ops::ReduceKind::Sum {
                for &a in &r.axes {
                    nonempty(x.shape[a], || format!("{} over axis {a} of {}", r.kind.name(), type_str(m, x)))?;
                }
            }
            let shape = x
                .shape
                .iter()
                .enumerate()
                .filter_map(|(i, d)| match (r.axes.contains(&i), r.keep_dims) {
                    (false, _) => Some(*d),
                    (true, true) => Some(Dim::Const(1)),
                    (true, false) => None,
                })
                .collect::<Vec<_>>();
            one(TensorType::new(x.dtype, shape))
        }
        Op::Softmax(s) => {
            float(m, "operand", args[0])?;
            if s.axis >= args[0].rank() {
                return Err(format!("axis {} out of range for {}", s.axis, type_str(m, args[0])));
            }
            nonempty(args[0].shape[s.axis], || format!("softmax axis {} of {}", s.axis, type_str(m, args[0])))?;
            one(args[0].clone())
        }
        Op::RmsNorm(n) | Op::LayerNorm(n) => {
            let (x, w) = (args[0], args[1]);
            float(m, "x", x)?;
            float(m, "weight", w)?;
            let d = x.last_dim().ok_or_else(|| "x must have rank >= 1".to_string())?;
            if w.shape.as_slice() != [d] {
                return Err(format!("weight must be [{}], got {}", dim_str(m, d), type_str(m, w)));
            }
            if let Some(third) = args.get(2) {
                let is_gate = matches!(op, Op::RmsNorm(_));
                float(m, if is_gate { "gate" } else { "bias" }, third)?;
                let want: &[Dim] = if is_gate { &x.shape } else { &w.shape };
                if third.shape != want {
                    return Err(format!(
                        "{} must be [{}], got {}",
                        if is_gate { "gate" } else { "bias" },
                        shape_str(m, want),
                        type_str(m, third)
                    ));
                }
            }
            if !(n.eps.is_finite() && n.eps >= 0.0) {
                return Err(format!("eps must be finite and >= 0, got {}", n.eps));
            }
            let dc = const_dim(m, "normalized dim", d)?;
            nonempty(d, || format!("the normalized last dim of {}", type_str(m, x)))?;
            if n.groups == 0 || dc % n.groups != 0 {
                return Err(format!("groups {} must divide the normalized dim {dc}", n.groups));
            }
            if matches!(op, Op::LayerNorm(_)) && n.groups != 1 {
                return Err("layer_norm takes no groups".into());
            }
            one(x.clone())
        }
        Op::Reshape(shape) => {
            if !same_numel(&args[0].shape, shape) {
                return Err(format!(
                    "cannot reshape [{}] to [{}]: element counts differ",
                    shape_str(m, &args[0].shape),
                    shape_str(m, shape)
                ));
            }
            one(TensorType::new(args[0].dtype, shape.iter().copied()))
        }
        Op::Transpose(perm) => {
            let x = args[0];
            let mut seen = vec![false; x.rank()];
            if perm.len() != x.rank() || perm.iter().any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true)) {
                return Err(format!("perm {perm:?} is not a permutation of 0..{}", x.rank()));
            }
            one(TensorType::new(x.dtype, perm.iter().map(|&p| x.shape[p])))
        }
        Op::Slice(s) => {
            let x = args[0];
            let d =
                *x.shape.get(s.axis).ok_or_else(|| format!("axis {} out of range for {}", s.axis, type_str(m, x)))?;
            let len = slice_len(d, s.start, s.end).ok_or_else(|| {
                format!(
                    "slice [{}:{}] of dim {} is empty, out of range, or not static",
                    s.start,
                    s.end.map_or(String::new(), |e| e.to_string()),
                    dim_str(m, d)
                )
            })?;
            let mut shape = x.shape.clone();
            shape[s.axis] = len;
            one(TensorType::new(x.dtype, shape))
        }
        Op::Split(sp) => {
            let x = args[0];
            let d =
                *x.shape.get(sp.axis).ok_or_else(|| format!("axis {} out of range for {}", sp.axis, type_str(m, x)))?;
            let total = const_dim(m, "split axis", d)?;
            // Checked: sizes come from text and may sum past u64.
            let sum = sp.sizes.iter().try_fold(0u64, |acc, &n| acc.checked_add(n));
            if sp.sizes.is_empty() || sum != Some(total) {
                return Err(format!("sizes {:?} must sum to {total}", sp.sizes));
            }
            Ok(sp
                .sizes
                .iter()
                .map(|&n| {
                    let mut shape = x.shape.clone();
                    shape[sp.axis] = Dim::Const(n);
                    TensorType::new(x.dtype, shape)
                })
                .collect())
        }
        Op::Concat(axis) => {
            let first = args[0];
            if *axis >= first.rank() {
                return Err(format!("axis {axis} out of range for {}", type_str(m, first)));
            }
            if args.len() == 1 {
                return one(first.clone());
            }
            let mut total = 0u64;
            for (i, t) in args.iter().enumerate() {
                if t.dtype != first.dtype || t.rank() != first.rank() {
                    return Err(format!("operand {i} is {}, operand 0 is {}", type_str(m, t), type_str(m, first)));
                }
                for (j, (a, b)) in t.shape.iter().zip(&first.shape).enumerate() {
                    if j != *axis && a != b {
                        return Err(format!("operand {i} is {}, operand 0 is {}", type_str(m, t), type_str(m, first)));
                    }
                }
                total = total
                    .checked_add(const_dim(m, "concat axis", t.shape[*axis])?)
                    .ok_or_else(|| format!("the concatenated axis {axis} is longer than 2^64 - 1"))?;
            }
            let mut shape = first.shape.clone();
            shape[*axis] = Dim::Const(total);
            one(TensorType::new(first.dtype, shape))
        }
        Op::Broadcast(shape) => {
            let got = broadcast_shapes(m, &args[0].shape, shape)?;
            if got != *shape {
                return Err(format!(
                    "cannot broadcast [{}] to [{}]",
                    shape_str(m, &args[0].shape),
                    shape_str(m, shape)
                ));
            }
            one(TensorType::new(args[0].dtype, shape.iter().copied()))
        }
        Op::Gather => {
            let (table, idx) = (args[0], args[1]);
            if table.rank() < 1 {
                return Err("table must have rank >= 1".into());
            }
            if !idx.dtype.is_int() {
                return Err(format!("indices must be integers, got {}", type_str(m, idx)));
            }
            let mut shape = idx.shape.clone();
            shape.extend_from_slice(&table.shape[1..]);
            one(TensorType::new(table.dtype, shape))
        }
        Op::PixelShuffle(r) => {
            let x = args[0];
            rank(m, "x", x, 4)?;
            let (h, w, c) = (
                const_dim(m, "height", x.shape[1])?,
                const_dim(m, "width", x.shape[2])?,
                const_dim(m, "channels", x.shape[3])?,
            );
            if *r == 0 || h % r != 0 || w % r != 0 {
                return Err(format!("factor {r} must divide height {h} and width {w}"));
            }
            let co = r
                .checked_mul(*r)
                .and_then(|rr| c.checked_mul(rr))
                .ok_or_else(|| format!("{c} channels times factor {r} squared is more than 2^64 - 1"))?;
            one(TensorType::new(x.dtype, [x.shape[0], Dim::Const(h / r), Dim::Const(w / r), Dim::Const(co)]))
        }
        Op::ScatterCache => {
            let (cache, new, past) = (args[0], args[1], args[2]);
            if cache.rank() < 2 || new.rank() != cache.rank() || new.dtype != cache.dtype {
                return Err(format!("new rows {} do not fit cache {}", type_str(m, new), type_str(m, cache)));
            }
            if new.shape[0] != cache.shape[0] || new.shape[2..] != cache.shape[2..] {
                return Err(format!("new rows {} do not fit cache {}", type_str(m, new), type_str(m, cache)));
            }
            if past.dtype != DType::I64 || past.shape.as_slice() != [cache.shape[0]] {
                return Err(format!("past must be i64[{}], got {}", dim_str(m, cache.shape[0]), type_str(m, past)));
            }
            one(cache.clone())
        }
        Op::Amax => {
            float(m, "operand", args[0])?;
            one(TensorType::scalar(DType::F32))
        }
        Op::Quantize(to) => {
            let (x, s) = (args[0], args[1]);
            float(m, "operand", x)?;
            if !to.is_fp8() {
                return Err(format!("quantize produces fp8, not {to}"));
            }
            scale_ok(m, "scale", s, x)?;
            one(x.with_dtype(*to))
        }
        Op::Dequantize(to) => {
            let (q, s) = (args[0], args[1]);
            if !q.dtype.is_fp8() {
                return Err(format!("operand must be fp8, got {}", type_str(m, q)));
            }
            if !to.is_float() || to.is_fp8() {
                return Err(format!("dequantize produces f32, f16 or bf16, not {to}"));
            }
            scale_ok(m, "scale", s, q)?;
            one(q.with_dtype(*to))
        }
        Op::Fusion(f) => {
            let inputs: Vec<_> = f.body.inputs().collect();
            if inputs.len() != args.len() {
                return Err(format!("body takes {} inputs, fusion has {} operands", inputs.len(), args.len()));
            }
            for (i, ((name, v), t)) in inputs.iter().zip(args).enumerate() {
                let bt = f.body.values.get(*v).map(|v| &v.ty);
                if bt != Some(*t) {
                    return Err(format!("operand {i} is {}, body input \"{name}\" differs", type_str(m, t)));
                }
            }
            f.body
                .outputs
                .iter()
                .map(|o| {
                    f.body
                        .values
                        .get(o.value)
                        .map(|v| v.ty.clone())
                        .ok_or_else(|| "body output is not a body value".to_string())
                })
                .collect()
        }
        Op::Sample(s) => {
            let (logits, off) = (args[0], args[1]);
            float(m, "logits", logits)?;
            rank(m, "logits", logits, 2)?;
            if off.dtype != DType::I64 || off.rank() != 0 {
                return Err(format!("offset must be i64[], got {}", type_str(m, off)));
            }
            nonempty(logits.shape[1], || format!("the vocabulary axis of {}", type_str(m, logits)))?;
            if !(s.temperature.is_finite() && s.temperature >= 0.0) {
                return Err(format!("temperature must be >= 0, got {}", s.temperature));
            }
            if s.top_k == Some(0) {
                return Err("top_k must be at least 1".into());
            }
            if s.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
                return Err("top_p must be in (0, 1]".into());
            }
            one(TensorType::new(DType::I64, [logits.shape[0]]))
        }
    }
}

/// The static length of `x[start:end]` along a dim, or `None` when it is empty, out of range
/// or depends on a symbol's value.
pub fn slice_len(d: Dim, start: i64, end: Option<i64>) -> Option<Dim> {
    match d {
        Dim::Const(n) => {
            let n = i64::try_from(n).ok()?;
            let norm = |i: i64| if i < 0 { i + n } else { i };
            let (s, e) = (norm(start), end.map_or(n, norm));
            (0 <= s && s < e && e <= n).then(|| Dim::Const((e - s) as u64))
        }
        Dim::Sym(_) => match (start, end) {
            (0, None) => Some(d),
            (s, None) if s < 0 => Some(Dim::Const(s.unsigned_abs())),
            (s, Some(e)) if s >= 0 && e > s => Some(Dim::Const((e - s) as u64)),
            (s, Some(e)) if s < 0 && e < 0 && e > s => Some(Dim::Const((e - s) as u64)),
            _ => None,
        },
    }
}
