//! Runtime tensors of the interpreter and the layout helpers the ops share.

use lathe_ir::DType;
use lathe_numerics as numerics;

/// Element storage: every float dtype is held as f32 values already rounded to that dtype
/// (bf16, f16 and fp8 values are exact in f32); integers and bools as i64.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// Float dtypes.
    F(Vec<f32>),
    /// Integer dtypes and bool (0 / 1).
    I(Vec<i64>),
}

/// A concrete tensor: dtype, shape and row-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Concrete shape.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: Data,
}

impl Tensor {
    /// A float tensor; values are rounded to `dtype`.
    pub fn from_f32(dtype: DType, shape: Vec<usize>, mut values: Vec<f32>) -> Tensor {
        round_slice(dtype, &mut values);
        Tensor { dtype, shape, data: Data::F(values) }
    }

    /// An integer or bool tensor; values are wrapped to `dtype`'s range.
    pub fn from_i64(dtype: DType, shape: Vec<usize>, values: Vec<i64>) -> Tensor {
        let values = values.into_iter().map(|v| wrap_int(dtype, v)).collect();
        Tensor { dtype, shape, data: Data::I(values) }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The float values (empty for integer tensors).
    pub fn floats(&self) -> &[f32] {
        match &self.data {
            Data::F(v) => v,
            Data::I(_) => &[],
        }
    }

    /// The integer values (empty for float tensors).
    pub fn ints(&self) -> &[i64] {
        match &self.data {
            Data::I(v) => v,
            Data::F(_) => &[],
        }
    }

    /// Every element as f64 (for comparisons and printing).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            Data::F(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Data::I(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The tensor converted to `dtype` with the IR's cast semantics.
    pub fn cast(&self, dtype: DType) -> Tensor {
        let shape = self.shape.clone();
        match (&self.data, dtype.is_float()) {
            (Data::F(v), true) => Tensor::from_f32(dtype, shape, v.clone()),
            (Data::I(v), true) => Tensor::from_f32(dtype, shape, v.iter().map(|&x| x as f32).collect()),
            (Data::F(v), false) if dtype == DType::Bool => {
                Tensor::from_i64(dtype, shape, v.iter().map(|&x| i64::from(x != 0.0)).collect())
            }
            (Data::F(v), false) => Tensor::from_i64(dtype, shape, v.iter().map(|&x| float_to_int(dtype, x)).collect()),
            (Data::I(v), false) => Tensor::from_i64(dtype, shape, v.clone()),
        }
    }
}

/// Rounds every value to `dtype` (no-op for f32).
pub fn round_slice(dtype: DType, v: &mut [f32]) {
    let f: fn(f32) -> f32 = match dtype {
        DType::BF16 => numerics::round_to_bf16,
        DType::F16 => numerics::round_to_f16,
        DType::F8E4M3 => numerics::round_to_e4m3,
        DType::F8E5M2 => numerics::round_to_e5m2,
        _ => return,
    };
    v.iter_mut().for_each(|x| *x = f(*x));
}

fn int_range(dtype: DType) -> (i64, i64) {
    match dtype {
        DType::I32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        DType::I8 => (i64::from(i8::MIN), i64::from(i8::MAX)),
        DType::U8 => (0, i64::from(u8::MAX)),
        DType::Bool => (0, 1),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Integer → integer: two's-complement wrap to the target width; bool is `v != 0`.
pub fn wrap_int(dtype: DType, v: i64) -> i64 {
    match dtype {
        DType::I32 => i64::from(v as i32),
        DType::I8 => i64::from(v as i8),
        DType::U8 => i64::from(v as u8),
        DType::Bool => i64::from(v != 0),
        _ => v,
    }
}

/// Float → integer: truncation toward zero, saturating; NaN → 0.
pub fn float_to_int(dtype: DType, x: f32) -> i64 {
    let (lo, hi) = int_range(dtype);
    if x.is_nan() {
        0
    } else {
        let t = f64::from(x).trunc();
        if t <= lo as f64 {
            lo
        } else if t >= hi as f64 {
            hi
        } else {
            t as i64
        }
    }
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// For each element of `out_shape`, the offset of the element of an operand of shape `in_shape`
/// that numpy broadcasting maps to it.
pub fn broadcast_offsets(in_shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let r = out_shape.len();
    let pad = r - in_shape.len();
    let in_strides = strides(in_shape);
    let eff: Vec<usize> =
        (0..r).map(|i| if i < pad || in_shape[i - pad] == 1 { 0 } else { in_strides[i - pad] }).collect();
    strided_offsets(out_shape, &eff)
}

/// The offsets `sum(idx[d] * eff[d])` of every index of `out_shape`, in row-major order.
fn strided_offsets(out_shape: &[usize], eff: &[usize]) -> Vec<usize> {
    let n: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; out_shape.len()];
    let mut off = 0usize;
    for _ in 0..n {
        out.push(off);
        for d in (0..out_shape.len()).rev() {
            idx[d] += 1;
            off += eff[d];
            if idx[d] < out_shape[d] {
                break;
            }
            off -= eff[d] * idx[d];
            idx[d] = 0;
        }
    }
    out
}

/// For each element of the permuted tensor (`out.shape[i] = shape[perm[i]]`), the source offset.
pub fn permute_offsets(shape: &[usize], perm: &[usize]) -> Vec<usize> {
    let s = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let eff: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    strided_offsets(&out_shape, &eff)
}

/// Gathers `data[offsets[i]]`.
pub fn take<T: Copy>(data: &[T], offsets: &[usize]) -> Vec<T> {
    offsets.iter().map(|&o| data[o]).collect()
}

impl Tensor {
    /// Decodes little-endian element bytes of `dtype` (the safetensors layout).
    pub fn from_le_bytes(dtype: DType, shape: Vec<usize>, b: &[u8]) -> Result<Tensor, String> {
        let n: usize = shape.iter().product();
        if b.len() != n * dtype.size_bytes() {
            return Err(format!("{} bytes for {n} elements of {dtype}", b.len()));
        }
        let mut data = Data::with_capacity(dtype, n);
        data.extend_from_le_bytes(dtype, b);
        Ok(Tensor { dtype, shape, data })
    }

    /// Encodes the elements as little-endian bytes of the tensor's dtype.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match (&self.data, self.dtype) {
            (Data::F(v), DType::F32) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (Data::F(v), DType::BF16) => v.iter().flat_map(|&x| numerics::f32_to_bf16_bits(x).to_le_bytes()).collect(),
            (Data::F(v), DType::F16) => v.iter().flat_map(|&x| numerics::f32_to_f16_bits(x).to_le_bytes()).collect(),
            (Data::F(v), DType::F8E4M3) => v.iter().map(|&x| numerics::f32_to_e4m3(x)).collect(),
            (Data::F(v), _) => v.iter().map(|&x| numerics::f32_to_e5m2(x)).collect(),
            (Data::I(v), DType::I64) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (Data::I(v), DType::I32) => v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
            (Data::I(v), _) => v.iter().map(|&x| x as u8).collect(),
        }
    }
}

impl Data {
    /// Empty storage for `n` elements of `dtype`.
    pub fn with_capacity(dtype: DType, n: usize) -> Data {
        if dtype.is_float() {
            Data::F(Vec::with_capacity(n))
        } else {
            Data::I(Vec::with_capacity(n))
        }
    }

