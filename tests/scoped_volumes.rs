//! Issue 12, reproduction 6: named volumes belong to a scope. `cache` under two runtime roots
//! (or two containerd namespaces) is two volumes; a volume every scope shares is one the operator
//! made so (`volume create --scope any`, the policy's `shared_volumes`), and so is a volume an
//! earlier version made (no scope in its volume.json). Operator commands pick a volume with
//! `--scope` and refuse a name that is ambiguous.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::containerd::Containerd;
use common::{Env, RUNC, ok, rows, table, text};
use serde_json::{Value, json};

const VOLUMES: &str = "io.ocivol.volumes";

/// A second runc `--root` (a second scope); dropping it deletes whatever is left under it.
struct OtherRoot(PathBuf);

impl OtherRoot {
    fn new(env: &Env) -> OtherRoot {
        OtherRoot(env.dir.path().join("runc-b"))
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for OtherRoot {
    fn drop(&mut self) {
        let Ok(out) = Command::new(RUNC)
            .arg("--root")
            .arg(&self.0)
            .args(["list", "-q"])
            .output()
        else {
            return;
        };
        for id in text(&out.stdout).lines() {
            let _ = Command::new(RUNC)
                .arg("--root")
                .arg(&self.0)
                .args(["delete", "--force", id])
                .output();
        }
    }
}

/// A foreground `run` through the wrapper under runc root `root`: it ends, and runc deletes the
/// container, before this returns.
fn run_under(env: &Env, root: &str, id: &str, script: &str, volumes: &str) -> Output {
    let bundle = env.bundle(id, &["sh", "-c", script], &[(VOLUMES, volumes)]);
    env.ocivol_cmd(&["runtime", "--root", root, "run", "--bundle"])
        .arg(&bundle)
        .arg(id)
        .output()
        .unwrap()
}

fn scope_of(root: &str) -> String {
    format!("root:{root}")
}

fn ls_header() -> Vec<String> {
    ["NAME", "SCOPE", "KIND", "BASE", "USERS", "SIZE"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The volume directories in the state root.
fn volume_dirs(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(env.root.join("volumes"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn two_runtime_roots_using_cache_get_two_volumes() {
    let Some(env) = Env::new("two_runtime_roots_using_cache_get_two_volumes") else {
        return;
    };
    let other = OtherRoot::new(&env);
    let a = env.runc_root.to_str().unwrap().to_string();
    let b = other.path().to_string();
    let out = run_under(&env, &a, "sv1-a1", "echo a > /cache/who", "cache:/cache");
    ok(&out, "a writes");
    let out = run_under(
        &env,
        &b,
        "sv1-b1",
        "ls -A /cache; echo b > /cache/who",
        "cache:/cache",
    );
    assert_eq!(ok(&out, "b looks"), "", "b does not see a's cache");
    let out = run_under(&env, &a, "sv1-a2", "cat /cache/who", "cache:/cache");
    assert_eq!(ok(&out, "a reads"), "a\n", "a's cache is a's");

    // A long-running container in scope a, with an anonymous volume: ls shows its scope too.
    let long = env.bundle(
        "long",
        &["sleep", "600"],
        &[(VOLUMES, "cache:/cache;/anon")],
    );
    ok(&env.start("sv1-long", &long), "start");
    let anon = volume_dirs(&env)
        .into_iter()
        .find(|n| n.len() == 32)
        .expect("an anonymous volume");
    let (sa, sb) = (scope_of(&a), scope_of(&b));
    let mut want = vec![
        ls_header(),
        rows(&[&[&anon, &sa, "plain,anonymous", "-", "1", "0B"]]).remove(0),
        rows(&[&["cache", &sa, "plain", "-", "1", "2B"]]).remove(0),
        rows(&[&["cache", &sb, "plain", "-", "0", "2B"]]).remove(0),
    ];
    want[1..].sort();
    assert_eq!(env.ocivol_ok(&["volume", "ls"]), table(&want));
    let json: Value =
        serde_json::from_str(&env.ocivol_ok(&["volume", "ls", "--format", "json"])).unwrap();
    let scopes: Vec<(&str, &str)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["scope"].as_str().unwrap()))
        .collect();
    assert!(scopes.contains(&("cache", sa.as_str())), "{scopes:?}");
    assert!(scopes.contains(&("cache", sb.as_str())), "{scopes:?}");
    assert!(scopes.contains(&(anon.as_str(), sa.as_str())), "{scopes:?}");
    ok(&env.delete("sv1-long"), "delete");
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn two_containerd_namespaces_using_cache_get_two_volumes() {
    let Some(env) = Env::new("two_containerd_namespaces_using_cache_get_two_volumes") else {
        return;
    };
    let ctrd = Containerd::start(&env);
    let run_in = |ns: &str, id: &str, script: &str| {
        ctrd.run(
            &["-n", ns, "--rm"],
            "cache:/cache",
            &env.rootfs,
            id,
            &["sh", "-c", script],
        )
        .output()
        .unwrap()
    };
    ok(
        &run_in("team-a", "sv2", "echo a > /cache/who"),
        "team-a writes",
    );
    let out = run_in("team-b", "sv2", "ls -A /cache; echo b > /cache/who");
    assert_eq!(
        ok(&out, "team-b looks"),
        "",
        "team-b does not see team-a's cache"
    );
    let out = run_in("team-a", "sv2", "cat /cache/who");
    assert_eq!(ok(&out, "team-a reads"), "a\n");
    assert_eq!(
        env.ocivol_ok(&["volume", "ls"]),
        table(&rows(&[
            &["NAME", "SCOPE", "KIND", "BASE", "USERS", "SIZE"],
            &["cache", "containerd/team-a", "plain", "-", "0", "2B"],
            &["cache", "containerd/team-b", "plain", "-", "0", "2B"],
        ]))
    );
    drop(ctrd);
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_volume_the_operator_shares_is_the_same_in_every_scope() {
    let Some(env) = Env::new("a_volume_the_operator_shares_is_the_same_in_every_scope") else {
        return;
    };
    let other = OtherRoot::new(&env);
    let a = env.runc_root.to_str().unwrap().to_string();
    let b = other.path().to_string();
    let sa = scope_of(&a);

    // Made shared by `volume create --scope any`.
    assert_eq!(
        env.ocivol_ok(&["volume", "create", "--scope", "any", "shared"]),
        "shared\n"
    );
    ok(
        &run_under(&env, &a, "sv3-a1", "echo a > /s/who", "shared:/s"),
        "a writes",
    );
    let out = run_under(&env, &b, "sv3-b1", "cat /s/who", "shared:/s");
    assert_eq!(ok(&out, "b reads"), "a\n", "b sees the shared volume");

    // Made shared by the policy: the first use creates it shared.
    env.write_policy(json!({ "allowed_bases": [env.base], "shared_volumes": ["common"] }));
    ok(
        &run_under(&env, &b, "sv3-b2", "echo b > /c/who", "common:/c"),
        "b writes",
    );
    let out = run_under(&env, &a, "sv3-a2", "cat /c/who", "common:/c");
    assert_eq!(ok(&out, "a reads"), "b\n");

    // A scope's own volume comes first: `mine` exists in a's scope, then the operator makes a
    // shared one; a keeps its own, b gets the shared one.
    ok(
        &run_under(&env, &a, "sv3-a3", "echo own > /m/who", "mine:/m"),
        "a makes its own",
    );
    env.ocivol_ok(&["volume", "create", "--scope", "any", "mine"]);
    let out = run_under(&env, &a, "sv3-a4", "cat /m/who", "mine:/m");
    assert_eq!(ok(&out, "a reads its own"), "own\n");
    let out = run_under(&env, &b, "sv3-b3", "ls -A /m", "mine:/m");
    assert_eq!(ok(&out, "b gets the shared one"), "");

    assert_eq!(
        env.ocivol_ok(&["volume", "ls"]),
        table(&rows(&[
            &["NAME", "SCOPE", "KIND", "BASE", "USERS", "SIZE"],
            &["common", "any", "plain", "-", "0", "2B"],
            &["mine", "any", "plain", "-", "0", "0B"],
            &["mine", &sa, "plain", "-", "0", "4B"],
            &["shared", "any", "plain", "-", "0", "2B"],
        ]))
    );
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_volume_made_before_scopes_is_shared_by_every_scope() {
    let Some(env) = Env::new("a_volume_made_before_scopes_is_shared_by_every_scope") else {
        return;
    };
    let other = OtherRoot::new(&env);
    let a = env.runc_root.to_str().unwrap().to_string();
    let b = other.path().to_string();
    // volume.json as ocivol wrote it before volumes had a scope.
    let dir = env.root.join("volumes/old");
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join("data/hello"), "from before\n").unwrap();
    fs::write(
        dir.join("volume.json"),
        r#"{"name":"old","volatile":false,"anonymous":false,"labels":{},"created":1700000000}"#,
    )
    .unwrap();
    for (root, id) in [(&a, "sv4-a"), (&b, "sv4-b")] {
        let out = run_under(&env, root, id, "cat /o/hello", "old:/o");
        assert_eq!(ok(&out, id), "from before\n", "{id} uses the old volume");
    }
    assert_eq!(volume_dirs(&env), ["old"], "no scoped copy was made");
    assert_eq!(
        env.ocivol_ok(&["volume", "ls"]),
        table(&rows(&[
            &["NAME", "SCOPE", "KIND", "BASE", "USERS", "SIZE"],
            &["old", "any", "plain", "-", "0", "12B"],
        ]))
    );
    let inspected: Value =
        serde_json::from_str(&env.ocivol_ok(&["volume", "inspect", "old"])).unwrap();
    assert_eq!(inspected[0]["scope"], "any");
    assert_eq!(inspected[0]["name"], "old");
}

/// Two scopes with a `cache` (plain) and a `data` (copy-on-write) each.
fn two_scopes_with_volumes(env: &Env, other: &OtherRoot) -> (String, String) {
    let a = env.runc_root.to_str().unwrap().to_string();
    let b = other.path().to_string();
    let ann = format!("cache:/cache;data:/data:base={}", env.base.display());
    for (root, id, who) in [(&a, "sv5-a", "a"), (&b, "sv5-b", "b")] {
        let script = format!("echo {who} > /cache/who; echo {who} > /data/who");
        ok(&run_under(env, root, id, &script, &ann), id);
    }
    (scope_of(&a), scope_of(&b))
}

#[test]
fn a_name_in_several_scopes_is_refused_with_how_to_pick() {
    let Some(env) = Env::new("a_name_in_several_scopes_is_refused_with_how_to_pick") else {
        return;
    };
    let other = OtherRoot::new(&env);
    let (sa, sb) = two_scopes_with_volumes(&env, &other);
    let how = |name: &str| {
        format!(
            "ocivol: volume {name} exists in 2 scopes; pick one with --scope: --scope {sa}, \
             --scope {sb}\n"
        )
    };
    assert_eq!(
        env.ocivol_refused(&["volume", "inspect", "cache"]),
        how("cache")
    );
    assert_eq!(env.ocivol_refused(&["volume", "rm", "cache"]), how("cache"));
    assert_eq!(env.ocivol_refused(&["volume", "diff", "data"]), how("data"));
    assert_eq!(
        env.ocivol_refused(&["volume", "reset", "data"]),
        how("data")
    );
    assert_eq!(volume_dirs(&env).len(), 4, "nothing was removed");
    // A volume create must say which scope it is for.
    let out = env.ocivol(&["volume", "create", "x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("--scope <SCOPE>"), "{out:?}");
    assert_eq!(
        env.ocivol_refused(&["volume", "create", "--scope", "team-a", "x"]),
        "ocivol: unknown scope \"team-a\": use any, or a scope as ocivol ps and ocivol volume ls \
         show it (containerd/NAMESPACE, root:RUNTIME_ROOT, each optionally followed by \
         ,k8s:NAMESPACE)\n"
    );
    assert_eq!(
        env.ocivol_refused(&["volume", "inspect", "--scope", "any", "cache"]),
        "ocivol: volume cache does not exist in scope any\n"
    );
}

#[test]
fn operator_commands_pick_a_volume_with_scope() {
    let Some(env) = Env::new("operator_commands_pick_a_volume_with_scope") else {
        return;
    };
    let other = OtherRoot::new(&env);
    let (sa, sb) = two_scopes_with_volumes(&env, &other);

    let inspected: Value =
        serde_json::from_str(&env.ocivol_ok(&["volume", "inspect", "--scope", &sb, "cache"]))
            .unwrap();
    assert_eq!(inspected.as_array().unwrap().len(), 1);
    assert_eq!(inspected[0]["name"], "cache");
    assert_eq!(inspected[0]["scope"], sb.as_str());
    let storage = inspected[0]["storage"].as_str().unwrap().to_string();
    assert!(storage.starts_with("cache@"), "{storage}");
    let data = Path::new(inspected[0]["paths"]["data"].as_str().unwrap());
    assert_eq!(fs::read_to_string(data.join("who")).unwrap(), "b\n");

    assert_eq!(
        env.ocivol_ok(&["volume", "ls", "--scope", &sb]),
        table(&rows(&[
            &["NAME", "SCOPE", "KIND", "BASE", "USERS", "SIZE"],
            &["cache", &sb, "plain", "-", "0", "2B"],
            &[
                "data",
                &sb,
                "cow",
                &env.base.display().to_string(),
                "0",
                "2B"
            ],
        ]))
    );
    // `ls -q` gives names that pick one volume each (the storage name of a scoped one), and
    // every command takes them.
    let quiet = env.ocivol_ok(&["volume", "ls", "-q"]);
    assert_eq!(quiet.lines().count(), 4, "{quiet}");
    assert!(quiet.lines().any(|l| l == storage), "{quiet}");
    let one: Value =
        serde_json::from_str(&env.ocivol_ok(&["volume", "inspect", &storage])).unwrap();
    assert_eq!(one[0]["scope"], sb.as_str());

    assert_eq!(
        env.ocivol_ok(&["volume", "diff", "--scope", &sa, "data"]),
        "A /who\n"
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "reset", "--scope", &sa, "data"]),
        "data\n"
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "diff", "--scope", &sa, "data"]),
        ""
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "diff", "--scope", &sb, "data"]),
        "A /who\n",
        "b's changes are still there"
    );

    assert_eq!(
        env.ocivol_ok(&["volume", "rm", "--scope", &sb, "cache"]),
        "cache\n"
    );
    assert!(!data.exists(), "b's cache is gone");
    // Now one `cache` is left: the bare name picks it.
    let left: Value =
        serde_json::from_str(&env.ocivol_ok(&["volume", "inspect", "cache"])).unwrap();
    assert_eq!(left[0]["scope"], sa.as_str());

    assert_eq!(
        env.ocivol_ok(&["volume", "prune", "--all", "--scope", &sb]),
        "Deleted Volumes:\ndata\n\nTotal reclaimed space: 2B\n"
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "ls", "--format", "json", "--scope", &sb]),
        "[]\n"
    );
    // An operator-made volume of a scope.
    assert_eq!(
        env.ocivol_ok(&["volume", "create", "--scope", &sb, "made"]),
        "made\n"
    );
    let out = run_under(
        &env,
        other.path(),
        "sv6-b",
        "ls -A /m; echo hi > /m/x",
        "made:/m",
    );
    assert_eq!(ok(&out, "b uses the volume made for it"), "");
    let made: Value =
        serde_json::from_str(&env.ocivol_ok(&["volume", "inspect", "--scope", &sb, "made"]))
            .unwrap();
    assert_eq!(made[0]["size"], 3);
}
