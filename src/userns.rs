//! User namespaces: the id mapping that every mount ocivol adds to a user-namespaced container
//! carries (DESIGN.md: "a container whose spec has user-namespace mappings gets its volumes
//! idmapped to it").
//!
//! A mount is idmapped with `mount_setattr(MOUNT_ATTR_IDMAP)` and an fd of a user namespace, on
//! the detached clone, before it is attached: the kernel refuses it on an attached mount and on
//! one that is idmapped already. Through such a mount an id stored on disk is seen as the id the
//! namespace maps it to, and the other way round for writes: the host's root's files are the
//! container's root's, and what the container's root writes is stored as the host's root's.
//!
//! Where the namespace comes from:
//! - hook mode: the container's own, `/proc/PID/ns/user` ([`UserNs::of_process`]), opened before
//!   the hook enters the container's mount namespace;
//! - runtime mode and podman's precreate: the container does not exist yet, and runc 1.1 cannot
//!   idmap a mount itself, so ocivol makes a namespace with the spec's mappings
//!   ([`UserNs::for_spec`]). A forked child unshares `CLONE_NEWUSER` and waits on a pipe; the
//!   parent writes the child's `uid_map` and `gid_map` (as root in the parent namespace, so
//!   `setgroups` needs no "deny"), opens its `ns/user`, and lets it go. The child never runs a
//!   program and does nothing else; it is killed and reaped in any case. The namespace lives
//!   as long as the fd, and nothing can enter it but ocivol. A spec that joins a namespace by
//!   path gets that one.
//!
//! overlayfs cannot be idmapped (6.18: EINVAL), so a copy-on-write volume's one overlay is made
//! over idmapped layers instead (see [`crate::mounts::Linux`]): it then shows its files as the
//! namespace sees them, and is shared only by containers with the same mappings
//! ([`UserNs::key`]; the store refuses the others while it is mounted).

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, pipe2};
use serde::Deserialize;
use serde_json::Value;

use crate::store::RecordedMount;

#[derive(Debug, thiserror::Error)]
pub enum UserNsError {
    #[error("the spec's linux.{field}: {reason}")]
    Spec { field: &'static str, reason: String },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

type Result<T> = std::result::Result<T, UserNsError>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> UserNsError {
    let context = context.into();
    move |source| UserNsError::Io { context, source }
}

fn nix_err(context: impl Into<String>) -> impl FnOnce(nix::Error) -> UserNsError {
    let context = context.into();
    move |e| UserNsError::Io {
        context,
        source: io::Error::from(e),
    }
}

/// One range of a mapping, as the OCI spec writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct IdMap {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

impl IdMap {
    /// The container id of host id `id`, if this range maps it.
    fn container_of(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.host_id)?;
        (offset < self.size).then(|| self.container_id.saturating_add(offset))
    }

    /// The host id of container id `id`, if this range maps it.
    fn host_of(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container_id)?;
        (offset < self.size).then(|| self.host_id.saturating_add(offset))
    }
}

/// A namespace's uid and gid mappings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mappings {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
}

impl Mappings {
    /// The spec's `linux.uidMappings` and `linux.gidMappings` (missing ones are empty).
    pub fn of_spec(spec: &Value) -> Result<Mappings> {
        let field = |name: &'static str| -> Result<Vec<IdMap>> {
            match spec.pointer(&format!("/linux/{name}")) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(v) => serde_json::from_value(v.clone()).map_err(|e| UserNsError::Spec {
                    field: name,
                    reason: e.to_string(),
                }),
            }
        };
        Ok(Mappings {
            uids: field("uidMappings")?,
            gids: field("gidMappings")?,
        })
    }

    /// A `/proc/PID/uid_map` as the kernel prints it: `INSIDE OUTSIDE COUNT` per line.
    fn parse_proc(text: &str) -> Option<Vec<IdMap>> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut f = l.split_whitespace().map(|n| n.parse::<u32>().ok());
                Some(IdMap {
                    container_id: f.next()??,
                    host_id: f.next()??,
                    size: f.next()??,
                })
            })
            .collect()
    }

    /// What `/proc/PID/uid_map` is written with (all lines in one write, as the kernel wants).
    fn proc_text(maps: &[IdMap]) -> String {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
            .collect()
    }

    /// The container uid that host uid `id` is, if the mappings map it.
    pub fn uid_in_container(&self, id: u32) -> Option<u32> {
        self.uids.iter().find_map(|m| m.container_of(id))
    }

    /// The container gid that host gid `id` is, if the mappings map it.
    pub fn gid_in_container(&self, id: u32) -> Option<u32> {
        self.gids.iter().find_map(|m| m.container_of(id))
    }

    /// The host ids the container's root maps to; where it is not mapped, the first mapped ids.
    pub fn root_ids(&self) -> Option<(u32, u32)> {
        let of = |maps: &[IdMap]| {
            maps.iter().find_map(|m| m.host_of(0)).or_else(|| {
                maps.iter()
                    .min_by_key(|m| m.container_id)
                    .map(|m| m.host_id)
            })
        };
        Some((of(&self.uids)?, of(&self.gids)?))
    }

    /// The mappings in one line, e.g. `uid 0:100000:65536, gid 0:100000:65536`: how a shared
    /// overlay records the view it was made for, and how messages show it.
    pub fn key(&self) -> String {
        let list = |maps: &[IdMap]| {
            maps.iter()
                .map(|m| format!("{}:{}:{}", m.container_id, m.host_id, m.size))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!("uid {}, gid {}", list(&self.uids), list(&self.gids))
    }
}

