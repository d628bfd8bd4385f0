//! Hostile annotations (issue 6, acceptance 1), end to end through `ocivol runtime create` with a
//! fake runtime, no root needed. Each case must be refused with one line on stderr (and the same
//! line in the runtime's `--log`) that names the annotation and the entry, and must leave nothing
//! behind: no state directory or file, no mount, config.json byte for byte as it was, nothing
//! changed in the directories the policy allows or outside them, and the runtime never run.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::fake_runtime::FakeRuntime;
use serde_json::{Value, json};

/// One test's world: a fake runtime that records that it ran, a policy, a bundle, and two host
/// directories: `allowed` (in the policy) and `outside` (not).
struct World(FakeRuntime);

impl std::ops::Deref for World {
    type Target = FakeRuntime;
    fn deref(&self) -> &FakeRuntime {
        &self.0
    }
}

impl World {
    fn new(policy: impl FnOnce(&Path) -> Value) -> World {
        let w = World(FakeRuntime::new("ocivol-hostile-", ""));
        for d in ["allowed/data", "outside/secret", "bundle"] {
            fs::create_dir_all(w.path(d)).unwrap();
        }
        fs::write(w.path("outside/secret/key"), "k").unwrap();
        // Traps inside the allowed directory: symlinks out of it, and to directories whose
        // resolved names would inject overlay options.
        symlink(w.path("outside"), w.path("allowed/escape")).unwrap();
        symlink("../outside/secret", w.path("allowed/relative-escape")).unwrap();
        fs::create_dir_all(w.path("allowed/x,upperdir=")).unwrap();
        symlink(w.path("allowed/x,upperdir="), w.path("allowed/comma")).unwrap();
        fs::create_dir_all(w.path("allowed/lowerdir=y")).unwrap();
        symlink(w.path("allowed/lowerdir=y"), w.path("allowed/equals")).unwrap();
        w.write_config(json!({ "policy": policy(&w.path("allowed")) }));
        w
    }

    /// Writes the bundle's config.json with this annotation value and returns its bytes.
    fn bundle(&self, volumes: &str) -> Vec<u8> {
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["true"], "cwd": "/"},
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "annotations": {"io.ocivol.volumes": volumes},
        });
        let bytes = serde_json::to_vec(&spec).unwrap();
        fs::write(self.path("bundle/config.json"), &bytes).unwrap();
        bytes
    }

    fn create(&self, id: &str) -> Output {
        self.runtime(&["--root"])
            .arg(self.path("runtime-root"))
            .arg("--log")
            .arg(self.path("log.json"))
            .args(["--log-format", "json", "create", "--bundle"])
            .arg(self.path("bundle"))
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Every path under the test's directory (symlinks not followed, with their targets and
    /// file sizes) except the log the refusal is written to.
    fn tree(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.retain(|n| !n.starts_with("log.json "));
        out.sort();
        out
    }
}

fn walk(top: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = e.path();
        let name = path.strip_prefix(top).unwrap().display().to_string();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            out.push(format!(
                "{name} -> {}",
                fs::read_link(&path).unwrap().display()
            ));
        } else if meta.is_dir() {
            out.push(format!("{name}/"));
            walk(top, &path, out);
        } else {
            out.push(format!("{name} {}", meta.len()));
        }
    }
}

/// How the error names an entry: as the parser shows it (Debug, at most 80 characters), then
/// escaped as every error line is (a backslash of the Debug form is doubled).
fn shown(entry: &str) -> String {
    let mut s: String = entry.chars().take(80).collect();
    if s.len() < entry.len() {
        s.push('…');
    }
    ocivol::commands::output::escape(&format!("{s:?}")).into_owned()
}

