//! The operator's data operations on a volume: export its content (or a copy-on-write volume's
//! changes as an OCI layer), import an archive, commit base + changes as a new base directory,
//! clone a volume.
//!
//! Each works under the volume's lock on a volume no container uses (after dropping the users
//! whose container is gone): a volume in use is refused with the containers that use it. An
//! export of a volume being written would not be one moment's content, and nothing short of
//! freezing every user can make it one; so ocivol refuses rather than write a torn archive.
//! The lock is held to the end, so no container starts using the volume meanwhile (its create
//! waits).
//!
//! A copy-on-write volume's content (base + changes) is read through an overlay of its own:
//! a detached mount (fsmount, never attached anywhere, read-only for a read) made under the
//! lock over the checked base, gone when its fd is closed, even if ocivol is killed; or its
//! overlay itself when it is still mounted with no user.
//!
//! Nothing is half-done on failure: an import writes into a new directory beside the volume's
//! data or changes (`data.import`, `upper.import`, `work.import`) and exchanges it with them
//! atomically (renameat2 RENAME_EXCHANGE) only once complete; a commit writes a hidden directory
//! beside its target and renames it into place (RENAME_NOREPLACE); a clone saves the new
//! volume's definition last. A failure removes what was made; one killed half-way leaves the
//! directory aside, which the next import, the volume's removal or `ocivol gc` clears (an import
//! holds the volume's lock to its end, so one found under the lock is no import's any more).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fstatat, mkdirat};

use super::lock::VolumeLock;
use super::{
    IoContext, Result, Store, StoreError, VolumeDef, VolumeKind, make_dir, remove_if_present,
    root_of_fd, set_root, wipe_dir,
};
use crate::archive::{self, Extracted, Kind};
use crate::copyup::{Opts, copy_dir};
use crate::mounts::api;
use crate::pin::{Guard, Pin};

/// Beside a volume's data or changes: where an import is written before it replaces them.
const IMPORT_DATA: &str = "data.import";
const IMPORT_UPPER: &str = "upper.import";
const IMPORT_WORK: &str = "work.import";

impl Store {
    /// What imports killed half-way left beside volume `name`'s data or changes. Only
    /// meaningful under the volume's lock, which an import holds to its end.
    pub(super) fn import_leftovers(&self, name: &str) -> Vec<PathBuf> {
        let dir = self.volume_dir(name);
        [IMPORT_DATA, IMPORT_UPPER, IMPORT_WORK]
            .iter()
            .map(|n| dir.join(n))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect()
    }
}

/// An open view of a volume's content; a private overlay goes when this is dropped.
struct View {
    dir: OwnedFd,
    /// The detached overlay the view reads, if one was made for it (held for its drop).
    mount: Option<OwnedFd>,
}

impl Store {
    /// Takes the volume's lock and its definition, refusing a volume in use (see the module).
    fn hold_unused(&self, name: &str, why: &str) -> Result<(VolumeLock, VolumeDef)> {
        let (lock, def) = self.lock_definition(name)?;
        self.refuse_in_use_locked(&def, why)?;
        Ok((lock, def))
    }

    /// The volume's content as its users see it (under its lock, with no user).
    fn view(&self, def: &VolumeDef, guard: &Guard) -> Result<View> {
        let what = || format!("volume {}", def.volume_name());
        match def.kind() {
            VolumeKind::Plain => Ok(View {
                dir: open_dir(&self.data_dir(&def.name)).ctx(what)?,
                mount: None,
            }),
            VolumeKind::CopyOnWrite => {
                let base = self
                    .base_of(def, None, guard)?
                    .expect("a copy-on-write volume has a base");
                if self.is_mounted(&def.name) {
                    return Ok(View {
                        dir: open_dir(&self.overlay_target(&def.name)).ctx(what)?,
                        mount: None,
                    });
                }
                let upper = self.upper_dir(&def.name);
                let work = self.work_dir(&def.name);
                // As a mount of the volume does: a workdir from an earlier overlay is stale.
                wipe_dir(&work)?;
                let tree = detached_overlay(&base, &upper, &work, true).ctx(what)?;
                let dir = open_in(&tree).ctx(what)?;
                Ok(View {
                    dir,
                    mount: Some(tree),
                })
            }
        }
    }

    /// Writes the volume's content (`Kind::Full`: as its users see it) or a copy-on-write
    /// volume's changes (`Kind::Layer`: an OCI image layer) to `out` as tar.
    pub fn export<W: Write>(&self, name: &str, kind: Kind, guard: &Guard, out: W) -> Result<W> {
        let (_lock, def) = self.hold_unused(
            name,
            "stop its containers first: an archive of a volume being written would not be one moment's content",
        )?;
        let what = || format!("volume {}: export", def.volume_name());
        let (dir, _mount) = match kind {
            Kind::Full => {
                let view = self.view(&def, guard)?;
                (view.dir, view.mount)
            }
            Kind::Layer => {
                if def.kind() != VolumeKind::CopyOnWrite {
                    return Err(conflict(
                        &def,
                        "it is a plain volume; only a copy-on-write volume has changes to export as a layer (export it whole without --changes)",
                    ));
                }
                (open_dir(&self.upper_dir(&def.name)).ctx(what)?, None)
            }
        };
        archive::write(dir, out, kind).ctx(what)
    }

