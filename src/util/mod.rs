//! Small helpers shared by the store and the spec writer.

mod tree;
pub use tree::{empty_dir, remove_tree};

use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `data` atomically: a temporary file in the same directory, synced, then
/// renamed over it, so a reader sees the old file or the new one, never half of one. A file that
/// existed keeps its permissions.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, true)
}

/// [`write_atomic`] without the fsync, for files under the run root: a reboot clears that root,
/// so syncing would only guard against a power loss after which the file means nothing (its
/// record carries the boot ID). Readers still see the old file or the new one. On a busy disk an
/// fsync costs milliseconds, and a container start writes one such file per volume.
pub fn write_atomic_unsynced(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, false)
}

fn replace(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".ocivol-")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    if sync {
        tmp.as_file().sync_all()?;
    }
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
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
    // u64s: linux_dirent64 records are 8-byte aligned.
    let mut buf = [0u64; 128];
    loop {
        // SAFETY: the kernel writes at most size_of_val(&buf) bytes into buf.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                file.as_raw_fd(),
                buf.as_mut_ptr(),
                std::mem::size_of_val(&buf),
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
            if name != b"." && name != b".." {
                found.push(std::ffi::OsStr::from_bytes(name).to_os_string());
                if found.len() == max {
                    return Ok(found);
                }
            }
            off += reclen;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
