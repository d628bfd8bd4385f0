//! Crash recovery with real runc and overlayfs, as root: the wrapper killed at chosen points
//! (`OCIVOL_TEST_CRASH`, honoured by debug builds), containers deleted behind ocivol's back,
//! records of an earlier boot or of a reused pid. After the next acquire or `ocivol gc` the
//! count of users is what is really in use and no overlay is left without a user.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, ok, text};

const VOLUMES: &str = "io.ocivol.volumes";

fn cow(env: &Env, name: &str, extra: &str) -> String {
    format!("{name}:/data:base={}{extra}", env.base.display())
}

/// Runs the wrapper with `OCIVOL_TEST_CRASH=point`, its output to a file (a created container
/// keeps the stdio it is given); asserts it was killed there and returns its pid.
fn crash(env: &Env, point: &str, args: &[&str]) -> u32 {
    let log = fs::File::create(env.dir.path().join(format!("crash-{point}.out"))).unwrap();
    let mut child = env
        .runtime_cmd(args)
        .env("OCIVOL_TEST_CRASH", point)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "{point}: killed by SIGKILL: {status:?}"
    );
    let said = fs::read_to_string(env.dir.path().join(format!("crash-{point}.out"))).unwrap();
    assert!(said.contains(&format!("killed at {point}")), "{said}");
    pid
}

