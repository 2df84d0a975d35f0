//! The per-step values: what the runtime keeps for a program from one step (call) to the next.
//!
//! One description serves the memory plan and the cost model: [`Step`] holds the values of one
//! step (sequences, chunk length, past length, RNG offset) — the cost model prices a step, the
//! benchmark walks a prefill and a decode through steps — and [`StepField`] names the fields of
//! the per-step device buffer that the plan places the IR values carrying them in (the past
//! length, the RNG offset, the last sampled token), so that one captured CUDA graph replays
//! every decode step with no host writes.

use lathe_ir::{Function, FunctionKind, InputRole, Module, StepSymbol};

use crate::cost::Bindings;

/// One step (call) of a program: the values the runtime keeps from one step to the next, from
/// which every size of a launch follows. The cost model prices a [`Step`]; the memory plan puts
/// the IR values that carry them in the per-step buffer ([`StepField`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Sequences in the batch (the function's `batch` symbol).
    pub batch: u64,
    /// Tokens per sequence this call, the chunk length (its `seq` symbol; 1 for decode).
    pub seq: u64,
    /// Tokens already in the caches per sequence ([`StepField::Past`]; the positions of this
    /// call's tokens are `past + i`, computed in the program).
    pub past: u64,
    /// The sampler's counter offset ([`StepField::RngOffset`]).
    pub rng_offset: u64,
}

impl Step {
    /// A prefill of `tokens` tokens, or a first `eval`.
    pub fn prefill(tokens: u64) -> Step {
        Step { batch: 1, seq: tokens, past: 0, rng_offset: 0 }
    }

    /// One decode step that brings each sequence to `context` tokens.
    pub fn decode(context: u64) -> Step {
        Step { batch: 1, seq: 1, past: context.saturating_sub(1), rng_offset: 0 }
    }

    /// The step at which `lathe inspect` prices a program for a `context`-token sequence: a decode
    /// step that reaches `context`; otherwise the last call of a `context`-token prefill (the
    /// whole prompt, or its last chunk when the function's `seq` symbol is bounded below it).
    pub fn at_context(m: &Module, f: &Function, context: u64) -> Step {
        if f.kind == FunctionKind::Decode {
            return Step::decode(context);
        }
        let bound = f.step_symbol(StepSymbol::Seq).and_then(|s| m.symbols.get(s)).map_or(context, |s| s.max);
        let seq = context.min(bound);
        Step { batch: 1, seq, past: context - seq, rng_offset: 0 }
    }

    /// Valid key/value rows the step's attention reads: `past + seq`.
    pub fn kv_len(&self) -> u64 {
        self.past.saturating_add(self.seq)
    }

    /// The sizes of function `f` of `m` at this step: its `batch` and `seq` symbols take the
    /// step's values (at most their bounds); any other symbol takes its bound, the worst case
    /// the plan is made for.
    pub fn bindings(&self, m: &Module, f: &Function) -> Bindings {
        let symbols = m
            .symbols
            .iter()
            .map(|(h, sym)| {
                let v = match f.step_symbols.iter().find(|(_, s)| *s == h).map(|(r, _)| *r) {
                    Some(StepSymbol::Batch) => self.batch,
                    Some(StepSymbol::Seq) => self.seq,
                    None => sym.max,
                };
                (h, v.min(sym.max))
            })
            .collect();
        Bindings { symbols, kv_len: self.kv_len() }
    }
}

/// A value the runtime keeps for a program from one step to the next, in its per-step device
/// buffer (updated by the sample kernel and the step's last launch, so a captured CUDA graph
/// replays every decode step with no host writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepField {
    /// Tokens already in the caches per sequence, `i64[B]` (role `past`).
    Past,
    /// The sampler's counter offset, `i64[]` (role `rng_offset`).
    RngOffset,
    /// The token each sequence decodes next, `i64[B, 1]` (role `tokens` of a `decode` program:
    /// the previous step's sample).
    LastToken,
}

impl StepField {
    /// The field an input of role `role` of a program of kind `kind` is, if any.
    pub fn of(kind: FunctionKind, role: Option<InputRole>) -> Option<StepField> {
        match role? {
            InputRole::Past => Some(StepField::Past),
            InputRole::RngOffset => Some(StepField::RngOffset),
            InputRole::Tokens if kind == FunctionKind::Decode => Some(StepField::LastToken),
            _ => None,
        }
    }
}
