//! Numeric core of the reference interpreter: GEMM, the Mamba-2 SSD scan,
//! causal depthwise conv, attention, norms, patch embedding and sampling.
//!
//! Every tensor is f32, row-major and contiguous; arithmetic and accumulation
//! are f32. Shapes the caller guarantees are only `debug_assert!`ed; values
//! that can be inconsistent at run time (cache lengths, RoPE config) are
//! reported through [`KernelError`].

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::fmt;

/// A run-time inconsistency in a kernel's inputs; the string says which.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelError(pub String);

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel error: {}", self.0)
    }
}

impl std::error::Error for KernelError {}

fn fail<T>(msg: String) -> Result<T, KernelError> {
    Err(KernelError(msg))
}

// ---------------------------------------------------------------- GEMM ----
//
// Products go through faer's safe `matmul` (packed kernels with run-time AVX2/AVX-512 dispatch,
// parallel on rayon): the workspace forbids `unsafe_code`, which rules out calling the raw
// `sgemm` entry points of GEMM crates directly. Transposes are strides, so no operand is copied.

/// The threads that run large GEMMs. They were kept apart from rayon's global pool when libm's
/// `exp` (used by silu and softmax then) ran dozens of times slower on threads whose vector unit
/// the AVX-512 GEMM kernels had left dirty; `exp` is our own now and a single pool measured the
/// same, but the split is kept so legacy-SSE code never shares a thread with those kernels. `None` if the pool cannot be built (then GEMMs
/// run on the calling thread).
fn gemm_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("lathe-gemm-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Batched matrix product: `out[i] = op(A_i) · op(B_i)` for `i < batch`,
/// with `out` laid out `[batch, m, n]` and fully overwritten.
///
/// `A_i` starts at `a[i * a_batch_stride]`, `B_i` at `b[i * b_batch_stride]`
/// (a stride of 0 broadcasts one matrix to every batch). Without transpose
/// `A_i` is stored `[m, k]`; with `trans_a` it is stored `[k, m]` and its
/// transpose is used. Likewise `B_i` is stored `[k, n]`, or `[n, k]` with
/// `trans_b`. Sums over `k` accumulate in f32 in the blocked order of the GEMM
/// kernel (not a plain left-to-right loop); `k == 0` yields zeros.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_batch_stride: usize,
    trans_a: bool,
    b: &[f32],
    b_batch_stride: usize,
    trans_b: bool,
    out: &mut [f32],
) {
    debug_assert!(out.len() >= batch * m * n);
    if batch == 0 || m == 0 || n == 0 {
        return;
    }
    let out = &mut out[..batch * m * n];
    if k == 0 {
        out.fill(0.0);
        return;
    }
    debug_assert!(a.len() >= (batch - 1) * a_batch_stride + m * k);
    debug_assert!(b.len() >= (batch - 1) * b_batch_stride + k * n);
    // Threads pay off only for products of some size (decode GEMVs are bandwidth-bound anyway).
    let pool = if m * n * k >= 1 << 20 { gemm_pool() } else { None };
    let threads = pool.map_or(1, |p| p.current_num_threads().max(1));
    let run = |o: &mut [f32], i: usize| {
        let ab = &a[i * a_batch_stride..][..m * k];
        let bb = &b[i * b_batch_stride..][..k * n];
        let lhs = if trans_a {
            MatRef::from_row_major_slice(ab, k, m).transpose()
        } else {
            MatRef::from_row_major_slice(ab, m, k)
        };
        let rhs = if trans_b {
            MatRef::from_row_major_slice(bb, n, k).transpose()
        } else {
            MatRef::from_row_major_slice(bb, k, n)
        };
        let out = MatMut::from_row_major_slice_mut(o, m, n);
        // The output columns (or rows: the columns of the transposed product) are cut into
        // blocks, about four per thread and at least 64 wide, each run by the sequential kernel
        // and balanced by work stealing: on the shapes of a forward pass this beats splitting
        // inside the product, and a thread slowed by a busy core does not hold up the rest.
        // Every output element is still one dot product over `k` in the kernel's order.
        const MIN_BLOCK: usize = 64;
        const BLOCKS_PER_THREAD: usize = 4;
        let blocks = |d: usize| (threads * BLOCKS_PER_THREAD).min(d / MIN_BLOCK).max(threads);
        if threads > 1 && n >= MIN_BLOCK * threads {
            matmul_column_blocks(out, lhs, rhs, blocks(n));
        } else if threads > 1 && m >= MIN_BLOCK * threads {
            matmul_column_blocks(out.transpose_mut(), rhs.transpose(), lhs.transpose(), blocks(m));
        } else {
            let par = if threads > 1 { Par::rayon(threads) } else { Par::Seq };
            matmul(out, Accum::Replace, lhs, rhs, 1.0f32, par);
        }
    };
    for (i, o) in out.chunks_mut(m * n).enumerate() {
        match pool {
            Some(p) => p.install(|| run(o, i)),
            None => run(o, i),
        }
    }
}

/// `out = lhs · rhs` with the columns of `out` (and `rhs`) cut into up to `blocks` blocks, all
/// but the last a multiple of 16 wide, one sequential product per block, in parallel on the
/// current pool.
fn matmul_column_blocks(out: MatMut<'_, f32>, lhs: MatRef<'_, f32>, rhs: MatRef<'_, f32>, blocks: usize) {
    let width = out.ncols().div_ceil(blocks).next_multiple_of(16);
    let mut parts = Vec::with_capacity(blocks);
    let (mut rest_out, mut rest_rhs) = (out, rhs);
    while rest_out.ncols() > width {
        let (o1, o2) = rest_out.split_at_col_mut(width);
        let (r1, r2) = rest_rhs.split_at_col(width);
        parts.push((o1, r1));
        (rest_out, rest_rhs) = (o2, r2);
    }
    parts.push((rest_out, rest_rhs));
    parts.into_par_iter().for_each(|(o, r)| matmul(o, Accum::Replace, lhs, r, 1.0f32, Par::Seq));
}

// ------------------------------------------------------------ SSD scan ----

/// Lanes of [`scan_step`]: one tile of 16 channels whose outputs stay in registers while the
/// state rows stream past.
const SCAN_TILE: usize = 16;

/// One time step of one head, on a state held transposed, `st` `[N, P]`: for every `n` and
/// `p`, `st[n,p] = decay·st[n,p] + dx[p]·b[n]`, and `y[p] = Σ_n st[n,p]·c[n]` summed in `n`
/// order. Every product and sum rounds separately (no fused multiply-add), so the result is the
/// same whichever vector width runs it.
#[inline(always)]
fn scan_step(st: &mut [f32], dx: &[f32], b: &[f32], c: &[f32], decay: f32, y: &mut [f32]) {
    let p = dx.len();
    let (dx_tiles, dx_tail) = dx.as_chunks::<SCAN_TILE>();
    let (y_tiles, y_tail) = y.as_chunks_mut::<SCAN_TILE>();
    for (tile, (d, yt)) in dx_tiles.iter().zip(y_tiles).enumerate() {
        let mut acc = [0.0f32; SCAN_TILE];
        for ((row, &bn), &cn) in st.chunks_exact_mut(p).zip(b).zip(c) {
            let s = &mut row.as_chunks_mut::<SCAN_TILE>().0[tile];
            let mut v = *s;
            for (vi, &di) in v.iter_mut().zip(d) {
                *vi = decay * *vi + di * bn;
            }
            for (ai, &vi) in acc.iter_mut().zip(&v) {
                *ai += vi * cn;
            }
            *s = v;
        }
        *yt = acc;
    }
    let done = p - dx_tail.len();
    for (k, (&d, yv)) in dx_tail.iter().zip(y_tail).enumerate() {
        let mut acc = 0.0f32;
        for ((row, &bn), &cn) in st.chunks_exact_mut(p).zip(b).zip(c) {
            let s = &mut row[done + k];
            *s = decay * *s + d * bn;
            acc += *s * cn;
        }
        *yv = acc;
    }
}

