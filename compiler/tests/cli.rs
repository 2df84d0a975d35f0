//! Integration tests of the `lathe` command line: exit codes, located one-line errors, the op
//! manual, `opt` output that re-parses, and `interp` on safetensors files — including every kind
//! of bad input, none of which may panic or leave an output (or temporary) file behind.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use lathe_interp::synthetic_weight;
use lathe_ir::text::parse_module;
use lathe_ir::{DType, TensorType};
use safetensors::tensor::{serialize, Dtype, TensorView};
use safetensors::SafeTensors;

const TINY_HYBRID: &str = include_str!("../../examples/tiny_hybrid.lir");

/// A module with inputs: `@scale` does exact arithmetic, `@embed` gathers rows of a synthetic
/// table with a dynamic number of token ids.
const SMALL: &str = r#"module @small {
  compute_dtype = f32
  symbol S <= 4
  weight @table : f32[4, 2] = synthetic 7
  func @scale {
    %0 = input "x" : f32[2, 3]
    %1 = constant [1.0, -2.0, 0.5] : f32[3]
    %2 = mul %0, %1 : f32[2, 3]
    %3 = constant 1.0 : f32[]
    %4 = add %2, %3 : f32[2, 3]
    %5 = reduce %4 {kind=sum, axes=[1]} : f32[2]
    return %4 as "y", %5 as "row_sum"
  }
  func @embed {
    %0 = input "ids" : i64[S]
    %1 = weight @table : f32[4, 2]
    %2 = gather %1, %0 : f32[S, 2]
    return %2 as "rows"
  }
}
"#;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lathe-cli-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, data).expect("write a test file");
        p
    }

    /// Names of every entry, hidden ones included.
    fn entries(&self) -> BTreeSet<String> {
        fs::read_dir(&self.0)
            .expect("read the temp dir")
            .map(|e| e.expect("a dir entry").file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `lathe ARGS` in `dir`, so paths in messages are the relative ones given.
fn lathe(dir: &TempDir, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_lathe")).args(args).current_dir(&dir.0).output().expect("run lathe");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_ok(r: &Run) {
    assert_eq!(r.code, Some(0), "lathe failed: {r:?}");
    assert!(r.stderr.is_empty(), "unexpected stderr: {r:?}");
}

/// Exit code 2, exactly one stderr line mentioning every `needle`, no panic text, and the
/// directory exactly as it was (no output, no temporary file).
fn assert_bad_input(dir: &TempDir, args: &[&str], needles: &[&str]) -> String {
    let before = dir.entries();
    let r = lathe(dir, args);
    assert_eq!(r.code, Some(2), "`lathe {}`: want exit code 2: {r:?}", args.join(" "));
    assert!(!r.stderr.contains("panicked"), "`lathe {}` panicked: {}", args.join(" "), r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "`lathe {}`: want one line on stderr, got {:?}", args.join(" "), r.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "`lathe {}`: {:?} does not mention {n:?}", args.join(" "), lines[0]);
    }
    assert!(!dir.path("out.safetensors").exists(), "`lathe {}` left out.safetensors behind", args.join(" "));
    assert_eq!(dir.entries(), before, "`lathe {}` left files behind", args.join(" "));
    lines[0].to_string()
}

/// Writes one tensor to a safetensors file.
fn write_tensor(dir: &TempDir, file: &str, name: &str, dtype: Dtype, shape: &[usize], data: &[u8]) -> PathBuf {
    let view = TensorView::new(dtype, shape.to_vec(), data).expect("a valid view");
    let bytes = serialize([(name, view)], None).expect("serialize");
    dir.write(file, bytes)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn read_f32(st: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("tensor {name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let v = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    (t.shape().to_vec(), v)
}

#[test]
fn verify_accepts_the_example() {
    let dir = TempDir::new("verify_ok");
    dir.write("tiny_hybrid.lir", TINY_HYBRID);
    let r = lathe(&dir, &["verify", "tiny_hybrid.lir"]);
    assert_ok(&r);
    assert_eq!(r.stdout, "tiny_hybrid.lir: ok\n");
}

#[test]
fn verify_locates_parse_errors() {
    let dir = TempDir::new("verify_parse");
    let text = "module @bad {\n  func @main {\n    %0 = constant 1.0 : f32[2]\n    %1 = frobnicate %0 : f32[2]\n    return %1\n  }\n}\n";
    dir.write("bad.lir", text);
    let line = assert_bad_input(&dir, &["verify", "bad.lir"], &["unknown op `frobnicate`"]);
    assert!(line.starts_with("bad.lir:4:10: "), "{line:?}");
    // A lexer error is located too.
    dir.write("lex.lir", "module @bad {\n  compute_dtype = f32 $\n}\n");
    let line = assert_bad_input(&dir, &["verify", "lex.lir"], &["unexpected character '$'"]);
    assert!(line.starts_with("lex.lir:2:23: "), "{line:?}");
    // So is an error at the end of a truncated file.
    dir.write("cut.lir", "module @bad {\n  func @main {\n");
    let line = assert_bad_input(&dir, &["verify", "cut.lir"], &["end of input"]);
    assert!(line.starts_with("cut.lir:3:1: "), "{line:?}");
}

#[test]
fn verify_locates_type_errors() {
    let dir = TempDir::new("verify_types");
    let text = "module @bad {\n  func @main {\n    %0 = constant 1.0 : f32[2, 3]\n    %1 = constant 2.0 : f32[4]\n    %2 = add %0, %1 : f32[2, 3]\n    return %2 as \"y\"\n  }\n}\n";
    dir.write("bad.lir", text);
    let line = assert_bad_input(&dir, &["verify", "bad.lir"], &["`%2 = add %0, %1 : f32[2, 3]`", "do not broadcast"]);
    assert!(line.starts_with("bad.lir:5:5: "), "{line:?}");
    // An error inside a fusion body points at the body's node, not at the fusion.
    let text = "module @bad {\n  func @main {\n    %0 = constant 1.0 : f32[2]\n    %1 = fusion %0 {strategy=elementwise} {\n      %0 = input \"a\" : f32[2]\n      %1 = exp %0 : f32[3]\n      return %1\n    } : f32[3]\n    return %1\n  }\n}\n";
    dir.write("fused.lir", text);
    let line = assert_bad_input(&dir, &["verify", "fused.lir"], &["%1 › %1 (`%1 = exp %0 : f32[3]`)", "f32[3]"]);
    assert!(line.starts_with("fused.lir:6:7: "), "{line:?}");
    // A missing or non-UTF-8 file is bad input too.
    assert_bad_input(&dir, &["verify", "missing.lir"], &["missing.lir"]);
    dir.write("latin1.lir", b"module @m \xff {\n}\n");
    assert_bad_input(&dir, &["verify", "latin1.lir"], &["latin1.lir"]);
}

#[test]
fn ops_lists_every_op_of_the_manual() {
    let dir = TempDir::new("ops");
    let r = lathe(&dir, &["ops"]);
    assert_ok(&r);
    let lines: BTreeSet<&str> = r.stdout.lines().collect();
    for d in lathe_ir::manual::MANUAL {
        assert!(lines.contains(d.name), "`lathe ops` has no entry line for `{}`", d.name);
        assert!(r.stdout.contains(d.syntax), "`lathe ops` does not show the syntax of `{}`", d.name);
    }
    // And every op the parser knows has an entry.
    for name in lathe_ir::text::parse::op_names() {
        assert!(lines.contains(name), "`lathe ops` has no entry line for parser op `{name}`");
    }
}

#[test]
fn opt_prints_ir_that_reparses_to_the_same_module() {
    let dir = TempDir::new("opt");
    dir.write("tiny_hybrid.lir", TINY_HYBRID);
    let r = lathe(&dir, &["opt", "tiny_hybrid.lir", "--pipeline", ""]);
    assert_ok(&r);
    let original = parse_module(TINY_HYBRID).expect("the example parses");
    let printed = parse_module(&r.stdout).unwrap_or_else(|e| panic!("`lathe opt` output does not parse: {e}"));
    assert_eq!(printed, original.renumbered());
    // `-o` writes the same text, and that text is a fixed point.
    let stdout = r.stdout;
    let r = lathe(&dir, &["opt", "tiny_hybrid.lir", "--pipeline", "", "-o", "out.lir"]);
    assert_ok(&r);
    let written = fs::read_to_string(dir.path("out.lir")).expect("opt -o wrote out.lir");
    assert_eq!(written, stdout);
    let r2 = lathe(&dir, &["opt", "out.lir", "--pipeline", ""]);
    assert_ok(&r2);
    assert_eq!(r2.stdout, written);
    assert_eq!(dir.entries(), BTreeSet::from(["out.lir".to_string(), "tiny_hybrid.lir".to_string()]));
}

#[test]
fn opt_rejects_an_unknown_pass() {
    let dir = TempDir::new("opt_unknown");
    dir.write("tiny_hybrid.lir", TINY_HYBRID);
    let args = ["opt", "tiny_hybrid.lir", "--pipeline", "no-such-pass", "-o", "out.lir"];
    assert_bad_input(&dir, &args, &["no-such-pass"]);
    assert!(!dir.path("out.lir").exists());
}

#[test]
fn interp_runs_the_example() {
    let dir = TempDir::new("interp_example");
    dir.write("tiny_hybrid.lir", TINY_HYBRID);
    let r = lathe(&dir, &["interp", "tiny_hybrid.lir", "--out", "out.safetensors"]);
    assert_ok(&r);
    assert_eq!(dir.entries(), BTreeSet::from(["out.safetensors".to_string(), "tiny_hybrid.lir".to_string()]));
    let bytes = fs::read(dir.path("out.safetensors")).expect("out.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("a valid safetensors file");
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    assert_eq!(names, ["conv_state", "k_cache", "logits", "next_token", "ssm_state"]);
    let (shape, logits) = read_f32(&st, "logits");
    assert_eq!(shape, [1, 6, 32]);
    assert!(logits.iter().all(|v| v.is_finite()), "non-finite logits");
    for (name, want) in
        [("ssm_state", [1, 4, 4, 4].as_slice()), ("conv_state", &[1, 3, 32]), ("k_cache", &[1, 8, 2, 4])]
    {
        assert_eq!(read_f32(&st, name).0, want, "{name}");
    }
    // Greedy sampling picks the argmax of the last position's logits.
    let next = st.tensor("next_token").expect("next_token");
    assert_eq!((next.dtype(), next.shape()), (Dtype::I64, [1].as_slice()));
    let token = i64::from_le_bytes(next.data().try_into().expect("8 bytes"));
    let last = &logits[5 * 32..];
    let argmax = (0..32).fold(0, |b, i| if last[i] > last[b] { i } else { b });
    assert_eq!(token, argmax as i64);
    // The summary on stdout names every output with its type.
    assert!(r.stdout.contains("logits: f32[1, 6, 32]"), "{}", r.stdout);
    assert!(r.stdout.contains("next_token: i64[1]"), "{}", r.stdout);
}

#[test]
fn interp_reads_inputs_and_computes_by_hand_values() {
    let dir = TempDir::new("interp_inputs");
    dir.write("small.lir", SMALL);
    write_tensor(&dir, "x.safetensors", "x", Dtype::F32, &[2, 3], &f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    let r = lathe(
        &dir,
        &["interp", "small.lir", "--func", "scale", "--input", "x=x.safetensors", "--out", "out.safetensors"],
    );
    assert_ok(&r);
    let bytes = fs::read(dir.path("out.safetensors")).expect("out.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("a valid safetensors file");
    // y = x * [1, -2, 0.5] + 1, row sums: exact in f32.
    assert_eq!(read_f32(&st, "y"), (vec![2, 3], vec![2.0, -3.0, 2.5, 5.0, -9.0, 4.0]));
    assert_eq!(read_f32(&st, "row_sum"), (vec![2], vec![1.5, 0.0]));

    // A file whose only tensor has another name is accepted; the symbol S binds to 3.
    write_tensor(&dir, "ids.safetensors", "tokens", Dtype::I64, &[3], &i64_bytes(&[3, 0, 3]));
    let r = lathe(
        &dir,
        &["interp", "small.lir", "--func", "embed", "--input", "ids=ids.safetensors", "--out", "rows.safetensors"],
    );
    assert_ok(&r);
    let bytes = fs::read(dir.path("rows.safetensors")).expect("rows.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("a valid safetensors file");
    let (shape, rows) = read_f32(&st, "rows");
    assert_eq!(shape, [3, 2]);
    let table = synthetic_weight(&TensorType::fixed(DType::F32, &[4, 2]), 7).expect("synthetic table");
    let t = table.floats();
    assert_eq!(rows, [t[6], t[7], t[0], t[1], t[6], t[7]]);
}

#[test]
fn interp_rejects_bad_inputs_cleanly() {
    let dir = TempDir::new("interp_bad");
    dir.write("small.lir", SMALL);
    dir.write("tiny_hybrid.lir", TINY_HYBRID);
    let x = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    write_tensor(&dir, "x.safetensors", "x", Dtype::F32, &[2, 3], &x);
    write_tensor(&dir, "x_t.safetensors", "x", Dtype::F32, &[3, 2], &x);
    write_tensor(&dir, "x_i64.safetensors", "x", Dtype::I64, &[2, 3], &i64_bytes(&[1, 2, 3, 4, 5, 6]));
    write_tensor(&dir, "ids_oob.safetensors", "ids", Dtype::I64, &[2], &i64_bytes(&[1, 4]));
    write_tensor(&dir, "ids_neg.safetensors", "ids", Dtype::I64, &[1], &i64_bytes(&[-1]));
    write_tensor(&dir, "ids_long.safetensors", "ids", Dtype::I64, &[5], &i64_bytes(&[0, 1, 2, 3, 0]));
    let two = serialize(
        [
            ("a", TensorView::new(Dtype::F32, vec![2, 3], &x).expect("view")),
            ("b", TensorView::new(Dtype::F32, vec![2, 3], &x).expect("view")),
        ],
        None,
    )
    .expect("serialize");
    dir.write("two.safetensors", two);
    let good = fs::read(dir.path("x.safetensors")).expect("x.safetensors");
    dir.write("truncated.safetensors", &good[..good.len() - 5]);
    dir.write("header_only.safetensors", &good[..12]);
    dir.write("garbage.safetensors", b"this is not a safetensors file at all");
    dir.write("empty.safetensors", b"");

    let interp = |func: &'static str, inputs: &[&'static str]| {
        let mut args = vec!["interp", "small.lir", "--func", func, "--out", "out.safetensors"];
        for i in inputs {
            args.extend(["--input", i]);
        }
        args
    };
    // A missing, misshapen or mistyped input names the input.
    assert_bad_input(&dir, &interp("scale", &[]), &["small.lir", "input \"x\"", "missing"]);
    assert_bad_input(&dir, &interp("scale", &["x=x_t.safetensors"]), &["input \"x\"", "f32[2, 3]"]);
    assert_bad_input(&dir, &interp("scale", &["x=x_i64.safetensors"]), &["input \"x\"", "f32[2, 3]"]);
    assert_bad_input(&dir, &interp("scale", &["x=x.safetensors", "y=x.safetensors"]), &["input \"y\""]);
    // A symbol above its bound, and token ids outside the vocabulary.
    assert_bad_input(&dir, &interp("embed", &["ids=ids_long.safetensors"]), &["input \"ids\"", "S = 5"]);
    assert_bad_input(&dir, &interp("embed", &["ids=ids_oob.safetensors"]), &["small.lir", "gather", "index 4"]);
    assert_bad_input(&dir, &interp("embed", &["ids=ids_neg.safetensors"]), &["gather", "index -1"]);
    // Unreadable files name the file.
    for bad in ["truncated", "header_only", "garbage", "empty"] {
        let spec: &'static str = Box::leak(format!("x={bad}.safetensors").into_boxed_str());
        assert_bad_input(&dir, &interp("scale", &[spec]), &[&format!("{bad}.safetensors")]);
    }
    assert_bad_input(&dir, &interp("scale", &["x=nowhere.safetensors"]), &["nowhere.safetensors"]);
    assert_bad_input(&dir, &interp("scale", &["x=two.safetensors"]), &["two.safetensors", "\"x\""]);
    assert_bad_input(&dir, &interp("scale", &["x.safetensors"]), &["NAME=FILE"]);
    // An unknown function names it and the ones there are.
    assert_bad_input(&dir, &interp("nope", &[]), &["@nope", "@scale", "@embed"]);
    // The same input twice is ambiguous.
    assert_bad_input(&dir, &interp("scale", &["x=x.safetensors", "x=x.safetensors"]), &["\"x\"", "twice"]);
    // A missing IR file, and an output directory that does not exist.
    assert_bad_input(&dir, &["interp", "absent.lir", "--out", "out.safetensors"], &["absent.lir"]);
    let args = ["interp", "tiny_hybrid.lir", "--out", "no/such/dir/out.safetensors"];
    assert_bad_input(&dir, &args, &["no/such/dir/out.safetensors"]);
}

#[test]
fn interp_rejects_results_that_share_a_tensor_name() {
    // The unnamed first result is written as `out0`, the name the second one has.
    let dir = TempDir::new("interp_dup");
    let text = "module @m {\n  func @main {\n    %0 = constant 1.0 : f32[2]\n    %1 = constant 2.0 : f32[3]\n    return %0, %1 as \"out0\"\n  }\n}\n";
    dir.write("dup.lir", text);
    assert_bad_input(&dir, &["interp", "dup.lir", "--out", "out.safetensors"], &["out.safetensors", "\"out0\""]);
}

#[test]
fn interp_rejects_a_checkpoint_it_cannot_read() {
    let dir = TempDir::new("interp_ckpt");
    let text = "module @ck {\n  weight @w : f32[2] = checkpoint \"w.safetensors\" \"w\"\n  func @main {\n    %0 = weight @w : f32[2]\n    return %0 as \"w\"\n  }\n}\n";
    dir.write("ck.lir", text);
    let run = ["interp", "ck.lir", "--out", "out.safetensors"];
    assert_bad_input(&dir, &run, &["@w", "w.safetensors"]);
    write_tensor(&dir, "w.safetensors", "w", Dtype::F32, &[3], &f32_bytes(&[1.0, 2.0, 3.0]));
    assert_bad_input(&dir, &run, &["@w", "f32[2]"]);
    write_tensor(&dir, "w.safetensors", "w", Dtype::F32, &[2], &f32_bytes(&[1.5, -2.0]));
    assert_ok(&lathe(&dir, &run));
    let bytes = fs::read(dir.path("out.safetensors")).expect("out.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("valid");
    assert_eq!(read_f32(&st, "w"), (vec![2], vec![1.5, -2.0]));
}

/// The bundled example is what the README and the demo say it is: a Mamba-2 block (conv, SSD
/// scan, gated norm), a GQA attention block writing a KV cache, a relu² MLP and greedy sampling.
#[test]
fn the_example_holds_the_blocks_the_readme_names() {
    let m = parse_module(TINY_HYBRID).expect("the example parses");
    let mut ops = BTreeSet::new();
    for f in &m.functions {
        for &n in &f.graph.order {
            ops.insert(f.graph.nodes[n].op.name());
        }
    }
    for op in ["conv1d.causal", "scan.ssd", "rms_norm", "attention", "scatter_cache", "relu", "square", "sample"] {
        assert!(ops.contains(op), "examples/tiny_hybrid.lir has no `{op}`");
    }
}

#[test]
fn verify_holds_a_file_to_its_stage() {
    let dir = TempDir::new("verify_stage");
    // A module that says it is scheduled but has a node outside any fusion group.
    let text = "module @m {\n  compute_dtype = f32\n  stage = scheduled\n  func @main {\n    %0 = input \"x\" : f32[4]\n    %1 = exp %0 : f32[4]\n    return %1 as \"y\"\n  }\n}\n";
    dir.write("staged.lir", text);
    let line = assert_bad_input(&dir, &["verify", "staged.lir"], &["`exp` is in no fusion group", "scheduled"]);
    assert!(line.starts_with("staged.lir:6:5: "), "{line:?}");
    // Without the stage line the same module is a valid graph; a pass that only takes graphs
    // refuses a scheduled module before it starts.
    dir.write("graph.lir", text.replace("  stage = scheduled\n", ""));
    assert_ok(&lathe(&dir, &["verify", "graph.lir"]));
    let r = lathe(&dir, &["opt", "graph.lir", "--pipeline", "schedule-hybrid", "-o", "scheduled.lir"]);
    assert_ok(&r);
    assert!(fs::read_to_string(dir.path("scheduled.lir")).expect("written").contains("stage = scheduled"));
    assert_bad_input(
        &dir,
        &["opt", "scheduled.lir", "--pipeline", "quantize-fp8"],
        &["pass `quantize-fp8` runs on a module at stage graph, but this module is scheduled"],
    );
}
