//! Anonymous volumes removed off the container's path.
//!
//! An anonymous volume goes with its last user (Docker's `run --rm -v /data`). Removing its
//! directory unlinks its files and directories one by one, and on a disk mounted with `discard`
//! each freed block waits for the device: 0.2 ms for an empty volume here, far more for one a
//! container filled (docs/PERFORMANCE.md). So the last release renames the volume's directory
//! into `ROOT/trash/` (one rename on the same filesystem: from then on no name reaches it, and
//! `volume ls` no longer shows it), and the tree is removed afterwards:
//! - by a detached child that the command forks as it ends ([`empty_detached`]), which has
//!   closed its stdio, so the engine that waits for the command (or the hook) does not wait for
//!   the removal;
//! - by every `ocivol gc`, whatever is in the trash that no remover holds (a child killed
//!   before it finished, a rename cut short by a crash: the trash holds nothing anyone uses).
//!
//! Its remover holds an entry: the release opens the volume's directory and takes an flock on it
//! before the rename, and the child inherits that open file (and so the lock) across the fork.
//! gc skips an entry it cannot lock at once, so that gc and a child never remove one tree
//! together (each would find the other's removals gone under it).
//!
//! A rename that fails (a trash entry of that name, a root on a filesystem without renameat2)
//! removes the volume in place, as before.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::{IoContext, Result, Store, VolumeDef, make_dir, remove_if_present};

const DIR: &str = "trash";

/// What this process moved into a trash, each with its directory open and locked: the detached
/// child removes these.
static MOVED: Mutex<Vec<(PathBuf, OwnedFd)>> = Mutex::new(Vec::new());

fn moved() -> std::sync::MutexGuard<'static, Vec<(PathBuf, OwnedFd)>> {
    MOVED.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    pub(super) fn trash_dir(&self) -> PathBuf {
        self.root.join(DIR)
    }

    /// Under the volume's lock, no user left: takes the anonymous volume `def` out of the store
    /// with one rename into the trash, or removes it in place if that cannot be done.
    pub(super) fn discard(&self, def: &VolumeDef) -> Result<()> {
        // The run side (users/, the overlay's mount point) is on a tmpfs: removed now.
        remove_if_present(&self.run_dir(&def.name))?;
        let trash = self.trash_dir();
        make_dir(&trash)?;
        let to = trash.join(&def.name);
        let dir = self.volume_dir(&def.name);
        let held = match lock_dir(&dir) {
            Ok(Some(fd)) => fd,
            Ok(None) => return self.remove(def),
            Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => {
                log::debug!(
                    "volume {}: lock its directory: {e}; removing it here",
                    def.name
                );
                return self.remove(def);
            }
        };
        match crate::util::renameat2(
            nix::fcntl::AT_FDCWD,
            &dir,
            nix::fcntl::AT_FDCWD,
            &to,
            libc::RENAME_NOREPLACE,
        ) {
            Ok(()) => {
                crate::crash::point("after-trash");
                moved().push((to, held));
            }
            // Gone already, or the trash was removed under us (its last remover found it
            // empty): then in place.
            Err(nix::errno::Errno::ENOENT) if !dir.exists() => {}
            Err(e) => {
                log::debug!(
                    "volume {}: move into the trash: {e}; removing it here",
                    def.name
                );
                return self.remove(def);
            }
        }
        // Nobody else can know a fresh random name: the lock file can go too.
        let _ = std::fs::remove_file(self.lock_path(&def.name));
        Ok(())
    }

    /// For gc: removes everything in the trash that this process moved there or that no other
    /// remover holds, returning what was (or, `dry_run`, would be) removed.
    pub(super) fn empty_trash(&self, dry_run: bool) -> Result<Vec<PathBuf>> {
        let trash = self.trash_dir();
        let entries = match std::fs::read_dir(&trash) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("list {}", trash.display())),
        };
        let mut removed = Vec::new();
        if !dry_run {
            // This process's own (gc removes the anonymous volumes it found): it holds them.
            let mine: Vec<(PathBuf, OwnedFd)> = {
                let mut moved = moved();
                let (mine, others) = std::mem::take(&mut *moved)
                    .into_iter()
                    .partition(|(p, _)| p.starts_with(&trash));
                *moved = others;
                mine
            };
            for (path, _held) in mine {
                remove_if_present(&path)?;
                removed.push(path);
            }
        }
        for entry in entries {
            let path = entry.ctx(|| format!("list {}", trash.display()))?.path();
            // Held: its remover is at work. Gone: it has finished.
            let _held = match lock_dir(&path) {
                Ok(Some(fd)) => Some(fd),
                Ok(None) | Err(nix::errno::Errno::ENOENT) => continue,
                // Not a directory (nothing ocivol puts there, and no remover holds it): removed.
                Err(nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP) => None,
                Err(e) => {
                    return Err(std::io::Error::from(e)).ctx(|| format!("open {}", path.display()));
                }
            };
            if !dry_run {
                remove_if_present(&path)?;
            }
            removed.push(path);
        }
        if !dry_run {
            let _ = std::fs::remove_dir(&trash);
        }
        Ok(removed)
    }
}

