//! A tolerant reader of Hugging Face `config.json`.
//!
//! Checkpoints in the wild spell the same field several ways (`attention_head_dim` or
//! `head_dim`, `mamba_n_groups` or `n_groups`, ...) and Python writes infinity as a bare
//! `Infinity` token (not JSON) or as `{"__float__": "Infinity"}`. [`Config`] accepts all of
//! them; every accessor names the file and the field in its error.

use std::path::{Path, PathBuf};

use lathe_ir::limits::{MAX_CONFIG_BYTES, MAX_DIM};

use serde_json::{Map, Value};

use crate::FrontendError;

/// A parsed `config.json` with alias-aware accessors.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    root: Map<String, Value>,
}

/// Replaces the bare tokens `Infinity`, `-Infinity` and `NaN` outside strings by strings, so
/// a strict JSON parser accepts what Python's `json.dumps` writes.
fn quote_nonfinite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let token = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push('"');
            out.push_str(t);
            out.push('"');
            rest = &rest[t.len()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A JSON value as a float: numbers, the strings `Infinity`/`-Infinity`/`NaN`, and
/// `{"__float__": "..."}` objects.
fn as_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            "NaN" | "nan" => Some(f64::NAN),
            _ => s.parse().ok(),
        },
        Value::Object(o) => o.get("__float__").and_then(as_float),
        _ => None,
    }
}

