use super::*;

/// A node's config.toml as kubeadm guides and GPU operators leave it: runc with SystemdCgroup
/// and a Root, a second handler, comments everywhere.
pub const V2_NODE: &str = r#"# containerd config of a node (hand-written)
version = 2
root = "/var/lib/containerd"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9" # the pause image
    restrict_oom_score_adj = true

    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"

      # The default handler: systemd cgroups, as the kubelet's cgroupDriver.
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        privileged_without_host_devices = false

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true
          Root = "/run/containerd/runc-root"

      # GPUs
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]
          BinaryName = "/usr/bin/nvidia-container-runtime"
          SystemdCgroup = true

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
      conf_dir = "/etc/cni/net.d"

# end of file
"#;

pub const V3_NODE: &str = r#"version = 3
root = "/var/lib/containerd"

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'

  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false

    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
          runtime_type = 'io.containerd.runc.v2'
          sandboxer = 'podsandbox'

          [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
            SystemdCgroup = true
            Root = '/run/containerd/runc-root'

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
"#;

fn opts() -> Options {
    Options {
        runtime_path: PathBuf::from("/usr/local/bin/ocivol-runtime"),
        new_file_version: Version::V2,
    }
}

fn p() -> &'static Path {
    Path::new("/etc/containerd/config.toml")
}

fn setup(text: Option<&str>) -> String {
    let mut notes = Vec::new();
    add(p(), text, &opts(), &mut notes).unwrap_or_else(|e| panic!("{e}"))
}

fn refusal(text: &str) -> String {
    match add(p(), Some(text), &opts(), &mut Vec::new()) {
        Err(SetupError::Refused(m)) => m,
        other => panic!("not refused: {other:?}"),
    }
}

/// The lines of `after` that are not in `before`, in order, when every line of `before` is
/// kept in order (a diff with insertions only); panics otherwise.
fn inserted_lines(before: &str, after: &str) -> Vec<String> {
    let diff = similar::TextDiff::from_lines(before, after);
    let mut added = Vec::new();
    for change in diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Delete => panic!("a line was lost or changed: {change:?}"),
            similar::ChangeTag::Insert => added.push(change.value().to_string()),
            similar::ChangeTag::Equal => {}
        }
    }
    added
}

#[test]
fn v2_setup_keeps_every_byte_and_copies_runcs_options() {
    let after = setup(Some(V2_NODE));
    let added = inserted_lines(V2_NODE, &after).concat();
    assert_eq!(
        added.trim(),
        r#"# Added by ocivol setup: the runtime handler "ocivol" (RuntimeClass handler: ocivol), runc's with ocivol-runtime as its binary. `ocivol setup containerd --remove` takes it out.
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.ocivol]
  runtime_type = "io.containerd.runc.v2"
  privileged_without_host_devices = false
  pod_annotations = ["io.ocivol.*", "io.ocivol.*/*"]
  container_annotations = ["io.ocivol.*", "io.ocivol.*/*"]

  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.ocivol.options]
    SystemdCgroup = true
    Root = "/run/containerd/runc-root"
    BinaryName = "/usr/local/bin/ocivol-runtime""#
    );
    // The handler comes after the file's last handler, before the next section.
    let at = after.find("runtimes.ocivol]").unwrap();
    assert!(after.find("runtimes.nvidia.options]").unwrap() < at);
    assert!(at < after.find(".cni]").unwrap());
    // It parses to what containerd needs.
    let h = inspect(p(), &after).unwrap();
    assert_eq!(h.version, Some(Version::V2));
    let ocivol = h.ocivol.unwrap();
    assert_eq!(
        options_of(&ocivol),
        [
            ("SystemdCgroup".to_string(), "true".to_string()),
            ("Root".into(), "\"/run/containerd/runc-root\"".into()),
            (
                "BinaryName".into(),
                "\"/usr/local/bin/ocivol-runtime\"".into()
            ),
        ]
    );
}

#[test]
fn setup_twice_changes_nothing_and_remove_restores_the_file_exactly() {
    for original in [V2_NODE, V3_NODE] {
        let once = setup(Some(original));
        assert_ne!(once, original);
        let twice = setup(Some(&once));
        assert_eq!(twice, once, "idempotent");
        let removed = remove(p(), &once, &mut Vec::new()).unwrap();
        assert_eq!(removed.as_deref(), Some(original), "remove restores it");
        // Removing from a file setup never touched changes nothing.
        assert_eq!(
            remove(p(), original, &mut Vec::new()).unwrap().as_deref(),
            Some(original)
        );
    }
}

