//! Interpreter cases for the sequence ops: attention, the Mamba-2 SSD scan and the causal conv.

use lathe_interp::tensor::Tensor;
use lathe_ir::DType;
use lathe_tests::Rng;

use crate::common::{close, exact, f32t, it, module, out, run, run_err, uniform};

// ------------------------------------------------------------------ attention ----

/// Shapes of one attention case.
#[derive(Clone, Copy)]
struct Attn {
    b: usize,
    s: usize,
    t: usize,
    hq: usize,
    hkv: usize,
    d: usize,
    dv: usize,
}

/// Rotate-half RoPE of one head vector at position `pos`: the pair `(i, i + D/2)` turns by
/// `pos / scale · theta^(−2i/D)`.
fn rope(u: &[f64], pos: usize, theta: f64, scale: f64) -> Vec<f64> {
    let h = u.len() / 2;
    let mut r = u.to_vec();
    for i in 0..h {
        let ang = pos as f64 / scale * theta.powf(-2.0 * i as f64 / u.len() as f64);
        r[i] = u[i] * ang.cos() - u[i + h] * ang.sin();
        r[i + h] = u[i + h] * ang.cos() + u[i] * ang.sin();
    }
    r
}

/// Naive causal attention with explicit positions: query i of sequence b sits at
/// `past = kv_len − S` plus i and sees keys `j <= past + i`; q head h reads kv head
/// `h / (Hq / Hkv)`.
fn causal_ref(a: Attn, qkv: [&[f64]; 3], lens: &[i64], scale: f64, rope_attrs: Option<(f64, f64)>) -> Vec<f64> {
    let [q, k, v] = qkv;
    let mut out = vec![0.0; a.b * a.s * a.hq * a.dv];
    for b in 0..a.b {
        let past = lens[b] as usize - a.s;
        for i in 0..a.s {
            for h in 0..a.hq {
                let hk = h / (a.hq / a.hkv);
                let qv = &q[((b * a.s + i) * a.hq + h) * a.d..][..a.d];
                let qr = rope_attrs.map_or(qv.to_vec(), |(th, sc)| rope(qv, past + i, th, sc));
                let scores: Vec<f64> = (0..=past + i)
                    .map(|j| {
                        let kv = &k[((b * a.t + j) * a.hkv + hk) * a.d..][..a.d];
                        let kr = rope_attrs.map_or(kv.to_vec(), |(th, sc)| rope(kv, j, th, sc));
                        scale * qr.iter().zip(&kr).map(|(x, y)| x * y).sum::<f64>()
                    })
                    .collect();
                let mx = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s - mx).exp()).sum();
                for (j, s) in scores.iter().enumerate() {
                    let p = (s - mx).exp() / z;
                    for c in 0..a.dv {
                        out[((b * a.s + i) * a.hq + h) * a.dv + c] += p * v[((b * a.t + j) * a.hkv + hk) * a.dv + c];
                    }
                }
            }
        }
    }
    out
}

