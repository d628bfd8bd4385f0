//! Test fixture: one temp directory per test with ocivol's state roots, a config, runc's own
//! `--root`, a busybox rootfs and bundles. Dropping it (also when the test panics) deletes every
//! container under that runc root and unmounts everything mounted under the directory.
#![allow(dead_code)]

pub mod containerd;
pub mod cri;
pub mod fake_runtime;
pub mod pod;
pub mod releases;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ocivol::config::StatePaths;
use ocivol::mounts::Linux;
use ocivol::store::Store;
use serde_json::{Value, json};

pub const OCIVOL: &str = env!("CARGO_BIN_EXE_ocivol");
pub const RUNC: &str = "/usr/sbin/runc";

/// Busybox applets the test containers use.
const APPLETS: &[&str] = &[
    "sh",
    "cat",
    "ls",
    "echo",
    "sleep",
    "touch",
    "mkdir",
    "rm",
    "test",
    "true",
    "false",
    "stat",
    "sha256sum",
    "mv",
    "ln",
];

/// Root-only tests call this first; `None` means "skipped: requires root" was printed.
pub fn require_root(test: &str) -> Option<()> {
    if nix::unistd::getuid().is_root() {
        Some(())
    } else {
        eprintln!("{test}: skipped: requires root");
        None
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub run_root: PathBuf,
    pub config: PathBuf,
    pub runc_root: PathBuf,
    pub rootfs: PathBuf,
    /// A sample base directory, allowed by the default test policy.
    pub base: PathBuf,
    template: Value,
}

impl Env {
    /// A fresh environment, or `None` (after printing why) when not root.
    pub fn new(test: &str) -> Option<Env> {
        require_root(test)?;
        let dir = tempfile::Builder::new()
            .prefix("ocivol-test-")
            .tempdir()
            .unwrap();
        let p = dir.path().to_path_buf();
        let env = Env {
            root: p.join("state/root"),
            run_root: p.join("state/run"),
            config: p.join("config.toml"),
            runc_root: p.join("runc"),
            rootfs: p.join("rootfs"),
            base: p.join("base"),
            template: Value::Null,
            dir,
        };
        let mut env = env;
        make_rootfs(&env.rootfs);
        fs::create_dir_all(env.base.join("sub")).unwrap();
        fs::write(env.base.join("file.txt"), "from the base\n").unwrap();
        fs::write(env.base.join("sub/deep.txt"), "deep\n").unwrap();
        env.write_policy(json!({ "allowed_bases": [env.base] }));
        env.template = spec_template(&p.join("template"));
        Some(env)
    }

    /// Writes the config with this policy and real runc.
    pub fn write_policy(&self, policy: Value) {
        self.write_config(json!({ "runtime": RUNC, "policy": policy }));
    }

    /// Writes the config (config.toml) with these keys, given as JSON for brevity.
    pub fn write_config(&self, cfg: Value) {
        fs::write(&self.config, toml_config(&cfg)).unwrap();
    }

    pub fn paths(&self) -> StatePaths {
        StatePaths {
            root: self.root.clone(),
            run_root: self.run_root.clone(),
        }
    }

    /// The store, to look at users and mounts.
    pub fn store(&self) -> Store {
        Store::new(&self.paths(), Box::new(Linux))
    }

    /// The storage name of the volume containers call `name` (names belong to a scope: `cache`
    /// of one scope is `cache@HASH`): `name` itself if that exists (a shared volume, or a
    /// storage name given), else the only `name@…` in the state; `name` if there is none.
    pub fn storage(&self, name: &str) -> String {
        storage(&[&self.root, &self.run_root], name)
    }

    /// The directory of a volume in the persistent state (see [`Env::storage`]).
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(self.storage(name))
    }

    /// The directory of a volume in the run state (see [`Env::storage`]).
    pub fn volume_run_dir(&self, name: &str) -> PathBuf {
        self.run_root.join("volumes").join(self.storage(name))
    }

    pub fn users(&self, volume: &str) -> usize {
        self.store().users(&self.storage(volume)).unwrap().len()
    }

    /// Overlays mounted (in the host's mount namespace) on the volume's mount point.
    pub fn overlays(&self, volume: &str) -> usize {
        let target = self.volume_run_dir(volume).join("merged");
        mountinfo()
            .iter()
            .filter(|m| m.fstype == "overlay" && Path::new(&m.mount_point) == target)
            .count()
    }

    /// Every mount under this test's directory.
    pub fn mounts_here(&self) -> Vec<String> {
        mounts_under(self.dir.path())
    }

    /// A bundle running `args` with these annotations; its rootfs is shared by the test's bundles.
    pub fn bundle(&self, name: &str, args: &[&str], annotations: &[(&str, &str)]) -> PathBuf {
        let bundle = self.dir.path().join("bundles").join(name);
        fs::create_dir_all(&bundle).unwrap();
        let mut spec = self.template.clone();
        spec["process"]["args"] = json!(args);
        spec["root"]["path"] = json!(self.rootfs);
        spec["hostname"] = json!(name);
        let ann: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        spec["annotations"] = Value::Object(ann);
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        bundle
    }

    /// `ocivol --config … --root … --run-root … runtime --root RUNC_ROOT ARGS…`
    pub fn runtime_cmd(&self, args: &[&str]) -> Command {
        let runc_root = self.runc_root.to_str().unwrap();
        let mut c = self.ocivol_cmd(&["runtime", "--root", runc_root]);
        c.args(args);
        c
    }

    /// `podman` with the flags this machine needs (MACHINE.md) and its own storage, run root and
    /// temp dir under the test's directory; the caller adds `--runtime`, hooks and the command.
    pub fn podman_cmd(&self) -> Command {
        let d = self.dir.path().join("podman");
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
            ])
            .stdin(Stdio::null());
        c
    }

    /// `podman --runtime ocivol run --rm` of `args` on the test's rootfs, podman reading
    /// `conf` as its containers.conf (which names the `ocivol` runtime), with one annotation;
    /// every container podman still has in the test's storage is removed afterwards, also when
    /// the run fails.
    pub fn podman_run_ocivol(&self, conf: &Path, annotation: &str, args: &[&str]) -> Output {
        let podman = |a: &[&str]| {
            let mut c = self.podman_cmd();
            c.env("CONTAINERS_CONF", conf)
                .args(["--runtime", "ocivol"])
                .args(a);
            c
        };
        let out = podman(&["run", "--rm", "--network=none"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(["--annotation", annotation, "--rootfs"])
            .arg(&self.rootfs)
            .args(args)
            .output()
            .unwrap();
        let _ = podman(&["rm", "--all", "--force", "--time", "0"]).output();
        out
    }

    pub fn runtime(&self, args: &[&str]) -> Output {
        self.runtime_cmd(args).output().unwrap()
    }

    /// Starts a long-running container detached through the wrapper; its stdio goes to a file
    /// (a detached container keeps the stdio it is given).
    pub fn start(&self, id: &str, bundle: &Path) -> Output {
        self.leaving_container(
            &["run", "--detach", "--bundle", bundle.to_str().unwrap(), id],
            id,
        )
    }

    /// `create` through the wrapper, the container's stdio to a file.
    pub fn create(&self, id: &str, bundle: &Path) -> Output {
        self.leaving_container(&["create", "--bundle", bundle.to_str().unwrap(), id], id)
    }

    /// Runs a wrapper command that leaves a container behind. The container keeps the stdio it
    /// is given, so it gets a file: a pipe would never reach EOF while the container lives.
    /// The returned output is empty; [`Env::container_output`] has what was printed.
    fn leaving_container(&self, args: &[&str], id: &str) -> Output {
        let log = fs::File::create(self.dir.path().join(format!("{id}.out"))).unwrap();
        self.runtime_cmd(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .output()
            .unwrap()
    }

    /// Output of what a detached container printed.
    pub fn container_output(&self, id: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("{id}.out"))).unwrap_or_default()
    }

    /// Runs a shell command inside a running container (plain runc: no wrapper involved).
    pub fn exec(&self, id: &str, script: &str) -> Output {
        Command::new(RUNC)
            .arg("--root")
            .arg(&self.runc_root)
            .args(["exec", id, "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn delete(&self, id: &str) -> Output {
        self.runtime(&["delete", "--force", id])
    }

    /// The environment a hook in this test's bundles runs with.
    pub fn hook_env(&self) -> Vec<String> {
        vec![
            format!("OCIVOL_CONFIG={}", self.config.display()),
            format!("OCIVOL_ROOT={}", self.root.display()),
            format!("OCIVOL_RUN_ROOT={}", self.run_root.display()),
        ]
    }

    /// Adds ocivol's createRuntime and poststop hooks to a bundle's config.json.
    pub fn add_hooks(&self, bundle: &Path) {
        add_hooks(bundle, &self.hook_env());
    }

    /// Plain runc with this test's `--root` (hook mode: no wrapper).
    pub fn runc_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(RUNC);
        c.arg("--root")
            .arg(&self.runc_root)
            .args(args)
            .stdin(Stdio::null());
        c
    }
}

/// config.toml text with the keys of a JSON object: its objects are tables (`policy`), objects
/// inside arrays inline tables (`{ path = "/srv", options = ["readonly"] }`).
pub fn toml_config(cfg: &Value) -> String {
    fn value(v: &Value) -> toml_edit::Value {
        match v {
            Value::Bool(b) => (*b).into(),
            Value::Number(n) => n.as_i64().expect("integers only").into(),
            Value::String(s) => s.as_str().into(),
            Value::Array(a) => toml_edit::Value::Array(a.iter().map(value).collect()),
            Value::Object(o) => {
                let mut t = toml_edit::InlineTable::new();
                for (k, v) in o {
                    t.insert(k, value(v));
                }
                toml_edit::Value::InlineTable(t)
            }
            Value::Null => panic!("no null in a config"),
        }
    }
    let mut doc = toml_edit::DocumentMut::new();
    for (k, v) in cfg.as_object().expect("a config is an object") {
        doc[k.as_str()] = match v {
            Value::Object(o) => {
                let mut t = toml_edit::Table::new();
                for (k, v) in o {
                    t[k.as_str()] = toml_edit::Item::Value(value(v));
                }
                toml_edit::Item::Table(t)
            }
            v => toml_edit::Item::Value(value(v)),
        };
    }
    doc.to_string()
}

/// The two ways a container gets its volumes from runc: the wrapper rewrites config.json, or
/// runc runs ocivol's hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Runtime,
    Hooks,
}

