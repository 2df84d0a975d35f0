//! Interpreter cases: reductions, norms, shape ops, caches, fp8, fusion and sampling.

use lathe_ir::DType;
use lathe_tests::Rng;

use crate::common::{
    all_bf16, close, exact, f32t, ft, it, module, out, run, run_err, silu, strides, try_run_fn, uniform, unravel,
};

pub fn reduce_sum_max_mean() {
    let src = module(
        "",
        r#"    %0 = input "x" : f32[2, 3, 4]
    %1 = reduce %0 {kind=sum, axes=[0, 2]} : f32[3]
    %2 = reduce %0 {kind=max, axes=[1], keep_dims} : f32[2, 1, 4]
    %3 = reduce %0 {kind=mean, axes=[0, 1, 2], keep_dims} : f32[1, 1, 1]
    %4 = input "i" : i64[2, 3]
    %5 = reduce %4 {kind=sum, axes=[1]} : i64[2]
    %6 = reduce %4 {kind=max, axes=[0]} : i64[3]
    %7 = input "h" : bf16[2, 8]
    %8 = reduce %7 {kind=sum, axes=[1]} : bf16[2]
    return %1 as "sum", %2 as "max", %3 as "mean", %5 as "isum", %6 as "imax", %8 as "hsum"
"#,
    );
    let mut rng = Rng::new(1);
    let x = uniform(&mut rng, 24, -2.0, 2.0);
    let h = uniform(&mut rng, 16, -1.0, 1.0);
    let hx = ft(DType::BF16, &[2, 8], &h);
    let hv = hx.to_f64();
    let o = run(&src, &[("x", f32t(&[2, 3, 4], &x)), ("i", it(DType::I64, &[2, 3], &[4, -1, 7, 0, 9, -3])), ("h", hx)]);
    let xs: Vec<f64> = f32t(&[24], &x).to_f64();
    let at = |a: usize, b: usize, c: usize| xs[(a * 3 + b) * 4 + c];
    let sum: Vec<f64> =
        (0..3).map(|b| (0..2).flat_map(|a| (0..4).map(move |c| (a, c))).map(|(a, c)| at(a, b, c)).sum()).collect();
    close("sum", out(&o, "sum"), DType::F32, &[3], &sum, 8);
    let max: Vec<f64> = (0..8).map(|k| (0..3).map(|b| at(k / 4, b, k % 4)).fold(f64::NEG_INFINITY, f64::max)).collect();
    exact("max", out(&o, "max"), DType::F32, &[2, 1, 4], &max);
    close("mean", out(&o, "mean"), DType::F32, &[1, 1, 1], &[xs.iter().sum::<f64>() / 24.0], 24);
    exact("isum", out(&o, "isum"), DType::I64, &[2], &[10.0, 6.0]);
    exact("imax", out(&o, "imax"), DType::I64, &[3], &[4.0, 9.0, 7.0]);
    let hsum: Vec<f64> = (0..2).map(|r| hv[r * 8..][..8].iter().sum()).collect();
    close("bf16 sum", out(&o, "hsum"), DType::BF16, &[2], &hsum, 8);
    all_bf16("bf16 sum", out(&o, "hsum"));
}

pub fn softmax_along_any_axis() {
    let src = module(
        "",
        "    %0 = input \"x\" : f32[3, 2]\n    %1 = softmax %0 {axis=1} : f32[3, 2]\n    %2 = softmax %0 {axis=0} : f32[3, 2]\n    return %1 as \"rows\", %2 as \"cols\"\n",
    );
    let l3 = 3f64.ln();
    // Large equal entries must not overflow (the max is subtracted).
    let x = [0.0, l3, l3, 0.0, 1000.0, 1000.0];
    let o = run(&src, &[("x", f32t(&[3, 2], &x))]);
    close("softmax rows", out(&o, "rows"), DType::F32, &[3, 2], &[0.25, 0.75, 0.75, 0.25, 0.5, 0.5], 2);
    let xv = f32t(&[6], &x).to_f64();
    let cols: Vec<f64> = (0..6)
        .map(|k| {
            let c = k % 2;
            let m = (0..3).map(|r| xv[r * 2 + c]).fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = (0..3).map(|r| (xv[r * 2 + c] - m).exp()).sum();
            (xv[k] - m).exp() / z
        })
        .collect();
    close("softmax cols", out(&o, "cols"), DType::F32, &[3, 2], &cols, 3);
}

