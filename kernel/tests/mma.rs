//! Tensor-core instructions: the two independent statements of the fragment layouts against
//! each other, `ldmatrix` and `mma.sync` in the simulator against those tables, whole GEMMs
//! built from fragments against a plain product, and the ways such kernels go wrong.
//!
//! The simulator's `mma` accumulates each output from C, products in k order, one f32 fma per
//! product (`frag.rs`); the references below compute that same order, so results must agree bit
//! for bit, and also lie within `K · 2⁻²⁴ · Σ|a·b|` of the exact product.

use lathe_kernel::build::{int_imm, KernelBuilder};
use lathe_kernel::frag;
use lathe_kernel::ir::{Access, Axis, BinOp, Cmp, Kernel, MmaElem, MmaShape, Operand, Reg, Space, Special, Ty};
use lathe_kernel::layout::{self, Table};
use lathe_kernel::sim::{run, Arg, Counters, ErrorKind, Launch, Options, SimError};
use lathe_kernel::verify::verify;
use lathe_numerics as num;
use lathe_numerics::DType;

/// A small deterministic generator (tests need no randomness, only variety).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 30) as f32 - 1.0
    }
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn go(k: &Kernel, threads: u32, args: &mut [Arg]) -> Result<Counters, SimError> {
    run(k, &Launch { grid: [1, 1, 1], block: [threads, 1, 1] }, args, &Options::default())
}

fn out(args: &[Arg], i: usize) -> Vec<u8> {
    match &args[i] {
        Arg::Buffer(b) => b.clone(),
        Arg::Scalar(_) => Vec::new(),
    }
}

/// `x · scale` as a u32 register.
fn mul(b: &mut KernelBuilder, x: Reg, scale: i64) -> Reg {
    b.bin(BinOp::Mul, Ty::U32, x, int_imm(scale))
}

/// `base (u64) + off (u32)`.
fn at(b: &mut KernelBuilder, base: impl Into<Operand>, off: Reg) -> Reg {
    let wide = b.cvt(Ty::U64, Ty::U32, None, false, off);
    b.bin(BinOp::Add, Ty::U64, base, wide)
}

// ---------------------------------------------------------------------------------------------
// The two layout sources agree.

/// Every operand: the closed form (`frag`) and the transcribed table (`layout`) name the same
/// matrix element for every lane and element, and the table covers its matrix exactly once.
#[test]
fn closed_form_and_tables_agree_on_every_lane_and_element() {
    for shape in [MmaShape::M16n8k16, MmaShape::M16n8k32] {
        let a = layout::mma_a(shape);
        let b = layout::mma_b(shape);
        assert!(a.is_bijection() && b.is_bijection(), "{shape:?}");
        assert_eq!((a.per_lane, b.per_lane), (frag::a_elems(shape), frag::b_elems(shape)));
        for lane in 0..32 {
            for e in 0..a.per_lane {
                assert_eq!(a.pos(lane, e), frag::a_pos(shape, lane, e), "A {shape:?} lane {lane} a{e}");
            }
            for e in 0..b.per_lane {
                assert_eq!(b.pos(lane, e), frag::b_pos(shape, lane, e), "B {shape:?} lane {lane} b{e}");
            }
        }
    }
    let c = layout::mma_c();
    assert!(c.is_bijection());
    for lane in 0..32 {
        for e in 0..4 {
            assert_eq!(c.pos(lane, e), frag::c_pos(lane, e), "C lane {lane} c{e}");
        }
    }
    for count in [1, 2, 4] {
        for trans in [false, true] {
            let t = layout::ldmatrix(count, trans);
            assert!(t.is_bijection(), "x{count} trans {trans}");
            for lane in 0..32 {
                for m in 0..count {
                    for h in 0..2 {
                        let (mat, r, col) = frag::ldmatrix_pos(trans, lane, m, h);
                        assert_eq!(t.pos(lane, 2 * m + h), (8 * mat + r, col), "x{count} {trans} lane {lane} r{m}.{h}");
                    }
                }
            }
        }
    }
    // Spot values from the ISA figures, so that the two cannot agree on a shared mistake in the
    // most-used corners: lane 5 (group 1, thread 1) of A m16n8k16 holds (1,2),(1,3),(9,2),(9,3),
    // (1,10),(1,11),(9,10),(9,11); lane 31 of B m16n8k32 holds k 12..16 and 28..32 of column 7.
    let a = layout::mma_a(MmaShape::M16n8k16);
    let lane5: Vec<_> = (0..8).map(|e| a.pos(5, e)).collect();
    assert_eq!(lane5, [(1, 2), (1, 3), (9, 2), (9, 3), (1, 10), (1, 11), (9, 10), (9, 11)]);
    let b = layout::mma_b(MmaShape::M16n8k32);
    let lane31: Vec<_> = (0..8).map(|e| b.pos(31, e)).collect();
    assert_eq!(lane31, [(12, 7), (13, 7), (14, 7), (15, 7), (28, 7), (29, 7), (30, 7), (31, 7)]);
    assert_eq!(layout::mma_c().owner(15, 7), Some((31, 3)));
}

