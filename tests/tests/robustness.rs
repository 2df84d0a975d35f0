//! Robustness of the text front door: mutated and truncated IR text never makes the parser, the
//! verifier or (on modules that verify, with small arguments for their inputs) the interpreter
//! panic, and every parse error is located `line:col: message` inside the text.
//!
//! Sources are `examples/tiny_hybrid.lir` and printed random modules (`lathe_tests::modgen`);
//! mutations are seeded, so a failure names the seed and the mutated text that reproduce it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use lathe_interp::tensor::Tensor;
use lathe_interp::SyntheticOnly;
use lathe_ir::module::{Graph, Module};
use lathe_ir::text::parse::op_names;
use lathe_ir::text::{parse_module, print_module};
use lathe_ir::types::{DType, Dim};
use lathe_ir::verify::verify;
use lathe_ir::Op;
use lathe_tests::{modgen, Rng};

const TINY_HYBRID: &str = include_str!("../../examples/tiny_hybrid.lir");

/// Mutants per source text.
const MUTANTS: u64 = 2000;
/// Random modules used as sources, besides the example.
const RANDOM_SOURCES: u64 = 11;
/// Modules whose values hold this many elements or more are not run.
const MAX_ELEMENTS: u64 = 100_000;

/// What happened to one text, deepest stage reached.
#[derive(Debug, Default)]
struct Tally {
    texts: usize,
    parsed: usize,
    verified: usize,
    ran: usize,
    ran_ok: usize,
}

thread_local! {
    /// Set while a call runs under [`caught`]: its panics are expected and reported by it.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic of this thread happened.
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Installs (once) a panic hook that records the location of each panic and stays silent
/// inside [`caught`]: thousands of mutants must not print thousands of backtraces.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            LAST_PANIC.with(|l| *l.borrow_mut() = info.location().map(|l| l.to_string()).unwrap_or_default());
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into `"STAGE panicked at FILE:LINE:COL: MESSAGE"`.
fn caught<T>(stage: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    QUIET.with(|q| q.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    r.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{stage} panicked at {}: {msg}", LAST_PANIC.with(|l| l.borrow().clone()))
    })
}

