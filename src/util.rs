//! Small helpers shared by the store and the spec writer.

use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `data` atomically: a temporary file in the same directory, synced, then
/// renamed over it, so a reader sees the old file or the new one, never half of one. A file that
/// existed keeps its permissions.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, true)
}

/// [`write_atomic`] without the fsync, for files under the run root: a reboot clears that root,
/// so syncing would only guard against a power loss after which the file means nothing (its
/// record carries the boot ID). Readers still see the old file or the new one. On a busy disk an
/// fsync costs milliseconds, and a container start writes one such file per volume.
pub fn write_atomic_unsynced(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, false)
}

fn replace(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".ocivol-")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    if sync {
        tmp.as_file().sync_all()?;
    }
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
