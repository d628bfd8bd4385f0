//! What the real runtime inherits from the wrapper (issue 6, acceptance 3 and 4): only the
//! caller's file descriptors and the caller's environment, never anything of ocivol's own (lock
//! files, config.json, state) and never the container's environment (`LD_PRELOAD`, `PATH` in
//! config.json's `process.env`), which would otherwise run the container author's code as root.
//!
//! The fake-runtime tests need no root; the last test runs real runc and needs root.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::fake_runtime::FakeRuntime;
use serde_json::{Value, json};

/// What the fake runtime does: print its environment and then, having exec()ed `ls` so that no
/// descriptor of the shell's own is open, the descriptors of its process.
const FAKE: &str = "echo '== env'\nenv\necho '== fds'\nexec ls -l /proc/self/fd";

/// The fd that the test (the runtime's caller) passes on, as an engine passes a console socket
/// or `--preserve-fds`.
const CALLER_FD: i32 = 3;

struct Fake(FakeRuntime);

impl std::ops::Deref for Fake {
    type Target = FakeRuntime;
    fn deref(&self) -> &FakeRuntime {
        &self.0
    }
}

impl Fake {
    /// The fake runtime; the config names `runtime` instead, if given.
    fn new(runtime: Option<&str>) -> Fake {
        let f = Fake(FakeRuntime::new("ocivol-env-", FAKE));
        fs::write(f.path("caller-fd"), "the caller's\n").unwrap();
        if let Some(runtime) = runtime {
            f.write_config(json!({ "runtime": runtime }));
        }
        f
    }

    /// A bundle with these annotations and these entries in `process.env`.
    fn bundle(&self, name: &str, annotations: Value, env: &[String]) -> PathBuf {
        let b = self.path(name);
        fs::create_dir_all(&b).unwrap();
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "env": env},
            "root": {"path": "rootfs"},
            "annotations": annotations,
        });
        fs::write(b.join("config.json"), spec.to_string()).unwrap();
        b
    }

    /// `ocivol runtime ARGS` with a clean, known environment, the caller's extra fd, and stdout
    /// (where the fake runtime reports) captured.
    fn run(&self, args: &[&str]) -> Output {
        let mut c = self.runtime(&["--root"]);
        c.arg(self.path("runtime-root")).args(args);
        self.output(c)
    }

    /// The fake runtime started straight by the test, the way the test starts ocivol: what a
    /// runtime gets from this caller when nothing is in between.
    fn direct(&self) -> Output {
        self.output(Command::new(self.path("fake-runc")))
    }

    fn output(&self, mut c: Command) -> Output {
        let extra = fs::File::open(self.path("caller-fd")).unwrap();
        let extra_fd = extra.as_raw_fd();
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        // SAFETY: dup2 and fcntl are async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(extra_fd, CALLER_FD) < 0
                    || libc::fcntl(CALLER_FD, libc::F_SETFD, 0) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = c.output().unwrap();
        drop(extra);
        out
    }
}

/// What the fake runtime reported: its environment and its open fds (fd → target).
struct Report {
    env: BTreeMap<String, String>,
    fds: BTreeMap<i32, String>,
}

fn report(out: &Output, script: &Path) -> Report {
    let text = String::from_utf8_lossy(&out.stdout);
    let (env_part, fd_part) = text
        .split_once("== fds\n")
        .unwrap_or_else(|| panic!("the fake runtime did not run: {out:?}"));
    let env = env_part
        .lines()
        .skip_while(|l| *l != "== env")
        .skip(1)
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut fds = BTreeMap::new();
    for line in fd_part.lines() {
        // `lr-x------ 1 root root 64 Nov 22 15:25 3 -> /path`
        let Some((left, target)) = line.split_once(" -> ") else {
            continue;
        };
        let fd: i32 = left.rsplit(' ').next().unwrap().parse().unwrap();
        // `ls` itself reads the directory it lists; the shell may keep the script open.
        if target.starts_with("/proc/") && target.ends_with("/fd") || Path::new(target) == script {
            continue;
        }
        fds.insert(fd, target.to_string());
    }
    Report { env, fds }
}

/// The runtime started by ocivol has exactly the fds it has when the caller starts it itself:
/// 0, 1, 2, the caller's fd 3, and whatever the test process was itself handed without
/// close-on-exec by whoever started `cargo test` (a CI runner's pipes, say). Nothing of ocivol's.
fn assert_only_caller_fds(f: &Fake, out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {out:?}");
    let script = f.path("fake-runc");
    let got = report(out, &script).fds;
    let baseline = report(&f.direct(), &script).fds;
    for fd in [0, 1, 2, CALLER_FD] {
        assert!(baseline.contains_key(&fd), "the caller gives fd {fd}");
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        baseline.keys().collect::<Vec<_>>(),
        "{what}: only the caller's fds reach the runtime: got {got:?}, the caller gives {baseline:?}"
    );
    for (fd, target) in &got {
        if !target.starts_with("pipe:") {
            assert_eq!(target, &baseline[fd], "{what}: fd {fd} is the caller's");
        }
        assert!(
            !target.contains("/state/") && !target.ends_with(".lock") && !target.ends_with(".json"),
            "{what}: an fd of ocivol's leaked: {fd} -> {target}"
        );
    }
    assert_eq!(
        Path::new(&got[&CALLER_FD]),
        f.path("caller-fd"),
        "{what}: the caller's fd is passed on as it was"
    );
}