/// Reference (gated) group RMSNorm in f64 over rows of `d`.
fn rms_ref(x: &[f64], w: &[f64], z: Option<&[f64]>, d: usize, groups: usize, eps: f64) -> Vec<f64> {
    let g: Vec<f64> = x.iter().enumerate().map(|(i, &v)| z.map_or(v, |z| v * silu(z[i]))).collect();
    let gs = d / groups;
    g.iter()
        .enumerate()
        .map(|(i, &v)| {
            let start = i / gs * gs;
            let ms = g[start..start + gs].iter().map(|u| u * u).sum::<f64>() / gs as f64;
            v / (ms + eps).sqrt() * w[i % d]
        })
        .collect()
}

pub fn rms_norm_plain_grouped_and_gated() {
    let src = module(
        "",
        r#"    %0 = input "x" : f32[2, 8]
    %1 = input "w" : f32[8]
    %2 = input "z" : f32[2, 8]
    %3 = rms_norm %0, %1 {eps=1e-5} : f32[2, 8]
    %4 = rms_norm %0, %1 {eps=1e-5, groups=4} : f32[2, 8]
    %5 = rms_norm %0, %1, %2 {eps=1e-5, groups=2} : f32[2, 8]
    %6 = rms_norm %0, %1, %2 {eps=0.0, groups=1} : f32[2, 8]
    %7 = input "hx" : f32[4]
    %8 = input "hw" : f32[4]
    %9 = rms_norm %7, %8 {eps=0.0, groups=2} : f32[4]
    %10 = rms_norm %7, %8 {eps=0.0, groups=1} : f32[4]
    return %3 as "plain", %4 as "grouped", %5 as "gated", %6 as "gated1", %9 as "hand2", %10 as "hand1"
"#,
    );
    let mut rng = Rng::new(2);
    // Groups at very different scales: a whole-row norm would not equalize them.
    let x: Vec<f64> = (0..16).map(|i| rng.uniform(-1.0, 1.0) * [1.0, 30.0, 0.1, 5.0][(i % 8) / 2]).collect();
    let w = uniform(&mut rng, 8, 0.5, 1.5);
    let z = uniform(&mut rng, 16, -3.0, 3.0);
    let (xt, wt, zt) = (f32t(&[2, 8], &x), f32t(&[8], &w), f32t(&[2, 8], &z));
    let (xv, wv, zv) = (xt.to_f64(), wt.to_f64(), zt.to_f64());
    let hand = [("hx", f32t(&[4], &[1.0, -1.0, 10.0, 10.0])), ("hw", f32t(&[4], &[1.0; 4]))];
    let o = run(&src, &[("x", xt), ("w", wt), ("z", zt), hand[0].clone(), hand[1].clone()]);
    close("plain", out(&o, "plain"), DType::F32, &[2, 8], &rms_ref(&xv, &wv, None, 8, 1, 1e-5), 8);
    close("grouped", out(&o, "grouped"), DType::F32, &[2, 8], &rms_ref(&xv, &wv, None, 8, 4, 1e-5), 2);
    close("gated", out(&o, "gated"), DType::F32, &[2, 8], &rms_ref(&xv, &wv, Some(&zv), 8, 2, 1e-5), 4);
    close("gated1", out(&o, "gated1"), DType::F32, &[2, 8], &rms_ref(&xv, &wv, Some(&zv), 8, 1, 0.0), 8);
    // By hand: halves at different scales; the group norm equalizes them (mean squares 1 and
    // 100), the whole-row norm divides by sqrt(50.5).
    exact("hand groups=2", out(&o, "hand2"), DType::F32, &[4], &[1.0, -1.0, 1.0, 1.0]);
    let r = 50.5f64.sqrt();
    close("hand groups=1", out(&o, "hand1"), DType::F32, &[4], &[1.0 / r, -1.0 / r, 10.0 / r, 10.0 / r], 4);
}

