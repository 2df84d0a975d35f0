//! Bad input, tried as a user would: configs, checkpoint files, output paths, flags and IR text
//! run through the `lathe` binary. Every case that must be refused ends in exit code 2 with one
//! non-empty line on stderr, no panic, no abort, no hang, no output file and no temporary file
//! left, and inputs untouched; every valid case succeeds. The outcome of each case is one of
//! those, and the test fails on any bad one.
//!
//! `scripts/reliability.sh` runs this test with `LATHE_RELIABILITY_TABLE=docs/reliability.md`,
//! which writes the table of classes, cases and outcomes there.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const LATHE: &str = env!("CARGO_BIN_EXE_lathe");
/// A run longer than this is a hang (the slowest valid case takes well under a second).
const HANG: Duration = Duration::from_secs(60);

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// What a case must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Exit 2 with one clear line.
    Refuse,
    /// Exit 0.
    Accept,
}

/// What a case did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Refused cleanly (as expected).
    CleanError,
    /// Succeeded (as expected).
    Succeeded,
    /// Panicked.
    Panic,
    /// Killed by a signal (failed allocation, stack overflow).
    Abort,
    /// Ran past [`HANG`].
    Hang,
    /// Exited 0 on input it must refuse.
    WrongAccept,
    /// Refused a valid input, or refused without a one-line message, or left output behind or
    /// changed an input.
    Unclean,
}

struct Case {
    class: &'static str,
    name: String,
    args: Vec<OsString>,
    expect: Expect,
    /// Files that must be left as they were (path, bytes before).
    keep: Vec<PathBuf>,
    /// A file that must not exist after a refusal.
    out: Option<PathBuf>,
    /// `args` are those of `sh` (see [`Case::under_rlimit`]).
    shell: bool,
}

impl Case {
    /// Runs under `ulimit -v` of this many kB (the address-space rlimit), through `sh`.
    fn under_rlimit(mut self, kb: u64) -> Case {
        let mut a = args(&[&"-c", &format!("ulimit -v {kb} && exec \"$0\" \"$@\""), &LATHE]);
        a.append(&mut self.args);
        self.args = a;
        self.name = format!("{} (ulimit -v {kb})", self.name);
        self.shell = true;
        self
    }
}

struct Run {
    outcome: Outcome,
    stderr: String,
}

fn run(case: &Case) -> Run {
    let before: Vec<Option<Vec<u8>>> = case.keep.iter().map(|p| fs::read(p).ok()).collect();
    let mut child = Command::new(if case.shell { "sh" } else { LATHE })
        .args(&case.args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn lathe: {e}"));
    let mut pipe = child.stderr.take().expect("stderr");
    // Read stderr on a thread so a chatty child never blocks on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(s) => break Some(s),
            None if t0.elapsed() > HANG => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let stderr = reader.join().unwrap_or_default();
    let outcome = match status {
        None => Outcome::Hang,
        Some(_) if stderr.contains("panicked") => Outcome::Panic,
        Some(s) if s.signal().is_some() => Outcome::Abort,
        Some(s) if s.code() == Some(101) => Outcome::Panic,
        Some(s) => {
            let changed = case.keep.iter().zip(&before).any(|(p, b)| fs::read(p).ok() != *b);
            match (case.expect, s.code()) {
                (Expect::Accept, Some(0)) if !changed => Outcome::Succeeded,
                (Expect::Refuse, Some(0)) => Outcome::WrongAccept,
                (Expect::Refuse, Some(2)) => {
                    let lines: Vec<&str> = stderr.trim().lines().collect();
                    let left = case.out.as_ref().is_some_and(|o| o.exists());
                    let strays = case.out.as_ref().and_then(|o| o.parent()).is_some_and(has_temp_files);
                    if lines.len() == 1 && lines[0].len() > 8 && !left && !strays && !changed {
                        Outcome::CleanError
                    } else {
                        Outcome::Unclean
                    }
                }
                _ => Outcome::Unclean,
            }
        }
    };
    Run { outcome, stderr }
}

fn has_temp_files(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|d| d.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().ends_with(".tmp")))
}

/// A scratch directory for this test run.
fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("lathe-reliability-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("scratch");
    d
}

