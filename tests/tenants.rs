//! Tenants stay apart (issue 12): the scope comes from the engine, never from the pod author,
//! and no container can act on another's volumes. Each test is an attack, run through real runc
//! with the standard hooks (createRuntime + poststop, the set-up CRI-O uses), with CRI-O
//! simulated by the bundle layout and the annotations CRI-O writes.

mod common;

use std::fs;

use common::pod::{Runc, crio_annotations, hooked_bundle, storage_id};
use common::{Env, ok};
use serde_json::json;

const VOLUMES: &str = "io.ocivol.volumes";
const FROM: &str = "io.ocivol.volumes-from";

#[test]
fn under_cri_o_a_spoofed_cri_namespace_reaches_no_other_namespace() {
    let test = "under_cri_o_a_spoofed_cri_namespace_reaches_no_other_namespace";
    let Some(env) = Env::new(test) else {
        return;
    };
    let runc = Runc::new(env.runc_root.clone(), env.dir.path());
    let containers = env.dir.path().join("crio/overlay-containers");
    let bundle = |id: &str| containers.join(id).join("userdata");
    // team-b's container: an anonymous volume and a secret bound by its spec.
    let secret = env.dir.path().join("team-b-secret");
    fs::create_dir_all(&secret).unwrap();
    fs::write(secret.join("token"), "team-b token\n").unwrap();
    let victim = storage_id("victim");
    let sb_b = storage_id("sandbox-b");
    let ann_b = crio_annotations(&[(VOLUMES, "/scratch")], "team-b", &sb_b, "db", "container");
    let secret_mount = json!({ "destination": "/etc/app-secret", "type": "bind",
        "source": secret, "options": ["rbind", "ro"] });
    hooked_bundle(
        &env,
        &bundle(&victim),
        &["sleep", "600"],
        &ann_b,
        &[secret_mount],
    );
    ok(&runc.start(&victim, &bundle(&victim)), "team-b starts");
    ok(
        &runc.exec(&victim, "echo b-data > /scratch/b"),
        "team-b writes",
    );

    // team-a's pod claims team-b's namespace and sandbox with containerd's keys, which CRI-O
    // never writes, and asks for the volumes of team-b's container by ID and by name.
    let sb_a = storage_id("sandbox-a");
    let nowhere = storage_id("nowhere");
    let mut refusals = Vec::new();
    for (i, source) in [victim.as_str(), "db", nowhere.as_str()].iter().enumerate() {
        let attacker = storage_id(&format!("attacker{i}"));
        let pod = [
            ("io.kubernetes.cri.sandbox-namespace", "team-b"),
            ("io.kubernetes.cri.sandbox-id", sb_b.as_str()),
            ("io.kubernetes.cri.container-name", "app"),
            (FROM, *source),
        ];
        let ann = crio_annotations(&pod, "team-a", &sb_a, "app", "container");
        hooked_bundle(
            &env,
            &bundle(&attacker),
            &["cat", "/scratch/b", "/etc/app-secret/token"],
            &ann,
            &[],
        );
        let out = runc.run(&attacker, &bundle(&attacker));
        // runc quotes the hook's stderr in its own message.
        let stderr = String::from_utf8_lossy(&out.stderr).replace("\\\"", "\"");
        assert!(
            !out.status.success(),
            "{source}: team-a got team-b's volumes: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            stderr.contains(&format!("no container {source:?} in this scope")),
            "{source}: {stderr}"
        );
        assert!(
            !stderr.contains("team-b"),
            "the refusal names no other scope: {stderr}"
        );
        // runc's line carries a time, which differs when the runs fall in different seconds.
        refusals.push(
            common::without_time(&stderr)
                .replace(source, "X")
                .replace(&attacker, "Y"),
        );
    }
    // A container of another namespace and one that exists nowhere get the same answer.
    assert_eq!(refusals[0], refusals[2]);

    // CRI-O's sandbox (pause) container gets the pod's annotations too, and is never touched.
    let infra = storage_id("infra");
    let ann = crio_annotations(
        &[(VOLUMES, "sbvol:/sb")],
        "team-a",
        &infra,
        "POD",
        "sandbox",
    );
    hooked_bundle(&env, &bundle(&infra), &["true"], &ann, &[]);
    ok(&runc.run(&infra, &bundle(&infra)), "the sandbox runs");
    assert!(
        !env.root.join("volumes/sbvol").exists(),
        "no volume for a sandbox"
    );

    assert_eq!(
        ok(&runc.exec(&victim, "cat /scratch/b"), "team-b reads"),
        "b-data\n"
    );
    runc.delete(&victim);
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn an_annotation_never_makes_poststop_release_another_containers_volumes() {
    let test = "an_annotation_never_makes_poststop_release_another_containers_volumes";
    let Some(env) = Env::new(test) else {
        return;
    };
    let runc = Runc::new(env.runc_root.clone(), env.dir.path());
    let bundles = env.dir.path().join("bundles-pk");
    let ann = format!("/scratch;vv:/data:base={},volatile", env.base.display());
    hooked_bundle(
        &env,
        &bundles.join("victim"),
        &["sleep", "600"],
        &[(VOLUMES, &ann)],
        &[],
    );
    ok(
        &runc.start("pk-victim", &bundles.join("victim")),
        "victim starts",
    );
    ok(
        &runc.exec("pk-victim", "echo v > /scratch/v && echo change > /data/c"),
        "victim writes",
    );
    let anon_before = anonymous_volumes(&env);
    assert_eq!(anon_before.len(), 1);

    // The attacker names the victim in the key podman's precreate used to set: refused as no
    // key of ocivol's, nothing taken. Then the attacker, with IDs like the victim's, starts and
    // stops: its poststop releases its own volumes only.
    for (i, value) in ["pk-victim", "precreate-x", "pk-victim.0000000000000000"]
        .iter()
        .enumerate()
    {
        let id = format!("pk-attacker-{i}");
        hooked_bundle(
            &env,
            &bundles.join(&id),
            &["true"],
            &[(VOLUMES, "/mine"), ("io.ocivol.precreate-key", value)],
            &[],
        );
        let out = runc.run(&id, &bundles.join(&id));
        assert!(!out.status.success(), "{value}: the key was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unknown annotation"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = format!("{value}-attacker");
        hooked_bundle(
            &env,
            &bundles.join(&id),
            &["true"],
            &[(VOLUMES, "/mine")],
            &[],
        );
        ok(
            &runc.run(&id, &bundles.join(&id)),
            "the attacker runs and stops",
        );
    }

    assert_eq!(
        anonymous_volumes(&env),
        anon_before,
        "the victim's volume is there"
    );
    assert_eq!((env.users("vv"), env.overlays("vv")), (1, 1));
    assert_eq!(
        ok(
            &runc.exec("pk-victim", "cat /scratch/v /data/c"),
            "victim reads"
        ),
        "v\nchange\n",
        "neither the anonymous volume nor the volatile changes were released"
    );
    runc.delete("pk-victim");
    assert_eq!((env.users("vv"), env.overlays("vv")), (0, 0));
    assert!(anonymous_volumes(&env).is_empty());
}

/// The anonymous volumes in the state (32 hex digits).
fn anonymous_volumes(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(env.root.join("volumes"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn the_same_id_under_two_runc_roots_has_two_records_in_hook_mode() {
    let test = "the_same_id_under_two_runc_roots_has_two_records_in_hook_mode";
    let Some(env) = Env::new(test) else {
        return;
    };
    let first = Runc::new(env.runc_root.clone(), env.dir.path());
    let second = Runc::new(env.dir.path().join("runc-2"), env.dir.path());
    let bundles = env.dir.path().join("bundles-2r");
    hooked_bundle(
        &env,
        &bundles.join("one"),
        &["sleep", "600"],
        &[(VOLUMES, "/scratch")],
        &[],
    );
    hooked_bundle(
        &env,
        &bundles.join("two"),
        &["true"],
        &[(VOLUMES, "/scratch")],
        &[],
    );
    ok(
        &first.start("same", &bundles.join("one")),
        "the first starts",
    );
    ok(
        &first.exec("same", "echo one > /scratch/x"),
        "the first writes",
    );
    let mine = anonymous_volumes(&env);
    assert_eq!(mine.len(), 1);

    // The same ID under another root, with its own bundle: created, run, stopped.
    ok(&second.run("same", &bundles.join("two")), "the second runs");
    assert_eq!(
        anonymous_volumes(&env),
        mine,
        "only the second's volume went"
    );
    // With the same bundle too: its record cannot be told from the first's, whose init lives,
    // so the second is refused rather than releasing what the first holds.
    let out = second.run("same", &bundles.join("one"));
    assert!(
        !out.status.success(),
        "the second with the same bundle is refused"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("still holds volumes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = second.cmd(&["delete", "--force", "same"]).output();
    assert_eq!(anonymous_volumes(&env), mine);
    assert_eq!(
        ok(&first.exec("same", "cat /scratch/x"), "the first reads"),
        "one\n"
    );
    first.delete("same");
    assert!(anonymous_volumes(&env).is_empty());
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}