impl Config {
    /// Reads `dir/config.json`: a regular file (through symlinks) of at most
    /// [`MAX_CONFIG_BYTES`] bytes, read no further than that.
    pub fn read(dir: &Path) -> Result<Config, FrontendError> {
        if !dir.is_dir() {
            return Err(FrontendError::Io { path: dir.to_path_buf(), message: "not a directory".into() });
        }
        let path = dir.join("config.json");
        let text = lathe_tensorfile::read_text(&path, MAX_CONFIG_BYTES)?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` is used in messages.
    pub fn parse(text: &str, path: PathBuf) -> Result<Config, FrontendError> {
        let value: Value = serde_json::from_str(&quote_nonfinite(text))
            .map_err(|e| FrontendError::Config { path: path.clone(), message: format!("invalid JSON: {e}") })?;
        match value {
            Value::Object(root) => Ok(Config { path, root }),
            _ => Err(FrontendError::Config { path, message: "the top level is not a JSON object".into() }),
        }
    }

    fn err(&self, message: String) -> FrontendError {
        FrontendError::Config { path: self.path.clone(), message }
    }

    /// The first of `keys` present (and not null).
    fn find<'k>(&self, keys: &[&'k str]) -> Option<(&'k str, &Value)> {
        keys.iter().find_map(|k| self.root.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
    }

    /// Whether any of `keys` is present.
    pub fn has(&self, keys: &[&str]) -> bool {
        self.find(keys).is_some()
    }

    /// A raw field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.root.get(key)
    }

    /// A string field (first alias present).
    pub fn opt_str(&self, keys: &[&str]) -> Result<Option<&str>, FrontendError> {
        match self.find(keys) {
            None => Ok(None),
            Some((_, Value::String(s))) => Ok(Some(s)),
            Some((k, v)) => Err(self.err(format!("`{k}` must be a string, got {v}"))),
        }
    }

    /// A non-negative integer field (first alias present).
    pub fn opt_usize(&self, keys: &[&str]) -> Result<Option<usize>, FrontendError> {
        match self.find(keys) {
            None => Ok(None),
            Some((k, v)) => v
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| self.err(format!("`{k}` must be a non-negative integer, got {v}"))),
        }
    }

    /// A required non-negative integer field.
    pub fn usize(&self, keys: &[&str]) -> Result<usize, FrontendError> {
        self.opt_usize(keys)?.ok_or_else(|| self.err(format!("missing `{}`", keys.join("` or `"))))
    }

    /// A required integer field of a model dimension: 1 to [`MAX_DIM`].
    pub fn positive(&self, keys: &[&str]) -> Result<usize, FrontendError> {
        self.at_most(keys, MAX_DIM)
    }

    /// A required integer field from 1 to `max`.
    pub fn at_most(&self, keys: &[&str], max: u64) -> Result<usize, FrontendError> {
        self.opt_at_most(keys, max)?.ok_or_else(|| self.err(format!("missing `{}`", keys.join("` or `"))))
    }

    /// An optional integer field from 1 to `max`; the error names the field, the range and
    /// the value.
    pub fn opt_at_most(&self, keys: &[&str], max: u64) -> Result<Option<usize>, FrontendError> {
        match self.find(keys) {
            None => Ok(None),
            Some((k, v)) => v
                .as_u64()
                .filter(|x| (1..=max).contains(x))
                .and_then(|x| usize::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| self.err(format!("`{k}` must be an integer from 1 to {max}, got {v}"))),
        }
    }

    /// An optional float field that must be finite and positive (an epsilon, a RoPE base).
    pub fn opt_positive_f64(&self, keys: &[&str]) -> Result<Option<f64>, FrontendError> {
        match self.find(keys) {
            None => Ok(None),
            Some((k, v)) => match v {
                Value::Number(n) => n.as_f64().filter(|x| x.is_finite() && *x > 0.0).map(Some),
                _ => None,
            }
            .ok_or_else(|| self.err(format!("`{k}` must be a finite number > 0, got {v}"))),
        }
    }

    /// An optional range `[lo, hi]` with `0 <= lo < hi`, `lo` finite and `hi` possibly
    /// infinite (a clamp such as `time_step_limit`).
    pub fn opt_range(&self, keys: &[&str]) -> Result<Option<(f64, f64)>, FrontendError> {
        let Some((lo, hi)) = self.opt_f64_pair(keys)? else { return Ok(None) };
        if lo.is_finite() && lo >= 0.0 && hi > lo {
            return Ok(Some((lo, hi)));
        }
        let k = self.find(keys).map_or(keys[0], |(k, _)| k);
        Err(self.err(format!("`{k}` must be [lo, hi] with 0 <= lo < hi and lo finite, got [{lo}, {hi}]")))
    }

    /// A float field (numbers, `Infinity` in either spelling).
    pub fn opt_f64(&self, keys: &[&str]) -> Result<Option<f64>, FrontendError> {
        match self.find(keys) {
            None => Ok(None),
            Some((k, v)) => as_float(v).map(Some).ok_or_else(|| self.err(format!("`{k}` must be a number, got {v}"))),
        }
    }

    /// A boolean field.
    pub fn opt_bool(&self, keys: &[&str]) -> Result<Option<bool>, FrontendError> {
        match self.find(keys) {
            None => Ok(None),
            Some((_, Value::Bool(b))) => Ok(Some(*b)),
            Some((k, v)) => Err(self.err(format!("`{k}` must be true or false, got {v}"))),
        }
    }

    /// A pair of floats (`[0.0, Infinity]`).
    pub fn opt_f64_pair(&self, keys: &[&str]) -> Result<Option<(f64, f64)>, FrontendError> {
        match self.find(keys) {
            None => Ok(None),
            Some((k, Value::Array(a))) => match a.as_slice() {
                [lo, hi] => match (as_float(lo), as_float(hi)) {
                    (Some(lo), Some(hi)) => Ok(Some((lo, hi))),
                    _ => Err(self.err(format!("`{k}` must hold two numbers"))),
                },
                _ => Err(self.err(format!("`{k}` must hold two numbers"))),
            },
            Some((k, v)) => Err(self.err(format!("`{k}` must be a list of two numbers, got {v}"))),
        }
    }

    /// A list of strings.
    pub fn opt_str_list(&self, keys: &[&str]) -> Result<Option<Vec<String>>, FrontendError> {
        match self.find(keys) {
            None => Ok(None),
            Some((k, Value::Array(a))) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| self.err(format!("`{k}` must be a list of strings")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some((k, v)) => Err(self.err(format!("`{k}` must be a list of strings, got {v}"))),
        }
    }

    /// The error for a field with an unsupported value.
    pub fn invalid(&self, message: String) -> FrontendError {
        self.err(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Result<Config, FrontendError> {
        Config::parse(text, PathBuf::from("config.json"))
    }

    #[test]
    fn bare_infinity_and_float_objects_are_numbers() {
        let c =
            cfg(r#"{"a": [0.0, Infinity], "b": {"__float__": "Infinity"}, "c": -Infinity, "s": "Infinity and NaN"}"#)
                .expect("parses");
        assert_eq!(c.opt_f64_pair(&["a"]).expect("pair"), Some((0.0, f64::INFINITY)));
        assert_eq!(c.opt_f64(&["b"]).expect("b"), Some(f64::INFINITY));
        assert_eq!(c.opt_f64(&["c"]).expect("c"), Some(f64::NEG_INFINITY));
        // Inside strings the tokens are left alone.
        assert_eq!(c.opt_str(&["s"]).expect("s"), Some("Infinity and NaN"));
    }

    #[test]
    fn aliases_take_the_first_present_field() {
        let c = cfg(r#"{"attention_head_dim": 128, "n_groups": null, "mamba_n_groups": 8}"#).expect("parses");
        assert_eq!(c.usize(&["head_dim", "attention_head_dim"]).expect("dim"), 128);
        assert_eq!(c.usize(&["n_groups", "mamba_n_groups"]).expect("groups"), 8);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let e = cfg("{\"a\": }").expect_err("invalid");
        assert!(e.to_string().contains("config.json") && e.to_string().contains("invalid JSON"), "{e}");
        let c = cfg(r#"{"hidden_size": -3}"#).expect("parses");
        let e = c.usize(&["hidden_size"]).expect_err("negative");
        assert!(e.to_string().contains("`hidden_size` must be a non-negative integer"), "{e}");
        let e = c.usize(&["vocab_size"]).expect_err("missing");
        assert!(e.to_string().contains("missing `vocab_size`"), "{e}");
        assert!(cfg("[1, 2]").is_err());
    }
}
