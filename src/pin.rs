//! Pinning host paths: a path from an annotation, a record or a volume definition is checked by
//! opening it, once, as an `O_PATH` fd resolved *beneath* the allowed directory it is checked
//! against (`openat2` with `RESOLVE_BENEATH`), and everything after that uses the fd. No name is
//! resolved a second time, so a tenant who can rename things inside an allowed directory (every
//! container that binds it read-write can) cannot swap what was checked for a symlink to `/`
//! between the check and the mount.
//!
//! - An allowed directory of the policy is opened with `RESOLVE_NO_SYMLINKS` from `/`: the admin
//!   writes its real path, and nobody can turn it into a link later.
//! - A path asked for by an annotation ([`How::Asked`]) may go through symlinks that stay beneath
//!   the allowed directory; one that leaves it (absolute, or too many `..`) is refused.
//! - A path ocivol stored itself ([`How::Stored`]: a volume's base, a bind in a container record)
//!   was stored resolved; it is used only as it was, with no symlink anywhere on its way.
//!
//! The resolved path (read back from the fd) is what is recorded and shown; the policy's forced
//! options are those of every allowed entry that contains it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};

use crate::config::{AllowedPath, Policy};
use crate::mounts::flags::MountFlags;

/// How a path came to ocivol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Written in an annotation (or on the operator's command line): symlinks beneath the
    /// allowed directory are followed.
    Asked,
    /// Stored by ocivol resolved: no symlink may be on its way now.
    Stored,
}

/// An open, checked host path. Cloning shares the fd.
#[derive(Clone)]
pub struct Pin(Arc<Inner>);

struct Inner {
    path: PathBuf,
    fd: OwnedFd,
    is_dir: bool,
    force: MountFlags,
}

impl Pin {
    /// The resolved path, as the fd was opened (for records and messages, never to open again).
    pub fn path(&self) -> &Path {
        &self.0.path
    }
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.fd.as_fd()
    }
    pub fn is_dir(&self) -> bool {
        self.0.is_dir
    }
    /// Options the policy forces on every mount of this path.
    pub fn force(&self) -> MountFlags {
        self.0.force
    }

    /// Opens one of ocivol's own paths (a volume's data or overlay): no symlink on the way.
    pub fn own(path: &Path) -> io::Result<Pin> {
        let fd = open_no_symlinks(path)?;
        Pin::from_fd(fd, MountFlags::default())
            .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))
    }

    /// The directory `rel` (relative, normalised: see [`crate::annotations::check_subpath`])
    /// inside this one, made (0755, root's) where missing. Each component is opened beneath the
    /// last with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`: a symlink on the way
    /// (a tenant's `dir -> /`) is refused, never followed, and no other mount is entered.
    pub fn subdir(&self, rel: &Path) -> io::Result<Pin> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV,
            );
        let mut cur = self.fd().try_clone_to_owned()?;
        let mut walked = PathBuf::new();
        for c in rel.components() {
            let std::path::Component::Normal(name) = c else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "only plain names may be on its way",
                ));
            };
            walked.push(name);
            let opened = match crate::util::openat2(&cur, name, how) {
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(
                        &cur,
                        name,
                        nix::sys::stat::Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    crate::util::openat2(&cur, name, how)
                }
                other => other,
            };
            cur = opened.map_err(|e| {
                let why = match e {
                    Errno::ELOOP => {
                        "is a symlink; a subpath is never resolved through one".to_string()
                    }
                    Errno::ENOTDIR => {
                        let link = nix::sys::stat::fstatat(
                            &cur,
                            name,
                            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                        )
                        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
                        if link {
                            "is a symlink; a subpath is never resolved through one".to_string()
                        } else {
                            "is not a directory".to_string()
                        }
                    }
                    Errno::EXDEV => "is another mount".to_string(),
                    e => io::Error::from(e).to_string(),
                };
                io::Error::other(format!("{} {why}", walked.display()))
            })?;
        }
        Pin::from_fd(cur, self.force())
    }

    fn from_fd(fd: OwnedFd, force: MountFlags) -> io::Result<Pin> {
        let st = nix::sys::stat::fstat(&fd).map_err(io::Error::from)?;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        Ok(Pin(Arc::new(Inner {
            path,
            fd,
            is_dir: st.st_mode & libc::S_IFMT == libc::S_IFDIR,
            force,
        })))
    }

    fn with_force(self, force: MountFlags) -> Pin {
        match Arc::try_unwrap(self.0) {
            Ok(inner) => Pin(Arc::new(Inner { force, ..inner })),
            Err(shared) => Pin(shared),
        }
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pin({})", self.0.path.display())
    }
}

/// Two pins are the same when they name the same resolved path (for plans and tests).
impl PartialEq for Pin {
    fn eq(&self, other: &Pin) -> bool {
        self.0.path == other.0.path
    }
}
impl Eq for Pin {}

