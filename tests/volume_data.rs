//! `ocivol volume export|import|commit|clone` end to end, as root, with real runc and overlayfs:
//! round trips keep owners, modes, times, xattrs, hard links and holes; `export --changes` is an
//! OCI layer that rebuilds the merged view over a copy of the base; a volume in use is refused;
//! a hostile archive never writes outside the volume.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Env, UnmountOnDrop, get_xattr, ok, set_xattr, text};

const VOLUMES: &str = "io.ocivol.volumes";

/// One entry of a tree as a user of the volume sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// File content (its digest), or a symlink's target.
    data: Vec<u8>,
    /// Files: modification time (seconds: what tar keeps).
    mtime: i64,
    xattr: Option<Vec<u8>>,
    /// Files: the first path (in name order) of the same inode.
    link_of: Option<String>,
}

/// A short stand-in for a file's content (a test's sparse files are hundreds of MiB).
fn digest(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut out = format!("{} bytes ", data.len()).into_bytes();
    out.extend(
        sha2::Sha256::digest(data)
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes(),
    );
    out
}

/// Everything under `root` (its root included as "/"), as users see it.
fn snapshot(root: &Path) -> BTreeMap<String, Entry> {
    fn walk(
        dir: &Path,
        rel: &str,
        out: &mut BTreeMap<String, Entry>,
        inodes: &mut HashMap<(u64, u64), String>,
    ) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let r = format!("{rel}/{}", name.to_string_lossy());
            let m = fs::symlink_metadata(&path).unwrap();
            let ft = m.file_type();
            let (kind, data) = if ft.is_dir() {
                ("dir", Vec::new())
            } else if ft.is_symlink() {
                (
                    "symlink",
                    fs::read_link(&path)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else if ft.is_fifo() {
                ("fifo", Vec::new())
            } else {
                ("file", digest(&fs::read(&path).unwrap()))
            };
            let link_of = (kind == "file" && m.nlink() > 1).then(|| {
                inodes
                    .entry((m.dev(), m.ino()))
                    .or_insert_with(|| r.clone())
                    .clone()
            });
            out.insert(
                r.clone(),
                Entry {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    data,
                    mtime: if kind == "file" { m.mtime() } else { 0 },
                    xattr: if kind == "symlink" {
                        None
                    } else {
                        get_xattr(&path, "user.ocivol-test")
                    },
                    link_of,
                },
            );
            if ft.is_dir() {
                walk(&path, &r, out, inodes);
            }
        }
    }
    let mut out = BTreeMap::new();
    let m = fs::metadata(root).unwrap();
    out.insert(
        "/".to_string(),
        Entry {
            kind: "dir",
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            data: Vec::new(),
            mtime: 0,
            xattr: get_xattr(root, "user.ocivol-test"),
            link_of: None,
        },
    );
    walk(root, "", &mut out, &mut HashMap::new());
    out
}

/// Two snapshots are equal; else the entries that differ, one a line.
#[track_caller]
fn assert_same(got: &BTreeMap<String, Entry>, want: &BTreeMap<String, Entry>, what: &str) {
    let mut diffs = Vec::new();
    for k in got
        .keys()
        .chain(want.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if got.get(k) != want.get(k) {
            diffs.push(format!(
                "{k}:\n  got  {:?}\n  want {:?}",
                got.get(k),
                want.get(k)
            ));
        }
    }
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

/// A read-only overlay of `upper` over `base` (the merged view, made by the test itself),
/// unmounted when the guard goes.
fn merged_view(env: &Env, upper: &Path, base: &Path, name: &str) -> (PathBuf, UnmountOnDrop) {
    let target = env.dir.path().join("views").join(name);
    fs::create_dir_all(&target).unwrap();
    let guard = UnmountOnDrop(target.clone());
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "ro,lowerdir={}:{}",
            upper.display(),
            base.display()
        ))
        .arg(&target)
        .output()
        .unwrap();
    ok(&out, "mount the test's view");
    (target, guard)
}

