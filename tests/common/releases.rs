//! The containerd releases nodes run, for tests: Debian 12's installed 1.6, and 1.7 (Debian 13,
//! "trixie") and 2.1 (Debian unstable, "sid") fetched with `apt-get download` from a private
//! sources list (this machine's own Debian mirror, read from its apt sources) and unpacked with
//! `dpkg -x` into `target/containerd-releases/SUITE/`, reused by later runs. Their binaries need
//! glibc 2.34 and run on Debian 12; runc stays Debian 12's.
//!
//! Nothing of the host's apt state is touched: the lists, the package cache and the sources
//! list are the test's own (`-o Dir::Etc::sourcelist=… -o Dir::State::Lists=… -o Dir::Cache=…`).
//! A release that cannot be fetched (no network) fails the test that asked for it, with a line
//! saying so, unless `OCIVOL_SKIP_CONTAINERD_RELEASES=1` says to skip those releases.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Set to 1 to skip (not fail) the releases that must be downloaded.
pub const SKIP_ENV: &str = "OCIVOL_SKIP_CONTAINERD_RELEASES";

/// A containerd release: a directory with `containerd`, `ctr`, `containerd-shim-runc-v2`.
#[derive(Debug, Clone)]
pub struct Release {
    /// `1.6`, `1.7`, `2.1`.
    pub name: &'static str,
    pub bin: PathBuf,
    /// `containerd --version`'s version.
    pub version: String,
}

impl Release {
    pub fn major(&self) -> u64 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

/// The Debian suites that carry the newer releases.
pub const FETCHED: [(&str, &str); 2] = [("1.7", "trixie"), ("2.1", "sid")];

/// One download at a time (tests of a file run in parallel threads).
static FETCH: Mutex<()> = Mutex::new(());

fn version_of(bin: &Path) -> String {
    let out = Command::new(bin.join("containerd"))
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{}/containerd --version: {e}", bin.display()));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or("")
        .trim_start_matches('v')
        .to_string()
}

/// Debian 12's containerd, installed (`make deps`).
pub fn installed() -> Release {
    let bin = PathBuf::from(super::cri::INSTALLED_BIN);
    Release {
        name: "1.6",
        version: version_of(&bin),
        bin,
    }
}

/// The cache directory of the fetched releases.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/containerd-releases")
}

/// The release `name` ("1.7" or "2.1"), fetched if it is not in the cache yet. `None` (after
/// saying why) only when it cannot be fetched and [`SKIP_ENV`] is set; panics otherwise.
pub fn fetched(name: &str) -> Option<Release> {
    let (name, suite) = FETCHED
        .iter()
        .copied()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no release {name}"));
    let dir = cache_dir().join(suite);
    let bin = dir.join("root/usr/bin");
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.join("containerd").exists()
        && let Err(why) = fetch(suite, &dir)
    {
        if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
            eprintln!("containerd {name} ({suite}): skipped ({SKIP_ENV}=1): {why}");
            return None;
        }
        panic!(
            "containerd {name} could not be fetched from Debian {suite}: {why}\n\
             (these tests need the package once, then use {}; set {SKIP_ENV}=1 to skip them \
             on a machine without network)",
            dir.display()
        );
    }
    Some(Release {
        name,
        version: version_of(&bin),
        bin,
    })
}

/// The URI of this machine's Debian archive, from its apt sources (deb822 or one-line).
fn mirror() -> Result<String, String> {
    let mut texts = vec![fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "sources" || x == "list") {
                texts.push(fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    for text in &texts {
        // deb822: a stanza whose Suites has bookworm (not the security archive).
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:"))
                && suites.split_whitespace().any(|s| s == "bookworm")
                && let Some(uri) = uris.split_whitespace().next()
            {
                return Ok(uri.to_string());
            }
        }
        // One-line: deb [opts] URI bookworm main
        for l in text.lines() {
            let words: Vec<&str> = l
                .split_whitespace()
                .filter(|w| !w.starts_with('['))
                .collect();
            if words.first() == Some(&"deb") && words.get(2) == Some(&"bookworm") {
                return Ok(words[1].to_string());
            }
        }
    }
    Err("no Debian bookworm archive in this machine's apt sources".into())
}

/// apt-get download of `containerd` from `suite` into `dir`, then dpkg -x into `dir/root`.
fn fetch(suite: &str, dir: &Path) -> Result<(), String> {
    let apt = dir.join("apt");
    for d in ["lists/partial", "cache/archives/partial", "debs"] {
        fs::create_dir_all(apt.join(d)).map_err(|e| e.to_string())?;
    }
    let sources = apt.join("sources.list");
    fs::write(
        &sources,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {} {suite} main\n",
            mirror()?
        ),
    )
    .map_err(|e| e.to_string())?;
    let opts = [
        format!("Dir::Etc::sourcelist={}", sources.display()),
        "Dir::Etc::sourceparts=-".to_string(),
        format!("Dir::State::Lists={}", apt.join("lists").display()),
        format!("Dir::Cache={}", apt.join("cache").display()),
        "APT::Get::List-Cleanup=0".to_string(),
        "Acquire::Languages=none".to_string(),
    ];
    let apt_get = |args: &[&str], cwd: &Path| -> Result<(), String> {
        let mut c = Command::new("apt-get");
        for o in &opts {
            c.arg("-o").arg(o);
        }
        let out = c
            .args(args)
            .current_dir(cwd)
            .output()
            .map_err(|e| format!("apt-get: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "apt-get {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    apt_get(&["-q", "update"], &apt)?;
    let debs = apt.join("debs");
    apt_get(&["-q", "download", "containerd"], &debs)?;
    let deb = fs::read_dir(&debs)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download left no .deb")?;
    let root = dir.join("root");
    let tmp = dir.join("root.partial");
    let _ = fs::remove_dir_all(&tmp);
    let out = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&tmp)
        .output()
        .map_err(|e| format!("dpkg -x: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "dpkg -x: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let _ = fs::remove_dir_all(&root);
    fs::rename(&tmp, &root).map_err(|e| e.to_string())?;
    // Only the unpacked package is kept: the lists and the .deb are hundreds of MB.
    let _ = fs::remove_dir_all(&apt);
    Ok(())
}
