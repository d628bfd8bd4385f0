//! The kernel's new mount API (Linux 5.2+; overlay layers by fd since 6.13), as thin safe
//! wrappers: `open_tree`, `move_mount`, `mount_setattr`, `fsopen`/`fsconfig`/`fsmount`.
//!
//! These let ocivol mount what it checked, by fd, instead of handing a path to the kernel (or to
//! runc) to be resolved again: the rule "nothing checked is resolved again by name" rests here.
//! Every fd is close-on-exec.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

// include/uapi/linux/mount.h
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `propagation` value of `mount_setattr`: MS_PRIVATE.
const MS_PRIVATE: u64 = 1 << 18;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte"))
}

/// A syscall's result as an fd or an error that says what was being done.
fn fd_result(ret: libc::c_long, what: impl FnOnce() -> String) -> io::Result<OwnedFd> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{}: {e}", what())));
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

fn unit_result(ret: libc::c_long, what: impl FnOnce() -> String) -> io::Result<()> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{}: {e}", what())));
    }
    Ok(())
}

/// A detached copy of the mount at `fd` (an O_PATH fd of a directory or file): of that mount
/// alone, or with `recursive` of the whole tree below it, as `mount --rbind` would take it.
pub fn clone_tree(fd: BorrowedFd<'_>, recursive: bool, what: &Path) -> io::Result<OwnedFd> {
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | libc::AT_EMPTY_PATH as libc::c_uint
        | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: a valid fd, an empty C string with AT_EMPTY_PATH, and flags.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    fd_result(ret, || format!("clone the mount of {}", what.display()))
}

/// `mount_setattr(2)` on the detached or attached mount `tree` itself (`AT_EMPTY_PATH`), with
/// `flags` added (`AT_RECURSIVE` or 0); the raw return value.
fn mount_setattr(tree: BorrowedFd<'_>, flags: libc::c_uint, attr: &MountAttr) -> libc::c_long {
    // SAFETY: a valid fd, "" with AT_EMPTY_PATH, and attr lives through the call.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    }
}

/// Sets mount flags (`MOUNT_ATTR_*`) on a detached tree and makes every mount of it private, so
/// that nothing mounted in it or under it propagates to the mounts it was cloned from (a clone
/// of a shared mount starts in its peer group).
pub fn set_attr_private(tree: BorrowedFd<'_>, set: u64, what: &Path) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: MS_PRIVATE,
        userns_fd: 0,
    };
    let ret = mount_setattr(tree, AT_RECURSIVE, &attr);
    unit_result(ret, || {
        format!("set the flags of the mount of {}", what.display())
    })
}

/// Idmaps a detached tree (with `recursive`, every mount of it) through the user namespace
/// `userns`: an id stored on disk is seen as the id that namespace maps it to, and an id of
/// the namespace is stored as the id it maps from. The kernel allows this only on a detached
/// mount that is not idmapped yet, of a filesystem that supports it.
pub fn set_idmap(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let ret = mount_setattr(tree, if recursive { AT_RECURSIVE } else { 0 }, &attr);
    if ret == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    let why = match e.raw_os_error() {
        Some(libc::EINVAL) if recursive => format!(
            "its filesystem ({}) or one mounted below it does not support idmapped mounts",
            fs_name(tree)
        ),
        Some(libc::EINVAL) => format!(
            "its filesystem ({}) does not support idmapped mounts",
            fs_name(tree)
        ),
        Some(libc::EPERM) => "it is idmapped already".to_string(),
        _ => String::new(),
    };
    Err(io::Error::new(
        e.kind(),
        if why.is_empty() {
            format!("it cannot be idmapped to the container's user namespace: {e}")
        } else {
            format!("it cannot be idmapped to the container's user namespace: {why} ({e})")
        },
    ))
}

/// The name of the filesystem an fd is on, for messages.
fn fs_name(fd: BorrowedFd<'_>) -> String {
    let Ok(st) = nix::sys::statfs::fstatfs(fd) else {
        return "unknown".into();
    };
    // include/uapi/linux/magic.h
    match crate::util::fs_magic(&st) {
        0x794c_7630 => "overlay".into(),
        0xef53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683e => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x6969 => "nfs".into(),
        0x6573_5546 => "fuse".into(),
        0x9fa0 => "proc".into(),
        0x6265_6572 => "sysfs".into(),
        magic => format!("magic {magic:#x}"),
    }
}

/// A detached, private copy of the mount at `fd` (see [`clone_tree`]) with the mount flags
/// `set`, idmapped through the user namespace `idmap` if given: what both the runtime's
/// staging and the hooks attach.
pub fn clone_private(
    fd: BorrowedFd<'_>,
    recursive: bool,
    set: u64,
    idmap: Option<BorrowedFd<'_>>,
    what: &Path,
) -> io::Result<OwnedFd> {
    let tree = clone_tree(fd, recursive, what)?;
    if let Some(userns) = idmap {
        set_idmap(tree.as_fd(), userns, recursive)?;
    }
    set_attr_private(tree.as_fd(), set, what)?;
    Ok(tree)
}

/// Attaches a detached tree on the directory (or file) that `target` is an O_PATH fd of.
pub fn move_onto_fd(tree: BorrowedFd<'_>, target: BorrowedFd<'_>, what: &Path) -> io::Result<()> {
    // SAFETY: both fds are valid; "" with the EMPTY_PATH flags names the fds themselves.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    unit_result(ret, || format!("mount on {}", what.display()))
}

/// Attaches a detached tree on `target`, a path of ocivol's own state (never one a tenant can
/// reach).
pub fn move_onto_path(tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let path = cstr(target.as_os_str().as_bytes())?;
    // SAFETY: a valid fd with F_EMPTY_PATH, and a valid C string.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            path.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    unit_result(ret, || format!("mount on {}", target.display()))
}

