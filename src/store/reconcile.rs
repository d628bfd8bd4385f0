//! Reconciliation: which users of a volume belong to containers that are gone, so that one
//! crashed container, killed shim or reboot never holds a volume forever.
//!
//! A user is **gone** when, in this order:
//! 1. its record is from another boot (boot id differs): everything it held went with that boot;
//! 2. its container's init process is known and is dead, or its pid now belongs to another
//!    process (same pid, other start time);
//! 3. the init is not known yet (the create is in progress, or the wrapper died before it could
//!    record it) and the process that took the volume (recorded with it) is dead, and either
//!    - there is no container record for it (the record is written before the runtime runs, so
//!      the runtime never ran), or
//!    - the runtime does not know the container, or knows it as stopped;
//! 4. no such process was recorded (podman's precreate hook takes volumes before the container
//!    exists) and the engine's directory of the container, recorded instead, is gone: the
//!    engine has removed the container.
//!
//! It is kept in every other case: while the process that took the volume lives (a create in
//! progress), while the engine's directory of a precreate user's container exists, while the
//! init lives, while the runtime has the container (even a half-created one
//! whose state it cannot read), and when there is no way to ask the runtime. Dropping a live
//! user would let the overlay be unmounted and a second one mounted over the same upper
//! directory, which the kernel calls undefined behaviour; keeping a dead one only costs a mount
//! until `ocivol gc` runs with the runtime at hand.
//!
//! [`judge`] is pure: the process table, the container records and the runtime are passed in.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::containers::ContainerRecord;
use super::lock::VolumeLock;
use super::users::UserRecord;
use super::{IoContext, Result, Store, boot_id};
use crate::process::ProcessId;
use crate::real_runtime::{RuntimeProbe, RuntimeView};

/// The verdict on one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Alive,
    /// Gone, and why (for the operator).
    Gone(String),
}

/// What [`judge`] may look at besides the user record.
pub struct World<'a> {
    /// This boot's id.
    pub boot_id: &'a str,
    /// The start time of the live process `pid` (`None`: no such process, or a zombie).
    pub start_time: &'a dyn Fn(i32) -> Option<u64>,
    /// The container record of a key.
    pub record: &'a dyn Fn(&str) -> Option<ContainerRecord>,
    /// Whether a directory exists (`None`: it cannot be told).
    pub dir_exists: &'a dyn Fn(&Path) -> Option<bool>,
    pub probe: Option<&'a dyn RuntimeProbe>,
}

/// Whether `path` exists, on this host: `None` when that cannot be told (no permission).
fn dir_exists(path: &Path) -> Option<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Some(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Some(false),
        Err(_) => None,
    }
}

impl World<'_> {
    fn alive(&self, p: &ProcessId) -> Option<bool> {
        Some((self.start_time)(p.pid)? == p.start)
    }
}

