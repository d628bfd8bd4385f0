//! Crash recovery with real runc and overlayfs, as root: the wrapper killed at chosen points
//! (`OCIVOL_TEST_CRASH`, honoured by debug builds), containers deleted behind ocivol's back,
//! records of an earlier boot or of a reused pid. After the next acquire or `ocivol gc` the
//! count of users is what is really in use and no overlay is left without a user.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
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
    // config.json was exchanged with the new one, and the old one, now under a temporary name
    // in the bundle, was to be removed after the runtime had started (src/durable.rs).
    let old_spec = temp_files(&a);
    assert_eq!(old_spec.len(), 1, "{old_spec:?}");
    assert_eq!(
        gc(&env, &[]),
        format!(
            "released volume shared from container ocivol-cr5-a: the runtime does not know \
             container ocivol-cr5-a (process {wrapper} that took the volume is dead)\n\
             unmounted the overlay of volume shared: it has no user\n\
             removed the staged mounts of {}: the process that made them is dead\n\
             removed {}: a write that was cut short left it\n",
            env.key("ocivol-cr5-a"),
            a.join(&old_spec[0]).display()
        )
    );
    assert_eq!(temp_files(&a), Vec::<String>::new());
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
    // Nothing of the container's to collect, and nothing in the trash: the overlay's own state
    // in the work directory, empty after the clean unmount of a's, was removed in place.
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

// States found by killing at random moments (tests/chaos.rs, `make chaos`), each made here at the
// moment the random kill revealed.

/// The one volume directory under `ROOT/volumes` besides the named ones given.
fn anonymous_volume(env: &Env, named: &[&str]) -> String {
    let named: Vec<String> = named.iter().map(|n| env.storage(n)).collect();
    let mut found: Vec<String> = fs::read_dir(env.root.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !named.contains(n))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

/// The temporary files (`.ocivol-*`) in a directory.
fn temp_files(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".ocivol-"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Whether a process whose command line names `needle` still runs (a zombie does not).
fn process_naming(needle: &str) -> bool {
    fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            return false;
        };
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains(needle)
            && ocivol::process::start_time(pid).is_some()
    })
}

