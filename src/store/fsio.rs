//! The store's file idioms, each written once: a directory that is not there lists as empty, a
//! file that is not there reads as `None`, removing what is not there has nothing to do. Every
//! other error names the path.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::Path;

use super::{IoContext, Result};

/// The text of `path`; `None` if it is not there.
pub(super) fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(|| format!("read {}", path.display())),
    }
}

/// The JSON document in `path`; `None` if it is not there, `Corrupt` if it does not parse.
pub(super) fn read_json_opt<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let Some(text) = read_opt(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| super::StoreError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// `value` as the pretty JSON the store writes to `path`.
pub(super) fn json_for<T: serde::Serialize>(path: &Path, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| super::StoreError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The names in directory `dir` (unsorted); none if it is not there.
pub(super) fn names_in(dir: &Path) -> Result<Vec<OsString>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(|| format!("read {}", dir.display())),
    };
    entries
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()
        .ctx(|| format!("read {}", dir.display()))
}

/// Removes the file `path` if it is there.
pub(super) fn remove_file_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).ctx(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Removes a file or a directory tree, if it is there (a bounded number of fds at any depth).
pub(crate) fn remove_if_present(path: &Path) -> Result<()> {
    match crate::util::remove_tree(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).ctx(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_there_is_empty_none_or_already_removed() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        assert_eq!(read_opt(&gone).unwrap(), None);
        assert!(names_in(&gone).unwrap().is_empty());
        remove_file_if_present(&gone).unwrap();
        remove_if_present(&gone).unwrap();
        fs::write(dir.path().join("f"), "x").unwrap();
        assert_eq!(
            read_opt(&dir.path().join("f")).unwrap().as_deref(),
            Some("x")
        );
        assert_eq!(names_in(dir.path()).unwrap(), ["f"]);
        remove_file_if_present(&dir.path().join("f")).unwrap();
        assert!(names_in(dir.path()).unwrap().is_empty());
        // Any other error is one, naming the path.
        let e = read_opt(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
    }
}