/// A rich base: owners, modes, an xattr, hard links, a symlink, a fifo, a sparse file.
fn fill_base(base: &Path) {
    fs::create_dir_all(base.join("keep/inner")).unwrap();
    fs::create_dir_all(base.join("replace")).unwrap();
    fs::write(base.join("replace/old.txt"), "old").unwrap();
    fs::write(base.join("keep/inner/a.txt"), "a").unwrap();
    fs::write(base.join("owned.txt"), "owned").unwrap();
    std::os::unix::fs::chown(base.join("owned.txt"), Some(1234), Some(5678)).unwrap();
    fs::set_permissions(base.join("owned.txt"), fs::Permissions::from_mode(0o4750)).unwrap();
    std::os::unix::fs::chown(base.join("keep"), Some(42), Some(43)).unwrap();
    set_xattr(
        &base.join("keep/inner/a.txt"),
        "user.ocivol-test",
        b"from the base",
    );
    fs::hard_link(base.join("keep/inner/a.txt"), base.join("a-again.txt")).unwrap();
    symlink("/etc/passwd", base.join("abs-link")).unwrap();
    nix::unistd::mkfifo(
        &base.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    let f = fs::File::create(base.join("sparse.img")).unwrap();
    f.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"middle", 32 << 20).unwrap();
}

/// Starts a container on `cow` (copy-on-write over the env's base), changes the volume from
/// inside (deletions, an opaque directory, new files) and from the host through its overlay
/// (owners, modes, xattrs, links, holes), then stops it.
fn change_volume(env: &Env, id: &str) {
    let spec = format!("cow:/data:base={}", env.base.display());
    let bundle = env.bundle(id, &["sleep", "600"], &[(VOLUMES, &spec)]);
    ok(&env.start(id, &bundle), "start");
    ok(
        &env.exec(
            id,
            "rm /data/file.txt && rm -r /data/replace && mkdir /data/replace && \
             echo new > /data/replace/new.txt && mkdir -p /data/added/deeper && \
             echo added > /data/added/deeper/f && ln /data/added/deeper/f /data/added/hard && \
             ln -s ../owned.txt /data/added/rel-link && echo changed > /data/sub/deep.txt",
        ),
        "change the volume",
    );
    let merged = env.volume_run_dir("cow").join("merged");
    std::os::unix::fs::chown(merged.join("added/deeper/f"), Some(999), Some(998)).unwrap();
    fs::set_permissions(merged.join("added"), fs::Permissions::from_mode(0o2770)).unwrap();
    set_xattr(
        &merged.join("added/deeper/f"),
        "user.ocivol-test",
        b"from the container",
    );
    let f = fs::File::create(merged.join("added/holes.img")).unwrap();
    f.set_len(128 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"end", (128 << 20) - 3).unwrap();
    drop(f);
    ok(&env.delete(id), "delete");
}

