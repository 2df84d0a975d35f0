//! The published Nemotron-H configs import shape-only with the exact parameter and layer counts.

use std::path::PathBuf;

use lathe_frontend::config::Config;
use lathe_frontend::nemotron_h::{BlockKind, NemotronHConfig};

fn load(name: &str) -> NemotronHConfig {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/configs").join(name);
    let c = Config::read(&dir).unwrap_or_else(|e| panic!("{e}"));
    NemotronHConfig::from_config(&c).unwrap_or_else(|e| panic!("{e}"))
}

/// The parameter count written out from the config fields, independently of the tensor list.
fn closed_form(c: &NemotronHConfig) -> u64 {
    let u = |x: usize| x as u64;
    let (h, v) = (u(c.hidden_size), u(c.vocab_size));
    let (heads, p, g, n, w) =
        (u(c.mamba_num_heads), u(c.mamba_head_dim), u(c.n_groups), u(c.ssm_state_size), u(c.conv_kernel));
    let d_inner = heads * p;
    let conv_dim = d_inner + 2 * g * n;
    let mamba = (2 * d_inner + 2 * g * n + heads) * h + conv_dim * w + conv_dim + 3 * heads + d_inner + h * d_inner + h;
    let (q, kv) = (u(c.num_attention_heads * c.head_dim), u(c.num_key_value_heads * c.head_dim));
    let attention = h * (2 * q + 2 * kv) + h;
    let mlp = 2 * h * u(c.intermediate_size) + h;
    let (nm, na, nl, _) = c.layer_counts();
    2 * v * h + h + u(nm) * mamba + u(na) * attention + u(nl) * mlp
}

#[test]
fn nemotron_h_8b() {
    let c = load("nemotron-h-8b-base-8k");
    assert_eq!(c.parameter_count().expect("count"), 8_100_852_736);
    assert_eq!(closed_form(&c), 8_100_852_736);
    assert_eq!(c.layer_counts(), (24, 4, 24, 0));
    assert_eq!((c.d_inner(), c.conv_dim(), c.in_proj_rows()), (8192, 10240, 18560));
    let attn: Vec<usize> =
        c.pattern.iter().enumerate().filter(|(_, k)| **k == BlockKind::Attention).map(|(i, _)| i).collect();
    assert_eq!(attn, [7, 18, 29, 40]);
    assert_eq!(c.time_step_limit, (0.0, f64::INFINITY));
}

#[test]
fn nemotron_h_47b_56b_and_nano_9b() {
    for (name, layers, billions) in [
        ("nemotron-h-47b-base-8k", (45, 5, 48, 0), 46.79),
        ("nemotron-h-56b-base-8k", (54, 10, 54, 0), 56.32),
        ("nemotron-nano-9b-v2", (27, 4, 25, 0), 8.89),
    ] {
        let c = load(name);
        let count = c.parameter_count().expect("count");
        assert_eq!(count, closed_form(&c), "{name}");
        assert_eq!(c.layer_counts(), layers, "{name}");
        // The published sizes, rounded to 10M parameters.
        assert!(((count as f64) / 1e9 - billions).abs() < 0.01, "{name}: {count}");
    }
    // Nano v2's mixer is heads × head dim = 10240 wide, not expand × hidden = 8960.
    assert_eq!(load("nemotron-nano-9b-v2").d_inner(), 10240);
}

#[test]
fn layers_block_type_in_both_namings_matches_the_pattern_string() {
    let base = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/configs/nemotron-h-8b-base-8k/config.json"),
    )
    .expect("read");
    let want = load("nemotron-h-8b-base-8k");
    let pattern = "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-";
    for (m, a) in [("mamba", "attention"), ("linear_attention", "full_attention")] {
        let list: Vec<String> = pattern
            .chars()
            .map(|ch| {
                format!(
                    "\"{}\"",
                    if ch == 'M' {
                        m
                    } else if ch == '*' {
                        a
                    } else {
                        "mlp"
                    }
                )
            })
            .collect();
        let text = base.replace(
            &format!("\"hybrid_override_pattern\": \"{pattern}\""),
            &format!("\"layers_block_type\": [{}], \"time_step_limit\": [0.0, Infinity]", list.join(", ")),
        );
        assert_ne!(text, base);
        let c = Config::parse(&text, PathBuf::from("config.json")).expect("parse");
        assert_eq!(NemotronHConfig::from_config(&c).expect("resolve"), want);
    }
}

#[test]
fn bad_configs_are_clear_errors() {
    let parse = |text: &str| {
        let c = Config::parse(text, PathBuf::from("m/config.json")).expect("json");
        NemotronHConfig::from_config(&c).expect_err("must fail").to_string()
    };
    let ok = r#""hidden_size": 8, "vocab_size": 16, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
        "intermediate_size": 16, "mamba_num_heads": 4, "mamba_head_dim": 2, "n_groups": 2, "ssm_state_size": 4, "conv_kernel": 4"#;
    let e = parse(&format!("{{{ok}, \"hybrid_override_pattern\": \"M*X\"}}"));
    assert!(e.contains("m/config.json") && e.contains("'X' at position 2"), "{e}");
    let e = parse(&format!("{{{ok}}}"));
    assert!(e.contains("missing `hybrid_override_pattern` or `layers_block_type`"), "{e}");
    let e = parse(&format!("{{{ok}, \"hybrid_override_pattern\": \"M*\", \"num_hidden_layers\": 3}}"));
    assert!(e.contains("`num_hidden_layers` is 3 but the pattern has 2 layers"), "{e}");
    let e =
        parse(&format!("{{{}, \"hybrid_override_pattern\": \"M\"}}", ok.replace("\"n_groups\": 2", "\"n_groups\": 3")));
    assert!(e.contains("not a multiple of `n_groups`"), "{e}");
    // A MoE layer resolves but is refused when its tensors are listed.
    let c = Config::parse(&format!("{{{ok}, \"hybrid_override_pattern\": \"ME\"}}"), PathBuf::from("c.json"))
        .expect("json");
    let cfg = NemotronHConfig::from_config(&c).expect("resolve");
    let e = cfg.tensors().expect_err("moe").to_string();
    assert!(e.contains("layer 1 is a mixture-of-experts") && e.contains("not supported yet"), "{e}");
}