#[test]
fn only_stdio_and_the_callers_fds_reach_the_runtime_when_passed_through() {
    let f = Fake::new(None);
    // Commands that are exec()ed straight into the runtime.
    let out = f.run(&["state", "c1"]);
    assert_only_caller_fds(&f, &out, "state");
    // create of a bundle without ocivol annotations: config.json was read, then exec().
    let b = f.bundle("plain", json!({ "other": "x" }), &[]);
    let out = f.run(&["create", "--bundle", b.to_str().unwrap(), "c2"]);
    assert_only_caller_fds(&f, &out, "create without volumes");
}

#[test]
fn only_stdio_and_the_callers_fds_reach_the_runtime_on_create_and_delete_with_volumes() {
    let f = Fake::new(None);
    let b = f.bundle(
        "vols",
        json!({ "io.ocivol.volumes": "n:/n;m:/m;/anon" }),
        &[],
    );
    // create: volumes taken (locks, records, config.json rewritten), then the runtime spawned.
    let out = f.run(&["create", "--bundle", b.to_str().unwrap(), "c3"]);
    assert_only_caller_fds(&f, &out, "create with volumes");
    let spec: Value = serde_json::from_slice(&fs::read(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["mounts"].as_array().unwrap().len(), 3, "volumes added");
    let n = common::storage(&[&f.path("state/root"), &f.path("state/run")], "n");
    let n_users = f.path("state/run/volumes").join(&n).join("users");
    assert_eq!(
        fs::read_dir(&n_users).unwrap().count(),
        1,
        "the volume is held while the runtime has the container"
    );
    // delete: the runtime spawned, then the volumes released.
    let out = f.run(&["delete", "c3"]);
    assert_only_caller_fds(&f, &out, "delete");
    assert_eq!(fs::read_dir(&n_users).unwrap().count(), 0);
    // A foreground run: spawned, waited for, released.
    let out = f.run(&["run", "--bundle", b.to_str().unwrap(), "c4"]);
    assert_only_caller_fds(&f, &out, "run with volumes");
}

#[test]
fn the_containers_environment_never_reaches_the_runtime_or_changes_the_mounts() {
    let f = Fake::new(None);
    let rootfs_bin = f.path("rootfs/bin");
    fs::create_dir_all(&rootfs_bin).unwrap();
    fs::write(rootfs_bin.join("evil.so"), "not an ELF file").unwrap();
    let hostile = [
        format!("LD_PRELOAD={}", rootfs_bin.join("evil.so").display()),
        format!("PATH={}:/bin", rootfs_bin.display()),
        "LD_LIBRARY_PATH=/rootfs/lib".to_string(),
    ];
    let annotations = json!({ "io.ocivol.volumes": "n:/n;m:/m:ro" });
    let mut mounts = Vec::new();
    for (name, env) in [("plain", &[][..]), ("hostile", &hostile[..])] {
        let b = f.bundle(name, annotations.clone(), env);
        let out = f.run(&["run", "--bundle", b.to_str().unwrap(), name]);
        assert!(out.status.success(), "{name}: {out:?}");
        assert!(out.stderr.is_empty(), "{name}: nothing on stderr: {out:?}");
        let r = report(&out, &f.path("fake-runc"));
        // The caller gave PATH only; the shell adds PWD and the like, nothing else may appear.
        for key in r.env.keys() {
            assert!(
                ["PATH", "PWD", "OLDPWD", "SHLVL", "_"].contains(&key.as_str()),
                "{name}: {key} is not the caller's: {:?}",
                r.env
            );
        }
        assert_eq!(r.env["PATH"], "/usr/bin:/bin", "{name}: the caller's PATH");
        let spec: Value =
            serde_json::from_slice(&fs::read(b.join("config.json")).unwrap()).unwrap();
        assert_eq!(
            spec["process"]["env"],
            json!(env),
            "{name}: the container's env is left as it was for the container"
        );
        mounts.push(unkeyed(&spec["mounts"]));
    }
    assert_eq!(
        mounts[0], mounts[1],
        "the same mounts are written with and without the hostile env"
    );
}

#[test]
fn the_callers_path_does_not_choose_the_runtime() {
    // The config names the runtime without a path; a `runc` first on the caller's PATH (or in a
    // rootfs) must never be the one that runs.
    let f = Fake::new(Some("runc"));
    let planted = f.path("planted");
    fs::create_dir_all(&planted).unwrap();
    let marker = f.path("hijacked");
    fs::write(
        planted.join("runc"),
        format!("#!/bin/sh\ntouch {}\n", marker.display()),
    )
    .unwrap();
    fs::set_permissions(planted.join("runc"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", planted.display());
    let out = Command::new(common::OCIVOL)
        .env("PATH", &path)
        .arg("--config")
        .arg(f.path("config.toml"))
        .args(["runtime", "--version"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!marker.exists(), "the runtime on the caller's PATH ran");
    if !out.status.success() {
        // No runc in the system directories: then the error says where it looked.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not found in /usr/local/sbin:"), "{stderr}");
        assert!(!stderr.contains(&*planted.to_string_lossy()), "{stderr}");
    }
}

/// With real runc, as root: a container whose `process.env` has a bogus `LD_PRELOAD` and a
/// `PATH` into its rootfs (where a `runc` is planted) gets the same volumes, the same mounts in
/// config.json and the same output as one without, and the planted `runc` never runs.
#[test]
fn ld_preload_and_path_in_the_container_env_change_nothing_with_real_runc() {
    let Some(env) =
        common::Env::new("ld_preload_and_path_in_the_container_env_change_nothing_with_real_runc")
    else {
        return;
    };
    // The runtime by name, so that a lookup through the container's PATH would find the plant.
    env.write_config(json!({ "runtime": "runc", "policy": { "allowed_bases": [env.base] } }));
    let bin = env.rootfs.join("bin");
    let marker = env.dir.path().join("hijacked");
    fs::write(
        bin.join("runc"),
        format!("#!/bin/sh\ntouch {}\n", marker.display()),
    )
    .unwrap();
    fs::set_permissions(bin.join("runc"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(bin.join("evil.so"), "not an ELF file").unwrap();

    let annotation = format!("cow:/data:base={};named:/named", env.base.display());
    let script = "cat /data/file.txt; echo kept >> /named/f; cat /named/f; ls /data";
    let mut results = Vec::new();
    for (i, hostile) in [false, true].into_iter().enumerate() {
        let id = format!("ocivol-env-{i}");
        let b = env.bundle(
            &id,
            &["/bin/sh", "-c", script],
            &[("io.ocivol.volumes", &annotation)],
        );
        let cfg = b.join("config.json");
        let mut spec: Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
        if hostile {
            spec["process"]["env"] = json!([
                format!("PATH=/bin:{}", bin.display()),
                format!("LD_PRELOAD={}", bin.join("evil.so").display()),
                "TERM=xterm",
            ]);
        } else {
            spec["process"]["env"] = json!(["PATH=/bin", "TERM=xterm"]);
        }
        fs::write(&cfg, serde_json::to_vec(&spec).unwrap()).unwrap();
        let out = env.runtime(&["run", "--bundle", b.to_str().unwrap(), &id]);
        let stdout = common::ok(&out, &id);
        assert!(
            out.stderr.is_empty(),
            "{id}: nothing on stderr (no loader complaint): {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        let written: Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
        assert_eq!(env.users("cow"), 0, "{id}: released after run");
        assert_eq!(env.overlays("cow"), 0, "{id}: overlay gone after run");
        results.push((stdout, unkeyed(&written["mounts"])));
    }
    assert!(!marker.exists(), "the runc planted in the rootfs ran");
    assert!(
        results[0].0.starts_with("from the base\nkept\n"),
        "the volumes are there: {:?}",
        results[0].0
    );
    assert_eq!(
        results[1].0.replace("kept\nkept\n", "kept\n"),
        results[0].0,
        "the same output with the hostile env (the named volume kept the first run's line)"
    );
    assert_eq!(results[0].1, results[1].1, "the same mounts are written");
    assert!(env.mounts_here().is_empty());
}

#[test]
fn ocivol_refuses_to_run_itself_as_the_real_runtime() {
    // A config that names ocivol (or a link to it) would recurse forever.
    let f = Fake::new(Some(common::OCIVOL));
    let link = f.path("runc");
    std::os::unix::fs::symlink(common::OCIVOL, &link).unwrap();
    for runtime in [PathBuf::from(common::OCIVOL), link] {
        f.write_config(json!({ "runtime": runtime }));
        let out = f.run(&["state", "x"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("is ocivol itself"), "{stderr}");
    }
}

/// The mounts with the container's key taken out of the staging paths (`RUN_ROOT/mnt/KEY/N`),
/// so that two containers' specs compare.
fn unkeyed(mounts: &Value) -> Value {
    let re = regex::Regex::new(r"/mnt/[^/]+/([0-9]+)$").unwrap();
    let mut out = mounts.clone();
    for m in out.as_array_mut().into_iter().flatten() {
        if let Some(src) = m["source"].as_str() {
            m["source"] = Value::from(re.replace(src, "/mnt/KEY/$1").into_owned());
        }
    }
    out
}
