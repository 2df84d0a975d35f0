//! How much memory this process may still allocate, read from Linux's files (no `unsafe`):
//! the least of
//! - the memory available now (`MemAvailable` of `/proc/meminfo`);
//! - the headroom of every memory cgroup the process is in, up to the root (cgroup v2:
//!   `memory.max − memory.current`; v1: `memory.limit_in_bytes − memory.usage_in_bytes`);
//! - the headroom under the address-space and data rlimits (`/proc/self/limits` against
//!   `VmSize`/`VmData` of `/proc/self/status`).
//!
//! A run that needs more is refused before it allocates (an allocation failure aborts the
//! process; docs/limits.md). Where none of these can be read there is no check.

use std::path::{Path, PathBuf};

/// The most a process may still allocate, and which limit says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Bytes.
    pub bytes: u64,
    /// The limit that binds: `available memory`, `cgroup /path`, `RLIMIT_AS`, `RLIMIT_DATA`.
    pub source: String,
}

/// The budget of this process now (`None` where nothing can be read, e.g. not Linux).
pub fn allocatable() -> Option<Budget> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let mut limits = Vec::new();
    if let Some(kb) = read(Path::new("/proc/meminfo")).and_then(|t| field_kb(&t, "MemAvailable:")) {
        limits.push(Budget { bytes: kb.saturating_mul(1024), source: "available memory".into() });
    }
    if let Some(groups) = read(Path::new("/proc/self/cgroup")) {
        limits.extend(cgroup_headroom(&groups, Path::new("/sys/fs/cgroup"), &|p: &Path| read(p)));
    }
    if let (Some(lim), Some(status)) = (read(Path::new("/proc/self/limits")), read(Path::new("/proc/self/status"))) {
        for (name, used) in [("Max address space", "VmSize:"), ("Max data size", "VmData:")] {
            if let (Some(max), Some(kb)) = (soft_limit(&lim, name), field_kb(&status, used)) {
                let source = if used == "VmSize:" { "RLIMIT_AS" } else { "RLIMIT_DATA" };
                limits.push(Budget { bytes: max.saturating_sub(kb.saturating_mul(1024)), source: source.into() });
            }
        }
    }
    limits.into_iter().min_by_key(|b| b.bytes)
}

/// `Name:   123 kB` of `/proc/meminfo` or `/proc/self/status`, in kB.
fn field_kb(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// The soft limit of row `name` of `/proc/self/limits` (`None` when unlimited).
fn soft_limit(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// The headroom of each memory cgroup of `/proc/self/cgroup` (`groups`) and its ancestors,
/// under the mount `root`, read through `read`. Unlimited groups (`max`, or v1's huge
/// page-rounded `i64::MAX`) give nothing.
fn cgroup_headroom(groups: &str, root: &Path, read: &dyn Fn(&Path) -> Option<String>) -> Vec<Budget> {
    let number = |p: PathBuf| read(&p).and_then(|t| t.trim().parse::<u64>().ok());
    let mut out = Vec::new();
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let (base, max_file, used_file) = if controllers.is_empty() {
            (root.to_path_buf(), "memory.max", "memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), "memory.limit_in_bytes", "memory.usage_in_bytes")
        } else {
            continue;
        };
        // The group's own directory and each ancestor's; inside a container the path may be
        // that of the host, so the mount's own top is read as well.
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut rel = Path::new(path.trim_start_matches('/'));
        loop {
            dirs.push(if rel.as_os_str().is_empty() { base.clone() } else { base.join(rel) });
            match rel.parent() {
                Some(p) => rel = p,
                None => break,
            }
        }
        dirs.dedup();
        for dir in dirs {
            let Some(max) = number(dir.join(max_file)) else { continue };
            if max >= 1 << 62 {
                continue;
            }
            let used = number(dir.join(used_file)).unwrap_or(0);
            out.push(Budget { bytes: max.saturating_sub(used), source: format!("cgroup {}", dir.display()) });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn proc_files_parse() {
        let meminfo = "MemTotal:       24000000 kB\nMemAvailable:   16000000 kB\n";
        assert_eq!(field_kb(meminfo, "MemAvailable:"), Some(16_000_000));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max data size             unlimited            unlimited            bytes\n\
                      Max address space         4294967296           unlimited            bytes\n";
        assert_eq!(soft_limit(limits, "Max address space"), Some(4 << 30));
        assert_eq!(soft_limit(limits, "Max data size"), None);
    }

    #[test]
    fn cgroups_of_both_versions_and_their_ancestors_bound_the_budget() {
        let files: HashMap<&str, &str> = HashMap::from([
            ("/cg/a/b/memory.max", "max\n"),
            ("/cg/a/memory.max", "1000\n"),
            ("/cg/a/memory.current", "400\n"),
            ("/cg/memory/job/memory.limit_in_bytes", "9223372036854771712\n"),
            ("/cg/memory/memory.limit_in_bytes", "5000\n"),
            ("/cg/memory/memory.usage_in_bytes", "1000\n"),
        ]);
        let read = |p: &Path| files.get(p.to_str()?).map(|s| s.to_string());
        let got = cgroup_headroom("0::/a/b\n4:memory:/job\n3:cpu:/x\n", Path::new("/cg"), &read);
        let got: Vec<(u64, &str)> = got.iter().map(|b| (b.bytes, b.source.as_str())).collect();
        assert_eq!(got, vec![(600, "cgroup /cg/a"), (4000, "cgroup /cg/memory")]);
    }

    #[test]
    fn this_process_has_a_budget_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(allocatable().is_some_and(|b| b.bytes > 0));
        }
    }
}