pub fn layer_norm_matches_formula() {
    let src = module(
        "",
        "    %0 = input \"x\" : f32[3, 4]\n    %1 = input \"w\" : f32[4]\n    %2 = input \"b\" : f32[4]\n    %3 = layer_norm %0, %1, %2 {eps=0.0} : f32[3, 4]\n    %4 = layer_norm %0, %1, %2 {eps=1e-5} : f32[3, 4]\n    return %3 as \"y0\", %4 as \"y\"\n",
    );
    let x = [1.0, 2.0, 3.0, 4.0, -5.0, 0.5, 2.0, 7.0, 100.0, 100.0, 100.0, 101.0];
    let (w, b) = ([2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]);
    let o = run(&src, &[("x", f32t(&[3, 4], &x)), ("w", f32t(&[4], &w)), ("b", f32t(&[4], &b))]);
    let reference = |eps: f64| -> Vec<f64> {
        (0..12)
            .map(|i| {
                let r = &x[i / 4 * 4..][..4];
                let mean = r.iter().sum::<f64>() / 4.0;
                let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0;
                (x[i] - mean) / (var + eps).sqrt() * w[i % 4] + b[i % 4]
            })
            .collect()
    };
    // Row 0 by hand: mean 2.5, biased variance 1.25.
    let s = 1.25f64.sqrt();
    let row0 = [1.0 - 3.0 / s, 1.0 - 1.0 / s, 1.0 + 1.0 / s, 1.0 + 3.0 / s];
    assert!(reference(0.0)[..4].iter().zip(row0).all(|(a, b)| (a - b).abs() < 1e-12));
    close("layer_norm eps 0", out(&o, "y0"), DType::F32, &[3, 4], &reference(0.0), 4);
    close("layer_norm", out(&o, "y"), DType::F32, &[3, 4], &reference(1e-5), 4);
}

pub fn norms_in_bf16_round_results() {
    let src = module(
        "",
        r#"    %0 = input "x" : bf16[2, 16]
    %1 = input "w" : bf16[16]
    %2 = input "b" : bf16[16]
    %3 = rms_norm %0, %1 {eps=1e-6, groups=2} : bf16[2, 16]
    %4 = layer_norm %0, %1, %2 {eps=1e-6} : bf16[2, 16]
    %5 = input "m" : bf16[16, 4]
    %6 = matmul %3, %5 : bf16[2, 4]
    %7 = add %6, %6 : bf16[2, 4]
    return %3 as "rms", %4 as "ln", %6 as "mm", %7 as "add"
"#,
    );
    let mut rng = Rng::new(3);
    let x = ft(DType::BF16, &[2, 16], &uniform(&mut rng, 32, -2.0, 2.0));
    let w = ft(DType::BF16, &[16], &uniform(&mut rng, 16, 0.5, 1.5));
    let b = ft(DType::BF16, &[16], &uniform(&mut rng, 16, -0.5, 0.5));
    let m = ft(DType::BF16, &[16, 4], &uniform(&mut rng, 64, -1.0, 1.0));
    let (xv, wv, bv, mv) = (x.to_f64(), w.to_f64(), b.to_f64(), m.to_f64());
    let o = run(&src, &[("x", x), ("w", w), ("b", b), ("m", m)]);
    for name in ["rms", "ln", "mm", "add"] {
        all_bf16(name, out(&o, name));
    }
    close("rms bf16", out(&o, "rms"), DType::BF16, &[2, 16], &rms_ref(&xv, &wv, None, 16, 2, 1e-6), 8);
    let ln: Vec<f64> = (0..32)
        .map(|i| {
            let r = &xv[i / 16 * 16..][..16];
            let mean = r.iter().sum::<f64>() / 16.0;
            let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 16.0;
            (xv[i] - mean) / (var + 1e-6).sqrt() * wv[i % 16] + bv[i % 16]
        })
        .collect();
    close("layer_norm bf16", out(&o, "ln"), DType::BF16, &[2, 16], &ln, 16);
    // The matmul consumes the bf16-rounded norm output, as the IR says.
    let rv = out(&o, "rms").to_f64();
    let mm: Vec<f64> = (0..8).map(|k| (0..16).map(|j| rv[k / 4 * 16 + j] * mv[j * 4 + k % 4]).sum()).collect();
    close("matmul bf16", out(&o, "mm"), DType::BF16, &[2, 4], &mm, 16);
    // Doubling is exact in bf16.
    let twice: Vec<f64> = out(&o, "mm").to_f64().iter().map(|v| 2.0 * v).collect();
    exact("add bf16", out(&o, "add"), DType::BF16, &[2, 4], &twice);
}

