//! Docker's copy-up: a new, empty volume is filled from the image's content at its destination,
//! so that an image which prepares `/var/lib/app` for its own user works with a volume there.
//! Regular files, directories, symlinks and fifos are copied with their owners, modes, access and
//! modification times, hard links and extended attributes (`user.*`, `security.capability`,
//! POSIX ACLs); the volume's root gets the owner, mode and attributes of the image's directory.
//!
//! The image is the container's rootfs (`root.path` of its bundle), read on the host before the
//! container runs: in runtime mode before the real runtime's `create`, in a createRuntime hook
//! before pivot_root and before the volume is mounted. Its content is the image author's, so:
//!
//! - the destination is resolved *inside* the rootfs, with `openat2(RESOLVE_IN_ROOT |
//!   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` from an fd of it: a symlink in the image
//!   (`/data -> /etc`, `-> ../../..`) is followed as if the rootfs were `/`, never out of it,
//!   and no mount below it is entered. A destination that resolves to the rootfs itself is not
//!   copied (it would be the whole image; no runtime mounts a volume there);
//! - the walk never follows a symlink: each entry is opened by name beneath an open directory,
//!   directories with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`, files with
//!   `O_NOFOLLOW | O_NONBLOCK` and checked to be the regular file that was listed; a symlink is
//!   copied as a symlink (its text, never what it points at);
//! - a bounded number of fds whatever the depth, as in `util/tree.rs`: one directory open on each
//!   side, going up through `..` checked by device and inode;
//! - everything is created by root in ocivol's own (0700) directory, then given its owner with
//!   `fchown` / `fchownat(AT_SYMLINK_NOFOLLOW)` and its mode with `fchmod`, never by path.
//!
//! Not copied, where Docker's archive copies them: device nodes (a volume is data on the host's
//! disk that outlives the container and may be shared; it holds no door to the host's hardware),
//! `trusted.*` attributes (overlayfs gives `trusted.overlay.*` meaning) and `security.*` ones other
//! than file capabilities (LSM labels belong to the host's policy). Sockets are skipped, as in
//! Docker.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::userns::Mappings;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstat, fstatat,
    futimens, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, Whence, fchown, fchownat, linkat, lseek, symlinkat};

use crate::store::Fill;
use crate::util::tree::{climb, for_each_entry, id_of, open_dir};

/// At most this many files with several links are remembered to link them again; beyond, a
/// further link is copied as a file of its own.
const MAX_LINKS: usize = 65_536;

/// ioctl FICLONE (linux/fs.h, `_IOW(0x94, 9, int)`): a reflink of a whole file.
const FICLONE: libc::Ioctl = 0x4004_9409;

/// The image's directory at a volume's destination: what fills the volume if this use creates it.
#[derive(Debug, Clone, Copy)]
pub struct ImageDir<'a> {
    /// The container's rootfs on the host, as its engine wrote it in the bundle.
    pub rootfs: &'a Path,
    /// The volume's destination inside the container (absolute).
    pub destination: &'a Path,
    /// The user-namespace mappings of a container whose volumes are idmapped to it: the image's
    /// owners are the host ids its rootfs has, and are written as the container ids they stand
    /// for, which the idmapped mount shows the container as they were in its image.
    pub ids: Option<&'a Mappings>,
}

impl Fill for ImageDir<'_> {
    fn fill(&self, target: &Path) -> io::Result<()> {
        self.copy_into(target)
    }
}