/// Checks that a parse error reads `line:col: message` with the position inside `text`.
fn check_error_format(text: &str, err: &str) -> Result<(), String> {
    let mut parts = err.splitn(3, ':');
    let (line, col, rest) = (parts.next(), parts.next(), parts.next());
    let (Some(Ok(line)), Some(Ok(col)), Some(rest)) =
        (line.map(str::parse::<usize>), col.map(str::parse::<usize>), rest)
    else {
        return Err(format!("parse error {err:?} does not read `line:col: message`"));
    };
    if !rest.starts_with(' ') || rest.trim().is_empty() {
        return Err(format!("parse error {err:?} has no message after `line:col:`"));
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let Some(l) = line.checked_sub(1).and_then(|i| lines.get(i)) else {
        return Err(format!("parse error {err:?}: line {line} is outside the text's {} lines", lines.len()));
    };
    let width = l.chars().count() + 1;
    if col == 0 || col > width {
        return Err(format!("parse error {err:?}: column {col} is outside line {line} ({} characters)", width - 1));
    }
    Ok(())
}

/// Element count of a type with symbols counted as 1 (a function without inputs cannot bind
/// them, so the interpreter stops before allocating such a value).
fn elements(shape: &[Dim]) -> u64 {
    shape.iter().fold(1u64, |n, d| n.saturating_mul(d.as_const().unwrap_or(1)))
}

fn graph_is_small(g: &Graph) -> bool {
    g.values.iter().all(|(_, v)| elements(&v.ty.shape) < MAX_ELEMENTS)
        && g.nodes.iter().all(|(_, n)| match &n.op {
            Op::Fusion(f) => graph_is_small(&f.body),
            Op::Constant(c) => elements(&c.ty.shape) < MAX_ELEMENTS,
            _ => true,
        })
}

/// Small deterministic arguments for a function's inputs, every symbol bound to 1 (so the
/// size estimate of [`elements`] is exact); integers are small, so gather indices often hit.
fn arguments(g: &Graph) -> HashMap<String, Tensor> {
    let mut rng = Rng::new(g.values.len() as u64);
    g.order
        .iter()
        .filter_map(|&n| match &g.nodes.get(n)?.op {
            Op::Input(a) => Some(a),
            _ => None,
        })
        .map(|a| {
            let shape: Vec<usize> = a.ty.shape.iter().map(|d| d.as_const().unwrap_or(1) as usize).collect();
            let n: usize = shape.iter().product();
            let t = if a.ty.dtype.is_float() {
                Tensor::from_f32(a.ty.dtype, shape, (0..n).map(|_| rng.normal() as f32).collect())
            } else {
                Tensor::from_i64(a.ty.dtype, shape, (0..n).map(|_| rng.below(3) as i64).collect())
            };
            (a.name.clone(), t)
        })
        .collect()
}

/// Parses, verifies and (when cheap) runs `text` on small arguments, all under `catch_unwind`.
fn exercise(text: &str, tally: &mut Tally) -> Result<(), String> {
    tally.texts += 1;
    let parsed = caught("parse", || parse_module(text))?;
    let m: Module = match parsed {
        Ok(m) => m,
        Err(e) => return check_error_format(text, &e.to_string()),
    };
    tally.parsed += 1;
    let verified = caught("verify", || verify(&m))?;
    if verified.is_err() {
        return Ok(());
    }
    tally.verified += 1;
    // A module that verifies prints and parses back.
    let again = caught("print/parse of a verified module", || parse_module(&print_module(&m)))?;
    match again {
        Ok(p) if format!("{p:?}") == format!("{:?}", m.renumbered()) => {}
        Ok(_) => return Err("a verified module does not round-trip through text".into()),
        Err(e) => return Err(format!("a verified module prints to text that does not parse: {e}")),
    }
    let weights_small = m.weights.iter().all(|(_, w)| elements(&w.ty.shape) < MAX_ELEMENTS);
    for f in &m.functions {
        if !weights_small || !graph_is_small(&f.graph) {
            continue;
        }
        tally.ran += 1;
        let stage = format!("the interpreter (@{})", f.name);
        let args = arguments(&f.graph);
        let r = caught(&stage, || lathe_interp::run(&m, &f.name, &args, &SyntheticOnly))?;
        tally.ran_ok += usize::from(r.is_ok());
    }
    Ok(())
}

/// Byte ranges of the rough tokens of `text`: strings, words (names, numbers, `%3#1`, `@a.b`)
/// and single punctuation characters.
fn tokens(text: &str) -> Vec<Range<usize>> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |k: usize| chars.get(k).map_or(text.len(), |c| c.0);
    let word = |c: char| c.is_alphanumeric() || "_.%#@-".contains(c);
    let mut out = Vec::new();
    let mut k = 0;
    while k < chars.len() {
        let (start, c) = chars[k];
        if c.is_whitespace() {
            k += 1;
            continue;
        }
        let mut j = k + 1;
        if c == '"' {
            while j < chars.len() && chars[j].1 != '"' {
                j += if chars[j].1 == '\\' { 2 } else { 1 };
            }
            j = (j + 1).min(chars.len());
        } else if word(c) {
            while j < chars.len() && word(chars[j].1) {
                j += 1;
            }
        }
        out.push(start..end_of(j));
        k = j;
    }
    out
}

const NUMBERS: [&str; 22] = [
    "0",
    "-1",
    "1",
    "2",
    "3",
    "65536",
    "100000",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999",
    "1e308",
    "1e309",
    "-0.0",
    "nan",
    "inf",
    "-inf",
    "0.5",
];

const JUNK: [&str; 28] = [
    "\0",
    "\u{1F600}",
    "é",
    "\"",
    "{",
    "}",
    "[",
    "]",
    "%",
    "@",
    "#",
    "//",
    "\\",
    "\n",
    "-",
    "-i",
    ":",
    "=",
    "<=",
    "%0",
    "@\"",
    "\u{202E}",
    "\r",
    "\t",
    "\u{FEFF}",
    "ÿ",
    "𝕏",
    "%0#",
];

const VALUES: [&str; 8] = ["%99", "%3#7", "%0#0", "%", "%-1", "%18446744073709551616", "%0#4294967296", "%x"];

