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

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;

use crate::store::RecordedMount;

// Kernel ABI of the mount API (include/uapi/linux/mount.h, fcntl.h); stable since 5.2/5.12.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL"))
}

fn check(ret: libc::c_long, what: impl FnOnce() -> String) -> io::Result<libc::c_long> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{}: {e}", what())))
    } else {
        Ok(ret)
    }
}

/// A detached copy of the mount tree at `source`, with the mount flags of the volume.
fn clone_source(m: &RecordedMount) -> io::Result<OwnedFd> {
    let path = cstr(&m.source)?;
    let recursive = if m.volume.is_none() { AT_RECURSIVE } else { 0 };
    // SAFETY: a valid C string and flags; the returned fd is owned below.
    let fd = check(
        unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                path.as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | recursive,
            )
        },
        || format!("open_tree {}", m.source.display()),
    )?;
    // SAFETY: open_tree returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let has = |o: &str| m.options.iter().any(|x| x == o);
    let mut set = 0;
    for (on, flag) in [
        (has("ro"), MOUNT_ATTR_RDONLY),
        (has("nosuid"), MOUNT_ATTR_NOSUID),
        (has("nodev"), MOUNT_ATTR_NODEV),
        (has("noexec"), MOUNT_ATTR_NOEXEC),
    ] {
        if on {
            set |= flag;
        }
    }
    if set != 0 {
        let attr = MountAttr {
            attr_set: set,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let flags = libc::AT_EMPTY_PATH as libc::c_uint | recursive;
        // SAFETY: fd is a valid mount fd, "" with AT_EMPTY_PATH, and attr lives through the call.
        check(
            unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    flags,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            },
            || format!("set the flags of {}", m.destination.display()),
        )?;
    }
    Ok(fd)
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
    openat2(root, rel, how)
}

/// Resolves `dest` inside the rootfs (creating missing directories), refusing a target that is
/// the rootfs itself or in the container's /proc, /sys or /dev. Each component is checked as it
/// is resolved, so nothing is ever created in a filesystem the runtime manages.
fn resolve_target(root: &OwnedFd, rootfs: &Path, dest: &Path) -> io::Result<OwnedFd> {
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
                // Created inside an already-resolved (and checked) directory of the rootfs: a
                // name, no path.
                match nix::sys::stat::mkdirat(&current, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) => {}
                    Err(nix::errno::Errno::EEXIST) => {
                        return Err(err(format!(
                            "{} is a symlink to nowhere in the image",
                            rel.display()
                        )));
                    }
                    Err(e) => return Err(err(format!("create {}: {e}", rel.display()))),
                }
                in_root(root, &rel).map_err(|e| err(format!("open {}: {e}", rel.display())))?
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
pub fn attach_all(pid: i32, rootfs: &Path, mounts: &[RecordedMount]) -> io::Result<()> {
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
        .map(clone_source)
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
        let target = resolve_target(&root, rootfs, &m.destination)?;
        // SAFETY: both fds are valid; "" with the EMPTY_PATH flags names the fds themselves.
        check(
            unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    src.as_raw_fd(),
                    c"".as_ptr(),
                    target.as_raw_fd(),
                    c"".as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
                )
            },
            || {
                format!(
                    "mount {} on {}",
                    m.source.display(),
                    m.destination.display()
                )
            },
        )
        .map(|_| ())
    });
    if attached.is_err() {
        // The mounts already attached die with the container's namespace when it fails.
        setns(&host_ns, CloneFlags::CLONE_NEWNS)
            .map_err(|e| io::Error::other(format!("return to the host's mount namespace: {e}")))?;
    }
    attached
}