/// The recurrence of one head over one sequence (see [`ssd_scan`]), as a unit of work that
/// `pulp` compiles for each vector width and runs at the widest the CPU has.
struct ScanHead<'a> {
    dims: &'a SsdDims,
    h: usize,
    decay_rate: f32,
    /// `[S, H, P]`, `[S, H]`, `[S, G, N]`, `[S, G, N]` of this sequence.
    x: &'a [f32],
    dt: &'a [f32],
    bm: &'a [f32],
    cm: &'a [f32],
    /// The state, transposed: `[N, P]`.
    st: &'a mut [f32],
    /// `[S, P]`.
    y: &'a mut [f32],
}

impl pulp::WithSimd for ScanHead<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let ScanHead { dims, h, decay_rate, x, dt, bm, cm, st, y } = self;
        let (heads, groups, p, n) = (dims.heads, dims.groups, dims.head_dim, dims.state);
        let g = h / (heads / groups.max(1)).max(1);
        let mut dx = vec![0.0f32; p];
        for (t, yrow) in y.chunks_exact_mut(p).enumerate() {
            let dtv = dt[t * heads + h];
            let decay = lathe_numerics::exp(dtv * decay_rate);
            for (d, &xv) in dx.iter_mut().zip(&x[(t * heads + h) * p..][..p]) {
                *d = dtv * xv;
            }
            let brow = &bm[(t * groups + g) * n..][..n];
            let crow = &cm[(t * groups + g) * n..][..n];
            scan_step(st, &dx, brow, crow, decay, yrow);
        }
    }
}

/// Dimensions of [`ssd_scan`]: B, S, H, P, G, N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsdDims {
    /// B: independent sequences.
    pub batch: usize,
    /// S: time steps.
    pub seq: usize,
    /// H: heads; a multiple of `groups`.
    pub heads: usize,
    /// P: channels per head.
    pub head_dim: usize,
    /// G: groups sharing one B/C projection (heads split into G blocks).
    pub groups: usize,
    /// N: state size.
    pub state: usize,
}

/// The Mamba-2 selective scan (`scan.ssd`) as its sequential recurrence.
///
/// Layouts: `x`, `y` `[B,S,H,P]`; `dt` `[B,S,H]` (already positive); `a`
/// `[H]` (already negative); `bm`, `cm` `[B,S,G,N]`; `state0`, `state_out`
/// `[B,H,P,N]`. Head `h` reads group `g = h / (H/G)`. For each (b, h) and
/// t = 0..S, starting from `state0`:
/// `state[p,n] = exp(dt[t,h]·a[h])·state[p,n] + dt[t,h]·x[t,h,p]·bm[t,g,n]`,
/// then `y[t,h,p] = Σ_n state[p,n]·cm[t,g,n]`, summed in `n` order; each product and sum
/// rounds separately. `state_out` is the final state (`state0` when S = 0). No D skip term and
/// no gate. Parallel over (b, h).
#[allow(clippy::too_many_arguments)]
pub fn ssd_scan(
    d: &SsdDims,
    x: &[f32],
    dt: &[f32],
    a: &[f32],
    bm: &[f32],
    cm: &[f32],
    state0: &[f32],
    y: &mut [f32],
    state_out: &mut [f32],
) {
    let (seq, heads, groups) = (d.seq, d.heads, d.groups);
    let (p, n, bh_count) = (d.head_dim, d.state, d.batch * d.heads);
    debug_assert!(groups > 0 && heads % groups == 0);
    debug_assert!(x.len() >= bh_count * seq * p && y.len() >= bh_count * seq * p);
    debug_assert!(dt.len() >= bh_count * seq && a.len() >= heads);
    debug_assert!(bm.len().min(cm.len()) >= d.batch * seq * groups * n);
    debug_assert!(state0.len().min(state_out.len()) >= bh_count * p * n);
    let y = &mut y[..bh_count * seq * p];
    if p == 0 || n == 0 || bh_count == 0 {
        y.fill(0.0);
        return;
    }
    // The vector width is chosen at run time (AVX2 where the CPU has it); the arithmetic is the
    // same at every width.
    let arch = pulp::Arch::new();
    // y interleaves heads, so each (b, h) fills a private [S, P] buffer that is scattered
    // afterwards. The state is worked on transposed, [N, P], so that the P channels are the
    // vector lanes and the sum over N needs no horizontal reduction.
    let states = state_out[..bh_count * p * n].par_chunks_mut(p * n).enumerate();
    let ys: Vec<Vec<f32>> = states
        .map(|(bh, st)| {
            let (b, h) = (bh / heads, bh % heads);
            let s0 = &state0[bh * p * n..][..p * n];
            let mut tr = vec![0.0f32; p * n];
            for (pi, row) in s0.chunks_exact(n).enumerate() {
                for (ni, &v) in row.iter().enumerate() {
                    tr[ni * p + pi] = v;
                }
            }
            let mut yl = vec![0.0f32; seq * p];
            let xs = &x[b * seq * heads * p..][..seq * heads * p];
            let dts = &dt[b * seq * heads..][..seq * heads];
            let bs = &bm[b * seq * groups * n..][..seq * groups * n];
            let cs = &cm[b * seq * groups * n..][..seq * groups * n];
            arch.dispatch(ScanHead {
                dims: d,
                h,
                decay_rate: a[h],
                x: xs,
                dt: dts,
                bm: bs,
                cm: cs,
                st: &mut tr,
                y: &mut yl,
            });
            for (pi, row) in st.chunks_exact_mut(n).enumerate() {
                for (ni, v) in row.iter_mut().enumerate() {
                    *v = tr[ni * p + pi];
                }
            }
            yl
        })
        .collect();
    y.par_chunks_mut(p).enumerate().for_each(|(bth, yr)| {
        let (b, t, h) = (bth / heads / seq, bth / heads % seq, bth % heads);
        yr.copy_from_slice(&ys[b * heads + h][t * p..][..p]);
    });
}

// ---------------------------------------------------------- causal conv ----

/// Depthwise causal 1-D convolution with a carried window (no activation).
///
/// `x` `[B,S,C]`, `weight` `[C,W]`, `bias` `[C]`, `state` and `state_out`
/// `[B,W−1,C]` hold the previous W−1 inputs, oldest first. With
/// `xx = concat(state, x)` along time, `y[b,t,c] = bias[c] +
/// Σ_{k<W} weight[c,k]·xx[b,t+k,c]` (summed in k order) and `state_out` is the
/// last W−1 rows of `xx`. `width` must be ≥ 1.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_causal(
    batch: usize,
    seq: usize,
    channels: usize,
    width: usize,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    state: &[f32],
    y: &mut [f32],
    state_out: &mut [f32],
) {
    debug_assert!(width >= 1);
    let (c, hist) = (channels, width.saturating_sub(1));
    debug_assert!(x.len() >= batch * seq * c && y.len() >= batch * seq * c);
    debug_assert!(weight.len() >= c * width && bias.len() >= c);
    debug_assert!(state.len().min(state_out.len()) >= batch * hist * c);
    if c == 0 || batch == 0 {
        return;
    }
    // Materializing xx makes every output row one contiguous W-row window,
    // and [W, C] weights make the channel loop contiguous too.
    let (len, hc) = ((hist + seq) * c, hist * c);
    let mut xx = vec![0.0f32; batch * len];
    for (b, xb) in xx.chunks_exact_mut(len).enumerate() {
        xb[..hc].copy_from_slice(&state[b * hc..][..hc]);
        xb[hc..].copy_from_slice(&x[b * seq * c..][..seq * c]);
        state_out[b * hc..][..hc].copy_from_slice(&xb[seq * c..]);
    }
    let wt: Vec<f32> = (0..width * c).map(|i| weight[(i % c) * width + i / c]).collect();
    let block = ROW_BLOCK.div_ceil(c).max(1);
    let arch = pulp::Arch::new();
    y[..batch * seq * c].par_chunks_mut(c * block).enumerate().for_each(|(i, y)| {
        arch.dispatch(ConvRows { seq, c, len, first: i * block, xx: &xx, wt: &wt, bias, y });
    });
}

/// Rows of [`conv1d_causal`], as a unit of work `pulp` compiles per vector width.
struct ConvRows<'a> {
    seq: usize,
    c: usize,
    /// Length of one sequence's `concat(state, x)` window buffer.
    len: usize,
    /// Index (b·S + t) of the first row.
    first: usize,
    xx: &'a [f32],
    wt: &'a [f32],
    bias: &'a [f32],
    y: &'a mut [f32],
}

