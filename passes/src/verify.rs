//! The verifier of a module at its stage: what `lathe verify`, the pass manager and every tool
//! that reads IR run.
//!
//! The IR's verifier checks what holds at every stage (handles, order, types, program roles);
//! each stage adds its rules, checked for any module — one a pass produced, or one parsed from a
//! file that says `stage = scheduled`:
//! - `scheduled`: every computing node of every function sits in exactly one fusion group whose
//!   strategy accepts its body ([`crate::strategy::verify_schedule`]);
//! - `planned`: scheduled, and every function has a valid memory plan
//!   ([`crate::plan_memory::plan`]: sizes fit, in-place updates are sound).

use lathe_ir::verify::{Location, VerifyError, VerifyErrors};
use lathe_ir::{Module, Stage};

/// Verifies `m` against the rules of its stage; every error, located.
pub fn verify(m: &Module) -> Result<(), VerifyErrors> {
    lathe_ir::verify::verify(m)?;
    if m.stage >= Stage::Scheduled {
        crate::strategy::verify_schedule(m)?;
    }
    if m.stage >= Stage::Planned {
        let mut errs = Vec::new();
        for (fi, f) in m.functions.iter().enumerate() {
            if let Err(message) = crate::plan_memory::plan(m, f) {
                let loc = Location { func: Some(fi), func_name: f.name.clone(), ..Location::default() };
                errs.push(VerifyError { loc, op: None, context: None, message: format!("no memory plan: {message}") });
            }
        }
        if !errs.is_empty() {
            return Err(errs.into());
        }
    }
    Ok(())
}
