//! Elementwise maps and numpy broadcasting: the loops behind `unary`, `binary` and `broadcast`.
//!
//! Each op's scalar function is monomorphized into its loop (no call per element) and large
//! maps run on all cores. Same-shape float maps, the hot ones, also run compiled for the widest
//! vector unit the CPU has (`pulp` picks AVX2 at run time where present); broadcasts and
//! integer maps run baseline code. Elements are independent, so neither the width nor the split
//! changes any result.

use rayon::prelude::*;

use crate::tensor::{broadcast_offsets, round_slice, wrap_int, Data, Tensor};
use crate::PARALLEL_MIN;
use lathe_ir::ops::{BinaryOp, GeluApprox, UnaryOp};
use lathe_ir::DType;
use lathe_numerics as numerics;

/// Elements per parallel piece of a large map.
const PIECE: usize = 1 << 14;

/// Binds `$f` to the scalar function of float unary op `$u` (a closure, so it inlines) and
/// evaluates `$body` with it.
macro_rules! with_unary {
    ($u:expr, $f:ident => $body:expr) => {
        match $u {
            UnaryOp::Neg => {
                let $f = |x: f32| -x;
                $body
            }
            UnaryOp::Exp => {
                let $f = numerics::exp;
                $body
            }
            UnaryOp::Log => {
                let $f = f32::ln;
                $body
            }
            UnaryOp::Sqrt => {
                let $f = f32::sqrt;
                $body
            }
            UnaryOp::Rsqrt => {
                let $f = |x: f32| 1.0 / x.sqrt();
                $body
            }
            UnaryOp::Silu => {
                let $f = numerics::silu;
                $body
            }
            UnaryOp::Gelu(GeluApprox::Erf) => {
                let $f = numerics::gelu_erf;
                $body
            }
            UnaryOp::Gelu(GeluApprox::Tanh) => {
                let $f = numerics::gelu_tanh;
                $body
            }
            // NaN propagates, as in torch.
            UnaryOp::Relu => {
                let $f = |x: f32| if x > 0.0 || x.is_nan() { x } else { 0.0 };
                $body
            }
            UnaryOp::Square => {
                let $f = |x: f32| x * x;
                $body
            }
            UnaryOp::Sigmoid => {
                let $f = numerics::sigmoid;
                $body
            }
            UnaryOp::Softplus => {
                let $f = numerics::softplus;
                $body
            }
            UnaryOp::Tanh => {
                let $f = f32::tanh;
                $body
            }
        }
    };
}

/// Binds `$f` to the scalar function of float binary op `$b` and evaluates `$body` with it.
macro_rules! with_binary {
    ($b:expr, $f:ident => $body:expr) => {
        match $b {
            BinaryOp::Add => {
                let $f = |a: f32, b: f32| a + b;
                $body
            }
            BinaryOp::Sub => {
                let $f = |a: f32, b: f32| a - b;
                $body
            }
            BinaryOp::Mul => {
                let $f = |a: f32, b: f32| a * b;
                $body
            }
            BinaryOp::Div => {
                let $f = |a: f32, b: f32| a / b;
                $body
            }
            BinaryOp::Max => {
                let $f = |a: f32, b: f32| if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) };
                $body
            }
            BinaryOp::Min => {
                let $f = |a: f32, b: f32| if a.is_nan() || b.is_nan() { f32::NAN } else { a.min(b) };
                $body
            }
        }
    };
}

/// One piece of a map, as a unit of work `pulp` compiles per vector width.
struct MapPiece<'a, F> {
    out: &'a mut [f32],
    f: &'a F,
}

impl<F: Fn(f32) -> f32> pulp::WithSimd for MapPiece<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for x in self.out {
            *x = (self.f)(*x);
        }
    }
}

/// One piece of a two-operand map, `out[i] = f(out[i], other[i])`.
struct ZipPiece<'a, F> {
    out: &'a mut [f32],
    other: &'a [f32],
    f: &'a F,
}

impl<F: Fn(f32, f32) -> f32> pulp::WithSimd for ZipPiece<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (x, &y) in self.out.iter_mut().zip(self.other) {
            *x = (self.f)(*x, y);
        }
    }
}