pub fn attention_causal_gqa_rope_with_past() {
    let a = Attn { b: 2, s: 3, t: 8, hq: 4, hkv: 2, d: 4, dv: 3 };
    let src = module(
        "  symbol B <= 2\n  symbol S <= 8\n",
        r#"    %0 = input "q" : f32[B, S, 4, 4]
    %1 = input "k" : f32[B, 8, 2, 4]
    %2 = input "v" : f32[B, 8, 2, 3]
    %3 = input "len" : i64[B]
    %4 = attention %0, %1, %2, %3 {mask=causal, scale=0.5} : f32[B, S, 4, 3]
    %5 = input "qpos" : i64[B, S]
    %6 = input "kpos" : i64[B, 8]
    %7 = rope %0, %5 {theta=10000.0, scale=1.0} : f32[B, S, 4, 4]
    %8 = rope %1, %6 {theta=10000.0, scale=1.0} : f32[B, 8, 2, 4]
    %9 = attention %7, %8, %2, %3 {mask=causal, scale=0.5} : f32[B, S, 4, 3]
    %10 = rope %0, %5 {theta=100.0, scale=2.0} : f32[B, S, 4, 4]
    %11 = rope %1, %6 {theta=100.0, scale=2.0} : f32[B, 8, 2, 4]
    %12 = attention %10, %11, %2, %3 {mask=causal, scale=0.5} : f32[B, S, 4, 3]
    return %4 as "plain", %9 as "rope", %12 as "rope_scaled"
"#,
    );
    let mut rng = Rng::new(20);
    let q = uniform(&mut rng, a.b * a.s * a.hq * a.d, -1.5, 1.5);
    let mut k = uniform(&mut rng, a.b * a.t * a.hkv * a.d, -1.5, 1.5);
    let mut v = uniform(&mut rng, a.b * a.t * a.hkv * a.dv, -2.0, 2.0);
    // kv_len 7 and 5: past = 4 and 2. Rows at and beyond kv_len are not valid cache rows: NaN
    // there must never reach the result.
    let lens = [7i64, 5];
    for (b, &len) in lens.iter().enumerate() {
        for j in len as usize..a.t {
            k[((b * a.t + j) * a.hkv) * a.d..][..a.hkv * a.d].fill(f64::NAN);
            v[((b * a.t + j) * a.hkv) * a.dv..][..a.hkv * a.dv].fill(f64::NAN);
        }
    }
    let (qt, kt, vt) =
        (f32t(&[a.b, a.s, a.hq, a.d], &q), f32t(&[a.b, a.t, a.hkv, a.d], &k), f32t(&[a.b, a.t, a.hkv, a.dv], &v));
    let (qv, kv, vv) = (qt.to_f64(), kt.to_f64(), vt.to_f64());
    // Queries at positions past + i (past = kv_len − S), keys at their row index: rope then
    // attention is RoPE attention over a cache of rotated keys.
    let args = |lens: &[i64]| {
        let qpos: Vec<i64> = lens.iter().flat_map(|&l| (0..a.s as i64).map(move |i| l - a.s as i64 + i)).collect();
        let kpos: Vec<i64> = (0..a.b).flat_map(|_| 0..a.t as i64).collect();
        vec![
            ("q", qt.clone()),
            ("k", kt.clone()),
            ("v", vt.clone()),
            ("len", it(DType::I64, &[a.b], lens)),
            ("qpos", it(DType::I64, &[a.b, a.s], &qpos)),
            ("kpos", it(DType::I64, &[a.b, a.t], &kpos)),
        ]
    };
    let o = run(&src, &args(&lens));
    let shape = [a.b, a.s, a.hq, a.dv];
    let cases = [("plain", None), ("rope", Some((10000.0, 1.0))), ("rope_scaled", Some((100.0, 2.0)))];
    for (name, r) in cases {
        let want = causal_ref(a, [&qv, &kv, &vv], &lens, 0.5, r);
        close(name, out(&o, name), DType::F32, &shape, &want, a.t);
    }
    // The case is sensitive to `past`: placing the queries at positions 0.. instead gives
    // clearly different results.
    let plain = out(&o, "plain").to_f64();
    let wrong_past = causal_ref(a, [&qv, &kv, &vv], &[3, 3], 0.5, None);
    assert!(lathe_tests::normwise_error(&plain, &wrong_past) > 1e-2, "past does not matter?");
    // Run-time errors: fewer valid keys than queries, or more than the capacity.
    run_err(&src, &args(&[2, 5]), "attention", "causal kv_len[0] = 2 < q_len 3");
    run_err(&src, &args(&[9, 5]), "attention", "kv_len[0] = 9 outside 0..=8");
}