impl Way {
    pub const BOTH: [Way; 2] = [Way::Runtime, Way::Hooks];

    /// A bundle for this way in.
    pub fn bundle(self, env: &Env, id: &str, args: &[&str], ann: &[(&str, &str)]) -> PathBuf {
        let b = env.bundle(id, args, ann);
        if self == Way::Hooks {
            env.add_hooks(&b);
        }
        b
    }

    /// Starts a long-running container, detached; stdio goes to `ID.out` (see
    /// [`Env::container_output`]).
    pub fn start(self, env: &Env, id: &str, bundle: &Path) -> Output {
        match self {
            Way::Runtime => env.start(id, bundle),
            Way::Hooks => {
                let log = fs::File::create(env.dir.path().join(format!("{id}.out"))).unwrap();
                env.runc_cmd(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), id])
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .output()
                    .unwrap()
            }
        }
    }

    /// Runs a container in the foreground and returns its output.
    pub fn run(self, env: &Env, id: &str, bundle: &Path) -> Output {
        let args = ["run", "--bundle", bundle.to_str().unwrap(), id];
        match self {
            Way::Runtime => env
                .runtime_cmd(&args)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
            Way::Hooks => env.runc_cmd(&args).output().unwrap(),
        }
    }

    pub fn delete(self, env: &Env, id: &str) -> Output {
        match self {
            Way::Runtime => env.delete(id),
            Way::Hooks => env.runc_cmd(&["delete", "--force", id]).output().unwrap(),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.runc_root.exists() {
            let list = Command::new(RUNC)
                .arg("--root")
                .arg(&self.runc_root)
                .args(["list", "-q"])
                .output();
            if let Ok(out) = list {
                for id in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = Command::new(RUNC)
                        .arg("--root")
                        .arg(&self.runc_root)
                        .args(["delete", "--force", id])
                        .output();
                }
            }
        }
        unmount_all_under(self.dir.path());
    }
}

