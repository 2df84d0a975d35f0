//! CLI errors: one line, and an exit code (2 for bad input, 1 for internal failures).

use std::fmt;
use std::path::Path;

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

/// Writes `data` to `path` through a temporary sibling file and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), CliError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = std::fs::write(&tmp, data).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(CliError::input(format!("{}: cannot write ({e})", path.display())));
    }
    Ok(())
}
