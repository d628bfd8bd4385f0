//! Small helpers shared by the store and the spec writer.

pub mod sync_child;
pub(crate) mod tree;
pub use tree::{empty_dir, remove_tree, remove_tree_at};

use std::ffi::OsStr;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Replaces `path` with `data` atomically: a temporary file in the same directory, renamed over
/// it, so a reader sees the old file or the new one, never half of one. A file that existed keeps
/// its permissions. Not synced: for files under the run root: a reboot clears that root,
/// so syncing would only guard against a power loss after which the file means nothing (its
/// record carries the boot ID). Readers still see the old file or the new one. On a busy disk an
/// fsync costs milliseconds, and a container start writes one such file per volume.
pub fn write_atomic_unsynced(path: &Path, data: &[u8]) -> io::Result<()> {
    replace_file(path, data, None, Replace::Rename).map(drop)
}

/// [`write_atomic_unsynced`] with a crash point (see [`crate::crash`]) between the temporary
/// file's write and its rename: what a kill there leaves is a temporary file beside `path`.
pub fn write_atomic_with_crash_point(path: &Path, data: &[u8], point: &str) -> io::Result<()> {
    replace_file(path, data, Some(point), Replace::Rename).map(drop)
}

/// How [`replace_file`] puts the new file in place of an old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Replace {
    /// rename(2) over it. On ext4, a rename over an existing file starts the new file's
    /// writeback at once (its `auto_da_alloc` heuristic, so that a power loss leaves the old file
    /// or the new one even if nobody syncs): about 0.1 ms on the benchmark machine's disk, where
    /// a rename to a new name costs 16 µs.
    Rename,
    /// renameat2(2) with `RENAME_EXCHANGE`: as atomic for readers, without that writeback (7 µs).
    /// The old file is then at the temporary name, for the caller to remove ([`Replaced::old`]):
    /// on that disk the unlink that frees its blocks costs 0.15-0.35 ms, which a rename over it
    /// pays inside the rename, so the caller removes it off the start path. For a file that the
    /// caller syncs soon ([`crate::durable`]): until then a power loss may leave it empty, as it
    /// may a new file.
    Exchange,
}

/// What [`replace_file`] did: the file now at the path (open, for an fsync later: see
/// [`crate::durable`]), and where the file it replaced is now, when that is for the caller to
/// remove (an exchange): a temporary name in the same directory, stale once this process is gone
/// ([`stale_temp`]), so a kill before the removal leaves it to [`remove_stale_temps`].
pub(crate) struct Replaced {
    pub file: std::fs::File,
    pub old: Option<PathBuf>,
}

/// [`write_atomic_unsynced`], giving back the file now at `path` and, after an exchange, where
/// the old one went (see [`Replaced`]).
pub(crate) fn replace_file(
    path: &Path,
    data: &[u8],
    point: Option<&str>,
    how: Replace,
) -> io::Result<Replaced> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix())
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    let existed = match std::fs::metadata(path) {
        Ok(meta) => {
            tmp.as_file().set_permissions(meta.permissions())?;
            true
        }
        Err(_) => false,
    };
    if let Some(point) = point {
        crate::crash::point(point);
    }
    if how == Replace::Exchange && existed {
        let cwd = nix::fcntl::AT_FDCWD;
        match renameat2(cwd, tmp.path(), cwd, path, libc::RENAME_EXCHANGE) {
            Ok(()) => {
                // The temporary name holds the old file now, which must not be removed with the
                // temporary file's handle.
                let (file, old) = tmp.keep().map_err(|e| e.error)?;
                return Ok(Replaced {
                    file,
                    old: Some(old),
                });
            }
            // Gone since the stat, or a filesystem without RENAME_EXCHANGE: a plain rename.
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let file = tmp.persist(path).map_err(|e| e.error)?;
    Ok(Replaced { file, old: None })
}

/// openat2(2), tried again while the kernel answers EAGAIN: with `RESOLVE_IN_ROOT` or
/// `RESOLVE_BENEATH` it does so when a rename anywhere on the system raced its resolution of
/// `..`, and asks the caller to retry (openat2(2)). A tenant renaming in a loop can make it fail
/// every time: after 64 tries the EAGAIN is the caller's.
pub fn openat2<P: ?Sized + nix::NixPath, Fd: std::os::fd::AsFd>(
    dirfd: Fd,
    path: &P,
    how: nix::fcntl::OpenHow,
) -> nix::Result<std::os::fd::OwnedFd> {
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(dirfd.as_fd(), path, how) {
            Err(nix::errno::Errno::EAGAIN) if tries < 64 => tries += 1,
            done => return done,
        }
    }
}

