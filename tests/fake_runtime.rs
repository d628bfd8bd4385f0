//! The wrapper's argv and exit handling, against a fake runtime that records what it was given.
//! (End-to-end behaviour is proven with real runc in runc_wrapper.rs; this needs no root.)

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    /// A fake runtime: appends its argv (one line, NUL-free) to argv.log, then acts per command:
    /// `state` exits 42, `create` dies of SIGTERM, anything else exits 0.
    fn new() -> Fake {
        let dir = tempfile::Builder::new()
            .prefix("ocivol-fake-")
            .tempdir()
            .unwrap();
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\nfor a in \"$@\"; do case \"$a\" in\n  state) exit 42;;\n  create) kill -TERM $$;;\nesac; done\nexit 0\n",
            log = dir.path().join("argv.log").display()
        );
        let runtime = dir.path().join("fake-runc");
        fs::write(&runtime, script).unwrap();
        fs::set_permissions(&runtime, fs::Permissions::from_mode(0o755)).unwrap();
        let config = serde_json::json!({ "runtime": runtime });
        fs::write(dir.path().join("config.toml"), common::toml_config(&config)).unwrap();
        Fake { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn run(&self, args: &[&str], cwd: &Path) -> Output {
        Command::new(common::OCIVOL)
            .arg("--config")
            .arg(self.path("config.toml"))
            .arg("--root")
            .arg(self.path("root"))
            .arg("--run-root")
            .arg(self.path("run"))
            .arg("runtime")
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn argv_log(&self) -> Vec<String> {
        fs::read_to_string(self.path("argv.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn bundle(&self, annotations: serde_json::Value) -> PathBuf {
        let b = self.path("bundle");
        fs::create_dir_all(&b).unwrap();
        let spec = serde_json::json!({ "ociVersion": "1.0.2", "annotations": annotations });
        fs::write(b.join("config.json"), spec.to_string()).unwrap();
        b
    }
}

#[test]
fn other_commands_reach_the_runtime_unchanged_with_their_exit_code() {
    let f = Fake::new();
    let args = [
        "--root",
        "/r",
        "--log",
        "/l",
        "--log-format=json",
        "--systemd-cgroup",
        "state",
        "--unknown-flag",
        "id1",
    ];
    let out = f.run(&args, f.dir.path());
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(f.argv_log(), [args.join(" ")]);
    for args in [
        &["kill", "--all", "id1", "9"][..],
        &["pause", "id1"],
        &["--version"],
        &["exec", "-d", "id1", "ls"],
    ] {
        let out = f.run(args, f.dir.path());
        assert!(out.status.success());
        assert_eq!(f.argv_log().last().unwrap(), &args.join(" "));
    }
    assert!(
        !f.path("root").exists() && !f.path("run").exists(),
        "no state made for other commands"
    );
}

#[test]
fn create_without_ocivol_annotations_is_passed_through_untouched() {
    let f = Fake::new();
    let b = f.bundle(serde_json::json!({ "other": "x" }));
    let before = fs::read(b.join("config.json")).unwrap();
    // No --bundle: the bundle is the working directory, as containerd's shim runs it.
    let out = f.run(&["create", "--pid-file", "p", "id2"], &b);
    assert_eq!(
        out.status.signal(),
        Some(15),
        "the runtime's death by SIGTERM is passed on"
    );
    assert_eq!(f.argv_log(), ["create --pid-file p id2"]);
    assert_eq!(
        fs::read(b.join("config.json")).unwrap(),
        before,
        "config.json untouched"
    );
}

#[test]
fn a_runtime_killed_by_a_signal_is_passed_on_and_the_volumes_are_released() {
    let f = Fake::new();
    let b = f.bundle(serde_json::json!({ "io.ocivol.volumes": "named:/named;/anon" }));
    let out = f.run(
        &[
            "--root",
            "/rr",
            "create",
            "--bundle",
            b.to_str().unwrap(),
            "id3",
        ],
        f.dir.path(),
    );
    assert_eq!(out.status.signal(), Some(15), "{out:?}");
    assert_eq!(
        f.argv_log(),
        [format!("--root /rr create --bundle {} id3", b.display())],
        "the runtime gets the arguments as given"
    );
    let spec: serde_json::Value =
        serde_json::from_slice(&fs::read(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        spec["mounts"].as_array().unwrap().len(),
        2,
        "the mounts were added before the runtime ran"
    );
    let named = common::storage(&[&f.path("root"), &f.path("run")], "named");
    let users = f.path("run/volumes").join(&named).join("users");
    assert_eq!(
        fs::read_dir(&users).unwrap().count(),
        0,
        "released after the runtime failed"
    );
    let volumes: Vec<_> = fs::read_dir(f.path("root/volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(volumes, [named.as_str()], "the anonymous volume is gone");
    assert_eq!(fs::read_dir(f.path("root/containers")).unwrap().count(), 0);
}

#[test]
fn a_missing_runtime_is_one_clear_line() {
    let f = Fake::new();
    fs::write(f.path("config.toml"), "runtime = \"/nonexistent/runc\"\n").unwrap();
    let out = f.run(&["state", "x"], f.dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("the real runtime \"/nonexistent/runc\" was not found"),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_names_the_key() {
    let f = Fake::new();
    fs::write(f.path("config.toml"), "[policy]\nallowed_base = []\n").unwrap();
    let out = f.run(&["state", "x"], f.dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("ocivol: config ") && stderr.contains("allowed_base"),
        "{stderr}"
    );
    assert!(f.argv_log().is_empty(), "the runtime did not run");
}
