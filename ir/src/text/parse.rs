//! The parser: text to module. Errors carry `line:col` and say what was expected.

use std::collections::HashMap;

use super::lex::{lex, Pos, Tok};
use crate::limits;
use crate::module::{Function, Graph, Module, NodeId, Output, ValueId, WeightId, WeightSource};
use crate::ops::{
    Attention, BinaryOp, Clamp, Constant, Conv2dPatch, Fusion, GeluApprox, Input, Iota, KernelStrategy, MaskKind,
    Matmul, Norm, Op, Reduce, ReduceKind, RopeAttrs, Sample, ScanSsd, Slice, Softmax, Split, UnaryOp,
};
use crate::program::{FunctionKind, InputRole, OutputRole, Stage, StepSymbol, WeightRole};
use crate::types::{DType, Dim, TensorType};

/// A parse error at a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
#[non_exhaustive]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What was expected, and what was found.
    pub message: String,
}

/// Where each node was written: key = (function index, path of node handles through fusion
/// bodies), value = the position of its first token. Used to locate verifier errors.
pub type SourceMap = HashMap<(usize, Vec<NodeId>), Pos>;

/// Parses a module. Text longer than [`limits::MAX_IR_BYTES`] or nested deeper than
/// [`limits::MAX_NESTING`] is refused before anything is built (see [`check_text_size`]).
pub fn parse_module(src: &str) -> Result<Module, ParseError> {
    parse_module_with_spans(src).map(|(m, _)| m)
}

/// Parses a module and records where each node was written.
pub fn parse_module_with_spans(src: &str) -> Result<(Module, SourceMap), ParseError> {
    check_text_size(src.len() as u64)?;
    let toks = lex(src).map_err(|e| ParseError { line: e.pos.line, col: e.pos.col, message: e.message })?;
    check_nesting(&toks)?;
    let mut p = Parser { toks, i: 0, spans: SourceMap::new(), weights: HashMap::new() };
    let m = p.module()?;
    Ok((m, p.spans))
}

/// Refuses IR text of `bytes` bytes when that is more than [`limits::MAX_IR_BYTES`]: what a
/// reader checks against a file's length before reading it ([`parse_module`] checks it too).
pub fn check_text_size(bytes: u64) -> Result<(), ParseError> {
    if bytes > limits::MAX_IR_BYTES {
        return err_at(
            Pos { line: 1, col: 1 },
            format!("IR text of {bytes} bytes is larger than the limit of {} bytes", limits::MAX_IR_BYTES),
        );
    }
    Ok(())
}

