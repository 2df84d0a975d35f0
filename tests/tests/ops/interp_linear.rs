//! Interpreter cases: matmul, scaled_matmul and the patch convolution against naive loops.

use lathe_ir::DType;
use lathe_tests::Rng;

use crate::common::{all_bf16, close, f32t, ft, module, out, run, uniform};

/// `a[batch, m, k] · b[batch, k, n]` in f64; a batch stride of 0 shares one matrix.
#[allow(clippy::too_many_arguments)]
fn matmul_ref(a: &[f64], b: &[f64], batch: usize, m: usize, k: usize, n: usize, sa: usize, sb: usize) -> Vec<f64> {
    let mut c = vec![0.0; batch * m * n];
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                c[(bi * m + i) * n + j] = (0..k).map(|p| a[bi * sa + i * k + p] * b[bi * sb + p * n + j]).sum();
            }
        }
    }
    c
}

/// The last two axes of `[batch, r, c]` swapped.
fn swap_last(v: &[f64], batch: usize, r: usize, c: usize) -> Vec<f64> {
    let mut out = vec![0.0; v.len()];
    for bi in 0..batch {
        for i in 0..r {
            for j in 0..c {
                out[(bi * c + j) * r + i] = v[(bi * r + i) * c + j];
            }
        }
    }
    out
}

pub fn matmul_batched_and_transposed() {
    // M = 5 exercises the packed GEMM path, M = 2 the row-by-row path; K = 37 is not a
    // multiple of any tile.
    let (bt, k, n) = (3, 37, 9);
    let src = module(
        "  symbol B <= 4\n",
        r#"    %0 = input "a" : f32[B, 5, 37]
    %1 = input "b" : f32[B, 37, 9]
    %2 = matmul %0, %1 : f32[B, 5, 9]
    %3 = input "at" : f32[B, 37, 5]
    %4 = input "bt" : f32[B, 9, 37]
    %5 = matmul %3, %4 {transpose_a, transpose_b} : f32[B, 5, 9]
    %6 = input "w" : f32[37, 9]
    %7 = matmul %0, %6 : bf16[B, 5, 9]
    %8 = input "a2" : f32[2, 37]
    %9 = matmul %8, %1 : f32[B, 2, 9]
    %10 = input "h" : bf16[2, 37]
    %11 = input "hw" : bf16[9, 37]
    %12 = matmul %10, %11 {transpose_b} : f32[2, 9]
    return %2 as "ab", %5 as "tt", %7 as "shared_b", %9 as "shared_a", %12 as "bf16_in"
"#,
    );
    let mut rng = Rng::new(10);
    let mut t = |shape: &[usize]| f32t(shape, &uniform(&mut rng, shape.iter().product(), -1.0, 1.0));
    let (a, b, w, a2) = (t(&[bt, 5, k]), t(&[bt, k, n]), t(&[k, n]), t(&[2, k]));
    let (av, bv, wv, a2v) = (a.to_f64(), b.to_f64(), w.to_f64(), a2.to_f64());
    let at = f32t(&[bt, k, 5], &swap_last(&av, bt, 5, k));
    let btt = f32t(&[bt, n, k], &swap_last(&bv, bt, k, n));
    let h = ft(DType::BF16, &[2, k], &uniform(&mut rng, 2 * k, -1.0, 1.0));
    let hw = ft(DType::BF16, &[n, k], &uniform(&mut rng, n * k, -1.0, 1.0));
    let (hv, hwv) = (h.to_f64(), hw.to_f64());
    let o = run(&src, &[("a", a), ("b", b), ("at", at), ("bt", btt), ("w", w), ("a2", a2), ("h", h), ("hw", hw)]);
    let ab = matmul_ref(&av, &bv, bt, 5, k, n, 5 * k, k * n);
    close("a·b", out(&o, "ab"), DType::F32, &[bt, 5, n], &ab, k);
    close("aᵀ·bᵀ stored transposed", out(&o, "tt"), DType::F32, &[bt, 5, n], &ab, k);
    let shared_b = matmul_ref(&av, &wv, bt, 5, k, n, 5 * k, 0);
    close("shared rhs, bf16 result", out(&o, "shared_b"), DType::BF16, &[bt, 5, n], &shared_b, k);
    all_bf16("shared rhs, bf16 result", out(&o, "shared_b"));
    let shared_a = matmul_ref(&a2v, &bv, bt, 2, k, n, 0, k * n);
    close("shared lhs", out(&o, "shared_a"), DType::F32, &[bt, 2, n], &shared_a, k);
    let hwt = swap_last(&hwv, 1, n, k);
    close("bf16 operands", out(&o, "bf16_in"), DType::F32, &[2, n], &matmul_ref(&hv, &hwt, 1, 2, k, n, 0, 0), k);
}

