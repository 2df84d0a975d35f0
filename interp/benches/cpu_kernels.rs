//! CPU time of the interpreter's heavy kernels on the shapes of the ~50M-parameter benchmark
//! model (docs/performance.md), each beside the rate it reaches. Not a test: it prints.
//!
//! ```sh
//! cargo bench -p lathe-interp --bench cpu_kernels
//! ```

use std::time::Instant;

use lathe_interp::cpu::{attention, gemm, ssd_scan, AttnDims, MaskKind, SsdDims};
use lathe_interp::{eval_op, tensor::Tensor};
use lathe_ir::ops::{BinaryOp, Op, UnaryOp};
use lathe_ir::{DType, Dim, Module, TensorType};

/// Median seconds of `reps` calls after two warm-up calls.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 7 + seed * 13) % 23) as f32 - 11.0) * 0.01).collect()
}

fn main() {
    if std::env::var_os("KERNELS_ELEMENTWISE_ONLY").is_none() {
        heavy();
    }
    elementwise();
}

fn heavy() {
    println!("GEMM x·Wᵀ (x [m,k], W [n,k]):");
    for (m, k, n) in [(256, 768, 3352), (256, 1536, 768), (256, 768, 2048), (256, 2048, 768), (256, 768, 8192)] {
        let (a, b) = (values(m * k, 1), values(n * k, 2));
        let mut o = vec![0.0f32; m * n];
        let s = time(20, || gemm(1, m, k, n, &a, 0, false, &b, 0, true, &mut o));
        println!("  {m}x{k}x{n:<5} {:>8.3} ms  {:>5.0} GFLOP/s", s * 1e3, 2.0 * (m * k * n) as f64 / s / 1e9);
    }
    println!("GEMV x·Wᵀ (decode, one row; W streamed from memory):");
    for (k, n) in [(768, 3352), (1536, 768), (768, 2048), (2048, 768), (768, 8192)] {
        // Enough distinct weight matrices that they cannot stay in cache between calls.
        let copies = (256 << 20) / (n * k * 4) + 1;
        let ws: Vec<Vec<f32>> = (0..copies).map(|c| values(n * k, c)).collect();
        let x = values(k, 9);
        let mut o = vec![0.0f32; n];
        let mut i = 0;
        let s = time(40, || {
            i = (i + 1) % copies;
            gemm(1, 1, k, n, &x, 0, false, &ws[i], 0, true, &mut o);
        });
        println!("  1x{k}x{n:<5} {:>8.3} ms  {:>5.1} GB/s", s * 1e3, (n * k * 4) as f64 / s / 1e9);
    }
    for seq in [1usize, 256] {
        let d = SsdDims { batch: 1, seq, heads: 24, head_dim: 64, groups: 2, state: 64 };
        let (x, bm) = (values(seq * 24 * 64, 3), values(seq * 2 * 64, 4));
        let dt: Vec<f32> = (0..seq * 24).map(|i| 0.01 + (i % 7) as f32 * 0.01).collect();
        let a: Vec<f32> = (0..24).map(|i| -1.0 - i as f32 * 0.1).collect();
        let s0 = values(24 * 64 * 64, 8);
        let (mut y, mut so) = (vec![0.0f32; x.len()], s0.clone());
        let s = time(20, || ssd_scan(&d, &x, &dt, &a, &bm, &bm, &s0, &mut y, &mut so));
        // Per token and head: the state update (3 flops) and the output dot (2 flops) per element.
        let flops = 5.0 * (seq * 24 * 64 * 64) as f64;
        println!("scan.ssd S={seq} H=24 P=64 N=64 G=2: {:.3} ms  {:.0} GFLOP/s", s * 1e3, flops / s / 1e9);
    }
    let ad = AttnDims { batch: 1, q_len: 256, kv_cap: 256, q_heads: 12, kv_heads: 4, head_dim: 64, v_dim: 64 };
    let (q, k) = (values(256 * 12 * 64, 5), values(256 * 4 * 64, 6));
    let mut out = vec![0.0f32; q.len()];
    let s = time(20, || {
        if let Err(e) = attention(&ad, &q, &k, &k, &[256], MaskKind::Causal, 0.125, &mut out) {
            eprintln!("attention: {e}");
        }
    });
    // Causal: about half of the S×T scores, each a D-long dot product and a Dv-long update.
    let flops = 2.0 * 2.0 * (12 * 256 * 257 / 2 * 64) as f64;
    println!("attention causal S=T=256 Hq=12 Hkv=4 D=64: {:.3} ms  {:.0} GFLOP/s", s * 1e3, flops / s / 1e9);
}

fn elementwise() {
    // Elementwise maps over a [256, 2048] activation (an MLP's width).
    let m = Module::new("bench");
    let n = 256 * 2048;
    let ty = TensorType { dtype: DType::F32, shape: vec![Dim::Const(256), Dim::Const(2048)] };
    let x = Tensor::from_f32(DType::F32, vec![256, 2048], values(n, 10));
    let y = Tensor::from_f32(DType::F32, vec![256, 2048], values(n, 11));
    let bias = Tensor::from_f32(DType::F32, vec![2048], values(2048, 12));
    for (name, op, args) in [
        ("silu", Op::Unary(UnaryOp::Silu), vec![&x]),
        ("exp", Op::Unary(UnaryOp::Exp), vec![&x]),
        ("mul", Op::Binary(BinaryOp::Mul), vec![&x, &y]),
        ("add bias (broadcast)", Op::Binary(BinaryOp::Add), vec![&x, &bias]),
    ] {
        let s = time(20, || {
            if let Err(e) = eval_op(&m, &op, &args, &[&ty]) {
                eprintln!("{name}: {e}");
            }
        });
        println!("{name:<22} [256, 2048]: {:.3} ms  {:.2} ns/element", s * 1e3, s * 1e9 / n as f64);
    }
}
