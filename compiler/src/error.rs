//! CLI errors: one line, and an exit code (2 for bad input, 1 for internal failures).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An error the CLI reports and exits with.
#[derive(Debug)]
pub struct CliError {
    /// Process exit code.
    pub code: i32,
    /// The one-line message (may hold several lines for several verifier errors).
    pub message: String,
    /// The message already starts with `file:line:col:`.
    pub located: bool,
}

impl CliError {
    /// Bad input from the user (file, flag, IR text, tensor): exit code 2.
    pub fn input(message: impl Into<String>) -> Self {
        CliError { code: 2, message: message.into(), located: false }
    }
    /// Bad input whose lines already read `file:line:col: message`: exit code 2.
    pub fn located(message: impl Into<String>) -> Self {
        CliError { code: 2, message: message.into(), located: true }
    }
    /// A failure that is not the input's fault: exit code 1.
    pub fn internal(message: impl Into<String>) -> Self {
        CliError { code: 1, message: message.into(), located: false }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Writes `data` to `path` through a temporary sibling file and a rename. The temporary name
/// is short (`.lathe-PID-N.tmp`), so any output name the file system takes works.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), CliError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".lathe-{}-{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let result = std::fs::write(&tmp, data).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(CliError::input(format!("{}: cannot write ({e})", path.display())));
    }
    Ok(())
}

/// Refuses an output path that is one of the command's inputs: the same file by device and
/// inode, so a symbolic or hard link to an input is caught too. Checked before any work.
pub fn refuse_overwrite(out: &Path, flag: &str, inputs: &[PathBuf]) -> Result<(), CliError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(target) = std::fs::metadata(out) else { return Ok(()) };
    for input in inputs {
        if let Ok(m) = std::fs::metadata(input) {
            if (m.dev(), m.ino()) == (target.dev(), target.ino()) {
                return Err(CliError::input(format!(
                    "{flag} {}: is the input {}; it would be overwritten",
                    out.display(),
                    input.display()
                )));
            }
        }
    }
    Ok(())
}

/// The files of a model directory a command reads: `config.json`, the shard index and every
/// safetensors file.
pub fn model_inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![dir.join("config.json"), dir.join("model.safetensors.index.json")];
    if let Ok(entries) = std::fs::read_dir(dir) {
        files.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors")),
        );
    }
    files
}

/// The text of an input file ([`lathe_tensorfile::read_text`]: a regular file of at most
/// `max` bytes, in UTF-8); its errors are bad input.
pub fn read_text(file: &Path, max: u64) -> Result<String, CliError> {
    lathe_tensorfile::read_text(file, max).map_err(|e| CliError::input(e.to_string()))
}
