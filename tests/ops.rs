//! The operator's commands end to end, with real runc and overlayfs, as root: every happy path
//! and every refusal with its exact output.

mod common;

use std::fs;
use std::path::Path;

use common::{Env, ok, rows, table, text};
use serde_json::json;

const VOLUMES: &str = "io.ocivol.volumes";

fn base(env: &Env) -> String {
    env.base.display().to_string()
}

#[test]
fn volume_create_ls_inspect_rm_with_exact_output() {
    let Some(env) = Env::new("volume_create_ls_inspect_rm_with_exact_output") else {
        return;
    };
    let b = base(&env);
    assert_eq!(
        env.ocivol_ok(&["volume", "create", "--scope", "any", "notes"]),
        "notes\n"
    );
    assert_eq!(
        env.ocivol_ok(&[
            "volume", "create", "--scope", "any", "data", "--base", &b, "--label", "team=ml"
        ]),
        "data\n"
    );
    assert_eq!(
        env.ocivol_ok(&[
            "volume",
            "create",
            "--scope",
            "any",
            "scratch",
            "--base",
            &b,
            "--volatile"
        ]),
        "scratch\n"
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "create", "--scope", "any", "data", "--base", &b]),
        "data\n",
        "creating a volume that exists as the same kind changes nothing"
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "ls"]),
        table(&rows(&[
            &["NAME", "SCOPE", "KIND", "BASE", "USERS", "SIZE"],
            &["data", "any", "cow", &b, "0", "0B"],
            &["notes", "any", "plain", "-", "0", "0B"],
            &["scratch", "any", "volatile", &b, "0", "0B"],
        ]))
    );

    // A container uses `data` and writes 6 bytes into it.
    let bundle = env.bundle("a", &["sleep", "600"], &[(VOLUMES, "data:/data")]);
    ok(&env.start("ocivol-ops1-a", &bundle), "start");
    ok(
        &env.exec("ocivol-ops1-a", "echo hello > /data/h.txt"),
        "write",
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "ls", "--filter", "in-use=true"]),
        table(&rows(&[
            &["NAME", "SCOPE", "KIND", "BASE", "USERS", "SIZE"],
            &["data", "any", "cow", &b, "1", "6B"],
        ]))
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "ls", "-q", "--filter", "in-use=false"]),
        "notes\nscratch\n"
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "ls", "-q", "--filter", "label=team=ml"]),
        "data\n"
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "ls", "-q", "--filter", "label=team=other"]),
        ""
    );
    let listed: serde_json::Value =
        serde_json::from_str(&env.ocivol_ok(&["volume", "ls", "--format", "json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed[0]["name"], "data");
    assert_eq!(listed[0]["size"], 6);

    let inspected: serde_json::Value =
        serde_json::from_str(&env.ocivol_ok(&["volume", "inspect", "data"])).unwrap();
    let v = &inspected[0];
    let init = env.init_pid("ocivol-ops1-a");
    assert!(v["created"].as_u64().unwrap() > 0);
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove("created");
    assert_eq!(
        v,
        json!({
            "name": "data",
            "scope": "any",
            "storage": "data",
            "kind": "cow",
            "anonymous": false,
            "base": b,
            "labels": {"team": "ml"},
            "mounted": true,
            "size": 6,
            "users": [{"container": "ocivol-ops1-a", "key": env.key("ocivol-ops1-a"), "init_pid": init}],
            "paths": {
                "merged": env.run_root.join("volumes/data/merged"),
                "upper": env.root.join("volumes/data/upper"),
                "work": env.root.join("volumes/data/work"),
            },
        })
    );
    let missing = env.ocivol(&["volume", "inspect", "data", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        text(&missing.stderr),
        "ocivol: volume nope does not exist\n"
    );

    assert_eq!(env.ocivol_ok(&["volume", "rm", "notes"]), "notes\n");
    assert_eq!(
        env.ocivol_refused(&["volume", "rm", "notes"]),
        "ocivol: volume notes does not exist\n"
    );
    assert_eq!(env.ocivol_ok(&["volume", "rm", "--force", "notes"]), "");
    assert!(!env.root.join("volumes/notes").exists());

    ok(&env.delete("ocivol-ops1-a"), "delete");
    assert_eq!(env.users("data"), 0);
    assert_eq!(env.overlays("data"), 0);
}

#[test]
fn volume_rm_of_a_volume_in_use_is_refused_and_names_its_users() {
    let Some(env) = Env::new("volume_rm_of_a_volume_in_use_is_refused_and_names_its_users") else {
        return;
    };
    let ann = format!("data:/data:base={}", base(&env));
    for id in ["ocivol-ops2-a", "ocivol-ops2-b"] {
        let bundle = env.bundle(id, &["sleep", "600"], &[(VOLUMES, &ann)]);
        ok(&env.start(id, &bundle), "start");
    }
    assert_eq!(
        env.ocivol_refused(&["volume", "rm", "data"]),
        "ocivol: volume data is in use by 2 containers: ocivol-ops2-a, ocivol-ops2-b; \
         delete its containers first, or use --force to remove it anyway\n"
    );
    assert_eq!(env.users("data"), 2, "nothing changed");
    assert_eq!(env.overlays("data"), 1);
    // The containers' `data` is the volume of their scope: data@HASH.
    let (data_dir, data_run_dir) = (env.volume_dir("data"), env.volume_run_dir("data"));
    assert!(data_dir.exists() && data_run_dir.exists());
    ok(&env.delete("ocivol-ops2-b"), "delete b");
    assert_eq!(
        env.ocivol_refused(&["volume", "rm", "data"]),
        "ocivol: volume data is in use by 1 container: ocivol-ops2-a; \
         delete its containers first, or use --force to remove it anyway\n"
    );

    assert_eq!(
        env.ocivol_ok(&["volume", "rm", "--force", "data"]),
        "data\n"
    );
    assert_eq!(
        env.overlays("data"),
        0,
        "its overlay is unmounted on the host"
    );
    assert!(!data_dir.exists());
    assert!(!data_run_dir.exists());
    // The container's delete finds nothing left to release.
    ok(&env.delete("ocivol-ops2-a"), "delete a");
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn volume_create_checks_the_policy_like_an_annotation() {
    let Some(env) = Env::new("volume_create_checks_the_policy_like_an_annotation") else {
        return;
    };
    let outside = env.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let o = outside.display().to_string();
    assert_eq!(
        env.ocivol_refused(&["volume", "create", "--scope", "any", "bad", "--base", &o]),
        format!(
            "ocivol: volume bad: base {o} is not under the policy's allowed_bases [{}]; \
             an admin must allow it in the ocivol config\n",
            base(&env)
        )
    );
    assert_eq!(
        env.ocivol_refused(&["volume", "create", "--scope", "any", "../etc"]),
        "ocivol: invalid volume name \"../etc\": a name starts with a letter or digit and has \
         only letters, digits, '_', '.' and '-'\n"
    );
    assert_eq!(
        env.ocivol_refused(&[
            "volume", "create", "--scope", "any", "c", "--base", "relative"
        ]),
        "ocivol: volume c: base \"relative\" is not an absolute path; it must start with '/'\n"
    );
    // ocivol's own state is never a base, even under an allowed directory.
    fs::create_dir_all(&env.root).unwrap();
    env.write_policy(json!({ "allowed_bases": [env.dir.path()] }));
    let state = env.root.display().to_string();
    assert_eq!(
        env.ocivol_refused(&["volume", "create", "--scope", "any", "c", "--base", &state]),
        format!("ocivol: volume c: base {state} overlaps ocivol's state directory {state}\n")
    );
    env.write_policy(json!({ "allowed_bases": [env.base] }));
    // A volume that exists as another kind.
    env.ocivol_ok(&["volume", "create", "--scope", "any", "plain"]);
    assert_eq!(
        env.ocivol_refused(&[
            "volume",
            "create",
            "--scope",
            "any",
            "plain",
            "--base",
            &base(&env)
        ]),
        format!(
            "ocivol: volume plain: it exists as a plain volume, so it cannot be copy-on-write \
             over {}; use another name or drop base=\n",
            base(&env)
        )
    );
    let volatile_alone = env.ocivol(&["volume", "create", "--scope", "any", "v", "--volatile"]);
    assert_eq!(volatile_alone.status.code(), Some(2), "clap refuses it");
    assert!(text(&volatile_alone.stderr).contains("--base <DIR>"));
    assert_eq!(
        env.ocivol_ok(&["volume", "ls", "-q"]),
        "plain\n",
        "nothing else made"
    );
}

#[test]
fn volume_reset_of_a_volume_in_use_is_refused() {
    let Some(env) = Env::new("volume_reset_of_a_volume_in_use_is_refused") else {
        return;
    };
    let ann = format!("data:/data:base={}", base(&env));
    let bundle = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-ops4-a", &bundle), "start");
    ok(&env.exec("ocivol-ops4-a", "echo x > /data/x"), "write");
    assert_eq!(
        env.ocivol_refused(&["volume", "reset", "data"]),
        "ocivol: volume data is in use by 1 container: ocivol-ops4-a; \
         reset discards the changes only of a volume no container uses\n"
    );
    assert!(
        env.volume_dir("data").join("upper/x").exists(),
        "nothing discarded"
    );
    env.ocivol_ok(&["volume", "create", "--scope", "any", "notes"]);
    assert_eq!(
        env.ocivol_refused(&["volume", "reset", "notes"]),
        "ocivol: volume notes: it is a plain volume; only a copy-on-write volume has changes \
         to discard\n"
    );
    assert_eq!(
        env.ocivol_refused(&["volume", "diff", "notes"]),
        "ocivol: volume notes: it is a plain volume; only a copy-on-write volume has changes \
         against a base\n"
    );
    assert_eq!(
        env.ocivol_refused(&["volume", "reset", "nope"]),
        "ocivol: volume nope does not exist\n"
    );
    ok(&env.delete("ocivol-ops4-a"), "delete");
    assert_eq!(env.ocivol_ok(&["volume", "reset", "data"]), "data\n");
    assert!(!env.volume_dir("data").join("upper/x").exists());
}

#[test]
fn volume_diff_lists_exactly_the_changes_and_reset_restores_the_base() {
    let Some(env) = Env::new("volume_diff_lists_exactly_the_changes_and_reset_restores_the_base")
    else {
        return;
    };
    // The base: file.txt, sub/deep.txt (from Env), plus a directory to replace and one to delete.
    fs::create_dir_all(env.base.join("keep")).unwrap();
    fs::write(env.base.join("keep/one.txt"), "one\n").unwrap();
    fs::write(env.base.join("keep/two.txt"), "two\n").unwrap();
    fs::create_dir_all(env.base.join("gone/deeper")).unwrap();
    fs::write(env.base.join("gone/deeper/x.txt"), "x\n").unwrap();
    let before = common::tree_snapshot(&env.base);

    let ann = format!("data:/data:base={}", base(&env));
    let script = "set -e
        echo new > /data/new.txt
        echo changed > /data/file.txt
        rm /data/sub/deep.txt
        echo added > /data/sub/added.txt
        rm -r /data/keep
        mkdir /data/keep
        echo two-again > /data/keep/two.txt
        echo three > /data/keep/three.txt
        rm -r /data/gone";
    let w = env.bundle("w", &["sh", "-c", script], &[(VOLUMES, &ann)]);
    ok(
        &env.runtime(&["run", "--bundle", w.to_str().unwrap(), "ocivol-ops5-w"]),
        "run the writer",
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "diff", "data"]),
        "C /file.txt\n\
         D /gone\n\
         C /keep\n\
         D /keep/one.txt\n\
         A /keep/three.txt\n\
         C /keep/two.txt\n\
         A /new.txt\n\
         C /sub\n\
         A /sub/added.txt\n\
         D /sub/deep.txt\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ocivol_ok(&["volume", "diff", "--format", "json", "data"]))
            .unwrap();
    assert_eq!(json[0], json!({"kind": "Changed", "path": "/file.txt"}));

    // A container sees the changes; after reset the next one sees the base only.
    let list = "cd /data && ls -R . && cat file.txt";
    let r = env.bundle("r", &["sh", "-c", list], &[(VOLUMES, &ann)]);
    let seen = ok(
        &env.runtime(&["run", "--bundle", r.to_str().unwrap(), "ocivol-ops5-r1"]),
        "run a reader",
    );
    assert!(
        seen.contains("three.txt") && seen.ends_with("changed\n"),
        "{seen}"
    );
    assert_eq!(env.ocivol_ok(&["volume", "reset", "data"]), "data\n");
    assert_eq!(env.ocivol_ok(&["volume", "diff", "data"]), "");
    let seen = ok(
        &env.runtime(&["run", "--bundle", r.to_str().unwrap(), "ocivol-ops5-r2"]),
        "run a reader after reset",
    );
    assert_eq!(
        seen,
        ".:\nfile.txt\ngone\nkeep\nsub\n\n./gone:\ndeeper\n\n./gone/deeper:\nx.txt\n\n\
         ./keep:\none.txt\ntwo.txt\n\n./sub:\ndeep.txt\nfrom the base\n"
    );
    assert_eq!(
        common::tree_snapshot(&env.base),
        before,
        "the base never changed"
    );
}

#[test]
fn volume_prune_removes_unused_volumes_and_reports_the_space() {
    let Some(env) = Env::new("volume_prune_removes_unused_volumes_and_reports_the_space") else {
        return;
    };
    // An anonymous volume left without users: its container's delete was killed between
    // removing the user and removing the volume.
    let bundle = env.bundle("a", &["sleep", "600"], &[(VOLUMES, "/scratch;kept:/kept")]);
    ok(&env.start("ocivol-ops6-a", &bundle), "start a");
    ok(
        &env.exec(
            "ocivol-ops6-a",
            "echo hello > /scratch/h; echo 1234567 > /kept/k",
        ),
        "write",
    );
    let anon = fs::read_dir(env.root.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.len() == 32)
        .unwrap();
    let out = env
        .runtime_cmd(&["delete", "--force", "ocivol-ops6-a"])
        .env("OCIVOL_TEST_CRASH", "after-user-removed")
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "the delete was killed: {out:?}"
    );
    assert_eq!(env.users(&anon), 0);
    assert!(env.root.join("volumes").join(&anon).exists(), "left behind");
    // A named volume in use is never pruned.
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, "busy:/busy")]);
    ok(&env.start("ocivol-ops6-b", &b), "start b");

    assert_eq!(
        env.ocivol_ok(&["volume", "prune"]),
        format!("Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 6B\n")
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "prune"]),
        "Total reclaimed space: 0B\n"
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "prune", "--all"]),
        "Deleted Volumes:\nkept\n\nTotal reclaimed space: 8B\n"
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "ls", "-q"]),
        format!("{}\n", env.storage("busy")),
        "ls -q names a volume of a scope by its storage name"
    );
    ok(&env.delete("ocivol-ops6-b"), "delete b");
}

