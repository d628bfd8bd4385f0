//! The scope (tenant) of a container: who it belongs to, for deciding whose volumes it may get.
//!
//! Taken only from what the engine alone controls, never from a key a pod author can set:
//!
//! 1. Which engine made the bundle, from the bundle path the engine chose:
//!    - containerd (and Docker, and Kubernetes through containerd's CRI):
//!      `…/io.containerd.runtime.v2.task/NAMESPACE/ID` (containerd's `runtime/v2/bundle.go`,
//!      `NewBundle`: `filepath.Join(state, ns, id)`);
//!    - CRI-O and podman (containers/storage): `…/DRIVER-containers/ID/userdata`, ID 64 hex
//!      digits; CRI-O when `io.container.manager` is `cri-o` (CRI-O writes it after the pod's
//!      annotations in every container's spec) or the container is CRI-O's infra container
//!      (`io.kubernetes.container.name` `POD`, a label CRI-O forces and writes last in the
//!      sandbox's spec), podman otherwise;
//!    - anything else is bare runc (or an engine ocivol does not know): the runtime's `--root`.
//! 2. Then only that engine's own keys are read: containerd's CRI `io.kubernetes.cri.*` keys
//!    (which the CRI plugin writes after it copies the pod's annotations); CRI-O's
//!    `io.kubernetes.pod.namespace`, `io.kubernetes.container.name` (the kubelet's labels, written
//!    last) and `io.kubernetes.cri-o.SandboxID`, `io.kubernetes.cri-o.ContainerType` (written after
//!    the pod's annotations). CRI-O never writes the `io.kubernetes.cri.*` keys, so under CRI-O
//!    they are pod annotations and are ignored; under containerd `io.kubernetes.pod.namespace` is
//!    one and is ignored. docs/SECURITY.md cites the engines' source for each key.
//!
//! No `io.ocivol.*` key is ever read for the scope.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The directory of containerd's runc v2 shim tasks; the next path component is the namespace.
const CONTAINERD_TASKS: &str = "io.containerd.runtime.v2.task";

/// containerd's CRI plugin (`pkg/cri/annotations` in 1.6, `internal/cri/annotations` in 2.x).
pub const CRI_SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
pub const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

/// CRI-O (`internal/annotations`) and the kubelet's labels that CRI-O writes as annotations.
pub const CRIO_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const CRIO_CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const CRIO_SANDBOX_ID: &str = "io.kubernetes.cri-o.SandboxID";
pub const CRIO_CONTAINER_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
pub const CONTAINER_MANAGER: &str = "io.container.manager";

/// The name CRI-O gives its infra (pause) container; a Kubernetes container name is a lowercase
/// DNS label, so no container of a pod can be called this.
const CRIO_INFRA_NAME: &str = "POD";

/// The engine that made a bundle, as told by [`Scope::of`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Bare runc, or an engine ocivol does not tell apart.
    #[default]
    Runc,
    Containerd,
    CriO,
    Podman,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// `containerd/NAMESPACE`, `cri-o`, `podman`, or `root:RUNTIME_ROOT` for bare runc.
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// The container's name in its pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default)]
    pub engine: Engine,
    /// The pod's sandbox (pause) container, which ocivol never touches.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sandbox_container: bool,
}

/// What the bundle path says about the engine.
enum Layout {
    Containerd { namespace: String },
    Storage { id: String },
    Other,
}

fn layout(bundle: &Path) -> Layout {
    if let Some(namespace) = containerd_namespace(bundle) {
        return Layout::Containerd { namespace };
    }
    let name = |p: Option<&Path>| {
        p.and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .map(str::to_string)
    };
    let id = name(bundle.parent());
    let store = name(bundle.parent().and_then(|p| p.parent()));
    match (name(Some(bundle)).as_deref(), id, store) {
        (Some("userdata"), Some(id), Some(store))
            if store.ends_with("-containers") && is_storage_id(&id) =>
        {
            Layout::Storage { id }
        }
        _ => Layout::Other,
    }
}

