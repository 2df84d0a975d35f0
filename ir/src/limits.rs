//! The limits lathe enforces on its inputs (docs/limits.md).
//!
//! Every size the project computes from input — a config, IR text, a checkpoint header, a flag —
//! is checked against these bounds, with checked arithmetic, before anything is allocated.
//! They are far above every supported model (Nemotron-H 56B: 118 layers, hidden 8192, vocab
//! 131072, context 8192) and far below what makes `u64` byte counts wrap, so a value past one
//! of them is a malformed input, refused with an error that names it.

/// Layers of a model (blocks of the layer pattern).
pub const MAX_LAYERS: u64 = 16_384;

/// Any one model dimension: hidden size, MLP width, heads, head size, state size, groups.
pub const MAX_DIM: u64 = 1 << 24;

/// Vocabulary size (token ids are `0..vocab`).
pub const MAX_VOCAB: u64 = 1 << 24;

/// Tokens of context: sequence and cache capacity, `max_position_embeddings`, `--context`.
pub const MAX_CONTEXT: u64 = 1 << 24;

/// Sequences of a batch.
pub const MAX_BATCH: u64 = 1 << 16;

/// The bound of a symbolic dimension (`S <= N` in IR text).
pub const MAX_SYMBOL_BOUND: u64 = 1 << 32;

/// Elements of one tensor type, at its symbols' bounds. With 8 bytes an element its byte size
/// stays below 2^51, so sums over many tensors do not come near `u64::MAX` either.
pub const MAX_ELEMENTS: u64 = 1 << 48;

/// Weight elements of one model, summed over its weights: 2^50, some 4,000 times the largest
/// open models, so parameter and byte counts (8 bytes an element) stay far inside `u64`.
pub const MAX_PARAMETERS: u64 = 1 << 50;

/// Dimensions of one tensor type.
pub const MAX_RANK: usize = 16;

/// Nesting depth of IR text: brackets, parentheses, braces and fusion bodies together.
pub const MAX_NESTING: usize = 64;

/// Fusion bodies nested in one another, for modules however built. The printer writes a node of
/// a body `d` fusions deep at most `d + 4` levels deep in text (the module's and the function's
/// braces, then an attribute list inside an attribute block), so every module the verifier
/// accepts prints to text the parser takes.
pub const MAX_FUSION_DEPTH: usize = MAX_NESTING - 4;

/// Bytes of one IR text file.
pub const MAX_IR_BYTES: u64 = 1 << 30;

/// Bytes of one `config.json`.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