/// Runs one refused annotation and checks the whole contract of a refusal.
fn assert_refused(w: &World, id: &str, volumes: &str, entry: &str, reasons: &[&str]) {
    let spec_before = w.bundle(volumes);
    let _ = fs::remove_file(w.path("log.json"));
    let tree_before = w.tree();
    let mounts_before = common::mounts_under(w.dir.path());

    let out = w.create(id);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = format!("{:?}", &volumes[..volumes.len().min(120)]);
    assert_eq!(out.status.code(), Some(1), "{what}: refused: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr:?}");
    let head = format!(
        "ocivol: annotation io.ocivol.volumes: entry {}: ",
        shown(entry)
    );
    assert!(
        stderr.starts_with(&head),
        "{what}: expected {head:?} at the start of {stderr:?}"
    );
    assert!(
        reasons.iter().any(|r| stderr.contains(r)),
        "{what}: expected one of {reasons:?} in {stderr:?}"
    );
    assert!(stderr.len() < 1024, "{what}: the line stays short");
    let logged: Value =
        serde_json::from_str(fs::read_to_string(w.path("log.json")).unwrap().trim()).unwrap();
    assert_eq!(
        logged["msg"].as_str(),
        Some(stderr.trim_end()),
        "{what}: log"
    );

    assert!(!w.ran(), "{what}: the runtime must not run");
    assert!(
        !w.path("state").exists(),
        "{what}: no state made: {:?}",
        w.tree()
    );
    assert_eq!(
        fs::read(w.path("bundle/config.json")).unwrap(),
        spec_before,
        "{what}: config.json untouched"
    );
    assert_eq!(w.tree(), tree_before, "{what}: nothing made or changed");
    assert_eq!(
        common::mounts_under(w.dir.path()),
        mounts_before,
        "{what}: no mount"
    );
}

/// The policy allows one directory for bases and for binds.
fn allow_one(allowed: &Path) -> Value {
    json!({ "allowed_bases": [allowed], "allowed_bind_sources": [allowed] })
}

#[test]
fn hostile_annotations_are_refused_with_one_line_and_leave_nothing_behind() {
    let w = World::new(allow_one);
    let allowed = w.path("allowed");
    let outside = w.path("outside");
    let a = allowed.display();
    let many: Vec<String> = (0..1000).map(|i| format!("v{i}:/d{i}")).collect();
    let many = many.join(";");
    let huge = format!("v:/{}", "a".repeat(1024 * 1024));
    let name300 = format!("{}:/x", "n".repeat(300));

    // (entry after a valid "ok:/ok;", reasons the error may give)
    let cases: Vec<(String, Vec<&str>)> = vec![
        // base outside allowed_bases
        (
            format!("c:/d:base={}", outside.display()),
            vec!["not under the policy's allowed_bases"],
        ),
        // a base that is a symlink inside the allowed directory pointing out of it
        (
            format!("c:/d:base={a}/escape"),
            vec!["(it resolves to a path outside them) is not under the policy's allowed_bases"],
        ),
        (
            format!("c:/d:base={a}/escape/secret"),
            vec!["not under the policy's allowed_bases"],
        ),
        (
            format!("c:/d:base={a}/relative-escape"),
            vec!["not under the policy's allowed_bases"],
        ),
        // binds the policy does not allow
        (
            "/:/x".into(),
            vec!["not under the policy's allowed_bind_sources"],
        ),
        (
            "/etc:/x".into(),
            vec!["not under the policy's allowed_bind_sources"],
        ),
        (
            "/var/run/docker.sock:/x".into(),
            vec!["not under the policy's allowed_bind_sources"],
        ),
        (
            format!("{a}/escape:/x"),
            vec!["not under the policy's allowed_bind_sources"],
        ),
        // names
        ("..:/x".into(), vec!["invalid volume name"]),
        ("a/b:/x".into(), vec!["invalid volume name"]),
        ("-x:/x".into(), vec!["invalid volume name"]),
        (name300.clone(), vec!["300 bytes long; at most 128"]),
        ("a\0b:/x".into(), vec!["NUL"]),
        // base paths that would add overlay options
        (
            "c:/d:base=lowerdir=/x,upperdir=/etc".into(),
            vec!["not an absolute path"],
        ),
        (
            format!("c:/d:base={a}/data,upperdir=/etc"),
            vec!["unknown option \"upperdir=/etc\""],
        ),
        (format!("c:/d:base={a}/data:/etc"), vec!["too many ':'"]),
        (format!("c:/d:base={a}/lowerdir=y"), vec!["contains '='"]),
        (format!("c:/d:base={a}/x\\y"), vec!["contains '\\\\\\\\'"]),
        // ... and their resolved form, reached through a symlink with an innocent name
        // (the layers go to the kernel as fds, so these are refused for leaving the allowed
        // directory through an absolute link, not for their characters)
        (
            format!("c:/d:base={a}/comma"),
            vec!["contains ','", "resolves to a path outside them"],
        ),
        (
            format!("c:/d:base={a}/equals"),
            vec!["contains '='", "resolves to a path outside them"],
        ),
        // destinations
        ("v:relative".into(), vec!["not an absolute path"]),
        ("v:/".into(), vec!["destination is /"]),
        ("v:/proc/x".into(), vec!["under /proc"]),
        ("v:/sys".into(), vec!["under /sys"]),
        ("v:/dev/sda".into(), vec!["under /dev"]),
        ("v:/a/../../etc".into(), vec!["not a normalised path"]),
    ];
    for (i, (entry, reasons)) in cases.iter().enumerate() {
        let volumes = format!("ok:/ok;{entry}");
        assert_refused(&w, &format!("h{i}"), &volumes, entry, reasons);
    }
    // Limits: refused before any entry is looked at, so no entry is named.
    assert_refused(&w, "huge", &huge, "", &["at most 65536 are accepted"]);
    assert_refused(
        &w,
        "many",
        &many,
        "",
        &["1000 entries given", "max_volumes_per_container"],
    );
}