/// One random edit of `text`.
fn mutate_once(rng: &mut Rng, text: &str) -> String {
    let toks = tokens(text);
    let pick_tok = |rng: &mut Rng, pred: &dyn Fn(&str) -> bool| -> Option<Range<usize>> {
        let c: Vec<&Range<usize>> = toks.iter().filter(|r| pred(&text[(*r).clone()])).collect();
        (!c.is_empty()).then(|| c[rng.below(c.len())].clone())
    };
    let replace = |r: Range<usize>, with: &str| format!("{}{}{}", &text[..r.start], with, &text[r.end..]);
    let lines: Vec<&str> = text.split('\n').collect();
    let boundary = |rng: &mut Rng| {
        let b: Vec<usize> = text.char_indices().map(|c| c.0).chain([text.len()]).collect();
        b[rng.below(b.len())]
    };
    let any = |_: &str| true;
    let num = |s: &str| s.starts_with(|c: char| c.is_ascii_digit()) || s.starts_with('-');
    // Consistent rewrites (every occurrence of a number or a dtype) keep most modules valid,
    // so they reach the verifier's type rules and the interpreter's edge cases.
    let kind = rng.below(20);
    if kind >= 14 {
        let (from, to) = if kind < 17 {
            let Some(r) = pick_tok(rng, &num) else { return text.to_string() };
            (text[r].to_string(), NUMBERS[rng.below(NUMBERS.len())].to_string())
        } else {
            let Some(r) = pick_tok(rng, &|s| DType::from_name(s).is_some()) else { return text.to_string() };
            (text[r].to_string(), DType::ALL[rng.below(DType::ALL.len())].name().to_string())
        };
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for r in toks.iter().filter(|r| text[(*r).clone()] == from) {
            out.push_str(&text[last..r.start]);
            out.push_str(&to);
            last = r.end;
        }
        out.push_str(&text[last..]);
        return out;
    }
    match kind {
        0 => {
            let at = boundary(rng);
            text[..at].to_string()
        }
        1 => pick_tok(rng, &any).map_or_else(|| text.to_string(), |r| replace(r, "")),
        2 => pick_tok(rng, &any).map_or_else(|| text.to_string(), |r| replace(r.clone(), &text[r.clone()].repeat(2))),
        3 => {
            let (Some(a), Some(b)) = (pick_tok(rng, &any), pick_tok(rng, &any)) else { return text.to_string() };
            let (a, b) = if a.start <= b.start { (a, b) } else { (b, a) };
            if a.end > b.start {
                return text.to_string();
            }
            format!(
                "{}{}{}{}{}",
                &text[..a.start],
                &text[b.clone()],
                &text[a.end..b.start],
                &text[a.clone()],
                &text[b.end..]
            )
        }
        4 => {
            let (Some(a), Some(b)) = (pick_tok(rng, &any), pick_tok(rng, &any)) else { return text.to_string() };
            replace(a, &text[b])
        }
        5 => {
            let with = NUMBERS[rng.below(NUMBERS.len())];
            pick_tok(rng, &num).map_or_else(|| text.to_string(), |r| replace(r, with))
        }
        6 => {
            let with = DType::ALL[rng.below(DType::ALL.len())].name();
            pick_tok(rng, &|s| DType::from_name(s).is_some()).map_or_else(|| text.to_string(), |r| replace(r, with))
        }
        7 => {
            let with = VALUES[rng.below(VALUES.len())];
            pick_tok(rng, &|s| s.starts_with('%')).map_or_else(|| text.to_string(), |r| replace(r, with))
        }
        8 => {
            // A symbol bound, or a new symbol.
            let with = NUMBERS[rng.below(NUMBERS.len())];
            match text.find("<= ") {
                Some(i) if rng.below(2) == 0 => {
                    let start = i + 3;
                    let end = text[start..].find(|c: char| !c.is_ascii_digit()).map_or(text.len(), |e| start + e);
                    replace(start..end, with)
                }
                _ => text.replacen("{\n", &format!("{{\n  symbol Q <= {with}\n"), 1),
            }
        }
        9 => {
            let at = boundary(rng);
            format!("{}{}{}", &text[..at], JUNK[rng.below(JUNK.len())], &text[at..])
        }
        10 => {
            let mut ls = lines.clone();
            ls.remove(rng.below(ls.len()));
            ls.join("\n")
        }
        11 => {
            let mut ls = lines.clone();
            let i = rng.below(ls.len());
            ls.insert(i, lines[i]);
            ls.join("\n")
        }
        12 => {
            let mut ls = lines.clone();
            let (i, j) = (rng.below(ls.len()), rng.below(ls.len()));
            ls.swap(i, j);
            ls.join("\n")
        }
        _ => {
            let names = op_names();
            let with = names[rng.below(names.len())];
            pick_tok(rng, &|s| names.contains(&s)).map_or_else(|| text.to_string(), |r| replace(r, with))
        }
    }
}

/// Source texts: the example and printed random modules.
fn sources() -> Vec<(String, String)> {
    let mut out = vec![("examples/tiny_hybrid.lir".to_string(), TINY_HYBRID.to_string())];
    for seed in 0..RANDOM_SOURCES {
        let case = modgen::random_case(1000 + seed).unwrap_or_else(|e| panic!("generator, seed {}: {e}", 1000 + seed));
        out.push((format!("random module {}", 1000 + seed), print_module(&case.module)));
    }
    out
}

