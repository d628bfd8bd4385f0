//! `ocivol setup containerd` on the containerd releases nodes run: Debian 12's 1.6 (installed),
//! 1.7 (Debian 13) and 2.1 (Debian unstable, NRI on by default), the last two fetched once into
//! target/containerd-releases/ (tests/common/releases.rs). For each: a node's v2 config.toml
//! (runc with SystemdCgroup and a Root of its own, a second handler "nvidia", comments), and for
//! 2.1 a v3 one, goes through `ocivol setup containerd`; the daemon starts with it; `containerd
//! config dump` shows every handler with its options; a pod runs on each handler through the
//! CRI, and on the ocivol handler two containers share a copy-on-write volume.
//!
//! This machine has no systemd, so runc cannot make systemd cgroups: the handlers' runc (`runc`
//! first on the daemon's PATH, as a node's runc handler has no BinaryName, and the nvidia
//! handler's BinaryName) are scripts that log their command line and run Debian's runc without
//! `--systemd-cgroup`. The log is what proves the options reached each handler: the shim adds
//! `--systemd-cgroup` for SystemdCgroup and `--root ROOT/k8s.io` for Root.
//!
//! And the by-hand recipe's two silent failures on containerd 2.1, as containerd shows them.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::cri::{self, Cri, IMAGE};
use common::releases::{self, Release};
use common::{Env, OCIVOL, ok, text};
use serde_json::json;

/// A node's config.toml, version 2, with the daemon's own paths under `d`.
fn v2_node(d: &Path) -> String {
    let d = d.display();
    format!(
        r#"# /etc/containerd/config.toml of a Kubernetes node (written by hand, kept for years)
version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{d}/c.sock"

[ttrpc]
  address = "{d}/c.sock.ttrpc"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/opt"

  # NRI (containerd 1.7 and later; on by default in 2.x): its socket in the test's directory.
  [plugins."io.containerd.nri.v1.nri"]
    socket_path = "{d}/nri.sock"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{IMAGE}"
    restrict_oom_score_adj = true # root here lacks CAP_SYS_RESOURCE
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{d}/cni/bin"
      conf_dir = "{d}/cni/conf"

    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"

      # The default handler: systemd cgroups (the kubelet's cgroupDriver), runc's state apart.
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true
          Root = "{d}/runc"

      # GPUs (the GPU operator's handler)
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]
          BinaryName = "{d}/bin/nvidia-container-runtime"
          SystemdCgroup = true
          Root = "{d}/runc-nvidia"
"#
    )
}

/// The same node's config.toml as containerd 2 writes it (version 3).
fn v3_node(d: &Path) -> String {
    let d = d.display();
    format!(
        r#"# /etc/containerd/config.toml of a Kubernetes node, containerd 2 (`containerd config default` style)
version = 3
root = '{d}/root'
state = '{d}/state'
disabled_plugins = [
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.zfs',
]

[grpc]
  address = '{d}/c.sock'

[ttrpc]
  address = '{d}/c.sock.ttrpc'

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = '{d}/opt'

  [plugins.'io.containerd.nri.v1.nri']
    socket_path = '{d}/nri.sock'

  [plugins.'io.containerd.cri.v1.images']
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{IMAGE}'

  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true

    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['{d}/cni/bin']
      conf_dir = '{d}/cni/conf'

    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]
        # The default handler: systemd cgroups, runc's state apart.
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
          runtime_type = 'io.containerd.runc.v2'
          sandboxer = 'podsandbox'

          [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
            SystemdCgroup = true
            Root = '{d}/runc'

        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.nvidia]
          runtime_type = 'io.containerd.runc.v2'
          sandboxer = 'podsandbox'

          [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.nvidia.options]
            BinaryName = '{d}/bin/nvidia-container-runtime'
            SystemdCgroup = true
            Root = '{d}/runc-nvidia'

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
"#
    )
}