fn export_to(env: &Env, args: &[&str], file: &Path) {
    let mut all = vec!["volume", "export"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", file.to_str().unwrap()]);
    assert_eq!(env.ocivol_ok(&all), "");
}

fn blocks(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks()
}

#[test]
fn export_import_round_trip_keeps_owners_modes_xattrs_links_and_holes() {
    let Some(env) = Env::new("export_import_round_trip_keeps_owners_modes_xattrs_links_and_holes")
    else {
        return;
    };
    fill_base(&env.base);
    change_volume(&env, "ocivol-data-rt");
    let tar = env.dir.path().join("cow.tar");
    export_to(&env, &["cow"], &tar);
    assert_eq!(
        env.ocivol_ok(&["volume", "create", "--scope", "any", "copy"]),
        "copy\n"
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "import", "copy", tar.to_str().unwrap()]),
        "copy\n"
    );

    let upper = env.volume_dir("cow").join("upper");
    let (view, _g) = merged_view(&env, &upper, &env.base, "cow");
    let data = env.volume_dir("copy").join("data");
    let want = snapshot(&view);
    assert_same(&snapshot(&data), &want, "imported");
    assert!(!want.contains_key("/file.txt") && !want.contains_key("/replace/old.txt"));
    assert_eq!(want["/added/deeper/f"].uid, 999);
    assert_eq!(
        want["/added/hard"].link_of.as_deref(),
        Some("/added/deeper/f")
    );
    assert_eq!(want["/owned.txt"].mode, 0o4750);
    // Holes stay holes: 192 MiB of apparent size, a few blocks on disk.
    assert!(
        blocks(&data.join("added/holes.img")) < 1024,
        "holes were written out"
    );
    assert!(
        blocks(&data.join("sparse.img")) < 1024,
        "holes were written out"
    );

    // The archive is plain tar that GNU tar lists with relative names.
    let listing = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let names = ok(&listing, "tar -tf");
    assert!(names.lines().all(|l| !l.starts_with('/')), "{names}");
    assert!(names.lines().any(|l| l == "added/deeper/f"), "{names}");

    // Through stdout and stdin, into a copy-on-write volume over the same base: the same view.
    let out = env
        .ocivol_cmd(&["volume", "export", "cow"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "export to stdout: {out:?}");
    assert_eq!(text(&out.stderr), "");
    let spec = format!("cow2:/data:base={}", env.base.display());
    let bundle = env.bundle("mk", &["true"], &[(VOLUMES, &spec)]);
    ok(
        &env.runtime(&[
            "run",
            "--bundle",
            bundle.to_str().unwrap(),
            "ocivol-data-mk",
        ]),
        "run",
    );
    ok(&env.delete("ocivol-data-mk"), "delete");
    let mut import = env
        .ocivol_cmd(&["volume", "import", "cow2", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    import.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let done = import.wait_with_output().unwrap();
    assert_eq!(ok(&done, "import from stdin"), "cow2\n");
    let upper2 = env.volume_dir("cow2").join("upper");
    let (view2, _g2) = merged_view(&env, &upper2, &env.base, "cow2");
    assert_same(&snapshot(&view2), &want, "imported from stdin");
}

/// Applies an OCI layer over `dir` the way the image spec says (the test's own applier, by
/// path: this is the test's own temp tree).
fn apply_layer(tar: &Path, dir: &Path) {
    let mut archive = tar::Archive::new(fs::File::open(tar).unwrap());
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = dir.join(path.parent().unwrap_or(Path::new("")));
        if name == ".wh..wh..opq" {
            for e in fs::read_dir(&parent).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() && !p.is_symlink() {
                    fs::remove_dir_all(&p).unwrap();
                } else {
                    fs::remove_file(&p).unwrap();
                }
            }
        } else if let Some(gone) = name.strip_prefix(".wh.") {
            let p = parent.join(gone);
            if p.is_dir() && !p.is_symlink() {
                fs::remove_dir_all(&p).unwrap();
            } else {
                let _ = fs::remove_file(&p);
            }
        } else {
            if entry.header().entry_type().is_file()
                && fs::symlink_metadata(dir.join(&path)).is_ok_and(|m| m.is_dir())
            {
                fs::remove_dir_all(dir.join(&path)).unwrap();
            }
            entry.unpack_in(dir).unwrap();
        }
    }
}

