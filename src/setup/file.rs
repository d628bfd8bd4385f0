//! The files setup changes: read as they are, shown as a unified diff, backed up, and replaced
//! atomically (a temp file in the same directory with the old file's mode and owner, fsync,
//! rename, fsync of the directory), so an engine never reads half a config.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Result, SetupError};

/// What a file is and what it should become; `None` is "no such file".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: PathBuf,
    pub before: Option<String>,
    pub after: Option<String>,
    /// Write `PATH.ocivol-backup` before changing a file that exists. Off for files setup owns
    /// whole (a drop-in, a hooks file): there is nothing of anyone else's to keep, and an engine
    /// that reads every file of its drop-in directory would read the backup too.
    pub backup: bool,
}

/// The suffix of the copy of a file as it was before setup changed it.
pub const BACKUP_SUFFIX: &str = ".ocivol-backup";

impl Change {
    pub fn is_change(&self) -> bool {
        self.before != self.after
    }

    /// A unified diff (3 lines of context) from the file as it is to what it would become;
    /// empty when nothing changes.
    pub fn diff(&self) -> String {
        if !self.is_change() {
            return String::new();
        }
        let name = self.path.display().to_string();
        let old = self.before.as_deref().unwrap_or("");
        let new = self.after.as_deref().unwrap_or("");
        let from = if self.before.is_some() {
            name.clone()
        } else {
            "/dev/null".to_string()
        };
        let to = if self.after.is_some() {
            name
        } else {
            "/dev/null".to_string()
        };
        similar::TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(3)
            .header(&from, &to)
            .to_string()
    }

    /// The path of the backup.
    pub fn backup_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(BACKUP_SUFFIX);
        PathBuf::from(p)
    }

    /// Carries the change out: the backup first (when asked for and the file exists), then the
    /// new content atomically, or the file removed. Returns the backup's path if one was
    /// written.
    pub fn apply(&self) -> Result<Option<PathBuf>> {
        if !self.is_change() {
            return Ok(None);
        }
        let meta = match fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(SetupError::io(&self.path, e)),
        };
        // The file changed since it was read (another editor, another setup): do nothing.
        let now = match fs::read_to_string(&self.path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(SetupError::io(&self.path, e)),
        };
        if now != self.before {
            return Err(SetupError::Refused(format!(
                "{} changed while setup was running; run it again",
                self.path.display()
            )));
        }
        let mut backup = None;
        if self.backup
            && let (Some(before), Some(meta)) = (&self.before, &meta)
        {
            let path = self.backup_path();
            write_atomic(&path, before.as_bytes(), Some(meta))?;
            backup = Some(path);
        }
        match &self.after {
            Some(text) => {
                if let Some(dir) = self.path.parent()
                    && !dir.as_os_str().is_empty()
                {
                    fs::create_dir_all(dir).map_err(|e| SetupError::io(dir, e))?;
                }
                write_atomic(&self.path, text.as_bytes(), meta.as_ref())?;
            }
            None => {
                fs::remove_file(&self.path).map_err(|e| SetupError::io(&self.path, e))?;
                sync_dir(&self.path)?;
            }
        }
        Ok(backup)
    }
}

/// Reads a file that may not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            SetupError::Refused(format!(
                "{} is not UTF-8 text; fix it by hand",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SetupError::io(path, e)),
    }
}

/// Writes `bytes` to a temp file beside `path` with `like`'s mode and owner (0644 root for a new
/// file), fsyncs it, renames it over `path` and fsyncs the directory.
fn write_atomic(path: &Path, bytes: &[u8], like: Option<&fs::Metadata>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.ocivol-"))
        .tempfile_in(&dir)
        .map_err(|e| SetupError::io(&dir, e))?;
    let tmp_path = tmp.path().to_path_buf();
    let io = |e| SetupError::io(&tmp_path, e);
    let (mode, owner) = match like {
        Some(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
        None => (0o644, None),
    };
    if let Some((uid, gid)) = owner {
        // Only root can give a file away; an unprivileged run (tests) keeps its own.
        let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid));
    }
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path)
        .map_err(|e| SetupError::io(path, e.error))?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SetupError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_written_atomically_with_mode_and_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, "a = 1\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let change = Change {
            path: path.clone(),
            before: Some("a = 1\n".into()),
            after: Some("a = 1\nb = 2\n".into()),
            backup: true,
        };
        assert_eq!(
            change.diff(),
            format!(
                "--- {p}\n+++ {p}\n@@ -1 +1,2 @@\n a = 1\n+b = 2\n",
                p = path.display()
            )
        );
        let backup = change.apply().unwrap().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a = 1\nb = 2\n");
        assert_eq!(fs::read_to_string(&backup).unwrap(), "a = 1\n");
        assert_eq!(backup, dir.path().join("config.toml.ocivol-backup"));
        for p in [&path, &backup] {
            assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "no temp file left: {names:?}");
        // Applying it again refuses: the file is no longer what the change was made from.
        assert!(change.apply().is_err());
    }

    #[test]
    fn a_new_file_and_a_removal_diff_against_dev_null() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/99-ocivol.conf");
        let create = Change {
            path: path.clone(),
            before: None,
            after: Some("x\n".into()),
            backup: false,
        };
        assert!(create.diff().starts_with("--- /dev/null\n"));
        assert_eq!(create.apply().unwrap(), None);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let remove = Change {
            path: path.clone(),
            before: Some("x\n".into()),
            after: None,
            backup: false,
        };
        assert!(remove.diff().contains("+++ /dev/null\n"));
        remove.apply().unwrap();
        assert!(!path.exists());
    }
}
