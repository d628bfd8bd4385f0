//! End to end through `ocivol runtime` with real runc, real overlayfs, as root.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Env, ok, tree_snapshot};
use serde_json::json;

const VOLUMES: &str = "io.ocivol.volumes";

fn cow_annotation(env: &Env, name: &str, extra: &str) -> String {
    format!("{name}:/data:base={}{extra}", env.base.display())
}

#[test]
fn two_containers_share_a_copy_on_write_volume_and_the_base_never_changes() {
    let Some(env) =
        Env::new("two_containers_share_a_copy_on_write_volume_and_the_base_never_changes")
    else {
        return;
    };
    let before = tree_snapshot(&env.base);
    let ann = cow_annotation(&env, "shared", "");
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-t1-a", &a), "start a");
    ok(&env.start("ocivol-t1-b", &b), "start b");

    assert_eq!(env.users("shared"), 2);
    assert_eq!(
        env.overlays("shared"),
        1,
        "one overlay for the volume while both run"
    );

    ok(
        &env.exec(
            "ocivol-t1-a",
            "echo from-a > /data/a.txt && echo changed > /data/file.txt && rm /data/sub/deep.txt",
        ),
        "a writes",
    );
    let seen = ok(
        &env.exec(
            "ocivol-t1-b",
            "cat /data/a.txt /data/file.txt; ls /data/sub",
        ),
        "b reads",
    );
    assert_eq!(seen, "from-a\nchanged\n", "b sees a's writes and deletion");
    ok(
        &env.exec("ocivol-t1-b", "echo from-b > /data/b.txt"),
        "b writes",
    );
    assert_eq!(
        ok(&env.exec("ocivol-t1-a", "cat /data/b.txt"), "a reads"),
        "from-b\n"
    );

    ok(&env.delete("ocivol-t1-a"), "delete a");
    assert_eq!(env.users("shared"), 1);
    assert_eq!(env.overlays("shared"), 1, "still mounted for b");
    ok(&env.delete("ocivol-t1-b"), "delete b");
    assert_eq!(env.users("shared"), 0);
    assert_eq!(env.overlays("shared"), 0, "unmounted after the last user");
    assert_eq!(
        tree_snapshot(&env.base),
        before,
        "the base directory never changes"
    );
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn volatile_changes_are_gone_after_last_user() {
    let Some(env) = Env::new("volatile_changes_are_gone_after_last_user") else {
        return;
    };
    let ann = cow_annotation(&env, "scratch", ",volatile");
    let w = env.bundle(
        "w",
        &[
            "sh",
            "-c",
            "echo junk > /data/junk.txt && cat /data/junk.txt",
        ],
        &[(VOLUMES, &ann)],
    );
    let out = ok(
        &env.runtime(&["run", "--bundle", w.to_str().unwrap(), "ocivol-t2-w"]),
        "run w",
    );
    assert_eq!(out, "junk\n");
    assert_eq!(env.users("scratch"), 0);
    assert_eq!(env.overlays("scratch"), 0);

    let r = env.bundle("r", &["sh", "-c", "ls /data"], &[(VOLUMES, &ann)]);
    let out = ok(
        &env.runtime(&["run", "--bundle", r.to_str().unwrap(), "ocivol-t2-r"]),
        "run r",
    );
    assert_eq!(out, "file.txt\nsub\n", "a new container sees the base only");
    assert!(!env.base.join("junk.txt").exists());
}

#[test]
fn named_volume_keeps_data_for_the_next_container() {
    let Some(env) = Env::new("named_volume_keeps_data_for_the_next_container") else {
        return;
    };
    let w = env.bundle(
        "w",
        &["sh", "-c", "echo kept > /notes/n.txt"],
        &[(VOLUMES, "notes:/notes")],
    );
    ok(
        &env.runtime(&["run", "--bundle", w.to_str().unwrap(), "ocivol-t3-w"]),
        "run w",
    );
    assert_eq!(env.users("notes"), 0);
    let r = env.bundle(
        "r",
        &["cat", "/notes/n.txt"],
        &[(VOLUMES, "notes:/notes:ro")],
    );
    let out = ok(
        &env.runtime(&["run", "--bundle", r.to_str().unwrap(), "ocivol-t3-r"]),
        "run r",
    );
    assert_eq!(out, "kept\n");
    // The persistent copy-on-write volume keeps its changes too, in its upper directory.
    let ann = cow_annotation(&env, "keep", "");
    let c = env.bundle(
        "c",
        &["sh", "-c", "echo mine > /data/mine.txt"],
        &[(VOLUMES, &ann)],
    );
    ok(
        &env.runtime(&["run", "--bundle", c.to_str().unwrap(), "ocivol-t3-c"]),
        "run c",
    );
    let d = env.bundle("d", &["cat", "/data/mine.txt"], &[(VOLUMES, &ann)]);
    assert_eq!(
        ok(
            &env.runtime(&["run", "--bundle", d.to_str().unwrap(), "ocivol-t3-d"]),
            "run d"
        ),
        "mine\n"
    );
}

#[test]
fn anonymous_volume_is_removed_with_its_container() {
    let Some(env) = Env::new("anonymous_volume_is_removed_with_its_container") else {
        return;
    };
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, "/scratch")]);
    ok(&env.start("ocivol-t4", &b), "start");
    ok(&env.exec("ocivol-t4", "echo x > /scratch/x"), "write");
    let vols: Vec<_> = fs::read_dir(env.root.join("volumes")).unwrap().collect();
    assert_eq!(vols.len(), 1);
    ok(&env.delete("ocivol-t4"), "delete");
    assert_eq!(
        fs::read_dir(env.root.join("volumes")).unwrap().count(),
        0,
        "the anonymous volume is gone"
    );
}

