//! Talking to the real runtime (runc, crun): finding its binary, and asking it what it knows of
//! a container (`RUNTIME [--root R] state ID`, and whether its state directory exists at all).
//!
//! Everything that asks goes through one trait, [`RuntimeProbe`]: the store's reconciliation
//! (is a user's container gone?), `ocivol ps`, volumes-from (where is a source's bundle?) and
//! the runc wrapper. [`RealRuntime`] asks the binary; tests put a fake in its place, and a way
//! in with no runtime to ask (a hook) passes none.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::bail;

use crate::container_id::check_container_id;

/// Where the real runtime is looked for when the config names it without a path. The caller's
/// PATH is not used: the wrapper must not be steered to another binary by its environment.
pub const SYSTEM_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The real runtime's binary.
pub fn find(name: &str) -> anyhow::Result<PathBuf> {
    let candidates: Vec<PathBuf> = if name.starts_with('/') {
        vec![PathBuf::from(name)]
    } else {
        SYSTEM_PATH
            .iter()
            .map(|d| Path::new(d).join(name))
            .collect()
    };
    use std::os::unix::fs::MetadataExt;
    // The same file, by device and inode (a symlink or a hard link to ocivol is ocivol): one
    // stat, where comparing canonical paths read every component of both.
    let me = std::fs::metadata("/proc/self/exe")
        .ok()
        .map(|m| (m.dev(), m.ino()));
    for c in candidates {
        if let Ok(meta) = std::fs::metadata(&c) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                if Some((meta.dev(), meta.ino())) == me {
                    bail!(
                        "the configured runtime {} is ocivol itself; set \"runtime\" in the ocivol config to the real runtime (e.g. /usr/sbin/runc)",
                        c.display()
                    );
                }
                return Ok(c);
            }
        }
    }
    bail!(
        "the real runtime {name:?} was not found{}; install it or set \"runtime\" in the ocivol config",
        if name.starts_with('/') {
            String::new()
        } else {
            format!(" in {}", SYSTEM_PATH.join(":"))
        }
    )
}

/// What the real runtime says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeView {
    /// It has no state for the ID.
    Absent,
    /// It has it, stopped (its init has exited).
    Stopped,
    /// It has it, created, running or paused; `pid` is its init.
    Alive { status: String, pid: Option<i32> },
    /// Its state directory exists, and the runtime itself says there is no such container:
    /// runc writes its state (`state.json`) only once the container's process is ready, so
    /// this is a create in progress, or one that was killed half-way and will never finish
    /// (`runc delete ID` removes the directory; runc refuses to create the ID again until then).
    HalfCreated,
    /// Its state directory exists and the runtime cannot say anything about it (it failed
    /// otherwise, or could not be run).
    Unreadable,
}

/// Asks the real runtime about containers. `root` is the runtime's `--root` the container was
/// made under (`None`: the runtime's default root).
pub trait RuntimeProbe: Send + Sync {
    /// The runtime's view of container `id`.
    fn state(&self, id: &str, root: Option<&str>) -> RuntimeView;
    /// The bundle of container `id`, if the runtime knows it (for volumes-from).
    fn bundle_of(&self, id: &str, root: Option<&str>) -> Option<PathBuf>;
}

/// The runtime's own state directory of a container (`ROOT/ID`; the default root is
/// `/run/NAME`, as runc and crun have it): it exists from the start of a create to the end of
/// a delete.
pub fn state_dir(runtime: &Path, root: Option<&str>, id: &str) -> PathBuf {
    let root = root.map(PathBuf::from).unwrap_or_else(|| {
        let name = runtime
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Path::new("/run").join(name)
    });
    root.join(id)
}

/// Why `RUNTIME state` gave no state.
enum NoState {
    /// The runtime says the container does not exist.
    DoesNotExist,
    /// Anything else: it could not be run, failed otherwise, or printed no JSON.
    Other,
}

/// Reads a runtime's view of a state document.
pub fn view_of(state: &serde_json::Value) -> RuntimeView {
    let status = state
        .get("status")
        .and_then(|s| s.as_str())
        .unwrap_or("")
        .to_string();
    let pid = state
        .get("pid")
        .and_then(|p| p.as_i64())
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0);
    if status == "stopped" {
        RuntimeView::Stopped
    } else {
        RuntimeView::Alive { status, pid }
    }
}

/// The real runtime's binary, asked about containers.
pub struct RealRuntime {
    path: PathBuf,
}

impl RealRuntime {
    pub fn new(path: PathBuf) -> RealRuntime {
        RealRuntime { path }
    }

    /// `RUNTIME [--root R] ARGS…`, stdin closed.
    fn command(&self, root: Option<&str>) -> Command {
        let mut cmd = Command::new(&self.path);
        if let Some(root) = root {
            cmd.args(["--root", root]);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `RUNTIME [--root R] state ID`: the state document, or why there is none.
    fn ask(&self, root: Option<&str>, id: &str) -> Result<serde_json::Value, NoState> {
        let out = self
            .command(root)
            .args(["state", id])
            .output()
            .map_err(|_| NoState::Other)?;
        if !out.status.success() {
            // runc's libcontainer.ErrNotExist: "container does not exist", printed as a logrus
            // error line (text or JSON).
            let said = String::from_utf8_lossy(&out.stderr);
            return Err(if said.contains("does not exist") {
                NoState::DoesNotExist
            } else {
                NoState::Other
            });
        }
        serde_json::from_slice(&out.stdout).map_err(|_| NoState::Other)
    }

    /// `RUNTIME [--root R] delete --force ID`, its output captured.
    pub fn force_delete(&self, root: Option<&str>, id: &str) -> std::io::Result<Output> {
        self.command(root).args(["delete", "--force", id]).output()
    }
}

impl RuntimeProbe for RealRuntime {
    fn state(&self, id: &str, root: Option<&str>) -> RuntimeView {
        if check_container_id(id).is_err() {
            return RuntimeView::Absent;
        }
        // No state directory: the runtime does not have it, and no exec is needed to know.
        let dir = state_dir(&self.path, root, id);
        if !dir.exists() {
            return RuntimeView::Absent;
        }
        match self.ask(root, id) {
            Ok(state) => view_of(&state),
            // Deleted between the look and the question.
            Err(_) if !dir.exists() => RuntimeView::Absent,
            // A directory the runtime itself says is no container: runc writes state.json
            // only once the container's process is ready, so a create cut short before that
            // leaves the directory with only exec.fifo (`runc delete ID` removes it).
            Err(NoState::DoesNotExist) => RuntimeView::HalfCreated,
            Err(NoState::Other) => RuntimeView::Unreadable,
        }
    }

    fn bundle_of(&self, id: &str, root: Option<&str>) -> Option<PathBuf> {
        if check_container_id(id).is_err() {
            return None;
        }
        let state = self.ask(root, id).ok()?;
        state.get("bundle")?.as_str().map(PathBuf::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_documents_are_read() {
        let v = |t: &str| view_of(&serde_json::from_str(t).unwrap());
        assert_eq!(v(r#"{"status":"stopped","pid":0}"#), RuntimeView::Stopped);
        assert_eq!(
            v(r#"{"status":"running","pid":42}"#),
            RuntimeView::Alive {
                status: "running".into(),
                pid: Some(42)
            }
        );
        assert_eq!(
            state_dir(Path::new("/usr/sbin/runc"), None, "c"),
            PathBuf::from("/run/runc/c")
        );
        assert_eq!(
            state_dir(Path::new("/usr/sbin/runc"), Some("/r"), "c"),
            PathBuf::from("/r/c")
        );
    }
}
