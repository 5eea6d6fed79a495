//! The data file holds bearer tokens, custom header values and signing secrets (in outbox rows),
//! so it is created private: the file `0600` and, when alertd creates it, its directory `0700`,
//! whatever the umask. An existing file or directory that other users can read is reported
//! loudly at every start, but not changed: the operator may share it on purpose (e.g. a group
//! for backups).

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates the data file (and missing directories) private if they do not exist yet, and warns
/// when an existing one is readable by others.
pub fn private_data_file(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
        }
        warn_if_wide(dir, 0o700);
    }
    if !path.exists() {
        // redb creates the file with the default 0666 & !umask; create it first so it is ours.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => std::fs::File::open(path),
                _ => Err(e),
            })
            .map_err(|e| format!("cannot create the data file: {e}"))?;
    }
    warn_if_wide(path, 0o600);
    Ok(())
}

/// Logs a warning when `path` grants more than `want` to group or others.
fn warn_if_wide(path: &Path, want: u32) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & !want & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            want = format!("{want:04o}"),
            "the data file holds tokens, header values and signing secrets, and other users can \
             read it; run `chmod {want:o} {}`",
            path.display()
        );
    }
}
