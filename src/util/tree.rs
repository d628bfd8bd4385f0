//! Walking a directory tree that a container filled, with a bounded number of open fds: removing
//! it here, copying an image's directory into a new volume in [`crate::copyup`], which walks the
//! same way with the pieces below ([`open_dir`], [`id_of`], [`for_each_entry`], [`climb`]).
//!
//! std's `remove_dir_all` keeps one fd open per level of the tree, so a container that makes a
//! tree deeper than the fd limit (`mkdir n && mv t n/t && mv n t` in a loop) made a volume
//! impossible to remove, reset or mount again (EMFILE). Here only the directory being emptied is
//! open (and, while it is read, one more fd for its listing): going down opens a child relative
//! to it with O_NOFOLLOW, going up opens `..` and checks that it is the directory it came from
//! (device and inode), so a tree moved while it is removed cannot lead the walk out of it.
//! Memory grows with the depth (one name per level), fds do not.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Removes `path` (a directory and everything in it, or a file). NotFound if it does not exist.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p, n),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to remove {}", path.display()),
            ));
        }
    };
    let parent = openat(
        nix::fcntl::AT_FDCWD,
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| with_path(e, parent))?;
    remove_tree_at(&parent, name, path)
}

/// Removes `name` in the open directory `parent` (a directory and everything in it, or a file),
/// never following a symlink; `path` names it in errors. NotFound if it does not exist.
pub fn remove_tree_at(parent: &OwnedFd, name: &OsStr, path: &Path) -> io::Result<()> {
    let st = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| with_path(e, path))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(|e| with_path(e, path));
    }
    // Something may still be writing into it; a few rounds settle that.
    for _ in 0..8 {
        let dir = open_dir(parent, name).map_err(|e| with_path(e, path))?;
        empty(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("empty {}: {e}", path.display())))?;
        match unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::ENOTEMPTY) | Err(Errno::EEXIST) => continue,
            Err(e) => return Err(with_path(e, path)),
        }
    }
    Err(io::Error::other(format!(
        "remove {}: entries keep appearing in it",
        path.display()
    )))
}

/// Empties directory `path` (it exists afterwards, empty).
pub fn empty_dir(path: &Path) -> io::Result<()> {
    let dir = openat(
        nix::fcntl::AT_FDCWD,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| with_path(e, path))?;
    empty(dir).map_err(|e| io::Error::new(e.kind(), format!("empty {}: {e}", path.display())))
}