fn create_args(bundle: &Path, id: &str) -> Vec<String> {
    vec![
        "create".into(),
        "--bundle".into(),
        bundle.display().to_string(),
        id.into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `ocivol gc [ARGS]`, which must succeed quietly on stderr; its stdout.
/// `ocivol gc`'s output. gc names a volume by its storage name (`shared@HASH`: the volumes
/// here belong to the test's one scope); the lines below name it as the annotation does.
fn gc(env: &Env, args: &[&str]) -> String {
    let out = env.ocivol(&[&["gc"][..], args].concat());
    let stdout = ok(&out, "gc");
    assert_eq!(text(&out.stderr), "");
    ["shared", "kept"]
        .iter()
        .fold(stdout, |s, name| s.replace(&env.storage(name), name))
}

fn plain_runc(env: &Env, args: &[&str]) -> std::process::Output {
    Command::new(common::RUNC)
        .arg("--root")
        .arg(&env.runc_root)
        .args(args)
        .output()
        .unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn user_record(env: &Env, volume: &str, id: &str) -> serde_json::Value {
    serde_json::from_slice(&fs::read(env.user_record_path(volume, id)).unwrap()).unwrap()
}

#[test]
fn crash_between_mount_and_user_record_next_acquire_has_one_overlay_and_the_right_count() {
    let Some(env) = Env::new(
        "crash_between_mount_and_user_record_next_acquire_has_one_overlay_and_the_right_count",
    ) else {
        return;
    };
    let ann = cow(&env, "shared", "");
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    crash(&env, "after-mount", &strs(&create_args(&a, "ocivol-cr1-a")));
    assert_eq!(env.users("shared"), 0);
    assert_eq!(env.overlays("shared"), 1, "the crash left a stray overlay");
    assert!(env.runc_state("ocivol-cr1-a").is_none());

    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-cr1-b", &b), "start b");
    assert_eq!(env.users("shared"), 1);
    assert_eq!(env.overlays("shared"), 1);
    ok(&env.exec("ocivol-cr1-b", "echo b > /data/b"), "b writes");
    ok(&env.delete("ocivol-cr1-b"), "delete b");
    assert_eq!(env.users("shared"), 0);
    assert_eq!(env.overlays("shared"), 0);
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn crash_between_mount_and_user_record_gc_unmounts_the_stray_overlay() {
    let Some(env) = Env::new("crash_between_mount_and_user_record_gc_unmounts_the_stray_overlay")
    else {
        return;
    };
    let ann = cow(&env, "shared", "");
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    crash(&env, "after-mount", &strs(&create_args(&a, "ocivol-cr2-a")));
    assert_eq!(
        gc(&env, &["--dry-run"]),
        "would unmount the overlay of volume shared: it has no user\n"
    );
    assert_eq!(env.overlays("shared"), 1, "a dry run changes nothing");
    assert_eq!(
        gc(&env, &[]),
        "unmounted the overlay of volume shared: it has no user\n"
    );
    assert_eq!(env.overlays("shared"), 0);
    assert_eq!(gc(&env, &[]), "nothing to collect\n");
    // The crash came before the container record was written: there is none to collect.
    assert!(env.store().containers().unwrap().is_empty());
}

#[test]
fn crash_between_user_removed_and_unmount_is_healed_by_acquire_and_by_gc() {
    let Some(env) =
        Env::new("crash_between_user_removed_and_unmount_is_healed_by_acquire_and_by_gc")
    else {
        return;
    };
    // Volatile: the next acquire must not only unmount but also discard the changes.
    let ann = cow(&env, "scratch", ",volatile");
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-cr3-a", &a), "start a");
    ok(
        &env.exec("ocivol-cr3-a", "echo junk > /data/junk"),
        "a writes",
    );
    crash(
        &env,
        "after-user-removed",
        &["delete", "--force", "ocivol-cr3-a"],
    );
    assert_eq!(env.users("scratch"), 0);
    assert_eq!(env.overlays("scratch"), 1, "left mounted, with the changes");
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-cr3-b", &b), "start b");
    assert_eq!(env.users("scratch"), 1);
    assert_eq!(env.overlays("scratch"), 1);
    assert_eq!(
        ok(&env.exec("ocivol-cr3-b", "ls /data"), "b lists"),
        "file.txt\nsub\n",
        "the volatile changes were discarded before the next user"
    );
    ok(&env.delete("ocivol-cr3-b"), "delete b");
    assert_eq!(env.overlays("scratch"), 0);

    // Persistent: gc unmounts; the changes stay.
    let ann = cow(&env, "kept", "");
    let c = env.bundle("c", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-cr3-c", &c), "start c");
    ok(
        &env.exec("ocivol-cr3-c", "echo mine > /data/mine"),
        "c writes",
    );
    crash(
        &env,
        "after-user-removed",
        &["delete", "--force", "ocivol-cr3-c"],
    );
    assert_eq!(
        gc(&env, &[]),
        "unmounted the overlay of volume kept: it has no user\n"
    );
    assert_eq!(env.overlays("kept"), 0);
    assert_eq!(env.users("kept"), 0);
    assert!(env.volume_dir("kept").join("upper/mine").exists());
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn runc_delete_force_behind_ocivols_back_is_released_by_gc() {
    let Some(env) = Env::new("runc_delete_force_behind_ocivols_back_is_released_by_gc") else {
        return;
    };
    let ann = cow(&env, "shared", "");
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-cr4-a", &a), "start a");
    ok(&env.start("ocivol-cr4-b", &b), "start b");
    let a_init = env.init_pid("ocivol-cr4-a");
    assert_eq!(
        user_record(&env, "shared", "ocivol-cr4-a")["init"]["pid"],
        a_init,
        "the wrapper recorded the init pid after create"
    );
    ok(
        &plain_runc(&env, &["delete", "--force", "ocivol-cr4-a"]),
        "runc delete",
    );
    assert_eq!(env.users("shared"), 2, "ocivol was not told");

    let line =
        format!("volume shared from container ocivol-cr4-a: its init process {a_init} is dead\n");
    assert_eq!(gc(&env, &["--dry-run"]), format!("would release {line}"));
    assert_eq!(env.users("shared"), 2, "a dry run changes nothing");
    assert_eq!(gc(&env, &[]), format!("released {line}"));
    assert_eq!(env.users("shared"), 1);
    assert_eq!(env.overlays("shared"), 1, "b still uses it");
    assert_eq!(
        gc(&env, &[]),
        "nothing to collect\n",
        "a's bundle still exists"
    );

    // Once the engine has forgotten it too (its bundle is gone), its record goes.
    fs::remove_dir_all(&a).unwrap();
    assert_eq!(
        gc(&env, &[]),
        format!(
            "removed the record of container ocivol-cr4-a: the runtime does not know it, its \
             bundle {} is gone and it holds no volume\n",
            a.display()
        )
    );
    let ps = ok(&env.ocivol(&["ps"]), "ps");
    assert!(
        !ps.contains("ocivol-cr4-a") && ps.contains("ocivol-cr4-b"),
        "{ps}"
    );
    ok(&env.delete("ocivol-cr4-b"), "delete b");
    assert_eq!(env.users("shared"), 0);
    assert_eq!(env.overlays("shared"), 0);
}

#[test]
fn sigkilled_wrapper_during_create_is_released_once_the_container_is_not_there() {
    let Some(env) =
        Env::new("sigkilled_wrapper_during_create_is_released_once_the_container_is_not_there")
    else {
        return;
    };
    let ann = cow(&env, "shared", "");
    // Killed before the runtime ran: the container will never exist.
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let wrapper = crash(
        &env,
        "before-runtime",
        &strs(&create_args(&a, "ocivol-cr5-a")),
    );
    assert_eq!(env.users("shared"), 1);
    assert_eq!(
        gc(&env, &[]),
        format!(
            "released volume shared from container ocivol-cr5-a: the runtime does not know \
             container ocivol-cr5-a (process {wrapper} that took the volume is dead)\n\
             unmounted the overlay of volume shared: it has no user\n\
             removed the staged mounts of {}: the process that made them is dead\n",
            env.key("ocivol-cr5-a")
        )
    );
    assert_eq!(env.users("shared"), 0);
    assert_eq!(env.overlays("shared"), 0);

    // Killed after the runtime created it, before its init was recorded: the container exists,
    // so its user is kept until the container is gone.
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let wrapper = crash(
        &env,
        "after-create",
        &strs(&create_args(&b, "ocivol-cr5-b")),
    );
    assert_eq!(env.runc_state("ocivol-cr5-b").unwrap()["status"], "created");
    assert!(
        user_record(&env, "shared", "ocivol-cr5-b")
            .get("init")
            .is_none()
    );
    assert_eq!(gc(&env, &[]), "nothing to collect\n");
    assert_eq!(env.users("shared"), 1);
    ok(
        &plain_runc(&env, &["delete", "--force", "ocivol-cr5-b"]),
        "runc delete b",
    );
    assert_eq!(
        gc(&env, &[]),
        format!(
            "released volume shared from container ocivol-cr5-b: the runtime does not know \
             container ocivol-cr5-b (process {wrapper} that took the volume is dead)\n\
             unmounted the overlay of volume shared: it has no user\n"
        )
    );

    // Without gc, the next acquire does the same under the volume's lock.
    let c = env.bundle("c", &["sleep", "600"], &[(VOLUMES, &ann)]);
    crash(
        &env,
        "before-runtime",
        &strs(&create_args(&c, "ocivol-cr5-c")),
    );
    assert_eq!(env.users("shared"), 1);
    let d = env.bundle("d", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-cr5-d", &d), "start d");
    assert_eq!(
        env.users("shared"),
        1,
        "only d: c's crashed create was released"
    );
    assert_eq!(env.overlays("shared"), 1);
    ok(&env.delete("ocivol-cr5-d"), "delete d");
    assert_eq!(env.users("shared"), 0);
    assert_eq!(env.overlays("shared"), 0);
}

/// Removes the cgroups runc made for a container whose state was removed by hand (runc's
/// delete would have): directories named after it anywhere under /sys/fs/cgroup (runc nests them
/// under the cgroup of whoever ran it).
fn remove_cgroups(id: &str) {
    fn walk(dir: &Path, id: &str, depth: usize) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name() == id {
                let _ = fs::remove_dir(e.path());
            } else if depth > 0 {
                walk(&e.path(), id, depth - 1);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), id, 6);
}

#[test]
fn delete_never_called_init_killed_and_state_removed_is_released_by_gc() {
    let Some(env) = Env::new("delete_never_called_init_killed_and_state_removed_is_released_by_gc")
    else {
        return;
    };
    let ann = cow(&env, "shared", "");
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-cr6-a", &a), "start a");
    ok(&env.start("ocivol-cr6-b", &b), "start b");
    let a_init = env.init_pid("ocivol-cr6-a");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a_init),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("a's init is dead", || {
        ocivol::process::start_time(a_init).is_none()
    });
    fs::remove_dir_all(env.runc_root.join("ocivol-cr6-a")).unwrap();
    remove_cgroups("ocivol-cr6-a");
    assert_eq!(env.users("shared"), 2);
    assert_eq!(
        gc(&env, &[]),
        format!(
            "released volume shared from container ocivol-cr6-a: its init process {a_init} is \
             dead\n"
        )
    );
    assert_eq!(env.users("shared"), 1);
    assert_eq!(env.overlays("shared"), 1);
    ok(&env.delete("ocivol-cr6-b"), "delete b");
    assert_eq!(env.users("shared"), 0);
    assert_eq!(env.overlays("shared"), 0);
}

#[test]
fn a_user_record_from_an_earlier_boot_is_dropped() {
    let Some(env) = Env::new("a_user_record_from_an_earlier_boot_is_dropped") else {
        return;
    };
    let ann = cow(&env, "shared", "");
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-cr7-a", &a), "start a");
    let path = env.user_record_path("shared", "ocivol-cr7-a");
    let mut rec = user_record(&env, "shared", "ocivol-cr7-a");
    assert_eq!(rec["boot_id"], ocivol::store::boot_id());
    let earlier = "00000000-0000-4000-8000-000000000000";
    rec["boot_id"] = earlier.into();
    fs::write(&path, rec.to_string()).unwrap();
    assert_eq!(
        gc(&env, &[]),
        format!(
            "released volume shared from container ocivol-cr7-a: its record is from an \
             earlier boot ({earlier})\n\
             unmounted the overlay of volume shared: it has no user\n"
        )
    );
    assert_eq!(env.users("shared"), 0);
    assert_eq!(env.overlays("shared"), 0);
    ok(
        &env.delete("ocivol-cr7-a"),
        "delete a releases nothing more",
    );
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_user_whose_init_pid_was_reused_by_another_process_is_dropped() {
    let Some(env) = Env::new("a_user_whose_init_pid_was_reused_by_another_process_is_dropped")
    else {
        return;
    };
    let ann = cow(&env, "shared", "");
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-cr8-a", &a), "start a");
    ok(&env.start("ocivol-cr8-b", &b), "start b");
    // a's recorded init: its pid (alive) with another start time, as if a had died and its pid
    // had been given to a new process.
    let path = env.user_record_path("shared", "ocivol-cr8-a");
    let mut rec = user_record(&env, "shared", "ocivol-cr8-a");
    let pid = rec["init"]["pid"].as_i64().unwrap();
    assert_eq!(pid, i64::from(env.init_pid("ocivol-cr8-a")));
    rec["init"]["start"] = (rec["init"]["start"].as_u64().unwrap() + 1).into();
    fs::write(&path, rec.to_string()).unwrap();
    assert_eq!(
        gc(&env, &[]),
        format!(
            "released volume shared from container ocivol-cr8-a: its init process {pid} is \
             dead (pid {pid} now belongs to another process)\n"
        )
    );
    assert_eq!(
        env.users("shared"),
        1,
        "b's record, with its true start time, is kept"
    );
    assert_eq!(env.overlays("shared"), 1);
    for id in ["ocivol-cr8-a", "ocivol-cr8-b"] {
        ok(&env.delete(id), "delete");
    }
    assert_eq!(env.users("shared"), 0);
    assert_eq!(env.overlays("shared"), 0);
}
