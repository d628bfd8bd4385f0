//! What the users of a copy-on-write volume changed against its base, read from the overlay's
//! upper directory, in `docker diff`'s terms:
//!
//! - a character device 0:0 in upper is a whiteout: the base's entry at that path is **D**eleted
//!   (a deleted directory is one line, not one per file in it);
//! - a directory with `trusted.overlay.opaque=y` replaces the base's directory: every entry of
//!   the base's directory that the new one lacks is **D**eleted, and the directory is **C**hanged;
//! - any other entry in upper is **A**dded if the base has nothing at its path, else **C**hanged;
//!   a directory is listed as changed only if it was replaced, its type, mode or owner changed,
//!   or an entry directly in it was added or deleted (as `docker diff` lists the parents).
//!
//! The result is what a container sees in the volume compared with the base, sorted by path.

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// The path inside the volume, starting with `/`.
    pub path: PathBuf,
}

impl ChangeKind {
    /// `docker diff`'s letter.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// `A /path`, the path as it is: a terminal must get it escaped (`ocivol volume diff` does).
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.letter(), self.path.display())
    }
}

/// The changes recorded in `upper` against `base`, sorted by path.
pub fn diff(upper: &Path, base: &Path) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(upper, base, Path::new("/"), true, &mut out)?;
    out.sort_by(|a, b| a.path.as_os_str().cmp(b.path.as_os_str()));
    Ok(out)
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether a directory of the upper layer hides the lower one (`trusted.overlay.opaque=y`).
fn is_opaque(path: &Path) -> bool {
    let (Ok(p), Ok(name)) = (
        CString::new(path.as_os_str().as_bytes()),
        CString::new("trusted.overlay.opaque"),
    ) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: both strings are NUL-terminated and the buffer's length is passed.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

/// Walks one directory of upper (`rel` inside the volume). `lower_visible`: the base's directory
/// at `rel` shows through (no opaque directory above). Returns whether an entry directly in it
/// was added or deleted.
fn walk(
    upper_dir: &Path,
    base: &Path,
    rel: &Path,
    lower_visible: bool,
    out: &mut Vec<Change>,
) -> io::Result<bool> {
    let mut entries: Vec<_> = fs::read_dir(upper_dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut direct = false;
    for entry in entries {
        let name = entry.file_name();
        let rel_e = rel.join(&name);
        let up_e = entry.path();
        let in_base = fs::symlink_metadata(base.join(rel_e.strip_prefix("/").unwrap_or(&rel_e)));
        let meta = fs::symlink_metadata(&up_e)?;
        if is_whiteout(&meta) {
            if in_base.is_ok() {
                out.push(change(ChangeKind::Deleted, &rel_e));
                direct = true;
            }
            continue;
        }
        let Ok(base_meta) = in_base else {
            out.push(change(ChangeKind::Added, &rel_e));
            direct = true;
            if meta.is_dir() {
                walk(&up_e, base, &rel_e, false, out)?;
            }
            continue;
        };
        if !meta.is_dir() {
            out.push(change(ChangeKind::Changed, &rel_e));
            continue;
        }
        let opaque = is_opaque(&up_e);
        let lower_dir = base_meta.is_dir();
        let child_lower_visible = lower_visible && lower_dir && !opaque;
        let mut inside = walk(&up_e, base, &rel_e, child_lower_visible, out)?;
        if lower_dir && !child_lower_visible {
            inside |= hidden_base_entries(&up_e, base, &rel_e, out)?;
        }
        let same_meta = lower_dir
            && meta.mode() == base_meta.mode()
            && meta.uid() == base_meta.uid()
            && meta.gid() == base_meta.gid();
        if opaque || !same_meta || inside {
            out.push(change(ChangeKind::Changed, &rel_e));
        }
    }
    Ok(direct)
}

/// A directory of upper that hides the base's: every base entry it lacks is deleted.
fn hidden_base_entries(
    upper_dir: &Path,
    base: &Path,
    rel: &Path,
    out: &mut Vec<Change>,
) -> io::Result<bool> {
    let base_dir = base.join(rel.strip_prefix("/").unwrap_or(rel));
    let mut any = false;
    for entry in fs::read_dir(&base_dir)? {
        let name = entry?.file_name();
        // An entry upper has (a whiteout included, which walk() reported) is not hidden.
        if fs::symlink_metadata(upper_dir.join(&name)).is_err() {
            out.push(change(ChangeKind::Deleted, &rel.join(&name)));
            any = true;
        }
    }
    Ok(any)
}

fn change(kind: ChangeKind, path: &Path) -> Change {
    Change {
        kind,
        path: path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a base and an upper as overlayfs leaves them; whiteouts need mknod (root).
    #[test]
    fn upper_directory_reads_as_docker_diff() {
        let Some(()) = crate::util::require_root("upper_directory_reads_as_docker_diff") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (base, upper) = (dir.path().join("base"), dir.path().join("upper"));
        for d in ["sub", "keep", "gone/deeper", "same"] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        for f in [
            "file.txt",
            "sub/deep.txt",
            "keep/one.txt",
            "keep/two.txt",
            "same/x",
        ] {
            fs::write(base.join(f), "base").unwrap();
        }
        for d in ["sub", "keep", "new/inner", "same"] {
            fs::create_dir_all(upper.join(d)).unwrap();
        }
        for f in [
            "file.txt",
            "sub/added.txt",
            "keep/two.txt",
            "new/inner/f",
            "same/x",
        ] {
            fs::write(upper.join(f), "upper").unwrap();
        }
        let whiteout = |p: &Path| {
            nix::sys::stat::mknod(
                p,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                0,
            )
            .unwrap()
        };
        whiteout(&upper.join("gone"));
        whiteout(&upper.join("sub/deep.txt"));
        whiteout(&upper.join("never-in-base"));
        let keep = CString::new(upper.join("keep").as_os_str().as_bytes()).unwrap();
        let name = CString::new("trusted.overlay.opaque").unwrap();
        // SAFETY: NUL-terminated strings, a one-byte value.
        let rc =
            unsafe { libc::lsetxattr(keep.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        assert_eq!(rc, 0);
        // Same mode as in the base: an unchanged parent of a changed file is not listed.
        let mode = fs::metadata(base.join("same")).unwrap().permissions();
        fs::set_permissions(upper.join("same"), mode).unwrap();
        for d in ["sub", "keep"] {
            let mode = fs::metadata(base.join(d)).unwrap().permissions();
            fs::set_permissions(upper.join(d), mode).unwrap();
        }

        let lines: Vec<String> = diff(&upper, &base)
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "C /file.txt",
                "D /gone",
                "C /keep",
                "D /keep/one.txt",
                "C /keep/two.txt",
                "A /new",
                "A /new/inner",
                "A /new/inner/f",
                "C /same/x",
                "C /sub",
                "A /sub/added.txt",
                "D /sub/deep.txt",
            ]
        );
    }
}