/// A copy of fixture model `name` under `root/tag`, with the listed files only.
fn copy_model(root: &Path, name: &str, tag: &str, files: &[&str]) -> PathBuf {
    let dir = root.join(tag);
    fs::create_dir_all(&dir).expect("mkdir");
    for f in files {
        fs::copy(fixtures().join("models").join(name).join(f), dir.join(f)).expect("copy");
    }
    dir
}

fn args(items: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    items.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// Config classes: every field a frontend reads, set to values out of type or range; and the
/// examples of issue L4b.
fn config_cases(root: &Path, cases: &mut Vec<Case>) {
    let counts = [
        json!(0),
        json!(-1),
        json!(1.5),
        json!("abc"),
        json!([]),
        json!({}),
        json!(true),
        json!(u64::MAX),
        json!(1u64 << 40),
    ];
    let floats = [json!(0), json!(-1e-5), json!("abc"), json!([]), json!({}), json!("NaN"), json!("Infinity")];
    let families: [(&str, &[&str], &[&str]); 3] = [
        (
            "nemotron_h_tiny",
            &[
                "hidden_size",
                "vocab_size",
                "num_attention_heads",
                "num_key_value_heads",
                "head_dim",
                "intermediate_size",
                "mamba_num_heads",
                "mamba_head_dim",
                "n_groups",
                "ssm_state_size",
                "conv_kernel",
                "chunk_size",
                "max_position_embeddings",
                "num_hidden_layers",
            ],
            &["layer_norm_epsilon"],
        ),
        (
            "mamba2_tiny",
            &[
                "hidden_size",
                "vocab_size",
                "num_heads",
                "head_dim",
                "expand",
                "n_groups",
                "state_size",
                "conv_kernel",
                "chunk_size",
                "num_hidden_layers",
            ],
            &["layer_norm_epsilon"],
        ),
        (
            "qwen2_tiny",
            &[
                "hidden_size",
                "vocab_size",
                "num_attention_heads",
                "num_key_value_heads",
                "intermediate_size",
                "max_position_embeddings",
                "num_hidden_layers",
            ],
            &["rms_norm_eps"],
        ),
    ];
    let mut n = 0;
    let mut add = |name: String, cfg: &Value, cases: &mut Vec<Case>| {
        n += 1;
        let dir = root.join(format!("cfg{n}"));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("config.json"), cfg.to_string()).expect("config");
        cases.push(Case {
            class: "config: field type and range",
            name,
            args: args(&[&"inspect", &dir, &"--stats"]),
            expect: Expect::Refuse,
            keep: vec![],
            out: None,
            shell: false,
        });
    };
    for (model, ints, eps) in families {
        let text = fs::read_to_string(fixtures().join("models").join(model).join("config.json")).expect("config");
        let base: Value = serde_json::from_str(&text.replace("{\"__float__\": \"Infinity\"}", "1e30")).expect("json");
        for field in ints.iter().chain(eps) {
            let values = if eps.contains(field) { &floats[..] } else { &counts[..] };
            for v in values {
                let mut cfg = base.clone();
                cfg[*field] = v.clone();
                add(format!("{model}: {field} = {v}"), &cfg, cases);
            }
        }
    }
    // The examples of the issue, and malformed optional structures.
    let nem: Value = serde_json::from_str(
        &fs::read_to_string(fixtures().join("models/nemotron_h_tiny/config.json")).expect("config"),
    )
    .expect("json");
    let qwen: Value =
        serde_json::from_str(&fs::read_to_string(fixtures().join("models/qwen2_tiny/config.json")).expect("config"))
            .expect("json");
    let edits: Vec<(&str, &Value, &str, Value)> = vec![
        ("nemotron_h", &nem, "time_step_limit", json!([-5, -1])),
        ("nemotron_h", &nem, "time_step_limit", json!(["NaN", "NaN"])),
        ("nemotron_h", &nem, "time_step_limit", json!([0.5, 0.1])),
        ("nemotron_h", &nem, "time_step_limit", json!([1])),
        ("nemotron_h", &nem, "time_step_limit", json!("wide")),
        ("nemotron_h", &nem, "layers_block_type", json!(vec!["mamba"; 100_000])),
        ("nemotron_h", &nem, "layers_block_type", json!([])),
        ("nemotron_h", &nem, "layers_block_type", json!(["mamba", 3])),
        ("nemotron_h", &nem, "layers_block_type", json!(["transformer"])),
        ("nemotron_h", &nem, "mlp_hidden_act", json!("gelu")),
        ("nemotron_h", &nem, "model_type", json!("gpt2")),
        ("nemotron_h", &nem, "model_type", json!(7)),
        ("nemotron_h", &nem, "dtype", json!("int8")),
        ("qwen2", &qwen, "rope_parameters", json!(5)),
        ("qwen2", &qwen, "rope_parameters", json!("yarn")),
        ("qwen2", &qwen, "rope_parameters", json!({"rope_theta": "abc", "rope_type": "default"})),
        ("qwen2", &qwen, "rope_parameters", json!({"rope_theta": -1.0, "rope_type": "default"})),
        ("qwen2", &qwen, "rope_parameters", json!({"rope_theta": 1e4, "rope_type": 3})),
        ("qwen2", &qwen, "rope_parameters", json!({"rope_theta": 1e4, "rope_type": "yarn"})),
        ("qwen2", &qwen, "rope_scaling", json!([1, 2])),
        ("qwen2", &qwen, "rope_theta", json!("abc")),
        ("qwen2", &qwen, "head_dim", json!(0)),
        ("qwen2", &qwen, "use_sliding_window", json!("yes")),
        ("qwen2", &qwen, "tie_word_embeddings", json!(1)),
    ];
    for (family, base, field, v) in edits {
        let mut cfg = base.clone();
        if field == "rope_theta" || field == "rope_scaling" {
            cfg.as_object_mut().expect("object").remove("rope_parameters");
        }
        cfg[field] = v.clone();
        let shown = v.to_string();
        let shown = if shown.len() > 40 { format!("{}… ({} bytes)", &shown[..40], shown.len()) } else { shown };
        add(format!("{family}: {field} = {shown}"), &cfg, cases);
    }
    for (tag, text) in [
        ("not JSON", "{\"model_type\": "),
        ("an array", "[1, 2]"),
        ("empty", ""),
        ("no model_type", "{}"),
        ("not UTF-8", "\u{feff}"),
    ] {
        n += 1;
        let dir = root.join(format!("cfg{n}"));
        fs::create_dir_all(&dir).expect("mkdir");
        let bytes: Vec<u8> = if tag == "not UTF-8" { vec![b'{', 0xff, b'}'] } else { text.as_bytes().to_vec() };
        fs::write(dir.join("config.json"), bytes).expect("config");
        cases.push(Case {
            class: "config: file",
            name: format!("config.json {tag}"),
            args: args(&[&"inspect", &dir, &"--stats"]),
            expect: Expect::Refuse,
            keep: vec![],
            out: None,
            shell: false,
        });
    }
    // config.json that is not a regular file, or too large.
    type Make<'a> = &'a dyn Fn(&Path);
    let special: [(&str, Make); 5] = [
        ("a directory", &|p| fs::create_dir(p).expect("mkdir")),
        ("a dangling link", &|p| std::os::unix::fs::symlink("/nonexistent/config.json", p).expect("link")),
        ("a link to /dev/zero", &|p| std::os::unix::fs::symlink("/dev/zero", p).expect("link")),
        ("a FIFO", &|p| {
            let ok = Command::new("mkfifo").arg(p).status().is_ok_and(|s| s.success());
            assert!(ok, "mkfifo");
        }),
        ("17 MB", &|p| fs::write(p, format!("{{\"pad\": \"{}\"}}", "x".repeat(17 << 20))).expect("write")),
    ];
    for (tag, make) in special {
        n += 1;
        let dir = root.join(format!("cfg{n}"));
        fs::create_dir_all(&dir).expect("mkdir");
        make(&dir.join("config.json"));
        cases.push(Case {
            class: "config: file",
            name: format!("config.json is {tag}"),
            args: args(&[&"inspect", &dir, &"--stats"]),
            expect: Expect::Refuse,
            keep: vec![],
            out: None,
            shell: false,
        });
    }
}