impl ImageDir<'_> {
    /// Copies the image's directory into `target`, an empty directory of ocivol's. Nothing is
    /// copied if the image has no directory there, or if `target` is not empty.
    pub fn copy_into(&self, target: &Path) -> io::Result<()> {
        let Some(src) = self.open()? else {
            return Ok(());
        };
        let dst = open_dir(nix::fcntl::AT_FDCWD, target.as_os_str())
            .map_err(|e| with_path(e.into(), target))?;
        if crate::util::dir_has_entries(target)? {
            // Never into a volume that has data.
            return Ok(());
        }
        let from = self.destination.display().to_string();
        copy_tree(
            src,
            dst,
            Opts {
                ids: self.ids,
                upper: false,
            },
        )
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("copy {from} from the image into the new volume: {e}"),
            )
        })
    }

    /// The image's directory at the destination, resolved inside the rootfs; `None` when there
    /// is none to copy.
    fn open(&self) -> io::Result<Option<OwnedFd>> {
        let root = match nix::fcntl::open(
            self.rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => {
                log::debug!(
                    "rootfs {} is not there: nothing to copy",
                    self.rootfs.display()
                );
                return Ok(None);
            }
            Err(e) => return Err(with_path(e.into(), self.rootfs)),
        };
        let rel = self
            .destination
            .strip_prefix("/")
            .unwrap_or(self.destination);
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_IN_ROOT
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV,
            );
        let dir = match crate::util::openat2(&root, rel, how) {
            Ok(fd) => fd,
            // Nothing there, or not a directory (the runtime will say so when it mounts).
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
            Err(e @ (Errno::EXDEV | Errno::ELOOP)) => {
                log::warn!(
                    "{} in the image {}; nothing is copied into its new volume",
                    self.destination.display(),
                    if e == Errno::EXDEV {
                        "leads into another mount".to_string()
                    } else {
                        format!("cannot be resolved: {e}")
                    }
                );
                return Ok(None);
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("resolve {} in the image: {e}", self.destination.display()),
                ));
            }
        };
        if id_of(&dir)? == id_of(&root)? {
            log::warn!(
                "{} resolves to the image's root; nothing is copied into its new volume",
                self.destination.display()
            );
            return Ok(None);
        }
        Ok(Some(dir))
    }
}

/// One directory on the way down: its identity on both sides, its times (set once it is full),
/// and the subdirectories still to copy.
struct Frame {
    src_id: (u64, u64),
    dst_id: (u64, u64),
    times: (TimeSpec, TimeSpec),
    pending: Vec<OsString>,
    scanned: bool,
}

/// Files with more than one link already copied: (device, inode) → path in the target.
#[derive(Default)]
struct Links(HashMap<(u64, u64), PathBuf>);

/// How a tree is copied.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Opts<'a> {
    /// See [`ImageDir::ids`].
    pub ids: Option<&'a Mappings>,
    /// The tree is an overlay's upper directory, copied as one (a clone of a copy-on-write
    /// volume's changes): its whiteouts (0:0 character devices) and the overlay's opaque and
    /// redirect attributes are copied too, which a copy of content never carries.
    pub upper: bool,
}

/// Copies the content of the open directory `src` into the empty directory `dst` (both opened
/// O_RDONLY | O_DIRECTORY, `dst` of ocivol's own), as copy-up does: owners, modes, extended
/// attributes, times, hard links and holes, never following a symlink, with bounded fds. Data
/// is cloned (FICLONE, a reflink) where both are on one filesystem that can.
pub(crate) fn copy_dir(src: OwnedFd, dst: OwnedFd, opts: Opts<'_>) -> io::Result<()> {
    copy_tree(src, dst, opts)
}