/// `v[i] = f(v[i])` for every element.
fn map_in_place<F: Fn(f32) -> f32 + Sync>(v: &mut [f32], f: F) {
    let arch = pulp::Arch::new();
    if v.len() >= PARALLEL_MIN {
        v.par_chunks_mut(PIECE).for_each(|out| arch.dispatch(MapPiece { out, f: &f }));
    } else {
        arch.dispatch(MapPiece { out: v, f: &f });
    }
}

/// `v[i] = f(v[i], other[i])` for every element (`other` at least as long as `v`).
fn zip_in_place<F: Fn(f32, f32) -> f32 + Sync>(v: &mut [f32], other: &[f32], f: F) {
    let arch = pulp::Arch::new();
    if v.len() >= PARALLEL_MIN {
        let pieces = v.par_chunks_mut(PIECE).zip(other.par_chunks(PIECE));
        pieces.for_each(|(out, other)| arch.dispatch(ZipPiece { out, other, f: &f }));
    } else {
        arch.dispatch(ZipPiece { out: v, other, f: &f });
    }
}

/// A unary op on a tensor the caller keeps.
pub(super) fn unary(u: UnaryOp, t: &Tensor) -> Tensor {
    unary_in_place(u, t.clone())
}

/// A unary op applied over the buffer of a tensor the interpreter owns (at its last use).
pub(super) fn unary_in_place(u: UnaryOp, mut t: Tensor) -> Tensor {
    match &mut t.data {
        Data::F(v) => {
            with_unary!(u, f => map_in_place(v, f));
            round_slice(t.dtype, v);
        }
        // Only `neg` types on integers; the result wraps to the dtype's width.
        Data::I(v) => v.iter_mut().for_each(|e| *e = wrap_int(t.dtype, e.wrapping_neg())),
    }
    t
}

/// How one operand of a broadcast maps onto the rows of the output viewed as `[rows, L]`, `L`
/// the output's last dim: where each output row's operand values start, and whether they are a
/// run of `L` values or one value repeated.
struct RowMap {
    starts: Vec<usize>,
    full: bool,
}

/// `s` with leading 1s up to `rank` dims (numpy broadcasting aligns trailing dims).
fn padded(s: &[usize], rank: usize) -> Vec<usize> {
    let mut v = vec![1; rank - s.len()];
    v.extend_from_slice(s);
    v
}

/// `shape` is the output shape; `s` the operand's shape padded with leading 1s to its rank.
fn row_map(s: &[usize], shape: &[usize]) -> RowMap {
    match (s.split_last(), shape.split_last()) {
        (Some((&own, s_lead)), Some((&last, lead))) => {
            let starts = broadcast_offsets(s_lead, lead).into_iter().map(|r| r * own).collect();
            RowMap { starts, full: own == last }
        }
        _ => RowMap { starts: vec![0], full: true },
    }
}

/// `t` broadcast to `shape` (numpy rules), copied row by row.
pub(super) fn broadcast_rows(t: &Tensor, shape: Vec<usize>) -> Tensor {
    fn rows<T: Copy + Default>(v: &[T], map: &RowMap, len: usize) -> Vec<T> {
        let mut out = vec![T::default(); map.starts.len() * len];
        if len > 0 {
            for (o, &s) in out.chunks_mut(len).zip(&map.starts) {
                if map.full {
                    o.copy_from_slice(&v[s..s + len]);
                } else {
                    o.fill(v[s]);
                }
            }
        }
        out
    }
    let map = row_map(&padded(&t.shape, shape.len()), &shape);
    let len = shape.last().copied().unwrap_or(1);
    let data = match &t.data {
        Data::F(v) => Data::F(rows(v, &map, len)),
        Data::I(v) => Data::I(rows(v, &map, len)),
    };
    Tensor { dtype: t.dtype, shape, data }
}