/// Rewrites the header of a safetensors file with `edit` applied to its JSON text.
fn edit_header_text(path: &Path, edit: impl Fn(&str) -> String) {
    let bytes = fs::read(path).expect("read");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8")) as usize;
    let text = edit(std::str::from_utf8(&bytes[8..8 + n]).expect("utf8"));
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    fs::write(path, out).expect("write");
}

/// Checkpoint-file classes: weight files that are there but unreadable, for every command.
fn checkpoint_cases(root: &Path, cases: &mut Vec<Case>) {
    let tiny = ["config.json", "model.safetensors"];
    type Make = Box<dyn Fn(&Path)>;
    let broken: Vec<(&str, Make)> = vec![
        (
            "model.safetensors is a dangling link",
            Box::new(|d: &Path| {
                fs::remove_file(d.join("model.safetensors")).expect("rm");
                std::os::unix::fs::symlink(d.join("gone.safetensors"), d.join("model.safetensors")).expect("link");
            }),
        ),
        (
            "model.safetensors is a directory",
            Box::new(|d: &Path| {
                fs::remove_file(d.join("model.safetensors")).expect("rm");
                fs::create_dir(d.join("model.safetensors")).expect("mkdir");
            }),
        ),
        (
            "model.safetensors is a FIFO",
            Box::new(|d: &Path| {
                fs::remove_file(d.join("model.safetensors")).expect("rm");
                assert!(Command::new("mkfifo").arg(d.join("model.safetensors")).status().is_ok_and(|s| s.success()));
            }),
        ),
        (
            "model.safetensors links to /dev/zero",
            Box::new(|d: &Path| {
                fs::remove_file(d.join("model.safetensors")).expect("rm");
                std::os::unix::fs::symlink("/dev/zero", d.join("model.safetensors")).expect("link");
            }),
        ),
        (
            "only pytorch_model.bin",
            Box::new(|d: &Path| {
                fs::rename(d.join("model.safetensors"), d.join("pytorch_model.bin")).expect("mv");
            }),
        ),
        (
            "a shard without its index",
            Box::new(|d: &Path| {
                fs::rename(d.join("model.safetensors"), d.join("model-00001-of-00002.safetensors")).expect("mv");
            }),
        ),
        (
            "the index is a directory",
            Box::new(|d: &Path| fs::create_dir(d.join("model.safetensors.index.json")).expect("mkdir")),
        ),
        (
            "a tensor named twice in the header",
            Box::new(|d: &Path| {
                edit_header_text(&d.join("model.safetensors"), |h| {
                    let inner = h.trim_end().trim_end_matches('}');
                    let first = inner.trim_start_matches('{').split("},").next().unwrap_or("").to_string();
                    format!("{inner},{first}}}}}")
                })
            }),
        ),
        (
            "two tensors overlap",
            Box::new(|d: &Path| {
                let p = d.join("model.safetensors");
                let bytes = fs::read(&p).expect("read");
                let n = u64::from_le_bytes(bytes[..8].try_into().expect("8")) as usize;
                let mut h: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("json");
                let map = h.as_object_mut().expect("object");
                let names: Vec<String> = map
                    .iter()
                    .filter(|(k, v)| *k != "__metadata__" && v["shape"] == json!([32]))
                    .map(|(k, _)| k.clone())
                    .take(2)
                    .collect();
                let first = map[&names[0]]["data_offsets"].clone();
                map.get_mut(&names[1]).expect("second")["data_offsets"] = first;
                let text = h.to_string();
                let mut out = (text.len() as u64).to_le_bytes().to_vec();
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(&bytes[8 + n..]);
                fs::write(&p, out).expect("write");
            }),
        ),
        (
            "a truncated file",
            Box::new(|d: &Path| {
                let p = d.join("model.safetensors");
                let bytes = fs::read(&p).expect("read");
                fs::write(&p, &bytes[..bytes.len() / 2]).expect("write");
            }),
        ),
    ];
    for (i, (tag, make)) in broken.iter().enumerate() {
        let dir = copy_model(root, "nemotron_h_tiny", &format!("ck{i}"), &tiny);
        make(&dir);
        let out = root.join(format!("ck{i}.out.safetensors"));
        for (cmd, extra) in [
            ("eval", args(&[&"--tokens", &"1,2", &"--out", &out])),
            ("bench", args(&[&"--prompt", &"2", &"--decode", &"1", &"--runs", &"1"])),
            ("inspect", args(&[&"--stats"])),
        ] {
            let mut a = args(&[&cmd, &dir]);
            a.extend(extra);
            cases.push(Case {
                class: "checkpoint files",
                name: format!("{cmd}: {tag}"),
                args: a,
                expect: Expect::Refuse,
                keep: vec![],
                out: Some(out.clone()),
                shell: false,
            });
        }
    }
    // No weight files at all: fine for inspect and for `--shape-only`, refused otherwise.
    let bare = copy_model(root, "nemotron_h_tiny", "bare", &["config.json"]);
    let out = root.join("bare.out.safetensors");
    for (a, expect) in [
        (args(&[&"inspect", &bare, &"--stats"]), Expect::Accept),
        (args(&[&"eval", &bare, &"--tokens", &"1,2", &"--out", &out]), Expect::Refuse),
        (args(&[&"bench", &bare, &"--prompt", &"2", &"--decode", &"1", &"--runs", &"1"]), Expect::Refuse),
        (args(&[&"eval", &bare, &"--tokens", &"1,2", &"--out", &out, &"--shape-only"]), Expect::Accept),
        (
            args(&[&"bench", &bare, &"--prompt", &"2", &"--decode", &"1", &"--runs", &"1", &"--shape-only"]),
            Expect::Accept,
        ),
    ] {
        let name = a.iter().map(|s| s.to_string_lossy().replace(&*bare.to_string_lossy(), "DIR")).collect::<Vec<_>>();
        let name = name.join(" ").replace(&*out.to_string_lossy(), "OUT");
        cases.push(Case {
            class: "checkpoint files",
            name: format!("no weight files: {name}"),
            args: a,
            expect,
            keep: vec![],
            out: if expect == Expect::Refuse { Some(out.clone()) } else { None },
            shell: false,
        });
    }
    // The shape-only 56B config would need 224 GB of f32 weights: refused before allocating.
    let big = fixtures().join("configs/nemotron-h-56b-base-8k");
    let out = root.join("big.out.safetensors");
    cases.push(Case {
        class: "memory",
        name: "eval --shape-only of the 56B config (224 GB as f32)".into(),
        args: args(&[&"eval", &big, &"--tokens", &"1", &"--out", &out, &"--shape-only"]),
        expect: Expect::Refuse,
        keep: vec![],
        out: Some(out),
        shell: false,
    });
    // 2.1 GB of f32 weights under a 1 GB address-space rlimit: refused, not aborted.
    let wide = root.join("wide");
    fs::create_dir_all(&wide).expect("mkdir");
    let mut cfg: Value = serde_json::from_str(
        &fs::read_to_string(fixtures().join("models/nemotron_h_tiny/config.json")).expect("config"),
    )
    .expect("json");
    cfg["hidden_size"] = json!(2048);
    cfg["vocab_size"] = json!(131_072);
    fs::write(wide.join("config.json"), cfg.to_string()).expect("config");
    let out = root.join("wide.out.safetensors");
    cases.push(
        Case {
            class: "memory",
            name: "eval --shape-only of 2.1 GB of f32 weights".into(),
            args: args(&[&"eval", &wide, &"--tokens", &"1", &"--out", &out, &"--shape-only"]),
            expect: Expect::Refuse,
            keep: vec![],
            out: Some(out),
            shell: false,
        }
        .under_rlimit(1 << 20),
    );
}