/// Decides whether the container of a user record is gone (see the module's rules).
pub fn judge(user: &UserRecord, world: &World) -> Verdict {
    if !user.boot_id.is_empty() && !world.boot_id.is_empty() && user.boot_id != world.boot_id {
        return Verdict::Gone(format!(
            "its record is from an earlier boot ({})",
            user.boot_id
        ));
    }
    if let Some(init) = &user.init {
        return match world.alive(init) {
            Some(true) => Verdict::Alive,
            Some(false) => Verdict::Gone(format!(
                "its init process {} is dead (pid {} now belongs to another process)",
                init.pid, init.pid
            )),
            None => Verdict::Gone(format!("its init process {} is dead", init.pid)),
        };
    }
    let owner_note = match &user.owner {
        Some(owner) if world.alive(owner) == Some(true) => return Verdict::Alive,
        Some(owner) => format!("process {} that took the volume is dead", owner.pid),
        None => {
            return match &user.container_dir {
                Some(dir) if (world.dir_exists)(dir) == Some(false) => Verdict::Gone(format!(
                    "the engine's directory of its container, {}, is gone",
                    dir.display()
                )),
                // Nothing tells whether its container is still on its way: keep it.
                _ => Verdict::Alive,
            };
        }
    };
    let Some(record) = (world.record)(&user.container) else {
        return Verdict::Gone(format!(
            "its container was never created ({owner_note}, and there is no container record)"
        ));
    };
    let Some(probe) = world.probe else {
        return Verdict::Alive;
    };
    match probe.state(&record.id, record.runtime_root.as_deref()) {
        RuntimeView::Absent => Verdict::Gone(format!(
            "the runtime does not know container {} ({owner_note})",
            record.id
        )),
        RuntimeView::Stopped => Verdict::Gone(format!("container {} has stopped", record.id)),
        // The create that made the directory was the owner's (the wrapper runs it and it dies
        // with the wrapper), and the owner is dead: the container will never be created.
        RuntimeView::HalfCreated => Verdict::Gone(format!(
            "the runtime has only a half-created state for container {} that will never be \
             finished ({owner_note})",
            record.id
        )),
        RuntimeView::Alive { .. } | RuntimeView::Unreadable => Verdict::Alive,
    }
}

/// One change gc makes (or would make, with `--dry-run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcAction {
    /// A user of a volume whose container is gone.
    Release {
        volume: String,
        container: String,
        reason: String,
    },
    /// An overlay mounted with no user left.
    Unmount { volume: String },
    /// An anonymous volume with no user left (its last user crashed before removing it).
    RemoveAnonymous { volume: String },
    /// A volatile volume's changes, with no user and no overlay left (its last release was
    /// killed after the unmount, before it discarded them).
    DiscardChanges { volume: String },
    /// Run state of a volume whose definition is gone.
    RemoveRunState { volume: String, path: PathBuf },
    /// The record of a container that no runtime, bundle or volume knows any more.
    RemoveRecord { container: String, reason: String },
    /// Mounts staged for a runtime by a wrapper that died before it removed them.
    Unstage { key: String },
    /// A temporary file of a write that was cut short (its writer died before the rename).
    RemoveTemp { path: PathBuf },
    /// A volume's directory without a definition: its creation (or its removal) was cut short
    /// before the definition was written (or after it was removed); nothing a container wrote
    /// is in it.
    RemoveUnfinished { volume: String, path: PathBuf },
    /// What a release moved into the trash (an anonymous volume, a volatile volume's changes, an
    /// overlay's work state) whose removal did not finish.
    EmptyTrash { path: PathBuf },
}

impl GcAction {
    /// One line for the operator; `dry_run` says what would be done instead of what was.
    pub fn line(&self, dry_run: bool) -> String {
        let verb = |done: &str, would: &str| {
            if dry_run {
                format!("would {would}")
            } else {
                done.to_string()
            }
        };
        match self {
            GcAction::Release {
                volume,
                container,
                reason,
            } => format!(
                "{} volume {volume} from container {container}: {reason}",
                verb("released", "release")
            ),
            GcAction::Unmount { volume } => format!(
                "{} the overlay of volume {volume}: it has no user",
                verb("unmounted", "unmount")
            ),
            GcAction::RemoveAnonymous { volume } => format!(
                "{} anonymous volume {volume}: it has no user",
                verb("removed", "remove")
            ),
            GcAction::DiscardChanges { volume } => format!(
                "{} the changes of volatile volume {volume}: it has no user",
                verb("discarded", "discard")
            ),
            GcAction::RemoveRunState { volume, path } => format!(
                "{} {}: volume {volume} no longer exists",
                verb("removed", "remove"),
                path.display()
            ),
            GcAction::RemoveRecord { container, reason } => format!(
                "{} the record of container {container}: {reason}",
                verb("removed", "remove")
            ),
            GcAction::Unstage { key } => format!(
                "{} the staged mounts of {key}: the process that made them is dead",
                verb("removed", "remove")
            ),
            GcAction::RemoveTemp { path } => format!(
                "{} {}: a write that was cut short left it",
                verb("removed", "remove"),
                path.display()
            ),
            GcAction::EmptyTrash { path } => format!(
                "{} {}: left in the trash by a removal that did not finish",
                verb("removed", "remove"),
                path.display()
            ),
            GcAction::RemoveUnfinished { volume, path } => format!(
                "{} {}: volume {volume} has no definition (its creation or removal was cut short)",
                verb("removed", "remove"),
                path.display()
            ),
        }
    }
}

