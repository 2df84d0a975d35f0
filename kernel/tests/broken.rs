//! The broken-kernel corpus: small kernels written wrong on purpose, in one table.
//!
//! Each case is a kernel with one mistake of the kind kernel authors make — an unguarded tail,
//! a missing barrier, a shuffle that names lanes that are not there, a copy never waited for,
//! two CTAs sharing bytes — and the simulator must stop it with its exact [`ErrorKind`], at its
//! instruction (the name `SimError::at` gives), in its CTA, naming the first offending thread
//! where the error has one, with a message that says what went wrong. Next to it is its
//! corrected twin: the same kernel with the mistake fixed by as small an edit as the fix allows,
//! which must run clean on the same launch and the same arguments and, where that is cheap to
//! state, compute the right output.
//!
//! Every `ErrorKind` but `BadLaunch` (a launch that does not fit its kernel: no kernel is
//! written wrong there, `tests/sim.rs` tests it) has at least one case, most several distinct
//! causes; `every_error_kind_is_in_the_corpus` holds the list, and a new variant does not
//! compile there until it is sorted in.
//!
//! # Adding a case
//! Write the broken kernel in the text format (`lathe_kernel::text`) and its twin as edits of
//! that text ([`text_pair`]), or build both with `KernelBuilder` where text is awkward, and push
//! a [`Case`] in [`corpus`]. A case runs through its [`Runner`]: [`one_launch`] for every case
//! here. A case that needs more than one launch (bytes one launch leaves for the next, the order
//! of dependent launches) supplies its own runner, which performs the launches it needs on the
//! case's arguments and returns the first error; the expectations and the twin stay as they are.

use lathe_kernel::ir::Kernel;
use lathe_kernel::sim::{run, run_program, Arg, Bind, Buffer, ErrorKind, Launch, Options, SimError, Step};
use lathe_kernel::text::parse;

/// How a case runs a kernel (the broken one, then the twin) on its launch, arguments and
/// options; the first error.
type Runner = fn(&Kernel, &Launch, &mut [Arg], &Options) -> Result<(), SimError>;

/// What a case's twin must leave in the arguments (the buffers after its run).
type Check = fn(&[Arg]) -> Result<(), String>;

/// One launch of the kernel: what every case here needs.
fn one_launch(k: &Kernel, launch: &Launch, args: &mut [Arg], options: &Options) -> Result<(), SimError> {
    run(k, launch, args, options).map(|_| ())
}

/// The error a broken kernel must stop with.
#[derive(Debug)]
struct Want {
    kind: ErrorKind,
    /// The instruction's name as `SimError::at` gives it; `None` for errors of no instruction
    /// (a thread exiting with copies in flight, outputs differing between CTA orders).
    at: Option<&'static str>,
    cta: [u32; 3],
    /// The first offending thread (`%tid`); `None` for errors of no thread.
    thread: Option<[u32; 3]>,
    /// A piece of the message (the buffer, the byte, the lanes).
    says: &'static str,
}

/// A kernel written wrong, the error it must stop with, and its corrected twin.
struct Case {
    name: &'static str,
    broken: Kernel,
    twin: Kernel,
    launch: Launch,
    /// The arguments both kernels start from.
    args: Vec<Arg>,
    options: Options,
    want: Want,
    /// What the twin must compute, where cheap to state.
    output: Option<Check>,
    runner: Runner,
}

impl Case {
    /// A case of a 1-D launch of `grid` CTAs of `block` threads, with default options and no
    /// output check.
    fn new(name: &'static str, kernels: (Kernel, Kernel), grid: u32, block: u32, args: Vec<Arg>, want: Want) -> Case {
        let (broken, twin) = kernels;
        Case {
            name,
            broken,
            twin,
            launch: Launch { grid: [grid, 1, 1], block: [block, 1, 1] },
            args,
            options: Options::default(),
            want,
            output: None,
            runner: one_launch,
        }
    }

    fn options(mut self, options: Options) -> Case {
        self.options = options;
        self
    }

    fn runner(mut self, runner: Runner) -> Case {
        self.runner = runner;
        self
    }

    fn output(mut self, check: Check) -> Case {
        self.output = Some(check);
        self
    }

    /// Runs both kernels; what is wrong, if anything.
    fn check(&self) -> Result<(), String> {
        if self.broken == self.twin {
            return Err("the twin is the broken kernel".into());
        }
        let mut args = self.args.clone();
        let e = match (self.runner)(&self.broken, &self.launch, &mut args, &self.options) {
            Ok(()) => return Err(format!("ran clean, expected {:?}", self.want.kind)),
            Err(e) => e,
        };
        let w = &self.want;
        let at = e.at.as_ref().map(|(_, name)| name.as_str());
        if e.kind != w.kind || at != w.at || e.cta != w.cta || e.thread != w.thread || !e.message.contains(w.says) {
            return Err(format!(
                "expected {:?} at {:?}, CTA {:?}, thread {:?}, saying {:?}; got {e}",
                w.kind, w.at, w.cta, w.thread, w.says
            ));
        }
        let mut args = self.args.clone();
        (self.runner)(&self.twin, &self.launch, &mut args, &self.options).map_err(|e| format!("the twin: {e}"))?;
        match self.output {
            Some(check) => check(&args).map_err(|m| format!("the twin's output: {m}")),
            None => Ok(()),
        }
    }
}

/// The kernel `text` reads as, and its twin: `text` with each `(from, to)` edit applied in turn,
/// where `from` must occur exactly once in the text as the edits before left it.
fn text_pair(text: &str, edits: &[(&str, &str)]) -> (Kernel, Kernel) {
    let broken = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut fixed = text.to_string();
    for (from, to) in edits {
        assert_eq!(fixed.matches(from).count(), 1, "the edit {from:?} must match once in\n{fixed}");
        fixed = fixed.replacen(from, to, 1);
    }
    let twin = parse(&fixed).unwrap_or_else(|e| panic!("{e}\n{fixed}"));
    (broken, twin)
}

// ---------------------------------------------------------------------------------------------
// Arguments and outputs