impl pulp::WithSimd for ConvRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let ConvRows { seq, c, len, first, xx, wt, bias, y } = self;
        for (i, yr) in y.chunks_exact_mut(c).enumerate() {
            let bt = first + i;
            let win = &xx[(bt / seq) * len + (bt % seq) * c..];
            yr.copy_from_slice(&bias[..c]);
            for (wk, xr) in wt.chunks_exact(c).zip(win.chunks_exact(c)) {
                for ((o, &w), &xv) in yr.iter_mut().zip(wk).zip(xr) {
                    *o += w * xv;
                }
            }
        }
    }
}

// ----------------------------------------------------------- attention ----

pub use lathe_ir::ops::MaskKind;

/// Dimensions of [`attention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnDims {
    /// B: sequences.
    pub batch: usize,
    /// S: queries per sequence.
    pub q_len: usize,
    /// T: capacity (rows) of the K/V buffers.
    pub kv_cap: usize,
    /// Hq: query heads; a multiple of `kv_heads`.
    pub q_heads: usize,
    /// Hkv: key/value heads.
    pub kv_heads: usize,
    /// D: query/key head width.
    pub head_dim: usize,
    /// Dv: value head width.
    pub v_dim: usize,
}

/// Scaled dot-product attention over a (possibly partly filled) K/V buffer.
///
/// `q` `[B,S,Hq,D]`, `k` `[B,T,Hkv,D]`, `v` `[B,T,Hkv,Dv]`, `kv_len` `[B]`
/// valid rows per sequence, `out` `[B,S,Hq,Dv]` (overwritten). Query head h
/// uses kv head `h / (Hq/Hkv)`. Visible keys follow [`MaskKind`];
/// `scores = scale·(q'·k')` (the dot products summed in a GEMM kernel's blocked order),
/// softmax in f32 with max subtraction over the visible keys, `out = Σ_j p_j·v_j` (a GEMM over
/// a block of 8 or more query rows, masked weights exactly 0; otherwise, or when some value is
/// not finite so that masked keys could contribute NaN, in key order per row); a query with no
/// visible key gets zeros.
///
/// Errors: `kv_len` length ≠ B, `kv_len[b] < 0` or `> T`, `Causal` with
/// `kv_len[b] < S`, Hq not a multiple of Hkv. K and V are only read.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    d: &AttnDims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    kv_len: &[i64],
    mask: MaskKind,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let (s, t, hq, hkv) = (d.q_len, d.kv_cap, d.q_heads, d.kv_heads);
    let (dd, dv, nb) = (d.head_dim, d.v_dim, d.batch);
    if kv_len.len() != nb {
        return fail(format!("{} kv_len entries for batch {nb}", kv_len.len()));
    }
    if hkv == 0 && hq > 0 || hkv > 0 && hq % hkv != 0 {
        return fail(format!("q heads {hq} not a multiple of kv heads {hkv}"));
    }
    let mut lens = Vec::with_capacity(nb);
    for (b, &l) in kv_len.iter().enumerate() {
        let l = match usize::try_from(l) {
            Ok(l) if l <= t => l,
            _ => return fail(format!("kv_len[{b}] = {l} outside 0..={t}")),
        };
        if mask == MaskKind::Causal && l < s {
            return fail(format!("causal kv_len[{b}] = {l} < q_len {s}"));
        }
        lens.push(l);
    }
    debug_assert!(q.len() >= nb * s * hq * dd && out.len() >= nb * s * hq * dv);
    debug_assert!(k.len() >= nb * t * hkv * dd && v.len() >= nb * t * hkv * dv);
    let out = &mut out[..nb * s * hq * dv];
    if out.is_empty() {
        return Ok(());
    }
    let group = hq / hkv.max(1);
    // Queries go in blocks of rows: per block and head, the scores against every key some row
    // of the block sees are one product (Q_h · K_hᵀ); each row then takes the softmax over its
    // own visible keys and sums their values. Blocks of one sequence hold contiguous output.
    const Q_BLOCK: usize = 64;
    let arch = pulp::Arch::new();
    let per_seq = s * hq * dv;
    out.par_chunks_mut(per_seq.max(1)).enumerate().for_each(|(b, ob)| {
        ob.par_chunks_mut((Q_BLOCK * hq * dv).max(1)).enumerate().for_each(|(blk, ob)| {
            let len = lens[b];
            let (i0, rows) = (blk * Q_BLOCK, ob.len() / (hq * dv).max(1));
            // Query i sees keys 0..visible(i).
            let visible = |i: usize| match mask {
                MaskKind::Causal => len - s + i + 1,
                MaskKind::Bidirectional | MaskKind::Cross => len,
            };
            let widest = visible(i0 + rows - 1);
            ob.fill(0.0);
            if widest == 0 {
                return;
            }
            let mut qh = vec![0.0f32; rows * dd];
            let mut scores = vec![0.0f32; rows * widest];
            // Per kv head: are its values over the block's keys all finite (checked once)?
            let mut finite_v: Vec<Option<bool>> = vec![None; hkv];
            for h in 0..hq {
                let hk = h / group;
                if dd == 0 {
                    // Empty dot products: every score is 0 and the weights are uniform.
                    scores.fill(0.0);
                } else {
                    for (r, qr) in qh.chunks_exact_mut(dd).enumerate() {
                        qr.copy_from_slice(&q[((b * s + i0 + r) * hq + h) * dd..][..dd]);
                    }
                    let first = (b * t * hkv + hk) * dd;
                    let kh = MatRef::from_row_major_slice_with_stride(&k[first..], widest, dd, hkv * dd);
                    let lhs = MatRef::from_row_major_slice(&qh, rows, dd);
                    let dst = MatMut::from_row_major_slice_mut(&mut scores, rows, widest);
                    matmul(dst, Accum::Replace, lhs, kh.transpose(), 1.0f32, Par::Seq);
                }
                // Blocks of several rows: out_h = P·V_h over the block's keys, P zero past each
                // row's visible keys. Only finite values make those zeros exact (0·inf is NaN);
                // otherwise, and for a single row (decode), each row sums its own visible values.
                let vh = &v[(b * t * hkv + hk) * dv..];
                let finite = rows >= 8
                    && *finite_v[hk].get_or_insert_with(|| {
                        (0..widest).all(|j| vh[j * hkv * dv..][..dv].iter().all(|x| x.is_finite()))
                    });
                for (r, sc) in scores.chunks_exact_mut(widest).enumerate() {
                    let (seen, unseen) = sc.split_at_mut(visible(i0 + r));
                    unseen.fill(0.0);
                    let out = (!finite).then(|| &mut ob[(r * hq + h) * dv..][..dv]);
                    arch.dispatch(SoftmaxValues { scores: seen, scale, v: vh, v_stride: hkv * dv, out });
                }
                if finite {
                    let p = MatRef::from_row_major_slice(&scores, rows, widest);
                    let vm = MatRef::from_row_major_slice_with_stride(vh, widest, dv, hkv * dv);
                    // Built as the transpose of a column-major view: faer 0.22's
                    // `from_row_major_slice_with_stride_mut` swaps the two strides.
                    let dst = MatMut::from_column_major_slice_with_stride_mut(&mut ob[h * dv..], dv, rows, hq * dv)
                        .transpose_mut();
                    matmul(dst, Accum::Replace, p, vm, 1.0f32, Par::Seq);
                }
            }
        });
    });
    Ok(())
}

// ------------------------------------------------------ norms, softmax ----

