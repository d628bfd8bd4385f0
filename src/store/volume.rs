//! A volume's definition, `volumes/STORAGE/volume.json`: what it was created as. A volume is
//! used as it was created; a request that contradicts it is refused.
//!
//! Names belong to a scope (see [`crate::scope::Scope::volume_scope`]). The store works on a
//! storage name, the volume's directory:
//!
//! - a volume of one scope: `NAME@HASH`, HASH the first 16 hex digits of the SHA-256 of the scope
//!   string (`cache@3f1c…`); `@` never occurs in a name, so no scoped volume can take a shared
//!   one's place, and a second preimage of SHA-256 is out of reach, so no scope can choose
//!   another's storage name; the definition records the scope, and a definition whose scope is
//!   not the one asked for is refused all the same;
//! - a volume shared by every scope (made by an operator, `--scope any`, or by the policy's
//!   `shared_volumes`): `NAME`, scope `any`;
//! - a volume made before volumes had a scope: `NAME`, no scope in its volume.json; it is shared,
//!   as if `any`;
//! - an anonymous volume: its random name; it records the scope of its container, for `ls`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{IoContext, Result, VolumeRequest};
use crate::annotations::Ownership;

pub(super) const FILE: &str = "volume.json";

/// The scope of a volume every scope shares.
pub const ANY_SCOPE: &str = "any";

/// The storage name of volume `name` of `scope` (`any`: the name itself).
pub fn storage_name(name: &str, scope: &str) -> String {
    use sha2::{Digest, Sha256};
    if scope == ANY_SCOPE {
        return name.to_string();
    }
    let digest = Sha256::digest(scope.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}@{hex}")
}