/// Copies what is in `src_root` into the empty `dst_root`, and its owner, mode, attributes and
/// times onto `dst_root`.
fn copy_tree(src_root: OwnedFd, dst_root: OwnedFd, opts: Opts<'_>) -> io::Result<()> {
    let ids = opts.ids;
    let st = owned_as(ids, fstat(&src_root)?);
    copy_meta(&src_root, &dst_root, &st, opts.upper)?;
    let mut stack = vec![Frame {
        src_id: (st.st_dev, st.st_ino),
        dst_id: id_of(&dst_root)?,
        times: times_of(&st),
        pending: Vec::new(),
        scanned: false,
    }];
    let mut rel = PathBuf::new();
    let mut links = Links::default();
    let mut src = src_root;
    let mut dst = dst_root.try_clone()?;
    loop {
        let top = stack.last_mut().expect("the stack holds the top directory");
        if !top.scanned {
            scan(
                &src,
                &dst,
                dst_root.as_fd(),
                &rel,
                &mut top.pending,
                &mut links,
                opts,
            )?;
            top.scanned = true;
        }
        if let Some(child) = top.pending.pop() {
            if let Some((s, d, frame)) =
                enter(&src, &dst, &child, opts).map_err(|e| in_dir(e, &rel.join(&child)))?
            {
                rel.push(&child);
                stack.push(frame);
                (src, dst) = (s, d);
            }
            continue;
        }
        // Full: its times last, as adding entries changed them.
        futimens(&dst, &top.times.0, &top.times.1)?;
        if stack.len() == 1 {
            return Ok(());
        }
        stack.pop();
        rel.pop();
        let parent = stack.last().expect("a parent frame");
        let (Some(up_src), Some(up_dst)) =
            (climb(&src, parent.src_id)?, climb(&dst, parent.dst_id)?)
        else {
            return Err(io::Error::other(format!(
                "{} was moved while it was copied",
                rel.display()
            )));
        };
        (src, dst) = (up_src, up_dst);
    }
}

/// Reads `src` once: copies its files, symlinks and fifos into `dst`, lists its subdirectories.
fn scan(
    src: &OwnedFd,
    dst: &OwnedFd,
    dst_root: BorrowedFd,
    rel: &Path,
    pending: &mut Vec<OsString>,
    links: &mut Links,
    opts: Opts<'_>,
) -> io::Result<()> {
    let ids = opts.ids;
    for_each_entry(src, |name, _| {
        let st = match fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => owned_as(ids, st),
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let copied = match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => {
                pending.push(name.to_owned());
                Ok(())
            }
            SFlag::S_IFREG => copy_file(src, dst, dst_root, name, &st, rel, links),
            SFlag::S_IFLNK => copy_symlink(src, dst, name, &st),
            SFlag::S_IFIFO => copy_fifo(dst, name, &st),
            SFlag::S_IFCHR if opts.upper && st.st_rdev == 0 => copy_whiteout(dst, name, &st),
            _ => {
                log::debug!(
                    "copy-up: {} is a device node or a socket; not copied",
                    rel.join(name).display()
                );
                Ok(())
            }
        };
        copied.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", rel.join(name).display())))
    })
}