/// A filesystem's magic number (`statfs.f_type`), whatever type the libc gives it (signed on
/// glibc, unsigned on musl).
#[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)]
pub fn fs_magic(st: &nix::sys::statfs::Statfs) -> u64 {
    st.filesystem_type().0 as u64
}

/// renameat2(2) with `flags` (`libc::RENAME_NOREPLACE`, `libc::RENAME_EXCHANGE`), made
/// through the system call: nix wraps it on glibc targets only, and ocivol builds for musl too.
pub fn renameat2<P1, P2, Fd1, Fd2>(
    olddir: Fd1,
    old: &P1,
    newdir: Fd2,
    new: &P2,
    flags: libc::c_uint,
) -> nix::Result<()>
where
    P1: ?Sized + nix::NixPath,
    P2: ?Sized + nix::NixPath,
    Fd1: std::os::fd::AsFd,
    Fd2: std::os::fd::AsFd,
{
    use std::os::fd::AsRawFd;
    let res = old.with_nix_path(|old| {
        new.with_nix_path(|new| {
            // SAFETY: two open directory fds and two NUL-terminated paths that outlive the call.
            unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    olddir.as_fd().as_raw_fd(),
                    old.as_ptr(),
                    newdir.as_fd().as_raw_fd(),
                    new.as_ptr(),
                    flags,
                )
            }
        })
    })??;
    nix::errno::Errno::result(res).map(drop)
}

/// How every temporary file of ocivol's state begins: [`write_atomic_unsynced`] and [`crate::durable::write`] name them
/// `.ocivol-PID-START-XXXXXX`, PID and START the writing process (its pid and start time, see
/// [`crate::process`]), so that one a writer left behind (it was killed before the rename) is
/// told from one being written: see [`stale_temp`]. No record's name has this form: a record is
/// named by a container key (`ID.HASH`, see [`crate::container_id::container_key`]) or a volume, pod or
/// container name, and none of those begins with `.ocivol-` and has no further `.`.
pub const TEMP_PREFIX: &str = ".ocivol-";

/// fork(2), for a child that runs Rust code (and so may allocate) before it exits. The global
/// allocator (dlmalloc, src/lib.rs) has one lock: a fork while another thread held it would
/// leave the child's copy locked for good. Its fork handlers, registered here once, take the
/// lock around the fork and release it on both sides. (ocivol runs single-threaded, its tests
/// do not; a child that only makes system calls, as the user namespace's holder, needs none of
/// this but gets it all the same.)
///
/// # Safety
/// As [`nix::unistd::fork`]: the child of a multi-threaded process may only use what no other
/// thread held at the fork, which this makes true of the allocator, not of every lock.
pub unsafe fn fork() -> nix::Result<nix::unistd::ForkResult> {
    static HANDLERS: std::sync::Once = std::sync::Once::new();
    // SAFETY: registered once (the Once); the C library's pthread_atfork allocates from its
    // own malloc, not from this allocator, so it cannot wait on the lock dlmalloc holds then.
    HANDLERS.call_once(|| unsafe { dlmalloc::enable_alloc_after_fork() });
    // SAFETY: the caller's.
    unsafe { nix::unistd::fork() }
}

