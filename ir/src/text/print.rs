//! The printer: a module to text, values renumbered densely so snapshots stay stable.

use std::fmt::Write;

use crate::infer::type_str;
use crate::module::{Function, Graph, Module, NodeId, ValueId, WeightSource};
use crate::ops::{Attention, GeluApprox, Op, UnaryOp};
use crate::program::{FunctionKind, InputRole, Stage, StepSymbol, WeightRole};

/// Prints a whole module.
pub fn print_module(m: &Module) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "module @{} {{", quote_name(&m.name));
    let _ = writeln!(out, "  compute_dtype = {}", m.compute_dtype);
    if m.stage != Stage::Graph {
        let _ = writeln!(out, "  stage = {}", m.stage);
    }
    for (_, s) in m.symbols.iter() {
        let _ = writeln!(out, "  symbol {} <= {}", s.name, s.max);
    }
    for (_, w) in m.weights.iter() {
        let src = match &w.source {
            WeightSource::Checkpoint { file, tensor } => format!("checkpoint {} {}", quote(file), quote(tensor)),
            WeightSource::Synthetic { seed } => format!("synthetic {seed}"),
            WeightSource::Derived(g) => {
                let mut body = String::from("derived {\n");
                print_graph(m, g, 2, &mut body);
                body.push_str("  }");
                body
            }
        };
        let role = match w.role {
            None => String::new(),
            Some(WeightRole::Block(i)) => format!(" {{block={i}}}"),
            Some(WeightRole::Embedding) => " {role=embedding}".into(),
            Some(WeightRole::LmHead) => " {role=lm_head}".into(),
        };
        let _ = writeln!(out, "  weight @{} : {} = {}{role}", quote_name(&w.name), type_str(m, &w.ty), src);
    }
    for f in &m.functions {
        let _ = writeln!(out, "  func @{}{} {{", quote_name(&f.name), function_attrs(m, f));
        print_graph(m, &f.graph, 2, &mut out);
        let _ = writeln!(out, "  }}");
    }
    out.push_str("}\n");
    out
}

/// The printed name of every value of `g` (`%k`, `%k#i`), by value index: the k-th node with
/// results in the order is `%k`. `None` for a value no node in the order defines.
pub fn value_names(g: &Graph) -> Vec<Option<String>> {
    let mut names: Vec<Option<String>> = vec![None; g.values.len()];
    let mut next = 0usize;
    for &n in &g.order {
        let Some(node) = g.nodes.get(n) else { continue };
        let multi = node.results.len() != 1;
        for (i, &r) in node.results.iter().enumerate() {
            if let Some(slot) = names.get_mut(r.index()) {
                *slot = Some(if multi { format!("%{next}#{i}") } else { format!("%{next}") });
            }
        }
        if !node.results.is_empty() {
            next += 1;
        }
    }
    names
}

/// The printed number `k` of every node (`%k`), by node index: nodes with results, counted in
/// the order. `None` for a node without results or not in the order.
pub fn node_numbers(g: &Graph) -> Vec<Option<usize>> {
    let mut numbers = vec![None; g.nodes.len()];
    let mut next = 0;
    for &n in &g.order {
        if g.nodes.get(n).is_some_and(|x| !x.results.is_empty()) {
            if let Some(slot) = numbers.get_mut(n.index()) {
                *slot = Some(next);
            }
            next += 1;
        }
    }
    numbers
}

/// The printed name of node `n`'s results as a whole (`%k`), if it has results and is in the
/// order.
pub fn node_name(g: &Graph, n: NodeId) -> Option<String> {
    node_numbers(g).get(n.index()).copied().flatten().map(|k| format!("%{k}"))
}

/// Node `n` of `g` on one line as the printer writes it (a fusion's body as `{…}`), for
/// messages: `%5 = add %3, %4 : f32[2]`.
pub fn node_text(m: &Module, g: &Graph, n: NodeId) -> String {
    let names = value_names(g);
    let k = node_name(g, n).map_or(String::new(), |s| s[1..].to_string());
    node_line(m, g, &names, n, &k, None)
}

