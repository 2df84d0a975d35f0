//! Programs of several launches: bytes no launch wrote (poisoned scratch and arena) and the
//! discipline of programmatic dependent launch.

use lathe_kernel::ir::Kernel;
use lathe_kernel::sim::{run_program, Bind, Buffer, ErrorKind, Launch, Options, SimError, Step, POISON};
use lathe_kernel::text::parse;

fn kernel(text: &str) -> Kernel {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn words(b: &Buffer) -> Vec<u32> {
    b.bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn data(name: &str, v: &[u32]) -> Buffer {
    Buffer::data(name, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn one_cta(threads: u32) -> Launch {
    Launch { grid: [1, 1, 1], block: [threads, 1, 1] }
}

/// `total += x[tid]` with an integer atomic: a split reduction's last level.
const ACCUMULATE: &str = r#"
kernel @accumulate max_threads=32 shared=0 local=0 {
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
  %r3 = fma.u64 %r3, 4, %r0
  %r4 = ld.global.u32 [%r3]
  red.global.add.u32 [%r1], %r4
}
"#;

/// `y[0] = 0`.
const ZERO: &str = r#"
kernel @zero max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 written "y"
  reg %r0 : u64
  %r0 = ld.param %p0
  st.global.u32 [%r0], 0
}
"#;

fn accumulate_program(zero_first: bool) -> (Result<Vec<lathe_kernel::sim::Counters>, SimError>, Vec<Buffer>) {
    let (acc, zero) = (kernel(ACCUMULATE), kernel(ZERO));
    let mut buffers = vec![data("x", &(1..=32).collect::<Vec<_>>()), Buffer::poisoned("total", 4)];
    let mut steps = Vec::new();
    if zero_first {
        steps.push(Step::Launch { kernel: &zero, launch: one_cta(1), args: vec![Bind::Buffer(1)], dependent: false });
    }
    steps.push(Step::Launch {
        kernel: &acc,
        launch: one_cta(32),
        args: vec![Bind::Buffer(0), Bind::Buffer(1)],
        dependent: false,
    });
    let r = run_program(&steps, &mut buffers, &Options::default());
    (r, buffers)
}

#[test]
fn accumulating_into_scratch_no_launch_zeroed_reads_poison() {
    let (r, buffers) = accumulate_program(false);
    let e = r.expect_err("the scratch word holds no data");
    assert_eq!(e.kind, ErrorKind::UninitializedMemory, "{e}");
    assert_eq!(e.at.as_ref().map(|(_, n)| n.as_str()), Some("red.global.add.u32"));
    assert_eq!(e.thread, Some([0, 0, 0]));
    assert!(e.message.contains("step 0: byte 0 of buffer `total` (program buffer `total`) holds no data"), "{e}");
    // Nothing was added: the poison is still there.
    assert_eq!(buffers[1].bytes, vec![POISON; 4]);
}

#[test]
fn a_zeroing_launch_first_makes_the_sum_right() {
    let (r, buffers) = accumulate_program(true);
    let counters = r.expect("clean");
    assert_eq!(counters.len(), 2);
    assert_eq!(words(&buffers[1]), vec![(1..=32).sum::<u32>()]);
    assert!(buffers[1].is_written(0..4));
}

#[test]
fn an_arena_region_handed_to_a_new_buffer_holds_nothing() {
    // `copy`: y[tid] = x[tid]. Step 0 fills the region, step 1 hands it over (poison), step 2
    // reads it as if it still held step 0's data.
    let copy = kernel(
        r#"
kernel @copy max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 readonly "x"
  param %p1 : buffer i32 align=16 written "y"
  reg %r0, %r1 : u64
  reg %r2 : u32
  reg %r3, %r4 : u64
  reg %r5 : u32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r3 = cvt.u64.u32 %r2
  %r3 = mul.u64 %r3, 4
  %r4 = add.u64 %r0, %r3
  %r5 = ld.global.u32 [%r4]
  %r4 = add.u64 %r1, %r3
  st.global.u32 [%r4], %r5
}
"#,
    );
    let run = |poison: bool| {
        let mut buffers = vec![data("x", &[7; 32]), Buffer::poisoned("arena", 128), Buffer::poisoned("out", 128)];
        let mut steps = vec![Step::Launch {
            kernel: &copy,
            launch: one_cta(32),
            args: vec![Bind::Buffer(0), Bind::Buffer(1)],
            dependent: false,
        }];
        if poison {
            steps.push(Step::Poison { buffer: 1, range: 64..128 });
        }
        steps.push(Step::Launch {
            kernel: &copy,
            launch: one_cta(32),
            args: vec![Bind::Buffer(1), Bind::Buffer(2)],
            dependent: false,
        });
        run_program(&steps, &mut buffers, &Options::default()).map(|_| buffers)
    };
    let buffers = run(false).expect("the region still holds step 0's data");
    assert_eq!(words(&buffers[2]), vec![7; 32]);
    let e = run(true).expect_err("the second half was handed over");
    assert_eq!(e.kind, ErrorKind::UninitializedMemory, "{e}");
    assert_eq!(e.thread, Some([16, 0, 0]), "the first thread reading the poisoned half: {e}");
    assert!(e.message.starts_with("step 2: byte 64 of buffer `x` (program buffer `arena`)"), "{e}");
}

/// The producer: `h[tid] = x[tid] + 1`.
const PRODUCER: &str = r#"
kernel @producer max_threads=32 shared=0 local=0 {
  param %p0 : buffer i32 align=16 readonly "x"
  param %p1 : buffer i32 align=16 written "h"
  reg %r0, %r1 : u64
  reg %r2 : u32
  reg %r3, %r4 : u64
  reg %r5 : u32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = mov.special %tid.x
  %r3 = cvt.u64.u32 %r2
  %r3 = mul.u64 %r3, 4
  %r4 = add.u64 %r0, %r3
  %r5 = ld.global.u32 [%r4]
  %r5 = add.u32 %r5, 1
  %r4 = add.u64 %r1, %r3
  st.global.u32 [%r4], %r5
}
"#;

/// The consumer, `y[tid] = w[tid] * h[tid]`, loading the weight before its wait (what a
/// dependent launch is for) and `h` after it; `early_h` moves the load of `h` before the wait.
fn consumer(early_h: bool) -> Kernel {
    let load_h = "  %r4 = add.u64 %r1, %r3\n  %r7 = ld.global.u32 [%r4]\n";
    let text = format!(
        r#"
kernel @consumer max_threads=32 shared=0 local=0 {{
  param %p0 : buffer i32 align=16 readonly "w"
  param %p1 : buffer i32 align=16 readonly "h"
  param %p2 : buffer i32 align=16 written "y"
  reg %r0, %r1, %r2 : u64
  reg %r3, %r4 : u64
  reg %r5 : u32
  reg %r6, %r7 : u32
  %r0 = ld.param %p0
  %r1 = ld.param %p1
  %r2 = ld.param %p2
  %r5 = mov.special %tid.x
  %r3 = cvt.u64.u32 %r5
  %r3 = mul.u64 %r3, 4
  %r4 = add.u64 %r0, %r3
  %r6 = ld.global.u32 [%r4]
{}  griddepcontrol.wait
{}  %r6 = mul.u32 %r6, %r7
  %r4 = add.u64 %r2, %r3
  st.global.u32 [%r4], %r6
}}
"#,
        if early_h { load_h } else { "" },
        if early_h { "" } else { load_h }
    );
    kernel(&text)
}

fn pdl(consumer: &Kernel, dependent: bool) -> Result<Vec<Buffer>, SimError> {
    let producer = kernel(PRODUCER);
    let mut buffers = vec![
        data("x", &(0..32).collect::<Vec<_>>()),
        Buffer::poisoned("h", 128),
        data("w", &[3; 32]),
        Buffer::poisoned("y", 128),
    ];
    let steps = [
        Step::Launch {
            kernel: &producer,
            launch: one_cta(32),
            args: vec![Bind::Buffer(0), Bind::Buffer(1)],
            dependent: false,
        },
        Step::Launch {
            kernel: consumer,
            launch: one_cta(32),
            args: vec![Bind::Buffer(2), Bind::Buffer(1), Bind::Buffer(3)],
            dependent,
        },
    ];
    run_program(&steps, &mut buffers, &Options::default()).map(|_| buffers)
}

#[test]
fn a_dependent_launch_prefetches_weights_before_its_wait_and_reads_activations_after() {
    let buffers = pdl(&consumer(false), true).expect("clean");
    assert_eq!(words(&buffers[3]), (0..32).map(|i| 3 * (i + 1)).collect::<Vec<_>>());
}

#[test]
fn reading_the_predecessors_output_before_the_wait_is_an_error() {
    let e = pdl(&consumer(true), true).expect_err("h is read before the wait");
    assert_eq!(e.kind, ErrorKind::DependentBeforeWait, "{e}");
    assert_eq!(e.at.as_ref().map(|(_, n)| n.as_str()), Some("ld.global.u32"));
    assert_eq!(e.thread, Some([0, 0, 0]));
    assert!(
        e.message.contains(
            "a read of bytes [0, 4) of buffer `h` (program buffer `h`, which step 0 (`producer`) writes and may \
             still be running) before griddepcontrol.wait"
        ),
        "{e}"
    );
    // The same kernel launched without programmatic dependent launch is ordered after its
    // predecessor: its wait is a no-op and the early read is fine.
    let buffers = pdl(&consumer(true), false).expect("an ordinary launch");
    assert_eq!(words(&buffers[3]), (0..32).map(|i| 3 * (i + 1)).collect::<Vec<_>>());
}

#[test]
fn writing_what_the_predecessor_reads_before_the_wait_is_an_error() {
    // The producer reads `x`; a dependent launch overwriting `x` before its wait could change
    // what the producer still reads.
    let producer = kernel(PRODUCER);
    let clobber = kernel(ZERO);
    let mut buffers = vec![data("x", &[5; 32]), Buffer::poisoned("h", 128)];
    let steps = [
        Step::Launch {
            kernel: &producer,
            launch: one_cta(32),
            args: vec![Bind::Buffer(0), Bind::Buffer(1)],
            dependent: false,
        },
        Step::Launch { kernel: &clobber, launch: one_cta(1), args: vec![Bind::Buffer(0)], dependent: true },
    ];
    let e = run_program(&steps, &mut buffers, &Options::default()).expect_err("x is still read");
    assert_eq!(e.kind, ErrorKind::DependentBeforeWait, "{e}");
    assert!(e.message.contains("a write to bytes [0, 4) of buffer `y` (program buffer `x`, which step 0"), "{e}");
}

#[test]
fn the_launches_in_flight_are_the_whole_chain_of_dependent_launches() {
    // producer (ordinary) writes h; a dependent launch of `zero` on `g`; then a dependent
    // consumer reading h before its wait: the producer may still run (the middle launch may
    // have let its dependents start before its own wait).
    let producer = kernel(PRODUCER);
    let zero = kernel(ZERO);
    let early = consumer(true);
    let mut buffers = vec![
        data("x", &(0..32).collect::<Vec<_>>()),
        Buffer::poisoned("h", 128),
        data("w", &[3; 32]),
        Buffer::poisoned("y", 128),
        Buffer::poisoned("g", 4),
    ];
    let steps = [
        Step::Launch {
            kernel: &producer,
            launch: one_cta(32),
            args: vec![Bind::Buffer(0), Bind::Buffer(1)],
            dependent: false,
        },
        Step::Launch { kernel: &zero, launch: one_cta(1), args: vec![Bind::Buffer(4)], dependent: true },
        Step::Launch {
            kernel: &early,
            launch: one_cta(32),
            args: vec![Bind::Buffer(2), Bind::Buffer(1), Bind::Buffer(3)],
            dependent: true,
        },
    ];
    let e = run_program(&steps, &mut buffers, &Options::default()).expect_err("the producer may still run");
    assert_eq!(e.kind, ErrorKind::DependentBeforeWait, "{e}");
    assert!(e.message.starts_with("step 2: "), "{e}");
    assert!(e.message.contains("step 0 (`producer`) writes"), "{e}");
}

#[test]
fn steps_that_cannot_run_are_refused() {
    let acc = kernel(ACCUMULATE);
    let mut buffers = vec![Buffer::poisoned("t", 128)];
    let twice = [Step::Launch {
        kernel: &acc,
        launch: one_cta(32),
        args: vec![Bind::Buffer(0), Bind::Buffer(0)],
        dependent: false,
    }];
    let e = run_program(&twice, &mut buffers, &Options::default()).expect_err("aliased");
    assert_eq!(e.kind, ErrorKind::BadLaunch);
    assert!(e.message.contains("buffer `t` is bound to two parameters"), "{e}");
    let missing = [Step::Launch {
        kernel: &acc,
        launch: one_cta(32),
        args: vec![Bind::Buffer(0), Bind::Buffer(3)],
        dependent: false,
    }];
    let e = run_program(&missing, &mut buffers, &Options::default()).expect_err("no buffer 3");
    assert!(e.message.contains("step 0: no buffer 3"), "{e}");
    let e = run_program(&[Step::Poison { buffer: 9, range: 0..4 }], &mut buffers, &Options::default())
        .expect_err("no buffer 9");
    assert_eq!(e.kind, ErrorKind::BadLaunch);
}

#[test]
fn a_prefetch_before_the_wait_is_a_hint_but_must_stay_in_a_buffer() {
    // Prefetching the predecessor's output into L2 before the wait reads nothing into a
    // register: not an early access.
    let text = lathe_kernel::text::print(&consumer(false));
    let with = |at: &str| kernel(&text.replace("  griddepcontrol.wait\n", &format!("  {at}\n  griddepcontrol.wait\n")));
    let buffers = pdl(&with("prefetch.global.L2::evict_last [%r1 + 64]"), true).expect("a hint");
    assert_eq!(words(&buffers[3]), (0..32).map(|i| 3 * (i + 1)).collect::<Vec<_>>());
    // Past the buffer's 128 bytes it is an out-of-bounds address like any other.
    let e = pdl(&with("prefetch.global.L2::evict_last [%r1 + 128]"), true).expect_err("out of bounds");
    assert_eq!(e.kind, ErrorKind::OutOfBounds, "{e}");
}
