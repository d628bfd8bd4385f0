//! The thin layer that touches the kernel's mount table: one overlayfs per copy-on-write volume.
//!
//! Everything above this talks to a [`Mounter`]; [`Linux`] does the syscalls and
//! [`tests::Recording`]-style fakes let the store's bookkeeping be tested without root.

pub mod api;

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::mount::MntFlags;

use crate::pin::Pin;

/// Filesystem magic of overlayfs (`statfs.f_type`).
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

pub trait Mounter: Send + Sync {
    /// Mounts an overlay of `lower` (checked and open; never written) with `upper`/`work` (the
    /// volume's own directories) on `target`.
    fn mount_overlay(
        &self,
        lower: &Pin,
        upper: &Path,
        work: &Path,
        target: &Path,
        volatile: bool,
    ) -> io::Result<()>;
    /// Unmounts `target`.
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// Whether an overlay is mounted on `target`.
    fn is_mounted(&self, target: &Path) -> bool;
}

/// The real kernel.
pub struct Linux;

impl Mounter for Linux {
    /// The layers go to the kernel as fds (see [`api::overlay`]): the base is the directory
    /// that was checked, whatever its path names by now.
    fn mount_overlay(
        &self,
        lower: &Pin,
        upper: &Path,
        work: &Path,
        target: &Path,
        volatile: bool,
    ) -> io::Result<()> {
        let upper = Pin::own(upper)?;
        let work = Pin::own(work)?;
        let layers = api::Layers {
            lower: lower.fd(),
            upper: upper.fd(),
            work: work.fd(),
        };
        api::overlay(&layers, volatile)
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
                .is_ok_and(|s| s.filesystem_type().0 == OVERLAYFS_SUPER_MAGIC)
    }
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