#[test]
fn ps_lists_containers_with_scope_status_and_volumes() {
    let Some(env) = Env::new("ps_lists_containers_with_scope_status_and_volumes") else {
        return;
    };
    let ann = format!("data:/data:base={};/anon", base(&env));
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-ops7-a", &a), "start a");
    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, "notes:/notes")]);
    ok(&env.create("ocivol-ops7-b", &b), "create b");
    let c = env.bundle("c", &["true"], &[(VOLUMES, "notes:/notes")]);
    ok(
        &env.runtime(&["run", "--bundle", c.to_str().unwrap(), "ocivol-ops7-c"]),
        "run c",
    );
    let d = env.bundle("d", &["sleep", "600"], &[(VOLUMES, "notes:/notes")]);
    ok(&env.start("ocivol-ops7-d", &d), "start d");
    let d_init = env.init_pid("ocivol-ops7-d");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d_init),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("d stops", || {
        env.runc_state("ocivol-ops7-d").unwrap()["status"] == "stopped"
    });

    let anon = env.store().containers().unwrap();
    let anon = anon
        .iter()
        .find(|r| r.id == "ocivol-ops7-a")
        .unwrap()
        .volumes
        .iter()
        .find(|v| v.len() == 32)
        .unwrap()
        .clone();
    let scope = format!("root:{}", env.runc_root.display());
    let a_vols = format!("data,{anon}");
    assert_eq!(
        env.ocivol_ok(&["ps"]),
        table(&rows(&[
            &["CONTAINER ID", "SCOPE", "STATUS", "VOLUMES"],
            &["ocivol-ops7-a", &scope, "running", &a_vols],
            &["ocivol-ops7-b", &scope, "created", "notes"],
            &["ocivol-ops7-c", &scope, "gone", "notes"],
            &["ocivol-ops7-d", &scope, "stopped", "notes"],
        ]))
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ocivol_ok(&["ps", "--format", "json"])).unwrap();
    assert_eq!(json[0]["id"], "ocivol-ops7-a");
    assert_eq!(json[0]["status"], "running");
    assert_eq!(json[0]["pid"], env.init_pid("ocivol-ops7-a"));
    assert_eq!(json[0]["scope"]["namespace"], scope);
    assert_eq!(json[0]["mounts"][0]["destination"], "/data");
    assert_eq!(json[0]["mounts"][1]["destination"], "/anon");
    assert_eq!(json[2]["status"], "gone");
    assert!(json[2].get("pid").is_none());
    for id in ["ocivol-ops7-a", "ocivol-ops7-b", "ocivol-ops7-d"] {
        ok(&env.delete(id), "delete");
    }
    assert_eq!(env.users("notes"), 0);
}

