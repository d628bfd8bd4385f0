//! What exists and who uses it, for `ocivol volume ls|inspect` and `ocivol ps`: read-only views
//! of the store, and the size of a volume's data or changes.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::diff::{Change, diff};
use super::users::UserRecord;
use super::{IoContext, Result, Store, StoreError, VolumeDef, VolumeKind};

/// A volume as the operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    /// The name containers use.
    pub name: String,
    /// The scope it belongs to, `any` for a shared volume.
    pub scope: String,
    /// Its storage name (its directory): unique, and taken by every operator command.
    pub storage: String,
    /// `plain`, `cow` or `volatile` (a volatile copy-on-write volume).
    pub kind: &'static str,
    pub anonymous: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    /// Seconds since the epoch.
    pub created: u64,
    /// Whether its overlay is mounted now.
    pub mounted: bool,
    /// Bytes of its data (plain) or of its changes (copy-on-write).
    pub size: u64,
    pub users: Vec<UserInfo>,
    /// Its `size=`/`inodes=` limits and what it uses of them (project quota).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<super::quota::QuotaUse>,
    /// Where its pieces are on the host.
    pub paths: BTreeMap<&'static str, PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    /// The container's ID.
    pub container: String,
    /// Its key in ocivol's state.
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_pid: Option<i32>,
}

impl VolumeInfo {
    /// The KIND column: the kind, and `,anonymous` for an anonymous volume.
    pub fn kind_label(&self) -> String {
        if self.anonymous {
            format!("{},anonymous", self.kind)
        } else {
            self.kind.to_string()
        }
    }
}

/// The kind's word.
pub fn kind_word(def: &VolumeDef) -> &'static str {
    match (def.kind(), def.volatile) {
        (VolumeKind::Plain, _) => "plain",
        (VolumeKind::CopyOnWrite, false) => "cow",
        (VolumeKind::CopyOnWrite, true) => "volatile",
    }
}

impl Store {
    /// Every volume's definition, sorted by name.
    pub fn volumes(&self) -> Result<Vec<VolumeDef>> {
        let dir = self.root.join("volumes");
        let entries = super::fsio::names_in(&dir)?;
        let mut out = Vec::new();
        for file in entries {
            if let Some(def) = VolumeDef::load(&dir.join(file))? {
                out.push(def);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The volumes containers call `name`, in every scope (shared, scoped, or the anonymous one
    /// of that name), sorted by scope; a storage name (`NAME@HASH`) gives that volume alone. Reads
    /// the definitions of those volumes only.
    pub fn volumes_named(&self, name: &str) -> Result<Vec<VolumeDef>> {
        let dir = self.root.join("volumes");
        let entries = super::fsio::names_in(&dir)?;
        let scoped_prefix = format!("{name}@");
        let mut out = Vec::new();
        for file in entries {
            let Some(file) = file.to_str() else { continue };
            if (file == name || (!name.contains('@') && file.starts_with(&scoped_prefix)))
                && super::is_storage_name(file)
                && let Some(def) = VolumeDef::load(&dir.join(file))?
            {
                out.push(def);
            }
        }
        out.sort_by(|a, b| a.scope_label().cmp(b.scope_label()));
        Ok(out)
    }

    /// The user records of a volume (read without the lock: a snapshot).
    pub fn user_records(&self, name: &str) -> Result<Vec<UserRecord>> {
        let mut out = Vec::new();
        for key in self.users(name)? {
            if let Some(u) = UserRecord::load(&self.users_dir(name).join(&key), &key)? {
                out.push(u);
            }
        }
        Ok(out)
    }

    /// Bytes of a volume's data (plain) or changes (copy-on-write).
    pub fn volume_size(&self, def: &VolumeDef) -> u64 {
        match def.kind() {
            VolumeKind::Plain => dir_size(&self.data_dir(&def.name)),
            VolumeKind::CopyOnWrite => dir_size(&self.upper_dir(&def.name)),
        }
    }

    /// What the users of a copy-on-write volume changed against its base (see [`diff`]).
    pub fn changes(&self, name: &str) -> Result<Vec<Change>> {
        let def = self
            .definition(name)?
            .ok_or_else(|| StoreError::NoSuchVolume {
                name: name.to_string(),
            })?;
        let Some(base) = &def.base else {
            return Err(StoreError::Conflict {
                name: def.volume_name().to_string(),
                reason:
                    "it is a plain volume; only a copy-on-write volume has changes against a base"
                        .into(),
            });
        };
        let upper = self.upper_dir(name);
        diff(&upper, base).ctx(|| format!("volume {}: read {}", def.volume_name(), upper.display()))
    }

    pub fn volume_info(&self, def: &VolumeDef) -> Result<VolumeInfo> {
        let users = self
            .user_records(&def.name)?
            .into_iter()
            .map(|u| UserInfo {
                container: self.container_name(&u.container),
                key: u.container,
                init_pid: u.init.map(|p| p.pid),
            })
            .collect();
        let mut paths = BTreeMap::new();
        match def.kind() {
            VolumeKind::Plain => {
                paths.insert("data", self.data_dir(&def.name));
            }
            VolumeKind::CopyOnWrite => {
                paths.insert("upper", self.upper_dir(&def.name));
                paths.insert("work", self.work_dir(&def.name));
                paths.insert("merged", self.overlay_target(&def.name));
            }
        }
        Ok(VolumeInfo {
            name: def.volume_name().to_string(),
            scope: def.scope_label().to_string(),
            storage: def.name.clone(),
            kind: kind_word(def),
            anonymous: def.anonymous,
            base: def.base.clone(),
            labels: def.labels.clone(),
            created: def.created,
            mounted: def.base.is_some() && self.is_mounted(&def.name),
            size: self.volume_size(def),
            users,
            quota: self.quota_use(def),
            paths,
        })
    }
}

/// Bytes in the files under `path` (apparent sizes; a file with several hard links counts
/// once; directories count nothing). A missing directory is empty.
pub fn dir_size(path: &Path) -> u64 {
    fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        let mut total = 0;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                total += walk(&entry.path(), seen);
            } else if meta.nlink() <= 1 || seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
        total
    }
    walk(path, &mut HashSet::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_counts_files_once_and_directories_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("a"), "12345").unwrap();
        fs::write(dir.path().join("d/b"), "123").unwrap();
        fs::hard_link(dir.path().join("a"), dir.path().join("d/a-again")).unwrap();
        assert_eq!(dir_size(dir.path()), 8);
        assert_eq!(dir_size(&dir.path().join("missing")), 0);
    }
}