#[test]
fn export_changes_is_an_oci_layer_that_rebuilds_the_merged_view_over_the_base() {
    let Some(env) =
        Env::new("export_changes_is_an_oci_layer_that_rebuilds_the_merged_view_over_the_base")
    else {
        return;
    };
    fill_base(&env.base);
    change_volume(&env, "ocivol-data-layer");
    let layer = env.dir.path().join("layer.tar");
    export_to(&env, &["--changes", "cow"], &layer);

    let mut names = Vec::new();
    let mut archive = tar::Archive::new(fs::File::open(&layer).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        names.push(entry.path().unwrap().display().to_string());
        if let Some(exts) = entry.pax_extensions().unwrap() {
            for ext in exts {
                let key = ext.unwrap().key().unwrap().to_string();
                assert!(
                    !key.contains("overlay") && !key.contains("trusted."),
                    "{key}"
                );
            }
        }
    }
    for want in [
        ".wh.file.txt",
        "replace/.wh..wh..opq",
        "replace/new.txt",
        "added/deeper/f",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == "keep/inner/a.txt"),
        "unchanged files are not in a layer"
    );

    // Over a copy of the base, with the spec's whiteout rules: the merged view.
    let copy = env.dir.path().join("base-copy");
    ok(
        &Command::new("cp")
            .arg("-a")
            .arg(&env.base)
            .arg(&copy)
            .output()
            .unwrap(),
        "cp -a",
    );
    apply_layer(&layer, &copy);
    let upper = env.volume_dir("cow").join("upper");
    let (view, _g) = merged_view(&env, &upper, &env.base, "cow");
    let want = snapshot(&view);
    let mut got = snapshot(&copy);
    // The test's applier (the tar crate, built here without its xattr support) writes no
    // extended attributes; ocivol's own import, below, is held to them.
    let mut want_plain = want.clone();
    for e in got.values_mut().chain(want_plain.values_mut()) {
        e.xattr = None;
    }
    assert_same(
        &got,
        &want_plain,
        "the layer applied over a copy of the base",
    );

    // And ocivol's own import applies it the same way: a plain volume imported from the base
    // (as a whole archive), then the layer applied over it.
    let base_tar = env.dir.path().join("base.tar");
    ok(
        &Command::new("tar")
            .arg("-C")
            .arg(&env.base)
            .args(["--xattrs", "-cf"])
            .arg(&base_tar)
            .arg(".")
            .output()
            .unwrap(),
        "tar the base",
    );
    assert_eq!(
        env.ocivol_ok(&["volume", "create", "--scope", "any", "flat"]),
        "flat\n"
    );
    env.ocivol_ok(&["volume", "import", "flat", base_tar.to_str().unwrap()]);
    env.ocivol_ok(&[
        "volume",
        "import",
        "--changes",
        "flat",
        layer.to_str().unwrap(),
    ]);
    assert_same(
        &snapshot(&env.volume_dir("flat").join("data")),
        &want,
        "import --changes",
    );
}

