//! The volume store: volume definitions and data, the shared overlays, and who uses what.
//!
//! ```text
//! ROOT (/var/lib/ocivol)                  survives a reboot
//! ├── volumes/NAME/volume.json            the definition (VolumeDef)
//! ├── volumes/NAME/data/                  a plain volume's data
//! ├── volumes/NAME/data.fill/             a new volume being filled from the image (see Fill)
//! ├── volumes/NAME/upper/ , work/         a copy-on-write volume's changes and overlay workdir
//! └── containers/KEY.json                 what a container holds (ContainerRecord)
//! RUN_ROOT (/run/ocivol)                  cleared by a reboot
//! ├── locks/NAME.lock                     flock per volume; never removed while in use
//! ├── volumes/NAME/merged/                the volume's one overlay mount point
//! ├── volumes/NAME/idmap                  the user-namespace mappings it was mounted for
//! ├── volumes/NAME/users/KEY              one record per (volume, container) using it
//! └── names/SANDBOX/NAME                  the key of a pod's container by name (see names.rs)
//! ```
//!
//! NAME here is the volume's storage name: `cache@HASH` for the `cache` of one scope, `cache`
//! for a shared one (see [`volume`] for the rule). A container's request names a volume as its
//! author wrote it and is resolved in the container's scope ([`Store::acquire`]); everything
//! after that (records, users, volumes-from) holds storage names.
//!
//! The number of users of a volume is the number of files in its `users/`, and it is changed
//! only under the volume's lock. The overlay is mounted by the first user and unmounted by the
//! last, under the same lock, so there is never more than one overlay on an upper directory
//! (the kernel calls a second one undefined behaviour).
//!
//! Modes: every directory of the state is 0700 root, so no host user reaches a volume's data
//! (Docker keeps `/var/lib/docker/volumes` 0701 for its user-namespace remapping; ocivol needs no
//! such opening: an idmapped mount is made by root). Only what a container sees as a volume's
//! root is open to it: `data/` is 0755 root:root unless the image's directory or `uid=`,
//! `gid=`, `mode=` say otherwise, and `upper/` has the owner and mode of the base's root, which
//! overlayfs shows as the root of the merged volume.
//!
//! Every acquire and release first drops, under the lock, the users whose container is gone
//! ([`reconcile`]), and restores "no user, no overlay" if a crash broke it; `ocivol gc` does the
//! same for every volume.

mod admin;
mod containers;
mod data;
mod diff;
mod fsio;
mod linger;
mod listing;
mod lock;
mod names;
pub mod quota;
mod reconcile;
mod trash;
use trash::Weight;
mod users;
mod volume;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use containers::{ContainerRecord, RecordedMount, records_read};
pub use diff::{Change, ChangeKind};
pub use listing::{UserInfo, VolumeInfo, dir_size};
pub use reconcile::{GcAction, Verdict};
pub use trash::{
    empty_as_command_ends as empty_trash_as_command_ends, empty_now as empty_trash_now,
};
pub use users::UserRecord;
pub use volume::{ANY_SCOPE, VolumeDef, VolumeKind, check_scope, is_storage_name, storage_name};

use crate::annotations::Ownership;
use crate::config::StatePaths;
use crate::mounts::Mounter;
use crate::mounts::flags::MountFlags;
use crate::pin::{Guard, How, Pin};
use crate::process::ProcessId;
use crate::real_runtime::RuntimeProbe;
use crate::userns::UserNs;
use lock::VolumeLock;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("volume {name}: {reason}")]
    Conflict { name: String, reason: String },
    #[error(
        "volume {name} does not exist and the policy's auto_create is false; an operator must create it first (ocivol volume create --scope {scope} {name}, or --scope any to share it with every scope)"
    )]
    NotFound { name: String, scope: String },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("volume {name} does not exist")]
    NoSuchVolume { name: String },
    #[error("volume {name} is in use by {}: {}; {hint}", plural(.users.len(), "container"), .users.join(", "))]
    InUse {
        name: String,
        /// The IDs of the containers using it.
        users: Vec<String>,
        hint: String,
    },
}

/// What this command's releases detached and still hold (see [`Store::deferring_unmounts`]),
/// for a child to close after this process has let go of it (`crate::util::sync_child`), in
/// that order: each overlay's last reference, then its volume's lock. A command that failed
/// closes it here instead, before it returns (nothing is returned).
pub fn take_detached(succeeded: bool) -> Vec<crate::util::sync_child::Last> {
    let held = lock::take_held();
    if succeeded {
        held
    } else {
        held.into_iter()
            .for_each(crate::util::sync_child::Last::finish);
        Vec::new()
    }
}

/// [`take_detached`], handed to a child of its own, so that the command does not wait for the
/// upper filesystem's sync. If the child cannot be started, closes it here.
pub fn close_detached_as_command_ends(succeeded: bool) {
    let held = take_detached(succeeded);
    if held.is_empty() {
        return;
    }
    if let Err(e) = crate::util::sync_child::spawn::<std::os::fd::OwnedFd>(&[], held) {
        log::warn!("start a process to unmount ocivol's overlays: {e}; unmounted here");
    }
}

/// `1 container`, `2 containers`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// Adds what was being done to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            context: f(),
            source,
        })
    }
}

/// What a container asks the store for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRequest {
    /// `None`: an anonymous volume with a fresh name.
    pub name: Option<String>,
    /// Copy-on-write over this base directory, checked and open.
    pub base: Option<Pin>,
    pub volatile: bool,
    /// The scope the name is resolved in (the container's [`volume_scope`]); `None`: only the
    /// shared volume of that name.
    ///
    /// [`volume_scope`]: crate::scope::Scope::volume_scope
    pub scope: Option<String>,
    /// A name the policy's `shared_volumes` lists: made shared when it is first used.
    pub create_shared: bool,
    /// `uid=`, `gid=`, `mode=`: the root of a volume this request creates; a volume that exists
    /// must have been created with the same.
    pub owner: Ownership,
    /// `size=`, `inodes=`: the limits of a volume this request creates (see [`quota`]); a
    /// volume that exists must have been created with the same.
    pub limits: crate::annotations::Limits,
}

/// What fills a new plain volume before anyone uses it (Docker's copy-up, [`crate::copyup`]):
/// called once, by the use that creates the volume, under the volume's lock, with an empty
/// directory that becomes the volume's data once filled.
pub trait Fill {
    fn fill(&self, dir: &Path) -> io::Result<()>;
}

/// A new volume is filled here and renamed to `data/` when done: a fill cut short (a crash)
/// leaves this directory, which the next creation throws away, never a half-filled volume.
const FILLING: &str = "data.fill";

impl VolumeRequest {
    /// A request for the shared volume `name` (or an anonymous one), as the store's tests and
    /// the operator make them.
    pub fn shared(name: Option<&str>, base: Option<Pin>, volatile: bool) -> VolumeRequest {
        VolumeRequest {
            name: name.map(str::to_string),
            base,
            volatile,
            scope: None,
            create_shared: true,
            owner: Ownership::default(),
            limits: Default::default(),
        }
    }
}

/// A volume acquired for a container: what to bind at the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    /// Its storage name.
    pub name: String,
    pub source: PathBuf,
    /// Options the policy forces on the volume's mounts (those of its base's allowed entry).
    pub force: MountFlags,
}

/// The volume a request resolved to.
struct Target {
    storage: String,
    /// The scope a volume made for the request gets (and an existing one must have).
    scope: Option<String>,
    /// Whether the request may create it if it does not exist.
    may_create: bool,
}

impl Target {
    /// An existing definition at the storage name must be the volume resolved to: of the same
    /// scope (anything else is a hash collision or a hand-made directory), never anonymous
    /// for a name.
    fn check(&self, def: &VolumeDef) -> std::result::Result<(), String> {
        let want = self.scope.as_deref().unwrap_or(ANY_SCOPE);
        if def.anonymous {
            return Err("it is the anonymous volume of a container".into());
        }
        if def.scope_label() == want {
            return Ok(());
        }
        Err(format!(
            "its storage {} belongs to another scope; an operator must look at it (ocivol volume inspect {})",
            self.storage, self.storage
        ))
    }
}

/// Who holds the volumes a store takes: what its users' records say, and so how
/// reconciliation tells that a user is gone (see [`reconcile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Holder {
    /// This process (the runtime wrapper until the runtime has created the container; its
    /// init is recorded afterwards with [`Store::record_init`]).
    ThisProcess,
    /// This process, and the container's init, known already (a createRuntime hook).
    ThisProcessAndInit(ProcessId),
    /// No process that lives until the container does (podman's precreate hook): the engine's
    /// directory of the container, which goes with it, stands in.
    Untracked(PathBuf),
}