/// One node: `%k[:n] = op immediates operands {attrs}[ { body }] : types`; the body is printed
/// at `depth` when given, `{…}` otherwise.
fn node_line(m: &Module, g: &Graph, names: &[Option<String>], n: NodeId, k: &str, body_depth: Option<usize>) -> String {
    let Some(node) = g.nodes.get(n) else { return format!("?node{}", n.index()) };
    let lhs = match node.results.len() {
        0 => String::new(),
        1 => format!("%{k} = "),
        c => format!("%{k}:{c} = "),
    };
    let name = |v: ValueId| names.get(v.index()).cloned().flatten().unwrap_or_else(|| format!("%?{}", v.index()));
    let mut line = format!("{lhs}{}", node.op.name());
    match &node.op {
        Op::Input(a) => {
            let _ = write!(line, " {}", quote(&a.name));
            match a.role {
                Some(InputRole::Cache { layer, kind }) => {
                    let _ = write!(line, " {{role={}, layer={layer}}}", kind.role_name());
                }
                Some(r) => {
                    let _ = write!(line, " {{role={}}}", r.name());
                }
                None => {}
            }
        }
        Op::Weight(w) => {
            let wn = m.weights.get(*w).map_or_else(|| format!("?{}", w.index()), |w| quote_name(&w.name));
            let _ = write!(line, " @{wn}");
        }
        Op::Constant(c) => {
            // Integer constants print as integers; the parser reads both forms the same.
            let int = !c.ty.dtype.is_float();
            let show = |v: f64| {
                if int && v.fract() == 0.0 && v.abs() < 9.0e15 && !(v == 0.0 && v.is_sign_negative()) {
                    format!("{}", v as i64)
                } else {
                    num(v)
                }
            };
            if let [v] = c.values.as_slice() {
                let _ = write!(line, " {}", show(*v));
            } else {
                let vs: Vec<String> = c.values.iter().map(|v| show(*v)).collect();
                let _ = write!(line, " [{}]", vs.join(", "));
            }
        }
        _ => {}
    }
    let args: Vec<String> = node.args.iter().map(|&a| name(a)).collect();
    if !args.is_empty() {
        let _ = write!(line, " {}", args.join(", "));
    }
    let attrs = attrs_of(&node.op);
    if !attrs.is_empty() {
        let _ = write!(line, " {{{}}}", attrs.join(", "));
    }
    if let Op::Fusion(f) = &node.op {
        // A function's nodes print at depth 2, a body `d` fusions deep at `d + 2`. Bodies deeper
        // than the verifier allows (only in a module that does not verify) print as `{…}`, so
        // the printer's recursion stays as shallow as the parser's.
        match body_depth {
            Some(depth) if depth <= crate::limits::MAX_FUSION_DEPTH + 1 => {
                line.push_str(" {\n");
                print_graph(m, &f.body, depth + 1, &mut line);
                let _ = write!(line, "{}}}", "  ".repeat(depth));
            }
            _ => line.push_str(" {…}"),
        }
    }
    let types: Vec<String> = node.results.iter().filter_map(|&r| g.values.get(r)).map(|v| type_str(m, &v.ty)).collect();
    let _ = write!(line, " : {}", types.join(", "));
    line
}

/// Prints one graph's nodes and its `return` at `depth` levels of indentation (plus one).
pub fn print_graph(m: &Module, g: &Graph, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let names = value_names(g);
    let mut next = 0usize;
    for &n in &g.order {
        let Some(node) = g.nodes.get(n) else { continue };
        let line = node_line(m, g, &names, n, &next.to_string(), Some(depth));
        if !node.results.is_empty() {
            next += 1;
        }
        let _ = writeln!(out, "{pad}{line}");
    }
    let name_of = |v: ValueId| names.get(v.index()).cloned().flatten().unwrap_or_else(|| format!("%?{}", v.index()));
    let rets: Vec<String> = g
        .outputs
        .iter()
        .map(|o| {
            let mut r = name_of(o.value);
            if !o.name.is_empty() {
                let _ = write!(r, " as {}", quote(&o.name));
            }
            let mut attrs = Vec::new();
            if let Some(role) = o.role {
                attrs.push(format!("role={}", role.name()));
            }
            if let Some(u) = o.updates {
                attrs.push(format!("updates={}", name_of(u)));
            }
            if !attrs.is_empty() {
                let _ = write!(r, " {{{}}}", attrs.join(", "));
            }
            r
        })
        .collect();
    let _ = writeln!(out, "{pad}return {}", rets.join(", "));
}

