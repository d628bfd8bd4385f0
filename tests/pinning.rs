//! Issue 11: nothing ocivol has checked is resolved again by name. Each test is an attack that
//! reached the host's `/` (or another tenant's mount) before, run through real runc in both ways
//! in (the wrapper, and runc running ocivol's hooks). A container either gets the directory that
//! was checked or fails with one line, and nothing is left behind.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Env, Way, mountinfo, ok};
use serde_json::json;

const VOLUMES: &str = "io.ocivol.volumes";
const FROM: &str = "io.ocivol.volumes-from";

/// A directory the policy allows binding, holding `d/marker` ("checked").
fn allowed_dir(env: &Env) -> PathBuf {
    let s = env.dir.path().join("allowed");
    fs::create_dir_all(s.join("d")).unwrap();
    fs::write(s.join("d/marker"), "checked\n").unwrap();
    env.write_policy(json!({ "allowed_bases": [env.base], "allowed_bind_sources": [s] }));
    s
}

/// Fails the create, or the container saw what was checked: never the host's `/`.
fn refused_with_one_line(out: &Output, annotation: &str) -> bool {
    if out.status.success() {
        return false;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("ocivol:"))
        .unwrap_or_default();
    assert!(
        line.contains(annotation),
        "one line naming {annotation}: {err}"
    );
    true
}

#[test]
fn volumes_from_never_binds_a_recorded_path_the_source_swapped() {
    let Some(env) = Env::new("volumes_from_never_binds_a_recorded_path_the_source_swapped") else {
        return;
    };
    let s = allowed_dir(&env);
    for way in Way::BOTH {
        let (a, b) = (format!("pin-a-{way:?}"), format!("pin-b-{way:?}"));
        let escape = Path::new("/").join(format!("ocivol-escape-{}", env.key(&b)));
        let ann = format!("{}:/shared;{}/d:/x", s.display(), s.display());
        let bundle = way.bundle(&env, &a, &["sleep", "600"], &[(VOLUMES, &ann)]);
        ok(&way.start(&env, &a, &bundle), "source");
        // Inside the source: its own /x stays, but the recorded path now names the host's /.
        ok(
            &env.exec(&a, "mv /shared/d /shared/d.orig && ln -s / /shared/d"),
            "swap",
        );
        let script = format!("touch /x/{}; cat /x/marker", escape.display());
        let bundle = way.bundle(&env, &b, &["sh", "-c", &script], &[(FROM, &a)]);
        let out = way.run(&env, &b, &bundle);
        let escaped = escape.exists();
        let _ = fs::remove_file(&escape);
        assert!(!escaped, "{way:?}: the copy wrote on the host's /");
        if !refused_with_one_line(&out, FROM) {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "checked\n", "{way:?}");
        }
        ok(&way.delete(&env, &a), "delete source");
        let _ = way.delete(&env, &b);
        fs::remove_file(s.join("d")).unwrap();
        fs::rename(s.join("d.orig"), s.join("d")).unwrap();
    }
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

/// `renameat2(RENAME_EXCHANGE)` of two names, as a tenant with the directory bound would run it.
fn exchange(a: &Path, b: &Path) {
    let (a, b) = (
        CString::new(a.as_os_str().as_bytes()).unwrap(),
        CString::new(b.as_os_str().as_bytes()).unwrap(),
    );
    // SAFETY: two valid C strings. Through the system call: the musl that ocivol builds
    // with has no renameat2() wrapper.
    unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        );
    }
}

