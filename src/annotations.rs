//! Parsing of the `io.ocivol.volumes` annotation: Docker's `-v` syntax, one entry per volume;
//! and which of the `io.ocivol.` keys apply to a container ([`select`]).
//!
//! This is the first step of the data path (annotations → plan → store → mounts → spec). It is pure:
//! text in, [`VolumeSpec`]s out, and every rejection names the annotation, the entry and the
//! reason, so the one line a user sees from containerd or podman tells them what to fix.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Component, Path, PathBuf};

use crate::mounts::flags::MountFlags;

/// Annotation holding the volume specs of a container.
pub const VOLUMES: &str = "io.ocivol.volumes";
/// Annotation naming containers whose volumes this one gets (issue: volumes-from).
pub const VOLUMES_FROM: &str = "io.ocivol.volumes-from";
/// Prefix shared by every ocivol annotation; a spec without one is passed through untouched.
pub const PREFIX: &str = "io.ocivol.";

/// An annotation longer than this is refused before any other work.
pub const MAX_ANNOTATION_BYTES: usize = 64 * 1024;
/// Longest volume name, as DESIGN.md says.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest path accepted in a spec (PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;

/// `uid=`, `gid=`, `mode=`: the owner and permission bits a new volume's root gets. What is not
/// given keeps its default (root, 0755; a copy-on-write volume's base root; a filled volume's
/// image directory). Recorded in the volume's definition, where `mode` is an octal string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ownership {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "octal")]
    pub mode: Option<u32>,
}

impl Ownership {
    pub fn is_empty(&self) -> bool {
        *self == Ownership::default()
    }

    /// These, with what `over` gives instead.
    pub fn with(&self, over: &Ownership) -> Ownership {
        Ownership {
            uid: over.uid.or(self.uid),
            gid: over.gid.or(self.gid),
            mode: over.mode.or(self.mode),
        }
    }

    /// The options as a spec writes them (`uid=1000`, `mode=0750`).
    pub fn options(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(u) = self.uid {
            out.push(format!("uid={u}"));
        }
        if let Some(g) = self.gid {
            out.push(format!("gid={g}"));
        }
        if let Some(m) = self.mode {
            out.push(format!("mode={m:04o}"));
        }
        out
    }
}

/// `mode` as an octal string in JSON: `"0750"` reads as what `mode=0750` means.
mod octal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
        match mode {
            Some(m) => s.serialize_str(&format!("{m:04o}")),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| super::parse_mode(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Largest user or group ID an option takes: `(uid_t)-1` means "leave unchanged" to chown(2).
pub const MAX_ID: u32 = u32::MAX - 1;

/// A numeric user or group ID, `what` being `uid` or `gid`.
pub fn parse_id(what: &str, text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{what} {text:?} is not a number; give a numeric ID ({what}=1000)"
        ));
    }
    match text.parse::<u64>() {
        Ok(n) if n <= u64::from(MAX_ID) => Ok(n as u32),
        _ => Err(format!(
            "{what} {text} is too large; an ID is at most {MAX_ID}"
        )),
    }
}

/// Permission bits in octal, as chmod takes them: at most 07777.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    if text.is_empty() || text.len() > 6 || !text.bytes().all(|b| matches!(b, b'0'..=b'7')) {
        return Err(format!("mode {text:?} is not an octal number (mode=0755)"));
    }
    match u32::from_str_radix(text, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("mode {text} is too large; a mode is at most 07777")),
    }
}

/// Where a volume's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `NAME:/dst`: a named volume, created on first use.
    Named(String),
    /// `/dst`: a fresh volume that goes away with its container.
    Anonymous,
    /// `/host/path:/dst`: a bind of a host path (policy decides if it is allowed).
    HostPath(PathBuf),
}

/// `size=`, `inodes=`: limits on a new volume's data or changes (project quotas, see
/// `store/quota.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Bytes.
    pub size: Option<u64>,
    pub inodes: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.size.is_none() && self.inodes.is_none()
    }
}

