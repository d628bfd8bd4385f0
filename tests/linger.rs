//! `overlay_linger`: a copy-on-write volume's overlay stays mounted after its last user for the
//! next one to take, until its time is up (then a later release or gc unmounts it) or the
//! operator removes or resets the volume. Real runc and overlayfs, as root.

mod common;

use std::fs;

use common::{Env, ok};
use serde_json::json;

const VOLUMES: &str = "io.ocivol.volumes";

fn with_linger(env: &Env, linger: &str) {
    let cfg = json!({
        "runtime": common::RUNC,
        "overlay_linger": linger,
        "policy": { "allowed_bases": [env.base] },
    });
    env.write_config(cfg);
}

/// The mount ID of the volume's overlay on the host, if it is mounted (a new mount has a new
/// one).
fn overlay_mount_id(env: &Env, volume: &str) -> Option<u64> {
    let target = env.volume_run_dir(volume).join("merged");
    let target = target.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.len() > 4 && f[4] == target)
        .map(|f| f[0].parse().unwrap())
}

#[test]
fn an_overlay_lingers_for_the_next_container_and_goes_when_its_time_is_up() {
    let Some(env) =
        Env::new("an_overlay_lingers_for_the_next_container_and_goes_when_its_time_is_up")
    else {
        return;
    };
    with_linger(&env, "60s");
    let ann = format!("shared:/data:base={}", env.base.display());
    let a = env.bundle("a", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-lg-a", &a), "start a");
    ok(
        &env.exec("ocivol-lg-a", "echo from-a > /data/a.txt"),
        "a writes",
    );
    let first = overlay_mount_id(&env, "shared").expect("mounted for a");
    ok(&env.delete("ocivol-lg-a"), "delete a");
    assert_eq!(env.users("shared"), 0);
    assert_eq!(overlay_mount_id(&env, "shared"), Some(first), "it lingers");

    let b = env.bundle("b", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-lg-b", &b), "start b");
    assert_eq!(
        overlay_mount_id(&env, "shared"),
        Some(first),
        "b takes the same overlay"
    );
    assert_eq!(
        ok(
            &env.exec("ocivol-lg-b", "cat /data/a.txt /data/file.txt"),
            "b reads"
        ),
        "from-a\nfrom the base\n"
    );
    ok(&env.delete("ocivol-lg-b"), "delete b");
    assert_eq!(overlay_mount_id(&env, "shared"), Some(first));

    // gc keeps an overlay whose time is not up.
    assert_eq!(env.ocivol_ok(&["gc"]), "nothing to collect\n");
    assert!(overlay_mount_id(&env, "shared").is_some());

    // Its time up, the release of any later container unmounts it.
    with_linger(&env, "1s");
    let c = env.bundle("c", &["sleep", "600"], &[(VOLUMES, &ann)]);
    ok(&env.start("ocivol-lg-c", &c), "start c");
    ok(&env.delete("ocivol-lg-c"), "delete c");
    assert!(overlay_mount_id(&env, "shared").is_some(), "lingers 1 s");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let other = format!("other:/data:base={}", env.base.display());
    let d = env.bundle("d", &["true"], &[(VOLUMES, &other)]);
    ok(
        &env.runtime(&["run", "--bundle", d.to_str().unwrap(), "ocivol-lg-d"]),
        "run d",
    );
    assert_eq!(
        overlay_mount_id(&env, "shared"),
        None,
        "swept by d's release"
    );
    // d's own overlay lingers, and gc unmounts it once its time is up.
    assert!(overlay_mount_id(&env, "other").is_some());
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let said = env.ocivol_ok(&["gc"]);
    assert!(said.contains("unmounted the overlay of volume"), "{said}");
    assert_eq!(overlay_mount_id(&env, "other"), None);
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn volume_rm_and_reset_unmount_a_lingering_overlay_and_volatile_ones_never_linger() {
    let Some(env) =
        Env::new("volume_rm_and_reset_unmount_a_lingering_overlay_and_volatile_ones_never_linger")
    else {
        return;
    };
    with_linger(&env, "10m");
    let ann = format!(
        "kept:/data:base={0};gone:/gone:base={0};vol:/vol:base={0},volatile",
        env.base.display()
    );
    let a = env.bundle("a", &["true"], &[(VOLUMES, &ann)]);
    ok(
        &env.runtime(&["run", "--bundle", a.to_str().unwrap(), "ocivol-lg2-a"]),
        "run a",
    );
    assert!(overlay_mount_id(&env, "kept").is_some());
    assert!(overlay_mount_id(&env, "gone").is_some());
    assert_eq!(
        overlay_mount_id(&env, "vol"),
        None,
        "a volatile volume never lingers"
    );

    ok(&env.ocivol(&["volume", "reset", "kept"]), "reset");
    assert_eq!(overlay_mount_id(&env, "kept"), None);
    ok(&env.ocivol(&["volume", "rm", "gone"]), "rm");
    assert_eq!(overlay_mount_id(&env, "gone"), None);
    assert!(!env.volume_dir("gone").exists());
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}