fn f32s(v: &[f32]) -> Arg {
    Arg::Buffer(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn i32s(v: &[u32]) -> Arg {
    Arg::Buffer(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn zeros(bytes: usize) -> Arg {
    Arg::Buffer(vec![0; bytes])
}

/// `0, 1, 2, … n - 1` as f32 (small integers: every sum of a few is exact).
fn iota(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

fn buffer(args: &[Arg], i: usize) -> Result<&[u8], String> {
    match args.get(i) {
        Some(Arg::Buffer(b)) => Ok(b),
        _ => Err(format!("argument {i} is not a buffer")),
    }
}

fn words_of(args: &[Arg], i: usize) -> Result<Vec<u32>, String> {
    Ok(buffer(args, i)?.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn floats_of(args: &[Arg], i: usize) -> Result<Vec<f32>, String> {
    Ok(words_of(args, i)?.into_iter().map(f32::from_bits).collect())
}

/// Buffer `i` holds `want` as u32 words.
fn words_are(args: &[Arg], i: usize, want: impl IntoIterator<Item = u32>) -> Result<(), String> {
    let got = words_of(args, i)?;
    let want: Vec<u32> = want.into_iter().collect();
    if got == want {
        Ok(())
    } else {
        Err(format!("buffer {i} is {got:?}, expected {want:?}"))
    }
}

/// Buffer `i` holds `want` as f32 values, bit for bit.
fn floats_are(args: &[Arg], i: usize, want: impl IntoIterator<Item = f32>) -> Result<(), String> {
    let got = floats_of(args, i)?;
    let want: Vec<f32> = want.into_iter().collect();
    if got.iter().map(|x| x.to_bits()).eq(want.iter().map(|x| x.to_bits())) {
        Ok(())
    } else {
        Err(format!("buffer {i} is {got:?}, expected {want:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// The corpus

fn corpus() -> Vec<Case> {
    let mut v = Vec::new();
    out_of_bounds(&mut v);
    misaligned(&mut v);
    uninitialized(&mut v);
    barriers(&mut v);
    shared_races(&mut v);
    sync_masks(&mut v);
    read_only(&mut v);
    division(&mut v);
    cp_async(&mut v);
    cross_cta(&mut v);
    runaway(&mut v);
    programs(&mut v);
    v
}

fn out_of_bounds(v: &mut Vec<Case>) {
    // The bounds guard compares with the block size instead of the length: the tail of the
    // last warp reads past `x`.
    let kernels = text_pair(
        r#"
kernel @double max_threads=64 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  param %p2 : scalar u32 "n"
  reg %r0, %r1 : u64
  reg %r2, %r3, %r4 : u32
  reg %r5 : pred
  reg %r6, %r7, %r8 : u64
  reg %r9 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = ld.param %p2
  %r3 = mov.special %tid.x
  %r4 = mov.special %ntid.x
  %r5 = setp.lt.u32 %r3, %r4
  if %r5 {
    %r6 = cvt.u64.u32 %r3
    %r7 = fma.u64 %r6, 4, %r0
    %r8 = fma.u64 %r6, 4, %r1
    %r9 = ld.global.f32 [%r7]
    %r9 = mul.f32 %r9, 2
    st.global.f32 [%r8], %r9
  }
}
"#,
        &[("setp.lt.u32 %r3, %r4", "setp.lt.u32 %r3, %r2")],
    );
    v.push(
        Case::new(
            "a bounds guard against the block size, not the length",
            kernels,
            1,
            64,
            vec![f32s(&iota(40)), zeros(40 * 4), Arg::Scalar(40)],
            Want {
                kind: ErrorKind::OutOfBounds,
                at: Some("ld.global.f32"),
                cta: [0, 0, 0],
                thread: Some([40, 0, 0]),
                says: "bytes [160, 164) of buffer `x` (160 bytes)",
            },
        )
        .output(|a| floats_are(a, 1, (0..40).map(|i| 2.0 * i as f32))),
    );

    // Each thread stores one word to the next slot: the last one lands past the array.
    let kernels = text_pair(
        r#"
kernel @shift max_threads=32 shared=128 local=0 {
  reg %r0 : u32
  reg %r1 : u64
  %r0 = mov.special %tid.x
  %r1 = cvt.u64.u32 %r0
  %r1 = mul.u64 %r1, 4
  st.shared.u32 [%r1 + 4], %r0
}
"#,
        &[("[%r1 + 4]", "[%r1]")],
    );
    v.push(Case::new(
        "a shared store one word past the array",
        kernels,
        1,
        32,
        vec![],
        Want {
            kind: ErrorKind::OutOfBounds,
            at: Some("st.shared.u32"),
            cta: [0, 0, 0],
            thread: Some([31, 0, 0]),
            says: "shared bytes [128, 132) of 128",
        },
    ));

    // A per-thread array of four words filled by a loop of five trips.
    let kernels = text_pair(
        r#"
kernel @spill max_threads=32 shared=0 local=16 {
  reg %r0 : u32
  reg %r1 : u64
  for %r0 in 0..5 {
    %r1 = cvt.u64.u32 %r0
    %r1 = mul.u64 %r1, 4
    st.local.u32 [%r1], %r0
  }
}
"#,
        &[("0..5", "0..4")],
    );
    v.push(Case::new(
        "a local array filled one element too far",
        kernels,
        1,
        32,
        vec![],
        Want {
            kind: ErrorKind::OutOfBounds,
            at: Some("st.local.u32"),
            cta: [0, 0, 0],
            thread: Some([0, 0, 0]),
            says: "local bytes [16, 20) of 16",
        },
    ));

    // A histogram of five bins into a buffer of four.
    let kernels = text_pair(
        r#"
kernel @histogram max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "bins"
  reg %r0 : u64
  reg %r1, %r2 : u32
  reg %r3 : u64
  %r0 = ld.param %p0
  %r1 = mov.special %tid.x
  %r2 = rem.u32 %r1, 5
  %r3 = cvt.u64.u32 %r2
  %r3 = fma.u64 %r3, 4, %r0
  red.global.add.u32 [%r3], 1
}
"#,
        &[("rem.u32 %r1, 5", "rem.u32 %r1, 4")],
    );
    v.push(
        Case::new(
            "an atomic histogram with one bin more than its buffer",
            kernels,
            1,
            32,
            vec![zeros(16)],
            Want {
                kind: ErrorKind::OutOfBounds,
                at: Some("red.global.add.u32"),
                cta: [0, 0, 0],
                thread: Some([4, 0, 0]),
                says: "bytes [16, 20) of buffer `bins` (16 bytes)",
            },
        )
        .output(|a| words_are(a, 0, [8; 4])),
    );
}

fn misaligned(v: &mut Vec<Case>) {
    // A vector of four floats loaded one float into the buffer.
    let kernels = text_pair(
        r#"
kernel @misaligned max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  reg %r0 : u64
  reg %r1, %r2, %r3, %r4 : f32
  %r0 = ld.param %p0
  {%r1, %r2, %r3, %r4} = ld.global.v4.f32 [%r0 + 4]
}
"#,
        &[("[%r0 + 4]", "[%r0 + 16]")],
    );
    v.push(Case::new(
        "a v4 global load at a 4-byte offset",
        kernels,
        1,
        1,
        vec![zeros(64)],
        Want {
            kind: ErrorKind::Misaligned,
            at: Some("ld.global.v4.f32"),
            cta: [0, 0, 0],
            thread: Some([0, 0, 0]),
            says: "a 16-byte global access",
        },
    ));

    // Pairs of floats stored with a one-word header in front: every pair straddles 8 bytes.
    let kernels = text_pair(
        r#"
kernel @pairs max_threads=32 shared=264 local=0 {
  reg %r0 : u32
  reg %r1 : u64
  reg %r2 : f32
  %r0 = mov.special %tid.x
  %r1 = cvt.u64.u32 %r0
  %r1 = mul.u64 %r1, 8
  %r2 = cvt.rn.f32.u32 %r0
  st.shared.v2.f32 [%r1 + 4], {%r2, %r2}
}
"#,
        &[("[%r1 + 4]", "[%r1 + 8]")],
    );
    v.push(Case::new(
        "a v2 shared store behind a one-word header",
        kernels,
        1,
        32,
        vec![],
        Want {
            kind: ErrorKind::Misaligned,
            at: Some("st.shared.v2.f32"),
            cta: [0, 0, 0],
            thread: Some([0, 0, 0]),
            says: "an 8-byte shared access",
        },
    ));

    // `ldmatrix` row addresses half a row into the tile.
    let kernels = text_pair(
        r#"
kernel @ldmatrix_rows max_threads=32 shared=512 local=0 {
  reg %r0 : u32
  reg %r1 : u64
  reg %r2 : b32
  %r0 = mov.special %laneid
  %r1 = cvt.u64.u32 %r0
  %r1 = mul.u64 %r1, 16
  st.shared.v4.b32 [%r1], {%r0, %r0, %r0, %r0}
  bar.warp.sync 0xffffffff
  %r2 = ldmatrix.sync.aligned.m8n8.x1.shared.b16 [%r1 + 8]
}
"#,
        &[("[%r1 + 8]", "[%r1]")],
    );
    v.push(Case::new(
        "ldmatrix rows at 8-byte offsets",
        kernels,
        1,
        32,
        vec![],
        Want {
            kind: ErrorKind::Misaligned,
            at: Some("ldmatrix.sync.aligned.m8n8.x1.shared.b16"),
            cta: [0, 0, 0],
            thread: Some([0, 0, 0]),
            says: "not 16-byte aligned",
        },
    ));
}

fn uninitialized(v: &mut Vec<Case>) {
    // A register read before anything is written to it.
    let kernels = text_pair(
        r#"
kernel @uninit max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2 : f32
  %r0 = ld.param %p0
  %r2 = add.f32 %r1, 1
  st.global.f32 [%r0], %r2
}
"#,
        &[("  %r2 = add.f32", "  %r1 = mov 2\n  %r2 = add.f32")],
    );
    v.push(
        Case::new(
            "a register read before it is written",
            kernels,
            1,
            1,
            vec![zeros(4)],
            Want {
                kind: ErrorKind::UninitializedRegister,
                at: Some("add.f32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "%r1 is read before it is written",
            },
        )
        .output(|a| floats_are(a, 0, [3.0])),
    );

    // A register set only on one side of a branch and read after it.
    let kernels = text_pair(
        r#"
kernel @branch_init max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2, %r3 : u32
  reg %r4 : pred
  reg %r5 : u64
  %r0 = ld.param %p0
  %r1 = mov.special %laneid
  %r4 = setp.lt.u32 %r1, 16
  if %r4 {
    %r2 = mov 1
  }
  %r3 = add.u32 %r2, %r1
  %r5 = cvt.u64.u32 %r1
  %r5 = fma.u64 %r5, 4, %r0
  st.global.u32 [%r5], %r3
}
"#,
        &[("  if %r4 {", "  %r2 = mov 0\n  if %r4 {")],
    );
    v.push(
        Case::new(
            "a register written on one side of a branch only",
            kernels,
            1,
            32,
            vec![zeros(128)],
            Want {
                kind: ErrorKind::UninitializedRegister,
                at: Some("add.u32"),
                cta: [0, 0, 0],
                thread: Some([16, 0, 0]),
                says: "%r2 is read before it is written",
            },
        )
        .output(|a| words_are(a, 0, (0..32).map(|l| l + u32::from(l < 16)))),
    );

    // Shared memory read that nobody wrote.
    let kernels = text_pair(
        r#"
kernel @shared_uninit max_threads=32 shared=4 local=0 {
  reg %r0 : f32
  %r0 = ld.shared.f32 [0]
}
"#,
        &[("  %r0 = ld.shared", "  st.shared.f32 [0], 0\n  %r0 = ld.shared")],
    );
    v.push(Case::new(
        "shared memory read before any thread writes it",
        kernels,
        1,
        1,
        vec![],
        Want {
            kind: ErrorKind::UninitializedMemory,
            at: Some("ld.shared.f32"),
            cta: [0, 0, 0],
            thread: Some([0, 0, 0]),
            says: "shared byte 0 is read before any thread writes it",
        },
    ));

    // A tile filled by every thread but the last, then read mirrored: thread 0 reads the hole.
    let kernels = text_pair(
        r#"
kernel @mirror max_threads=64 shared=256 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2 : u32
  reg %r3 : pred
  reg %r4, %r5 : u64
  %r0 = ld.param %p0
  %r1 = mov.special %tid.x
  %r3 = setp.lt.u32 %r1, 63
  %r4 = cvt.u64.u32 %r1
  %r4 = mul.u64 %r4, 4
  if %r3 {
    st.shared.u32 [%r4], %r1
  }
  bar.sync
  %r2 = sub.u32 63, %r1
  %r5 = cvt.u64.u32 %r2
  %r5 = mul.u64 %r5, 4
  %r2 = ld.shared.u32 [%r5]
  %r4 = add.u64 %r0, %r4
  st.global.u32 [%r4], %r2
}
"#,
        &[("setp.lt.u32 %r1, 63", "setp.lt.u32 %r1, 64")],
    );
    v.push(
        Case::new(
            "a shared tile filled by all threads but the last",
            kernels,
            1,
            64,
            vec![zeros(256)],
            Want {
                kind: ErrorKind::UninitializedMemory,
                at: Some("ld.shared.u32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "shared byte 252 is read before any thread writes it",
            },
        )
        .output(|a| words_are(a, 0, (0..64).rev())),
    );

    // A local pair read as a vector after only its first half was written.
    let kernels = text_pair(
        r#"
kernel @local_half max_threads=32 shared=0 local=8 {
  param %p0 : buffer f32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2 : f32
  %r0 = ld.param %p0
  st.local.f32 [0], 1.5
  {%r1, %r2} = ld.local.v2.f32 [0]
  %r1 = add.f32 %r1, %r2
  st.global.f32 [%r0], %r1
}
"#,
        &[("st.local.f32 [0], 1.5", "st.local.v2.f32 [0], {1.5, 2.5}")],
    );
    v.push(
        Case::new(
            "a local pair read whole after half of it was written",
            kernels,
            1,
            32,
            vec![zeros(4)],
            Want {
                kind: ErrorKind::UninitializedMemory,
                at: Some("ld.local.v2.f32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "local bytes [0, 8) are read before they are written",
            },
        )
        .output(|a| floats_are(a, 0, [4.0])),
    );
}

fn barriers(v: &mut Vec<Case>) {
    // `bar.sync` inside a branch half of each warp takes.
    let kernels = text_pair(
        r#"
kernel @divergent_bar max_threads=64 shared=0 local=0 {
  reg %r0 : u32
  reg %r1 : pred
  %r0 = mov.special %laneid
  %r1 = setp.lt.u32 %r0, 16
  if %r1 {
    bar.sync
  }
}
"#,
        &[("  if %r1 {\n    bar.sync\n  }", "  if %r1 {\n  }\n  bar.sync")],
    );
    v.push(Case::new(
        "a barrier in a branch half of the warp takes",
        kernels,
        1,
        64,
        vec![],
        Want {
            kind: ErrorKind::BarrierDivergence,
            at: Some("bar.sync"),
            cta: [0, 0, 0],
            thread: Some([16, 0, 0]),
            says: "bar.sync with lanes 0x0000ffff of 0xffffffff active",
        },
    ));

    // A barrier in a loop whose trip count depends on the lane: the second trip runs with the
    // odd lanes only.
    let kernels = text_pair(
        r#"
kernel @lane_trips max_threads=64 shared=0 local=0 {
  reg %r0, %r1, %r2 : u32
  %r0 = mov.special %laneid
  %r1 = and.u32 %r0, 1
  %r1 = add.u32 %r1, 1
  for %r2 in 0..%r1 {
    bar.sync
  }
}
"#,
        &[("mov.special %laneid", "mov.special %ctaid.x")],
    );
    v.push(Case::new(
        "a barrier in a loop whose trip count depends on the lane",
        kernels,
        1,
        64,
        vec![],
        Want {
            kind: ErrorKind::BarrierDivergence,
            at: Some("bar.sync"),
            cta: [0, 0, 0],
            thread: Some([0, 0, 0]),
            says: "bar.sync with lanes 0xaaaaaaaa of 0xffffffff active",
        },
    ));

    // A barrier in a loop whose trip count differs between warps: warp 0 leaves after one trip
    // and warp 1 waits at the second barrier alone.
    let kernels = text_pair(
        r#"
kernel @unequal_trips max_threads=64 shared=0 local=0 {
  reg %r0, %r1, %r2 : u32
  %r0 = mov.special %tid.x
  %r1 = shr.u32 %r0, 5
  %r1 = add.u32 %r1, 1
  for %r2 in 0..%r1 {
    bar.sync
  }
}
"#,
        &[("  %r1 = shr.u32 %r0, 5\n  %r1 = add.u32 %r1, 1", "  %r1 = mov 2")],
    );
    v.push(Case::new(
        "a barrier in a loop of unequal trips per warp",
        kernels,
        1,
        64,
        vec![],
        Want {
            kind: ErrorKind::BarrierPartial,
            at: Some("bar.sync"),
            cta: [0, 0, 0],
            thread: Some([32, 0, 0]),
            says: "bar.sync reached by 32 of the CTA's 64 threads",
        },
    ));

    // Only warp 0 has work, and it syncs its lanes with the CTA barrier, which warp 1 (already
    // exited) never reaches; a warp barrier is what it needs.
    let kernels = text_pair(
        r#"
kernel @one_warp_exchange max_threads=64 shared=128 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2 : u32
  reg %r3 : pred
  reg %r4, %r5 : u64
  %r0 = ld.param %p0
  %r1 = mov.special %tid.x
  %r3 = setp.lt.u32 %r1, 32
  if %r3 {
    %r4 = cvt.u64.u32 %r1
    %r4 = mul.u64 %r4, 4
    st.shared.u32 [%r4], %r1
    bar.sync
    %r2 = xor.u32 %r1, 1
    %r5 = cvt.u64.u32 %r2
    %r5 = mul.u64 %r5, 4
    %r2 = ld.shared.u32 [%r5]
    %r4 = add.u64 %r0, %r4
    st.global.u32 [%r4], %r2
  }
}
"#,
        &[("    bar.sync", "    bar.warp.sync 0xffffffff")],
    );
    v.push(
        Case::new(
            "a CTA barrier only the working warp reaches",
            kernels,
            1,
            64,
            vec![zeros(256)],
            Want {
                kind: ErrorKind::BarrierPartial,
                at: Some("bar.sync"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "bar.sync reached by 32 of the CTA's 64 threads",
            },
        )
        .output(|a| words_are(a, 0, (0..64).map(|t| if t < 32 { t ^ 1 } else { 0 }))),
    );
}

fn shared_races(v: &mut Vec<Case>) {
    // Both warps store to the same 32 words: the index wraps at the warp, not the CTA.
    let kernels = text_pair(
        r#"
kernel @same_words max_threads=64 shared=256 local=0 {
  reg %r0, %r1 : u32
  reg %r2 : u64
  %r0 = mov.special %tid.x
  %r1 = and.u32 %r0, 31
  %r2 = cvt.u64.u32 %r1
  %r2 = mul.u64 %r2, 4
  st.shared.u32 [%r2], %r0
}
"#,
        &[("and.u32 %r0, 31", "and.u32 %r0, 63")],
    );
    v.push(Case::new(
        "two warps write the same shared words",
        kernels,
        1,
        64,
        vec![],
        Want {
            kind: ErrorKind::SharedRace,
            at: Some("st.shared.u32"),
            cta: [0, 0, 0],
            thread: Some([32, 0, 0]),
            says: "shared byte 0: written by warp 0 and warp 1 with no bar.sync between",
        },
    ));

    // A CTA reduction step without the barrier between the stores and the loads: warp 0 reads
    // the upper half before warp 1 has written it.
    let kernels = text_pair(
        r#"
kernel @pair_sum max_threads=64 shared=256 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2 : u32
  reg %r3 : pred
  reg %r4, %r5, %r6 : u64
  reg %r7, %r8 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r4 = cvt.u64.u32 %r2
  %r5 = fma.u64 %r4, 4, %r0
  %r6 = mul.u64 %r4, 4
  %r7 = ld.global.f32 [%r5]
  st.shared.f32 [%r6], %r7
  %r3 = setp.lt.u32 %r2, 32
  if %r3 {
    %r7 = ld.shared.f32 [%r6]
    %r8 = ld.shared.f32 [%r6 + 128]
    %r7 = add.f32 %r7, %r8
    %r5 = fma.u64 %r4, 4, %r1
    st.global.f32 [%r5], %r7
  }
}
"#,
        &[("  %r3 = setp", "  bar.sync\n  %r3 = setp")],
    );
    v.push(
        Case::new(
            "a CTA reduction without the barrier after the stores",
            kernels,
            1,
            64,
            vec![f32s(&iota(64)), zeros(128)],
            Want {
                kind: ErrorKind::SharedRace,
                at: Some("st.shared.f32"),
                cta: [0, 0, 0],
                thread: Some([32, 0, 0]),
                says: "shared byte 128: read then written by warp 0 and warp 1",
            },
        )
        .output(|a| floats_are(a, 1, (0..32).map(|i| (2 * i + 32) as f32))),
    );

    // A shared counter bumped atomically by every thread, read by thread 32 before the barrier
    // that would make warp 0's updates final.
    let kernels = text_pair(
        r#"
kernel @count max_threads=64 shared=4 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2 : u32
  reg %r3, %r4 : pred
  %r0 = ld.param %p0
  %r1 = mov.special %tid.x
  %r3 = setp.eq.u32 %r1, 0
  if %r3 {
    st.shared.u32 [0], 0
  }
  bar.sync
  red.shared.add.u32 [0], 1
  %r4 = setp.eq.u32 %r1, 32
  if %r4 {
    %r2 = ld.shared.u32 [0]
    st.global.u32 [%r0], %r2
  }
}
"#,
        &[("  %r4 = setp", "  bar.sync\n  %r4 = setp")],
    );
    v.push(
        Case::new(
            "a plain read of a shared counter other warps update atomically",
            kernels,
            1,
            64,
            vec![zeros(4)],
            Want {
                kind: ErrorKind::SharedRace,
                at: Some("ld.shared.u32"),
                cta: [0, 0, 0],
                thread: Some([32, 0, 0]),
                says: "shared byte 0: updated atomically by another warp, then read by warp 1",
            },
        )
        .output(|a| words_are(a, 0, [64])),
    );

    // Lanes swap values through shared memory with no warp barrier between store and load.
    let kernels = text_pair(
        r#"
kernel @warp_exchange max_threads=32 shared=128 local=0 {
  param %p0 : buffer f32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2 : u32
  reg %r3, %r4 : u64
  reg %r5 : f32
  %r0 = ld.param %p0
  %r1 = mov.special %laneid
  %r3 = cvt.u64.u32 %r1
  %r3 = mul.u64 %r3, 4
  %r5 = cvt.rn.f32.u32 %r1
  st.shared.f32 [%r3], %r5
  %r2 = xor.u32 %r1, 1
  %r4 = cvt.u64.u32 %r2
  %r4 = mul.u64 %r4, 4
  %r5 = ld.shared.f32 [%r4]
  %r3 = add.u64 %r0, %r3
  st.global.f32 [%r3], %r5
}
"#,
        &[("  %r2 = xor", "  bar.warp.sync 0xffffffff\n  %r2 = xor")],
    );
    v.push(
        Case::new(
            "a warp exchange through shared memory without bar.warp.sync",
            kernels,
            1,
            32,
            vec![zeros(128)],
            Want {
                kind: ErrorKind::WarpSyncMissing,
                at: Some("ld.shared.f32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "shared byte 4: written then read by lanes 1 and 0 of warp 0",
            },
        )
        .output(|a| floats_are(a, 0, (0..32u32).map(|l| (l ^ 1) as f32))),
    );

    // An in-place rotation: each lane reads its right neighbour's word and overwrites its own
    // before the neighbour to its left has read it.
    let kernels = text_pair(
        r#"
kernel @rotate max_threads=32 shared=128 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2, %r3 : u32
  reg %r4, %r5 : u64
  %r0 = ld.param %p0
  %r1 = mov.special %laneid
  %r4 = cvt.u64.u32 %r1
  %r4 = mul.u64 %r4, 4
  st.shared.u32 [%r4], %r1
  bar.warp.sync 0xffffffff
  %r2 = add.u32 %r1, 1
  %r2 = and.u32 %r2, 31
  %r5 = cvt.u64.u32 %r2
  %r5 = mul.u64 %r5, 4
  %r3 = ld.shared.u32 [%r5]
  st.shared.u32 [%r4], %r3
  bar.warp.sync 0xffffffff
  %r3 = ld.shared.u32 [%r4]
  %r4 = add.u64 %r0, %r4
  st.global.u32 [%r4], %r3
}
"#,
        &[("  st.shared.u32 [%r4], %r3", "  bar.warp.sync 0xffffffff\n  st.shared.u32 [%r4], %r3")],
    );
    v.push(
        Case::new(
            "an in-place rotation through shared memory overwrites before the neighbour reads",
            kernels,
            1,
            32,
            vec![zeros(128)],
            Want {
                kind: ErrorKind::WarpSyncMissing,
                at: Some("st.shared.u32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "shared byte 0: read then written by lanes 31 and 0 of warp 0",
            },
        )
        .output(|a| words_are(a, 0, (0..32).map(|l| (l + 1) % 32))),
    );
}

fn sync_masks(v: &mut Vec<Case>) {
    // A full-warp shuffle inside a branch half the warp takes.
    let kernels = text_pair(
        r#"
kernel @shfl_mask max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2 : u32
  reg %r3 : pred
  reg %r4 : u64
  %r0 = ld.param %p0
  %r1 = mov.special %laneid
  %r3 = setp.lt.u32 %r1, 16
  if %r3 {
    %r2 = shfl.sync.bfly.b32 %r1, 1, 31, 0xffffffff
    %r4 = cvt.u64.u32 %r1
    %r4 = fma.u64 %r4, 4, %r0
    st.global.u32 [%r4], %r2
  }
}
"#,
        &[("31, 0xffffffff", "31, 0x0000ffff")],
    );
    v.push(
        Case::new(
            "a full-mask shuffle under divergence",
            kernels,
            1,
            32,
            vec![zeros(128)],
            Want {
                kind: ErrorKind::SyncMask,
                at: Some("shfl.sync.bfly.b32"),
                cta: [0, 0, 0],
                thread: Some([16, 0, 0]),
                says: "member mask 0xffffffff but lanes 0x0000ffff execute it",
            },
        )
        .output(|a| words_are(a, 0, (0..32).map(|l| if l < 16 { l ^ 1 } else { 0 }))),
    );

    // A full-mask ballot inside a branch 20 lanes take.
    let kernels = text_pair(
        r#"
kernel @ballot max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2 : u32
  reg %r3, %r4 : pred
  reg %r5 : b32
  %r0 = ld.param %p0
  %r1 = mov.special %laneid
  %r3 = setp.lt.u32 %r1, 20
  if %r3 {
    %r2 = and.u32 %r1, 1
    %r4 = setp.ne.u32 %r2, 0
    %r5 = vote.sync.ballot.b32 %r4, 0xffffffff
    st.global.b32 [%r0], %r5
  }
}
"#,
        &[("0xffffffff", "0x000fffff")],
    );
    v.push(
        Case::new(
            "a full-mask ballot under divergence",
            kernels,
            1,
            32,
            vec![zeros(4)],
            Want {
                kind: ErrorKind::SyncMask,
                at: Some("vote.sync.ballot.b32"),
                cta: [0, 0, 0],
                thread: Some([20, 0, 0]),
                says: "member mask 0xffffffff but lanes 0x000fffff execute it",
            },
        )
        .output(|a| words_are(a, 0, [0x000a_aaaa])),
    );

    // A full-mask reduction in the `else` of a branch the first 8 lanes take.
    let kernels = text_pair(
        r#"
kernel @redux_else max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2 : u32
  reg %r3 : pred
  %r0 = ld.param %p0
  %r1 = mov.special %laneid
  %r3 = setp.lt.u32 %r1, 8
  if %r3 {
    st.global.u32 [%r0 + 4], 8
  } else {
    %r2 = redux.sync.add.u32 %r1, 0xffffffff
    st.global.u32 [%r0], %r2
  }
}
"#,
        &[("0xffffffff", "0xffffff00")],
    );
    v.push(
        Case::new(
            "a full-mask redux in the else branch",
            kernels,
            1,
            32,
            vec![zeros(8)],
            Want {
                kind: ErrorKind::SyncMask,
                at: Some("redux.sync.add.u32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "member mask 0xffffffff but lanes 0xffffff00 execute it",
            },
        )
        .output(|a| words_are(a, 0, [(8..32).sum(), 8])),
    );

    // A warp barrier naming half the warp, executed by all of it.
    let kernels = text_pair(
        r#"
kernel @half_warp_sync max_threads=32 shared=0 local=0 {
  bar.warp.sync 0x0000ffff
}
"#,
        &[("0x0000ffff", "0xffffffff")],
    );
    v.push(Case::new(
        "bar.warp.sync naming half of the warp that executes it",
        kernels,
        1,
        32,
        vec![],
        Want {
            kind: ErrorKind::SyncMask,
            at: Some("bar.warp.sync"),
            cta: [0, 0, 0],
            thread: Some([16, 0, 0]),
            says: "member mask 0x0000ffff but lanes 0xffffffff execute it",
        },
    ));

    // A tensor-core product computed inside the branch that stores half the results.
    let kernels = text_pair(
        r#"
kernel @mma_half max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 written "y"
  reg %r0 : u64
  reg %r1 : u32
  reg %r2 : pred
  reg %r3 : b32
  reg %r4, %r5, %r6, %r7 : f32
  reg %r8 : u64
  %r0 = ld.param %p0
  %r1 = mov.special %laneid
  %r3 = mov 0x3f803f80
  %r2 = setp.lt.u32 %r1, 16
  if %r2 {
    {%r4, %r5, %r6, %r7} = mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%r3, %r3, %r3, %r3}, {%r3, %r3}, {0, 0, 0, 0}
    %r8 = cvt.u64.u32 %r1
    %r8 = fma.u64 %r8, 4, %r0
    st.global.f32 [%r8], %r4
  }
}
"#,
        &[
            ("  if %r2 {\n    {%r4, %r5, %r6, %r7} = mma", "  {%r4, %r5, %r6, %r7} = mma"),
            ("{0, 0, 0, 0}\n", "{0, 0, 0, 0}\n  if %r2 {\n"),
        ],
    );
    v.push(
        Case::new(
            "mma.sync under divergence",
            kernels,
            1,
            32,
            vec![zeros(128)],
            Want {
                kind: ErrorKind::SyncMask,
                at: Some("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"),
                cta: [0, 0, 0],
                thread: Some([16, 0, 0]),
                says: "lanes 0x0000ffff active (all 32 needed)",
            },
        )
        // All ones times all ones over k = 16.
        .output(|a| floats_are(a, 0, (0..32).map(|l| if l < 16 { 16.0 } else { 0.0 }))),
    );

    // `ldmatrix` run by every warp of a CTA of 48 threads: the last warp has 16 lanes.
    let kernels = text_pair(
        r#"
kernel @ldmatrix_tail max_threads=64 shared=768 local=0 {
  reg %r0, %r1 : u32
  reg %r2, %r3 : u64
  reg %r4 : b32
  %r0 = mov.special %tid.x
  %r1 = mov.special %laneid
  %r2 = cvt.u64.u32 %r0
  %r2 = mul.u64 %r2, 16
  st.shared.v4.b32 [%r2], {%r0, %r0, %r0, %r0}
  bar.warp.sync 0xffffffff
  %r3 = cvt.u64.u32 %r1
  %r3 = mul.u64 %r3, 16
  %r4 = ldmatrix.sync.aligned.m8n8.x1.shared.b16 [%r3]
}
"#,
        &[
            ("  reg %r4 : b32", "  reg %r4 : b32\n  reg %r5 : pred"),
            ("  %r4 = ldmatrix", "  %r5 = setp.lt.u32 %r0, 32\n  if %r5 {\n  %r4 = ldmatrix"),
            ("[%r3]\n", "[%r3]\n  }\n"),
        ],
    );
    v.push(Case::new(
        "ldmatrix by a partial last warp",
        kernels,
        1,
        48,
        vec![],
        Want {
            kind: ErrorKind::SyncMask,
            at: Some("ldmatrix.sync.aligned.m8n8.x1.shared.b16"),
            cta: [0, 0, 0],
            thread: Some([32, 0, 0]),
            says: "lanes 0x0000ffff active (all 32 needed)",
        },
    ));

    // A shift down by one among the first 16 lanes: lane 15 reads lane 16, which is not in the
    // branch. Shuffling with the whole warp before branching is the fix.
    let kernels = text_pair(
        r#"
kernel @shfl_down max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2 : u32
  reg %r3 : pred
  reg %r4 : u64
  %r0 = ld.param %p0
  %r1 = mov.special %laneid
  %r3 = setp.lt.u32 %r1, 16
  if %r3 {
    %r2 = shfl.sync.down.b32 %r1, 1, 31, 0x0000ffff
    %r4 = cvt.u64.u32 %r1
    %r4 = fma.u64 %r4, 4, %r0
    st.global.u32 [%r4], %r2
  }
}
"#,
        &[
            ("    %r2 = shfl.sync.down.b32 %r1, 1, 31, 0x0000ffff\n", ""),
            ("  if %r3 {", "  %r2 = shfl.sync.down.b32 %r1, 1, 31, 0xffffffff\n  if %r3 {"),
        ],
    );
    v.push(
        Case::new(
            "a shuffle down reading a lane outside the branch",
            kernels,
            1,
            32,
            vec![zeros(128)],
            Want {
                kind: ErrorKind::ShflInactiveSource,
                at: Some("shfl.sync.down.b32"),
                cta: [0, 0, 0],
                thread: Some([15, 0, 0]),
                says: "lane 15 reads lane 16, which does not execute the shuffle",
            },
        )
        .output(|a| words_are(a, 0, (0..32).map(|l| if l < 16 { l + 1 } else { 0 }))),
    );

    // A broadcast from lane 0 executed in the branch lane 0 does not take.
    let kernels = text_pair(
        r#"
kernel @broadcast max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2, %r3 : u32
  reg %r4 : pred
  reg %r5 : u64
  %r0 = ld.param %p0
  %r1 = mov.special %laneid
  %r2 = mov 0
  %r3 = mov 0
  %r4 = setp.eq.u32 %r1, 0
  if %r4 {
    %r2 = mov 42
  } else {
    %r3 = shfl.sync.idx.b32 %r2, 0, 31, 0xfffffffe
  }
  %r5 = cvt.u64.u32 %r1
  %r5 = fma.u64 %r5, 4, %r0
  st.global.u32 [%r5], %r3
}
"#,
        &[(
            "  } else {\n    %r3 = shfl.sync.idx.b32 %r2, 0, 31, 0xfffffffe\n  }",
            "  }\n  %r3 = shfl.sync.idx.b32 %r2, 0, 31, 0xffffffff",
        )],
    );
    v.push(
        Case::new(
            "a broadcast from a lane that took the other branch",
            kernels,
            1,
            32,
            vec![zeros(128)],
            Want {
                kind: ErrorKind::ShflInactiveSource,
                at: Some("shfl.sync.idx.b32"),
                cta: [0, 0, 0],
                thread: Some([1, 0, 0]),
                says: "lane 1 reads lane 0, which does not execute the shuffle",
            },
        )
        .output(|a| words_are(a, 0, [42; 32])),
    );
}

fn read_only(v: &mut Vec<Case>) {
    // A store to a buffer declared read-only.
    let kernels = text_pair(
        r#"
kernel @readonly_store max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "y"
  reg %r0 : u64
  %r0 = ld.param %p0
  st.global.f32 [%r0], 1
}
"#,
        &[("readonly \"y\"", "written \"y\"")],
    );
    v.push(
        Case::new(
            "a store to a read-only buffer",
            kernels,
            1,
            1,
            vec![zeros(4)],
            Want {
                kind: ErrorKind::WriteReadOnly,
                at: Some("st.global.f32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "a store to read-only buffer `y`",
            },
        )
        .output(|a| floats_are(a, 0, [1.0])),
    );

    // A counter declared read-only and bumped with an atomic.
    let kernels = text_pair(
        r#"
kernel @readonly_counter max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 readonly "counter"
  reg %r0 : u64
  %r0 = ld.param %p0
  red.global.add.u32 [%r0], 1
}
"#,
        &[("readonly \"counter\"", "written \"counter\"")],
    );
    v.push(
        Case::new(
            "an atomic on a read-only buffer",
            kernels,
            1,
            32,
            vec![zeros(4)],
            Want {
                kind: ErrorKind::WriteReadOnly,
                at: Some("red.global.add.u32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "an atomic to read-only buffer `counter`",
            },
        )
        .output(|a| words_are(a, 0, [32])),
    );

    // A read-modify-write of one value that loads it through the non-coherent path.
    let kernels = text_pair(
        r#"
kernel @nc_of_written max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 written "y"
  reg %r0 : u64
  reg %r1 : f32
  %r0 = ld.param %p0
  %r1 = ld.global.nc.f32 [%r0]
  %r1 = add.f32 %r1, 1
  st.global.f32 [%r0], %r1
}
"#,
        &[("ld.global.nc.f32", "ld.global.f32")],
    );
    v.push(
        Case::new(
            "a .nc load of a buffer the kernel writes",
            kernels,
            1,
            1,
            vec![f32s(&[2.0])],
            Want {
                kind: ErrorKind::NcOfWritten,
                at: Some("ld.global.nc.f32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "a .nc load of buffer `y`, which this kernel writes",
            },
        )
        .output(|a| floats_are(a, 0, [3.0])),
    );

    // `y += x` four floats per thread, the accumulator loaded through the non-coherent path.
    let kernels = text_pair(
        r#"
kernel @accumulate max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2 : u32
  reg %r3, %r4 : u64
  reg %r5, %r6, %r7, %r8, %r9, %r10, %r11, %r12 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r3 = cvt.u64.u32 %r2
  %r3 = mul.u64 %r3, 16
  %r4 = add.u64 %r1, %r3
  %r3 = add.u64 %r0, %r3
  {%r5, %r6, %r7, %r8} = ld.global.nc.v4.f32 [%r3]
  {%r9, %r10, %r11, %r12} = ld.global.nc.v4.f32 [%r4]
  %r5 = add.f32 %r5, %r9
  %r6 = add.f32 %r6, %r10
  %r7 = add.f32 %r7, %r11
  %r8 = add.f32 %r8, %r12
  st.global.v4.f32 [%r4], {%r5, %r6, %r7, %r8}
}
"#,
        &[("ld.global.nc.v4.f32 [%r4]", "ld.global.v4.f32 [%r4]")],
    );
    v.push(
        Case::new(
            "an accumulator loaded with .nc and stored back",
            kernels,
            1,
            32,
            vec![f32s(&iota(128)), f32s(&[1.0; 128])],
            Want {
                kind: ErrorKind::NcOfWritten,
                at: Some("ld.global.nc.v4.f32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "a .nc load of buffer `y`",
            },
        )
        .output(|a| floats_are(a, 1, (0..128).map(|i| i as f32 + 1.0))),
    );
}

fn division(v: &mut Vec<Case>) {
    // Integer division by a zero immediate.
    let kernels = text_pair(
        r#"
kernel @div max_threads=32 shared=0 local=0 {
  reg %r0, %r1 : u32
  %r0 = mov.special %tid.x
  %r1 = div.u32 %r0, 0
}
"#,
        &[("div.u32 %r0, 0", "div.u32 %r0, 3")],
    );
    v.push(Case::new(
        "integer division by zero",
        kernels,
        1,
        1,
        vec![],
        Want {
            kind: ErrorKind::DivisionByZero,
            at: Some("div.u32"),
            cta: [0, 0, 0],
            thread: Some([0, 0, 0]),
            says: "integer division by zero",
        },
    ));

    // A remainder by `lane - 5`, zero for lane 5 (the intended divisor was `lane + 5`).
    let kernels = text_pair(
        r#"
kernel @rem_lane max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  reg %r1, %r2, %r3 : u32
  reg %r4 : u64
  %r0 = ld.param %p0
  %r1 = mov.special %laneid
  %r2 = sub.u32 %r1, 5
  %r3 = rem.u32 100, %r2
  %r4 = cvt.u64.u32 %r1
  %r4 = fma.u64 %r4, 4, %r0
  st.global.u32 [%r4], %r3
}
"#,
        &[("sub.u32 %r1, 5", "add.u32 %r1, 5")],
    );
    v.push(
        Case::new(
            "an integer remainder by a divisor that is zero for one lane",
            kernels,
            1,
            32,
            vec![zeros(128)],
            Want {
                kind: ErrorKind::DivisionByZero,
                at: Some("rem.u32"),
                cta: [0, 0, 0],
                thread: Some([5, 0, 0]),
                says: "integer division by zero",
            },
        )
        .output(|a| words_are(a, 0, (0..32).map(|l| 100 % (l + 5)))),
    );
}

