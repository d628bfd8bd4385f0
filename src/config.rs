//! The admin's configuration, `/etc/ocivol/config.toml`: which real runtime to call, where the
//! state lives, and the policy that decides what an annotation may reach. Annotations are
//! written by container authors and are untrusted; only this file (owned by root) widens what
//! they can do.
//!
//! ```toml
//! runtime = "runc"
//! root = "/var/lib/ocivol"
//! run_root = "/run/ocivol"
//! overlay_linger = "0s"
//!
//! [policy]
//! allowed_bases = ["/srv/datasets"]
//! allowed_bind_sources = [{ path = "/srv/shared", options = ["readonly", "nosuid"] }]
//! auto_create = true
//! shared_volumes = []
//! max_volumes_per_container = 64
//! volumes_from_scope = "namespace"
//! ```
//!
//! `parse.rs` reads it (every key known, errors with the key and its line), `render.rs` writes
//! it (`ocivol config`), `legacy.rs` recognises and converts the JSON file of older releases.
//! A new setting is a field here, a key in [`TOP_KEYS`] or [`POLICY_KEYS`], a line in each of
//! the reader and the writer, and its documented default in packaging/config.toml.

mod legacy;
mod parse;
pub mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use crate::mounts::flags::MountFlags;

pub use legacy::LEGACY_FILE;
pub use parse::{KeyLines, ParseError};

/// Default location of the config file.
pub const DEFAULT_CONFIG: &str = "/etc/ocivol/config.toml";
/// Default persistent state root.
pub const DEFAULT_ROOT: &str = "/var/lib/ocivol";
/// Default state root that a reboot clears.
pub const DEFAULT_RUN_ROOT: &str = "/run/ocivol";

pub const ENV_CONFIG: &str = "OCIVOL_CONFIG";
pub const ENV_ROOT: &str = "OCIVOL_ROOT";
pub const ENV_RUN_ROOT: &str = "OCIVOL_RUN_ROOT";

/// The keys of the top level, as an unknown-key error lists them.
pub const TOP_KEYS: &[&str] = &["runtime", "root", "run_root", "overlay_linger", "policy"];
/// The keys of `[policy]`.
pub const POLICY_KEYS: &[&str] = &[
    "allowed_bases",
    "allowed_bind_sources",
    "auto_create",
    "shared_volumes",
    "max_volumes_per_container",
    "volumes_from_scope",
];
/// The options an entry of `allowed_bases` or `allowed_bind_sources` may force.
pub const FORCE_OPTIONS: &[&str] = &["readonly", "nosuid", "nodev", "noexec"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}{}: {message}", line.map(|n| format!(" line {n}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A file given as the config is in the JSON format of older releases.
    #[error(
        "config {path} is ocivol's old JSON config format, which is no longer read: convert it with `ocivol config --convert {path} > {}` and use that file",
        path.with_extension("toml").display()
    )]
    Legacy { path: PathBuf },
    /// The default config.toml is absent, and the JSON file of older releases is beside it.
    #[error(
        "config {path} is absent, and {legacy} (the JSON config of older ocivol releases) is no longer read: convert it with `ocivol config --convert {legacy} > {path}`, check the result, then remove {legacy}"
    )]
    LegacyOnly { path: PathBuf, legacy: PathBuf },
    /// The default config.toml is there, and so is the JSON file of older releases.
    #[error(
        "config {legacy} (the JSON config of older ocivol releases) is still beside {path} and is no longer read: put what it sets into {path} (`ocivol config --convert {legacy}` prints it as TOML), then remove {legacy}"
    )]
    LegacyBeside { path: PathBuf, legacy: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// The real OCI runtime: an absolute path, or a name looked up in the system directories
    /// (never in the caller's PATH).
    pub runtime: String,
    /// The persistent state root, for every way in and every operator command that is given
    /// none by flag or environment.
    pub root: PathBuf,
    /// The state root that a reboot clears.
    pub run_root: PathBuf,
    /// How long a copy-on-write volume's overlay stays mounted after its last user, for the
    /// next one to take (`0`: unmounted at once). Seconds, or a number with `s`, `m` or `h`.
    #[serde(serialize_with = "ser_duration")]
    pub overlay_linger: std::time::Duration,
    pub policy: Policy,
}

