//! The name index: `RUN_ROOT/names/SANDBOX/NAME` holds the key of the record of the container
//! called NAME in the pod whose sandbox is SANDBOX, so that `volumes-from` by a Kubernetes
//! container name reads one record instead of every record on the node.
//!
//! It lives in the run root: a sandbox ID is never reused, and after a reboot every pod has a new
//! sandbox. It is only a hint: the record it points to is read and must have that sandbox and
//! name, or the lookup finds nothing. Sandbox IDs and names that are not plain file names are not
//! indexed (the engines' are: 64 hex digits, and DNS labels).

use std::fs;
use std::path::{Path, PathBuf};

use super::{IoContext, Result};

fn entry(dir: &Path, sandbox: &str, name: &str) -> Option<PathBuf> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.len() <= 255
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'.' | b'-'))
    };
    (plain(sandbox) && plain(name)).then(|| dir.join(sandbox).join(name))
}

/// Points (sandbox, name) at `key`; the newest container of that name wins (a restarted one).
pub(super) fn set(dir: &Path, sandbox: &str, name: &str, key: &str) -> Result<()> {
    let Some(path) = entry(dir, sandbox, name) else {
        return Ok(());
    };
    if let Some(parent) = path.parent() {
        super::make_dir(parent)?;
    }
    crate::util::write_atomic_unsynced(&path, key.as_bytes())
        .ctx(|| format!("write {}", path.display()))
}

/// The key (sandbox, name) points at, if any.
pub(super) fn get(dir: &Path, sandbox: &str, name: &str) -> Result<Option<String>> {
    let Some(path) = entry(dir, sandbox, name) else {
        return Ok(None);
    };
    super::fsio::read_opt(&path)
}

/// Removes the entry if it still points at `key` (a newer container of the same name keeps its
/// own), and the sandbox's directory once it is empty.
pub(super) fn remove(dir: &Path, sandbox: &str, name: &str, key: &str) -> Result<()> {
    let Some(path) = entry(dir, sandbox, name) else {
        return Ok(());
    };
    if get(dir, sandbox, name)?.as_deref() != Some(key) {
        return Ok(());
    }
    super::fsio::remove_file_if_present(&path)?;
    if let Some(parent) = path.parent() {
        // Fails while another container of the pod is indexed: that is fine.
        let _ = fs::remove_dir(parent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_point_at_the_newest_key_and_are_removed_only_by_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        set(d, "sb", "app", "k1").unwrap();
        set(d, "sb", "app", "k2").unwrap();
        assert_eq!(get(d, "sb", "app").unwrap().as_deref(), Some("k2"));
        remove(d, "sb", "app", "k1").unwrap();
        assert_eq!(get(d, "sb", "app").unwrap().as_deref(), Some("k2"));
        remove(d, "sb", "app", "k2").unwrap();
        assert_eq!(get(d, "sb", "app").unwrap(), None);
        assert!(!d.join("sb").exists(), "the empty sandbox directory goes");
        for (sb, name) in [("..", "x"), ("sb", "a/b"), ("sb", ""), ("s b", "x")] {
            set(d, sb, name, "k").unwrap();
            assert_eq!(get(d, sb, name).unwrap(), None, "{sb:?} {name:?}");
        }
        assert_eq!(fs::read_dir(d).unwrap().count(), 0, "nothing written");
    }
}