/// One parsed entry of `io.ocivol.volumes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// The entry as the user wrote it (trimmed), for error messages.
    pub entry: String,
    pub source: Source,
    pub destination: PathBuf,
    pub flags: MountFlags,
    /// `base=HOSTDIR`: copy-on-write over this host directory.
    pub base: Option<PathBuf>,
    /// `volatile`: changes are discarded after the last user.
    pub volatile: bool,
    /// `nocopy`: a new volume is not filled from the image's content at its destination.
    pub nocopy: bool,
    /// `uid=`, `gid=`, `mode=`: a new volume's root.
    pub owner: Ownership,
    /// `subpath=DIR`: mount this directory of the volume (relative, no `..`), resolved inside
    /// the volume with no symlink on its way, made if missing (Docker's `volume-subpath`).
    pub subpath: Option<PathBuf>,
    /// `size=`, `inodes=`: a new volume's limits.
    pub limits: Limits,
}

impl fmt::Display for VolumeSpec {
    /// The canonical text of the spec; parsing it again gives the same spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Named(n) => write!(f, "{n}:")?,
            Source::HostPath(p) => write!(f, "{}:", p.display())?,
            Source::Anonymous => {}
        }
        write!(f, "{}", self.destination.display())?;
        let mut opts: Vec<String> = self.flags.set_options().map(str::to_string).collect();
        if let Some(b) = &self.base {
            opts.push(format!("base={}", b.display()));
        }
        if self.volatile {
            opts.push("volatile".to_string());
        }
        if self.nocopy {
            opts.push("nocopy".to_string());
        }
        opts.extend(self.owner.options());
        if let Some(s) = &self.subpath {
            opts.push(format!("subpath={}", s.display()));
        }
        if let Some(n) = self.limits.size {
            opts.push(format!("size={n}"));
        }
        if let Some(n) = self.limits.inodes {
            opts.push(format!("inodes={n}"));
        }
        if !opts.is_empty() {
            write!(f, ":{}", opts.join(","))?;
        }
        Ok(())
    }
}

/// A rejected annotation: which one, which entry, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}: entry {entry:?}: {reason}")]
pub struct AnnotationError {
    pub annotation: String,
    pub entry: String,
    pub reason: String,
}

impl AnnotationError {
    pub fn new(annotation: &str, entry: &str, reason: impl Into<String>) -> Self {
        // Keep the message one short line even for huge or multi-line input.
        let mut shown: String = entry.chars().take(80).collect();
        if shown.len() < entry.len() {
            shown.push('…');
        }
        AnnotationError {
            annotation: annotation.to_string(),
            entry: shown,
            reason: reason.into(),
        }
    }
}

/// The `io.ocivol.` keys that apply to one container, in the order they apply: the plain key
/// (every container of a pod) first, then the one for the container's name
/// (`io.ocivol.volumes/<container-name>`, the Kubernetes convention of
/// `container.apparmor.security.beta.kubernetes.io/<container>`), whose entries win a
/// destination over the plain key's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selected<'a> {
    /// `(key, value)` of `io.ocivol.volumes` and `io.ocivol.volumes/<name>`.
    pub volumes: Vec<(&'a str, &'a str)>,
    /// `(key, value)` of `io.ocivol.volumes-from` and `io.ocivol.volumes-from/<name>`.
    pub volumes_from: Vec<(&'a str, &'a str)>,
}

impl Selected<'_> {
    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty() && self.volumes_from.is_empty()
    }
}

/// Longest container name in a per-container key (a Kubernetes container name is a DNS label of
/// at most 63 bytes; other engines allow longer names).
const MAX_CONTAINER_NAME_BYTES: usize = 253;