pub fn rope_rotates_head_pairs_at_positions() {
    // D = 2 has one frequency, 1: [1, 0] at position p turns by p/scale radians. D = 4 with
    // theta 100 has frequencies 1 and 0.1: pairs (0, 2) and (1, 3).
    let src = module(
        "",
        r#"    %0 = input "x" : f32[1, 3, 1, 2]
    %1 = input "p" : i64[1, 3]
    %2 = rope %0, %1 {theta=10000.0} : f32[1, 3, 1, 2]
    %3 = rope %0, %1 {theta=10000.0, scale=2.0} : f32[1, 3, 1, 2]
    %4 = input "y" : f32[1, 1, 2, 4]
    %5 = input "q" : i64[1, 1]
    %6 = rope %4, %5 {theta=100.0} : f32[1, 1, 2, 4]
    %7 = cast %4 : bf16[1, 1, 2, 4]
    %8 = rope %7, %5 {theta=100.0} : bf16[1, 1, 2, 4]
    return %2 as "r", %3 as "half", %6 as "four", %8 as "bf16"
"#,
    );
    let y = [1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.25, -2.0];
    let o = run(
        &src,
        &[
            ("x", f32t(&[1, 3, 1, 2], &[1.0, 0.0, 1.0, 0.0, 0.0, 1.0])),
            ("p", it(DType::I64, &[1, 3], &[0, 1, 3])),
            ("y", f32t(&[1, 1, 2, 4], &y)),
            ("q", it(DType::I64, &[1, 1], &[5])),
        ],
    );
    let (c1, s1, c3, s3) = (1f64.cos(), 1f64.sin(), 3f64.cos(), 3f64.sin());
    close("rope", out(&o, "r"), DType::F32, &[1, 3, 1, 2], &[1.0, 0.0, c1, s1, -s3, c3], 1);
    let (ch, sh, c32, s32) = (0.5f64.cos(), 0.5f64.sin(), 1.5f64.cos(), 1.5f64.sin());
    close("rope scale 2", out(&o, "half"), DType::F32, &[1, 3, 1, 2], &[1.0, 0.0, ch, sh, -s32, c32], 1);
    // Position 5: angles 5 (pair 0, 2) and 0.5 (pair 1, 3), per head.
    let mut want = Vec::new();
    for h in y.chunks(4) {
        let (a, b) = (5f64, 0.5f64);
        want.extend([
            h[0] * a.cos() - h[2] * a.sin(),
            h[1] * b.cos() - h[3] * b.sin(),
            h[2] * a.cos() + h[0] * a.sin(),
            h[3] * b.cos() + h[1] * b.sin(),
        ]);
    }
    close("rope D = 4", out(&o, "four"), DType::F32, &[1, 1, 2, 4], &want, 1);
    // bf16 in, bf16 out: the rotation of bf16 values, rounded once.
    close("rope bf16", out(&o, "bf16"), DType::BF16, &[1, 1, 2, 4], &want, 1);
}

