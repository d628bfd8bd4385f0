//! Attaching volumes inside a container's mount namespace, from a createRuntime hook: the
//! container's namespace exists and its rootfs is set up, but pivot_root has not happened yet.
//!
//! The safe order (see MACHINE.md and the kernel's mount API):
//! 1. on the host, `open_tree(OPEN_TREE_CLONE)` each source (a volume directory or the shared
//!    overlay) into a detached mount, and set its flags (`mount_setattr`): nothing of the
//!    container is touched yet;
//! 2. open the container's rootfs through `/proc/PID/root`, and its mount namespace;
//! 3. `setns(CLONE_NEWNS)` into that namespace only (no other namespace, nothing exec()ed after);
//! 4. for each volume, resolve its destination with `openat2(RESOLVE_IN_ROOT)` from the rootfs
//!    (a symlink in the image is followed as if the rootfs were `/`, never out of it), create
//!    missing directories with `mkdirat` relative to an already-resolved parent, refuse a target
//!    that is the rootfs itself or in its /proc, /sys or /dev, and `move_mount` the detached mount
//!    onto the target fd.
//!
//! Every fd is opened close-on-exec; the process exits right after.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;

use crate::mounts::api;
use crate::pin::Pin;
use crate::store::RecordedMount;
use crate::userns::Idmap;

/// A detached copy of the checked source (recursive for a host path, as `-v` binds), with the
/// mount's flags, idmapped to the container's user namespace if it has one, and private: a
/// clone of a shared mount starts in its peer group, and a volume mounted under it inside the
/// container would otherwise propagate back to the host and into every other container that
/// has the same source.
fn clone_source(m: &RecordedMount, pin: &Pin, idmap: Option<&Idmap>) -> io::Result<OwnedFd> {
    api::clone_private(
        pin.fd(),
        m.volume.is_none(),
        m.flags.mount_attr(),
        idmap.and_then(|i| i.for_mount(m)),
        &m.destination,
    )
    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", crate::staging::what(m))))
}

fn open_path(path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("open {}: {e}", path.display()),
        )
    })
}

fn in_root(root: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    crate::util::openat2(root, rel, how)
}

/// Resolves `dest` inside the rootfs (creating missing directories), refusing a target that is
/// the rootfs itself or in the container's /proc, /sys or /dev. Each component is checked as it
/// is resolved, so nothing is ever created in a filesystem the runtime manages. With
/// `as_parent_owner` (a container with a user namespace) a directory is made owned by the
/// owner of the one it is made in (see [`crate::rootfs::make_as_owner_of_parent`]): the mapped
/// root's in a rootfs that belongs to it, and one the mapping knows inside an idmapped volume.
fn resolve_target(
    root: &OwnedFd,
    rootfs: &Path,
    dest: &Path,
    as_parent_owner: bool,
) -> io::Result<OwnedFd> {
    let err = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("destination {}: {why}", dest.display()),
        )
    };
    let mut rel = PathBuf::new();
    let mut current = in_root(root, &rel).map_err(|e| err(format!("open the rootfs: {e}")))?;
    for comp in dest.components() {
        let Component::Normal(name) = comp else {
            continue;
        };
        rel.push(name);
        current = match in_root(root, &rel) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => {
                make_and_open(root, &current, name, &rel, as_parent_owner).map_err(err)?
            }
            Err(e) => return Err(err(format!("{}: {e}", rel.display()))),
        };
        if let Some(managed) = landed_in(&current, rootfs).map_err(err)? {
            return Err(err(format!(
                "resolves to /{managed}, which the runtime manages"
            )));
        }
    }
    let real = real_path(&current).map_err(err)?;
    if real == rootfs {
        return Err(err("resolves to the container's root itself".into()));
    }
    Ok(current)
}

/// Makes the missing directory `name` in `parent` (the already-resolved and checked directory of
/// `rel`'s parent: a name, no path) and opens it as `rel` inside the rootfs. A directory that
/// exists by the time it is made was made meanwhile by another container's hook (containers
/// may share a rootfs) and is used; a name that exists and does not open is a symlink to nowhere.
fn make_and_open(
    root: &OwnedFd,
    parent: &OwnedFd,
    name: &std::ffi::OsStr,
    rel: &Path,
    as_parent_owner: bool,
) -> Result<OwnedFd, String> {
    let made = if as_parent_owner {
        crate::rootfs::make_as_owner_of_parent(parent, name, true)
    } else {
        nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(0o755))
            .map_err(io::Error::from)
    };
    match made {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(format!("create {}: {e}", rel.display())),
    }
    match in_root(root, rel) {
        Ok(fd) => Ok(fd),
        Err(nix::errno::Errno::ENOENT) => Err(format!(
            "{} is a symlink to nowhere in the image",
            rel.display()
        )),
        Err(e) => Err(format!("open {}: {e}", rel.display())),
    }
}

