//! Warp-level matrix fragments as the simulator computes them: the PTX ISA's closed-form
//! formulas (`groupID = lane >> 2`, `threadID_in_group = lane % 4`, a row and a column per
//! element index), and the arithmetic of `mma.sync`.
//!
//! This is one of two independent statements of the layouts. The other, [`crate::layout`], is
//! transcribed from the ISA's figures as tiles of 8×8 core matrices and built in the opposite
//! direction (matrix position → lane); `tests/mma.rs` checks that the two agree on every lane
//! and element of every operand, so a slip in either shows up as a disagreement rather than as a
//! template and a simulator that are wrong together.
//!
//! Elements are numbered as PTX numbers them: low to high within a register, registers in
//! order (`a0, a1, …`). A register holds `32 / bits` elements.
//!
//! # Accumulation order of `mma`
//! Each output element starts from its C value and adds the products `A[i][k]·B[k][j]` for `k`
//! ascending, one f32 fused multiply-add (round to nearest even) per product. The products of
//! bf16, f16, e4m3 and e5m2 inputs are exact in f32, so each step rounds once, at the addition.
//! The hardware accumulates in an unspecified order and width; this fixed order is what the
//! simulator promises, and a reference computing the same order matches it bit for bit.

use lathe_numerics as num;

use crate::ir::{MmaElem, MmaShape};

/// Rows of an `mma` tile (M).
pub const M: usize = 16;
/// Columns of an `mma` tile (N).
pub const N: usize = 8;
/// Lanes of a warp.
pub const LANES: usize = 32;

fn group(lane: usize) -> usize {
    lane >> 2
}

fn thread_in_group(lane: usize) -> usize {
    lane % 4
}

/// Elements per lane of the A fragment (four registers).
pub fn a_elems(shape: MmaShape) -> usize {
    4 * elems_per_reg(shape)
}

/// Elements per lane of the B fragment (two registers).
pub fn b_elems(shape: MmaShape) -> usize {
    2 * elems_per_reg(shape)
}

/// Elements per 32-bit register of a multiplicand of `shape`.
pub fn elems_per_reg(shape: MmaShape) -> usize {
    match shape {
        MmaShape::M16n8k16 => 2,
        MmaShape::M16n8k32 => 4,
    }
}

/// `(row, col)` in A (16×K) of element `i` of `lane`.
pub fn a_pos(shape: MmaShape, lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (group(lane), thread_in_group(lane));
    match shape {
        MmaShape::M16n8k16 => {
            let row = if i < 2 || (4..6).contains(&i) { g } else { g + 8 };
            let col = t * 2 + (i & 1) + if i >= 4 { 8 } else { 0 };
            (row, col)
        }
        MmaShape::M16n8k32 => {
            let row = if i < 4 || (8..12).contains(&i) { g } else { g + 8 };
            let col = t * 4 + (i & 3) + if i >= 8 { 16 } else { 0 };
            (row, col)
        }
    }
}

/// `(row, col)` in B (K×8) of element `i` of `lane`.
pub fn b_pos(shape: MmaShape, lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (group(lane), thread_in_group(lane));
    match shape {
        MmaShape::M16n8k16 => (t * 2 + (i & 1) + if i >= 2 { 8 } else { 0 }, g),
        MmaShape::M16n8k32 => (t * 4 + (i & 3) + if i >= 4 { 16 } else { 0 }, g),
    }
}

/// `(row, col)` in C or D (16×8, f32) of element `i` (0..4) of `lane`.
pub fn c_pos(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (group(lane), thread_in_group(lane));
    (if i < 2 { g } else { g + 8 }, t * 2 + (i & 1))
}

/// Where element `half` (0 low, 1 high) of register `reg` of `lane` comes from in an
/// `ldmatrix`: `(matrix, row, col)`, row and column as the matrix lies in memory (row `r` is
/// the 16 bytes at the address lane `8·matrix + r` supplied).
pub fn ldmatrix_pos(trans: bool, lane: usize, reg: usize, half: usize) -> (usize, usize, usize) {
    let (r, c) = (lane / 4, 2 * (lane % 4) + half);
    if trans {
        (reg, c, r)
    } else {
        (reg, r, c)
    }
}

/// The value of a multiplicand element (its low `bits` bits).
pub fn decode(elem: MmaElem, bits: u32) -> f32 {
    match elem {
        MmaElem::Bf16 => num::bf16_bits_to_f32(bits as u16),
        MmaElem::F16 => num::f16_bits_to_f32(bits as u16),
        MmaElem::E4m3 => num::e4m3_to_f32(bits as u8),
        MmaElem::E5m2 => num::e5m2_to_f32(bits as u8),
    }
}

/// Element `j` of a 32-bit register holding elements of `width` bits.
fn element(reg: u32, j: usize, width: u32) -> u32 {
    let mask = if width == 32 { u32::MAX } else { (1 << width) - 1 };
    (reg >> (width * j as u32)) & mask
}

/// The fragments of one `mma` for a whole warp, per lane.
#[derive(Debug, Clone)]
pub struct MmaInputs {
    /// A registers.
    pub a: [[u32; 4]; LANES],
    /// B registers.
    pub b: [[u32; 2]; LANES],
    /// C values.
    pub c: [[f32; 4]; LANES],
}

/// `D = A·B + C` for a warp: each lane's four D values, accumulated in the order the module
/// documentation states.
pub fn mma(shape: MmaShape, atype: MmaElem, btype: MmaElem, x: &MmaInputs) -> [[f32; 4]; LANES] {
    let k = shape.k();
    let per = elems_per_reg(shape);
    let mut a = vec![[0f32; 32]; M];
    let mut b = vec![[0f32; N]; 32];
    let mut c = [[0f32; N]; M];
    for lane in 0..LANES {
        for i in 0..a_elems(shape) {
            let (r, col) = a_pos(shape, lane, i);
            a[r][col] = decode(atype, element(x.a[lane][i / per], i % per, atype.bits()));
        }
        for i in 0..b_elems(shape) {
            let (r, col) = b_pos(shape, lane, i);
            b[r][col] = decode(btype, element(x.b[lane][i / per], i % per, btype.bits()));
        }
        for i in 0..4 {
            let (r, col) = c_pos(lane, i);
            c[r][col] = x.c[lane][i];
        }
    }
    let mut d = [[0f32; 4]; LANES];
    for (lane, out) in d.iter_mut().enumerate() {
        for (i, v) in out.iter_mut().enumerate() {
            let (r, col) = c_pos(lane, i);
            *v = (0..k).fold(c[r][col], |acc, kk| a[r][kk].mul_add(b[kk][col], acc));
        }
    }
    d
}