pub fn reshape_transpose_move_data() {
    let src = module(
        "  symbol S <= 8\n",
        r#"    %0 = input "x" : f32[2, 3, 4]
    %1 = reshape %0 : f32[4, 6]
    %2 = transpose %0 {perm=[2, 0, 1]} : f32[4, 2, 3]
    %3 = input "s" : i64[S, 6]
    %4 = reshape %3 : i64[2, S, 3]
    %5 = transpose %3 {perm=[1, 0]} : i64[6, S]
    return %1 as "r", %2 as "t", %4 as "rs", %5 as "ts"
"#,
    );
    let x: Vec<f64> = (0..24).map(f64::from).collect();
    let s: Vec<i64> = (0..18).map(|v| v * 10).collect();
    let o = run(&src, &[("x", f32t(&[2, 3, 4], &x)), ("s", it(DType::I64, &[3, 6], &s))]);
    exact("reshape", out(&o, "r"), DType::F32, &[4, 6], &x);
    // out[i, j, k] = x[j, k, i].
    let t: Vec<f64> = (0..24)
        .map(|f| {
            let idx = unravel(f, &[4, 2, 3]);
            x[(idx[1] * 3 + idx[2]) * 4 + idx[0]]
        })
        .collect();
    exact("transpose", out(&o, "t"), DType::F32, &[4, 2, 3], &t);
    let sf: Vec<f64> = s.iter().map(|&v| v as f64).collect();
    exact("reshape symbolic", out(&o, "rs"), DType::I64, &[2, 3, 3], &sf);
    let ts: Vec<f64> = (0..18).map(|f| sf[(f % 3) * 6 + f / 3]).collect();
    exact("transpose symbolic", out(&o, "ts"), DType::I64, &[6, 3], &ts);
}

pub fn slice_split_concat_broadcast() {
    let src = module(
        "  symbol S <= 8\n",
        r#"    %0 = input "x" : f32[2, 5]
    %1 = slice %0 {axis=1, start=1, end=-1} : f32[2, 3]
    %2 = slice %0 {axis=1, start=-2} : f32[2, 2]
    %3:3 = split %0 {axis=1, sizes=[2, 0, 3]} : f32[2, 2], f32[2, 0], f32[2, 3]
    %4 = concat %3#2, %1, %3#1 {axis=1} : f32[2, 6]
    %5 = concat %0, %0 {axis=0} : f32[4, 5]
    %6 = input "c" : f32[2, 1]
    %7 = broadcast %6 : f32[3, 2, 4]
    %8 = input "s" : f32[S, 3]
    %9 = slice %8 {axis=0, start=-1} : f32[1, 3]
    %10 = slice %8 {axis=0, start=1, end=3} : f32[2, 3]
    %11 = broadcast %8 : f32[2, S, 3]
    return %1 as "mid", %2 as "tail", %3#0 as "p0", %3#1 as "p1", %3#2 as "p2", %4 as "cat1", %5 as "cat0", %7 as "bc", %9 as "last", %10 as "rows", %11 as "sbc"
"#,
    );
    let x: Vec<f64> = (0..10).map(f64::from).collect();
    let s: Vec<f64> = (0..12).map(|v| f64::from(v) * 0.5).collect();
    let o = run(&src, &[("x", f32t(&[2, 5], &x)), ("c", f32t(&[2, 1], &[7.0, -7.0])), ("s", f32t(&[4, 3], &s))]);
    exact("slice", out(&o, "mid"), DType::F32, &[2, 3], &[1.0, 2.0, 3.0, 6.0, 7.0, 8.0]);
    exact("slice from end", out(&o, "tail"), DType::F32, &[2, 2], &[3.0, 4.0, 8.0, 9.0]);
    exact("split 0", out(&o, "p0"), DType::F32, &[2, 2], &[0.0, 1.0, 5.0, 6.0]);
    exact("split 1", out(&o, "p1"), DType::F32, &[2, 0], &[]);
    exact("split 2", out(&o, "p2"), DType::F32, &[2, 3], &[2.0, 3.0, 4.0, 7.0, 8.0, 9.0]);
    exact(
        "concat 1",
        out(&o, "cat1"),
        DType::F32,
        &[2, 6],
        &[2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 7.0, 8.0, 9.0, 6.0, 7.0, 8.0],
    );
    let cat0: Vec<f64> = x.iter().chain(&x).copied().collect();
    exact("concat 0", out(&o, "cat0"), DType::F32, &[4, 5], &cat0);
    let bc: Vec<f64> = (0..24).map(|f| if (f / 4) % 2 == 0 { 7.0 } else { -7.0 }).collect();
    exact("broadcast", out(&o, "bc"), DType::F32, &[3, 2, 4], &bc);
    exact("slice last row", out(&o, "last"), DType::F32, &[1, 3], &s[9..]);
    exact("slice rows", out(&o, "rows"), DType::F32, &[2, 3], &s[3..9]);
    let sbc: Vec<f64> = s.iter().chain(&s).copied().collect();
    exact("broadcast symbolic", out(&o, "sbc"), DType::F32, &[2, 4, 3], &sbc);
}