/// The swap race of issue 11, case 2: while `d` and a symlink to `/` trade places as fast as the
/// kernel allows, containers asking for `d` are created in a loop, both ways in. `make stress`
/// runs it for 60 s (OCIVOL_RACE_SECONDS).
#[test]
fn a_swap_race_never_gets_a_container_the_hosts_root() {
    let Some(env) = Env::new("a_swap_race_never_gets_a_container_the_hosts_root") else {
        return;
    };
    let s = allowed_dir(&env);
    symlink("/", s.join("l")).unwrap();
    let seconds: u64 = std::env::var("OCIVOL_RACE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, d, l) = (stop.clone(), s.join("d"), s.join("l"));
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                exchange(&d, &l);
                swaps += 1;
            }
            swaps
        })
    };
    let ann = format!("{}/d:/x", s.display());
    let script = "if test -e /x/marker; then echo checked; \
                  elif test -e /x/etc/hostname -o -d /x/proc/1; then echo ESCAPED; \
                  else echo other; fi";
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut got, mut refused, mut escaped, mut other) = (0, 0, 0, 0);
    let mut n = 0;
    while Instant::now() < deadline {
        for way in Way::BOTH {
            n += 1;
            let id = format!("race-{n}");
            let bundle = way.bundle(&env, &id, &["sh", "-c", script], &[(VOLUMES, &ann)]);
            let out = way.run(&env, &id, &bundle);
            let _ = way.delete(&env, &id);
            match String::from_utf8_lossy(&out.stdout).trim() {
                "checked" => got += 1,
                "ESCAPED" => escaped += 1,
                _ if !out.status.success() => refused += 1,
                _ => other += 1,
            }
            fs::remove_dir_all(&bundle).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!(
        "swap race, {seconds} s: {n} containers, {got} got the checked directory, {refused} \
         refused, {escaped} escaped, {other} other; {swaps} swaps"
    );
    assert_eq!(escaped, 0, "a container got the host's /");
    assert_eq!(other, 0, "a container got something else");
    assert!(got > 0, "no container got through: the race proved nothing");
    assert!(
        refused > 0,
        "no create met the symlink: the race proved nothing"
    );
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_stored_base_swapped_for_a_symlink_or_dropped_from_the_policy_is_refused() {
    let Some(env) =
        Env::new("a_stored_base_swapped_for_a_symlink_or_dropped_from_the_policy_is_refused")
    else {
        return;
    };
    let bases = env.dir.path().join("bases");
    fs::create_dir_all(bases.join("v3")).unwrap();
    fs::write(bases.join("v3/data.txt"), "v3\n").unwrap();
    env.write_policy(json!({ "allowed_bases": [bases] }));
    let v3 = bases.join("v3");
    ok(
        &env.ocivol(&[
            "volume",
            "create",
            "--scope",
            "any",
            "ds",
            "--base",
            v3.to_str().unwrap(),
        ]),
        "volume create",
    );
    // A tenant who can write the base's parent puts a symlink to / in its place.
    fs::rename(&v3, bases.join("v3.orig")).unwrap();
    symlink("/", &v3).unwrap();
    for way in Way::BOTH {
        let id = format!("ds-{way:?}");
        let b = way.bundle(
            &env,
            &id,
            &["cat", "/data/etc/shadow"],
            &[(VOLUMES, "ds:/data")],
        );
        let out = way.run(&env, &id, &b);
        let _ = way.delete(&env, &id);
        assert!(refused_with_one_line(&out, VOLUMES), "{way:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("has changed since ocivol resolved it"),
            "{err}"
        );
        assert_eq!(env.users("ds"), 0, "{way:?}");
        assert_eq!(env.overlays("ds"), 0, "{way:?}");
    }
    // Put back, it works again; dropped from the policy, it stops working.
    fs::remove_file(&v3).unwrap();
    fs::rename(bases.join("v3.orig"), &v3).unwrap();
    for (policy, works) in [
        (json!({ "allowed_bases": [bases] }), true),
        (json!({ "allowed_bases": [env.base] }), false),
    ] {
        env.write_policy(policy);
        for way in Way::BOTH {
            let id = format!("ds2-{way:?}-{works}");
            let b = way.bundle(
                &env,
                &id,
                &["cat", "/data/data.txt"],
                &[(VOLUMES, "ds:/data")],
            );
            let out = way.run(&env, &id, &b);
            let _ = way.delete(&env, &id);
            if works {
                assert_eq!(ok(&out, "restored base"), "v3\n");
            } else {
                assert!(refused_with_one_line(&out, VOLUMES), "{way:?}: {out:?}");
                assert!(String::from_utf8_lossy(&out.stderr).contains("allowed_bases"));
            }
            assert_eq!(env.overlays("ds"), 0);
        }
    }
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn hook_mounts_never_propagate_to_the_host_or_other_containers() {
    let Some(env) = Env::new("hook_mounts_never_propagate_to_the_host_or_other_containers") else {
        return;
    };
    // State and run roots on an rshared mount, as under systemd and on every Kubernetes node.
    let dir = env.dir.path();
    ok(
        &Command::new("mount")
            .args(["--bind"])
            .arg(dir)
            .arg(dir)
            .output()
            .unwrap(),
        "bind",
    );
    ok(
        &Command::new("mount")
            .arg("--make-rshared")
            .arg(dir)
            .output()
            .unwrap(),
        "make-rshared",
    );
    let way = Way::Hooks;
    let a = way.bundle(
        &env,
        "prop-a",
        &["sh", "-c", "echo s > /data/secret/s && sleep 600"],
        &[(VOLUMES, "shared:/data;secret:/data/secret")],
    );
    ok(&way.start(&env, "prop-a", &a), "a");
    let b = way.bundle(
        &env,
        "prop-b",
        &["sleep", "600"],
        &[(VOLUMES, "shared:/data")],
    );
    ok(&way.start(&env, "prop-b", &b), "b");
    std::thread::sleep(Duration::from_millis(200));
    let shared_data = env.volume_dir("shared").join("data");
    let leaked: Vec<String> = mountinfo()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| Path::new(p).starts_with(&shared_data))
        .collect();
    assert!(leaked.is_empty(), "on the host: {leaked:?}");
    let seen = env.exec("prop-b", "test -e /data/secret/s");
    assert!(
        !seen.status.success(),
        "prop-b sees prop-a's private volume"
    );
    ok(&way.delete(&env, "prop-a"), "delete a");
    ok(&way.delete(&env, "prop-b"), "delete b");
    for v in ["secret", "shared"] {
        ok(&env.ocivol(&["volume", "rm", v]), "volume rm");
    }
    let _ = Command::new("umount").arg("-l").arg(dir).output();
}

/// A tree `depth` levels deep in `dir`, made as a container would (relative mkdirat: its path
/// is longer than PATH_MAX).
fn deep_tree(dir: &Path, depth: usize) {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::{Mode, mkdirat};
    let open = |at: std::os::fd::BorrowedFd, name: &str| {
        openat(
            at,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap()
    };
    let mut cur = openat(
        nix::fcntl::AT_FDCWD,
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    for _ in 0..depth {
        mkdirat(&cur, "t", Mode::from_bits_truncate(0o755)).unwrap();
        cur = open(cur.as_fd(), "t");
    }
}

/// `sh -c 'ulimit -n 256; exec ocivol …'`.
fn with_few_fds(cmd: &Command) -> Output {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect();
    Command::new("sh")
        .args(["-c", &format!("ulimit -n 256 && exec {}", quoted.join(" "))])
        .output()
        .unwrap()
}

#[test]
fn a_tree_deeper_than_the_fd_limit_is_deleted_reset_and_removed() {
    let Some(env) = Env::new("a_tree_deeper_than_the_fd_limit_is_deleted_reset_and_removed") else {
        return;
    };
    let base = env.base.display().to_string();
    let ann = format!("vol:/v:base={base},volatile;cow:/c:base={base};plain:/p");
    let b = env.bundle("deep", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("deep", &b), "start");
    for (v, dir) in [("vol", "upper"), ("cow", "upper"), ("plain", "data")] {
        deep_tree(&env.volume_dir(v).join(dir), 5000);
    }
    // The last user leaves: the volatile volume's changes go.
    ok(
        &with_few_fds(&env.runtime_cmd(&["delete", "--force", "deep"])),
        "delete",
    );
    assert_eq!(
        fs::read_dir(env.volume_dir("vol").join("upper"))
            .unwrap()
            .count(),
        0
    );
    ok(
        &with_few_fds(&env.ocivol_cmd(&["volume", "reset", "cow"])),
        "reset",
    );
    assert_eq!(
        fs::read_dir(env.volume_dir("cow").join("upper"))
            .unwrap()
            .count(),
        0
    );
    for v in ["plain", "cow", "vol"] {
        let dir = env.volume_dir(v);
        ok(&with_few_fds(&env.ocivol_cmd(&["volume", "rm", v])), "rm");
        assert!(!dir.exists(), "{v}");
    }
    // And the volatile volume mounts again for the next user.
    let b = env.bundle("again", &["true"], &[(VOLUMES, &ann)]);
    ok(
        &env.runtime(&["run", "--bundle", b.to_str().unwrap(), "again"]),
        "again",
    );
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn options_the_policy_forces_on_a_path_cannot_be_lifted_by_an_annotation() {
    let Some(env) =
        Env::new("options_the_policy_forces_on_a_path_cannot_be_lifted_by_an_annotation")
    else {
        return;
    };
    let s = env.dir.path().join("shared");
    fs::create_dir_all(s.join("x")).unwrap();
    env.write_policy(json!({
        "allowed_bind_sources": [{ "path": s, "options": ["readonly", "nosuid"] }],
    }));
    for way in Way::BOTH {
        let id = format!("ro-{way:?}");
        let ann = format!("{}/x:/x:rw", s.display());
        let b = way.bundle(
            &env,
            &id,
            &[
                "sh",
                "-c",
                "touch /x/f 2>/dev/null && echo wrote || echo refused",
            ],
            &[(VOLUMES, &ann)],
        );
        let out = way.run(&env, &id, &b);
        let _ = way.delete(&env, &id);
        assert_eq!(ok(&out, "forced ro"), "refused\n", "{way:?}");
        assert!(!s.join("x/f").exists());
    }
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}