/// Refuses tokens nested deeper than [`limits::MAX_NESTING`]: brackets, parentheses and braces
/// (fusion bodies are braces) together. The parser recurses once per open list or body, so
/// this bounds its stack depth; the error is at the first opener past the limit.
fn check_nesting(toks: &[(Tok, Pos)]) -> PResult<()> {
    let mut depth = 0usize;
    for (t, pos) in toks {
        match t {
            Tok::Punct(open @ ("[" | "(" | "{")) => {
                depth += 1;
                if depth > limits::MAX_NESTING {
                    return err_at(
                        *pos,
                        format!(
                            "`{open}` is nested deeper than {} levels (brackets, parentheses, braces and fusion bodies count together)",
                            limits::MAX_NESTING
                        ),
                    );
                }
            }
            Tok::Punct("]" | ")" | "}") => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// An attribute value as written.
#[derive(Debug, Clone, PartialEq)]
enum AttrVal {
    Flag,
    Int(i128),
    Float(f64),
    Ident(String),
    List(Vec<AttrVal>),
}

struct Attrs {
    items: Vec<(String, AttrVal, Pos)>,
    pos: Pos,
}

type PResult<T> = Result<T, ParseError>;

fn err_at<T>(pos: Pos, message: impl Into<String>) -> PResult<T> {
    Err(ParseError { line: pos.line, col: pos.col, message: message.into() })
}

impl Attrs {
    fn take(&mut self, key: &str) -> Option<(AttrVal, Pos)> {
        let i = self.items.iter().position(|(k, _, _)| k == key)?;
        let (_, v, p) = self.items.remove(i);
        Some((v, p))
    }
    fn flag(&mut self, key: &str) -> PResult<bool> {
        match self.take(key) {
            None => Ok(false),
            Some((AttrVal::Flag, _)) => Ok(true),
            Some((_, p)) => err_at(p, format!("attribute `{key}` is a flag and takes no value")),
        }
    }
    fn opt_int(&mut self, key: &str) -> PResult<Option<i64>> {
        match self.take(key) {
            None => Ok(None),
            Some((AttrVal::Int(v), p)) => match i64::try_from(v) {
                Ok(v) => Ok(Some(v)),
                Err(_) => err_at(p, format!("attribute `{key}` does not fit in a signed 64-bit integer")),
            },
            Some((_, p)) => err_at(p, format!("attribute `{key}` expects an integer")),
        }
    }
    fn opt_uint(&mut self, key: &str) -> PResult<Option<u64>> {
        match self.take(key) {
            None => Ok(None),
            Some((AttrVal::Int(v), p)) => match u64::try_from(v) {
                Ok(v) => Ok(Some(v)),
                Err(_) => err_at(p, format!("attribute `{key}` must be >= 0")),
            },
            Some((_, p)) => err_at(p, format!("attribute `{key}` expects an integer")),
        }
    }
    fn uint(&mut self, key: &str) -> PResult<u64> {
        let pos = self.pos;
        self.opt_uint(key)?.map_or_else(|| err_at(pos, format!("missing attribute `{key}`")), Ok)
    }
    fn axis(&mut self, key: &str) -> PResult<usize> {
        Ok(self.uint(key)? as usize)
    }
    fn opt_float(&mut self, key: &str) -> PResult<Option<f64>> {
        match self.take(key) {
            None => Ok(None),
            Some((AttrVal::Float(v), _)) => Ok(Some(v)),
            Some((AttrVal::Int(v), _)) => Ok(Some(v as f64)),
            Some((_, p)) => err_at(p, format!("attribute `{key}` expects a number")),
        }
    }
    fn float(&mut self, key: &str) -> PResult<f64> {
        let pos = self.pos;
        self.opt_float(key)?.map_or_else(|| err_at(pos, format!("missing attribute `{key}`")), Ok)
    }
    fn ident(&mut self, key: &str) -> PResult<Option<(String, Pos)>> {
        match self.take(key) {
            None => Ok(None),
            Some((AttrVal::Ident(v), p)) => Ok(Some((v, p))),
            Some((_, p)) => err_at(p, format!("attribute `{key}` expects a name")),
        }
    }
    fn uint_list(&mut self, key: &str) -> PResult<Vec<u64>> {
        let pos = self.pos;
        match self.take(key) {
            None => err_at(pos, format!("missing attribute `{key}`")),
            Some((AttrVal::List(vs), p)) => vs
                .into_iter()
                .map(|v| match v {
                    AttrVal::Int(i) => u64::try_from(i)
                        .map_or_else(|_| err_at(p, format!("attribute `{key}` expects a list of integers >= 0")), Ok),
                    _ => err_at(p, format!("attribute `{key}` expects a list of integers >= 0")),
                })
                .collect(),
            Some((_, p)) => err_at(p, format!("attribute `{key}` expects a list")),
        }
    }
    fn finish(self, op: &str) -> PResult<()> {
        match self.items.first() {
            None => Ok(()),
            Some((k, _, p)) => err_at(*p, format!("unknown attribute `{k}` for `{op}`")),
        }
    }
}

/// Text names of every op, for "expected an op" messages and `lathe ops`.
pub fn op_names() -> Vec<&'static str> {
    let mut v = vec![
        "input",
        "weight",
        "constant",
        "iota",
        "matmul",
        "scaled_matmul",
        "attention",
        "rope",
        "scan.ssd",
        "conv1d.causal",
        "conv2d.patch",
    ];
    v.extend(UnaryOp::ALL.iter().map(|u| u.name()).filter(|n| *n != "gelu"));
    v.push("gelu");
    v.extend(BinaryOp::ALL.iter().map(|b| b.name()));
    v.extend([
        "clamp",
        "where",
        "cast",
        "reduce",
        "softmax",
        "rms_norm",
        "layer_norm",
        "reshape",
        "transpose",
        "slice",
        "split",
        "concat",
        "broadcast",
        "gather",
        "pixel_shuffle",
        "scatter_cache",
        "amax",
        "quantize",
        "dequantize",
        "fusion",
        "sample",
    ]);
    v
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    i: usize,
    spans: SourceMap,
    /// Weights declared so far, by name (a linear scan per lookup is quadratic in the model).
    weights: HashMap<String, WeightId>,
}

/// Names visible in one graph: `"3"` or `"3#1"` → value.
struct Scope {
    graph: Graph,
    names: HashMap<String, ValueId>,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::Eof, |t| &t.0)
    }
    fn peek_at(&self, k: usize) -> &Tok {
        self.toks.get(self.i + k).map_or(&Tok::Eof, |t| &t.0)
    }
    fn pos(&self) -> Pos {
        self.toks.get(self.i).or(self.toks.last()).map_or(Pos { line: 1, col: 1 }, |t| t.1)
    }
    fn next(&mut self) -> (Tok, Pos) {
        let t = self.toks.get(self.i).cloned().unwrap_or((Tok::Eof, self.pos()));
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn unexpected<T>(&self, expected: &str) -> PResult<T> {
        err_at(self.pos(), format!("expected {expected}, found {}", self.peek().describe()))
    }
    fn punct(&mut self, p: &'static str) -> PResult<()> {
        if *self.peek() == Tok::Punct(p) {
            self.i += 1;
            Ok(())
        } else {
            self.unexpected(&format!("`{p}`"))
        }
    }
    fn eat(&mut self, p: &'static str) -> bool {
        if *self.peek() == Tok::Punct(p) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == kw)
    }
    fn keyword(&mut self, kw: &str) -> PResult<()> {
        if self.is_kw(kw) {
            self.i += 1;
            Ok(())
        } else {
            self.unexpected(&format!("`{kw}`"))
        }
    }
    fn ident(&mut self, what: &str) -> PResult<(String, Pos)> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                let p = self.pos();
                self.i += 1;
                Ok((s, p))
            }
            _ => self.unexpected(what),
        }
    }
    fn at_name(&mut self, what: &str) -> PResult<String> {
        match self.peek().clone() {
            Tok::At(s) => {
                self.i += 1;
                Ok(s)
            }
            _ => self.unexpected(what),
        }
    }
    fn string(&mut self, what: &str) -> PResult<String> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.i += 1;
                Ok(s)
            }
            _ => self.unexpected(what),
        }
    }
    fn uint(&mut self, what: &str) -> PResult<u64> {
        match self.peek().clone() {
            Tok::Int(v) => match u64::try_from(v) {
                Ok(v) => {
                    self.i += 1;
                    Ok(v)
                }
                Err(_) => self.unexpected(what),
            },
            _ => self.unexpected(what),
        }
    }
    fn number(&mut self) -> PResult<f64> {
        match self.peek().clone() {
            Tok::Int(v) => {
                self.i += 1;
                Ok(v as f64)
            }
            Tok::Float(v) => {
                self.i += 1;
                Ok(v)
            }
            _ => self.unexpected("a number"),
        }
    }
    fn dtype(&mut self) -> PResult<DType> {
        let (name, pos) = self.ident("a dtype")?;
        DType::from_name(&name).map_or_else(
            || {
                err_at(
                    pos,
                    format!("unknown dtype `{name}` (expected one of f32 f16 bf16 f8e4m3 f8e5m2 i64 i32 i8 u8 bool)"),
                )
            },
            Ok,
        )
    }

    fn ty(&mut self, m: &Module) -> PResult<TensorType> {
        let dtype = self.dtype()?;
        self.punct("[")?;
        let mut shape = Vec::new();
        if !self.eat("]") {
            loop {
                if shape.len() == limits::MAX_RANK {
                    return err_at(self.pos(), format!("a type has at most {} dimensions", limits::MAX_RANK));
                }
                match self.peek().clone() {
                    Tok::Int(v) => match u64::try_from(v) {
                        Ok(c) => {
                            self.i += 1;
                            shape.push(Dim::Const(c));
                        }
                        Err(_) => return self.unexpected("a dimension (an integer or a symbol)"),
                    },
                    Tok::Ident(s) => match m.symbol(&s) {
                        Some(h) => {
                            self.i += 1;
                            shape.push(Dim::Sym(h));
                        }
                        None => {
                            return err_at(
                                self.pos(),
                                format!("unknown symbol `{s}` (declare it with `symbol {s} <= N`)"),
                            )
                        }
                    },
                    _ => return self.unexpected("a dimension (an integer or a symbol)"),
                }
                if self.eat("]") {
                    break;
                }
                self.punct(",")?;
            }
        }
        Ok(TensorType { dtype, shape })
    }

    fn module(&mut self) -> PResult<Module> {
        self.keyword("module")?;
        let name = self.at_name("the module name `@name`")?;
        self.punct("{")?;
        let mut m = Module::new(name);
        loop {
            let pos = self.pos();
            match self.peek().clone() {
                Tok::Punct("}") => {
                    self.i += 1;
                    break;
                }
                Tok::Ident(kw) if kw == "compute_dtype" => {
                    self.i += 1;
                    self.punct("=")?;
                    m.compute_dtype = self.dtype()?;
                }
                Tok::Ident(kw) if kw == "stage" => {
                    self.i += 1;
                    self.punct("=")?;
                    let (name, npos) = self.ident("a stage")?;
                    m.stage = Stage::from_name(&name).map_or_else(
                        || err_at(npos, format!("unknown stage `{name}` (expected graph, scheduled or planned)")),
                        Ok,
                    )?;
                }
                Tok::Ident(kw) if kw == "symbol" => {
                    self.i += 1;
                    let (name, npos) = self.ident("a symbol name")?;
                    if DType::from_name(&name).is_some() || name.contains('.') {
                        return err_at(npos, format!("`{name}` cannot name a symbol"));
                    }
                    if m.symbol(&name).is_some() {
                        return err_at(npos, format!("symbol `{name}` is declared twice"));
                    }
                    self.punct("<=")?;
                    let bpos = self.pos();
                    let max = self.uint("the symbol's upper bound")?;
                    if max == 0 {
                        return err_at(npos, format!("symbol `{name}` needs an upper bound >= 1"));
                    }
                    if max > limits::MAX_SYMBOL_BOUND {
                        return err_at(
                            bpos,
                            format!("symbol `{name}` has bound {max}, above the limit of {}", limits::MAX_SYMBOL_BOUND),
                        );
                    }
                    m.add_symbol(name, max);
                }
                Tok::Ident(kw) if kw == "weight" => {
                    self.i += 1;
                    let name = self.at_name("a weight name `@name`")?;
                    if self.weights.contains_key(&name) {
                        return err_at(pos, format!("weight `@{name}` is declared twice"));
                    }
                    self.punct(":")?;
                    let ty = self.ty(&m)?;
                    self.punct("=")?;
                    let (kind, kpos) = self.ident("`checkpoint`, `synthetic` or `derived`")?;
                    let source = match kind.as_str() {
                        "checkpoint" => {
                            let file = self.string("the safetensors file name")?;
                            let tensor = self.string("the tensor name")?;
                            WeightSource::Checkpoint { file, tensor }
                        }
                        "synthetic" => WeightSource::Synthetic { seed: self.uint("a seed")? },
                        "derived" => {
                            self.punct("{")?;
                            // Spans of derived graphs are not recorded: no function index names them.
                            let g = self.graph(&m, usize::MAX, &[])?;
                            self.punct("}")?;
                            WeightSource::Derived(Box::new(g))
                        }
                        _ => {
                            return err_at(
                                kpos,
                                format!("expected `checkpoint`, `synthetic` or `derived`, found `{kind}`"),
                            )
                        }
                    };
                    let mut role = None;
                    if *self.peek() == Tok::Punct("{") {
                        let mut a = self.attrs()?;
                        let block = a.opt_uint("block")?;
                        let named = a.ident("role")?;
                        role = match (block, named) {
                            (Some(b), None) => Some(WeightRole::Block(
                                u32::try_from(b).map_or_else(|_| err_at(a.pos, "`block` is too large"), Ok)?,
                            )),
                            (None, Some((r, _))) if r == "embedding" => Some(WeightRole::Embedding),
                            (None, Some((r, _))) if r == "lm_head" => Some(WeightRole::LmHead),
                            (None, Some((r, rp))) => {
                                return err_at(rp, format!("unknown weight role `{r}` (expected embedding or lm_head)"))
                            }
                            (Some(_), Some(_)) => return err_at(a.pos, "a weight takes `block` or `role`, not both"),
                            (None, None) => None,
                        };
                        a.finish("weight")?;
                    }
                    let w = m.add_weight(name.clone(), ty, source);
                    m.weights[w].role = role;
                    self.weights.insert(name, w);
                }
                Tok::Ident(kw) if kw == "func" => {
                    self.i += 1;
                    let name = self.at_name("a function name `@name`")?;
                    if m.function(&name).is_some() {
                        return err_at(pos, format!("function `@{name}` is defined twice"));
                    }
                    let mut f = Function::new(name, Graph::default());
                    // `{kind=…, batch=…}` before the body, which starts with a statement.
                    if *self.peek() == Tok::Punct("{")
                        && matches!(self.peek_at(1), Tok::Ident(_))
                        && *self.peek_at(2) == Tok::Punct("=")
                    {
                        let mut a = self.attrs()?;
                        if let Some((k, kp)) = a.ident("kind")? {
                            f.kind = FunctionKind::from_name(&k).map_or_else(
                                || err_at(kp, format!("unknown function kind `{k}` (expected generic, eval, extend, decode or vision)")),
                                Ok,
                            )?;
                        }
                        for role in StepSymbol::ALL {
                            if let Some((sym, sp)) = a.ident(role.name())? {
                                let h =
                                    m.symbol(&sym).map_or_else(|| err_at(sp, format!("unknown symbol `{sym}`")), Ok)?;
                                f.step_symbols.push((role, h));
                            }
                        }
                        a.finish("func")?;
                    }
                    self.punct("{")?;
                    let fidx = m.functions.len();
                    f.graph = self.graph(&m, fidx, &[])?;
                    self.punct("}")?;
                    m.functions.push(f);
                }
                _ => return self.unexpected("`compute_dtype`, `stage`, `symbol`, `weight`, `func` or `}`"),
            }
        }
        if *self.peek() != Tok::Eof {
            return self.unexpected("end of input after the module");
        }
        Ok(m)
    }

    /// Parses statements up to and including `return ...` (the closing `}` is the caller's).
    fn graph(&mut self, m: &Module, fidx: usize, path: &[NodeId]) -> PResult<Graph> {
        let mut scope = Scope { graph: Graph::default(), names: HashMap::new() };
        loop {
            if self.is_kw("return") {
                self.i += 1;
                if *self.peek() != Tok::Punct("}") {
                    loop {
                        let value = self.use_value(&scope)?;
                        let name = if self.is_kw("as") {
                            self.i += 1;
                            self.string("an output name")?
                        } else {
                            String::new()
                        };
                        let mut out = Output::new(name, value);
                        if *self.peek() == Tok::Punct("{") {
                            self.output_attrs(&scope, &mut out)?;
                        }
                        scope.graph.outputs.push(out);
                        if !self.eat(",") {
                            break;
                        }
                    }
                }
                return Ok(scope.graph);
            }
            self.statement(m, &mut scope, fidx, path)?;
        }
    }

    fn use_value(&mut self, scope: &Scope) -> PResult<ValueId> {
        match self.peek().clone() {
            Tok::Value(name, idx) => {
                let key = match idx {
                    Some(i) => format!("{name}#{i}"),
                    None => name.clone(),
                };
                match scope.names.get(&key) {
                    Some(v) => {
                        self.i += 1;
                        Ok(*v)
                    }
                    None => err_at(self.pos(), format!("use of undefined value `%{key}`")),
                }
            }
            _ => self.unexpected("a value `%N`"),
        }
    }

    fn statement(&mut self, m: &Module, scope: &mut Scope, fidx: usize, path: &[NodeId]) -> PResult<()> {
        let start = self.pos();
        // Result names.
        let (lhs, count) = match self.peek().clone() {
            Tok::Value(name, None) => {
                self.i += 1;
                let count = if self.eat(":") { self.uint("the number of results")? as usize } else { 1 };
                self.punct("=")?;
                (Some(name), count)
            }
            Tok::Value(_, Some(_)) => return err_at(start, "a result name cannot carry `#index`"),
            Tok::Ident(_) => (None, 0),
            _ => return self.unexpected("a statement `%N = op ...` or `return`"),
        };
        let (opname, oppos) = self.ident("an op name")?;
        // Immediates of the leaf ops.
        enum Imm {
            None,
            Str(String),
            Weight(String, Pos),
            Nums(Vec<f64>),
        }
        let imm = match opname.as_str() {
            "input" => Imm::Str(self.string("the input name")?),
            "weight" => {
                let p = self.pos();
                Imm::Weight(self.at_name("a weight `@name`")?, p)
            }
            "constant" => {
                if self.eat("[") {
                    let mut vs = Vec::new();
                    if !self.eat("]") {
                        loop {
                            vs.push(self.number()?);
                            if self.eat("]") {
                                break;
                            }
                            self.punct(",")?;
                        }
                    }
                    Imm::Nums(vs)
                } else {
                    Imm::Nums(vec![self.number()?])
                }
            }
            _ => Imm::None,
        };
        let mut args = Vec::new();
        if matches!(self.peek(), Tok::Value(..)) {
            loop {
                args.push(self.use_value(scope)?);
                if !self.eat(",") {
                    break;
                }
            }
        }
        let mut attrs = Attrs { items: Vec::new(), pos: oppos };
        if *self.peek() == Tok::Punct("{")
            && matches!(self.peek_at(1), Tok::Ident(_) | Tok::Punct("}"))
            && opname != "fusion"
            || (opname == "fusion"
                && *self.peek() == Tok::Punct("{")
                && matches!(self.peek_at(2), Tok::Punct("=" | "," | "}")))
        {
            attrs = self.attrs()?;
            attrs.pos = oppos;
        }
        let node_id = crate::arena::Handle::<crate::module::Node>::from_index(scope.graph.nodes.len())
            .map_or_else(|| err_at(start, "too many nodes"), Ok)?;
        let mut region = None;
        if opname == "fusion" {
            self.punct("{")?;
            let mut sub = path.to_vec();
            sub.push(node_id);
            region = Some(self.graph(m, fidx, &sub)?);
            self.punct("}")?;
        }
        self.punct(":")?;
        let mut types = vec![self.ty(m)?];
        while self.eat(",") {
            types.push(self.ty(m)?);
        }
        if lhs.is_some() && types.len() != count {
            return err_at(start, format!("{count} result name(s) but {} result type(s)", types.len()));
        }
        if lhs.is_none() {
            return err_at(start, "an op with results needs names: `%N = ...`");
        }
        let op = match imm {
            Imm::Str(name) => {
                self.single(&types, start, "input")?;
                let layer = match attrs.opt_uint("layer")? {
                    Some(l) => Some(u32::try_from(l).map_or_else(|_| err_at(oppos, "`layer` is too large"), Ok)?),
                    None => None,
                };
                let role = match attrs.ident("role")? {
                    None => None,
                    Some((r, rp)) => Some(InputRole::from_name(&r, layer).map_or_else(
                        || {
                            if InputRole::NAMES.contains(&r.as_str()) {
                                err_at(rp, format!("role `{r}` needs `layer=N`"))
                            } else {
                                err_at(
                                    rp,
                                    format!(
                                        "unknown input role `{r}` (expected one of {})",
                                        InputRole::NAMES.join(", ")
                                    ),
                                )
                            }
                        },
                        Ok,
                    )?),
                };
                if layer.is_some() && !matches!(role, Some(InputRole::Cache { .. })) {
                    return err_at(oppos, "`layer` belongs to a cache role");
                }
                Op::Input(Input { name, ty: types[0].clone(), role })
            }
            Imm::Weight(name, p) => match self.weights.get(&name) {
                Some(&w) => Op::Weight(w),
                None => return err_at(p, format!("unknown weight `@{name}`")),
            },
            Imm::Nums(values) => {
                self.single(&types, start, "constant")?;
                Op::Constant(Constant { ty: types[0].clone(), values })
            }
            Imm::None => build_op(&opname, oppos, &mut attrs, &types, region)?,
        };
        attrs.finish(&opname)?;
        let results = scope.graph.push_node(op, args, types);
        let mut key_path = path.to_vec();
        key_path.push(node_id);
        if fidx != usize::MAX {
            self.spans.insert((fidx, key_path), start);
        }
        if let Some(name) = lhs {
            let keys: Vec<String> = if results.len() == 1 {
                vec![name.clone()]
            } else {
                (0..results.len()).map(|i| format!("{name}#{i}")).collect()
            };
            for (k, v) in keys.into_iter().zip(results) {
                if scope.names.insert(k.clone(), v).is_some() {
                    return err_at(start, format!("value `%{k}` is defined twice"));
                }
            }
        }
        Ok(())
    }

    /// `{role=logits, updates=%3}` after a returned value.
    fn output_attrs(&mut self, scope: &Scope, out: &mut Output) -> PResult<()> {
        self.punct("{")?;
        loop {
            let (key, kpos) = self.ident("`role` or `updates`")?;
            self.punct("=")?;
            match key.as_str() {
                "role" if out.role.is_none() => {
                    let (r, rp) = self.ident("an output role")?;
                    out.role = Some(OutputRole::from_name(&r).map_or_else(
                        || err_at(rp, format!("unknown output role `{r}` (expected logits, token or embeddings)")),
                        Ok,
                    )?);
                }
                "updates" if out.updates.is_none() => out.updates = Some(self.use_value(scope)?),
                "role" | "updates" => return err_at(kpos, format!("attribute `{key}` is given twice")),
                _ => return err_at(kpos, format!("unknown attribute `{key}` of a result (expected role or updates)")),
            }
            if self.eat("}") {
                return Ok(());
            }
            self.punct(",")?;
        }
    }

    fn single(&self, types: &[TensorType], pos: Pos, op: &str) -> PResult<()> {
        if types.len() == 1 {
            Ok(())
        } else {
            err_at(pos, format!("`{op}` has exactly one result"))
        }
    }

    fn attrs(&mut self) -> PResult<Attrs> {
        let pos = self.pos();
        self.punct("{")?;
        let mut items: Vec<(String, AttrVal, Pos)> = Vec::new();
        if self.eat("}") {
            return Ok(Attrs { items, pos });
        }
        loop {
            let (key, kpos) = self.ident("an attribute name")?;
            if items.iter().any(|(k, _, _)| *k == key) {
                return err_at(kpos, format!("attribute `{key}` is given twice"));
            }
            let val = if self.eat("=") { self.attr_value()? } else { AttrVal::Flag };
            items.push((key, val, kpos));
            if self.eat("}") {
                return Ok(Attrs { items, pos });
            }
            self.punct(",")?;
        }
    }

    fn attr_value(&mut self) -> PResult<AttrVal> {
        match self.next() {
            (Tok::Int(v), _) => Ok(AttrVal::Int(v)),
            (Tok::Float(v), _) => Ok(AttrVal::Float(v)),
            (Tok::Ident(s), _) => Ok(AttrVal::Ident(s)),
            (Tok::Punct("["), _) => {
                let mut vs = Vec::new();
                if self.eat("]") {
                    return Ok(AttrVal::List(vs));
                }
                loop {
                    vs.push(self.attr_value()?);
                    if self.eat("]") {
                        return Ok(AttrVal::List(vs));
                    }
                    self.punct(",")?;
                }
            }
            (t, p) => err_at(p, format!("expected an attribute value, found {}", t.describe())),
        }
    }
}