/// The three layers of an overlay, each an O_PATH fd of a directory ocivol checked.
pub struct Layers<'a> {
    pub lower: BorrowedFd<'a>,
    pub upper: BorrowedFd<'a>,
    pub work: BorrowedFd<'a>,
}

/// A detached overlay over the layers, nosuid and nodev, named `ocivol` in the mount table.
/// The layers are given as fds (kernel 6.13+); an older kernel gets `/proc/self/fd/N` paths,
/// which it resolves to the same open directories, never through a name a tenant can change.
///
/// `creator`: the (uid, gid) the overlay works with in its layers (it keeps the credentials of
/// the process that creates it, and uses them for its work directory and every copy-up). Over
/// idmapped layers they must be ids the mapping knows, or the kernel cannot store them
/// (EOVERFLOW, and the overlay falls back to read-only); see [`as_fs_ids`].
pub fn overlay(
    layers: &Layers<'_>,
    volatile: bool,
    creator: Option<(u32, u32)>,
) -> io::Result<OwnedFd> {
    match creator {
        Some((uid, gid)) => as_fs_ids(uid, gid, || overlay_now(layers, volatile)),
        None => overlay_now(layers, volatile),
    }
}

// linux/capability.h
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> io::Result<[CapData; 2]> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a version 3 header and room for its two data structs.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    unit_result(ret, || "read this thread's capabilities".to_string())?;
    Ok(data)
}

fn capset(data: &[CapData; 2]) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: a version 3 header and its two data structs.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    unit_result(ret, || "set this thread's capabilities".to_string())
}

/// Runs `f` with this thread's filesystem ids set to `uid`/`gid` and every capability it is
/// permitted in effect (changing the fsuid away from 0 drops CAP_CHOWN, CAP_DAC_OVERRIDE,
/// CAP_FOWNER and the like, which an overlay needs for its copy-ups), then puts both back.
/// setfsuid(2) changes the calling thread only: nothing else of the process runs as them.
pub fn as_fs_ids<T>(uid: u32, gid: u32, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let caps = capget()?;
    let old_gid = nix::unistd::setfsgid(nix::unistd::Gid::from_raw(gid));
    let old_uid = nix::unistd::setfsuid(nix::unistd::Uid::from_raw(uid));
    let mut raised = caps;
    for c in &mut raised {
        c.effective = c.permitted;
    }
    let result = capset(&raised).and_then(|()| f());
    nix::unistd::setfsuid(old_uid);
    nix::unistd::setfsgid(old_gid);
    // Back to 0, the kernel raised the filesystem capabilities again; the rest as they were.
    capset(&caps)?;
    result
}

fn overlay_now(layers: &Layers<'_>, volatile: bool) -> io::Result<OwnedFd> {
    // SAFETY: a valid C string and flags.
    let ret = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
    let fs = fd_result(ret, || "open an overlay filesystem context".to_string())?;
    let config = |cmd: libc::c_uint, key: &std::ffi::CStr, value: *const libc::c_char, aux: i32| {
        // FSCONFIG_CMD_* take no key (an empty one is EINVAL).
        let key = if key.is_empty() {
            std::ptr::null()
        } else {
            key.as_ptr()
        };
        // SAFETY: a valid fs context fd, a C string key or NULL, and a value fitting the command.
        let ret =
            unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, key, value, aux) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let source = c"ocivol";
    config(FSCONFIG_SET_STRING, c"source", source.as_ptr(), 0)
        .map_err(|e| context(e, "overlay source"))?;
    let by_fd = config(
        FSCONFIG_SET_FD,
        c"lowerdir+",
        std::ptr::null(),
        layers.lower.as_raw_fd(),
    );
    match by_fd {
        Ok(()) => {
            config(
                FSCONFIG_SET_FD,
                c"upperdir",
                std::ptr::null(),
                layers.upper.as_raw_fd(),
            )
            .map_err(|e| context(e, "overlay upperdir"))?;
            config(
                FSCONFIG_SET_FD,
                c"workdir",
                std::ptr::null(),
                layers.work.as_raw_fd(),
            )
            .map_err(|e| context(e, "overlay workdir"))?;
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            for (key, fd) in [
                (c"lowerdir", layers.lower),
                (c"upperdir", layers.upper),
                (c"workdir", layers.work),
            ] {
                let path = cstr(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
                config(FSCONFIG_SET_STRING, key, path.as_ptr(), 0)
                    .map_err(|e| context(e, "overlay layers"))?;
            }
        }
        Err(e) => return Err(context(e, "overlay lowerdir")),
    }
    if volatile {
        // Changes are thrown away after the last user anyway: skip the syncs.
        config(FSCONFIG_SET_FLAG, c"volatile", std::ptr::null(), 0)
            .map_err(|e| context(e, "overlay volatile"))?;
    }
    config(FSCONFIG_CMD_CREATE, c"", std::ptr::null(), 0).map_err(|e| {
        // The kernel explains a refused overlay in the context's log.
        let mut log = [0u8; 512];
        // SAFETY: reading into a buffer of its size from an fd we own.
        let n = unsafe { libc::read(fs.as_raw_fd(), log.as_mut_ptr().cast(), log.len()) };
        let why = if n > 0 {
            String::from_utf8_lossy(&log[..n as usize])
                .trim()
                .to_string()
        } else {
            String::new()
        };
        if why.is_empty() {
            context(e, "create the overlay")
        } else {
            context(e, &format!("create the overlay ({why})"))
        }
    })?;
    // SAFETY: a valid fs context fd and flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )
    };
    fd_result(ret, || "mount the overlay".to_string())
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