#[test]
fn doctor_reports_each_check_on_this_machine() {
    let Some(env) = Env::new("doctor_reports_each_check_on_this_machine") else {
        return;
    };
    let hooks = env.dir.path().join("hooks.d");
    fs::create_dir(&hooks).unwrap();
    let h = hooks.display().to_string();
    let out = env.ocivol(&["doctor", "--hooks-dir", &h, "--engine", "none"]);
    assert_eq!(out.status.code(), Some(0), "no fail: {out:?}");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{stdout}");
    assert_eq!(
        lines[0],
        format!("ok   config: {} loaded", env.config.display())
    );
    assert_eq!(
        lines[1],
        format!(
            "ok   config file: {} and {} are owned by root and writable by root alone",
            env.config.display(),
            env.dir.path().display()
        )
    );
    let lines = [&lines[..1], &lines[2..]].concat();
    assert_eq!(
        lines[1],
        "ok   overlayfs: the kernel has it (/proc/filesystems)"
    );
    for (line, what, dir) in [
        (lines[2], "state root", &env.root),
        (lines[3], "run root", &env.run_root),
    ] {
        assert!(
            line.starts_with(&format!("ok   {what}: {} on ", dir.display()))
                && line.ends_with(", flock works"),
            "{line}"
        );
    }
    assert_eq!(
        lines[4],
        format!(
            "ok   overlay mount: a test overlay (lowerdir, upperdir, workdir, nosuid, nodev; and \
             volatile) mounts in {}",
            env.root.display()
        )
    );
    let version = text(
        &std::process::Command::new(common::RUNC)
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    );
    if version.starts_with("runc version 1.1.") {
        let v = version
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("runc version ");
        assert_eq!(
            lines[5],
            format!(
                "warn runtime: /usr/sbin/runc is runc {v}, older than the releases that fix \
                 CVE-2025-31133, CVE-2025-52565 and CVE-2025-52881 (1.2.8, 1.3.3, 1.4.0-rc.3); \
                 upgrade runc, unless your distribution backported the fixes"
            )
        );
    } else {
        assert!(
            lines[5].contains("runtime: /usr/sbin/runc is runc "),
            "{}",
            lines[5]
        );
    }
    assert_eq!(
        lines[6],
        format!(
            "warn hooks: no ocivol*.json in {h}; podman and CRI-O need them to run ocivol as a \
             hook (copy hooks.d/ocivol*.json of the ocivol sources there); not needed when \
             ocivol is the runtime"
        )
    );
    // With the hooks installed the check passes; nothing of the trial mount is left.
    fs::write(hooks.join("ocivol.json"), "{}").unwrap();
    let out = env.ocivol(&["doctor", "--hooks-dir", &h, "--engine", "none"]);
    assert_eq!(
        text(&out.stdout).lines().last().unwrap(),
        format!("ok   hooks: {h}/ocivol.json")
    );
    assert!(env.mounts_here().is_empty());
    let left: Vec<_> = fs::read_dir(&env.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn doctor_fails_with_a_fix_on_a_config_others_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let Some(env) = Env::new("doctor_fails_with_a_fix_on_a_config_others_can_write") else {
        return;
    };
    let doctor = ["doctor", "--hooks-dir", "/nonexistent", "--engine", "none"];
    fs::set_permissions(&env.config, fs::Permissions::from_mode(0o666)).unwrap();
    let out = env.ocivol(&doctor);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = text(&out.stdout);
    let c = env.config.display();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("fail config file: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        line,
        format!(
            "fail config file: the file {c} is writable by its group and everyone (mode 0666); \
             whoever can write it can widen what containers reach; fix: chown root:root {c} && \
             chmod go-w {c}"
        )
    );
    // Owned by someone else, in a directory its group may write to.
    fs::set_permissions(&env.config, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&env.config, Some(65534), Some(65534)).unwrap();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o770)).unwrap();
    let out = env.ocivol(&doctor);
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = text(&out.stdout);
    let d = env.dir.path().display();
    assert!(
        stdout.lines().any(|l| l
            == format!(
                "fail config file: the file {c} is owned by uid 65534, not root; its directory \
                 {d} is writable by its group (mode 0770); whoever can write it can widen what \
                 containers reach; fix: chown root:root {c} && chmod go-w {c} && chown \
                 root:root {d} && chmod go-w {d}"
            )),
        "{stdout}"
    );
}