    /// Replaces the volume's content with the archive's (`Kind::Full`; a copy-on-write volume's
    /// changes are replaced by what makes its base show exactly the archive),
    /// or applies an OCI layer over its content (`Kind::Layer`). All or nothing.
    pub fn import<R: Read>(
        &self,
        name: &str,
        kind: Kind,
        guard: &Guard,
        input: R,
    ) -> Result<Extracted> {
        let (_lock, def) = self.hold_unused(
            name,
            "stop its containers first: they would see the archive arrive half-written",
        )?;
        let what = || format!("volume {}: import", def.volume_name());
        let vdir = self.volume_dir(&def.name);
        match def.kind() {
            VolumeKind::Plain => {
                let data = self.data_dir(&def.name);
                let temp = vdir.join(IMPORT_DATA);
                remove_if_present(&temp)?;
                let done = (|| {
                    make_dir(&temp)?;
                    start_from(&data, &temp, kind, false)?;
                    let got = archive::extract(input, &open_dir(&temp).ctx(what)?, kind, false)
                        .ctx(what)?;
                    crate::crash::point("mid-import");
                    exchange(&vdir, IMPORT_DATA, "data")?;
                    Ok(got)
                })();
                remove_if_present(&temp)?;
                done
            }
            VolumeKind::CopyOnWrite => {
                let base = self
                    .base_of(&def, None, guard)?
                    .expect("a copy-on-write volume has a base");
                self.unmount_if_mounted(&def)?;
                let upper = self.upper_dir(&def.name);
                let (temp, temp_work) = (vdir.join(IMPORT_UPPER), vdir.join(IMPORT_WORK));
                remove_if_present(&temp)?;
                remove_if_present(&temp_work)?;
                let done = (|| {
                    make_dir(&temp)?;
                    make_dir(&temp_work)?;
                    start_from(&upper, &temp, kind, true)?;
                    {
                        let tree = detached_overlay(&base, &temp, &temp_work, false).ctx(what)?;
                        let dir = open_in(&tree).ctx(what)?;
                        // A whole archive is the volume's whole content: what the base has
                        // beyond it is hidden (whiteouts in the new upper).
                        let got =
                            archive::extract(input, &dir, kind, kind == Kind::Full).ctx(what)?;
                        // The overlay goes with its fds, before its upper is moved.
                        drop(dir);
                        drop(tree);
                        crate::crash::point("mid-import");
                        exchange(&vdir, IMPORT_UPPER, "upper")?;
                        Ok(got)
                    }
                })();
                remove_if_present(&temp)?;
                remove_if_present(&temp_work)?;
                wipe_dir(&self.work_dir(&def.name))?;
                done
            }
        }
    }

    /// Writes the volume's content (base + changes, or a plain volume's data) into a new
    /// directory `new_name` of `parent` (an open, checked directory under an allowed base),
    /// atomically; with `reset`, discards the volume's changes afterwards. Returns the new
    /// directory's path.
    pub fn commit(
        &self,
        name: &str,
        parent: &Pin,
        new_name: &OsStr,
        reset: bool,
        guard: &Guard,
    ) -> Result<PathBuf> {
        let (_lock, def) = self.hold_unused(
            name,
            "stop its containers first: a commit of a volume being written would not be one moment's content",
        )?;
        if reset && def.kind() != VolumeKind::CopyOnWrite {
            return Err(conflict(
                &def,
                "it is a plain volume; --reset discards the changes of a copy-on-write volume",
            ));
        }
        let target = parent.path().join(new_name);
        let exists = |p: &Path| conflict(&def, &format!("{} exists already", p.display()));
        match fstatat(parent.fd(), new_name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => return Err(exists(&target)),
            Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(std::io::Error::from(e)).ctx(|| format!("stat {}", target.display()));
            }
        }
        let view = self.view(&def, guard)?;
        let mut temp = OsString::from(".");
        temp.push(new_name);
        temp.push(format!(".ocivol-commit-{}", std::process::id()));
        let temp_path = parent.path().join(&temp);
        mkdirat(
            parent.fd(),
            temp.as_os_str(),
            Mode::from_bits_truncate(0o700),
        )
        .map_err(std::io::Error::from)
        .ctx(|| format!("create {}", temp_path.display()))?;
        let made = (|| -> std::io::Result<()> {
            let dst = openat(
                parent.fd(),
                temp.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let View { dir, mount } = view;
            copy_dir(dir, dst, Opts::default())?;
            drop(mount);
            crate::util::renameat2(
                parent.fd(),
                temp.as_os_str(),
                parent.fd(),
                new_name,
                libc::RENAME_NOREPLACE,
            )?;
            Ok(())
        })();
        if let Err(e) = made {
            let parent_fd = parent.fd().try_clone_to_owned();
            if let Ok(fd) = parent_fd {
                let _ = crate::util::remove_tree_at(&fd, &temp, &temp_path);
            }
            if e.raw_os_error() == Some(libc::EEXIST) {
                return Err(exists(&target));
            }
            return Err(e).ctx(|| {
                format!(
                    "volume {}: commit to {}",
                    def.volume_name(),
                    target.display()
                )
            });
        }
        if reset {
            self.unmount_if_mounted(&def)?;
            wipe_dir(&self.upper_dir(&def.name))?;
            wipe_dir(&self.work_dir(&def.name))?;
        }
        Ok(target)
    }