pub fn attention_hand_values_and_masks() {
    // One head, D = 2, scale 1: q = (1, 0) for both queries; keys (0, 0) and (ln 3, 0), so the
    // scores are 0 and ln 3 and the probabilities over both keys are 1/4 and 3/4.
    let src = module(
        "",
        r#"    %0 = input "q" : f32[1, 2, 1, 2]
    %1 = input "k" : f32[1, 2, 1, 2]
    %2 = input "v" : f32[1, 2, 1, 1]
    %3 = input "len" : i64[1]
    %4 = attention %0, %1, %2, %3 {mask=causal, scale=1.0} : f32[1, 2, 1, 1]
    %5 = attention %0, %1, %2, %3 {mask=bidirectional, scale=1.0} : f32[1, 2, 1, 1]
    %6 = input "one" : i64[1]
    %7 = attention %0, %1, %2, %6 {mask=cross, scale=1.0} : f32[1, 2, 1, 1]
    %8 = attention %0, %1, %2, %3 {mask=bidirectional, scale=2.0} : f32[1, 2, 1, 1]
    return %4 as "causal", %5 as "bi", %7 as "cross", %8 as "scaled"
"#,
    );
    let l3 = 3f64.ln();
    let o = run(
        &src,
        &[
            ("q", f32t(&[1, 2, 1, 2], &[1.0, 0.0, 1.0, 0.0])),
            ("k", f32t(&[1, 2, 1, 2], &[0.0, 0.0, l3, 0.0])),
            ("v", f32t(&[1, 2, 1, 1], &[4.0, 8.0])),
            ("len", it(DType::I64, &[1], &[2])),
            ("one", it(DType::I64, &[1], &[1])),
        ],
    );
    // Causal: query 0 sees key 0 only (4); query 1 sees both: 4/4 + 8·3/4 = 7.
    close("causal", out(&o, "causal"), DType::F32, &[1, 2, 1, 1], &[4.0, 7.0], 2);
    close("bidirectional", out(&o, "bi"), DType::F32, &[1, 2, 1, 1], &[7.0, 7.0], 2);
    // Cross with one valid key: every query reads it alone.
    close("cross", out(&o, "cross"), DType::F32, &[1, 2, 1, 1], &[4.0, 4.0], 2);
    // Scale 2: scores 0 and 2 ln 3 → weights 1/10 and 9/10: 0.4 + 7.2.
    close("scale", out(&o, "scaled"), DType::F32, &[1, 2, 1, 1], &[7.6, 7.6], 2);

    // GQA by hand: Hq = 4 over Hkv = 2, one key per kv head, so each q head returns its kv
    // head's value: heads 0, 1 read kv head 0, heads 2, 3 read kv head 1.
    let src = module(
        "",
        "    %0 = input \"q\" : f32[1, 1, 4, 2]\n    %1 = input \"k\" : f32[1, 1, 2, 2]\n    %2 = input \"v\" : f32[1, 1, 2, 1]\n    %3 = input \"len\" : i64[1]\n    %4 = attention %0, %1, %2, %3 {mask=causal, scale=1.0} : f32[1, 1, 4, 1]\n    return %4 as \"o\"\n",
    );
    let o = run(
        &src,
        &[
            ("q", f32t(&[1, 1, 4, 2], &[0.3, -1.0, 2.0, 0.5, 0.0, 1.0, -2.0, 0.25])),
            ("k", f32t(&[1, 1, 2, 2], &[1.0, 2.0, -0.5, 0.5])),
            ("v", f32t(&[1, 1, 2, 1], &[10.0, -20.0])),
            ("len", it(DType::I64, &[1], &[1])),
        ],
    );
    exact("gqa", out(&o, "o"), DType::F32, &[1, 1, 4, 1], &[10.0, 10.0, -20.0, -20.0]);
}

// -------------------------------------------------------------------- scan.ssd ----

/// Shapes of one SSD case.
#[derive(Clone, Copy)]
struct Ssd {
    b: usize,
    s: usize,
    h: usize,
    p: usize,
    g: usize,
    n: usize,
}

/// SSD operands, as f64 values already rounded to their f32 inputs.
struct SsdArgs {
    x: Vec<f64>,
    dt: Vec<f64>,
    a: Vec<f64>,
    bm: Vec<f64>,
    cm: Vec<f64>,
    s0: Vec<f64>,
}

/// The sequential recurrence, step by step in f64, with an explicit head → group map.
fn ssd_sequential(d: Ssd, v: &SsdArgs, group_of: impl Fn(usize) -> usize) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; d.b * d.s * d.h * d.p];
    let mut st = v.s0.clone();
    for b in 0..d.b {
        for h in 0..d.h {
            let g = group_of(h);
            for t in 0..d.s {
                let dt = v.dt[(b * d.s + t) * d.h + h];
                let decay = (dt * v.a[h]).exp();
                for p in 0..d.p {
                    let xv = v.x[((b * d.s + t) * d.h + h) * d.p + p];
                    let mut acc = 0.0;
                    for n in 0..d.n {
                        let bc = ((b * d.s + t) * d.g + g) * d.n + n;
                        let s = &mut st[((b * d.h + h) * d.p + p) * d.n + n];
                        *s = decay * *s + dt * xv * v.bm[bc];
                        acc += *s * v.cm[bc];
                    }
                    y[((b * d.s + t) * d.h + h) * d.p + p] = acc;
                }
            }
        }
    }
    (y, st)
}

