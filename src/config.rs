//! The admin's configuration: which real runtime to call, and the policy that decides what an
//! annotation may reach. Annotations are written by container authors and are untrusted; only
//! this file (owned by root) widens what they can do.
//!
//! ```json
//! {
//!   "runtime": "runc",
//!   "policy": {
//!     "allowed_bases": ["/srv/datasets"],
//!     "allowed_bind_sources": [],
//!     "auto_create": true,
//!     "shared_volumes": [],
//!     "max_volumes_per_container": 64,
//!     "volumes_from_scope": "namespace"
//!   }
//! }
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::mounts::flags::MountFlags;

/// Default location of the config file.
pub const DEFAULT_CONFIG: &str = "/etc/ocivol/config.json";
/// Default persistent state root.
pub const DEFAULT_ROOT: &str = "/var/lib/ocivol";
/// Default state root that a reboot clears.
pub const DEFAULT_RUN_ROOT: &str = "/run/ocivol";

pub const ENV_CONFIG: &str = "OCIVOL_CONFIG";
pub const ENV_ROOT: &str = "OCIVOL_ROOT";
pub const ENV_RUN_ROOT: &str = "OCIVOL_RUN_ROOT";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The real OCI runtime: an absolute path, or a name looked up in the system directories
    /// (never in the caller's PATH).
    pub runtime: String,
    /// The persistent state root, for every way in and every operator command that is given
    /// none by flag or environment.
    pub root: PathBuf,
    /// The state root that a reboot clears.
    pub run_root: PathBuf,
    pub policy: Policy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            runtime: "runc".to_string(),
            root: DEFAULT_ROOT.into(),
            run_root: DEFAULT_RUN_ROOT.into(),
            policy: Policy::default(),
        }
    }
}

/// Who may get volumes from whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VolumesFromScope {
    /// Only containers of the same containerd namespace or Kubernetes namespace.
    #[default]
    Namespace,
    /// Any container this host knows.
    Any,
}

/// An entry of `allowed_bases` or `allowed_bind_sources`: a host directory (its real path, with
/// no symlink on the way) and the mount options forced on every container mount of anything
/// under it, which no annotation can lift. Written as a plain path, or as
/// `{"path": "/srv/shared", "readonly": true, "nosuid": true, "nodev": true, "noexec": true}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedPath {
    pub path: PathBuf,
    pub force: MountFlags,
}

impl AllowedPath {
    pub fn new(path: impl Into<PathBuf>) -> AllowedPath {
        AllowedPath {
            path: path.into(),
            force: MountFlags::default(),
        }
    }
}

const ALLOWED_FIELDS: &[&str] = &["path", "readonly", "nosuid", "nodev", "noexec"];