/// Failures grouped by their first line (the stage and panic location), one example each.
#[derive(Debug, Default)]
struct Failures {
    count: usize,
    examples: Vec<(String, String)>,
}

impl Failures {
    fn add(&mut self, what: String, detail: impl FnOnce() -> String) {
        self.count += 1;
        // Panics are grouped by location, other failures by their message.
        let key = match what.split_once(" panicked at ") {
            Some((_, rest)) => format!("panic at {rest}"),
            None => what.clone(),
        };
        if !self.examples.iter().any(|(k, _)| *k == key) {
            self.examples.push((key, format!("{what}\n{}", detail())));
        }
    }

    fn assert_none(&self) {
        if self.examples.is_empty() {
            return;
        }
        let kinds: Vec<&str> = self.examples.iter().map(|(k, _)| k.as_str()).collect();
        let shown: Vec<&str> = self.examples.iter().take(4).map(|(_, e)| e.as_str()).collect();
        panic!(
            "{} failing text(s), {} distinct failure(s):\n  {}\n\nExamples:\n\n{}",
            self.count,
            kinds.len(),
            kinds.join("\n  "),
            shown.join("\n\n")
        );
    }
}

#[test]
fn sources_are_valid() {
    for (name, text) in sources() {
        let m = parse_module(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        verify(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn truncated_text_never_panics() {
    let mut failures = Failures::default();
    let mut tally = Tally::default();
    for (name, text) in sources() {
        let bounds: Vec<usize> = text.char_indices().map(|c| c.0).chain([text.len()]).collect();
        let step = (bounds.len() / 400).max(1);
        for (k, &at) in bounds.iter().enumerate().filter(|(k, _)| k % step == 0) {
            let cut = &text[..at];
            if let Err(e) = exercise(cut, &mut tally) {
                failures.add(e, || format!("({name} truncated at char {k})\n--- text ---\n{cut}"));
            }
        }
    }
    eprintln!("truncations: {tally:?}");
    failures.assert_none();
    // Only the full text and cuts inside its final comment-free tail may parse.
    assert!(tally.parsed * 20 < tally.texts, "too many truncated texts parse: {tally:?}");
}

#[test]
fn mutated_text_never_panics() {
    let mut failures = Failures::default();
    let mut tally = Tally::default();
    for (si, (name, text)) in sources().into_iter().enumerate() {
        for k in 0..MUTANTS {
            let seed = (si as u64) << 32 | k;
            let mut rng = Rng::new(seed);
            let mut mutated = text.clone();
            for _ in 0..1 + rng.below(2) {
                mutated = mutate_once(&mut rng, &mutated);
            }
            if let Err(e) = exercise(&mutated, &mut tally) {
                failures.add(e, || format!("({name}, mutation seed {seed:#x})\n--- mutated text ---\n{mutated}"));
            }
        }
    }
    eprintln!("mutants: {tally:?}");
    failures.assert_none();
    // The mutants must reach every stage, or the test proves little.
    assert!(tally.parsed * 10 >= tally.texts, "few mutants parse: {tally:?}");
    assert!(tally.verified * 20 >= tally.texts, "few mutants verify: {tally:?}");
    assert!(tally.ran_ok * 50 >= tally.texts, "few mutants run: {tally:?}");
}

/// The parser's errors point at the offending token, not just somewhere in the text.
#[test]
fn parse_errors_point_at_the_token() {
    let cases = [
        ("module @m {\n  func @f {\n    %0 = frobnicate : f32[]\n    return %0\n  }\n}\n", 3, 10, "unknown op"),
        ("module @m {\n  symbol S <= 0\n}\n", 2, 10, "upper bound"),
        ("module @m {\n  func @f {\n    return %3\n  }\n}\n", 3, 12, "undefined value `%3`"),
        ("module @m {\n  weight @w : f33[2] = synthetic 1\n}\n", 2, 15, "unknown dtype"),
        ("module @m {\n  weight @w : f32[2] = synthetic 1\n", 3, 1, "end of input"),
        ("module @m {\n  compute_dtype = f32 \u{1F600}\n}\n", 2, 23, "unexpected character"),
        ("module @m {\n  weight @w : f32[18446744073709551616] = synthetic 1\n}\n", 2, 19, "64 bits"),
    ];
    for (text, line, col, needle) in cases {
        let e = parse_module(text).expect_err(text).to_string();
        check_error_format(text, &e).unwrap_or_else(|m| panic!("{m}"));
        assert!(e.starts_with(&format!("{line}:{col}: ")), "{e:?} is not at {line}:{col}");
        assert!(e.contains(needle), "{e:?} does not mention {needle:?}");
    }
}
