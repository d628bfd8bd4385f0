//! Ownership as Docker does it (issue 13, item 4), through real runc, both ways in: a new
//! volume's root is 0755; a new, empty named or anonymous volume is filled from the image at its
//! destination (owners, modes, times, xattrs, links); a copy-on-write volume's root has its
//! base root's owner and mode; `uid=`, `gid=`, `mode=` set them at creation; `nocopy` skips the
//! copy. And the copy never reads outside the container's rootfs.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Env, Way, ok, text};
use serde_json::{Value, json};

const VOLUMES: &str = "io.ocivol.volumes";

/// A busybox rootfs of its own for one image, under the test's directory.
fn image(env: &Env, name: &str) -> PathBuf {
    let rootfs = env.dir.path().join("images").join(name);
    common::make_rootfs(&rootfs);
    rootfs
}

/// A bundle for `way` that runs `script` in `rootfs`, as `user` (uid, gid) when given.
fn bundle(
    env: &Env,
    way: Way,
    id: &str,
    rootfs: &Path,
    user: Option<(u32, u32)>,
    script: &str,
    volumes: &str,
) -> PathBuf {
    let b = way.bundle(env, id, &["sh", "-c", script], &[(VOLUMES, volumes)]);
    let path = b.join("config.json");
    let mut spec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    spec["root"]["path"] = json!(rootfs);
    if let Some((uid, gid)) = user {
        spec["process"]["user"] = json!({ "uid": uid, "gid": gid });
    }
    fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    b
}

/// Runs `script` in a container in the foreground, both ways in the same; its output.
fn run(
    env: &Env,
    way: Way,
    id: &str,
    rootfs: &Path,
    user: Option<(u32, u32)>,
    script: &str,
    volumes: &str,
) -> Output {
    let b = bundle(env, way, id, rootfs, user, script, volumes);
    way.run(env, id, &b)
}

/// A name per way in, so that the two runs of a test never share a volume.
fn named(way: Way, name: &str) -> String {
    format!("{name}-{}", format!("{way:?}").to_lowercase())
}