/// How many users an acquire or a release judges (reading their record, probing their
/// processes: about 40 µs each). Judging every user made a container start cost 33 ms on a
/// volume with 1,000 users (make bench, row 3); judging one keeps it flat in the number of users,
/// still heals a crashed container's leftover one per acquire or release, and a volume whose
/// last live user leaves is still unmounted at once when no stale user is left. `ocivol gc`
/// (its timer), `volume rm`, `reset` and `prune` judge them all.
pub(super) const HOT_PATH_JUDGED: usize = 1;

impl Store {
    /// Under the volume's lock: judges the users of `name` (all of them, or with `limit` only the
    /// first few in directory order) and, when `apply`, removes those whose container is gone.
    /// Returns what was (or would be) released and the judged users left: with a limit, users
    /// not judged are not in it.
    pub(super) fn reconcile_users_locked(
        &self,
        name: &str,
        apply: bool,
        limit: Option<usize>,
    ) -> Result<(Vec<GcAction>, Vec<String>)> {
        let (released, left, _) = self.judge_users_locked(name, apply, limit)?;
        Ok((released, left))
    }

    /// Under the volume's lock, on every start and every release: drops the first users that
    /// are gone (see [`HOT_PATH_JUDGED`]) and says whether any user is left. `users/` is listed
    /// a second time only when the first users were gone and more may follow them.
    pub(super) fn users_left_locked(&self, name: &str) -> Result<bool> {
        let (_, alive, all) = self.judge_users_locked(name, true, Some(HOT_PATH_JUDGED))?;
        Ok(!alive.is_empty() || (!all && self.has_users(name)?))
    }

    /// [`Self::reconcile_users_locked`], and whether every user was judged: the listing ended
    /// before `limit`, and each entry in it was a record. Then the users left are all there are.
    fn judge_users_locked(
        &self,
        name: &str,
        apply: bool,
        limit: Option<usize>,
    ) -> Result<(Vec<GcAction>, Vec<String>, bool)> {
        let mut released = Vec::new();
        let mut left = Vec::new();
        let keys = match limit {
            None => self.users(name)?,
            Some(max) => self.first_users(name, max)?,
        };
        let mut all = limit.is_none_or(|max| keys.len() < max);
        for key in keys {
            let path = self.users_dir(name).join(&key);
            let Some(user) = UserRecord::load(&path, &key)? else {
                all = false;
                continue;
            };
            match self.judge_user(&user) {
                Verdict::Alive => left.push(key),
                Verdict::Gone(reason) => {
                    if apply {
                        super::fsio::remove_file_if_present(&path)?;
                        log::info!("volume {name}: released user {key}: {reason}");
                    }
                    released.push(GcAction::Release {
                        volume: name.to_string(),
                        container: self.container_name(&key),
                        reason,
                    });
                }
            }
        }
        Ok((released, left, all))
    }

