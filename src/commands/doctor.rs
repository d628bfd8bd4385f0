//! `ocivol doctor`: checks the host for what ocivol needs, one line per check (`ok`, `warn` or
//! `fail`); every `fail` says how to fix it, and any `fail` makes the exit status 1.
//!
//! Each engine whose config is found (containerd's config.toml, CRI-O's drop-in directory,
//! podman's containers.conf, Docker's daemon.json) is checked too: the ocivol handler there,
//! pointing at this ocivol, with the runc handler's options and annotation patterns that let
//! every ocivol key through; each finding names the `ocivol setup …` command that fixes it.

use std::fs;
use std::path::{Path, PathBuf};

use clap::Args;

use super::Global;
use super::setup::Engine;
use crate::config::{Config, DEFAULT_CONFIG, ENV_CONFIG};
use crate::mounts::{Linux, Mounter};
use crate::real_runtime;
use crate::setup::{self, containerd, crio, docker, podman};

/// Where podman and CRI-O read hooks from.
pub const HOOK_DIRS: &[&str] = &[
    "/usr/share/containers/oci/hooks.d",
    "/etc/containers/oci/hooks.d",
];

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ocivol doctor && echo ready")]
pub struct DoctorArgs {
    /// Where to look for ocivol's hooks files (repeatable; default: where podman and CRI-O read
    /// them).
    #[arg(long = "hooks-dir", value_name = "DIR")]
    pub hooks_dirs: Vec<PathBuf>,
    /// The engines to check (repeatable; `none` for none; default: each one whose config is
    /// found where the options below say).
    #[arg(long = "engine", value_name = "ENGINE")]
    pub engines: Vec<EngineChoice>,
    /// containerd's config (default /etc/containerd/config.toml).
    #[arg(long, value_name = "FILE")]
    pub containerd_config: Option<PathBuf>,
    /// CRI-O's drop-in directory (default /etc/crio/crio.conf.d).
    #[arg(long, value_name = "DIR")]
    pub crio_config_dir: Option<PathBuf>,
    /// podman's containers.conf (default /etc/containers/containers.conf).
    #[arg(long, value_name = "FILE")]
    pub podman_config: Option<PathBuf>,
    /// Docker's daemon.json (default /etc/docker/daemon.json).
    #[arg(long, value_name = "FILE")]
    pub docker_config: Option<PathBuf>,
    /// The ocivol-runtime the engines should run (default: the one beside this ocivol, else
    /// /usr/local/bin/ocivol-runtime; this ocivol itself is always accepted).
    #[arg(long, value_name = "PATH")]
    pub runtime_path: Option<PathBuf>,
}

/// An engine for `--engine`, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineChoice {
    Containerd,
    Crio,
    Podman,
    Docker,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub level: Level,
    pub name: &'static str,
    pub message: String,
}

impl Check {
    fn new(level: Level, name: &'static str, message: impl Into<String>) -> Check {
        Check {
            level,
            name,
            message: message.into(),
        }
    }

    pub fn line(&self) -> String {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        };
        format!("{level:<4} {}: {}", self.name, self.message)
    }
}

pub fn exec(g: &Global, args: DoctorArgs) -> i32 {
    let checks = run_checks(g, &args);
    for c in &checks {
        println!("{}", super::output::escape(&c.line()));
    }
    if checks.iter().any(|c| c.level == Level::Fail) {
        1
    } else {
        0
    }
}

fn run_checks(g: &Global, args: &DoctorArgs) -> Vec<Check> {
    let mut out = Vec::new();
    let (config, check) = config_check(g);
    out.push(check);
    out.extend(config_file_check(&config_path(g).0));
    out.push(overlayfs_check(
        &fs::read_to_string("/proc/filesystems").unwrap_or_default(),
    ));
    let paths = state_paths(g, &config);
    let root_ok = state_check("state root", &paths.0, "--root or OCIVOL_ROOT", &mut out);
    state_check(
        "run root",
        &paths.1,
        "--run-root or OCIVOL_RUN_ROOT",
        &mut out,
    );
    out.push(if root_ok {
        trial_mount(&paths.0)
    } else {
        Check::new(
            Level::Fail,
            "overlay mount",
            "not tried: fix the state root first (above)",
        )
    });
    out.push(runtime_check(&config.runtime));
    let dirs: Vec<PathBuf> = if args.hooks_dirs.is_empty() {
        HOOK_DIRS.iter().map(PathBuf::from).collect()
    } else {
        args.hooks_dirs.clone()
    };
    out.push(hooks_check(&dirs));
    out.extend(engine_checks(args));
    out
}