/// The chunked closed form of the Mamba-2 paper (SSD, "Listing 1" / section 6): with chunks of
/// `q` steps and `L_t = Σ_{r ≤ t in the chunk} dt_r·A_h` (inclusive cumulative sum),
/// `y_t = exp(L_t)·(C_t · state_in) + Σ_{s ≤ t} exp(L_t − L_s)·dt_s·(C_t · B_s)·x_s` and
/// `state_out = exp(L_last)·state_in + Σ_s exp(L_last − L_s)·dt_s·x_s ⊗ B_s`.
fn ssd_chunked(d: Ssd, v: &SsdArgs, q: usize) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; d.b * d.s * d.h * d.p];
    let mut st = v.s0.clone();
    let hpg = d.h / d.g;
    for b in 0..d.b {
        for h in 0..d.h {
            let g = h / hpg;
            let bx = |t: usize, n: usize| v.bm[((b * d.s + t) * d.g + g) * d.n + n];
            let cx = |t: usize, n: usize| v.cm[((b * d.s + t) * d.g + g) * d.n + n];
            let dtx = |t: usize| v.dt[(b * d.s + t) * d.h + h];
            let xx = |t: usize, p: usize| v.x[((b * d.s + t) * d.h + h) * d.p + p];
            for c0 in (0..d.s).step_by(q) {
                let c1 = (c0 + q).min(d.s);
                let mut cum = Vec::with_capacity(c1 - c0);
                let mut acc = 0.0;
                for t in c0..c1 {
                    acc += dtx(t) * v.a[h];
                    cum.push(acc);
                }
                let state_in: Vec<f64> = st[(b * d.h + h) * d.p * d.n..][..d.p * d.n].to_vec();
                for t in c0..c1 {
                    let lt = cum[t - c0];
                    for p in 0..d.p {
                        // Contribution of the state entering the chunk.
                        let mut yv = lt.exp() * (0..d.n).map(|n| cx(t, n) * state_in[p * d.n + n]).sum::<f64>();
                        // Intra-chunk (the "diagonal block"): a masked, decayed C·Bᵀ times x.
                        for s in c0..=t {
                            let cb: f64 = (0..d.n).map(|n| cx(t, n) * bx(s, n)).sum();
                            yv += (lt - cum[s - c0]).exp() * dtx(s) * cb * xx(s, p);
                        }
                        y[((b * d.s + t) * d.h + h) * d.p + p] = yv;
                    }
                }
                let last = cum[c1 - c0 - 1];
                for p in 0..d.p {
                    for n in 0..d.n {
                        let mut sv = last.exp() * state_in[p * d.n + n];
                        for s in c0..c1 {
                            sv += (last - cum[s - c0]).exp() * dtx(s) * xx(s, p) * bx(s, n);
                        }
                        st[((b * d.h + h) * d.p + p) * d.n + n] = sv;
                    }
                }
            }
        }
    }
    (y, st)
}

fn ssd_module(chunk: u64) -> String {
    module(
        "  symbol B <= 2\n  symbol S <= 16\n",
        &format!(
            r#"    %0 = input "x" : f32[B, S, 4, 3]
    %1 = input "dt" : f32[B, S, 4]
    %2 = input "A" : f32[4]
    %3 = input "Bm" : f32[B, S, 2, 2]
    %4 = input "Cm" : f32[B, S, 2, 2]
    %5 = input "s0" : f32[B, 4, 3, 2]
    %6:2 = scan.ssd %0, %1, %2, %3, %4, %5 {{chunk={chunk}}} : f32[B, S, 4, 3], f32[B, 4, 3, 2]
    return %6#0 as "y", %6#1 as "state"
"#
        ),
    )
}