/// containers/storage's container IDs: 64 lowercase hex digits.
fn is_storage_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Scope {
    pub fn of(
        bundle: &Path,
        runtime_root: Option<&str>,
        annotations: &BTreeMap<String, String>,
    ) -> Scope {
        let get = |k: &str| annotations.get(k).filter(|v| !v.is_empty()).cloned();
        match layout(bundle) {
            Layout::Containerd { namespace } => Scope {
                namespace: format!("containerd/{namespace}"),
                pod_namespace: get(CRI_SANDBOX_NAMESPACE),
                sandbox: get(CRI_SANDBOX_ID),
                container_name: get(CRI_CONTAINER_NAME),
                engine: Engine::Containerd,
                sandbox_container: get(CRI_CONTAINER_TYPE).as_deref() == Some("sandbox"),
            },
            Layout::Storage { id }
                if get(CONTAINER_MANAGER).as_deref() == Some("cri-o")
                    || get(CRIO_CONTAINER_NAME).as_deref() == Some(CRIO_INFRA_NAME) =>
            {
                let sandbox = get(CRIO_SANDBOX_ID);
                let container_name = get(CRIO_CONTAINER_NAME);
                // In the sandbox's own spec CRI-O writes the pod's annotations after its keys
                // (server/sandbox_run_linux.go), so ContainerType alone is not trusted there: the
                // infra container's name and ID tell it too.
                let sandbox_container = get(CRIO_CONTAINER_TYPE).as_deref() != Some("container")
                    || container_name.as_deref() == Some(CRIO_INFRA_NAME)
                    || sandbox.as_deref() == Some(id.as_str());
                Scope {
                    namespace: "cri-o".into(),
                    pod_namespace: get(CRIO_POD_NAMESPACE),
                    sandbox,
                    container_name,
                    engine: Engine::CriO,
                    sandbox_container,
                }
            }
            Layout::Storage { .. } => Scope {
                namespace: "podman".into(),
                engine: Engine::Podman,
                ..Scope::default()
            },
            Layout::Other => Scope {
                namespace: format!("root:{}", runtime_root.unwrap_or("default")),
                engine: Engine::Runc,
                ..Scope::default()
            },
        }
    }

    /// Same containerd namespace (or engine, or runtime root) and same Kubernetes namespace.
    pub fn same_namespace(&self, other: &Scope) -> bool {
        self.namespace == other.namespace && self.pod_namespace == other.pod_namespace
    }

    /// The scope a volume name is resolved in, as one string: the containerd namespace or
    /// runtime root, and the Kubernetes namespace if there is one
    /// (`containerd/k8s.io,k8s:team-a`, `containerd/default`, `root:/run/runc`). Two containers
    /// get the same volume for a name only if this string is the same. It is what `ocivol ps` and
    /// `ocivol volume ls` show and what `--scope` takes. No part of it can hold `,k8s:` but a
    /// runtime root, which the engine's configuration chooses, never a container's author.
    pub fn volume_scope(&self) -> String {
        match &self.pod_namespace {
            Some(p) => format!("{},k8s:{p}", self.namespace),
            None => self.namespace.clone(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace.strip_prefix("containerd/") {
            Some(ns) => write!(f, "containerd namespace {ns}")?,
            None => match self.namespace.strip_prefix("root:") {
                Some(root) => write!(f, "runtime root {root}")?,
                None => write!(f, "{}", self.namespace)?,
            },
        }
        if let Some(p) = &self.pod_namespace {
            write!(f, ", Kubernetes namespace {p}")?;
        }
        Ok(())
    }
}

/// The namespace in a containerd task bundle path `…/io.containerd.runtime.v2.task/NS/ID`.
pub fn containerd_namespace(bundle: &Path) -> Option<String> {
    let id = bundle.file_name()?;
    let ns = bundle.parent()?;
    let tasks = ns.parent()?;
    (tasks.file_name()? == CONTAINERD_TASKS && !id.is_empty())
        .then(|| ns.file_name()?.to_str().map(str::to_string))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const CRIO_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn crio_bundle(id: &str) -> String {
        format!("/run/containers/storage/overlay-containers/{id}/userdata")
    }

    /// What CRI-O writes into a container's spec (internal/factory/container/container.go,
    /// SpecAddAnnotations): the pod's annotations first, then its own keys, then the kubelet's
    /// labels.
    fn crio(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut a = ann(extra);
        a.extend(ann(&[
            (CONTAINER_MANAGER, "cri-o"),
            (CRIO_SANDBOX_ID, "sb-a"),
            (CRIO_CONTAINER_TYPE, "container"),
            (CRIO_POD_NAMESPACE, "team-a"),
            (CRIO_CONTAINER_NAME, "app"),
        ]));
        a
    }

    #[test]
    fn containerd_namespace_comes_from_the_bundle_path() {
        let s = Scope::of(
            Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc"),
            Some("/run/containerd/runc/k8s.io"),
            &ann(&[
                (CRI_SANDBOX_NAMESPACE, "team-a"),
                (CRI_SANDBOX_ID, "sb1"),
                (CRI_CONTAINER_NAME, "app"),
                (CRI_CONTAINER_TYPE, "container"),
            ]),
        );
        assert_eq!(s.namespace, "containerd/k8s.io");
        assert_eq!(s.engine, Engine::Containerd);
        assert_eq!(s.pod_namespace.as_deref(), Some("team-a"));
        assert_eq!(s.sandbox.as_deref(), Some("sb1"));
        assert_eq!(s.container_name.as_deref(), Some("app"));
        assert!(!s.sandbox_container);
        assert_eq!(
            s.to_string(),
            "containerd namespace k8s.io, Kubernetes namespace team-a"
        );
        assert_eq!(s.volume_scope(), "containerd/k8s.io,k8s:team-a");
        let other_ns = Scope {
            pod_namespace: Some("team-b".into()),
            ..s.clone()
        };
        assert_ne!(s.volume_scope(), other_ns.volume_scope());
        assert_eq!(
            Scope::of(Path::new("/b"), Some("/run/runc"), &ann(&[])).volume_scope(),
            "root:/run/runc"
        );
    }

    #[test]
    fn under_containerd_only_the_cri_keys_are_read() {
        // A pod author can put CRI-O's keys on a pod; containerd copies them, and they are ignored.
        let s = Scope::of(
            Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc"),
            None,
            &ann(&[
                (CRIO_POD_NAMESPACE, "team-b"),
                (CRIO_SANDBOX_ID, "sb-b"),
                (CRIO_CONTAINER_NAME, "db"),
                (CONTAINER_MANAGER, "cri-o"),
            ]),
        );
        assert_eq!(s.engine, Engine::Containerd);
        assert_eq!(
            (s.pod_namespace, s.sandbox, s.container_name),
            (None, None, None)
        );
        // The sandbox container, as containerd's CRI marks it.
        let s = Scope::of(
            Path::new("/s/io.containerd.runtime.v2.task/k8s.io/sb"),
            None,
            &ann(&[(CRI_CONTAINER_TYPE, "sandbox")]),
        );
        assert!(s.sandbox_container);
    }

    #[test]
    fn under_cri_o_a_spoofed_cri_key_does_not_change_the_scope() {
        let spoofed = crio(&[
            (CRI_SANDBOX_NAMESPACE, "team-b"),
            (CRI_SANDBOX_ID, "sb-b"),
            (CRI_CONTAINER_NAME, "db"),
            // Pod annotations come first: CRI-O overwrites these with its own.
            (CRIO_POD_NAMESPACE, "team-b"),
            (CRIO_SANDBOX_ID, "sb-b"),
        ]);
        let s = Scope::of(
            Path::new(&crio_bundle(CRIO_ID)),
            Some("/run/runc"),
            &spoofed,
        );
        assert_eq!(s.engine, Engine::CriO);
        assert_eq!(s.namespace, "cri-o");
        assert_eq!(s.pod_namespace.as_deref(), Some("team-a"));
        assert_eq!(s.sandbox.as_deref(), Some("sb-a"));
        assert_eq!(s.container_name.as_deref(), Some("app"));
        assert!(!s.sandbox_container);
        assert_eq!(
            s,
            Scope::of(Path::new(&crio_bundle(CRIO_ID)), None, &crio(&[]))
        );
    }

    #[test]
    fn cri_o_sandboxes_are_told_by_what_the_pod_author_cannot_change() {
        // In the infra container's spec the pod's annotations come after CRI-O's keys: a pod
        // author may rewrite ContainerType, SandboxID and io.container.manager there, but not
        // the container-name label CRI-O forces to POD.
        let spoofed = ann(&[
            (CONTAINER_MANAGER, "libpod"),
            (CRIO_CONTAINER_TYPE, "container"),
            (CRIO_SANDBOX_ID, "other"),
            (CRIO_POD_NAMESPACE, "team-a"),
            (CRIO_CONTAINER_NAME, "POD"),
        ]);
        let s = Scope::of(Path::new(&crio_bundle(CRIO_ID)), None, &spoofed);
        assert_eq!(s.engine, Engine::CriO);
        assert!(s.sandbox_container);
        let plain = ann(&[
            (CONTAINER_MANAGER, "cri-o"),
            (CRIO_CONTAINER_TYPE, "sandbox"),
            (CRIO_SANDBOX_ID, CRIO_ID),
            (CRIO_POD_NAMESPACE, "team-a"),
            (CRIO_CONTAINER_NAME, "POD"),
        ]);
        assert!(Scope::of(Path::new(&crio_bundle(CRIO_ID)), None, &plain).sandbox_container);
    }

    #[test]
    fn podman_and_bare_runc_read_no_kubernetes_key() {
        let k8s = crio(&[(CRI_SANDBOX_NAMESPACE, "team-b")]);
        let mut podman = k8s.clone();
        podman.insert(CONTAINER_MANAGER.into(), "libpod".into());
        let s = Scope::of(
            Path::new(&format!(
                "/var/lib/containers/storage/vfs-containers/{CRIO_ID}/userdata"
            )),
            None,
            &podman,
        );
        assert_eq!((s.engine, s.namespace.as_str()), (Engine::Podman, "podman"));
        assert_eq!((s.pod_namespace, s.sandbox), (None, None));
        let s = Scope::of(Path::new("/b"), Some("/run/runc"), &k8s);
        assert_eq!(s.engine, Engine::Runc);
        assert_eq!(s.namespace, "root:/run/runc");
        assert_eq!((s.pod_namespace, s.container_name), (None, None));
        assert_eq!(
            Scope::of(Path::new("/b"), None, &ann(&[])).namespace,
            "root:default"
        );
        // Not the storage layout: a short ID, or no -containers directory.
        for b in [
            "/x/overlay-containers/abc/userdata".to_string(),
            format!("/x/overlay/{CRIO_ID}/userdata"),
        ] {
            assert_eq!(
                Scope::of(Path::new(&b), None, &k8s).engine,
                Engine::Runc,
                "{b}"
            );
        }
    }

    #[test]
    fn the_containerd_layout_is_exact() {
        assert_eq!(
            containerd_namespace(Path::new("/s/io.containerd.runtime.v2.task/ns/id")).as_deref(),
            Some("ns")
        );
        for not in [
            "/s/io.containerd.runtime.v2.task/ns",
            "/s/io.containerd.runtime.v2.task/ns/id/deeper",
            "/b",
        ] {
            assert_eq!(containerd_namespace(Path::new(not)), None, "{not}");
        }
    }

    #[test]
    fn ocivol_keys_never_change_the_scope() {
        let plain = Scope::of(Path::new("/b"), Some("/r"), &ann(&[]));
        let spoofed = Scope::of(
            Path::new("/b"),
            Some("/r"),
            &ann(&[("io.ocivol.scope", "other"), ("io.ocivol.namespace", "x")]),
        );
        assert_eq!(plain, spoofed);
    }

    #[test]
    fn namespaces_compare_engine_and_pod_namespace() {
        let a = Scope {
            namespace: "containerd/a".into(),
            ..Default::default()
        };
        let b = Scope {
            namespace: "containerd/b".into(),
            ..Default::default()
        };
        assert!(a.same_namespace(&a.clone()));
        assert!(!a.same_namespace(&b));
        let a2 = Scope {
            pod_namespace: Some("p".into()),
            ..a.clone()
        };
        assert!(!a.same_namespace(&a2));
    }
}
