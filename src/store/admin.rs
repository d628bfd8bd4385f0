//! The operator's changes to volumes: create one ahead of use, remove, prune, and reset a
//! copy-on-write volume to its base. Each works under the volume's lock, after dropping the
//! users whose container is gone (so a crashed container does not make a volume "in use").

use super::lock::VolumeLock;
use super::{Result, Store, StoreError, VolumeDef, VolumeKind, wipe_dir};
use crate::pin::Pin;

impl Store {
    /// Creates a volume as the operator defined it (already checked against the policy; `base`
    /// is its open base directory, whose root's owner and mode a copy-on-write volume takes).
    /// Creating a volume that exists as the same kind, with the same `uid=`, `gid=`, `mode=`
    /// where given, changes nothing (as `docker volume create`); `Ok(false)` then.
    pub fn create_volume(&self, def: &VolumeDef, base: Option<&Pin>) -> Result<bool> {
        self.make_state_dirs()?;
        let _lock = VolumeLock::take(&self.lock_path(&def.name))?;
        if let Some(have) = self.definition(&def.name)? {
            let conflict = |reason| StoreError::Conflict {
                name: def.volume_name().to_string(),
                reason,
            };
            if have.anonymous || have.scope_label() != def.scope_label() {
                return Err(conflict(format!(
                    "its storage {} holds a volume of scope {}",
                    def.name,
                    have.scope_label()
                )));
            }
            have.check_use(def.base.as_deref(), def.volatile, &def.owner)
                .map_err(conflict)?;
            return Ok(false);
        }
        self.create(def, base, None)?;
        Ok(true)
    }

    /// Removes a volume (by storage name) and its data; returns the bytes freed. A volume in use
    /// is refused unless `force`: then its users are dropped and the containers using it lose
    /// its data.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<u64> {
        let (_lock, def) = self.lock_definition(name)?;
        if force {
            self.reconcile_users_locked(name, true, None)?;
        } else {
            self.refuse_in_use_locked(
                &def,
                "delete its containers first, or use --force to remove it anyway",
            )?;
        }
        let freed = self.volume_size(&def);
        self.unmount_if_mounted(&def)?;
        self.remove(&def)?;
        Ok(freed)
    }

    /// Removes the volumes no container uses: anonymous ones, or with `all` every one; with a
    /// `scope`, only those of that scope (`any`: the shared ones). Returns each removed volume's
    /// name with the bytes freed.
    pub fn prune(&self, all: bool, scope: Option<&str>) -> Result<Vec<(String, u64)>> {
        self.make_state_dirs()?;
        let mut removed = Vec::new();
        for def in self.volumes()? {
            if (!all && !def.anonymous) || scope.is_some_and(|s| s != def.scope_label()) {
                continue;
            }
            let _lock = VolumeLock::take(&self.lock_path(&def.name))?;
            let (_, left) = self.reconcile_users_locked(&def.name, true, None)?;
            // Read again under the lock: it may have gone meanwhile.
            let Some(def) = self.definition(&def.name)? else {
                continue;
            };
            if !left.is_empty() {
                continue;
            }
            let freed = self.volume_size(&def);
            self.unmount_if_mounted(&def)?;
            self.remove(&def)?;
            removed.push((def.volume_name().to_string(), freed));
        }
        Ok(removed)
    }

    /// Discards the changes of a copy-on-write volume (by storage name) that no container uses;
    /// returns the bytes freed. The next container sees the base only.
    pub fn reset(&self, name: &str) -> Result<u64> {
        let (_lock, def) = self.lock_definition(name)?;
        if def.kind() != VolumeKind::CopyOnWrite {
            return Err(StoreError::Conflict {
                name: def.volume_name().to_string(),
                reason: "it is a plain volume; only a copy-on-write volume has changes to discard"
                    .into(),
            });
        }
        self.refuse_in_use_locked(
            &def,
            "reset discards the changes only of a volume no container uses",
        )?;
        let freed = self.volume_size(&def);
        self.unmount_if_mounted(&def)?;
        wipe_dir(&self.upper_dir(name))?;
        wipe_dir(&self.work_dir(name))?;
        Ok(freed)
    }

    /// Takes the lock of volume `name` (by storage name) and reads its definition under it, for
    /// an operator's command on one volume.
    pub(super) fn lock_definition(&self, name: &str) -> Result<(VolumeLock, VolumeDef)> {
        self.make_state_dirs()?;
        let lock = VolumeLock::take(&self.lock_path(name))?;
        let def = self
            .definition(name)?
            .ok_or_else(|| StoreError::NoSuchVolume {
                name: name.to_string(),
            })?;
        Ok((lock, def))
    }

    /// Under the lock: drops the users whose container is gone (all are judged) and refuses the
    /// volume if any is left, naming them, with `why` as the way out.
    pub(super) fn refuse_in_use_locked(&self, def: &VolumeDef, why: &str) -> Result<()> {
        let (_, left) = self.reconcile_users_locked(&def.name, true, None)?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(self.in_use(def.volume_name(), &left, why))
        }
    }

    pub(super) fn unmount_if_mounted(&self, def: &VolumeDef) -> Result<()> {
        use super::IoContext;
        let target = self.overlay_target(&def.name);
        if def.base.is_some() && self.mounter.is_mounted(&target) {
            self.mounter
                .unmount(&target)
                .ctx(|| format!("volume {}: unmount its overlay", def.name))?;
        }
        self.forget_lingering_locked(&def.name)
    }

    pub(super) fn in_use(&self, name: &str, keys: &[String], hint: &str) -> StoreError {
        StoreError::InUse {
            name: name.to_string(),
            users: keys.iter().map(|k| self.container_name(k)).collect(),
            hint: hint.to_string(),
        }
    }
}