pub fn scan_ssd_matches_recurrence_and_chunked_form() {
    // G = 2 groups of H/G = 2 heads; S = 7 is not a multiple of the chunk Q = 3.
    let d = Ssd { b: 2, s: 7, h: 4, p: 3, g: 2, n: 2 };
    let mut rng = Rng::new(30);
    let t = |shape: &[usize], v: Vec<f64>| f32t(shape, &v);
    let x = t(&[d.b, d.s, d.h, d.p], uniform(&mut rng, d.b * d.s * d.h * d.p, -1.0, 1.0));
    // dt already softplus'd (positive), A = −exp(·) (negative), as the op requires.
    let dt = t(&[d.b, d.s, d.h], (0..d.b * d.s * d.h).map(|_| rng.uniform(-3.0, 1.0).exp().ln_1p()).collect());
    let a = t(&[d.h], (0..d.h).map(|_| -rng.uniform(-1.0, 1.0).exp()).collect());
    let bm = t(&[d.b, d.s, d.g, d.n], uniform(&mut rng, d.b * d.s * d.g * d.n, -1.0, 1.0));
    let cm = t(&[d.b, d.s, d.g, d.n], uniform(&mut rng, d.b * d.s * d.g * d.n, -1.0, 1.0));
    let s0 = t(&[d.b, d.h, d.p, d.n], uniform(&mut rng, d.b * d.h * d.p * d.n, -1.0, 1.0));
    let v =
        SsdArgs { x: x.to_f64(), dt: dt.to_f64(), a: a.to_f64(), bm: bm.to_f64(), cm: cm.to_f64(), s0: s0.to_f64() };
    let args: Vec<(&str, Tensor)> = vec![("x", x), ("dt", dt), ("A", a), ("Bm", bm), ("Cm", cm), ("s0", s0)];
    let o = run(&ssd_module(3), &args);
    let (ys, ss) = ssd_sequential(d, &v, |h| h / (d.h / d.g));
    let (yc, sc) = ssd_chunked(d, &v, 3);
    // The two references agree with each other to f64 precision...
    assert!(lathe_tests::normwise_error(&yc, &ys) < 1e-12 && lathe_tests::normwise_error(&sc, &ss) < 1e-12);
    // ...and the interpreter agrees with both.
    let k = d.s * d.n;
    close("ssd y vs recurrence", out(&o, "y"), DType::F32, &[d.b, d.s, d.h, d.p], &ys, k);
    close("ssd state vs recurrence", out(&o, "state"), DType::F32, &[d.b, d.h, d.p, d.n], &ss, k);
    close("ssd y vs chunked", out(&o, "y"), DType::F32, &[d.b, d.s, d.h, d.p], &yc, k);
    close("ssd state vs chunked", out(&o, "state"), DType::F32, &[d.b, d.h, d.p, d.n], &sc, k);
    // Mapping heads to groups as h % G (interleaved) instead of h / (H/G) is detectably wrong.
    let (yw, _) = ssd_sequential(d, &v, |h| h % d.g);
    assert!(lathe_tests::normwise_error(&out(&o, "y").to_f64(), &yw) > 1e-2, "group map not exercised");
    // `chunk` is a hint, never semantics: any chunk gives the same results.
    for chunk in [1, 128] {
        let other = run(&ssd_module(chunk), &args);
        assert_eq!(out(&other, "y"), out(&o, "y"), "chunk={chunk}");
        assert_eq!(out(&other, "state"), out(&o, "state"), "chunk={chunk}");
    }
    // Decoding token by token, threading the state, equals the whole sequence at once.
    let mut state = args[5].1.clone();
    for step in 0..d.s {
        let slice = |tsr: &Tensor, per: usize| {
            let f = tsr.floats();
            let vals: Vec<f64> =
                (0..d.b).flat_map(|b| f[(b * d.s + step) * per..][..per].iter().map(|&e| f64::from(e))).collect();
            let mut shape = tsr.shape.clone();
            shape[1] = 1;
            f32t(&shape, &vals)
        };
        let one: Vec<(&str, Tensor)> = vec![
            ("x", slice(&args[0].1, d.h * d.p)),
            ("dt", slice(&args[1].1, d.h)),
            ("A", args[2].1.clone()),
            ("Bm", slice(&args[3].1, d.g * d.n)),
            ("Cm", slice(&args[4].1, d.g * d.n)),
            ("s0", state),
        ];
        let r = run(&ssd_module(3), &one);
        let want: Vec<f64> = (0..d.b).flat_map(|b| ys[(b * d.s + step) * d.h * d.p..][..d.h * d.p].to_vec()).collect();
        close(&format!("decode step {step}"), out(&r, "y"), DType::F32, &[d.b, 1, d.h, d.p], &want, k);
        state = out(&r, "state").clone();
    }
    close("decoded final state", &state, DType::F32, &[d.b, d.h, d.p, d.n], &ss, k);
}