#[test]
fn v3_setup_uses_the_v3_plugin_and_keeps_runcs_sandboxer() {
    let after = setup(Some(V3_NODE));
    let added = inserted_lines(V3_NODE, &after).concat();
    assert!(
        added.contains("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.ocivol]\n"),
        "{added}"
    );
    assert!(added.contains("  sandboxer = \"podsandbox\"\n"), "{added}");
    assert!(added.contains("    SystemdCgroup = true\n"), "{added}");
    assert!(!added.contains("grpc.v1.cri"), "{added}");
    let h = inspect(p(), &after).unwrap();
    assert_eq!(h.version, Some(Version::V3));
    assert!(h.ocivol.is_some() && h.runc.is_some());
}

#[test]
fn a_file_without_runc_gets_runc_too_and_remove_takes_both() {
    let debian = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"/var/lib/containerd/opt\"\n";
    let after = setup(Some(debian));
    let added = inserted_lines(debian, &after).concat();
    assert!(
        added.starts_with("\n# Added by ocivol setup: a config with a runtimes table of its own no longer has containerd's built-in runc handler, the CRI's default.\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"),
        "{added}"
    );
    assert!(added.find("runtimes.runc]").unwrap() < added.find("runtimes.ocivol]").unwrap());
    assert_eq!(setup(Some(&after)), after);
    assert_eq!(
        remove(p(), &after, &mut Vec::new()).unwrap().as_deref(),
        Some(debian)
    );
    // A runc that was changed after setup added it stays.
    let changed = after.replace(
        "  runtime_type = \"io.containerd.runc.v2\"\n\n# Added by ocivol setup: the runtime",
        "  runtime_type = \"io.containerd.runc.v2\"\n  privileged_without_host_devices = true\n\n# Added by ocivol setup: the runtime",
    );
    assert_ne!(changed, after);
    let mut notes = Vec::new();
    let kept = remove(p(), &changed, &mut notes).unwrap().unwrap();
    assert!(kept.contains("runtimes.runc]") && !kept.contains("runtimes.ocivol"));
    assert_eq!(notes.len(), 1, "{notes:?}");
}

#[test]
fn a_missing_or_empty_file_is_created_with_a_version_and_removed_again() {
    let created = setup(None);
    assert!(
        created.starts_with("# Added by ocivol setup (this file did not exist): config version 2 is what containerd 1.x reads as it is.\nversion = 2\n"),
        "{created}"
    );
    let h = inspect(p(), &created).unwrap();
    assert_eq!(h.version, Some(Version::V2));
    assert!(h.runc.is_some() && h.ocivol.is_some());
    assert_eq!(setup(Some(&created)), created);
    assert_eq!(remove(p(), &created, &mut Vec::new()).unwrap(), None);

    let v3 = add(
        p(),
        None,
        &Options {
            new_file_version: Version::V3,
            ..opts()
        },
        &mut Vec::new(),
    )
    .unwrap();
    assert!(
        v3.contains("version = 3\n") && v3.contains("cri.v1.runtime\".containerd.runtimes.ocivol]")
    );

    for empty in ["", "\n", "# nothing yet\n"] {
        let after = setup(Some(empty));
        assert!(after.contains("(this file had no settings)"), "{after}");
        assert_eq!(
            remove(p(), &after, &mut Vec::new()).unwrap().as_deref(),
            Some(empty)
        );
    }
}

#[test]
fn a_changed_runc_updates_the_handler_in_place() {
    let once = setup(Some(V2_NODE));
    let changed = once.replace(
        "          SystemdCgroup = true\n          Root",
        "          SystemdCgroup = false\n          Root",
    );
    let again = setup(Some(&changed));
    assert_ne!(again, changed);
    let h = inspect(p(), &again).unwrap();
    assert!(options_of(&h.ocivol.unwrap()).contains(&("SystemdCgroup".into(), "false".into())));
    // Same place, same shape: only the option's line differs from the first setup.
    assert_eq!(
        again.replace("SystemdCgroup = false", "SystemdCgroup = true"),
        once
    );
}

