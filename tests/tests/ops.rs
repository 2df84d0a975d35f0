//! The per-op suite: for every op that `lathe ops` lists (`lathe_ir::manual::MANUAL`), a parse
//! round-trip case, a verifier negative case and an interpreter case whose values are checked
//! by hand or against an independent formula written here (naive loops in f64).
//!
//! The three kinds of case live in three tables keyed by op name ([`roundtrip::cases`],
//! [`negative::cases`], [`INTERP_CASES`]); `every_manual_op_has_all_three_kinds_of_case` fails
//! for an op missing from any of them, so a new op cannot land without tests. Each table also
//! checks that its cases really contain the op they are filed under.
//!
//! One test binary (modules under `ops/`, which cargo does not take for test targets of their
//! own) so that the coverage test sees every table.

#[path = "ops/common.rs"]
mod common;
#[path = "ops/interp_data.rs"]
mod interp_data;
#[path = "ops/interp_linear.rs"]
mod interp_linear;
#[path = "ops/interp_misc.rs"]
mod interp_misc;
#[path = "ops/interp_seq.rs"]
mod interp_seq;
#[path = "ops/negative.rs"]
mod negative;
#[path = "ops/roundtrip.rs"]
mod roundtrip;

use std::collections::BTreeSet;

use lathe_ir::manual::MANUAL;

/// Declares the interpreter cases: `module::case => [ops it checks]`. Generates one `#[test]`
/// per case (in `interp_case`) and the table [`INTERP_CASES`] the coverage test reads.
macro_rules! interp_cases {
    ($($m:ident :: $case:ident => [$($op:literal),+ $(,)?];)+) => {
        /// Every interpreter case: name, the ops whose values it checks, the case.
        const INTERP_CASES: &[(&str, &[&str], fn())] = &[$((stringify!($case), &[$($op),+], $m::$case)),+];

        mod interp_case {
            $(
                #[test]
                fn $case() {
                    super::run_interp_case(stringify!($case), &[$($op),+], super::$m::$case);
                }
            )+
        }
    };
}

interp_cases! {
    interp_data::input_binds_symbols_and_rejects_bad_arguments => ["input"];
    interp_data::weight_is_the_documented_synthetic_distribution => ["weight"];
    interp_data::constant_splat_dense_and_rounded => ["constant"];
    interp_data::iota_counts_along_its_axis => ["iota"];
    interp_data::unary_ops_match_f64_formulas => [
        "neg", "exp", "log", "sqrt", "rsqrt", "silu", "gelu", "relu", "square", "sigmoid", "softplus", "tanh",
    ];
    interp_data::gelu_matches_tabulated_normal_cdf => ["gelu"];
    interp_data::unary_bf16_results_are_rounded => ["exp", "silu", "neg"];
    interp_data::binary_ops_broadcast_like_numpy => ["add", "sub", "mul", "div", "max", "min"];
    interp_data::binary_ops_on_integers_and_nan => ["add", "sub", "mul", "max", "min"];
    interp_data::clamp_bounds_and_nan => ["clamp"];
    interp_data::where_selects_with_broadcasting => ["where"];
    interp_data::cast_rounds_saturates_and_truncates => ["cast"];
    interp_misc::reduce_sum_max_mean => ["reduce"];
    interp_misc::softmax_along_any_axis => ["softmax"];
    interp_misc::rms_norm_plain_grouped_and_gated => ["rms_norm"];
    interp_misc::layer_norm_matches_formula => ["layer_norm"];
    interp_misc::norms_in_bf16_round_results => ["rms_norm", "layer_norm", "matmul", "add"];
    interp_misc::reshape_transpose_move_data => ["reshape", "transpose"];
    interp_misc::slice_split_concat_broadcast => ["slice", "split", "concat", "broadcast"];
    interp_misc::slice_of_a_symbolic_dim_out_of_range_is_an_error => ["slice"];
    interp_misc::gather_rows_and_out_of_range_index => ["gather"];
    interp_misc::pixel_shuffle_matches_index_formula => ["pixel_shuffle"];
    interp_misc::scatter_cache_writes_rows_and_checks_capacity => ["scatter_cache"];
    interp_misc::amax_quantize_dequantize => ["amax", "quantize", "dequantize"];
    interp_misc::fusion_body_equals_unfused_ops => ["fusion"];
    interp_misc::sample_greedy_and_seeded => ["sample"];
    interp_linear::matmul_batched_and_transposed => ["matmul"];
    interp_linear::scaled_matmul_equals_dequantized_matmul => ["scaled_matmul", "dequantize", "matmul"];
    interp_linear::conv2d_patch_matches_direct_convolution => ["conv2d.patch"];
    interp_seq::attention_causal_gqa_rope_with_past => ["attention", "rope"];
    interp_seq::rope_rotates_head_pairs_at_positions => ["rope", "cast"];
    interp_seq::attention_hand_values_and_masks => ["attention"];
    interp_seq::scan_ssd_matches_recurrence_and_chunked_form => ["scan.ssd"];
    interp_seq::scan_ssd_hand_values => ["scan.ssd"];
    interp_seq::conv1d_causal_threads_state => ["conv1d.causal"];
}

/// Runs one interpreter case and checks it ran a module containing every op it claims.
fn run_interp_case(name: &str, claims: &[&str], case: fn()) {
    common::reset_ran();
    case();
    let ran = common::ran();
    let missing: Vec<&&str> = claims.iter().filter(|op| !ran.contains(**op)).collect();
    assert!(missing.is_empty(), "interpreter case {name} claims {missing:?} but ran only {ran:?}");
}

#[test]
fn every_manual_op_has_all_three_kinds_of_case() {
    let rt: BTreeSet<&str> = roundtrip::cases().iter().map(|c| c.0).collect();
    let neg: BTreeSet<&str> = negative::cases().iter().map(|c| c.op).collect();
    let interp: BTreeSet<&str> = INTERP_CASES.iter().flat_map(|c| c.1.iter().copied()).collect();
    let mut missing = Vec::new();
    for d in MANUAL {
        for (kind, set) in [("round-trip", &rt), ("verifier-negative", &neg), ("interpreter", &interp)] {
            if !set.contains(d.name) {
                missing.push(format!("{} has no {kind} case", d.name));
            }
        }
    }
    assert!(missing.is_empty(), "ops without tests:\n{}", missing.join("\n"));
    // The tables name only real ops (a typo would otherwise pass unnoticed).
    let known: BTreeSet<&str> = MANUAL.iter().map(|d| d.name).collect();
    for name in rt.iter().chain(&neg).chain(&interp) {
        assert!(known.contains(name), "case filed under unknown op {name:?}");
    }
}

#[test]
fn manual_names_every_parser_op_once() {
    // The coverage test iterates MANUAL; make sure MANUAL itself is the whole op set.
    let manual: Vec<&str> = MANUAL.iter().map(|d| d.name).collect();
    let unique: BTreeSet<&str> = manual.iter().copied().collect();
    assert_eq!(unique.len(), manual.len(), "duplicate manual entries");
    let parser: BTreeSet<&str> = lathe_ir::text::parse::op_names().into_iter().collect();
    assert_eq!(unique, parser, "manual and parser disagree on the op set");
}