/// Picks the keys for the container called `container_name` (from a key its engine writes; `None`
/// outside a pod). Keys for other containers of the pod are skipped; any other `io.ocivol.` key
/// is refused, so that a misspelt key is not silently ignored.
pub fn select<'a>(
    annotations: &'a BTreeMap<String, String>,
    container_name: Option<&str>,
) -> Result<Selected<'a>, AnnotationError> {
    let mut plain = Selected::default();
    let mut own = Selected::default();
    for (key, value) in annotations.range::<str, _>((Bound::Included(PREFIX), Bound::Unbounded)) {
        let Some(rest) = key.strip_prefix(PREFIX) else {
            break;
        };
        let (base, name) = match rest.split_once('/') {
            Some((base, name)) => (base, Some(name)),
            None => (rest, None),
        };
        let (into_plain, into_own) = match base {
            "volumes" => (&mut plain.volumes, &mut own.volumes),
            "volumes-from" => (&mut plain.volumes_from, &mut own.volumes_from),
            _ => {
                return Err(AnnotationError::new(
                    key,
                    "",
                    format!(
                        "unknown annotation; ocivol reads {VOLUMES} and {VOLUMES_FROM}, and \
                         {VOLUMES}/CONTAINER and {VOLUMES_FROM}/CONTAINER for one container of a pod"
                    ),
                ));
            }
        };
        match name {
            None => into_plain.push((key.as_str(), value.as_str())),
            Some(name) => {
                check_container_name(name).map_err(|e| AnnotationError::new(key, "", e))?;
                if container_name == Some(name) {
                    into_own.push((key.as_str(), value.as_str()));
                }
            }
        }
    }
    plain.volumes.append(&mut own.volumes);
    plain.volumes_from.append(&mut own.volumes_from);
    Ok(plain)
}

fn check_container_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("no container name after '/'; write KEY/CONTAINER-NAME".into());
    }
    if name.len() > MAX_CONTAINER_NAME_BYTES
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "the container name after '/' must be at most {MAX_CONTAINER_NAME_BYTES} letters, digits, \
             '-', '_' or '.' (a Kubernetes container name)"
        ));
    }
    Ok(())
}

/// Parses the value of `io.ocivol.volumes`. `max_entries` is the policy's limit.
pub fn parse_volumes(value: &str, max_entries: usize) -> Result<Vec<VolumeSpec>, AnnotationError> {
    parse_volumes_of(VOLUMES, value, max_entries)
}

