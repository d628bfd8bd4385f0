//! `ocivol setup ENGINE`: gives an engine the `ocivol` runtime (or ocivol's hooks) by editing the
//! engine's own config file, as `nvidia-ctk runtime configure` does for its runtime.
//!
//! Each engine module is pure: it takes the file's text as it is and returns the text it should
//! become ([`containerd`], [`podman`] edit TOML with a format-preserving editor, [`docker`] edits
//! JSON keeping the order of keys, [`crio`] writes a drop-in of its own). [`file`] is the thin
//! layer that reads, diffs, backs up and atomically replaces files.
//!
//! Everything setup adds to a file it shares with others carries a comment with [`MARK`], so that
//! `--remove` takes out exactly that and leaves the file as it was before (byte for byte, when
//! nothing else changed in between).

pub mod containerd;
pub mod crio;
pub mod docker;
pub mod file;
pub mod podman;

use std::path::{Path, PathBuf};

/// The words in every comment setup writes into a file it shares with other settings.
pub const MARK: &str = "Added by ocivol setup";

/// The name of the runtime handler (containerd, CRI-O), runtime (podman, Docker) and
/// RuntimeClass handler ocivol is known by.
pub const HANDLER: &str = "ocivol";

/// The annotation patterns containerd's CRI needs to let ocivol's keys through: it matches them
/// with Go's `path.Match`, whose `*` never matches `/`, so the per-container keys
/// (`io.ocivol.volumes/NAME`) need a pattern of their own.
pub const ANNOTATION_PATTERNS: [&str; 2] = ["io.ocivol.*", "io.ocivol.*/*"];

/// The keys ocivol reads (DESIGN.md), a plain and a per-container one of each, to check patterns
/// against.
pub const SAMPLE_KEYS: [&str; 4] = [
    "io.ocivol.volumes",
    "io.ocivol.volumes-from",
    "io.ocivol.volumes/app",
    "io.ocivol.volumes-from/app",
];

/// Why a file cannot be set up. Every message says what is wrong and what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Editing the file could change the engine's behaviour in a way setup cannot see, or the
    /// file cannot be read as what it should be.
    #[error("{0}")]
    Refused(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, SetupError>;

impl SetupError {
    pub fn io(path: &Path, source: std::io::Error) -> SetupError {
        SetupError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Go's `path.Match` for the patterns engines use on annotation keys: `*` is any run of
/// characters but `/`, `?` one character but `/`, `\` escapes; a `[` class is taken as a literal
/// `[` (no engine default uses one). Used to check that a handler lets ocivol's keys through.
pub fn go_path_match(pattern: &str, name: &str) -> bool {
    fn rec(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => {
                let rest = &p[1..];
                let mut i = 0;
                loop {
                    if rec(rest, &n[i..]) {
                        return true;
                    }
                    if i == n.len() || n[i] == '/' {
                        return false;
                    }
                    i += 1;
                }
            }
            Some('?') => !n.is_empty() && n[0] != '/' && rec(&p[1..], &n[1..]),
            Some('\\') if p.len() > 1 => !n.is_empty() && n[0] == p[1] && rec(&p[2..], &n[1..]),
            Some(c) => !n.is_empty() && n[0] == *c && rec(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    rec(&p, &n)
}

/// The ocivol keys (of [`SAMPLE_KEYS`]) that none of `patterns` lets through.
pub fn unmatched_keys(patterns: &[String]) -> Vec<&'static str> {
    SAMPLE_KEYS
        .iter()
        .copied()
        .filter(|k| !patterns.iter().any(|p| go_path_match(p, k)))
        .collect()
}

/// The `ocivol-runtime` an engine should run: the one next to the running `ocivol` if there is
/// one (a `make install` or package puts them side by side), else `/usr/local/bin/ocivol-runtime`.
pub fn default_runtime_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("ocivol-runtime")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/ocivol-runtime"))
}

/// The `ocivol` the hooks files should run: the running binary's installed path when it sits
/// in a directory beside an `ocivol-runtime`, else `/usr/local/bin/ocivol`.
pub fn default_hook_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .filter(|exe| {
            exe.parent()
                .is_some_and(|d| d.join("ocivol-runtime").exists())
        })
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/ocivol"))
}

/// The text of ocivol's createRuntime + poststop hooks file (hooks.d/ocivol.json), running
/// `ocivol` at `path`. CRI-O rejects a hooks file with a stage it does not know, so this is the
/// one both CRI-O and podman read.
pub fn hooks_file(path: &Path) -> String {
    let v = serde_json::json!({
        "version": "1.0.0",
        "hook": { "path": path, "args": ["ocivol", "hook"] },
        "when": { "annotations": { "^io\\.ocivol\\.": ".*" } },
        "stages": ["createRuntime", "poststop"],
    });
    let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_match_stops_a_star_at_a_slash() {
        assert!(go_path_match("io.ocivol.*", "io.ocivol.volumes"));
        assert!(!go_path_match("io.ocivol.*", "io.ocivol.volumes/app"));
        assert!(go_path_match("io.ocivol.*/*", "io.ocivol.volumes/app"));
        assert!(!go_path_match("io.ocivol.*/*", "io.ocivol.volumes"));
        assert!(go_path_match("*", "anything.at.all"));
        assert!(go_path_match("io.ocivol.volume?", "io.ocivol.volumes"));
        assert!(!go_path_match(
            "io.ocivol.volumes",
            "io.ocivol.volumes-from"
        ));
        let ours: Vec<String> = ANNOTATION_PATTERNS.iter().map(|s| s.to_string()).collect();
        assert!(unmatched_keys(&ours).is_empty());
        assert_eq!(
            unmatched_keys(&["io.ocivol.*".to_string()]),
            ["io.ocivol.volumes/app", "io.ocivol.volumes-from/app"]
        );
    }

    #[test]
    fn the_hooks_file_is_the_shipped_one_for_the_installed_path() {
        let shipped = include_str!("../../hooks.d/ocivol.json");
        let a: serde_json::Value = serde_json::from_str(shipped).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(&hooks_file(Path::new("/usr/local/bin/ocivol"))).unwrap();
        assert_eq!(a, b);
    }
}