pub fn scan_ssd_hand_values() {
    // One head, P = N = G = 1. dt·A = −ln 2 per unit of dt, so the decays are 1/2, 1/2, 1/4:
    // state 0.5·4 + 1·2·1 = 4 → y 4·1; 0.5·4 + 1·4·0.5 = 4 → y 4·2; 0.25·4 + 2·8·1 = 17 → y 17·0.5.
    let src = module(
        "",
        "    %0 = input \"x\" : f32[1, 3, 1, 1]\n    %1 = input \"dt\" : f32[1, 3, 1]\n    %2 = input \"A\" : f32[1]\n    %3 = input \"Bm\" : f32[1, 3, 1, 1]\n    %4 = input \"Cm\" : f32[1, 3, 1, 1]\n    %5 = input \"s0\" : f32[1, 1, 1, 1]\n    %6:2 = scan.ssd %0, %1, %2, %3, %4, %5 {chunk=2} : f32[1, 3, 1, 1], f32[1, 1, 1, 1]\n    return %6#0 as \"y\", %6#1 as \"state\"\n",
    );
    let o = run(
        &src,
        &[
            ("x", f32t(&[1, 3, 1, 1], &[2.0, 4.0, 8.0])),
            ("dt", f32t(&[1, 3, 1], &[1.0, 1.0, 2.0])),
            ("A", f32t(&[1], &[-(2f64.ln())])),
            ("Bm", f32t(&[1, 3, 1, 1], &[1.0, 0.5, 1.0])),
            ("Cm", f32t(&[1, 3, 1, 1], &[1.0, 2.0, 0.5])),
            ("s0", f32t(&[1, 1, 1, 1], &[4.0])),
        ],
    );
    close("ssd hand y", out(&o, "y"), DType::F32, &[1, 3, 1, 1], &[4.0, 8.0, 8.5], 3);
    close("ssd hand state", out(&o, "state"), DType::F32, &[1, 1, 1, 1], &[17.0], 3);
}

// --------------------------------------------------------------- conv1d.causal ----

fn conv_module() -> String {
    module(
        "  symbol B <= 2\n  symbol S <= 8\n",
        r#"    %0 = input "x" : f32[B, S, 3]
    %1 = input "w" : f32[3, 4]
    %2 = input "b" : f32[3]
    %3 = input "state" : f32[B, 3, 3]
    %4:2 = conv1d.causal %0, %1, %2, %3 : f32[B, S, 3], f32[B, 3, 3]
    return %4#0 as "y", %4#1 as "state"
"#,
    )
}