/// Parses the value of `key` (`io.ocivol.volumes` or one of its per-container forms); errors
/// name `key`.
pub fn parse_volumes_of(
    key: &str,
    value: &str,
    max_entries: usize,
) -> Result<Vec<VolumeSpec>, AnnotationError> {
    if value.len() > MAX_ANNOTATION_BYTES {
        return Err(AnnotationError::new(
            key,
            "",
            format!(
                "the annotation is {} bytes long; at most {MAX_ANNOTATION_BYTES} are accepted",
                value.len()
            ),
        ));
    }
    let entries: Vec<&str> = split_entries(value, &[';', '\n']);
    if entries.len() > max_entries {
        return Err(AnnotationError::new(
            key,
            "",
            format!(
                "{} entries given; the policy allows at most {max_entries} volumes per container \
                 (max_volumes_per_container)",
                entries.len()
            ),
        ));
    }
    let mut specs: Vec<VolumeSpec> = Vec::with_capacity(entries.len());
    for entry in entries {
        let spec = parse_entry(entry).map_err(|reason| AnnotationError::new(key, entry, reason))?;
        if let Some(other) = specs.iter().find(|s| s.destination == spec.destination) {
            return Err(AnnotationError::new(
                key,
                entry,
                format!(
                    "destination {} is already used by entry {:?}; give each volume its own destination",
                    spec.destination.display(),
                    other.entry
                ),
            ));
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// Splits on any of `seps`, trims, and drops empty entries (a trailing `;` is fine).
pub fn split_entries<'a>(value: &'a str, seps: &[char]) -> Vec<&'a str> {
    value
        .split(|c| seps.contains(&c))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect()
}

fn parse_entry(entry: &str) -> Result<VolumeSpec, String> {
    if entry.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    let parts: Vec<&str> = entry.split(':').collect();
    let (source, dest, options) = match parts.as_slice() {
        [dest] => (None, *dest, None),
        // `/dst:ro` is an anonymous volume with options; `src:/dst` names its source.
        [first, second] if !second.starts_with('/') && first.starts_with('/') => {
            (None, *first, Some(*second))
        }
        [src, dest] => (Some(*src), *dest, None),
        [src, dest, opts] => (Some(*src), *dest, Some(*opts)),
        _ => {
            return Err(
                "too many ':' separators; the form is SOURCE:DEST[:OPTIONS] or DEST[:OPTIONS], \
                 and no path may contain ':'"
                    .into(),
            );
        }
    };
    let destination = check_destination(dest)?;
    let source = match source {
        None => Source::Anonymous,
        Some(s) if s.starts_with('/') => Source::HostPath(check_host_path("source", s)?),
        Some(s) => Source::Named(check_name(s)?.to_string()),
    };
    let mut spec = VolumeSpec {
        entry: entry.to_string(),
        source,
        destination,
        flags: MountFlags::default(),
        base: None,
        volatile: false,
        nocopy: false,
        owner: Ownership::default(),
        subpath: None,
        limits: Limits::default(),
    };
    if let Some(options) = options {
        apply_options(&mut spec, options)?;
    }
    Ok(spec)
}

fn apply_options(spec: &mut VolumeSpec, options: &str) -> Result<(), String> {
    let mut rw = false;
    for opt in options.split(',').map(str::trim) {
        // ro, nosuid, nodev, noexec
        if spec.flags.set(opt) {
            continue;
        }
        match opt {
            "rw" => rw = true,
            "volatile" => spec.volatile = true,
            "nocopy" => spec.nocopy = true,
            "" => return Err("empty option (two ',' in a row, or a trailing ',' or ':')".into()),
            _ => match opt.split_once('=') {
                Some(("base", dir)) => {
                    if spec.base.is_some() {
                        return Err("base= is given twice".into());
                    }
                    spec.base = Some(check_host_path("base", dir)?);
                }
                Some(("size", value)) => {
                    let n = crate::store::quota::parse_size(value)?;
                    if spec.limits.size.replace(n).is_some() {
                        return Err("size= is given twice".into());
                    }
                }
                Some(("inodes", value)) => {
                    let n: u64 = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("inodes {value:?} is not a positive number"))?;
                    if spec.limits.inodes.replace(n).is_some() {
                        return Err("inodes= is given twice".into());
                    }
                }
                Some(("subpath", dir)) => {
                    if spec.subpath.is_some() {
                        return Err("subpath= is given twice".into());
                    }
                    spec.subpath = Some(check_subpath(dir)?);
                }
                Some((key @ ("uid" | "gid" | "mode"), value)) => {
                    let (slot, value) = match key {
                        "uid" => (&mut spec.owner.uid, parse_id(key, value)?),
                        "gid" => (&mut spec.owner.gid, parse_id(key, value)?),
                        _ => (&mut spec.owner.mode, parse_mode(value)?),
                    };
                    if slot.replace(value).is_some() {
                        return Err(format!("{key}= is given twice"));
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown option {opt:?}; the options are ro, rw, nosuid, nodev, noexec, base=HOSTDIR, volatile, nocopy, uid=N, gid=N, mode=OCTAL, subpath=DIR, size=BYTES, inodes=N"
                    ));
                }
            },
        }
    }
    if spec.flags.readonly && rw {
        return Err("both ro and rw are given; choose one".into());
    }
    if spec.volatile && spec.base.is_none() {
        return Err(
            "volatile needs base=HOSTDIR: only a copy-on-write volume can forget its changes"
                .into(),
        );
    }
    if matches!(spec.source, Source::HostPath(_)) {
        if spec.base.is_some() {
            return Err("base= cannot be used with a host path source; name the volume instead (NAME:DEST:base=HOSTDIR)".into());
        }
        if let Some(opt) = spec.owner.options().into_iter().next() {
            let key = opt.split('=').next().unwrap_or_default();
            return Err(format!(
                "{key}= sets a new volume's root; a bind of a host path keeps the owner and mode it has"
            ));
        }
        if spec.nocopy {
            return Err(
                "nocopy applies to a new volume; a bind of a host path is never filled".into(),
            );
        }
        if !spec.limits.is_empty() {
            return Err(
                "size= and inodes= limit a volume; a bind of a host path is not ocivol's to limit"
                    .into(),
            );
        }
        if spec.subpath.is_some() {
            return Err(
                "subpath= picks a directory of a volume; for a host path, bind that directory itself"
                    .into(),
            );
        }
    }
    Ok(())
}

