//! Durable writes, synced off the start path.
//!
//! A container start writes three kinds of files that must survive a power loss: the
//! container's record (`ROOT/containers/KEY.json`, for volumes-from of a stopped container and
//! for gc after a reboot), the definition of each volume it creates (`volume.json`), and the
//! bundle's `config.json` that the wrapper rewrites. Each used to be fsynced before the real
//! runtime ran: 0.3-1 ms per file on a quiet ext4 disk, several ms on a busy one, all of it on
//! the start path (docs/PERFORMANCE.md).
//!
//! [`write`] replaces a file atomically (a temporary file, renamed over it: a reader sees the
//! old file or the new one) without the fsync, and keeps the file and its directory open in a
//! list of this process. [`flush`] fsyncs them. The runtime wrapper flushes once it has started
//! the real runtime and before it waits for it, so the sync runs while the runtime creates the
//! container and costs the start nothing; every other command flushes before it exits ([`flush`] from `main`), so an operator
//! command still returns with its writes on disk.
//!
//! What a crash can do in between: a SIGKILL loses nothing (the page cache has the files). A
//! power loss before the flush ends may lose a file written since the last journal commit
//! (ext4 commits every 5 s): after such a reboot no container of that start runs, `gc` removes a
//! volume directory without a definition (see `store::reconcile`) and a record that cannot be
//! read is no record; the engines write `config.json` anew at every start.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

/// Files written by [`write`] and not yet synced, with the directory each was renamed into (both
/// open: a hook syncs them after it has entered the container's mount namespace, where their
/// paths mean something else).
static PENDING: Mutex<Vec<(File, File)>> = Mutex::new(Vec::new());

/// More pending files than this are synced at once.
const MAX_PENDING: usize = 64;

fn pending() -> std::sync::MutexGuard<'static, Vec<(File, File)>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Replaces `path` with `data` atomically, synced later by [`flush`]. `point` is the crash point
/// between the temporary file's write and its rename (see [`crate::crash`]).
pub fn write(path: &Path, data: &[u8], point: &str) -> io::Result<()> {
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path.parent().unwrap_or(Path::new(".")))?;
    let file = crate::util::replace_file(path, data, Some(point))?;
    let full = {
        let mut list = pending();
        list.push((file, dir));
        list.len() >= MAX_PENDING
    };
    if full {
        // A long-running caller (a test, an operator command creating many volumes) keeps a
        // bounded number of files open.
        flush()?;
    }
    Ok(())
}

/// Syncs every file [`write`] wrote, then each directory it was renamed into. Returns the first
/// error; every file is tried.
pub fn flush() -> io::Result<()> {
    let files = std::mem::take(&mut *pending());
    if files.is_empty() {
        return Ok(());
    }
    crate::crash::point("before-deferred-sync");
    sync_each(&sync_order(&files))
}

/// What a flush syncs, in order: each file, then each directory once.
fn sync_order(files: &[(File, File)]) -> Vec<&File> {
    let mut order: Vec<&File> = files.iter().map(|(file, _)| file).collect();
    let mut seen = Vec::new();
    for (_, dir) in files {
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
    let order = sync_order(&files);
    // Started: the child has its own copies of the descriptors; ours close as `files` drops.
    if let Err(e) = crate::util::sync_child::spawn(&order, last) {
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
}