/// Output classes: an output that is an input (directly, through a symbolic or a hard link).
fn output_cases(root: &Path, cases: &mut Vec<Case>) {
    let dir = copy_model(root, "nemotron_h_tiny", "outs", &["config.json", "model.safetensors"]);
    std::os::unix::fs::symlink(dir.join("config.json"), root.join("outs-link.json")).expect("link");
    fs::hard_link(dir.join("model.safetensors"), root.join("outs-hard.safetensors")).expect("hard link");
    let keep = vec![dir.join("config.json"), dir.join("model.safetensors")];
    for (tag, out) in [
        ("config.json", dir.join("config.json")),
        ("model.safetensors", dir.join("model.safetensors")),
        ("a symbolic link to config.json", root.join("outs-link.json")),
        ("a hard link to model.safetensors", root.join("outs-hard.safetensors")),
    ] {
        cases.push(Case {
            class: "outputs",
            name: format!("eval --out {tag}"),
            args: args(&[&"eval", &dir, &"--tokens", &"1,2", &"--out", &out]),
            expect: Expect::Refuse,
            keep: keep.clone(),
            out: None,
            shell: false,
        });
    }
    let lir = root.join("outs.lir");
    fs::copy(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/tiny_hybrid.lir"), &lir).expect("copy");
    cases.push(Case {
        class: "outputs",
        name: "opt --output the input .lir".into(),
        args: args(&[&"opt", &lir, &"--pipeline", &"cse", &"--output", &lir]),
        expect: Expect::Refuse,
        keep: vec![lir.clone()],
        out: None,
        shell: false,
    });
    cases.push(Case {
        class: "outputs",
        name: "interp --out the input .lir".into(),
        args: args(&[&"interp", &lir, &"--out", &lir]),
        expect: Expect::Refuse,
        keep: vec![lir.clone()],
        out: None,
        shell: false,
    });
    // The longest name a file system takes (255 bytes) works: the temporary name is short.
    let long = root.join(format!("{}.safetensors", "x".repeat(255 - ".safetensors".len())));
    cases.push(Case {
        class: "outputs",
        name: "eval --out a 255-byte file name".into(),
        args: args(&[&"eval", &dir, &"--tokens", &"1,2", &"--out", &long]),
        expect: Expect::Accept,
        keep: keep.clone(),
        out: None,
        shell: false,
    });
}

/// Flag classes: values out of range or malformed.
fn flag_cases(root: &Path, cases: &mut Vec<Case>) {
    let tiny = fixtures().join("models/nemotron_h_tiny");
    let lir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/tiny_hybrid.lir");
    let out = root.join("flags.out.safetensors");
    let refuse: Vec<Vec<OsString>> = vec![
        args(&[&"inspect", &tiny, &"--stats", &"--context", &"18446744073709551615"]),
        args(&[&"inspect", &tiny, &"--stats", &"--context", &"0"]),
        args(&[&"inspect", &tiny, &"--stats", &"--context", &"16777217"]),
        args(&[&"inspect", &tiny, &"--stats", &"--context", &"-1"]),
        args(&[&"inspect", &tiny, &"--gpu", &"h300"]),
        args(&[&"inspect", &tiny, &"--pipeline", &"fuse-ssd{chunk=-1}"]),
        args(&[&"inspect", &tiny, &"--pipeline", &"fuse-ssd{nope=1}"]),
        args(&[&"inspect", &tiny, &"--no-such-flag"]),
        args(&[&"frobnicate"]),
        args(&[&"interp", &lir, &"--out", &out, &"--input", &"x="]),
        args(&[&"interp", &lir, &"--out", &out, &"--input", &"=x.safetensors"]),
        args(&[&"interp", &lir, &"--out", &out, &"--input", &"x"]),
        args(&[&"interp", &lir, &"--out", &out, &"--func", &"nope"]),
        args(&[&"eval", &tiny, &"--out", &out, &"--tokens", &""]),
        args(&[&"eval", &tiny, &"--out", &out, &"--tokens", &"99999999999999999999"]),
        args(&[&"eval", &tiny, &"--out", &out, &"--tokens", &"96"]),
        args(&[&"eval", &tiny, &"--out", &out, &"--tokens", &"1", &"--backend", &"cuda"]),
        args(&[&"bench", &tiny, &"--prompt", &"0"]),
        args(&[&"bench", &tiny, &"--prompt", &"18446744073709551615", &"--decode", &"1"]),
        args(&[&"bench", &tiny, &"--runs", &"0"]),
    ];
    for a in refuse {
        let name = a
            .iter()
            .map(|s| {
                let s = s.to_string_lossy().into_owned();
                if s.starts_with('/') {
                    Path::new(&s).file_name().map_or(s.clone(), |f| f.to_string_lossy().into_owned())
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        cases.push(Case {
            class: "flags",
            name,
            args: a,
            expect: Expect::Refuse,
            keep: vec![],
            out: Some(out.clone()),
            shell: false,
        });
    }
    cases.push(Case {
        class: "flags",
        name: "inspect --context 16777216 (the most)".into(),
        args: args(&[&"inspect", &tiny, &"--stats", &"--context", &"16777216"]),
        expect: Expect::Accept,
        keep: vec![],
        out: None,
        shell: false,
    });
}

/// IR text classes: deep nesting, values that do not fit, types too large, empty reductions,
/// weights too large to hold.
fn ir_cases(root: &Path, cases: &mut Vec<Case>) {
    let module = |body: &str| format!("module @m {{\n  compute_dtype = f32\n  func @main {{\n{body}  }}\n}}\n");
    let deep_fusion = {
        let depth = 10_000;
        let mut s = String::from("    %0 = input \"x\" : f32[4]\n");
        for _ in 0..depth {
            s.push_str("    %1 = fusion %0 {strategy=elementwise} {\n    %0 = input \"a\" : f32[4]\n");
        }
        for _ in 0..depth {
            s.push_str("    return %0\n    } : f32[4]\n");
        }
        s.push_str("    return %1\n");
        module(&s)
    };
    let texts: Vec<(&str, String, &str)> = vec![
        ("30,000 unclosed `[`", module(&format!("    %0 = constant {} : f32[]\n", "[".repeat(30_000))), "verify"),
        (
            "an attribute nested 30,000 lists deep",
            module(&format!(
                "    %0 = input \"x\" : f32[4]\n    %1 = softmax %0 {{axis={}0{}}} : f32[4]\n    return %1\n",
                "[".repeat(30_000),
                "]".repeat(30_000)
            )),
            "verify",
        ),
        ("10,000 nested fusion bodies", deep_fusion, "verify"),
        ("constant 300 : i8[]", module("    %0 = constant 300 : i8[]\n    return %0\n"), "verify"),
        ("constant -1 : u8[]", module("    %0 = constant -1 : u8[]\n    return %0\n"), "verify"),
        ("constant 1.5 : i32[]", module("    %0 = constant 1.5 : i32[]\n    return %0\n"), "verify"),
        (
            "a type of 2^96 elements",
            module("    %0 = input \"x\" : f32[4294967296, 4294967296, 4294967296]\n    return %0\n"),
            "verify",
        ),
        (
            "a softmax over an empty axis",
            module("    %0 = input \"l\" : f32[2, 0]\n    %1 = softmax %0 {axis=1} : f32[2, 0]\n    return %1\n"),
            "verify",
        ),
        ("a symbol bound of 2^40", "module @m {\n  compute_dtype = f32\n  symbol S <= 1099511627776\n  func @main {\n    %0 = input \"x\" : f32[S]\n    return %0\n  }\n}\n".into(), "verify"),
        ("a type of rank 40", module(&format!("    %0 = input \"x\" : f32[{}]\n    return %0\n", ["1"; 40].join(", "))), "verify"),
        (
            "sample over an empty vocabulary",
            module("    %0 = input \"l\" : f32[2, 0]\n    %1 = input \"o\" : i64[]\n    %2 = sample %0, %1 {seed=1, temperature=0.0} : i64[2]\n    return %2\n"),
            "verify",
        ),
        (
            "a max over an empty axis",
            module("    %0 = input \"l\" : f32[2, 0]\n    %1 = reduce %0 {kind=max, axes=[1]} : f32[2]\n    return %1\n"),
            "verify",
        ),
        (
            "a 64 GB synthetic weight",
            "module @m {\n  compute_dtype = f32\n  weight @w : f32[131072, 131072] = synthetic 1\n  func @main {\n    %0 = weight @w : f32[131072, 131072]\n    return %0\n  }\n}\n".into(),
            "interp",
        ),
    ];
    for (i, (tag, text, cmd)) in texts.into_iter().enumerate() {
        let path = root.join(format!("ir{i}.lir"));
        fs::write(&path, text).expect("write");
        let out = root.join(format!("ir{i}.out.safetensors"));
        let a = if cmd == "interp" { args(&[&"interp", &path, &"--out", &out]) } else { args(&[&cmd, &path]) };
        cases.push(Case {
            class: "IR text",
            name: tag.into(),
            args: a,
            expect: Expect::Refuse,
            keep: vec![],
            out: Some(out),
            shell: false,
        });
    }
    for (tag, setup) in [("a directory", 0), ("/dev/zero", 1)] {
        let path = root.join(format!("irfile{setup}.lir"));
        if setup == 0 {
            fs::create_dir(&path).expect("mkdir");
        } else {
            std::os::unix::fs::symlink("/dev/zero", &path).expect("link");
        }
        cases.push(Case {
            class: "IR text",
            name: format!("the .lir file is {tag}"),
            args: args(&[&"verify", &path]),
            expect: Expect::Refuse,
            keep: vec![],
            out: None,
            shell: false,
        });
    }
}

#[test]
fn bad_input_ends_in_clear_errors() {
    let root = scratch();
    let mut cases = Vec::new();
    config_cases(&root, &mut cases);
    checkpoint_cases(&root, &mut cases);
    output_cases(&root, &mut cases);
    flag_cases(&root, &mut cases);
    ir_cases(&root, &mut cases);
    let runs: Vec<Run> = cases.iter().map(run).collect();
    let mut table: BTreeMap<&str, BTreeMap<Outcome, usize>> = BTreeMap::new();
    let mut bad = Vec::new();
    for (case, r) in cases.iter().zip(&runs) {
        *table.entry(case.class).or_default().entry(r.outcome).or_default() += 1;
        if !matches!(r.outcome, Outcome::CleanError | Outcome::Succeeded) {
            bad.push(format!("[{}] {}: {:?}: {}", case.class, case.name, r.outcome, r.stderr.trim()));
        }
    }
    if let Ok(path) = std::env::var("LATHE_RELIABILITY_TABLE") {
        fs::write(&path, report(&cases, &runs, &table, &root)).expect("write the table");
    }
    let _ = fs::remove_dir_all(&root);
    assert!(bad.is_empty(), "{} of {} cases went wrong:\n{}", bad.len(), cases.len(), bad.join("\n"));
}

fn report(cases: &[Case], runs: &[Run], table: &BTreeMap<&str, BTreeMap<Outcome, usize>>, root: &Path) -> String {
    use std::fmt::Write as _;
    let mut s = String::from(
        "# Reliability: bad input tried\n\n\
         Produced by `scripts/reliability.sh` (the test `compiler/tests/reliability.rs`, which CI runs\n\
         on every change without writing this file). Each case runs the `lathe` binary; a refusal\n\
         counts as a clean error only with exit code 2, one line on stderr, no output or temporary\n\
         file left and every input unchanged. A run over 60 s is a hang; a signal is an abort.\n\n\
         | class | cases | clean errors | valid, succeeded | panics | aborts | hangs | wrong accepts | unclean |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut total = [0usize; 8];
    for (class, counts) in table {
        let get = |o: Outcome| counts.get(&o).copied().unwrap_or(0);
        let row = [
            counts.values().sum(),
            get(Outcome::CleanError),
            get(Outcome::Succeeded),
            get(Outcome::Panic),
            get(Outcome::Abort),
            get(Outcome::Hang),
            get(Outcome::WrongAccept),
            get(Outcome::Unclean),
        ];
        for (t, r) in total.iter_mut().zip(row) {
            *t += r;
        }
        let _ = writeln!(s, "| {class} | {} |", row.map(|x| x.to_string()).join(" | "));
    }
    let _ = writeln!(s, "| **all** | {} |\n", total.map(|x| format!("**{x}**")).join(" | "));
    s.push_str("## Every case and its message\n\n| class | case | outcome | stderr |\n| --- | --- | --- | --- |\n");
    for (c, r) in cases.iter().zip(runs) {
        let msg = r.stderr.trim().lines().next().unwrap_or("").replace('|', "\\|");
        // Paths of this run's scratch directory and checkout read the same in every run.
        let msg = msg.replace(&*root.to_string_lossy(), "$DIR");
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let msg = msg.replace(&format!("{}/", repo.to_string_lossy()), "");
        // The memory budget is this machine's, this minute's: the table shows its place only.
        let msg = mask_budget(&msg);
        let msg = if msg.len() > 160 {
            format!("{}…", &msg[..msg.char_indices().nth(160).map_or(msg.len(), |(i, _)| i)])
        } else {
            msg
        };
        let _ = writeln!(s, "| {} | {} | {:?} | {} |", c.class, c.name.replace('|', "\\|"), r.outcome, msg);
    }
    s
}

/// `more than the 24.1 GB this process may allocate` → `more than the N GB ...`.
fn mask_budget(msg: &str) -> String {
    let key = "more than the ";
    match msg.find(key) {
        Some(i) => {
            let start = i + key.len();
            let end = msg[start..].find(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(msg.len(), |k| start + k);
            format!("{}N{}", &msg[..start], &msg[end..])
        }
        None => msg.to_string(),
    }
}