#[test]
fn a_volume_in_use_is_refused_and_commit_writes_a_new_base_atomically() {
    let Some(env) = Env::new("a_volume_in_use_is_refused_and_commit_writes_a_new_base_atomically")
    else {
        return;
    };
    let bases = env.dir.path().join("bases");
    fs::create_dir_all(&bases).unwrap();
    env.write_policy(serde_json::json!({ "allowed_bases": [env.base, bases] }));
    let before = common::tree_snapshot(&env.base);
    let spec = format!("cow:/data:base={}", env.base.display());
    let bundle = env.bundle("c", &["sleep", "600"], &[(VOLUMES, &spec)]);
    ok(&env.start("ocivol-data-commit", &bundle), "start");
    ok(
        &env.exec(
            "ocivol-data-commit",
            "echo v2 > /data/file.txt && rm -r /data/sub",
        ),
        "write",
    );

    let new = bases.join("v2");
    let new_s = new.to_str().unwrap();
    let tar = env.dir.path().join("x.tar");
    let input = env.dir.path().join("in.tar");
    fs::write(&input, "").unwrap();
    for (args, why) in [
        (
            vec!["volume", "commit", "cow", new_s],
            "a commit of a volume being written would not be one moment's content",
        ),
        (
            vec!["volume", "export", "cow", "-o", tar.to_str().unwrap()],
            "an archive of a volume being written would not be one moment's content",
        ),
        (
            vec!["volume", "import", "cow", input.to_str().unwrap()],
            "they would see the archive arrive half-written",
        ),
        (
            vec!["volume", "clone", "cow", "other"],
            "a copy of a volume being written would not be one moment's content",
        ),
    ] {
        assert_eq!(
            env.ocivol_refused(&args),
            format!(
                "ocivol: volume cow is in use by 1 container: ocivol-data-commit; stop its containers first: {why}\n"
            ),
            "{args:?}"
        );
    }
    assert!(!new.exists() && !tar.exists());
    assert!(
        fs::read_dir(&bases).unwrap().next().is_none(),
        "no temporary directory left"
    );
    ok(&env.delete("ocivol-data-commit"), "delete");

    let outside = env.dir.path().join("elsewhere");
    let refused = env.ocivol_refused(&["volume", "commit", "cow", outside.to_str().unwrap()]);
    assert!(
        refused.contains("is not under the policy's allowed_bases"),
        "{refused}"
    );

    assert_eq!(
        env.ocivol_ok(&["volume", "commit", "cow", new_s]),
        format!("{new_s}\n")
    );
    let upper = env.volume_dir("cow").join("upper");
    let (view, _g) = merged_view(&env, &upper, &env.base, "commit");
    assert_same(&snapshot(&new), &snapshot(&view), "committed");
    assert_eq!(fs::read_to_string(new.join("file.txt")).unwrap(), "v2\n");
    assert!(!new.join("sub").exists());
    assert_eq!(
        common::tree_snapshot(&env.base),
        before,
        "the old base is untouched"
    );
    let names: Vec<_> = fs::read_dir(&bases)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["v2"], "no temporary directory left");
    drop(_g);

    assert_eq!(
        env.ocivol_refused(&["volume", "commit", "cow", new_s]),
        format!("ocivol: volume cow: {new_s} exists already\n")
    );
    let v3 = bases.join("v3");
    env.ocivol_ok(&["volume", "commit", "--reset", "cow", v3.to_str().unwrap()]);
    assert_eq!(
        fs::read_dir(&upper).unwrap().count(),
        0,
        "--reset discarded the changes"
    );
    assert_same(&snapshot(&v3), &snapshot(&new), "committed with --reset");
}

#[test]
fn clone_copies_changes_over_the_same_base_and_a_plain_volumes_data() {
    let Some(env) = Env::new("clone_copies_changes_over_the_same_base_and_a_plain_volumes_data")
    else {
        return;
    };
    fill_base(&env.base);
    change_volume(&env, "ocivol-data-clone");
    assert_eq!(env.ocivol_ok(&["volume", "clone", "cow", "twin"]), "twin\n");
    let (u1, u2) = (
        env.volume_dir("cow").join("upper"),
        env.volume_dir("twin").join("upper"),
    );
    let (v1, _g1) = merged_view(&env, &u1, &env.base, "cow");
    let (v2, _g2) = merged_view(&env, &u2, &env.base, "twin");
    assert_same(&snapshot(&v2), &snapshot(&v1), "cloned");
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ocivol_ok(&["volume", "inspect", "twin"])).unwrap();
    assert_eq!(inspect[0]["base"], serde_json::json!(env.base));
    let refused = env.ocivol_refused(&["volume", "clone", "cow", "twin"]);
    assert!(
        refused.starts_with(
            "ocivol: volume twin: a volume of this name exists already in scope root:"
        ),
        "{refused}"
    );

    env.ocivol_ok(&[
        "volume", "create", "--scope", "any", "plain", "--mode", "0750",
    ]);
    let data = env.volume_dir("plain").join("data");
    fs::write(data.join("f"), "plain data").unwrap();
    env.ocivol_ok(&["volume", "clone", "plain", "plain2"]);
    assert_same(
        &snapshot(&env.volume_dir("plain2").join("data")),
        &snapshot(&data),
        "plain clone",
    );
}