    /// Appends the elements of little-endian bytes of `dtype` (whole elements; a trailing partial
    /// element is ignored). Every decoded value is exact in the storage type, so no rounding is
    /// needed: bf16/f16/fp8 widen to f32 exactly, integers to i64.
    pub fn extend_from_le_bytes(&mut self, dtype: DType, b: &[u8]) {
        debug_assert_eq!(dtype.is_float(), matches!(self, Data::F(_)), "{dtype} bytes into the wrong storage");
        let w2 = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
        match self {
            Data::F(v) => match dtype {
                DType::BF16 => v.extend(b.chunks_exact(2).map(|c| numerics::bf16_bits_to_f32(w2(c)))),
                DType::F16 => v.extend(b.chunks_exact(2).map(|c| numerics::f16_bits_to_f32(w2(c)))),
                DType::F8E4M3 => v.extend(b.iter().map(|&c| numerics::e4m3_to_f32(c))),
                DType::F8E5M2 => v.extend(b.iter().map(|&c| numerics::e5m2_to_f32(c))),
                _ => v.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            },
            Data::I(v) => match dtype {
                DType::I32 => {
                    v.extend(b.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))))
                }
                DType::I8 => v.extend(b.iter().map(|&c| i64::from(c as i8))),
                DType::U8 | DType::Bool => v.extend(b.iter().map(|&c| wrap_int(dtype, i64::from(c)))),
                _ => v.extend(
                    b.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
                ),
            },
        }
    }
}