/// The state directories as the other commands would use them: flag, environment, then the
/// config's `root` and `run_root`.
fn state_paths(g: &Global, config: &Config) -> (PathBuf, PathBuf) {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    (
        g.root
            .clone()
            .or_else(|| env(crate::config::ENV_ROOT))
            .unwrap_or_else(|| config.root.clone()),
        g.run_root
            .clone()
            .or_else(|| env(crate::config::ENV_RUN_ROOT))
            .unwrap_or_else(|| config.run_root.clone()),
    )
}

/// The config file the other commands read, and whether it was named (flag or environment).
fn config_path(g: &Global) -> (PathBuf, bool) {
    let explicit = g.config.clone().or_else(|| {
        std::env::var_os(ENV_CONFIG)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let named = explicit.is_some();
    (explicit.unwrap_or_else(|| DEFAULT_CONFIG.into()), named)
}

fn config_check(g: &Global) -> (Config, Check) {
    let (path, explicit) = config_path(g);
    config_check_at(&path, explicit)
}

/// The config at `path`, named by flag or environment (`explicit`) or the default location.
fn config_check_at(path: &Path, explicit: bool) -> (Config, Check) {
    let legacy = path.with_file_name(crate::config::LEGACY_FILE);
    match Config::load(path, explicit) {
        Ok(c) if !explicit && path.exists() && legacy.exists() => (
            c,
            Check::new(
                Level::Warn,
                "config",
                format!(
                    "{} loaded; {} is left over from an older release and no longer read (it sets nothing else); remove it",
                    path.display(),
                    legacy.display()
                ),
            ),
        ),
        Ok(c) if path.exists() => (
            c,
            Check::new(Level::Ok, "config", format!("{} loaded", path.display())),
        ),
        Ok(c) => (
            c,
            Check::new(
                Level::Ok,
                "config",
                format!(
                    "{} absent: the defaults apply (no base or bind source is allowed)",
                    path.display()
                ),
            ),
        ),
        Err(e) => (
            Config::default(),
            Check::new(
                Level::Fail,
                "config",
                format!("{e}; fix it, or point --config or OCIVOL_CONFIG at a valid file"),
            ),
        ),
    }
}

/// Who may change the config: it widens what annotations reach, so the file and its directory
/// must be owned by root and writable by no one else (as containerd, CRI-O and sudo expect of
/// theirs). Nothing to check when the file is absent.
pub fn config_file_check(path: &Path) -> Option<Check> {
    use std::os::unix::fs::MetadataExt;
    const NAME: &str = "config file";
    let meta = fs::metadata(path).ok()?;
    let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = real.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for (what, p, meta) in [
        ("the file", real.clone(), Ok(meta)),
        ("its directory", dir.clone(), fs::metadata(&dir)),
    ] {
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("{what} {}: {e}", p.display()));
                continue;
            }
        };
        let mode = meta.mode() & 0o7777;
        let mut wrong = false;
        if meta.uid() != 0 {
            problems.push(format!(
                "{what} {} is owned by uid {}, not root",
                p.display(),
                meta.uid()
            ));
            wrong = true;
        }
        let writers = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => Some("its group and everyone"),
            (true, false) => Some("its group"),
            (false, true) => Some("everyone"),
            (false, false) => None,
        };
        if let Some(who) = writers {
            problems.push(format!(
                "{what} {} is writable by {who} (mode {mode:04o})",
                p.display()
            ));
            wrong = true;
        }
        if wrong {
            fixes.push(format!(
                "chown root:root {p} && chmod go-w {p}",
                p = p.display()
            ));
        }
    }
    Some(if problems.is_empty() {
        Check::new(
            Level::Ok,
            NAME,
            format!(
                "{} and {} are owned by root and writable by root alone",
                real.display(),
                dir.display()
            ),
        )
    } else {
        Check::new(
            Level::Fail,
            NAME,
            format!(
                "{}; whoever can write it can widen what containers reach; fix: {}",
                problems.join("; "),
                fixes.join(" && ")
            ),
        )
    })
}