/// ` {kind=…, batch=…, seq=…}` of a function header, or nothing for a generic function.
fn function_attrs(m: &Module, f: &Function) -> String {
    let mut a = Vec::new();
    if f.kind != FunctionKind::Generic {
        a.push(format!("kind={}", f.kind));
    }
    // In `StepSymbol::ALL` order, the order the parser reads them back in.
    for role in StepSymbol::ALL {
        for (_, s) in f.step_symbols.iter().filter(|(r, _)| *r == role) {
            let name = m.symbols.get(*s).map_or_else(|| format!("?sym{}", s.index()), |s| s.name.clone());
            a.push(format!("{}={name}", role.name()));
        }
    }
    if a.is_empty() {
        String::new()
    } else {
        format!(" {{{}}}", a.join(", "))
    }
}

/// The `{...}` attributes of an op, in a fixed order. Attributes that the result type
/// already states (dtypes, shapes) are not repeated.
fn attrs_of(op: &Op) -> Vec<String> {
    let mut a = Vec::new();
    match op {
        Op::Iota(i) => a.push(format!("axis={}", i.axis)),
        Op::Matmul(mm) | Op::ScaledMatmul(mm) => {
            if mm.transpose_a {
                a.push("transpose_a".into());
            }
            if mm.transpose_b {
                a.push("transpose_b".into());
            }
        }
        Op::Attention(Attention { mask, scale }) => {
            a.push(format!("mask={}", mask.name()));
            a.push(format!("scale={}", num(*scale)));
        }
        Op::Rope(r) => {
            a.push(format!("theta={}", num(r.theta)));
            a.push(format!("scale={}", num(r.scale)));
        }
        Op::ScanSsd(s) => a.push(format!("chunk={}", s.chunk)),
        Op::Conv2dPatch(c) => a.push(format!("patch={}", c.patch)),
        Op::Unary(UnaryOp::Gelu(approx)) => {
            a.push(format!("approx={}", if *approx == GeluApprox::Tanh { "tanh" } else { "erf" }))
        }
        Op::Clamp(c) => {
            if let Some(v) = c.min {
                a.push(format!("min={}", num(v)));
            }
            if let Some(v) = c.max {
                a.push(format!("max={}", num(v)));
            }
        }
        Op::Reduce(r) => {
            a.push(format!("kind={}", r.kind.name()));
            a.push(format!("axes={}", list(&r.axes)));
            if r.keep_dims {
                a.push("keep_dims".into());
            }
        }
        Op::Softmax(s) => a.push(format!("axis={}", s.axis)),
        Op::RmsNorm(n) => {
            a.push(format!("eps={}", num(n.eps)));
            a.push(format!("groups={}", n.groups));
        }
        Op::LayerNorm(n) => a.push(format!("eps={}", num(n.eps))),
        Op::Transpose(p) => a.push(format!("perm={}", list(p))),
        Op::Slice(s) => {
            a.push(format!("axis={}", s.axis));
            a.push(format!("start={}", s.start));
            if let Some(e) = s.end {
                a.push(format!("end={e}"));
            }
        }
        Op::Split(s) => {
            a.push(format!("axis={}", s.axis));
            a.push(format!("sizes={}", list(&s.sizes)));
        }
        Op::Concat(axis) => a.push(format!("axis={axis}")),
        Op::PixelShuffle(r) => a.push(format!("factor={r}")),
        Op::Fusion(f) => a.push(format!("strategy={}", f.strategy.name())),
        Op::Sample(s) => {
            a.push(format!("seed={}", s.seed));
            a.push(format!("temperature={}", num(s.temperature)));
            if let Some(k) = s.top_k {
                a.push(format!("top_k={k}"));
            }
            if let Some(p) = s.top_p {
                a.push(format!("top_p={}", num(p)));
            }
        }
        _ => {}
    }
    a
}

fn list<T: std::fmt::Display>(xs: &[T]) -> String {
    let v: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
    format!("[{}]", v.join(", "))
}

/// A float in the shortest text that parses back to the same bits (always with `.`, `e`,
/// `inf` or `nan`, so it never reads as an integer).
pub fn num(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{v:?}")
    }
}

/// A string literal with `"` and `\` escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `c` may appear in a bare `@name`.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// A symbol name after `@`: bare when it is made of name characters, quoted otherwise.
pub fn quote_name(s: &str) -> String {
    if !s.is_empty() && s.chars().all(is_name_char) {
        s.to_string()
    } else {
        quote(s)
    }
}