#[test]
fn with_the_default_policy_no_host_path_is_reachable() {
    let w = World::new(|_| json!({}));
    let a = w.path("allowed");
    let a = a.display();
    let cases: Vec<(String, &str)> = vec![
        ("/:/x".into(), "allowed_bind_sources is empty"),
        ("/etc:/x".into(), "allowed_bind_sources is empty"),
        (
            "/var/run/docker.sock:/x".into(),
            "allowed_bind_sources is empty",
        ),
        (format!("{a}/data:/x"), "allowed_bind_sources is empty"),
        (format!("c:/d:base={a}/data"), "allowed_bases is empty"),
        ("c:/d:base=/".into(), "allowed_bases is empty"),
    ];
    for (i, (entry, reason)) in cases.iter().enumerate() {
        assert_refused(
            &w,
            &format!("d{i}"),
            &format!("ok:/ok;{entry}"),
            entry,
            &[reason],
        );
    }
}

#[test]
fn ocivol_state_is_never_a_base_or_a_bind_source() {
    // Even an admin who allows / cannot hand ocivol's own state to a container.
    let w = World::new(|_| json!({ "allowed_bases": ["/"], "allowed_bind_sources": ["/"] }));
    fs::create_dir_all(w.path("state/root/volumes")).unwrap();
    fs::create_dir_all(w.path("state/run")).unwrap();
    let root = w.path("state/root");
    let run = w.path("state/run");
    for (i, entry) in [
        format!("{}:/x", root.display()),
        format!("{}/volumes:/x", root.display()),
        format!("{}:/x", run.display()),
        format!("c:/d:base={}", root.join("volumes").display()),
        format!("{}:/x", w.dir.path().display()),
    ]
    .iter()
    .enumerate()
    {
        let spec_before = w.bundle(&format!("ok:/ok;{entry}"));
        let out = w.create(&format!("s{i}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{entry}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("entry {}", shown(entry)))
                && stderr.contains("overlaps ocivol's state directory"),
            "{entry}: {stderr}"
        );
        assert!(!w.ran());
        assert_eq!(fs::read(w.path("bundle/config.json")).unwrap(), spec_before);
        assert_eq!(
            fs::read_dir(w.path("state/root/volumes")).unwrap().count(),
            0,
            "{entry}: no volume made"
        );
    }
}

#[test]
fn a_refusal_from_the_store_releases_what_earlier_entries_took() {
    // auto_create off: the anonymous volume of the first entry is taken, then the second entry
    // names a volume that does not exist. The anonymous one must be gone again.
    let w = World::new(|_| json!({ "auto_create": false }));
    let spec_before = w.bundle("/anon;missing:/m");
    let out = w.create("st");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("ocivol: annotation io.ocivol.volumes: entry \"missing:/m\": ")
            && stderr.contains("auto_create is false"),
        "{stderr}"
    );
    assert!(!w.ran());
    assert_eq!(fs::read(w.path("bundle/config.json")).unwrap(), spec_before);
    // The store's directories stay (the trash, made once, empty: the anonymous volume went
    // through it), and the lock file of the volume that was looked for (lock files are never
    // removed while someone may hold them); nothing else.
    let dirs = [
        "/root/",
        "/root/volumes/",
        "/root/containers/",
        "/root/trash/",
        "/run/",
        "/run/volumes/",
        "/run/locks/",
    ];
    let left: Vec<String> = common::tree_snapshot(&w.path("state"))
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| {
            // missing@HASH: the volume `missing` of the container's scope.
            let lock = n.starts_with("/run/locks/missing@") && n.ends_with(".lock");
            !dirs.contains(&n.as_str()) && !lock
        })
        .collect();
    assert!(left.is_empty(), "no volume, user or record left: {left:?}");
}