#[test]
fn a_hostile_archive_never_writes_outside_the_volume_and_changes_nothing() {
    let Some(env) =
        Env::new("a_hostile_archive_never_writes_outside_the_volume_and_changes_nothing")
    else {
        return;
    };
    env.ocivol_ok(&["volume", "create", "--scope", "any", "v"]);
    let data = env.volume_dir("v").join("data");
    fs::write(data.join("kept"), "kept").unwrap();
    // A tenant planted a symlink to / in the volume.
    symlink("/", data.join("escape")).unwrap();
    let victim = env.dir.path().join("victim");
    fs::create_dir_all(&victim).unwrap();
    let before = snapshot(&data);

    let build = |name: &str, f: &dyn Fn(&mut tar::Builder<Vec<u8>>)| -> PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        f(&mut b);
        let path = env.dir.path().join(name);
        fs::write(&path, b.into_inner().unwrap()).unwrap();
        path
    };
    fn file(b: &mut tar::Builder<Vec<u8>>, raw_name: &[u8], body: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.as_gnu_mut().unwrap().name[..raw_name.len()].copy_from_slice(raw_name);
        h.set_cksum();
        b.append(&h, body).unwrap();
    }
    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, target: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_path(name).unwrap();
        h.as_gnu_mut().unwrap().linkname[..target.len()].copy_from_slice(target);
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }
    let v = victim.display().to_string();
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            build("dotdot.tar", &|b| file(b, b"a/../../../../victim/x", b"x")),
            "a name with `..` is refused",
        ),
        (
            build("abs.tar", &|b| file(b, format!("{v}/x").as_bytes(), b"x")),
            "an absolute name is refused",
        ),
        (
            build("symlink-then-file.tar", &|b| {
                link(b, tar::EntryType::Symlink, "dir", v.as_bytes());
                file(b, b"dir/x", b"x");
            }),
            "dir is a symlink; nothing is ever written through one",
        ),
        (
            build("planted.tar", &|b| {
                file(b, format!("escape{v}/x").as_bytes(), b"x")
            }),
            "escape is a symlink; nothing is ever written through one",
        ),
        (
            build("hardlink.tar", &|b| {
                link(b, tar::EntryType::Link, "h", b"../../etc/passwd")
            }),
            "a name with `..` is refused",
        ),
        (
            build("hardlink-via-symlink.tar", &|b| {
                link(b, tar::EntryType::Symlink, "s", b"/etc");
                link(b, tar::EntryType::Link, "h", b"s/passwd");
            }),
            "s is a symlink; nothing is ever written through one",
        ),
    ];
    for (tar, why) in &cases {
        // A whole archive starts from an empty directory: only a layer applied over the
        // content meets the tenant's symlink.
        let modes: &[bool] = if tar.ends_with("planted.tar") {
            &[true]
        } else {
            &[false, true]
        };
        for &changes in modes {
            let mut args = vec!["volume", "import"];
            if changes {
                args.push("--changes");
            }
            args.extend_from_slice(&["v", tar.to_str().unwrap()]);
            let err = env.ocivol_refused(&args);
            assert!(err.contains(why), "{}: {err}", tar.display());
            assert_eq!(
                snapshot(&data),
                before,
                "{}: the volume is unchanged",
                tar.display()
            );
            assert!(
                fs::read_dir(&victim).unwrap().next().is_none(),
                "nothing written outside"
            );
            assert!(!env.volume_dir("v").join("data.import").exists());
        }
    }
    assert!(
        !Path::new("/etc/passwd")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(text(&env.ocivol(&["volume", "ls", "-q"]).stdout), "v\n");
}

