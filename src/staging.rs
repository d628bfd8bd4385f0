//! Staging mounts: what runc (or podman's runc, after `hook precreate`) is told to bind.
//!
//! A spec handed to the real runtime names paths that the runtime resolves again, by name,
//! while it creates the container. So ocivol never puts a host path a tenant could reach into a
//! spec: each checked source (an open fd) is cloned with `open_tree` and attached under ocivol's
//! own 0700 run root, at `RUN_ROOT/mnt/KEY/N`, and that path goes into config.json. Every
//! component of it is ocivol's; the mount's root is the directory that was checked.
//!
//! The runtime copies these mounts into the container's mount namespace during `create`; after
//! that they are not needed, and the wrapper removes them at once. Those made by `hook
//! precreate` stay until the container is released (poststop), as podman creates the container
//! later. `ocivol gc` removes the ones whose maker died (its pid and start time are in
//! `RUN_ROOT/mnt/KEY/owner`, which is there from the directory's first moment and goes last)
//! and, after a reboot, the run root is new anyway.
//!
//! For a container with a user namespace, each clone is idmapped to it before it is attached
//! (see [`crate::userns`]): runc 1.1 binds a mount with the idmap it has, and cannot add one.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::mounts::api;
use crate::pin::Pin;
use crate::process::ProcessId;
use crate::store::RecordedMount;
use crate::userns::Idmap;

const OWNER: &str = "owner";
/// The pid file the wrapper asks the runtime for (see `runtime::create`).
const PID: &str = "pid";

/// `RUN_ROOT/mnt`.
pub fn staging_root(run_root: &Path) -> PathBuf {
    run_root.join("mnt")
}

fn dir_of(run_root: &Path, key: &str) -> PathBuf {
    staging_root(run_root).join(key)
}

/// `RUN_ROOT/mnt/KEY/pid`: where the runtime writes the container's init pid when the caller
/// asked for no pid file. It goes with the staging ([`unstage`], or gc's [`abandoned`]).
pub fn pid_file(run_root: &Path, key: &str) -> PathBuf {
    dir_of(run_root, key).join(PID)
}

/// Attaches each pinned source at `RUN_ROOT/mnt/KEY/N` with the mount's own flags, private, and
/// idmapped as `idmap` says, and returns those paths (in the order of `mounts`). `owner`: the
/// process whose death means the staging is no longer needed (`None`: only a release removes
/// it). On error nothing is left.
pub fn stage(
    run_root: &Path,
    key: &str,
    mounts: &[RecordedMount],
    pins: &[Pin],
    owner: Option<ProcessId>,
    idmap: Option<&Idmap>,
) -> io::Result<Vec<PathBuf>> {
    let dir = dir_of(run_root, key);
    // A leftover of an earlier create of the same key (a crashed wrapper) goes first.
    unstage(run_root, key)?;
    let staged = (|| {
        make_owned_dir(run_root, &dir, owner)?;
        let mut paths = Vec::with_capacity(mounts.len());
        for (i, (m, pin)) in mounts.iter().zip(pins).enumerate() {
            let target = dir.join(i.to_string());
            if pin.is_dir() {
                fs::DirBuilder::new().mode(0o700).create(&target)?;
            } else {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)?;
            }
            // A host path is bound with what is mounted below it (as `-v` does); a volume alone.
            let tree = api::clone_private(
                pin.fd(),
                m.volume.is_none(),
                m.flags.mount_attr(),
                idmap.and_then(|i| i.for_mount(m)),
                pin.path(),
            )
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", what(m))))?;
            api::move_onto_path(tree.as_fd(), &target)?;
            paths.push(target);
        }
        Ok(paths)
    })();
    if staged.is_err()
        && let Err(e) = unstage(run_root, key)
    {
        log::error!("remove the staging of {key} after a failure: {e}");
    }
    staged
}