/// Adds ocivol's createRuntime and poststop hooks, run with `env_vars`, to a bundle's config.json.
pub fn add_hooks(bundle: &Path, env_vars: &[String]) {
    let path = bundle.join("config.json");
    let mut spec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let hook = |stage: &str| json!([{ "path": OCIVOL, "args": ["ocivol", "hook", stage], "env": env_vars }]);
    spec["hooks"] =
        json!({ "createRuntime": hook("create-runtime"), "poststop": hook("poststop") });
    fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
}

/// Unmounts everything under a directory when dropped (also when the test panics).
pub struct UnmountOnDrop(pub PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        unmount_all_under(&self.0);
    }
}

/// The storage name of the volume containers call `name`, in state roots `roots` (each with its
/// `volumes/`): `name` itself if that exists (a shared volume, or a storage name given), else
/// the only `name@…` (the volume of one scope); `name` if there is none.
pub fn storage(roots: &[&Path], name: &str) -> String {
    if name.contains('@') || roots.iter().any(|r| r.join("volumes").join(name).exists()) {
        return name.to_string();
    }
    let prefix = format!("{name}@");
    let mut found: Vec<String> = roots
        .iter()
        .filter_map(|r| fs::read_dir(r.join("volumes")).ok())
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    found.sort();
    found.dedup();
    match found.len() {
        0 => name.to_string(),
        1 => found.remove(0),
        _ => panic!("volume {name} is in several scopes: {found:?}; use a storage name"),
    }
}