#[test]
fn ocivol_config_prints_the_configuration_in_force_and_where_each_value_came_from() {
    let Some(env) =
        Env::new("ocivol_config_prints_the_configuration_in_force_and_where_each_value_came_from")
    else {
        return;
    };
    let base = env.base.display();
    fs::write(
        &env.config,
        format!(
            "# the admin's notes\nruntime = \"{}\"\n\n[policy]\n# read-only datasets\n\
             allowed_bases = [{{ path = \"{base}\", options = [\"readonly\", \"nodev\"] }}]\n\
             auto_create = false\n",
            common::RUNC
        ),
    )
    .unwrap();
    let other_root = env.dir.path().join("from-env");
    let run = |args: &[&str], root_env: Option<&Path>| {
        let mut c = std::process::Command::new(common::OCIVOL);
        c.env_remove("OCIVOL_ROOT")
            .env_remove("OCIVOL_RUN_ROOT")
            .env("OCIVOL_CONFIG", &env.config)
            .args(args);
        if let Some(r) = root_env {
            c.env("OCIVOL_ROOT", r);
        }
        c.output().unwrap()
    };
    let run_root = env.run_root.to_str().unwrap();
    let out = ok(
        &run(&["--run-root", run_root, "config"], Some(&other_root)),
        "ocivol config",
    );
    let c = env.config.display();
    let entry = |key: &str| -> (String, String) {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} in:\n{out}"));
        let (value, source) = line.split_once("  # ").unwrap();
        (value.trim_end().to_string(), source.to_string())
    };
    assert!(
        out.contains(&format!("# config file: {c} (env OCIVOL_CONFIG)")),
        "{out}"
    );
    for (key, value, source) in [
        (
            "runtime",
            format!("runtime = \"{}\"", common::RUNC),
            format!("{c}:2"),
        ),
        (
            "root",
            format!("root = \"{}\"", other_root.display()),
            "env OCIVOL_ROOT".into(),
        ),
        (
            "run_root",
            format!("run_root = \"{run_root}\""),
            "flag --run-root".into(),
        ),
        (
            "allowed_bases",
            format!(
                "allowed_bases = [{{ path = \"{base}\", options = [\"readonly\", \"nodev\"] }}]"
            ),
            format!("{c}:6"),
        ),
        (
            "auto_create",
            "auto_create = false".into(),
            format!("{c}:7"),
        ),
        (
            "max_volumes_per_container",
            "max_volumes_per_container = 64".into(),
            "default".into(),
        ),
        (
            "volumes_from_scope",
            "volumes_from_scope = \"namespace\"".into(),
            "default".into(),
        ),
    ] {
        assert_eq!(entry(key), (value, source), "{out}");
    }
    // The output is itself a config that means the same.
    let again = env.dir.path().join("again.toml");
    fs::write(&again, &out).unwrap();
    let json = |config: &Path| -> serde_json::Value {
        let out = std::process::Command::new(common::OCIVOL)
            .env_remove("OCIVOL_ROOT")
            .env_remove("OCIVOL_RUN_ROOT")
            .arg("--config")
            .arg(config)
            .args(["config", "--format", "json"])
            .output()
            .unwrap();
        serde_json::from_str(&ok(&out, "ocivol config --format json")).unwrap()
    };
    let first = json(&again);
    assert_eq!(first["file_source"], "flag --config");
    assert_eq!(first["file_read"], true);
    assert_eq!(first["config"]["root"], other_root.to_str().unwrap());
    assert_eq!(first["config"]["run_root"], run_root);
    assert_eq!(
        first["config"]["policy"]["allowed_bases"],
        json!([{ "path": env.base, "options": ["readonly", "nodev"] }])
    );
    // Each source names the line of the key in that file.
    let line_of = |key: &str| {
        1 + out
            .lines()
            .position(|l| l.starts_with(&format!("{key} = ")))
            .unwrap()
    };
    assert_eq!(
        first["sources"]["runtime"],
        format!("{}:{}", again.display(), line_of("runtime"))
    );
    assert_eq!(
        first["sources"]["policy.shared_volumes"],
        format!("{}:{}", again.display(), line_of("shared_volumes"))
    );
    let original = json(&env.config);
    assert_eq!(original["config"]["policy"], first["config"]["policy"]);
    assert_eq!(original["config"]["runtime"], first["config"]["runtime"]);
    assert_eq!(original["sources"]["policy.shared_volumes"], "default");
}