#[test]
fn a_create_killed_while_runc_creates_leaves_a_half_created_state_that_gc_releases() {
    let Some(env) =
        Env::new("a_create_killed_while_runc_creates_leaves_a_half_created_state_that_gc_releases")
    else {
        return;
    };
    let ann = cow(&env, "shared", "");
    let id = "ocivol-cr9-a";
    // runc runs createRuntime hooks before it writes its state.json: a hook that waits holds
    // runc in that window, where the random kill found it.
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let hook = env.dir.path().join("hold.sh");
    let held = env.dir.path().join("held");
    fs::write(
        &hook,
        format!("#!/bin/sh\necho $$ > {}\nexec sleep 600\n", held.display()),
    )
    .unwrap();
    fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = a.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    spec["hooks"] = serde_json::json!({ "createRuntime": [{ "path": hook }] });
    fs::write(&config, spec.to_string()).unwrap();

    let log = fs::File::create(env.dir.path().join("a.out")).unwrap();
    let mut wrapper = env
        .runtime_cmd(&strs(&create_args(&a, id)))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_until("runc runs the createRuntime hook", || {
        fs::read_to_string(&held).is_ok_and(|t| t.ends_with('\n'))
    });
    let hook_pid: i32 = fs::read_to_string(&held).unwrap().trim().parse().unwrap();
    let state = env.runc_root.join(id);
    assert!(state.join("exec.fifo").exists() && !state.join("state.json").exists());
    wrapper.kill().unwrap();
    let wrapper_pid = wrapper.id();
    assert_eq!(wrapper.wait().unwrap().signal(), Some(9));
    // runc dies with the wrapper (PR_SET_PDEATHSIG); its init and the hook's sleep with it.
    let runc_root = env.runc_root.display().to_string();
    wait_until("runc is gone", || !process_naming(&runc_root));
    // The hook is runc's child and outlives it: it is the test's to stop.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hook_pid),
        nix::sys::signal::Signal::SIGKILL,
    );

    assert!(state.exists(), "runc's half-created state stays");
    let said = plain_runc(&env, &["state", id]);
    assert!(
        text(&said.stderr).contains("container does not exist"),
        "{said:?}"
    );
    assert_eq!(env.users("shared"), 1);
    assert_eq!(env.overlays("shared"), 1);
    let ps = ok(&env.ocivol(&["ps"]), "ps");
    assert!(
        ps.contains(&format!("{id}   ")) && ps.contains("half-created"),
        "{ps}"
    );

    assert_eq!(
        gc(&env, &[]),
        format!(
            "released volume shared from container {id}: the runtime has only a half-created \
             state for container {id} that will never be finished (process {wrapper_pid} that \
             took the volume is dead)\n\
             unmounted the overlay of volume shared: it has no user\n\
             removed the staged mounts of {}: the process that made them is dead\n",
            env.key(id)
        )
    );
    assert_eq!(env.users("shared"), 0);
    assert_eq!(env.overlays("shared"), 0);
    assert_eq!(gc(&env, &[]), "nothing to collect\n");

    // runc refuses the ID while its directory is there; the wrapper removes a state its own
    // dead create left, and creates the container.
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start(id, &b), "start again");
    assert_eq!(env.runc_state(id).unwrap()["status"], "running");
    assert_eq!(env.users("shared"), 1);
    ok(&env.exec(id, "cat /data/file.txt"), "reads its volume");
    ok(&env.delete(id), "delete");
    assert_eq!(env.users("shared"), 0);
    assert_eq!(env.overlays("shared"), 0);
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_user_record_write_cut_short_is_no_user_and_gc_removes_it() {
    let Some(env) = Env::new("a_user_record_write_cut_short_is_no_user_and_gc_removes_it") else {
        return;
    };
    // An anonymous volume whose only user's record was being written: before, its temporary
    // file counted as a user forever and the volume was never removed.
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, "/anon")]);
    crash(
        &env,
        "half-written-user",
        &strs(&create_args(&a, "ocivol-cr10-a")),
    );
    let anon = anonymous_volume(&env, &[]);
    let users = env.run_root.join("volumes").join(&anon).join("users");
    let temps = temp_files(&users);
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert_eq!(env.users(&anon), 0, "a temporary file is no user");
    assert_eq!(
        gc(&env, &[]),
        format!(
            "removed {}: a write that was cut short left it\n\
             removed anonymous volume {anon}: it has no user\n",
            users.join(&temps[0]).display()
        )
    );
    assert!(!env.root.join("volumes").join(&anon).exists());
    assert!(!env.run_root.join("volumes").join(&anon).exists());

    // The first user of a copy-on-write volume: the overlay is mounted, its record half
    // written. The next container's acquire finds no user, so it starts from a fresh overlay.
    let ann = cow(&env, "shared", "");
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, &ann)]);
    crash(
        &env,
        "half-written-user",
        &strs(&create_args(&b, "ocivol-cr10-b")),
    );
    assert_eq!((env.users("shared"), env.overlays("shared")), (0, 1));
    let c = env.bundle("c", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-cr10-c", &c), "start c");
    assert_eq!((env.users("shared"), env.overlays("shared")), (1, 1));
    let users = env.volume_run_dir("shared").join("users");
    let temp = temp_files(&users).remove(0);
    assert_eq!(
        gc(&env, &[]),
        format!(
            "removed {}: a write that was cut short left it\n",
            users
                .join(&temp)
                .display()
                .to_string()
                .replace(&env.storage("shared"), "shared")
        )
    );
    assert!(temp_files(&users).is_empty());
    ok(&env.delete("ocivol-cr10-c"), "delete c");
    assert_eq!((env.users("shared"), env.overlays("shared")), (0, 0));
    assert_eq!(gc(&env, &[]), "nothing to collect\n");
}