pub fn slice_of_a_symbolic_dim_out_of_range_is_an_error() {
    // `start=1, end=3` types as 2 rows of S, but S = 2 at run time has only rows 0 and 1.
    let src = module(
        "  symbol S <= 8\n",
        "    %0 = input \"s\" : f32[S, 3]\n    %1 = slice %0 {axis=0, start=1, end=3} : f32[2, 3]\n    return %1\n",
    );
    run_err(&src, &[("s", f32t(&[2, 3], &[0.0; 6]))], "slice", "out of range for a dim of 2");
    let src = module(
        "  symbol S <= 8\n",
        "    %0 = input \"s\" : f32[S, 3]\n    %1 = slice %0 {axis=0, start=-3} : f32[3, 3]\n    return %1\n",
    );
    run_err(&src, &[("s", f32t(&[2, 3], &[0.0; 6]))], "slice", "out of range");
}

pub fn gather_rows_and_out_of_range_index() {
    let src = module(
        "",
        r#"    %0 = input "t" : f32[4, 3]
    %1 = input "i" : i64[2, 2]
    %2 = gather %0, %1 : f32[2, 2, 3]
    %3 = input "j" : i32[3]
    %4 = gather %0, %3 : f32[3, 3]
    return %2 as "g", %4 as "g32"
"#,
    );
    let t: Vec<f64> = (0..12).map(|v| f64::from(v) + 0.5).collect();
    let table = f32t(&[4, 3], &t);
    let o = run(
        &src,
        &[("t", table.clone()), ("i", it(DType::I64, &[2, 2], &[3, 0, 0, 2])), ("j", it(DType::I32, &[3], &[1, 1, 3]))],
    );
    let rows = |ids: &[usize]| -> Vec<f64> { ids.iter().flat_map(|&r| t[r * 3..][..3].to_vec()).collect() };
    exact("gather", out(&o, "g"), DType::F32, &[2, 2, 3], &rows(&[3, 0, 0, 2]));
    exact("gather i32", out(&o, "g32"), DType::F32, &[3, 3], &rows(&[1, 1, 3]));
    for bad in [4, -1] {
        run_err(
            &src,
            &[
                ("t", table.clone()),
                ("i", it(DType::I64, &[2, 2], &[0, bad, 1, 1])),
                ("j", it(DType::I32, &[3], &[0, 0, 0])),
            ],
            "gather",
            &format!("index {bad} is outside [0, 4)"),
        );
    }
}

pub fn pixel_shuffle_matches_index_formula() {
    let src = module(
        "",
        "    %0 = input \"x\" : f32[2, 4, 6, 3]\n    %1 = pixel_shuffle %0 {factor=2} : f32[2, 2, 3, 12]\n    return %1 as \"y\"\n",
    );
    let x: Vec<f64> = (0..144).map(f64::from).collect();
    let o = run(&src, &[("x", f32t(&[2, 4, 6, 3], &x))]);
    let (r, c) = (2, 3);
    let xs = strides(&[2, 4, 6, 3]);
    // out[b, i, j, (di·r + dj)·C + ch] = x[b, r·i + di, r·j + dj, ch].
    let want: Vec<f64> = (0..144)
        .map(|f| {
            let idx = unravel(f, &[2, 2, 3, 12]);
            let (b, i, j, k) = (idx[0], idx[1], idx[2], idx[3]);
            let (blk, ch) = (k / c, k % c);
            let (di, dj) = (blk / r, blk % r);
            x[b * xs[0] + (r * i + di) * xs[1] + (r * j + dj) * xs[2] + ch]
        })
        .collect();
    exact("pixel_shuffle", out(&o, "y"), DType::F32, &[2, 2, 3, 12], &want);
}

pub fn scatter_cache_writes_rows_and_checks_capacity() {
    let src = module(
        "  symbol S <= 4\n",
        r#"    %0 = input "cache" : f32[2, 5, 2]
    %1 = input "new" : f32[2, S, 2]
    %2 = input "past" : i64[2]
    %3 = scatter_cache %0, %1, %2 : f32[2, 5, 2]
    return %3 as "cache"
"#,
    );
    let cache: Vec<f64> = (0..20).map(f64::from).collect();
    let new = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0];
    let args = |past: [i64; 2]| {
        vec![
            ("cache", f32t(&[2, 5, 2], &cache)),
            ("new", f32t(&[2, 2, 2], &new)),
            ("past", it(DType::I64, &[2], &past)),
        ]
    };
    let o = run(&src, &args([1, 3]));
    let mut want = cache.clone();
    // Sequence 0 rows 1, 2; sequence 1 rows 3, 4 (the last rows of the capacity).
    want[2..6].copy_from_slice(&new[..4]);
    want[16..20].copy_from_slice(&new[4..]);
    exact("scatter_cache", out(&o, "cache"), DType::F32, &[2, 5, 2], &want);
    run_err(&src, &args([4, 0]), "scatter_cache", "rows [4, 6) of sequence 0 exceed the cache capacity 5");
    run_err(&src, &args([0, -1]), "scatter_cache", "exceed the cache capacity 5");
    run_err(&src, &args([0, i64::MAX]), "scatter_cache", "exceed the cache capacity 5");
}