/// Runs `work` in a forked child that outlives this process: the child first closes every
/// descriptor but `keep` (what `work` uses), stdio included, so that a caller waiting for this
/// process's output or for the end of any pipe it inherited (an engine, a runtime running a
/// hook, a `--preserve-fds` of the caller's) does not wait for the child; then it leaves the
/// session, runs `work` and exits, 0 if it returned true. Closed, not pointed at /dev/null: a
/// hook may end in the container's mount namespace, and `work` must open nothing by path it has
/// not opened already. Returns once forked; the error is the fork's, and then `work` has not
/// run.
///
/// # Safety
/// As [`fork`]: for a single-threaded process (`work` runs Rust code after the fork).
pub unsafe fn detached(
    keep: &[std::os::fd::RawFd],
    work: impl FnOnce() -> bool,
) -> nix::Result<()> {
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    // SAFETY: the caller's.
    match unsafe { fork() }? {
        nix::unistd::ForkResult::Child => {
            sync_child::close_all_but(&keep);
            let _ = nix::unistd::setsid();
            let code = i32::from(!work());
            // SAFETY: _exit skips the parent's atexit handlers and buffered output.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { .. } => Ok(()),
    }
}

/// clone(2) of `child` on the stack that ends at `stack_top` (16-byte aligned), with `flags`,
/// while every signal of this thread is blocked, so that no handler of ocivol's runs in a child
/// that shares its memory; the child starts with every signal blocked. `after` runs in the
/// parent with the child's pid before the mask is restored. Returns the pid.
///
/// # Safety
/// As clone(2) with `flags`: with `CLONE_VM`, `child` runs on this process's memory and must
/// only read what outlives it and make raw system calls; `arg` and the stack must outlive it.
pub unsafe fn clone_signals_blocked(
    child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    stack_top: *mut libc::c_void,
    flags: libc::c_int,
    arg: *mut libc::c_void,
    after: impl FnOnce(libc::pid_t),
) -> io::Result<libc::pid_t> {
    // SAFETY: sigfillset and pthread_sigmask on local sigset_t values.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: the caller's.
    let pid = unsafe { libc::clone(child, stack_top, flags, arg) };
    let clone_error = io::Error::last_os_error();
    if pid > 0 {
        after(pid);
    }
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    if pid < 0 {
        return Err(clone_error);
    }
    Ok(pid)
}

fn temp_prefix() -> String {
    static MINE: std::sync::Mutex<Option<(u32, String)>> = std::sync::Mutex::new(None);
    let pid = std::process::id();
    let mut mine = MINE.lock().unwrap_or_else(|e| e.into_inner());
    match &*mine {
        Some((of, prefix)) if *of == pid => prefix.clone(),
        _ => {
            let prefix = match crate::process::ProcessId::current() {
                Some(me) => format!("{TEMP_PREFIX}{}-{}-", me.pid, me.start),
                None => TEMP_PREFIX.to_string(),
            };
            *mine = Some((pid, prefix.clone()));
            prefix
        }
    }
}

/// A name no other process makes and this one makes once (see [`TEMP_PREFIX`]: it names this
/// process), for an entry renamed into a directory that holds many makers' entries.
pub fn unique_name() -> String {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}{n}", temp_prefix())
}

/// A new, empty directory (0700) in `dir` with a temporary name (see [`TEMP_PREFIX`]): the
/// caller fills it and renames it into place; one whose maker died first is [`stale_temp`].
pub fn temp_dir_in(dir: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::Builder::new()
        .prefix(&temp_prefix())
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(dir)?;
    Ok(tmp.keep())
}

/// Whether a directory entry is a temporary file of [`write_atomic_unsynced`] (never a record).
pub fn is_temp_name(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_prefix(TEMP_PREFIX))
        .is_some_and(|rest| !rest.contains('.'))
}