/// `f(a, c)` over the output rows (`len` values each), each operand read through its [`RowMap`].
fn map_rows<F: Fn(f32, f32) -> f32 + Sync>(
    f: F,
    a: &[f32],
    ra: &RowMap,
    c: &[f32],
    rc: &RowMap,
    len: usize,
) -> Vec<f32> {
    let rows = ra.starts.len();
    let mut out = vec![0f32; rows * len];
    if len == 0 {
        return out;
    }
    let row = |(r, o): (usize, &mut [f32])| {
        let (sa, sc) = (ra.starts[r], rc.starts[r]);
        match (ra.full, rc.full) {
            (true, true) => {
                for ((ov, &p), &q) in o.iter_mut().zip(&a[sa..sa + len]).zip(&c[sc..sc + len]) {
                    *ov = f(p, q);
                }
            }
            (true, false) => {
                let q = c[sc];
                for (ov, &p) in o.iter_mut().zip(&a[sa..sa + len]) {
                    *ov = f(p, q);
                }
            }
            (false, true) => {
                let p = a[sa];
                for (ov, &q) in o.iter_mut().zip(&c[sc..sc + len]) {
                    *ov = f(p, q);
                }
            }
            (false, false) => o.fill(f(a[sa], c[sc])),
        }
    };
    if out.len() >= PARALLEL_MIN {
        out.par_chunks_mut(len).enumerate().for_each(row);
    } else {
        out.chunks_mut(len).enumerate().for_each(row);
    }
    out
}

/// A binary op with numpy broadcasting; the result has `x`'s dtype.
pub(super) fn binary(b: BinaryOp, x: &Tensor, y: &Tensor) -> Tensor {
    let r = x.shape.len().max(y.shape.len());
    let (px, py) = (padded(&x.shape, r), padded(&y.shape, r));
    let shape: Vec<usize> = px.iter().zip(&py).map(|(&a, &b)| if a == 1 { b } else { a }).collect();
    let same = x.shape == y.shape;
    match (&x.data, &y.data) {
        (Data::F(a), Data::F(c)) => {
            let vals = if same {
                let mut out = a.clone();
                with_binary!(b, f => zip_in_place(&mut out, c, f));
                out
            } else {
                // Broadcasts go row by row: each operand row is a run or one repeated value.
                let len = shape.last().copied().unwrap_or(1);
                let (ra, rc) = (row_map(&px, &shape), row_map(&py, &shape));
                with_binary!(b, f => map_rows(f, a, &ra, c, &rc, len))
            };
            Tensor::from_f32(x.dtype, shape, vals)
        }
        (Data::I(a), Data::I(c)) => {
            let f: fn(i64, i64) -> i64 = match b {
                BinaryOp::Add => i64::wrapping_add,
                BinaryOp::Sub => i64::wrapping_sub,
                BinaryOp::Mul => i64::wrapping_mul,
                BinaryOp::Div => |a, b| if b == 0 { 0 } else { a.wrapping_div(b) },
                BinaryOp::Max => i64::max,
                BinaryOp::Min => i64::min,
            };
            let vals = if same {
                a.iter().zip(c).map(|(&p, &q)| f(p, q)).collect()
            } else {
                let ox = broadcast_offsets(&x.shape, &shape);
                let oy = broadcast_offsets(&y.shape, &shape);
                ox.iter().zip(&oy).map(|(&i, &j)| f(a[i], c[j])).collect()
            };
            Tensor::from_i64(x.dtype, shape, vals)
        }
        _ => Tensor::from_f32(x.dtype, shape, Vec::new()),
    }
}