pub struct Store {
    root: PathBuf,
    run_root: PathBuf,
    mounter: Box<dyn Mounter>,
    /// Asks the real runtime whether it still has a container (for reconciliation).
    probe: Option<Box<dyn RuntimeProbe>>,
    /// Who holds the volumes this store takes, as their users' records will say.
    holder: Holder,
    /// The user namespace of the container taking volumes, if it has one (see
    /// [`Store::with_userns`]).
    userns: Option<std::sync::Arc<UserNs>>,
    /// How long an overlay stays mounted after its last user (see [`linger`]).
    linger: std::time::Duration,
    /// Set once the state directories exist: made once per store, not once per volume.
    dirs_made: std::sync::OnceLock<()>,
    /// A last release detaches the overlay and leaves its last close to the command's end
    /// (see [`Store::deferring_unmounts`]).
    defer_unmounts: bool,
}

impl Store {
    pub fn new(paths: &StatePaths, mounter: Box<dyn Mounter>) -> Store {
        Store {
            root: paths.root.clone(),
            run_root: paths.run_root.clone(),
            mounter,
            probe: None,
            holder: Holder::ThisProcess,
            userns: None,
            linger: std::time::Duration::ZERO,
            dirs_made: std::sync::OnceLock::new(),
            defer_unmounts: false,
        }
    }

    /// A release by the last user detaches the overlay at once (no process can reach it from
    /// then on; it is gone from the mount table) and keeps the overlay's last reference and the
    /// volume's lock, which [`close_detached_as_command_ends`] hands to a child as the command
    /// ends: the kernel syncs the upper filesystem when an overlay's superblock goes, 0.3 ms on
    /// a quiet disk and all of that filesystem's dirty data on a busy one, and a container's
    /// delete or poststop hook no longer waits for it. The next user of the volume waits for
    /// the lock, so for the superblock to be gone. For the runtime wrapper and the hooks,
    /// which end soon after; any other caller unmounts at once.
    pub fn deferring_unmounts(mut self) -> Store {
        self.defer_unmounts = true;
        self
    }

    /// The container taking volumes runs in this user namespace (`None`: in the host's): a
    /// copy-on-write volume's overlay is mounted for its view (over idmapped layers), and one
    /// mounted for another view is refused while it has users (an overlay shows one view to all
    /// its users).
    pub fn with_userns(mut self, userns: Option<std::sync::Arc<UserNs>>) -> Store {
        self.userns = userns;
        self
    }

    /// The mappings of the user namespace given with [`Store::with_userns`].
    pub fn userns_mappings(&self) -> Option<&crate::userns::Mappings> {
        self.userns.as_deref().map(UserNs::mappings)
    }

    /// Lets reconciliation ask the real runtime about containers. Without it, a user whose
    /// liveness only the runtime could tell is kept.
    pub fn with_probe(mut self, probe: Box<dyn RuntimeProbe>) -> Store {
        self.probe = Some(probe);
        self
    }

    /// Records the container's init process with every user taken (when it is known already).
    pub fn with_init(mut self, init: ProcessId) -> Store {
        self.holder = Holder::ThisProcessAndInit(init);
        self
    }

    /// Records no owner with the users taken: for a way in that takes volumes before the
    /// container exists and knows no process that lives until it does (podman's precreate hook).
    /// Each user records `container_dir` instead, the engine's own directory of the container
    /// (podman's `userdata`), which the engine removes with the container: reconciliation
    /// drops such a user once that directory is gone (a hook killed before podman ever ran the
    /// container, a container removed without its poststop), and keeps it while it exists.
    pub fn untracked(mut self, container_dir: &Path) -> Store {
        self.holder = Holder::Untracked(container_dir.to_path_buf());
        self
    }