/// overlayfs in the kernel, from the text of /proc/filesystems.
pub fn overlayfs_check(filesystems: &str) -> Check {
    let has = filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    if has {
        Check::new(
            Level::Ok,
            "overlayfs",
            "the kernel has it (/proc/filesystems)",
        )
    } else {
        Check::new(
            Level::Fail,
            "overlayfs",
            "not in /proc/filesystems; load it with `modprobe overlay` (and list it in /etc/modules-load.d/)",
        )
    }
}

/// The name of a filesystem type from statfs(2).
fn fs_name(magic: u64) -> String {
    match magic {
        0xEF53 => "ext2/ext3/ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        other => format!("filesystem type {other:#x}"),
    }
}

const OVERLAYFS_MAGIC: u64 = 0x794C_7630;

/// A state directory: exists or can be made, not on overlayfs, flock works. Returns whether
/// it passed.
fn state_check(name: &'static str, dir: &Path, how: &str, out: &mut Vec<Check>) -> bool {
    use std::os::unix::fs::DirBuilderExt;
    if let Err(e) = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        out.push(Check::new(
            Level::Fail,
            name,
            format!(
                "{} cannot be created: {e}; choose a writable directory with {how}",
                dir.display()
            ),
        ));
        return false;
    }
    let fs_type = match nix::sys::statfs::statfs(dir) {
        Ok(s) => crate::util::fs_magic(&s),
        Err(e) => {
            out.push(Check::new(
                Level::Fail,
                name,
                format!(
                    "{}: statfs: {e}; choose another directory with {how}",
                    dir.display()
                ),
            ));
            return false;
        }
    };
    if fs_type == OVERLAYFS_MAGIC {
        out.push(Check::new(
            Level::Fail,
            name,
            format!(
                "{} is on overlayfs, which cannot hold the upper and work directories of ocivol's overlays; move it to ext4, xfs or btrfs with {how}",
                dir.display()
            ),
        ));
        return false;
    }
    let lock = tempfile::Builder::new()
        .prefix(".doctor-lock-")
        .tempfile_in(dir)
        .and_then(|f| {
            f.as_file().try_lock().map_err(std::io::Error::other)?;
            f.as_file().unlock()?;
            Ok(())
        });
    if let Err(e) = lock {
        out.push(Check::new(
            Level::Fail,
            name,
            format!(
                "flock does not work in {}: {e}; choose a local filesystem with {how}",
                dir.display()
            ),
        ));
        return false;
    }
    out.push(Check::new(
        Level::Ok,
        name,
        format!("{} on {}, flock works", dir.display(), fs_name(fs_type)),
    ));
    true
}

/// Mounts a test overlay in the state root with the options ocivol uses, persistent and
/// volatile, writes through it and checks the write landed in upper only.
fn trial_mount(root: &Path) -> Check {
    const NAME: &str = "overlay mount";
    if !nix::unistd::getuid().is_root() {
        return Check::new(Level::Warn, NAME, "not tried: mounting needs root");
    }
    let tried = (|| -> Result<(), String> {
        let dir = tempfile::Builder::new()
            .prefix(".doctor-")
            .tempdir_in(root)
            .map_err(|e| format!("cannot make a test directory in {}: {e}", root.display()))?;
        let [lower, upper, work, merged] =
            ["lower", "upper", "work", "merged"].map(|d| dir.path().join(d));
        for d in [&lower, &upper, &work, &merged] {
            fs::create_dir(d).map_err(|e| format!("create {}: {e}", d.display()))?;
        }
        for volatile in [false, true] {
            let _ = fs::remove_dir_all(&work).and_then(|()| fs::create_dir(&work));
            Linux
                .mount_overlay(
                    &crate::pin::Pin::own(&lower).map_err(|e| e.to_string())?,
                    &upper,
                    &work,
                    &merged,
                    volatile,
                    None,
                )
                .map_err(|e| e.to_string())?;
            let wrote = fs::write(merged.join("probe"), "x");
            let unmounted = Linux.unmount(&merged);
            wrote.map_err(|e| format!("cannot write through the test overlay: {e}"))?;
            unmounted.map_err(|e| e.to_string())?;
            if !upper.join("probe").exists() || lower.join("probe").exists() {
                return Err("a write through the test overlay did not land in upper".into());
            }
        }
        Ok(())
    })();
    match tried {
        Ok(()) => Check::new(
            Level::Ok,
            NAME,
            format!(
                "a test overlay (lowerdir, upperdir, workdir, nosuid, nodev; and volatile) mounts in {}",
                root.display()
            ),
        ),
        Err(e) => Check::new(
            Level::Fail,
            NAME,
            format!(
                "{e}; the state root must be on a filesystem overlayfs accepts as upper (ext4, xfs, btrfs) and the kernel must allow overlay mounts"
            ),
        ),
    }
}

