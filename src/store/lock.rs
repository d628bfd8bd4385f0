//! The per-volume lock: flock(2) on a file under the run root, released when dropped.
//! The file is opened close-on-exec (std does so), so the real runtime never inherits it.

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::{IoContext, Result};

pub struct VolumeLock {
    // Held for its drop: closing the file releases the flock.
    _file: File,
}

impl VolumeLock {
    /// The lock file, made if missing (never truncated: another process may hold it).
    fn open(path: &Path) -> Result<File> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ctx(|| format!("open lock {}", path.display()))
    }

    /// Blocks until the lock is ours.
    pub fn take(path: &Path) -> Result<VolumeLock> {
        let file = Self::open(path)?;
        file.lock().ctx(|| format!("lock {}", path.display()))?;
        Ok(VolumeLock { _file: file })
    }

    /// The lock if it is free now; `None` if another process holds it.
    pub fn try_take(path: &Path) -> Result<Option<VolumeLock>> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(VolumeLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).ctx(|| format!("lock {}", path.display()))
            }
        }
    }
}