/// Builds a non-leaf op from its attributes and declared result types.
fn build_op(name: &str, pos: Pos, a: &mut Attrs, types: &[TensorType], region: Option<Graph>) -> PResult<Op> {
    let first = types.first().map(|t| t.dtype).unwrap_or(DType::F32);
    let first_ty = || types.first().cloned().unwrap_or_else(|| TensorType::scalar(DType::F32));
    let matmul = |a: &mut Attrs| -> PResult<Matmul> {
        Ok(Matmul { transpose_a: a.flag("transpose_a")?, transpose_b: a.flag("transpose_b")?, out: first })
    };
    if let Some(u) = UnaryOp::ALL.into_iter().find(|u| u.name() == name) {
        if name == "gelu" {
            let approx = match a.ident("approx")? {
                None => GeluApprox::Erf,
                Some((s, _)) if s == "erf" => GeluApprox::Erf,
                Some((s, _)) if s == "tanh" => GeluApprox::Tanh,
                Some((s, p)) => return err_at(p, format!("unknown gelu approx `{s}` (expected erf or tanh)")),
            };
            return Ok(Op::Unary(UnaryOp::Gelu(approx)));
        }
        return Ok(Op::Unary(u));
    }
    if let Some(b) = BinaryOp::ALL.into_iter().find(|b| b.name() == name) {
        return Ok(Op::Binary(b));
    }
    Ok(match name {
        "iota" => Op::Iota(Iota { axis: a.axis("axis")?, ty: first_ty() }),
        "matmul" => Op::Matmul(matmul(a)?),
        "scaled_matmul" => Op::ScaledMatmul(matmul(a)?),
        "attention" => {
            let mask = match a.ident("mask")? {
                None => return err_at(pos, "missing attribute `mask`"),
                Some((s, p)) => MaskKind::ALL.into_iter().find(|k| k.name() == s).map_or_else(
                    || err_at(p, format!("unknown mask `{s}` (expected causal, bidirectional or cross)")),
                    Ok,
                )?,
            };
            Op::Attention(Attention { mask, scale: a.float("scale")? })
        }
        "rope" => Op::Rope(RopeAttrs { theta: a.float("theta")?, scale: a.opt_float("scale")?.unwrap_or(1.0) }),
        "scan.ssd" => Op::ScanSsd(ScanSsd { chunk: a.uint("chunk")? }),
        "conv1d.causal" => Op::Conv1dCausal,
        "conv2d.patch" => Op::Conv2dPatch(Conv2dPatch { patch: a.uint("patch")? }),
        "clamp" => Op::Clamp(Clamp { min: a.opt_float("min")?, max: a.opt_float("max")? }),
        "where" => Op::Where,
        "cast" => Op::Cast(first),
        "reduce" => {
            let kind = match a.ident("kind")? {
                None => return err_at(pos, "missing attribute `kind`"),
                Some((s, p)) => ReduceKind::ALL
                    .into_iter()
                    .find(|k| k.name() == s)
                    .map_or_else(|| err_at(p, format!("unknown reduce kind `{s}` (expected sum, max or mean)")), Ok)?,
            };
            let axes = a.uint_list("axes")?.into_iter().map(|x| x as usize).collect();
            Op::Reduce(Reduce { kind, axes, keep_dims: a.flag("keep_dims")? })
        }
        "softmax" => Op::Softmax(Softmax { axis: a.axis("axis")? }),
        "rms_norm" => Op::RmsNorm(Norm { eps: a.float("eps")?, groups: a.opt_uint("groups")?.unwrap_or(1) }),
        "layer_norm" => Op::LayerNorm(Norm { eps: a.float("eps")?, groups: 1 }),
        "reshape" => Op::Reshape(first_ty().shape),
        "transpose" => Op::Transpose(a.uint_list("perm")?.into_iter().map(|x| x as usize).collect()),
        "slice" => Op::Slice(Slice {
            axis: a.axis("axis")?,
            start: a.opt_int("start")?.map_or_else(|| err_at(pos, "missing attribute `start`"), Ok)?,
            end: a.opt_int("end")?,
        }),
        "split" => Op::Split(Split { axis: a.axis("axis")?, sizes: a.uint_list("sizes")? }),
        "concat" => Op::Concat(a.axis("axis")?),
        "broadcast" => Op::Broadcast(first_ty().shape),
        "gather" => Op::Gather,
        "pixel_shuffle" => Op::PixelShuffle(a.uint("factor")?),
        "scatter_cache" => Op::ScatterCache,
        "amax" => Op::Amax,
        "quantize" => Op::Quantize(first),
        "dequantize" => Op::Dequantize(first),
        "fusion" => {
            let strategy = match a.ident("strategy")? {
                None => return err_at(pos, "missing attribute `strategy`"),
                Some((s, p)) => KernelStrategy::from_name(&s).map_or_else(
                    || {
                        let all: Vec<&str> = KernelStrategy::ALL.iter().map(|k| k.name()).collect();
                        err_at(p, format!("unknown strategy `{s}` (expected one of {})", all.join(", ")))
                    },
                    Ok,
                )?,
            };
            let body = region.unwrap_or_default();
            Op::Fusion(Box::new(Fusion { strategy, body }))
        }
        "sample" => Op::Sample(Sample {
            seed: a.uint("seed")?,
            temperature: a.opt_float("temperature")?.unwrap_or(0.0),
            top_k: a.opt_uint("top_k")?,
            top_p: a.opt_float("top_p")?,
        }),
        _ => return err_at(pos, format!("unknown op `{name}` (see `lathe ops`; known: {})", op_names().join(" "))),
    })
}