/// A duration in seconds: a number, or a string with `s`, `m` or `h` (`"30s"`, `"2m"`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!("{text:?} is not a duration: write seconds, or e.g. \"30s\", \"2m\"")
    })?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
    .ok_or_else(|| format!("{text:?} is not a duration: the unit is one of s, m, h"))?;
    Ok(std::time::Duration::from_secs(secs))
}

fn ser_duration<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", d.as_secs()))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            runtime: "runc".to_string(),
            root: DEFAULT_ROOT.into(),
            run_root: DEFAULT_RUN_ROOT.into(),
            overlay_linger: std::time::Duration::ZERO,
            policy: Policy::default(),
        }
    }
}

/// Who may get volumes from whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
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
/// `{ path = "/srv/shared", options = ["readonly", "nosuid", "nodev", "noexec"] }`
/// (the same shape in `ocivol config --format json`).
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

/// The names of the forced options, in the order of [`FORCE_OPTIONS`].
pub fn force_options(f: MountFlags) -> Vec<&'static str> {
    [f.readonly, f.nosuid, f.nodev, f.noexec]
        .into_iter()
        .zip(FORCE_OPTIONS)
        .filter_map(|(on, name)| on.then_some(*name))
        .collect()
}

impl Serialize for AllowedPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let options = force_options(self.force);
        if options.is_empty() {
            return self.path.serialize(s);
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("path", &self.path)?;
        m.serialize_entry("options", &options)?;
        m.end()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// host is reachable), unless the JSON config of older releases is beside it; a missing file
    /// that was asked for explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        Ok(Config::read(path, explicit)?
            .map(|(c, _)| c)
            .unwrap_or_default())
    }

    /// As [`Config::load`], with the line of each key the file set; `None` when the default
    /// file is absent (the defaults apply).
    pub fn read(path: &Path, explicit: bool) -> Result<Option<(Config, KeyLines)>, ConfigError> {
        let legacy = (!explicit).then(|| path.with_file_name(LEGACY_FILE));
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                if let Some(legacy) = legacy.filter(|l| l.exists()) {
                    return Err(ConfigError::LegacyOnly {
                        path: path.to_path_buf(),
                        legacy,
                    });
                }
                return Ok(None);
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let parsed = match Config::parse_lines(&text) {
            Ok(parsed) => parsed,
            Err(_) if legacy::is_legacy(&text) => {
                return Err(ConfigError::Legacy {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line: e.line,
                    message: e.message,
                });
            }
        };
        // An old config.json left beside config.toml is harmless when it says the same (a
        // package upgrade leaves the old default file; an admin who converted may not have
        // removed it): doctor says to remove it. One that differs would be silently lost.
        if let Some(legacy) = legacy.filter(|l| l.exists())
            && Config::legacy_beside(path).as_ref() != Some(&parsed.0)
        {
            return Err(ConfigError::LegacyBeside {
                path: path.to_path_buf(),
                legacy,
            });
        }
        Ok(Some(parsed))
    }

    /// The settings of the old config.json beside a config.toml, if it is there and readable.
    pub fn legacy_beside(path: &Path) -> Option<Config> {
        let text = std::fs::read_to_string(path.with_file_name(LEGACY_FILE)).ok()?;
        legacy::parse(&text).ok()
    }

    /// Parses and validates config.toml text; the error names the key that is wrong and its line.
    pub fn parse(text: &str) -> Result<Config, ParseError> {
        Config::parse_lines(text).map(|(c, _)| c)
    }

    /// As [`Config::parse`], with the line of each key the text set.
    pub fn parse_lines(text: &str) -> Result<(Config, KeyLines), ParseError> {
        let (config, lines) = parse::parse(text)?;
        config.validate().map_err(|(key, message)| ParseError {
            line: lines.get(key).copied(),
            message,
        })?;
        Ok((config, lines))
    }

    /// Reads the JSON config of older releases (`ocivol config --convert`).
    pub fn parse_legacy(text: &str) -> Result<Config, String> {
        legacy::parse(text)
    }

    /// The rules no type can say; the error names the key (and is keyed by it, for its line).
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.runtime.is_empty() {
            return Err((
                "runtime",
                "runtime: must name the real OCI runtime (e.g. \"runc\")".into(),
            ));
        }
        if !self.runtime.starts_with('/') && self.runtime.contains('/') {
            return Err((
                "runtime",
                format!(
                    "runtime: {:?} must be an absolute path or a plain command name",
                    self.runtime
                ),
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
                    return Err((key, format!("{key}: {p:?} is not an absolute path")));
                }
                if p.components().any(|c| {
                    matches!(
                        c,
                        std::path::Component::ParentDir | std::path::Component::CurDir
                    )
                }) {
                    return Err((
                        key,
                        format!(
                            "{key}: {p:?} has '.' or '..' in it; write the directory's real path"
                        ),
                    ));
                }
            }
        }
        if self.policy.max_volumes_per_container == 0 {
            return Err((
                "policy.max_volumes_per_container",
                "policy.max_volumes_per_container: must be at least 1".into(),
            ));
        }
        for name in &self.policy.shared_volumes {
            crate::annotations::check_name(name).map_err(|e| {
                (
                    "policy.shared_volumes",
                    format!("policy.shared_volumes: {e}"),
                )
            })?;
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

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag (`--root`).
    Flag(&'static str),
    /// An environment variable (`OCIVOL_ROOT`).
    Env(&'static str),
    /// The config file, at this line.
    File { path: PathBuf, line: usize },
    /// Nothing set it.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The context and where each of its settings came from (`ocivol config` prints it).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub context: Context,
    /// The config file that was read or looked for.
    pub file: PathBuf,
    /// What chose that file (`Default` for the default location).
    pub file_source: Source,
    /// Whether the file was there (an absent default file means the defaults).
    pub file_read: bool,
    /// Each key of the config, by dotted name, and where its value came from.
    pub sources: BTreeMap<&'static str, Source>,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Context {
    /// Builds the context from explicit values, falling back to the environment, then to the
    /// config file's `root` and `run_root`, then to the defaults.
    pub fn from_parts(
        config: Option<PathBuf>,
        root: Option<PathBuf>,
        run_root: Option<PathBuf>,
    ) -> Result<Context, ConfigError> {
        Context::resolve_with(config, root, run_root, false).map(|r| r.context)
    }

    /// As [`Context::from_parts`], saying where each setting came from. A value given to this
    /// function counts as a flag: the binary passes what clap read from the command line, or
    /// from the environment when the variable is set (told apart here by comparing with it).
    pub fn resolve(
        config: Option<PathBuf>,
        root: Option<PathBuf>,
        run_root: Option<PathBuf>,
    ) -> Result<Resolved, ConfigError> {
        Context::resolve_with(config, root, run_root, true)
    }

    /// [`Context::resolve`]; `sources` (where each setting came from, which renders every
    /// value) only when asked: every container start reads the configuration, and only
    /// `ocivol config` shows them.
    fn resolve_with(
        config: Option<PathBuf>,
        root: Option<PathBuf>,
        run_root: Option<PathBuf>,
        with_sources: bool,
    ) -> Result<Resolved, ConfigError> {
        let origin = |given: Option<PathBuf>, flag: &'static str, env: &'static str| match given {
            Some(p) if env_path(env).as_ref() == Some(&p) => Some((p, Source::Env(env))),
            Some(p) => Some((p, Source::Flag(flag))),
            None => env_path(env).map(|p| (p, Source::Env(env))),
        };
        let (file, file_source) = origin(config, "--config", ENV_CONFIG)
            .unwrap_or_else(|| (PathBuf::from(DEFAULT_CONFIG), Source::Default));
        let explicit = file_source != Source::Default;
        let read = Config::read(&file, explicit)?;
        let file_read = read.is_some();
        let (config, lines) = read.unwrap_or_default();
        let rendered = if with_sources {
            render::values(&config)
        } else {
            Vec::new()
        };
        let mut sources: BTreeMap<&'static str, Source> = rendered
            .into_iter()
            .map(|(key, _)| {
                let source = match lines.get(key) {
                    Some(&line) => Source::File {
                        path: file.clone(),
                        line,
                    },
                    None => Source::Default,
                };
                (key, source)
            })
            .collect();
        let mut state = |given: Option<PathBuf>,
                         flag: &'static str,
                         env: &'static str,
                         key: &'static str,
                         from_file: &PathBuf| {
            match origin(given, flag, env) {
                Some((p, source)) => {
                    sources.insert(key, source);
                    p
                }
                None => from_file.clone(),
            }
        };
        let paths = StatePaths {
            root: state(root, "--root", ENV_ROOT, "root", &config.root),
            run_root: state(
                run_root,
                "--run-root",
                ENV_RUN_ROOT,
                "run_root",
                &config.run_root,
            ),
        };
        for (what, p) in [("root", &paths.root), ("run root", &paths.run_root)] {
            let text = p.to_string_lossy();
            if !p.is_absolute() || text.contains([',', ':', '\\', '=', '\n']) {
                return Err(ConfigError::Invalid {
                    path: p.clone(),
                    line: None,
                    message: format!(
                        "the state {what} must be an absolute path without ',', ':', '\\', '=' or newline \
                         (it goes into overlay mount options)"
                    ),
                });
            }
        }
        Ok(Resolved {
            context: Context { config, paths },
            file,
            file_source,
            file_read,
            sources,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn overlay_linger_takes_seconds_or_a_unit_and_refuses_the_rest() {
        let secs = |t: &str| Config::parse(t).map(|c| c.overlay_linger.as_secs());
        assert_eq!(secs(""), Ok(0));
        assert_eq!(secs("overlay_linger = 30"), Ok(30));
        assert_eq!(secs("overlay_linger = \"45s\""), Ok(45));
        assert_eq!(secs("overlay_linger = \"2m\""), Ok(120));
        assert_eq!(secs("overlay_linger = \"1h\""), Ok(3600));
        let e = err("runtime = \"runc\"\noverlay_linger = \"10 minutes\"");
        assert!(
            e.contains("line 2") && e.contains("the unit is one of s, m, h"),
            "{e}"
        );
        assert!(err("overlay_linger = \"soon\"").contains("is not a duration"));
        assert!(err("overlay_linger = -1").contains("overlay_linger"));
        assert!(err("overlay_linger = true").contains("overlay_linger"));
    }

    #[test]
    fn the_shipped_file_is_commented_defaults() {
        let shipped = include_str!("../packaging/config.toml");
        assert_eq!(Config::parse(shipped).unwrap(), Config::default());
        // Every key is there, commented out, with its default as the renderer writes it.
        for (key, value) in render::values(&Config::default()) {
            let name = key.trim_start_matches("policy.");
            let line = format!("#{name} = {value}");
            assert!(
                shipped.lines().any(|l| l == line),
                "packaging/config.toml documents {key} with its default: {line}"
            );
        }
    }

    #[test]
    fn the_toml_examples_of_the_docs_are_valid_configs() {
        let mut blocks = 0;
        for (doc, text) in [
            ("README.md", include_str!("../README.md")),
            ("docs/INSTALL.md", include_str!("../docs/INSTALL.md")),
        ] {
            for block in text.split("```toml\n").skip(1) {
                let block = block.split("```").next().unwrap();
                // ocivol's config; the other blocks are engines' (containerd's drop-in).
                if !block.contains("[policy]") {
                    continue;
                }
                Config::parse(block).unwrap_or_else(|e| panic!("{doc}: {e}:\n{block}"));
                blocks += 1;
            }
        }
        assert!(blocks >= 2, "the docs show the config: {blocks} blocks");
    }

    #[test]
    fn empty_file_gives_safe_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        assert!(c.policy.allowed_bases.is_empty());
        assert!(c.policy.allowed_bind_sources.is_empty());
        assert_eq!(c.policy.volumes_from_scope, VolumesFromScope::Namespace);
    }

    #[test]
    fn full_config_parses() {
        let (c, lines) = Config::parse_lines(
            "# notes\nruntime = \"/usr/sbin/runc\"\nroot = \"/srv/ocivol\"\n\n[policy]\n\
             allowed_bases = [\"/srv\"]\nallowed_bind_sources = [\"/data\"]\nauto_create = false\n\
             shared_volumes = [\"cache\"]\nmax_volumes_per_container = 8\nvolumes_from_scope = \"any\"\n",
        )
        .unwrap();
        assert_eq!(c.runtime, "/usr/sbin/runc");
        assert_eq!(c.root, PathBuf::from("/srv/ocivol"));
        assert_eq!(c.run_root, PathBuf::from(DEFAULT_RUN_ROOT));
        assert_eq!(c.policy.allowed_bases, [AllowedPath::new("/srv")]);
        assert_eq!(c.policy.allowed_bind_sources, [AllowedPath::new("/data")]);
        assert!(!c.policy.auto_create);
        assert_eq!(c.policy.max_volumes_per_container, 8);
        assert_eq!(c.policy.shared_volumes, ["cache"]);
        assert_eq!(c.policy.volumes_from_scope, VolumesFromScope::Any);
        assert_eq!(lines.get("runtime"), Some(&2));
        assert_eq!(lines.get("root"), Some(&3));
        assert_eq!(lines.get("run_root"), None);
        assert_eq!(lines.get("policy.allowed_bases"), Some(&6));
        assert_eq!(lines.get("policy.volumes_from_scope"), Some(&11));
    }

    #[test]
    fn dotted_keys_and_an_inline_policy_table_mean_the_same() {
        let want = Config::parse("[policy]\nauto_create = false\n").unwrap();
        assert!(!want.policy.auto_create);
        assert_eq!(Config::parse("policy.auto_create = false\n").unwrap(), want);
        assert_eq!(
            Config::parse("policy = { auto_create = false }\n").unwrap(),
            want
        );
    }

    #[test]
    fn allowed_entries_may_force_options() {
        let c = Config::parse(
            "[policy]\nallowed_bind_sources = [\"/a\", { path = \"/b\", options = [\"readonly\", \"nodev\"] }]\n",
        )
        .unwrap();
        let list = &c.policy.allowed_bind_sources;
        assert_eq!(list[0], AllowedPath::new("/a"));
        assert_eq!(list[1].path, PathBuf::from("/b"));
        assert!(list[1].force.readonly && list[1].force.nodev && !list[1].force.nosuid);
        // Written back the same way, and as JSON in the same shape.
        let text = render::render(&c, &[], |_| None);
        assert!(
            text.contains(r#"{ path = "/b", options = ["readonly", "nodev"] }"#),
            "{text}"
        );
        assert_eq!(Config::parse(&text).unwrap(), c);
        assert_eq!(
            serde_json::to_value(list).unwrap(),
            serde_json::json!(["/a", {"path": "/b", "options": ["readonly", "nodev"]}])
        );
    }

    #[test]
    fn rendered_config_reads_back_the_same_with_comments() {
        let c = Config {
            runtime: "/opt/runc \"quoted\"".into(),
            root: "/var/lib/o'c".into(),
            run_root: "/run/x".into(),
            overlay_linger: std::time::Duration::from_secs(90),
            policy: Policy {
                allowed_bases: vec![AllowedPath {
                    path: "/srv/a b".into(),
                    force: MountFlags {
                        readonly: true,
                        nosuid: true,
                        nodev: true,
                        noexec: true,
                    },
                }],
                allowed_bind_sources: vec![AllowedPath::new("/d")],
                auto_create: false,
                shared_volumes: vec!["pip-cache".into(), "x".into()],
                max_volumes_per_container: 3,
                volumes_from_scope: VolumesFromScope::Any,
            },
        };
        let text = render::render(&c, &["header".into(), "".into()], |k| {
            Some(format!("from {k}\nnot a new line"))
        });
        assert!(text.starts_with("# header\n#\n"), "{text}");
        assert!(text.contains("runtime = "), "{text}");
        assert!(text.contains("  # from runtime not a new line\n"), "{text}");
        assert_eq!(Config::parse(&text).unwrap(), c, "{text}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name_table_and_line() {
        assert_eq!(
            err("runtime = \"runc\"\n\n[policy]\n# a comment\nalowed_bases = []\n"),
            "line 5: unknown key \"alowed_bases\" in [policy]; known keys: allowed_bases, \
             allowed_bind_sources, auto_create, shared_volumes, max_volumes_per_container, \
             volumes_from_scope"
        );
        assert_eq!(
            err("\nruntim = \"runc\"\n"),
            "line 2: unknown key \"runtim\" at the top level; known keys: runtime, root, run_root, overlay_linger, policy"
        );
        let e =
            err("[policy]\nallowed_bind_sources = [\n  { path = \"/srv\", writable = true },\n]\n");
        assert!(
            e.starts_with("line 3: unknown key \"writable\" in an entry of policy.allowed_bind_sources; known keys: path, options"),
            "{e}"
        );
        let e = err("[policy]\nallowed_bases = [{ path = \"/srv\", options = [\"ro\"] }]\n");
        assert!(
            e.starts_with("line 2: policy.allowed_bases: unknown option \"ro\"; known options: readonly, nosuid, nodev, noexec"),
            "{e}"
        );
        assert!(err("[policy.limits]\nx = 1\n").contains("unknown key \"limits\" in [policy]"));
        assert!(err("[[runtimes]]\nx = 1\n").contains("unknown key \"runtimes\" at the top level"));
    }

    #[test]
    fn wrong_types_name_the_key_and_line() {
        for (text, want) in [
            (
                "runtime = 3\n",
                "line 1: runtime: expected a string, found an integer",
            ),
            (
                "\n\nroot = [\"/x\"]\n",
                "line 3: root: expected a string, found an array",
            ),
            (
                "[policy]\nauto_create = \"yes\"\n",
                "line 2: policy.auto_create: expected true or false, found a string",
            ),
            (
                "[policy]\nallowed_bases = \"/srv\"\n",
                "line 2: policy.allowed_bases: expected an array, found a string",
            ),
            (
                "[policy]\nallowed_bases = [\n  \"/srv\",\n  3,\n]\n",
                "line 4: policy.allowed_bases: expected a path or { path = \"…\", options = […] }, found an integer",
            ),
            (
                "[policy]\nmax_volumes_per_container = \"8\"\n",
                "line 2: policy.max_volumes_per_container: expected an integer, found a string",
            ),
            (
                "[policy]\nmax_volumes_per_container = -1\n",
                "line 2: policy.max_volumes_per_container: must be at least 1",
            ),
            (
                "[policy]\nshared_volumes = [true]\n",
                "line 2: policy.shared_volumes: expected volume names (strings), found a boolean",
            ),
            (
                "policy = 1\n",
                "line 1: policy: expected a table ([policy]), found an integer",
            ),
        ] {
            assert_eq!(err(text), want, "{text:?}");
        }
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        let cases = [
            (
                "[policy]\nallowed_bases = [\"rel\"]",
                "line 2: policy.allowed_bases",
            ),
            (
                "[policy]\n\nallowed_bind_sources = [\"rel\"]",
                "line 3: policy.allowed_bind_sources",
            ),
            (
                "[policy]\nmax_volumes_per_container = 0",
                "line 2: policy.max_volumes_per_container",
            ),
            (
                "[policy]\nvolumes_from_scope = \"world\"",
                "line 2: policy.volumes_from_scope: \"world\"",
            ),
            (
                "[policy]\nshared_volumes = [\"../x\"]",
                "line 2: policy.shared_volumes",
            ),
            ("runtime = \"bin/runc\"", "line 1: runtime"),
            (
                "[policy]\nallowed_bases = [\"/srv/../etc\"]",
                "line 2: policy.allowed_bases",
            ),
            ("runtime = \"\"", "line 1: runtime"),
            (
                "runtime = \"runc\"\nruntime = \"crun\"",
                "line 2: not valid TOML",
            ),
            ("runtime = runc", "line 1: not valid TOML"),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(e.starts_with(want), "{text}: {e}");
        }
    }

    #[test]
    fn errors_stay_on_one_line_even_for_keys_and_paths_with_newlines() {
        for text in [
            "\"a\\nb\" = 1",
            "[policy]\nallowed_bases = [\"\\n\"]",
            "[policy]\nallowed_bases = [{ path = \"/x\", options = [\"a\\nb\"] }]",
            "runtime = \"a\nb\"",
        ] {
            let e = err(text);
            assert!(!e.contains('\n'), "{text}: {e:?}");
        }
    }

    #[test]
    fn missing_default_file_is_defaults_but_missing_explicit_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        assert_eq!(Config::load(&missing, false).unwrap(), Config::default());
        let e = Config::load(&missing, true).unwrap_err().to_string();
        assert!(e.contains("none.toml") && e.contains("cannot read"), "{e}");
    }

    #[test]
    fn an_invalid_file_is_named_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "# x\n[policy]\nalowed_bases = []\n").unwrap();
        let e = Config::load(&path, true).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "config {} line 3: unknown key \"alowed_bases\" in [policy]; known keys: allowed_bases,",
                path.display()
            )),
            "{e}"
        );
    }

    const OLD: &str = "// the old file\n{\n  \"runtime\": \"/usr/sbin/runc\",\n  \"policy\": {\n    // a note\n    \"allowed_bind_sources\": [\"/a\", {\"path\": \"/b\", \"readonly\": true, \"noexec\": true}],\n    \"volumes_from_scope\": \"any\"\n  }\n}\n";

    #[test]
    fn the_old_json_file_at_the_default_place_is_refused_with_the_conversion_command() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("config.toml");
        let json = dir.path().join("config.json");
        std::fs::write(&json, OLD).unwrap();
        // Only the old file: the defaults would silently drop its runtime, roots and policy.
        let e = Config::load(&toml, false).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "`ocivol config --convert {} > {}`",
                json.display(),
                toml.display()
            )),
            "{e}"
        );
        // Both: the new one would be read and the old one's settings lost without a word.
        std::fs::write(&toml, "").unwrap();
        let e = Config::load(&toml, false).unwrap_err().to_string();
        assert!(e.contains("still beside") && e.contains("remove"), "{e}");
        // Unless the old one says the same: nothing is lost (a package upgrade leaves the old
        // default file; an admin who converted may not have removed it yet).
        let same = render::render(&Config::parse_legacy(OLD).unwrap(), &[], |_| None);
        std::fs::write(&toml, &same).unwrap();
        assert_eq!(
            Config::load(&toml, false).unwrap().runtime,
            "/usr/sbin/runc"
        );
        std::fs::write(&json, include_str!("config/testdata/config.json")).unwrap();
        std::fs::write(&toml, include_str!("../packaging/config.toml")).unwrap();
        assert_eq!(Config::load(&toml, false).unwrap(), Config::default());
        std::fs::write(&json, OLD).unwrap();
        std::fs::write(&toml, "").unwrap();
        // Given explicitly, a file is read alone: the one beside it does not matter.
        assert_eq!(Config::load(&toml, true).unwrap(), Config::default());
        // The old file given explicitly is recognised by its content.
        let e = Config::load(&json, true).unwrap_err().to_string();
        assert!(
            e.contains("old JSON config format")
                && e.contains(&format!("ocivol config --convert {}", json.display())),
            "{e}"
        );
    }

    #[test]
    fn the_old_json_converts_to_the_same_config() {
        let c = Config::parse_legacy(OLD).unwrap();
        assert_eq!(c.runtime, "/usr/sbin/runc");
        assert_eq!(c.policy.volumes_from_scope, VolumesFromScope::Any);
        let b = &c.policy.allowed_bind_sources[1];
        assert!(b.force.readonly && b.force.noexec && !b.force.nodev);
        let text = render::render(&c, &[], |_| None);
        assert_eq!(Config::parse(&text).unwrap(), c, "{text}");
        assert_eq!(
            Config::parse_legacy(include_str!("config/testdata/config.json")).unwrap(),
            Config::default()
        );
        for (bad, key) in [
            ("{\"runtim\": \"x\"}", "runtim"),
            (
                "{\"policy\": {\"allowed_bases\": [\"rel\"]}}",
                "policy.allowed_bases",
            ),
        ] {
            let e = Config::parse_legacy(bad).unwrap_err();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }
}