#[test]
fn export_and_import_keep_a_bounded_number_of_fds_at_any_depth() {
    let Some(env) = Env::new("export_and_import_keep_a_bounded_number_of_fds_at_any_depth") else {
        return;
    };
    env.ocivol_ok(&["volume", "create", "--scope", "any", "deep"]);
    env.ocivol_ok(&["volume", "create", "--scope", "any", "deep2"]);
    let data = env.volume_dir("deep").join("data");
    // 1500 levels: far more than the 32 fds the commands get below.
    let rel: PathBuf = std::iter::repeat_n("d", 1500).collect();
    fs::create_dir_all(data.join(&rel)).unwrap();
    fs::write(data.join(&rel).join("leaf"), "bottom").unwrap();
    let tar = env.dir.path().join("deep.tar");
    let sh = |args: &str| {
        let cmd = env.ocivol_cmd(&[]);
        let prefix: Vec<String> = cmd
            .get_args()
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect();
        let script = format!(
            "ulimit -n 32 && exec '{}' {} {args}",
            cmd.get_program().to_string_lossy(),
            prefix.join(" ")
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        ok(&out, args)
    };
    sh(&format!("volume export deep -o '{}'", tar.display()));
    assert_eq!(
        sh(&format!("volume import deep2 '{}'", tar.display())),
        "deep2\n"
    );
    let copy = env.volume_dir("deep2").join("data");
    assert_eq!(
        fs::read_to_string(copy.join(&rel).join("leaf")).unwrap(),
        "bottom"
    );
}

#[test]
fn an_import_killed_half_way_changes_nothing_and_gc_removes_what_it_left() {
    let Some(env) =
        Env::new("an_import_killed_half_way_changes_nothing_and_gc_removes_what_it_left")
    else {
        return;
    };
    // The archive: one file, from a plain volume's export.
    env.ocivol_ok(&["volume", "create", "--scope", "any", "src"]);
    fs::write(env.volume_dir("src").join("data/new.txt"), "imported\n").unwrap();
    let tar = env.dir.path().join("src.tar");
    export_to(&env, &["src"], &tar);
    env.ocivol_ok(&["volume", "create", "--scope", "any", "plain"]);
    fs::write(env.volume_dir("plain").join("data/old.txt"), "old\n").unwrap();
    let base = env.base.to_str().unwrap();
    env.ocivol_ok(&["volume", "create", "--scope", "any", "cow", "--base", base]);
    fs::write(env.volume_dir("cow").join("upper/old.txt"), "old\n").unwrap();

    for (name, left) in [
        ("plain", &["data.import"][..]),
        ("cow", &["upper.import", "work.import"]),
    ] {
        let changes = if name == "plain" { "data" } else { "upper" };
        let before = snapshot(&env.volume_dir(name).join(changes));
        let out = env
            .ocivol_cmd(&["volume", "import", name, tar.to_str().unwrap()])
            .env("OCIVOL_TEST_CRASH", "mid-import")
            .output()
            .unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "{name}: killed at mid-import: {out:?}"
        );
        let paths: Vec<PathBuf> = left.iter().map(|l| env.volume_dir(name).join(l)).collect();
        for p in &paths {
            assert!(p.exists(), "{name}: the killed import left {}", p.display());
        }
        assert_same(
            &snapshot(&env.volume_dir(name).join(changes)),
            &before,
            &format!("{name}: untouched by the killed import"),
        );
        let said = |verb: &str| {
            paths
                .iter()
                .map(|p| {
                    format!(
                        "{verb} {}: a write that was cut short left it\n",
                        p.display()
                    )
                })
                .collect::<String>()
        };
        assert_eq!(env.ocivol_ok(&["gc", "--dry-run"]), said("would remove"));
        assert!(
            paths.iter().all(|p| p.exists()),
            "a dry run removes nothing"
        );
        assert_eq!(env.ocivol_ok(&["gc"]), said("removed"));
        assert!(paths.iter().all(|p| !p.exists()), "{name}: gc removed them");
        assert_eq!(env.ocivol_ok(&["gc"]), "nothing to collect\n");
        // The volume is whole: the next import works.
        assert_eq!(
            env.ocivol_ok(&["volume", "import", name, tar.to_str().unwrap()]),
            format!("{name}\n")
        );
    }
    assert_eq!(
        fs::read_to_string(env.volume_dir("plain").join("data/new.txt")).unwrap(),
        "imported\n"
    );
    assert!(!env.volume_dir("plain").join("data/old.txt").exists());
}