fn cp_async(v: &mut Vec<Case>) {
    // A copied tile read before any wait: the bytes have not landed.
    let kernels = text_pair(
        r#"
kernel @stage max_threads=32 shared=128 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2 : u32
  reg %r3, %r4 : u64
  reg %r5 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %laneid
  %r3 = cvt.u64.u32 %r2
  %r3 = mul.u64 %r3, 4
  %r4 = add.u64 %r0, %r3
  cp.async.ca.shared.global [%r3], [%r4], 4
  cp.async.commit_group
  %r5 = ld.shared.f32 [%r3]
  %r4 = add.u64 %r1, %r3
  st.global.f32 [%r4], %r5
}
"#,
        &[("  %r5 = ld.shared", "  cp.async.wait_group 0\n  %r5 = ld.shared")],
    );
    v.push(
        Case::new(
            "a cp.async destination read before the wait",
            kernels,
            1,
            32,
            vec![f32s(&iota(32)), zeros(128)],
            Want {
                kind: ErrorKind::CpAsyncPending,
                at: Some("ld.shared.f32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "shared byte 0 is the destination of a cp.async no wait has completed yet",
            },
        )
        .output(|a| floats_are(a, 1, iota(32))),
    );

    // Two stages in flight, a wait that leaves the newest one pending, and no wait after: the
    // threads exit with a copy still in flight.
    let kernels = text_pair(
        r#"
kernel @undrained max_threads=32 shared=256 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2 : u32
  reg %r3, %r4 : u64
  reg %r5 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %laneid
  %r3 = cvt.u64.u32 %r2
  %r3 = mul.u64 %r3, 4
  %r4 = add.u64 %r0, %r3
  cp.async.ca.shared.global [%r3], [%r4], 4
  cp.async.commit_group
  cp.async.ca.shared.global [%r3 + 128], [%r4 + 128], 4
  cp.async.commit_group
  cp.async.wait_group 1
  %r5 = ld.shared.f32 [%r3]
  %r4 = add.u64 %r1, %r3
  st.global.f32 [%r4], %r5
}
"#,
        &[("cp.async.wait_group 1", "cp.async.wait_group 0")],
    );
    v.push(
        Case::new(
            "threads exit with a cp.async stage still in flight",
            kernels,
            1,
            32,
            vec![f32s(&iota(64)), zeros(128)],
            Want {
                kind: ErrorKind::CpAsyncPending,
                at: None,
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "the thread exits with",
            },
        )
        .output(|a| floats_are(a, 1, iota(32))),
    );

    // A CTA barrier where a wait belongs: `bar.sync` completes no copy, so warp 0 reads bytes
    // warp 1's copies have not delivered.
    let kernels = text_pair(
        r#"
kernel @barrier_not_wait max_threads=64 shared=256 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2 : u32
  reg %r3, %r4 : u64
  reg %r5 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r3 = cvt.u64.u32 %r2
  %r3 = mul.u64 %r3, 4
  %r4 = add.u64 %r0, %r3
  cp.async.ca.shared.global [%r3], [%r4], 4
  cp.async.commit_group
  bar.sync
  %r2 = xor.u32 %r2, 32
  %r4 = cvt.u64.u32 %r2
  %r4 = mul.u64 %r4, 4
  %r5 = ld.shared.f32 [%r4]
  %r4 = add.u64 %r1, %r3
  st.global.f32 [%r4], %r5
}
"#,
        &[("  bar.sync", "  cp.async.wait_all\n  bar.sync")],
    );
    v.push(
        Case::new(
            "a barrier instead of a cp.async wait",
            kernels,
            1,
            64,
            vec![f32s(&iota(64)), zeros(256)],
            Want {
                kind: ErrorKind::CpAsyncPending,
                at: Some("ld.shared.f32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "shared byte 128 is the destination of a cp.async no wait has completed yet",
            },
        )
        .output(|a| floats_are(a, 1, (0..64u32).map(|t| (t ^ 32) as f32))),
    );

    // A second copy into the stage the first is still filling.
    let kernels = text_pair(
        r#"
kernel @stage_reuse max_threads=32 shared=256 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2 : u32
  reg %r3, %r4 : u64
  reg %r5, %r6 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %laneid
  %r3 = cvt.u64.u32 %r2
  %r3 = mul.u64 %r3, 4
  %r4 = add.u64 %r0, %r3
  cp.async.ca.shared.global [%r3], [%r4], 4
  cp.async.commit_group
  cp.async.ca.shared.global [%r3], [%r4 + 128], 4
  cp.async.commit_group
  cp.async.wait_all
  %r5 = ld.shared.f32 [%r3]
  %r6 = ld.shared.f32 [%r3 + 128]
  %r5 = add.f32 %r5, %r6
  %r4 = add.u64 %r1, %r3
  st.global.f32 [%r4], %r5
}
"#,
        &[("[%r3], [%r4 + 128]", "[%r3 + 128], [%r4 + 128]")],
    );
    v.push(
        Case::new(
            "a cp.async into a stage whose copy is still in flight",
            kernels,
            1,
            32,
            vec![f32s(&iota(64)), zeros(128)],
            Want {
                kind: ErrorKind::CpAsyncPending,
                at: Some("cp.async.ca.shared.global"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "shared byte 0 is the destination of an earlier cp.async no wait has completed",
            },
        )
        .output(|a| floats_are(a, 1, (0..32).map(|i| (2 * i + 32) as f32))),
    );
    // A shift through global memory inside one CTA: each thread stores its index, then reads
    // the element 32 places on, which the other warp stores — with no barrier between, warp 0
    // reads before warp 1 writes. The twin puts the barrier in.
    let kernels = text_pair(
        r#"
kernel @global_shift max_threads=64 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  param %p1 : buffer i32 align=16 written "z"
  reg %r0, %r1 : u64
  reg %r2, %r3 : u32
  reg %r4, %r5, %r6 : u64
  reg %r7 : u32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r4 = cvt.u64.u32 %r2
  %r4 = mul.u64 %r4, 4
  %r5 = add.u64 %r0, %r4
  st.global.u32 [%r5], %r2
  %r3 = add.u32 %r2, 32
  %r3 = and.u32 %r3, 63
  %r6 = cvt.u64.u32 %r3
  %r6 = fma.u64 %r6, 4, %r0
  %r7 = ld.global.u32 [%r6]
  %r6 = add.u64 %r1, %r4
  st.global.u32 [%r6], %r7
}
"#,
        &[("  %r3 = add.u32 %r2, 32", "  bar.sync\n  %r3 = add.u32 %r2, 32")],
    );
    v.push(
        Case::new(
            "a shift through global memory with no barrier between the warps",
            kernels,
            1,
            64,
            vec![zeros(64 * 4), zeros(64 * 4)],
            Want {
                kind: ErrorKind::GlobalRace,
                at: Some("st.global.u32"),
                cta: [0, 0, 0],
                thread: Some([32, 0, 0]),
                says: "byte 128 of buffer `y`: read then written by warp 0 and warp 1 with no bar.sync between",
            },
        )
        .output(|a| words_are(a, 1, (0..64).map(|t| (t + 32) % 64))),
    );

    // A neighbour exchange through global memory within one warp: lanes are scheduled
    // independently, so the reads need a bar.warp.sync after the stores.
    let kernels = text_pair(
        r#"
kernel @global_neighbour max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  param %p1 : buffer i32 align=16 written "z"
  reg %r0, %r1 : u64
  reg %r2, %r3 : u32
  reg %r4, %r5, %r6 : u64
  reg %r7 : u32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r4 = cvt.u64.u32 %r2
  %r4 = mul.u64 %r4, 4
  %r5 = add.u64 %r0, %r4
  st.global.u32 [%r5], %r2
  %r3 = xor.u32 %r2, 1
  %r6 = cvt.u64.u32 %r3
  %r6 = fma.u64 %r6, 4, %r0
  %r7 = ld.global.u32 [%r6]
  %r6 = add.u64 %r1, %r4
  st.global.u32 [%r6], %r7
}
"#,
        &[("  %r3 = xor.u32 %r2, 1", "  bar.warp.sync 0xffffffff\n  %r3 = xor.u32 %r2, 1")],
    );
    v.push(
        Case::new(
            "a neighbour exchange through global memory without bar.warp.sync",
            kernels,
            1,
            32,
            vec![zeros(32 * 4), zeros(32 * 4)],
            Want {
                kind: ErrorKind::WarpSyncMissing,
                at: Some("ld.global.u32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says:
                    "byte 4 of buffer `y`: written then read by lanes 1 and 0 of warp 0 with no bar.warp.sync between",
            },
        )
        .output(|a| words_are(a, 1, (0..32).map(|t| t ^ 1))),
    );
}

