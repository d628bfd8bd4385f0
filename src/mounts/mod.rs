//! The thin layer that touches the kernel's mount table: one overlayfs per copy-on-write volume.
//!
//! Everything above this talks to a [`Mounter`]; [`Linux`] does the syscalls and
//! [`tests::Recording`]-style fakes let the store's bookkeeping be tested without root.

pub mod api;
pub mod flags;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::MntFlags;

use crate::pin::Pin;
use crate::userns::UserNs;

pub trait Mounter: Send + Sync {
    /// Mounts an overlay of `lower` (checked and open; never written) with `upper`/`work` (the
    /// volume's own directories, in one directory) on `target`; with `idmap`, over layers
    /// idmapped through that user namespace, so that the overlay shows its files as that
    /// namespace sees them.
    fn mount_overlay(
        &self,
        lower: &Pin,
        upper: &Path,
        work: &Path,
        target: &Path,
        volatile: bool,
        idmap: Option<&UserNs>,
    ) -> io::Result<()>;
    /// Unmounts `target`.
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// Takes the overlay on `target` out of the mount tree at once and returns its last
    /// reference: the superblock, and the kernel's sync of the upper filesystem as it goes, wait
    /// until that descriptor is closed (see `crate::util::sync_child`). `None`: unmounted
    /// already, nothing to hold.
    fn detach(&self, target: &Path) -> io::Result<Option<OwnedFd>> {
        self.unmount(target).map(|()| None)
    }
    /// Whether an overlay is mounted on `target`.
    fn is_mounted(&self, target: &Path) -> bool;
}

/// The real kernel.
pub struct Linux;

impl Mounter for Linux {
    /// The layers go to the kernel as fds (see [`api::overlay`]): the base is the directory
    /// that was checked, whatever its path names by now.
    ///
    /// An overlay cannot be idmapped itself (this kernel refuses MOUNT_ATTR_IDMAP on one with
    /// EINVAL), but its layers can: the base and the volume's directory (upper and work must be
    /// on one mount) are cloned, idmapped, and the overlay is made over the clones, as the
    /// namespace's root (see [`api::overlay`]'s `creator`).
    fn mount_overlay(
        &self,
        lower: &Pin,
        upper: &Path,
        work: &Path,
        target: &Path,
        volatile: bool,
        idmap: Option<&UserNs>,
    ) -> io::Result<()> {
        let mounted = match idmap {
            None => {
                let upper = Pin::own(upper)?;
                let work = Pin::own(work)?;
                let layers = api::Layers {
                    lower: lower.fd(),
                    upper: upper.fd(),
                    work: work.fd(),
                };
                api::overlay(&layers, volatile, None)
            }
            Some(ns) => idmapped_overlay(lower, upper, work, volatile, ns),
        };
        mounted
            .and_then(|tree| api::move_onto_path(tree.as_fd(), target))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "mount overlay of {} on {}: {e}",
                        lower.path().display(),
                        target.display()
                    ),
                )
            })
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => Ok(()),
            // Something on the host still has a file open in it: detach it so that the volume's
            // state stays consistent; the superblock goes when the last reference does.
            Err(nix::errno::Errno::EBUSY) => {
                log::warn!("{} is busy; detaching it", target.display());
                nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(|e| {
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("unmount {}: {e}", target.display()),
                    )
                })
            }
            Err(e) => Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("unmount {}: {e}", target.display()),
            )),
        }
    }

    /// Opens the overlay's root (`O_PATH`: a reference to the mount, nothing read), then
    /// detaches the mount; what still has a file open in it keeps it, as with
    /// [`Mounter::unmount`]'s fallback.
    fn detach(&self, target: &Path) -> io::Result<Option<OwnedFd>> {
        let failed = |what: &str, e: nix::errno::Errno| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("{what} {}: {e}", target.display()),
            )
        };
        let root = nix::fcntl::open(
            target,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| failed("open", e))?;
        nix::mount::umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
            .map_err(|e| failed("unmount", e))?;
        Ok(Some(root))
    }

    fn is_mounted(&self, target: &Path) -> bool {
        // A mount point has another device than its parent; only overlays are mounted there.
        let (Ok(here), Some(Ok(parent))) = (
            std::fs::metadata(target),
            target.parent().map(std::fs::metadata),
        ) else {
            return false;
        };
        here.dev() != parent.dev()
            && nix::sys::statfs::statfs(target)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC)
    }
}

/// A detached overlay of `lower` with `upper` and `work`, over clones of them idmapped through
/// `ns`.
fn idmapped_overlay(
    lower: &Pin,
    upper: &Path,
    work: &Path,
    volatile: bool,
    ns: &UserNs,
) -> io::Result<OwnedFd> {
    let (Some(dir), Some(upper_name), Some(work_name)) =
        (upper.parent(), upper.file_name(), work.file_name())
    else {
        return Err(io::Error::other(
            "an overlay's upper and work need a parent",
        ));
    };
    if work.parent() != Some(dir) {
        return Err(io::Error::other(format!(
            "{} and {} are not in one directory",
            upper.display(),
            work.display()
        )));
    }
    let creator = ns.root_ids().ok_or_else(|| {
        io::Error::other("the user namespace maps no ids, so no overlay can be made for it")
    })?;
    let idmapped = |pin: &Pin| {
        let tree = api::clone_tree(pin.fd(), false, pin.path())?;
        api::set_idmap(tree.as_fd(), ns.fd(), false)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", pin.path().display())))?;
        Ok::<_, io::Error>(tree)
    };
    let lower_tree = idmapped(lower)?;
    let dir_tree = idmapped(&Pin::own(dir)?)?;
    // Beneath the clone, no symlink: both are the volume's own directories.
    let beneath = |name: &std::ffi::OsStr| {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        crate::util::openat2(&dir_tree, Path::new(name), how).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("open {}: {e}", dir.join(name).display()),
            )
        })
    };
    let upper_fd = beneath(upper_name)?;
    let work_fd = beneath(work_name)?;
    let layers = api::Layers {
        lower: lower_tree.as_fd(),
        upper: upper_fd.as_fd(),
        work: work_fd.as_fd(),
    };
    api::overlay(&layers, volatile, Some(creator))
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::PathBuf;
    use std::sync::Mutex;

    /// A fake kernel that remembers what is mounted, and how many mounts were ever made.
    #[derive(Default)]
    pub struct Recording {
        pub mounted: Mutex<HashSet<PathBuf>>,
        pub mounts_made: Mutex<usize>,
    }

    impl Mounter for Recording {
        fn mount_overlay(
            &self,
            lower: &Pin,
            _upper: &Path,
            _work: &Path,
            target: &Path,
            _volatile: bool,
            _idmap: Option<&UserNs>,
        ) -> io::Result<()> {
            if !lower.is_dir() {
                return Err(io::Error::other("the lower layer is not a directory"));
            }
            let mut m = self.mounted.lock().unwrap();
            if !m.insert(target.to_path_buf()) {
                return Err(io::Error::other("already mounted"));
            }
            *self.mounts_made.lock().unwrap() += 1;
            Ok(())
        }
        fn unmount(&self, target: &Path) -> io::Result<()> {
            if self.mounted.lock().unwrap().remove(target) {
                Ok(())
            } else {
                Err(io::Error::other("not mounted"))
            }
        }
        fn is_mounted(&self, target: &Path) -> bool {
            self.mounted.lock().unwrap().contains(target)
        }
    }
}
