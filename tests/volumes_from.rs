//! volumes-from under a real containerd started by the test, with real runc and overlayfs.

mod common;

use std::fs;
use std::process::{Output, Stdio};

use common::containerd::Containerd;
use common::{Env, ok};
use serde_json::json;

const FROM: &str = "io.ocivol.volumes-from";
const VOLUMES: &str = "io.ocivol.volumes";

/// Starts a detached task through the wrapper.
fn start(ctrd: &Containerd, env: &Env, flags: &[&str], annotations: &[(&str, &str)], id: &str) {
    let mut all = vec!["-d"];
    all.extend_from_slice(flags);
    let out = ctrd
        .run_with(&all, annotations, &env.rootfs, id, &["sleep", "600"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    ok(&out, &format!("start {id}"));
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The policy of these tests: the sample base, and a bind source directory.
fn setup(test: &str) -> Option<(Env, Containerd, String)> {
    let env = Env::new(test)?;
    let binds = env.dir.path().join("binds");
    fs::create_dir_all(&binds).unwrap();
    fs::write(binds.join("host.txt"), "from the host\n").unwrap();
    env.write_policy(json!({ "allowed_bases": [env.base], "allowed_bind_sources": [binds] }));
    let ctrd = Containerd::start(&env);
    let a = format!(
        "named:/named;cow:/data:base={};{}:/bind;rovol:/rovol:ro;/scratch",
        env.base.display(),
        binds.display()
    );
    Some((env, ctrd, a))
}

#[test]
fn volumes_from_shares_named_cow_and_bind_transitively_until_the_last_user() {
    let Some((env, ctrd, a_volumes)) =
        setup("volumes_from_shares_named_cow_and_bind_transitively_until_the_last_user")
    else {
        return;
    };
    start(&ctrd, &env, &[], &[(VOLUMES, &a_volumes)], "vf-a");
    ok(
        &ctrd.exec(
            "default",
            "vf-a",
            "echo from-a > /named/a.txt && echo cow-a > /data/a.txt && echo s > /scratch/s",
        ),
        "a writes",
    );

    // 1. B gets all of A's mounts, with A's data; a write into the shared cow volume is seen by A.
    start(&ctrd, &env, &[], &[(FROM, "vf-a")], "vf-b");
    let seen = ok(
        &ctrd.exec(
            "default",
            "vf-b",
            "cat /named/a.txt /data/a.txt /data/file.txt /bind/host.txt",
        ),
        "b reads",
    );
    assert_eq!(seen, "from-a\ncow-a\nfrom the base\nfrom the host\n");
    ok(
        &ctrd.exec("default", "vf-b", "echo cow-b > /data/b.txt"),
        "b writes",
    );
    assert_eq!(
        ok(&ctrd.exec("default", "vf-a", "cat /data/b.txt"), "a reads"),
        "cow-b\n"
    );
    assert_eq!(env.users("cow"), 2);
    assert_eq!(env.overlays("cow"), 1, "B shares A's overlay");

    // 2. A read-only mount stays read-only through a plain volumes-from.
    let w = ctrd.exec("default", "vf-b", "echo x > /rovol/x");
    assert!(!w.status.success(), "the read-only mount stays read-only");
    assert!(String::from_utf8_lossy(&w.stderr).contains("Read-only file system"));

    // 3. Transitive: C from B gets A's volumes.
    start(&ctrd, &env, &[], &[(FROM, "vf-b:rw")], "vf-c");
    assert_eq!(
        ok(
            &ctrd.exec("default", "vf-c", "cat /named/a.txt /data/b.txt"),
            "c reads"
        ),
        "from-a\ncow-b\n"
    );
    let w = ctrd.exec("default", "vf-c", "echo x > /rovol/x");
    assert!(!w.status.success(), ":rw never upgrades a read-only mount");
    assert_eq!(env.users("cow"), 3);

    // 5. The overlay stays until the last of A, B and C is gone.
    ctrd.remove("default", "vf-a");
    assert_eq!((env.users("cow"), env.overlays("cow")), (2, 1));
    // A's anonymous volume is shared, not copied: it lives on while B and C use it.
    assert_eq!(
        ok(
            &ctrd.exec("default", "vf-c", "cat /scratch/s"),
            "c reads A's anonymous volume"
        ),
        "s\n"
    );
    ctrd.remove("default", "vf-b");
    assert_eq!((env.users("cow"), env.overlays("cow")), (1, 1));
    assert_eq!(
        ok(
            &ctrd.exec("default", "vf-c", "cat /data/a.txt"),
            "c reads alone"
        ),
        "cow-a\n"
    );
    ctrd.remove("default", "vf-c");
    assert_eq!((env.users("cow"), env.overlays("cow")), (0, 0));
    assert_eq!(env.users("named"), 0);
    assert!(
        !env.base.join("a.txt").exists() && !env.base.join("b.txt").exists(),
        "the base is never written"
    );
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn read_only_volumes_from_makes_every_copy_read_only() {
    let Some((env, ctrd, a_volumes)) = setup("read_only_volumes_from_makes_every_copy_read_only")
    else {
        return;
    };
    start(&ctrd, &env, &[], &[(VOLUMES, &a_volumes)], "vf-ro-a");
    start(&ctrd, &env, &[], &[(FROM, "vf-ro-a:ro")], "vf-ro-b");
    for dir in ["/named", "/data", "/bind", "/rovol"] {
        let w = ctrd.exec("default", "vf-ro-b", &format!("echo x > {dir}/x"));
        assert!(!w.status.success(), "{dir} is read-only in B");
        assert!(
            String::from_utf8_lossy(&w.stderr).contains("Read-only file system"),
            "{dir}: EROFS"
        );
    }
    ok(
        &ctrd.exec("default", "vf-ro-a", "echo x > /data/x"),
        "A still writes",
    );
    assert_eq!(
        ok(&ctrd.exec("default", "vf-ro-b", "cat /data/x"), "B reads"),
        "x\n"
    );
}

#[test]
fn a_stopped_source_still_gives_its_volumes() {
    let Some((env, ctrd, a_volumes)) = setup("a_stopped_source_still_gives_its_volumes") else {
        return;
    };
    // A runs to its end and its task and container are removed (`ctr run --rm`).
    let out = ctrd
        .run_with(
            &["--rm"],
            &[(VOLUMES, &a_volumes)],
            &env.rootfs,
            "vf-stopped-a",
            &[
                "sh",
                "-c",
                "echo kept > /named/k.txt && echo cow > /data/c.txt",
            ],
        )
        .output()
        .unwrap();
    ok(&out, "a runs");
    assert_eq!((env.users("cow"), env.overlays("cow")), (0, 0));
    let out = ctrd
        .run_with(
            &["--rm"],
            &[(FROM, "vf-stopped-a")],
            &env.rootfs,
            "vf-stopped-b",
            &["cat", "/named/k.txt", "/data/c.txt", "/bind/host.txt"],
        )
        .output()
        .unwrap();
    assert_eq!(ok(&out, "b runs"), "kept\ncow\nfrom the host\n");
    assert_eq!((env.users("cow"), env.overlays("cow")), (0, 0));
}

#[test]
fn a_source_not_prepared_by_ocivol_gives_its_bind_mounts() {
    let Some((env, ctrd, _)) = setup("a_source_not_prepared_by_ocivol_gives_its_bind_mounts")
    else {
        return;
    };
    let plain = env.dir.path().join("plain");
    fs::create_dir_all(&plain).unwrap();
    fs::write(plain.join("p.txt"), "plain bind\n").unwrap();
    // Plain runc, no ocivol, a bind from `ctr run --mount`.
    let out = ctrd
        .ctr_run(&["-d"])
        .arg("--mount")
        .arg(format!(
            "type=bind,src={},dst=/plain,options=rbind:rw",
            plain.display()
        ))
        .arg(&env.rootfs)
        .arg("vf-plain")
        .args(["sleep", "600"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    ok(&out, "plain container");
    let out = ctrd
        .run_with(
            &["--rm"],
            &[(FROM, "vf-plain")],
            &env.rootfs,
            "vf-plain-b",
            &["cat", "/plain/p.txt"],
        )
        .output()
        .unwrap();
    assert_eq!(ok(&out, "b from a plain container"), "plain bind\n");
}

#[test]
fn a_source_prepared_by_ocivol_gives_its_engine_binds_too() {
    let Some((env, ctrd, _)) = setup("a_source_prepared_by_ocivol_gives_its_engine_binds_too")
    else {
        return;
    };
    // A container with an ocivol volume and a bind the engine wrote (as Kubernetes writes a
    // hostPath or emptyDir volume): ocivol has a record of it, and its spec has the bind.
    let engine = env.dir.path().join("engine-bind");
    fs::create_dir_all(&engine).unwrap();
    fs::write(engine.join("e.txt"), "engine bind\n").unwrap();
    let mount = format!(
        "type=bind,src={},dst=/engine,options=rbind:rw",
        engine.display()
    );
    start(
        &ctrd,
        &env,
        &["--mount", &mount],
        &[(VOLUMES, "own:/own")],
        "vf-eb-a",
    );
    ok(
        &ctrd.exec("default", "vf-eb-a", "echo own > /own/o.txt"),
        "a writes",
    );
    let out = ctrd
        .run_with(
            &["--rm"],
            &[(FROM, "vf-eb-a:ro")],
            &env.rootfs,
            "vf-eb-b",
            &[
                "sh",
                "-c",
                "cat /own/o.txt /engine/e.txt; echo x > /engine/x || echo ro",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(ok(&out, "b"), "own\nengine bind\nro\n");
}

#[test]
fn other_namespace_unknown_source_and_cycle_are_refused_and_leave_nothing() {
    let Some((env, ctrd, a_volumes)) =
        setup("other_namespace_unknown_source_and_cycle_are_refused_and_leave_nothing")
    else {
        return;
    };
    start(&ctrd, &env, &[], &[(VOLUMES, &a_volumes)], "vf-scope-a");
    let records_before = fs::read_dir(env.root.join("containers")).unwrap().count();
    // (ctr flags, annotations, container ID, the reason expected)
    type Case<'a> = (&'a [&'a str], Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: [Case; 4] = [
        (
            &["-n", "other"],
            // Scope keys a user adds change nothing: the namespace comes from the engine. (An
            // `io.ocivol.scope` is refused as an unknown key before anything: tests/pod_keys.rs.)
            vec![
                (FROM, "vf-scope-a"),
                ("io.kubernetes.cri.sandbox-namespace", "default"),
            ],
            "vf-scope-b",
            "no container \"vf-scope-a\" in this scope",
        ),
        (
            &[],
            vec![(FROM, "vf-nope")],
            "vf-scope-c",
            "no container \"vf-nope\" in this scope",
        ),
        (
            &[],
            vec![(FROM, "vf-scope-d")],
            "vf-scope-d",
            "cannot get volumes from itself",
        ),
        (
            &[],
            vec![(FROM, "/run/containerd/x")],
            "vf-scope-e",
            "is a path",
        ),
    ];
    for (flags, annotations, id, reason) in cases {
        let mut all = vec!["--rm"];
        all.extend_from_slice(flags);
        let out = ctrd
            .run_with(&all, &annotations, &env.rootfs, id, &["true"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{id} must be refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("ocivol: annotation io.ocivol.volumes-from: entry "),
            "{stderr}"
        );
        assert!(
            stderr.contains(reason),
            "{id}: expected {reason:?} in {stderr}"
        );
        assert_eq!(env.users("cow"), 1, "{id}: nothing taken");
        assert_eq!(
            fs::read_dir(env.root.join("containers")).unwrap().count(),
            records_before,
            "{id}: no record left"
        );
        assert_eq!(stdout(&out), "");
    }
    assert!(env.volume_run_dir("cow").join("merged").exists());
}

#[test]
fn cri_keys_added_with_ctr_never_reach_another_containerd_namespace() {
    let Some((env, ctrd, a_volumes)) =
        setup("cri_keys_added_with_ctr_never_reach_another_containerd_namespace")
    else {
        return;
    };
    // team-b's container, with the keys containerd's CRI would write (here `ctr` adds them).
    let cri = |ns: &'static str, name: &'static str| {
        vec![
            ("io.kubernetes.cri.sandbox-namespace", ns),
            ("io.kubernetes.cri.sandbox-id", "sb-shared"),
            ("io.kubernetes.cri.container-name", name),
            ("io.kubernetes.cri.container-type", "container"),
        ]
    };
    let mut victim = cri("team-b", "db");
    victim.push((VOLUMES, &a_volumes));
    start(&ctrd, &env, &["-n", "team-b"], &victim, "vf-tenant-b");
    // team-a's claims team-b's Kubernetes namespace and sandbox, and asks by name, by ID, and
    // for a container that exists nowhere: the containerd namespace, from the bundle path, keeps
    // them apart, and the three answers are the same.
    let mut refusals = Vec::new();
    for (i, source) in ["db", "vf-tenant-b", "vf-nowhere"].iter().enumerate() {
        let mut ann = cri("team-b", "app");
        ann.push((FROM, source));
        let id = format!("vf-tenant-a{i}");
        let out = ctrd
            .run_with(&["--rm", "-n", "team-a"], &ann, &env.rootfs, &id, &["true"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{source} must be refused");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            stderr.contains(&format!("no container {source:?} in this scope")),
            "{source}: {stderr}"
        );
        assert!(!stderr.contains("team-b"), "names no other scope: {stderr}");
        refusals.push(
            stderr
                .lines()
                .find(|l| l.contains("ocivol:"))
                .unwrap_or_default()
                .replace(source, "X")
                .replace(&id, "Y"),
        );
        assert_eq!(env.users("cow"), 1, "{source}: nothing taken");
    }
    assert_eq!(
        refusals[1], refusals[2],
        "an existing and a missing source look alike"
    );
    ctrd.remove("team-b", "vf-tenant-b");
    assert_eq!((env.users("cow"), env.overlays("cow")), (0, 0));
}
