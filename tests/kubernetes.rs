//! Kubernetes for real: pods through containerd's CRI plugin, called as the kubelet calls it
//! (RunPodSandbox with the `ocivol` runtime handler, CreateContainer, StartContainer, ExecSync,
//! StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox), with the containerd config
//! and RuntimeClass that docs/INSTALL.md shows. Each test has its own containerd (see
//! tests/common/cri.rs), ocivol state, pods and namespaces; dropping them removes everything.
//!
//! Annotations are the pod's, as a pod's `metadata.annotations` reach the CRI: the kubelet puts
//! them in the PodSandboxConfig, never in a ContainerConfig; the CRI copies those its handler's
//! `pod_annotations` allow into the sandbox's and every container's spec.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::PathBuf;

use common::cri::{self, APP_UID, Cri};
use common::{Env, text, tree_snapshot};
use serde_json::{Value, json};

/// The test's ocivol environment and containerd, or `None` (after printing why) when not root
/// or containerd is missing. The policy allows the environment's base directory and a bind
/// directory `DIR/bind`.
fn setup(test: &str) -> Option<(Env, Cri, PathBuf)> {
    cri::require_containerd(test)?;
    let env = Env::new(test)?;
    let bind = env.dir.path().join("bind");
    fs::create_dir_all(&bind).unwrap();
    fs::write(bind.join("shared.txt"), "bound\n").unwrap();
    env.write_policy(json!({ "allowed_bases": [env.base], "allowed_bind_sources": [bind] }));
    let cri = Cri::start(&env);
    Some((env, cri, bind))
}

/// `ocivol volume ls --format json` against the test's state.
fn volumes(env: &Env) -> Vec<Value> {
    json_of(env, &["volume", "ls", "--format", "json"])
}

/// `ocivol ps --format json` against the test's state.
fn ps(env: &Env) -> Vec<Value> {
    json_of(env, &["ps", "--format", "json"])
}

fn json_of(env: &Env, args: &[&str]) -> Vec<Value> {
    let out = env.ocivol(args);
    let stdout = common::ok(&out, &args.join(" "));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// The container IDs using a volume, by the name containers use.
fn users_of(env: &Env, name: &str) -> Vec<String> {
    let v = volumes(env)
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}: {:?}", volumes(env)));
    let mut users: Vec<String> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["container"].as_str().unwrap().to_string())
        .collect();
    users.sort();
    users
}

