//! `ocivol runtime` next to plain runc: what runc does with a command, ocivol does too, unless
//! the spec asks for volumes. Every test runs the same command through both and compares.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Env, OCIVOL, RUNC, ok, text};
use serde_json::{Value, json};

const VOLUMES: &str = "io.ocivol.volumes";

/// Plain runc with the test's `--root`, run in `cwd`.
fn runc(env: &Env, cwd: &Path, args: &[&str]) -> Output {
    env.runc_cmd(args).current_dir(cwd).output().unwrap()
}

/// `ocivol runtime --root R ARGS` run in `cwd`.
fn wrapper(env: &Env, cwd: &Path, args: &[&str]) -> Output {
    env.runtime_cmd(args).current_dir(cwd).output().unwrap()
}

/// runc's error lines carry a time: drop it to compare two runs.
fn without_time(stderr: &[u8]) -> String {
    common::without_time(&text(stderr))
}

/// Nothing of ocivol's state was created: the wrapper or hook did not get past "no key".
fn assert_no_state(env: &Env, what: &str) {
    for dir in [&env.root, &env.run_root] {
        assert!(
            !dir.exists() || fs::read_dir(dir).unwrap().next().is_none(),
            "{what}: {} was touched",
            dir.display()
        );
    }
}

/// A spec as `runc spec` writes it, with this process and these annotations, as a JSON value.
fn spec(env: &Env, name: &str, args: &[&str], annotations: &[(&str, &str)]) -> Value {
    let b = env.bundle(name, args, annotations);
    serde_json::from_slice(&fs::read(b.join("config.json")).unwrap()).unwrap()
}

/// Writes `text` as the bundle's config.json; returns the bundle.
fn bundle_with(env: &Env, name: &str, text: &str) -> PathBuf {
    let b = env.dir.path().join("bundles").join(name);
    fs::create_dir_all(&b).unwrap();
    fs::write(b.join("config.json"), text).unwrap();
    b
}

#[test]
fn help_reaches_the_real_runtime_wherever_it_is_asked_for() {
    let Some(env) = Env::new("help_reaches_the_real_runtime_wherever_it_is_asked_for") else {
        return;
    };
    // An empty directory: no config.json, so nothing but runc's help can succeed here.
    let empty = env.dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    for args in [
        &["run", "-h"][..],
        &["create", "-h"],
        &["create", "--help"],
        &["--help"],
        &["-h"],
        &["run", "c1", "--help"],
        &["delete", "-h"],
        &["create", "--bundle", ".", "c1", "-help"],
    ] {
        let plain = runc(&env, &empty, args);
        let ours = wrapper(&env, &empty, args);
        assert!(plain.status.success(), "{args:?}: runc prints its help");
        assert_eq!(ours.status.code(), plain.status.code(), "{args:?}");
        assert_eq!(text(&ours.stdout), text(&plain.stdout), "{args:?}");
        assert_eq!(text(&ours.stderr), text(&plain.stderr), "{args:?}");
    }
    // Called by its runc name.
    let link = env.dir.path().join("ocivol-runtime");
    symlink(OCIVOL, &link).unwrap();
    let ours = Command::new(&link)
        .arg("--help")
        .env("OCIVOL_CONFIG", &env.config)
        .current_dir(&empty)
        .output()
        .unwrap();
    let plain = Command::new(RUNC).arg("--help").output().unwrap();
    assert_eq!(ours.status.code(), Some(0));
    assert_eq!(text(&ours.stdout), text(&plain.stdout));
    assert_no_state(&env, "help");
}

#[test]
fn a_bundle_without_config_json_gets_runcs_own_error() {
    let Some(env) = Env::new("a_bundle_without_config_json_gets_runcs_own_error") else {
        return;
    };
    let empty = env.dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    for args in [
        &["create", "x"][..],
        &["run", "x"],
        &["create", "--bundle", empty.to_str().unwrap(), "x"],
    ] {
        let plain = runc(&env, &empty, args);
        let ours = wrapper(&env, &empty, args);
        assert!(
            text(&plain.stderr).contains("JSON specification file config.json not found"),
            "{}",
            text(&plain.stderr)
        );
        assert_eq!(ours.status.code(), plain.status.code(), "{args:?}");
        assert_eq!(
            without_time(&ours.stderr),
            without_time(&plain.stderr),
            "{args:?}"
        );
    }
    assert_no_state(&env, "no config.json");
}

