//! Writing a directory's content as tar (see the module above for the format and the rules).

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use tar::{EntryType, Header};

use super::{Kind, OPAQUE_MARKER, PAX_XATTR, WHITEOUT_PREFIX};

/// At most this many files with several links are remembered; beyond, a further name of one is
/// written as a file of its own (as copy-up does).
const MAX_LINKS: usize = 65_536;

/// Writes the content of the open directory `root` (O_RDONLY | O_DIRECTORY) to `out` as tar,
/// the root itself first as `./`; returns `out` once the archive is complete.
pub fn write<W: Write>(root: OwnedFd, out: W, kind: Kind) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    builder.sparse(true);
    let mut w = Writer {
        builder,
        kind,
        links: HashMap::new(),
    };
    let root_st = fstat(&root)?;
    w.directory(root.as_fd(), Path::new(""), &root_st)?;
    let mut stack = vec![Frame {
        id: (root_st.st_dev, root_st.st_ino),
        pending: Vec::new(),
        scanned: false,
    }];
    let mut rel = PathBuf::new();
    let mut cur = root;
    loop {
        let top = stack.last_mut().expect("the stack holds the top directory");
        if !top.scanned {
            w.scan(&cur, &rel, &mut top.pending)?;
            top.scanned = true;
        }
        if let Some(child) = top.pending.pop() {
            let fd = match crate::util::tree::open_dir_beneath(&cur, &child) {
                Ok(fd) => fd,
                // Gone, or no longer a directory, or another mount: not ours to write.
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::EXDEV) => continue,
                Err(e) => return Err(in_dir(e.into(), &rel.join(&child))),
            };
            let st = fstat(&fd)?;
            rel.push(&child);
            w.directory(fd.as_fd(), &rel, &st)
                .map_err(|e| in_dir(e, &rel))?;
            stack.push(Frame {
                id: (st.st_dev, st.st_ino),
                pending: Vec::new(),
                scanned: false,
            });
            cur = fd;
            continue;
        }
        if stack.len() == 1 {
            break;
        }
        stack.pop();
        let up = open_dir(&cur, OsStr::new(".."))?;
        let parent = stack.last().expect("a parent frame");
        let st = fstat(&up)?;
        if (st.st_dev, st.st_ino) != parent.id {
            return Err(io::Error::other(format!(
                "{} was moved while it was read",
                rel.display()
            )));
        }
        rel.pop();
        cur = up;
    }
    w.builder.into_inner()
}

/// One directory on the way down: its identity (to check `..` on the way up) and the
/// subdirectories still to write.
struct Frame {
    id: (u64, u64),
    pending: Vec<OsString>,
    scanned: bool,
}

