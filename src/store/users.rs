//! One user of a volume: `RUN_ROOT/volumes/NAME/users/KEY`, written and removed only under the
//! volume's lock. Besides the container's key it says how to tell whether that container is gone:
//! the boot it was made in, the process that took the volume (the wrapper or hook, alive while a
//! create is in progress) and, once the runtime has created the container, its init process.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{IoContext, Result};
use crate::process::ProcessId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The container's key (`ID.HASH`, see [`crate::container_id::container_key`]).
    pub container: String,
    /// `/proc/sys/kernel/random/boot_id` when the volume was taken.
    #[serde(default)]
    pub boot_id: String,
    /// The process that took the volume for the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ProcessId>,
    /// The container's init process, once the runtime has created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<ProcessId>,
    /// With no process to watch (podman's precreate hook): the engine's directory of the
    /// container, removed with it (see `Store::untracked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_dir: Option<PathBuf>,
}

impl UserRecord {
    /// The record at `path`. A record that cannot be parsed (a crash cannot leave one: records
    /// are replaced atomically) is judged by its container's key alone.
    pub fn load(path: &Path, key: &str) -> Result<Option<UserRecord>> {
        let Some(text) = super::fsio::read_opt(path)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_str(&text).unwrap_or_else(|e| {
            log::warn!("user record {}: {e}", path.display());
            UserRecord {
                container: key.to_string(),
                boot_id: String::new(),
                owner: None,
                init: None,
                container_dir: None,
            }
        })))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec(self).unwrap_or_default();
        // Under the run root: see write_atomic_unsynced.
        crate::util::write_atomic_with_crash_point(path, &text, "half-written-user")
            .ctx(|| format!("write {}", path.display()))
    }
}
