//! PTX → CUBIN with ptxas, its `-v` report parsed, results cached by content hash.
//!
//! ptxas is `$LATHE_PTXAS`, else the pinned one `scripts/setup.sh` unpacks into the repository's
//! `tools/ptxas/bin/ptxas`, else `ptxas` on `PATH`. It runs with `-arch=sm_XX -v` and
//! `--fmad=false` (the PTX rounds every f32 add and multiply on its own already; this keeps
//! ptxas from fusing whatever it could). The report gives registers, spill stores and loads,
//! stack frame, shared and constant memory. Results are cached under `$LATHE_CACHE_DIR/ptxas`
//! (default `$XDG_CACHE_HOME/lathe` or `~/.cache/lathe`, outside the clone so CI runs can share
//! it), keyed by a hash of the PTX, the architecture, the flags and the ptxas version; at most
//! two ptxas run at once in a process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex};

use lathe_kernel::target::Sm;

use crate::CodegenError;

/// What ptxas reports for one kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Registers per thread.
    pub registers: u32,
    /// Bytes of spill stores and loads per thread.
    pub spill_stores: u32,
    pub spill_loads: u32,
    /// Stack frame bytes per thread.
    pub stack: u32,
    /// Static shared memory bytes (the kernel's shared memory is dynamic: 0 here).
    pub shared: u32,
    /// Barriers the kernel uses.
    pub barriers: u32,
}

/// An assembled kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cubin {
    /// The CUBIN (ELF) bytes.
    pub bytes: Vec<u8>,
    /// ptxas' report.
    pub report: Report,
    /// Whether it came from the cache.
    pub cached: bool,
}

/// The flags lathe runs ptxas with (beside `-arch` and `-v`).
pub const FLAGS: &[&str] = &["--fmad=false", "-O3"];

/// The ptxas to run.
pub fn ptxas_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LATHE_PTXAS") {
        return PathBuf::from(p);
    }
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/ptxas/bin/ptxas");
    if pinned.is_file() {
        return pinned;
    }
    PathBuf::from("ptxas")
}

/// The directory of cached results.
pub fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("LATHE_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("lathe")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lathe")))?;
    Some(base.join("ptxas"))
}

/// 128-bit FNV-1a over `parts` (a stable content hash for cache keys, not for security).
pub fn content_hash(parts: &[&[u8]]) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for p in parts {
        for &b in p.iter().chain(&[0xffu8]) {
            h ^= u128::from(b);
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
    }
    format!("{h:032x}")
}

/// At most two ptxas at a time.
static RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

struct Slot;

impl Slot {
    fn take() -> Slot {
        let (lock, cv) = &RUNNING;
        let mut n = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= 2 {
            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cv) = &RUNNING;
        let mut n = lock.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        cv.notify_one();
    }
}

/// The version line of the ptxas that runs (part of the cache key).
fn version(ptxas: &Path) -> Result<String, CodegenError> {
    let out = Command::new(ptxas).arg("--version").output().map_err(|e| {
        CodegenError::Ptxas(format!(
            "cannot run {}: {e} (scripts/setup.sh installs it; $LATHE_PTXAS overrides)",
            ptxas.display()
        ))
    })?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string())
}

/// Assembles `ptx` (whose kernel is `kernel`) for `sm`.
pub fn assemble(ptx: &str, kernel: &str, sm: Sm) -> Result<Cubin, CodegenError> {
    let ptxas = ptxas_path();
    let ver = version(&ptxas)?;
    let arch = format!("-arch={}", sm.name());
    let key = content_hash(&[ptx.as_bytes(), arch.as_bytes(), FLAGS.join(" ").as_bytes(), ver.as_bytes()]);
    let dir = cache_dir();
    if let Some(d) = &dir {
        if let (Ok(bytes), Ok(log)) =
            (std::fs::read(d.join(format!("{key}.cubin"))), std::fs::read_to_string(d.join(format!("{key}.log"))))
        {
            return Ok(Cubin { bytes, report: parse_report(&log, kernel)?, cached: true });
        }
    }
    let work = dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work).map_err(|e| CodegenError::Ptxas(format!("{}: {e}", work.display())))?;
    let tag = format!("{key}-{}", std::process::id());
    let (input, output) = (work.join(format!("{tag}.ptx")), work.join(format!("{tag}.cubin.tmp")));
    std::fs::write(&input, ptx).map_err(|e| CodegenError::Ptxas(format!("{}: {e}", input.display())))?;
    let result = {
        let _slot = Slot::take();
        Command::new(&ptxas).arg(&arch).arg("-v").args(FLAGS).arg(&input).arg("-o").arg(&output).output()
    };
    let _ = std::fs::remove_file(&input);
    let out = result.map_err(|e| CodegenError::Ptxas(format!("cannot run {}: {e}", ptxas.display())))?;
    let log = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let _ = std::fs::remove_file(&output);
        let first = log.lines().find(|l| l.contains("error")).unwrap_or(log.lines().next().unwrap_or("")).trim();
        return Err(CodegenError::Ptxas(format!("kernel {kernel} for {}: {first}", sm.name())));
    }
    let bytes = std::fs::read(&output).map_err(|e| CodegenError::Ptxas(format!("{}: {e}", output.display())))?;
    let report = parse_report(&log, kernel)?;
    match &dir {
        Some(d) => {
            // The log first, then the CUBIN by rename: a reader that finds the CUBIN finds both.
            let _ = std::fs::write(d.join(format!("{key}.log")), &log);
            let _ = std::fs::rename(&output, d.join(format!("{key}.cubin")));
        }
        None => {
            let _ = std::fs::remove_file(&output);
        }
    }
    Ok(Cubin { bytes, report, cached: false })
}

/// The numbers of ptxas' `-v` report for `kernel`.
pub fn parse_report(log: &str, kernel: &str) -> Result<Report, CodegenError> {
    let mut r = Report::default();
    let mut mine = false;
    let mut seen = false;
    for line in log.lines() {
        if line.contains("Compiling entry function") || line.contains("Function properties for") {
            mine = line.contains(&format!("'{kernel}'")) || line.trim_end().ends_with(kernel);
            seen |= mine;
            continue;
        }
        if !mine {
            continue;
        }
        let num_before = |unit: &str| -> Option<u32> {
            let at = line.find(unit)?;
            line[..at].split_whitespace().last()?.parse().ok()
        };
        if line.contains("Used") && line.contains("registers") {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(i) = words.iter().position(|w| *w == "Used") {
                r.registers = words.get(i + 1).and_then(|w| w.parse().ok()).unwrap_or(0);
            }
            r.barriers = num_before(" barriers").unwrap_or(0);
            r.shared = num_before(" bytes smem").unwrap_or(0);
        }
        if line.contains("stack frame") {
            r.stack = num_before(" bytes stack frame").unwrap_or(0);
            r.spill_stores = num_before(" bytes spill stores").unwrap_or(0);
            r.spill_loads = num_before(" bytes spill loads").unwrap_or(0);
        }
    }
    if !seen {
        return Err(CodegenError::Ptxas(format!("no report for kernel {kernel} in ptxas' output")));
    }
    Ok(r)
}
