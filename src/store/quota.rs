//! Size and inode limits on a volume's data (plain) or changes (copy-on-write), with the
//! project quotas of ext4 and XFS: the volume's directories get a project ID of their own with
//! the inherit flag (`FS_IOC_FSSETXATTR`: every file made below takes it, the overlay's copy-ups
//! and work directory included), and the project gets hard limits (`quotactl_fd(Q_SETQUOTA,
//! PRJQUOTA)`). Writing past a limit fails in the container with EDQUOT (ENOSPC on XFS), and
//! the volume stays usable once something is removed.
//!
//! The project ID is derived from the volume's storage name (31 bits of its SHA-256, above
//! 2^24 so that it stays clear of the small IDs admins give by hand) and recorded in the
//! definition. Where the filesystem of ocivol's root cannot (no project quota, or not enabled:
//! ext4 needs `mkfs.ext4 -O quota,project` and the `prjquota` mount option, XFS `prjquota`), the
//! volume's creation is refused with the filesystem named.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use serde::{Deserialize, Serialize};

impl super::Store {
    /// Puts a new volume's directories under its project and limits (if it has limits).
    pub(super) fn apply_quota(&self, def: &super::VolumeDef) -> super::Result<()> {
        use super::IoContext;
        let Some(q) = &def.quota else {
            return Ok(());
        };
        let (data, upper, work) = (
            self.data_dir(&def.name),
            self.upper_dir(&def.name),
            self.work_dir(&def.name),
        );
        let dirs: Vec<&Path> = match def.kind() {
            super::VolumeKind::Plain => vec![&data],
            super::VolumeKind::CopyOnWrite => vec![&upper, &work],
        };
        apply(&dirs, q).ctx(|| format!("volume {}", def.volume_name()))
    }

    /// What a volume with limits uses of them (`None` without limits, or if unreadable).
    pub fn quota_use(&self, def: &super::VolumeDef) -> Option<QuotaUse> {
        let q = def.quota.as_ref()?;
        let dir = match def.kind() {
            super::VolumeKind::Plain => self.data_dir(&def.name),
            super::VolumeKind::CopyOnWrite => self.upper_dir(&def.name),
        };
        usage(&dir, q).ok()
    }
}

/// A volume's limits, as its definition records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Quota {
    /// Bytes (rounded up to KiB by the kernel's quota blocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    /// The project ID its directories carry.
    #[serde(default)]
    pub project: u32,
}

impl Quota {
    /// The quota of a new volume stored as `storage` with `limits` (`None`: no limits).
    pub fn of(limits: &crate::annotations::Limits, storage: &str) -> Option<Quota> {
        (!limits.is_empty()).then(|| Quota {
            size: limits.size,
            inodes: limits.inodes,
            project: project_of(storage),
        })
    }
}

/// What a volume uses of its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuotaUse {
    pub project: u32,
    pub used_bytes: u64,
    pub used_inodes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_limit: Option<u64>,
}

/// The project ID of the volume stored as `storage` (see the module's header).
pub fn project_of(storage: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(storage.as_bytes());
    let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) & 0x7fff_ffff;
    n.max(1 << 24)
}

// linux/fs.h
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}
// The request's type is the libc's (unsigned long on glibc, int on musl); the bits are the same.
#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
const FS_IOC_FSGETXATTR: libc::Ioctl = 0x801c_581f_u32 as libc::Ioctl;
const FS_IOC_FSSETXATTR: libc::Ioctl = 0x401c_5820;
const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;

// linux/quota.h
#[repr(C)]
#[derive(Default)]
struct IfDqblk {
    bhardlimit: u64,
    bsoftlimit: u64,
    curspace: u64,
    ihardlimit: u64,
    isoftlimit: u64,
    curinodes: u64,
    btime: u64,
    itime: u64,
    valid: u32,
}
const Q_GETQUOTA: u32 = 0x80_0007;
const Q_SETQUOTA: u32 = 0x80_0008;
const PRJQUOTA: u32 = 2;
const QIF_BLIMITS: u32 = 1;
const QIF_ILIMITS: u32 = 4;
const SYS_QUOTACTL_FD: libc::c_long = 443;

fn qcmd(cmd: u32) -> u32 {
    (cmd << 8) | (PRJQUOTA & 0xff)
}