    /// Under the lock, before a user is added: drops users that are gone (the first few only:
    /// this runs on every container start, and `ocivol gc` sweeps them all) and, if none is left,
    /// restores "no user, no overlay" (a crash between mounting and recording the first user, or
    /// between removing the last user and unmounting, breaks it): the overlay is unmounted and a
    /// volatile volume's changes are discarded, as its last user would have done.
    pub(super) fn reconcile_locked(&self, name: &str) -> Result<()> {
        if !self.users_left_locked(name)? && self.is_mounted(name) && !self.may_linger(name) {
            match self.definition(name)? {
                Some(def) => self.after_last_user(&def, false, false, None)?,
                None => self
                    .mounter
                    .unmount(&self.overlay_target(name))
                    .ctx(|| format!("volume {name}: unmount its overlay"))?,
            }
        }
        Ok(())
    }

    /// Under the volume's lock: removes the temporary files that writes cut short left in its
    /// directories. Every writer of them (users, the definition, the overlay's mappings) holds
    /// this lock, so none of them is being written.
    fn remove_temps_locked(&self, name: &str, dry_run: bool) -> Result<Vec<GcAction>> {
        let mut actions = Vec::new();
        for dir in [
            self.users_dir(name),
            self.run_dir(name),
            self.volume_dir(name),
        ] {
            for path in crate::util::remove_stale_temps(&dir, true, dry_run)
                .ctx(|| format!("remove the temporary files left in {}", dir.display()))?
            {
                actions.push(GcAction::RemoveTemp { path });
            }
        }
        for path in self.import_leftovers(name) {
            if !dry_run {
                super::remove_if_present(&path)?;
            }
            actions.push(GcAction::RemoveTemp { path });
        }
        Ok(actions)
    }

    /// The verdict on one user record, with what this store can see.
    pub(super) fn judge_user(&self, user: &UserRecord) -> Verdict {
        let boot = boot_id();
        let record = |key: &str| self.load_container(key).ok().flatten();
        judge(
            user,
            &World {
                boot_id: &boot,
                start_time: &crate::process::start_time,
                record: &record,
                dir_exists: &dir_exists,
                probe: self.probe.as_deref(),
            },
        )
    }

    /// The runtime's view of a container; `None` when this store cannot ask the runtime.
    pub fn probe_state(&self, id: &str, runtime_root: Option<&str>) -> Option<RuntimeView> {
        self.probe.as_ref().map(|p| p.state(id, runtime_root))
    }

    /// The container ID behind a key, for people: from its record, else the key without its
    /// hash.
    pub(super) fn container_name(&self, key: &str) -> String {
        if let Ok(Some(r)) = self.load_container(key) {
            return r.id;
        }
        match key.rsplit_once('.') {
            Some((id, hash)) if hash.len() == 16 => id.to_string(),
            _ => key.to_string(),
        }
    }