/// Makes `RUN_ROOT/mnt/KEY` with its owner file already in it: the directory is made under a
/// temporary name (see [`crate::util::TEMP_PREFIX`]: it names this process) with the file,
/// then renamed into place. So a staging directory always says who made it (`null`: no
/// process, only a release removes it), and one whose maker was killed before the rename is a
/// temporary directory with no mount in it, which gc removes once its maker is dead.
fn make_owned_dir(run_root: &Path, dir: &Path, owner: Option<ProcessId>) -> io::Result<()> {
    let root = staging_root(run_root);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root)?;
    let tmp = crate::util::temp_dir_in(&root)?;
    let made = (|| {
        let text = serde_json::to_vec(&owner).map_err(io::Error::other)?;
        fs::write(tmp.join(OWNER), text)?;
        fs::rename(&tmp, dir)
    })();
    if made.is_err() {
        let _ = fs::remove_file(tmp.join(OWNER));
        let _ = fs::remove_dir(&tmp);
    }
    made
}
/// How a mount is named in an error: its volume or source, and its destination.
pub fn what(m: &RecordedMount) -> String {
    match &m.volume {
        Some(v) => format!("volume {v} at {}", m.destination.display()),
        None => format!(
            "bind of {} at {}",
            m.source.display(),
            m.destination.display()
        ),
    }
}

/// Detaches and removes everything staged for `key`. Idempotent. The owner file goes last: a
/// removal cut short leaves a directory that still names its maker, so gc finishes it.
pub fn unstage(run_root: &Path, key: &str) -> io::Result<()> {
    let dir = dir_of(run_root, key);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let remove = |path: &Path| match fs::remove_dir(path).or_else(|_| fs::remove_file(path)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("remove {}: {e}", path.display()),
        )),
        _ => Ok(()),
    };
    for entry in entries {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n == OWNER) {
            continue;
        }
        if path.file_name().is_some_and(|n| n == PID) {
            remove(&path)?;
            continue;
        }
        // The container keeps its own copy: detaching ours never touches it.
        match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("unmount {}: {e}", path.display()),
                ));
            }
        }
        // An entry is an empty directory or file once detached: never a tree to walk.
        remove(&path)?;
        crate::crash::point("mid-unstage");
    }
    remove(&dir.join(OWNER))?;
    match fs::remove_dir(&dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The keys with staging whose maker is dead (for gc), and the temporary directories of makers
/// that died before they renamed them into place (see [`make_owned_dir`]; [`unstage`] removes
/// them as it removes a key's). Staging whose owner file says `null` (a precreate hook's) or
/// that has no owner file is left to its release.
pub fn abandoned(run_root: &Path) -> io::Result<Vec<String>> {
    let root = staging_root(run_root);
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(key) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if crate::util::is_temp_name(&entry.file_name()) {
            if crate::util::stale_temp(&entry.path()) {
                keys.push(key);
            }
            continue;
        }
        let owner: Option<ProcessId> = fs::read(entry.path().join(OWNER))
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok());
        if let Some(owner) = owner
            && crate::process::start_time(owner.pid) != Some(owner.start)
        {
            keys.push(key);
        }
    }
    keys.sort();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_finds_the_staging_of_dead_makers_and_their_unfinished_directories() {
        let run = tempfile::tempdir().unwrap();
        let me = ProcessId::current().unwrap();
        let dead = ProcessId {
            start: me.start + 1,
            ..me
        };
        let root = staging_root(run.path());
        // Made as stage() makes them: owner first, then entries.
        for (key, owner) in [
            ("mine", Some(me)),
            ("gone", Some(dead)),
            ("precreate", None),
        ] {
            make_owned_dir(run.path(), &dir_of(run.path(), key), owner).unwrap();
            fs::create_dir(dir_of(run.path(), key).join("0")).unwrap();
        }
        assert_eq!(
            fs::read_to_string(root.join("precreate").join(OWNER)).unwrap(),
            "null"
        );
        // A maker killed before it renamed its directory into place.
        let unfinished = format!(".ocivol-{}-{}-AbCdEf", dead.pid, dead.start);
        fs::create_dir(root.join(&unfinished)).unwrap();
        fs::write(root.join(&unfinished).join(OWNER), "{\"pid\":").unwrap();
        // Staging without an owner file (an older ocivol's precreate): left to its release.
        fs::create_dir(root.join("older")).unwrap();
        assert_eq!(
            abandoned(run.path()).unwrap(),
            [unfinished.clone(), "gone".into()]
        );
        for key in abandoned(run.path()).unwrap() {
            unstage(run.path(), &key).unwrap();
        }
        let mut left: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["mine", "older", "precreate"]);
        assert!(
            !fs::read_dir(&root)
                .unwrap()
                .any(|e| crate::util::is_temp_name(&e.unwrap().file_name())),
            "no temporary directory of the makes above is left"
        );
    }
}