/// A float binary op on operands of one shape, written over `own` (the interpreter's copy of
/// one operand at its last use); `own_is_lhs` says which side it is. The result has `dtype`
/// (the left operand's).
pub(super) fn binary_in_place(b: BinaryOp, dtype: DType, mut own: Tensor, other: &[f32], own_is_lhs: bool) -> Tensor {
    if let Data::F(v) = &mut own.data {
        if own_is_lhs {
            with_binary!(b, f => zip_in_place(v, other, f));
        } else {
            with_binary!(b, f => zip_in_place(v, other, |p, q| f(q, p)));
        }
        round_slice(dtype, v);
    }
    own.dtype = dtype;
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shapes that broadcast together: each dim of `out` kept, set to 1, or dropped in front.
    fn shapes(seed: u64) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let mut s = seed;
        let mut next = |n: u64| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 33) % n) as usize
        };
        let rank = next(4);
        let out: Vec<usize> = (0..rank).map(|_| 1 + next(5)).collect();
        let mut side = |out: &[usize]| -> Vec<usize> {
            let drop = next(rank as u64 + 1);
            out[drop..].iter().map(|&d| if next(3) == 0 { 1 } else { d }).collect()
        };
        let (a, b) = (side(&out), side(&out));
        // The output of broadcasting a and b (a dim of `out` may have become 1 on both sides).
        let r = a.len().max(b.len());
        let pad = |s: &[usize]| [vec![1; r - s.len()], s.to_vec()].concat();
        let (pa, pb) = (pad(&a), pad(&b));
        let shape = pa.iter().zip(&pb).map(|(&x, &y)| x.max(y)).collect();
        (a, b, shape)
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7 + seed * 13) % 23) as f32 - 11.5).collect()
    }

    #[test]
    fn row_broadcasts_match_offset_tables() {
        for seed in 0..400 {
            let (sa, sb, shape) = shapes(seed);
            let a = Tensor::from_f32(DType::F32, sa.clone(), values(sa.iter().product(), 1));
            let b = Tensor::from_f32(DType::F32, sb.clone(), values(sb.iter().product(), 2));
            let (oa, ob) = (broadcast_offsets(&sa, &shape), broadcast_offsets(&sb, &shape));
            for op in [BinaryOp::Sub, BinaryOp::Div, BinaryOp::Max] {
                let got = binary(op, &a, &b);
                assert_eq!(got.shape, shape, "{sa:?} {sb:?}");
                let f = |x: f32, y: f32| match op {
                    BinaryOp::Sub => x - y,
                    BinaryOp::Div => x / y,
                    _ => x.max(y),
                };
                let want: Vec<f32> = oa.iter().zip(&ob).map(|(&i, &j)| f(a.floats()[i], b.floats()[j])).collect();
                assert_eq!(got.floats(), want.as_slice(), "{op:?} {sa:?} {sb:?}");
            }
            let up = broadcast_rows(&a, shape.clone());
            let want: Vec<f32> = oa.iter().map(|&i| a.floats()[i]).collect();
            assert_eq!(up.floats(), want.as_slice(), "broadcast {sa:?} to {shape:?}");
        }
    }

    #[test]
    fn in_place_maps_equal_the_copying_ones() {
        let n = PARALLEL_MIN + 37; // the parallel path, with a ragged last piece
        let x = Tensor::from_f32(DType::BF16, vec![n], values(n, 3).iter().map(|v| v * 0.37).collect());
        let y = Tensor::from_f32(DType::BF16, vec![n], values(n, 4).iter().map(|v| v * 0.11).collect());
        for u in [UnaryOp::Silu, UnaryOp::Exp, UnaryOp::Square, UnaryOp::Relu, UnaryOp::Neg] {
            let want: Vec<f32> = x
                .floats()
                .iter()
                .map(|&v| {
                    let r = match u {
                        UnaryOp::Silu => numerics::silu(v),
                        UnaryOp::Exp => numerics::exp(v),
                        UnaryOp::Square => v * v,
                        UnaryOp::Relu => v.max(0.0),
                        _ => -v,
                    };
                    numerics::round_to_bf16(r)
                })
                .collect();
            assert_eq!(unary(u, &x).floats(), want.as_slice(), "{u:?}");
            assert_eq!(unary_in_place(u, x.clone()).floats(), want.as_slice(), "{u:?} in place");
        }
        // Integer `neg` wraps to the dtype's width, copying or in place.
        let ints = Tensor::from_i64(DType::I32, vec![3], vec![i64::from(i32::MIN), -5, 7]);
        let want = vec![i64::from(i32::MIN), 5, -7];
        assert_eq!(unary(UnaryOp::Neg, &ints).ints(), want.as_slice());
        assert_eq!(unary_in_place(UnaryOp::Neg, ints).ints(), want.as_slice());
        for b in [BinaryOp::Sub, BinaryOp::Div] {
            let want = binary(b, &x, &y);
            assert_eq!(binary_in_place(b, x.dtype, x.clone(), y.floats(), true), want, "{b:?} left");
            assert_eq!(binary_in_place(b, x.dtype, y.clone(), x.floats(), false), want, "{b:?} right");
        }
    }
}
