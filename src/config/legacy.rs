//! The config format of ocivol before config.toml: `/etc/ocivol/config.json`, JSON with whole
//! lines of `//` comments. It is no longer read as a config; it is recognised (to tell the
//! user to convert it rather than fail on a TOML syntax error) and read by
//! `ocivol config --convert` alone.

use std::path::PathBuf;

use serde::Deserialize;

use super::{AllowedPath, Config, Policy, VolumesFromScope};
use crate::mounts::flags::MountFlags;

/// The name the old config had in the config directory.
pub const LEGACY_FILE: &str = "config.json";

/// The text without its `//` comment lines (kept as empty lines, so that line numbers hold).
fn uncomment(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the text is the old format: a JSON object once the comment lines are gone (no TOML
/// document is one: TOML cannot start with `{`).
pub fn is_legacy(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(&uncomment(text)).is_ok_and(|v| v.is_object())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Old {
    runtime: String,
    root: PathBuf,
    run_root: PathBuf,
    policy: OldPolicy,
}

impl Default for Old {
    fn default() -> Self {
        let c = Config::default();
        Old {
            runtime: c.runtime,
            root: c.root,
            run_root: c.run_root,
            policy: OldPolicy::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct OldPolicy {
    allowed_bases: Vec<OldAllowed>,
    allowed_bind_sources: Vec<OldAllowed>,
    auto_create: bool,
    shared_volumes: Vec<String>,
    max_volumes_per_container: usize,
    volumes_from_scope: OldScope,
}

impl Default for OldPolicy {
    fn default() -> Self {
        let p = Policy::default();
        OldPolicy {
            allowed_bases: Vec::new(),
            allowed_bind_sources: Vec::new(),
            auto_create: p.auto_create,
            shared_volumes: Vec::new(),
            max_volumes_per_container: p.max_volumes_per_container,
            volumes_from_scope: OldScope::Namespace,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum OldScope {
    Namespace,
    Any,
}

/// An entry of the old lists: a path, or `{"path": …, "readonly": true, …}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OldAllowed {
    Path(PathBuf),
    Table(OldAllowedTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OldAllowedTable {
    path: PathBuf,
    #[serde(default)]
    readonly: bool,
    #[serde(default)]
    nosuid: bool,
    #[serde(default)]
    nodev: bool,
    #[serde(default)]
    noexec: bool,
}

impl From<OldAllowed> for AllowedPath {
    fn from(a: OldAllowed) -> AllowedPath {
        match a {
            OldAllowed::Path(p) => AllowedPath::new(p),
            OldAllowed::Table(t) => AllowedPath {
                path: t.path,
                force: MountFlags {
                    readonly: t.readonly,
                    nosuid: t.nosuid,
                    nodev: t.nodev,
                    noexec: t.noexec,
                },
            },
        }
    }
}

/// Reads old-format text into a config (validated like a config.toml), for conversion.
pub fn parse(text: &str) -> Result<Config, String> {
    let old: Old = serde_json::from_str(&uncomment(text)).map_err(|e| e.to_string())?;
    let p = old.policy;
    let config = Config {
        runtime: old.runtime,
        root: old.root,
        run_root: old.run_root,
        // Not a setting of the old format.
        overlay_linger: std::time::Duration::ZERO,
        policy: Policy {
            allowed_bases: p.allowed_bases.into_iter().map(Into::into).collect(),
            allowed_bind_sources: p.allowed_bind_sources.into_iter().map(Into::into).collect(),
            auto_create: p.auto_create,
            shared_volumes: p.shared_volumes,
            max_volumes_per_container: p.max_volumes_per_container,
            volumes_from_scope: match p.volumes_from_scope {
                OldScope::Namespace => VolumesFromScope::Namespace,
                OldScope::Any => VolumesFromScope::Any,
            },
        },
    };
    config.validate().map_err(|(_, message)| message)?;
    Ok(config)
}
