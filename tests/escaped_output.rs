//! Issue 12, reproduction 7: what a tenant wrote (file names in a volume, annotation text, scope
//! strings) reaches the operator's terminal only escaped, as `ls -b` shows a file name, and as
//! one line; `--format json` stays exact.

mod common;

use std::fs;
use std::path::Path;
use std::process::Stdio;

use common::fake_runtime::FakeRuntime;
use common::{Env, ok, text};
use serde_json::{Value, json};

/// Nothing a terminal acts on: printable text and line ends only.
fn assert_printable(what: &str, s: &str) {
    assert!(
        !s.chars().any(|c| c != '\n' && c.is_control()),
        "{what}: a control character reached the output: {s:?}"
    );
}

/// A world without root: a fake runtime that records that it ran (and fails), a config, a
/// bundle.
struct World(FakeRuntime);

impl std::ops::Deref for World {
    type Target = FakeRuntime;
    fn deref(&self) -> &FakeRuntime {
        &self.0
    }
}

impl World {
    fn new() -> World {
        let w = World(FakeRuntime::new("ocivol-escape-", "exit 1"));
        fs::create_dir_all(w.path("allowed")).unwrap();
        fs::create_dir_all(w.path("bundle")).unwrap();
        w.write_config(json!({ "policy": {"allowed_bases": [w.path("allowed")]} }));
        w
    }

    fn spec(&self, volumes: &str) -> Value {
        json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["true"], "cwd": "/"},
            "root": {"path": "rootfs"},
            "annotations": {"io.ocivol.volumes": volumes},
        })
    }
}

/// A base path with ESC, BEL, DEL, a C1 control and a bidirectional override in it: the parser
/// accepts it as a path, the policy refuses it, and the refusal quotes it.
const HOSTILE_BASE: &str = "/nowhere/\u{1b}[2Jpwned\u{7}\u{7f}\u{9b}\u{202e}x";
/// The same, as an error line shows it.
const HOSTILE_BASE_SHOWN: &str = "/nowhere/\\033[2Jpwned\\a\\177\\302\\233\\342\\200\\256x";