fn quotactl_fd(fd: BorrowedFd, cmd: u32, id: u32, dq: &mut IfDqblk) -> io::Result<()> {
    // SAFETY: a valid fd, a command that reads or writes one if_dqblk, which `dq` is.
    let r = unsafe {
        libc::syscall(
            SYS_QUOTACTL_FD,
            fd.as_raw_fd(),
            qcmd(cmd),
            id,
            dq as *mut IfDqblk,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    })
}

/// The filesystem's name and what to do, for a refusal.
fn cannot(dir: &Path, e: &io::Error) -> io::Error {
    let fs = nix::sys::statfs::statfs(dir)
        .map(|s| match crate::util::fs_magic(&s) {
            0xef53 => "ext4".to_string(),
            0x5846_5342 => "xfs".to_string(),
            0x9123_683e => "btrfs".to_string(),
            0x0102_1994 => "tmpfs".to_string(),
            0x794c_7630 => "overlay".to_string(),
            m => format!("a filesystem of magic {m:#x}"),
        })
        .unwrap_or_else(|_| "an unknown filesystem".into());
    io::Error::other(format!(
        "size=/inodes= need project quotas on the filesystem of {}, which is {fs} without them enabled ({e}); use ext4 made with -O quota,project and mounted with prjquota, or XFS mounted with prjquota",
        dir.display()
    ))
}

/// Gives `dirs` (a volume's data, or its upper and work directories) the project `q.project`
/// with the inherit flag, and sets the project's limits.
pub fn apply(dirs: &[&Path], q: &Quota) -> io::Result<()> {
    let Some(first) = dirs.first() else {
        return Ok(());
    };
    for dir in dirs {
        let fd = open_dir(dir)?;
        let mut attr = FsXattr::default();
        // SAFETY: an open fd and a struct fsxattr for the kernel to fill.
        if unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSGETXATTR, &mut attr as *mut FsXattr) } != 0
        {
            return Err(cannot(dir, &io::Error::last_os_error()));
        }
        attr.projid = q.project;
        attr.xflags |= FS_XFLAG_PROJINHERIT;
        // SAFETY: as above, the struct read back with the project and flag changed.
        if unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSSETXATTR, &attr as *const FsXattr) } != 0 {
            return Err(cannot(dir, &io::Error::last_os_error()));
        }
    }
    let fd = open_dir(first)?;
    let mut dq = IfDqblk {
        bhardlimit: q.size.map_or(0, |b| b.div_ceil(1024)),
        ihardlimit: q.inodes.unwrap_or(0),
        valid: QIF_BLIMITS | QIF_ILIMITS,
        ..Default::default()
    };
    use std::os::fd::AsFd;
    quotactl_fd(fd.as_fd(), Q_SETQUOTA, q.project, &mut dq).map_err(|e| cannot(first, &e))
}

/// What the project of `dir` uses against its limits.
pub fn usage(dir: &Path, q: &Quota) -> io::Result<QuotaUse> {
    use std::os::fd::AsFd;
    let fd = open_dir(dir)?;
    let mut dq = IfDqblk::default();
    quotactl_fd(fd.as_fd(), Q_GETQUOTA, q.project, &mut dq)?;
    Ok(QuotaUse {
        project: q.project,
        used_bytes: dq.curspace,
        used_inodes: dq.curinodes,
        size_limit: q.size,
        inodes_limit: q.inodes,
    })
}

/// `10G`, `512M`, `64k`, `1000` (bytes); powers of 1024 as `docker run --storage-opt size=`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (t, 1u64),
        Some((i, _)) => {
            let unit = t[i..].to_ascii_lowercase();
            let mult = match unit.trim_end_matches('b').trim_end_matches('i') {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                _ => {
                    return Err(format!(
                        "size {s:?} has an unknown unit; use a number of bytes with k, m, g or t (size=10g)"
                    ));
                }
            };
            (&t[..i], mult)
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size {s:?} is not a number of bytes (size=10g)"))?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))?;
    if bytes == 0 {
        return Err("size=0 would forbid every write; leave size= out for no limit".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("10x").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("99999999999t").is_err());
    }

    #[test]
    fn project_ids_are_stable_and_clear_of_small_ones() {
        assert_eq!(project_of("cache"), project_of("cache"));
        assert_ne!(project_of("cache"), project_of("cache@0123456789abcdef"));
        assert!(project_of("x") >= 1 << 24 && project_of("x") < 1 << 31);
    }
}