/// A `subpath=` directory: relative to the volume's root, normalised (no empty, `.` or `..`
/// component), at most 4096 bytes.
pub fn check_subpath(dir: &str) -> Result<PathBuf, String> {
    if dir.starts_with('/') {
        return Err(format!(
            "subpath {dir:?} is absolute; it is a directory inside the volume, relative to its root (subpath=a/b)"
        ));
    }
    if dir.len() > 4096 {
        return Err(format!(
            "subpath is {} bytes long; at most 4096 are allowed",
            dir.len()
        ));
    }
    let mut out = PathBuf::new();
    for c in dir.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "subpath {dir:?} has a `..` component; it must stay inside the volume"
                ));
            }
            c if c.contains('\0') => return Err("subpath contains a NUL byte".into()),
            c => out.push(c),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!(
            "subpath {dir:?} names the volume's root; leave subpath= out to mount the whole volume"
        ));
    }
    Ok(out)
}

/// A volume name as DESIGN.md defines it: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 bytes.
pub fn check_name(name: &str) -> Result<&str, String> {
    if name.is_empty() {
        return Err("empty volume name".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "volume name is {} bytes long; at most {MAX_NAME_BYTES} are allowed",
            name.len()
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(format!(
            "invalid volume name {name:?}: a name starts with a letter or digit and has only letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(name)
}

/// A destination inside the container: absolute, normalised, not `/`, not in the kernel's
/// pseudo filesystems (a volume over /proc or /sys would hide or fake what the runtime sets up).
pub fn check_destination(dest: &str) -> Result<PathBuf, String> {
    let path = check_normal_absolute("destination", dest)?;
    if path == Path::new("/") {
        return Err("destination is /: a volume cannot replace the container's root".into());
    }
    for fs in ["/proc", "/sys", "/dev"] {
        if path.starts_with(fs) {
            return Err(format!(
                "destination {} is under {fs}, which the runtime manages; choose another path",
                path.display()
            ));
        }
    }
    Ok(path)
}

/// A host path from an annotation: absolute, normalised, and free of the characters that would
/// change the meaning of overlayfs's comma- and colon-separated mount options.
pub fn check_host_path(what: &str, path: &str) -> Result<PathBuf, String> {
    let p = check_normal_absolute(what, path)?;
    if let Some(c) = path
        .chars()
        .find(|c| matches!(c, ',' | ':' | '\\' | '=' | '\n'))
    {
        return Err(format!(
            "{what} {path:?} contains {c:?}, which is not allowed in a host path (it would change overlay mount options)"
        ));
    }
    Ok(p)
}

fn check_normal_absolute(what: &str, path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err(format!("empty {what}"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("{what} is longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.contains('\0') {
        return Err(format!("{what} contains a NUL byte"));
    }
    if !path.starts_with('/') {
        return Err(format!(
            "{what} {path:?} is not an absolute path; it must start with '/'"
        ));
    }
    if path.ends_with(char::is_whitespace) {
        // Entries are trimmed, so `/x :rw` would print as `/x ` and read back as `/x`: a path
        // that ends in white space cannot be written down again, and is almost surely a typo.
        return Err(format!("{what} {path:?} ends with white space; remove it"));
    }
    let normal = path == "/"
        || (!path.ends_with('/')
            && !path.contains("//")
            && Path::new(path)
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
            && !path.split('/').any(|s| s == "." || s == ".."));
    if !normal {
        return Err(format!(
            "{what} {path:?} is not a normalised path (no '.', '..', '//' or trailing '/')"
        ));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> VolumeSpec {
        let mut specs = parse_volumes(v, 64).unwrap_or_else(|e| panic!("{v:?}: {e}"));
        assert_eq!(specs.len(), 1);
        specs.remove(0)
    }

    fn err(v: &str) -> String {
        parse_volumes(v, 64).expect_err(v).to_string()
    }

    #[test]
    fn accepted_forms() {
        type Case<'a> = (&'a str, Source, &'a str, MountFlags, Option<&'a str>, bool);
        let cases: &[Case] = &[
            (
                "cache:/var/cache/app",
                Source::Named("cache".into()),
                "/var/cache/app",
                MountFlags::default(),
                None,
                false,
            ),
            (
                "/scratch",
                Source::Anonymous,
                "/scratch",
                MountFlags::default(),
                None,
                false,
            ),
            (
                "/scratch:ro",
                Source::Anonymous,
                "/scratch",
                MountFlags {
                    readonly: true,
                    ..Default::default()
                },
                None,
                false,
            ),
            (
                "/srv/x:/x",
                Source::HostPath("/srv/x".into()),
                "/x",
                MountFlags::default(),
                None,
                false,
            ),
            (
                "d:/data:base=/srv/datasets/v3",
                Source::Named("d".into()),
                "/data",
                MountFlags::default(),
                Some("/srv/datasets/v3"),
                false,
            ),
            (
                "s:/work:base=/srv/template,volatile",
                Source::Named("s".into()),
                "/work",
                MountFlags::default(),
                Some("/srv/template"),
                true,
            ),
            (
                "v:/v:ro,nosuid,nodev,noexec",
                Source::Named("v".into()),
                "/v",
                MountFlags {
                    readonly: true,
                    nosuid: true,
                    nodev: true,
                    noexec: true,
                },
                None,
                false,
            ),
            (
                " v.1_-x:/v:rw ",
                Source::Named("v.1_-x".into()),
                "/v",
                MountFlags::default(),
                None,
                false,
            ),
        ];
        for (text, source, dest, flags, base, volatile) in cases {
            let s = one(text);
            assert_eq!(&s.source, source, "{text}");
            assert_eq!(s.destination, PathBuf::from(dest), "{text}");
            assert_eq!(&s.flags, flags, "{text}");
            assert_eq!(s.base.as_deref(), base.map(Path::new), "{text}");
            assert_eq!(s.volatile, *volatile, "{text}");
        }
    }

    #[test]
    fn entries_split_on_semicolons_and_newlines() {
        let specs = parse_volumes(
            "cache:/var/cache/app;dataset:/data:base=/srv/d\n/scratch;",
            64,
        )
        .unwrap();
        let dests: Vec<_> = specs
            .iter()
            .map(|s| s.destination.display().to_string())
            .collect();
        assert_eq!(dests, ["/var/cache/app", "/data", "/scratch"]);
    }

    #[test]
    fn rejected_entries_name_annotation_entry_and_reason() {
        let cases: &[(&str, &str)] = &[
            ("relative", "not an absolute path"),
            ("v:relative", "not an absolute path"),
            ("v:/", "destination is /"),
            ("v:/proc/x", "under /proc"),
            ("v:/sys", "under /sys"),
            ("v:/dev/sda", "under /dev"),
            ("v:/a/../../etc", "not a normalised path"),
            ("v:/a/./b", "not a normalised path"),
            ("v:/a//b", "not a normalised path"),
            ("v:/a/", "not a normalised path"),
            ("..:/x", "invalid volume name"),
            ("a/b:/x", "invalid volume name"),
            ("-x:/x", "invalid volume name"),
            ("v:/x:bogus", "unknown option \"bogus\""),
            ("v:/x:ro,rw", "both ro and rw"),
            ("v:/x:volatile", "volatile needs base="),
            ("/h:/x:base=/b", "base= cannot be used with a host path"),
            ("v:/x:base=relative", "not an absolute path"),
            ("v:/x:base=/a,b", "unknown option \"b\""),
            ("v:/x:base=/a=b", "contains '='"),
            ("v:/x:base=/x,base=/y", "base= is given twice"),
            ("v:/x:ro,", "empty option"),
            ("a:/b:/c:ro", "too many ':'"),
            ("v:/x\0y", "NUL"),
            ("/t :rw", "ends with white space"),
            ("v:/x\t:ro", "ends with white space"),
            ("/h :/d", "ends with white space"),
            ("v:/x;w:/x", "already used"),
            ("v:/x:uid=abc", "uid \"abc\" is not a number"),
            ("v:/x:uid=-1", "uid \"-1\" is not a number"),
            ("v:/x:uid=", "uid \"\" is not a number"),
            ("v:/x:gid=4294967295", "an ID is at most 4294967294"),
            (
                "v:/x:gid=99999999999999999999",
                "an ID is at most 4294967294",
            ),
            ("v:/x:uid=1,uid=1", "uid= is given twice"),
            ("v:/x:mode=0999", "mode \"0999\" is not an octal number"),
            ("v:/x:mode=0x755", "not an octal number"),
            ("v:/x:mode=17777", "a mode is at most 07777"),
            ("v:/x:mode=1,mode=2", "mode= is given twice"),
            ("/h:/x:uid=1", "uid= sets a new volume's root"),
            ("/h:/x:mode=0755", "mode= sets a new volume's root"),
            ("/h:/x:nocopy", "a bind of a host path is never filled"),
            ("v:/x:owner=1", "unknown option \"owner=1\""),
        ];
        for (text, reason) in cases {
            let e = err(text);
            assert!(
                e.starts_with("annotation io.ocivol.volumes: entry "),
                "{text}: {e}"
            );
            assert!(e.contains(reason), "{text}: expected {reason:?} in {e:?}");
            assert!(!e.contains('\n'), "{text}: one line: {e:?}");
        }
    }

    #[test]
    fn base_paths_that_would_inject_overlay_options_are_refused() {
        for base in ["lowerdir=/x,upperdir=/etc", "/x:/y", "/x\\y", "/a=b"] {
            let e = err(&format!("v:/d:base={base}"));
            assert!(e.contains("io.ocivol.volumes"), "{e}");
        }
    }

    #[test]
    fn names_follow_design_md() {
        assert!(check_name("a").is_ok());
        assert!(check_name(&"a".repeat(128)).is_ok());
        assert!(
            check_name(&"a".repeat(129))
                .unwrap_err()
                .contains("at most 128")
        );
        let long = err(&format!("{}:/x", "n".repeat(300)));
        assert!(long.contains("300 bytes"), "{long}");
        assert!(long.len() < 300, "the error stays short: {long}");
        for bad in ["", ".a", "_a", "a b", "a\0", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn size_and_count_limits_are_checked_first() {
        let big = format!("v:/{}", "a".repeat(MAX_ANNOTATION_BYTES));
        assert!(err(&big).contains("at most 65536 are accepted"));
        let many: Vec<String> = (0..1000).map(|i| format!("v{i}:/d{i}")).collect();
        let e = parse_volumes(&many.join(";"), 64).unwrap_err().to_string();
        assert!(
            e.contains("1000 entries given") && e.contains("max_volumes_per_container"),
            "{e}"
        );
    }

    #[test]
    fn ownership_options_and_nocopy() {
        let s = one("cache:/c:uid=1000,gid=1001,mode=0750,nocopy");
        assert_eq!(
            s.owner,
            Ownership {
                uid: Some(1000),
                gid: Some(1001),
                mode: Some(0o750)
            }
        );
        assert!(s.nocopy);
        for (text, mode) in [("7", 0o7), ("755", 0o755), ("01777", 0o1777), ("0", 0)] {
            assert_eq!(parse_mode(text), Ok(mode), "{text}");
        }
        assert_eq!(parse_id("uid", "0"), Ok(0));
        assert_eq!(parse_id("gid", "4294967294"), Ok(4294967294));
        // Anonymous and copy-on-write volumes take them too; nocopy is a no-op with base=.
        assert_eq!(one("/s:uid=5").owner.uid, Some(5));
        let c = one("c:/c:base=/srv/b,mode=700,nocopy");
        assert_eq!((c.owner.mode, c.nocopy), (Some(0o700), true));
        // In a definition, the mode is an octal string.
        let json = serde_json::to_string(&s.owner).unwrap();
        assert_eq!(json, r#"{"uid":1000,"gid":1001,"mode":"0750"}"#);
        assert_eq!(serde_json::from_str::<Ownership>(&json).unwrap(), s.owner);
        assert_eq!(serde_json::to_string(&Ownership::default()).unwrap(), "{}");
        assert!(serde_json::from_str::<Ownership>(r#"{"mode":"9"}"#).is_err());
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "cache:/var/cache/app",
            "/scratch",
            "/scratch:ro",
            "/srv/x:/x:ro,nodev",
            "s:/work:nosuid,base=/srv/t,volatile",
            "c:/c:nocopy,uid=0,gid=4294967294,mode=0750",
            "/a:mode=1777",
        ] {
            let s = one(text);
            assert_eq!(
                one(&s.to_string()),
                VolumeSpec {
                    entry: s.to_string(),
                    ..s.clone()
                },
                "{text}"
            );
        }
    }

    #[test]
    fn subpath_is_relative_normalised_and_only_for_volumes() {
        let s = one("v:/d:subpath=./a//b/");
        assert_eq!(s.subpath.as_deref(), Some(Path::new("a/b")));
        assert_eq!(s.to_string(), "v:/d:subpath=a/b");
        assert_eq!(one("/d:subpath=x").subpath.as_deref(), Some(Path::new("x")));
        let q = one("v:/d:size=10m,inodes=100");
        assert_eq!(
            (q.limits.size, q.limits.inodes),
            (Some(10 << 20), Some(100))
        );
        assert_eq!(q.to_string(), "v:/d:size=10485760,inodes=100");
        for (text, why) in [
            ("v:/d:subpath=/etc", "is absolute"),
            ("v:/d:subpath=a/../../b", "has a `..` component"),
            ("v:/d:subpath=.", "names the volume's root"),
            ("v:/d:subpath=a,subpath=b", "subpath= is given twice"),
            ("/h:/d:subpath=a", "bind that directory itself"),
            (
                "/h:/d:size=1m",
                "a bind of a host path is not ocivol's to limit",
            ),
            ("v:/d:size=0", "size=0 would forbid every write"),
            ("v:/d:inodes=-1", "not a positive number"),
            ("v:/d:size=1m,size=2m", "size= is given twice"),
        ] {
            let e = parse_volumes(text, 10).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn select_takes_the_plain_keys_then_the_containers_own() {
        let a = ann(&[
            ("io.kubernetes.pod.namespace", "x"),
            ("io.ocivol.volumes", "p:/p"),
            ("io.ocivol.volumes/app", "a:/a"),
            ("io.ocivol.volumes/web", "w:/w"),
            ("io.ocivol.volumes-from/app", "db:ro"),
            ("io.ocivol.volumes-from", "base"),
            ("io.ocivolx", "not ours"),
        ]);
        let app = select(&a, Some("app")).unwrap();
        assert_eq!(
            app.volumes,
            [
                ("io.ocivol.volumes", "p:/p"),
                ("io.ocivol.volumes/app", "a:/a")
            ]
        );
        assert_eq!(
            app.volumes_from,
            [
                ("io.ocivol.volumes-from", "base"),
                ("io.ocivol.volumes-from/app", "db:ro")
            ]
        );
        let none = select(&a, None).unwrap();
        assert_eq!(none.volumes, [("io.ocivol.volumes", "p:/p")]);
        let web_only = ann(&[("io.ocivol.volumes/web", "w:/w")]);
        assert!(select(&web_only, Some("db")).unwrap().is_empty());
    }

    #[test]
    fn select_refuses_keys_it_does_not_know() {
        for key in [
            "io.ocivol.volume",
            "io.ocivol.Volumes",
            "io.ocivol.volumes/",
            "io.ocivol.volumes/a/b",
            "io.ocivol.volumes-from/a b",
            "io.ocivol.",
        ] {
            let e = select(&ann(&[(key, "v:/v")]), Some("a")).unwrap_err();
            assert_eq!(e.annotation, key);
        }
    }
}