fn cross_cta(v: &mut Vec<Case>) {
    // A stencil reading its right neighbour from the output: at the edge of a CTA that is the
    // next CTA's element. The twin recomputes the halo from the input.
    let kernels = text_pair(
        r#"
kernel @halo max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  param %p2 : buffer f32 align=16 written "z"
  reg %r0, %r1, %r2 : u64
  reg %r3, %r4, %r5, %r6 : u32
  reg %r7, %r8, %r9, %r10 : u64
  reg %r11, %r12 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = ld.param %p2
  %r3 = mov.special %tid.x
  %r4 = mov.special %ctaid.x
  %r5 = mov.special %ntid.x
  %r6 = fma.u32 %r4, %r5, %r3
  %r7 = cvt.u64.u32 %r6
  %r7 = mul.u64 %r7, 4
  %r8 = add.u64 %r0, %r7
  %r9 = add.u64 %r1, %r7
  %r10 = add.u64 %r2, %r7
  %r11 = ld.global.f32 [%r8]
  %r11 = mul.f32 %r11, 2
  st.global.f32 [%r9], %r11
  bar.sync
  %r12 = ld.global.f32 [%r9 + 4]
  %r12 = add.f32 %r11, %r12
  st.global.f32 [%r10], %r12
}
"#,
        &[("  %r12 = ld.global.f32 [%r9 + 4]", "  %r12 = ld.global.f32 [%r8 + 4]\n  %r12 = mul.f32 %r12, 2")],
    );
    v.push(
        Case::new(
            "a halo read of the neighbouring CTA's output",
            kernels,
            2,
            32,
            vec![f32s(&iota(65)), zeros(65 * 4), zeros(64 * 4)],
            Want {
                kind: ErrorKind::CrossCtaRace,
                at: Some("st.global.f32"),
                cta: [1, 0, 0],
                thread: Some([0, 0, 0]),
                says: "a plain write to byte 128 of buffer `y`, which CTA (0, 0, 0) of the same launch read",
            },
        )
        .output(|a| floats_are(a, 2, (0..64).map(|i| (4 * i + 2) as f32))),
    );

    // The output indexed by the thread instead of the global index: every CTA writes the
    // first 32 elements.
    let kernels = text_pair(
        r#"
kernel @forgot_ctaid max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2, %r3, %r4, %r5 : u32
  reg %r6, %r7 : u64
  reg %r8 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r3 = mov.special %ctaid.x
  %r4 = mov.special %ntid.x
  %r5 = fma.u32 %r3, %r4, %r2
  %r6 = cvt.u64.u32 %r5
  %r6 = fma.u64 %r6, 4, %r0
  %r8 = ld.global.f32 [%r6]
  %r8 = add.f32 %r8, 1
  %r7 = cvt.u64.u32 %r2
  %r7 = fma.u64 %r7, 4, %r1
  st.global.f32 [%r7], %r8
}
"#,
        &[("%r7 = cvt.u64.u32 %r2", "%r7 = cvt.u64.u32 %r5")],
    );
    v.push(
        Case::new(
            "an output indexed without the CTA",
            kernels,
            2,
            32,
            vec![f32s(&iota(64)), zeros(64 * 4)],
            Want {
                kind: ErrorKind::CrossCtaRace,
                at: Some("st.global.f32"),
                cta: [1, 0, 0],
                thread: Some([0, 0, 0]),
                says: "a plain write to byte 0 of buffer `y`, which CTA (0, 0, 0) of the same launch wrote",
            },
        )
        .output(|a| floats_are(a, 1, (0..64).map(|i| i as f32 + 1.0))),
    );

    // CTA 1 spins on a flag CTA 0 raises, with plain loads and stores. With atomics for both
    // the flag and its polls the simulator's forward order runs clean (on the hardware this
    // also needs both CTAs resident at once; a second launch is the robust fix).
    let kernels = text_pair(
        r#"
kernel @flag max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "flag"
  reg %r0 : u64
  reg %r1, %r2 : u32
  reg %r3, %r4 : pred
  %r0 = ld.param %p0
  %r1 = mov.special %ctaid.x
  %r3 = setp.eq.u32 %r1, 0
  if %r3 {
    st.global.u32 [%r0], 1
  } else {
    do {
      %r2 = ld.global.u32 [%r0]
      %r4 = setp.eq.u32 %r2, 0
    } while %r4
  }
}
"#,
        &[
            ("st.global.u32 [%r0], 1", "red.global.add.u32 [%r0], 1"),
            ("ld.global.u32 [%r0]", "atom.global.add.u32 [%r0], 0"),
        ],
    );
    v.push(
        Case::new(
            "a spin on a flag another CTA sets, with plain accesses",
            kernels,
            2,
            32,
            vec![zeros(4)],
            Want {
                kind: ErrorKind::CrossCtaRace,
                at: Some("ld.global.u32"),
                cta: [1, 0, 0],
                thread: Some([0, 0, 0]),
                says: "a plain read of byte 0 of buffer `flag`, which CTA (0, 0, 0) of the same launch wrote",
            },
        )
        .output(|a| words_are(a, 0, [32])),
    );

    // Every thread bumps a counter atomically; thread 0 of each CTA then reads it with a plain
    // load, which CTA 1's atomics race with. The twin reads it with an atomic (the value is
    // the count at that moment, as any read within the launch would be).
    let kernels = text_pair(
        r#"
kernel @ticket max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "counter"
  param %p1 : buffer i32 align=16 written "seen"
  reg %r0, %r1 : u64
  reg %r2, %r3, %r4 : u32
  reg %r5 : pred
  reg %r6 : u64
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r3 = mov.special %ctaid.x
  red.global.add.u32 [%r0], 1
  bar.warp.sync 0xffffffff
  %r5 = setp.eq.u32 %r2, 0
  if %r5 {
    %r4 = ld.global.u32 [%r0]
    %r6 = cvt.u64.u32 %r3
    %r6 = fma.u64 %r6, 4, %r1
    st.global.u32 [%r6], %r4
  }
}
"#,
        &[("ld.global.u32 [%r0]", "atom.global.add.u32 [%r0], 0")],
    );
    v.push(
        Case::new(
            "a plain read of a counter other CTAs update atomically",
            kernels,
            2,
            32,
            vec![zeros(4), zeros(8)],
            Want {
                kind: ErrorKind::CrossCtaRace,
                at: Some("red.global.add.u32"),
                cta: [1, 0, 0],
                thread: Some([0, 0, 0]),
                says: "an atomic on byte 0 of buffer `counter`, which CTA (0, 0, 0) of the same launch read",
            },
        )
        .output(|a| words_are(a, 0, [64])),
    );

    // One float per CTA summed with a float atomic: 2^24 + 1 + 1 is 2^24 in forward order and
    // 2^24 + 2 in reverse. The twin converts to an integer first (integer adds associate).
    let kernels = text_pair(
        r#"
kernel @float_total max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "total"
  reg %r0, %r1 : u64
  reg %r2, %r3 : u32
  reg %r4 : pred
  reg %r5 : u64
  reg %r6 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r3 = mov.special %ctaid.x
  %r4 = setp.eq.u32 %r2, 0
  if %r4 {
    %r5 = cvt.u64.u32 %r3
    %r5 = fma.u64 %r5, 4, %r0
    %r6 = ld.global.f32 [%r5]
    red.global.add.f32 [%r1], %r6
  }
}
"#,
        &[
            ("buffer f32 align=16 written", "buffer i32 align=16 written"),
            ("  reg %r6 : f32", "  reg %r6 : f32\n  reg %r7 : u32"),
            ("    red.global.add.f32 [%r1], %r6", "    %r7 = cvt.rz.u32.f32 %r6\n    red.global.add.u32 [%r1], %r7"),
        ],
    );
    v.push(
        Case::new(
            "a float atomic sum across CTAs",
            kernels,
            3,
            32,
            vec![f32s(&[16_777_216.0, 1.0, 1.0]), zeros(4)],
            Want {
                kind: ErrorKind::OrderDependent,
                at: None,
                cta: [0, 0, 0],
                thread: None,
                says: "buffer `total` differs at byte 0 between the forward order and CTA order reverse",
            },
        )
        .options(Options { cta_orders: 3, ..Options::default() })
        .output(|a| words_are(a, 1, [16_777_218])),
    );

    // The lanes of one warp add their floats into one word with a float atomic: the hardware
    // applies them in no specified order, so 2^24 + 1 + 1 + ... rounds differently when the
    // last lane goes first (the odd warp orders). The twin adds integers.
    let kernels = text_pair(
        r#"
kernel @warp_float_total max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "total"
  reg %r0, %r1 : u64
  reg %r2 : u32
  reg %r3 : u64
  reg %r4 : f32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r3 = cvt.u64.u32 %r2
  %r3 = fma.u64 %r3, 4, %r0
  %r4 = ld.global.f32 [%r3]
  red.global.add.f32 [%r1], %r4
}
"#,
        &[
            ("buffer f32 align=16 written", "buffer i32 align=16 written"),
            ("  reg %r4 : f32", "  reg %r4 : f32\n  reg %r5 : u32"),
            ("  red.global.add.f32 [%r1], %r4", "  %r5 = cvt.rz.u32.f32 %r4\n  red.global.add.u32 [%r1], %r5"),
        ],
    );
    let mut x = vec![1.0f32; 32];
    x[0] = 16_777_216.0;
    v.push(
        Case::new(
            "a float atomic sum across the lanes of one warp",
            kernels,
            1,
            32,
            vec![f32s(&x), zeros(4)],
            Want {
                kind: ErrorKind::OrderDependent,
                at: None,
                cta: [0, 0, 0],
                thread: None,
                says: "buffer `total` differs at byte 0 between the forward order and warp order reverse",
            },
        )
        .options(Options { warp_orders: 2, ..Options::default() })
        .output(|a| words_are(a, 1, [16_777_216 + 31])),
    );

    // A split reduction: each CTA sums its slice with shuffles, and lane 0 adds the partial to
    // one float with an atomic, so the total rounds in the order the CTAs run. The twin stores
    // each partial to its own slot (the last level of the sum belongs to a second launch).
    let kernels = text_pair(
        r#"
kernel @split_sum max_threads=32 shared=0 local=0 {
  param %p0 : buffer f32 align=16 readonly "x"
  param %p1 : buffer f32 align=16 written "partials"
  reg %r0, %r1 : u64
  reg %r2, %r3, %r4 : u32
  reg %r5 : u64
  reg %r6, %r7 : f32
  reg %r8 : pred
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %laneid
  %r3 = mov.special %ctaid.x
  %r4 = fma.u32 %r3, 32, %r2
  %r5 = cvt.u64.u32 %r4
  %r5 = fma.u64 %r5, 4, %r0
  %r6 = ld.global.f32 [%r5]
  %r7 = shfl.sync.bfly.b32 %r6, 16, 31, 0xffffffff
  %r6 = add.f32 %r6, %r7
  %r7 = shfl.sync.bfly.b32 %r6, 8, 31, 0xffffffff
  %r6 = add.f32 %r6, %r7
  %r7 = shfl.sync.bfly.b32 %r6, 4, 31, 0xffffffff
  %r6 = add.f32 %r6, %r7
  %r7 = shfl.sync.bfly.b32 %r6, 2, 31, 0xffffffff
  %r6 = add.f32 %r6, %r7
  %r7 = shfl.sync.bfly.b32 %r6, 1, 31, 0xffffffff
  %r6 = add.f32 %r6, %r7
  %r8 = setp.eq.u32 %r2, 0
  if %r8 {
    red.global.add.f32 [%r1], %r6
  }
}
"#,
        &[(
            "    red.global.add.f32 [%r1], %r6",
            "    %r5 = cvt.u64.u32 %r3\n    %r5 = fma.u64 %r5, 4, %r1\n    st.global.f32 [%r5], %r6",
        )],
    );
    let mut x = vec![0.0f32; 96];
    (x[0], x[32], x[64]) = (16_777_216.0, 1.0, 1.0);
    v.push(
        Case::new(
            "a split reduction finished with a float atomic",
            kernels,
            3,
            32,
            vec![f32s(&x), zeros(12)],
            Want {
                kind: ErrorKind::OrderDependent,
                at: None,
                cta: [0, 0, 0],
                thread: None,
                says: "buffer `partials` differs at byte 0 between the forward order and CTA order reverse",
            },
        )
        .options(Options { cta_orders: 3, ..Options::default() })
        .output(|a| floats_are(a, 1, [16_777_216.0, 1.0, 1.0])),
    );
}