#[test]
fn an_annotation_with_control_characters_gives_one_escaped_line_on_stderr_and_in_the_log() {
    let w = World::new();
    let spec = w.spec(&format!("ok:/ok;c:/d:base={HOSTILE_BASE}"));
    fs::write(
        w.path("bundle/config.json"),
        serde_json::to_vec(&spec).unwrap(),
    )
    .unwrap();
    let out = w
        .ocivol()
        .arg("runtime")
        .arg("--root")
        .arg(w.path("runtime-root"))
        .arg("--log")
        .arg(w.path("log.json"))
        .args(["--log-format", "json", "create", "--bundle"])
        .arg(w.path("bundle"))
        .arg("esc1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert_printable("stderr", &stderr);
    let reason = format!("base {HOSTILE_BASE_SHOWN} is not under the policy's allowed_bases");
    assert!(
        stderr.starts_with("ocivol: annotation io.ocivol.volumes: entry ")
            && stderr.contains(&reason),
        "{stderr:?}"
    );
    let log = fs::read_to_string(w.path("log.json")).unwrap();
    assert_eq!(log.lines().count(), 1, "{log:?}");
    let logged: Value = serde_json::from_str(&log).unwrap();
    let msg = logged["msg"].as_str().unwrap();
    assert_printable("the log's msg", msg);
    assert_eq!(msg, stderr.trim_end(), "the same line in the runtime's log");
    assert!(!w.ran(), "the runtime never ran");
}

#[test]
fn a_hook_refusal_with_control_characters_is_one_escaped_line() {
    let w = World::new();
    let mut spec = w.spec(&format!("c:/d:base={HOSTILE_BASE}"));
    // What podman writes into every config, from which precreate learns the container's ID.
    let userdata = format!(
        "/var/lib/containers/storage/overlay-containers/{}/userdata",
        "ab".repeat(32)
    );
    spec["mounts"] = serde_json::json!([{
        "destination": "/etc/hosts", "type": "bind",
        "source": format!("{userdata}/hosts"), "options": ["bind"]
    }]);
    let mut child = w
        .ocivol()
        .args(["hook", "precreate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        &serde_json::to_vec(&spec).unwrap(),
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert_printable("stderr", &stderr);
    assert!(stderr.contains(HOSTILE_BASE_SHOWN), "{stderr:?}");
    assert_eq!(text(&out.stdout), "", "no config on stdout");
}

#[test]
fn ps_shows_control_characters_in_scope_strings_escaped_and_json_exact() {
    let w = World::new();
    let containers = w.path("state/root/containers");
    fs::create_dir_all(&containers).unwrap();
    let root = w.path("runtime-root").display().to_string();
    let namespace = format!("root:{root}\u{1b}[2J\nfake   row");
    let pod = "team\u{7}\u{9b}b";
    let key = ocivol::container_id::container_key("esc3", Some(&root));
    let record = json!({
        "id": "esc3",
        "runtime_root": root,
        "bundle": w.path("bundle"),
        "scope": {"namespace": namespace, "pod_namespace": pod},
        "volumes": [],
        "mounts": [],
        "boot_id": "",
    });
    fs::write(containers.join(format!("{key}.json")), record.to_string()).unwrap();

    let out = w.ocivol().arg("ps").stdin(Stdio::null()).output().unwrap();
    let stdout = ok(&out, "ps");
    assert_printable("ps", &stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row: {stdout:?}");
    assert!(
        lines[1].starts_with(&format!(
            "esc3           root:{root}\\033[2J\\nfake   row,k8s:team\\a\\302\\233b   "
        )),
        "{stdout:?}"
    );

    let out = w
        .ocivol()
        .args(["ps", "--format", "json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let json: Value = serde_json::from_str(&ok(&out, "ps --format json")).unwrap();
    assert_eq!(json[0]["scope"]["namespace"], namespace.as_str());
    assert_eq!(json[0]["scope"]["pod_namespace"], pod);
}

#[test]
fn volume_diff_shows_file_names_a_container_chose_escaped() {
    let Some(env) = Env::new("volume_diff_shows_file_names_a_container_chose_escaped") else {
        return;
    };
    let ann = format!("data:/data:base={}", env.base.display());
    // A forged diff line (`A /x` then `C /etc/shadow`), a terminal escape sequence and a
    // backslash, all in file names.
    let script = r#"set -e
        d="/data/$(printf 'x\nC ')"
        mkdir -p "$d/etc"
        touch "$d/etc/shadow"
        touch "/data/$(printf '\033[31mred')"
        touch '/data/back\slash'"#;
    let b = env.bundle("w", &["sh", "-c", script], &[("io.ocivol.volumes", &ann)]);
    ok(
        &env.runtime(&["run", "--bundle", b.to_str().unwrap(), "ocivol-esc-w"]),
        "run the writer",
    );
    let out = env.ocivol(&["volume", "diff", "data"]);
    let stdout = ok(&out, "volume diff");
    assert_printable("diff", &stdout);
    assert_eq!(
        stdout,
        "A /\\033[31mred\n\
         A /back\\\\slash\n\
         A /x\\nC \n\
         A /x\\nC /etc\n\
         A /x\\nC /etc/shadow\n"
    );
    let out = env.ocivol(&["volume", "diff", "--format", "json", "data"]);
    let json: Value = serde_json::from_str(&ok(&out, "volume diff --format json")).unwrap();
    let paths: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/\u{1b}[31mred",
            "/back\\slash",
            "/x\nC ",
            "/x\nC /etc",
            "/x\nC /etc/shadow"
        ],
        "JSON is exact"
    );
    assert!(Path::new(&env.base).join("file.txt").exists());
}
