//! The wrapper's argv and exit handling, against a fake runtime that records what it was given.
//! (End-to-end behaviour is proven with real runc in runc_wrapper.rs; this needs no root.)

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::fake_runtime::FakeRuntime;

/// The fake runtime: `state` exits 42, `create` dies of SIGTERM, anything else exits 0.
fn fake() -> FakeRuntime {
    FakeRuntime::new(
        "ocivol-fake-",
        "for a in \"$@\"; do case \"$a\" in\n  state) exit 42;;\n  create) kill -TERM $$;;\nesac; done",
    )
}

/// `ocivol runtime ARGS` run in `cwd`.
fn run(f: &FakeRuntime, args: &[&str], cwd: &Path) -> Output {
    f.runtime(args).current_dir(cwd).output().unwrap()
}

fn bundle(f: &FakeRuntime, annotations: serde_json::Value) -> PathBuf {
    let b = f.path("bundle");
    fs::create_dir_all(&b).unwrap();
    let spec = serde_json::json!({ "ociVersion": "1.0.2", "annotations": annotations });
    fs::write(b.join("config.json"), spec.to_string()).unwrap();
    b
}

#[test]
fn other_commands_reach_the_runtime_unchanged_with_their_exit_code() {
    let f = fake();
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
    let out = run(&f, &args, f.dir.path());
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(f.argv_log(), [args.join(" ")]);
    for args in [
        &["kill", "--all", "id1", "9"][..],
        &["pause", "id1"],
        &["--version"],
        &["exec", "-d", "id1", "ls"],
    ] {
        let out = run(&f, args, f.dir.path());
        assert!(out.status.success());
        assert_eq!(f.argv_log().last().unwrap(), &args.join(" "));
    }
    assert!(
        !f.path("state").exists(),
        "no state made for other commands"
    );
}

#[test]
fn create_without_ocivol_annotations_is_passed_through_untouched() {
    let f = fake();
    let b = bundle(&f, serde_json::json!({ "other": "x" }));
    let before = fs::read(b.join("config.json")).unwrap();
    // No --bundle: the bundle is the working directory, as containerd's shim runs it.
    let out = run(&f, &["create", "--pid-file", "p", "id2"], &b);
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
    let f = fake();
    let b = bundle(
        &f,
        serde_json::json!({ "io.ocivol.volumes": "named:/named;/anon" }),
    );
    let out = run(
        &f,
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
    // As given, with a pid file in the container's staging directory (the caller gave none).
    let key = ocivol::container_id::container_key("id3", Some("/rr"));
    let pid_file = f.path("state/run/mnt").join(key).join("pid");
    assert_eq!(
        f.argv_log(),
        [format!(
            "--root /rr create --pid-file {} --bundle {} id3",
            pid_file.display(),
            b.display()
        )],
        "the runtime gets the arguments as given, and a pid file"
    );
    let spec: serde_json::Value =
        serde_json::from_slice(&fs::read(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        spec["mounts"].as_array().unwrap().len(),
        2,
        "the mounts were added before the runtime ran"
    );
    let named = common::storage(&[&f.path("state/root"), &f.path("state/run")], "named");
    let users = f.path("state/run/volumes").join(&named).join("users");
    assert_eq!(
        fs::read_dir(&users).unwrap().count(),
        0,
        "released after the runtime failed"
    );
    let volumes: Vec<_> = fs::read_dir(f.path("state/root/volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(volumes, [named.as_str()], "the anonymous volume is gone");
    assert_eq!(
        fs::read_dir(f.path("state/root/containers"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_missing_runtime_is_one_clear_line() {
    let f = fake();
    f.write_config(serde_json::json!({"runtime": "/nonexistent/runc"}));
    let out = run(&f, &["state", "x"], f.dir.path());
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
    let f = fake();
    f.write_config(serde_json::json!({"policy": {"allowed_base": []}}));
    let out = run(&f, &["state", "x"], f.dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("ocivol: config ") && stderr.contains("allowed_base"),
        "{stderr}"
    );
    assert!(f.argv_log().is_empty(), "the runtime did not run");
}