/// The process that wrote a temporary file, from its name (`None`: a name without one, as
/// earlier versions of ocivol wrote them).
pub fn temp_writer(name: &OsStr) -> Option<crate::process::ProcessId> {
    if !is_temp_name(name) {
        return None;
    }
    let rest = name.to_str()?.strip_prefix(TEMP_PREFIX)?;
    let mut parts = rest.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(crate::process::ProcessId { pid, start })
}

/// How old a temporary file without a writer in its name must be to be taken as left behind:
/// an atomic write holds its file for milliseconds.
pub const NAMELESS_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether the temporary file `path` was left behind by a write that was cut short: its writer
/// (named in it) is dead, or, with no writer in its name, it is older than
/// [`NAMELESS_TEMP_AGE`]. A file whose writer lives is being written: it is never stale.
pub fn stale_temp(path: &Path) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    if !is_temp_name(name) {
        return false;
    }
    match temp_writer(name) {
        Some(writer) => !writer.is_alive(),
        None => std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > NAMELESS_TEMP_AGE),
    }
}

/// Removes the temporary files of [`write_atomic_unsynced`] in `dir` that are left behind: all of them
/// with `all` (the caller holds the lock every writer of `dir` takes, so none is being
/// written), else the [`stale_temp`] ones. With `dry_run` nothing is removed. Returns what was
/// (or would be) removed; a missing `dir` has none.
pub fn remove_stale_temps(dir: &Path, all: bool, dry_run: bool) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !is_temp_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        if !all && !stale_temp(&path) {
            continue;
        }
        if !dry_run {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                other => other?,
            }
        }
        removed.push(path);
    }
    removed.sort();
    Ok(removed)
}

/// Whether directory `dir` holds any entry besides `.` and `..`.
pub fn dir_has_entries(dir: &Path) -> io::Result<bool> {
    Ok(!dir_first_entries(dir, 1)?.is_empty())
}

/// Up to `max` names of entries of `dir` (not `.` and `..`), in directory order, read with small
/// getdents64(2) calls. std's `read_dir` asks the kernel for 32 KiB of entries at once, which
/// makes even its first entry cost about 170 µs in a directory of 1,000 files (ext4); a 1 KiB
/// buffer keeps it near constant: the kernel stops filling when the buffer is full.
pub fn dir_first_entries(dir: &Path, max: usize) -> io::Result<Vec<std::ffi::OsString>> {
    dir_first_entries_where(dir, max, |_| true)
}

/// [`dir_first_entries`] of the entries whose name `keep` accepts (the others are read past).
pub fn dir_first_entries_where(
    dir: &Path,
    max: usize,
    keep: impl Fn(&OsStr) -> bool,
) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut found = Vec::new();
    if max == 0 {
        return Ok(found);
    }
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?;
    // u64s: linux_dirent64 records are 8-byte aligned. A few entries are asked for on every
    // start (is there a user?): read a few at a time, not a KiB (the size still fits one entry
    // of the longest name, 19 + 256 bytes, which getdents64 needs).
    let mut buf = [0u64; 128];
    let size = if max <= 2 {
        40 * std::mem::size_of::<u64>()
    } else {
        std::mem::size_of_val(&buf)
    };
    loop {
        // SAFETY: the kernel writes at most `size` bytes into buf, which is no larger.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                file.as_raw_fd(),
                buf.as_mut_ptr(),
                size,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(found);
        }
        // SAFETY: the first n bytes of buf were written by the kernel.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
        let mut off = 0;
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        while off + 19 < bytes.len() {
            let reclen = u16::from_ne_bytes([bytes[off + 16], bytes[off + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &bytes[off + 19..(off + reclen).min(bytes.len())];
            let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." && keep(OsStr::from_bytes(name)) {
                found.push(OsStr::from_bytes(name).to_os_string());
                if found.len() == max {
                    return Ok(found);
                }
            }
            off += reclen;
        }
    }
}