/// (mode & 07777, uid, gid) of a path, not following a symlink.
fn owner_mode(path: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

fn chown_mode(path: &Path, uid: u32, gid: u32, mode: u32) {
    lchown(path, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The data directory of a plain volume on the host.
fn data(env: &Env, name: &str) -> PathBuf {
    env.volume_dir(name).join("data")
}

fn set_mtime(path: &Path, secs: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// Every entry under `dir` (not following symlinks): relative path and file type letter.
fn entries(dir: &Path) -> Vec<(String, char)> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, char)>) {
        let Ok(list) = fs::read_dir(dir) else { return };
        let mut list: Vec<_> = list.map(|e| e.unwrap()).collect();
        list.sort_by_key(|e| e.file_name());
        for e in list {
            let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
            let ft = e.file_type().unwrap();
            let kind = if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_file() {
                'f'
            } else {
                '?'
            };
            out.push((name.clone(), kind));
            if ft.is_dir() {
                walk(&e.path(), &name, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out
}

#[test]
fn a_uid_1000_container_writes_new_named_anonymous_and_copy_on_write_volumes() {
    let Some(env) =
        Env::new("a_uid_1000_container_writes_new_named_anonymous_and_copy_on_write_volumes")
    else {
        return;
    };
    let rootfs = image(&env, "app");
    // The image prepares /home/app for its user, as images with a non-root user do.
    fs::create_dir_all(rootfs.join("home/app")).unwrap();
    chown_mode(&rootfs.join("home/app"), 1000, 1000, 0o755);
    // A base whose root belongs to the user.
    let base = env.base.join("u1000");
    fs::create_dir(&base).unwrap();
    fs::write(base.join("seed"), "seed\n").unwrap();
    chown_mode(&base, 1000, 1000, 0o750);
    for way in Way::BOTH {
        let id = named(way, "own-u1000");
        let ann = format!(
            "{}:/home/app;/scratch:uid=1000,gid=1000;{}:/cow:base={};{}:/plain",
            named(way, "app"),
            named(way, "cow"),
            base.display(),
            named(way, "plain"),
        );
        let script = "set -e; echo a > /home/app/f; echo b > /scratch/f; echo c > /cow/f; \
             cat /cow/seed; stat -c '%n %a %u:%g' /home/app /scratch /cow /plain; \
             if (echo no > /plain/f) 2>/dev/null; then echo plain-written; else echo plain-denied; fi";
        let out = run(&env, way, &id, &rootfs, Some((1000, 1000)), script, &ann);
        let shown = ok(&out, &format!("{way:?}: uid 1000 writes its volumes"));
        assert_eq!(
            shown,
            "seed\n/home/app 755 1000:1000\n/scratch 755 1000:1000\n/cow 750 1000:1000\n\
             /plain 755 0:0\nplain-denied\n",
            "{way:?}"
        );
        assert_eq!(
            fs::read_to_string(data(&env, &named(way, "app")).join("f")).unwrap(),
            "a\n"
        );
        assert_eq!(
            owner_mode(&env.volume_dir(&named(way, "cow")).join("upper")),
            (0o750, 1000, 1000),
            "{way:?}: the upper directory's root is the base root's"
        );
        assert_eq!(
            owner_mode(&base),
            (0o750, 1000, 1000),
            "the base is not changed"
        );
        assert!(!base.join("f").exists(), "the base is never written");
        // A volume's root is open to the container; its parents in ocivol's state are not.
        assert_eq!(owner_mode(&data(&env, &named(way, "plain"))), (0o755, 0, 0));
        assert_eq!(owner_mode(&env.volume_dir(&named(way, "plain"))).0, 0o700);
        assert_eq!(owner_mode(&env.root.join("volumes")).0, 0o700);
    }
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_new_volume_is_filled_from_the_image_with_owners_modes_times_xattrs_and_links() {
    let Some(env) =
        Env::new("a_new_volume_is_filled_from_the_image_with_owners_modes_times_xattrs_and_links")
    else {
        return;
    };
    let rootfs = image(&env, "db");
    let app = rootfs.join("var/lib/app");
    fs::create_dir_all(app.join("sub/deeper")).unwrap();
    fs::write(app.join("f"), "image data\n").unwrap();
    chown_mode(&app.join("f"), 1000, 1000, 0o640);
    common::set_xattr(&app.join("f"), "user.origin", b"image");
    fs::hard_link(app.join("f"), app.join("f2")).unwrap();
    fs::write(app.join("sub/deeper/g"), "g\n").unwrap();
    chown_mode(&app.join("sub/deeper/g"), 1001, 1002, 0o4755);
    chown_mode(&app.join("sub/deeper"), 1001, 1002, 0o2750);
    chown_mode(&app.join("sub"), 1000, 1000, 0o700);
    symlink("f", app.join("link")).unwrap();
    lchown(app.join("link"), Some(1000), Some(1000)).unwrap();
    symlink("/etc/passwd", app.join("abs-link")).unwrap();
    nix::unistd::mkfifo(
        &app.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .unwrap();
    chown_mode(&app.join("fifo"), 1000, 1000, 0o620);
    // Not copied: a device node (a volume is data on the host's disk) and a socket (as Docker).
    nix::sys::stat::mknod(
        &app.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(app.join("sock")).unwrap();
    set_mtime(&app.join("f"), 1_000_000_000);
    set_mtime(&app.join("sub"), 1_100_000_000);
    chown_mode(&app, 1000, 1000, 0o700);

    for way in Way::BOTH {
        let name = named(way, "db");
        let id = named(way, "own-fill");
        let script = "cat /var/lib/app/f /var/lib/app/link && echo mine > /var/lib/app/new \
             && stat -c '%a %u:%g' /var/lib/app";
        let out = run(
            &env,
            way,
            &id,
            &rootfs,
            Some((1000, 1000)),
            script,
            &format!("{name}:/var/lib/app"),
        );
        assert_eq!(
            ok(
                &out,
                &format!("{way:?}: the image's user reads and writes its volume")
            ),
            "image data\nimage data\n700 1000:1000\n"
        );
        let d = data(&env, &name);
        assert_eq!(
            owner_mode(&d),
            (0o700, 1000, 1000),
            "{way:?}: the root is the image's"
        );
        assert_eq!(owner_mode(&d.join("f")), (0o640, 1000, 1000));
        assert_eq!(fs::metadata(d.join("f")).unwrap().mtime(), 1_000_000_000);
        assert_eq!(
            common::get_xattr(&d.join("f"), "user.origin").as_deref(),
            Some(&b"image"[..])
        );
        assert_eq!(
            fs::metadata(d.join("f")).unwrap().ino(),
            fs::metadata(d.join("f2")).unwrap().ino(),
            "{way:?}: a hard link stays one"
        );
        assert_eq!(owner_mode(&d.join("sub")), (0o700, 1000, 1000));
        assert_eq!(fs::metadata(d.join("sub")).unwrap().mtime(), 1_100_000_000);
        assert_eq!(owner_mode(&d.join("sub/deeper")), (0o2750, 1001, 1002));
        assert_eq!(owner_mode(&d.join("sub/deeper/g")), (0o4755, 1001, 1002));
        assert_eq!(fs::read_link(d.join("link")).unwrap(), Path::new("f"));
        assert_eq!(
            (owner_mode(&d.join("link")).1, owner_mode(&d.join("link")).2),
            (1000, 1000)
        );
        assert_eq!(
            fs::read_link(d.join("abs-link")).unwrap(),
            Path::new("/etc/passwd")
        );
        use std::os::unix::fs::FileTypeExt;
        assert!(
            fs::symlink_metadata(d.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(owner_mode(&d.join("fifo")), (0o620, 1000, 1000));
        assert!(
            !d.join("null").exists() && !d.join("sock").exists(),
            "{way:?}"
        );
        assert_eq!(fs::read_to_string(d.join("new")).unwrap(), "mine\n");
    }
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn an_anonymous_volume_is_filled_and_nocopy_leaves_a_new_volume_empty() {
    let Some(env) = Env::new("an_anonymous_volume_is_filled_and_nocopy_leaves_a_new_volume_empty")
    else {
        return;
    };
    let rootfs = image(&env, "app");
    fs::create_dir_all(rootfs.join("data")).unwrap();
    fs::write(rootfs.join("data/from-image"), "x\n").unwrap();
    chown_mode(&rootfs.join("data"), 1000, 1000, 0o750);
    for way in Way::BOTH {
        let ann = format!("/data;{}:/empty:nocopy", named(way, "nc"));
        // /empty exists in the image too: nocopy leaves it out.
        fs::create_dir_all(rootfs.join("empty")).unwrap();
        fs::write(rootfs.join("empty/from-image"), "y\n").unwrap();
        let script = "ls /data /empty && stat -c '%a %u:%g' /data /empty";
        let out = run(
            &env,
            way,
            &named(way, "own-anon"),
            &rootfs,
            Some((1000, 1000)),
            script,
            &ann,
        );
        assert_eq!(
            ok(&out, &format!("{way:?}")),
            "/data:\nfrom-image\n\n/empty:\n750 1000:1000\n755 0:0\n",
            "{way:?}"
        );
        assert!(entries(&data(&env, &named(way, "nc"))).is_empty());
    }
}

#[test]
fn a_volume_that_exists_is_never_filled() {
    let Some(env) = Env::new("a_volume_that_exists_is_never_filled") else {
        return;
    };
    let one = image(&env, "one");
    fs::create_dir_all(one.join("data")).unwrap();
    fs::write(one.join("data/one"), "1\n").unwrap();
    let two = image(&env, "two");
    fs::create_dir_all(two.join("data")).unwrap();
    fs::write(two.join("data/two"), "2\n").unwrap();
    for way in Way::BOTH {
        let v = named(way, "kept");
        let ann = format!("{v}:/data");
        let out = run(
            &env,
            way,
            &named(way, "own-k1"),
            &one,
            None,
            "echo mine > /data/mine",
            &ann,
        );
        ok(&out, "first container");
        let listed = |d: &Path| entries(d).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(listed(&data(&env, &v)), ["/mine", "/one"]);
        // Another image at the same destination: the volume has data, nothing is copied.
        let out = run(
            &env,
            way,
            &named(way, "own-k2"),
            &two,
            None,
            "ls /data",
            &ann,
        );
        assert_eq!(ok(&out, "second container"), "mine\none\n");
        // Emptied by its user, it stays empty (Docker would fill it again).
        let out = run(
            &env,
            way,
            &named(way, "own-k3"),
            &two,
            None,
            "rm /data/*",
            &ann,
        );
        ok(&out, "empty it");
        let out = run(
            &env,
            way,
            &named(way, "own-k4"),
            &two,
            None,
            "ls /data",
            &ann,
        );
        assert_eq!(ok(&out, "fourth container"), "");
        // A volume the operator created ahead of use is not filled either.
        let pre = named(way, "pre");
        ok(
            &env.ocivol(&["volume", "create", "--scope", "any", &pre]),
            "volume create",
        );
        let out = run(
            &env,
            way,
            &named(way, "own-k5"),
            &two,
            None,
            "ls /data",
            &format!("{pre}:/data"),
        );
        assert_eq!(ok(&out, "pre-created"), "");
    }
}

#[test]
fn a_symlink_at_the_destination_never_makes_ocivol_copy_host_files() {
    let Some(env) = Env::new("a_symlink_at_the_destination_never_makes_ocivol_copy_host_files")
    else {
        return;
    };
    // What the image must never reach: a host directory beside the rootfs, and the host's /etc.
    let secret = env.dir.path().join("secret");
    fs::create_dir(&secret).unwrap();
    fs::write(secret.join("secret.txt"), "host secret\n").unwrap();
    let host_only = ["passwd", "shadow", "hostname", "secret.txt"];
    for way in Way::BOTH {
        // A fresh image per way in: runc makes mount points in the rootfs.
        let rootfs = image(&env, &named(way, "evil"));
        fs::write(rootfs.join("etc/image-marker"), "image\n").unwrap();
        symlink("/etc", rootfs.join("abs")).unwrap();
        symlink("../../secret", rootfs.join("rel")).unwrap();
        symlink(&secret, rootfs.join("hostpath")).unwrap();
        symlink("../../../../../../..", rootfs.join("up")).unwrap();
        fs::create_dir(rootfs.join("var")).unwrap();
        symlink("../../../secret", rootfs.join("var/lib")).unwrap();
        // Links inside the copied tree are copied as links, never followed.
        fs::create_dir(rootfs.join("app")).unwrap();
        symlink("/etc/passwd", rootfs.join("app/passwd")).unwrap();
        symlink("../../../secret", rootfs.join("app/dir")).unwrap();
        symlink(secret.join("secret.txt"), rootfs.join("app/file")).unwrap();

        for (i, dest) in ["/abs", "/rel", "/hostpath", "/up", "/var/lib", "/app"]
            .iter()
            .enumerate()
        {
            let v = named(way, &format!("atk{i}"));
            let id = named(way, &format!("own-atk{i}"));
            // The container may fail (a volume over the rootfs itself): what was copied counts.
            let _ = run(
                &env,
                way,
                &id,
                &rootfs,
                None,
                "true",
                &format!("{v}:{dest}"),
            );
            let got = entries(&data(&env, &v));
            // (A symlink's name is the image's; only what it points at must not come along.)
            for (name, _) in got.iter().filter(|(_, kind)| *kind != 'l') {
                let base = name.rsplit('/').next().unwrap();
                assert!(
                    !host_only.contains(&base),
                    "{way:?} {dest}: {name} copied: {got:?}"
                );
            }
            for (name, kind) in &got {
                if *kind == 'f' {
                    let content = fs::read(data(&env, &v).join(&name[1..])).unwrap();
                    assert_ne!(content, b"host secret\n", "{way:?} {dest}: {name}");
                }
            }
            match *dest {
                "/abs" => assert_eq!(got, [("/image-marker".to_string(), 'f')], "{way:?}"),
                "/app" => assert_eq!(
                    got,
                    [
                        ("/dir".to_string(), 'l'),
                        ("/file".to_string(), 'l'),
                        ("/passwd".to_string(), 'l')
                    ],
                    "{way:?}"
                ),
                _ => assert!(got.is_empty(), "{way:?} {dest}: {got:?}"),
            }
        }
    }
    assert_eq!(fs::read_dir(&secret).unwrap().count(), 1);
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn uid_gid_and_mode_options_set_a_new_volumes_root() {
    let Some(env) = Env::new("uid_gid_and_mode_options_set_a_new_volumes_root") else {
        return;
    };
    let rootfs = image(&env, "app");
    fs::create_dir_all(rootfs.join("opt/app")).unwrap();
    fs::write(rootfs.join("opt/app/f"), "f\n").unwrap();
    chown_mode(&rootfs.join("opt/app/f"), 7, 8, 0o600);
    chown_mode(&env.base, 0, 0, 0o755);
    for way in Way::BOTH {
        let ann = format!(
            "{}:/o:uid=1234,gid=5678,mode=0750;/a:mode=1777;{}:/opt/app:uid=1000,gid=1000;{}:/c:base={},uid=42,mode=700",
            named(way, "opts"),
            named(way, "filled"),
            named(way, "cow"),
            env.base.display()
        );
        let script = "stat -c '%n %a %u:%g' /o /a /opt/app /opt/app/f /c";
        let out = run(
            &env,
            way,
            &named(way, "own-opts"),
            &rootfs,
            None,
            script,
            &ann,
        );
        assert_eq!(
            ok(&out, &format!("{way:?}")),
            "/o 750 1234:5678\n/a 1777 0:0\n/opt/app 755 1000:1000\n/opt/app/f 600 7:8\n/c 700 42:0\n",
            "{way:?}: the options win over the image's root, not over its content"
        );
        let def: Value = serde_json::from_slice(
            &fs::read(env.volume_dir(&named(way, "opts")).join("volume.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (&def["uid"], &def["gid"], &def["mode"]),
            (&json!(1234), &json!(5678), &json!("0750"))
        );
    }
    // The operator's way: volume create --uid --gid --mode.
    let out = env.ocivol(&[
        "volume", "create", "--scope", "any", "made", "--uid", "1000", "--gid", "1001", "--mode",
        "0700",
    ]);
    ok(&out, "volume create");
    assert_eq!(owner_mode(&data(&env, "made")), (0o700, 1000, 1001));
    let out = env.ocivol(&[
        "volume",
        "create",
        "--scope",
        "any",
        "cowmade",
        "--base",
        env.base.to_str().unwrap(),
        "--mode",
        "0711",
    ]);
    ok(&out, "volume create --base");
    assert_eq!(
        owner_mode(&env.volume_dir("cowmade").join("upper")),
        (0o711, 0, 0)
    );
    for (args, why) in [
        (&["--uid", "x"][..], "not a number"),
        (&["--mode", "0999"][..], "not an octal number"),
        (&["--mode", "17777"][..], "at most 07777"),
        (&["--gid", "4294967295"][..], "at most 4294967294"),
    ] {
        let mut all = vec!["volume", "create", "--scope", "any", "bad"];
        all.extend_from_slice(args);
        let out = env.ocivol(&all);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains(why),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn options_that_contradict_an_existing_volume_are_refused() {
    let Some(env) = Env::new("options_that_contradict_an_existing_volume_are_refused") else {
        return;
    };
    let rootfs = image(&env, "app");
    for way in Way::BOTH {
        let v = named(way, "owned");
        let first = format!("{v}:/v:uid=1000,mode=0700");
        ok(
            &run(
                &env,
                way,
                &named(way, "own-c1"),
                &rootfs,
                None,
                "true",
                &first,
            ),
            "create it",
        );
        // The same options, or none: used as it is.
        for (i, ann) in [first.clone(), format!("{v}:/v"), format!("{v}:/v:uid=1000")]
            .iter()
            .enumerate()
        {
            ok(
                &run(
                    &env,
                    way,
                    &named(way, &format!("own-ok{i}")),
                    &rootfs,
                    None,
                    "true",
                    ann,
                ),
                ann,
            );
        }
        for (i, (ann, why)) in [
            (
                format!("{v}:/v:uid=2000"),
                "it was created with uid=1000, not uid=2000",
            ),
            (format!("{v}:/v:gid=5"), "it was created without gid="),
            (
                format!("{v}:/v:mode=0755"),
                "it was created with mode=0700, not mode=0755",
            ),
        ]
        .iter()
        .enumerate()
        {
            let out = run(
                &env,
                way,
                &named(way, &format!("own-bad{i}")),
                &rootfs,
                None,
                "true",
                ann,
            );
            assert!(!out.status.success(), "{way:?} {ann}");
            let stderr = text(&out.stderr);
            // (runc shows a hook's stderr with its quotes escaped.)
            assert!(
                stderr.contains("annotation io.ocivol.volumes: entry ")
                    && stderr.contains(ann.as_str())
                    && stderr.contains(why),
                "{way:?} {ann}: {stderr}"
            );
            if way == Way::Runtime {
                assert_eq!(stderr.lines().count(), 1, "{stderr}");
            }
        }
        assert_eq!(owner_mode(&data(&env, &v)), (0o700, 1000, 0));
    }
    // volume create of an existing volume with other options: refused the same way.
    ok(
        &env.ocivol(&["volume", "create", "--scope", "any", "x", "--uid", "1"]),
        "create x",
    );
    ok(
        &env.ocivol(&["volume", "create", "--scope", "any", "x", "--uid", "1"]),
        "again, the same",
    );
    let out = env.ocivol(&["volume", "create", "--scope", "any", "x", "--uid", "2"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("it was created with uid=1, not uid=2"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn two_containers_creating_one_volume_at_once_fill_it_once() {
    let Some(env) = Env::new("two_containers_creating_one_volume_at_once_fill_it_once") else {
        return;
    };
    let images: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|n| {
            let r = image(&env, n);
            fs::create_dir_all(r.join("data")).unwrap();
            for i in 0..200 {
                fs::write(r.join(format!("data/{n}{i}")), n).unwrap();
            }
            r
        })
        .collect();
    for round in 0..3 {
        let v = format!("race{round}");
        let ann = format!("{v}:/data");
        let bundles: Vec<(String, PathBuf)> = images
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let id = format!("own-race{round}-{i}");
                let b = bundle(&env, Way::Runtime, &id, r, None, "true", &ann);
                (id, b)
            })
            .collect();
        std::thread::scope(|s| {
            for (id, b) in &bundles {
                let env = &env;
                s.spawn(move || ok(&env.create(id, b), &format!("create {id}")));
            }
        });
        let got = entries(&data(&env, &v));
        let from_a = got.iter().filter(|(n, _)| n.starts_with("/a")).count();
        let from_b = got.iter().filter(|(n, _)| n.starts_with("/b")).count();
        assert!(
            (from_a, from_b) == (200, 0) || (from_a, from_b) == (0, 200),
            "round {round}: one image's content, whole: {from_a} from a, {from_b} from b"
        );
        for (id, _) in &bundles {
            ok(&env.delete(id), "delete");
        }
    }
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn a_volume_the_policy_shares_is_not_filled_from_a_tenants_image() {
    let Some(env) = Env::new("a_volume_the_policy_shares_is_not_filled_from_a_tenants_image")
    else {
        return;
    };
    env.write_policy(json!({ "allowed_bases": [env.base], "shared_volumes": ["common-runtime", "common-hooks"] }));
    let rootfs = image(&env, "tenant");
    fs::create_dir_all(rootfs.join("tools")).unwrap();
    fs::write(rootfs.join("tools/planted"), "#!/bin/sh\n").unwrap();
    chown_mode(&rootfs.join("tools/planted"), 0, 0, 0o4755);
    for way in Way::BOTH {
        let v = named(way, "common");
        let out = run(
            &env,
            way,
            &named(way, "own-shared"),
            &rootfs,
            None,
            "ls /tools",
            &format!("{v}:/tools"),
        );
        assert_eq!(
            ok(&out, &format!("{way:?}")),
            "",
            "{way:?}: every scope's volume starts empty"
        );
        assert!(
            env.root.join("volumes").join(&v).join("data").is_dir(),
            "{way:?}: shared"
        );
    }
}

/// `sh -c 'ulimit -Sn 256 && exec PROGRAM ARGS…'` (the soft limit: runc raises its container's own).
fn with_few_fds(cmd: &std::process::Command) -> Output {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect();
    std::process::Command::new("sh")
        .args([
            "-c",
            &format!("ulimit -Sn 256 && exec {}", quoted.join(" ")),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Opens `name` in `dir`, a directory, not following a symlink.
fn open_dir(dir: std::os::fd::BorrowedFd, name: &str) -> nix::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::OFlag;
    nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

#[test]
fn an_image_tree_deeper_than_the_fd_limit_is_copied() {
    use std::os::fd::AsFd;
    let Some(env) = Env::new("an_image_tree_deeper_than_the_fd_limit_is_copied") else {
        return;
    };
    let rootfs = image(&env, "deep");
    fs::create_dir(rootfs.join("deep")).unwrap();
    // 2,000 levels, made relative to the level above (the path is longer than PATH_MAX).
    let mut cur = open_dir(nix::fcntl::AT_FDCWD, rootfs.join("deep").to_str().unwrap()).unwrap();
    for _ in 0..2000 {
        nix::sys::stat::mkdirat(&cur, "t", nix::sys::stat::Mode::from_bits_truncate(0o755))
            .unwrap();
        cur = open_dir(cur.as_fd(), "t").unwrap();
    }
    fs::write(
        format!(
            "/proc/self/fd/{}/bottom",
            std::os::fd::AsRawFd::as_raw_fd(&cur)
        ),
        "b",
    )
    .unwrap();
    drop(cur);
    for way in Way::BOTH {
        let v = named(way, "deep");
        let id = named(way, "own-deep");
        let b = bundle(&env, way, &id, &rootfs, None, "true", &format!("{v}:/deep"));
        let args = ["run", "--bundle", b.to_str().unwrap(), &id];
        let cmd = match way {
            Way::Runtime => env.runtime_cmd(&args),
            Way::Hooks => env.runc_cmd(&args),
        };
        ok(
            &with_few_fds(&cmd),
            &format!("{way:?}: run under ulimit -Sn 256"),
        );
        let mut cur = open_dir(nix::fcntl::AT_FDCWD, data(&env, &v).to_str().unwrap()).unwrap();
        let mut depth = 0;
        while let Ok(next) = open_dir(cur.as_fd(), "t") {
            cur = next;
            depth += 1;
        }
        assert_eq!(depth, 2000, "{way:?}");
        assert!(
            nix::sys::stat::fstatat(&cur, "bottom", nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok(),
            "{way:?}"
        );
    }
}
