//! End to end under a real containerd daemon that the test starts (never the system one):
//! `ctr run --runc-binary ocivol-runtime --annotation io.ocivol.volumes=…`.

mod common;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::containerd::Containerd;
use common::{Env, ok};

#[test]
fn ctr_run_with_the_wrapper_gets_volumes_and_releases_them() {
    let Some(env) = Env::new("ctr_run_with_the_wrapper_gets_volumes_and_releases_them") else {
        return;
    };
    let ctrd = Containerd::start(&env);
    let ann = format!("cow:/data:base={};named:/named;/anon", env.base.display());

    let script = "cat /data/file.txt && echo x > /data/new.txt && echo n > /named/n.txt && ls /anon && echo done";
    let out = ctrd
        .run(
            &["--rm"],
            &ann,
            &env.rootfs,
            "ocivol-ctrd-1",
            &["sh", "-c", script],
        )
        .output()
        .unwrap();
    assert_eq!(ok(&out, "ctr run --rm"), "from the base\ndone\n");
    assert_eq!(env.users("cow"), 0, "released when ctr run --rm ended");
    assert_eq!(env.users("named"), 0);
    assert_eq!(env.overlays("cow"), 0, "the overlay is unmounted");
    assert_eq!(
        fs::read_to_string(env.store().data_dir(&env.storage("named")).join("n.txt")).unwrap(),
        "n\n"
    );
    assert_eq!(
        fs::read_to_string(env.store().upper_dir(&env.storage("cow")).join("new.txt")).unwrap(),
        "x\n"
    );
    assert!(
        !env.base.join("new.txt").exists(),
        "the base is never written"
    );
    let volumes: Vec<String> = fs::read_dir(env.root.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        volumes.len(),
        2,
        "the anonymous volume went with its container: {volumes:?}"
    );

    // Detached: held while the task lives, released by `ctr task rm`.
    let out = ctrd
        .run(
            &["-d"],
            &ann,
            &env.rootfs,
            "ocivol-ctrd-2",
            &["sleep", "600"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    assert_eq!(env.users("cow"), 1);
    assert_eq!(env.overlays("cow"), 1);
    ok(
        &ctrd
            .ctr(&["t", "kill", "-s", "SIGKILL", "ocivol-ctrd-2"])
            .output()
            .unwrap(),
        "kill",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = ctrd.ctr(&["t", "rm", "ocivol-ctrd-2"]).output().unwrap();
        if out.status.success() {
            break;
        }
        // The task may not have been reaped yet.
        assert!(
            Instant::now() < deadline,
            "task rm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(env.users("cow"), 0);
    assert_eq!(env.overlays("cow"), 0);
    ok(
        &ctrd.ctr(&["c", "rm", "ocivol-ctrd-2"]).output().unwrap(),
        "container rm",
    );
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn ctr_shows_a_bad_annotation_as_one_line() {
    let Some(env) = Env::new("ctr_shows_a_bad_annotation_as_one_line") else {
        return;
    };
    let ctrd = Containerd::start(&env);
    let out = ctrd
        .run(
            &["--rm"],
            "v:relative",
            &env.rootfs,
            "ocivol-ctrd-3",
            &["true"],
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "ocivol: annotation io.ocivol.volumes: entry \"v:relative\": destination \"relative\" is not an absolute path"
        ),
        "ctr shows ocivol's error: {stderr}"
    );
    assert!(!env.root.exists(), "no state was created");
    assert!(env.mounts_here().is_empty());
}
