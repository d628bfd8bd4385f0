//! Extracting a tar archive into a directory of ocivol's own (see the module above for the
//! rules that keep every entry inside it).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens, mkdirat,
    mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat, linkat, symlinkat};
use tar::EntryType;

use super::{Kind, OPAQUE_MARKER, PAX_XATTR, WHITEOUT_PREFIX};

/// What an extraction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// Entries written (or, in a layer, applied).
    pub entries: u64,
    /// Entries not written: device nodes (a volume holds no door to the host's hardware, as
    /// copy-up decides) and entry types tar has that a volume does not; their names, the first
    /// ten of them.
    pub skipped: Vec<String>,
    pub skipped_count: u64,
}

/// Extracts the tar archive `input` into the open directory `root` (O_RDONLY | O_DIRECTORY),
/// over what it holds: an entry replaces what is at its name. With [`Kind::Layer`], OCI
/// whiteouts remove what they name and an opaque marker empties its directory of everything
/// this archive did not put there. With `prune`, every directory the archive holds (the root
/// included) is emptied afterwards of what the archive did not put there: `root` then shows
/// exactly the archive, even where it is an overlay whose lower layer has more.
pub fn extract<R: Read>(
    input: R,
    root: &OwnedFd,
    kind: Kind,
    prune: bool,
) -> io::Result<Extracted> {
    let mut archive = tar::Archive::new(input);
    let mut x = Extractor {
        root,
        kind,
        track: prune || kind == Kind::Layer,
        dirs: Vec::new(),
        created: HashSet::new(),
        out: Extracted::default(),
    };
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let named = |e: io::Error| io::Error::new(e.kind(), format!("entry {shown:?}: {e}"));
        let comps = components(&raw).map_err(named)?;
        x.one(&mut entry, &comps, &shown).map_err(named)?;
    }
    if prune {
        let mut dirs: Vec<Vec<Vec<u8>>> = x.dirs.iter().map(|(c, _)| c.clone()).collect();
        dirs.push(Vec::new());
        for comps in dirs {
            if let Some(dir) = x.open_parent(&comps, false)? {
                x.keep_only_created(&dir, &comps)?;
            }
        }
    }
    x.set_dir_times()?;
    Ok(x.out)
}

struct Extractor<'a> {
    root: &'a OwnedFd,
    kind: Kind,
    /// Whether `created` is kept.
    track: bool,
    /// Directories written, with their modification time: set last (their entries change it).
    dirs: Vec<(Vec<Vec<u8>>, i64)>,
    /// In a layer or with `prune`: every path this archive wrote (what an opaque marker or the
    /// pruning keeps).
    created: HashSet<Vec<u8>>,
    out: Extracted,
}

/// A name's components: empty ones and `.` dropped; `..` and absolute names refused.
fn components(raw: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    if raw.first() == Some(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "an absolute name is refused: an archive's names are relative to the volume's root",
        ));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a name with `..` is refused: it would lead out of the volume",
                ));
            }
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