fn anonymous(env: &Env) -> Vec<Value> {
    volumes(env)
        .into_iter()
        .filter(|v| v["anonymous"] == true)
        .collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// What the kubelet does when the pods go, and what must hold after it: no mount under the
/// test's directories, no volume with a user or a mounted overlay, no anonymous volume.
fn remove_every_pod_and_check(env: &Env, cri: &Cri) {
    cri.remove_all_pods();
    let mounts = env.mounts_here();
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    for v in volumes(env) {
        assert_eq!(v["users"], json!([]), "a user left on {v}");
        assert_eq!(v["mounted"], false, "an overlay left mounted: {v}");
        assert_eq!(v["anonymous"], false, "an anonymous volume left: {v}");
    }
}

#[test]
fn the_cri_copies_plain_and_per_container_keys_into_the_sandbox_and_every_container() {
    let test = "the_cri_copies_plain_and_per_container_keys_into_the_sandbox_and_every_container";
    let Some((env, cri, _)) = setup(test) else {
        return;
    };
    let pod = cri.pod(
        "keys",
        "team-keys",
        &[
            ("io.ocivol.volumes", "notes:/notes"),
            ("io.ocivol.volumes/app", "/scratch"),
            ("io.ocivol.volumes-from/other", "app:ro"),
            ("example.com/not-ocivol", "x"),
        ],
    );
    let app = cri.run(&pod, "app", "sleep 3600");
    let sandbox = cri.spec_annotations(&pod.id);
    let container = cri.spec_annotations(&app);
    eprintln!(
        "sandbox config.json annotations: {}",
        serde_json::to_string_pretty(&sandbox).unwrap()
    );
    eprintln!(
        "container config.json annotations: {}",
        serde_json::to_string_pretty(&container).unwrap()
    );
    for (what, spec) in [("sandbox", &sandbox), ("container", &container)] {
        // `io.ocivol.*` alone would let only the plain key through: Go's path.Match `*` stops
        // at `/`. The drop-in's `io.ocivol.*/*` brings the per-container keys.
        for (key, value) in [
            ("io.ocivol.volumes", "notes:/notes"),
            ("io.ocivol.volumes/app", "/scratch"),
            ("io.ocivol.volumes-from/other", "app:ro"),
        ] {
            assert_eq!(
                spec.get(key).and_then(Value::as_str),
                Some(value),
                "{what}'s spec has {key}"
            );
        }
        assert!(
            !spec.contains_key("example.com/not-ocivol"),
            "{what}: pod_annotations lets only ocivol's keys through"
        );
        assert_eq!(
            spec["io.kubernetes.cri.sandbox-id"],
            pod.id.as_str(),
            "{what}"
        );
        assert_eq!(spec["io.kubernetes.cri.sandbox-namespace"], "team-keys");
        assert_eq!(spec["io.kubernetes.cri.sandbox-name"], "keys");
    }
    assert_eq!(sandbox["io.kubernetes.cri.container-type"], "sandbox");
    assert_eq!(container["io.kubernetes.cri.container-type"], "container");
    assert_eq!(container["io.kubernetes.cri.container-name"], "app");
    remove_every_pod_and_check(&env, &cri);
}

#[test]
fn two_containers_of_a_pod_share_its_volumes_and_a_copy_on_write_base() {
    let test = "two_containers_of_a_pod_share_its_volumes_and_a_copy_on_write_base";
    let Some((env, cri, _)) = setup(test) else {
        return;
    };
    let base_before = tree_snapshot(&env.base);
    let ann = format!("shared:/shared;dataset:/data:base={}", env.base.display());
    let pod = cri.pod("share", "team-share", &[("io.ocivol.volumes", &ann)]);
    let writer = cri.run(&pod, "writer", "echo hi > /shared/f && sleep 3600");
    let reader = cri.run(&pod, "reader", "sleep 3600");

    cri.exec_ok(
        &writer,
        "echo new > /data/new.txt && echo changed > /data/file.txt",
    );
    assert_eq!(
        cri.exec_ok(
            &reader,
            "cat /shared/f /data/new.txt /data/file.txt /data/sub/deep.txt"
        ),
        "hi\nnew\nchanged\ndeep\n",
        "the reader sees the writer's files: one named volume, one overlay"
    );
    cri.exec_ok(&reader, "echo back > /data/back.txt");
    assert_eq!(cri.exec_ok(&writer, "cat /data/back.txt"), "back\n");

    let both = sorted(vec![writer.clone(), reader.clone()]);
    assert_eq!(users_of(&env, "shared"), both);
    assert_eq!(users_of(&env, "dataset"), both);
    assert_eq!(env.overlays("dataset"), 1, "one overlay for both");
    assert_eq!(
        tree_snapshot(&env.base),
        base_before,
        "the base is never written"
    );

    remove_every_pod_and_check(&env, &cri);
    assert_eq!(
        fs::read_to_string(env.volume_dir("shared").join("data/f")).unwrap(),
        "hi\n",
        "a named volume outlives its pod"
    );
    assert_eq!(
        tree_snapshot(&env.base),
        base_before,
        "the base is never written"
    );
}

#[test]
fn per_container_keys_give_the_writer_volumes_and_the_reader_them_read_only() {
    let test = "per_container_keys_give_the_writer_volumes_and_the_reader_them_read_only";
    let Some((env, cri, _)) = setup(test) else {
        return;
    };
    let pod = cri.pod(
        "perkey",
        "team-perkey",
        &[
            ("io.ocivol.volumes/writer", "wdata:/data;/scratch"),
            ("io.ocivol.volumes-from/reader", "writer:ro"),
        ],
    );
    // The order of the pod's containers, as the kubelet starts them: the source first.
    let writer = cri.run(&pod, "writer", "sleep 3600");
    let reader = cri.run(&pod, "reader", "sleep 3600");
    let bystander = cri.run(&pod, "bystander", "sleep 3600");

    cri.exec_ok(&writer, "echo w > /data/f && echo s > /scratch/g");
    assert_eq!(
        cri.exec_ok(&reader, "cat /data/f /scratch/g"),
        "w\ns\n",
        "the reader has the writer's named and anonymous volumes, the same data"
    );
    for path in ["/data/x", "/scratch/x"] {
        let e = cri.exec(&reader, &format!("echo x > {path}"));
        assert_ne!(e.code, 0, "the reader wrote {path}: {e:?}");
        assert!(
            e.stderr.contains("Read-only file system"),
            "{path} is read-only for the reader: {e:?}"
        );
    }
    cri.exec_ok(&writer, "echo w2 > /data/f2 && echo s2 > /scratch/g2");
    assert_eq!(cri.exec_ok(&reader, "cat /data/f2 /scratch/g2"), "w2\ns2\n");
    let e = cri.exec(&bystander, "test -e /data/f || test -e /scratch/g");
    assert_ne!(e.code, 0, "the other container has none of them: {e:?}");

    let both = sorted(vec![writer.clone(), reader.clone()]);
    assert_eq!(users_of(&env, "wdata"), both, "the reader joined wdata");
    let anon = anonymous(&env);
    assert_eq!(
        anon.len(),
        1,
        "only the writer's anonymous volume: {anon:?}"
    );
    let anon_name = anon[0]["name"].as_str().unwrap().to_string();
    assert_eq!(
        users_of(&env, &anon_name),
        both,
        "the reader joined the writer's anonymous volume"
    );

    remove_every_pod_and_check(&env, &cri);
}

#[test]
fn a_container_running_as_uid_1000_writes_new_named_anonymous_and_copy_on_write_volumes() {
    let test =
        "a_container_running_as_uid_1000_writes_new_named_anonymous_and_copy_on_write_volumes";
    let Some((env, cri, _)) = setup(test) else {
        return;
    };
    // A base made for the user, as a dataset directory for a non-root workload would be.
    let app_base = env.base.join("app");
    fs::create_dir_all(&app_base).unwrap();
    fs::write(app_base.join("seed.txt"), "seed\n").unwrap();
    chown(app_base.join("seed.txt"), Some(APP_UID), Some(APP_UID)).unwrap();
    chown(&app_base, Some(APP_UID), Some(APP_UID)).unwrap();
    fs::set_permissions(&app_base, fs::Permissions::from_mode(0o755)).unwrap();
    let base_before = tree_snapshot(&env.base);

    let ann = format!(
        "appdata:/home/app/named;/home/app/anon;appcow:/cow:base={}",
        app_base.display()
    );
    let pod = cri.pod("nonroot", "team-nonroot", &[("io.ocivol.volumes", &ann)]);
    let mut config = cri.container(&pod, "app", "sleep 3600");
    let sc = config
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.run_as_user = Some(k8s_cri::v1::Int64Value {
        value: i64::from(APP_UID),
    });
    let app = cri
        .start_container(&pod, config)
        .unwrap_or_else(|e| panic!("StartContainer: {}", e.message()));
    assert_eq!(cri.exec_ok(&app, "id -u"), format!("{APP_UID}\n"));

    for (what, dir) in [
        ("a new named volume", "/home/app/named"),
        ("a new anonymous volume", "/home/app/anon"),
        ("a new copy-on-write volume", "/cow"),
    ] {
        let e = cri.exec(&app, &format!("echo by-app > {dir}/new && mkdir {dir}/d"));
        assert_eq!(e.code, 0, "uid {APP_UID} writes {what} at {dir}: {e:?}");
    }
    assert_eq!(cri.exec_ok(&app, "cat /cow/seed.txt"), "seed\n");
    // Docker's rule: a new, empty volume is filled from the image's content at its destination
    // (which is how the image's ownership reaches it).
    assert_eq!(
        cri.exec_ok(
            &app,
            "cat /home/app/named/from-image /home/app/anon/from-image"
        ),
        "prepared by the image\nprepared by the image\n"
    );
    let written = env.volume_dir("appdata").join("data/new");
    assert_eq!(
        fs::metadata(&written).map(|m| m.uid()).ok(),
        Some(APP_UID),
        "{}",
        written.display()
    );
    assert_eq!(
        tree_snapshot(&env.base),
        base_before,
        "the base is never written"
    );

    remove_every_pod_and_check(&env, &cri);
}

#[test]
fn the_sandbox_container_is_never_a_user_and_gets_no_anonymous_volume() {
    let test = "the_sandbox_container_is_never_a_user_and_gets_no_anonymous_volume";
    let Some((env, cri, _)) = setup(test) else {
        return;
    };
    // The pod's keys reach the sandbox's spec too (see the first test), volumes-from naming a
    // container that does not exist yet included.
    let pod = cri.pod(
        "sbx",
        "team-sbx",
        &[
            ("io.ocivol.volumes", "sbx:/data;/anon"),
            ("io.ocivol.volumes-from", "writer:ro"),
        ],
    );
    assert_eq!(
        cri.spec_annotations(&pod.id)["io.ocivol.volumes"],
        "sbx:/data;/anon"
    );
    assert_eq!(ps(&env), Vec::<Value>::new(), "ocivol ps knows no sandbox");
    assert_eq!(
        volumes(&env),
        Vec::<Value>::new(),
        "no volume was made for the sandbox"
    );
    let spec: Value =
        serde_json::from_slice(&fs::read(cri.bundle(&pod.id).join("config.json")).unwrap())
            .unwrap();
    let destinations: Vec<&str> = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["destination"].as_str())
        .collect();
    assert!(
        !destinations.contains(&"/data") && !destinations.contains(&"/anon"),
        "the sandbox's spec is unchanged: {destinations:?}"
    );
    let ocivols: Vec<String> = env
        .mounts_here()
        .into_iter()
        .filter(|m| m.starts_with(env.run_root.to_str().unwrap()))
        .collect();
    assert!(ocivols.is_empty(), "ocivol mounted nothing: {ocivols:?}");

    let writer = cri.run(&pod, "writer", "sleep 3600");
    let listed: Vec<String> = ps(&env)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        listed,
        vec![writer.clone()],
        "only the container is recorded"
    );
    assert_eq!(users_of(&env, "sbx"), vec![writer.clone()]);
    let anon = anonymous(&env);
    assert_eq!(
        anon.len(),
        1,
        "one anonymous volume, the container's: {anon:?}"
    );
    assert_eq!(anon[0]["users"][0]["container"], writer.as_str());

    remove_every_pod_and_check(&env, &cri);
}

