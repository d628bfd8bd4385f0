//! The thin layer that touches the kernel's mount table: one overlayfs per copy-on-write volume.
//!
//! Everything above this talks to a [`Mounter`]; [`Linux`] does the syscalls and
//! [`tests::Recording`]-style fakes let the store's bookkeeping be tested without root.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

/// Filesystem magic of overlayfs (`statfs.f_type`).
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

pub trait Mounter: Send + Sync {
    /// Mounts an overlay of `lower` (never written) with `upper`/`work` on `target`.
    fn mount_overlay(
        &self,
        lower: &Path,
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

/// Builds overlayfs's option string. Paths that would change its meaning are refused here as a
/// last line of defence: `,` separates options, `:` separates lower layers, `\` escapes, `=`
/// would start a new key after a comma, a newline would corrupt /proc/self/mountinfo.
pub fn overlay_options(
    lower: &Path,
    upper: &Path,
    work: &Path,
    volatile: bool,
) -> io::Result<String> {
    for p in [lower, upper, work] {
        let s = p.to_str().ok_or_else(|| invalid(p, "is not UTF-8"))?;
        if s.contains([',', ':', '\\', '=', '\n', '\0']) {
            return Err(invalid(
                p,
                "contains a character that overlay options cannot carry",
            ));
        }
    }
    let mut opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    if volatile {
        // Changes are thrown away after the last user anyway: skip the syncs.
        opts.push_str(",volatile");
    }
    Ok(opts)
}

fn invalid(p: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("path {} {why}", p.display()),
    )
}

impl Mounter for Linux {
    fn mount_overlay(
        &self,
        lower: &Path,
        upper: &Path,
        work: &Path,
        target: &Path,
        volatile: bool,
    ) -> io::Result<()> {
        let opts = overlay_options(lower, upper, work, volatile)?;
        nix::mount::mount(
            Some("ocivol"),
            target,
            Some("overlay"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts.as_str()),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("mount overlay on {}: {e}", target.display()),
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
            lower: &Path,
            upper: &Path,
            work: &Path,
            target: &Path,
            volatile: bool,
        ) -> io::Result<()> {
            overlay_options(lower, upper, work, volatile)?;
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

    #[test]
    fn overlay_options_refuse_injection() {
        let ok = overlay_options(Path::new("/b"), Path::new("/u"), Path::new("/w"), true).unwrap();
        assert_eq!(ok, "lowerdir=/b,upperdir=/u,workdir=/w,volatile");
        for bad in ["/x,upperdir=/etc", "/a:/b", "/a\\b", "/a=b", "/a\nb"] {
            assert!(
                overlay_options(Path::new(bad), Path::new("/u"), Path::new("/w"), false).is_err(),
                "{bad}"
            );
        }
    }
}