/// A runtime's `--version` output: its name and version (`runc`, `1.1.5+ds1`).
pub fn parse_version(text: &str) -> Option<(String, String)> {
    let first = text.lines().next()?;
    let mut words = first.split_whitespace();
    let name = words.next()?.to_string();
    if words.next()? != "version" {
        return None;
    }
    Some((name, words.next()?.to_string()))
}

/// Whether a runc version has the fixes of CVE-2025-31133, CVE-2025-52565 and CVE-2025-52881:
/// 1.2.8, 1.3.3, 1.4.0-rc.3 and later. Build metadata (`+ds1`) is ignored: a distribution that
/// backported the fixes keeps its old version number, so this can only warn.
pub fn runc_has_2025_fixes(version: &str) -> Option<bool> {
    let v = version.trim_start_matches('v');
    let v = v.split('+').next()?;
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let mut nums = core.split('.').map(|n| n.parse::<u64>());
    let (major, minor, patch) = (
        nums.next()?.ok()?,
        nums.next()?.ok()?,
        nums.next().unwrap_or(Ok(0)).ok()?,
    );
    let rc = pre.map(|p| {
        p.trim_start_matches("rc")
            .trim_start_matches('.')
            .parse::<u64>()
            .unwrap_or(0)
    });
    let at_least = |p: u64| patch > p || (patch == p && rc.is_none());
    Some(match (major, minor) {
        (0, _) => false,
        (1, 0..=1) => false,
        (1, 2) => at_least(8),
        (1, 3) => at_least(3),
        (1, 4) => patch > 0 || rc.is_none_or(|n| n >= 3),
        _ => true,
    })
}

fn runtime_check(name: &str) -> Check {
    const NAME: &str = "runtime";
    let path = match real_runtime::find(name) {
        Ok(p) => p,
        Err(e) => return Check::new(Level::Fail, NAME, e.to_string()),
    };
    let out = std::process::Command::new(&path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let text = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let Some((rt, version)) = text.as_deref().and_then(parse_version) else {
        return Check::new(
            Level::Warn,
            NAME,
            format!("{}: `--version` says nothing readable", path.display()),
        );
    };
    if rt == "runc" && runc_has_2025_fixes(&version) == Some(false) {
        return Check::new(
            Level::Warn,
            NAME,
            format!(
                "{} is runc {version}, older than the releases that fix CVE-2025-31133, CVE-2025-52565 and CVE-2025-52881 (1.2.8, 1.3.3, 1.4.0-rc.3); upgrade runc, unless your distribution backported the fixes",
                path.display()
            ),
        );
    }
    Check::new(
        Level::Ok,
        NAME,
        format!("{} is {rt} {version}", path.display()),
    )
}

/// ocivol's hooks files (`ocivol*.json`) where podman and CRI-O read hooks.
fn hooks_check(dirs: &[PathBuf]) -> Check {
    const NAME: &str = "hooks";
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        let mut here: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with("ocivol") && n.ends_with(".json")
            })
            .map(|e| e.path())
            .collect();
        here.sort();
        found.extend(here);
    }
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    if found.is_empty() {
        return Check::new(
            Level::Warn,
            NAME,
            format!(
                "no ocivol*.json in {}; podman and CRI-O need them to run ocivol as a hook (copy hooks.d/ocivol*.json of the ocivol sources there); not needed when ocivol is the runtime",
                shown.join(" or ")
            ),
        );
    }
    let files: Vec<String> = found.iter().map(|f| f.display().to_string()).collect();
    Check::new(Level::Ok, NAME, files.join(", "))
}