/// The path of an fd as this mount namespace sees it (we are in the container's namespace,
/// whose tree has the rootfs at the same path as the host's).
fn real_path(fd: &OwnedFd) -> Result<PathBuf, String> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("read back a target: {e}"))
}

/// `Some(top)` when `fd` is inside the rootfs's proc, sys or dev; an error when it is not inside
/// the rootfs at all (which RESOLVE_IN_ROOT rules out; checked all the same).
fn landed_in(fd: &OwnedFd, rootfs: &Path) -> Result<Option<String>, String> {
    let real = real_path(fd)?;
    let inside = real
        .strip_prefix(rootfs)
        .map_err(|_| format!("resolves to {}, outside the rootfs", real.display()))?;
    let first = inside
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    Ok(first.filter(|f| matches!(f.as_str(), "proc" | "sys" | "dev")))
}

/// Mounts every volume into the mount namespace of process `pid` under `rootfs` (the rootfs's
/// path as that namespace sees it before pivot_root). Must be called from a single-threaded
/// process. On success it is left in the container's mount namespace: exit right after; on
/// error it is back in its own.
pub fn attach_all(
    pid: i32,
    rootfs: &Path,
    mounts: &[RecordedMount],
    pins: &[Pin],
    idmap: Option<&Idmap>,
) -> io::Result<()> {
    let ours = std::fs::metadata("/proc/self/ns/mnt")?;
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .map_err(|e| io::Error::new(e.kind(), format!("process {pid}: {e}")))?;
    {
        use std::os::unix::fs::MetadataExt;
        if ours.ino() == theirs.ino() && ours.dev() == theirs.dev() {
            return Err(io::Error::other(format!(
                "process {pid} shares the host's mount namespace; refusing to mount there"
            )));
        }
    }
    // 1. Sources, on the host.
    let sources = mounts
        .iter()
        .zip(pins)
        .map(|(m, pin)| clone_source(m, pin, idmap))
        .collect::<io::Result<Vec<_>>>()?;
    // 2. The container's namespace and rootfs.
    let ns = open_path(Path::new(&format!("/proc/{pid}/ns/mnt")), OFlag::O_RDONLY)?;
    let proc_root = PathBuf::from(format!("/proc/{pid}/root"));
    let rel_rootfs = rootfs.strip_prefix("/").unwrap_or(rootfs);
    let root = open_path(
        &proc_root.join(rel_rootfs),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
    )?;
    // 3. Into the mount namespace, and nothing else. Our own is kept open to come back to if
    //    something fails: what was taken must then be given back on the host.
    let host_ns = open_path(Path::new("/proc/self/ns/mnt"), OFlag::O_RDONLY)?;
    setns(&ns, CloneFlags::CLONE_NEWNS).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("setns into the mount namespace of {pid}: {e}"),
        )
    })?;
    // 4. Targets, in order (parents first, so a child resolves through its parent's mount).
    let attached = mounts.iter().zip(&sources).try_for_each(|(m, src)| {
        let target = resolve_target(&root, rootfs, &m.destination, idmap.is_some())?;
        api::move_onto_fd(src.as_fd(), target.as_fd(), &m.destination)
    });
    if attached.is_err() {
        // The mounts already attached die with the container's namespace when it fails.
        setns(&host_ns, CloneFlags::CLONE_NEWNS)
            .map_err(|e| io::Error::other(format!("return to the host's mount namespace: {e}")))?;
    }
    attached
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_point_made_meanwhile_by_another_hook_is_used_and_a_dangling_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path();
        let root = open_path(rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY).unwrap();
        let parent = in_root(&root, Path::new(".")).unwrap();
        // Missing when resolved, there when made: another container's hook got it first.
        std::fs::create_dir(rootfs.join("data")).unwrap();
        let fd = make_and_open(&root, &parent, "data".as_ref(), Path::new("data"), false).unwrap();
        assert_eq!(real_path(&fd).unwrap(), rootfs.join("data"));
        // Missing, made here.
        make_and_open(&root, &parent, "new".as_ref(), Path::new("new"), false).unwrap();
        assert!(rootfs.join("new").is_dir());
        // A symlink to nowhere: it exists, and does not open.
        std::os::unix::fs::symlink("/nowhere", rootfs.join("dangling")).unwrap();
        let e = make_and_open(
            &root,
            &parent,
            "dangling".as_ref(),
            Path::new("dangling"),
            false,
        )
        .unwrap_err();
        assert_eq!(e, "dangling is a symlink to nowhere in the image");
        assert!(!rootfs.join("nowhere").exists());
    }
}