/// Removes what this process moved into a trash, in a child that outlives it (see the module's
/// header); nothing to do when it moved nothing. If the fork fails, removes it here.
pub fn empty_detached() {
    let held = std::mem::take(&mut *moved());
    if held.is_empty() {
        return;
    }
    // SAFETY: called as a command ends, single-threaded (util::fork keeps the allocator usable
    // in the child in any case).
    match unsafe { crate::util::detached(|| remove_all(&held) == 0) } {
        // The child holds the locks now (the same open files); this process's copies close.
        Ok(()) => drop(held),
        Err(e) => {
            log::warn!("fork to empty ocivol's trash: {e}; emptying it now");
            remove_or_warn(&held);
        }
    }
}

/// Opens the directory `path` and takes its flock without waiting: `None` if another open file
/// holds it.
fn lock_dir(path: &Path) -> nix::Result<Option<OwnedFd>> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: flock on an fd we own.
    match unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } {
        0 => Ok(Some(fd)),
        _ => match nix::errno::Errno::last() {
            nix::errno::Errno::EWOULDBLOCK => Ok(None),
            e => Err(e),
        },
    }
}

/// Removes what this process moved into a trash, now: for a command that failed, which leaves
/// nothing behind.
pub fn empty_now() {
    remove_or_warn(&std::mem::take(&mut *moved()));
}

fn remove_or_warn(held: &[(PathBuf, OwnedFd)]) {
    if remove_all(held) > 0 {
        log::warn!("some of what ocivol moved into its trash is left; `ocivol gc` removes it");
    }
}

/// Removes each entry, then its trash directory if that is empty now; returns how many
/// entries failed.
fn remove_all(held: &[(PathBuf, OwnedFd)]) -> usize {
    let failed = held
        .iter()
        .filter(|(p, _)| remove_quietly(p).is_err())
        .count();
    for trash in held.iter().filter_map(|(p, _)| p.parent()) {
        // Not empty: another remover's entries are in it.
        let _ = std::fs::remove_dir(trash);
    }
    failed
}

/// Removes `path`; gone already (a gc got there first) is done.
fn remove_quietly(path: &Path) -> std::io::Result<()> {
    match crate::util::remove_tree(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::VolumeRequest;
    use super::super::tests::{guard, store};
    use super::*;
    use std::fs;

    /// The last release of an anonymous volume renames it out of the store in one step; what
    /// it held is in the trash until the detached child or gc removes it.
    #[test]
    fn an_anonymous_volume_leaves_the_store_in_one_rename_and_gc_empties_the_trash() {
        let (_dir, s, _) = store();
        let req = VolumeRequest::shared(None, None, false);
        let a = s.acquire(&req, "a", false, &guard()).unwrap();
        fs::write(a.source.join("written"), "by the container").unwrap();
        s.release(&a.name, "a").unwrap();
        assert!(s.definition(&a.name).unwrap().is_none());
        assert!(!a.source.exists());
        assert!(!s.volume_dir(&a.name).exists());
        assert!(!s.run_dir(&a.name).exists());
        let in_trash = s.trash_dir().join(&a.name);
        assert_eq!(
            fs::read_to_string(in_trash.join("data/written")).unwrap(),
            "by the container"
        );
        assert!(moved().iter().any(|(p, _)| p == &in_trash));
        // Held by another remover (as the detached child of another process holds it): gc
        // leaves it alone.
        moved().retain(|(p, _)| p != &in_trash);
        let other = lock_dir(&in_trash).unwrap().expect("no one holds it");
        assert!(s.empty_trash(false).unwrap().is_empty());
        assert!(in_trash.exists());
        // That remover gone (the lock with it): gc removes it.
        drop(other);
        assert_eq!(
            s.empty_trash(true).unwrap(),
            std::slice::from_ref(&in_trash)
        );
        assert!(in_trash.exists(), "a dry run removes nothing");
        assert_eq!(
            s.empty_trash(false).unwrap(),
            std::slice::from_ref(&in_trash)
        );
        assert!(!in_trash.exists());
        assert!(!s.trash_dir().exists(), "the empty trash goes too");
        // A stray file or symlink there never stops gc.
        fs::create_dir(s.trash_dir()).unwrap();
        fs::write(s.trash_dir().join("stray"), "").unwrap();
        std::os::unix::fs::symlink("/", s.trash_dir().join("link")).unwrap();
        assert_eq!(s.empty_trash(false).unwrap().len(), 2);
        assert!(!s.trash_dir().exists());
    }

    /// A trash entry in the way (it cannot be one of the same name in practice: the names are
    /// random): the volume is removed in place.
    #[test]
    fn an_entry_in_the_way_removes_the_volume_in_place() {
        let (_dir, s, _) = store();
        let req = VolumeRequest::shared(None, None, false);
        let a = s.acquire(&req, "a", false, &guard()).unwrap();
        fs::create_dir_all(s.trash_dir().join(&a.name).join("other")).unwrap();
        s.release(&a.name, "a").unwrap();
        assert!(!s.volume_dir(&a.name).exists());
        assert!(s.trash_dir().join(&a.name).join("other").exists());
    }
}