#[test]
fn a_volume_created_without_its_definition_and_a_half_written_record_are_removed_by_gc() {
    let Some(env) = Env::new(
        "a_volume_created_without_its_definition_and_a_half_written_record_are_removed_by_gc",
    ) else {
        return;
    };
    // An anonymous volume's creation cut short as its definition is written: a directory with
    // data and no definition, which no container will ever name again.
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, "/anon")]);
    crash(
        &env,
        "half-written-definition",
        &strs(&create_args(&a, "ocivol-cr11-a")),
    );
    let anon = anonymous_volume(&env, &[]);
    let dir = env.root.join("volumes").join(&anon);
    assert!(dir.join("data").is_dir() && !dir.join("volume.json").exists());
    let temp = temp_files(&dir).remove(0);
    assert_eq!(
        gc(&env, &[]),
        format!(
            "removed {}: a write that was cut short left it\n\
             removed {}: volume {anon} has no definition (its creation or removal was cut short)\n",
            dir.join(&temp).display(),
            dir.display()
        )
    );
    assert!(!dir.exists());

    // The container record's write cut short: the volumes were taken, the runtime never ran.
    let ann = cow(&env, "shared", "");
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let wrapper = crash(
        &env,
        "half-written-record",
        &strs(&create_args(&b, "ocivol-cr11-b")),
    );
    let containers = env.root.join("containers");
    let temp = temp_files(&containers).remove(0);
    assert_eq!(env.users("shared"), 1);
    assert_eq!(
        gc(&env, &[]),
        format!(
            "released volume shared from container ocivol-cr11-b: its container was never \
             created (process {wrapper} that took the volume is dead, and there is no container \
             record)\n\
             unmounted the overlay of volume shared: it has no user\n\
             removed {}: a write that was cut short left it\n",
            containers.join(&temp).display()
        )
    );
    assert!(temp_files(&containers).is_empty());
    assert_eq!(gc(&env, &[]), "nothing to collect\n");
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn staged_mounts_whose_removal_was_cut_short_still_name_their_maker_and_gc_removes_them() {
    let Some(env) = Env::new(
        "staged_mounts_whose_removal_was_cut_short_still_name_their_maker_and_gc_removes_them",
    ) else {
        return;
    };
    // The wrapper removes its staged mounts once runc has created the container. Killed half
    // way, it left the owner file removed first and the other mounts with nothing to say
    // whose they were: gc never removed them. The owner file now goes last.
    let ann = format!("{};named:/named", cow(&env, "shared", ""));
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let id = "ocivol-cr12-a";
    crash(
        &env,
        "mid-unstage",
        &["run", "--detach", "--bundle", a.to_str().unwrap(), id],
    );
    assert_eq!(env.runc_state(id).unwrap()["status"], "running");
    let staged = env.run_root.join("mnt").join(env.key(id));
    assert!(staged.join("owner").exists());
    let mounted = env
        .mounts_here()
        .into_iter()
        .filter(|m| Path::new(m).starts_with(&staged))
        .count();
    assert_eq!(mounted, 1, "one of the two staged mounts was detached");
    assert_eq!(
        gc(&env, &[]),
        format!(
            "removed the staged mounts of {}: the process that made them is dead\n",
            env.key(id)
        )
    );
    assert!(!staged.exists());
    // The container is untouched: it keeps its volumes, and reads them.
    assert_eq!((env.users("shared"), env.users("named")), (1, 1));
    assert_eq!(
        ok(&env.exec(id, "cat /data/file.txt && ls /named"), "a reads"),
        "from the base\n"
    );
    ok(&env.delete(id), "delete");
    assert_eq!((env.users("shared"), env.overlays("shared")), (0, 0));
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_runtime_killed_after_it_created_the_container_leaves_the_container_its_volumes() {
    let Some(env) = Env::new(
        "a_runtime_killed_after_it_created_the_container_leaves_the_container_its_volumes",
    ) else {
        return;
    };
    // runc's create writes its state before it returns: killed between the two, it leaves a
    // created container that has the volumes mounted. A "runtime" that runs runc and then
    // SIGKILLs itself stands for it.
    let runtime = env.dir.path().join("runc-killed-after");
    fs::write(
        &runtime,
        format!(
            "#!/bin/sh\ncase \" $* \" in\n*\" create \"*) {r} \"$@\"; kill -9 $$ ;;\n*) exec {r} \"$@\" ;;\nesac\n",
            r = common::RUNC
        ),
    )
    .unwrap();
    fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    env.write_config(serde_json::json!({
        "runtime": runtime.display().to_string(),
        "policy": { "allowed_bases": [env.base] },
    }));

    let ann = cow(&env, "shared", "");
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let id = "ocivol-cr13-a";
    let out = env.create(id, &a);
    assert_eq!(
        out.status.signal(),
        Some(9),
        "the runtime's end is passed on"
    );
    assert_eq!(env.runc_state(id).unwrap()["status"], "created");
    assert_eq!((env.users("shared"), env.overlays("shared")), (1, 1));
    assert_eq!(
        user_record(&env, "shared", id)["init"]["pid"],
        env.init_pid(id),
        "its init is recorded as after a create that succeeded"
    );
    assert_eq!(gc(&env, &[]), "nothing to collect\n");
    ok(&plain_runc(&env, &["start", id]), "start");
    ok(&env.exec(id, "cat /data/file.txt"), "reads its volume");
    ok(&env.delete(id), "delete");
    assert_eq!((env.users("shared"), env.overlays("shared")), (0, 0));
}

#[test]
fn a_start_killed_before_its_deferred_sync_is_healed_by_gc_and_the_next_start() {
    let Some(env) =
        Env::new("a_start_killed_before_its_deferred_sync_is_healed_by_gc_and_the_next_start")
    else {
        return;
    };
    // The record, the new volumes' definitions and config.json are written before the runtime
    // runs and synced while it runs (src/durable.rs): killed there, the wrapper leaves them in
    // place, unsynced, with runc dying with it.
    let ann = format!("{};fresh:/fresh;/anon", cow(&env, "shared", ""));
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let id = "ocivol-cr14-a";
    crash(&env, "before-deferred-sync", &strs(&create_args(&a, id)));
    let runc_root = env.runc_root.display().to_string();
    wait_until("runc is gone", || !process_naming(&runc_root));
    assert!(env.volume_dir("fresh").join("volume.json").exists());
    assert!(
        env.root
            .join("containers")
            .join(format!("{}.json", env.key(id)))
            .exists()
    );
    assert_eq!(env.users("shared"), 1);

    let said = gc(&env, &[]);
    assert!(
        said.contains(&format!("released volume shared from container {id}")),
        "{said}"
    );
    assert_eq!((env.users("shared"), env.overlays("shared")), (0, 0));
    assert_eq!(env.users("fresh"), 0);
    // config.json was replaced by an exchange, and the old file, now under a temporary name, is
    // removed by the flush the wrapper did not reach (src/durable.rs): gc removes it, as any
    // temporary file a dead writer left, in the bundle of each record it knows.
    assert_eq!(temp_files(&a), Vec::<String>::new(), "{said}");
    assert_eq!(
        temp_files(&env.root.join("containers")),
        Vec::<String>::new()
    );
    assert_eq!(gc(&env, &[]), "nothing to collect\n");

    // The same ID and bundle start again, and find the volume the killed start created.
    ok(&env.start(id, &a), "start again");
    assert_eq!(env.runc_state(id).unwrap()["status"], "running");
    assert_eq!((env.users("shared"), env.users("fresh")), (1, 1));
    ok(
        &env.exec(id, "cat /data/file.txt && touch /fresh/x /anon/y"),
        "uses its volumes",
    );
    ok(&env.delete(id), "delete");
    assert_eq!((env.users("shared"), env.overlays("shared")), (0, 0));
    assert!(env.volume_dir("fresh").join("data/x").exists());
    assert_eq!(
        fs::read_dir(env.root.join("volumes")).unwrap().count(),
        2,
        "shared and fresh are left; the anonymous volumes of both starts are gone"
    );
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_spec_write_cut_short_leaves_the_bundle_as_it_was_and_the_next_start_cleans_up() {
    let Some(env) =
        Env::new("a_spec_write_cut_short_leaves_the_bundle_as_it_was_and_the_next_start_cleans_up")
    else {
        return;
    };
    let ann = cow(&env, "shared", "");
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    let before = fs::read(a.join("config.json")).unwrap();
    let id = "ocivol-cr15-a";
    crash(&env, "half-written-spec", &strs(&create_args(&a, id)));
    assert_eq!(
        fs::read(a.join("config.json")).unwrap(),
        before,
        "config.json is untouched"
    );
    assert_eq!(
        temp_files(&a).len(),
        1,
        "the temporary file of the cut write"
    );
    assert_eq!(env.users("shared"), 1);
    let said = gc(&env, &[]);
    assert!(
        said.contains(&format!("released volume shared from container {id}")),
        "{said}"
    );
    assert_eq!((env.users("shared"), env.overlays("shared")), (0, 0));

    ok(&env.start(id, &a), "start again");
    assert!(temp_files(&a).is_empty(), "{:?}", temp_files(&a));
    ok(&env.exec(id, "cat /data/file.txt"), "reads its volume");
    ok(&env.delete(id), "delete");
    assert_eq!((env.users("shared"), env.overlays("shared")), (0, 0));
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_delete_killed_after_moving_an_anonymous_volume_into_the_trash_is_emptied_by_gc() {
    let Some(env) = Env::new(
        "a_delete_killed_after_moving_an_anonymous_volume_into_the_trash_is_emptied_by_gc",
    ) else {
        return;
    };
    let trash = env.root.join("trash");
    // A delete that ends normally: the volume leaves the store at once, and the child the
    // wrapper leaves behind removes what it held.
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, "/anon")]);
    ok(&env.start("ocivol-cr14-a", &a), "start a");
    let anon = anonymous_volume(&env, &[]);
    ok(
        &env.exec("ocivol-cr14-a", "echo mine > /anon/mine"),
        "a writes",
    );
    ok(&env.delete("ocivol-cr14-a"), "delete a");
    assert!(!env.root.join("volumes").join(&anon).exists());
    assert!(!env.run_root.join("volumes").join(&anon).exists());
    wait_until("the detached child empties the trash", || {
        fs::read_dir(&trash).map_or(true, |mut d| d.next().is_none())
    });

    // Killed right after the rename: the data is in the trash and nothing names it; gc removes
    // it, and the next container gets a fresh anonymous volume.
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, "/anon")]);
    ok(&env.start("ocivol-cr14-b", &b), "start b");
    let anon = anonymous_volume(&env, &[]);
    ok(
        &env.exec("ocivol-cr14-b", "echo mine > /anon/mine"),
        "b writes",
    );
    crash(&env, "after-trash", &["delete", "--force", "ocivol-cr14-b"]);
    assert!(!env.root.join("volumes").join(&anon).exists());
    assert!(trash.join(&anon).join("data/mine").exists());
    assert_eq!(
        gc(&env, &["--dry-run"]),
        format!(
            "would remove {}: left in the trash by a removal that did not finish\n",
            trash.join(&anon).display()
        )
    );
    assert_eq!(
        gc(&env, &[]),
        format!(
            "removed {}: left in the trash by a removal that did not finish\n",
            trash.join(&anon).display()
        )
    );
    assert!(!trash.join(&anon).exists());
    ok(&env.start("ocivol-cr14-c", &b), "start c");
    assert_eq!(
        ok(&env.exec("ocivol-cr14-c", "ls -A /anon"), "c lists"),
        "",
        "a fresh anonymous volume"
    );
    ok(&env.delete("ocivol-cr14-c"), "delete c");
    assert_eq!(gc(&env, &[]), "nothing to collect\n");
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_delete_killed_after_setting_a_volatile_volumes_changes_aside_forgets_them_and_gc_empties_the_trash()
 {
    let Some(env) = Env::new(
        "a_delete_killed_after_setting_a_volatile_volumes_changes_aside_forgets_them_and_gc_empties_the_trash",
    ) else {
        return;
    };
    let trash = env.root.join("trash");
    let ann = cow(&env, "scratch", ",volatile");
    let in_trash = || -> Vec<PathBuf> {
        fs::read_dir(&trash)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    // A delete that ends normally: the changes leave the volume with renames, and the child
    // the wrapper leaves behind removes them.
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-cr15-a", &a), "start a");
    let upper = env.volume_dir("scratch").join("upper");
    ok(
        &env.exec(
            "ocivol-cr15-a",
            "mkdir -p /data/d/e && echo junk > /data/d/e/junk",
        ),
        "a writes",
    );
    ok(&env.delete("ocivol-cr15-a"), "delete a");
    assert_eq!(fs::read_dir(&upper).unwrap().count(), 0);
    wait_until("the detached child empties the trash", || {
        in_trash().is_empty()
    });

    // Killed right after the changes went into the trash: the volume has forgotten them, and
    // gc removes them; the next container sees the base alone.
    ok(&env.start("ocivol-cr15-b", &a), "start b");
    ok(
        &env.exec(
            "ocivol-cr15-b",
            "mkdir -p /data/d/e && echo junk > /data/d/e/junk",
        ),
        "b writes",
    );
    crash(&env, "after-aside", &["delete", "--force", "ocivol-cr15-b"]);
    assert_eq!(env.overlays("scratch"), 0);
    assert_eq!(fs::read_dir(&upper).unwrap().count(), 0);
    let left = in_trash();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].join("e/junk").exists(), "{left:?}");
    assert_eq!(
        gc(&env, &[]),
        format!(
            "removed {}: left in the trash by a removal that did not finish\n",
            left[0].display()
        )
    );
    assert!(in_trash().is_empty());
    ok(&env.start("ocivol-cr15-c", &a), "start c");
    // Its mount set the overlay's own state aside (the killed delete left it): a few empty
    // directories, which the command removed itself before it returned.
    assert!(in_trash().is_empty(), "{:?}", in_trash());
    assert_eq!(
        ok(&env.exec("ocivol-cr15-c", "ls /data"), "c lists"),
        "file.txt\nsub\n",
        "the base alone"
    );
    ok(&env.delete("ocivol-cr15-c"), "delete c");
    wait_until("the detached child empties the trash", || {
        in_trash().is_empty()
    });
    assert_eq!(gc(&env, &[]), "nothing to collect\n");
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_delete_killed_after_detaching_an_overlay_leaves_no_mount_and_the_next_start_its_base_alone() {
    let Some(env) = Env::new(
        "a_delete_killed_after_detaching_an_overlay_leaves_no_mount_and_the_next_start_its_base_alone",
    ) else {
        return;
    };
    let ann = cow(&env, "scratch", ",volatile");
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-cr16-a", &a), "start a");
    let upper = env.volume_dir("scratch").join("upper");
    ok(
        &env.exec("ocivol-cr16-a", "echo junk > /data/junk"),
        "a writes",
    );
    // Killed with the overlay out of the mount table and its last reference still its own:
    // the kernel closes that as the process dies, and the lock goes with it.
    crash(
        &env,
        "after-detach",
        &["delete", "--force", "ocivol-cr16-a"],
    );
    assert_eq!(env.overlays("scratch"), 0);
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
    assert!(upper.join("junk").exists(), "not set aside yet");
    // Nothing is held: the user is gone, the overlay too. gc discards the changes the killed
    // release left, as it would have (and so would the next mount, before it mounts).
    let storage = env.storage("scratch");
    assert_eq!(
        gc(&env, &["--dry-run"]),
        format!("would discard the changes of volatile volume {storage}: it has no user\n")
    );
    assert!(upper.join("junk").exists(), "a dry run changes nothing");
    assert_eq!(
        gc(&env, &[]),
        format!("discarded the changes of volatile volume {storage}: it has no user\n")
    );
    assert_eq!(fs::read_dir(&upper).unwrap().count(), 0, "changes gone");
    assert_eq!(gc(&env, &[]), "nothing to collect\n");
    ok(&env.start("ocivol-cr16-b", &a), "start b");
    assert_eq!(
        ok(&env.exec("ocivol-cr16-b", "ls /data"), "b lists"),
        "file.txt\nsub\n",
        "the base alone: a volatile volume's changes never reach its next user"
    );
    ok(&env.delete("ocivol-cr16-b"), "delete b");
    assert_eq!(env.overlays("scratch"), 0);
    wait_until("the trash is emptied", || {
        fs::read_dir(env.root.join("trash")).is_ok_and(|d| d.count() == 0)
    });
    assert_eq!(gc(&env, &[]), "nothing to collect\n");
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}
