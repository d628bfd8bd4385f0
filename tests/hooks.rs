//! Hook mode with real runtimes: runc with hooks in config.json, podman with the project's
//! hooks.d files, crun where it can run here.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Env, OCIVOL, RUNC, add_hooks, ok, tree_snapshot};
use serde_json::{Value, json};

const VOLUMES: &str = "io.ocivol.volumes";

/// The env a hook gets: where this test's ocivol state and config are.
fn runc(env: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(RUNC);
    c.arg("--root")
        .arg(&env.runc_root)
        .args(args)
        .stdin(Stdio::null());
    c
}

/// Starts a detached container with plain runc; stdio to a file.
fn runc_start(env: &Env, id: &str, bundle: &Path) -> Output {
    let log = fs::File::create(env.dir.path().join(format!("{id}.out"))).unwrap();
    runc(
        env,
        &["run", "--detach", "--bundle", bundle.to_str().unwrap(), id],
    )
    .stdout(log.try_clone().unwrap())
    .stderr(log)
    .output()
    .unwrap()
}

fn runc_delete(env: &Env, id: &str) {
    ok(
        &runc(env, &["delete", "--force", id]).output().unwrap(),
        "runc delete",
    );
}

#[test]
fn runc_hooks_let_two_containers_share_a_copy_on_write_volume() {
    let Some(env) = Env::new("runc_hooks_let_two_containers_share_a_copy_on_write_volume") else {
        return;
    };
    let before = tree_snapshot(&env.base);
    let ann = format!("shared:/data:base={};notes:/notes:ro", env.base.display());
    for id in ["hk-a", "hk-b"] {
        let b = env.bundle(id, &["sleep", "600"], &[(VOLUMES, &ann)]);
        add_hooks(&b, &env.hook_env());
        ok(
            &runc_start(&env, id, &b),
            &format!("start {id}: {}", env.container_output(id)),
        );
    }
    assert_eq!((env.users("shared"), env.overlays("shared")), (2, 1));
    ok(&env.exec("hk-a", "echo from-a > /data/a.txt"), "a writes");
    assert_eq!(
        ok(
            &env.exec("hk-b", "cat /data/a.txt /data/file.txt"),
            "b reads"
        ),
        "from-a\nfrom the base\n"
    );
    ok(&env.exec("hk-b", "echo from-b > /data/b.txt"), "b writes");
    assert_eq!(
        ok(&env.exec("hk-a", "cat /data/b.txt"), "a reads"),
        "from-b\n"
    );
    let w = env.exec("hk-a", "echo x > /notes/x");
    assert!(
        String::from_utf8_lossy(&w.stderr).contains("Read-only file system"),
        "ro applies to the attached mount"
    );
    runc_delete(&env, "hk-a");
    assert_eq!((env.users("shared"), env.overlays("shared")), (1, 1));
    runc_delete(&env, "hk-b");
    assert_eq!((env.users("shared"), env.overlays("shared")), (0, 0));
    assert_eq!(env.users("notes"), 0);
    assert_eq!(tree_snapshot(&env.base), before, "the base never changes");
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_hook_container_that_died_without_its_poststop_is_released_by_gc() {
    let Some(env) = Env::new("a_hook_container_that_died_without_its_poststop_is_released_by_gc")
    else {
        return;
    };
    let ann = format!("shared:/data:base={}", env.base.display());
    for id in ["hk-gc-a", "hk-gc-b"] {
        let b = env.bundle(id, &["sleep", "600"], &[(VOLUMES, &ann)]);
        add_hooks(&b, &env.hook_env());
        ok(&runc_start(&env, id, &b), "start");
    }
    assert_eq!(ok(&env.ocivol(&["gc"]), "gc"), "nothing to collect\n");
    assert_eq!(env.users("shared"), 2);
    // a's init dies and its runtime state is removed by hand: no poststop ever runs.
    let init = env.init_pid("hk-gc-a");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ocivol::process::start_time(init).is_some() {
        assert!(std::time::Instant::now() < deadline, "a's init did not die");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let cgroups = fs::read_to_string(format!("/proc/{}/cgroup", env.init_pid("hk-gc-b")));
    fs::remove_dir_all(env.runc_root.join("hk-gc-a")).unwrap();
    // runc's delete would have removed a's cgroups: they sit beside b's.
    for line in cgroups.unwrap_or_default().lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let dir = if ctrl.is_empty() {
            "unified".to_string()
        } else {
            ctrl.replace("name=", "")
        };
        let a = Path::new("/sys/fs/cgroup")
            .join(dir)
            .join(path.trim_start_matches('/'))
            .with_file_name("hk-gc-a");
        let _ = fs::remove_dir(a);
    }
    assert_eq!(
        ok(&env.ocivol(&["gc"]), "gc"),
        format!(
            "released volume {} from container hk-gc-a: its init process {init} is dead\n",
            env.storage("shared")
        )
    );
    assert_eq!((env.users("shared"), env.overlays("shared")), (1, 1));
    runc_delete(&env, "hk-gc-b");
    assert_eq!((env.users("shared"), env.overlays("shared")), (0, 0));
}

/// A rootfs of its own with symlinks that point out of it.
fn hostile_rootfs(env: &Env) -> PathBuf {
    let rootfs = env.dir.path().join("hostile-rootfs");
    common::make_rootfs(&rootfs);
    symlink("/", rootfs.join("to-root")).unwrap();
    symlink("../../../../../../..", rootfs.join("up")).unwrap();
    symlink("/etc", rootfs.join("etc-link")).unwrap();
    symlink("/proc", rootfs.join("proc-link")).unwrap();
    symlink("../../../../nonexistent-dir", rootfs.join("dangling")).unwrap();
    rootfs
}

fn hostile_bundle(env: &Env, rootfs: &Path, id: &str, ann: &str) -> PathBuf {
    let b = env.bundle(id, &["true"], &[(VOLUMES, ann)]);
    let path = b.join("config.json");
    let mut spec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    spec["root"]["path"] = json!(rootfs);
    fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    add_hooks(&b, &env.hook_env());
    b
}

#[test]
fn symlinks_in_the_image_never_lead_a_mount_out_of_the_rootfs() {
    let Some(env) = Env::new("symlinks_in_the_image_never_lead_a_mount_out_of_the_rootfs") else {
        return;
    };
    let rootfs = hostile_rootfs(&env);
    // Mounts outside every test's directory (tests running beside this one mount in theirs).
    let host_mounts = || -> Vec<String> {
        let tmp = std::env::temp_dir().join("ocivol-");
        let tmp = tmp.to_string_lossy().into_owned();
        common::mountinfo()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| !p.starts_with(&tmp))
            .collect()
    };
    let before = host_mounts();
    // Refused: the target is the container's root, or /proc, or a dangling link.
    for (i, (dest, reason)) in [
        ("/to-root", "resolves to the container's root itself"),
        ("/up", "resolves to the container's root itself"),
        (
            "/proc-link/x",
            "resolves to /proc, which the runtime manages",
        ),
        ("/dangling/x", "symlink to nowhere"),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("hk-sym-{i}");
        let b = hostile_bundle(&env, &rootfs, &id, &format!("v{i}:{dest}"));
        let out = runc(&env, &["run", "--bundle", b.to_str().unwrap(), &id])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{dest}: the container must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(reason),
            "{dest}: expected {reason:?} in {stderr}"
        );
        assert_eq!(env.users(&format!("v{i}")), 0, "{dest}: no user left");
        assert!(
            !Path::new("/nonexistent-dir").exists(),
            "nothing created on the host"
        );
    }
    // Followed inside the rootfs: /etc-link/app lands in ROOTFS/etc/app, never in the host's /etc.
    let b = hostile_bundle(
        &env,
        &rootfs,
        "hk-sym-ok",
        "inside:/etc-link/ocivol-test-app",
    );
    let out = runc(&env, &["run", "--bundle", b.to_str().unwrap(), "hk-sym-ok"])
        .output()
        .unwrap();
    ok(
        &out,
        "a symlink inside the image is followed inside the rootfs",
    );
    assert!(rootfs.join("etc/ocivol-test-app").is_dir());
    assert!(
        !Path::new("/etc/ocivol-test-app").exists(),
        "the host's /etc is untouched"
    );
    assert_eq!(host_mounts(), before, "nothing mounted on the host");
    assert_eq!(env.users("inside"), 0);
}