#[test]
fn the_runtime_path_and_runcs_own_patterns_are_kept() {
    let text = V2_NODE.replace(
        "        privileged_without_host_devices = false\n",
        "        privileged_without_host_devices = false\n        pod_annotations = [\"example.com/*\"]\n",
    );
    let after = add(
        p(),
        Some(&text),
        &Options {
            runtime_path: PathBuf::from("/opt/ocivol/bin/ocivol-runtime"),
            ..opts()
        },
        &mut Vec::new(),
    )
    .unwrap();
    let ocivol = inspect(p(), &after).unwrap().ocivol.unwrap();
    assert_eq!(
        handler_strings(&ocivol, "pod_annotations"),
        ["example.com/*", "io.ocivol.*", "io.ocivol.*/*"]
    );
    assert_eq!(
        handler_strings(&ocivol, "container_annotations"),
        ["io.ocivol.*", "io.ocivol.*/*"]
    );
    assert!(after.contains("BinaryName = \"/opt/ocivol/bin/ocivol-runtime\""));
}

#[test]
fn files_setup_cannot_edit_safely_are_refused_with_what_to_do() {
    let m = refusal("version = 2\n[plugins\n");
    assert!(
        m.contains("is not valid TOML") && m.contains("fix it by hand"),
        "{m}"
    );
    let m = refusal("version = 4\n");
    assert!(
        m.contains("config version 4 is not one ocivol setup knows"),
        "{m}"
    );
    let m = refusal("[plugins.cri.containerd]\n  snapshotter = \"overlayfs\"\n");
    assert!(
        m.contains("version 1 config") && m.contains("convert it to version 2"),
        "{m}"
    );
    // The silent trap itself: the v3 drop-in appended to a v2 file.
    let trapped = format!(
        "{V2_NODE}\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.ocivol]\n  runtime_type = \"io.containerd.runc.v2\"\n"
    );
    let m = refusal(&trapped);
    assert!(
        m.contains(
            "says `version = 2` but has a `plugins.\"io.containerd.cri.v1.runtime\"` section"
        ) && m.contains("ignores every v2 handler"),
        "{m}"
    );
    let m = refusal(&format!(
        "{V3_NODE}\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.x]\n  runtime_type = \"io.containerd.runc.v2\"\n"
    ));
    assert!(
        m.contains("a version 2 table that containerd 2 ignores"),
        "{m}"
    );
    let m = refusal(
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  runtimes = { runc = { runtime_type = \"io.containerd.runc.v2\" } }\n",
    );
    assert!(m.contains("inline table"), "{m}");
}

#[test]
fn imports_of_another_version_or_with_a_cri_section_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config.toml");
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("conf.d/10-v3.toml"),
        "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = 'native'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("same.toml"),
        "version = 2\n[debug]\n  level = 'info'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cri.toml"),
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = 'x'\n",
    )
    .unwrap();
    let with = |imports: &str| format!("version = 2\nimports = [{imports}]\n");
    let run = |text: &str| add(&main, Some(text), &opts(), &mut Vec::new());

    // Same version, no CRI section: fine (relative to the config's directory).
    assert!(run(&with("\"same.toml\"")).is_ok());
    // A missing file names nothing, as for containerd.
    assert!(run(&with("\"/nonexistent/x.toml\"")).is_ok());
    let m = match run(&with("\"conf.d/*.toml\"")) {
        Err(SetupError::Refused(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(
        m.contains("(version 2) imports")
            && m.contains("10-v3.toml (version 3)")
            && m.contains("silently ignores"),
        "{m}"
    );
    let m = match run(&with(&format!(
        "\"{}\"",
        dir.path().join("cri.toml").display()
    ))) {
        Err(SetupError::Refused(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(
        m.contains("has a `plugins.\"io.containerd.grpc.v1.cri\"` section of its own")
            && m.contains("ocivol setup containerd --config"),
        "{m}"
    );
}

#[test]
fn containerd_versions_choose_the_layout_of_a_new_file() {
    assert_eq!(
        parse_major("containerd github.com/containerd/containerd/v2 2.1.9+unknown \n"),
        Some(2)
    );
    assert_eq!(
        parse_major(
            "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n"
        ),
        Some(1)
    );
    assert_eq!(Version::for_containerd(Some(2)), Version::V3);
    assert_eq!(Version::for_containerd(Some(1)), Version::V2);
    assert_eq!(Version::for_containerd(None), Version::V2);
}