fn open_no_symlinks(path: &Path) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    crate::util::openat2(nix::fcntl::AT_FDCWD, path, how).map_err(io::Error::from)
}

/// The policy's host-path rules, with ocivol's own state directories that nothing may reach.
#[derive(Debug, Clone)]
pub struct Guard {
    bases: Vec<AllowedPath>,
    binds: Vec<AllowedPath>,
    state_dirs: Vec<PathBuf>,
}

/// Which list a path is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BindSource,
    Base,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::BindSource => "bind source",
            Kind::Base => "base",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Kind::BindSource => "allowed_bind_sources",
            Kind::Base => "allowed_bases",
        }
    }
}

impl Guard {
    pub fn new(policy: &Policy, state_dirs: &[&Path]) -> Guard {
        Guard {
            bases: policy.allowed_bases.clone(),
            binds: policy.allowed_bind_sources.clone(),
            state_dirs: state_dirs
                .iter()
                .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf()))
                .collect(),
        }
    }

    fn list(&self, kind: Kind) -> &[AllowedPath] {
        match kind {
            Kind::BindSource => &self.binds,
            Kind::Base => &self.bases,
        }
    }

    /// Opens `path` beneath the allowed directory of `kind` it is written under, and checks what
    /// it opened. The error is one line for the annotation's author: it never says where a
    /// refused symlink leads.
    pub fn check(&self, kind: Kind, path: &Path, how: How) -> Result<Pin, String> {
        let (what, key) = (kind.what(), kind.key());
        let allowed = self.list(kind);
        if allowed.is_empty() {
            return Err(format!(
                "{what} {} is not allowed: the policy's {key} is empty; an admin must add a directory to {key} in the ocivol config",
                path.display()
            ));
        }
        let refuse = |how: &str| {
            let list: Vec<String> = allowed
                .iter()
                .map(|a| a.path.display().to_string())
                .collect();
            format!(
                "{what} {}{how} is not under the policy's {key} [{}]; an admin must allow it in the ocivol config",
                path.display(),
                list.join(", ")
            )
        };
        // The most specific entry the path is written under is the one it is resolved beneath.
        let Some(entry) = allowed
            .iter()
            .filter(|a| path.starts_with(&a.path))
            .max_by_key(|a| a.path.components().count())
        else {
            return Err(refuse(""));
        };
        let root = open_no_symlinks(&entry.path).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => format!(
                "{what} {}: the policy's {key} entry {} is a symlink or goes through one; an admin must write its real path",
                path.display(),
                entry.path.display()
            ),
            _ => format!("{what} {} cannot be used: {e}", path.display()),
        })?;
        let rel = path.strip_prefix(&entry.path).unwrap_or(Path::new(""));
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let mut resolve = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if how == How::Stored {
            resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
        }
        let open = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(resolve);
        let fd = crate::util::openat2(&root, rel, open).map_err(|e| match e {
            Errno::EXDEV => refuse(" (it resolves to a path outside them)"),
            Errno::ELOOP if how == How::Stored => format!(
                "{what} {} has changed since ocivol resolved it (a symlink is on its way now); it is not used",
                path.display()
            ),
            Errno::ELOOP => format!("{what} {} cannot be used: too many symlinks", path.display()),
            e => format!("{what} {} cannot be used: {}", path.display(), io::Error::from(e)),
        })?;
        let pin = Pin::from_fd(fd, MountFlags::default())
            .map_err(|e| format!("{what} {} cannot be used: {e}", path.display()))?;
        // What it really is now: inside the entry (RESOLVE_BENEATH guarantees it; checked all
        // the same), outside ocivol's state, with the forced options of every entry around it.
        if !pin.path().starts_with(&entry.path) {
            return Err(refuse(" (it resolves to a path outside them)"));
        }
        self.refuse_state_overlap(what, path, pin.path())?;
        let force = allowed
            .iter()
            .filter(|a| pin.path().starts_with(&a.path))
            .fold(MountFlags::default(), |f, a| f.union(a.force));
        Ok(pin.with_force(force))
    }

    /// A bind of a source container's spec that the engine made (not one from an annotation):
    /// the engine chose its path, so it is not held to the policy's lists, but it is opened with
    /// no symlink anywhere on its way (a tenant who can write inside it cannot plant one) and it
    /// may not reach ocivol's state.
    pub fn engine_bind(&self, path: &Path) -> Result<Pin, String> {
        let fd = open_no_symlinks(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => format!(
                "bind source {} of the source container goes through a symlink now; it is not copied",
                path.display()
            ),
            _ => format!("bind source {} cannot be used: {e}", path.display()),
        })?;
        let pin = Pin::from_fd(fd, MountFlags::default())
            .map_err(|e| format!("bind source {} cannot be used: {e}", path.display()))?;
        self.refuse_state_overlap("bind source", path, pin.path())?;
        Ok(pin)
    }

    /// Whether `path` lies in ocivol's state (where only ocivol's own mounts are).
    pub fn in_state(&self, path: &Path) -> bool {
        self.state_dirs.iter().any(|d| path.starts_with(d))
    }

    /// ocivol's own state must never be reachable from an annotation (it holds other containers'
    /// data and the overlay upper directories).
    fn refuse_state_overlap(&self, what: &str, asked: &Path, real: &Path) -> Result<(), String> {
        for dir in &self.state_dirs {
            if real.starts_with(dir) || dir.starts_with(real) {
                return Err(format!(
                    "{what} {} overlaps ocivol's state directory {}",
                    asked.display(),
                    dir.display()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn guard(dir: &Path, force_ro: bool) -> Guard {
        let policy = Policy {
            allowed_bind_sources: vec![
                AllowedPath::new(dir.join("binds")),
                AllowedPath {
                    force: MountFlags {
                        readonly: force_ro,
                        nosuid: true,
                        ..Default::default()
                    },
                    ..AllowedPath::new(dir.join("binds/ro"))
                },
            ],
            allowed_bases: vec![AllowedPath::new(dir.join("bases"))],
            ..Policy::default()
        };
        Guard::new(&policy, &[&dir.join("state")])
    }

    fn setup() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["binds/x", "binds/ro/y", "bases/v3", "state", "outside"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        symlink("/", d.join("binds/root")).unwrap();
        symlink("../../outside", d.join("binds/up")).unwrap();
        symlink("x", d.join("binds/inside")).unwrap();
        symlink("ro/y", d.join("binds/to-ro")).unwrap();
        symlink(d.join("binds/x"), d.join("binds/absolute")).unwrap();
        symlink("../state", d.join("binds/state")).unwrap();
        dir
    }

    #[test]
    fn symlinks_may_not_leave_the_allowed_directory() {
        let dir = setup();
        let g = guard(dir.path(), false);
        let b = |p: &str| g.check(Kind::BindSource, &dir.path().join(p), How::Asked);
        assert_eq!(b("binds/x").unwrap().path(), dir.path().join("binds/x"));
        assert_eq!(
            b("binds/inside").unwrap().path(),
            dir.path().join("binds/x")
        );
        for (p, why) in [
            ("binds/root", "resolves to a path outside them"),
            ("binds/up", "resolves to a path outside them"),
            ("binds/absolute", "resolves to a path outside them"),
            ("binds/missing", "No such file"),
            ("outside", "is not under the policy's allowed_bind_sources"),
            ("binds/state", "resolves to a path outside them"),
        ] {
            let e = b(p).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn stored_paths_are_used_only_as_they_were() {
        let dir = setup();
        let g = guard(dir.path(), false);
        let v3 = dir.path().join("bases/v3");
        assert!(g.check(Kind::Base, &v3, How::Stored).unwrap().is_dir());
        // A tenant replaces the base with a symlink to / (the attack of issue 11, case 3).
        std::fs::remove_dir(&v3).unwrap();
        symlink("/", &v3).unwrap();
        let e = g.check(Kind::Base, &v3, How::Stored).unwrap_err();
        assert!(e.contains("has changed since ocivol resolved it"), "{e}");
        // A relative link that stays inside is followed only when asked for by an annotation.
        std::fs::remove_file(&v3).unwrap();
        std::fs::create_dir(dir.path().join("bases/v4")).unwrap();
        symlink("v4", &v3).unwrap();
        assert!(g.check(Kind::Base, &v3, How::Asked).is_ok());
        assert!(g.check(Kind::Base, &v3, How::Stored).is_err());
    }

    #[test]
    fn an_allowed_entry_that_became_a_symlink_allows_nothing() {
        let dir = setup();
        let g = guard(dir.path(), false);
        std::fs::rename(dir.path().join("bases"), dir.path().join("bases.orig")).unwrap();
        symlink("/", dir.path().join("bases")).unwrap();
        let e = g
            .check(Kind::Base, &dir.path().join("bases/etc"), How::Asked)
            .unwrap_err();
        assert!(e.contains("is a symlink or goes through one"), "{e}");
    }

    #[test]
    fn forced_options_follow_the_resolved_path() {
        let dir = setup();
        let g = guard(dir.path(), true);
        let plain = g
            .check(Kind::BindSource, &dir.path().join("binds/x"), How::Asked)
            .unwrap();
        assert_eq!(plain.force(), MountFlags::default());
        // Through a link from the writable entry into the read-only one: still read-only.
        let via = g
            .check(
                Kind::BindSource,
                &dir.path().join("binds/to-ro"),
                How::Asked,
            )
            .unwrap();
        assert!(via.force().readonly && via.force().nosuid);
    }
}
