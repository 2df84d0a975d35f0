//! Fragment layouts for kernel templates: which lane holds which matrix element, as tables.
//!
//! Transcribed from the PTX ISA's fragment figures rather than from its formulas (those are in
//! [`crate::frag`], which the simulator executes; `tests/mma.rs` checks the two against each
//! other over every lane and element). Read this way, every figure of `ldmatrix` and of the
//! `m16n8k16`/`m16n8k32` `mma` operands is a handful of *core tiles* of 8 rows, laid side by
//! side, one tile per 32-bit register (two for the f32 accumulator, whose elements are twice as
//! wide). Inside a tile, the four lanes of quad `r` (lanes `4r … 4r+3`) hold row `r`, the row
//! cut into four equal runs in lane order: `w` consecutive elements per lane, with `w` = 2 for
//! 16-bit elements and for the f32 accumulator, 4 for fp8. A tile is *transposed* where the
//! figure draws the operand column-major (B of `mma`, `ldmatrix.trans`): then a tile row is a
//! matrix column.
//!
//! The tables are built from the element's side: for each element of each tile, the lane that
//! owns it and its index in that lane, so that a mistake in the tile lists would show as a hole
//! or a collision (checked by [`Table::is_bijection`]).

use crate::ir::MmaShape;

/// Lanes of a warp.
const LANES: usize = 32;

/// One core tile of a figure: its origin in the matrix and whether it is drawn transposed.
#[derive(Debug, Clone, Copy)]
struct Tile {
    row: usize,
    col: usize,
    transposed: bool,
}

const fn tile(row: usize, col: usize) -> Tile {
    Tile { row, col, transposed: false }
}

const fn tile_t(row: usize, col: usize) -> Tile {
    Tile { row, col, transposed: true }
}

/// A: 16×16 bf16/f16 — register 0 top-left, 1 bottom-left, 2 top-right, 3 bottom-right.
const A_K16: [Tile; 4] = [tile(0, 0), tile(8, 0), tile(0, 8), tile(8, 8)];
/// A: 16×32 fp8 — the same arrangement, tiles 16 elements wide.
const A_K32: [Tile; 4] = [tile(0, 0), tile(8, 0), tile(0, 16), tile(8, 16)];
/// B: 16×8 bf16/f16 — drawn with a lane quad per column; register 0 holds k 0..8, 1 k 8..16.
const B_K16: [Tile; 2] = [tile_t(0, 0), tile_t(8, 0)];
/// B: 32×8 fp8 — register 0 holds k 0..16, 1 k 16..32.
const B_K32: [Tile; 2] = [tile_t(0, 0), tile_t(16, 0)];
/// C/D: 16×8 f32 — elements 0, 1 in the top half, 2, 3 in the bottom half.
const C: [Tile; 2] = [tile(0, 0), tile(8, 0)];

/// A lane × element table of matrix positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Matrix rows (for `ldmatrix`: 8 per matrix, matrix `m` at rows `8m..8m+8`).
    pub rows: usize,
    /// Matrix columns.
    pub cols: usize,
    /// Elements each lane holds.
    pub per_lane: usize,
    /// `pos[lane · per_lane + e]` = `(row, col)` of element `e` of `lane`.
    pos: Vec<(usize, usize)>,
}

impl Table {
    /// `(row, col)` of element `e` of `lane` (PTX numbering: low to high, registers in order).
    /// Panics if `lane ≥ 32` or `e ≥ per_lane` (template constants, not user input).
    pub fn pos(&self, lane: usize, e: usize) -> (usize, usize) {
        self.pos[lane * self.per_lane + e]
    }

    /// The lane and element index that hold `(row, col)`, if any.
    pub fn owner(&self, row: usize, col: usize) -> Option<(usize, usize)> {
        let i = self.pos.iter().position(|&p| p == (row, col))?;
        Some((i / self.per_lane, i % self.per_lane))
    }

    /// Every matrix element is held by exactly one (lane, element).
    pub fn is_bijection(&self) -> bool {
        let mut seen = vec![false; self.rows * self.cols];
        for &(r, c) in &self.pos {
            if r >= self.rows || c >= self.cols || seen[r * self.cols + c] {
                return false;
            }
            seen[r * self.cols + c] = true;
        }
        seen.iter().all(|&s| s)
    }
}

/// Lays `tiles` (8 tile rows of `4·w` elements each) out into a table.
fn fill(tiles: &[Tile], w: usize, rows: usize, cols: usize) -> Table {
    let per_lane = tiles.len() * w;
    let mut pos = vec![(usize::MAX, usize::MAX); LANES * per_lane];
    for (k, t) in tiles.iter().enumerate() {
        for tr in 0..8 {
            for tc in 0..4 * w {
                let lane = 4 * tr + tc / w;
                let e = k * w + tc % w;
                let at = if t.transposed { (t.row + tc, t.col + tr) } else { (t.row + tr, t.col + tc) };
                pos[lane * per_lane + e] = at;
            }
        }
    }
    Table { rows, cols, per_lane, pos }
}

/// Elements per lane per tile for 16-bit (2) or 8-bit (4) multiplicands of `shape`.
fn width(shape: MmaShape) -> usize {
    match shape {
        MmaShape::M16n8k16 => 2,
        MmaShape::M16n8k32 => 4,
    }
}

/// The A fragment of `mma.{shape}.row` (16×K).
pub fn mma_a(shape: MmaShape) -> Table {
    let tiles: &[Tile] = match shape {
        MmaShape::M16n8k16 => &A_K16,
        MmaShape::M16n8k32 => &A_K32,
    };
    fill(tiles, width(shape), 16, shape.k())
}

/// The B fragment of `mma.{shape}.col` (K×8).
pub fn mma_b(shape: MmaShape) -> Table {
    let tiles: &[Tile] = match shape {
        MmaShape::M16n8k16 => &B_K16,
        MmaShape::M16n8k32 => &B_K32,
    };
    fill(tiles, width(shape), shape.k(), 8)
}

/// The C and D fragments (16×8 f32) of both shapes.
pub fn mma_c() -> Table {
    fill(&C, 2, 16, 8)
}

/// `ldmatrix.m8n8.x{count}{.trans}.b16`: positions as the matrices lie in memory, matrix `m`
/// at rows `8m..8m+8` (row `r` of it is what lane `8m + r` addresses); element `2m + h` of a
/// lane is half `h` of its register `m`.
pub fn ldmatrix(count: usize, trans: bool) -> Table {
    // Each matrix is a square tile, so a transposed one stays on its own 8 rows.
    let tiles: Vec<Tile> = (0..count).map(|m| Tile { row: 8 * m, col: 0, transposed: trans }).collect();
    fill(&tiles, 2, 8 * count, 8)
}