/// The engines to check and the config path of each, as `--engine` and the path options say.
fn engines(args: &DoctorArgs) -> Vec<(Engine, PathBuf, bool)> {
    let all = [
        (
            Engine::Containerd,
            args.containerd_config.clone(),
            containerd::DEFAULT_CONFIG,
        ),
        (
            Engine::Crio,
            args.crio_config_dir.clone(),
            crio::DEFAULT_CONFIG_DIR,
        ),
        (
            Engine::Podman,
            args.podman_config.clone(),
            podman::DEFAULT_CONFIG,
        ),
        (
            Engine::Docker,
            args.docker_config.clone(),
            docker::DEFAULT_CONFIG,
        ),
    ];
    let chosen = |e: Engine| {
        args.engines.iter().any(|c| {
            matches!(
                (c, e),
                (EngineChoice::Containerd, Engine::Containerd)
                    | (EngineChoice::Crio, Engine::Crio)
                    | (EngineChoice::Podman, Engine::Podman)
                    | (EngineChoice::Docker, Engine::Docker)
            )
        })
    };
    all.into_iter()
        .filter_map(|(engine, given, default)| {
            let explicit = given.is_some() || chosen(engine);
            let path = given.unwrap_or_else(|| PathBuf::from(default));
            let wanted = if args.engines.is_empty() {
                explicit || path.exists()
            } else {
                chosen(engine)
            };
            wanted.then_some((engine, path, explicit))
        })
        .collect()
}

fn engine_checks(args: &DoctorArgs) -> Vec<Check> {
    let mut expected = vec![
        args.runtime_path
            .clone()
            .unwrap_or_else(setup::default_runtime_path),
    ];
    expected.extend(std::env::current_exe().ok());
    let mut out = Vec::new();
    for (engine, path, explicit) in engines(args) {
        let fix = |extra: &str| {
            let default = match engine {
                Engine::Containerd => containerd::DEFAULT_CONFIG,
                Engine::Crio => crio::DEFAULT_CONFIG_DIR,
                Engine::Podman => podman::DEFAULT_CONFIG,
                Engine::Docker => docker::DEFAULT_CONFIG,
            };
            let flag = if engine == Engine::Crio {
                "--config-dir"
            } else {
                "--config"
            };
            let mut cmd = format!("ocivol setup {}", engine.name());
            if path != Path::new(default) {
                cmd.push_str(&format!(" {flag} {}", path.display()));
            }
            if let Some(rt) = &args.runtime_path {
                cmd.push_str(&format!(" --runtime-path {}", rt.display()));
            }
            cmd.push_str(extra);
            format!("`{cmd}`")
        };
        match engine {
            Engine::Containerd => containerd_checks(&path, explicit, &expected, &fix(""), &mut out),
            Engine::Crio => crio_check(&path, &expected, &fix(""), &fix(" --hooks"), &mut out),
            Engine::Podman => podman_check(&path, explicit, &expected, &fix(""), &mut out),
            Engine::Docker => docker_check(&path, explicit, &expected, &fix(""), &mut out),
        }
    }
    out
}

/// Whether `path` is one of the binaries an engine should run (same file once resolved).
fn runs_ocivol(path: &str, expected: &[PathBuf]) -> bool {
    let Ok(real) = fs::canonicalize(path) else {
        return false;
    };
    expected
        .iter()
        .any(|e| fs::canonicalize(e).is_ok_and(|e| e == real))
}

fn expected_text(expected: &[PathBuf]) -> String {
    expected
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Reads an engine's config; a missing file given explicitly is a finding.
fn read_config(
    name: &'static str,
    path: &Path,
    explicit: bool,
    fix: &str,
    out: &mut Vec<Check>,
) -> Option<String> {
    match fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
        Err(e) => {
            out.push(Check::new(
                Level::Fail,
                name,
                format!("{}: {e}; {fix} writes it", path.display()),
            ));
            None
        }
    }
}