/// Asserts a command succeeded, showing its output if not.
pub fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): stdout {:?} stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct MountEntry {
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
}

/// The host's mount table.
pub fn mountinfo() -> Vec<MountEntry> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some(MountEntry {
                mount_point: f.get(4)?.replace("\\040", " "),
                fstype: f.get(sep + 1)?.to_string(),
                source: f.get(sep + 2)?.to_string(),
            })
        })
        .collect()
}

pub fn mounts_under(dir: &Path) -> Vec<String> {
    mountinfo()
        .into_iter()
        .filter(|m| Path::new(&m.mount_point).starts_with(dir))
        .map(|m| m.mount_point)
        .collect()
}

pub fn unmount_all_under(dir: &Path) {
    let mut mounts = mounts_under(dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A rootfs with a static busybox and the applets the tests use.
pub fn make_rootfs(rootfs: &Path) {
    let bin = rootfs.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("busybox-static must be installed (make test installs it)");
    for a in APPLETS {
        symlink("busybox", bin.join(a)).unwrap();
    }
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
}

/// `runc spec`'s default config, made to run without a terminal.
fn spec_template(dir: &Path) -> Value {
    fs::create_dir_all(dir).unwrap();
    let out = Command::new(RUNC)
        .args(["spec", "--bundle"])
        .arg(dir)
        .output()
        .expect("runc must be installed");
    ok(&out, "runc spec");
    let mut spec: Value =
        serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
    spec["process"]["terminal"] = json!(false);
    spec["root"]["readonly"] = json!(false);
    spec
}

/// Every file under `dir` with its content, to prove a base never changed.
pub fn tree_snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.push((format!("{name}/"), Vec::new()));
                walk(&e.path(), &name, out);
            } else {
                out.push((name, fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out
}

/// `ocivol --config CONFIG --root ROOT --run-root RUN_ROOT`, stdin closed.
pub fn ocivol_at(config: &Path, root: &Path, run_root: &Path) -> Command {
    let mut c = Command::new(OCIVOL);
    c.arg("--config")
        .arg(config)
        .arg("--root")
        .arg(root)
        .arg("--run-root")
        .arg(run_root)
        .stdin(Stdio::null());
    c
}

/// The operator's commands, against this test's state and config.
impl Env {
    /// `ocivol --config … --root … --run-root … ARGS…`
    pub fn ocivol_cmd(&self, args: &[&str]) -> Command {
        let mut c = ocivol_at(&self.config, &self.root, &self.run_root);
        c.args(args);
        c
    }

    pub fn ocivol(&self, args: &[&str]) -> Output {
        self.ocivol_cmd(args).output().unwrap()
    }

    /// An operator command that must succeed with nothing on stderr; its stdout.
    pub fn ocivol_ok(&self, args: &[&str]) -> String {
        let out = self.ocivol(args);
        let stdout = ok(&out, &args.join(" "));
        assert_eq!(text(&out.stderr), "", "{args:?}: nothing on stderr");
        stdout
    }

    /// An operator command that must fail with status 1 and nothing on stdout; its stderr.
    pub fn ocivol_refused(&self, args: &[&str]) -> String {
        let out = self.ocivol(args);
        assert_eq!(out.status.code(), Some(1), "{args:?} must fail: {out:?}");
        assert_eq!(text(&out.stdout), "", "{args:?}: nothing on stdout");
        text(&out.stderr)
    }

    /// The key of a container created under this test's runc root.
    pub fn key(&self, id: &str) -> String {
        ocivol::container_id::container_key(id, self.runc_root.to_str())
    }

    /// The path of a volume's user record of a container.
    pub fn user_record_path(&self, volume: &str, id: &str) -> PathBuf {
        self.volume_run_dir(volume).join("users").join(self.key(id))
    }

    /// `runc state ID` of a container under this test's runc root.
    pub fn runc_state(&self, id: &str) -> Option<Value> {
        let out = Command::new(RUNC)
            .arg("--root")
            .arg(&self.runc_root)
            .args(["state", id])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// The host pid of a container's init.
    pub fn init_pid(&self, id: &str) -> i32 {
        self.runc_state(id).expect("runc state")["pid"]
            .as_i64()
            .unwrap() as i32
    }
}

/// Extended attribute `name` of `path` itself (not of a symlink's target); `None` if it has none.
pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and the buffer's own length.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}

/// Sets extended attribute `name` of `path` itself; the test fails if it cannot.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings, the value's own pointer and length.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {name} on {}", path.display());
}

/// runc's log lines (`time="…" level=error msg="…"`) without their time, so that the output of
/// two runs compares equal when they fall in different seconds.
pub fn without_time(text: &str) -> String {
    text.lines()
        .map(|l| match l.split_once(" level=") {
            Some((t, rest)) if t.starts_with("time=") => format!("level={rest}"),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Output as text.
pub fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Columns as the operator's tables print them: padded to the widest cell plus three spaces,
/// the last one not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let mut widths = vec![0; rows.iter().map(Vec::len).max().unwrap_or(0)];
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{c:<w$}   ", w = widths[i]));
            } else {
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Rows from string slices.
pub fn rows(r: &[&[&str]]) -> Vec<Vec<String>> {
    r.iter()
        .map(|row| row.iter().map(|c| c.to_string()).collect())
        .collect()
}