pub fn amax_quantize_dequantize() {
    let src = module(
        "",
        r#"    %0 = input "x" : f32[2, 4]
    %1 = amax %0 : f32[]
    %2 = input "s" : f32[]
    %3 = quantize %0, %2 : f8e4m3[2, 4]
    %4 = dequantize %3, %2 : f32[2, 4]
    %5 = input "c" : f32[4]
    %6 = quantize %0, %5 : f8e5m2[2, 4]
    %7 = dequantize %6, %5 : bf16[2, 4]
    %8 = input "h" : bf16[3]
    %9 = amax %8 : f32[]
    return %1 as "amax", %3 as "q", %4 as "dq", %6 as "qc", %7 as "dqc", %9 as "hamax"
"#,
    );
    let x = [1.0, -3.0, 1000.0, 0.26, 0.0, -0.75, 6.5, -2000.0];
    let c = [0.5, 2.0, 0.01, 1.0];
    let o = run(
        &src,
        &[
            ("x", f32t(&[2, 4], &x)),
            ("s", f32t(&[], &[0.5])),
            ("c", f32t(&[4], &c)),
            ("h", ft(DType::BF16, &[3], &[0.5, -9.0, 3.0])),
        ],
    );
    exact("amax", out(&o, "amax"), DType::F32, &[], &[2000.0]);
    exact("amax bf16", out(&o, "hamax"), DType::F32, &[], &[9.0]);
    // x / 0.5 = [2, -6, 2000, 0.52, 0, -1.5, 13, -4000]: saturating e4m3 gives 448 for the large
    // ones; 0.52 → 0.5 (step 1/16 in [0.5, 1)); 13 is exact (step 1 in [8, 16)).
    exact("quantize", out(&o, "q"), DType::F8E4M3, &[2, 4], &[2.0, -6.0, 448.0, 0.5, 0.0, -1.5, 13.0, -448.0]);
    exact("dequantize", out(&o, "dq"), DType::F32, &[2, 4], &[1.0, -3.0, 224.0, 0.25, 0.0, -0.75, 6.5, -224.0]);
    // Per-channel: x / c = [2, -1.5, 100000, 0.26, 0, -0.375, 650, -2000] in e5m2: 1e5 saturates to
    // 57344; 0.26 → 0.25; 650 → 640 (step 128 in [512, 1024)); 2000 → 2048 (step 256 in [1024, 2048)).
    exact(
        "quantize e5m2",
        out(&o, "qc"),
        DType::F8E5M2,
        &[2, 4],
        &[2.0, -1.5, 57344.0, 0.25, 0.0, -0.375, 640.0, -2048.0],
    );
    // q · c rounded to bf16: 57344 · 0.01 = 573.44 → 572 (step 4 in [512, 1024)); 640 · 0.01 = 6.4 →
    // 6.40625 (step 1/32 in [4, 8)).
    exact(
        "dequantize bf16",
        out(&o, "dqc"),
        DType::BF16,
        &[2, 4],
        &[1.0, -3.0, 572.0, 0.25, 0.0, -0.75, 6.40625, -2048.0],
    );

    // Round trip with the scale derived in the graph: real = f8 · (amax / 448).
    let src = module(
        "",
        r#"    %0 = input "x" : f32[64]
    %1 = amax %0 : f32[]
    %2 = constant 448.0 : f32[]
    %3 = div %1, %2 : f32[]
    %4 = quantize %0, %3 : f8e4m3[64]
    %5 = dequantize %4, %3 : f32[64]
    return %4 as "q", %5 as "x"
"#,
    );
    let mut rng = Rng::new(4);
    let xs = uniform(&mut rng, 64, -4.0, 4.0);
    let xt = f32t(&[64], &xs);
    let xv = xt.to_f64();
    let o = run(&src, &[("x", xt)]);
    let q = out(&o, "q").to_f64();
    let amax = xv.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(q.iter().any(|v| v.abs() == 448.0), "the largest element maps to ±448: {q:?}");
    assert!(q.iter().all(|v| v.abs() <= 448.0));
    // Each element is within half an e4m3 step (relative 2^-4) of the original, or within the
    // subnormal spacing 2^-9 · scale near zero.
    let dq = out(&o, "x").to_f64();
    for (i, (&a, &b)) in dq.iter().zip(&xv).enumerate() {
        let tol = b.abs() * 2f64.powi(-4) + amax / 448.0 * 2f64.powi(-10) + 1e-6;
        assert!((a - b).abs() <= tol, "element {i}: {a} vs {b}");
    }
    // Normwise, the round trip is within the shared tolerance of one e4m3 rounding.
    lathe_tests::assert_close("quantize round trip", &dq, &xv, DType::F8E4M3, 1);
}