/// An open user namespace and its mappings.
#[derive(Debug)]
pub struct UserNs {
    fd: OwnedFd,
    mappings: Mappings,
}

impl UserNs {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn mappings(&self) -> &Mappings {
        &self.mappings
    }

    /// See [`Mappings::root_ids`].
    pub fn root_ids(&self) -> Option<(u32, u32)> {
        self.mappings.root_ids()
    }

    /// See [`Mappings::key`].
    pub fn key(&self) -> String {
        self.mappings.key()
    }

    /// The user namespace a spec's container will run in, when it will have one of its own:
    /// the one it names by path, else a new one with its mappings. `Ok(None)`: the spec has no
    /// user namespace (or names the host's), or one without mappings, which is left to the
    /// runtime to accept or refuse as before.
    pub fn for_spec(spec: &Value) -> Result<Option<UserNs>> {
        let user = spec
            .pointer("/linux/namespaces")
            .and_then(Value::as_array)
            .and_then(|list| {
                list.iter()
                    .find(|n| n.get("type").and_then(Value::as_str) == Some("user"))
            });
        let Some(user) = user else {
            return Ok(None);
        };
        if let Some(path) = user
            .get("path")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
        {
            return UserNs::join(Path::new(path));
        }
        let mappings = Mappings::of_spec(spec)?;
        if mappings.uids.is_empty() || mappings.gids.is_empty() {
            log::warn!(
                "the spec asks for a user namespace without uidMappings and gidMappings; its volumes are not idmapped"
            );
            return Ok(None);
        }
        UserNs::make(&mappings).map(Some)
    }

    /// The user namespace of process `pid` (a container's init, as a hook gets it), or `None`
    /// when it is the one this process runs in.
    pub fn of_process(pid: i32) -> Result<Option<UserNs>> {
        let path = format!("/proc/{pid}/ns/user");
        let fd = open_ns(Path::new(&path))?;
        if is_ours(&fd)? {
            return Ok(None);
        }
        let map = |name: &str| -> Result<Vec<IdMap>> {
            let file = format!("/proc/{pid}/{name}");
            let text = fs::read_to_string(&file).map_err(io_err(format!("read {file}")))?;
            Mappings::parse_proc(&text).ok_or_else(|| UserNsError::Io {
                context: format!("read {file}"),
                source: io::Error::other("not a uid/gid map"),
            })
        };
        let mappings = Mappings {
            uids: map("uid_map")?,
            gids: map("gid_map")?,
        };
        Ok(Some(UserNs { fd, mappings }))
    }

    /// A new user namespace with `mappings` (see the module's header).
    pub fn make(mappings: &Mappings) -> Result<UserNs> {
        let holder = Holder::spawn(None)?;
        let proc = PathBuf::from(format!("/proc/{}", holder.pid));
        for (file, maps, field) in [
            ("uid_map", &mappings.uids, "uidMappings"),
            ("gid_map", &mappings.gids, "gidMappings"),
        ] {
            fs::write(proc.join(file), Mappings::proc_text(maps)).map_err(|e| {
                UserNsError::Spec {
                    field,
                    reason: format!("the kernel refuses them for a user namespace: {e}"),
                }
            })?;
        }
        let fd = open_ns(&proc.join("ns/user"))?;
        let mappings = holder.mappings()?;
        drop(holder);
        Ok(UserNs { fd, mappings })
    }

