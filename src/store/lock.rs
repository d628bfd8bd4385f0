//! The per-volume lock: flock(2) on a file under the run root, released when dropped.
//! The file is opened close-on-exec (std does so), so the real runtime never inherits it.
//!
//! A lock can also outlive its [`VolumeLock`]: a release that detached the volume's overlay
//! keeps a copy of the lock's open file (the same flock) with the overlay's last reference
//! ([`VolumeLock::hold_with`]) until the command ends and hands both to a child that closes the
//! overlay, removes the overlay's empty `work/work`, then closes the lock ([`take_held`],
//! `crate::util::sync_child`). A lock this process takes again first does the same here with
//! what it still holds of that volume ([`VolumeLock::take`]): the process would otherwise wait
//! for itself.

use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{IoContext, Result};
use crate::util::sync_child::Last;

pub struct VolumeLock {
    // Held for its drop: closing the file releases the flock.
    file: File,
    path: PathBuf,
}

/// What a release left to close as the command ends: an overlay's last reference, then the
/// lock of its volume (another open file of the same flock).
struct Held {
    path: PathBuf,
    mount: OwnedFd,
    /// The overlay's work directory: once the superblock is gone, its empty `work/work` is
    /// removed (see [`super::OVERLAY_WORK`]).
    work: Option<OwnedFd>,
    lock: OwnedFd,
}

impl Held {
    /// In the order to do them.
    fn steps(self) -> impl Iterator<Item = Last> {
        let work = self
            .work
            .map(|dir| Last::RemoveDir(dir, super::OVERLAY_WORK));
        std::iter::once(Last::Close(self.mount))
            .chain(work)
            .chain(std::iter::once(Last::Close(self.lock)))
    }
}

static HELD: Mutex<Vec<Held>> = Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<Held>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Closes here what this process still holds of the volume locked at `path`: its overlay's last
/// reference first (the kernel syncs the upper filesystem then), its empty `work/work`, then the
/// lock.
fn settle(path: &Path) {
    let mine: Vec<Held> = {
        let mut list = held();
        if list.is_empty() {
            return;
        }
        let (mine, rest) = std::mem::take(&mut *list)
            .into_iter()
            .partition(|h| h.path == path);
        *list = rest;
        mine
    };
    for h in mine {
        h.steps().for_each(Last::finish);
    }
}

/// Everything [`VolumeLock::hold_with`] kept, in the order to do it (each overlay, its
/// `work/work`, then its lock); nothing is held any more by this process's list.
pub fn take_held() -> Vec<Last> {
    std::mem::take(&mut *held())
        .into_iter()
        .flat_map(Held::steps)
        .collect()
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
        settle(path);
        let file = Self::open(path)?;
        file.lock().ctx(|| format!("lock {}", path.display()))?;
        Ok(VolumeLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The lock if it is free now; `None` if another process holds it.
    pub fn try_take(path: &Path) -> Result<Option<VolumeLock>> {
        settle(path);
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(VolumeLock {
                file,
                path: path.to_path_buf(),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).ctx(|| format!("lock {}", path.display()))
            }
        }
    }

    /// Keeps this lock held after it is dropped, together with `mount` (a detached overlay's
    /// last reference) and `work` (its work directory, if it could be opened), until
    /// [`take_held`]'s taker is done with them, or this process takes the lock again.
    pub fn hold_with(&self, mount: OwnedFd, work: Option<OwnedFd>) -> Result<()> {
        let lock = self
            .file
            .try_clone()
            .ctx(|| format!("keep lock {}", self.path.display()))?;
        held().push(Held {
            path: self.path.clone(),
            mount,
            work,
            lock: lock.into(),
        });
        Ok(())
    }
}
