//! Mount points inside a container's rootfs, for a container with a user namespace.
//!
//! runc 1.1 creates a missing mount point from inside the container's user namespace, as the
//! container's root: in a rootfs that belongs to the host's root (as in runc's own userns tests,
//! or any image not chowned to the mapping) that root may not write, and runc fails with
//! `mkdir …: permission denied`. So the runtime wrapper makes the missing mount points of the
//! mounts it adds itself, before runc runs, only for a spec with a user namespace (without one
//! runc makes them as the host's root, as before):
//!
//! - the destination is resolved from an fd of the rootfs with `openat2(RESOLVE_IN_ROOT |
//!   RESOLVE_NO_MAGICLINKS)`, so a symlink in the image is followed as if the rootfs were `/`
//!   and never leads out of it (runc resolves it the same way when it mounts);
//! - each missing component is made with `mkdirat` (an empty file with `openat(O_CREAT |
//!   O_EXCL | O_NOFOLLOW)` for the last one of a file's bind) under its already-resolved
//!   parent, by name, never by path, and owned by the owner of that parent: it is made with
//!   that owner as the filesystem ids ([`make_as_owner_of_parent`]), so it never exists with
//!   another owner. In an image owned by the mapped root that is the mapped root, in one owned
//!   by the host's root the host's root; the hooks make their mount points the same way, where
//!   the parent may be an idmapped volume that only ids of its mapping can write to;
//! - a destination under another mount of the spec (a tmpfs, or a volume: those are mounted
//!   first, and idmapped volumes let the container's root make the point) is left to runc, as
//!   is one whose way goes through a symlink to nowhere or a file;
//! - if the wrapper fails before runc runs, what it made is removed again ([`Made::undo`]).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::mounts::api;

/// Makes `name` in the directory `parent` (a directory, or with `is_dir` false an empty file),
/// owned by the owner of `parent` as its mount shows it: made with that owner as this thread's
/// filesystem ids (see [`api::as_fs_ids`]). Through an idmapped mount the owner shown is an id
/// of the mapping, so this is also what lets a mount point be made inside an idmapped volume
/// (the host's root, which the mapping does not know, gets EOVERFLOW there).
pub fn make_as_owner_of_parent(parent: &OwnedFd, name: &OsStr, is_dir: bool) -> io::Result<()> {
    let st = nix::sys::stat::fstat(parent)?;
    let make = || -> io::Result<()> {
        if is_dir {
            nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(0o755))?;
        } else {
            openat(
                parent,
                name,
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)?;
        }
        Ok(())
    };
    if (st.st_uid, st.st_gid) == (0, 0) {
        make()
    } else {
        api::as_fs_ids(st.st_uid, st.st_gid, make)
    }
}

fn in_root(root: &OwnedFd, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    crate::util::openat2(root, rel, how)
}

/// A mount point to make: the destination, and whether it is a directory (else a file).
pub struct Wanted<'a> {
    pub destination: &'a Path,
    pub is_dir: bool,
}

/// What [`make_missing`] made, in order: (parent, name, is a directory).
#[derive(Default)]
pub struct Made(Vec<(OwnedFd, OsString, bool)>);

impl Made {
    /// Removes what was made, last first (a directory only if it is still empty).
    pub fn undo(self) {
        for (parent, name, is_dir) in self.0.into_iter().rev() {
            let flag = if is_dir {
                UnlinkatFlags::RemoveDir
            } else {
                UnlinkatFlags::NoRemoveDir
            };
            if let Err(e) = unlinkat(&parent, name.as_os_str(), flag) {
                log::warn!(
                    "remove the mount point {} made in the rootfs: {e}",
                    name.to_string_lossy()
                );
            }
        }
    }
}

