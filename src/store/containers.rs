//! What ocivol knows of a container: `containers/KEY.json` under the persistent root. Written
//! before the real runtime runs, so that a delete (or a crash recovery) knows what to release.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{IoContext, Result};
use crate::container_id::container_key;
use crate::mounts::flags::MountFlags;

/// One mount the container got from ocivol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedMount {
    pub destination: PathBuf,
    pub source: PathBuf,
    /// Written as the OCI mount options (`"options": ["rw", "nosuid"]`).
    #[serde(rename = "options")]
    pub flags: MountFlags,
    /// The volume behind it; `None` for a bind of a host path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// A bind an engine made in a source container's spec (copied by volumes-from), not one an
    /// annotation asked for: it is not held to `allowed_bind_sources` when copied again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub engine: bool,
    /// `subpath=`: the directory of `volume` that is mounted (`source` is that directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// The runtime's `--root`, when one was given (it tells containerd namespaces apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_root: Option<String>,
    /// What tells this container apart from another of the same ID when there is no runtime
    /// root: [`hook_key_root`] of its bundle for a container prepared by a hook (hooks get no
    /// `--root`), [`PRECREATE_KEY_ROOT`] for one prepared by podman's precreate hook.
    ///
    /// [`hook_key_root`]: crate::container_id::hook_key_root
    /// [`PRECREATE_KEY_ROOT`]: crate::container_id::PRECREATE_KEY_ROOT
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_root: Option<String>,
    pub bundle: PathBuf,
    /// Who the container belongs to (for volumes-from).
    #[serde(default)]
    pub scope: crate::scope::Scope,
    /// Names of the volumes this container is a user of.
    pub volumes: Vec<String>,
    pub mounts: Vec<RecordedMount>,
    /// Keys of the containers it got volumes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    pub boot_id: String,
    /// The container's init process, when it was known as the volumes were taken (a
    /// createRuntime hook knows it): while it lives, the record is not released for another
    /// container with the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<crate::process::ProcessId>,
}

thread_local! {
    /// Container record files read by this thread (see [`records_read`]).
    static RECORDS_READ: Cell<u64> = const { Cell::new(0) };
}

/// How many container record files this thread has read so far: lets tests prove that a lookup
/// reads a bounded number of them, whatever the number of records on the node.
pub fn records_read() -> u64 {
    RECORDS_READ.with(Cell::get)
}

impl ContainerRecord {
    pub fn key(&self) -> String {
        container_key(
            &self.id,
            self.runtime_root.as_deref().or(self.key_root.as_deref()),
        )
    }

    fn path(dir: &Path, key: &str) -> PathBuf {
        dir.join(format!("{key}.json"))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir, &self.key());
        let text = super::fsio::json_for(&path, self)?;
        crate::durable::write(&path, &text, "half-written-record")
            .ctx(|| format!("write {}", path.display()))
    }

    pub fn load(dir: &Path, key: &str) -> Result<Option<ContainerRecord>> {
        let path = Self::path(dir, key);
        RECORDS_READ.with(|n| n.set(n.get() + 1));
        super::fsio::read_json_opt(&path)
    }

    /// Every record in `dir`; a record that cannot be read is skipped with a warning.
    pub fn load_all(dir: &Path) -> Result<Vec<ContainerRecord>> {
        let mut out = Vec::new();
        for name in super::fsio::names_in(dir)? {
            let name = name.to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            match Self::load(dir, key) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => log::warn!("skipping container record {name}: {e}"),
            }
        }
        Ok(out)
    }

    /// The keys of the records in `dir` of containers with this ID: `ID.HASH.json` with HASH the
    /// 16 hex digits of [`container_key`]. Reads file names only.
    pub fn keys_of_id(dir: &Path, id: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        for name in super::fsio::names_in(dir)? {
            let Some(key) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Some((of, hash)) = key.rsplit_once('.')
                && of == id
                && hash.len() == 16
                && hash.bytes().all(|b| b.is_ascii_hexdigit())
            {
                keys.push(key.to_string());
            }
        }
        keys.sort();
        Ok(keys)
    }

    pub fn remove(dir: &Path, key: &str) -> Result<()> {
        super::fsio::remove_file_if_present(&Self::path(dir, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A record as the version that kept mount options as strings wrote it: it loads with the
    /// same flags, and is written back the same, so records survive an upgrade and a downgrade.
    #[test]
    fn a_record_written_with_string_options_reads_and_writes_the_same() {
        let old = r#"{
  "id": "web",
  "runtime_root": "/run/containerd/runc/default",
  "bundle": "/run/containerd/io.containerd.runtime.v2.task/default/web",
  "scope": {
    "namespace": "containerd/default",
    "engine": "containerd"
  },
  "volumes": [
    "data@0123456789abcdef"
  ],
  "mounts": [
    {
      "destination": "/data",
      "source": "/var/lib/ocivol/volumes/data@0123456789abcdef/data",
      "options": [
        "rw"
      ],
      "volume": "data@0123456789abcdef"
    },
    {
      "destination": "/etc/app",
      "source": "/srv/app",
      "options": [
        "ro",
        "nosuid",
        "nodev",
        "noexec"
      ],
      "engine": true
    },
    {
      "destination": "/cache",
      "source": "/srv/cache",
      "options": [
        "rw",
        "nodev"
      ]
    }
  ],
  "boot_id": "b0"
}"#;
        let dir = tempfile::tempdir().unwrap();
        let key = container_key("web", Some("/run/containerd/runc/default"));
        fs::write(dir.path().join(format!("{key}.json")), old).unwrap();
        let rec = ContainerRecord::load(dir.path(), &key).unwrap().unwrap();
        let flags: Vec<MountFlags> = rec.mounts.iter().map(|m| m.flags).collect();
        assert_eq!(
            flags,
            [
                MountFlags::default(),
                MountFlags {
                    readonly: true,
                    nosuid: true,
                    nodev: true,
                    noexec: true
                },
                MountFlags {
                    nodev: true,
                    ..Default::default()
                },
            ]
        );
        assert_eq!(serde_json::to_string_pretty(&rec).unwrap(), old);
        rec.save(dir.path()).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(format!("{key}.json"))).unwrap(),
            old
        );
    }

    #[test]
    fn keys_of_an_id_come_from_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let a = container_key("web", Some("/r1"));
        let b = container_key("web", None);
        for name in [
            format!("{a}.json"),
            format!("{b}.json"),
            format!("{}.json", container_key("web.1", None)),
            format!("{}.json", container_key("we", None)),
            "web.json".into(),
            "web.nothex0123456789.json".into(),
            format!(".ocivol-tmp-{a}.json"),
        ] {
            fs::write(dir.path().join(name), "{}").unwrap();
        }
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(
            ContainerRecord::keys_of_id(dir.path(), "web").unwrap(),
            want
        );
        assert!(
            ContainerRecord::keys_of_id(&dir.path().join("none"), "web")
                .unwrap()
                .is_empty()
        );
    }
}