impl Extractor<'_> {
    fn one<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        comps: &[Vec<u8>],
        shown: &str,
    ) -> io::Result<()> {
        let kind = entry.header().entry_type();
        let xattrs = xattrs_of(entry)?;
        let Some((name, parents)) = comps.split_last() else {
            // The root itself (`./`): its owner, mode and attributes are the volume root's.
            if !kind.is_dir() {
                return Err(io::Error::other("the archive's root is not a directory"));
            }
            self.apply_meta(self.root.as_fd(), entry.header(), &xattrs)?;
            self.dirs.push((Vec::new(), mtime_of(entry.header())?));
            self.out.entries += 1;
            return Ok(());
        };
        let name = OsStr::from_bytes(name);
        if self.kind == Kind::Layer && name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(parents, name);
        }
        let parent = self.open_parent(parents, true)?.expect("made when missing");
        match kind {
            EntryType::Directory => {
                let is_dir = match fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits() => true,
                    Ok(_) => {
                        self.clear(&parent, name)?;
                        false
                    }
                    Err(Errno::ENOENT) => false,
                    Err(e) => return Err(e.into()),
                };
                if !is_dir {
                    mkdirat(&parent, name, Mode::from_bits_truncate(0o700))?;
                }
                let dir = crate::util::tree::open_dir_beneath(&parent, name)?;
                self.apply_meta(dir.as_fd(), entry.header(), &xattrs)?;
                self.dirs.push((comps.to_vec(), mtime_of(entry.header())?));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(&parent, name)?;
                let fd = openat(
                    &parent,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                let file = File::from(fd);
                write_sparse(entry, &file)?;
                self.apply_meta(file.as_fd(), entry.header(), &xattrs)?;
                let t = time(mtime_of(entry.header())?);
                futimens(&file, &t, &t)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| io::Error::other("a symlink without a target"))?
                    .into_owned();
                self.clear(&parent, name)?;
                // Its text is written as it is: nothing here ever follows it.
                symlinkat(OsStr::from_bytes(&target), &parent, name)?;
                self.own_at(&parent, name, entry.header())?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| io::Error::other("a hard link without a target"))?
                    .into_owned();
                let tcomps = components(&target)?;
                if tcomps.as_slice() == comps {
                    return Ok(());
                }
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(io::Error::other("a hard link to the root"));
                };
                let shown_target = String::from_utf8_lossy(&target).into_owned();
                let tparent = self.open_parent(tparents, false)?.ok_or_else(|| {
                    io::Error::other(format!(
                        "its target {shown_target:?} is not in the archive before it"
                    ))
                })?;
                self.clear(&parent, name)?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink is a link to the symlink itself.
                linkat(
                    &tparent,
                    OsStr::from_bytes(tname),
                    &parent,
                    name,
                    AtFlags::empty(),
                )
                .map_err(|e| {
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("link to {shown_target:?}: {e}"),
                    )
                })?;
            }
            EntryType::Fifo => {
                self.clear(&parent, name)?;
                mknodat(
                    &parent,
                    name,
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o600),
                    0,
                )?;
                self.own_at(&parent, name, entry.header())?;
                // After the owner (a chown clears set-id bits). The fifo was just made in
                // ocivol's own directory, which nobody else can reach.
                fchmodat(
                    &parent,
                    name,
                    Mode::from_bits_truncate(entry.header().mode()? & 0o7777),
                    FchmodatFlags::FollowSymlink,
                )?;
            }
            _ => {
                self.out.skipped_count += 1;
                if self.out.skipped.len() < 10 {
                    self.out.skipped.push(shown.to_string());
                }
                return Ok(());
            }
        }
        if self.track {
            self.created.insert(comps.join(&b'/'));
        }
        self.out.entries += 1;
        Ok(())
    }

    /// An OCI whiteout in directory `parents`: `.wh.NAME` removes NAME, the opaque marker
    /// removes everything this archive did not write there. Nothing to remove is no error.
    fn whiteout(&mut self, parents: &[Vec<u8>], name: &OsStr) -> io::Result<()> {
        let Some(parent) = self.open_parent(parents, false)? else {
            return Ok(());
        };
        self.out.entries += 1;
        if name == OPAQUE_MARKER {
            return self.keep_only_created(&parent, parents);
        }
        let target = &name.as_bytes()[WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a whiteout that names no entry",
            ));
        }
        remove_at(&parent, OsStr::from_bytes(target))
    }

    /// Removes from directory `dir` (at `comps`) every entry this archive did not write.
    fn keep_only_created(&self, dir: &OwnedFd, comps: &[Vec<u8>]) -> io::Result<()> {
        let mut doomed = Vec::new();
        crate::util::tree::for_each_entry(dir, |child, _| {
            let child = child.as_bytes();
            let mut path = comps.join(&b'/');
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(child);
            if !self.created.contains(&path) {
                doomed.push(child.to_vec());
            }
            Ok(())
        })?;
        for child in doomed {
            remove_at(dir, OsStr::from_bytes(&child))?;
        }
        Ok(())
    }

    /// Opens directory `parents` beneath the root, one component at a time, never through a
    /// symlink; a missing one is made (0755, root's) when `create`, else `Ok(None)`.
    fn open_parent(&mut self, parents: &[Vec<u8>], create: bool) -> io::Result<Option<OwnedFd>> {
        let mut cur = openat(
            self.root,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        for (i, c) in parents.iter().enumerate() {
            let c = OsStr::from_bytes(c);
            let shown = || String::from_utf8_lossy(&parents[..=i].join(&b'/')).into_owned();
            cur = match crate::util::tree::open_dir_beneath(&cur, c) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    mkdirat(&cur, c, Mode::from_bits_truncate(0o755))?;
                    if self.track {
                        self.created.insert(parents[..=i].join(&b'/'));
                    }
                    crate::util::tree::open_dir_beneath(&cur, c)?
                }
                Err(Errno::ENOENT) => return Ok(None),
                Err(Errno::ELOOP) => {
                    return Err(io::Error::other(format!(
                        "{} is a symlink; nothing is ever written through one",
                        shown()
                    )));
                }
                Err(Errno::ENOTDIR) => {
                    let link = fstatat(&cur, c, AtFlags::AT_SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits());
                    return Err(io::Error::other(if link {
                        format!(
                            "{} is a symlink; nothing is ever written through one",
                            shown()
                        )
                    } else {
                        format!("{} is not a directory", shown())
                    }));
                }
                Err(Errno::EXDEV) => {
                    return Err(io::Error::other(format!("{} is another mount", shown())));
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(Some(cur))
    }

    /// Removes whatever is at `name` (a directory with all it holds) before an entry takes it.
    fn clear(&self, parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
        remove_at(parent, name)
    }

    /// Owner, then mode (a chown clears set-id bits), then extended attributes, through `fd`.
    fn apply_meta(
        &self,
        fd: BorrowedFd,
        h: &tar::Header,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<()> {
        let (uid, gid) = owner_of(h)?;
        fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        fchmod(fd, Mode::from_bits_truncate(h.mode()? & 0o7777))?;
        for (name, value) in xattrs {
            crate::copyup::set_xattr(fd, name, value)?;
        }
        Ok(())
    }

    /// Owner and times of `name` in `parent`, never following it (a symlink or fifo just made).
    fn own_at(&self, parent: &OwnedFd, name: &OsStr, h: &tar::Header) -> io::Result<()> {
        let (uid, gid) = owner_of(h)?;
        fchownat(
            parent,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        let t = time(mtime_of(h)?);
        utimensat(parent, name, &t, &t, UtimensatFlags::NoFollowSymlink)?;
        Ok(())
    }

    /// The modification times of the directories written, now that nothing enters them.
    fn set_dir_times(&mut self) -> io::Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (comps, mtime) in dirs {
            // A directory a later entry replaced is gone or another one: left as it is.
            if let Ok(Some(dir)) = self.open_parent(&comps, false) {
                let t = time(mtime);
                futimens(&dir, &t, &t)?;
            }
        }
        Ok(())
    }
}

/// The extended attributes of an entry's PAX records that travel with content.
fn xattrs_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key_bytes().strip_prefix(PAX_XATTR.as_bytes())
                && crate::copyup::copied_xattr(name)
            {
                out.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

fn owner_of(h: &tar::Header) -> io::Result<(u32, u32)> {
    let too_big = |what: &str, v: u64| io::Error::other(format!("{what} {v} is out of range"));
    let uid = h.uid()?;
    let gid = h.gid()?;
    Ok((
        u32::try_from(uid).map_err(|_| too_big("uid", uid))?,
        u32::try_from(gid).map_err(|_| too_big("gid", gid))?,
    ))
}

fn mtime_of(h: &tar::Header) -> io::Result<i64> {
    Ok(i64::try_from(h.mtime()?).unwrap_or(i64::MAX))
}

fn time(secs: i64) -> TimeSpec {
    TimeSpec::new(secs, 0)
}

/// Writes an entry's data, leaving every all-zero block unwritten: a hole (a sparse file stays
/// sparse, and zeros cost no disk).
fn write_sparse<R: Read>(entry: &mut tar::Entry<'_, R>, file: &File) -> io::Result<()> {
    const BLOCK: u64 = 4096;
    let mut buf = vec![0u8; 128 * 1024];
    let mut pos: u64 = 0;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut off = 0usize;
        while off < n {
            let at = pos + off as u64;
            let end = (((at / BLOCK) + 1) * BLOCK - pos).min(n as u64) as usize;
            let chunk = &buf[off..end];
            if chunk.iter().any(|b| *b != 0) {
                file.write_all_at(chunk, at)?;
            }
            off = end;
        }
        pos += n as u64;
    }
    file.set_len(pos)
}

fn remove_at(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match crate::util::remove_tree_at(parent, name, Path::new(name)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_relative_and_never_climb() {
        assert_eq!(
            components(b"./a//b/./c/").unwrap(),
            [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert!(components(b"./").unwrap().is_empty());
        assert!(components(b"a/../../etc").is_err());
        assert!(components(b"/etc/passwd").is_err());
        assert!(components(b"..").is_err());
    }
}
