//! Overlays that stay mounted for a while after their last user (`overlay_linger` in the
//! config), so that containers started one after another on a copy-on-write volume do not each
//! pay the mount and the unmount (which syncs the upper filesystem: milliseconds on a disk).
//!
//! When the last user of a persistent copy-on-write volume leaves, a store with a non-zero
//! linger leaves its overlay mounted and writes `RUN_ROOT/lingering/NAME` with the time (Unix
//! seconds) until which it may stay. The next user of the volume takes the mounted overlay and
//! removes the mark. Any later [`Store::release_container`] and every `ocivol gc` unmount the
//! overlays whose time is up ([`Store::sweep_lingering`]); `volume rm`, `reset` and `prune`
//! unmount one at once. Volatile and anonymous volumes never linger: a volatile volume forgets
//! its changes as its last user leaves, before any next user could see them.
//!
//! A lingering overlay is a mounted overlay with no user and a mark that has not expired:
//! reconciliation keeps it; without the mark (or after it) it is a stray and is unmounted, as
//! before.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::lock::VolumeLock;
use super::{IoContext, Result, Store, VolumeDef, make_dir, remove_if_present};

const DIR: &str = "lingering";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    /// Overlays stay mounted this long after their last user (zero: unmounted at once).
    pub fn with_linger(mut self, linger: Duration) -> Store {
        self.linger = linger;
        self
    }

    fn linger_path(&self, name: &str) -> PathBuf {
        self.run_root.join(DIR).join(name)
    }

    /// Until when the overlay of `name` may stay mounted without a user, if it is marked.
    fn lingers_until(&self, name: &str) -> Option<u64> {
        std::fs::read_to_string(self.linger_path(name))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }

    /// Whether the overlay of `name`, with no user, may stay mounted now.
    pub(super) fn may_linger(&self, name: &str) -> bool {
        self.lingers_until(name).is_some_and(|t| t > now_secs())
    }

    /// Under the volume's lock, its last user gone and its overlay mounted: marks the overlay to
    /// stay mounted for the linger time and returns true, when this volume may linger.
    pub(super) fn keep_lingering_locked(&self, def: &VolumeDef) -> Result<bool> {
        if self.linger.is_zero() || def.base.is_none() || def.volatile || def.anonymous {
            return Ok(false);
        }
        let dir = self.run_root.join(DIR);
        make_dir(&dir)?;
        let path = self.linger_path(&def.name);
        let until = now_secs() + self.linger.as_secs().max(1);
        crate::util::write_atomic_unsynced(&path, until.to_string().as_bytes())
            .ctx(|| format!("write {}", path.display()))?;
        Ok(true)
    }

    /// Under the volume's lock: the overlay of `name` is taken or unmounted; its mark goes.
    pub(super) fn forget_lingering_locked(&self, name: &str) -> Result<()> {
        if self.linger.is_zero() && !self.run_root.join(DIR).exists() {
            return Ok(());
        }
        remove_if_present(&self.linger_path(name))
    }

    /// Unmounts the lingering overlays whose time is up (and drops marks of overlays that are
    /// not mounted any more). A volume whose lock is busy is skipped: its holder settles it, or
    /// a later sweep does. Returns the volumes unmounted. Call it holding no volume's lock.
    pub fn sweep_lingering(&self) -> Result<Vec<String>> {
        let dir = self.run_root.join(DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("read {}", dir.display())),
        };
        let now = now_secs();
        let mut unmounted = Vec::new();
        for entry in entries.flatten() {
            let file = entry.file_name();
            if crate::util::is_temp_name(&file) {
                continue;
            }
            let name = file.to_string_lossy().into_owned();
            if self.lingers_until(&name).is_some_and(|t| t > now) {
                continue;
            }
            let Some(_lock) = VolumeLock::try_take(&self.lock_path(&name))? else {
                continue;
            };
            // Under the lock: taken again meanwhile, or marked anew?
            if self.has_users(&name)? || self.may_linger(&name) {
                continue;
            }
            match self.definition(&name)? {
                Some(def) => {
                    if self.is_mounted(&name) {
                        unmounted.push(name.clone());
                    }
                    self.after_last_user(&def, false, false, None)?;
                }
                None => self.forget_lingering_locked(&name)?,
            }
        }
        Ok(unmounted)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cow, guard, store};
    use super::*;

    #[test]
    fn an_overlay_lingers_after_its_last_user_and_the_next_user_takes_it() {
        let (dir, s, rec) = store();
        let s = s.with_linger(Duration::from_secs(60));
        let base = dir.path().join("base");
        std::fs::create_dir(&base).unwrap();
        s.acquire(&cow("v", &base, false), "c1", true, &guard())
            .unwrap();
        s.release("v", "c1").unwrap();
        assert!(s.is_mounted("v"), "it lingers");
        assert!(s.may_linger("v"));
        assert_eq!(*rec.mounts_made.lock().unwrap(), 1);
        s.acquire(&cow("v", &base, false), "c2", true, &guard())
            .unwrap();
        assert_eq!(
            *rec.mounts_made.lock().unwrap(),
            1,
            "the next user takes the mounted overlay"
        );
        assert!(!s.may_linger("v"), "a used overlay has no mark");
        // Not expired: a sweep keeps it; expired: a sweep unmounts it.
        s.release("v", "c2").unwrap();
        assert!(s.sweep_lingering().unwrap().is_empty());
        assert!(s.is_mounted("v"));
        std::fs::write(s.linger_path("v"), "1").unwrap();
        assert_eq!(s.sweep_lingering().unwrap(), ["v"]);
        assert!(!s.is_mounted("v"));
        assert!(!s.linger_path("v").exists());
        // gc unmounts an expired one too, and keeps one that may still linger.
        s.acquire(&cow("v", &base, false), "c3", true, &guard())
            .unwrap();
        s.release("v", "c3").unwrap();
        assert!(
            s.gc(false).unwrap().is_empty(),
            "a lingering overlay is kept"
        );
        assert!(s.is_mounted("v"));
        std::fs::write(s.linger_path("v"), "1").unwrap();
        assert_eq!(s.gc(false).unwrap().len(), 1);
        assert!(!s.is_mounted("v"));
        // The operator's reset unmounts a lingering overlay at once.
        s.acquire(&cow("v", &base, false), "c4", true, &guard())
            .unwrap();
        s.release("v", "c4").unwrap();
        assert!(s.is_mounted("v"));
        s.reset("v").unwrap();
        assert!(!s.is_mounted("v") && !s.linger_path("v").exists());
    }

    #[test]
    fn volatile_and_anonymous_volumes_never_linger() {
        let (dir, s, _rec) = store();
        let s = s.with_linger(Duration::from_secs(60));
        let base = dir.path().join("base");
        std::fs::create_dir(&base).unwrap();
        s.acquire(&cow("w", &base, true), "c1", true, &guard())
            .unwrap();
        std::fs::write(s.upper_dir("w").join("change"), "x").unwrap();
        s.release("w", "c1").unwrap();
        assert!(!s.is_mounted("w"));
        assert!(
            !s.upper_dir("w").join("change").exists(),
            "its changes are gone"
        );
        let mut anon = cow("ignored", &base, false);
        anon.name = None;
        let a = s.acquire(&anon, "c2", true, &guard()).unwrap();
        s.release(&a.name, "c2").unwrap();
        assert!(
            s.definition(&a.name).unwrap().is_none(),
            "removed with its user"
        );
    }
}
