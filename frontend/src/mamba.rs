//! The Mamba-2 mixer, shared by `nemotron_h` and `mamba2`.
//!
//! `in_proj → [z | xBC | dt]`; causal depthwise conv + SiLU over `xBC = [x | B | C]`;
//! `dt = softplus(dt + dt_bias)` (clamped only when the config sets a limit other than
//! `(0, inf)`: the kernels never clamp by default); `A = −exp(A_log)` in f32; `scan.ssd`; the D
//! skip `y + D·x`; the gated group RMSNorm `w·norm_g(y·silu(z))` with `G` groups; `out_proj`.

use lathe_ir::ops::{BinaryOp, Clamp, Op, ScanSsd, UnaryOp};
use lathe_ir::{CacheKind, DType, Dim, ValueId};

use crate::graph::{Ctx, R};
use crate::programs::{cache_input, CacheUpdate, Program, Shapes};

/// The shape and options of one Mamba-2 mixer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MambaSpec {
    /// Heads H.
    pub heads: usize,
    /// Head size P.
    pub head_dim: usize,
    /// B/C groups G.
    pub groups: usize,
    /// State size N.
    pub state: usize,
    /// Conv width W.
    pub conv_kernel: usize,
    /// SSD chunk hint.
    pub chunk: usize,
    /// Gated-norm epsilon.
    pub eps: f64,
    /// dt clamp after softplus; `(0, inf)` is none.
    pub time_step_limit: (f64, f64),
    /// Conv bias present.
    pub conv_bias: bool,
    /// in_proj/out_proj biases present.
    pub proj_bias: bool,
}

/// Emits the mixer on normalized input `x[B,S,hidden]`, weights under `p`
/// (`{p}.in_proj.weight`, ...); with caches, reads and returns
/// `layers.{layer}.conv_state` and `layers.{layer}.ssm_state`.
#[allow(clippy::too_many_arguments)]
pub fn mixer(
    cx: &mut Ctx<'_>,
    cfg: &MambaSpec,
    x: ValueId,
    p: &str,
    layer: usize,
    b: Dim,
    s: Dim,
    program: Program,
    shapes: &Shapes,
    caches: &mut Vec<CacheUpdate>,
) -> R<ValueId> {
    let (heads, hd, g, n) = (cfg.heads, cfg.head_dim, cfg.groups, cfg.state);
    let d_inner = heads * hd;
    let (conv_dim, w) = (d_inner + 2 * g * n, cfg.conv_kernel);
    let c = |v: usize| Dim::Const(v as u64);
    let zxbcdt = cx.linear(x, &format!("{p}.in_proj"), cfg.proj_bias)?;
    let parts = cx.split_last(zxbcdt, &[d_inner, conv_dim, heads])?;
    let (z, xbc, dt_raw) = (parts[0], parts[1], parts[2]);
    // Causal depthwise conv over [x | B | C] with the last W−1 inputs as state.
    let conv_state_ty = lathe_ir::TensorType::new(shapes.conv_state_dtype(cx.dt), [b, c(w - 1), c(conv_dim)]);
    let conv_input =
        if program.has_caches() { Some(cache_input(cx, layer, CacheKind::Conv, conv_state_ty.clone())?) } else { None };
    let state0 = match &conv_input {
        Some((_, st)) => cx.cast(*st, cx.dt)?,
        None => cx.fill(cx.dt, vec![b, c(w - 1), c(conv_dim)], 0.0)?,
    };
    let cw = cx.weight_as(&format!("{p}.conv1d.weight"), cx.dt)?;
    let cw = cx.reshape(cw, vec![c(conv_dim), c(w)])?;
    let cb = if cfg.conv_bias {
        cx.weight_as(&format!("{p}.conv1d.bias"), cx.dt)?
    } else {
        cx.fill(cx.dt, vec![c(conv_dim)], 0.0)?
    };
    let conv = cx.b.push(Op::Conv1dCausal, &[xbc, cw, cb, state0])?;
    if let Some((name, input)) = conv_input {
        let value = cx.cast(conv[1], conv_state_ty.dtype)?;
        caches.push(CacheUpdate { name, input, value });
    }
    let act = cx.unary(UnaryOp::Silu, conv[0])?;
    let xbc = cx.split_last(act, &[d_inner, g * n, g * n])?;
    let xs = cx.reshape(xbc[0], vec![b, s, c(heads), c(hd)])?;
    let bm = cx.reshape(xbc[1], vec![b, s, c(g), c(n)])?;
    let cm = cx.reshape(xbc[2], vec![b, s, c(g), c(n)])?;
    // dt = softplus(dt + dt_bias), clamped to time_step_limit when the config asks for it.
    let dt_bias = cx.weight_as(&format!("{p}.dt_bias"), cx.dt)?;
    let dt = cx.binary(BinaryOp::Add, dt_raw, dt_bias)?;
    let mut dt = cx.unary(UnaryOp::Softplus, dt)?;
    let (lo, hi) = cfg.time_step_limit;
    if lo > 0.0 || hi.is_finite() {
        let clamp = Clamp { min: (lo > 0.0).then_some(lo), max: hi.is_finite().then_some(hi) };
        dt = cx.b.push1(Op::Clamp(clamp), &[dt])?;
    }
    // A = −exp(A_log), kept in f32 as every reference does.
    let a_log = cx.weight_as(&format!("{p}.A_log"), DType::F32)?;
    let a = cx.unary(UnaryOp::Exp, a_log)?;
    let a = cx.unary(UnaryOp::Neg, a)?;
    let ssm_ty = lathe_ir::TensorType::new(DType::F32, [b, c(heads), c(hd), c(n)]);
    let ssm_input = if program.has_caches() { Some(cache_input(cx, layer, CacheKind::Ssm, ssm_ty)?) } else { None };
    let s0 = match &ssm_input {
        Some((_, st)) => *st,
        None => cx.fill(DType::F32, vec![b, c(heads), c(hd), c(n)], 0.0)?,
    };
    let scan = cx.b.push(Op::ScanSsd(ScanSsd { chunk: cfg.chunk as u64 }), &[xs, dt, a, bm, cm, s0])?;
    if let Some((name, input)) = ssm_input {
        caches.push(CacheUpdate { name, input, value: scan[1] });
    }
    // D skip, then the gated group RMSNorm and out_proj.
    let d = cx.weight_as(&format!("{p}.D"), cx.dt)?;
    let d = cx.reshape(d, vec![c(heads), Dim::Const(1)])?;
    let skip = cx.binary(BinaryOp::Mul, xs, d)?;
    let y = cx.binary(BinaryOp::Add, scan[0], skip)?;
    let y = cx.reshape(y, vec![b, s, c(d_inner)])?;
    let y = cx.rms_norm(y, &format!("{p}.norm.weight"), cfg.eps, g as u64, Some(z))?;
    cx.linear(y, &format!("{p}.out_proj"), cfg.proj_bias)
}