#[test]
fn unknown_config_fields_survive_the_wrapper() {
    let Some(env) = Env::new("unknown_config_fields_survive_the_wrapper") else {
        return;
    };
    let b = env.bundle("b", &["true"], &[(VOLUMES, "v:/v")]);
    let path = b.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    spec["linux"]["futureKnob"] = json!({"level": 3, "list": ["a", "b"]});
    spec["vendor.example.com/extension"] = json!({"keep": true});
    spec["process"]["futureProcessField"] = json!(null);
    fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    ok(&env.create("ocivol-t5", &b), "create");
    let after: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(after["linux"]["futureKnob"], spec["linux"]["futureKnob"]);
    assert_eq!(
        after["vendor.example.com/extension"],
        spec["vendor.example.com/extension"]
    );
    assert!(
        after["process"]
            .as_object()
            .unwrap()
            .contains_key("futureProcessField")
    );
    let n = spec["mounts"].as_array().unwrap().len();
    assert_eq!(after["mounts"].as_array().unwrap().len(), n + 1);
    assert_eq!(after["mounts"][n]["destination"], "/v");
    ok(&env.delete("ocivol-t5"), "delete");
    assert_eq!(env.users("v"), 0);
}

/// The tree under a directory (names only), to prove nothing was created.
fn names(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    tree_snapshot(dir).into_iter().map(|(n, _)| n).collect()
}

#[test]
fn bad_annotations_fail_create_with_one_line_and_leave_nothing() {
    let Some(env) = Env::new("bad_annotations_fail_create_with_one_line_and_leave_nothing") else {
        return;
    };
    let outside = env.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let cases = [
        ("ok:/ok;v:/x:bogus", "unknown option \"bogus\""),
        ("ok:/ok;v:relative", "not an absolute path"),
        (
            &*format!("ok:/ok;c:/d:base={}", outside.display()),
            "not under the policy's allowed_bases",
        ),
        (
            &*format!("ok:/ok;{}:/d", outside.display()),
            "allowed_bind_sources is empty",
        ),
        ("ok:/ok;v:/x;w:/x", "already used"),
        ("ok:/ok;../etc:/x", "invalid volume name"),
    ];
    for (i, (ann, reason)) in cases.iter().enumerate() {
        let id = format!("ocivol-t6-{i}");
        let b = env.bundle(&id, &["true"], &[(VOLUMES, ann)]);
        let log = env.dir.path().join(format!("{id}.log.json"));
        let state_before = names(&env.dir.path().join("state"));
        let out = env
            .runtime_cmd(&[])
            .args(["--log", log.to_str().unwrap(), "--log-format", "json"])
            .args(["create", "--bundle", b.to_str().unwrap(), &id])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{ann}: create must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{ann}: one line: {stderr:?}");
        assert!(
            stderr.starts_with("ocivol: annotation io.ocivol.volumes: entry "),
            "{stderr}"
        );
        assert!(
            stderr.contains(reason),
            "{ann}: expected {reason:?} in {stderr}"
        );
        let logged: serde_json::Value =
            serde_json::from_str(fs::read_to_string(&log).unwrap().trim()).unwrap();
        assert_eq!(logged["level"], "error");
        assert_eq!(logged["msg"].as_str().unwrap(), stderr.trim_end());
        assert_eq!(
            names(&env.dir.path().join("state")),
            state_before,
            "{ann}: nothing created"
        );
        assert!(
            env.mounts_here().is_empty(),
            "{ann}: no mount: {:?}",
            env.mounts_here()
        );
        assert_eq!(env.users("ok"), 0);
        let list = ok(
            &std::process::Command::new(common::RUNC)
                .arg("--root")
                .arg(&env.runc_root)
                .args(["list", "-q"])
                .output()
                .unwrap(),
            "runc list",
        );
        assert!(list.trim().is_empty(), "no container was created: {list}");
    }
}