impl Serialize for AllowedPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.force == MountFlags::default() {
            return self.path.serialize(s);
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("path", &self.path)?;
        for (on, key) in [
            (self.force.readonly, "readonly"),
            (self.force.nosuid, "nosuid"),
            (self.force.nodev, "nodev"),
            (self.force.noexec, "noexec"),
        ] {
            if on {
                m.serialize_entry(key, &true)?;
            }
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for AllowedPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Form;
        impl<'de> serde::de::Visitor<'de> for Form {
            type Value = AllowedPath;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a path, or a table with path and readonly, nosuid, nodev, noexec")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AllowedPath, E> {
                Ok(AllowedPath::new(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AllowedPath, A::Error> {
                let mut path = None;
                let mut force = MountFlags::default();
                while let Some(key) = map.next_key::<String>()? {
                    let flag = match key.as_str() {
                        "path" => {
                            path = Some(map.next_value::<PathBuf>()?);
                            continue;
                        }
                        "readonly" => &mut force.readonly,
                        "nosuid" => &mut force.nosuid,
                        "nodev" => &mut force.nodev,
                        "noexec" => &mut force.noexec,
                        other => {
                            return Err(serde::de::Error::unknown_field(other, ALLOWED_FIELDS));
                        }
                    };
                    *flag = map.next_value()?;
                }
                let path = path.ok_or_else(|| serde::de::Error::missing_field("path"))?;
                Ok(AllowedPath { path, force })
            }
        }
        d.deserialize_any(Form)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Host directories (and everything below them) that may be the base of a copy-on-write
    /// volume. Empty: no copy-on-write volume can be created from an annotation.
    pub allowed_bases: Vec<AllowedPath>,
    /// Host paths (and everything below them) that may be bind-mounted. Empty: none.
    pub allowed_bind_sources: Vec<AllowedPath>,
    /// Create a named volume on first use; when false, only volumes the operator created exist.
    pub auto_create: bool,
    /// Volume names that mean one volume shared by every scope when first used (as if an
    /// operator had run `ocivol volume create --scope any NAME`). A scope's own volume of such a
    /// name, if it has one, still comes first.
    pub shared_volumes: Vec<String>,
    /// Most entries one container may list in `io.ocivol.volumes`.
    pub max_volumes_per_container: usize,
    pub volumes_from_scope: VolumesFromScope,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_bases: Vec::new(),
            allowed_bind_sources: Vec::new(),
            auto_create: true,
            shared_volumes: Vec::new(),
            max_volumes_per_container: 64,
            volumes_from_scope: VolumesFromScope::Namespace,
        }
    }
}

impl Config {
    /// Loads the config. A missing file at the default location means the defaults (nothing on the
    /// host is reachable); a missing file that was asked for explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses and validates the config text; the error names the key that is wrong.
    /// Lines whose first non-blank characters are `//` are comments (the shipped example explains
    /// each key that way); no line of valid JSON starts so. Line numbers in errors stay right.
    pub fn parse(text: &str) -> Result<Config, String> {
        let uncommented: String = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("//") {
                    ""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        // The parser quotes a bad key as it is, newlines included: every place that shows this
        // error escapes it (commands::output::escape), so it stays one line there.
        let config: Config = serde_json::from_str(&uncommented).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.runtime.is_empty() {
            return Err("runtime: must name the real OCI runtime (e.g. \"runc\")".into());
        }
        if !self.runtime.starts_with('/') && self.runtime.contains('/') {
            return Err(format!(
                "runtime: {:?} must be an absolute path or a plain command name",
                self.runtime
            ));
        }
        for (key, list) in [
            ("policy.allowed_bases", &self.policy.allowed_bases),
            (
                "policy.allowed_bind_sources",
                &self.policy.allowed_bind_sources,
            ),
        ] {
            for a in list {
                let p = &a.path;
                if !p.is_absolute() {
                    return Err(format!("{key}: {p:?} is not an absolute path"));
                }
                if p.components().any(|c| {
                    matches!(
                        c,
                        std::path::Component::ParentDir | std::path::Component::CurDir
                    )
                }) {
                    return Err(format!(
                        "{key}: {p:?} has '.' or '..' in it; write the directory's real path"
                    ));
                }
            }
        }
        if self.policy.max_volumes_per_container == 0 {
            return Err("policy.max_volumes_per_container: must be at least 1".into());
        }
        for name in &self.policy.shared_volumes {
            crate::annotations::check_name(name)
                .map_err(|e| format!("policy.shared_volumes: {e}"))?;
        }
        Ok(())
    }
}

/// Where ocivol keeps its state, as chosen by flags, environment, or defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    pub root: PathBuf,
    pub run_root: PathBuf,
}

/// What one invocation of ocivol works with.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Config,
    pub paths: StatePaths,
}