// ---------------------------------------------------------------------------------------------
// ldmatrix against the tables.

/// Fills `8·count` shared rows of 8 b16 (row stride 32 bytes, rows in matrix order) with
/// `row·8 + col`, loads them with ldmatrix, stores every lane's registers to `out`.
fn ldmatrix_probe(count: usize, trans: bool) -> Kernel {
    let mut b = KernelBuilder::new("ldmatrix_probe", 32);
    let o = b.buffer("out", DType::I32, Access::Written);
    let base = b.shared(32 * 8 * count as u32, 16);
    let lane = b.special(Special::LaneId);
    // Each lane writes rows `lane`, `lane + 32`, ... (as many as there are): element c of row r
    // is `8r + c`, two per 32-bit word.
    for rep in 0..count.div_ceil(4) {
        let row = b.bin(BinOp::Add, Ty::U32, lane, int_imm(32 * rep as i64));
        let inside = b.setp(Cmp::Lt, Ty::U32, row, int_imm(8 * count as i64));
        b.if_then(inside, |b| {
            let off = mul(b, row, 32);
            let addr = at(b, int_imm(i64::from(base)), off);
            let v0 = mul(b, row, 8);
            let mut words = Vec::new();
            for w in 0..4 {
                let lo = b.bin(BinOp::Add, Ty::U32, v0, int_imm(2 * w));
                let hi = b.bin(BinOp::Add, Ty::U32, v0, int_imm(2 * w + 1));
                let hi = b.bin(BinOp::Shl, Ty::U32, hi, int_imm(16));
                words.push(Operand::from(b.bin(BinOp::Or, Ty::U32, lo, hi)));
            }
            b.st(Space::Shared, Ty::U32, addr, 0, &words);
        });
    }
    b.bar();
    // Lane 8m + r supplies row r of matrix m; lanes past the last matrix repeat row addresses.
    let row = b.bin(BinOp::Rem, Ty::U32, lane, int_imm(8 * count as i64));
    let off = mul(&mut b, row, 32);
    let addr = at(&mut b, int_imm(i64::from(base)), off);
    let regs = b.ldmatrix(count, trans, addr, 0);
    let o_off = mul(&mut b, lane, 4 * count as i64);
    let dst = at(&mut b, o, o_off);
    let src: Vec<Operand> = regs.into_iter().map(Operand::from).collect();
    b.st(Space::Global, Ty::B32, dst, 0, &src);
    b.finish()
}