struct Writer<W: Write> {
    builder: tar::Builder<W>,
    kind: Kind,
    /// Files with several links written already: (device, inode) → their name in the archive.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Writer<W> {
    /// Reads `dir` once: writes its files, symlinks and special files, lists its subdirectories
    /// (in reverse order, so that they are written in name order).
    fn scan(&mut self, dir: &OwnedFd, rel: &Path, pending: &mut Vec<OsString>) -> io::Result<()> {
        let mut names: Vec<OsString> = Vec::new();
        crate::util::tree::for_each_entry(dir, |name, _| {
            names.push(name.to_owned());
            Ok(())
        })?;
        names.sort();
        for name in names {
            let st = match fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let path = rel.join(&name);
            if self.kind == Kind::Layer && name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Err(io::Error::other(format!(
                    "{}: a name beginning with {WHITEOUT_PREFIX} cannot be written in an OCI layer (it means a deletion there)",
                    path.display()
                )));
            }
            let written = match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
                SFlag::S_IFDIR => {
                    pending.push(name.clone());
                    Ok(())
                }
                SFlag::S_IFREG => self.file(dir, &name, &path, &st),
                SFlag::S_IFLNK => self.symlink(dir, &name, &path, &st),
                SFlag::S_IFCHR if self.kind == Kind::Layer && st.st_rdev == 0 => {
                    self.whiteout(rel, &name)
                }
                SFlag::S_IFCHR => self.special(&path, &st, EntryType::Char),
                SFlag::S_IFBLK => self.special(&path, &st, EntryType::Block),
                SFlag::S_IFIFO => self.special(&path, &st, EntryType::Fifo),
                // A socket is a live endpoint, not content (GNU tar skips them too).
                _ => Ok(()),
            };
            written.map_err(|e| in_dir(e, &path))?;
        }
        pending.reverse();
        Ok(())
    }

    /// A directory's own entry (`./` for the root), then in a layer its opaque marker.
    fn directory(&mut self, fd: BorrowedFd, rel: &Path, st: &FileStat) -> io::Result<()> {
        if self.kind == Kind::Layer {
            for attr in ["trusted.overlay.redirect", "user.overlay.redirect"] {
                if get_xattr(fd, attr)?.is_some() {
                    return Err(io::Error::other(format!(
                        "it was renamed from the base's {} (overlay redirect_dir); an OCI layer cannot express that",
                        attr_text(fd, attr)
                    )));
                }
            }
        }
        self.pax(fd)?;
        let mut h = header(st, EntryType::Directory);
        let name = if rel.as_os_str().is_empty() {
            PathBuf::from("./")
        } else {
            rel.to_path_buf()
        };
        self.builder.append_data(&mut h, &name, io::empty())?;
        if self.kind == Kind::Layer && is_opaque(fd)? {
            let mut m = marker_header();
            self.builder
                .append_data(&mut m, rel.join(OPAQUE_MARKER), io::empty())?;
        }
        Ok(())
    }

    fn file(&mut self, dir: &OwnedFd, name: &OsStr, path: &Path, st: &FileStat) -> io::Result<()> {
        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1
            && let Some(first) = self.links.get(&key)
        {
            let mut h = header(st, EntryType::Link);
            let first = first.clone();
            return self.builder.append_link(&mut h, path, first);
        }
        let fd = match crate::util::tree::open_listed_file(dir, name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let now = fstat(&fd)?;
        if now.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits()
            || (now.st_dev, now.st_ino) != key
        {
            return Err(io::Error::other("it changed while it was read"));
        }
        if self.kind == Kind::Layer
            && (get_xattr(fd.as_fd(), "trusted.overlay.metacopy")?.is_some()
                || get_xattr(fd.as_fd(), "user.overlay.metacopy")?.is_some())
        {
            return Err(io::Error::other(
                "its data is still in the base (overlay metacopy); an OCI layer cannot express that",
            ));
        }
        self.pax(fd.as_fd())?;
        let mut file = File::from(fd);
        self.builder.append_file(path, &mut file)?;
        if st.st_nlink > 1 && self.links.len() < MAX_LINKS {
            self.links.insert(key, path.to_path_buf());
        }
        Ok(())
    }

    fn symlink(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        st: &FileStat,
    ) -> io::Result<()> {
        let target = match nix::fcntl::readlinkat(dir, name) {
            Ok(t) => t,
            Err(Errno::ENOENT | Errno::EINVAL) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut h = header(st, EntryType::Symlink);
        self.builder.append_link(&mut h, path, Path::new(&target))
    }

    fn special(&mut self, path: &Path, st: &FileStat, kind: EntryType) -> io::Result<()> {
        let mut h = header(st, kind);
        if kind != EntryType::Fifo {
            let rdev = st.st_rdev;
            h.set_device_major(libc::major(rdev))?;
            h.set_device_minor(libc::minor(rdev))?;
        }
        self.builder.append_data(&mut h, path, io::empty())
    }

    /// An overlay whiteout: `.wh.NAME`, an empty file (OCI image spec, "Whiteouts").
    fn whiteout(&mut self, rel: &Path, name: &OsStr) -> io::Result<()> {
        let mut wh = OsString::from(WHITEOUT_PREFIX);
        wh.push(name);
        let mut h = marker_header();
        self.builder.append_data(&mut h, rel.join(wh), io::empty())
    }

    /// The extended attributes of `fd` that travel with the content, as a PAX header before its
    /// entry (none if it has none).
    fn pax(&mut self, fd: BorrowedFd) -> io::Result<()> {
        let mut records = Vec::new();
        for (name, value) in content_xattrs(fd)? {
            let mut key = PAX_XATTR.as_bytes().to_vec();
            key.extend_from_slice(&name);
            pax_record(&mut records, &key, &value);
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(records.len() as u64);
        h.set_path("PaxHeaders/xattrs")?;
        h.set_cksum();
        self.builder.append(&h, records.as_slice())
    }
}

/// A header with the owner, mode and modification time of `st` (numeric owners only).
fn header(st: &FileStat, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// The header of an OCI whiteout or opaque marker: an empty regular file, root's, 0600.
fn marker_header() -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h
}

/// `LEN key=value\n`, LEN the record's length in bytes, its own digits included (POSIX pax).
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3;
    let digits = |n: usize| n.to_string().len();
    let mut len = body + digits(body);
    while body + digits(len) != len {
        len = body + digits(len);
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Whether an upper directory hides the base's (overlay's opaque attribute, either namespace).
fn is_opaque(fd: BorrowedFd) -> io::Result<bool> {
    for attr in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        if get_xattr(fd, attr)?.as_deref() == Some(b"y") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// For a message: the attribute's value as text.
fn attr_text(fd: BorrowedFd, attr: &str) -> String {
    get_xattr(fd, attr)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

/// One extended attribute of `fd`; `None` if it has none of that name (or none at all).
fn get_xattr(fd: BorrowedFd, name: &str) -> io::Result<Option<Vec<u8>>> {
    let cname = CString::new(name).map_err(io::Error::other)?;
    match crate::copyup::xattr_call(|buf, len| {
        // SAFETY: the kernel writes at most len bytes into buf; cname is NUL-terminated.
        unsafe { libc::fgetxattr(fd.as_raw_fd(), cname.as_ptr(), buf.cast(), len) }
    }) {
        Ok(v) => Ok(Some(v)),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENODATA | libc::ENOTSUP | libc::ENOSYS)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The extended attributes of `fd` that travel with content (see [`crate::copyup`]).
fn content_xattrs(fd: BorrowedFd) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match crate::copyup::xattr_call(|buf, len| {
        // SAFETY: the kernel writes at most len bytes into buf (none when buf is null).
        unsafe { libc::flistxattr(fd.as_raw_fd(), buf.cast(), len) }
    }) {
        Ok(n) => n,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::ENOSYS)) => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !crate::copyup::copied_xattr(name) {
            continue;
        }
        let text = String::from_utf8_lossy(name);
        if let Some(value) = get_xattr(fd, &text)? {
            out.push((name.to_vec(), value));
        }
    }
    Ok(out)
}

fn open_dir<Fd: AsFd>(parent: Fd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn in_dir(e: io::Error, rel: &Path) -> io::Error {
    if rel.as_os_str().is_empty() {
        return e;
    }
    io::Error::new(e.kind(), format!("{}: {e}", rel.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        let mut out = Vec::new();
        pax_record(&mut out, b"SCHILY.xattr.user.a", b"1");
        let text = String::from_utf8(out.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), out.len());
        // 9 bytes of body and 1 digit would be 10, which has 2 digits: 11.
        let mut out = Vec::new();
        pax_record(&mut out, b"abcdef", b"");
        assert_eq!(out, b"11 abcdef=\n");
    }
}