pub fn fusion_body_equals_unfused_ops() {
    let src = r#"module @fuse {
  compute_dtype = f32
  symbol S <= 8
  weight @w : f32[6] = synthetic 5
  func @unfused {
    %0 = input "x" : f32[S, 6]
    %1 = input "y" : f32[S, 6]
    %2 = mul %0, %1 : f32[S, 6]
    %3 = silu %2 : f32[S, 6]
    %4 = add %3, %0 : f32[S, 6]
    %5 = weight @w : f32[6]
    %6 = rms_norm %4, %5 {eps=1e-5} : f32[S, 6]
    %7 = softmax %6 {axis=1} : f32[S, 6]
    return %6 as "norm", %7 as "probs"
  }
  func @fused {
    %0 = input "x" : f32[S, 6]
    %1 = input "y" : f32[S, 6]
    %2 = weight @w : f32[6]
    %3:2 = fusion %0, %1, %2 {strategy=row_reduce} {
      %0 = input "a" : f32[S, 6]
      %1 = input "b" : f32[S, 6]
      %2 = input "w" : f32[6]
      %3 = fusion %0, %1 {strategy=elementwise} {
        %0 = input "p" : f32[S, 6]
        %1 = input "q" : f32[S, 6]
        %2 = mul %0, %1 : f32[S, 6]
        %3 = silu %2 : f32[S, 6]
        %4 = add %3, %0 : f32[S, 6]
        return %4
      } : f32[S, 6]
      %4 = rms_norm %3, %2 {eps=1e-5} : f32[S, 6]
      %5 = softmax %4 {axis=1} : f32[S, 6]
      return %4, %5
    } : f32[S, 6], f32[S, 6]
    return %3#0 as "norm", %3#1 as "probs"
  }
}
"#;
    let mut rng = Rng::new(6);
    let x = f32t(&[3, 6], &uniform(&mut rng, 18, -2.0, 2.0));
    let y = f32t(&[3, 6], &uniform(&mut rng, 18, -2.0, 2.0));
    let args = [("x", x), ("y", y)];
    let plain = try_run_fn(src, "unfused", &args).unwrap_or_else(|e| panic!("{e}"));
    let fused = try_run_fn(src, "fused", &args).unwrap_or_else(|e| panic!("{e}"));
    // Same ops in the same order: bit-for-bit the same results.
    for name in ["norm", "probs"] {
        assert_eq!(out(&fused, name), out(&plain, name), "{name}");
    }
    // And the probabilities are a softmax: rows sum to 1.
    let p = out(&fused, "probs").to_f64();
    for r in 0..3 {
        let s: f64 = p[r * 6..][..6].iter().sum();
        assert!((s - 1.0).abs() < 1e-6, "row {r} sums to {s}");
    }
}

/// The uniform `sample` draws for row `row`: word 0 of Philox4x32-10 with key `seed` and
/// counter `[offset, row]` (64-bit halves), top 24 bits.
fn philox_uniform(seed: u64, offset: u64, row: u64) -> f64 {
    let ctr = [offset as u32, (offset >> 32) as u32, row as u32, (row >> 32) as u32];
    let w = lathe_numerics::philox4x32_10(ctr, [seed as u32, (seed >> 32) as u32])[0];
    f64::from(w >> 8) / 16_777_216.0
}

/// Independent top-k / top-p / temperature sampling in f64: the token, the distance of `u`
/// from the nearest boundary of the cumulative distribution, and the kept tokens.
fn sample_ref(logits: &[f64], t: f64, top_k: Option<usize>, top_p: Option<f64>, u: f64) -> (usize, f64, Vec<usize>) {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order.truncate(top_k.unwrap_or(usize::MAX));
    let e: Vec<f64> = order.iter().map(|&i| ((logits[i] - logits[order[0]]) / t).exp()).collect();
    let z: f64 = e.iter().sum();
    let mut keep = e.len();
    if let Some(p) = top_p {
        let mut cum = 0.0;
        if let Some(n) = e.iter().position(|v| {
            cum += v / z;
            cum >= p
        }) {
            keep = n + 1;
        }
    }
    let total: f64 = e[..keep].iter().sum();
    let mut cum = 0.0;
    let mut margin = f64::INFINITY;
    let mut pick = order[keep - 1];
    let mut found = false;
    for (n, v) in e[..keep].iter().enumerate() {
        cum += v / total;
        margin = margin.min((cum - u).abs());
        if !found && cum > u {
            pick = order[n];
            found = true;
        }
    }
    order.truncate(keep);
    (pick, margin, order)
}