/// A script that logs `NAME ARGS` to `DIR/calls.log` and runs Debian's runc without
/// `--systemd-cgroup` (no systemd here).
fn runc_script(dir: &Path, name: &str, file: &str) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let path = bin.join(file);
    fs::write(
        &path,
        format!(
            "#!/bin/sh\n# Debian's runc for this test's handlers: logs its command line; no systemd here.\n\
             echo \"{name} $*\" >> '{log}'\n\
             for a; do shift; [ \"$a\" = --systemd-cgroup ] || set -- \"$@\" \"$a\"; done\n\
             exec {runc} \"$@\"\n",
            log = dir.join("calls.log").display(),
            runc = common::RUNC,
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The handler's binary setup is given: logs its command line, then runs the CRI fixture's
/// `ocivol-runtime` (ocivol with the test's config and state).
fn logged_ocivol(dir: &Path, wrapper: &Path) -> PathBuf {
    let path = dir.join("bin/ocivol-runtime-logged");
    fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"ocivol-runtime $*\" >> '{}'\nexec '{}' \"$@\"\n",
            dir.join("calls.log").display(),
            wrapper.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn ocivol(args: &[&str]) -> Output {
    Command::new(OCIVOL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn setup(config: &Path, runtime_path: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "setup",
        "containerd",
        "--config",
        config.to_str().unwrap(),
        "--runtime-path",
        runtime_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ocivol(&args)
}

/// `containerd config dump` of a release for a config file.
fn dump(release: &Release, config: &Path) -> (String, String) {
    let out = Command::new(release.bin.join("containerd"))
        .arg("--config")
        .arg(config)
        .args(["config", "dump"])
        .output()
        .unwrap();
    let stdout = ok(&out, "containerd config dump");
    (stdout, text(&out.stderr))
}

/// The handlers of a dump: name → (key → value as TOML), options as `options.KEY`.
fn handlers(release: &Release, dump: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let doc: toml_edit::DocumentMut = dump.parse().unwrap();
    let plugin = if release.major() >= 2 {
        "io.containerd.cri.v1.runtime"
    } else {
        "io.containerd.grpc.v1.cri"
    };
    let runtimes = doc["plugins"][plugin]["containerd"]["runtimes"]
        .as_table()
        .unwrap_or_else(|| panic!("no runtimes in the dump:\n{dump}"));
    let value = |v: &toml_edit::Value| {
        let mut v = v.clone();
        v.decor_mut().clear();
        v.to_string().replace('\'', "\"")
    };
    runtimes
        .iter()
        .map(|(name, h)| {
            let mut keys = BTreeMap::new();
            for (k, item) in h.as_table().unwrap().iter() {
                if let Some(v) = item.as_value() {
                    keys.insert(k.to_string(), value(v));
                }
            }
            if let Some(o) = h.get("options").and_then(|o| o.as_table_like()) {
                for (k, item) in o.iter() {
                    if let Some(v) = item.as_value() {
                        keys.insert(format!("options.{k}"), value(v));
                    }
                }
            }
            (name.to_string(), keys)
        })
        .collect()
}

/// Asserts a handler's keys have these values.
fn assert_keys(
    all: &BTreeMap<String, BTreeMap<String, String>>,
    handler: &str,
    want: &[(&str, String)],
) {
    let h = all
        .get(handler)
        .unwrap_or_else(|| panic!("no handler {handler}: {all:#?}"));
    for (k, v) in want {
        assert_eq!(h.get(*k), Some(v), "{handler}.{k}: {h:#?}");
    }
}

fn q(s: impl std::fmt::Display) -> String {
    format!("\"{s}\"")
}

/// The lines of calls.log that start with `name `.
fn calls(dir: &Path, name: &str) -> Vec<String> {
    fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{name} ")))
        .map(str::to_string)
        .collect()
}

/// `create` calls of a handler's binary carry `--systemd-cgroup` and the handler's `--root`.
fn assert_creates_with(dir: &Path, name: &str, root: &Path) {
    let creates: Vec<String> = calls(dir, name)
        .into_iter()
        .filter(|l| l.contains(" create "))
        .collect();
    assert!(!creates.is_empty(), "{name} created nothing");
    let want_root = format!("--root {}/k8s.io ", root.display());
    for c in &creates {
        assert!(
            c.contains("--systemd-cgroup") && c.contains(&want_root),
            "{name}: SystemdCgroup and Root reach it: {c}"
        );
    }
}

enum Layout {
    V2,
    V3,
}

/// The whole check on one release: setup on a node config, the daemon, its dump, a pod on each
/// handler, a shared copy-on-write volume on ocivol's, every pod removed, no shim socket left,
/// and `--remove` giving the file back.
fn setup_runs_every_handler(test: &str, release: Option<Release>, layout: Layout) {
    let Some(()) = cri::require_containerd(test) else {
        return;
    };
    let Some(env) = Env::new(test) else { return };
    let Some(release) = release else { return };
    eprintln!("{test}: containerd {}", release.version);
    let dir = Cri::dir_of(&env);
    let runc = runc_script(&dir, "runc", "runc");
    runc_script(&dir, "nvidia", "nvidia-container-runtime");
    env.write_config(json!({ "runtime": runc, "policy": { "allowed_bases": [env.base] } }));
    let config = dir.join("config.toml");
    let original = match layout {
        Layout::V2 => v2_node(&dir),
        Layout::V3 => v3_node(&dir),
    };
    let mut setup_out = String::new();
    let mut second = String::new();
    let mut binary = PathBuf::new();
    let cri = Cri::start_with(&env, &release.bin, |dir, wrapper| {
        fs::write(dir.join("config.toml"), &original).unwrap();
        binary = logged_ocivol(dir, wrapper);
        setup_out = ok(&setup(&config, &binary, &[]), "ocivol setup containerd");
        second = ok(
            &setup(&config, &binary, &[]),
            "ocivol setup containerd, again",
        );
    });
    assert!(setup_out.contains("updated"), "{setup_out}");
    assert!(second.contains("already set up, unchanged"), "{second}");
    let after = fs::read_to_string(&config).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("config.toml.ocivol-backup")).unwrap(),
        original
    );
    // Every original line is kept, in order.
    for change in similar::TextDiff::from_lines(&original, &after).iter_all_changes() {
        assert_ne!(change.tag(), similar::ChangeTag::Delete, "{change:?}");
    }

    let (dumped, _) = dump(&release, &config);
    let all = handlers(&release, &dumped);
    let runc_root = dir.join("runc");
    let nvidia_root = dir.join("runc-nvidia");
    assert_keys(
        &all,
        "runc",
        &[
            ("options.SystemdCgroup", "true".into()),
            ("options.Root", q(runc_root.display())),
        ],
    );
    assert_keys(
        &all,
        "nvidia",
        &[
            ("options.SystemdCgroup", "true".into()),
            ("options.Root", q(nvidia_root.display())),
            (
                "options.BinaryName",
                q(dir.join("bin/nvidia-container-runtime").display()),
            ),
        ],
    );
    assert_keys(
        &all,
        "ocivol",
        &[
            ("runtime_type", q("io.containerd.runc.v2")),
            ("options.SystemdCgroup", "true".into()),
            ("options.Root", q(runc_root.display())),
            ("options.BinaryName", q(binary.display())),
            (
                "pod_annotations",
                "[\"io.ocivol.*\", \"io.ocivol.*/*\"]".into(),
            ),
            (
                "container_annotations",
                "[\"io.ocivol.*\", \"io.ocivol.*/*\"]".into(),
            ),
        ],
    );

    // A pod on runc and on nvidia, each with its own options.
    for (handler, ns) in [("runc", "team-runc"), ("nvidia", "team-nvidia")] {
        let pod = cri
            .run_pod_on(handler, cri.pod_config(handler, ns, &[]))
            .unwrap_or_else(|e| {
                panic!("RunPodSandbox on {handler}: {}\n{}", e.message(), cri.log())
            });
        let app = cri.run(&pod, "app", "sleep 3600");
        assert_eq!(cri.exec_ok(&app, "echo ok"), "ok\n");
    }
    assert_creates_with(&dir, "runc", &runc_root);
    assert_creates_with(&dir, "nvidia", &nvidia_root);

    // On ocivol's: two containers share a copy-on-write volume over the base.
    let base_before = common::tree_snapshot(&env.base);
    let ann = format!("dataset:/data:base={}", env.base.display());
    let pod = cri.pod("cow", "team-cow", &[("io.ocivol.volumes", &ann)]);
    let writer = cri.run(&pod, "writer", "sleep 3600");
    let reader = cri.run(&pod, "reader", "sleep 3600");
    cri.exec_ok(
        &writer,
        "echo new > /data/new.txt && echo changed > /data/file.txt",
    );
    assert_eq!(
        cri.exec_ok(&reader, "cat /data/new.txt /data/file.txt"),
        "new\nchanged\n"
    );
    assert_eq!(env.overlays("dataset"), 1, "one overlay for both");
    assert_creates_with(&dir, "ocivol-runtime", &runc_root);
    assert!(
        !cri.shim_sockets().is_empty(),
        "this release's shim sockets are where the cleanup looks for them"
    );

    cri.remove_all_pods();
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
    assert_eq!(common::tree_snapshot(&env.base), base_before);
    let sockets = cri.shim_socket_candidates();
    drop(cri);
    let left: Vec<&PathBuf> = sockets.iter().filter(|s| s.exists()).collect();
    assert!(left.is_empty(), "shim sockets left: {left:?}");

    // --remove gives the file back byte for byte.
    let out = setup(&config, &binary, &["--remove"]);
    ok(&out, "ocivol setup containerd --remove");
    assert_eq!(fs::read_to_string(&config).unwrap(), original);
}

#[test]
fn setup_on_a_v2_node_config_runs_every_handler_on_containerd_1_6() {
    setup_runs_every_handler(
        "setup_on_a_v2_node_config_runs_every_handler_on_containerd_1_6",
        Some(releases::installed()),
        Layout::V2,
    );
}

#[test]
fn setup_on_a_v2_node_config_runs_every_handler_on_containerd_1_7() {
    let test = "setup_on_a_v2_node_config_runs_every_handler_on_containerd_1_7";
    if common::require_root(test).is_none() {
        return;
    }
    setup_runs_every_handler(test, releases::fetched("1.7"), Layout::V2);
}

#[test]
fn setup_on_a_v2_node_config_runs_every_handler_on_containerd_2_1() {
    let test = "setup_on_a_v2_node_config_runs_every_handler_on_containerd_2_1";
    if common::require_root(test).is_none() {
        return;
    }
    setup_runs_every_handler(test, releases::fetched("2.1"), Layout::V2);
}

#[test]
fn setup_on_a_v3_node_config_runs_every_handler_on_containerd_2_1() {
    let test = "setup_on_a_v3_node_config_runs_every_handler_on_containerd_2_1";
    if common::require_root(test).is_none() {
        return;
    }
    setup_runs_every_handler(test, releases::fetched("2.1"), Layout::V3);
}

/// The v3 drop-in's tables, as docs/INSTALL.md told users to merge them (without its
/// `version` line).
fn v3_drop_in_tables() -> String {
    include_str!("../packaging/containerd/ocivol-v3.toml")
        .lines()
        .filter(|l| !l.starts_with("version"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn by_hand_the_v3_drop_in_appended_to_a_v2_config_drops_handlers_on_containerd_2_1() {
    let test = "by_hand_the_v3_drop_in_appended_to_a_v2_config_drops_handlers_on_containerd_2_1";
    if common::require_root(test).is_none() {
        return;
    }
    let Some(release) = releases::fetched("2.1") else {
        return;
    };
    let Some(env) = Env::new(test) else { return };
    let d = Cri::dir_of(&env);
    runc_script(&d, "runc", "runc");
    runc_script(&d, "nvidia", "nvidia-container-runtime");
    let config = d.join("config.toml");
    let by_hand = format!("{}\n{}", v2_node(&d), v3_drop_in_tables());
    let cri = Cri::start_with(&env, &release.bin, |_, _| {
        fs::write(&config, &by_hand).unwrap();
    });
    // The daemon starts, says only that it converted the file, and has no nvidia handler.
    let e = cri
        .run_pod_on("nvidia", cri.pod_config("gpu", "team-gpu", &[]))
        .err()
        .expect("a pod on nvidia fails");
    assert!(
        e.message()
            .contains("no runtime for \"nvidia\" is configured"),
        "{}",
        e.message()
    );
    assert!(cri.log().contains("Configuration migrated from version 2"));
    drop(cri);
    let (dumped, _) = dump(&release, &config);
    let all = handlers(&release, &dumped);
    // What containerd 2.1 makes of it: the v3 section the drop-in brought is taken as the whole
    // truth, and the v2 section's handlers and runc's options are not carried over.
    assert!(
        !all.contains_key("nvidia"),
        "the nvidia handler vanished: {all:#?}"
    );
    let runc = &all["runc"];
    assert_eq!(
        runc.get("options.SystemdCgroup").map(String::as_str),
        Some("false")
    );
    assert_eq!(runc.get("options.Root").map(String::as_str), Some("\"\""));
    assert!(all.contains_key("ocivol"));
    // ocivol setup refuses that file, saying why.
    let out = setup(&config, Path::new("/usr/local/bin/ocivol-runtime"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "says `version = 2` but has a `plugins.\"io.containerd.cri.v1.runtime\"` section"
        ),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fs::read_to_string(&config).unwrap(), by_hand, "untouched");
}

#[test]
fn by_hand_imports_of_the_v3_drop_in_from_a_v2_config_ignore_its_cri_section_on_containerd_2_1() {
    let test = "by_hand_imports_of_the_v3_drop_in_from_a_v2_config_ignore_its_cri_section_on_containerd_2_1";
    if common::require_root(test).is_none() {
        return;
    }
    let Some(release) = releases::fetched("2.1") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("config.toml");
    fs::write(
        d.join("ocivol-v3.toml"),
        include_str!("../packaging/containerd/ocivol-v3.toml"),
    )
    .unwrap();
    let by_hand = format!(
        "imports = [\"{}/ocivol-v3.toml\"]\n{}",
        d.display(),
        v2_node(d)
    );
    fs::write(&config, &by_hand).unwrap();
    let (dumped, warnings) = dump(&release, &config);
    let all = handlers(&release, &dumped);
    // The main file's whole CRI section is ignored: its handlers, runc's options, the sandbox
    // image, restrict_oom_score_adj and the CNI directories, with only "unknown key" warnings.
    assert!(!all.contains_key("nvidia"), "{all:#?}");
    assert_eq!(
        all["runc"].get("options.SystemdCgroup").map(String::as_str),
        Some("false")
    );
    assert!(all.contains_key("ocivol"));
    let doc: toml_edit::DocumentMut = dumped.parse().unwrap();
    let sandbox = doc["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"]
        .as_str()
        .unwrap();
    assert_ne!(sandbox, IMAGE, "the main file's sandbox_image is ignored");
    assert_eq!(
        doc["plugins"]["io.containerd.cri.v1.runtime"]["restrict_oom_score_adj"].as_bool(),
        Some(false)
    );
    assert!(
        warnings.contains("Ignoring unknown key in TOML for plugin")
            && warnings.contains("key=sandbox_image"),
        "{warnings}"
    );
    let out = setup(&config, Path::new("/usr/local/bin/ocivol-runtime"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("(version 3): containerd silently ignores"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn setup_podman_edits_containers_conf_that_real_podman_then_runs_with() {
    let Some(env) = Env::new("setup_podman_edits_containers_conf_that_real_podman_then_runs_with")
    else {
        return;
    };
    // podman gives the runtime no environment of its own: a script points ocivol at this test's
    // config and state, as /etc/ocivol/config.toml's root and run_root would on a host.
    let script = env.dir.path().join("bin/ocivol-runtime");
    fs::create_dir_all(script.parent().unwrap()).unwrap();
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{OCIVOL}' --config '{}' --root '{}' --run-root '{}' runtime \"$@\"\n",
            env.config.display(),
            env.root.display(),
            env.run_root.display(),
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    // A host's containers.conf with settings and comments of its own.
    let conf = env.dir.path().join("containers.conf");
    let original = "# the admin's containers.conf\n[containers]\n# keep the host's time zone\ntz = \"local\"\n\n[engine]\nevents_logger = \"file\"\n";
    fs::write(&conf, original).unwrap();
    let args = [
        "setup",
        "podman",
        "--config",
        conf.to_str().unwrap(),
        "--runtime-path",
        script.to_str().unwrap(),
    ];
    ok(&ocivol(&args), "ocivol setup podman");
    let edited = fs::read_to_string(&conf).unwrap();
    for line in original.lines().filter(|l| !l.is_empty()) {
        assert!(edited.contains(line), "{line:?} kept: {edited}");
    }
    assert_eq!(
        fs::read_to_string(conf.with_file_name("containers.conf.ocivol-backup")).unwrap(),
        original
    );
    ok(&ocivol(&args), "setup again");
    assert_eq!(
        fs::read_to_string(&conf).unwrap(),
        edited,
        "a second run changes nothing"
    );

    // Real podman reads the edited file and runs a container through ocivol.
    let ann = format!("io.ocivol.volumes=psetup:/data:base={}", env.base.display());
    let out = env.podman_run_ocivol(&conf, &ann, &["cat", "/data/file.txt"]);
    assert_eq!(ok(&out, "podman --runtime ocivol run"), "from the base\n");
    assert_eq!((env.users("psetup"), env.overlays("psetup")), (0, 0));

    let mut remove = args.to_vec();
    remove.push("--remove");
    ok(&ocivol(&remove), "setup podman --remove");
    assert_eq!(
        fs::read_to_string(&conf).unwrap(),
        original,
        "--remove restores the file"
    );
}