    /// The user namespace at `path` (a spec's `linux.namespaces` entry naming one to join).
    fn join(path: &Path) -> Result<Option<UserNs>> {
        let fd = open_ns(path)?;
        // NS_GET_NSTYPE: refuse anything but a user namespace.
        const NS_GET_NSTYPE: libc::Ioctl = 0xb703;
        // SAFETY: an ioctl without argument on an fd we own.
        let kind = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
        if kind != libc::CLONE_NEWUSER {
            return Err(UserNsError::Spec {
                field: "namespaces",
                reason: format!("{} is not a user namespace", path.display()),
            });
        }
        if is_ours(&fd)? {
            return Ok(None);
        }
        let holder = Holder::spawn(Some(fd.as_fd()))?;
        let mappings = holder.mappings()?;
        drop(holder);
        Ok(Some(UserNs { fd, mappings }))
    }

    /// For the store's tests: any namespace fd with made-up mappings.
    #[cfg(test)]
    pub(crate) fn from_parts(fd: OwnedFd, mappings: Mappings) -> UserNs {
        UserNs { fd, mappings }
    }
}

fn open_ns(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(nix_err(format!("open {}", path.display())))
}

/// Whether `fd` is the user namespace this process runs in.
fn is_ours(fd: &OwnedFd) -> Result<bool> {
    let theirs = nix::sys::stat::fstat(fd).map_err(nix_err("stat a user namespace"))?;
    let ours = fs::metadata("/proc/self/ns/user").map_err(io_err("stat /proc/self/ns/user"))?;
    Ok(theirs.st_ino == ours.ino() && theirs.st_dev == ours.dev())
}

/// How long [`Holder::spawn`] waits for its child to report (milliseconds).
const HOLDER_ANSWER_MS: u16 = 10_000;

/// A forked child that made (or entered) a user namespace and waits, so that the namespace's
/// files under `/proc/PID` can be written and read; it is killed and reaped when dropped.
struct Holder {
    pid: Pid,
    /// Closing it lets the child exit.
    release: Option<OwnedFd>,
}

impl Holder {
    /// `join`: enter that namespace; else unshare a new one.
    fn spawn(join: Option<BorrowedFd<'_>>) -> Result<Holder> {
        let (ready_r, ready_w) =
            pipe2(OFlag::O_CLOEXEC).map_err(nix_err("make a pipe for a user namespace"))?;
        let (hold_r, hold_w) =
            pipe2(OFlag::O_CLOEXEC).map_err(nix_err("make a pipe for a user namespace"))?;
        // SAFETY: the child makes only system calls (close_range or close, unshare or setns,
        // write, read, _exit), allocates nothing and never returns. Nothing may be evaluated
        // between the fork and the match (an error's context string is an allocation, and
        // another thread may hold the allocator's lock in the parent at the fork).
        let forked = unsafe { crate::util::fork() };
        match forked {
            Err(e) => Err(nix_err("fork for a user namespace")(e)),
            Ok(ForkResult::Child) => unsafe {
                // Everything but its ends of the pipes and the namespace: among the rest may be
                // what a release left for the command's end (store::take_detached), an overlay's
                // last reference and its lock, which this child's exit must not end.
                let ns = join.map_or(-1, |ns| ns.as_raw_fd());
                let mut keep = [hold_r.as_raw_fd(), ready_w.as_raw_fd(), ns];
                keep.sort_unstable();
                crate::util::sync_child::close_all_but(&keep);
                let rc = match join {
                    Some(ns) => libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUSER),
                    None => libc::unshare(libc::CLONE_NEWUSER),
                };
                let errno: i32 = if rc == 0 {
                    0
                } else {
                    *libc::__errno_location()
                };
                libc::write(
                    ready_w.as_raw_fd(),
                    (&errno as *const i32).cast(),
                    std::mem::size_of::<i32>(),
                );
                // Until the parent closes its end, or dies.
                let mut byte = 0u8;
                libc::read(hold_r.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                libc::_exit(0)
            },
            Ok(ForkResult::Parent { child }) => {
                drop(ready_w);
                drop(hold_r);
                let holder = Holder {
                    pid: child,
                    release: Some(hold_w),
                };
                // Its answer takes microseconds; a child that never gives one is killed (by
                // dropping `holder`) instead of hanging the start.
                let mut fds = [PollFd::new(ready_r.as_fd(), PollFlags::POLLIN)];
                let waited = loop {
                    match poll(&mut fds, HOLDER_ANSWER_MS) {
                        Err(nix::errno::Errno::EINTR) => continue,
                        other => break other,
                    }
                };
                if waited.map_err(nix_err("wait for the user namespace's process"))? == 0 {
                    return Err(UserNsError::Io {
                        context: "wait for the user namespace's process".into(),
                        source: io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no answer in {} s; it was killed", HOLDER_ANSWER_MS / 1000),
                        ),
                    });
                }
                let mut buf = [0u8; 4];
                let n = nix::unistd::read(&ready_r, &mut buf)
                    .map_err(nix_err("wait for the user namespace's process"))?;
                let errno = i32::from_ne_bytes(buf);
                if n != buf.len() || errno != 0 {
                    let source = if n == buf.len() {
                        io::Error::from_raw_os_error(errno)
                    } else {
                        io::Error::other("it ended early")
                    };
                    let context = if join.is_some() {
                        "enter the spec's user namespace"
                    } else {
                        "make a user namespace"
                    };
                    return Err(UserNsError::Io {
                        context: context.into(),
                        source,
                    });
                }
                Ok(holder)
            }
        }
    }

    /// The namespace's mappings, as seen from this process's namespace.
    fn mappings(&self) -> Result<Mappings> {
        let map = |name: &str| -> Result<Vec<IdMap>> {
            let file = format!("/proc/{}/{name}", self.pid);
            let text = fs::read_to_string(&file).map_err(io_err(format!("read {file}")))?;
            Mappings::parse_proc(&text).ok_or_else(|| UserNsError::Io {
                context: format!("read {file}"),
                source: io::Error::other("not a uid/gid map"),
            })
        };
        Ok(Mappings {
            uids: map("uid_map")?,
            gids: map("gid_map")?,
        })
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.release.take());
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

