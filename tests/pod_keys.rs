//! Pod annotations under Kubernetes (issue 13): the engines copy every pod annotation into every
//! container of the pod, its sandbox (pause) container included. The plain keys apply to every
//! container, `io.ocivol.volumes/<name>` and `io.ocivol.volumes-from/<name>` to the container
//! of that name alone, and the sandbox is never touched. CRI-O is simulated with its bundle
//! layout and the annotations it writes, run through real runc under ocivol's hooks; the same
//! through containerd's real CRI is in tests/kubernetes.rs.

mod common;

use std::fs;

use common::pod::{Runc, crio_annotations, hooked_bundle, storage_id};
use common::{Env, ok};
use serde_json::json;

const VOLUMES: &str = "io.ocivol.volumes";

#[test]
fn per_container_keys_give_each_container_its_own_and_volumes_from_keeps_ro() {
    let test = "per_container_keys_give_each_container_its_own_and_volumes_from_keeps_ro";
    let Some(env) = Env::new(test) else {
        return;
    };
    let runc = Runc::new(env.runc_root.clone(), env.dir.path());
    let containers = env.dir.path().join("crio/overlay-containers");
    let bundle = |id: &str| containers.join(id).join("userdata");
    let sandbox = storage_id("pk-sandbox");
    // What the pod author writes once, on the pod: the engine copies it into every container.
    let base = env.base.display().to_string();
    let trainer_volumes = format!("/data;model:/model;ds:/ds:base={base}");
    let pod = [
        (VOLUMES, "shared:/shared"),
        ("io.ocivol.volumes/trainer", trainer_volumes.as_str()),
        ("io.ocivol.volumes-from/app", "trainer:ro"),
    ];
    // An emptyDir of the trainer: a bind the engine writes into its spec.
    let empty_dir = env.dir.path().join("pod-volumes/cache");
    fs::create_dir_all(&empty_dir).unwrap();
    let cache = json!({ "destination": "/cache", "type": "bind",
        "source": empty_dir, "options": ["rbind", "rw"] });

    // The sandbox gets every key and is never touched: no user, no volume, no record.
    let ann = crio_annotations(&pod, "team-a", &sandbox, "POD", "sandbox");
    hooked_bundle(&env, &bundle(&sandbox), &["sleep", "600"], &ann, &[]);
    ok(
        &runc.start(&sandbox, &bundle(&sandbox)),
        "the sandbox starts",
    );
    assert_eq!(
        env.users(&env.storage("shared")),
        0,
        "the sandbox uses no volume"
    );
    assert!(
        env.store().volumes().unwrap().is_empty(),
        "no volume made for the sandbox"
    );

    let trainer = storage_id("pk-trainer");
    let ann = crio_annotations(&pod, "team-a", &sandbox, "trainer", "container");
    hooked_bundle(&env, &bundle(&trainer), &["sleep", "600"], &ann, &[cache]);
    ok(&runc.start(&trainer, &bundle(&trainer)), "trainer starts");
    ok(
        &runc.exec(
            &trainer,
            "echo d > /data/f && echo m > /model/f && echo c > /cache/f && echo s > /ds/f \
             && echo p > /shared/f",
        ),
        "trainer writes its volumes",
    );

    // app: the pod's plain key, and trainer's volumes read-only, its anonymous one and its
    // emptyDir included.
    let app = storage_id("pk-app");
    let ann = crio_annotations(&pod, "team-a", &sandbox, "app", "container");
    hooked_bundle(&env, &bundle(&app), &["sleep", "600"], &ann, &[]);
    ok(&runc.start(&app, &bundle(&app)), "app starts");
    assert_eq!(
        ok(
            &runc.exec(&app, "cat /data/f /model/f /cache/f /ds/f /shared/f"),
            "app reads"
        ),
        "d\nm\nc\ns\np\n"
    );
    for dir in ["/data", "/model", "/cache", "/ds"] {
        let out = runc.exec(&app, &format!("echo x > {dir}/app-wrote"));
        assert!(!out.status.success(), "app could write {dir}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Read-only"),
            "{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ok(
        &runc.exec(&app, "echo a > /shared/a"),
        "the pod's own key is rw",
    );
    // The anonymous volume is shared (one user more), not a second one of app's own.
    let store = env.store();
    let anonymous: Vec<_> = store
        .volumes()
        .unwrap()
        .into_iter()
        .filter(|v| v.anonymous)
        .collect();
    assert_eq!(anonymous.len(), 1, "{anonymous:?}");
    assert_eq!(env.users(&anonymous[0].name), 2);

    // A third container gets only the plain key.
    let other = storage_id("pk-other");
    let ann = crio_annotations(&pod, "team-a", &sandbox, "other", "container");
    hooked_bundle(
        &env,
        &bundle(&other),
        &[
            "sh",
            "-c",
            "cat /shared/f; test -e /data/f || test -e /model/f || echo none",
        ],
        &ann,
        &[],
    );
    let out = runc.run(&other, &bundle(&other));
    assert_eq!(ok(&out, "other runs"), "p\nnone\n");

    for id in [&app, &trainer, &sandbox] {
        runc.delete(id);
    }
    assert!(
        fs::read_dir(env.base.as_path()).unwrap().count() > 0 && !env.base.join("f").exists(),
        "the base is never written"
    );
    assert_eq!(env.users(&anonymous[0].name), 0);
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn errors_name_the_per_container_key_and_misspelt_keys_are_refused() {
    let test = "errors_name_the_per_container_key_and_misspelt_keys_are_refused";
    let Some(env) = Env::new(test) else {
        return;
    };
    let runc = Runc::new(env.runc_root.clone(), env.dir.path());
    let containers = env.dir.path().join("crio/overlay-containers");
    let bundle = |id: &str| containers.join(id).join("userdata");
    let sandbox = storage_id("pe-sandbox");
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("io.ocivol.volumes/app", "/etc/../:/x")],
            "annotation io.ocivol.volumes/app: entry \"/etc/../:/x\"",
        ),
        (
            &[("io.ocivol.volumes-from/app", "ghost:ro")],
            "annotation io.ocivol.volumes-from/app: entry \"ghost:ro\": no container \"ghost\" in this scope",
        ),
        (
            &[("io.ocivol.volume", "v:/v")],
            "annotation io.ocivol.volume: entry \"\": unknown annotation",
        ),
        (
            &[("io.ocivol.volumes/", "v:/v")],
            "annotation io.ocivol.volumes/: entry \"\": no container name",
        ),
    ];
    for (i, (pod, expected)) in cases.iter().enumerate() {
        let id = storage_id(&format!("pe-app{i}"));
        let ann = crio_annotations(pod, "team-a", &sandbox, "app", "container");
        hooked_bundle(&env, &bundle(&id), &["true"], &ann, &[]);
        let out = runc.run(&id, &bundle(&id));
        let stderr = String::from_utf8_lossy(&out.stderr).replace("\\\"", "\"");
        assert!(!out.status.success(), "{pod:?} was accepted");
        assert!(stderr.contains(expected), "{pod:?}: {stderr}");
    }
    // A key for another container of the pod is no error and does nothing here.
    let id = storage_id("pe-web");
    let ann = crio_annotations(
        &[("io.ocivol.volumes/app", "v:/v")],
        "team-a",
        &sandbox,
        "web",
        "container",
    );
    hooked_bundle(&env, &bundle(&id), &["sh", "-c", "test ! -e /v"], &ann, &[]);
    ok(
        &runc.run(&id, &bundle(&id)),
        "web runs without app's volume",
    );
    assert!(env.store().volumes().unwrap().is_empty());
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}