/// Makes the missing mount points of `wanted` inside `rootfs` (see the module's header).
/// `mounted`: the destinations of every mount of the spec (its own and the ones added); a
/// wanted one below another of them is left to the runtime. On error, what was made is removed.
pub fn make_missing(rootfs: &Path, wanted: &[Wanted], mounted: &[PathBuf]) -> io::Result<Made> {
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| context(e.into(), &format!("open the rootfs {}", rootfs.display())))?;
    let mut made = Made::default();
    for w in wanted {
        let below_another = mounted
            .iter()
            .any(|m| m != w.destination && w.destination.starts_with(m));
        if below_another {
            continue;
        }
        if let Err(e) = make_one(&root, w, &mut made) {
            made.undo();
            return Err(context(
                e,
                &format!(
                    "make the mount point {} in the rootfs",
                    w.destination.display()
                ),
            ));
        }
    }
    Ok(made)
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn make_one(root: &OwnedFd, w: &Wanted, made: &mut Made) -> io::Result<()> {
    let names: Vec<&OsStr> = w
        .destination
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut rel = PathBuf::new();
    let mut parent = in_root(root, &rel, OFlag::O_DIRECTORY)?;
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        rel.push(name);
        let flags = if last {
            OFlag::empty()
        } else {
            OFlag::O_DIRECTORY
        };
        match in_root(root, &rel, flags) {
            // There already: the runtime mounts on it (or refuses it) as it would have.
            Ok(_) if last => return Ok(()),
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(Errno::ENOENT) => {}
            // A file on the way: the runtime's to refuse.
            Err(Errno::ENOTDIR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let is_dir = !last || w.is_dir;
        match make_as_owner_of_parent(&parent, name, is_dir) {
            Ok(()) => {}
            // A symlink to nowhere inside the image: the runtime's to follow or refuse.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Ok(()),
            Err(e) => return Err(e),
        }
        made.0.push((dup(&parent)?, name.to_os_string(), is_dir));
        if !last {
            parent = in_root(root, &rel, OFlag::O_DIRECTORY)?;
        }
    }
    Ok(())
}

fn dup(fd: &OwnedFd) -> io::Result<OwnedFd> {
    fd.as_fd()
        .try_clone_to_owned()
        .map_err(|e| io::Error::new(e.kind(), format!("duplicate fd {}: {e}", fd.as_raw_fd())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn wanted(d: &str) -> Wanted<'_> {
        Wanted {
            destination: Path::new(d),
            is_dir: true,
        }
    }

    #[test]
    fn missing_points_are_made_inside_the_rootfs_and_undone() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // Absolute and relative links that would leave the rootfs if followed on the host.
        symlink(&outside, rootfs.join("abs")).unwrap();
        symlink("/etc", rootfs.join("mnt")).unwrap();
        symlink("../../../../etc", rootfs.join("up")).unwrap();
        symlink("/nowhere", rootfs.join("dangling")).unwrap();
        std::fs::write(rootfs.join("file"), "").unwrap();
        let file = Wanted {
            destination: Path::new("/mnt/f"),
            is_dir: false,
        };
        let all = [
            wanted("/a/b"),
            wanted("/abs/x"),
            wanted("/mnt/y"),
            wanted("/up/z"),
            wanted("/dangling"),
            wanted("/file/x"),
            wanted("/tmpfs/x"),
            wanted("/a/b/c"),
            file,
        ];
        let mounted: Vec<PathBuf> = ["/tmpfs", "/a/b", "/a/b/c"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let made = make_missing(&rootfs, &all, &mounted).unwrap();
        assert!(rootfs.join("a/b").is_dir());
        assert!(
            rootfs.join("etc/y").is_dir(),
            "/mnt -> /etc: the rootfs's /etc"
        );
        assert!(
            rootfs.join("etc/z").is_dir(),
            "../.. stops at the rootfs's root"
        );
        // A link to a host directory is a link to nowhere inside the rootfs: runc's to judge.
        assert!(!rootfs.join(outside.strip_prefix("/").unwrap()).exists());
        assert!(rootfs.join("etc/f").is_file());
        assert!(
            !rootfs.join("a/b/c").exists(),
            "under another mount: runc's"
        );
        assert!(
            !rootfs.join("tmpfs").exists(),
            "under another mount: runc's"
        );
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing made outside the rootfs"
        );
        made.undo();
        for p in ["a", "etc/y", "etc/z", "etc/f"] {
            assert!(!rootfs.join(p).exists(), "{p} undone");
        }
        assert!(rootfs.join("etc").is_dir(), "what was there stays");
    }

    #[test]
    fn made_points_get_the_owner_of_their_parent() {
        let Some(()) = crate::util::require_root("made_points_get_the_owner_of_their_parent")
        else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::os::unix::fs::chown(&rootfs, Some(100_000), Some(100_001)).unwrap();
        let file = Wanted {
            destination: Path::new("/d/f"),
            is_dir: false,
        };
        make_missing(&rootfs, &[wanted("/a/b"), file], &[]).unwrap();
        for p in ["a", "a/b", "d", "d/f"] {
            let m = std::fs::metadata(rootfs.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (100_000, 100_001), "{p}");
        }
    }
}