#[test]
fn ldmatrix_delivers_the_tabulated_elements() {
    for count in [1, 2, 4] {
        for trans in [false, true] {
            let k = ldmatrix_probe(count, trans);
            let mut args = vec![Arg::Buffer(vec![0; 32 * 4 * count])];
            let c = go(&k, 32, &mut args).expect("clean");
            // 8 rows of 16 bytes at a stride of 32 bytes: rows r and r + 4 share banks, one
            // replay per 8 rows, for the staging stores and the ldmatrix phases alike.
            assert_eq!(c.bank_replays, 2 * count as u64, "x{count} {trans}: {c:?}");
            let words: Vec<u32> =
                out(&args, 0).chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
            let t = layout::ldmatrix(count, trans);
            for lane in 0..32 {
                for m in 0..count {
                    let w = words[lane * count + m];
                    for h in 0..2 {
                        let (r, col) = t.pos(lane, 2 * m + h);
                        let got = (w >> (16 * h)) & 0xffff;
                        assert_eq!(got as usize, 8 * r + col, "x{count} trans {trans} lane {lane} r{m} half {h}");
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One mma against the tables, for every input type.

/// Each lane loads its A, B and C registers (packed on the host by the tables), one mma, D out.
fn single_mma(atype: MmaElem, btype: MmaElem) -> Kernel {
    let mut b = KernelBuilder::new("single_mma", 32);
    let a = b.buffer("a", DType::I32, Access::ReadOnly);
    let x = b.buffer("b", DType::I32, Access::ReadOnly);
    let c = b.buffer("c", DType::F32, Access::ReadOnly);
    let d = b.buffer("d", DType::F32, Access::Written);
    let lane = b.special(Special::LaneId);
    let o16 = mul(&mut b, lane, 16);
    let o8 = mul(&mut b, lane, 8);
    let pa = at(&mut b, a, o16);
    let pb = at(&mut b, x, o8);
    let pc = at(&mut b, c, o16);
    let pd = at(&mut b, d, o16);
    let ra = b.ld(Space::Global, Ty::B32, 4, pa, 0, true);
    let rb = b.ld(Space::Global, Ty::B32, 2, pb, 0, true);
    let rc = b.ld(Space::Global, Ty::F32, 4, pc, 0, true);
    let rd = b.mma(
        atype,
        btype,
        [ra[0], ra[1], ra[2], ra[3]],
        [rb[0], rb[1]],
        [rc[0].into(), rc[1].into(), rc[2].into(), rc[3].into()],
    );
    b.st(Space::Global, Ty::F32, pd, 0, &rd.map(Operand::from));
    b.finish()
}

/// A random finite element of `t`: its bits.
fn random_elem(rng: &mut Lcg, t: MmaElem) -> u32 {
    loop {
        let bits = match t {
            MmaElem::Bf16 => u32::from(num::f32_to_bf16_bits(rng.unit() * 4.0)),
            MmaElem::F16 => u32::from(num::f32_to_f16_bits(rng.unit() * 4.0)),
            MmaElem::E4m3 | MmaElem::E5m2 => rng.next() & 0xff,
        };
        if frag::decode(t, bits).is_finite() {
            return bits;
        }
    }
}

/// Packs a matrix of element bits into per-lane registers by `table`.
fn pack(table: &Table, bits: &[Vec<u32>], width: u32, regs: usize) -> Vec<u32> {
    let per = (32 / width) as usize;
    let mut words = vec![0u32; 32 * regs];
    for lane in 0..32 {
        for e in 0..table.per_lane {
            let (r, c) = table.pos(lane, e);
            words[lane * regs + e / per] |= bits[r][c] << (width * (e % per) as u32);
        }
    }
    words
}

fn le_words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn one_mma_of_each_type_matches_the_fixed_order_product() {
    let kinds = [
        (MmaElem::Bf16, MmaElem::Bf16),
        (MmaElem::F16, MmaElem::F16),
        (MmaElem::E4m3, MmaElem::E4m3),
        (MmaElem::E5m2, MmaElem::E5m2),
        (MmaElem::E4m3, MmaElem::E5m2),
    ];
    let mut rng = Lcg(7);
    for (at_, bt) in kinds {
        let shape = at_.shape();
        let kk = shape.k();
        let a: Vec<Vec<u32>> = (0..16).map(|_| (0..kk).map(|_| random_elem(&mut rng, at_)).collect()).collect();
        let bm: Vec<Vec<u32>> = (0..kk).map(|_| (0..8).map(|_| random_elem(&mut rng, bt)).collect()).collect();
        let c: Vec<Vec<f32>> = (0..16).map(|_| (0..8).map(|_| rng.unit() * 8.0).collect()).collect();
        let cbits: Vec<Vec<u32>> = c.iter().map(|r| r.iter().map(|x| x.to_bits()).collect()).collect();
        let ct = layout::mma_c();
        let args_a = pack(&layout::mma_a(shape), &a, at_.bits(), 4);
        let args_b = pack(&layout::mma_b(shape), &bm, bt.bits(), 2);
        let args_c = pack(&ct, &cbits, 32, 4);
        let mut args = vec![
            Arg::Buffer(le_words(&args_a)),
            Arg::Buffer(le_words(&args_b)),
            Arg::Buffer(le_words(&args_c)),
            Arg::Buffer(vec![0; 32 * 16]),
        ];
        let counters = go(&single_mma(at_, bt), 32, &mut args).expect("clean");
        assert_eq!(counters.tensor, 1);
        let d = f32s(&out(&args, 3));
        for i in 0..16 {
            for j in 0..8 {
                let want =
                    (0..kk).fold(c[i][j], |acc, k| frag::decode(at_, a[i][k]).mul_add(frag::decode(bt, bm[k][j]), acc));
                let (lane, e) = ct.owner(i, j).expect("C covers 16×8");
                let got = d[lane * 4 + e];
                assert_eq!(got.to_bits(), want.to_bits(), "{at_:?}×{bt:?} D[{i}][{j}]: {got} vs {want}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A 64×64×64 bf16 GEMM from ldmatrix + mma fragments.

const BF16_PITCH: i64 = 144; // 64 bf16 (128 bytes) padded by 16: ldmatrix rows hit distinct banks

/// `C (64×64 f32) = A (64×64 bf16, row-major) · B (64×64 bf16, row-major, K×N)`.
///
/// One CTA of 4 warps; warp `w` computes the 32×32 tile at rows `32·(w/2)`, columns
/// `32·(w%2)`: per 16-deep k step two A fragments (`ldmatrix.x4`, 16×16 each), two pairs of B
/// fragments (`ldmatrix.x4.trans`: B lies K×N in memory, the fragment wants it column-major),
/// and 2×4 `mma.m16n8k16`. A and B are staged in shared memory (rows padded to 144 bytes so
/// that the 8 rows of each ldmatrix phase fall in distinct banks), one `bar.sync` between the
/// staging and the fragments. Cost: 2·64³ FLOPs; 16 KiB read from global, 16 KiB written.
fn gemm_bf16() -> Kernel {
    let mut b = KernelBuilder::new("gemm_bf16_64", 128);
    let ga = b.buffer("a", DType::BF16, Access::ReadOnly);
    let gb = b.buffer("b", DType::BF16, Access::ReadOnly);
    let gc = b.buffer("c", DType::F32, Access::Written);
    let sa = b.shared(64 * BF16_PITCH as u32, 16);
    let sb = b.shared(64 * BF16_PITCH as u32, 16);
    let tid = b.special(Special::Tid(Axis::X));
    // Staging: 512 chunks of 16 bytes per operand, 4 per thread; a phase of 8 lanes is one row.
    for j in 0..4 {
        let chunk = b.bin(BinOp::Add, Ty::U32, tid, int_imm(128 * j));
        let row = b.bin(BinOp::Shr, Ty::U32, chunk, int_imm(3));
        let col = b.bin(BinOp::And, Ty::U32, chunk, int_imm(7));
        let col16 = mul(&mut b, col, 16);
        let g_off = b.fma(Ty::U32, row, int_imm(128), col16);
        let s_off = b.fma(Ty::U32, row, int_imm(BF16_PITCH), col16);
        for (g, s) in [(ga, sa), (gb, sb)] {
            let src = at(&mut b, g, g_off);
            let v = b.ld(Space::Global, Ty::B32, 4, src, 0, true);
            let dst = at(&mut b, int_imm(i64::from(s)), s_off);
            b.st(Space::Shared, Ty::B32, dst, 0, &v.into_iter().map(Operand::from).collect::<Vec<_>>());
        }
    }
    b.bar();
    let lane = b.special(Special::LaneId);
    let warp = b.bin(BinOp::Shr, Ty::U32, tid, int_imm(5));
    let wm = b.bin(BinOp::Shr, Ty::U32, warp, int_imm(1));
    let wn = b.bin(BinOp::And, Ty::U32, warp, int_imm(1));
    // The row address a lane supplies: row `lane % 16`, 8 elements (16 bytes) over for lanes
    // 16..32 — the four 8×8 matrices of a 16×16 tile in fragment order, for A as for B.
    let lrow = b.bin(BinOp::And, Ty::U32, lane, int_imm(15));
    let lhalf = b.bin(BinOp::Shr, Ty::U32, lane, int_imm(4));
    let lhalf16 = mul(&mut b, lhalf, 16);
    let lane_off = b.fma(Ty::U32, lrow, int_imm(BF16_PITCH), lhalf16);
    let wa = mul(&mut b, wm, 32 * BF16_PITCH);
    let a_off = b.bin(BinOp::Add, Ty::U32, wa, lane_off);
    let a_addr = at(&mut b, int_imm(i64::from(sa)), a_off);
    let wb = mul(&mut b, wn, 64); // 32 columns of bf16
    let b_off = b.bin(BinOp::Add, Ty::U32, wb, lane_off);
    let b_addr = at(&mut b, int_imm(i64::from(sb)), b_off);
    let zero = [Operand::Imm(0); 4];
    let mut acc: Vec<[Operand; 4]> = vec![zero; 8];
    for ks in 0..4i64 {
        let af: Vec<Vec<Reg>> =
            (0..2i64).map(|mi| b.ldmatrix(4, false, a_addr, 16 * mi * BF16_PITCH + 32 * ks)).collect();
        let bf: Vec<Vec<Reg>> =
            (0..2i64).map(|np| b.ldmatrix(4, true, b_addr, 16 * ks * BF16_PITCH + 32 * np)).collect();
        for mi in 0..2 {
            for nt in 0..4 {
                let a4 = [af[mi][0], af[mi][1], af[mi][2], af[mi][3]];
                let b2 = [bf[nt / 2][2 * (nt % 2)], bf[nt / 2][2 * (nt % 2) + 1]];
                let d = b.mma(MmaElem::Bf16, MmaElem::Bf16, a4, b2, acc[mi * 4 + nt]);
                acc[mi * 4 + nt] = d.map(Operand::from);
            }
        }
    }
    // Epilogue: lane (g, t) holds C rows g and g + 8, columns 2t and 2t + 1 of each 16×8 tile.
    let g = b.bin(BinOp::Shr, Ty::U32, lane, int_imm(2));
    let t = b.bin(BinOp::And, Ty::U32, lane, int_imm(3));
    let row = b.fma(Ty::U32, wm, int_imm(32), g);
    let t2 = mul(&mut b, t, 2);
    let col = b.fma(Ty::U32, wn, int_imm(32), t2);
    let idx = b.fma(Ty::U32, row, int_imm(64), col);
    let off = mul(&mut b, idx, 4);
    let c_addr = at(&mut b, gc, off);
    for mi in 0..2i64 {
        for nt in 0..4i64 {
            let d = acc[(mi * 4 + nt) as usize];
            let o = (16 * mi * 64 + 8 * nt) * 4;
            b.st(Space::Global, Ty::F32, c_addr, o, &d[0..2]);
            b.st(Space::Global, Ty::F32, c_addr, o + 8 * 64 * 4, &d[2..4]);
        }
    }
    b.finish()
}

#[test]
fn a_64x64x64_bf16_gemm_from_fragments_matches_the_product() {
    let k = gemm_bf16();
    verify(&k).expect("verifies");
    let mut rng = Lcg(42);
    let a: Vec<u16> = (0..64 * 64).map(|_| num::f32_to_bf16_bits(rng.unit() * 2.0)).collect();
    let bm: Vec<u16> = (0..64 * 64).map(|_| num::f32_to_bf16_bits(rng.unit() * 2.0)).collect();
    let bytes = |v: &[u16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut args = vec![Arg::Buffer(bytes(&a)), Arg::Buffer(bytes(&bm)), Arg::Buffer(vec![0; 64 * 64 * 4])];
    let c = go(&k, 128, &mut args).expect("clean");
    assert_eq!(c.tensor, 4 * 4 * 8, "{c:?}");
    assert_eq!(c.bank_replays, 0, "padded rows: {c:?}");
    let got = f32s(&out(&args, 2));
    let av: Vec<f32> = a.iter().map(|&x| num::bf16_bits_to_f32(x)).collect();
    let bv: Vec<f32> = bm.iter().map(|&x| num::bf16_bits_to_f32(x)).collect();
    for i in 0..64 {
        for j in 0..64 {
            let same_order = (0..64).fold(0f32, |acc, k| av[i * 64 + k].mul_add(bv[k * 64 + j], acc));
            let exact: f64 = (0..64).map(|k| f64::from(av[i * 64 + k]) * f64::from(bv[k * 64 + j])).sum();
            let mag: f64 = (0..64).map(|k| f64::from((av[i * 64 + k] * bv[k * 64 + j]).abs())).sum();
            let v = got[i * 64 + j];
            assert_eq!(v.to_bits(), same_order.to_bits(), "C[{i}][{j}]");
            assert!((f64::from(v) - exact).abs() <= 64.0 * f64::from(f32::EPSILON) / 2.0 * mag, "C[{i}][{j}]");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A 16×8×64 e4m3 GEMM (m16n8k32).

const FP8_PITCH: i64 = 80; // 64 bytes padded by 16

/// `C (16×8 f32) = A (16×64 e4m3, row-major) · B`, B given as 8×64 (N×K, what the `.col`
/// fragment reads row by row). One warp; per 32-deep k step an `ldmatrix.x4` of A (8 rows ×
/// 16 bytes per matrix: four fp8 per lane and register, the m16n8k32 A fragment) and an
/// `ldmatrix.x2` of B, then one `mma.m16n8k32.e4m3.e4m3`. Cost: 2·16·8·64 FLOPs; 1.5 KiB read,
/// 512 bytes written.
fn gemm_e4m3() -> Kernel {
    let mut b = KernelBuilder::new("gemm_e4m3_16x8x64", 32);
    let ga = b.buffer("a", DType::F8E4M3, Access::ReadOnly);
    let gb = b.buffer("b", DType::F8E4M3, Access::ReadOnly);
    let gc = b.buffer("c", DType::F32, Access::Written);
    let sa = b.shared(16 * FP8_PITCH as u32, 16);
    let sb = b.shared(8 * FP8_PITCH as u32, 16);
    let lane = b.special(Special::LaneId);
    // A: 64 chunks of 16 bytes, B: 32; chunk → row chunk/4, bytes 16·(chunk%4).
    for (g, s, reps) in [(ga, sa, 2), (gb, sb, 1)] {
        for j in 0..reps {
            let chunk = b.bin(BinOp::Add, Ty::U32, lane, int_imm(32 * j));
            let row = b.bin(BinOp::Shr, Ty::U32, chunk, int_imm(2));
            let col = b.bin(BinOp::And, Ty::U32, chunk, int_imm(3));
            let col16 = mul(&mut b, col, 16);
            let g_off = b.fma(Ty::U32, row, int_imm(64), col16);
            let s_off = b.fma(Ty::U32, row, int_imm(FP8_PITCH), col16);
            let src = at(&mut b, g, g_off);
            let v = b.ld(Space::Global, Ty::B32, 4, src, 0, true);
            let dst = at(&mut b, int_imm(i64::from(s)), s_off);
            b.st(Space::Shared, Ty::B32, dst, 0, &v.into_iter().map(Operand::from).collect::<Vec<_>>());
        }
    }
    b.bar();
    let lrow = b.bin(BinOp::And, Ty::U32, lane, int_imm(15));
    let lhalf = b.bin(BinOp::Shr, Ty::U32, lane, int_imm(4));
    let lhalf16 = mul(&mut b, lhalf, 16);
    let a_off = b.fma(Ty::U32, lrow, int_imm(FP8_PITCH), lhalf16);
    let a_addr = at(&mut b, int_imm(i64::from(sa)), a_off);
    // B: lanes 0..8 address rows (columns n) 0..8 at k bytes 0..16, lanes 8..16 the same rows
    // at k 16..32 (lanes 16..32 are ignored by .x2).
    let brow = b.bin(BinOp::And, Ty::U32, lane, int_imm(7));
    let bhalf = b.bin(BinOp::Shr, Ty::U32, lrow, int_imm(3));
    let bhalf16 = mul(&mut b, bhalf, 16);
    let b_off = b.fma(Ty::U32, brow, int_imm(FP8_PITCH), bhalf16);
    let b_addr = at(&mut b, int_imm(i64::from(sb)), b_off);
    let mut acc = [Operand::Imm(0); 4];
    for ks in 0..2i64 {
        let af = b.ldmatrix(4, false, a_addr, 32 * ks);
        let bf = b.ldmatrix(2, false, b_addr, 32 * ks);
        let d = b.mma(MmaElem::E4m3, MmaElem::E4m3, [af[0], af[1], af[2], af[3]], [bf[0], bf[1]], acc);
        acc = d.map(Operand::from);
    }
    let g = b.bin(BinOp::Shr, Ty::U32, lane, int_imm(2));
    let t = b.bin(BinOp::And, Ty::U32, lane, int_imm(3));
    let t2 = mul(&mut b, t, 2);
    let idx = b.fma(Ty::U32, g, int_imm(8), t2);
    let off = mul(&mut b, idx, 4);
    let c_addr = at(&mut b, gc, off);
    b.st(Space::Global, Ty::F32, c_addr, 0, &acc[0..2]);
    b.st(Space::Global, Ty::F32, c_addr, 8 * 8 * 4, &acc[2..4]);
    b.finish()
}

#[test]
fn a_16x8x64_e4m3_gemm_from_fragments_matches_the_product() {
    let k = gemm_e4m3();
    let mut rng = Lcg(3);
    let a: Vec<u8> = (0..16 * 64).map(|_| random_elem(&mut rng, MmaElem::E4m3) as u8).collect();
    let bt: Vec<u8> = (0..8 * 64).map(|_| random_elem(&mut rng, MmaElem::E4m3) as u8).collect();
    let mut args = vec![Arg::Buffer(a.clone()), Arg::Buffer(bt.clone()), Arg::Buffer(vec![0; 16 * 8 * 4])];
    let c = go(&k, 32, &mut args).expect("clean");
    assert_eq!(c.tensor, 2);
    let got = f32s(&out(&args, 2));
    for i in 0..16 {
        for j in 0..8 {
            let av = |k: usize| num::e4m3_to_f32(a[i * 64 + k]);
            let bv = |k: usize| num::e4m3_to_f32(bt[j * 64 + k]);
            let same_order = (0..64).fold(0f32, |acc, k| av(k).mul_add(bv(k), acc));
            let exact: f64 = (0..64).map(|k| f64::from(av(k)) * f64::from(bv(k))).sum();
            let mag: f64 = (0..64).map(|k| f64::from((av(k) * bv(k)).abs())).sum();
            let v = got[i * 8 + j];
            assert_eq!(v.to_bits(), same_order.to_bits(), "C[{i}][{j}]");
            assert!((f64::from(v) - exact).abs() <= 64.0 * f64::from(f32::EPSILON) / 2.0 * mag, "C[{i}][{j}]");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels written wrong.

/// An mma with zero fragments, executed by the lanes below `lanes`.
fn mma_under(lanes: i64) -> Kernel {
    let mut b = KernelBuilder::new("mma_divergent", 32);
    let d = b.buffer("d", DType::F32, Access::Written);
    let lane = b.special(Special::LaneId);
    let z = b.mov(Ty::B32, Operand::Imm(0));
    let some = b.setp(Cmp::Lt, Ty::U32, lane, int_imm(lanes));
    b.if_then(some, |b| {
        let r = b.mma(MmaElem::Bf16, MmaElem::Bf16, [z; 4], [z; 2], [Operand::Imm(0); 4]);
        let off = mul(b, lane, 4);
        let p = at(b, d, off);
        b.st(Space::Global, Ty::F32, p, 0, &[r[0].into()]);
    });
    b.finish()
}

#[test]
fn mma_under_divergence_is_a_sync_mask_error() {
    let mut args = vec![Arg::Buffer(vec![0; 128])];
    let e = go(&mma_under(16), 32, &mut args).expect_err("half a warp");
    assert_eq!(e.kind, ErrorKind::SyncMask, "{e}");
    assert_eq!(e.thread, Some([16, 0, 0]), "{e}");
    assert!(e.to_string().contains("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"), "{e}");
    go(&mma_under(32), 32, &mut args).expect("the whole warp");
}

/// Lanes write 16 bytes each to shared memory (if `write`), `bar.sync`, then an ldmatrix.x4
/// whose row `lane` starts `skew` bytes into the lane's 16.
fn ldmatrix_rows(write: bool, skew: i64) -> Kernel {
    let mut b = KernelBuilder::new("ldmatrix_rows", 32);
    let o = b.buffer("out", DType::I32, Access::Written);
    let base = b.shared(32 * 16 + 16, 16);
    let lane = b.special(Special::LaneId);
    let off = mul(&mut b, lane, 16);
    let addr = at(&mut b, int_imm(i64::from(base)), off);
    if write {
        b.st(Space::Shared, Ty::U32, addr, 0, &[Operand::Imm(1); 4]);
        b.st(Space::Shared, Ty::U32, int_imm(i64::from(base) + 32 * 16), 0, &[Operand::Imm(2); 4]);
    }
    b.bar();
    let r = b.ldmatrix(4, false, addr, skew);
    let o_off = mul(&mut b, lane, 4);
    let p = at(&mut b, o, o_off);
    b.st(Space::Global, Ty::B32, p, 0, &[r[3].into()]);
    b.finish()
}

#[test]
fn ldmatrix_with_a_misaligned_row_is_refused() {
    let mut args = vec![Arg::Buffer(vec![0; 128])];
    let e = go(&ldmatrix_rows(true, 8), 32, &mut args).expect_err("8 bytes off");
    assert_eq!(e.kind, ErrorKind::Misaligned, "{e}");
    assert_eq!(e.thread, Some([0, 0, 0]), "{e}");
    go(&ldmatrix_rows(true, 0), 32, &mut args).expect("aligned twin");
    go(&ldmatrix_rows(true, 16), 32, &mut args).expect("one row further is still aligned and in bounds");
}

#[test]
fn ldmatrix_of_unwritten_shared_memory_is_uninitialized() {
    let mut args = vec![Arg::Buffer(vec![0; 128])];
    let e = go(&ldmatrix_rows(false, 0), 32, &mut args).expect_err("nothing written");
    assert_eq!(e.kind, ErrorKind::UninitializedMemory, "{e}");
    assert!(e.to_string().contains("ldmatrix"), "{e}");
}

#[test]
fn a_partial_warp_cannot_execute_ldmatrix() {
    let mut args = Vec::new();
    let k = {
        let mut b = KernelBuilder::new("partial", 64);
        let base = b.shared(512, 16);
        let tid = b.special(Special::Tid(Axis::X));
        let off = mul(&mut b, tid, 16);
        let addr = at(&mut b, int_imm(i64::from(base)), off);
        b.ldmatrix(1, false, addr, 0);
        b.finish()
    };
    let e = go(&k, 16, &mut args).expect_err("16 threads");
    assert_eq!(e.kind, ErrorKind::SyncMask, "{e}");
}

#[test]
fn the_verifier_refuses_mma_and_ldmatrix_forms_the_ir_lacks() {
    let mut b = KernelBuilder::new("bad_forms", 32);
    let z = b.mov(Ty::B32, Operand::Imm(0));
    b.mma(MmaElem::Bf16, MmaElem::F16, [z; 4], [z; 2], [Operand::Imm(0); 4]);
    let half = b.mov(Ty::F16, Operand::Imm(0));
    b.mma(MmaElem::E4m3, MmaElem::E5m2, [z; 4], [half, z], [Operand::Imm(0); 4]);
    b.push(lathe_kernel::ir::Inst::Ldmatrix { trans: false, dst: vec![z, z, z], addr: Operand::Imm(0), offset: 0 });
    let errs = verify(&b.finish()).expect_err("three bad instructions");
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs[0].message.contains("bf16.f16"), "{errs:?}");
    assert!(errs[1].message.contains("f16, expected b32"), "{errs:?}");
    assert!(errs[2].message.contains("3 matrices"), "{errs:?}");
}