/// Opens subdirectory `name` of `src` (never through a symlink or into another mount), makes it
/// in `dst` with the same owner, mode and attributes, and returns both with their frame.
/// `None`: it is no longer a directory there, or it is another mount (skipped).
fn enter(
    src: &OwnedFd,
    dst: &OwnedFd,
    name: &OsStr,
    opts: Opts<'_>,
) -> io::Result<Option<(OwnedFd, OwnedFd, Frame)>> {
    let ids = opts.ids;
    let s = match crate::util::tree::open_dir_beneath(src, name) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(None),
        Err(Errno::EXDEV) => {
            log::debug!("copy-up: a mount in the image is not entered");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let st = owned_as(ids, fstat(&s)?);
    mkdirat(dst, name, Mode::from_bits_truncate(0o700))?;
    let d = open_dir(dst, name)?;
    copy_meta(&s, &d, &st, opts.upper)?;
    let frame = Frame {
        src_id: (st.st_dev, st.st_ino),
        dst_id: id_of(&d)?,
        times: times_of(&st),
        pending: Vec::new(),
        scanned: false,
    };
    Ok(Some((s, d, frame)))
}

fn copy_file(
    src_dir: &OwnedFd,
    dst_dir: &OwnedFd,
    dst_root: BorrowedFd,
    name: &OsStr,
    st: &FileStat,
    rel: &Path,
    links: &mut Links,
) -> io::Result<()> {
    let key = (st.st_dev, st.st_ino);
    if st.st_nlink > 1
        && let Some(first) = links.0.get(&key)
    {
        // Another name of a file copied already: one more link to the copy, as tar does.
        match linkat(dst_root, first.as_path(), dst_dir, name, AtFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(e) => log::debug!("copy-up: link {} again: {e}; copied", first.display()),
        }
    }
    let src = match crate::util::tree::open_listed_file(src_dir, name) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ELOOP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut now = fstat(&src)?;
    // The owner as listed, already as the container sees it (`st` went through `owned_as`).
    (now.st_uid, now.st_gid) = (st.st_uid, st.st_gid);
    if now.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits()
        || (now.st_dev, now.st_ino) != key
    {
        log::debug!(
            "copy-up: {} changed while it was copied; skipped",
            rel.join(name).display()
        );
        return Ok(());
    }
    let dst = openat(
        dst_dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let (from, to) = (File::from(src), File::from(dst));
    copy_data(&from, &to, now.st_size)?;
    // Opaque and redirect attributes are a directory's: a file carries none worth keeping.
    copy_meta(&from, &to, &now, false)?;
    futimens(&to, &times_of(&now).0, &times_of(&now).1)?;
    if st.st_nlink > 1 && links.0.len() < MAX_LINKS {
        links.0.insert(key, rel.join(name));
    }
    Ok(())
}

/// Copies the bytes of a regular file, data segment by data segment: a sparse file stays sparse
/// (a terabyte of holes costs an image nothing; it must not become a terabyte of the host's
/// disk).
fn copy_data(from: &File, to: &File, size: i64) -> io::Result<()> {
    // SAFETY: two open fds; FICLONE shares the source's extents (holes included) with the
    // target, or fails and changes nothing.
    if unsafe { libc::ioctl(to.as_raw_fd(), FICLONE, from.as_raw_fd()) } == 0 {
        return Ok(());
    }
    let mut pos = 0;
    while pos < size {
        let start = match lseek(from, pos, Whence::SeekData) {
            Ok(start) => start,
            // Only a hole is left.
            Err(Errno::ENXIO) => break,
            // A filesystem without SEEK_DATA: all of it is data.
            Err(Errno::EINVAL) => pos,
            Err(e) => return Err(e.into()),
        };
        let end = match lseek(from, start, Whence::SeekHole) {
            Ok(end) => end.min(size),
            Err(Errno::EINVAL) => size,
            Err(e) => return Err(e.into()),
        };
        copy_range(from, to, start, end)?;
        pos = end.max(start + 1);
    }
    to.set_len(size.max(0) as u64)
}

/// Copies bytes `start..end` at the same offsets: in the kernel where it can (same filesystem),
/// else through a buffer.
fn copy_range(from: &File, to: &File, start: i64, end: i64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let (mut off_in, mut off_out) = (start, start);
    while off_in < end {
        let len = ((end - off_in) as usize).min(1 << 30);
        // SAFETY: two open fds, and the offsets are ours to update.
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off_in,
                to.as_raw_fd(),
                &mut off_out,
                len,
                0,
            )
        };
        match Errno::result(n) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(Errno::EXDEV | Errno::ENOSYS | Errno::EINVAL | Errno::EOPNOTSUPP) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let mut buf = vec![0u8; 128 * 1024];
    let mut off = off_in;
    while off < end {
        let want = ((end - off) as usize).min(buf.len());
        let n = from.read_at(&mut buf[..want], off as u64)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all_at(&buf[..n], off as u64)?;
        off += n as i64;
    }
    Ok(())
}

fn copy_symlink(
    src_dir: &OwnedFd,
    dst_dir: &OwnedFd,
    name: &OsStr,
    st: &FileStat,
) -> io::Result<()> {
    let target = match nix::fcntl::readlinkat(src_dir, name) {
        Ok(t) => t,
        Err(Errno::ENOENT | Errno::EINVAL) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    symlinkat(target.as_os_str(), dst_dir, name)?;
    own_and_time_at(dst_dir, name, st)
}

/// Gives `name` in `dst_dir` (just made there by ocivol, never followed if a symlink) the owner
/// and times of `st`.
fn own_and_time_at(dst_dir: &OwnedFd, name: &OsStr, st: &FileStat) -> io::Result<()> {
    fchownat(
        dst_dir,
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    let (atime, mtime) = times_of(st);
    utimensat(
        dst_dir,
        name,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// An overlay whiteout: a 0:0 character device (see [`Opts::upper`]).
fn copy_whiteout(dst_dir: &OwnedFd, name: &OsStr, st: &FileStat) -> io::Result<()> {
    mknodat(
        dst_dir,
        name,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(st.st_mode & 0o777),
        0,
    )?;
    own_and_time_at(dst_dir, name, st)
}

fn copy_fifo(dst_dir: &OwnedFd, name: &OsStr, st: &FileStat) -> io::Result<()> {
    mknodat(
        dst_dir,
        name,
        SFlag::S_IFIFO,
        Mode::from_bits_truncate(0o600),
        0,
    )?;
    own_and_time_at(dst_dir, name, st)?;
    // After the owner (a chown clears set-id bits); a mode change keeps the times. The fifo was
    // just made in ocivol's own directory, which nobody else can reach.
    fchmodat(
        dst_dir,
        name,
        Mode::from_bits_truncate(st.st_mode & 0o7777),
        FchmodatFlags::FollowSymlink,
    )?;
    Ok(())
}

/// `st` with its owner as the container sees it through `ids` (see [`ImageDir::ids`]); an id no
/// range maps stays as it is (the container sees it as the overflow id, in the image too).
fn owned_as(ids: Option<&Mappings>, mut st: FileStat) -> FileStat {
    if let Some(m) = ids {
        st.st_uid = m.uid_in_container(st.st_uid).unwrap_or(st.st_uid);
        st.st_gid = m.gid_in_container(st.st_gid).unwrap_or(st.st_gid);
    }
    st
}

/// Owner, then mode (a chown clears set-id bits), then extended attributes (with `upper`, the
/// overlay's own too: see [`Opts::upper`]).
fn copy_meta(src: impl AsFd, dst: impl AsFd, st: &FileStat, upper: bool) -> io::Result<()> {
    fchown(
        &dst,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    fchmod(&dst, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    copy_xattrs(src.as_fd(), dst.as_fd(), upper)
}

/// The overlay's attributes that a copy of an upper directory keeps (see [`Opts::upper`]).
const OVERLAY_XATTRS: [&[u8]; 4] = [
    b"trusted.overlay.opaque",
    b"trusted.overlay.redirect",
    b"user.overlay.opaque",
    b"user.overlay.redirect",
];

/// Whether an extended attribute travels with the content (see the module's header). The
/// overlay's own (`user.overlay.*` in its userxattr mode) never do: they are its bookkeeping.
pub(crate) fn copied_xattr(name: &[u8]) -> bool {
    (name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
        || name == b"security.capability"
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}

fn copy_xattrs(src: BorrowedFd, dst: BorrowedFd, upper: bool) -> io::Result<()> {
    let names = match xattr_call(|buf, len| {
        // SAFETY: the kernel writes at most len bytes into buf (none when buf is null).
        unsafe { libc::flistxattr(src.as_raw_fd(), buf.cast(), len) }
    }) {
        Ok(n) => n,
        Err(e) if unsupported(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let kept = copied_xattr(name) || (upper && OVERLAY_XATTRS.contains(&name));
        if !kept {
            continue;
        }
        let cname = CString::new(name).map_err(io::Error::other)?;
        let value = match xattr_call(|buf, len| {
            // SAFETY: as above; cname is NUL-terminated.
            unsafe { libc::fgetxattr(src.as_raw_fd(), cname.as_ptr(), buf.cast(), len) }
        }) {
            Ok(v) => v,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        set_xattr(dst.as_fd(), name, &value)?;
    }
    Ok(())
}

/// Sets extended attribute `name` of `fd`; a filesystem without extended attributes (ENOTSUP,
/// ENOSYS) is no error. Any other error names the attribute.
pub(crate) fn set_xattr(fd: BorrowedFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    let cname = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: cname is NUL-terminated; value's own pointer and length.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        if !unsupported(&e) {
            return Err(io::Error::new(
                e.kind(),
                format!("set {}: {e}", String::from_utf8_lossy(name)),
            ));
        }
    }
    Ok(())
}

/// Calls a list/get xattr function twice: for the size, then for the bytes (again if it grew).
pub(crate) fn xattr_call(call: impl Fn(*mut u8, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let len = call(std::ptr::null_mut(), 0);
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; len as usize];
        let got = call(buf.as_mut_ptr(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENOSYS))
}

fn times_of(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn in_dir(e: io::Error, rel: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", rel.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};

    /// A rootfs and an empty target beside it.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        let target = dir.path().join("target");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::create_dir(&target).unwrap();
        (dir, rootfs, target)
    }

    fn fill(rootfs: &Path, dest: &str, target: &Path) {
        ImageDir {
            rootfs,
            destination: Path::new(dest),
            ids: None,
        }
        .copy_into(target)
        .unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn copies_files_directories_symlinks_and_fifos_with_modes_and_times() {
        let (_d, rootfs, target) = setup();
        let app = rootfs.join("var/lib/app");
        fs::create_dir_all(app.join("sub")).unwrap();
        fs::write(app.join("f"), "data").unwrap();
        fs::set_permissions(app.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::hard_link(app.join("f"), app.join("f2")).unwrap();
        fs::write(app.join("sub/g"), "g").unwrap();
        symlink("/etc/shadow", app.join("sub/link")).unwrap();
        nix::unistd::mkfifo(&app.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        fs::set_permissions(&app, fs::Permissions::from_mode(0o710)).unwrap();
        let t = TimeSpec::new(1_000_000_000, 5);
        utimensat(
            nix::fcntl::AT_FDCWD,
            &app.join("sub"),
            &t,
            &t,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        fill(&rootfs, "/var/lib/app", &target);
        assert_eq!(names(&target), ["f", "f2", "fifo", "sub"]);
        assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "data");
        let meta = |p: &str| fs::symlink_metadata(target.join(p)).unwrap();
        assert_eq!(meta("f").mode() & 0o7777, 0o640);
        assert_eq!(meta("f").ino(), meta("f2").ino());
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o710);
        assert_eq!(
            (meta("sub").mtime(), meta("sub").mtime_nsec()),
            (1_000_000_000, 5)
        );
        assert_eq!(
            fs::read_link(target.join("sub/link")).unwrap(),
            Path::new("/etc/shadow")
        );
        assert!(meta("fifo").file_type().is_fifo());
    }

    #[test]
    fn a_sparse_file_stays_sparse() {
        use std::os::unix::fs::FileExt;
        let (_d, rootfs, target) = setup();
        fs::create_dir(rootfs.join("data")).unwrap();
        let f = File::create(rootfs.join("data/sparse")).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail", 1 << 30).unwrap();
        f.set_len((1 << 31) + 7).unwrap();
        drop(f);
        fill(&rootfs, "/data", &target);
        let m = fs::metadata(target.join("sparse")).unwrap();
        assert_eq!(m.len(), (1 << 31) + 7);
        assert!(m.blocks() * 512 < 1 << 20, "{} blocks", m.blocks());
        let copy = File::open(target.join("sparse")).unwrap();
        let mut buf = [0u8; 4];
        copy.read_exact_at(&mut buf, 1 << 30).unwrap();
        assert_eq!(&buf, b"tail");
        copy.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"head");
        copy.read_exact_at(&mut buf, 4096).unwrap();
        assert_eq!(buf, [0; 4]);
    }

    #[test]
    fn the_destination_is_resolved_inside_the_rootfs() {
        let (d, rootfs, _) = setup();
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "host").unwrap();
        fs::write(rootfs.join("etc/image"), "image").unwrap();
        symlink("/etc", rootfs.join("abs")).unwrap();
        symlink("../outside", rootfs.join("rel")).unwrap();
        symlink(&outside, rootfs.join("host")).unwrap();
        symlink("../../../../..", rootfs.join("up")).unwrap();
        symlink("loop", rootfs.join("loop")).unwrap();
        fs::write(rootfs.join("file"), "").unwrap();
        for (dest, want) in [
            ("/abs", &["image"][..]),
            ("/rel", &[]),
            ("/host", &[]),
            ("/up", &[]),
            ("/loop", &[]),
            ("/file", &[]),
            ("/missing/x", &[]),
        ] {
            let target = d.path().join(format!("t{}", dest.replace('/', "-")));
            fs::create_dir(&target).unwrap();
            fill(&rootfs, dest, &target);
            assert_eq!(names(&target), want, "{dest}");
        }
    }

    #[test]
    fn a_target_with_data_is_never_filled_and_a_missing_rootfs_fills_nothing() {
        let (d, rootfs, target) = setup();
        fs::create_dir(rootfs.join("data")).unwrap();
        fs::write(rootfs.join("data/new"), "").unwrap();
        fs::write(target.join("old"), "").unwrap();
        fill(&rootfs, "/data", &target);
        assert_eq!(names(&target), ["old"]);
        fs::remove_file(target.join("old")).unwrap();
        fill(&d.path().join("no-rootfs"), "/data", &target);
        assert!(names(&target).is_empty());
    }

    #[test]
    fn a_tree_deeper_than_the_fd_limit_is_copied_with_few_fds() {
        let (_d, rootfs, target) = setup();
        // 3,000 levels made with relative mkdirat (a path this deep is longer than PATH_MAX).
        let mut cur = open_dir(nix::fcntl::AT_FDCWD, rootfs.as_os_str()).unwrap();
        let mut name = "deep";
        for i in 0..3000 {
            mkdirat(&cur, name, Mode::from_bits_truncate(0o755)).unwrap();
            let next = open_dir(&cur, OsStr::new(name)).unwrap();
            if i % 500 == 0 {
                let f = openat(
                    &next,
                    "file",
                    OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o644),
                )
                .unwrap();
                drop(f);
            }
            cur = next;
            name = "d";
        }
        drop(cur);
        fill(&rootfs, "/deep", &target);
        // No fd of the walk is left open. Only fds into this test's directories are counted:
        // other tests run in threads of this process and open files at the same time. The peak
        // is bounded end to end by `tests/ownership.rs`, which copies under `ulimit -Sn 256`.
        let left: Vec<_> = fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .filter(|t| t.starts_with(&rootfs) || t.starts_with(&target))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // Down the copy again: 2,999 levels below the target, with the files where they were.
        let mut cur = open_dir(nix::fcntl::AT_FDCWD, target.as_os_str()).unwrap();
        let mut depth = 0;
        let mut files = 0;
        loop {
            if fstatat(&cur, "file", AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
                files += 1;
            }
            match open_dir(&cur, OsStr::new("d")) {
                Ok(next) => {
                    cur = next;
                    depth += 1;
                }
                Err(_) => break,
            }
        }
        assert_eq!((depth, files), (2999, 6));
        crate::util::remove_tree(&target).unwrap();
        crate::util::remove_tree(&rootfs).unwrap();
    }
}
