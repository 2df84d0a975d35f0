//! Every field the frontends read is type- and range-checked: a bad value is a config error
//! that names `config.json`, the field and the value (never an internal error, never ignored).

use std::path::{Path, PathBuf};

use lathe_frontend::config::Config;
use lathe_frontend::import::{from_config, ImportOptions};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name).join("config.json");
    let text = std::fs::read_to_string(&p).expect("fixture config");
    serde_json::from_str(&text.replace("{\"__float__\": \"Infinity\"}", "\"Infinity\"")).expect("json")
}

/// The error of importing `cfg` (shape-only), as the user sees it.
fn error(cfg: &Value) -> String {
    let c = Config::parse(&cfg.to_string(), Path::new("m/config.json").to_path_buf()).expect("json");
    match from_config(&c, &ImportOptions { max_seq: Some(8), ..ImportOptions::default() }) {
        Ok(_) => String::from("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_fixtures_import() {
    for name in ["nemotron_h_tiny", "mamba2_tiny", "qwen2_tiny"] {
        assert_eq!(error(&fixture(name)), "accepted", "{name}");
    }
}

#[test]
fn bad_fields_name_the_file_the_field_and_the_value() {
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        ("nemotron_h_tiny", "hidden_size", json!(0), "`hidden_size` must be an integer from 1 to 16777216, got 0"),
        (
            "nemotron_h_tiny",
            "hidden_size",
            json!("32"),
            "`hidden_size` must be an integer from 1 to 16777216, got \"32\"",
        ),
        ("nemotron_h_tiny", "vocab_size", json!(1u64 << 40), "`vocab_size` must be an integer from 1 to 16777216"),
        ("nemotron_h_tiny", "num_key_value_heads", json!(0), "`num_key_value_heads` must be an integer from 1"),
        (
            "nemotron_h_tiny",
            "num_hidden_layers",
            json!(u64::MAX),
            "`num_hidden_layers` must be an integer from 1 to 16384, got 18446744073709551615",
        ),
        ("nemotron_h_tiny", "chunk_size", json!(0), "`chunk_size` must be an integer from 1"),
        (
            "nemotron_h_tiny",
            "max_position_embeddings",
            json!(0),
            "`max_position_embeddings` must be an integer from 1 to 16777216, got 0",
        ),
        ("nemotron_h_tiny", "layer_norm_epsilon", json!(0), "`layer_norm_epsilon` must be a finite number > 0, got 0"),
        (
            "nemotron_h_tiny",
            "layer_norm_epsilon",
            json!("NaN"),
            "`layer_norm_epsilon` must be a finite number > 0, got \"NaN\"",
        ),
        (
            "nemotron_h_tiny",
            "time_step_limit",
            json!([-5, -1]),
            "`time_step_limit` must be [lo, hi] with 0 <= lo < hi and lo finite, got [-5, -1]",
        ),
        ("nemotron_h_tiny", "time_step_limit", json!(["NaN", "NaN"]), "`time_step_limit` must be [lo, hi]"),
        ("nemotron_h_tiny", "time_step_limit", json!([0.1]), "`time_step_limit` must hold two numbers"),
        (
            "nemotron_h_tiny",
            "layers_block_type",
            json!(vec!["mamba"; 20_000]),
            "the layer pattern has 20000 layers; at most 16384",
        ),
        ("mamba2_tiny", "n_layer", json!(0), "accepted"),
        (
            "mamba2_tiny",
            "num_hidden_layers",
            json!(1u64 << 40),
            "`num_hidden_layers` must be an integer from 1 to 16384",
        ),
        ("mamba2_tiny", "expand", json!(0), "`expand` must be an integer from 1"),
        ("qwen2_tiny", "rope_parameters", json!(5), "`rope_parameters` must be an object, got 5"),
        ("qwen2_tiny", "rope_parameters", json!("yarn"), "`rope_parameters` must be an object, got \"yarn\""),
        (
            "qwen2_tiny",
            "rope_parameters",
            json!({"rope_theta": "abc"}),
            "`rope_parameters.rope_theta` must be a finite number > 0, got \"abc\"",
        ),
        (
            "qwen2_tiny",
            "rope_parameters",
            json!({"rope_theta": 1e4, "rope_type": 7}),
            "`rope_parameters.rope_type` must be a string, got 7",
        ),
        ("qwen2_tiny", "rope_parameters", json!({"rope_type": "yarn"}), "rope type \"yarn\" is not supported yet"),
        ("qwen2_tiny", "num_key_value_heads", json!(0), "`num_key_value_heads` must be an integer from 1"),
        (
            "qwen2_tiny",
            "num_key_value_heads",
            json!(3),
            "`num_attention_heads` 4 is not a multiple of `num_key_value_heads` 3",
        ),
        ("qwen2_tiny", "head_dim", json!(7), "`head_dim` = 7 must be even"),
        ("qwen2_tiny", "hidden_size", json!(22), "`hidden_size` / `num_attention_heads` = 5 must be even"),
        ("qwen2_tiny", "rms_norm_eps", json!(-1e-6), "`rms_norm_eps` must be a finite number > 0"),
    ];
    for (model, field, value, want) in cases {
        let mut cfg = fixture(model);
        cfg[field] = value.clone();
        let e = error(&cfg);
        if want == "accepted" {
            // A field that is not read (mamba2 reads `num_hidden_layers` first) changes nothing.
            assert_eq!(e, "accepted", "{model}: {field} = {value}");
            continue;
        }
        assert!(e.starts_with("m/config.json: ") || e.contains("m/config.json"), "{model}: {field} = {value}: {e}");
        assert!(e.contains(want), "{model}: {field} = {value}:\n  got  {e}\n  want {want}");
        assert!(!e.contains("internal error"), "{e}");
    }
}

#[test]
fn a_top_level_rope_theta_is_checked_too() {
    let mut cfg = fixture("qwen2_tiny");
    cfg.as_object_mut().expect("object").remove("rope_parameters");
    cfg["rope_theta"] = json!("abc");
    assert!(error(&cfg).contains("`rope_theta` must be a finite number > 0, got \"abc\""), "{}", error(&cfg));
    cfg["rope_theta"] = json!(1e4);
    assert_eq!(error(&cfg), "accepted");
}