#[test]
fn a_hostile_pod_annotation_fails_start_container_with_ocivols_line() {
    let test = "a_hostile_pod_annotation_fails_start_container_with_ocivols_line";
    let Some((env, cri, bind)) = setup(test) else {
        return;
    };
    let base = env.base.display();
    std::os::unix::fs::symlink("/", bind.join("escape")).unwrap();
    let cases = [
        ("a bind of the host's /", "/:/host".to_string()),
        (
            "a bind escaping the allowed bind directory",
            format!("{}/../..:/host", bind.display()),
        ),
        (
            "a symlink out of the allowed bind directory",
            format!("{}/escape:/host", bind.display()),
        ),
        (
            "a base escaping the allowed base",
            format!("esc:/data:base={base}/../.."),
        ),
        ("a base outside allowed_bases", "out:/data:base=/etc".into()),
    ];
    for (i, (what, entry)) in cases.iter().enumerate() {
        let pod = cri.pod(
            &format!("hostile{i}"),
            &format!("team-hostile{i}"),
            &[("io.ocivol.volumes", entry)],
        );
        let config = cri.container(&pod, "app", "sleep 3600");
        let err = cri
            .start_container(&pod, config)
            .expect_err(&format!("{what} must fail the container"));
        let message = err.message();
        eprintln!("{what}: StartContainer: {message}");
        let line = format!("ocivol: annotation io.ocivol.volumes: entry \"{entry}\": ");
        let at = message
            .find(&line)
            .unwrap_or_else(|| panic!("{what}: the CRI error shows ocivol's line: {message}"));
        assert!(
            !message[at..].contains('\n'),
            "{what}: one line: {message:?}"
        );
        assert!(
            volumes(&env).is_empty(),
            "{what}: no volume made: {:?}",
            volumes(&env)
        );
        assert!(
            ps(&env).is_empty(),
            "{what}: no record left: {:?}",
            ps(&env)
        );
        cri.remove_pod(&pod.id)
            .unwrap_or_else(|e| panic!("{what}: removing the pod: {}", e.message()));
        assert!(
            env.mounts_here().is_empty(),
            "{what}: {:?}",
            env.mounts_here()
        );
    }
    remove_every_pod_and_check(&env, &cri);
}

