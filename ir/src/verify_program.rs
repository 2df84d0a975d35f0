//! The verifier's rules for what programs say they are: function kinds, step symbols, input
//! and output roles, in-place updates. Run per function after its graph verifies.

use std::collections::HashSet;

use crate::infer::{dim_str, type_str};
use crate::module::{Function, Module, NodeId};
use crate::ops::Op;
use crate::program::{CacheKind, FunctionKind, InputRole, OutputRole, StepSymbol};
use crate::types::{DType, Dim, TensorType};
use crate::verify::{Location, VerifyError};

/// Checks the roles and kind of `f` (whose graph verified), appending errors.
pub(crate) fn verify_function(m: &Module, f: &Function, loc: &Location, errs: &mut Vec<VerifyError>) {
    let g = &f.graph;
    let at = |n: Option<NodeId>, message: String| match n {
        Some(n) => VerifyError::at_node(m, g, loc, n, message),
        None => VerifyError { loc: loc.clone(), op: None, context: None, message },
    };
    // Step symbols: each names a symbol of the module, once.
    let mut roles_seen = HashSet::new();
    for (role, s) in &f.step_symbols {
        if !m.symbols.contains(*s) {
            errs.push(at(None, format!("`{}` names an unknown symbol", role.name())));
        }
        if !roles_seen.insert(*role) {
            errs.push(at(None, format!("`{}` is given twice", role.name())));
        }
    }
    // Input roles: typed, and each at most once (caches once per layer and kind).
    let mut seen: HashSet<InputRole> = HashSet::new();
    for &n in &g.order {
        let Op::Input(input) = &g.nodes[n].op else { continue };
        let Some(role) = input.role else { continue };
        if !seen.insert(role) {
            errs.push(at(Some(n), format!("role `{}` is given to two inputs", describe(role))));
        }
        if let Err(want) = role_type_ok(role, &input.ty) {
            errs.push(at(Some(n), format!("a `{}` input must be {want}, got {}", role.name(), type_str(m, &input.ty))));
        }
    }
    // Outputs: a role's type, and in-place updates of inputs of the same type.
    let mut updated = HashSet::new();
    let mut output_roles = HashSet::new();
    for o in &g.outputs {
        let ty = &g.values[o.value].ty;
        if let Some(role) = o.role {
            if !output_roles.insert(role) {
                errs.push(at(None, format!("two results have role `{}`", role.name())));
            }
            let ok = match role {
                OutputRole::Logits | OutputRole::Embeddings => ty.dtype.is_float(),
                OutputRole::Token => ty.dtype.is_int(),
            };
            if !ok {
                errs.push(at(
                    None,
                    format!("result \"{}\" of role `{}` has type {}", o.name, role.name(), type_str(m, ty)),
                ));
            }
        }
        let Some(u) = o.updates else { continue };
        let input = g.values.get(u).and_then(|v| g.nodes.get(v.def)).and_then(|n| match &n.op {
            Op::Input(i) => Some(i),
            _ => None,
        });
        match input {
            None => errs.push(at(None, format!("result \"{}\" updates a value that is not an input", o.name))),
            Some(i) => {
                if i.role.and_then(InputRole::cache).is_none() {
                    errs.push(at(
                        None,
                        format!("result \"{}\" updates input \"{}\", which is not a cache", o.name, i.name),
                    ));
                }
                if i.ty != *ty {
                    errs.push(at(
                        None,
                        format!(
                            "result \"{}\" is {} but updates input \"{}\" of type {}",
                            o.name,
                            type_str(m, ty),
                            i.name,
                            type_str(m, &i.ty)
                        ),
                    ));
                }
                if !updated.insert(u) {
                    errs.push(at(None, format!("input \"{}\" is updated by two results", i.name)));
                }
            }
        }
    }
    verify_kind(m, f, &seen, &updated, &output_roles, &at, errs);
}

/// `k_cache of layer 3` for messages.
fn describe(role: InputRole) -> String {
    match role {
        InputRole::Cache { layer, kind } => format!("{} of layer {layer}", kind.role_name()),
        r => r.name().to_string(),
    }
}