fn with_path(e: Errno, path: &Path) -> io::Error {
    let e = io::Error::from(e);
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Opens directory `name` of `parent` for reading, never through a symlink.
pub(crate) fn open_dir<Fd: AsFd>(parent: Fd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens entry `name` of `dir`, which a listing said is a regular file, for reading: never
/// through a symlink swapped in since (ELOOP), never blocking on a fifo swapped in (O_NONBLOCK),
/// never becoming a controlling terminal. The caller checks with `fstat` that it is still the
/// file it listed.
pub(crate) fn open_listed_file<Fd: AsFd>(dir: Fd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens directory `name` of `dir` (one component) for reading: never through a symlink, never
/// into another mount (EXDEV), never out of `dir`; EAGAIN tried again (see [`super::openat2`]).
pub(crate) fn open_dir_beneath<Fd: AsFd>(dir: Fd, name: &OsStr) -> nix::Result<OwnedFd> {
    use nix::fcntl::{OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    super::openat2(dir, name, how)
}

/// One directory on the way down: its name in its parent, its identity, and the non-empty
/// subdirectories still to visit.
struct Frame {
    name: OsString,
    id: (u64, u64),
    pending: Vec<OsString>,
    scanned: bool,
}

/// The identity of an open file: (device, inode).
pub(crate) fn id_of(fd: impl AsFd) -> io::Result<(u64, u64)> {
    let st = fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Calls `each` with every entry of the open directory `dir` but `.` and `..`: its name and,
/// when the filesystem says, its type. The listing is read once, through an fd of its own that
/// is closed when it is done.
pub(crate) fn for_each_entry(
    dir: &OwnedFd,
    mut each: impl FnMut(&OsStr, Option<Type>) -> io::Result<()>,
) -> io::Result<()> {
    let mut listing = Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for entry in listing.iter() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        each(name, entry.file_type())?;
    }
    Ok(())
}

/// Goes up from the open directory `dir` to its parent, which must be the directory the walk
/// came down from (`came_from`: its [`id_of`]); `None` if it is not, as when the tree was moved
/// during the walk, which must then not be led out of it.
pub(crate) fn climb(dir: &OwnedFd, came_from: (u64, u64)) -> io::Result<Option<OwnedFd>> {
    let up = open_dir(dir, OsStr::new(".."))?;
    Ok((id_of(&up)? == came_from).then_some(up))
}

/// Removes everything inside the open directory `dir`.
fn empty(dir: OwnedFd) -> io::Result<()> {
    let mut cur = dir;
    let mut stack = vec![Frame {
        name: OsString::new(),
        id: id_of(&cur)?,
        pending: Vec::new(),
        scanned: false,
    }];
    loop {
        let top = stack.last_mut().expect("the stack holds the top directory");
        if !top.scanned {
            scan(&cur, &mut top.pending)?;
            top.scanned = true;
        }
        if let Some(child) = top.pending.pop() {
            let fd = match open_dir(&cur, child.as_os_str()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            stack.push(Frame {
                name: child,
                id: id_of(&fd)?,
                pending: Vec::new(),
                scanned: false,
            });
            cur = fd;
            continue;
        }
        if stack.len() == 1 {
            return Ok(());
        }
        let done = stack.pop().expect("more than one frame");
        let parent = stack.last_mut().expect("a parent frame");
        cur = climb(&cur, parent.id)?
            .ok_or_else(|| io::Error::other("the tree was moved while it was being removed"))?;
        match unlinkat(&cur, done.name.as_os_str(), UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            // Something was added meanwhile: visit it again.
            Err(Errno::ENOTEMPTY) | Err(Errno::EEXIST) => parent.pending.push(done.name),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads `dir` once: removes its files and empty subdirectories, and lists the others.
fn scan(dir: &OwnedFd, pending: &mut Vec<OsString>) -> io::Result<()> {
    for_each_entry(dir, |name, file_type| {
        let is_dir = match file_type {
            Some(t) => t == Type::Directory,
            None => match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st.st_mode & libc::S_IFMT == libc::S_IFDIR,
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
        };
        let flags = if is_dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        match unlinkat(dir, name, flags) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(Errno::ENOTEMPTY) | Err(Errno::EEXIST) if is_dir => pending.push(name.to_owned()),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn removes_a_tree_deeper_than_the_fd_limit_with_few_fds() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("t");
        // 3,000 levels made with relative mkdirat, as a container would (a path this deep is
        // longer than PATH_MAX).
        let mut cur = openat(
            nix::fcntl::AT_FDCWD,
            dir.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let mut name = "t";
        for i in 0..3000 {
            nix::sys::stat::mkdirat(&cur, name, Mode::from_bits_truncate(0o755)).unwrap();
            let next = open_dir(&cur, OsStr::new(name)).unwrap();
            if i % 100 == 0 {
                nix::sys::stat::mkdirat(&next, "side", Mode::from_bits_truncate(0o755)).unwrap();
                let side = open_dir(&next, OsStr::new("side")).unwrap();
                openat(
                    &side,
                    "file",
                    OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o644),
                )
                .unwrap();
            }
            cur = next;
            name = "d";
        }
        drop(cur);
        remove_tree(&top).unwrap();
        assert!(!top.exists());
        // No fd of the walk is left open. (Counting the process's fds would also count those of
        // the tests running beside this one.)
        let left: Vec<_> = fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(&top))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn empty_dir_keeps_the_directory_and_never_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "x").unwrap();
        let t = dir.path().join("t");
        fs::create_dir_all(t.join("a/b")).unwrap();
        fs::write(t.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, t.join("a/link")).unwrap();
        empty_dir(&t).unwrap();
        assert!(t.is_dir());
        assert_eq!(fs::read_dir(&t).unwrap().count(), 0);
        assert!(
            outside.join("keep").exists(),
            "a symlink is removed, not followed"
        );
        assert_eq!(
            remove_tree(&dir.path().join("none")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
