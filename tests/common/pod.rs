//! Pods without a kubelet: bundles laid out as CRI-O lays them out, with the annotations it
//! writes, run through real runc under the standard hooks (createRuntime + poststop).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use super::{Env, OCIVOL, RUNC, ok};

/// Writes `bundle/config.json` from the test's template with these annotations, spec mounts
/// added, and the createRuntime and poststop hooks of ocivol.
pub fn hooked_bundle(
    env: &Env,
    bundle: &Path,
    args: &[&str],
    annotations: &[(&str, &str)],
    extra_mounts: &[Value],
) {
    let made = env.bundle("template-copy", args, annotations);
    let mut spec: Value = serde_json::from_slice(&fs::read(made.join("config.json")).unwrap())
        .expect("template spec");
    fs::remove_dir_all(&made).unwrap();
    if let Some(m) = spec["mounts"].as_array_mut() {
        m.extend(extra_mounts.iter().cloned());
    }
    let vars = env.hook_env();
    let hook =
        |stage: &str| json!([{ "path": OCIVOL, "args": ["ocivol", "hook", stage], "env": vars }]);
    spec["hooks"] =
        json!({ "createRuntime": hook("create-runtime"), "poststop": hook("poststop") });
    fs::create_dir_all(bundle).unwrap();
    fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();
}

/// runc under a root of the test's choice; containers left under it are deleted on drop.
pub struct Runc {
    root: PathBuf,
    out_dir: PathBuf,
}

impl Runc {
    pub fn new(root: PathBuf, out_dir: &Path) -> Runc {
        Runc {
            root,
            out_dir: out_dir.to_path_buf(),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(RUNC);
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Starts a detached container; its stdio goes to a file.
    pub fn start(&self, id: &str, bundle: &Path) -> Output {
        let log = fs::File::create(self.out_dir.join(format!("{id}.out"))).unwrap();
        self.cmd(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), id])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .output()
            .unwrap()
    }

    /// Runs a container to its end in the foreground.
    pub fn run(&self, id: &str, bundle: &Path) -> Output {
        self.cmd(&["run", "--bundle", bundle.to_str().unwrap(), id])
            .output()
            .unwrap()
    }

    pub fn exec(&self, id: &str, script: &str) -> Output {
        self.cmd(&["exec", id, "sh", "-c", script])
            .output()
            .unwrap()
    }

    pub fn delete(&self, id: &str) {
        ok(
            &self.cmd(&["delete", "--force", id]).output().unwrap(),
            "delete",
        );
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        let Ok(out) = self.cmd(&["list", "-q"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.cmd(&["delete", "--force", id]).output();
        }
    }
}

/// A 64-hex container ID of containers/storage, from a short tag.
pub fn storage_id(tag: &str) -> String {
    let hex: String = tag.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0<64}")
}

/// The annotations CRI-O writes into a container's spec (internal/factory/container/
/// container.go, SpecAddAnnotations): the pod's annotations first, then its own keys, then the
/// kubelet's labels, each overwriting the one before.
pub fn crio_annotations<'a>(
    pod: &[(&'a str, &'a str)],
    namespace: &'a str,
    sandbox: &'a str,
    name: &'a str,
    kind: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut all: Vec<(&str, &str)> = pod.to_vec();
    let own = [
        ("io.container.manager", "cri-o"),
        ("io.kubernetes.cri-o.SandboxID", sandbox),
        ("io.kubernetes.cri-o.ContainerType", kind),
        ("io.kubernetes.pod.namespace", namespace),
        ("io.kubernetes.container.name", name),
    ];
    for (k, v) in own {
        all.retain(|(key, _)| *key != k);
        all.push((k, v));
    }
    all
}
