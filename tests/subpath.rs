//! `subpath=DIR` end to end, in runtime mode and in hook mode, with real runc: a container gets
//! one directory of a volume (made if missing), and a tenant's symlink on the way (`dir -> /`)
//! fails the container's creation, leaving nothing mounted and no user counted.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::{Env, Way, ok, text};

const VOLUMES: &str = "io.ocivol.volumes";

#[test]
fn subpath_mounts_one_directory_of_a_volume_and_never_follows_a_symlink() {
    let Some(env) =
        Env::new("subpath_mounts_one_directory_of_a_volume_and_never_follows_a_symlink")
    else {
        return;
    };
    for (i, way) in Way::BOTH.into_iter().enumerate() {
        let name = format!("shared{i}");
        // A plain volume: the subpath is made in the new volume, and the container sees only it.
        let spec = format!("{name}:/data:subpath=app/cache");
        let id = format!("ocivol-subpath-{i}-a");
        let bundle = way.bundle(
            &env,
            &id,
            &["sh", "-c", "echo hi > /data/f && ls -a /data"],
            &[(VOLUMES, &spec)],
        );
        let out = way.run(&env, &id, &bundle);
        assert_eq!(ok(&out, "run with subpath"), ".\n..\nf\n", "{way:?}");
        ok(&way.delete(&env, &id), "delete");
        let data = env.volume_dir(&name).join("data");
        assert_eq!(
            fs::read_to_string(data.join("app/cache/f")).unwrap(),
            "hi\n"
        );
        assert_eq!(env.users(&name), 0);

        // A copy-on-write volume: the subpath is a directory of the merged view.
        let cow = format!("cow{i}");
        let spec = format!("{cow}:/data:base={},subpath=sub", env.base.display());
        let id = format!("ocivol-subpath-{i}-c");
        let bundle = way.bundle(&env, &id, &["cat", "/data/deep.txt"], &[(VOLUMES, &spec)]);
        assert_eq!(
            ok(&way.run(&env, &id, &bundle), "cow subpath"),
            "deep\n",
            "{way:?}"
        );
        ok(&way.delete(&env, &id), "delete");

        // A tenant makes app/evil -> / and asks for it: refused, nothing mounted or counted.
        symlink("/", data.join("app/evil")).unwrap();
        for sub in ["app/evil", "app/evil/etc"] {
            let spec = format!("{name}:/data:subpath={sub}");
            let id = format!("ocivol-subpath-{i}-x");
            let bundle = way.bundle(
                &env,
                &id,
                &["cat", "/data/etc/hostname"],
                &[(VOLUMES, &spec)],
            );
            let out = way.run(&env, &id, &bundle);
            assert!(!out.status.success(), "{way:?} {sub}: {out:?}");
            let err = text(&out.stderr);
            assert!(
                err.contains("subpath")
                    && err
                        .contains("app/evil is a symlink; a subpath is never resolved through one"),
                "{way:?} {sub}: {err}"
            );
            let _ = way.delete(&env, &id);
            assert_eq!(env.users(&name), 0, "{way:?}: no user left");
            assert!(
                !data.join("app/evil/etc").exists()
                    || fs::symlink_metadata(data.join("app/evil"))
                        .unwrap()
                        .file_type()
                        .is_symlink()
            );
        }
        assert!(
            env.mounts_here().is_empty(),
            "{way:?}: {:?}",
            env.mounts_here()
        );
    }
}