/// Rotate-half rotary embedding of `x[B,S,H,D]` at positions `pos[B,S]` into `out`:
/// `f_i = 1/theta^(2i/D)` and `a = (pos/scale)·f_i` in f32, then for `i < D/2`
/// `out[i] = x[i]·cos a − x[i+D/2]·sin a`, `out[i+D/2] = x[i+D/2]·cos a + x[i]·sin a`.
/// The angles of one position are computed once and shared by its H heads.
pub fn rope(dims: [usize; 4], x: &[f32], pos: &[i64], theta: f64, scale: f64, out: &mut [f32]) {
    let [_, _, h, d] = dims;
    let half = d / 2;
    let inv: Vec<f32> = (0..half).map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / d as f32)).collect();
    let row = h * d;
    if row == 0 {
        return;
    }
    out.par_chunks_mut(row).zip(x.par_chunks(row)).zip(pos.par_iter()).for_each(|((o, xr), &p)| {
        let p = p as f32 / scale as f32;
        let (cos, sin): (Vec<f32>, Vec<f32>) = inv
            .iter()
            .map(|&f| {
                let a = p * f;
                (a.cos(), a.sin())
            })
            .unzip();
        for (oh, xh) in o.chunks_exact_mut(d).zip(xr.chunks_exact(d)) {
            let (lo, hi) = oh.split_at_mut(half);
            let (x0, x1) = xh.split_at(half);
            for i in 0..half {
                lo[i] = x0[i] * cos[i] - x1[i] * sin[i];
                hi[i] = x1[i] * cos[i] + x0[i] * sin[i];
            }
        }
    });
}

/// One query row of [`attention`] once its scores against the visible keys are known, as a
/// unit of work `pulp` compiles per vector width: `p = softmax(scale·scores)` (max subtracted),
/// left in `scores`, and with `out`, `out = Σ_j p_j·v_j` in key order (value row j starts at
/// `v[j·v_stride]`).
struct SoftmaxValues<'a> {
    scores: &'a mut [f32],
    scale: f32,
    v: &'a [f32],
    v_stride: usize,
    out: Option<&'a mut [f32]>,
}

impl pulp::WithSimd for SoftmaxValues<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let SoftmaxValues { scores, scale, v, v_stride, out } = self;
        for e in scores.iter_mut() {
            *e *= scale;
        }
        let mx = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // The exponentials first (a loop that vectorizes), then their sum in key order.
        for e in scores.iter_mut() {
            *e = lathe_numerics::exp(*e - mx);
        }
        let total: f32 = scores.iter().sum();
        for e in scores.iter_mut() {
            *e /= total;
        }
        let Some(out) = out else { return };
        let dv = out.len();
        // A tile of outputs stays in registers while the value rows stream past; each output
        // still adds its terms in key order.
        const T: usize = 64;
        let (tiles, tail) = out.as_chunks_mut::<T>();
        for (ti, ot) in tiles.iter_mut().enumerate() {
            let mut acc = *ot;
            for (j, &w) in scores.iter().enumerate() {
                if let Some(vt) = v[j * v_stride + ti * T..].first_chunk::<T>() {
                    for i in 0..T {
                        acc[i] += w * vt[i];
                    }
                }
            }
            *ot = acc;
        }
        let done = dv - tail.len();
        for (k, ov) in tail.iter_mut().enumerate() {
            for (j, &w) in scores.iter().enumerate() {
                *ov += w * v[j * v_stride + done + k];
            }
        }
    }
}

/// (Gated) group RMSNorm over the last axis of `[rows, d]`.
///
/// With `gate = Some(z)` (`[rows, d]`), first `x ← x·silu(z)` where
/// `silu(z) = z/(1+exp(−z))` (Mamba-2's `norm_before_gate = False`). Each row
/// is then split into `groups` contiguous groups of `d/groups` (must divide);
/// each group is scaled by `1/sqrt(mean(x_g²) + eps)` (the squares summed in the lane order of
/// [`sum_of_squares`]) and the result is
/// multiplied elementwise by `weight` `[d]`. `groups = 1` without gate is the
/// plain RMSNorm.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm(
    rows: usize,
    d: usize,
    groups: usize,
    x: &[f32],
    weight: &[f32],
    gate: Option<&[f32]>,
    eps: f32,
    out: &mut [f32],
) {
    debug_assert!(groups > 0 && d.is_multiple_of(groups));
    debug_assert!(x.len() >= rows * d && out.len() >= rows * d && weight.len() >= d);
    debug_assert!(gate.is_none_or(|z| z.len() >= rows * d));
    if rows == 0 || d == 0 {
        return;
    }
    let gs = d / groups.max(1);
    let block = ROW_BLOCK.div_ceil(d).max(1);
    let arch = pulp::Arch::new();
    out[..rows * d].par_chunks_mut(d * block).enumerate().for_each(|(i, out)| {
        let r0 = i * block;
        let n = out.len() / d;
        let x = &x[r0 * d..][..n * d];
        let gate = gate.map(|z| &z[r0 * d..][..n * d]);
        arch.dispatch(NormRows { d, gs, x, weight, gate, eps, out });
    });
}

/// Elements per parallel block of a row-wise kernel: rows are grouped so that each task is
/// worth its scheduling.
const ROW_BLOCK: usize = 1 << 13;

/// Rows of [`rms_norm`], as a unit of work `pulp` compiles per vector width.
struct NormRows<'a> {
    d: usize,
    gs: usize,
    x: &'a [f32],
    weight: &'a [f32],
    gate: Option<&'a [f32]>,
    eps: f32,
    out: &'a mut [f32],
}

impl pulp::WithSimd for NormRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let NormRows { d, gs, x, weight, gate, eps, out } = self;
        for (r, (o, xr)) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)).enumerate() {
            match gate {
                Some(z) => {
                    for ((ov, &xv), &zv) in o.iter_mut().zip(xr).zip(&z[r * d..][..d]) {
                        *ov = xv * lathe_numerics::silu(zv);
                    }
                }
                None => o.copy_from_slice(xr),
            }
            for (og, wg) in o.chunks_exact_mut(gs).zip(weight.chunks_exact(gs)) {
                let inv = 1.0 / (sum_of_squares(og) / gs as f32 + eps).sqrt();
                for (v, &w) in og.iter_mut().zip(wg) {
                    *v = *v * inv * w;
                }
            }
        }
    }
}

/// `Σ v²` over sixteen interleaved partial sums (element `i` goes to lane `i mod 16`, the tail
/// past the last full block to lane order too), the lanes then added left to right: the order
/// is fixed, and independent lanes keep the vector unit busy.
#[inline(always)]
fn sum_of_squares(v: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let (blocks, tail) = v.as_chunks::<L>();
    for blk in blocks {
        for (a, &x) in acc.iter_mut().zip(blk) {
            *a += x * x;
        }
    }
    for (a, &x) in acc.iter_mut().zip(tail) {
        *a += x * x;
    }
    acc.iter().sum()
}

/// LayerNorm over the last axis of `[rows, d]`:
/// `(x − mean)/sqrt(var + eps)·weight + bias` with the biased (1/d) variance.
pub fn layer_norm(rows: usize, d: usize, x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    debug_assert!(x.len() >= rows * d && out.len() >= rows * d);
    debug_assert!(weight.len() >= d && bias.len() >= d);
    if rows == 0 || d == 0 {
        return;
    }
    let pairs = out[..rows * d].par_chunks_mut(d).zip(x.par_chunks(d));
    pairs.for_each(|(o, xr)| {
        let mean = xr.iter().sum::<f32>() / d as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (((ov, &xv), &w), &b) in o.iter_mut().zip(xr).zip(weight).zip(bias) {
            *ov = (xv - mean) * inv * w + b;
        }
    });
}

/// Softmax over the last axis of `[rows, d]` with max subtraction; a row whose
/// entries are all −inf yields zeros.
pub fn softmax(rows: usize, d: usize, x: &[f32], out: &mut [f32]) {
    debug_assert!(x.len() >= rows * d && out.len() >= rows * d);
    if rows == 0 || d == 0 {
        return;
    }
    let pairs = out[..rows * d].par_chunks_mut(d).zip(x.par_chunks(d));
    pairs.for_each(|(o, xr)| {
        let mx = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if mx == f32::NEG_INFINITY {
            return o.fill(0.0);
        }
        let mut total = 0.0f32;
        for (ov, &xv) in o.iter_mut().zip(xr) {
            *ov = lathe_numerics::exp(xv - mx);
            total += *ov;
        }
        o.iter_mut().for_each(|v| *v /= total);
    });
}

// ------------------------------------------------------ patch embedding ----