impl Context {
    /// Builds the context from explicit values, falling back to the environment, then to the
    /// config file's `root` and `run_root`, then to the defaults.
    pub fn from_parts(
        config: Option<PathBuf>,
        root: Option<PathBuf>,
        run_root: Option<PathBuf>,
    ) -> Result<Context, ConfigError> {
        let env_path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let (config_path, explicit) = match config.or_else(|| env_path(ENV_CONFIG)) {
            Some(p) => (p, true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let config = Config::load(&config_path, explicit)?;
        let paths = StatePaths {
            root: root
                .or_else(|| env_path(ENV_ROOT))
                .unwrap_or_else(|| config.root.clone()),
            run_root: run_root
                .or_else(|| env_path(ENV_RUN_ROOT))
                .unwrap_or_else(|| config.run_root.clone()),
        };
        for (what, p) in [("root", &paths.root), ("run root", &paths.run_root)] {
            let text = p.to_string_lossy();
            if !p.is_absolute() || text.contains([',', ':', '\\', '=', '\n']) {
                return Err(ConfigError::Invalid {
                    path: p.clone(),
                    message: format!(
                        "the state {what} must be an absolute path without ',', ':', '\\', '=' or newline \
                         (it goes into overlay mount options)"
                    ),
                });
            }
        }
        Ok(Context { config, paths })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_line_comments_are_allowed() {
        let c = Config::parse(
            "// the admin's notes\n{\n  // no host path yet\n  \"runtime\": \"runc\"\n}\n",
        )
        .unwrap();
        assert_eq!(c, Config::default());
        let e = Config::parse("// x\n{\n  \"runtime\": 3\n}").unwrap_err();
        assert!(
            e.contains("line 3"),
            "line numbers count the comment lines: {e}"
        );
        let shipped = include_str!("../packaging/config.json");
        assert_eq!(
            Config::parse(shipped).unwrap(),
            Config::default(),
            "the shipped example is the defaults"
        );
    }

    #[test]
    fn empty_object_gives_safe_defaults() {
        let c = Config::parse("{}").unwrap();
        assert_eq!(c, Config::default());
        assert!(c.policy.allowed_bases.is_empty());
        assert!(c.policy.allowed_bind_sources.is_empty());
        assert_eq!(c.policy.volumes_from_scope, VolumesFromScope::Namespace);
    }

    #[test]
    fn full_config_parses() {
        let c = Config::parse(
            r#"{"runtime":"/usr/sbin/runc","policy":{"allowed_bases":["/srv"],"allowed_bind_sources":["/data"],
               "auto_create":false,"shared_volumes":["cache"],"max_volumes_per_container":8,
               "volumes_from_scope":"any"}}"#,
        )
        .unwrap();
        assert_eq!(c.runtime, "/usr/sbin/runc");
        assert_eq!(c.policy.allowed_bases, [AllowedPath::new("/srv")]);
        assert!(!c.policy.auto_create);
        assert_eq!(c.policy.max_volumes_per_container, 8);
        assert_eq!(c.policy.shared_volumes, ["cache"]);
        assert_eq!(c.policy.volumes_from_scope, VolumesFromScope::Any);
    }

    #[test]
    fn allowed_entries_may_force_options() {
        let c = Config::parse(
            r#"{"policy":{"allowed_bind_sources":["/a",{"path":"/b","readonly":true,"nodev":true}]}}"#,
        )
        .unwrap();
        let list = &c.policy.allowed_bind_sources;
        assert_eq!(list[0], AllowedPath::new("/a"));
        assert_eq!(list[1].path, PathBuf::from("/b"));
        assert!(list[1].force.readonly && list[1].force.nodev && !list[1].force.nosuid);
        // Written back the same way.
        let again = Config::parse(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn bad_configs_name_the_key() {
        let cases = [
            (r#"{"runtim":"runc"}"#, "runtim"),
            (r#"{"policy":{"allowed_base":[]}}"#, "allowed_base"),
            (
                r#"{"policy":{"allowed_bases":["rel"]}}"#,
                "policy.allowed_bases",
            ),
            (
                r#"{"policy":{"allowed_bind_sources":["rel"]}}"#,
                "policy.allowed_bind_sources",
            ),
            (
                r#"{"policy":{"max_volumes_per_container":0}}"#,
                "max_volumes_per_container",
            ),
            (r#"{"policy":{"volumes_from_scope":"world"}}"#, "world"),
            (
                r#"{"policy":{"shared_volumes":["../x"]}}"#,
                "policy.shared_volumes",
            ),
            (r#"{"runtime":"bin/runc"}"#, "runtime"),
            (
                r#"{"policy":{"allowed_bases":["/srv/../etc"]}}"#,
                "policy.allowed_bases",
            ),
            (
                r#"{"policy":{"allowed_bind_sources":[{"path":"/srv","readonly":true,"writable":true}]}}"#,
                "writable",
            ),
            (r#"{"runtime":""}"#, "runtime"),
        ];
        for (text, key) in cases {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn errors_stay_on_one_line_even_for_keys_and_paths_with_newlines() {
        for text in ["{\"a\\nb\":1}", r#"{"policy":{"allowed_bases":["\n"]}}"#] {
            let e = Config::parse(text).unwrap_err();
            let e = crate::commands::output::error_line(&anyhow::anyhow!(e));
            assert!(!e.contains('\n'), "{text}: {e:?}");
            assert!(
                e.contains("\\n"),
                "{text}: the newline is shown escaped: {e}"
            );
        }
    }

    #[test]
    fn missing_default_file_is_defaults_but_missing_explicit_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.json");
        assert_eq!(Config::load(&missing, false).unwrap(), Config::default());
        let e = Config::load(&missing, true).unwrap_err().to_string();
        assert!(e.contains("none.json") && e.contains("cannot read"), "{e}");
    }
}