/// containerd: the ocivol handler in config.toml, one line per finding.
fn containerd_checks(
    path: &Path,
    explicit: bool,
    expected: &[PathBuf],
    fix: &str,
    out: &mut Vec<Check>,
) {
    const NAME: &str = "containerd";
    let Some(text) = read_config(NAME, path, explicit, fix, out) else {
        return;
    };
    let p = path.display();
    let h = match containerd::inspect(path, &text) {
        Ok(h) => h,
        Err(e) => {
            out.push(Check::new(Level::Fail, NAME, e.to_string()));
            return;
        }
    };
    let Some(ocivol) = &h.ocivol else {
        out.push(Check::new(
            Level::Warn,
            NAME,
            format!("{p} has no ocivol runtime handler (pods with runtimeClassName: ocivol fail); {fix} adds it"),
        ));
        return;
    };
    let before = out.len();
    let header = h
        .version
        .map(|v| format!("[{}.ocivol]", v.runtimes_header()))
        .unwrap_or_default();
    let ty = containerd::handler_str(ocivol, "runtime_type");
    if ty.as_deref() != Some("io.containerd.runc.v2") {
        out.push(Check::new(
            Level::Fail,
            NAME,
            format!(
                "{p}: {header} has runtime_type {}, not io.containerd.runc.v2 (the runc shim, which runs BinaryName); {fix} sets it",
                ty.as_deref().unwrap_or("unset")
            ),
        ));
    }
    let options = containerd::options_of(ocivol);
    let get = |opts: &[(String, String)], k: &str| {
        opts.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let binary = get(&options, "BinaryName").map(|v| v.trim_matches('"').to_string());
    match &binary {
        None => out.push(Check::new(
            Level::Fail,
            NAME,
            format!("{p}: {header} has no BinaryName: it runs plain runc, without ocivol; {fix} sets it"),
        )),
        Some(b) if !runs_ocivol(b, expected) => out.push(Check::new(
            Level::Fail,
            NAME,
            format!(
                "{p}: {header} runs BinaryName {b}, which is not this ocivol ({}); {fix} points it here",
                expected_text(expected)
            ),
        )),
        Some(_) => {}
    }
    match &h.runc {
        None => out.push(Check::new(
            Level::Fail,
            NAME,
            format!("{p} has a runtimes table without runc: containerd's built-in runc handler, the CRI's default, is gone; {fix} adds it"),
        )),
        Some(runc) => {
            let mut differ = Vec::new();
            for (k, v) in containerd::options_of(runc) {
                if k == "BinaryName" {
                    continue;
                }
                match get(&options, &k) {
                    Some(mine) if mine == v => {}
                    Some(mine) => differ.push(format!("{k} = {mine} (runc: {v})")),
                    None => differ.push(format!("{k} unset (runc: {v})")),
                }
            }
            if !differ.is_empty() {
                out.push(Check::new(
                    Level::Fail,
                    NAME,
                    format!(
                        "{p}: {header} is not set up as runc's handler: {}; its containers would get other cgroups or runc state than runc's; {fix} copies runc's options",
                        differ.join(", ")
                    ),
                ));
            }
        }
    }
    for key in ["pod_annotations", "container_annotations"] {
        let patterns = containerd::handler_strings(ocivol, key);
        let missing = setup::unmatched_keys(&patterns);
        if !missing.is_empty() {
            out.push(Check::new(
                Level::Fail,
                NAME,
                format!(
                    "{p}: {header} {key} {:?} let no {} through (Go's path.Match: `*` never matches `/`); {fix} sets [\"io.ocivol.*\", \"io.ocivol.*/*\"]",
                    patterns,
                    missing.join(", ")
                ),
            ));
        }
    }
    if out.len() == before {
        out.push(Check::new(
            Level::Ok,
            NAME,
            format!(
                "{p}: handler ocivol runs {} with runc's options; every io.ocivol key passes",
                binary.unwrap_or_default()
            ),
        ));
    }
}

/// CRI-O: ocivol's drop-in, or else the hooks file where CRI-O reads hooks.
fn crio_check(dir: &Path, expected: &[PathBuf], fix: &str, fix_hooks: &str, out: &mut Vec<Check>) {
    const NAME: &str = "crio";
    let drop_in = dir.join(crio::DROP_IN);
    match fs::read_to_string(&drop_in) {
        Ok(text) => match crio::runtime_path(&text) {
            Some(rt) if runs_ocivol(&rt, expected) => out.push(Check::new(
                Level::Ok,
                NAME,
                format!("{}: handler ocivol runs {rt}", drop_in.display()),
            )),
            Some(rt) => out.push(Check::new(
                Level::Fail,
                NAME,
                format!(
                    "{}: handler ocivol runs {rt}, which is not this ocivol ({}); {fix} points it here",
                    drop_in.display(),
                    expected_text(expected)
                ),
            )),
            None => out.push(Check::new(
                Level::Fail,
                NAME,
                format!("{} has no [crio.runtime.runtimes.ocivol] runtime_path; {fix} rewrites it", drop_in.display()),
            )),
        },
        Err(_) => {
            let hooks = Path::new(crio::DEFAULT_HOOKS_DIR).join("ocivol.json");
            if hooks.exists() {
                out.push(Check::new(
                    Level::Ok,
                    NAME,
                    format!("no runtime handler; the hooks file {} gives every pod its volumes", hooks.display()),
                ));
            } else {
                out.push(Check::new(
                    Level::Warn,
                    NAME,
                    format!("no {} and no hooks file in {}: CRI-O runs no ocivol; {fix} adds the handler (or {fix_hooks} the hooks file)", drop_in.display(), crio::DEFAULT_HOOKS_DIR),
                ));
            }
        }
    }
}

/// podman: the ocivol runtime in containers.conf (or the hooks way).
fn podman_check(
    path: &Path,
    explicit: bool,
    expected: &[PathBuf],
    fix: &str,
    out: &mut Vec<Check>,
) {
    const NAME: &str = "podman";
    let Some(text) = read_config(NAME, path, explicit, fix, out) else {
        return;
    };
    match podman::inspect(path, &text) {
        Err(e) => out.push(Check::new(Level::Fail, NAME, e.to_string())),
        Ok((paths, _)) if paths.is_empty() => out.push(Check::new(
            Level::Warn,
            NAME,
            format!("{} has no [engine.runtimes] ocivol (podman --runtime ocivol fails); {fix} adds it (or use the hooks file, see the hooks line)", path.display()),
        )),
        Ok((paths, _)) if paths.iter().any(|p| runs_ocivol(p, expected)) => out.push(Check::new(
            Level::Ok,
            NAME,
            format!("{}: runtime ocivol runs {}", path.display(), paths.join(", ")),
        )),
        Ok((paths, _)) => out.push(Check::new(
            Level::Fail,
            NAME,
            format!(
                "{}: runtime ocivol runs {}, not this ocivol ({}); {fix} points it here",
                path.display(),
                paths.join(", "),
                expected_text(expected)
            ),
        )),
    }
}

/// Docker: `runtimes.ocivol` in daemon.json.
fn docker_check(
    path: &Path,
    explicit: bool,
    expected: &[PathBuf],
    fix: &str,
    out: &mut Vec<Check>,
) {
    const NAME: &str = "docker";
    let Some(text) = read_config(NAME, path, explicit, fix, out) else {
        return;
    };
    match docker::runtime_path(path, &text) {
        Err(e) => out.push(Check::new(Level::Fail, NAME, e.to_string())),
        Ok(None) => out.push(Check::new(
            Level::Warn,
            NAME,
            format!(
                "{} has no runtimes.ocivol (docker run --runtime ocivol fails); {fix} adds it",
                path.display()
            ),
        )),
        Ok(Some(rt)) if runs_ocivol(&rt, expected) => out.push(Check::new(
            Level::Ok,
            NAME,
            format!("{}: runtime ocivol runs {rt}", path.display()),
        )),
        Ok(Some(rt)) => out.push(Check::new(
            Level::Fail,
            NAME,
            format!(
                "{}: runtime ocivol runs {rt}, not this ocivol ({}); {fix} points it here",
                path.display(),
                expected_text(expected)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_versions_before_the_2025_fixes_are_told_apart() {
        for (v, fixed) in [
            ("1.1.5+ds1", false),
            ("1.1.15", false),
            ("1.2.7", false),
            ("1.2.8", true),
            ("1.2.8-rc.1", false),
            ("1.3.2", false),
            ("1.3.3", true),
            ("1.4.0-rc.2", false),
            ("1.4.0-rc.3", true),
            ("1.4.0", true),
            ("1.4.1", true),
            ("1.5.0", true),
            ("2.0.0", true),
        ] {
            assert_eq!(runc_has_2025_fixes(v), Some(fixed), "{v}");
        }
        assert_eq!(
            parse_version("runc version 1.1.5+ds1\ncommit: x\n"),
            Some(("runc".into(), "1.1.5+ds1".into()))
        );
        assert_eq!(
            parse_version("crun version 1.8.1\n"),
            Some(("crun".into(), "1.8.1".into()))
        );
    }

    #[test]
    fn the_config_file_must_be_owned_by_root_and_writable_by_root_alone() {
        use std::os::unix::fs::PermissionsExt;
        let Some(()) = crate::util::require_root("the_config_file_must_be_owned_by_root_…")
        else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        fs::create_dir(&etc).unwrap();
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o755)).unwrap();
        let file = etc.join("config.toml");
        assert_eq!(
            config_file_check(&file),
            None,
            "nothing to check when absent"
        );
        fs::write(&file, "").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let good = config_file_check(&file).unwrap();
        assert_eq!(good.level, Level::Ok, "{}", good.line());
        assert!(good.line().contains("owned by root"), "{}", good.line());

        fs::set_permissions(&file, fs::Permissions::from_mode(0o664)).unwrap();
        let bad = config_file_check(&file).unwrap();
        assert_eq!(bad.level, Level::Fail);
        assert!(
            bad.line().contains("is writable by its group (mode 0664)")
                && bad.line().contains(&format!(
                    "fix: chown root:root {f} && chmod go-w {f}",
                    f = file.display()
                )),
            "{}",
            bad.line()
        );
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&file, Some(1000), None).unwrap();
        let bad = config_file_check(&file).unwrap();
        assert_eq!(bad.level, Level::Fail);
        assert!(
            bad.line().contains("owned by uid 1000, not root"),
            "{}",
            bad.line()
        );
        std::os::unix::fs::chown(&file, Some(0), None).unwrap();

        fs::set_permissions(&etc, fs::Permissions::from_mode(0o777)).unwrap();
        let bad = config_file_check(&file).unwrap();
        assert_eq!(bad.level, Level::Fail);
        assert!(
            bad.line().contains(&format!(
                "its directory {} is writable by its group and everyone (mode 0777)",
                etc.display()
            )) && bad
                .line()
                .contains(&format!("chmod go-w {}", etc.display())),
            "{}",
            bad.line()
        );
    }

    #[test]
    fn an_old_config_json_beside_the_default_config_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("config.toml");
        let json = dir.path().join("config.json");
        fs::write(&toml, "").unwrap();
        assert_eq!(config_check_at(&toml, false).1.level, Level::Ok);
        // The old default file, left by a package upgrade: it says nothing else, so it runs;
        // doctor says to remove it.
        fs::write(&json, "{}").unwrap();
        let (_, check) = config_check_at(&toml, false);
        assert_eq!(check.level, Level::Warn, "{}", check.line());
        assert!(
            check.line().contains(&format!(
                "{} is left over from an older release and no longer read",
                json.display()
            )),
            "{}",
            check.line()
        );
        // One that says something else is a failure (every way in refuses it).
        fs::write(&json, "{\"policy\": {\"auto_create\": false}}").unwrap();
        let (_, check) = config_check_at(&toml, false);
        assert_eq!(check.level, Level::Fail, "{}", check.line());
        assert!(check.line().contains("still beside"), "{}", check.line());
        // A file given explicitly is read alone.
        assert_eq!(config_check_at(&toml, true).1.level, Level::Ok);
    }

    #[test]
    fn overlayfs_is_found_in_proc_filesystems() {
        assert_eq!(
            overlayfs_check("nodev\tproc\n\text4\nnodev\toverlay\n").level,
            Level::Ok
        );
        let missing = overlayfs_check("nodev\tproc\n");
        assert_eq!(missing.level, Level::Fail);
        assert!(missing.line().contains("modprobe overlay"));
    }
}