/// Whether a directory name under `volumes/` is one the store makes: a volume name, or a name
/// and `@` and 16 hex digits.
pub fn is_storage_name(s: &str) -> bool {
    let (name, hash) = match s.split_once('@') {
        Some((n, h)) => (n, Some(h)),
        None => (s, None),
    };
    crate::annotations::check_name(name).is_ok()
        && hash.is_none_or(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A `--scope` an operator gives: `any`, or a scope string as [`Scope::volume_scope`] makes
/// them (`containerd/…`, `root:…`).
///
/// [`Scope::volume_scope`]: crate::scope::Scope::volume_scope
pub fn check_scope(scope: &str) -> std::result::Result<(), String> {
    if scope == ANY_SCOPE
        || (scope.len() > "containerd/".len() && scope.starts_with("containerd/"))
        || (scope.len() > "root:".len() && scope.starts_with("root:"))
    {
        Ok(())
    } else {
        Err(format!(
            "unknown scope {scope:?}: use any, or a scope as ocivol ps and ocivol volume ls show \
             it (containerd/NAMESPACE, root:RUNTIME_ROOT, each optionally followed by \
             ,k8s:NAMESPACE)"
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDef {
    /// The storage name: the volume's directory (see the module's header).
    pub name: String,
    /// The scope whose containers find it by its name, `any` for every scope; none in a
    /// definition made before volumes had scopes (shared, as `any`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The resolved base directory of a copy-on-write volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<PathBuf>,
    #[serde(default)]
    pub volatile: bool,
    /// Created for one container, removed with its last user.
    #[serde(default)]
    pub anonymous: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Seconds since the epoch.
    #[serde(default)]
    pub created: u64,
    /// `uid=`, `gid=`, `mode=` it was created with (what its root got then); none of them in a
    /// definition made before these options.
    #[serde(flatten)]
    pub owner: Ownership,
    /// `size=`, `inodes=`: project-quota limits on its data or changes (see `quota.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<super::quota::Quota>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    Plain,
    CopyOnWrite,
}

impl VolumeDef {
    pub fn new(name: &str, base: Option<PathBuf>, volatile: bool, anonymous: bool) -> VolumeDef {
        VolumeDef {
            name: name.to_string(),
            scope: None,
            base,
            volatile,
            anonymous,
            labels: BTreeMap::new(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            owner: Ownership::default(),
            quota: None,
        }
    }

    /// The name containers and operators use (the storage name without its `@HASH`).
    pub fn volume_name(&self) -> &str {
        self.name.split_once('@').map_or(&self.name, |(n, _)| n)
    }

    /// Its scope as `ls` shows it and `--scope` takes it: `any` for a shared volume.
    pub fn scope_label(&self) -> &str {
        self.scope.as_deref().unwrap_or(ANY_SCOPE)
    }

    /// Shared by every scope: made so by an operator, or made before volumes had scopes.
    pub fn is_shared(&self) -> bool {
        !self.anonymous && self.scope_label() == ANY_SCOPE
    }

    pub fn kind(&self) -> VolumeKind {
        if self.base.is_some() {
            VolumeKind::CopyOnWrite
        } else {
            VolumeKind::Plain
        }
    }

    /// Whether a request can use this volume as it is; the error says what contradicts it.
    pub fn check_request(&self, req: &VolumeRequest) -> std::result::Result<(), String> {
        let have = self.quota.map(|q| (q.size, q.inodes)).unwrap_or_default();
        for (key, have, want) in [
            ("size", have.0, req.limits.size),
            ("inodes", have.1, req.limits.inodes),
        ] {
            if want.is_some() && want != have {
                return Err(format!(
                    "it was created with {}, not {key}={}; an existing volume's limits are not changed: use another name or drop {key}=",
                    have.map_or(format!("no {key}="), |h| format!("{key}={h}")),
                    want.unwrap_or_default()
                ));
            }
        }
        self.check_use(
            req.base.as_ref().map(|b| b.path()),
            req.volatile,
            &req.owner,
        )
    }

    /// Whether the volume can be used as copy-on-write over `base` (or plain), volatile or not,
    /// by a request that gives `owner`. An option left out never contradicts; one given must be
    /// what the volume was created with: an existing volume's root is not changed.
    pub fn check_use(
        &self,
        base: Option<&Path>,
        volatile: bool,
        owner: &Ownership,
    ) -> std::result::Result<(), String> {
        self.check_kind(base, volatile)?;
        let show = |key: &str, v: u32| {
            if key == "mode" {
                format!("{key}={v:04o}")
            } else {
                format!("{key}={v}")
            }
        };
        for (key, have, want) in [
            ("uid", self.owner.uid, owner.uid),
            ("gid", self.owner.gid, owner.gid),
            ("mode", self.owner.mode, owner.mode),
        ] {
            match (have, want) {
                (_, None) => {}
                (Some(h), Some(w)) if h == w => {}
                (Some(h), Some(w)) => {
                    return Err(format!(
                        "it was created with {}, not {}; an existing volume's root is not changed: use another name or drop {key}=",
                        show(key, h),
                        show(key, w)
                    ));
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "it was created without {key}=; an existing volume's root is not changed: use another name or drop {key}="
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_kind(&self, base: Option<&Path>, volatile: bool) -> std::result::Result<(), String> {
        match (&self.base, base) {
            (None, Some(b)) => Err(format!(
                "it exists as a plain volume, so it cannot be copy-on-write over {}; use another name or drop base=",
                b.display()
            )),
            (Some(have), Some(want)) if have != want => Err(format!(
                "it exists copy-on-write over {}, not over {}; use another name or the same base",
                have.display(),
                want.display()
            )),
            _ if volatile && !self.volatile => Err(
                "it exists as a persistent volume; it cannot be made volatile; use another name"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    pub fn load(dir: &Path) -> Result<Option<VolumeDef>> {
        super::fsio::read_json_opt(&dir.join(FILE))
    }

    /// Whether the volume of `dir` may have a definition, without reading it: false only when
    /// there is none (any other failure is for [`VolumeDef::load`] to report).
    pub fn exists(dir: &Path) -> bool {
        !matches!(std::fs::symlink_metadata(dir.join(FILE)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        let text = super::fsio::json_for(&path, self)?;
        crate::durable::write(&path, &text, "half-written-definition")
            .ctx(|| format!("write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_names_tell_scopes_apart_and_keep_shared_names() {
        let a = storage_name("cache", "containerd/k8s.io,k8s:team-a");
        let b = storage_name("cache", "containerd/k8s.io,k8s:team-b");
        assert_ne!(a, b);
        assert!(
            a.starts_with("cache@") && a.len() == "cache@".len() + 16,
            "{a}"
        );
        assert_eq!(a, storage_name("cache", "containerd/k8s.io,k8s:team-a"));
        assert_eq!(storage_name("cache", ANY_SCOPE), "cache");
        for ok in [a.as_str(), "cache", "0123456789abcdef0123456789abcdef"] {
            assert!(is_storage_name(ok), "{ok}");
        }
        for bad in [
            "cache@",
            "cache@xyz",
            "@0123456789abcdef",
            "../x",
            "a@b@0123456789abcdef",
        ] {
            assert!(!is_storage_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_definition_without_a_scope_is_shared() {
        let old: VolumeDef =
            serde_json::from_str(r#"{"name":"old","labels":{},"created":1}"#).unwrap();
        assert_eq!(old.scope, None);
        assert!(old.is_shared());
        assert_eq!(old.scope_label(), "any");
        let mut scoped = VolumeDef::new("c@0123456789abcdef", None, false, false);
        scoped.scope = Some("root:/r".into());
        assert!(!scoped.is_shared());
        assert_eq!(scoped.volume_name(), "c");
        let mut anon = VolumeDef::new("0123", None, false, true);
        anon.scope = Some("root:/r".into());
        assert!(!anon.is_shared());
    }

    #[test]
    fn uid_gid_and_mode_must_be_what_the_volume_was_created_with() {
        let mut def = VolumeDef::new("v", None, false, false);
        def.owner = Ownership {
            uid: Some(1000),
            gid: None,
            mode: Some(0o750),
        };
        let check = |uid, gid, mode| def.check_use(None, false, &Ownership { uid, gid, mode });
        assert_eq!(check(None, None, None), Ok(()));
        assert_eq!(check(Some(1000), None, Some(0o750)), Ok(()));
        let e = check(Some(2000), None, None).unwrap_err();
        assert!(
            e.starts_with("it was created with uid=1000, not uid=2000;"),
            "{e}"
        );
        let e = check(None, None, Some(0o700)).unwrap_err();
        assert!(e.contains("mode=0750, not mode=0700"), "{e}");
        let e = check(None, Some(5), None).unwrap_err();
        assert!(e.contains("created without gid="), "{e}");
        // The definition keeps them, the mode as octal text; an older one has none.
        let json = serde_json::to_value(&def).unwrap();
        assert_eq!(
            (&json["uid"], &json["mode"]),
            (&serde_json::json!(1000), &serde_json::json!("0750"))
        );
        assert!(json.get("gid").is_none());
        assert_eq!(serde_json::from_value::<VolumeDef>(json).unwrap(), def);
        let old: VolumeDef =
            serde_json::from_str(r#"{"name":"old","labels":{},"created":1}"#).unwrap();
        assert!(old.owner.is_empty());
    }

    #[test]
    fn operator_scopes_are_checked() {
        for ok in [
            "any",
            "containerd/default",
            "root:/run/runc",
            "containerd/k8s.io,k8s:a",
        ] {
            assert!(check_scope(ok).is_ok(), "{ok}");
        }
        for bad in ["", "team-a", "containerd/", "root:", "ANY"] {
            assert!(check_scope(bad).is_err(), "{bad}");
        }
    }
}