/// Root-only unit tests call this first, as tests/common's `require_root`: `None` means
/// "skipped: requires root" was printed.
#[cfg(test)]
pub(crate) fn require_root(test: &str) -> Option<()> {
    if nix::unistd::getuid().is_root() {
        Some(())
    } else {
        eprintln!("{test}: skipped: requires root");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exchange replaces the file as a rename over it does: the new bytes at the path, the
    /// old file's mode kept, a reader that had the old file open still reading the old bytes (it
    /// was replaced, not rewritten), and nothing beside it but the old file, under the temporary
    /// name it gives back for the caller to remove.
    #[test]
    fn an_exchanged_file_replaces_the_old_one_whole_and_gives_back_where_the_old_one_went() {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        for how in [Replace::Exchange, Replace::Rename] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.json");
            std::fs::write(&path, "old").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            let mut reader = std::fs::File::open(&path).unwrap();
            let Replaced { file, old } = replace_file(&path, b"new", None, how).unwrap();
            match (how, old) {
                (Replace::Exchange, Some(old)) => {
                    assert_eq!(old.parent(), Some(dir.path()));
                    assert!(is_temp_name(old.file_name().unwrap()), "{}", old.display());
                    assert_eq!(std::fs::read_to_string(&old).unwrap(), "old");
                    std::fs::remove_file(old).unwrap();
                }
                (Replace::Rename, None) => {}
                (how, old) => panic!("{how:?} gave back {old:?}"),
            }
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "new", "{how:?}");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o640, "{how:?}");
            let mut seen = String::new();
            reader.read_to_string(&mut seen).unwrap();
            assert_eq!(seen, "old", "{how:?}: the old file was rewritten in place");
            // The file given back is the one now at the path (what durable syncs).
            use std::os::unix::fs::MetadataExt;
            let ino = |m: std::fs::Metadata| (m.dev(), m.ino());
            assert_eq!(
                ino(file.metadata().unwrap()),
                ino(std::fs::metadata(&path).unwrap())
            );
            let names = dir_first_entries(dir.path(), 10).unwrap();
            assert_eq!(names, ["config.json"], "{how:?}");
            // A file that did not exist is made, with an exchange too.
            let fresh = dir.path().join("fresh.json");
            let made = replace_file(&fresh, b"first", None, how).unwrap();
            assert!(made.old.is_none(), "{how:?}: nothing was replaced");
            assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "first", "{how:?}");
            assert_eq!(
                dir_first_entries(dir.path(), 10).unwrap().len(),
                2,
                "{how:?}"
            );
        }
    }

    /// A detached child holds only what it is given: an engine reading a pipe this process
    /// inherited (a runtime's `--preserve-fds`, a log pipe) sees its end when this process
    /// exits, not when the child has finished its work.
    #[test]
    fn a_detached_child_keeps_only_the_descriptors_it_is_given() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let (mut engine_r, engine_w) = std::io::pipe().unwrap();
        let (go_r, mut go_w) = std::io::pipe().unwrap();
        let (mut done_r, done_w) = std::io::pipe().unwrap();
        let keep = [go_r.as_raw_fd(), done_w.as_raw_fd()];
        // SAFETY: the child only reads and writes the two pipes it keeps.
        unsafe {
            detached(&keep, || {
                let mut go = [0u8; 1];
                let waited = (&go_r).read(&mut go).is_ok_and(|n| n == 1);
                waited && (&done_w).write_all(b"k").is_ok()
            })
        }
        .unwrap();
        drop((engine_w, go_r, done_w));
        // The child waits for `go`: the engine's pipe has no writer left but the child.
        let mut seen = Vec::new();
        let ended = std::thread::spawn(move || engine_r.read_to_end(&mut seen).map(|_| seen));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !ended.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let ended_first = ended.is_finished();
        go_w.write_all(b"g").unwrap();
        let mut done = Vec::new();
        done_r.read_to_end(&mut done).unwrap();
        assert_eq!(done, b"k", "the child used what it kept");
        assert!(
            ended_first,
            "the engine's pipe stayed open while the detached child worked"
        );
        assert!(ended.join().unwrap().unwrap().is_empty());
    }

    #[test]
    fn dir_first_entries_stops_at_max_and_reads_all_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..300 {
            std::fs::write(dir.path().join(format!("user-{i:04}")), "").unwrap();
        }
        assert_eq!(dir_first_entries(dir.path(), 8).unwrap().len(), 8);
        let mut all = dir_first_entries(dir.path(), usize::MAX).unwrap();
        all.sort();
        assert_eq!(all.len(), 300, "several getdents64 calls");
        assert_eq!(all[0], "user-0000");
        assert!(dir_first_entries(dir.path(), 0).unwrap().is_empty());
    }

    #[test]
    fn a_small_read_skips_what_it_must_and_takes_the_longest_names() {
        let dir = tempfile::tempdir().unwrap();
        // Names of 255 bytes (the longest there are) that are all skipped but one.
        for c in ['a', 'b', 'c', 'd', 'e'] {
            std::fs::write(dir.path().join(c.to_string().repeat(255)), "").unwrap();
        }
        for max in [1, 2] {
            let got = dir_first_entries_where(dir.path(), max, |n| n.as_encoded_bytes()[0] == b'd')
                .unwrap();
            assert_eq!(
                got,
                [std::ffi::OsString::from("d".repeat(255))],
                "max {max}"
            );
            assert_eq!(dir_first_entries(dir.path(), max).unwrap().len(), max);
        }
    }

    #[test]
    fn temporary_files_name_their_writer_and_are_never_records() {
        let dir = tempfile::tempdir().unwrap();
        let mine = format!("{}XXXXXX", temp_prefix());
        let me = crate::process::ProcessId::current().unwrap();
        assert!(is_temp_name(OsStr::new(&mine)), "{mine}");
        assert_eq!(temp_writer(OsStr::new(&mine)), Some(me));
        for record in [
            "web.0123456789abcdef",
            ".ocivol-web.0123456789abcdef",
            "web.0123456789abcdef.json",
            "volume.json",
            "owner",
        ] {
            assert!(!is_temp_name(OsStr::new(record)), "{record}");
        }
        assert!(is_temp_name(OsStr::new(".ocivol-AbC123")), "an older name");
        assert_eq!(temp_writer(OsStr::new(".ocivol-AbC123")), None);

        // A dead writer's file is stale; a live writer's is not; an older name only once old.
        let dead = format!(".ocivol-{}-{}-dEaD01", me.pid, me.start + 1);
        for name in [&mine, &dead, &".ocivol-AbC123".to_string()] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::write(dir.path().join("web.0123456789abcdef"), "").unwrap();
        assert!(!stale_temp(&dir.path().join(&mine)));
        assert!(stale_temp(&dir.path().join(&dead)));
        assert!(!stale_temp(&dir.path().join(".ocivol-AbC123")));
        assert!(!stale_temp(&dir.path().join("web.0123456789abcdef")));
        let would = remove_stale_temps(dir.path(), false, true).unwrap();
        assert_eq!(would, [dir.path().join(&dead)]);
        assert!(dir.path().join(&dead).exists(), "a dry run removes nothing");
        assert_eq!(remove_stale_temps(dir.path(), false, false).unwrap(), would);
        assert!(!dir.path().join(&dead).exists());
        // Under the writers' lock every temporary file is left behind.
        assert_eq!(
            remove_stale_temps(dir.path(), true, false).unwrap().len(),
            2
        );
        let mut left = dir_first_entries(dir.path(), 10).unwrap();
        left.sort();
        assert_eq!(left, ["web.0123456789abcdef"]);
        assert!(
            remove_stale_temps(&dir.path().join("none"), true, false)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_write_leaves_no_temporary_file_and_first_entries_can_skip_names() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic_unsynced(&dir.path().join("a"), b"1").unwrap();
        write_atomic_with_crash_point(&dir.path().join("a"), b"2", "none").unwrap();
        assert_eq!(dir_first_entries(dir.path(), 10).unwrap(), ["a"]);
        std::fs::write(dir.path().join(".ocivol-1-2-XXXXXX"), "").unwrap();
        assert_eq!(
            dir_first_entries_where(dir.path(), 10, |n| !is_temp_name(n)).unwrap(),
            ["a"]
        );
        let made = temp_dir_in(dir.path()).unwrap();
        assert!(made.is_dir() && is_temp_name(made.file_name().unwrap()));
        assert!(!stale_temp(&made), "its maker lives");
    }

    /// A child that runs Rust code after [`fork`] allocates; another thread may have held the
    /// allocator's lock at the fork, and the child must not wait for that thread, which it
    /// does not have.
    #[test]
    fn a_forked_child_allocates_while_other_threads_do() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        n = (n + 1) % 4096;
                        std::hint::black_box(vec![0u8; 16 + n]);
                    }
                });
            }
            let hung = (0..200).find_map(|i| {
                // SAFETY: the child allocates, formats and _exits; it returns from nothing.
                match unsafe { fork() }.unwrap() {
                    nix::unistd::ForkResult::Child => {
                        let text = format!("child {i}");
                        let v: Vec<String> = std::hint::black_box(vec![text; 64]);
                        // SAFETY: ends the child without the parent's exit handlers.
                        unsafe { libc::_exit(i32::from(v.len() != 64)) }
                    }
                    nix::unistd::ForkResult::Parent { child } => {
                        let deadline =
                            std::time::Instant::now() + std::time::Duration::from_secs(10);
                        loop {
                            use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
                            match waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap() {
                                WaitStatus::Exited(_, 0) => break None,
                                WaitStatus::StillAlive if std::time::Instant::now() < deadline => {
                                    std::thread::sleep(std::time::Duration::from_millis(1))
                                }
                                other => {
                                    let _ =
                                        nix::sys::signal::kill(child, nix::sys::signal::SIGKILL);
                                    let _ = waitpid(child, None);
                                    break Some(format!("fork {i}: the child {other:?} (killed)"));
                                }
                            }
                        }
                    }
                }
            });
            stop.store(true, Ordering::Relaxed);
            assert_eq!(hung, None);
        });
    }

    #[test]
    fn openat2_resolving_dotdot_while_renames_race_it_is_tried_again() {
        use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/f"), "").unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // Renames anywhere make the kernel's ".." resolution answer EAGAIN now and then.
            s.spawn(|| {
                let (x, y) = (dir.path().join("x"), dir.path().join("y"));
                std::fs::write(&x, "").unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::rename(&x, &y).unwrap();
                    std::fs::rename(&y, &x).unwrap();
                }
            });
            let how = OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_BENEATH);
            let failed = (0..20_000)
                .filter_map(|_| openat2(&root, "a/b/../f", how).err())
                .collect::<Vec<_>>();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(failed.is_empty(), "EAGAIN tried again: {:?}", &failed[..1]);
        });
    }

    #[test]
    fn dir_has_entries_ignores_dot_and_dotdot() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!dir_has_entries(dir.path()).unwrap());
        std::fs::write(dir.path().join("a"), "").unwrap();
        assert!(dir_has_entries(dir.path()).unwrap());
        std::fs::remove_file(dir.path().join("a")).unwrap();
        assert!(!dir_has_entries(dir.path()).unwrap());
        for i in 0..500 {
            std::fs::write(dir.path().join(format!("user-{i:04}")), "").unwrap();
        }
        assert!(dir_has_entries(dir.path()).unwrap());
        assert!(dir_has_entries(&dir.path().join("none")).is_err());
    }
}
