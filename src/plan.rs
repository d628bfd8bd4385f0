//! From parsed volume specs and the admin's policy to a plan: what each destination will be
//! mounted from. Every host path is checked by opening it beneath the allowed directory it is
//! written under ([`crate::pin`]): the plan holds the open fds, and nothing later resolves those
//! paths by name again.

use std::path::PathBuf;

use crate::annotations::{self, Ownership, Source, VolumeSpec};
use crate::mounts::flags::MountFlags;
use crate::pin::{Guard, How, Kind, Pin};

/// What a destination is mounted from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// A volume of the store: named (`name: Some`) or anonymous (`name: None`, a fresh name is
    /// chosen when it is acquired).
    Volume {
        name: Option<String>,
        /// `Some` for a copy-on-write volume: the base directory, open.
        base: Option<Pin>,
        volatile: bool,
        /// What the root of the volume gets if this creates it.
        owner: Ownership,
        /// Not filled from the image if this creates it.
        nocopy: bool,
        /// `subpath=`: the directory of the volume that is mounted.
        subpath: Option<PathBuf>,
        /// `size=`, `inodes=`: limits of the volume if this creates it.
        limits: annotations::Limits,
    },
    /// A host path, open.
    Bind { source: Pin },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMount {
    /// The annotation key and entry this came from, for error messages.
    pub annotation: String,
    pub entry: String,
    pub destination: PathBuf,
    /// The flags asked for, with those the policy forces on the host path.
    pub flags: MountFlags,
    pub what: Planned,
}

/// Plans every spec; the first refusal is returned as an [`annotations::AnnotationError`].
/// `key` is the annotation the specs came from.
pub fn plan(
    specs: &[VolumeSpec],
    key: &str,
    guard: &Guard,
) -> Result<Vec<PlannedMount>, annotations::AnnotationError> {
    specs
        .iter()
        .map(|spec| {
            plan_one(spec, key, guard)
                .map_err(|reason| annotations::AnnotationError::new(key, &spec.entry, reason))
        })
        .collect()
}

fn plan_one(spec: &VolumeSpec, key: &str, guard: &Guard) -> Result<PlannedMount, String> {
    let mut flags = spec.flags;
    let what = match &spec.source {
        Source::HostPath(p) => {
            let source = guard.check(Kind::BindSource, p, How::Asked)?;
            flags = flags.union(source.force());
            Planned::Bind { source }
        }
        Source::Named(_) | Source::Anonymous => {
            let base = match &spec.base {
                None => None,
                Some(b) => Some(base_dir(guard, b, How::Asked)?),
            };
            Planned::Volume {
                name: match &spec.source {
                    Source::Named(n) => Some(n.clone()),
                    _ => None,
                },
                base,
                volatile: spec.volatile,
                owner: spec.owner,
                nocopy: spec.nocopy,
                subpath: spec.subpath.clone(),
                limits: spec.limits,
            }
        }
    };
    Ok(PlannedMount {
        annotation: key.to_string(),
        entry: spec.entry.clone(),
        destination: spec.destination.clone(),
        flags,
        what,
    })
}

/// A base directory, checked and open. Its resolved path goes into the volume's definition.
pub fn base_dir(guard: &Guard, base: &std::path::Path, how: How) -> Result<Pin, String> {
    let pin = guard.check(Kind::Base, base, how)?;
    if !pin.is_dir() {
        return Err(format!("base {} is not a directory", base.display()));
    }
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::parse_volumes;
    use crate::config::{AllowedPath, Policy};
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// A real tree: /srv (bases and binds), /binds, a state dir inside /srv, links that escape.
    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Tree {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            for sub in ["srv/data", "srv/state/ocivol", "binds/x", "etc"] {
                std::fs::create_dir_all(d.join(sub)).unwrap();
            }
            std::fs::write(d.join("srv/file"), "").unwrap();
            symlink(d.join("etc"), d.join("srv/escape")).unwrap();
            symlink("/", d.join("binds/up")).unwrap();
            Tree { dir }
        }
        fn p(&self, rel: &str) -> String {
            self.dir.path().join(rel).display().to_string()
        }
        fn guard(&self) -> Guard {
            let d = self.dir.path();
            let policy = Policy {
                allowed_bases: vec![AllowedPath::new(d.join("srv"))],
                allowed_bind_sources: vec![
                    AllowedPath::new(d.join("binds")),
                    AllowedPath::new(d.join("srv")),
                ],
                ..Policy::default()
            };
            Guard::new(&policy, &[&d.join("srv/state/ocivol")])
        }
        fn run(&self, text: &str) -> Result<Vec<PlannedMount>, String> {
            let text = text.replace("T/", &format!("{}/", self.dir.path().display()));
            let specs = parse_volumes(&text, 64).map_err(|e| e.to_string())?;
            plan(&specs, annotations::VOLUMES, &self.guard()).map_err(|e| e.to_string())
        }
    }

    #[test]
    fn allowed_volumes_are_planned() {
        let t = Tree::new();
        let p = t
            .run("n:/a;c:/b:base=T/srv/data,volatile;/c;T/binds/x:/d:ro")
            .unwrap();
        let shown: Vec<String> = p
            .iter()
            .map(|m| match &m.what {
                Planned::Volume {
                    name,
                    base,
                    volatile,
                    ..
                } => format!(
                    "{name:?} {:?} {volatile}",
                    base.as_ref().map(|b| b.path().display().to_string())
                ),
                Planned::Bind { source } => format!("bind {}", source.path().display()),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "Some(\"n\") None false".to_string(),
                format!("Some(\"c\") Some({:?}) true", t.p("srv/data")),
                "None None false".to_string(),
                format!("bind {}", t.p("binds/x")),
            ]
        );
        assert!(p[3].flags.readonly);
    }

    #[test]
    fn refusals_say_why() {
        let t = Tree::new();
        let cases = [
            ("c:/b:base=/other", "not under the policy's allowed_bases"),
            ("c:/b:base=T/srv/missing", "No such file"),
            ("c:/b:base=T/etc", "not under the policy's allowed_bases"),
            ("c:/b:base=T/srv/escape", "resolves to a path outside them"),
            ("c:/b:base=T/srv/file", "not a directory"),
            ("c:/b:base=T/srv/state", "overlaps ocivol's state"),
            ("/:/x", "not under the policy's allowed_bind_sources"),
            ("T/etc:/x", "not under the policy's allowed_bind_sources"),
            ("T/srv:/x", "overlaps ocivol's state"),
            ("T/binds/up:/x", "resolves to a path outside them"),
        ];
        for (text, reason) in cases {
            let e = t.run(text).unwrap_err();
            assert!(e.contains(reason), "{text}: expected {reason:?} in {e}");
            assert!(e.starts_with("annotation io.ocivol.volumes: entry "), "{e}");
        }
    }

    #[test]
    fn empty_allowlists_allow_no_host_path() {
        let t = Tree::new();
        let guard = Guard::new(&Policy::default(), &[]);
        let specs = parse_volumes(&format!("c:/b:base={}", t.p("srv/data")), 64).unwrap();
        let e = plan(&specs, crate::annotations::VOLUMES, &guard)
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed_bases is empty"), "{e}");
        let specs = parse_volumes(&format!("{}:/b", t.p("binds/x")), 64).unwrap();
        let e = plan(&specs, crate::annotations::VOLUMES, &guard)
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed_bind_sources is empty"), "{e}");
        let _ = Path::new("/");
    }
}
