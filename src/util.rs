//! Small helpers shared by the store and the spec writer.

use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `data` atomically: a temporary file in the same directory, synced, then
/// renamed over it, so a reader sees the old file or the new one, never half of one. A file that
/// existed keeps its permissions.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".ocivol-")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
