//! What a container left, removed off the container's path.
//!
//! An anonymous volume goes with its last user (Docker's `run --rm -v /data`), a volatile
//! volume's changes go before its next user, and each overlay mount finds the state its last
//! mount left in the work directory (`work/work`; after a volatile mount, an `incompat` marker
//! that makes the next mount fail). Removing a tree unlinks its files and directories one by
//! one, and on a disk mounted with `discard` each freed block waits for the device: 64 µs per
//! empty directory here, 0.2 ms for an empty anonymous volume, far more for one a container
//! filled (docs/PERFORMANCE.md). So they are renamed into `ROOT/trash/` (one rename on the same
//! filesystem: from then on no name reaches them, and `volume ls` no longer shows them): an
//! anonymous volume's directory, or each entry of the upper or work directory, which stays
//! itself (an upper directory's owner and mode are the volume root's). The trees are removed
//! as the command ends:
//! - by a detached child that the command forks ([`empty_detached`]), which has closed every
//!   descriptor but the trash's and its locks (stdio and any pipe the command inherited), so
//!   that the engine that waits for the command (or the hook) does not wait for the removal,
//!   when any of them is [`Weight::Heavy`];
//! - by the command itself when all are [`Weight::Light`] (the work directory's few empty
//!   directories cost less than the fork);
//! - by every `ocivol gc`, whatever is in the trash that no remover holds (a command or child
//!   killed before it finished: the trash holds nothing anyone uses).
//!
//! Its remover holds an entry that is a directory: the release opens it and takes an flock on
//! it before the rename, and the child inherits that open file (and so the lock) across the
//! fork. gc skips an entry it cannot lock at once, so that gc and a child never remove one tree
//! together (each would find the other's removals gone under it). The trash directory itself is
//! made once and stays.
//!
//! A rename that fails (a trash entry of that name, a root on a filesystem without renameat2, a
//! volume under a project quota, which ext4 does not rename out of) removes in place, as before.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::util::tree::open_dir;

use super::{IoContext, Result, Store, VolumeDef, make_dir, remove_if_present};

const DIR: &str = "trash";

/// Whether removing what went into the trash is worth a child process of its own (see
/// [`empty_detached`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Weight {
    /// What containers left: an anonymous volume, a volatile volume's changes. How much that is
    /// is theirs to choose.
    Heavy,
    /// The overlay's own state in a work directory (`work/work`, a volatile mount's marker): a
    /// few empty directories, whose removal costs about what a fork does.
    Light,
}

/// An entry this process moved into a trash, held (its directory open and locked) when it is a
/// directory. It is removed as `name` in `trash`, the trash directory opened before the rename:
/// a hook removes it after it has entered the container's mount namespace, where `path` (for
/// messages and for gc's own) may name something else.
struct Moved {
    trash: Arc<OwnedFd>,
    name: OsString,
    path: PathBuf,
    _held: Option<OwnedFd>,
    weight: Weight,
}

/// What this process moved into a trash: removed as the command ends (see [`empty_detached`]).
static MOVED: Mutex<Vec<Moved>> = Mutex::new(Vec::new());

