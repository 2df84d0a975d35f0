//! Pipeline strings in MLIR's grammar: `canonicalize,cse,fuse-ssd{chunk=128 max-groups=4}`.
//!
//! A pipeline is a comma-separated list of passes; a pass may carry options in braces,
//! `key=value` pairs separated by spaces. [`Pipeline`]'s `Display` prints the canonical form,
//! so a canonical string parses and prints back identically.

use std::fmt;

use crate::{PassError, PipelineSyntax};

/// One pass of a pipeline with its options as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassSpec {
    /// Kebab-case pass name.
    pub name: String,
    /// `(key, value)` options in the order written.
    pub options: Vec<(String, String)>,
}

/// A parsed pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pipeline {
    /// The passes, in order.
    pub passes: Vec<PassSpec>,
}

impl fmt::Display for PassSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.options.is_empty() {
            let opts: Vec<String> = self.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "{{{}}}", opts.join(" "))?;
        }
        Ok(())
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.passes.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Pipeline {
    /// Parses a pipeline string; the empty string is the empty pipeline.
    pub fn parse(text: &str) -> Result<Pipeline, PassError> {
        let bad = |error: PipelineSyntax| PassError::Pipeline { text: text.to_string(), error };
        let mut passes = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            let end = rest.find([',', '{']).unwrap_or(rest.len());
            let name = rest[..end].trim();
            if !is_name(name) {
                return Err(bad(PipelineSyntax::ExpectedPassName { found: name.to_string() }));
            }
            rest = &rest[end..];
            let mut options = Vec::new();
            if let Some(body) = rest.strip_prefix('{') {
                let close = body.find('}').ok_or_else(|| bad(PipelineSyntax::Unclosed { pass: name.to_string() }))?;
                for item in body[..close].split_whitespace() {
                    let (pass, item_s) = (name.to_string(), item.to_string());
                    let (k, v) =
                        item.split_once('=').ok_or_else(|| bad(PipelineSyntax::NotKeyValue { pass, item: item_s }))?;
                    if !is_name(k) || v.is_empty() || v.contains(['{', '}', ',']) {
                        return Err(bad(PipelineSyntax::Malformed { pass: name.to_string(), item: item.to_string() }));
                    }
                    if options.iter().any(|(o, _): &(String, String)| o == k) {
                        return Err(bad(PipelineSyntax::Twice { pass: name.to_string(), key: k.to_string() }));
                    }
                    options.push((k.to_string(), v.to_string()));
                }
                rest = &body[close + 1..];
            }
            passes.push(PassSpec { name: name.to_string(), options });
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r.trim_start();
                if rest.is_empty() {
                    return Err(bad(PipelineSyntax::TrailingComma));
                }
            } else if !rest.is_empty() {
                return Err(bad(PipelineSyntax::ExpectedComma { rest: rest.to_string() }));
            }
        }
        Ok(Pipeline { passes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_strings_print_back_identically() {
        for s in
            ["", "cse", "canonicalize,cse,dce", "fuse-ssd{chunk=128},fuse-elementwise{max-inputs=8}", "a{x=1 y=true},b"]
        {
            assert_eq!(Pipeline::parse(s).expect(s).to_string(), s);
        }
        let p = Pipeline::parse(" cse , dce{a=1}").expect("spaces");
        assert_eq!(p.to_string(), "cse,dce{a=1}");
    }

    #[test]
    fn malformed_pipelines_are_errors() {
        for s in ["cse,", ",cse", "cse{", "cse{a}", "cse{a=1 a=2}", "c se", "cse}"] {
            let e = Pipeline::parse(s).expect_err(s).to_string();
            assert!(e.contains("pipeline"), "{s}: {e}");
        }
    }
}
