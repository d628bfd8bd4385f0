//! Issue 13, user namespaces: a container whose spec maps its ids (`linux.uidMappings`,
//! `gidMappings`, as Kubernetes' `hostUsers: false` writes them) gets every mount ocivol adds
//! idmapped to its user namespace, through real runc 1.1, both ways in. Its root owns what the
//! host's root owns and writes files that the host sees as root's; a missing destination is
//! made inside the rootfs even where the container's root could not make it; a symlink in the
//! image never leads that out of the rootfs; and a spec without a user namespace is served as
//! before.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Env, Way, ok, text};
use serde_json::{Value, json};

const VOLUMES: &str = "io.ocivol.volumes";
/// Container id 0 is host id `HOST_ID`, for `SIZE` ids (uids and gids alike).
const HOST_ID: u32 = 100_000;
const SIZE: u32 = 65_536;

/// A fresh environment whose directory a container's root (an unprivileged host id) can
/// traverse to reach its rootfs, as runc 1.1 needs; `None` when not root.
fn userns_env(test: &str) -> Option<Env> {
    let env = Env::new(test)?;
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    Some(env)
}

/// A rootfs of its own (busybox), owned by `owner` (host ids) throughout.
fn rootfs(env: &Env, name: &str, owner: u32) -> PathBuf {
    let rootfs = env.dir.path().join(name);
    common::make_rootfs(&rootfs);
    chown_tree(&rootfs, owner);
    rootfs
}

fn chown_tree(path: &Path, owner: u32) {
    std::os::unix::fs::lchown(path, Some(owner), Some(owner)).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for e in fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), owner);
        }
    }
}

/// A bundle for `way` whose container runs in a user namespace mapping 0 to `HOST_ID` (or, with
/// `userns` false, in none) on `rootfs`.
fn bundle(
    env: &Env,
    way: Way,
    id: &str,
    args: &[&str],
    ann: &str,
    rootfs: &Path,
    userns: bool,
) -> PathBuf {
    let b = way.bundle(env, id, args, &[(VOLUMES, ann)]);
    let path = b.join("config.json");
    let mut spec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    spec["root"]["path"] = json!(rootfs);
    if userns {
        let map = json!([{ "containerID": 0, "hostID": HOST_ID, "size": SIZE }]);
        spec["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "type": "user" }));
        spec["linux"]["uidMappings"] = map.clone();
        spec["linux"]["gidMappings"] = map;
    }
    fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    b
}

fn started(env: &Env, way: Way, id: &str, bundle: &Path) {
    let out = way.start(env, id, bundle);
    assert!(
        out.status.success(),
        "{way:?}: start {id}: {}",
        env.container_output(id)
    );
}

fn uid_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().uid()
}

/// The directories of the anonymous volumes in the state (32 hex digits, as Docker's).
fn anonymous_volumes(env: &Env) -> Vec<PathBuf> {
    fs::read_dir(env.root.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .collect()
}

/// The first line of ocivol's on stderr.
fn ocivol_line(out: &Output) -> String {
    text(&out.stderr)
        .lines()
        .find(|l| l.contains("ocivol:"))
        .unwrap_or_default()
        .to_string()
}

/// The mount options (field 6 of mountinfo) of the mount at `dest`, as the container sees it.
fn options_inside(env: &Env, id: &str, dest: &str) -> String {
    let info = ok(&env.exec(id, "cat /proc/self/mountinfo"), "mountinfo");
    info.lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some(dest))
        .and_then(|l| l.split(' ').nth(5))
        .unwrap_or_else(|| panic!("no mount at {dest}: {info}"))
        .to_string()
}

