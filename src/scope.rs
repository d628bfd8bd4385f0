//! The scope (tenant) of a container: who it belongs to, for deciding whose volumes it may get.
//!
//! Taken only from what the engine sets and a container's author cannot: the containerd
//! namespace in the bundle path (`…/io.containerd.runtime.v2.task/NAMESPACE/ID`), else the
//! runtime's `--root`; and the Kubernetes keys that containerd's CRI plugin and CRI-O write into
//! every spec themselves, over anything a pod author put there. No `io.ocivol.*` key is ever
//! read for the scope.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The directory of containerd's runc v2 shim tasks; the next path component is the namespace.
const CONTAINERD_TASKS: &str = "io.containerd.runtime.v2.task";

/// Engine keys, containerd CRI first, then CRI-O.
const POD_NAMESPACE: &[&str] = &[
    "io.kubernetes.cri.sandbox-namespace",
    "io.kubernetes.pod.namespace",
];
const SANDBOX: &[&str] = &[
    "io.kubernetes.cri.sandbox-id",
    "io.kubernetes.cri-o.SandboxID",
];
const CONTAINER_NAME: &[&str] = &[
    "io.kubernetes.cri.container-name",
    "io.kubernetes.container.name",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// `containerd/NAMESPACE`, or `root:RUNTIME_ROOT` for other engines and bare runc.
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// The container's name in its pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
}

impl Scope {
    pub fn of(
        bundle: &Path,
        runtime_root: Option<&str>,
        annotations: &BTreeMap<String, String>,
    ) -> Scope {
        let first = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| annotations.get(*k).filter(|v| !v.is_empty()).cloned())
        };
        Scope {
            namespace: containerd_namespace(bundle)
                .map(|ns| format!("containerd/{ns}"))
                .unwrap_or_else(|| format!("root:{}", runtime_root.unwrap_or("default"))),
            pod_namespace: first(POD_NAMESPACE),
            sandbox: first(SANDBOX),
            container_name: first(CONTAINER_NAME),
        }
    }

    /// Same containerd namespace (or runtime root) and same Kubernetes namespace.
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
            None => write!(
                f,
                "runtime root {}",
                self.namespace.trim_start_matches("root:")
            )?,
        }
        if let Some(p) = &self.pod_namespace {
            write!(f, ", Kubernetes namespace {p}")?;
        }
        Ok(())
    }
}

/// The namespace in a containerd task bundle path.
pub fn containerd_namespace(bundle: &Path) -> Option<String> {
    let mut parts = bundle.components().map(|c| c.as_os_str().to_string_lossy());
    parts.find(|c| c == CONTAINERD_TASKS)?;
    parts.next().map(|ns| ns.into_owned())
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

    #[test]
    fn containerd_namespace_comes_from_the_bundle_path() {
        let s = Scope::of(
            Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc"),
            Some("/run/containerd/runc/k8s.io"),
            &ann(&[
                ("io.kubernetes.cri.sandbox-namespace", "team-a"),
                ("io.kubernetes.cri.sandbox-id", "sb1"),
                ("io.kubernetes.cri.container-name", "app"),
            ]),
        );
        assert_eq!(s.namespace, "containerd/k8s.io");
        assert_eq!(s.pod_namespace.as_deref(), Some("team-a"));
        assert_eq!(s.sandbox.as_deref(), Some("sb1"));
        assert_eq!(s.container_name.as_deref(), Some("app"));
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
    fn other_engines_use_the_runtime_root_and_cri_o_keys() {
        let s = Scope::of(
            Path::new("/var/lib/containers/storage/overlay-containers/x/userdata"),
            Some("/run/runc"),
            &ann(&[
                ("io.kubernetes.pod.namespace", "b"),
                ("io.kubernetes.container.name", "side"),
            ]),
        );
        assert_eq!(s.namespace, "root:/run/runc");
        assert_eq!(s.pod_namespace.as_deref(), Some("b"));
        assert_eq!(
            Scope::of(Path::new("/b"), None, &ann(&[])).namespace,
            "root:default"
        );
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