/// Whether a type suits a role; the error is what the role wants.
fn role_type_ok(role: InputRole, t: &TensorType) -> Result<(), &'static str> {
    let ok = match role {
        InputRole::Tokens => t.dtype.is_int() && t.rank() == 2,
        InputRole::Past | InputRole::KvLen => t.dtype == DType::I64 && t.rank() == 1,
        InputRole::RngOffset => t.dtype == DType::I64 && t.rank() == 0,
        InputRole::Image => t.dtype.is_float(),
        InputRole::Cache { kind, .. } => {
            t.dtype.is_float()
                && t.rank()
                    == match kind {
                        CacheKind::Key | CacheKind::Value | CacheKind::Ssm => 4,
                        CacheKind::Conv => 3,
                    }
        }
    };
    if ok {
        return Ok(());
    }
    Err(match role {
        InputRole::Tokens => "an integer [B, S]",
        InputRole::Past | InputRole::KvLen => "i64[B]",
        InputRole::RngOffset => "i64[]",
        InputRole::Image => "a float tensor",
        InputRole::Cache { kind: CacheKind::Conv, .. } => "a float [B, W-1, C]",
        InputRole::Cache { .. } => "a float tensor of rank 4",
    })
}

/// What each kind requires of its inputs, outputs and step symbols.
fn verify_kind(
    m: &Module,
    f: &Function,
    inputs: &HashSet<InputRole>,
    updated: &HashSet<crate::module::ValueId>,
    outputs: &HashSet<OutputRole>,
    at: &dyn Fn(Option<NodeId>, String) -> VerifyError,
    errs: &mut Vec<VerifyError>,
) {
    let g = &f.graph;
    let kind = f.kind;
    if kind == FunctionKind::Generic || kind == FunctionKind::Vision {
        return;
    }
    let mut need = |cond: bool, what: &str| {
        if !cond {
            errs.push(at(None, format!("a function of kind `{kind}` {what}")));
        }
    };
    need(inputs.contains(&InputRole::Tokens), "needs a `tokens` input");
    need(
        outputs.contains(&OutputRole::Logits) || outputs.contains(&OutputRole::Token),
        "needs a result of role `logits` or `token`",
    );
    let caches: Vec<_> = g.params().filter(|(i, _)| i.role.and_then(InputRole::cache).is_some()).collect();
    if kind.has_caches() {
        need(inputs.contains(&InputRole::Past), "needs a `past` input");
        for (i, v) in &caches {
            if !updated.contains(v) {
                errs.push(at(None, format!("cache input \"{}\" is updated by no result", i.name)));
            }
        }
    } else {
        need(caches.is_empty(), "takes no caches");
    }
    // The step symbols are the tokens' dims: batch = axis 0, seq = axis 1 (decode: the constant 1).
    let Some((tokens, _)) = g.input_with_role(InputRole::Tokens) else { return };
    let &[d0, d1] = tokens.ty.shape.as_slice() else { return };
    let symbolic = |d: Dim| matches!(d, Dim::Sym(_));
    let check = |role: StepSymbol, d: Dim, errs: &mut Vec<VerifyError>| match (f.step_symbol(role), d) {
        (Some(s), d) if d != Dim::Sym(s) => errs.push(at(
            None,
            format!("`{}` is {} but the tokens' axis is {}", role.name(), dim_str(m, Dim::Sym(s)), dim_str(m, d)),
        )),
        (None, d) if symbolic(d) => errs.push(at(
            None,
            format!(
                "the tokens' axis {} needs `{}={}` in the function header",
                dim_str(m, d),
                role.name(),
                dim_str(m, d)
            ),
        )),
        _ => {}
    };
    check(StepSymbol::Batch, d0, errs);
    check(StepSymbol::Seq, d1, errs);
    if kind == FunctionKind::Decode && d1 != Dim::Const(1) {
        errs.push(at(None, format!("a `decode` function takes one token per sequence, not {}", dim_str(m, d1))));
    }
}