#[test]
fn volumes_are_idmapped_to_a_user_namespaced_container() {
    let Some(env) = userns_env("volumes_are_idmapped_to_a_user_namespaced_container") else {
        return;
    };
    let binds = env.dir.path().join("binds");
    fs::create_dir_all(binds.join("host")).unwrap();
    env.write_policy(json!({ "allowed_bases": [env.base], "allowed_bind_sources": [binds] }));
    let rootfs = rootfs(&env, "rootfs-mapped", HOST_ID);
    for way in Way::BOTH {
        let id = format!("un-{way:?}").to_lowercase();
        let ann = format!(
            "named-{id}:/named;/anon;cow-{id}:/cow:base={};{}:/bind",
            env.base.display(),
            binds.join("host").display()
        );
        let b = bundle(&env, way, &id, &["sleep", "600"], &ann, &rootfs, true);
        started(&env, way, &id, &b);
        let dests = ["/named", "/anon", "/cow", "/bind"];
        assert_eq!(
            ok(
                &env.exec(&id, "stat -c %u:%g /named /anon /cow /bind /cow/file.txt"),
                "stat"
            ),
            "0:0\n0:0\n0:0\n0:0\n0:0\n",
            "{way:?}: the container's root owns what the host's root owns (not 65534)"
        );
        for d in dests {
            ok(
                &env.exec(&id, &format!("echo hi > {d}/written && mkdir {d}/dir")),
                &format!("{way:?}: root writes into {d}"),
            );
        }
        assert_eq!(
            ok(
                &env.exec(
                    &id,
                    "stat -c %u /named/written /anon/written /cow/written /bind/written"
                ),
                "stat"
            ),
            "0\n0\n0\n0\n"
        );
        // On disk, through the mapping back: the host's root, as if it had written them.
        let anon = anonymous_volumes(&env);
        assert_eq!(anon.len(), 1, "{anon:?}");
        for on_disk in [
            env.volume_dir(&format!("named-{id}")).join("data/written"),
            anon[0].join("data/written"),
            env.volume_dir(&format!("cow-{id}")).join("upper/written"),
            binds.join("host/written"),
        ] {
            assert_eq!(uid_of(&on_disk), 0, "{way:?}: {}", on_disk.display());
        }
        // The volumes' own mounts carry the mapping; the copy-on-write one is an overlay of
        // idmapped layers (an overlay itself cannot be idmapped).
        for d in ["/named", "/anon", "/bind"] {
            assert!(
                options_inside(&env, &id, d).contains("idmapped"),
                "{way:?}: {d} is idmapped"
            );
        }
        ok(&way.delete(&env, &id), "delete");
        assert_eq!(env.users(&format!("cow-{id}")), 0);
        assert_eq!(env.overlays(&format!("cow-{id}")), 0);
        fs::remove_file(binds.join("host/written")).unwrap();
        fs::remove_dir(binds.join("host/dir")).unwrap();
    }
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_missing_destination_is_made_inside_a_rootfs_the_containers_root_cannot_write() {
    let Some(env) = userns_env(
        "a_missing_destination_is_made_inside_a_rootfs_the_containers_root_cannot_write",
    ) else {
        return;
    };
    // As runc's own userns tests have it: the rootfs belongs to the host's root, so the
    // container's root cannot make a mount point in it; and one that belongs to the mapped root.
    for (owner, name) in [(0, "rootfs-host"), (HOST_ID, "rootfs-mapped")] {
        let rootfs = rootfs(&env, name, owner);
        for way in Way::BOTH {
            let id = format!("mk-{owner}-{way:?}").to_lowercase();
            let ann = format!("v-{id}:/new/deep;/new/deep/anon");
            let script = "stat -c %u /new/deep /new/deep/anon && echo x > /new/deep/anon/f";
            let b = bundle(&env, way, &id, &["sh", "-c", script], &ann, &rootfs, true);
            let out = way.run(&env, &id, &b);
            assert_eq!(ok(&out, &format!("{way:?}, rootfs of {owner}")), "0\n0\n");
            // Made inside the rootfs, with the owner of the rootfs's root.
            assert_eq!(uid_of(&rootfs.join("new")), owner, "{way:?}");
            assert_eq!(uid_of(&rootfs.join("new/deep")), owner, "{way:?}");
            fs::remove_dir_all(rootfs.join("new")).unwrap();
        }
    }
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_symlink_in_the_image_never_makes_a_mount_point_outside_the_rootfs() {
    let Some(env) =
        userns_env("a_symlink_in_the_image_never_makes_a_mount_point_outside_the_rootfs")
    else {
        return;
    };
    let rootfs = rootfs(&env, "rootfs-hostile", 0);
    symlink("/etc", rootfs.join("mnt")).unwrap();
    symlink("../../../../../../../tmp", rootfs.join("up")).unwrap();
    // A name no other test uses, so that its appearance on the host means this test made it.
    let unique = format!(
        "ocivol-userns-escape-{}",
        env.dir.path().file_name().unwrap().to_string_lossy()
    );
    for way in Way::BOTH {
        let id = format!("sym-{way:?}").to_lowercase();
        let ann = format!("a-{id}:/mnt/{unique}/x;b-{id}:/up/{unique}");
        let script = format!("stat -c %u /mnt/{unique}/x /up/{unique}");
        let b = bundle(&env, way, &id, &["sh", "-c", &script], &ann, &rootfs, true);
        let out = way.run(&env, &id, &b);
        let on_host = [
            Path::new("/etc").join(&unique),
            Path::new("/tmp").join(&unique),
        ];
        let escaped: Vec<_> = on_host.iter().filter(|p| p.exists()).collect();
        for p in &escaped {
            let _ = fs::remove_dir_all(p);
        }
        assert!(escaped.is_empty(), "{way:?}: made on the host: {escaped:?}");
        // Followed as if the rootfs were `/`: the mount points are the rootfs's own.
        assert_eq!(ok(&out, &format!("{way:?}")), "0\n0\n");
        assert!(
            rootfs.join("etc").join(&unique).join("x").is_dir(),
            "{way:?}"
        );
        assert!(rootfs.join("tmp").join(&unique).is_dir(), "{way:?}");
        fs::remove_dir_all(rootfs.join("etc").join(&unique)).unwrap();
        fs::remove_dir_all(rootfs.join("tmp").join(&unique)).unwrap();
    }
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_spec_without_a_user_namespace_gets_no_idmap() {
    let Some(env) = userns_env("a_spec_without_a_user_namespace_gets_no_idmap") else {
        return;
    };
    let rootfs = env.rootfs.clone();
    for way in Way::BOTH {
        let id = format!("plain-{way:?}").to_lowercase();
        let ann = format!(
            "n-{id}:/named;/anon;c-{id}:/cow:base={}",
            env.base.display()
        );
        let b = bundle(&env, way, &id, &["sleep", "600"], &ann, &rootfs, false);
        started(&env, way, &id, &b);
        for d in ["/named", "/anon", "/cow"] {
            assert!(
                !options_inside(&env, &id, d).contains("idmapped"),
                "{way:?}: {d}"
            );
        }
        ok(
            &env.exec(
                &id,
                "echo x > /named/f && stat -c %u /named/f /cow/file.txt",
            ),
            "write",
        );
        assert_eq!(
            uid_of(&env.volume_dir(&format!("n-{id}")).join("data/f")),
            0
        );
        ok(&way.delete(&env, &id), "delete");
    }
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_copy_on_write_volume_is_shared_by_one_mapping_at_a_time() {
    let Some(env) = userns_env("a_copy_on_write_volume_is_shared_by_one_mapping_at_a_time") else {
        return;
    };
    let mapped = rootfs(&env, "rootfs-mapped", HOST_ID);
    let ann = format!("shared:/data:base={}", env.base.display());
    let way = Way::Runtime;
    let a = bundle(&env, way, "cow-a", &["sleep", "600"], &ann, &mapped, true);
    let b = bundle(&env, way, "cow-b", &["sleep", "600"], &ann, &mapped, true);
    started(&env, way, "cow-a", &a);
    started(&env, way, "cow-b", &b);
    assert_eq!((env.users("shared"), env.overlays("shared")), (2, 1));
    ok(&env.exec("cow-a", "echo a > /data/a"), "a writes");
    assert_eq!(ok(&env.exec("cow-b", "cat /data/a"), "b reads"), "a\n");
    // A container without the mapping would see the overlay's files under other owners.
    let c = bundle(
        &env,
        way,
        "cow-c",
        &["cat", "/data/a"],
        &ann,
        &env.rootfs,
        false,
    );
    let out = way.run(&env, "cow-c", &c);
    assert!(
        !out.status.success(),
        "refused while the mapped ones use it"
    );
    let line = ocivol_line(&out);
    assert!(
        line.contains("shared") && line.contains("user-namespace mappings"),
        "{line}"
    );
    assert_eq!(env.users("shared"), 2);
    ok(&way.delete(&env, "cow-a"), "delete a");
    ok(&way.delete(&env, "cow-b"), "delete b");
    assert_eq!((env.users("shared"), env.overlays("shared")), (0, 0));
    // Once they are gone, it is mounted again for the next one, with its files as the host's.
    assert_eq!(ok(&way.run(&env, "cow-c", &c), "c alone"), "a\n");
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_filesystem_that_cannot_be_idmapped_fails_with_one_line() {
    let Some(env) = userns_env("a_filesystem_that_cannot_be_idmapped_fails_with_one_line") else {
        return;
    };
    // An overlay (which this kernel cannot idmap) as a bind source, and under one.
    let binds = env.dir.path().join("binds");
    fs::create_dir_all(binds.join("tree")).unwrap();
    for (i, target) in [binds.join("ovl"), binds.join("tree/sub")]
        .iter()
        .enumerate()
    {
        let layers = env.dir.path().join(format!("layers{i}"));
        for d in ["lower", "upper", "work"] {
            fs::create_dir_all(layers.join(d)).unwrap();
        }
        fs::create_dir_all(target).unwrap();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            layers.join("lower").display(),
            layers.join("upper").display(),
            layers.join("work").display()
        );
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .unwrap();
    }
    env.write_policy(json!({ "allowed_bases": [env.base], "allowed_bind_sources": [binds] }));
    let rootfs = rootfs(&env, "rootfs-mapped", HOST_ID);
    for way in Way::BOTH {
        for (i, src) in ["ovl", "tree"].iter().enumerate() {
            let id = format!("noidmap-{i}-{way:?}").to_lowercase();
            let ann = format!("ok-{id}:/ok;{}:/b", binds.join(src).display());
            let b = bundle(&env, way, &id, &["true"], &ann, &rootfs, true);
            let out = way.run(&env, &id, &b);
            assert!(!out.status.success(), "{way:?} {src}");
            let line = ocivol_line(&out);
            assert!(
                line.contains("/b") && line.contains("idmapped"),
                "{way:?} {src}: {}",
                text(&out.stderr)
            );
            assert_eq!(env.users(&format!("ok-{id}")), 0, "{way:?} {src}");
        }
    }
    let mut ours = env.mounts_here();
    ours.retain(|m| !m.starts_with(binds.to_str().unwrap()));
    assert!(ours.is_empty(), "{ours:?}");
}

#[test]
fn podmans_precreate_idmaps_a_container_with_a_uidmap() {
    let Some(env) = userns_env("podmans_precreate_idmaps_a_container_with_a_uidmap") else {
        return;
    };
    let hooks = env.dir.path().join("podman-hooks");
    fs::create_dir_all(&hooks).unwrap();
    let project =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks.d/podman/ocivol-precreate.json");
    let mut hook: Value = serde_json::from_slice(&fs::read(project).unwrap()).unwrap();
    hook["hook"]["path"] = json!(common::OCIVOL);
    hook["hook"]["env"] = json!(env.hook_env());
    fs::write(hooks.join("ocivol.json"), hook.to_string()).unwrap();
    let rootfs = rootfs(&env, "rootfs-mapped", HOST_ID);
    let map = format!("0:{HOST_ID}:{SIZE}");
    let ann = format!("pn:/named;pc:/cow:base={}", env.base.display());
    let out = env
        .podman_cmd()
        .args(["--runtime", common::RUNC, "--hooks-dir"])
        .arg(&hooks)
        .args([
            "run",
            "--rm",
            "--network=none",
            "--ulimit",
            "nofile=1024:1024",
        ])
        .args([
            "--ulimit",
            "nproc=1024:1024",
            "--uidmap",
            &map,
            "--gidmap",
            &map,
        ])
        .arg("--annotation")
        .arg(format!("{VOLUMES}={ann}"))
        .arg("--rootfs")
        .arg(&rootfs)
        .args([
            "sh",
            "-c",
            "stat -c %u /named /cow /cow/file.txt && echo x > /named/w",
        ])
        .output()
        .unwrap();
    assert_eq!(ok(&out, "podman run --uidmap"), "0\n0\n0\n");
    assert_eq!(uid_of(&env.volume_dir("pn").join("data/w")), 0);
    assert_eq!(
        (env.users("pn"), env.users("pc"), env.overlays("pc")),
        (0, 0, 0)
    );
}

#[test]
fn a_new_volume_filled_from_a_user_namespaced_image_keeps_its_owners_as_the_container_sees_them() {
    let test = "a_new_volume_filled_from_a_user_namespaced_image_keeps_its_owners_as_the_container_sees_them";
    let Some(env) = userns_env(test) else {
        return;
    };
    for way in [Way::Runtime, Way::Hooks] {
        // The image prepares /var/lib/app for its user 1000: on the host that is 101000.
        let rootfs = rootfs(&env, &format!("rootfs-fill-{way:?}"), HOST_ID);
        let app = rootfs.join("var/lib/app");
        fs::create_dir_all(&app).unwrap();
        fs::write(app.join("seed"), "seed\n").unwrap();
        chown_tree(&rootfs.join("var"), HOST_ID);
        chown_tree(&app, HOST_ID + 1000);
        fs::set_permissions(&app, fs::Permissions::from_mode(0o700)).unwrap();
        let id = format!("ocivol-userns-fill-{way:?}").to_lowercase();
        let b = bundle(
            &env,
            way,
            &id,
            &["sleep", "600"],
            &format!("appdata-{way:?}:/var/lib/app").to_lowercase(),
            &rootfs,
            true,
        );
        started(&env, way, &id, &b);
        // The default capabilities have no CAP_DAC_OVERRIDE: the 0700 directory is its user's.
        let as_app = env
            .runc_cmd(&[
                "exec",
                "--user",
                "1000:1000",
                &id,
                "sh",
                "-c",
                "stat -c '%u:%g %a' /var/lib/app /var/lib/app/seed && echo w > /var/lib/app/w",
            ])
            .output()
            .unwrap();
        assert_eq!(
            ok(&as_app, "stat as the image's user"),
            "1000:1000 700\n1000:1000 644\n",
            "{way:?}: the image's owners, as the container sees them"
        );
        // On disk the volume holds the container's ids (what the idmapped mount shows as
        // themselves), not the rootfs's host ids.
        let data = env
            .volume_dir(&format!("appdata-{way:?}").to_lowercase())
            .join("data");
        assert_eq!(uid_of(&data), 1000, "{way:?}");
        assert_eq!(uid_of(&data.join("seed")), 1000, "{way:?}");
        ok(&way.delete(&env, &id), "delete");
    }
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}
