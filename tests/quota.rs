//! `size=`/`inodes=` limits with project quotas, on a loop-mounted ext4 made by the test
//! (`mkfs.ext4 -O quota,project`, mounted `prjquota`) as ocivol's state root: writing past the
//! limit fails inside a real runc container with EDQUOT, the volume stays usable, `volume ls`
//! shows use against the limit; on a filesystem without project quotas the creation is refused
//! with the filesystem named, and nothing is left.

mod common;

use std::fs;
use std::process::Command;

use common::{Env, ok, text};

const VOLUMES: &str = "io.ocivol.volumes";

/// Puts `env.root` on a fresh ext4 with project quotas; `Err(why)` where this kernel or host
/// cannot (the test is then skipped with that reason).
fn quota_root(env: &Env) -> Result<(), String> {
    let img = env.dir.path().join("quota.img");
    let f = fs::File::create(&img).map_err(|e| e.to_string())?;
    f.set_len(64 << 20).map_err(|e| e.to_string())?;
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "quota,project"])
        .arg(&img)
        .output()
        .map_err(|e| format!("mkfs.ext4: {e}"))?;
    if !mkfs.status.success() {
        return Err(format!(
            "mkfs.ext4 -O quota,project: {}",
            text(&mkfs.stderr)
        ));
    }
    fs::create_dir_all(&env.root).map_err(|e| e.to_string())?;
    let mount = Command::new("mount")
        .args(["-o", "loop,prjquota"])
        .arg(&img)
        .arg(&env.root)
        .output()
        .map_err(|e| format!("mount: {e}"))?;
    if !mount.status.success() {
        // The kernel says why in its log (here: "The kernel was not built with CONFIG_QUOTA and
        // CONFIG_QFMT_V2").
        let log = Command::new("dmesg")
            .output()
            .map(|o| text(&o.stdout))
            .unwrap_or_default();
        let why = log
            .lines()
            .rev()
            .find(|l| l.contains("EXT4-fs (loop"))
            .unwrap_or("");
        return Err(format!(
            "mount -o loop,prjquota: {} {}",
            text(&mount.stderr).lines().next().unwrap_or(""),
            why.trim()
        ));
    }
    Ok(())
}

fn size_cell(env: &Env, name: &str) -> String {
    let ls = env.ocivol_ok(&["volume", "ls"]);
    let line = ls
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} in {ls}"));
    line.split_whitespace().last().unwrap().to_string()
}

#[test]
fn writing_past_a_size_limit_fails_inside_the_container_and_the_volume_stays_usable() {
    let test = "writing_past_a_size_limit_fails_inside_the_container_and_the_volume_stays_usable";
    let Some(env) = Env::new(test) else {
        return;
    };
    if let Err(why) = quota_root(&env) {
        eprintln!("{test}: skipped: project quotas are not available here: {why}");
        return;
    }
    let base = env.base.display().to_string();
    env.ocivol_ok(&[
        "volume", "create", "--scope", "any", "small", "--size", "1m", "--inodes", "50",
    ]);
    env.ocivol_ok(&[
        "volume", "create", "--scope", "any", "cowq", "--base", &base, "--size", "1m",
    ]);
    assert!(
        size_cell(&env, "small").ends_with("/1.049MB"),
        "{}",
        size_cell(&env, "small")
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ocivol_ok(&["volume", "inspect", "small"])).unwrap();
    assert_eq!(inspect[0]["quota"]["size_limit"], 1 << 20);
    assert_eq!(inspect[0]["quota"]["inodes_limit"], 50);

    for (i, name) in ["small", "cowq", "byannotation"].iter().enumerate() {
        let spec = if *name == "byannotation" {
            format!("{name}:/data:size=1m")
        } else {
            format!("{name}:/data")
        };
        let script = "cat /dev/zero > /data/big; echo status=$?; rm /data/big; \
                      echo again > /data/small && cat /data/small";
        let id = format!("ocivol-quota-{i}");
        let bundle = env.bundle(&id, &["sh", "-c", script], &[(VOLUMES, &spec)]);
        let out = env.runtime(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
        let stdout = ok(&out, "run");
        assert!(
            stdout.contains("status=1") && stdout.ends_with("again\n"),
            "{name}: {stdout}"
        );
        let err = text(&out.stderr);
        assert!(err.contains("Disk quota exceeded"), "{name}: {err}");
        ok(&env.delete(&id), "delete");
    }
    // Files count against inodes=: the 51st cannot be made.
    let bundle = env.bundle(
        "ocivol-quota-n",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 60 ]; do touch /data/f$i || break; i=$((i+1)); done; echo made=$i",
        ],
        &[(VOLUMES, "small:/data")],
    );
    let out = env.runtime(&[
        "run",
        "--bundle",
        bundle.to_str().unwrap(),
        "ocivol-quota-n",
    ]);
    let made: u32 = ok(&out, "run")
        .trim()
        .strip_prefix("made=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (45..50).contains(&made),
        "made {made} files under inodes=50"
    );
    ok(&env.delete("ocivol-quota-n"), "delete");
}

#[test]
fn a_limit_on_a_filesystem_without_project_quotas_is_refused_naming_it() {
    let Some(env) = Env::new("a_limit_on_a_filesystem_without_project_quotas_is_refused_naming_it")
    else {
        return;
    };
    let err = env.ocivol_refused(&["volume", "create", "--scope", "any", "q", "--size", "1g"]);
    assert!(
        err.starts_with(
            "ocivol: volume q: size=/inodes= need project quotas on the filesystem of "
        ) && err.contains("use ext4 made with -O quota,project and mounted with prjquota"),
        "{err}"
    );
    assert_eq!(env.ocivol_ok(&["volume", "ls", "-q"]), "");

    // Asked for by an annotation: the container's creation fails with the same reason.
    let bundle = env.bundle("q", &["true"], &[(VOLUMES, "auto:/data:size=1m")]);
    let out = env.runtime(&[
        "run",
        "--bundle",
        bundle.to_str().unwrap(),
        "ocivol-quota-a",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("auto:/data:size=1m") && err.contains("need project quotas"),
        "{err}"
    );
    assert_eq!(env.ocivol_ok(&["volume", "ls", "-q"]), "");
    assert!(env.mounts_here().is_empty());
}