#[test]
fn errors_do_not_tell_which_host_paths_exist_or_where_links_lead() {
    let w = World::new(allow_one);
    let a = w.path("allowed");
    let outside = w.path("outside");
    let error = |entry: &str| {
        w.bundle(entry);
        let out = w.create("leak");
        assert!(!w.ran());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // Drop the entry and the path it names: what is left is the reason.
        stderr.replace(entry.split(':').next().unwrap(), "P")
    };
    // An existing and a missing path outside the allowlist get the same answer.
    assert_eq!(
        error(&format!("{}/secret:/x", outside.display())),
        error(&format!("{}/nothing-here:/x", outside.display()))
    );
    assert_eq!(error("/etc/shadow:/x"), error("/etc/no-such-file:/x"));
    // A link out of the allowed directory is refused without showing its target.
    for entry in [
        format!("{}/escape:/x", a.display()),
        format!("c:/d:base={}/relative-escape", a.display()),
    ] {
        let e = error(&entry);
        assert!(e.contains("resolves to a path outside them"), "{e}");
        assert!(!e.contains(&*outside.to_string_lossy()), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}

#[test]
fn state_roots_with_overlay_option_characters_are_refused() {
    // The state roots go into the overlay's upperdir= and workdir=.
    let w = World::new(allow_one);
    w.bundle("ok:/ok");
    for (flag, bad) in [
        ("--root", "/tmp/a,lowerdir=/etc"),
        ("--run-root", "/tmp/a:b"),
        ("--root", "relative"),
    ] {
        let out = Command::new(common::OCIVOL)
            .arg("--config")
            .arg(w.path("config.toml"))
            .args([flag, bad])
            .args(["runtime", "create", "--bundle"])
            .arg(w.path("bundle"))
            .arg("sr")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("must be an absolute path without ','"),
            "{stderr}"
        );
        assert!(!w.ran(), "{bad}: the runtime must not run");
        assert!(!Path::new(bad).exists(), "{bad}: nothing made");
    }
}

#[test]
fn the_shared_overlay_is_mounted_nosuid_and_nodev() {
    let Some(env) = common::Env::new("the_shared_overlay_is_mounted_nosuid_and_nodev") else {
        return;
    };
    let ann = format!("cow:/data:base={}", env.base.display());
    let b = env.bundle("ov", &["sleep", "60"], &[("io.ocivol.volumes", &ann)]);
    common::ok(&env.start("ocivol-ov", &b), "start");
    let target = env.volume_run_dir("cow").join("merged");
    let options: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (Path::new(f[4]) == target).then(|| f[5].to_string())
        })
        .collect();
    common::ok(&env.delete("ocivol-ov"), "delete");
    assert_eq!(options.len(), 1, "one overlay: {options:?}");
    let opts: Vec<&str> = options[0].split(',').collect();
    assert!(
        opts.contains(&"nosuid") && opts.contains(&"nodev"),
        "{options:?}"
    );
    assert_eq!(env.overlays("cow"), 0);
}
