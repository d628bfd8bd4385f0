//! Packaging: `make install`/`uninstall`, the Debian package, and the engine drop-ins with the
//! real engines.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::containerd::Containerd;
use common::{Env, OCIVOL, ok};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// `make TARGET VARS…` in the repository, installing the binary this test run built (so that
/// make never runs cargo inside cargo test).
fn make(target: &str, vars: &[String]) -> std::process::Output {
    Command::new("make")
        .arg("--no-print-directory")
        .arg("-C")
        .arg(REPO)
        .arg(target)
        .arg(format!("INSTALL_BIN={OCIVOL}"))
        .args(vars)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Every file and symlink under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(&e.path(), base, out);
            } else {
                out.push(e.path().strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

const INSTALLED: &[&str] = &[
    "etc/ocivol/config.toml",
    "usr/local/bin/ocivol",
    "usr/local/bin/ocivol-runtime",
    "usr/local/lib/systemd/system/ocivol-gc.service",
    "usr/local/lib/systemd/system/ocivol-gc.timer",
    "usr/local/share/bash-completion/completions/ocivol",
    "usr/local/share/fish/vendor_completions.d/ocivol.fish",
    "usr/local/share/ocivol/containerd/ocivol-v3.toml",
    "usr/local/share/ocivol/containerd/ocivol.toml",
    "usr/local/share/ocivol/crio/99-ocivol.conf",
    "usr/local/share/ocivol/docker/daemon.json",
    "usr/local/share/ocivol/hooks.d/ocivol.json",
    "usr/local/share/ocivol/hooks.d/podman/ocivol-precreate.json",
    "usr/local/share/ocivol/podman/ocivol.conf",
    "usr/local/share/zsh/site-functions/_ocivol",
];

/// `dpkg ARGS`, which must succeed; its output.
fn dpkg(args: &[&str], what: &str) -> String {
    ok(&Command::new("dpkg").args(args).output().unwrap(), what)
}

/// `dpkg -i DEB`, which must succeed; its output.
fn dpkg_install(deb: &Path, what: &str) -> String {
    ok(
        &Command::new("dpkg").arg("-i").arg(deb).output().unwrap(),
        what,
    )
}

#[test]
fn make_install_installs_exactly_the_listed_files_and_uninstall_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let destdir = format!("DESTDIR={}", dir.path().display());
    ok(
        &make("install", std::slice::from_ref(&destdir)),
        "make install",
    );
    let got = files(dir.path());
    let man: Vec<&String> = got
        .iter()
        .filter(|f| f.starts_with("usr/local/share/man/man1/"))
        .collect();
    let rest: Vec<&str> = got
        .iter()
        .filter(|f| !f.contains("/man/man1/"))
        .map(String::as_str)
        .collect();
    assert_eq!(rest, INSTALLED);
    for page in [
        "ocivol.1",
        "ocivol-runtime.1",
        "ocivol-hook.1",
        "ocivol-completions.1",
    ] {
        assert!(
            man.iter().any(|m| m.ends_with(page)),
            "man page {page}: {man:?}"
        );
    }
    let root = dir.path();
    let link = fs::read_link(root.join("usr/local/bin/ocivol-runtime")).unwrap();
    assert_eq!(link, PathBuf::from("ocivol"));
    assert!(
        fs::metadata(root.join("usr/local/bin/ocivol"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111
            != 0
    );
    let hook: serde_json::Value = serde_json::from_slice(
        &fs::read(root.join("usr/local/share/ocivol/hooks.d/ocivol.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        hook["hook"]["path"], "/usr/local/bin/ocivol",
        "paths follow BINDIR, not DESTDIR"
    );
    let unit =
        fs::read_to_string(root.join("usr/local/lib/systemd/system/ocivol-gc.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/ocivol gc"),
        "{unit}"
    );
    let bash = fs::read_to_string(root.join("usr/local/share/bash-completion/completions/ocivol"))
        .unwrap();
    assert!(bash.contains("complete") && bash.contains("ocivol"));
    // The shipped config is valid and is the defaults.
    let cfg = fs::read_to_string(root.join("etc/ocivol/config.toml")).unwrap();
    assert_eq!(
        ocivol::config::Config::parse(&cfg).unwrap(),
        ocivol::config::Config::default()
    );
    // The config page and the completions know the config command.
    assert!(
        man.iter().any(|m| m.ends_with("ocivol-config.1")),
        "man page ocivol-config.1: {man:?}"
    );
    assert!(
        bash.contains("--convert"),
        "bash completion of ocivol config"
    );

    // A changed config survives a second install and the uninstall.
    fs::write(
        root.join("etc/ocivol/config.toml"),
        "[policy]\nauto_create = 1\n",
    )
    .unwrap();
    let out = make("install", std::slice::from_ref(&destdir));
    assert!(
        String::from_utf8_lossy(&ok(&out, "make install again").into_bytes()).contains("keeping")
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/ocivol/config.toml")).unwrap(),
        "[policy]\nauto_create = 1\n"
    );
    ok(
        &make("uninstall", std::slice::from_ref(&destdir)),
        "make uninstall",
    );
    assert_eq!(
        files(dir.path()),
        ["etc/ocivol/config.toml"],
        "only the changed config is left"
    );

    // With the shipped config, uninstall removes everything.
    ok(
        &make("install", std::slice::from_ref(&destdir)),
        "make install",
    );
    fs::remove_file(root.join("etc/ocivol/config.toml")).unwrap();
    ok(
        &make("install", std::slice::from_ref(&destdir)),
        "make install",
    );
    ok(
        &make("uninstall", std::slice::from_ref(&destdir)),
        "make uninstall",
    );
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}

#[test]
fn make_install_over_an_old_config_json_converts_it_into_config_toml() {
    let dir = tempfile::tempdir().unwrap();
    let destdir = format!("DESTDIR={}", dir.path().display());
    let etc = dir.path().join("etc/ocivol");
    fs::create_dir_all(&etc).unwrap();
    // An admin's config of an older release: JSON with comment lines.
    let old = "// mine\n{\n  \"runtime\": \"/usr/sbin/runc\",\n  \"policy\": {\"allowed_bind_sources\": [{\"path\": \"/srv/x\", \"readonly\": true}], \"auto_create\": false}\n}\n";
    fs::write(etc.join("config.json"), old).unwrap();
    let out = ok(
        &make("install", std::slice::from_ref(&destdir)),
        "make install",
    );
    assert!(out.contains("converted"), "{out}");
    let text = fs::read_to_string(etc.join("config.toml")).unwrap();
    let c = ocivol::config::Config::parse(&text).unwrap();
    assert_eq!(c.runtime, "/usr/sbin/runc");
    assert!(!c.policy.auto_create);
    let b = &c.policy.allowed_bind_sources[0];
    assert!(
        b.path == Path::new("/srv/x") && b.force.readonly && !b.force.nosuid,
        "{text}"
    );
    // The old file is kept, under a name ocivol does not look at.
    assert!(!etc.join("config.json").exists());
    assert_eq!(
        fs::read_to_string(etc.join("config.json.old")).unwrap(),
        old
    );
    assert_eq!(
        fs::metadata(etc.join("config.toml"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    // The converted config is the admin's: uninstall keeps it.
    ok(
        &make("uninstall", std::slice::from_ref(&destdir)),
        "make uninstall",
    );
    let mut left = files(dir.path());
    left.sort();
    assert_eq!(
        left,
        ["etc/ocivol/config.json.old", "etc/ocivol/config.toml"]
    );
}

/// Removes the package if the test installed it, also when the test fails.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "ocivol"]).output();
    }
}

#[test]
fn make_deb_builds_a_package_that_installs_a_working_ocivol_and_removes_cleanly() {
    if common::require_root(
        "make_deb_builds_a_package_that_installs_a_working_ocivol_and_removes_cleanly",
    )
    .is_none()
    {
        return;
    }
    if Command::new("dpkg")
        .args(["-s", "ocivol"])
        .output()
        .unwrap()
        .status
        .success()
    {
        eprintln!(
            "make_deb_…: skipped: an ocivol package is installed on this machine; not touching it"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    ok(
        &make("deb", &[format!("DEB_DIR={}", dir.path().display())]),
        "make deb",
    );
    let debs: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let contents = ok(
        &Command::new("dpkg-deb")
            .arg("-c")
            .arg(&debs[0])
            .output()
            .unwrap(),
        "dpkg-deb -c",
    );
    for f in [
        "./usr/bin/ocivol",
        "./usr/bin/ocivol-runtime",
        "./etc/ocivol/config.toml",
        "./lib/systemd/system/ocivol-gc.timer",
    ] {
        assert!(contents.contains(f), "{f} in the package:\n{contents}");
    }
    let _guard = Installed;
    dpkg_install(&debs[0], "dpkg -i");
    let version = ok(
        &Command::new("/usr/bin/ocivol")
            .arg("--version")
            .output()
            .unwrap(),
        "ocivol --version",
    );
    assert!(version.starts_with("ocivol "), "{version}");
    // doctor checks the host's default state directories by using them (flock, a trial overlay):
    // remove them afterwards if they were not there before.
    let state_dirs = ["/var/lib/ocivol", "/run/ocivol"];
    let existed: Vec<bool> = state_dirs.iter().map(|d| Path::new(d).exists()).collect();
    let doctor = Command::new("/usr/bin/ocivol")
        .arg("doctor")
        .output()
        .unwrap();
    for (d, was) in state_dirs.iter().zip(existed) {
        if !was {
            let _ = fs::remove_dir_all(d);
        }
    }
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.lines().count() >= 5,
        "doctor reports each check: {report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.contains("runtime: /usr/sbin/runc")),
        "{report}"
    );
    assert!(
        doctor.status.success() != report.lines().any(|l| l.starts_with("fail")),
        "doctor's exit status matches its report: {report}"
    );
    // The installed runc name reaches the real runtime through the installed config.
    let runc = ok(
        &Command::new("/usr/bin/ocivol-runtime")
            .arg("--version")
            .output()
            .unwrap(),
        "ocivol-runtime --version",
    );
    assert!(runc.starts_with("runc version"), "{runc}");
    let hook: serde_json::Value =
        serde_json::from_slice(&fs::read("/usr/share/ocivol/hooks.d/ocivol.json").unwrap())
            .unwrap();
    assert_eq!(hook["hook"]["path"], "/usr/bin/ocivol");
    dpkg(&["-r", "ocivol"], "dpkg -r");
    assert!(
        !Path::new("/usr/bin/ocivol").exists() && !Path::new("/usr/bin/ocivol-runtime").exists()
    );
    assert!(!Path::new("/usr/share/ocivol").exists());
    dpkg(&["--purge", "ocivol"], "dpkg --purge");
    assert!(
        !Path::new("/etc/ocivol/config.toml").exists(),
        "purge removes the conffile"
    );

    // An upgrade from a release whose config was /etc/ocivol/config.json: the package brings a
    // config.toml that sets nothing, and its postinst carries the old settings over.
    if Path::new("/etc/ocivol").exists() {
        eprintln!("make_deb_…: the upgrade part skipped: /etc/ocivol exists on this machine");
        return;
    }
    struct EtcOcivol;
    impl Drop for EtcOcivol {
        fn drop(&mut self) {
            let _ = Command::new("dpkg").args(["--purge", "ocivol"]).output();
            let _ = fs::remove_dir_all("/etc/ocivol");
        }
    }
    let _etc = EtcOcivol;
    fs::create_dir("/etc/ocivol").unwrap();
    let old = "// the admin's\n{\"policy\": {\"auto_create\": false, \"allowed_bases\": [\"/srv/datasets\"]}}\n";
    fs::write("/etc/ocivol/config.json", old).unwrap();
    let out = dpkg_install(&debs[0], "dpkg -i over an old config.json");
    assert!(
        out.contains("ocivol: converted /etc/ocivol/config.json"),
        "{out}"
    );
    let c = ocivol::config::Config::parse(&fs::read_to_string("/etc/ocivol/config.toml").unwrap())
        .unwrap();
    assert!(!c.policy.auto_create);
    assert_eq!(
        c.policy.allowed_bases,
        [ocivol::config::AllowedPath::new("/srv/datasets")]
    );
    assert!(!Path::new("/etc/ocivol/config.json").exists());
    assert_eq!(
        fs::read_to_string("/etc/ocivol/config.json.dpkg-old").unwrap(),
        old
    );
    let shown = ok(
        &Command::new("/usr/bin/ocivol")
            .arg("config")
            .env_remove("OCIVOL_CONFIG")
            .output()
            .unwrap(),
        "ocivol config after the upgrade",
    );
    assert!(
        shown.contains("auto_create = false") && shown.contains("# /etc/ocivol/config.toml:"),
        "{shown}"
    );

    // The old default file (it says what config.toml says) is left alone, and ocivol runs.
    dpkg(&["--purge", "ocivol"], "dpkg --purge");
    let _ = fs::remove_dir_all("/etc/ocivol");
    fs::create_dir("/etc/ocivol").unwrap();
    let default = "{\"runtime\": \"runc\", \"policy\": {}}\n";
    fs::write("/etc/ocivol/config.json", default).unwrap();
    let out = dpkg_install(&debs[0], "dpkg -i over the old default config.json");
    assert!(!out.contains("converted"), "{out}");
    assert_eq!(
        fs::read_to_string("/etc/ocivol/config.json").unwrap(),
        default
    );
    assert_eq!(
        fs::read_to_string("/etc/ocivol/config.toml").unwrap(),
        include_str!("../packaging/config.toml"),
        "the package's commented config.toml is kept"
    );
    ok(
        &Command::new("/usr/bin/ocivol")
            .arg("config")
            .env_remove("OCIVOL_CONFIG")
            .output()
            .unwrap(),
        "ocivol config beside the old default config.json",
    );
}

/// Installs into a temp DESTDIR for the engine tests.
fn install_to(env: &Env) -> PathBuf {
    let dest = env.dir.path().join("installed");
    ok(
        &make("install", &[format!("DESTDIR={}", dest.display())]),
        "make install",
    );
    dest
}

#[test]
fn containerd_with_the_drop_in_merged_has_the_handler_and_runs_a_volume() {
    let Some(env) =
        Env::new("containerd_with_the_drop_in_merged_has_the_handler_and_runs_a_volume")
    else {
        return;
    };
    let dest = install_to(&env);
    let drop_in =
        fs::read_to_string(dest.join("usr/local/share/ocivol/containerd/ocivol.toml")).unwrap();
    // Merged into the daemon's config.toml: its tables, without its own `version` line.
    let tables: String = drop_in
        .lines()
        .filter(|l| !l.starts_with("version"))
        .collect::<Vec<_>>()
        .join("\n");
    let ctrd = Containerd::start_with(&env, &tables, true);
    let plugins = ok(
        &ctrd.ctr(&["plugins", "ls"]).output().unwrap(),
        "ctr plugins ls",
    );
    let cri = plugins
        .lines()
        .find(|l| l.contains("grpc.v1") && l.split_whitespace().nth(1) == Some("cri"));
    let log = fs::read_to_string(ctrd.dir.join("daemon.log")).unwrap_or_default();
    let why: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("failed to load plugin io.containerd.grpc.v1.cri"))
        .collect();
    assert!(
        cri.is_some_and(|l| l.trim_end().ends_with("ok")),
        "the CRI plugin loads with the drop-in: {cri:?} {why:?}"
    );
    let dump = ok(
        &Command::new("containerd")
            .arg("--config")
            .arg(ctrd.config_path())
            .args(["config", "dump"])
            .output()
            .unwrap(),
        "containerd config dump",
    );
    let handler = dump
        .split("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.ocivol]")
        .nth(1)
        .expect("the ocivol handler is in the dump");
    let handler = &handler[..handler
        .find("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]")
        .unwrap_or(handler.len())];
    assert!(
        handler.contains("runtime_type = \"io.containerd.runc.v2\""),
        "{handler}"
    );
    assert!(
        handler.contains("pod_annotations = [\"io.ocivol.*\", \"io.ocivol.*/*\"]"),
        "{handler}"
    );
    assert!(
        handler.contains("container_annotations = [\"io.ocivol.*\", \"io.ocivol.*/*\"]"),
        "{handler}"
    );
    assert!(
        handler.contains("BinaryName = \"/usr/local/bin/ocivol-runtime\""),
        "{handler}"
    );

    // The installed files run a container with a volume.
    let wrapper = dest.join("usr/local/bin/ocivol-runtime");
    let ann = format!("io.ocivol.volumes=pkg:/data:base={}", env.base.display());
    let runc_binary = format!("--runc-binary={}", wrapper.display());
    let out = ctrd
        .ctr_run(&[
            "--rm",
            "--runtime",
            "io.containerd.runc.v2",
            &runc_binary,
            "--annotation",
            &ann,
        ])
        .arg(&env.rootfs)
        .args(["pkg-ctrd", "cat", "/data/file.txt"])
        .output()
        .unwrap();
    assert_eq!(
        ok(&out, "ctr run with the installed wrapper"),
        "from the base\n"
    );
    assert_eq!((env.users("pkg"), env.overlays("pkg")), (0, 0));
}

#[test]
fn podman_with_the_containers_conf_drop_in_runs_a_volume() {
    let Some(env) = Env::new("podman_with_the_containers_conf_drop_in_runs_a_volume") else {
        return;
    };
    let dest = install_to(&env);
    // podman gives the runtime no environment of its own: a two-line script points the installed
    // binary at this test's state, as /etc/ocivol/config.toml would on a real host.
    let script = env.dir.path().join("bin/ocivol-runtime");
    fs::create_dir_all(script.parent().unwrap()).unwrap();
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nOCIVOL_CONFIG={} OCIVOL_ROOT={} OCIVOL_RUN_ROOT={} exec {} \"$@\"\n",
            env.config.display(),
            env.root.display(),
            env.run_root.display(),
            dest.join("usr/local/bin/ocivol-runtime").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let shipped =
        fs::read_to_string(dest.join("usr/local/share/ocivol/podman/ocivol.conf")).unwrap();
    assert!(
        shipped.contains("ocivol = [\"/usr/local/bin/ocivol-runtime\"]"),
        "{shipped}"
    );
    let conf = env.dir.path().join("containers.conf");
    fs::write(
        &conf,
        shipped.replace(
            "/usr/local/bin/ocivol-runtime",
            &script.display().to_string(),
        ),
    )
    .unwrap();

    let ann = format!("io.ocivol.volumes=pdrop:/data:base={}", env.base.display());
    let out = env.podman_run_ocivol(&conf, &ann, &["cat", "/data/file.txt"]);
    assert_eq!(ok(&out, "podman --runtime ocivol run"), "from the base\n");
    assert_eq!((env.users("pdrop"), env.overlays("pdrop")), (0, 0));
}
