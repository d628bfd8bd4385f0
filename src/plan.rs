//! From parsed volume specs and the admin's policy to a plan: what each destination will be
//! mounted from. Host paths are resolved (symlinks followed) *before* they are checked against the
//! allowlists, so a symlink inside an allowed directory cannot point the plan out of it.
//!
//! The filesystem is reached only through the `resolve` function the caller passes, so the rules
//! here are tested without root and without touching the host.

use std::io;
use std::path::{Path, PathBuf};

use crate::annotations::{self, MountFlags, Source, VolumeSpec};
use crate::config::Policy;

/// What a destination is mounted from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// A volume of the store: named (`name: Some`) or anonymous (`name: None`, a fresh name is
    /// chosen when it is acquired).
    Volume {
        name: Option<String>,
        /// `Some` for a copy-on-write volume: the resolved base directory.
        base: Option<PathBuf>,
        volatile: bool,
    },
    /// A host path, resolved.
    Bind { source: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMount {
    /// The annotation entry this came from, for error messages.
    pub entry: String,
    pub destination: PathBuf,
    pub flags: MountFlags,
    pub what: Planned,
}

/// How the plan sees the filesystem: resolves a path to its canonical form (following every
/// symlink) and says whether it is a directory.
pub trait Resolver {
    fn resolve(&self, path: &Path) -> io::Result<(PathBuf, bool)>;
}

/// The real filesystem.
pub struct HostResolver;

impl Resolver for HostResolver {
    fn resolve(&self, path: &Path) -> io::Result<(PathBuf, bool)> {
        let canonical = std::fs::canonicalize(path)?;
        let is_dir = std::fs::metadata(&canonical)?.is_dir();
        Ok((canonical, is_dir))
    }
}

/// Plans every spec; the first refusal is returned as an [`annotations::AnnotationError`].
pub fn plan(
    specs: &[VolumeSpec],
    policy: &Policy,
    state_dirs: &[&Path],
    fs: &dyn Resolver,
) -> Result<Vec<PlannedMount>, annotations::AnnotationError> {
    specs
        .iter()
        .map(|spec| {
            plan_one(spec, policy, state_dirs, fs).map_err(|reason| {
                annotations::AnnotationError::new(annotations::VOLUMES, &spec.entry, reason)
            })
        })
        .collect()
}

fn plan_one(
    spec: &VolumeSpec,
    policy: &Policy,
    state_dirs: &[&Path],
    fs: &dyn Resolver,
) -> Result<PlannedMount, String> {
    let what = match &spec.source {
        Source::HostPath(p) => {
            let (source, _) = resolve_allowed(
                fs,
                "bind source",
                p,
                &policy.allowed_bind_sources,
                "allowed_bind_sources",
            )?;
            refuse_state_overlap(fs, "bind source", &source, state_dirs)?;
            Planned::Bind { source }
        }
        Source::Named(_) | Source::Anonymous => {
            let base = match &spec.base {
                None => None,
                Some(b) => {
                    let (base, is_dir) =
                        resolve_allowed(fs, "base", b, &policy.allowed_bases, "allowed_bases")?;
                    if !is_dir {
                        return Err(format!("base {} is not a directory", b.display()));
                    }
                    refuse_state_overlap(fs, "base", &base, state_dirs)?;
                    // The resolved path goes into overlay options too: check it again.
                    annotations::check_host_path("base", &base.to_string_lossy())?;
                    Some(base)
                }
            };
            Planned::Volume {
                name: match &spec.source {
                    Source::Named(n) => Some(n.clone()),
                    _ => None,
                },
                base,
                volatile: spec.volatile,
            }
        }
    };
    Ok(PlannedMount {
        entry: spec.entry.clone(),
        destination: spec.destination.clone(),
        flags: spec.flags,
        what,
    })
}

/// Resolves `path` and checks that it lies in (or is) one of the resolved `allowed` directories.
///
/// A path that is not even written under an allowed directory is refused before the filesystem
/// is asked anything, and a symlink's target outside the allowlist is not shown: the author of an
/// annotation must not learn from the error which host paths exist or where links lead.
fn resolve_allowed(
    fs: &dyn Resolver,
    what: &str,
    path: &Path,
    allowed: &[PathBuf],
    key: &str,
) -> Result<(PathBuf, bool), String> {
    if allowed.is_empty() {
        return Err(format!(
            "{what} {} is not allowed: the policy's {key} is empty; an admin must add a directory to {key} in the ocivol config",
            path.display()
        ));
    }
    let list: Vec<String> = allowed.iter().map(|a| a.display().to_string()).collect();
    let refuse = |how: &str| {
        format!(
            "{what} {}{how} is not under the policy's {key} [{}]; an admin must allow it in the ocivol config",
            path.display(),
            list.join(", ")
        )
    };
    let resolved_allowed: Vec<PathBuf> = allowed
        .iter()
        .filter_map(|a| fs.resolve(a).ok())
        .map(|(a, _)| a)
        .collect();
    let written_inside = allowed
        .iter()
        .chain(&resolved_allowed)
        .any(|a| path.starts_with(a));
    if !written_inside {
        return Err(refuse(""));
    }
    let (resolved, is_dir) = fs
        .resolve(path)
        .map_err(|e| format!("{what} {} cannot be used: {e}", path.display()))?;
    if !resolved_allowed.iter().any(|a| resolved.starts_with(a)) {
        return Err(refuse(" (it resolves to a path outside them)"));
    }
    Ok((resolved, is_dir))
}

/// ocivol's own state must never be reachable from an annotation (it holds other containers'
/// data and the overlay upper directories).
fn refuse_state_overlap(
    fs: &dyn Resolver,
    what: &str,
    path: &Path,
    state_dirs: &[&Path],
) -> Result<(), String> {
    for dir in state_dirs {
        let dir = fs
            .resolve(dir)
            .map(|(d, _)| d)
            .unwrap_or_else(|_| dir.to_path_buf());
        if path.starts_with(&dir) || dir.starts_with(path) {
            return Err(format!(
                "{what} {} overlaps ocivol's state directory {}",
                path.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::parse_volumes;
    use std::collections::HashMap;

    /// A fake filesystem: path → (resolved path, is_dir).
    struct Fake(HashMap<&'static str, (&'static str, bool)>);

    impl Resolver for Fake {
        fn resolve(&self, path: &Path) -> io::Result<(PathBuf, bool)> {
            let key = path.to_str().unwrap();
            self.0
                .get(key)
                .map(|(p, d)| (PathBuf::from(p), *d))
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
    }

    fn fake() -> Fake {
        Fake(HashMap::from([
            ("/srv", ("/srv", true)),
            ("/srv/data", ("/srv/data", true)),
            ("/srv/file", ("/srv/file", false)),
            ("/srv/escape", ("/etc", true)),
            ("/binds", ("/binds", true)),
            ("/binds/x", ("/binds/x", true)),
            ("/binds/up", ("/", true)),
            ("/etc", ("/etc", true)),
            ("/", ("/", true)),
            ("/var/run/docker.sock", ("/run/docker.sock", false)),
            ("/var/lib/ocivol", ("/var/lib/ocivol", true)),
            ("/srv/state", ("/srv/state", true)),
            ("/srv/state/ocivol", ("/srv/state/ocivol", true)),
        ]))
    }

    fn policy() -> Policy {
        Policy {
            allowed_bases: vec!["/srv".into()],
            allowed_bind_sources: vec!["/binds".into(), "/srv".into()],
            ..Policy::default()
        }
    }

    fn run(text: &str) -> Result<Vec<PlannedMount>, String> {
        let specs = parse_volumes(text, 64).map_err(|e| e.to_string())?;
        plan(
            &specs,
            &policy(),
            &[Path::new("/srv/state/ocivol")],
            &fake(),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn allowed_volumes_are_planned() {
        let p = run("n:/a;c:/b:base=/srv/data,volatile;/c;/binds/x:/d:ro").unwrap();
        assert_eq!(
            p.iter().map(|m| m.what.clone()).collect::<Vec<_>>(),
            [
                Planned::Volume {
                    name: Some("n".into()),
                    base: None,
                    volatile: false
                },
                Planned::Volume {
                    name: Some("c".into()),
                    base: Some("/srv/data".into()),
                    volatile: true
                },
                Planned::Volume {
                    name: None,
                    base: None,
                    volatile: false
                },
                Planned::Bind {
                    source: "/binds/x".into()
                },
            ]
        );
        assert!(p[3].flags.readonly);
    }

    #[test]
    fn refusals_say_why() {
        let cases = [
            ("c:/b:base=/other", "not under the policy's allowed_bases"),
            ("c:/b:base=/srv/missing", "not found"),
            ("c:/b:base=/etc", "not under the policy's allowed_bases"),
            ("c:/b:base=/srv/escape", "resolves to a path outside them"),
            ("c:/b:base=/srv/file", "not a directory"),
            ("c:/b:base=/srv/state", "overlaps ocivol's state"),
            ("/:/x", "not under the policy's allowed_bind_sources"),
            ("/etc:/x", "not under the policy's allowed_bind_sources"),
            (
                "/var/run/docker.sock:/x",
                "not under the policy's allowed_bind_sources",
            ),
            ("/binds/up:/x", "resolves to a path outside them"),
        ];
        for (text, reason) in cases {
            let e = run(text).unwrap_err();
            assert!(e.contains(reason), "{text}: expected {reason:?} in {e}");
            assert!(e.starts_with("annotation io.ocivol.volumes: entry "), "{e}");
        }
    }

    #[test]
    fn empty_allowlists_allow_no_host_path() {
        let specs = parse_volumes("c:/b:base=/srv/data", 64).unwrap();
        let e = plan(&specs, &Policy::default(), &[], &fake())
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed_bases is empty"), "{e}");
        let specs = parse_volumes("/binds/x:/b", 64).unwrap();
        let e = plan(&specs, &Policy::default(), &[], &fake())
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed_bind_sources is empty"), "{e}");
    }
}