#[test]
fn a_bad_config_is_refused_by_every_command_with_the_key_and_its_line() {
    let Some(env) = Env::new("a_bad_config_is_refused_by_every_command_with_the_key_and_its_line")
    else {
        return;
    };
    fs::write(
        &env.config,
        "runtime = \"runc\"\n\n[policy]\nalowed_bases = [\"/srv\"]\n",
    )
    .unwrap();
    let want = format!(
        "ocivol: config {} line 4: unknown key \"alowed_bases\" in [policy]; known keys: \
         allowed_bases, allowed_bind_sources, auto_create, shared_volumes, \
         max_volumes_per_container, volumes_from_scope\n",
        env.config.display()
    );
    for args in [&["volume", "ls"][..], &["config"], &["gc"]] {
        assert_eq!(env.ocivol_refused(args), want, "{args:?}");
    }
    // Through the runtime wrapper, before anything is made.
    let b = env.bundle("cfg-bad-a", &["true"], &[(VOLUMES, "v:/v")]);
    let out = env.create("cfg-bad-a", &b);
    assert!(!out.status.success());
    let printed = env.container_output("cfg-bad-a");
    assert!(
        printed.contains("line 4: unknown key \"alowed_bases\""),
        "{printed}"
    );
    assert!(!env.root.join("volumes").exists());

    fs::write(&env.config, "[policy]\nauto_create = \"no\"\n").unwrap();
    assert_eq!(
        env.ocivol_refused(&["volume", "ls"]),
        format!(
            "ocivol: config {} line 2: policy.auto_create: expected true or false, found a string\n",
            env.config.display()
        )
    );
}