    /// Makes `new` (a definition with its storage name, scope and labels) a copy of volume
    /// `src`: the same base and a copy of its changes, or a copy of a plain volume's data. File
    /// data is reflinked where the filesystem can.
    pub fn clone_volume(&self, src: &str, new: &VolumeDef, guard: &Guard) -> Result<VolumeDef> {
        let (_lock, def) = self.hold_unused(
            src,
            "stop its containers first: a copy of a volume being written would not be one moment's content",
        )?;
        if new.name == def.name {
            return Err(conflict(&def, "a clone needs another name"));
        }
        let _new_lock = VolumeLock::take(&self.lock_path(&new.name))?;
        if self.definition(&new.name)?.is_some() || self.volume_dir(&new.name).exists() {
            return Err(StoreError::Conflict {
                name: new.volume_name().to_string(),
                reason: format!(
                    "a volume of this name exists already in scope {}",
                    new.scope_label()
                ),
            });
        }
        if def.kind() == VolumeKind::CopyOnWrite {
            // Refused now rather than at its first use: its base must still be allowed.
            self.base_of(&def, None, guard)?;
        }
        let mut made = new.clone();
        made.base = def.base.clone();
        made.volatile = def.volatile;
        made.anonymous = false;
        made.owner = def.owner;
        let dir = self.volume_dir(&made.name);
        let what = || format!("volume {}: clone", def.volume_name());
        let done = (|| {
            make_dir(&dir)?;
            let (from, to, upper) = match def.kind() {
                VolumeKind::Plain => (self.data_dir(&def.name), self.data_dir(&made.name), false),
                VolumeKind::CopyOnWrite => {
                    make_dir(&self.work_dir(&made.name))?;
                    (self.upper_dir(&def.name), self.upper_dir(&made.name), true)
                }
            };
            make_dir(&to)?;
            copy_dir(
                open_dir(&from).ctx(what)?,
                open_dir(&to).ctx(what)?,
                Opts { ids: None, upper },
            )
            .ctx(what)?;
            made.save(&dir)
        })();
        if done.is_err() {
            let _ = crate::util::remove_tree(&dir);
        }
        done.map(|()| made)
    }
}

fn conflict(def: &VolumeDef, reason: &str) -> StoreError {
    StoreError::Conflict {
        name: def.volume_name().to_string(),
        reason: reason.to_string(),
    }
}

/// What an import starts from in `temp`: nothing but the root's owner and mode (a whole
/// archive replaces the content), or a copy of the content (a layer applies over it; `upper`:
/// an overlay's upper, copied with its whiteouts).
fn start_from(current: &Path, temp: &Path, kind: Kind, upper: bool) -> Result<()> {
    let what = || format!("copy {} to {}", current.display(), temp.display());
    match kind {
        Kind::Full => {
            let root = root_of_fd(open_dir(current).ctx(what)?.as_fd(), current)?;
            set_root(temp, &root)
        }
        Kind::Layer => copy_dir(
            open_dir(current).ctx(what)?,
            open_dir(temp).ctx(what)?,
            Opts { ids: None, upper },
        )
        .ctx(what),
    }
}

/// Swaps `temp` and `name` in `dir`, atomically: the volume has its old content or its new one.
fn exchange(dir: &Path, temp: &str, name: &str) -> Result<()> {
    let fd = open_dir(dir).ctx(|| format!("open {}", dir.display()))?;
    crate::util::renameat2(&fd, temp, &fd, name, libc::RENAME_EXCHANGE)
        .map_err(std::io::Error::from)
        .ctx(|| format!("exchange {temp} and {name} in {}", dir.display()))
}

/// A detached overlay of the volume (never attached to any mount point: it goes with its last
/// fd), read-only when `readonly`.
fn detached_overlay(
    base: &Pin,
    upper: &Path,
    work: &Path,
    readonly: bool,
) -> std::io::Result<OwnedFd> {
    let upper = Pin::own(upper)?;
    let work = Pin::own(work)?;
    let layers = api::Layers {
        lower: base.fd(),
        upper: upper.fd(),
        work: work.fd(),
    };
    let tree = api::overlay(&layers, false, None)?;
    if readonly {
        api::set_attr_private(tree.as_fd(), api::MOUNT_ATTR_RDONLY, base.path())?;
    }
    Ok(tree)
}

/// A readable fd of the root of a detached mount.
fn open_in(tree: &OwnedFd) -> std::io::Result<OwnedFd> {
    Ok(openat(
        tree,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// One of ocivol's own directories, opened for reading (never through a symlink at its end).
fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    openat(
        nix::fcntl::AT_FDCWD,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        let e = std::io::Error::from(e);
        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    })
}
