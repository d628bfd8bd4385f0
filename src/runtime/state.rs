//! What the real runtime knows of a container: `RUNTIME [--root R] state ID`, and whether its
//! state directory exists at all. The store's reconciliation asks through [`RuntimeProbe`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::store::{ContainerProbe, RuntimeView};

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

/// `RUNTIME [--root R] state ID` as JSON, if the runtime can say.
pub fn query(runtime: &Path, root: Option<&str>, id: &str) -> Option<serde_json::Value> {
    ask(runtime, root, id).ok()
}

/// Why `RUNTIME state` gave no state.
enum NoState {
    /// The runtime says the container does not exist.
    DoesNotExist,
    /// Anything else: it could not be run, failed otherwise, or printed no JSON.
    Other,
}

/// `RUNTIME [--root R] state ID`: the state document, or why there is none.
fn ask(runtime: &Path, root: Option<&str>, id: &str) -> Result<serde_json::Value, NoState> {
    let mut cmd = Command::new(runtime);
    if let Some(root) = root {
        cmd.args(["--root", root]);
    }
    let out = cmd
        .args(["state", id])
        .stdin(Stdio::null())
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

/// The real runtime, asked about containers.
pub struct RuntimeProbe {
    runtime: PathBuf,
}

impl RuntimeProbe {
    pub fn new(runtime: PathBuf) -> RuntimeProbe {
        RuntimeProbe { runtime }
    }
}

impl ContainerProbe for RuntimeProbe {
    fn state(&self, id: &str, runtime_root: Option<&str>) -> RuntimeView {
        if crate::container_id::check_container_id(id).is_err() {
            return RuntimeView::Absent;
        }
        // No state directory: the runtime does not have it, and no exec is needed to know.
        let dir = state_dir(&self.runtime, runtime_root, id);
        if !dir.exists() {
            return RuntimeView::Absent;
        }
        match ask(&self.runtime, runtime_root, id) {
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