pub fn sample_greedy_and_seeded() {
    let nan = f64::NAN;
    let logits = [
        0.1, 2.0, -1.0, 2.0, 0.5, 1.9, // tie: the lower index wins
        nan, -1.0, -2.0, nan, -0.5, -3.0, // NaN is never chosen
        0.3, 0.2, 0.4, 0.1, 0.35, 0.0, // nearly flat: draws vary
    ];
    let lt = f32t(&[3, 6], &logits);
    let lv = lt.to_f64();
    let greedy = module(
        "",
        "    %0 = input \"l\" : f32[3, 6]\n    %1 = input \"o\" : i64[]\n    %2 = sample %0, %1 {seed=9, temperature=0.0} : i64[3]\n    return %2 as \"t\"\n",
    );
    let off = |o: i64| it(DType::I64, &[], &[o]);
    for o in [0, 1, 77] {
        let r = run(&greedy, &[("l", lt.clone()), ("o", off(o))]);
        exact("greedy", out(&r, "t"), DType::I64, &[3], &[1.0, 4.0, 2.0]);
    }

    // Temperature, top-k, top-p: only the flat third row and the finite first row are drawn from.
    let seeded = |seed: u64, attrs: &str| {
        module("", &format!("    %0 = input \"l\" : f32[2, 6]\n    %1 = input \"o\" : i64[]\n    %2 = sample %0, %1 {{seed={seed}, {attrs}}} : i64[2]\n    return %2 as \"t\"\n"))
    };
    let rows: Vec<f64> = lv[..6].iter().chain(&lv[12..]).copied().collect();
    let l2 = f32t(&[2, 6], &rows);
    let configs: [(&str, f64, Option<usize>, Option<f64>); 4] = [
        ("temperature=0.8", 0.8, None, None),
        ("temperature=1.0, top_k=2", 1.0, Some(2), None),
        ("temperature=1.5, top_p=0.6", 1.5, None, Some(0.6)),
        ("temperature=1.0, top_k=4, top_p=0.5", 1.0, Some(4), Some(0.5)),
    ];
    for (attrs, t, top_k, top_p) in configs {
        let src = seeded(1234, attrs);
        let mut checked = 0;
        let mut seen = [std::collections::BTreeSet::new(), std::collections::BTreeSet::new()];
        for o in 0..40u64 {
            let r = run(&src, &[("l", l2.clone()), ("o", off(o as i64))]);
            let toks = out(&r, "t").ints().to_vec();
            // Determinism: the same seed and offset give the same tokens.
            let again = run(&src, &[("l", l2.clone()), ("o", off(o as i64))]);
            assert_eq!(out(&again, "t").ints(), toks, "{attrs}, offset {o}");
            for (row, &tok) in toks.iter().enumerate() {
                let logits = &rows[row * 6..][..6];
                let u = philox_uniform(1234, o, row as u64);
                let (want, margin, kept) = sample_ref(logits, t, top_k, top_p, u);
                // The token always has a nonzero kept probability: inside top-k and top-p.
                assert!(kept.contains(&(tok as usize)), "{attrs}: token {tok} is not among the kept {kept:?}");
                if margin > 1e-4 {
                    assert_eq!(tok as usize, want, "{attrs}, offset {o}, row {row}, u = {u}");
                    checked += 1;
                }
                seen[row].insert(tok);
            }
        }
        assert!(checked >= 60, "{attrs}: only {checked} draws were away from a boundary");
        // Randomness is used: the flat row draws more than one token (top-p 0.5 keeps the top 2
        // of it at least).
        assert!(seen[1].len() > 1, "{attrs}: row 2 always drew {:?}", seen[1]);
    }
    // A different seed changes some draws.
    let (a, b) = (seeded(1, "temperature=1.0"), seeded(2, "temperature=1.0"));
    let draws = |src: &str| -> Vec<i64> {
        (0..20).flat_map(|o| out(&run(src, &[("l", l2.clone()), ("o", off(o))]), "t").ints().to_vec()).collect()
    };
    assert_ne!(draws(&a), draws(&b));
}
