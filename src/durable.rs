//! Durable writes, synced off the start path.
//!
//! A container start writes three kinds of files that must survive a power loss: the
//! container's record (`ROOT/containers/KEY.json`, for volumes-from of a stopped container and
//! for gc after a reboot), the definition of each volume it creates (`volume.json`), and the
//! bundle's `config.json` that the wrapper rewrites. Each used to be fsynced before the real
//! runtime ran: 0.3-1 ms per file on a quiet ext4 disk, several ms on a busy one, all of it on
//! the start path (docs/PERFORMANCE.md).
//!
//! [`write`] replaces a file atomically (a temporary file exchanged with it by
//! `renameat2(RENAME_EXCHANGE)`: a reader sees the old file or the new one) without the fsync,
//! and keeps the file, its directory and the old file's new name in a list of this process. Not
//! a rename over it: on ext4 that starts the new file's writeback and frees the old file's
//! blocks on the spot (about 0.1 ms, see [`crate::util::Replace`]). [`flush`] removes the old
//! files and fsyncs the new ones. The runtime wrapper flushes once it has started the real
//! runtime and before it waits for it, so all of it runs while the runtime creates the
//! container and costs the start nothing; a hook leaves it to a child ([`flush_detached`]); every
//! other command flushes before it exits ([`flush`] from `main`), so an operator command still
//! returns with its writes on disk.
//!
//! What a crash can do in between: a SIGKILL loses nothing (the page cache has the files). A
//! power loss before the flush ends may lose a file written since the last journal commit
//! (ext4 commits every 5 s), or leave one it replaced empty: after such a reboot no container of
//! that start runs, `gc` removes a volume directory without a definition (see
//! `store::reconcile`) and a record that cannot be read is no record; the engines write
//! `config.json` anew at every start (a bundle run by hand would find it empty, where ocivol had
//! rewritten it for that start: the flush runs while the runtime starts, a millisecond or so).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

/// A file written by [`write`] and not yet synced.
struct Pending {
    file: File,
    /// The directory it was renamed into, open: a hook syncs it after it has entered the
    /// container's mount namespace, where its path means something else.
    dir: File,
    /// The name in `dir` of the file it replaced, still to be removed (see
    /// [`crate::util::Replace::Exchange`]).
    old: Option<CString>,
}

/// Files written by [`write`] and not yet synced.
static PENDING: Mutex<Vec<Pending>> = Mutex::new(Vec::new());

/// More pending files than this are synced at once.
const MAX_PENDING: usize = 64;

fn pending() -> std::sync::MutexGuard<'static, Vec<Pending>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Replaces `path` with `data` atomically, synced later by [`flush`], which also removes the
/// file it replaced. `point` is the crash point between the temporary file's write and its
/// rename (see [`crate::crash`]).
pub fn write(path: &Path, data: &[u8], point: &str) -> io::Result<()> {
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path.parent().unwrap_or(Path::new(".")))?;
    let done = crate::util::replace_file(path, data, Some(point), crate::util::Replace::Exchange)?;
    let old = done
        .old
        .and_then(|p| CString::new(p.file_name()?.as_bytes()).ok());
    let full = {
        let mut list = pending();
        list.push(Pending {
            file: done.file,
            dir,
            old,
        });
        list.len() >= MAX_PENDING
    };
    if full {
        // A long-running caller (a test, an operator command creating many volumes) keeps a
        // bounded number of files open.
        flush()?;
    }
    Ok(())
}

/// Removes the files that [`write`]s replaced, then syncs every file they wrote, then each
/// directory they were renamed into (with the removals). Returns the first error; every file is
/// tried.
pub fn flush() -> io::Result<()> {
    let files = std::mem::take(&mut *pending());
    if files.is_empty() {
        return Ok(());
    }
    crate::crash::point("before-deferred-sync");
    for p in &files {
        if let Some(name) = &p.old {
            remove_old(&p.dir, name);
        }
    }
    sync_each(&sync_order(&files))
}