/// How one container's mounts are idmapped: through `ns`, all but the copy-on-write volumes'
/// overlays, which the store made over layers idmapped through it already (an overlay cannot
/// be idmapped again, and needs not be).
pub struct Idmap<'a> {
    ns: &'a UserNs,
    /// `RUN_ROOT/volumes`, where those overlays are mounted.
    overlays: PathBuf,
}

impl<'a> Idmap<'a> {
    pub fn new(ns: &'a UserNs, run_root: &Path) -> Idmap<'a> {
        // Sources are recorded as their fds resolved: compare with the same kind of path.
        let run_root = fs::canonicalize(run_root).unwrap_or_else(|_| run_root.to_path_buf());
        Idmap {
            ns,
            overlays: run_root.join("volumes"),
        }
    }

    /// The namespace to idmap `m`'s clone through, if it needs one.
    pub fn for_mount(&self, m: &RecordedMount) -> Option<BorrowedFd<'a>> {
        let overlay = m.volume.is_some() && m.source.starts_with(&self.overlays);
        (!overlay).then(|| self.ns.fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The namespace's helper keeps only its ends of the two pipes: whatever else this process
    /// has open (a detached overlay's last reference and its lock, left for the command's end)
    /// must not live on in it, nor end with its exit.
    #[test]
    fn the_namespace_helper_keeps_no_descriptor_but_its_pipes() {
        let Some(()) =
            crate::util::require_root("the_namespace_helper_keeps_no_descriptor_but_its_pipes")
        else {
            return;
        };
        let unrelated = std::fs::File::open("/proc/self/stat").unwrap();
        let holder = Holder::spawn(None).unwrap();
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", holder.pid))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(fds.len(), 2, "{fds:?}");
        assert!(!fds.contains(&unrelated.as_raw_fd().to_string()), "{fds:?}");
    }

    fn map(c: u32, h: u32, s: u32) -> IdMap {
        IdMap {
            container_id: c,
            host_id: h,
            size: s,
        }
    }

    #[test]
    fn mappings_come_from_the_spec_and_proc() {
        let spec = json!({"linux": {
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 1},
                            {"containerID": 1, "hostID": 300001, "size": 10}]
        }});
        let m = Mappings::of_spec(&spec).unwrap();
        assert_eq!(m.uids, vec![map(0, 100000, 65536)]);
        assert_eq!(m.gids, vec![map(0, 200000, 1), map(1, 300001, 10)]);
        assert_eq!(m.root_ids(), Some((100000, 200000)));
        assert_eq!(m.key(), "uid 0:100000:65536, gid 0:200000:1 1:300001:10");
        assert_eq!(
            Mappings::parse_proc("         0     100000      65536\n"),
            Some(vec![map(0, 100000, 65536)])
        );
        assert_eq!(Mappings::parse_proc("0 1\n"), None);
        assert_eq!(Mappings::proc_text(&m.gids), "0 200000 1\n1 300001 10\n");
        let bad = json!({"linux": {"uidMappings": [{"containerID": -1}]}});
        let e = Mappings::of_spec(&bad).unwrap_err().to_string();
        assert!(e.starts_with("the spec's linux.uidMappings: "), "{e}");
    }