/// ViT patch embedding: Conv2d with kernel = stride = `patch`, no padding.
///
/// `x` `[B,C,H,W]` (H and W multiples of `patch`), `weight` `[O,C,p,p]`,
/// `bias` `[O]`, `out` `[B, (H/p)·(W/p), O]` with patches in row-major order
/// (patch row, then patch column): `out[b,P,o] = bias[o] +
/// Σ_{c,ky,kx} weight[o,c,ky,kx]·x[b,c,py·p+ky,px·p+kx]`, via im2col + [`gemm`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_patch(
    batch: usize,
    in_ch: usize,
    height: usize,
    width: usize,
    patch: usize,
    out_ch: usize,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    debug_assert!(patch > 0 && height.is_multiple_of(patch) && width.is_multiple_of(patch));
    let (pw, kd, o) = (width / patch.max(1), in_ch * patch * patch, out_ch);
    let (np, rows) = (height / patch.max(1) * pw, batch * height / patch.max(1) * pw);
    debug_assert!(x.len() >= batch * in_ch * height * width && bias.len() >= o);
    debug_assert!(weight.len() >= o * kd && out.len() >= rows * o);
    if rows == 0 || o == 0 {
        return;
    }
    // im2col rows follow the weight's (c, ky, kx) order, so B = weightᵀ.
    let mut cols = vec![0.0f32; rows * kd];
    cols.par_chunks_mut(kd.max(1)).enumerate().for_each(|(row, dst)| {
        let (b, py, px) = (row / np, row % np / pw, row % pw);
        for (cy, d) in dst.chunks_exact_mut(patch).enumerate() {
            let (c, ky) = (cy / patch, cy % patch);
            let r = ((b * in_ch + c) * height + py * patch + ky) * width + px * patch;
            d.copy_from_slice(&x[r..][..patch]);
        }
    });
    let out = &mut out[..rows * o];
    gemm(1, rows, kd, o, &cols, 0, false, weight, 0, true, out);
    out.par_chunks_mut(o).for_each(|row| {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    });
}

// ------------------------------------------------------------ sampling ----

/// Parameters of [`sample_row`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleParams {
    /// 0 selects greedy argmax; otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the k most likely tokens (`Some(0)` acts as 1).
    pub top_k: Option<usize>,
    /// Keep the shortest most-likely prefix with cumulative probability ≥ p.
    pub top_p: Option<f32>,
}