fn runaway(v: &mut Vec<Case>) {
    // Runaway kernels stop at a cap of 10 000 warp instructions. Control-flow markers count as
    // warp instructions too, so where the cap lands is fixed by the loop's shape: for each loop
    // here it is the back edge (`at` names it `loop`), and no thread is named.
    let capped = Options { max_instructions: 10_000, ..Options::default() };

    // A loop whose exit test can never fail: an unsigned `>= 0`.
    let kernels = text_pair(
        r#"
kernel @runaway max_threads=32 shared=0 local=0 {
  reg %r0 : u32
  reg %r1 : pred
  %r0 = mov 0
  do {
    %r0 = add.u32 %r0, 1
    %r1 = setp.ge.u32 %r0, 0
  } while %r1
}
"#,
        &[("setp.ge.u32 %r0, 0", "setp.lt.u32 %r0, 10")],
    );
    v.push(
        Case::new(
            "a loop whose exit test is always true",
            kernels,
            1,
            1,
            vec![],
            Want {
                kind: ErrorKind::InstructionCap,
                at: Some("loop"),
                cta: [0, 0, 0],
                thread: None,
                says: "more than 10000 warp instructions in one launch",
            },
        )
        .options(capped.clone()),
    );

    // A countdown by two from an odd start steps over zero.
    let kernels = text_pair(
        r#"
kernel @countdown max_threads=32 shared=0 local=0 {
  reg %r0 : u32
  reg %r1 : pred
  %r0 = mov 7
  do {
    %r0 = sub.u32 %r0, 2
    %r1 = setp.ne.u32 %r0, 0
  } while %r1
}
"#,
        &[("mov 7", "mov 8")],
    );
    v.push(
        Case::new(
            "a countdown that steps over zero",
            kernels,
            1,
            32,
            vec![],
            Want {
                kind: ErrorKind::InstructionCap,
                at: Some("loop"),
                cta: [0, 0, 0],
                thread: None,
                says: "more than 10000 warp instructions",
            },
        )
        .options(capped.clone()),
    );

    // A consumer CTA that runs before its producer: CTA 0 polls (atomically) a flag only CTA 1
    // raises, and the simulator runs CTA 0 first. The twin swaps the roles.
    let kernels = text_pair(
        r#"
kernel @consumer_first max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "flag"
  reg %r0 : u64
  reg %r1, %r2 : u32
  reg %r3, %r4 : pred
  %r0 = ld.param %p0
  %r1 = mov.special %ctaid.x
  %r3 = setp.eq.u32 %r1, 1
  if %r3 {
    red.global.add.u32 [%r0], 1
  } else {
    do {
      %r2 = atom.global.add.u32 [%r0], 0
      %r4 = setp.eq.u32 %r2, 0
    } while %r4
  }
}
"#,
        &[("setp.eq.u32 %r1, 1", "setp.eq.u32 %r1, 0")],
    );
    v.push(
        Case::new(
            "a CTA spinning on a flag a later CTA raises",
            kernels,
            2,
            32,
            vec![zeros(4)],
            Want {
                kind: ErrorKind::InstructionCap,
                at: Some("loop"),
                cta: [0, 0, 0],
                thread: None,
                says: "more than 10000 warp instructions",
            },
        )
        .options(capped)
        .output(|a| words_are(a, 0, [32])),
    );
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn every_broken_kernel_fails_with_its_error_and_its_twin_runs_clean() {
    let cases = corpus();
    let failures: Vec<String> =
        cases.iter().filter_map(|c| c.check().err().map(|e| format!("{}: {e}", c.name))).collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn every_error_kind_is_in_the_corpus() {
    // Every kind a kernel can be written wrong into. The match does not compile when a variant
    // is added to `ErrorKind`: sort it in there and, if it is a way of writing a kernel wrong,
    // list it in `kinds` and add cases for it.
    let wanted = |k: ErrorKind| match k {
        // A launch that does not fit its kernel: the kernel is not wrong (tests/sim.rs).
        ErrorKind::BadLaunch => false,
        ErrorKind::OutOfBounds
        | ErrorKind::Misaligned
        | ErrorKind::UninitializedRegister
        | ErrorKind::UninitializedMemory
        | ErrorKind::BarrierDivergence
        | ErrorKind::BarrierPartial
        | ErrorKind::SharedRace
        | ErrorKind::WarpSyncMissing
        | ErrorKind::SyncMask
        | ErrorKind::ShflInactiveSource
        | ErrorKind::WriteReadOnly
        | ErrorKind::NcOfWritten
        | ErrorKind::DivisionByZero
        | ErrorKind::CpAsyncPending
        | ErrorKind::CrossCtaRace
        | ErrorKind::GlobalRace
        | ErrorKind::DependentBeforeWait
        | ErrorKind::OrderDependent
        | ErrorKind::InstructionCap => true,
    };
    let kinds = [
        ErrorKind::BadLaunch,
        ErrorKind::OutOfBounds,
        ErrorKind::Misaligned,
        ErrorKind::UninitializedRegister,
        ErrorKind::UninitializedMemory,
        ErrorKind::BarrierDivergence,
        ErrorKind::BarrierPartial,
        ErrorKind::SharedRace,
        ErrorKind::WarpSyncMissing,
        ErrorKind::SyncMask,
        ErrorKind::ShflInactiveSource,
        ErrorKind::WriteReadOnly,
        ErrorKind::NcOfWritten,
        ErrorKind::DivisionByZero,
        ErrorKind::CpAsyncPending,
        ErrorKind::CrossCtaRace,
        ErrorKind::GlobalRace,
        ErrorKind::DependentBeforeWait,
        ErrorKind::OrderDependent,
        ErrorKind::InstructionCap,
    ];
    let cases = corpus();
    assert!(cases.len() >= 30, "{} cases: the corpus holds at least 30", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    let missing: Vec<ErrorKind> =
        kinds.into_iter().filter(|&k| wanted(k) && !cases.iter().any(|c| c.want.kind == k)).collect();
    assert!(missing.is_empty(), "no case fails with {missing:?}");
    let unlisted: Vec<ErrorKind> =
        cases.iter().map(|c| c.want.kind).filter(|k| !kinds.contains(k) || !wanted(*k)).collect();
    assert!(unlisted.is_empty(), "cases of kinds outside the list: {unlisted:?}");
}

/// Runs a program of this case's kernel: every buffer argument is program buffer of the same
/// index, the written ones poisoned (they hold nothing until a launch writes them), the
/// read-only ones holding the case's data; the buffers end in `args`.
fn program_of(
    steps_before: &[(&Kernel, Launch, Vec<Bind>)],
    k: &Kernel,
    launch: &Launch,
    args: &mut [Arg],
    dependent: bool,
) -> Result<(), SimError> {
    let mut buffers: Vec<Buffer> = k
        .params
        .iter()
        .zip(args.iter())
        .map(|(p, a)| match (p, a) {
            (
                lathe_kernel::ir::Param::Buffer { name, access: lathe_kernel::ir::Access::Written, .. },
                Arg::Buffer(b),
            ) => Buffer::poisoned(name.clone(), b.len()),
            (p, Arg::Buffer(b)) => Buffer::data(p.name(), b.clone()),
            (p, Arg::Scalar(_)) => Buffer::data(p.name(), Vec::new()),
        })
        .collect();
    let binds: Vec<Bind> = args
        .iter()
        .enumerate()
        .map(|(i, a)| match a {
            Arg::Buffer(_) => Bind::Buffer(i),
            Arg::Scalar(v) => Bind::Scalar(*v),
        })
        .collect();
    let mut steps: Vec<Step> = steps_before
        .iter()
        .map(|(k, l, b)| Step::Launch { kernel: k, launch: *l, args: b.clone(), dependent: false })
        .collect();
    steps.push(Step::Launch { kernel: k, launch: *launch, args: binds, dependent });
    let result = run_program(&steps, &mut buffers, &Options::default()).map(|_| ());
    for (a, b) in args.iter_mut().zip(buffers) {
        if let Arg::Buffer(bytes) = a {
            *bytes = b.bytes;
        }
    }
    result
}

/// The case's kernel alone, its written buffers poisoned.
fn poisoned_launch(k: &Kernel, launch: &Launch, args: &mut [Arg], _: &Options) -> Result<(), SimError> {
    program_of(&[], k, launch, args, false)
}

/// `h[tid] = 2 * tid`, writing the second argument of the case's kernel.
const PRODUCE_H: &str = r#"
kernel @produce max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "h"
  reg %r0 : u64
  reg %r1 : u32
  reg %r2 : u64
  %r0 = ld.param %p0
  %r1 = mov.special %tid.x
  %r2 = cvt.u64.u32 %r1
  %r2 = fma.u64 %r2, 4, %r0
  %r1 = mul.u32 %r1, 2
  st.global.u32 [%r2], %r1
}
"#;

/// A producer writing argument 1 (`h`), then the case's kernel as a dependent launch.
fn after_producer(k: &Kernel, launch: &Launch, args: &mut [Arg], _: &Options) -> Result<(), SimError> {
    let producer = parse(PRODUCE_H).expect("the producer parses");
    program_of(
        &[(&producer, Launch { grid: [1, 1, 1], block: [32, 1, 1] }, vec![Bind::Buffer(1)])],
        k,
        launch,
        args,
        true,
    )
}

fn programs(v: &mut Vec<Case>) {
    // A split reduction's last level adds into a total no launch zeroed: the atomic reads the
    // poison. The twin stores each thread's value to its own slot instead (a second launch
    // would sum them).
    let kernels = text_pair(
        r#"
kernel @unzeroed_total max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 readonly "x"
  param %p1 : buffer i32 align=16 written "total"
  reg %r0, %r1 : u64
  reg %r2 : u32
  reg %r3 : u64
  reg %r4 : u32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r3 = cvt.u64.u32 %r2
  %r3 = mul.u64 %r3, 4
  %r0 = add.u64 %r0, %r3
  %r4 = ld.global.u32 [%r0]
  red.global.add.u32 [%r1], %r4
}
"#,
        &[("  red.global.add.u32 [%r1], %r4", "  %r1 = add.u64 %r1, %r3\n  st.global.u32 [%r1], %r4")],
    );
    v.push(
        Case::new(
            "an atomic sum into scratch no launch zeroed",
            kernels,
            1,
            32,
            vec![i32s(&(0..32).collect::<Vec<_>>()), zeros(128)],
            Want {
                kind: ErrorKind::UninitializedMemory,
                at: Some("red.global.add.u32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "byte 0 of buffer `total` (program buffer `total`) holds no data",
            },
        )
        .runner(poisoned_launch)
        .output(|a| words_are(a, 1, 0..32)),
    );

    // A dependent launch reads its predecessor's output before griddepcontrol.wait: the
    // predecessor may not have written it yet. The twin loads the weight early (what the
    // early start is for) and the activation after the wait.
    let kernels = text_pair(
        r#"
kernel @early_activation max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 readonly "w"
  param %p1 : buffer i32 align=16 readonly "h"
  param %p2 : buffer i32 align=16 written "y"
  reg %r0, %r1, %r2 : u64
  reg %r3 : u32
  reg %r4 : u64
  reg %r5, %r6 : u32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = ld.param %p2
  %r3 = mov.special %tid.x
  %r4 = cvt.u64.u32 %r3
  %r4 = mul.u64 %r4, 4
  %r0 = add.u64 %r0, %r4
  %r1 = add.u64 %r1, %r4
  %r5 = ld.global.u32 [%r0]
  %r6 = ld.global.u32 [%r1]
  griddepcontrol.wait
  %r5 = add.u32 %r5, %r6
  %r2 = add.u64 %r2, %r4
  st.global.u32 [%r2], %r5
}
"#,
        &[("  %r6 = ld.global.u32 [%r1]\n  griddepcontrol.wait", "  griddepcontrol.wait\n  %r6 = ld.global.u32 [%r1]")],
    );
    v.push(
        Case::new(
            "a dependent launch reading its predecessor's output before griddepcontrol.wait",
            kernels,
            1,
            32,
            vec![i32s(&[100; 32]), zeros(128), zeros(128)],
            Want {
                kind: ErrorKind::DependentBeforeWait,
                at: Some("ld.global.u32"),
                cta: [0, 0, 0],
                thread: Some([0, 0, 0]),
                says: "a read of bytes [0, 4) of buffer `h` (program buffer `h`, which step 0 (`produce`) writes",
            },
        )
        .runner(after_producer)
        .output(|a| words_are(a, 2, (0..32).map(|t| 100 + 2 * t))),
    );
}
