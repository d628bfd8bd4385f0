//! A container's ID and its key in ocivol's state. An ID becomes a file name (`KEY.json`, a
//! user record, a staging directory), and the same ID may exist under two runtime roots (two
//! containerd namespaces) or come from a hook that knows no root at all: the rules for both live
//! here, below everything that names a container.

use std::path::Path;

/// A container ID becomes a file name in ocivol's state: allow what runc allows
/// (`[\w+.-]+`), never `/`, `.` or `..`.
pub fn check_container_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid container ID {id:?}: use letters, digits, '_', '+', '.' and '-'"
        ))
    }
}

/// The key root of a container prepared by a hook: its bundle path, which runc, CRI-O and podman
/// all give every hook of the container (`bundle` in the OCI state).
pub fn hook_key_root(bundle: &Path) -> String {
    format!("bundle:{}", bundle.display())
}

/// The key root of a container prepared by podman's precreate hook, keyed by the container ID
/// that podman gives its poststop hook (see hook::precreate).
pub const PRECREATE_KEY_ROOT: &str = "podman-precreate";

/// The key of a container in ocivol's state: its ID and a hash of the runtime root, as the
/// same ID may exist under two roots (two containerd namespaces).
pub fn container_key(id: &str, runtime_root: Option<&str>) -> String {
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in runtime_root.unwrap_or("").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{id}.{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_checked() {
        for ok in ["a", "web-1", "k8s_pod.x+y", "0123456789abcdef"] {
            assert!(check_container_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0"] {
            assert!(check_container_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn same_id_under_two_roots_has_two_keys() {
        let a = container_key("web", Some("/run/containerd/runc/default"));
        let b = container_key("web", Some("/run/containerd/runc/k8s.io"));
        assert_ne!(a, b);
        assert!(a.starts_with("web."));
        assert_eq!(
            a,
            container_key("web", Some("/run/containerd/runc/default"))
        );
    }
}