/// A config.json runc takes, written the way a strict reader refuses: keys in other cases
/// (Go's encoding/json matches them to fields case-insensitively) and bytes after the object
/// (runc's decoder reads the first value only).
fn odd_but_valid(spec: &Value) -> String {
    let mut spec = spec.clone();
    let obj = spec.as_object_mut().unwrap();
    let mounts = obj.remove("mounts").unwrap();
    let mounts: Vec<Value> = mounts
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mut m = m.as_object().unwrap().clone();
            let d = m.remove("destination").unwrap();
            m.insert("Destination".into(), d);
            Value::Object(m)
        })
        .collect();
    obj.insert("MOUNTS".into(), Value::Array(mounts));
    format!(
        "{}\n{{\"trailing\": true}} and more",
        Value::Object(obj.clone())
    )
}

#[test]
fn a_spec_without_an_ocivol_key_reaches_runc_untouched() {
    let Some(env) = Env::new("a_spec_without_an_ocivol_key_reaches_runc_untouched") else {
        return;
    };
    // `io.ocivol.` appears, but not as an annotation: still no key.
    let mut s = spec(
        &env,
        "t",
        &["sh", "-c", "echo $NOTE; ls /"],
        &[("other", "x")],
    );
    s["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("NOTE=io.ocivol.volumes=v:/v"));
    let text_in = odd_but_valid(&s);
    for (i, way) in ["plain", "ocivol"].iter().enumerate() {
        let b = bundle_with(&env, &format!("b{i}"), &text_in);
        let args = [
            "run",
            "--bundle",
            b.to_str().unwrap(),
            &format!("parity-nokey-{i}"),
        ];
        let out = if *way == "plain" {
            runc(&env, &b, &args)
        } else {
            wrapper(&env, &b, &args)
        };
        let stdout = ok(&out, way);
        assert!(
            stdout.starts_with("io.ocivol.volumes=v:/v\n"),
            "{way}: {stdout}"
        );
        assert!(
            stdout.contains("\nproc\n"),
            "{way}: runc read MOUNTS: {stdout}"
        );
        assert_eq!(
            fs::read_to_string(b.join("config.json")).unwrap(),
            text_in,
            "{way}: config.json is untouched"
        );
    }
    assert_no_state(&env, "no key");
}

#[test]
fn hooks_without_an_ocivol_key_touch_nothing() {
    let Some(env) = Env::new("hooks_without_an_ocivol_key_touch_nothing") else {
        return;
    };
    let s = spec(&env, "t", &["true"], &[("other", "x")]);
    let text_in = odd_but_valid(&s);
    let hook = |stage: &str, stdin: &str| {
        let mut c = Command::new(OCIVOL)
            .args(["hook", stage])
            .envs(env.hook_env().iter().map(|kv| kv.split_once('=').unwrap()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    // podman's precreate: the config comes back byte for byte.
    let out = hook("precreate", &text_in);
    assert_eq!(ok(&out, "precreate"), text_in);
    // createRuntime and poststop read the bundle's config.json.
    let b = bundle_with(&env, "hooked", &text_in);
    let state = json!({"ociVersion": "1.0.2", "id": "parity-hook", "status": "creating",
                       "pid": std::process::id(), "bundle": b});
    ok(
        &hook("create-runtime", &state.to_string()),
        "create-runtime",
    );
    let mut stopped = state.clone();
    stopped["status"] = json!("stopped");
    ok(&hook("poststop", &stopped.to_string()), "poststop");
    assert_eq!(fs::read_to_string(b.join("config.json")).unwrap(), text_in);
    assert_no_state(&env, "hooks");
}

#[test]
fn specs_runc_accepts_are_accepted_with_an_ocivol_key() {
    let Some(env) = Env::new("specs_runc_accepts_are_accepted_with_an_ocivol_key") else {
        return;
    };
    let script = "echo hi > /v/f && cat /v/f";
    let base = spec(&env, "t", &["sh", "-c", script], &[(VOLUMES, "v:/v")]);
    let odd = odd_but_valid(&base);
    // The annotation's key with an escaped dot, and "Annotations" for "annotations".
    let escaped = odd
        .replace("\"io.ocivol.volumes\"", "\"io\\u002eocivol.volumes\"")
        .replace("\"annotations\"", "\"Annotations\"");
    assert!(!escaped.contains("io.ocivol."));
    for (i, text_in) in [odd, escaped].iter().enumerate() {
        let b = bundle_with(&env, &format!("b{i}"), text_in);
        let id = format!("parity-key-{i}");
        let out = wrapper(&env, &b, &["run", "--bundle", b.to_str().unwrap(), &id]);
        assert_eq!(ok(&out, &id), "hi\n", "case {i}: the volume is mounted");
        let after: Value =
            serde_json::from_slice(&fs::read(b.join("config.json")).unwrap()).unwrap();
        let obj = after.as_object().unwrap();
        assert!(
            !obj.contains_key("MOUNTS") && !obj.contains_key("Annotations"),
            "case {i}: keys are written as the runtime spec names them: {after}"
        );
        let mounts = after["mounts"].as_array().unwrap();
        assert!(
            mounts.iter().all(|m| m.get("destination").is_some()),
            "case {i}: {mounts:?}"
        );
        assert!(mounts.iter().any(|m| m["destination"] == "/v"));
        assert_eq!(after["annotations"][VOLUMES], "v:/v");
    }
    assert_eq!(env.users("v"), 0);
    assert!(env.mounts_here().is_empty());
}

#[test]
fn fields_runc_would_merge_are_refused_with_one_line() {
    let Some(env) = Env::new("fields_runc_would_merge_are_refused_with_one_line") else {
        return;
    };
    let s = spec(&env, "t", &["true"], &[(VOLUMES, "v:/v")]);
    let mut text_in = s.to_string();
    text_in.pop();
    text_in.push_str(r#","Mounts":[{"destination":"/x","type":"tmpfs","source":"tmpfs"}]}"#);
    let b = bundle_with(&env, "dup", &text_in);
    let out = wrapper(
        &env,
        &b,
        &["create", "--bundle", b.to_str().unwrap(), "parity-dup"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("\"mounts\"") && stderr.contains("\"Mounts\""),
        "names both keys: {stderr}"
    );
    assert_eq!(fs::read_to_string(b.join("config.json")).unwrap(), text_in);
    assert!(
        env.runc_state("parity-dup").is_none(),
        "no container was created"
    );
    assert!(env.mounts_here().is_empty());
}

#[test]
fn an_error_prints_each_cause_once() {
    let Some(env) = Env::new("an_error_prints_each_cause_once") else {
        return;
    };
    let missing = env.dir.path().join("missing");
    let out = Command::new(OCIVOL)
        .arg("--config")
        .arg(missing.join("config.json"))
        .args(["volume", "ls"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
    // A hook whose bundle is gone.
    let mut c = Command::new(OCIVOL)
        .args(["hook", "create-runtime"])
        .envs(env.hook_env().iter().map(|kv| kv.split_once('=').unwrap()))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state = json!({"ociVersion": "1.0.2", "id": "c", "status": "creating", "pid": 1,
                       "bundle": missing});
    c.stdin
        .take()
        .unwrap()
        .write_all(state.to_string().as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
}

/// How a foreground `run` is started in the signal tests.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    /// Plain runc.
    Runc,
    /// `ocivol runtime` with an ocivol volume: ocivol runs runc as its child and forwards.
    Ocivol,
    /// `ocivol runtime` without an ocivol key: ocivol exec()s runc, nothing to forward.
    OcivolNoKey,
}

const SIGNALS: [(nix::sys::signal::Signal, &str, i32); 4] = [
    (nix::sys::signal::Signal::SIGINT, "INT", 101),
    (nix::sys::signal::Signal::SIGTERM, "TERM", 102),
    (nix::sys::signal::Signal::SIGHUP, "HUP", 103),
    (nix::sys::signal::Signal::SIGUSR1, "USR1", 104),
];

/// A container whose shell writes which signal it got to /out/got and exits with that
/// signal's status (PID 1 of a pid namespace ignores a signal it has no handler for, so each
/// has a trap); /out/ready says the traps are set.
fn trapping_bundle(env: &Env, name: &str, way: Way, out: &Path) -> PathBuf {
    let mut script = String::new();
    for (_, sig, status) in SIGNALS {
        script.push_str(&format!(
            "trap 'echo {sig} > /out/got; exit {status}' {sig}; "
        ));
    }
    script.push_str("echo ready > /out/ready; while true; do sleep 1 & wait $!; done");
    let ann: &[(&str, &str)] = match way {
        Way::Ocivol => &[(VOLUMES, "v:/v")],
        _ => &[],
    };
    let b = env.bundle(name, &["sh", "-c", &script], ann);
    let path = b.join("config.json");
    let mut s: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    s["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]
    }));
    fs::write(&path, s.to_string()).unwrap();
    b
}

/// Starts a foreground `run` of the bundle the given way; stdio is /dev/null.
fn spawn_run(env: &Env, way: Way, bundle: &Path, id: &str) -> std::process::Child {
    let args = ["run", "--bundle", bundle.to_str().unwrap(), id];
    let mut cmd = match way {
        Way::Runc => env.runc_cmd(&args),
        _ => env.runtime_cmd(&args),
    };
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for a file to appear.
fn wait_for(path: &Path, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "{what}: timed out");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits for a child; one that has not ended after 30 s is killed and the test fails (a signal
/// that never reached the container would otherwise hang it).
fn wait_or_fail(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: did not end");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn pid_of(child: &std::process::Child) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(child.id() as i32)
}

#[test]
fn signals_to_a_foreground_run_reach_the_container_as_with_runc() {
    let Some(env) = Env::new("signals_to_a_foreground_run_reach_the_container_as_with_runc") else {
        return;
    };
    for (sig, name, status) in SIGNALS {
        let mut statuses = Vec::new();
        for way in [Way::Runc, Way::Ocivol, Way::OcivolNoKey] {
            let tag = format!("{name}-{way:?}").to_lowercase();
            let out = env.dir.path().join(format!("out-{tag}"));
            fs::create_dir(&out).unwrap();
            let b = trapping_bundle(&env, &tag, way, &out);
            let id = format!("parity-sig-{tag}");
            let mut child = spawn_run(&env, way, &b, &id);
            wait_for(&out.join("ready"), &id);
            if way == Way::Ocivol {
                assert_eq!(env.users("v"), 1, "{id}: the volume is held while it runs");
            }
            nix::sys::signal::kill(pid_of(&child), sig).unwrap();
            let st = wait_or_fail(&mut child, &id);
            let got = fs::read_to_string(out.join("got")).unwrap_or_default();
            assert_eq!(got, format!("{name}\n"), "{id}: the container got {name}");
            assert_eq!(st.code(), Some(status), "{id}: runc's status: {st:?}");
            statuses.push(st);
            assert!(env.runc_state(&id).is_none(), "{id}: runc deleted it");
        }
        assert!(statuses.windows(2).all(|w| w[0] == w[1]), "{statuses:?}");
        assert_eq!(env.users("v"), 0, "{name}: the volume is released");
    }
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

/// The container's init killed from outside (runc reports 128+signal), and runc itself killed
/// (the caller sees the same signal): the same through ocivol as with plain runc.
#[test]
fn a_container_or_runtime_killed_by_a_signal_ends_as_with_runc() {
    let Some(env) = Env::new("a_container_or_runtime_killed_by_a_signal_ends_as_with_runc") else {
        return;
    };
    let mut container_killed = Vec::new();
    let mut runtime_killed = Vec::new();
    for way in [Way::Runc, Way::Ocivol] {
        for kill_runtime in [false, true] {
            let tag = format!("{way:?}-{kill_runtime}").to_lowercase();
            let out = env.dir.path().join(format!("out-{tag}"));
            fs::create_dir(&out).unwrap();
            let b = trapping_bundle(&env, &tag, way, &out);
            let id = format!("parity-kill-{tag}");
            let mut child = spawn_run(&env, way, &b, &id);
            wait_for(&out.join("ready"), &id);
            let init = nix::unistd::Pid::from_raw(env.init_pid(&id));
            if kill_runtime {
                // runc is the child itself, or ocivol's child.
                let runc = match way {
                    Way::Runc => pid_of(&child),
                    _ => {
                        let children = fs::read_to_string(format!(
                            "/proc/{}/task/{}/children",
                            child.id(),
                            child.id()
                        ))
                        .unwrap();
                        let pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
                        nix::unistd::Pid::from_raw(pid)
                    }
                };
                nix::sys::signal::kill(runc, nix::sys::signal::Signal::SIGKILL).unwrap();
                let st = wait_or_fail(&mut child, &id);
                runtime_killed.push((
                    st.code(),
                    std::os::unix::process::ExitStatusExt::signal(&st),
                ));
                // The container outlives its runtime, as with plain runc, and keeps its volume.
                assert!(env.runc_state(&id).is_some(), "{id}: still there");
                if way == Way::Ocivol {
                    assert_eq!(
                        env.users("v"),
                        1,
                        "{id}: the running container keeps its volume"
                    );
                }
                nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL).unwrap();
                let del = match way {
                    Way::Runc => env.runc_cmd(&["delete", "--force", &id]).output().unwrap(),
                    _ => env.delete(&id),
                };
                ok(&del, "delete");
            } else {
                nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL).unwrap();
                let st = wait_or_fail(&mut child, &id);
                container_killed.push((
                    st.code(),
                    std::os::unix::process::ExitStatusExt::signal(&st),
                ));
            }
            assert_eq!(env.users("v"), 0, "{id}: released");
        }
    }
    assert_eq!(container_killed[0], (Some(137), None), "runc: 128+SIGKILL");
    assert_eq!(container_killed[1], container_killed[0], "ocivol as runc");
    assert_eq!(runtime_killed[0], (None, Some(9)), "runc dies of SIGKILL");
    assert_eq!(runtime_killed[1], runtime_killed[0], "ocivol as runc");
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}