#[test]
fn a_hostile_per_container_key_fails_that_container_alone() {
    let test = "a_hostile_per_container_key_fails_that_container_alone";
    let Some((env, cri, _)) = setup(test) else {
        return;
    };
    let pod = cri.pod(
        "hostile",
        "team-hostile",
        &[
            ("io.ocivol.volumes/bad", "/:/host"),
            ("io.ocivol.volumes/good", "fine:/fine"),
        ],
    );
    let good = cri.run(&pod, "good", "sleep 3600");
    let config = cri.container(&pod, "bad", "sleep 3600");
    let err = cri
        .start_container(&pod, config)
        .expect_err("the bad container must not start");
    assert!(
        err.message()
            .contains("ocivol: annotation io.ocivol.volumes/bad: entry \"/:/host\": "),
        "the CRI error names the container's key and entry: {}",
        err.message()
    );
    assert_eq!(
        cri.exec_ok(&good, "echo ok > /fine/f && cat /fine/f"),
        "ok\n"
    );
    assert_eq!(users_of(&env, "fine"), vec![good.clone()]);
    remove_every_pod_and_check(&env, &cri);
}

#[test]
fn removing_every_pod_leaves_no_mount_user_or_anonymous_volume() {
    let test = "removing_every_pod_leaves_no_mount_user_or_anonymous_volume";
    let Some((env, cri, bind)) = setup(test) else {
        return;
    };
    let base_before = tree_snapshot(&env.base);
    let ann = format!(
        "keep:/keep;/anon;cow:/cow:base={b};scratch:/scratch:base={b},volatile;{bind}:/bound:ro",
        b = env.base.display(),
        bind = bind.display()
    );
    let script = "echo $HOSTNAME > /keep/f; echo x > /anon/f; echo y > /cow/f; echo z > /scratch/f; sleep 3600";
    let mut ids = Vec::new();
    for (pod_name, ns, containers) in [
        ("left", "team-left", &["one", "two"][..]),
        ("right", "team-right", &["three"][..]),
    ] {
        let pod = cri.pod(pod_name, ns, &[("io.ocivol.volumes", &ann)]);
        for c in containers {
            let id = cri.run(&pod, c, script);
            assert_eq!(cri.exec_ok(&id, "cat /bound/shared.txt"), "bound\n");
            ids.push(id);
        }
    }
    assert_eq!(
        anonymous(&env).len(),
        3,
        "one anonymous volume per container"
    );
    let overlays: Vec<Value> = volumes(&env)
        .into_iter()
        .filter(|v| v["mounted"] == true)
        .collect();
    assert_eq!(
        overlays.len(),
        4,
        "cow and scratch of each namespace: {overlays:?}"
    );
    assert!(!env.mounts_here().is_empty());
    assert!(
        !cri.shim_sockets().is_empty(),
        "the shims' sockets are in /run/containerd/s under the names the test computes"
    );

    remove_every_pod_and_check(&env, &cri);
    let names: Vec<String> = volumes(&env)
        .iter()
        .map(|v| {
            format!(
                "{}:{}",
                v["name"].as_str().unwrap(),
                v["scope"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names.len(),
        6,
        "keep, cow and scratch of each namespace: {names:?}"
    );
    assert_eq!(
        tree_snapshot(&env.base),
        base_before,
        "the base is never written"
    );

    // Dropping the daemon leaves no shim and no socket of its own behind.
    let candidates = cri.shim_socket_candidates();
    let shims = cri.dir.join("c.sock");
    drop(cri);
    let left: Vec<&PathBuf> = candidates.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "shim sockets left: {left:?}");
    let address = format!("-address {}", shims.display());
    let procs: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .map(|c| text(&c).replace('\0', " "))
        .filter(|c| c.contains(&address))
        .collect();
    assert!(procs.is_empty(), "shims left: {procs:?}");
}

/// docs/INSTALL.md shows the drop-in and the RuntimeClass the CRI test runs, verbatim.
#[test]
fn install_md_shows_the_drop_in_and_runtime_class_the_cri_test_runs() {
    let doc = include_str!("../docs/INSTALL.md");
    let kubernetes = doc
        .split("\n## Kubernetes\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("INSTALL.md has a Kubernetes section");
    for (file, lang, content) in [
        ("packaging/containerd/ocivol.toml", "toml", cri::DROP_IN),
        (
            "packaging/kubernetes/runtimeclass.yaml",
            "yaml",
            cri::RUNTIME_CLASS,
        ),
    ] {
        let block = format!("```{lang}\n{content}```\n");
        assert!(
            kubernetes.contains(&block),
            "INSTALL.md's Kubernetes section shows {file} as it is:\n{block}"
        );
    }
    assert_eq!(cri::handler(), "ocivol");
}

/// A pod's annotations, and its containers' names and commands.
type PodYaml = (Vec<(String, String)>, Vec<(String, Vec<String>)>);

/// The pod of packaging/kubernetes/example-pod.yaml, read line by line (its `command:` lines
/// are flow sequences of double-quoted strings, which are JSON).
fn example_pod() -> PodYaml {
    let yaml = include_str!("../packaging/kubernetes/example-pod.yaml");
    let mut annotations = Vec::new();
    let mut containers = Vec::new();
    let mut in_annotations = false;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim() == "annotations:" {
            in_annotations = true;
            continue;
        }
        if in_annotations && indent == 4 {
            let (k, v) = line.trim().split_once(": ").unwrap();
            annotations.push((k.to_string(), serde_json::from_str::<String>(v).unwrap()));
            continue;
        }
        in_annotations = false;
        if let Some(name) = line.trim().strip_prefix("- name: ") {
            containers.push((name.to_string(), Vec::new()));
        } else if let Some(cmd) = line.trim().strip_prefix("command: ") {
            containers.last_mut().unwrap().1 = serde_json::from_str(cmd).unwrap();
        }
    }
    (annotations, containers)
}

#[test]
fn the_example_pod_runs_and_its_evaluator_logs_trained() {
    let test = "the_example_pod_runs_and_its_evaluator_logs_trained";
    let Some((env, cri, _)) = setup(test) else {
        return;
    };
    let (annotations, containers) = example_pod();
    assert_eq!(annotations.len(), 2, "{annotations:?}");
    assert_eq!(containers.len(), 2, "{containers:?}");
    // The node's dataset directory is this test's base (allowed by its policy).
    let dataset = env.base.display().to_string();
    let annotations: Vec<(String, String)> = annotations
        .into_iter()
        .map(|(k, v)| (k, v.replace("/srv/datasets/v3", &dataset)))
        .collect();
    let pairs: Vec<(&str, &str)> = annotations
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let pod = cri.pod("ocivol-example", "team-example", &pairs);
    let mut ids = Vec::new();
    for (name, command) in &containers {
        let mut config = cri.container(&pod, name, "");
        config.command = command.clone();
        let id = cri
            .start_container(&pod, config)
            .unwrap_or_else(|e| panic!("StartContainer {name}: {}", e.message()));
        ids.push(id);
    }
    // `kubectl logs ocivol-example -c evaluator` reads this file; the evaluator's first line
    // comes after its `sleep 5`.
    let log = PathBuf::from(&pod.config.log_directory).join("evaluator/0.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let logged = loop {
        let logged = fs::read_to_string(&log).unwrap_or_default();
        if logged.ends_with('\n') || std::time::Instant::now() > deadline {
            break logged;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        logged.ends_with(" stdout F trained\n"),
        "the evaluator logs \"trained\": {logged:?}"
    );
    let e = cri.exec(&ids[1], "echo x > /data/x");
    assert!(
        e.code != 0 && e.stderr.contains("Read-only file system"),
        "the evaluator has the trainer's volumes read-only: {e:?}"
    );
    remove_every_pod_and_check(&env, &cri);
}