/// Rows `[t0, t1)` of a `[B, S, C]` tensor.
fn rows(t: &Tensor, t0: usize, t1: usize) -> Tensor {
    let (b, s, c) = (t.shape[0], t.shape[1], t.shape[2]);
    let f = t.floats();
    let v: Vec<f64> =
        (0..b).flat_map(|bi| f[(bi * s + t0) * c..(bi * s + t1) * c].iter().map(|&e| f64::from(e))).collect();
    f32t(&[b, t1 - t0, c], &v)
}

pub fn conv1d_causal_threads_state() {
    let (b, s, c, w) = (2, 6, 3, 4);
    let mut rng = Rng::new(40);
    let x = f32t(&[b, s, c], &uniform(&mut rng, b * s * c, -1.0, 1.0));
    let wt = f32t(&[c, w], &uniform(&mut rng, c * w, -1.0, 1.0));
    let bias = f32t(&[c], &uniform(&mut rng, c, -1.0, 1.0));
    let st0 = f32t(&[b, w - 1, c], &uniform(&mut rng, b * (w - 1) * c, -1.0, 1.0));
    let (xv, wv, bv, sv) = (x.to_f64(), wt.to_f64(), bias.to_f64(), st0.to_f64());
    let src = conv_module();
    let call = |x: Tensor, st: Tensor| run(&src, &[("x", x), ("w", wt.clone()), ("b", bias.clone()), ("state", st)]);
    let full = call(x.clone(), st0.clone());
    // Independent formula over xx = concat(state0, x) along time.
    let xx = |bi: usize, r: usize| -> &[f64] {
        if r < w - 1 {
            &sv[(bi * (w - 1) + r) * c..][..c]
        } else {
            &xv[(bi * s + r - (w - 1)) * c..][..c]
        }
    };
    let mut want = Vec::new();
    for bi in 0..b {
        for t in 0..s {
            for ch in 0..c {
                want.push(bv[ch] + (0..w).map(|k| wv[ch * w + k] * xx(bi, t + k)[ch]).sum::<f64>());
            }
        }
    }
    close("conv1d y", out(&full, "y"), DType::F32, &[b, s, c], &want, w);
    let last: Vec<f64> = (0..b)
        .flat_map(|bi| (s + 1 - w..s).flat_map(move |t| (0..c).map(move |ch| (bi, t, ch))))
        .map(|(bi, t, ch)| xv[(bi * s + t) * c + ch])
        .collect();
    exact("conv1d state", out(&full, "state"), DType::F32, &[b, w - 1, c], &last);
    // State threading: the first 4 tokens, then the last 2 from the returned state, equal the
    // whole sequence at once, bit for bit; so does token-by-token decoding.
    let first = call(rows(&x, 0, 4), st0.clone());
    let second = call(rows(&x, 4, s), out(&first, "state").clone());
    assert_eq!(out(&first, "y"), &rows(out(&full, "y"), 0, 4));
    assert_eq!(out(&second, "y"), &rows(out(&full, "y"), 4, s));
    assert_eq!(out(&second, "state"), out(&full, "state"));
    let mut st = st0.clone();
    for t in 0..s {
        let r = call(rows(&x, t, t + 1), st);
        assert_eq!(out(&r, "y"), &rows(out(&full, "y"), t, t + 1), "decode step {t}");
        st = out(&r, "state").clone();
    }
    assert_eq!(&st, out(&full, "state"));
    // S = 1 < W − 1: the new state is the old one shifted by one row, plus the new input.
    let r = call(rows(&x, 0, 1), st0.clone());
    let shifted: Vec<f64> = (0..b)
        .flat_map(|bi| {
            let mut v = sv[(bi * (w - 1) + 1) * c..(bi + 1) * (w - 1) * c].to_vec();
            v.extend_from_slice(&xv[bi * s * c..][..c]);
            v
        })
        .collect();
    exact("conv1d decode state", out(&r, "state"), DType::F32, &[b, w - 1, c], &shifted);
}