#[test]
fn runtime_failing_on_create_leaves_no_user_and_no_overlay() {
    let Some(env) = Env::new("runtime_failing_on_create_leaves_no_user_and_no_overlay") else {
        return;
    };
    let ann = format!("{};/anon", cow_annotation(&env, "failing", ""));
    let b = env.bundle("b", &["/does/not/exist"], &[(VOLUMES, &ann)]);
    let out = env.runtime(&["create", "--bundle", b.to_str().unwrap(), "ocivol-t7"]);
    assert!(!out.status.success(), "runc create must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/does/not/exist"),
        "runc's own error is shown"
    );
    assert_eq!(env.users("failing"), 0);
    assert_eq!(env.overlays("failing"), 0);
    assert!(env.mounts_here().is_empty());
    let left: Vec<_> = fs::read_dir(env.root.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        left,
        [env.storage("failing")],
        "the anonymous volume is gone, the named one stays"
    );
    assert_eq!(
        fs::read_dir(env.root.join("containers")).unwrap().count(),
        0,
        "no container record"
    );
}

#[test]
fn twenty_parallel_creates_share_one_overlay_and_parallel_deletes_leave_none() {
    let Some(env) =
        Env::new("twenty_parallel_creates_share_one_overlay_and_parallel_deletes_leave_none")
    else {
        return;
    };
    let ann = cow_annotation(&env, "crowd", "");
    let ids: Vec<String> = (0..20).map(|i| format!("ocivol-t8-{i}")).collect();
    let bundles: Vec<_> = ids
        .iter()
        .map(|id| env.bundle(id, &["sleep", "600"], &[(VOLUMES, &ann)]))
        .collect();
    // 20 wrappers at once, each a process of its own, as 20 shims would run them.
    let created: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .zip(&bundles)
            .map(|(id, b)| s.spawn(|| env.create(id, b)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (out, id) in created.iter().zip(&ids) {
        assert!(
            out.status.success(),
            "create {id}: {}",
            env.container_output(id)
        );
    }
    assert_eq!(env.users("crowd"), 20);
    assert_eq!(env.overlays("crowd"), 1);
    let children: Vec<_> = ids
        .iter()
        .map(|id| {
            env.runtime_cmd(&["delete", "--force", id])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        ok(&c.wait_with_output().unwrap(), "parallel delete");
    }
    assert_eq!(env.users("crowd"), 0);
    assert_eq!(env.overlays("crowd"), 0);
    assert!(env.mounts_here().is_empty());
}

#[test]
fn delete_twice_releases_once_and_is_harmless() {
    let Some(env) = Env::new("delete_twice_releases_once_and_is_harmless") else {
        return;
    };
    let ann = cow_annotation(&env, "twice", "");
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-t9-a", &a), "start a");
    ok(&env.start("ocivol-t9-b", &b), "start b");
    let plain = env.runtime(&["delete", "ocivol-t9-a"]);
    assert!(
        !plain.status.success(),
        "a running container is not deleted without --force"
    );
    assert_eq!(env.users("twice"), 2, "so nothing is released");
    ok(&env.delete("ocivol-t9-a"), "delete --force");
    let again = env.delete("ocivol-t9-a");
    assert_eq!(
        env.users("twice"),
        1,
        "a repeated delete releases nothing more ({:?})",
        again.status
    );
    assert_eq!(env.overlays("twice"), 1);
    ok(&env.delete("ocivol-t9-b"), "delete b");
    assert_eq!(env.overlays("twice"), 0);
}

#[test]
fn exit_codes_and_signals_pass_through() {
    let Some(env) = Env::new("exit_codes_and_signals_pass_through") else {
        return;
    };
    let b = env.bundle("b", &["sh", "-c", "exit 7"], &[(VOLUMES, "v:/v")]);
    let out = env.runtime(&["run", "--bundle", b.to_str().unwrap(), "ocivol-t10-a"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(env.users("v"), 0);

    // SIGTERM to the wrapper reaches the container through runc; the volume is released.
    // PID 1 of a pid namespace ignores signals it has no handler for: give it one, and say when
    // it has (runc says "running" as soon as sh runs, before sh has read its trap: a SIGTERM
    // then was ignored and the test waited forever).
    let s = env.bundle(
        "s",
        &[
            "sh",
            "-c",
            "trap 'exit 143' TERM; echo > /v/trapped; while true; do sleep 1; done",
        ],
        &[(VOLUMES, "v:/v")],
    );
    let trapped = env.store().data_dir(&env.storage("v")).join("trapped");
    let mut child = env
        .runtime_cmd(&["run", "--bundle", s.to_str().unwrap(), "ocivol-t10-b"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.users("v") == 0 || !env.runc_root.join("ocivol-t10-b").exists() {
        assert!(Instant::now() < deadline, "the container did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    while !trapped.exists() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the container's init did not set its trap");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline + Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the wrapper did not end after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "the container died of SIGTERM: {status:?}"
    );
    assert!(status.signal().is_none());
    assert_eq!(env.users("v"), 0);
}

/// The user record of `volume` for container `id`, as JSON.
fn user_record(env: &Env, volume: &str, id: &str) -> serde_json::Value {
    serde_json::from_slice(&fs::read(env.user_record_path(volume, id)).unwrap()).unwrap()
}

#[test]
fn a_create_records_its_init_from_a_pid_file_without_asking_the_runtime_again() {
    let Some(env) =
        Env::new("a_create_records_its_init_from_a_pid_file_without_asking_the_runtime_again")
    else {
        return;
    };
    // The real runc behind a script that logs every command line it is given.
    let log = env.dir.path().join("runtime.log");
    let script = env.dir.path().join("logging-runc");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec {} \"$@\"\n",
            log.display(),
            common::RUNC
        ),
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.write_config(json!({ "runtime": script, "policy": { "allowed_bases": [env.base] } }));
    let ann = cow_annotation(&env, "pidvol", "");
    let take_log = || {
        let lines: Vec<String> = fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let _ = fs::remove_file(&log);
        lines
    };
    let staging = env.run_root.join("mnt");

    // create and run --detach without a pid file: the wrapper asks for one in the staging
    // directory, reads the init from it, and never runs `state`.
    for (id, how) in [("ocivol-pf-a", "create"), ("ocivol-pf-b", "run --detach")] {
        let b = env.bundle(id, &["sleep", "600"], &[(VOLUMES, &ann)]);
        let out = if how == "create" {
            env.create(id, &b)
        } else {
            env.start(id, &b)
        };
        ok(&out, how);
        let lines = take_log();
        let own = format!("--pid-file {}/{}/pid", staging.display(), env.key(id));
        assert_eq!(
            lines.len(),
            1,
            "{how}: one runtime command, no state: {lines:?}"
        );
        assert!(lines[0].contains(&own), "{how}: {lines:?}");
        assert_eq!(
            user_record(&env, "pidvol", id)["init"]["pid"],
            env.init_pid(id),
            "{how}: the init is recorded"
        );
    }
    assert_eq!(
        fs::read_dir(&staging).unwrap().count(),
        0,
        "the pid files went with the staging"
    );

    // The caller's own pid file: used as it is, nothing added.
    let id = "ocivol-pf-c";
    let b = env.bundle(id, &["sleep", "600"], &[(VOLUMES, &ann)]);
    let pid_file = env.dir.path().join("caller.pid");
    // The container keeps the stdio it is given: a file, not a pipe that would never close.
    let stdio = fs::File::create(env.dir.path().join("caller.out")).unwrap();
    let out = env
        .runtime_cmd(&[
            "create",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--bundle",
            b.to_str().unwrap(),
            id,
        ])
        .stdout(stdio.try_clone().unwrap())
        .stderr(stdio)
        .output()
        .unwrap();
    ok(&out, "create with the caller's pid file");
    let lines = take_log();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].matches("--pid-file").count(), 1, "{lines:?}");
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, env.init_pid(id));
    assert_eq!(user_record(&env, "pidvol", id)["init"]["pid"], pid);
    for id in ["ocivol-pf-a", "ocivol-pf-b", "ocivol-pf-c"] {
        ok(&env.runtime(&["delete", "--force", id]), "delete");
    }
    assert_eq!(env.users("pidvol"), 0);
}
