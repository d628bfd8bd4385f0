//! A volume's definition, `volumes/NAME/volume.json`: what it was created as. A volume is used
//! as it was created; a request that contradicts it is refused.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{IoContext, Result, StoreError, VolumeRequest};

pub(super) const FILE: &str = "volume.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDef {
    pub name: String,
    /// The resolved base directory of a copy-on-write volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<PathBuf>,
    #[serde(default)]
    pub volatile: bool,
    /// Created for one container, removed with its last user.
    #[serde(default)]
    pub anonymous: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Seconds since the epoch.
    #[serde(default)]
    pub created: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    Plain,
    CopyOnWrite,
}

impl VolumeDef {
    pub fn new(name: &str, base: Option<PathBuf>, volatile: bool, anonymous: bool) -> VolumeDef {
        VolumeDef {
            name: name.to_string(),
            base,
            volatile,
            anonymous,
            labels: BTreeMap::new(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    pub fn kind(&self) -> VolumeKind {
        if self.base.is_some() {
            VolumeKind::CopyOnWrite
        } else {
            VolumeKind::Plain
        }
    }

    /// Whether a request can use this volume as it is; the error says what contradicts it.
    pub fn check_request(&self, req: &VolumeRequest) -> std::result::Result<(), String> {
        self.check_use(req.base.as_ref().map(|b| b.path()), req.volatile)
    }

    /// Whether the volume can be used as copy-on-write over `base` (or plain), volatile or not.
    pub fn check_use(
        &self,
        base: Option<&Path>,
        volatile: bool,
    ) -> std::result::Result<(), String> {
        match (&self.base, base) {
            (None, Some(b)) => Err(format!(
                "it exists as a plain volume, so it cannot be copy-on-write over {}; use another name or drop base=",
                b.display()
            )),
            (Some(have), Some(want)) if have != want => Err(format!(
                "it exists copy-on-write over {}, not over {}; use another name or the same base",
                have.display(),
                want.display()
            )),
            _ if volatile && !self.volatile => Err(
                "it exists as a persistent volume; it cannot be made volatile; use another name"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    pub fn load(dir: &Path) -> Result<Option<VolumeDef>> {
        let path = dir.join(FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx(|| format!("read {}", path.display())),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        let text = serde_json::to_vec_pretty(self).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        crate::util::write_atomic(&path, &text).ctx(|| format!("write {}", path.display()))
    }
}