fn moved() -> std::sync::MutexGuard<'static, Vec<Moved>> {
    MOVED.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    pub(super) fn trash_dir(&self) -> PathBuf {
        self.root.join(DIR)
    }

    /// The trash (made if missing) and the directory opened, which what is moved into it is
    /// removed through (see [`Moved`]).
    fn open_trash(&self) -> std::io::Result<(PathBuf, Arc<OwnedFd>)> {
        let trash = self.trash_dir();
        make_dir(&trash).map_err(std::io::Error::other)?;
        let fd = open_dir(nix::fcntl::AT_FDCWD, trash.as_os_str()).map_err(|e| {
            std::io::Error::new(
                std::io::Error::from(e).kind(),
                format!("open {}: {e}", trash.display()),
            )
        })?;
        Ok((trash, Arc::new(fd)))
    }

    /// Under the volume's lock, no user left: takes the anonymous volume `def` out of the store
    /// with one rename into the trash, or removes it in place if that cannot be done.
    pub(super) fn discard(&self, def: &VolumeDef) -> Result<()> {
        // The run side (users/, the overlay's mount point) is on a tmpfs: removed now.
        remove_if_present(&self.run_dir(&def.name))?;
        let (trash, trash_fd) = match self.open_trash() {
            Ok(opened) => opened,
            Err(e) => {
                log::debug!("{e}; removing volume {} here", def.name);
                return self.remove(def);
            }
        };
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
                moved().push(Moved {
                    trash: trash_fd,
                    name: def.name.clone().into(),
                    path: to,
                    _held: Some(held),
                    weight: Weight::Heavy,
                });
            }
            // Gone already, or the trash was removed under us (an earlier ocivol removed it
            // once it was empty): then in place.
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

    /// Under the volume's lock: empties `dir` (a volume's upper or work directory) with one
    /// rename per entry into the trash, which is emptied as the command ends. `dir` itself stays:
    /// an upper directory's owner and mode are the volume root's. Made if missing; emptied in
    /// place if the trash cannot take what is in it.
    pub(super) fn empty_aside(&self, dir: &Path, weight: Weight) -> Result<()> {
        if let Err(e) = self.move_entries_aside(dir, weight) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::debug!(
                    "{}: move into the trash: {e}; emptying it here",
                    dir.display()
                );
            }
            return super::wipe_dir(dir);
        }
        Ok(())
    }

    fn move_entries_aside(&self, dir: &Path, weight: Weight) -> std::io::Result<()> {
        let from = open_dir(nix::fcntl::AT_FDCWD, dir.as_os_str())?;
        let mut names = Vec::new();
        crate::util::tree::for_each_entry(&from, |name, _| {
            names.push(name.to_os_string());
            Ok(())
        })?;
        if names.is_empty() {
            return Ok(());
        }
        let (trash, into) = self.open_trash()?;
        for name in names {
            // Held before the rename, as an anonymous volume is: gc leaves it to this process.
            let held = match lock_dir_at(&from, &name) {
                Ok(held) => held,
                Err(nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP) => None,
                Err(e) => return Err(e.into()),
            };
            let to = crate::util::unique_name();
            crate::util::renameat2(&from, name.as_os_str(), &*into, to.as_str(), 0)?;
            crate::crash::point("after-aside");
            moved().push(Moved {
                trash: into.clone(),
                path: trash.join(&to),
                name: to.into(),
                _held: held,
                weight,
            });
        }
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
            for m in take_moved_into(&trash) {
                remove_moved(&m).ctx(|| format!("remove {}", m.path.display()))?;
                removed.push(m.path);
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
        Ok(removed)
    }
}

/// Takes what this process moved into `trash` out of its list (a process may use several
/// stores, as the tests do).
fn take_moved_into(trash: &Path) -> Vec<Moved> {
    let mut moved = moved();
    let (mine, others) = std::mem::take(&mut *moved)
        .into_iter()
        .partition(|m| m.path.starts_with(trash));
    *moved = others;
    mine
}

/// As a command (or hook) ends: what it moved into a trash goes after it if it succeeded
/// ([`empty_detached`]), at once if it failed, which leaves nothing behind ([`empty_now`]).
pub fn empty_as_command_ends(succeeded: bool) {
    if succeeded {
        empty_detached();
    } else {
        empty_now();
    }
}