/// Removes the replaced file `name` of `dir`; a failure leaves it to gc (a stale temporary file).
fn remove_old(dir: &File, name: &CStr) {
    if let Err(e) = nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        log::warn!("remove {name:?}, the file a write replaced: {e}");
    }
}

/// What a flush syncs, in order: each file, then each directory once.
fn sync_order(files: &[Pending]) -> Vec<&File> {
    let mut order: Vec<&File> = files.iter().map(|p| &p.file).collect();
    let mut seen = Vec::new();
    for Pending { dir, .. } in files {
        let id = dir
            .metadata()
            .map(|m| (m.dev(), m.ino()))
            .unwrap_or_default();
        if !seen.contains(&id) {
            seen.push(id);
            order.push(dir);
        }
    }
    order
}

/// fsyncs each of `files`; the first error, every one tried.
fn sync_each(files: &[&File]) -> io::Result<()> {
    let mut first_err = None;
    for file in files {
        if let Err(e) = file.sync_all() {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// [`flush`] in a child that outlives this process, for a hook: its caller (runc, crun, podman,
/// CRI-O) waits for the hook to exit, and for its stdout and stderr to close, before the
/// container goes on; the child closes them first, and is not a fork (see
/// [`crate::util::sync_child`]). The same child does `last` after this process has closed its
/// copies (`crate::store::take_detached`). If it cannot be started, `last` is done here, then
/// the sync.
pub fn flush_detached(last: Vec<crate::util::sync_child::Last>) {
    let files = std::mem::take(&mut *pending());
    if files.is_empty() && last.is_empty() {
        return;
    }
    if !files.is_empty() {
        crate::crash::point("before-deferred-sync");
    }
    // The files the writes replaced go first (the caller's steps end with the locks it holds).
    let mut steps = Vec::with_capacity(files.len() + last.len());
    for p in &files {
        if let Some(name) = &p.old {
            match p.dir.try_clone() {
                // Leaked: the child reads it after this process may have freed everything else.
                Ok(dir) => steps.push(crate::util::sync_child::Last::RemoveFile(
                    dir.into(),
                    Box::leak(name.clone().into_boxed_c_str()),
                )),
                Err(_) => remove_old(&p.dir, name),
            }
        }
    }
    steps.extend(last);
    let order = sync_order(&files);
    // Started: the child has its own copies of the descriptors; ours close as `files` drops.
    if let Err(e) = crate::util::sync_child::spawn(&order, steps) {
        log::warn!("start a process to sync ocivol's state: {e}; syncing now");
        if let Err(e) = sync_each(&order) {
            log::warn!("sync ocivol's state to disk: {e}; a power loss now could lose it");
        }
    }
}

/// [`flush`], a failure logged: the start itself has succeeded; only its durability against a
/// power loss is in doubt.
pub fn flush_or_warn() {
    if let Err(e) = flush() {
        log::warn!("sync ocivol's state to disk: {e}; a power loss now could lose it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_write_is_in_place_at_once_and_a_flush_syncs_it() {
        // Other tests of this process write through the same list: only what this one wrote is
        // asserted.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        std::fs::write(&path, "old").unwrap();
        write(&path, b"new", "test-point").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        flush().unwrap();
        write(&dir.path().join("b"), b"b", "test-point").unwrap();
        flush_or_warn();
        assert_eq!(std::fs::read_to_string(dir.path().join("b")).unwrap(), "b");
        let mut left = crate::util::dir_first_entries(dir.path(), 10).unwrap();
        left.sort();
        assert_eq!(left, ["b", "record.json"], "no temporary file is left");
    }

    /// A hook's flush leaves the removal of the file a write replaced to its child, as the
    /// syncs: the old file goes once the child has run, and nothing else is left beside it.
    #[test]
    fn a_detached_flush_removes_the_replaced_file_in_its_child() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        std::fs::write(&path, "old").unwrap();
        write(&path, b"new", "test-point").unwrap();
        flush_detached(Vec::new());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let left = loop {
            let left = crate::util::dir_first_entries(dir.path(), 10).unwrap();
            if left.len() == 1 || std::time::Instant::now() > deadline {
                break left;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(left, ["record.json"]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    }
}