    #[test]
    fn a_root_that_is_not_mapped_works_as_the_first_mapped_ids() {
        let m = Mappings {
            uids: vec![map(1000, 5000, 10), map(10, 2000, 5)],
            gids: vec![map(5, 7000, 1)],
        };
        assert_eq!(m.root_ids(), Some((2000, 7000)));
        let none = Mappings {
            uids: vec![],
            gids: vec![map(0, 1, 1)],
        };
        assert_eq!(none.root_ids(), None);
    }

    #[test]
    fn every_mount_is_idmapped_but_the_overlays_made_for_the_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let run_root = dir.path().join("run");
        let ns = UserNs::from_parts(
            fs::File::open("/proc/self/ns/user").unwrap().into(),
            Mappings {
                uids: vec![map(0, 100000, 65536)],
                gids: vec![map(0, 100000, 65536)],
            },
        );
        let idmap = Idmap::new(&ns, &run_root);
        let mount = |source: PathBuf, volume: Option<&str>| RecordedMount {
            destination: PathBuf::from("/d"),
            source,
            flags: Default::default(),
            volume: volume.map(str::to_string),
            engine: false,
            subpath: None,
        };
        let overlay = mount(run_root.join("volumes/c/merged"), Some("c"));
        assert!(idmap.for_mount(&overlay).is_none());
        for m in [
            mount(dir.path().join("root/volumes/n/data"), Some("n")),
            mount(run_root.join("volumes/c/merged"), None),
            mount(PathBuf::from("/srv/x"), None),
        ] {
            assert!(idmap.for_mount(&m).is_some(), "{m:?}");
        }
    }

    #[test]
    fn specs_without_a_user_namespace_get_none() {
        for spec in [
            json!({}),
            json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}}),
            // A user namespace without mappings is the runtime's to judge.
            json!({"linux": {"namespaces": [{"type": "user"}]}}),
        ] {
            assert!(UserNs::for_spec(&spec).unwrap().is_none(), "{spec}");
        }
    }

    /// The holder's child is forked from a process whose other threads may hold the allocator's
    /// lock at that moment (the test harness's threads here; CI hung on it once): it must make
    /// no allocation, and its parent must not wait for it forever.
    #[test]
    fn namespaces_are_made_while_other_threads_allocate() {
        let Some(()) =
            crate::util::require_root("namespaces_are_made_while_other_threads_allocate")
        else {
            return;
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut n = 0usize;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n = (n + 1) % 4096;
                        std::hint::black_box(vec![0u8; 16 + n]);
                    }
                });
            }
            let mappings = Mappings {
                uids: vec![IdMap {
                    container_id: 0,
                    host_id: 100000,
                    size: 65536,
                }],
                gids: vec![IdMap {
                    container_id: 0,
                    host_id: 100000,
                    size: 65536,
                }],
            };
            let made = (0..200)
                .map(|_| UserNs::make(&mappings))
                .find(|r| r.is_err());
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(Err(e)) = made {
                panic!("{e}");
            }
        });
    }

    #[test]
    fn a_namespace_is_made_with_the_specs_mappings() {
        let Some(()) = crate::util::require_root("a_namespace_is_made_with_the_specs_mappings")
        else {
            return;
        };
        let spec = json!({"linux": {
            "namespaces": [{"type": "user"}],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]
        }});
        let ns = UserNs::for_spec(&spec).unwrap().expect("a namespace");
        assert_eq!(ns.key(), "uid 0:100000:65536, gid 0:100000:65536");
        assert!(!is_ours(&ns.fd).unwrap());
        // Joining it by path reads the same mappings back.
        let path = format!("/proc/self/fd/{}", ns.fd().as_raw_fd());
        let spec = json!({"linux": {"namespaces": [{"type": "user", "path": path}]}});
        let joined = UserNs::for_spec(&spec).unwrap().expect("the namespace");
        assert_eq!(joined.mappings(), ns.mappings());
        // The host's own namespace, named by path, is no user namespace of the container's.
        let spec =
            json!({"linux": {"namespaces": [{"type": "user", "path": "/proc/self/ns/user"}]}});
        assert!(UserNs::for_spec(&spec).unwrap().is_none());
        // Mappings the kernel refuses (overlapping ranges) are an error that names them.
        let spec = json!({"linux": {
            "namespaces": [{"type": "user"}],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 10},
                            {"containerID": 5, "hostID": 200000, "size": 10}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 10}]
        }});
        let e = UserNs::for_spec(&spec).unwrap_err().to_string();
        assert!(e.starts_with("the spec's linux.uidMappings: "), "{e}");
    }
}