pub fn scaled_matmul_equals_dequantized_matmul() {
    let (m, k, n) = (3, 16, 8);
    let src = module(
        "",
        r#"    %0 = input "a" : f8e4m3[3, 16]
    %1 = input "b" : f8e4m3[16, 8]
    %2 = input "sa" : f32[]
    %3 = input "sb" : f32[8]
    %4 = scaled_matmul %0, %1, %2, %3 : f32[3, 8]
    %5 = dequantize %0, %2 : f32[3, 16]
    %6 = dequantize %1, %3 : f32[16, 8]
    %7 = matmul %5, %6 : f32[3, 8]
    %8 = input "bt" : f8e5m2[8, 16]
    %9 = scaled_matmul %0, %8, %2, %3 {transpose_b} : bf16[3, 8]
    %10 = input "s1" : f32[]
    %11 = scaled_matmul %0, %1, %2, %10 : f32[3, 8]
    return %4 as "scaled", %7 as "dequant", %9 as "scaled_t", %11 as "per_tensor"
"#,
    );
    let mut rng = Rng::new(11);
    let a = ft(DType::F8E4M3, &[m, k], &uniform(&mut rng, m * k, -8.0, 8.0));
    let b = ft(DType::F8E4M3, &[k, n], &uniform(&mut rng, k * n, -8.0, 8.0));
    let bt = ft(DType::F8E5M2, &[n, k], &uniform(&mut rng, n * k, -8.0, 8.0));
    let sb = uniform(&mut rng, n, 0.01, 0.1);
    let (av, bv, btv) = (a.to_f64(), b.to_f64(), bt.to_f64());
    let sbv = f32t(&[n], &sb).to_f64();
    let sa = 0.03125;
    let o = run(
        &src,
        &[("a", a), ("b", b), ("sa", f32t(&[], &[sa])), ("sb", f32t(&[n], &sb)), ("bt", bt), ("s1", f32t(&[], &[0.5]))],
    );
    // (a·sa)·(b·sb[col]) in f64.
    let want: Vec<f64> =
        (0..m * n).map(|f| (0..k).map(|p| av[f / n * k + p] * sa * bv[p * n + f % n] * sbv[f % n]).sum()).collect();
    close("scaled_matmul", out(&o, "scaled"), DType::F32, &[m, n], &want, k);
    close("dequantize + matmul", out(&o, "dequant"), DType::F32, &[m, n], &want, k);
    lathe_tests::assert_close(
        "scaled vs dequantized",
        &out(&o, "scaled").to_f64(),
        &out(&o, "dequant").to_f64(),
        DType::F32,
        k,
    );
    // Stored [N, K]: the per-channel scale follows the output column n, not the stored last axis.
    let want_t: Vec<f64> =
        (0..m * n).map(|f| (0..k).map(|p| av[f / n * k + p] * sa * btv[(f % n) * k + p] * sbv[f % n]).sum()).collect();
    close("scaled_matmul transpose_b", out(&o, "scaled_t"), DType::BF16, &[m, n], &want_t, k);
    all_bf16("scaled_matmul transpose_b", out(&o, "scaled_t"));
    let want_1: Vec<f64> =
        (0..m * n).map(|f| (0..k).map(|p| av[f / n * k + p] * sa * bv[p * n + f % n] * 0.5).sum()).collect();
    close("per-tensor scales", out(&o, "per_tensor"), DType::F32, &[m, n], &want_1, k);
}

pub fn conv2d_patch_matches_direct_convolution() {
    let (b, c, h, w, p, oc) = (2, 3, 8, 12, 4, 5);
    let src = module(
        "  symbol B <= 2\n",
        "    %0 = input \"x\" : f32[B, 3, 8, 12]\n    %1 = input \"w\" : f32[5, 3, 4, 4]\n    %2 = input \"b\" : f32[5]\n    %3 = conv2d.patch %0, %1, %2 {patch=4} : f32[B, 6, 5]\n    return %3 as \"y\"\n",
    );
    let mut rng = Rng::new(12);
    let x = f32t(&[b, c, h, w], &uniform(&mut rng, b * c * h * w, -1.0, 1.0));
    let wt = f32t(&[oc, c, p, p], &uniform(&mut rng, oc * c * p * p, -1.0, 1.0));
    let bias = f32t(&[oc], &uniform(&mut rng, oc, -1.0, 1.0));
    let (xv, wv, bv) = (x.to_f64(), wt.to_f64(), bias.to_f64());
    let o = run(&src, &[("x", x), ("w", wt), ("b", bias)]);
    let (ph, pw) = (h / p, w / p);
    // Patches in row-major order; each output is a stride-p convolution at one patch.
    let mut want = Vec::new();
    for bi in 0..b {
        for py in 0..ph {
            for px in 0..pw {
                for o in 0..oc {
                    let mut acc = bv[o];
                    for ci in 0..c {
                        for ky in 0..p {
                            for kx in 0..p {
                                let xi = ((bi * c + ci) * h + py * p + ky) * w + px * p + kx;
                                acc += wv[((o * c + ci) * p + ky) * p + kx] * xv[xi];
                            }
                        }
                    }
                    want.push(acc);
                }
            }
        }
    }
    close("conv2d.patch", out(&o, "y"), DType::F32, &[b, ph * pw, oc], &want, c * p * p);
}