#[test]
fn targets_in_proc_sys_and_dev_are_refused() {
    let Some(env) = Env::new("targets_in_proc_sys_and_dev_are_refused") else {
        return;
    };
    for (i, dest) in ["/proc/x", "/sys/kernel", "/dev/shm/x"].iter().enumerate() {
        let id = format!("hk-psd-{i}");
        let b = env.bundle(&id, &["true"], &[(VOLUMES, &format!("v:{dest}"))]);
        add_hooks(&b, &env.hook_env());
        let out = runc(&env, &["run", "--bundle", b.to_str().unwrap(), &id])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{dest} must be refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("which the runtime manages"),
            "{dest}: {stderr}"
        );
        assert!(
            !env.volume_dir("v").exists(),
            "{dest}: refused before anything is made"
        );
    }
}

#[test]
fn ld_preload_and_path_in_the_hook_env_have_no_effect() {
    let Some(env) = Env::new("ld_preload_and_path_in_the_hook_env_have_no_effect") else {
        return;
    };
    // A library whose constructor leaves a mark, and programs of the container's that would too.
    let marker = env.dir.path().join("ran");
    let src = env.dir.path().join("evil.c");
    fs::write(
        &src,
        format!(
            "#include <stdio.h>\n__attribute__((constructor)) static void evil(void) {{ FILE *f = fopen(\"{}\", \"a\"); if (f) {{ fputs(\"preload\\n\", f); fclose(f); }} }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let evil = env.rootfs.join("evil.so");
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&evil)
        .arg(&src)
        .output();
    let Ok(cc) = cc else {
        panic!("a C compiler (cc) is needed to build the LD_PRELOAD library");
    };
    ok(&cc, "cc evil.so");
    for tool in ["mount", "umount", "runc", "sh", "ocivol"] {
        let p = env.dir.path().join("evil-bin").join(tool);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(
            &p,
            format!("#!/bin/sh\necho {tool} >> {}\n", marker.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut vars = env.hook_env();
    vars.push(format!("LD_PRELOAD={}", evil.display()));
    vars.push(format!(
        "PATH={}:{}/bin",
        env.dir.path().join("evil-bin").display(),
        env.rootfs.display()
    ));
    let ann = format!("p:/data:base={}", env.base.display());
    let b = env.bundle("hk-env", &["cat", "/data/file.txt"], &[(VOLUMES, &ann)]);
    add_hooks(&b, &vars);
    let out = runc(&env, &["run", "--bundle", b.to_str().unwrap(), "hk-env"])
        .output()
        .unwrap();
    assert_eq!(
        ok(&out, "run with a hostile hook env"),
        "from the base\n",
        "the volume is there as without"
    );
    assert!(
        !marker.exists(),
        "nothing of the hook env ran: {:?}",
        fs::read_to_string(&marker)
    );
    assert_eq!((env.users("p"), env.overlays("p")), (0, 0));
}

#[test]
fn a_failing_hook_leaves_nothing_and_poststop_twice_is_harmless() {
    let Some(env) = Env::new("a_failing_hook_leaves_nothing_and_poststop_twice_is_harmless") else {
        return;
    };
    let rootfs = hostile_rootfs(&env);
    // The copy-on-write volume is prepared, then the second target fails: all is given back.
    let ann = format!("fails:/data:base={};/anon;v2:/to-root", env.base.display());
    let b = hostile_bundle(&env, &rootfs, "hk-fail", &ann);
    let out = runc(&env, &["run", "--bundle", b.to_str().unwrap(), "hk-fail"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!((env.users("fails"), env.overlays("fails")), (0, 0));
    let left: Vec<_> = fs::read_dir(env.root.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let kept = [env.storage("fails"), env.storage("v2")];
    assert!(
        left.iter().all(|n| kept.iter().any(|k| n == k.as_str())),
        "the anonymous volume is gone: {left:?}"
    );
    assert_eq!(
        fs::read_dir(env.root.join("containers")).unwrap().count(),
        0,
        "no record"
    );
    assert!(env.mounts_here().is_empty());

    // poststop of a container that ran, twice.
    let ok_ann = format!("twice:/data:base={}", env.base.display());
    let b = env.bundle("hk-twice", &["true"], &[(VOLUMES, &ok_ann)]);
    add_hooks(&b, &env.hook_env());
    ok(
        &runc(&env, &["run", "--bundle", b.to_str().unwrap(), "hk-twice"])
            .output()
            .unwrap(),
        "run",
    );
    let state =
        json!({ "ociVersion": "1.0.2", "id": "hk-twice", "status": "stopped", "bundle": b });
    for _ in 0..2 {
        let mut child = Command::new(OCIVOL)
            .args(["hook", "poststop"])
            .envs(env.hook_env().iter().map(|kv| kv.split_once('=').unwrap()))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(state.to_string().as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "poststop again is harmless"
        );
    }
    assert_eq!((env.users("twice"), env.overlays("twice")), (0, 0));
}

/// podman with its own storage, run root and hooks dir (flags from MACHINE.md).
struct Podman<'a> {
    env: &'a Env,
    hooks: PathBuf,
}

impl<'a> Podman<'a> {
    /// A hooks dir holding the project's hooks.d file `file`, pointed at this build and state.
    fn new(env: &'a Env, file: &str) -> Podman<'a> {
        Podman::with_env(env, file, &[])
    }

    /// [`Podman::new`], with `extra` added to the hook's environment.
    fn with_env(env: &'a Env, file: &str, extra: &[String]) -> Podman<'a> {
        let hooks = env.dir.path().join("podman-hooks");
        fs::create_dir_all(&hooks).unwrap();
        let project = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("hooks.d")
            .join(file);
        let mut hook: Value = serde_json::from_slice(&fs::read(project).unwrap()).unwrap();
        hook["hook"]["path"] = json!(OCIVOL);
        hook["hook"]["env"] = json!([env.hook_env(), extra.to_vec()].concat());
        fs::write(hooks.join("ocivol.json"), hook.to_string()).unwrap();
        Podman { env, hooks }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.env.podman_cmd();
        c.args(["--runtime", RUNC])
            .arg("--hooks-dir")
            .arg(&self.hooks)
            .args(args);
        c
    }

    fn run(&self, name: &str, ann: &str, cmd: &[&str]) -> Output {
        let mut c = self.cmd(&["run", "-d", "--name", name, "--network=none"]);
        c.args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .arg("--annotation")
        .arg(format!("{VOLUMES}={ann}"))
        .arg("--rootfs")
        .arg(&self.env.rootfs)
        .args(cmd);
        c.output().unwrap()
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        let _ = self
            .cmd(&["rm", "--all", "--force", "--time", "0"])
            .output();
    }
}

fn podman_gives_volumes_and_rm_releases(test: &str, file: &str) {
    let Some(env) = Env::new(test) else {
        return;
    };
    let podman = Podman::new(&env, file);
    let ann = format!("pcow:/data:base={};pnamed:/named", env.base.display());
    let out = podman.run("pm1", &ann, &["sleep", "600"]);
    ok(&out, "podman run");
    assert_eq!(
        (env.users("pcow"), env.overlays("pcow"), env.users("pnamed")),
        (1, 1, 1)
    );
    // gc must not take the hook's running container for a gone one: podman's runc keeps its
    // state under a root ocivol does not know, and the hook process ended long ago.
    assert_eq!(ok(&env.ocivol(&["gc"]), "gc"), "nothing to collect\n");
    assert_eq!(
        (env.users("pcow"), env.overlays("pcow"), env.users("pnamed")),
        (1, 1, 1)
    );
    let seen = ok(
        &podman
            .cmd(&[
                "exec",
                "pm1",
                "sh",
                "-c",
                "cat /data/file.txt && echo n > /named/n && echo c > /data/c",
            ])
            .output()
            .unwrap(),
        "podman exec",
    );
    assert_eq!(seen, "from the base\n");
    ok(
        &podman
            .cmd(&["rm", "--force", "--time", "0", "pm1"])
            .output()
            .unwrap(),
        "podman rm",
    );
    assert_eq!(
        (env.users("pcow"), env.overlays("pcow"), env.users("pnamed")),
        (0, 0, 0)
    );
    assert_eq!(
        fs::read_to_string(env.store().data_dir(&env.storage("pnamed")).join("n")).unwrap(),
        "n\n"
    );
    assert!(!env.base.join("c").exists());
}

#[test]
fn podman_with_the_hooks_file_gives_volumes_and_rm_releases() {
    podman_gives_volumes_and_rm_releases(
        "podman_with_the_hooks_file_gives_volumes_and_rm_releases",
        "ocivol.json",
    );
}

#[test]
fn podman_with_the_precreate_file_gives_volumes_and_rm_releases() {
    podman_gives_volumes_and_rm_releases(
        "podman_with_the_precreate_file_gives_volumes_and_rm_releases",
        "podman/ocivol-precreate.json",
    );
}

/// podman's precreate hook killed at each point where it holds something (an overlay mounted,
/// a user recorded, its staged mounts made and its output given but nothing synced): podman's
/// start fails, and `ocivol gc` gives back everything the hook took; the same container then
/// starts with a hook that is not killed.
#[test]
fn a_precreate_hook_killed_anywhere_leaves_only_what_gc_frees() {
    let Some(env) = Env::new("a_precreate_hook_killed_anywhere_leaves_only_what_gc_frees") else {
        return;
    };
    let ann = format!("kcow:/data:base={};knamed:/named", env.base.display());
    for point in ["after-mount", "after-user-added", "before-deferred-sync"] {
        let killed = Podman::with_env(
            &env,
            "podman/ocivol-precreate.json",
            &[format!("OCIVOL_TEST_CRASH={point}")],
        );
        let out = killed.run("pk", &ann, &["sleep", "600"]);
        assert!(!out.status.success(), "{point}: podman run succeeded");
        drop(killed);
        let said = ok(&env.ocivol(&["gc"]), "gc");
        assert_ne!(said, "nothing to collect\n", "{point}");
        assert_eq!(
            (env.users("kcow"), env.overlays("kcow"), env.users("knamed")),
            (0, 0, 0),
            "{point}: gc said {said}"
        );
        assert_eq!(
            ok(&env.ocivol(&["gc"]), "gc again"),
            "nothing to collect\n",
            "{point}"
        );
        let podman = Podman::new(&env, "podman/ocivol-precreate.json");
        ok(&podman.run("pk", &ann, &["sleep", "600"]), "podman run");
        assert_eq!(
            (env.users("kcow"), env.overlays("kcow"), env.users("knamed")),
            (1, 1, 1),
            "{point}"
        );
        ok(
            &podman
                .cmd(&["rm", "--force", "--time", "0", "pk"])
                .output()
                .unwrap(),
            "podman rm",
        );
        assert_eq!((env.users("kcow"), env.overlays("kcow")), (0, 0), "{point}");
    }
}

#[test]
fn hooks_d_files_follow_the_1_0_0_schema() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks.d");
    let standard = [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ];
    for (file, allowed) in [
        ("ocivol.json", &standard[..]),
        (
            "podman/ocivol-precreate.json",
            &["precreate", "poststop"][..],
        ),
    ] {
        let hook: Value = serde_json::from_slice(&fs::read(dir.join(file)).unwrap()).unwrap();
        assert_eq!(hook["version"], "1.0.0", "{file}");
        let path = hook["hook"]["path"].as_str().unwrap();
        assert!(path.starts_with('/'), "{file}: hook.path is absolute");
        assert_eq!(
            hook["hook"]["args"][0], "ocivol",
            "{file}: args[0] is the program name"
        );
        let when = hook["when"]["annotations"].as_object().unwrap();
        assert!(
            !when.is_empty(),
            "{file}: a hook that matches every container would be wrong"
        );
        for (k, v) in when {
            let key = regex::Regex::new(k).unwrap_or_else(|e| panic!("{file}: {k}: {e}"));
            regex::Regex::new(v.as_str().unwrap()).unwrap();
            // Every key of ocivol's, the per-container ones too; a misspelt one as well, so that
            // the hook refuses it rather than the container starting without its volumes.
            for ours in [
                "io.ocivol.volumes",
                "io.ocivol.volumes-from",
                "io.ocivol.volumes/app",
                "io.ocivol.volumes-from/app",
                "io.ocivol.volume",
            ] {
                assert!(key.is_match(ours), "{file}: {ours}");
            }
            assert!(!key.is_match("io.ocivolx") && !key.is_match("x.io.ocivol.volumes"));
        }
        let stages: Vec<&str> = hook["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(!stages.is_empty());
        for s in &stages {
            assert!(
                allowed.contains(s),
                "{file}: stage {s} (CRI-O rejects unknown stages)"
            );
        }
        let unknown: Vec<_> = hook
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !["version", "hook", "when", "stages"].contains(&k.as_str()))
            .collect();
        assert!(unknown.is_empty(), "{file}: unknown keys {unknown:?}");
    }
}

#[test]
fn crun_hooks_share_a_copy_on_write_volume_where_crun_runs() {
    let Some(env) = Env::new("crun_hooks_share_a_copy_on_write_volume_where_crun_runs") else {
        return;
    };
    if !Path::new("/usr/bin/crun").exists() {
        panic!("crun must be installed (make test installs it)");
    }
    // crun refuses this host's hybrid cgroups; MACHINE.md: it runs in a private mount namespace
    // with the unified hierarchy unmounted. Everything below runs inside that namespace, so its
    // mounts die with it.
    let ann = format!("crun:/data:base={}", env.base.display());
    let mut ids = Vec::new();
    for id in ["hk-crun-a", "hk-crun-b"] {
        let b = env.bundle(id, &["sleep", "600"], &[(VOLUMES, &ann)]);
        add_hooks(&b, &env.hook_env());
        ids.push((id, b));
    }
    let croot = env.dir.path().join("crun");
    let crun = format!("crun --root {}", croot.display());
    let script = format!(
        "set -e
         if [ -d /sys/fs/cgroup/unified ]; then umount /sys/fs/cgroup/unified; fi
         {crun} run -d --bundle {ba} hk-crun-a </dev/null >/dev/null 2>&1
         {crun} run -d --bundle {bb} hk-crun-b </dev/null >/dev/null 2>&1
         echo users=$(ls {users} | wc -l) overlays=$(grep -c ' {merged} ' /proc/self/mountinfo)
         {crun} exec hk-crun-a sh -c 'echo from-a > /data/a.txt'
         {crun} exec hk-crun-b sh -c 'cat /data/a.txt; echo from-b > /data/b.txt'
         {crun} exec hk-crun-a cat /data/b.txt
         {crun} delete --force hk-crun-a
         {crun} delete --force hk-crun-b
         echo users=$(ls {users} | wc -l) overlays=$(grep -c ' {merged} ' /proc/self/mountinfo || true)",
        ba = ids[0].1.display(),
        bb = ids[1].1.display(),
        // The volume of the containers' scope: crun@HASH (a glob, a regular expression).
        users = env.run_root.join("volumes/crun@*/users").display(),
        merged = env.run_root.join("volumes/crun@[0-9a-f]*/merged").display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Only crun's own refusal of this host is a skip; any other failure fails the test.
    if !out.status.success() && stderr.contains("cgroups in hybrid mode not supported") {
        eprintln!(
            "crun_hooks_share_a_copy_on_write_volume_where_crun_runs: skipped: crun cannot run here: {stderr}"
        );
        let _ = Command::new("unshare")
            .args([
                "-m",
                "sh",
                "-c",
                &format!("{crun} delete --force hk-crun-a; {crun} delete --force hk-crun-b"),
            ])
            .output();
        return;
    }
    assert!(
        out.status.success(),
        "crun script failed: {stdout}\n{stderr}"
    );
    assert_eq!(
        stdout,
        "users=2 overlays=1\nfrom-a\nfrom-b\nusers=0 overlays=0\n"
    );
    assert_eq!(env.users("crun"), 0);
}

/// Runs `ocivol hook precreate` on `spec` against the state under `dir`.
fn precreate(dir: &Path, spec: &Value) -> Output {
    let mut child = Command::new(OCIVOL)
        .args(["--root"])
        .arg(dir.join("root"))
        .arg("--run-root")
        .arg(dir.join("run"))
        .args(["hook", "precreate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn precreate_keys_its_record_by_podmans_id_never_by_an_annotation() {
    // No mount is made for a plain named volume: this runs without root.
    let dir = tempfile::tempdir().unwrap();
    // precreate leaves its staged mounts for podman's runtime; this test has no runtime to
    // release them, so they go with the directory.
    let _unmount = common::UnmountOnDrop(dir.path().to_path_buf());
    let id = "9d741c844a22c66ff5f93db92ce11156209c04742d8a6dd1c2568d8281c26f97";
    let userdata = |root: &str| format!("/var/{root}/vfs-containers/{id}/userdata");
    // What podman 4 gives precreate: its own mounts from the container's directories, and its
    // cgroup path, both naming the container's ID.
    let spec = |id_in_cgroup: &str| {
        json!({
            "ociVersion": "1.0.2",
            "annotations": { VOLUMES: "pre:/pre" },
            "mounts": [
                { "destination": "/etc/hosts", "type": "bind",
                  "source": format!("{}/hosts", userdata("run")), "options": ["bind"] },
                { "destination": "/dev/shm", "type": "bind",
                  "source": format!("{}/shm", userdata("lib")), "options": ["bind"] },
            ],
            "linux": { "cgroupsPath": format!("/libpod_parent/libpod-{id_in_cgroup}") }
        })
    };
    // A key naming the record is no key of ocivol's: refused, nothing taken.
    let mut keyed = spec(id);
    keyed["annotations"]["io.ocivol.precreate-key"] = json!("victim");
    let out = precreate(dir.path(), &keyed);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("annotation io.ocivol.precreate-key: entry \"\": unknown annotation"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.path().join("run/volumes").exists()
            || fs::read_dir(dir.path().join("run/volumes"))
                .unwrap()
                .count()
                == 0
    );

    let out = precreate(dir.path(), &spec(id));
    let changed: Value = serde_json::from_slice(&ok(&out, "precreate").into_bytes()).unwrap();
    assert_eq!(changed["mounts"][2]["destination"], "/pre");
    // The volume `pre` of the container's scope: pre@HASH.
    let volume = fs::read_dir(dir.path().join("run/volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("pre@"))
        .expect("the volume pre of the container's scope");
    let users: Vec<_> = fs::read_dir(dir.path().join("run/volumes").join(volume).join("users"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        users,
        [ocivol::container_id::container_key(
            id,
            Some(ocivol::container_id::PRECREATE_KEY_ROOT)
        )],
        "the user is podman's container ID, never the annotation's value"
    );

    // Two IDs, or none: precreate cannot tell the container and refuses.
    let other = "0".repeat(64);
    let mut none = spec(id);
    none["mounts"] = json!([]);
    for (what, bad) in [("two IDs", spec(&other)), ("no ID", none)] {
        let out = precreate(dir.path(), &bad);
        assert!(!out.status.success(), "{what}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("precreate: "), "{what}: {stderr}");
    }
}