/// Draws one token index from a row of logits given `uniform` ∈ [0, 1).
///
/// `temperature == 0`: argmax (lowest index on ties, NaN never chosen, 0 if
/// all are NaN). Otherwise `z = logits/temperature` (NaN treated as −inf);
/// indices are ordered by z descending, ties by lower index; the first
/// `top_k` are kept; probabilities are the f32 softmax over the kept ones;
/// `top_p` then keeps the shortest prefix whose cumulative probability
/// reaches p (at least one). With `total` the sum of kept probabilities, the
/// result is the first kept index whose running sum exceeds
/// `uniform·total`, or the last kept one if rounding leaves none. If the top
/// z is ±inf the top index is returned. Empty `logits` return 0.
pub fn sample_row(logits: &[f32], p: &SampleParams, uniform: f32) -> usize {
    if p.temperature == 0.0 {
        let mut best: Option<(usize, f32)> = None;
        for (i, &v) in logits.iter().enumerate() {
            if !v.is_nan() && best.is_none_or(|(_, bv)| v > bv) {
                best = Some((i, v));
            }
        }
        return best.map_or(0, |(i, _)| i);
    }
    // `max` against −inf maps NaN to −inf and leaves every other value alone.
    let z: Vec<f32> = logits.iter().map(|&l| (l / p.temperature).max(f32::NEG_INFINITY)).collect();
    // A total order (value, then index) lets unstable selection and sorting
    // reproduce the stable descending order exactly.
    let cmp = |i: &usize, j: &usize| {
        let by_value = z[*j].partial_cmp(&z[*i]).unwrap_or(Ordering::Equal);
        by_value.then(i.cmp(j))
    };
    let mut order: Vec<usize> = (0..z.len()).collect();
    let k = p.top_k.unwrap_or(usize::MAX).max(1);
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, cmp);
        order.truncate(k);
    }
    order.sort_unstable_by(cmp);
    let Some(&first) = order.first() else {
        return 0;
    };
    let zmax = z[first];
    if !zmax.is_finite() {
        return first;
    }
    let mut probs: Vec<f32> = order.iter().map(|&i| lathe_numerics::exp(z[i] - zmax)).collect();
    let sum: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|q| *q /= sum);
    let mut keep = probs.len();
    if let Some(tp) = p.top_p {
        let mut cum = 0.0f32;
        if let Some(n) = probs.iter().position(|&q| {
            cum += q;
            cum >= tp
        }) {
            keep = n + 1;
        }
    }
    let target = uniform * probs[..keep].iter().sum::<f32>();
    let mut run = 0.0f32;
    for (n, &q) in probs[..keep].iter().enumerate() {
        run += q;
        if run > target {
            return order[n];
        }
    }
    order[keep - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic LCG so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn unit(&mut self) -> f32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
            (self.0 >> 40) as f32 / (1u64 << 24) as f32
        }
        fn normal(&mut self) -> f32 {
            (0..12).map(|_| self.unit()).sum::<f32>() - 6.0
        }
        fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| 2.0 * self.unit() - 1.0).collect()
        }
    }

    /// Elementwise within `tol`; NaN only where the other side has NaN, infinities only where
    /// the other side has the same infinity.
    fn close(got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len());
        let err = |(x, y): (&f32, &f32)| match (x.is_nan(), y.is_nan()) {
            (true, true) => 0.0,
            (false, false) if x == y => 0.0,
            (false, false) => (x - y).abs(),
            _ => f32::INFINITY,
        };
        let e = got.iter().zip(want).map(err).fold(0.0, f32::max);
        assert!(e <= tol, "err {e} > {tol}\ngot  {got:?}\nwant {want:?}");
    }

    #[test]
    fn gemm_matches_naive_loop() {
        let mut rng = Rng(1);
        // Covers the gemv path (m < 4, several column chunks), MR/NR/KC/MC/NC
        // remainders, several row blocks, k = 0, and batch strides of 0
        // (broadcast) on either side.
        let small = [(1, 1, 1), (1, 300, 65), (2, 9, 600), (3, 17, 5), (17, 3, 65)];
        // Past 2^20 multiply-adds the threads split the output: by columns (ragged last block),
        // and by rows (the columns of the transposed product).
        let large = [(65, 300, 17), (130, 7, 1030), (520, 5, 9), (2, 0, 3), (8, 256, 1040), (1040, 256, 8)];
        for &(m, k, n) in small.iter().chain(&large) {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for (nb, sa, sb) in [(1, m * k, k * n), (3, m * k, 0), (2, 0, k * n)] {
                    let (a, b) = (rng.vec(nb * m * k), rng.vec(nb * k * n));
                    let mut out = vec![f32::NAN; nb * m * n];
                    gemm(nb, m, k, n, &a, sa, ta, &b, sb, tb, &mut out);
                    for (idx, &got) in out.iter().enumerate() {
                        let (bi, i, j) = (idx / (m * n), idx / n % m, idx % n);
                        let (mut want, mut mag) = (0.0f64, 0.0f64);
                        for p in 0..k {
                            let av = a[bi * sa + if ta { p * m + i } else { i * k + p }];
                            let bv = b[bi * sb + if tb { j * k + p } else { p * n + j }];
                            want += av as f64 * bv as f64;
                            mag += (av as f64 * bv as f64).abs();
                        }
                        // Worst-case f32 dot-product error bound γ_{k+1}·Σ|a·b|.
                        let tol = (k + 1) as f64 * 6e-8 * mag;
                        let ctx = format!("m{m} k{k} n{n} ta{ta} tb{tb} at {idx}");
                        assert!((got as f64 - want).abs() <= tol, "{ctx}: {got} vs {want}");
                    }
                }
            }
        }
    }

    fn sd(batch: usize, seq: usize, heads: usize, p: usize, groups: usize, n: usize) -> SsdDims {
        SsdDims { batch, seq, heads, head_dim: p, groups, state: n }
    }

    /// The chunked closed form of SSD (Dao & Gu 2024, "Transformers are
    /// SSMs"), independent of `ssd_scan`: intra-chunk quadratic term, chunk-
    /// local states, inter-chunk state passing. `inp` = [x, dt, a, B, C, s0].
    fn ssd_chunked(d: &SsdDims, q: usize, inp: [&[f32]; 6]) -> (Vec<f32>, Vec<f32>) {
        let [x, dt, a, bm, cm, s0] = inp;
        let (s, h, g, pd, nd) = (d.seq, d.heads, d.groups, d.head_dim, d.state);
        let mut y = vec![0.0f32; d.batch * s * h * pd];
        let mut st = s0.to_vec();
        for (bh, sin) in st.chunks_exact_mut(pd * nd).enumerate() {
            let (b, hh) = (bh / h, bh % h);
            let gg = hh / (h / g);
            let xi = |t: usize, p: usize| x[((b * s + t) * h + hh) * pd + p];
            let dti = |t: usize| dt[(b * s + t) * h + hh];
            let bi = |t: usize, n: usize| bm[((b * s + t) * g + gg) * nd + n];
            let ci = |t: usize, n: usize| cm[((b * s + t) * g + gg) * nd + n];
            for c0 in (0..s).step_by(q) {
                let len = q.min(s - c0);
                // Cumulative log-decay within the chunk.
                let ca: Vec<f32> = (0..len)
                    .scan(0.0f32, |acc, l| {
                        *acc += dti(c0 + l) * a[hh];
                        Some(*acc)
                    })
                    .collect();
                for (l, p) in (0..len).flat_map(|l| (0..pd).map(move |p| (l, p))) {
                    let mut acc = 0.0f32;
                    for r in 0..=l {
                        let cb: f32 = (0..nd).map(|n| ci(c0 + l, n) * bi(c0 + r, n)).sum();
                        acc += cb * (ca[l] - ca[r]).exp() * dti(c0 + r) * xi(c0 + r, p);
                    }
                    let cs: f32 = (0..nd).map(|n| ci(c0 + l, n) * sin[p * nd + n]).sum();
                    y[((b * s + c0 + l) * h + hh) * pd + p] = acc + ca[l].exp() * cs;
                }
                let last = ca[len - 1];
                for (pn, sv) in sin.iter_mut().enumerate() {
                    let (p, n) = (pn / nd, pn % nd);
                    let loc = (0..len).map(|r| (last - ca[r]).exp() * dti(c0 + r) * xi(c0 + r, p) * bi(c0 + r, n));
                    *sv = last.exp() * *sv + loc.sum::<f32>();
                }
            }
        }
        (y, st)
    }

    #[test]
    fn ssd_scan_matches_chunked_closed_form() {
        let mut rng = Rng(7);
        // S = 13 with Q = 4 crosses a ragged last chunk; G > 1 with several
        // heads per group catches h % G vs h / (H/G).
        let cases = [(sd(2, 13, 4, 3, 2, 5), 4), (sd(1, 9, 6, 2, 3, 4), 3)];
        for (d, q) in cases.into_iter().chain([(sd(2, 8, 2, 4, 1, 3), 8), (sd(1, 5, 3, 2, 3, 2), 2)]) {
            let (b, s, h, p, g, n) = (d.batch, d.seq, d.heads, d.head_dim, d.groups, d.state);
            let x = rng.vec(b * s * h * p);
            // Realistic Mamba-2 ranges: dt = softplus(N(-2, 1)), A = -exp(small).
            let dt: Vec<f32> = (0..b * s * h).map(|_| (1.0 + (rng.normal() - 2.0).exp()).ln()).collect();
            let a: Vec<f32> = rng.vec(h).iter().map(|v| -v.exp()).collect();
            let (bm, cm, s0) = (rng.vec(b * s * g * n), rng.vec(b * s * g * n), rng.vec(b * h * p * n));
            let (mut y, mut st) = (vec![f32::NAN; x.len()], vec![f32::NAN; s0.len()]);
            ssd_scan(&d, &x, &dt, &a, &bm, &cm, &s0, &mut y, &mut st);
            let (yr, sr) = ssd_chunked(&d, q, [&x, &dt, &a, &bm, &cm, &s0]);
            // Both sides are f32 and differ only in summation order over at
            // most a few dozen terms: 1e-5 relative to max(1, max |ref|).
            let scale = |v: &[f32]| v.iter().fold(1.0f32, |m, e| m.max(e.abs()));
            close(&y, &yr, 1e-5 * scale(&yr));
            close(&st, &sr, 1e-5 * scale(&sr));
        }
    }

    #[test]
    fn ssd_scan_hand_case_and_empty_sequence() {
        // dt·A is -ln 2 per unit dt, so the decays are 1/2, 1/2, 1/4.
        let d = sd(1, 3, 1, 1, 1, 1);
        let (x, dt, a) = ([2.0, 4.0, 8.0], [1.0, 1.0, 2.0], [-(2.0f32.ln())]);
        let (bm, cm, s0) = ([1.0, 0.5, 1.0], [1.0, 2.0, 0.5], [4.0]);
        let (mut y, mut st) = ([0.0; 3], [0.0]);
        ssd_scan(&d, &x, &dt, &a, &bm, &cm, &s0, &mut y, &mut st);
        // state 0.5·4+2 = 4 → y 4; 0.5·4+4·0.5 = 4 → y 8; 0.25·4+2·8 = 17 → y 8.5.
        close(&y, &[4.0, 8.0, 8.5], 1e-5);
        close(&st, &[17.0], 1e-5);
        ssd_scan(&sd(1, 0, 1, 1, 1, 1), &[], &[], &a, &[], &[], &s0, &mut [], &mut st);
        assert_eq!(st, [4.0]);
    }

    #[test]
    fn conv1d_hand_case_and_short_sequence() {
        // C = 2, W = 3: channel 0 weights [1, 2, 3], channel 1 [0, 0, 1].
        let (w, bias) = ([1.0, 2.0, 3.0, 0.0, 0.0, 1.0], [0.5, -1.0]);
        let (state, x) = ([1.0, 10.0, 2.0, 20.0], [3.0, 30.0, 4.0, 40.0]);
        let (mut y, mut so) = ([0.0; 4], [0.0; 4]);
        conv1d_causal(1, 2, 2, 3, &x, &w, &bias, &state, &mut y, &mut so);
        // t0: 0.5 + 1·1 + 2·2 + 3·3 = 14.5; t1: 0.5 + 2 + 6 + 12 = 20.5.
        close(&y, &[14.5, 29.0, 20.5, 39.0], 1e-6);
        assert_eq!(so, [3.0, 30.0, 4.0, 40.0]);
        // S = 1 < W-1: the new window keeps the newest old row.
        conv1d_causal(1, 1, 2, 3, &x[..2], &w, &bias, &state, &mut y[..2], &mut so);
        close(&y[..2], &[14.5, 29.0], 1e-6);
        assert_eq!(so, [2.0, 20.0, 3.0, 30.0]);
    }

    #[test]
    fn conv1d_all_at_once_equals_token_by_token() {
        let mut rng = Rng(3);
        let (b, s, c, w) = (2, 7, 5, 4);
        let (x, wt, bias, st0) = (rng.vec(b * s * c), rng.vec(c * w), rng.vec(c), rng.vec(b * 3 * c));
        let (mut y, mut so) = (vec![0.0; b * s * c], vec![0.0; st0.len()]);
        conv1d_causal(b, s, c, w, &x, &wt, &bias, &st0, &mut y, &mut so);
        let mut st = st0;
        for t in 0..s {
            let xt: Vec<f32> = (0..b).flat_map(|i| x[(i * s + t) * c..][..c].to_vec()).collect();
            let (mut yt, mut next) = (vec![0.0; b * c], vec![0.0; st.len()]);
            conv1d_causal(b, 1, c, w, &xt, &wt, &bias, &st, &mut yt, &mut next);
            for i in 0..b {
                assert_eq!(yt[i * c..][..c], y[(i * s + t) * c..][..c]);
            }
            st = next;
        }
        assert_eq!(st, so);
    }

    fn ad(b: usize, s: usize, t: usize, hq: usize, hkv: usize, d: usize, dv: usize) -> AttnDims {
        AttnDims { batch: b, q_len: s, kv_cap: t, q_heads: hq, kv_heads: hkv, head_dim: d, v_dim: dv }
    }

    /// Naive attention: explicit mask matrix, per-head loops, f64 math, scale fixed at 0.7.
    fn attn_ref(d: &AttnDims, qkv: [&[f32]; 3], lens: &[i64], mask: MaskKind) -> Vec<f32> {
        let [q, k, v] = qkv;
        let (s, t, hq, hkv, dd, dv) = (d.q_len, d.kv_cap, d.q_heads, d.kv_heads, d.head_dim, d.v_dim);
        let rot = |u: &[f32]| -> Vec<f64> { u.iter().map(|&x| x as f64).collect() };
        let mut out = vec![0.0f32; d.batch * s * hq * dv];
        for (b, &len) in lens.iter().enumerate() {
            let past = (len as usize).saturating_sub(s);
            let causal = mask == MaskKind::Causal;
            let vis: Vec<Vec<bool>> = (0..s)
                .map(|i| (0..t).map(|j| if causal { j <= past + i } else { j < len as usize }).collect())
                .collect();
            for (h, i) in (0..hq).flat_map(|h| (0..s).map(move |i| (h, i))) {
                let hk = h / (hq / hkv);
                let qr = rot(&q[((b * s + i) * hq + h) * dd..][..dd]);
                let sc: Vec<(usize, f64)> = (0..t)
                    .filter(|&j| vis[i][j])
                    .map(|j| {
                        let kr = rot(&k[((b * t + j) * hkv + hk) * dd..][..dd]);
                        (j, 0.7 * qr.iter().zip(&kr).map(|(a, b)| a * b).sum::<f64>())
                    })
                    .collect();
                let mx = sc.iter().map(|e| e.1).fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = sc.iter().map(|e| (e.1 - mx).exp()).sum();
                for &(j, e) in &sc {
                    for c in 0..dv {
                        let vv = v[((b * t + j) * hkv + hk) * dv + c] as f64;
                        out[((b * s + i) * hq + h) * dv + c] += ((e - mx).exp() / z * vv) as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn attention_matches_reference() {
        let mut rng = Rng(11);
        // GQA (Hq = 4, Hkv = 2) everywhere; causal cases have past > 0.
        let (gqa, cross) = (ad(2, 3, 9, 4, 2, 8, 5), ad(2, 4, 6, 4, 2, 6, 3));
        // Long enough for two query blocks, and a value width with a tile and a tail.
        let long = ad(2, 70, 80, 4, 2, 8, 70);
        let cases: [(AttnDims, [i64; 2], MaskKind); 7] = [
            (long, [75, 70], MaskKind::Causal),
            (long, [80, 10], MaskKind::Bidirectional),
            (gqa, [7, 3], MaskKind::Causal),
            (gqa, [9, 5], MaskKind::Causal),
            (gqa, [6, 0], MaskKind::Bidirectional),
            (cross, [6, 3], MaskKind::Cross),
            (cross, [5, 6], MaskKind::Cross),
        ];
        for (d, lens, mask) in cases {
            let q = rng.vec(d.batch * d.q_len * d.q_heads * d.head_dim);
            let k = rng.vec(d.batch * d.kv_cap * d.kv_heads * d.head_dim);
            let v = rng.vec(d.batch * d.kv_cap * d.kv_heads * d.v_dim);
            let mut out = vec![f32::NAN; d.batch * d.q_len * d.q_heads * d.v_dim];
            assert_eq!(attention(&d, &q, &k, &v, &lens, mask, 0.7, &mut out), Ok(()));
            close(&out, &attn_ref(&d, [&q, &k, &v], &lens, mask), 2e-5);
        }
    }

    #[test]
    fn attention_hand_cases() {
        // D = 2, one head, scale 1: scores q·k = [0, ln 3] → p = [1/4, 3/4].
        let d = ad(1, 2, 2, 1, 1, 2, 1);
        let (q, k, v) = ([1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 3.0f32.ln(), 0.0], [4.0, 8.0]);
        let mut out = [0.0; 2];
        assert_eq!(attention(&d, &q, &k, &v, &[2], MaskKind::Causal, 1.0, &mut out), Ok(()));
        // Query 0 sees only key 0; query 1 sees both: 4/4 + 8·3/4 = 7.
        close(&out, &[4.0, 7.0], 1e-6);
        // No visible key gives zeros.
        let (k, d1) = ([1.0, 0.0, 1.0, 0.0], ad(1, 1, 2, 1, 1, 2, 1));
        let mut o = [f32::NAN];
        assert_eq!(attention(&d1, &q[..2], &k, &v, &[0], MaskKind::Cross, 1.0, &mut o), Ok(()));
        assert_eq!(o, [0.0]);
        // A value that is not finite reaches only the queries that see its key.
        let vi = [4.0, 8.0, f32::INFINITY, 1.0];
        let (di, mut oi) = (ad(1, 2, 2, 1, 1, 2, 2), [f32::NAN; 4]);
        assert_eq!(attention(&di, &q, &k, &vi, &[2], MaskKind::Causal, 1.0, &mut oi), Ok(()));
        assert_eq!(oi[..2], [4.0, 8.0]);
        assert!(oi[2] == f32::INFINITY && oi[3].is_finite(), "{oi:?}");
        // The same through a block of 8 rows (the product path): queries 0..7 see only finite
        // values [4, 8]; query 7 also sees the key whose value is infinite.
        let d8 = ad(1, 8, 8, 1, 1, 2, 2);
        let q8: Vec<f32> = (0..8).flat_map(|_| [1.0, 0.0]).collect();
        let mut k8 = vec![0.0f32; 16];
        k8[14] = 3.0f32.ln();
        let mut v8: Vec<f32> = (0..8).flat_map(|_| [4.0, 8.0]).collect();
        v8[14] = f32::INFINITY;
        let mut o8 = [f32::NAN; 16];
        assert_eq!(attention(&d8, &q8, &k8, &v8, &[8], MaskKind::Causal, 1.0, &mut o8), Ok(()));
        close(&o8[..14], &v8[..14], 1e-5);
        assert!(o8[14] == f32::INFINITY && (o8[15] - 8.0).abs() < 1e-5, "{o8:?}");
        // D = 0: every score is 0, so each query averages the values it sees.
        let d0 = ad(1, 2, 3, 1, 1, 0, 2);
        let (v3, mut o2) = ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [f32::NAN; 4]);
        assert_eq!(attention(&d0, &[], &[], &v3, &[3], MaskKind::Bidirectional, 1.0, &mut o2), Ok(()));
        close(&o2, &[3.0, 4.0, 3.0, 4.0], 1e-6);
        assert_eq!(attention(&d0, &[], &[], &v3, &[3], MaskKind::Causal, 1.0, &mut o2), Ok(()));
        close(&o2, &[2.0, 3.0, 3.0, 4.0], 1e-6);
    }

    #[test]
    fn attention_rejects_bad_inputs() {
        let d = ad(1, 2, 3, 2, 1, 3, 1);
        let (q, k, v, mut out) = (vec![0.1; 12], vec![0.1; 9], vec![1.0; 3], vec![0.0; 4]);
        let mut run = |d: AttnDims, lens: &[i64], mask| attention(&d, &q, &k, &v, lens, mask, 1.0, &mut out);
        assert!(run(d, &[4], MaskKind::Bidirectional).is_err()); // kv_len > T
        assert!(run(d, &[-1], MaskKind::Cross).is_err());
        assert!(run(d, &[1], MaskKind::Causal).is_err()); // kv_len < S
        assert!(run(d, &[3, 3], MaskKind::Causal).is_err());
        assert!(run(ad(1, 2, 3, 3, 2, 3, 1), &[2], MaskKind::Cross).is_err());
        assert_eq!(run(d, &[2], MaskKind::Causal), Ok(()));
    }

    #[test]
    fn rope_matches_an_f64_rotation() {
        // D = 2 has inv_freq = 1: [1, 0] at position p turns by p/scale radians.
        for sc in [1.0f64, 2.0] {
            let mut out = [0.0; 2];
            rope([1, 1, 1, 2], &[1.0, 0.0], &[1], 1e4, sc, &mut out);
            close(&out, &[(1.0 / sc).cos() as f32, (1.0 / sc).sin() as f32], 1e-6);
        }
        // B = 2, S = 3, H = 2, D = 8 against f64 loops at arbitrary positions.
        let mut rng = Rng(5);
        let dims = [2, 3, 2, 8];
        let x = rng.vec(2 * 3 * 2 * 8);
        let pos = [0i64, 7, 130, 5, 0, 4095];
        let mut out = vec![f32::NAN; x.len()];
        rope(dims, &x, &pos, 1e6, 2.0, &mut out);
        let mut want = vec![0.0f32; x.len()];
        for (row, &p) in pos.iter().enumerate() {
            for h in 0..2 {
                let base = (row * 2 + h) * 8;
                for i in 0..4 {
                    // The angle is f32 by definition (as the reference models compute it).
                    let inv = 1.0f32 / 1e6f32.powf((2 * i) as f32 / 8.0);
                    let a = f64::from((p as f32 / 2.0) * inv);
                    let (x0, x1) = (f64::from(x[base + i]), f64::from(x[base + i + 4]));
                    want[base + i] = (x0 * a.cos() - x1 * a.sin()) as f32;
                    want[base + i + 4] = (x1 * a.cos() + x0 * a.sin()) as f32;
                }
            }
        }
        close(&out, &want, 2e-6);
    }

    #[test]
    fn norms_and_softmax_hand_values() {
        let mut out = [0.0; 4];
        // mean(9, 16) = 12.5.
        rms_norm(1, 2, 1, &[3.0, 4.0], &[1.0, 2.0], None, 0.0, &mut out[..2]);
        close(&out[..2], &[3.0 / 12.5f32.sqrt(), 8.0 / 12.5f32.sqrt()], 1e-6);
        // Halves at different scales: the group norm equalizes them, the
        // whole-row norm does not (mean square 50.5).
        let x = [1.0, 1.0, 10.0, 10.0];
        rms_norm(1, 4, 2, &x, &[1.0; 4], None, 0.0, &mut out);
        close(&out, &[1.0; 4], 1e-6);
        rms_norm(1, 4, 1, &x, &[1.0; 4], None, 0.0, &mut out);
        close(&out, &x.map(|v| v / 50.5f32.sqrt()), 1e-6);
        // Gated: x·silu(z) first, then per-group RMS, then weight.
        let (z, w, eps) = ([0.5, -2.0, 3.0, 0.0], [1.0, 2.0, 3.0, 4.0], 1e-5);
        rms_norm(1, 4, 2, &x, &w, Some(&z), eps, &mut out);
        let (xf, zf) = (x.map(f64::from), z.map(f64::from));
        let g: Vec<f64> = (0..4).map(|i| xf[i] * zf[i] / (1.0 + (-zf[i]).exp())).collect();
        let want: Vec<f32> = (0..4)
            .map(|i| {
                let ms = (g[i / 2 * 2].powi(2) + g[i / 2 * 2 + 1].powi(2)) / 2.0;
                (g[i] / (ms + eps as f64).sqrt() * w[i] as f64) as f32
            })
            .collect();
        close(&out, &want, 1e-5);
        // mean 2.5, biased variance 1.25.
        layer_norm(1, 4, &[1.0, 2.0, 3.0, 4.0], &[2.0; 4], &[1.0; 4], 0.0, &mut out);
        let s = 1.25f32.sqrt();
        close(&out, &[1.0 - 3.0 / s, 1.0 - 1.0 / s, 1.0 + 1.0 / s, 1.0 + 3.0 / s], 1e-6);
        let inf = f32::NEG_INFINITY;
        let mut o = [f32::NAN; 6];
        softmax(3, 2, &[0.0, 3.0f32.ln(), 1000.0, 1000.0, inf, inf], &mut o);
        close(&o, &[0.25, 0.75, 0.5, 0.5, 0.0, 0.0], 1e-6);
    }

    #[test]
    fn conv2d_patch_matches_direct_convolution() {
        let mut rng = Rng(5);
        let (b, c, h, w, p, o) = (2, 3, 8, 12, 4, 5);
        let (x, wt, bias) = (rng.vec(b * c * h * w), rng.vec(o * c * p * p), rng.vec(o));
        let (ph, pw) = (h / p, w / p);
        let mut out = vec![f32::NAN; b * ph * pw * o];
        conv2d_patch(b, c, h, w, p, o, &x, &wt, &bias, &mut out);
        for (idx, &got) in out.iter().enumerate() {
            let (bi, py, px, oc) = (idx / o / pw / ph, idx / o / pw % ph, idx / o % pw, idx % o);
            let mut want = bias[oc];
            for (ci, ky, kx) in (0..c * p * p).map(|r| (r / p / p, r / p % p, r % p)) {
                let xv = x[((bi * c + ci) * h + py * p + ky) * w + px * p + kx];
                want += wt[((oc * c + ci) * p + ky) * p + kx] * xv;
            }
            assert!((got - want).abs() <= 1e-5, "{idx}: {got} vs {want}");
        }
    }

    fn spar(temperature: f32, top_k: Option<usize>, top_p: Option<f32>) -> SampleParams {
        SampleParams { temperature, top_k, top_p }
    }

    #[test]
    fn sample_greedy_and_degenerate_filters() {
        let (nan, greedy) = (f32::NAN, spar(0.0, None, None));
        assert_eq!(sample_row(&[1.0, 3.0, nan, 3.0, 2.0], &greedy, 0.9), 1);
        assert_eq!(sample_row(&[nan, nan], &greedy, 0.5), 0);
        assert_eq!(sample_row(&[nan, -1.0], &greedy, 0.5), 1);
        // A running sum equal to the target does not select: the boundary
        // u·total = 0.5 belongs to the second of two equal tokens.
        assert_eq!(sample_row(&[1.0, 1.0], &spar(1.0, None, None), 0.5), 1);
        let logits = [0.3, 2.0, -1.0, 2.0, 1.9];
        for u in (0..100).map(|i| i as f32 / 100.0) {
            assert_eq!(sample_row(&logits, &spar(0.8, Some(1), None), u), 1);
            assert_eq!(sample_row(&logits, &spar(1.3, None, Some(1e-6)), u), 1);
        }
    }

    #[test]
    fn sample_frequencies_match_kept_distribution() {
        let logits = [0.5f32, 2.0, 1.0, -1.0, 1.0, 0.2];
        let cases = [spar(0.7, None, None), spar(1.0, Some(4), None), spar(1.0, None, Some(0.7))];
        for sp in cases.into_iter().chain([spar(2.0, Some(50), Some(0.9)), spar(1.5, Some(3), Some(0.95))]) {
            // Independent f64 version of the filter; the p values sit well
            // away from cumulative-probability boundaries.
            let mut kept: Vec<usize> = (0..logits.len()).collect();
            kept.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
            kept.truncate(sp.top_k.unwrap_or(usize::MAX));
            let mut e: Vec<f64> = kept.iter().map(|&i| (logits[i] as f64 / sp.temperature as f64).exp()).collect();
            let z: f64 = e.iter().sum();
            e.iter_mut().for_each(|v| *v /= z);
            let mut cum = 0.0;
            let n = e.iter().take_while(|&&v| {
                cum += v;
                cum - v < sp.top_p.unwrap_or(2.0) as f64
            });
            let n = n.count();
            let z: f64 = e[..n].iter().sum();
            let m = 20_000;
            let mut counts = [0usize; 6];
            for i in 0..m {
                counts[sample_row(&logits, &sp, (i as f32 + 0.5) / m as f32)] += 1;
            }
            for (i, &cnt) in counts.iter().enumerate() {
                let rank = kept[..n].iter().position(|&j| j == i);
                let want = rank.map_or(0.0, |r| e[r] / z * m as f64);
                // Each kept index owns one interval of u, so counts are exact
                // up to the grid resolution.
                assert!((cnt as f64 - want).abs() <= 2.0, "{sp:?} idx {i}: {cnt} vs {want}");
            }
        }
    }
}