    /// Who takes volumes through this store: this process, unless [`Store::untracked`].
    fn owner(&self) -> Option<ProcessId> {
        match self.holder {
            Holder::Untracked(_) => None,
            Holder::ThisProcess | Holder::ThisProcessAndInit(_) => ProcessId::current(),
        }
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name)
    }
    fn run_dir(&self, name: &str) -> PathBuf {
        self.run_root.join("volumes").join(name)
    }
    fn users_dir(&self, name: &str) -> PathBuf {
        self.run_dir(name).join("users")
    }
    /// Where the volume's overlay is mounted while it has users.
    pub fn overlay_target(&self, name: &str) -> PathBuf {
        self.run_dir(name).join("merged")
    }
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("data")
    }
    pub fn upper_dir(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("upper")
    }
    fn work_dir(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("work")
    }
    fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }
    fn names_dir(&self) -> PathBuf {
        self.run_root.join("names")
    }

    /// The container's init process this store records with the users it takes, if known.
    pub fn init_process(&self) -> Option<ProcessId> {
        match self.holder {
            Holder::ThisProcessAndInit(init) => Some(init),
            Holder::ThisProcess | Holder::Untracked(_) => None,
        }
    }

    /// The definition of a volume, if it exists.
    pub fn definition(&self, name: &str) -> Result<Option<VolumeDef>> {
        VolumeDef::load(&self.volume_dir(name))
    }

    /// The keys of the containers using a volume.
    pub fn users(&self, name: &str) -> Result<Vec<String>> {
        let mut users: Vec<String> = fsio::names_in(&self.users_dir(name))?
            .into_iter()
            // A record whose write was cut short (see util::write_atomic_unsynced) is no user.
            .filter(|n| !crate::util::is_temp_name(n))
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        users.sort();
        Ok(users)
    }

    /// Whether anyone uses the volume. Looks for one user in `users/`, not all of them: this is
    /// on the path of every release.
    fn has_users(&self, name: &str) -> Result<bool> {
        Ok(!self.first_users(name, 1)?.is_empty())
    }

    /// The first `max` users of a volume in directory order (temporary files are no users).
    fn first_users(&self, name: &str, max: usize) -> Result<Vec<String>> {
        let dir = self.users_dir(name);
        match crate::util::dir_first_entries_where(&dir, max, |n| !crate::util::is_temp_name(n)) {
            Ok(names) => Ok(names
                .into_iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).ctx(|| format!("read {}", dir.display())),
        }
    }

    /// Whether the volume's overlay is mounted.
    pub fn is_mounted(&self, name: &str) -> bool {
        self.mounter.is_mounted(&self.overlay_target(name))
    }

    /// Makes the volume ready for `user` and counts it as a user: creates the volume on first use
    /// (if allowed), mounts its overlay if it is the first user. On error nothing is left: a
    /// volume created by this call is removed again. A copy-on-write volume's stored base is
    /// checked against `guard` (the policy of this moment) at every use, whether or not its
    /// overlay is mounted already.
    ///
    /// A name is resolved in the request's scope: the scope's own volume of that name; else the
    /// shared one; else a new one of the scope (shared, for a name the policy shares).
    pub fn acquire(
        &self,
        req: &VolumeRequest,
        user: &str,
        auto_create: bool,
        guard: &Guard,
    ) -> Result<Acquired> {
        self.acquire_filled(req, user, auto_create, guard, None)
    }

    /// [`Store::acquire`], and a plain volume this call creates is first filled by `fill`
    /// (under the lock, so a second container taking the same new volume at the same time waits
    /// and finds it full). A volume that exists is never filled.
    pub fn acquire_filled(
        &self,
        req: &VolumeRequest,
        user: &str,
        auto_create: bool,
        guard: &Guard,
        fill: Option<&dyn Fill>,
    ) -> Result<Acquired> {
        let (name, target) = match &req.name {
            Some(n) => (n.clone(), self.resolve_name(n, req)?),
            None => {
                let name = random_name()?;
                let target = Target {
                    storage: name.clone(),
                    scope: req.scope.clone(),
                    may_create: true,
                };
                (name, target)
            }
        };
        let anonymous = req.name.is_none();
        let storage = target.storage.clone();
        self.make_state_dirs()?;
        let _lock = VolumeLock::take(&self.lock_path(&storage))?;
        self.reconcile_locked(&storage)?;
        let conflict = |reason: String| StoreError::Conflict {
            name: name.clone(),
            reason,
        };
        let (def, created) = match self.definition(&storage)? {
            Some(def) => {
                target.check(&def).map_err(conflict)?;
                def.check_request(req).map_err(conflict)?;
                (def, false)
            }
            None if !target.may_create => {
                return Err(conflict(
                    "the shared volume of this name was removed while it was being taken; try again"
                        .into(),
                ));
            }
            None => {
                if !anonymous && !auto_create {
                    return Err(StoreError::NotFound {
                        name,
                        scope: req.scope.clone().unwrap_or_else(|| ANY_SCOPE.into()),
                    });
                }
                let base = req.base.as_ref().map(|b| b.path().to_path_buf());
                let mut def = VolumeDef::new(&storage, base, req.volatile, anonymous);
                def.scope = target.scope.clone();
                def.owner = req.owner;
                def.quota = quota::Quota::of(&req.limits, &storage);
                self.create(&def, req.base.as_ref(), fill)?;
                (def, true)
            }
        };
        let base = match self.base_of(&def, req.base.as_ref(), guard) {
            Ok(b) => b,
            Err(e) => {
                if created {
                    self.remove(&def)?;
                }
                return Err(e);
            }
        };
        let source = self.add_user_to(&def, user, created, base.as_ref())?;
        Ok(Acquired {
            name: storage,
            source,
            force: base.map(|b| b.force()).unwrap_or_default(),
        })
    }

    /// Which volume `name` means for `req` (see [`Store::acquire`]), read without the lock: the
    /// caller checks the definition again under it.
    fn resolve_name(&self, name: &str, req: &VolumeRequest) -> Result<Target> {
        let shared = Target {
            storage: name.to_string(),
            scope: Some(ANY_SCOPE.to_string()),
            may_create: req.create_shared || req.scope.is_none(),
        };
        let Some(scope) = req.scope.as_deref() else {
            return Ok(shared);
        };
        let own = Target {
            storage: storage_name(name, scope),
            scope: Some(scope.to_string()),
            may_create: true,
        };
        if self.volume_dir(&own.storage).exists() {
            return Ok(own);
        }
        match self.definition(name)? {
            Some(def) if def.is_shared() => Ok(Target {
                may_create: false,
                ..shared
            }),
            _ if req.create_shared => Ok(shared),
            _ => Ok(own),
        }
    }

    /// The open base of a copy-on-write volume: the one the request checked when it names the
    /// same directory, else the stored path checked again now, with no symlink on its way.
    fn base_of(&self, def: &VolumeDef, asked: Option<&Pin>, guard: &Guard) -> Result<Option<Pin>> {
        let Some(stored) = &def.base else {
            return Ok(None);
        };
        if let Some(pin) = asked.filter(|p| p.path() == stored) {
            return Ok(Some(pin.clone()));
        }
        crate::plan::base_dir(guard, stored, How::Stored)
            .map(Some)
            .map_err(|reason| StoreError::Conflict {
                name: def.volume_name().to_string(),
                reason,
            })
    }

    /// Adds `user` to a volume that exists, as it was created: what volumes-from does with the
    /// volumes of its source. `Ok(None)`: the volume no longer exists.
    pub fn join(&self, name: &str, user: &str, guard: &Guard) -> Result<Option<Acquired>> {
        // No lock file is made for a volume that is gone; what the definition says is read
        // under the lock.
        if !VolumeDef::exists(&self.volume_dir(name)) {
            return Ok(None);
        }
        self.make_state_dirs()?;
        let _lock = VolumeLock::take(&self.lock_path(name))?;
        self.reconcile_locked(name)?;
        let Some(def) = self.definition(name)? else {
            return Ok(None);
        };
        if def.anonymous && self.users(name)?.is_empty() {
            // Its last user is gone (it crashed before removing it): it goes, as it would have.
            self.remove(&def)?;
            return Ok(None);
        }
        let base = self.base_of(&def, None, guard)?;
        let source = self.add_user_to(&def, user, false, base.as_ref())?;
        Ok(Some(Acquired {
            name: name.to_string(),
            source,
            force: base.map(|b| b.force()).unwrap_or_default(),
        }))
    }

    /// Under the lock: mounts the overlay if needed and records the user; returns what to bind.
    /// On error, with no user left, undoes what the first user did (and removes a volume made by
    /// this call).
    fn add_user_to(
        &self,
        def: &VolumeDef,
        user: &str,
        created: bool,
        base: Option<&Pin>,
    ) -> Result<PathBuf> {
        let source = match base {
            Some(base) => self.ensure_overlay(def, base),
            None => Ok(self.data_dir(&def.name)),
        }
        .and_then(|source| {
            crate::crash::point("after-mount");
            self.add_user(&def.name, user)?;
            crate::crash::point("after-user-added");
            Ok(source)
        });
        if source.is_err() && self.has_users(&def.name).map(|u| !u).unwrap_or(false) {
            self.after_last_user(def, created, true, None)
                .unwrap_or_else(|e2| log::warn!("cleanup of volume {} failed: {e2}", def.name));
        }
        source
    }

    /// The volume whose data or overlay is at `path` (a bind source in some spec), if any.
    pub fn volume_of_path(&self, path: &Path) -> Option<String> {
        let name = |base: PathBuf, tail: &str| -> Option<String> {
            let rest = path.strip_prefix(base).ok()?;
            let mut parts = rest.components();
            let name = parts.next()?.as_os_str().to_str()?.to_string();
            (parts.as_path() == Path::new(tail)).then_some(name)
        };
        name(self.run_root.join("volumes"), "merged")
            .or_else(|| name(self.root.join("volumes"), "data"))
    }

    /// Every container record.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        ContainerRecord::load_all(&self.containers_dir())
    }

    /// The keys of the records of containers with this ID (under any runtime root), from the
    /// file names alone.
    pub fn container_keys_of(&self, id: &str) -> Result<Vec<String>> {
        ContainerRecord::keys_of_id(&self.containers_dir(), id)
    }

    /// Stops counting `user` as a user of the volume; the last user unmounts the overlay, discards
    /// a volatile volume's changes and removes an anonymous volume. Releasing twice is harmless.
    pub fn release(&self, name: &str, user: &str) -> Result<()> {
        if !self.volume_dir(name).exists() && !self.run_dir(name).exists() {
            return Ok(());
        }
        // Not a user (any more): nothing of `user`'s to give back. A start of a container ID used
        // before releases the old record's volumes first, and found nothing there but paid the
        // lock and two listings per volume. What a release killed between its user's removal
        // and the unmount leaves, the next acquire and gc heal.
        let record = self.users_dir(name).join(user);
        if matches!(fs::symlink_metadata(&record), Err(e) if e.kind() == io::ErrorKind::NotFound) {
            return Ok(());
        }
        let lock = VolumeLock::take(&self.lock_path(name))?;
        fsio::remove_file_if_present(&record)?;
        crate::crash::point("after-user-removed");
        if self.users_left_locked(name)? {
            return Ok(());
        }
        match self.definition(name)? {
            Some(def) => self.after_last_user(&def, false, true, Some(&lock)),
            None => Ok(()),
        }
    }

    /// Under the lock, with no user left: unmount (or, with `may_linger`, leave the overlay
    /// mounted for the linger time: see [`linger`]), forget volatile changes, drop what is not
    /// kept. With `held` (the lock taken) and [`Store::deferring_unmounts`], the overlay is
    /// detached, its last close left to the command's end with a copy of the lock.
    fn after_last_user(
        &self,
        def: &VolumeDef,
        created_now: bool,
        may_linger: bool,
        held: Option<&VolumeLock>,
    ) -> Result<()> {
        let target = self.overlay_target(&def.name);
        if def.base.is_some() && self.mounter.is_mounted(&target) {
            if may_linger && !created_now && self.keep_lingering_locked(def)? {
                return Ok(());
            }
            let unmount = || format!("volume {}: unmount its overlay", def.name);
            match held.filter(|_| self.defer_unmounts) {
                Some(lock) => {
                    if let Some(root) = self.mounter.detach(&target).ctx(unmount)? {
                        // Without it, the next mount removes work/work (see `clear_work`).
                        let work = crate::util::tree::open_dir(
                            nix::fcntl::AT_FDCWD,
                            self.work_dir(&def.name).as_os_str(),
                        )
                        .ok();
                        lock.hold_with(root, work)?;
                        crate::crash::point("after-detach");
                    }
                }
                None => {
                    self.mounter.unmount(&target).ctx(unmount)?;
                    // As the deferred unmount's child does (see `clear_work`).
                    self.remove_empty_overlay_work(&def.name);
                }
            }
        }
        self.forget_lingering_locked(&def.name)?;
        if created_now {
            // A start that failed: nothing of it is left, now.
            return self.remove(def);
        }
        if def.anonymous {
            // Into the trash, removed after the command (see trash).
            return self.discard(def);
        }
        if def.volatile {
            // Renamed into the trash, removed after the command (see trash).
            self.empty_aside(&self.upper_dir(&def.name), Weight::Heavy)?;
            self.empty_aside(&self.work_dir(&def.name), Weight::Light)?;
        }
        Ok(())
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.run_root.join("locks").join(format!("{name}.lock"))
    }

    fn make_state_dirs(&self) -> Result<()> {
        if self.dirs_made.get().is_some() {
            return Ok(());
        }
        for d in [
            self.root.join("volumes"),
            self.containers_dir(),
            self.run_root.join("volumes"),
            self.run_root.join("locks"),
        ] {
            make_dir(&d)?;
        }
        let _ = self.dirs_made.set(());
        Ok(())
    }

    /// Makes a volume's directories and saves its definition. A plain volume's root is 0755
    /// root:root, or what `fill` copied from the image; a copy-on-write volume's upper root
    /// (the merged root) has the owner and mode of the base's root, read from the open `base`;
    /// the definition's `uid=`, `gid=`, `mode=` win over both.
    fn create(&self, def: &VolumeDef, base: Option<&Pin>, fill: Option<&dyn Fill>) -> Result<()> {
        let dir = self.volume_dir(&def.name);
        let made = (|| {
            make_dir(&dir)?;
            match def.kind() {
                VolumeKind::Plain => self.make_data(def, fill)?,
                VolumeKind::CopyOnWrite => {
                    let upper = self.upper_dir(&def.name);
                    make_dir(&upper)?;
                    let of_base = match base {
                        Some(b) => root_of(b)?,
                        None => NEW_ROOT,
                    };
                    set_root(&upper, &of_base.with(&def.owner))?;
                    make_dir(&self.work_dir(&def.name))?;
                }
            }
            self.apply_quota(def)?;
            def.save(&dir)
        })();
        if made.is_err() {
            let _ = crate::util::remove_tree(&dir);
        }
        made
    }

    /// A plain volume's `data/`, filled aside first when there is something to fill it.
    fn make_data(&self, def: &VolumeDef, fill: Option<&dyn Fill>) -> Result<()> {
        let data = self.data_dir(&def.name);
        let Some(fill) = fill else {
            make_dir(&data)?;
            return set_root(&data, &NEW_ROOT.with(&def.owner));
        };
        let filling = self.volume_dir(&def.name).join(FILLING);
        remove_if_present(&filling)?;
        make_dir(&filling)?;
        set_root(&filling, &NEW_ROOT)?;
        fill.fill(&filling)
            .ctx(|| format!("volume {}", def.volume_name()))?;
        set_root(&filling, &def.owner)?;
        match fs::rename(&filling, &data) {
            Ok(()) => Ok(()),
            // Data without a definition (a creation cut short by an older version): it is the
            // volume's, and a volume with data is never filled.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                remove_if_present(&filling)
            }
            Err(e) => Err(e).ctx(|| format!("rename {} to data", filling.display())),
        }
    }

    /// Removes a volume that has no user, with its data. The definition goes last: a removal
    /// that fails part-way leaves a volume that `volume ls` still shows and `volume rm` can
    /// finish, never data without a definition.
    fn remove(&self, def: &VolumeDef) -> Result<()> {
        let dir = self.volume_dir(&def.name);
        for path in [
            self.data_dir(&def.name),
            dir.join(FILLING),
            self.upper_dir(&def.name),
            self.work_dir(&def.name),
            self.run_dir(&def.name),
            dir.join(volume::FILE),
            dir.clone(),
        ] {
            remove_if_present(&path)?;
        }
        if def.anonymous {
            // Nobody else can know a fresh random name: the lock file can go too.
            let _ = fs::remove_file(self.lock_path(&def.name));
        }
        Ok(())
    }

    /// Mounts the volume's overlay unless it is mounted already (then it is shared, by
    /// containers of one user-namespace view: see [`Store::with_userns`]).
    fn ensure_overlay(&self, def: &VolumeDef, base: &Pin) -> Result<PathBuf> {
        let target = self.overlay_target(&def.name);
        make_dir(&target)?;
        let view = self.userns.as_ref().map(|ns| ns.key());
        let view_file = self.run_dir(&def.name).join(IDMAP_FILE);
        if self.mounter.is_mounted(&target) {
            self.forget_lingering_locked(&def.name)?;
            // Written with every mount; none (an overlay of an older ocivol) is no mapping.
            let mounted_for = fsio::read_opt(&view_file)?
                .map(|text| text.trim().to_string())
                .filter(|t| !t.is_empty());
            if mounted_for != view && !self.has_users(&def.name)? {
                // A lingering overlay of another view: nobody uses it, mount this one's.
                self.mounter
                    .unmount(&target)
                    .ctx(|| format!("volume {}: unmount its overlay", def.name))?;
            } else if mounted_for != view {
                let show = |v: &Option<String>| match v {
                    Some(k) => format!("user-namespace mappings {k}"),
                    None => "no user-namespace mappings".to_string(),
                };
                return Err(StoreError::Conflict {
                    name: def.volume_name().to_string(),
                    reason: format!(
                        "its overlay is in use by containers with {}, and this one has {}; a copy-on-write volume is shared by containers of the same user-namespace mappings at a time",
                        show(&mounted_for),
                        show(&view)
                    ),
                });
            } else {
                return Ok(target);
            }
        }
        self.clear_work(&def.name)?;
        if def.volatile {
            // Changes of a volatile volume never outlive its last user, even after a crash.
            self.empty_aside(&self.upper_dir(&def.name), Weight::Heavy)?;
        }
        crate::util::write_atomic_unsynced(&view_file, view.unwrap_or_default().as_bytes())
            .ctx(|| format!("write {}", view_file.display()))?;
        self.mounter
            .mount_overlay(
                base,
                &self.upper_dir(&def.name),
                &self.work_dir(&def.name),
                &target,
                def.volatile,
                self.userns.as_deref(),
            )
            .ctx(|| format!("volume {}", def.name))?;
        Ok(target)
    }

    /// Before a mount, the state a previous overlay left in the work directory: start from an
    /// empty one. A clean unmount leaves only `work/work`, empty, and the last release removes
    /// it once the overlay is gone: the child a deferred unmount ends with (see
    /// `crate::util::sync_child`), or the release itself after an unmount in place. Freeing a
    /// directory's block costs 0.2 ms on this machine's disk (ext4 with `discard`), and the
    /// kernel would pay it in the next mount. What a crash left is found here: an empty
    /// `work/work` is removed in place; anything else is renamed into the trash, removed after
    /// the command (see trash): what a crash in the middle of a copy-up left in `work/work` (the
    /// kernel's cleanup goes one level deep, and mounts the overlay read-only when it fails), or
    /// a volatile overlay's incompat marker, which makes every later mount fail with EINVAL.
    fn clear_work(&self, name: &str) -> Result<()> {
        // Not empty, or not there: what follows sees it.
        self.remove_empty_overlay_work(name);
        self.empty_aside(&self.work_dir(name), Weight::Light)
    }

    /// The overlay's own directory in the volume's work directory.
    fn overlay_work_dir(&self, name: &str) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        self.work_dir(name)
            .join(std::ffi::OsStr::from_bytes(OVERLAY_WORK.to_bytes()))
    }

    /// Removes [`Store::overlay_work_dir`] if it is empty; anything else is left as it is.
    fn remove_empty_overlay_work(&self, name: &str) {
        let _ = fs::remove_dir(self.overlay_work_dir(name));
    }

    fn add_user(&self, name: &str, user: &str) -> Result<()> {
        let dir = self.users_dir(name);
        make_dir(&dir)?;
        UserRecord {
            container: user.to_string(),
            boot_id: boot_id(),
            owner: self.owner(),
            init: self.init_process(),
            container_dir: match &self.holder {
                Holder::Untracked(dir) => Some(dir.clone()),
                _ => None,
            },
        }
        .save(&dir.join(user))
    }

    /// Records the init process of the container of `record` (once its runtime has created it)
    /// in its user record of every volume it holds, so that its death alone tells that it is
    /// gone. Only records this store's owner took are changed: a newer create of the same ID
    /// owns the others.
    pub fn record_init(&self, record: &ContainerRecord, init: ProcessId) -> Result<()> {
        let key = &record.key();
        let owner = self.owner();
        for name in &record.volumes {
            let _lock = VolumeLock::take(&self.lock_path(name))?;
            let path = self.users_dir(name).join(key);
            if let Some(mut user) = UserRecord::load(&path, key)?
                && user.owner == owner
            {
                user.init = Some(init);
                user.save(&path)?;
            }
        }
        Ok(())
    }

    /// Saves what a container holds; written before the runtime runs. A container of a pod is
    /// indexed by its sandbox and name.
    pub fn save_container(&self, record: &ContainerRecord) -> Result<()> {
        self.make_state_dirs()?;
        record.save(&self.containers_dir())?;
        if let (Some(sandbox), Some(name)) = (&record.scope.sandbox, &record.scope.container_name) {
            names::set(&self.names_dir(), sandbox, name, &record.key())?;
        }
        Ok(())
    }

    pub fn load_container(&self, key: &str) -> Result<Option<ContainerRecord>> {
        ContainerRecord::load(&self.containers_dir(), key)
    }

    pub fn remove_container(&self, key: &str) -> Result<()> {
        let record = self.load_container(key).ok().flatten();
        ContainerRecord::remove(&self.containers_dir(), key)?;
        if let Some(r) = record
            && let (Some(sandbox), Some(name)) = (&r.scope.sandbox, &r.scope.container_name)
        {
            names::remove(&self.names_dir(), sandbox, name, key)?;
        }
        Ok(())
    }

    /// The record of the container called `name` in the pod of sandbox `sandbox`: one index
    /// entry and one record read. The index is a hint; the record must say the same.
    pub fn container_by_name(&self, sandbox: &str, name: &str) -> Result<Option<ContainerRecord>> {
        let Some(key) = names::get(&self.names_dir(), sandbox, name)? else {
            return Ok(None);
        };
        Ok(self.load_container(&key)?.filter(|r| {
            r.scope.sandbox.as_deref() == Some(sandbox)
                && r.scope.container_name.as_deref() == Some(name)
        }))
    }

    /// Whether the container of `record` may still be running, so that its record must not be
    /// released for another container with the same key: its init, when recorded, is alive; or,
    /// with no init recorded, some volume still counts it as a user that is not known to be gone.
    pub fn holder_alive(&self, record: &ContainerRecord) -> Result<bool> {
        if let Some(init) = record.init {
            return Ok(init.is_alive());
        }
        let key = record.key();
        for name in &record.volumes {
            let path = self.users_dir(name).join(&key);
            if let Some(user) = UserRecord::load(&path, &key)?
                && self.judge_user(&user) == Verdict::Alive
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Releases every volume a container holds. Idempotent. The record stays: the container may
    /// be started again, or be the source of a later volumes-from.
    pub fn release_container(&self, key: &str) -> Result<()> {
        match self.load_container(key)? {
            Some(record) => self.release_record(key, &record),
            None => self.unstage(key),
        }
    }

    /// [`Store::release_container`] of `key` whose record the caller has read already.
    pub fn release_record(&self, key: &str, record: &ContainerRecord) -> Result<()> {
        self.unstage(key)?;
        let mut first_err = None;
        for name in &record.volumes {
            if let Err(e) = self.release(name, key) {
                log::error!("release volume {name} of {}: {e}", record.id);
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = self.sweep_lingering() {
            log::warn!("unmount the lingering overlays whose time is up: {e}");
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Staged mounts go first: one of an overlay would keep its superblock after the unmount.
    fn unstage(&self, key: &str) -> Result<()> {
        crate::staging::unstage(&self.run_root, key)
            .ctx(|| format!("remove the staged mounts of {key}"))
    }

    /// Releases what a container holds and removes its record: for a container that never came
    /// to exist (its create failed).
    pub fn forget_container(&self, key: &str) -> Result<()> {
        self.release_container(key)?;
        self.remove_container(key)
    }
}

fn make_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .ctx(|| format!("create {}", path.display()))
}

/// The root of a new volume: 0755, owned by whoever made it (root:root, as Docker makes it, since
/// ocivol runs as root; left as it is so that the store's tests run without root).
const NEW_ROOT: Ownership = Ownership {
    uid: None,
    gid: None,
    mode: Some(0o755),
};

/// The owner and mode of an open directory (a base's root), from fstat of its fd: never by name.
fn root_of(dir: &Pin) -> Result<Ownership> {
    root_of_fd(dir.fd(), dir.path())
}

/// [`root_of`] for any open directory (`path` for messages).
fn root_of_fd(fd: std::os::fd::BorrowedFd, path: &Path) -> Result<Ownership> {
    let st = nix::sys::stat::fstat(fd)
        .map_err(io::Error::from)
        .ctx(|| format!("stat {}", path.display()))?;
    Ok(Ownership {
        uid: Some(st.st_uid),
        gid: Some(st.st_gid),
        mode: Some(st.st_mode & 0o7777),
    })
}

/// Gives one of ocivol's directories what `owner` names (the rest is left as it is), through an
/// fd: the owner first, as a chown clears set-id bits, then the mode, exactly (no umask).
fn set_root(path: &Path, owner: &Ownership) -> Result<()> {
    use nix::fcntl::OFlag;
    if owner.is_empty() {
        return Ok(());
    }
    let set = || -> nix::Result<()> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        if owner.uid.is_some() || owner.gid.is_some() {
            nix::unistd::fchown(
                &fd,
                owner.uid.map(nix::unistd::Uid::from_raw),
                owner.gid.map(nix::unistd::Gid::from_raw),
            )?;
        }
        if let Some(mode) = owner.mode {
            nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(mode))?;
        }
        Ok(())
    };
    set()
        .map_err(io::Error::from)
        .ctx(|| format!("set the owner and mode of {}", path.display()))
}

/// Empties a directory (it exists afterwards), with a bounded number of fds whatever its depth.
fn wipe_dir(path: &Path) -> Result<()> {
    match crate::util::empty_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(path),
        Err(e) => Err(e).ctx(|| format!("empty {}", path.display())),
    }
}

pub(super) use fsio::remove_if_present;

/// In a volume's run directory: the mappings its overlay was mounted for (see
/// [`Store::with_userns`]).
const IDMAP_FILE: &str = "idmap";
/// The overlay's own directory in its workdir; a C string, for the raw `unlinkat` of the child a
/// deferred unmount ends with.
const OVERLAY_WORK: &std::ffi::CStr = c"work";

/// A fresh name for an anonymous volume (or an unnamed container): 32 random hex digits, like
/// Docker's.
pub(crate) fn random_name() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ctx(|| "read /dev/urandom".to_string())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// This boot's ID, so a record from an earlier boot can be told apart.
pub fn boot_id() -> String {
    // It cannot change while this process lives: read once (a start with ten volumes asked 35
    // times).
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            crate::process::read_proc("/proc/sys/kernel/random/boot_id")
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mounts::tests::Recording;
    use std::sync::Arc;

    struct Shared(Arc<Recording>);
    impl Mounter for Shared {
        fn mount_overlay(
            &self,
            l: &Pin,
            u: &Path,
            w: &Path,
            t: &Path,
            v: bool,
            n: Option<&UserNs>,
        ) -> io::Result<()> {
            self.0.mount_overlay(l, u, w, t, v, n)
        }
        fn unmount(&self, t: &Path) -> io::Result<()> {
            self.0.unmount(t)
        }
        fn is_mounted(&self, t: &Path) -> bool {
            self.0.is_mounted(t)
        }
    }

    pub(super) fn store() -> (tempfile::TempDir, Store, Arc<Recording>) {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths {
            root: dir.path().join("root"),
            run_root: dir.path().join("run"),
        };
        let rec = Arc::new(Recording::default());
        let store = Store::new(&paths, Box::new(Shared(rec.clone())));
        (dir, store, rec)
    }

    pub(super) fn cow(name: &str, base: &Path, volatile: bool) -> VolumeRequest {
        VolumeRequest::shared(Some(name), Some(Pin::own(base).unwrap()), volatile)
    }

    /// A policy that allows every base under `/`.
    pub(super) fn guard() -> Guard {
        let policy = crate::config::Policy {
            allowed_bases: vec![crate::config::AllowedPath::new("/")],
            ..Default::default()
        };
        Guard::new(&policy, &[])
    }

    #[test]
    fn first_user_mounts_last_user_unmounts() {
        let (dir, s, rec) = store();
        let req = cow("v", dir.path(), false);
        let a = s.acquire(&req, "a", true, &guard()).unwrap();
        let b = s.acquire(&req, "b", true, &guard()).unwrap();
        assert_eq!(a.source, b.source);
        assert_eq!(*rec.mounts_made.lock().unwrap(), 1);
        assert_eq!(s.users("v").unwrap(), ["a", "b"]);
        s.release("v", "a").unwrap();
        assert!(s.is_mounted("v"));
        s.release("v", "b").unwrap();
        s.release("v", "b").unwrap();
        assert!(!s.is_mounted("v"));
        assert!(s.users("v").unwrap().is_empty());
        assert!(
            s.definition("v").unwrap().is_some(),
            "a named volume outlives its users"
        );
    }

    #[test]
    fn an_overlay_is_shared_by_containers_of_one_user_namespace_view() {
        let (dir, _, rec) = store();
        let paths = StatePaths {
            root: dir.path().join("root"),
            run_root: dir.path().join("run"),
        };
        let view = |host: u32| {
            let map = vec![crate::userns::IdMap {
                container_id: 0,
                host_id: host,
                size: 65536,
            }];
            let fd = fs::File::open("/proc/self/ns/user").unwrap().into();
            let mappings = crate::userns::Mappings {
                uids: map.clone(),
                gids: map,
            };
            Some(Arc::new(UserNs::from_parts(fd, mappings)))
        };
        let store = |userns| Store::new(&paths, Box::new(Shared(rec.clone()))).with_userns(userns);
        let req = cow("v", dir.path(), false);
        store(view(100_000))
            .acquire(&req, "a", true, &guard())
            .unwrap();
        store(view(100_000))
            .acquire(&req, "b", true, &guard())
            .unwrap();
        assert_eq!(*rec.mounts_made.lock().unwrap(), 1, "one overlay, shared");
        for (other, has) in [
            (view(200_000), "user-namespace mappings uid 0:200000:65536"),
            (None, "no user-namespace mappings"),
        ] {
            let e = store(other)
                .acquire(&req, "c", true, &guard())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("volume v: its overlay is in use by containers with user-namespace mappings uid 0:100000:65536, gid 0:100000:65536, and this one has ")
                    && e.contains(has),
                "{e}"
            );
        }
        assert_eq!(store(None).users("v").unwrap(), ["a", "b"], "no user taken");
        store(None).release("v", "a").unwrap();
        store(None).release("v", "b").unwrap();
        // Unmounted with its last user: the next one mounts it for its own view.
        store(None).acquire(&req, "c", true, &guard()).unwrap();
        assert_eq!(*rec.mounts_made.lock().unwrap(), 2);
        let e = store(view(100_000))
            .acquire(&req, "d", true, &guard())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("in use by containers with no user-namespace mappings"),
            "{e}"
        );
    }

    #[test]
    fn temporary_files_are_no_users_and_gc_removes_what_cut_short_writes_left() {
        let (dir, s, _) = store();
        let me = ProcessId::current().unwrap();
        let dead = format!(".ocivol-{}-{}-AbCdEf", me.pid, me.start + 1);
        s.acquire(&cow("v", dir.path(), false), "a", true, &guard())
            .unwrap();
        // A user record whose write was cut short, beside a real one.
        fs::write(s.users_dir("v").join(&dead), "").unwrap();
        assert_eq!(s.users("v").unwrap(), ["a"]);
        s.release("v", "a").unwrap();
        assert!(!s.is_mounted("v"), "a temporary file keeps no overlay");
        // An anonymous volume whose only entry in users/ is one.
        let anon = s
            .acquire(
                &VolumeRequest::shared(None, None, false),
                "b",
                true,
                &guard(),
            )
            .unwrap();
        fs::remove_file(s.users_dir(&anon.name).join("b")).unwrap();
        fs::write(s.users_dir(&anon.name).join(&dead), "").unwrap();
        // A creation cut short before the definition was written.
        fs::create_dir_all(s.data_dir("half")).unwrap();
        fs::write(s.volume_dir("half").join(&dead), "{").unwrap();
        // A container record's write cut short, and one being written (its writer lives).
        make_dir(&s.containers_dir()).unwrap();
        let live = format!(".ocivol-{}-{}-LiVe01", me.pid, me.start);
        fs::write(s.containers_dir().join(&dead), "").unwrap();
        fs::write(s.containers_dir().join(&live), "").unwrap();

        let lines = |actions: Vec<GcAction>, dry: bool| -> Vec<String> {
            let mut l: Vec<String> = actions.iter().map(|a| a.line(dry)).collect();
            l.sort();
            l
        };
        let show = |p: PathBuf| p.display().to_string();
        let mut want = vec![
            format!(
                "{} {}: a write that was cut short left it",
                "removed",
                show(s.users_dir("v").join(&dead))
            ),
            format!(
                "removed {}: a write that was cut short left it",
                show(s.users_dir(&anon.name).join(&dead))
            ),
            format!(
                "removed {}: a write that was cut short left it",
                show(s.volume_dir("half").join(&dead))
            ),
            format!(
                "removed {}: a write that was cut short left it",
                show(s.containers_dir().join(&dead))
            ),
            format!("removed anonymous volume {}: it has no user", anon.name),
            format!(
                "removed {}: volume half has no definition (its creation or removal was cut short)",
                show(s.volume_dir("half"))
            ),
        ];
        want.sort();
        let would: Vec<String> = want
            .iter()
            .map(|l| l.replacen("removed", "would remove", 1))
            .collect();
        let mut would = would;
        would.sort();
        assert_eq!(lines(s.gc(true).unwrap(), true), would);
        assert!(
            s.users_dir("v").join(&dead).exists(),
            "a dry run changes nothing"
        );
        assert_eq!(lines(s.gc(false).unwrap(), false), want);
        assert!(s.gc(false).unwrap().is_empty(), "one pass heals it all");
        assert!(s.definition(&anon.name).unwrap().is_none());
        assert!(!s.volume_dir(&anon.name).exists() && !s.volume_dir("half").exists());
        assert!(
            s.containers_dir().join(&live).exists(),
            "a write in progress is left alone"
        );
        assert_eq!(
            crate::util::dir_first_entries(&s.users_dir("v"), 10)
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn volatile_changes_are_wiped_after_last_user() {
        let (dir, s, _) = store();
        let req = cow("v", dir.path(), true);
        s.acquire(&req, "a", true, &guard()).unwrap();
        fs::write(s.upper_dir("v").join("change"), "x").unwrap();
        s.release("v", "a").unwrap();
        assert_eq!(fs::read_dir(s.upper_dir("v")).unwrap().count(), 0);
    }

    /// A container ID used before: its start releases the old record's volumes first. Where
    /// that ID is no user any more, the release is nothing at all: it does not wait for the
    /// volume's lock (held here as another container's start would hold it).
    #[test]
    fn releasing_a_volume_one_is_no_user_of_touches_nothing_and_waits_for_no_lock() {
        let (dir, s, _) = store();
        let s = Arc::new(s);
        s.acquire(&cow("v", dir.path(), false), "a", true, &guard())
            .unwrap();
        let held = VolumeLock::take(&s.lock_path("v")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = s.clone();
        std::thread::spawn(move || tx.send(s2.release("v", "gone").map_err(|e| e.to_string())));
        let done = rx.recv_timeout(std::time::Duration::from_secs(5));
        drop(held);
        assert_eq!(done, Ok(Ok(())), "returned without the lock");
        assert_eq!(s.users("v").unwrap(), ["a"]);
        s.release("v", "a").unwrap();
        assert!(s.users("v").unwrap().is_empty());
    }

    /// What a start and a release ask under the lock: is anyone left? Users from an earlier
    /// boot are dropped on the way; a live one after a dropped one still counts.
    #[test]
    fn whether_users_are_left_drops_the_gone_and_counts_the_rest() {
        let (dir, s, _) = store();
        s.acquire(&cow("v", dir.path(), false), "a", true, &guard())
            .unwrap();
        let stale = |key: &str| {
            UserRecord {
                container: key.to_string(),
                boot_id: "an earlier boot".into(),
                owner: None,
                init: None,
                container_dir: None,
            }
            .save(&s.users_dir("v").join(key))
            .unwrap()
        };
        let _lock = VolumeLock::take(&s.lock_path("v")).unwrap();
        assert!(s.users_left_locked("v").unwrap(), "a is alive");
        fs::remove_file(s.users_dir("v").join("a")).unwrap();
        assert!(!s.users_left_locked("v").unwrap(), "no user at all");
        stale("old");
        assert!(!s.users_left_locked("v").unwrap(), "only a gone one");
        assert!(s.users("v").unwrap().is_empty(), "which was dropped");
        for key in ["x1", "x2", "x3"] {
            stale(key);
        }
        s.add_user("v", "b").unwrap();
        assert!(s.users_left_locked("v").unwrap(), "b, in any order");
        assert!(s.users("v").unwrap().contains(&"b".to_string()));
    }

    #[test]
    fn anonymous_volume_goes_with_its_user() {
        let (_dir, s, _) = store();
        let req = VolumeRequest::shared(None, None, false);
        let a = s.acquire(&req, "a", false, &guard()).unwrap();
        assert_eq!(a.name.len(), 32);
        assert!(a.source.is_dir());
        s.release(&a.name, "a").unwrap();
        assert!(s.definition(&a.name).unwrap().is_none());
        assert!(!a.source.exists());
    }

    #[test]
    fn contradicting_an_existing_volume_is_an_error() {
        let (dir, s, _) = store();
        let other = dir.path().join("other");
        fs::create_dir(&other).unwrap();
        s.acquire(
            &VolumeRequest::shared(Some("p"), None, false),
            "a",
            true,
            &guard(),
        )
        .unwrap();
        let e = s
            .acquire(&cow("p", dir.path(), false), "b", true, &guard())
            .unwrap_err()
            .to_string();
        assert!(e.contains("volume p") && e.contains("plain"), "{e}");
        s.acquire(&cow("c", dir.path(), false), "a", true, &guard())
            .unwrap();
        let e = s
            .acquire(&cow("c", &other, false), "b", true, &guard())
            .unwrap_err()
            .to_string();
        assert!(e.contains("copy-on-write over"), "{e}");
        let e = s
            .acquire(&cow("c", dir.path(), true), "b", true, &guard())
            .unwrap_err()
            .to_string();
        assert!(e.contains("volatile"), "{e}");
        assert_eq!(s.users("c").unwrap(), ["a"]);
    }

    #[test]
    fn no_auto_create_means_no_new_volume() {
        let (_dir, s, _) = store();
        let e = s
            .acquire(
                &VolumeRequest::shared(Some("n"), None, false),
                "a",
                false,
                &guard(),
            )
            .unwrap_err();
        assert!(matches!(e, StoreError::NotFound { .. }));
        assert!(s.definition("n").unwrap().is_none());
    }

    fn scoped(name: &str, scope: &str, create_shared: bool) -> VolumeRequest {
        VolumeRequest {
            name: Some(name.into()),
            base: None,
            volatile: false,
            scope: Some(scope.into()),
            create_shared,
            owner: Ownership::default(),
            limits: Default::default(),
        }
    }

    #[test]
    fn a_name_is_its_scopes_own_volume_then_a_shared_one_then_a_new_one() {
        let (_dir, s, _) = store();
        let a = s
            .acquire(&scoped("cache", "root:/a", false), "u1", true, &guard())
            .unwrap();
        let b = s
            .acquire(&scoped("cache", "root:/b", false), "u2", true, &guard())
            .unwrap();
        assert_eq!(a.name, storage_name("cache", "root:/a"));
        assert_eq!(b.name, storage_name("cache", "root:/b"));
        assert_ne!(a.source, b.source, "two scopes, two volumes");
        let def = s.definition(&a.name).unwrap().unwrap();
        assert_eq!((def.volume_name(), def.scope_label()), ("cache", "root:/a"));

        // A shared volume: found by every scope that has none of its own.
        let mut shared = VolumeDef::new("tools", None, false, false);
        shared.scope = Some(ANY_SCOPE.into());
        s.create_volume(&shared, None).unwrap();
        for scope in ["root:/a", "root:/b"] {
            let got = s
                .acquire(&scoped("tools", scope, false), "u3", true, &guard())
                .unwrap();
            assert_eq!(got.name, "tools");
        }
        // ...but a scope's own comes first.
        let mut own = VolumeDef::new(&storage_name("tools", "root:/a"), None, false, false);
        own.scope = Some("root:/a".into());
        s.create_volume(&own, None).unwrap();
        let got = s
            .acquire(&scoped("tools", "root:/a", false), "u4", true, &guard())
            .unwrap();
        assert_eq!(got.name, own.name);

        // A name the policy shares is made shared.
        let got = s
            .acquire(&scoped("common", "root:/a", true), "u5", true, &guard())
            .unwrap();
        assert_eq!(got.name, "common");
        assert!(s.definition("common").unwrap().unwrap().is_shared());

        // Without auto_create, the error says which scope to create it in.
        let e = s
            .acquire(&scoped("nope", "root:/a", false), "u6", false, &guard())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--scope root:/a nope"), "{e}");
    }

    #[test]
    fn a_definition_of_another_scope_under_a_storage_name_is_refused() {
        let (_dir, s, _) = store();
        // What a hash collision (or a directory made by hand) would look like.
        let mut other = VolumeDef::new(&storage_name("c", "root:/a"), None, false, false);
        other.scope = Some("root:/b".into());
        s.create_volume(&other, None).unwrap();
        let e = s
            .acquire(&scoped("c", "root:/a", false), "u", true, &guard())
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to another scope"), "{e}");
        assert!(s.users(&other.name).unwrap().is_empty());
        // An anonymous volume is never a name's shared volume.
        let anon = s
            .acquire(
                &VolumeRequest::shared(None, None, false),
                "u",
                true,
                &guard(),
            )
            .unwrap();
        let got = s
            .acquire(&scoped(&anon.name, "root:/a", false), "v", true, &guard())
            .unwrap();
        assert_ne!(got.name, anon.name);
    }

    /// Writes a file into what it fills, or fails; counts its calls.
    struct Filler {
        calls: std::sync::Mutex<usize>,
        fail: bool,
    }
    impl Filler {
        fn new(fail: bool) -> Filler {
            Filler {
                calls: std::sync::Mutex::new(0),
                fail,
            }
        }
        fn calls(&self) -> usize {
            *self.calls.lock().unwrap()
        }
    }
    impl Fill for Filler {
        fn fill(&self, dir: &Path) -> io::Result<()> {
            *self.calls.lock().unwrap() += 1;
            if self.fail {
                return Err(io::Error::other("the image cannot be read"));
            }
            fs::write(dir.join("from-image"), "x")
        }
    }

    fn mode_owner(path: &Path) -> (u32, u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(path).unwrap();
        (m.mode() & 0o7777, m.uid(), m.gid())
    }

    #[test]
    fn only_the_use_that_creates_a_plain_volume_fills_it() {
        let (dir, s, _) = store();
        let f = Filler::new(false);
        let named = VolumeRequest::shared(Some("v"), None, false);
        let a = s
            .acquire_filled(&named, "a", true, &guard(), Some(&f))
            .unwrap();
        assert_eq!(f.calls(), 1);
        assert!(a.source.join("from-image").exists());
        fs::remove_file(a.source.join("from-image")).unwrap();
        s.acquire_filled(&named, "b", true, &guard(), Some(&f))
            .unwrap();
        assert_eq!(
            f.calls(),
            1,
            "a volume that exists is never filled, even empty"
        );
        let anon = VolumeRequest::shared(None, None, false);
        s.acquire_filled(&anon, "c", true, &guard(), Some(&f))
            .unwrap();
        assert_eq!(f.calls(), 2);
        s.acquire_filled(&cow("c", dir.path(), false), "d", true, &guard(), Some(&f))
            .unwrap();
        assert_eq!(f.calls(), 2, "a copy-on-write volume's content is its base");
        assert!(!s.volume_dir("v").join(FILLING).exists());
    }

    #[test]
    fn a_failed_or_interrupted_fill_leaves_no_volume() {
        let (_dir, s, _) = store();
        let req = VolumeRequest::shared(Some("v"), None, false);
        let e = s
            .acquire_filled(&req, "a", true, &guard(), Some(&Filler::new(true)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("volume v") && e.contains("cannot be read"),
            "{e}"
        );
        assert!(s.definition("v").unwrap().is_none());
        assert!(!s.volume_dir("v").exists());
        // What a fill killed half-way leaves: no definition, a half-filled directory aside.
        fs::create_dir_all(s.volume_dir("v").join(FILLING)).unwrap();
        fs::write(s.volume_dir("v").join(FILLING).join("half"), "").unwrap();
        let got = s
            .acquire_filled(&req, "a", true, &guard(), Some(&Filler::new(false)))
            .unwrap();
        assert_eq!(
            crate::util::dir_first_entries(&got.source, 10).unwrap(),
            ["from-image"]
        );
        assert!(!s.volume_dir("v").join(FILLING).exists());
    }

    #[test]
    fn new_roots_are_0755_or_their_bases_or_what_the_options_say() {
        let (dir, s, _) = store();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let plain = s
            .acquire(
                &VolumeRequest::shared(Some("p"), None, false),
                "a",
                true,
                &guard(),
            )
            .unwrap();
        assert_eq!(mode_owner(&plain.source), (0o755, me.0, me.1));
        let base = dir.path().join("base");
        fs::create_dir(&base).unwrap();
        fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o2711)).unwrap();
        s.acquire(&cow("c", &base, false), "a", true, &guard())
            .unwrap();
        assert_eq!(mode_owner(&s.upper_dir("c")), (0o2711, me.0, me.1));
        // A volatile volume's changes go, its root's owner and mode stay.
        s.acquire(&cow("vol", &base, true), "a", true, &guard())
            .unwrap();
        fs::write(s.upper_dir("vol").join("change"), "x").unwrap();
        s.release("vol", "a").unwrap();
        s.acquire(&cow("vol", &base, true), "b", true, &guard())
            .unwrap();
        assert_eq!(mode_owner(&s.upper_dir("vol")), (0o2711, me.0, me.1));
        assert!(!s.upper_dir("vol").join("change").exists());
        let mut req = VolumeRequest::shared(Some("o"), None, false);
        req.owner.mode = Some(0o1770);
        let got = s.acquire(&req, "a", true, &guard()).unwrap();
        assert_eq!(mode_owner(&got.source).0, 0o1770);
        assert_eq!(s.definition("o").unwrap().unwrap().owner.mode, Some(0o1770));
        // The state around a volume stays closed.
        assert_eq!(mode_owner(&s.volume_dir("o")).0, 0o700);
        assert_eq!(mode_owner(&s.work_dir("c")).0, 0o700);
        req.owner.mode = Some(0o755);
        let e = s
            .acquire(&req, "b", true, &guard())
            .unwrap_err()
            .to_string();
        assert!(e.contains("created with mode=1770, not mode=0755"), "{e}");
    }

    #[test]
    fn failed_mount_leaves_no_volume_and_no_user() {
        let (dir, s, _) = store();
        // The recording mounter refuses a lower layer that is not a directory.
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let req = cow("v", &file, false);
        assert!(s.acquire(&req, "a", true, &guard()).is_err());
        assert!(s.definition("v").unwrap().is_none());
        assert!(s.users("v").unwrap().is_empty());
    }

    /// Whether a mount is on `target` in this process's mount table.
    fn in_mount_table(target: &Path) -> bool {
        let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let target = target.to_str().unwrap();
        table.lines().any(|l| l.split(' ').nth(4) == Some(target))
    }

    /// Whether an overlay over `v`'s directories can be mounted with `index=on` now: such a
    /// mount refuses an upper directory that another overlay's superblock still uses.
    fn upper_is_free(s: &Store, base: &Path, probe: &Path) -> bool {
        let options = format!(
            "lowerdir={},upperdir={},workdir={},index=on",
            base.display(),
            s.upper_dir("v").display(),
            s.work_dir("v").display()
        );
        let mounted = nix::mount::mount(
            Some("ocivol-test"),
            probe,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(options.as_str()),
        );
        if mounted.is_ok() {
            nix::mount::umount2(probe, nix::mount::MntFlags::MNT_DETACH).unwrap();
        }
        mounted.is_ok()
    }

    /// A store on the real kernel, with its roots under `dir`, and a base there holding `f`.
    fn kernel_store(dir: &Path) -> (Store, PathBuf) {
        let paths = StatePaths {
            root: dir.join("root"),
            run_root: dir.join("run"),
        };
        let base = dir.join("base");
        fs::create_dir(&base).unwrap();
        fs::write(base.join("f"), "base").unwrap();
        (Store::new(&paths, Box::new(crate::mounts::Linux)), base)
    }

    /// The overlay's own state in the work directory, as the next mount finds it: empty after a
    /// clean unmount, or with what a crash in the middle of a copy-up left (a tree the kernel's
    /// one-level cleanup cannot remove: it then mounts the overlay read-only). Either way the
    /// next mount is writable and sees the changes made before.
    #[test]
    fn whatever_a_crash_left_in_the_work_directory_the_next_overlay_is_writable() {
        let Some(()) = crate::util::require_root(
            "whatever_a_crash_left_in_the_work_directory_the_next_overlay_is_writable",
        ) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (s, base) = kernel_store(dir.path());
        let req = cow("v", &base, false);
        let target = s.overlay_target("v");
        for (user, leftover) in [("a", None), ("b", None), ("c", Some("#7/sub/f"))] {
            if let Some(leftover) = leftover {
                let path = s.work_dir("v").join("work").join(leftover);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, "half a copy-up").unwrap();
            }
            s.acquire(&req, user, true, &guard()).unwrap();
            let written = fs::write(target.join(user), user);
            let seen: Vec<bool> = ["a", "b"].iter().map(|u| target.join(u).exists()).collect();
            s.release("v", user).unwrap();
            written.unwrap_or_else(|e| panic!("{user}: the overlay takes no write: {e}"));
            assert_eq!(seen[..], [true, user != "a"][..], "{user}");
        }
        assert!(!in_mount_table(&target));
        crate::store::trash::empty_now();
    }

    /// With `deferring_unmounts` (the runtime wrapper, the hooks) the last release takes the
    /// overlay out of the mount table at once and keeps its last reference and the volume's
    /// lock for the child the command ends with: the superblock (whose end syncs the upper
    /// filesystem) and the lock go only when that child has closed them. A lock this process
    /// takes again first closes what it holds of the volume: it never waits for itself.
    #[test]
    fn a_deferred_unmount_leaves_the_table_at_once_and_its_superblock_and_lock_with_the_child() {
        let Some(()) = crate::util::require_root(
            "a_deferred_unmount_leaves_the_table_at_once_and_its_superblock_and_lock_with_the_child",
        ) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (s, base) = kernel_store(dir.path());
        let s = s.deferring_unmounts();
        let probe = dir.path().join("probe");
        fs::create_dir(&probe).unwrap();
        let req = cow("v", &base, false);
        let target = s.overlay_target("v");

        s.acquire(&req, "a", true, &guard()).unwrap();
        fs::write(target.join("written"), "a").unwrap();
        s.release("v", "a").unwrap();
        assert!(!in_mount_table(&target), "gone from the table at once");
        let other = fs::OpenOptions::new()
            .write(true)
            .open(s.lock_path("v"))
            .unwrap();
        assert!(other.try_lock().is_err(), "the lock is still held");
        assert!(!upper_is_free(&s, &base, &probe), "the superblock lives");

        let overlay_work = s.overlay_work_dir("v");
        assert!(
            overlay_work.is_dir(),
            "the overlay's work/work is the child's"
        );
        let held = take_detached(true);
        assert_eq!(
            held.len(),
            3,
            "the overlay's root, its work directory and the lock"
        );
        let child = crate::util::sync_child::spawn::<std::os::fd::OwnedFd>(&[], held).unwrap();
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        other.try_lock().expect("the child has let the lock go");
        drop(other);
        // Before the probe, whose mount makes it again.
        assert!(!overlay_work.exists(), "the child removed work/work");
        assert!(upper_is_free(&s, &base, &probe), "the superblock is gone");
        assert_eq!(
            fs::read_to_string(s.upper_dir("v").join("written")).unwrap(),
            "a"
        );

        // Taken again by this process before the command ends: closed here first.
        s.acquire(&req, "b", true, &guard()).unwrap();
        s.release("v", "b").unwrap();
        let again = VolumeLock::try_take(&s.lock_path("v")).unwrap();
        assert!(again.is_some(), "this process does not wait for itself");
        assert!(!overlay_work.exists(), "removed here too");
        assert!(
            upper_is_free(&s, &base, &probe),
            "closed here, before the lock"
        );
        drop(again);
        let c = s.acquire(&req, "c", true, &guard()).unwrap();
        assert_eq!(fs::read_to_string(c.source.join("written")).unwrap(), "a");
        assert!(take_detached(true).is_empty(), "what it held is closed");
        s.release("v", "c").unwrap();
        drop(take_detached(false));
        assert!(!in_mount_table(&target));
        assert!(upper_is_free(&s, &base, &probe));
    }
}