/// Removes what this process moved into a trash, in a child that outlives it (see the module's
/// header); nothing to do when it moved nothing. If the fork fails, removes it here.
fn empty_detached() {
    let held = std::mem::take(&mut *moved());
    if held.is_empty() {
        return;
    }
    if held.iter().all(|m| m.weight == Weight::Light) {
        // A few empty directories: cheaper to remove here than to fork for.
        return remove_or_warn(&held);
    }
    // The child works through the trash directories and holds the entries' locks: nothing else.
    let keep: Vec<RawFd> = held
        .iter()
        .flat_map(|m| {
            [
                Some(m.trash.as_raw_fd()),
                m._held.as_ref().map(|h| h.as_raw_fd()),
            ]
        })
        .flatten()
        .collect();
    // SAFETY: called as a command ends, single-threaded (util::fork keeps the allocator usable
    // in the child in any case).
    match unsafe { crate::util::detached(&keep, || remove_all(&held) == 0) } {
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
    lock_dir_at(nix::fcntl::AT_FDCWD, path.as_os_str())
}

/// [`lock_dir`] of entry `name` of directory `parent`, never through a symlink.
fn lock_dir_at<Fd: AsFd>(parent: Fd, name: &OsStr) -> nix::Result<Option<OwnedFd>> {
    let fd = open_dir(parent, name)?;
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

fn remove_or_warn(held: &[Moved]) {
    if remove_all(held) > 0 {
        log::warn!("some of what ocivol moved into its trash is left; `ocivol gc` removes it");
    }
}

/// Removes each entry; returns how many failed. The trash directory itself stays, made once.
fn remove_all(held: &[Moved]) -> usize {
    held.iter().filter(|m| remove_moved(m).is_err()).count()
}

/// Removes an entry through the trash it went into; gone already (a gc got there first) is
/// done.
fn remove_moved(m: &Moved) -> std::io::Result<()> {
    match crate::util::remove_tree_at(&m.trash, &m.name, &m.path) {
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
        assert!(moved().iter().any(|m| m.path == in_trash));
        // Held by another remover (as the detached child of another process holds it): gc
        // leaves it alone.
        moved().retain(|m| m.path != in_trash);
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
        assert_eq!(fs::read_dir(s.trash_dir()).unwrap().count(), 0);
        // A stray file or symlink there never stops gc.
        fs::write(s.trash_dir().join("stray"), "").unwrap();
        std::os::unix::fs::symlink("/", s.trash_dir().join("link")).unwrap();
        assert_eq!(s.empty_trash(false).unwrap().len(), 2);
        assert_eq!(fs::read_dir(s.trash_dir()).unwrap().count(), 0);
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

    /// What a volatile volume's users wrote leaves its upper directory with renames into the
    /// trash, not one removal per file on the container's path; the directory stays, with the
    /// owner and mode of the volume's root. So does the overlay's own state in the work
    /// directory, at the last release and at each mount, but for an empty `work/work` (what a
    /// clean unmount leaves): one rmdir, once the overlay is gone.
    #[test]
    fn a_volatile_volumes_changes_and_the_overlays_work_state_go_into_the_trash() {
        use super::super::tests::cow;
        use std::os::unix::fs::MetadataExt;
        let (dir, s, _) = store();
        let base = dir.path().join("base");
        fs::create_dir(&base).unwrap();
        let held = || -> Vec<PathBuf> {
            moved()
                .iter()
                .filter(|m| m.path.starts_with(s.trash_dir()))
                .map(|m| m.path.clone())
                .collect()
        };
        s.acquire(&cow("v", &base, true), "a", true, &guard())
            .unwrap();
        let (upper, work) = (s.upper_dir("v"), s.work_dir("v"));
        fs::create_dir_all(upper.join("tree/deeper")).unwrap();
        fs::write(upper.join("tree/deeper/file"), "changed").unwrap();
        // As the overlay leaves it (a volatile one adds its incompat marker).
        fs::create_dir_all(work.join("work")).unwrap();
        fs::create_dir_all(work.join("incompat/volatile")).unwrap();
        let root = fs::metadata(&upper).unwrap();
        s.release("v", "a").unwrap();
        for d in [&upper, &work] {
            assert_eq!(fs::read_dir(d).unwrap().count(), 0, "{}", d.display());
        }
        let after = fs::metadata(&upper).unwrap();
        assert_eq!(
            (after.ino(), after.mode(), after.uid()),
            (root.ino(), root.mode(), root.uid()),
            "the upper directory itself stays"
        );
        let aside = held();
        assert_eq!(aside.len(), 2, "one rename per entry: {aside:?}");
        assert!(
            aside
                .iter()
                .any(|p| fs::read_to_string(p.join("deeper/file")).is_ok_and(|t| t == "changed")),
            "{aside:?}"
        );
        assert!(aside.iter().any(|p| p.join("volatile").is_dir()));
        assert!(!work.join("work").exists(), "removed after the unmount");
        // A later first mount: an empty `work/work` (what a crash before that removal leaves) is
        // removed in place, with no trash entry; one with something in it goes aside.
        fs::create_dir(work.join("work")).unwrap();
        s.acquire(&cow("v", &base, true), "b", true, &guard())
            .unwrap();
        assert_eq!(fs::read_dir(&work).unwrap().count(), 0);
        assert_eq!(held().len(), 2);
        s.release("v", "b").unwrap();
        assert_eq!(
            held().len(),
            2,
            "nothing was left in the upper or work directory"
        );
        fs::create_dir_all(work.join("work/#7/sub")).unwrap();
        s.acquire(&cow("v", &base, true), "c", true, &guard())
            .unwrap();
        assert_eq!(fs::read_dir(&work).unwrap().count(), 0);
        assert_eq!(held().len(), 3);
        // gc removes what this process set aside; the trash itself stays.
        assert_eq!(s.empty_trash(false).unwrap().len(), 3);
        assert!(held().is_empty());
        assert_eq!(fs::read_dir(s.trash_dir()).unwrap().count(), 0);
    }

    /// A hook empties the trash after it has entered the container's mount namespace, where the
    /// trash's path may name something else: what was moved is removed through the trash
    /// directory opened on the way in, not by its path (here the path leads nowhere any more).
    #[test]
    fn what_was_moved_is_removed_through_the_trash_it_went_into_not_by_path() {
        let (_dir, s, _) = store();
        let req = VolumeRequest::shared(None, None, false);
        let a = s.acquire(&req, "a", false, &guard()).unwrap();
        fs::write(a.source.join("written"), "x").unwrap();
        s.release(&a.name, "a").unwrap();
        let elsewhere = s.root.join("trash-elsewhere");
        fs::rename(s.trash_dir(), &elsewhere).unwrap();
        let mine = take_moved_into(&s.trash_dir());
        assert_eq!(mine.len(), 1);
        assert!(elsewhere.join(&a.name).exists());
        assert_eq!(remove_all(&mine), 0);
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "removed where it is"
        );
    }
}