    /// Every volume that has a definition or run state.
    pub(super) fn volume_names(&self) -> Result<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        for dir in [self.root.join("volumes"), self.run_root.join("volumes")] {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx(|| format!("read {}", dir.display())),
            };
            for entry in entries {
                let entry = entry.ctx(|| format!("read {}", dir.display()))?;
                if let Some(name) = entry.file_name().to_str()
                    && super::is_storage_name(name)
                {
                    names.insert(name.to_string());
                }
            }
        }
        Ok(names)
    }

    /// `ocivol gc`: releases the users of containers that are gone, unmounts overlays without
    /// users, removes anonymous volumes without users and the records of containers that
    /// neither the runtime, nor a bundle, nor a volume knows any more. With `dry_run` it only
    /// says what it would do. Volumes are visited one at a time, each under its lock.
    pub fn gc(&self, dry_run: bool) -> Result<Vec<GcAction>> {
        self.make_state_dirs()?;
        let mut actions = Vec::new();
        let mut held = BTreeSet::new();
        for name in self.volume_names()? {
            let _lock = VolumeLock::take(&self.lock_path(&name))?;
            actions.extend(self.remove_temps_locked(&name, dry_run)?);
            let (released, left) = self.reconcile_users_locked(&name, !dry_run, None)?;
            actions.extend(released);
            if !left.is_empty() {
                held.extend(left);
                continue;
            }
            // A lingering overlay whose time is not up stays (see super::linger).
            let mounted_now = self.is_mounted(&name);
            let mounted = mounted_now && !self.may_linger(&name);
            match self.definition(&name)? {
                Some(def) => {
                    if mounted {
                        actions.push(GcAction::Unmount {
                            volume: name.clone(),
                        });
                    }
                    if def.anonymous {
                        actions.push(GcAction::RemoveAnonymous {
                            volume: name.clone(),
                        });
                    }
                    // With the overlay mounted, its unmount below discards them.
                    let upper = self.upper_dir(&name);
                    let left_changes = def.volatile
                        && !def.anonymous
                        && !mounted_now
                        && std::fs::read_dir(&upper).is_ok_and(|mut d| d.next().is_some());
                    if left_changes {
                        actions.push(GcAction::DiscardChanges {
                            volume: name.clone(),
                        });
                    }
                    if !dry_run && (mounted || def.anonymous) {
                        self.after_last_user(&def, false, false, None)?;
                    } else if !dry_run && left_changes {
                        // In place, as the operator's other removals: gc is not on a start's path.
                        super::wipe_dir(&upper)?;
                    }
                }
                None => {
                    let path = self.run_dir(&name);
                    if path.exists() {
                        actions.push(GcAction::RemoveRunState {
                            volume: name.clone(),
                            path: path.clone(),
                        });
                        if !dry_run {
                            if mounted_now {
                                self.mounter
                                    .unmount(&self.overlay_target(&name))
                                    .ctx(|| format!("volume {name}: unmount its overlay"))?;
                            }
                            super::remove_if_present(&path)?;
                        }
                    }
                    // Every creation writes the definition last and every removal removes it
                    // first, under this lock: a directory without one is a cut-short creation
                    // (or removal), and no container ever used what is in it.
                    let dir = self.volume_dir(&name);
                    if dir.exists() {
                        actions.push(GcAction::RemoveUnfinished {
                            volume: name.clone(),
                            path: dir.clone(),
                        });
                        if !dry_run {
                            super::remove_if_present(&dir)?;
                        }
                    }
                }
            }
        }
        // Records and the name index are written without a volume's lock: only the temporary
        // files whose writer is dead are left behind.
        let mut dirs = vec![self.containers_dir()];
        if let Ok(entries) = std::fs::read_dir(self.names_dir()) {
            dirs.extend(entries.flatten().map(|e| e.path()));
        }
        for dir in dirs {
            for path in crate::util::remove_stale_temps(&dir, false, dry_run)
                .ctx(|| format!("remove the temporary files left in {}", dir.display()))?
            {
                actions.push(GcAction::RemoveTemp { path });
            }
        }
        // The trash: what detached removals left (killed, or cut short by a crash), and the
        // anonymous volumes removed above, whose lines are written already.
        let discarded: BTreeSet<String> = actions
            .iter()
            .filter_map(|a| match a {
                GcAction::RemoveAnonymous { volume } => Some(volume.clone()),
                _ => None,
            })
            .collect();
        for path in self.empty_trash(dry_run)? {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if !name.is_some_and(|n| discarded.contains(&n)) {
                actions.push(GcAction::EmptyTrash { path });
            }
        }
        let staged = crate::staging::abandoned(&self.run_root).ctx(|| {
            format!(
                "read {}",
                crate::staging::staging_root(&self.run_root).display()
            )
        })?;
        for key in staged {
            if !dry_run {
                crate::staging::unstage(&self.run_root, &key)
                    .ctx(|| format!("remove the staged mounts of {key}"))?;
            }
            actions.push(GcAction::Unstage { key });
        }
        let records = self.containers()?;
        // What a write of a bundle's config.json that was cut short left in the bundle: the
        // old file under a temporary name, after an exchange (see crate::durable), or the new
        // one before its rename. Only names of ocivol's whose writer is dead; not through a
        // bundle that is a symlink now.
        for record in &records {
            if !std::fs::symlink_metadata(&record.bundle).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            match crate::util::remove_stale_temps(&record.bundle, false, dry_run) {
                Ok(paths) => {
                    actions.extend(paths.into_iter().map(|path| GcAction::RemoveTemp { path }))
                }
                Err(e) => log::warn!(
                    "remove the temporary files left in {}: {e}",
                    record.bundle.display()
                ),
            }
        }
        let Some(probe) = self.probe.as_deref() else {
            return Ok(actions);
        };
        for record in records {
            let key = record.key();
            // A bundle's config.json: an engine still has the container.
            if held.contains(&key) || record.bundle.join("config.json").exists() {
                continue;
            }
            // A half-created state is no container either: its users were judged gone, so
            // its create will never be finished.
            let runtime = match probe.state(&record.id, record.runtime_root.as_deref()) {
                RuntimeView::Absent => "the runtime does not know it",
                RuntimeView::HalfCreated => "the runtime has only a half-created state for it",
                _ => continue,
            };
            actions.push(GcAction::RemoveRecord {
                container: record.id.clone(),
                reason: format!(
                    "{runtime}, its bundle {} is gone and it holds no volume",
                    record.bundle.display()
                ),
            });
            if !dry_run {
                self.remove_container(&key)?;
            }
        }
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    struct Probe(Mutex<HashMap<String, RuntimeView>>);
    impl RuntimeProbe for Probe {
        fn bundle_of(&self, _id: &str, _root: Option<&str>) -> Option<std::path::PathBuf> {
            None
        }
        fn state(&self, id: &str, _root: Option<&str>) -> RuntimeView {
            self.0
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .unwrap_or(RuntimeView::Absent)
        }
    }

    fn record(id: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            runtime_root: None,
            key_root: None,
            bundle: "/b".into(),
            scope: Default::default(),
            volumes: vec!["v".into()],
            mounts: vec![],
            volumes_from: vec![],
            boot_id: "boot".into(),
            init: None,
        }
    }

    fn user(owner: Option<(i32, u64)>, init: Option<(i32, u64)>) -> UserRecord {
        let p = |(pid, start)| ProcessId { pid, start };
        UserRecord {
            container: "c.0".into(),
            boot_id: "boot".into(),
            owner: owner.map(p),
            init: init.map(p),
            container_dir: None,
        }
    }

    /// `/live` exists, `/gone` does not, anything else cannot be told.
    fn dirs(path: &Path) -> Option<bool> {
        match path.to_str() {
            Some("/live") => Some(true),
            Some("/gone") => Some(false),
            _ => None,
        }
    }

    /// Processes 10 (started at 100) and 20 (started at 200) live.
    fn procs(pid: i32) -> Option<u64> {
        match pid {
            10 => Some(100),
            20 => Some(200),
            _ => None,
        }
    }

    fn verdict(u: &UserRecord, has_record: bool, view: Option<RuntimeView>) -> Verdict {
        let probe = Probe(Mutex::new(HashMap::new()));
        if let Some(v) = view.clone() {
            probe.0.lock().unwrap().insert("c".into(), v);
        }
        let rec = move |_: &str| has_record.then(|| record("c"));
        let world = World {
            boot_id: "boot",
            start_time: &procs,
            record: &rec,
            dir_exists: &dirs,
            probe: view.is_some().then_some(&probe as &dyn RuntimeProbe),
        };
        judge(u, &world)
    }

    fn gone(v: Verdict) -> String {
        match v {
            Verdict::Gone(r) => r,
            Verdict::Alive => panic!("expected gone"),
        }
    }

    #[test]
    fn a_record_of_another_boot_is_gone_whatever_its_pids_say() {
        let mut u = user(Some((10, 100)), Some((20, 200)));
        u.boot_id = "earlier".into();
        assert!(gone(verdict(&u, true, Some(RuntimeView::Absent))).contains("earlier boot"));
    }

    #[test]
    fn a_known_init_decides_by_pid_and_start_time() {
        let live = user(None, Some((20, 200)));
        assert_eq!(
            verdict(&live, true, Some(RuntimeView::Absent)),
            Verdict::Alive
        );
        let reused = user(None, Some((20, 199)));
        assert!(gone(verdict(&reused, true, None)).contains("now belongs to another process"));
        let dead = user(Some((10, 100)), Some((30, 300)));
        assert_eq!(
            gone(verdict(
                &dead,
                true,
                Some(RuntimeView::Alive {
                    status: "running".into(),
                    pid: Some(30)
                })
            )),
            "its init process 30 is dead"
        );
    }

    #[test]
    fn a_create_in_progress_is_kept_while_its_owner_lives() {
        let u = user(Some((10, 100)), None);
        for view in [RuntimeView::Absent, RuntimeView::HalfCreated] {
            assert_eq!(verdict(&u, false, Some(view.clone())), Verdict::Alive);
            assert_eq!(verdict(&u, true, Some(view)), Verdict::Alive);
        }
    }

    #[test]
    fn a_dead_owner_without_init_defers_to_the_record_and_the_runtime() {
        let u = user(Some((10, 99)), None);
        assert!(gone(verdict(&u, false, None)).contains("never created"));
        assert!(gone(verdict(&u, true, Some(RuntimeView::Absent))).contains("does not know"));
        assert!(gone(verdict(&u, true, Some(RuntimeView::Stopped))).contains("stopped"));
        assert!(
            gone(verdict(&u, true, Some(RuntimeView::HalfCreated)))
                .contains("half-created state for container c that will never be finished"),
            "runc's own \"does not exist\", with the create's owner dead"
        );
        for kept in [
            RuntimeView::Alive {
                status: "created".into(),
                pid: Some(20),
            },
            RuntimeView::Unreadable,
        ] {
            assert_eq!(verdict(&u, true, Some(kept)), Verdict::Alive);
        }
        assert_eq!(
            verdict(&u, true, None),
            Verdict::Alive,
            "no runtime to ask: kept"
        );
    }

    #[test]
    fn an_untracked_user_is_kept_until_its_init_is_known_or_the_boot_changes() {
        let u = user(None, None);
        assert_eq!(
            verdict(&u, false, Some(RuntimeView::Absent)),
            Verdict::Alive
        );
        let mut old = u.clone();
        old.boot_id = "earlier".into();
        assert!(gone(verdict(&old, false, None)).contains("earlier boot"));
        assert!(gone(verdict(&user(None, Some((30, 1))), false, None)).contains("is dead"));
    }

    /// A user of podman's precreate hook has no process to watch: the engine's directory of its
    /// container decides, and only its absence, seen, drops it; with a record or without, with
    /// or without a runtime that knows nothing of the container.
    #[test]
    fn an_untracked_user_goes_with_the_engines_directory_of_its_container() {
        let with_dir = |dir: &str| UserRecord {
            container_dir: Some(dir.into()),
            ..user(None, None)
        };
        for has_record in [false, true] {
            for view in [None, Some(RuntimeView::Absent)] {
                let why = gone(verdict(&with_dir("/gone"), has_record, view.clone()));
                assert!(
                    why.contains("directory of its container, /gone, is gone"),
                    "{why}"
                );
                for kept in ["/live", "/unknown"] {
                    assert_eq!(
                        verdict(&with_dir(kept), has_record, view.clone()),
                        Verdict::Alive,
                        "{kept}"
                    );
                }
            }
        }
        // Its init, once known, still decides first.
        let mut running = with_dir("/gone");
        running.init = Some(ProcessId {
            pid: 20,
            start: 200,
        });
        assert_eq!(verdict(&running, true, None), Verdict::Alive);
    }
}