#[test]
fn an_old_config_json_is_refused_with_the_command_that_converts_it() {
    let Some(env) = Env::new("an_old_config_json_is_refused_with_the_command_that_converts_it")
    else {
        return;
    };
    let old = env.dir.path().join("config.json");
    fs::write(
        &old,
        format!(
            "// the admin's notes\n{{\n  \"runtime\": \"{}\",\n  \"policy\": {{\"allowed_bases\": [{{\"path\": \"{}\", \"readonly\": true}}]}}\n}}\n",
            common::RUNC,
            env.base.display()
        ),
    )
    .unwrap();
    let with = |config: &Path, args: &[&str]| {
        std::process::Command::new(common::OCIVOL)
            .arg("--config")
            .arg(config)
            .arg("--root")
            .arg(&env.root)
            .arg("--run-root")
            .arg(&env.run_root)
            .args(args)
            .output()
            .unwrap()
    };
    let out = with(&old, &["volume", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    let o = old.display();
    assert_eq!(
        text(&out.stderr),
        format!(
            "ocivol: config {o} is ocivol's old JSON config format, which is no longer read: \
             convert it with `ocivol config --convert {o} > {}` and use that file\n",
            old.with_extension("toml").display()
        )
    );
    // The command it names works, and its result means what the old file meant.
    let converted = ok(
        &env.ocivol(&["config", "--convert", old.to_str().unwrap()]),
        "convert",
    );
    let new = env.dir.path().join("converted.toml");
    fs::write(&new, &converted).unwrap();
    let shown: serde_json::Value = serde_json::from_str(&ok(
        &with(&new, &["config", "--format", "json"]),
        "config of the converted file",
    ))
    .unwrap();
    assert_eq!(shown["config"]["runtime"], common::RUNC);
    assert_eq!(
        shown["config"]["policy"]["allowed_bases"],
        json!([{ "path": env.base, "options": ["readonly"] }])
    );
    // Converting a config.toml is refused: there is nothing to convert.
    let again = env.ocivol_refused(&["config", "--convert", new.to_str().unwrap()]);
    assert!(again.contains("already a config.toml"), "{again}");
}

#[test]
fn doctor_fails_with_a_fix_on_a_state_root_on_overlayfs_and_a_missing_runtime() {
    let Some(env) =
        Env::new("doctor_fails_with_a_fix_on_a_state_root_on_overlayfs_and_a_missing_runtime")
    else {
        return;
    };
    let o = env.dir.path().join("ovl");
    let [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map(|d| o.join(d));
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir_all(d).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("ocivol-test"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .unwrap();
    env.write_config(json!({"runtime": "/nonexistent/runc"}));
    let root = merged.join("state");
    let out = std::process::Command::new(common::OCIVOL)
        .arg("--config")
        .arg(&env.config)
        .arg("--root")
        .arg(&root)
        .arg("--run-root")
        .arg(&env.run_root)
        .args(["doctor", "--hooks-dir", "/nonexistent", "--engine", "none"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = text(&out.stdout);
    let mut lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[1].starts_with("ok   config file: "), "{stdout}");
    lines.remove(1);
    assert_eq!(
        lines[2],
        format!(
            "fail state root: {} is on overlayfs, which cannot hold the upper and work \
             directories of ocivol's overlays; move it to ext4, xfs or btrfs with --root or \
             OCIVOL_ROOT",
            root.display()
        )
    );
    assert_eq!(
        lines[4],
        "fail overlay mount: not tried: fix the state root first (above)"
    );
    assert_eq!(
        lines[5],
        "fail runtime: the real runtime \"/nonexistent/runc\" was not found; install it or set \
         \"runtime\" in the ocivol config"
    );
    nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH).unwrap();
}

/// doctor's lines about containerd, for a config file of the test's own.
fn doctor_containerd(dir: &Path, config: &Path, runtime_path: &Path) -> Vec<String> {
    let out = std::process::Command::new(common::OCIVOL)
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--run-root")
        .arg(dir.join("run"))
        .arg("doctor")
        .arg("--hooks-dir")
        .arg(dir)
        .args(["--engine", "containerd", "--containerd-config"])
        .arg(config)
        .arg("--runtime-path")
        .arg(runtime_path)
        .output()
        .unwrap();
    text(&out.stdout)
        .lines()
        .filter(|l| l[5..].starts_with("containerd: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn doctor_checks_the_containerd_handler_and_names_the_setup_command_that_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("config.toml");
    let runtime = d.join("ocivol-runtime");
    std::os::unix::fs::symlink(common::OCIVOL, &runtime).unwrap();
    let fix = format!(
        "`ocivol setup containerd --config {} --runtime-path {}`",
        config.display(),
        runtime.display()
    );
    let node = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n    SystemdCgroup = true\n    Root = \"/run/containerd/runc\"\n";
    fs::write(&config, node).unwrap();
    assert_eq!(
        doctor_containerd(d, &config, &runtime),
        [format!(
            "warn containerd: {} has no ocivol runtime handler (pods with runtimeClassName: ocivol fail); {fix} adds it",
            config.display()
        )]
    );
    // A handler written by hand from the old drop-in: no runc options, `io.ocivol.*` alone.
    let by_hand = format!(
        "{node}[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.ocivol]\n  runtime_type = \"io.containerd.runc.v2\"\n  pod_annotations = [\"io.ocivol.*\"]\n  container_annotations = [\"io.ocivol.*\", \"io.ocivol.*/*\"]\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.ocivol.options]\n    BinaryName = \"/usr/local/bin/elsewhere\"\n"
    );
    fs::write(&config, &by_hand).unwrap();
    let h = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.ocivol]";
    let c = config.display();
    assert_eq!(
        doctor_containerd(d, &config, &runtime),
        [
            format!(
                "fail containerd: {c}: {h} runs BinaryName /usr/local/bin/elsewhere, which is not this ocivol ({} or {}); {fix} points it here",
                runtime.display(),
                fs::canonicalize(common::OCIVOL).unwrap().display()
            ),
            format!(
                "fail containerd: {c}: {h} is not set up as runc's handler: SystemdCgroup unset (runc: true), Root unset (runc: \"/run/containerd/runc\"); its containers would get other cgroups or runc state than runc's; {fix} copies runc's options"
            ),
            format!(
                "fail containerd: {c}: {h} pod_annotations [\"io.ocivol.*\"] let no io.ocivol.volumes/app, io.ocivol.volumes-from/app through (Go's path.Match: `*` never matches `/`); {fix} sets [\"io.ocivol.*\", \"io.ocivol.*/*\"]"
            ),
        ]
    );
    // The command it names fixes every finding.
    let out = std::process::Command::new(common::OCIVOL)
        .args(["setup", "containerd", "--config"])
        .arg(&config)
        .arg("--runtime-path")
        .arg(&runtime)
        .output()
        .unwrap();
    ok(&out, "ocivol setup containerd");
    assert_eq!(
        doctor_containerd(d, &config, &runtime),
        [format!(
            "ok   containerd: {c}: handler ocivol runs {} with runc's options; every io.ocivol key passes",
            runtime.display()
        )]
    );
    // The silent v2/v3 trap is a finding too.
    fs::write(
        &config,
        format!("{node}[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.ocivol]\n  runtime_type = \"io.containerd.runc.v2\"\n"),
    )
    .unwrap();
    let lines = doctor_containerd(d, &config, &runtime);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("fail containerd: ")
            && lines[0].contains("says `version = 2` but has"),
        "{lines:?}"
    );
}

#[test]
fn the_config_names_the_roots_for_every_way_in_and_every_command() {
    let Some(env) = Env::new("the_config_names_the_roots_for_every_way_in_and_every_command")
    else {
        return;
    };
    // Only the config file says where the state is: no --root, no OCIVOL_ROOT anywhere.
    let cfg = json!({ "runtime": common::RUNC, "root": env.root, "run_root": env.run_root,
        "policy": { "allowed_bases": [env.base] } });
    env.write_config(cfg);
    let command = |args: &[&str]| {
        let mut c = std::process::Command::new(common::OCIVOL);
        c.env_clear()
            .env("OCIVOL_CONFIG", &env.config)
            .args(args)
            .stdin(std::process::Stdio::null());
        c
    };
    let ocivol = |args: &[&str]| ok(&command(args).output().unwrap(), &args.join(" "));
    let runc_root = env.runc_root.to_str().unwrap();
    // The runtime wrapper (as an engine calls it) and a hook (as hooks.d runs it).
    let b = env.bundle("cfg-roots-a", &["sleep", "600"], &[(VOLUMES, "cfgvol:/v")]);
    let detached = command(&[
        "runtime",
        "--root",
        runc_root,
        "run",
        "--detach",
        "--bundle",
        b.to_str().unwrap(),
        "cfg-roots-a",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .status()
    .unwrap();
    assert!(detached.success());
    let h = env.bundle(
        "cfg-roots-h",
        &["sh", "-c", "echo h > /h/f"],
        &[(VOLUMES, "cfghook:/h")],
    );
    common::add_hooks(&h, &[format!("OCIVOL_CONFIG={}", env.config.display())]);
    ok(
        &env.runc_cmd(&["run", "--bundle", h.to_str().unwrap(), "cfg-roots-h"])
            .output()
            .unwrap(),
        "hooked container",
    );
    assert_eq!(
        fs::read_to_string(env.volume_dir("cfghook").join("data/f")).unwrap(),
        "h\n"
    );
    // The operator's commands find them with no flag.
    assert!(ocivol(&["volume", "ls"]).contains("cfgvol"));
    assert!(ocivol(&["ps"]).contains("cfg-roots-a"));
    assert_eq!(env.users(&env.storage("cfgvol")), 1);
    ok(
        &env.runtime(&["delete", "--force", "cfg-roots-a"]),
        "delete",
    );
    assert_eq!(env.users(&env.storage("cfgvol")), 0);
    // doctor checks the roots the config names, and `ocivol config` says they come from it.
    let doctor = text(
        &command(&["doctor", "--hooks-dir", "/nonexistent", "--engine", "none"])
            .output()
            .unwrap()
            .stdout,
    );
    for (what, dir) in [("state root", &env.root), ("run root", &env.run_root)] {
        let want = format!("ok   {what}: {} on ", dir.display());
        assert!(doctor.lines().any(|l| l.starts_with(&want)), "{doctor}");
    }
    let shown = ocivol(&["config"]);
    let root_line = format!("root = \"{}\"", env.root.display());
    let in_file = 1 + fs::read_to_string(&env.config)
        .unwrap()
        .lines()
        .position(|l| l.starts_with(&root_line))
        .unwrap();
    let from = format!("# {}:{in_file}", env.config.display());
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with(&root_line) && l.ends_with(&from)),
        "{shown}"
    );

    // A gc pointed at roots nothing used makes no directory there.
    let nowhere = env.dir.path().join("nowhere");
    let cfg = json!({ "runtime": common::RUNC, "root": nowhere.join("lib"),
        "run_root": nowhere.join("run") });
    env.write_config(cfg);
    assert_eq!(ocivol(&["gc"]), "nothing to collect\n");
    assert!(!nowhere.exists());
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [
        &["volume"][..],
        &["volume", "create"],
        &["volume", "ls"],
        &["volume", "inspect"],
        &["volume", "rm"],
        &["volume", "prune"],
        &["volume", "diff"],
        &["volume", "reset"],
        &["ps"],
        &["gc"],
        &["doctor"],
        &["setup"],
        &["config"],
    ] {
        let out = std::process::Command::new(common::OCIVOL)
            .args(cmd)
            .arg("--help")
            .output()
            .unwrap();
        let help = ok(&out, &format!("{cmd:?} --help"));
        assert!(
            help.contains("Example") && help.contains(&format!("ocivol {}", cmd.join(" "))),
            "{cmd:?}: {help}"
        );
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
