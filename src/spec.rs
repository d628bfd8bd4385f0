//! The bundle's config.json: read the annotations, add the volumes' mounts, write it back.
//!
//! The file is kept as a JSON value, not decoded into oci-spec's `Spec`: a field that this
//! version of oci-spec does not know (a newer runtime-spec key, a vendor extension) must come out
//! of the wrapper exactly as it went in. Only the `mounts` array is touched, with mounts built
//! by oci-spec's types.
//!
//! It is read as runc reads it (see [`gojson`]): whatever runc takes, ocivol takes, or refuses
//! with a line saying why; [`BundleSpec::parse_if_ocivol`] (or [`has_ocivol_key`], which reads
//! the annotations alone) tells whether a spec is ocivol's business at all.

mod gojson;

pub use gojson::has_ocivol_key;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder};
use serde_json::Value;

use crate::mounts::flags::MountFlags;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid OCI config: {message}")]
    Invalid { path: PathBuf, message: String },
}

type Result<T> = std::result::Result<T, SpecError>;

pub const CONFIG_FILE: &str = "config.json";

/// A bundle's config.json as JSON.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    pub path: PathBuf,
    pub value: Value,
}

impl BundleSpec {
    pub fn load(bundle: &Path) -> Result<BundleSpec> {
        let path = bundle.join(CONFIG_FILE);
        let text = std::fs::read(&path).map_err(|source| SpecError::Io {
            path: path.clone(),
            source,
        })?;
        BundleSpec::parse(path, &text)
    }

    /// The spec, if it is ocivol's business (its annotations, read as runc reads them, have a
    /// key starting with `io.ocivol.`: [`has_ocivol_key`]), parsed once; `Ok(None)` otherwise,
    /// with nothing parsed for almost every spec (no `io.ocivol.` in its bytes). A text that
    /// does not parse is an error only if it is ocivol's business: runc takes or refuses it in
    /// its own words otherwise.
    pub fn parse_if_ocivol(path: PathBuf, text: &[u8]) -> Result<Option<BundleSpec>> {
        if !gojson::may_name_ocivol(text) {
            return Ok(None);
        }
        match BundleSpec::parse(path.clone(), text) {
            Ok(spec) => Ok(spec.wants_ocivol().then_some(spec)),
            Err(e) => match has_ocivol_key(text) {
                Ok(true) => Err(e),
                Ok(false) => Ok(None),
                Err(message) => Err(SpecError::Invalid { path, message }),
            },
        }
    }

    pub fn parse(path: PathBuf, text: &[u8]) -> Result<BundleSpec> {
        let value = gojson::decode(text).map_err(|message| SpecError::Invalid {
            path: path.clone(),
            message,
        })?;
        if !value.is_object() {
            return Err(SpecError::Invalid {
                path,
                message: "the top level is not a JSON object".into(),
            });
        }
        let spec = BundleSpec { path, value };
        spec.mounts()?;
        Ok(spec)
    }

    /// The string annotations of the spec.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.value
            .get("annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The container's rootfs: `root.path`, relative to the bundle unless it is absolute.
    pub fn rootfs(&self, bundle: &Path) -> Option<PathBuf> {
        let path = self.value.pointer("/root/path")?.as_str()?;
        Some(bundle.join(path))
    }

    /// Whether any annotation is one of ocivol's.
    pub fn wants_ocivol(&self) -> bool {
        self.annotations()
            .keys()
            .any(|k| k.starts_with(crate::annotations::PREFIX))
    }

    /// The spec's mounts, decoded.
    pub fn mounts(&self) -> Result<Vec<Mount>> {
        match self.value.get("mounts") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(m) => serde_json::from_value(m.clone()).map_err(|e| SpecError::Invalid {
                path: self.path.clone(),
                message: format!("mounts: {e}"),
            }),
        }
    }

    /// Appends `mounts` after the spec's own, so they land on top of anything the engine mounts
    /// above them (a tmpfs on /run, say). A mount of the spec on the same destination is dropped:
    /// the volume asked for by annotation replaces it, rather than being hidden under or over it.
    pub fn add_mounts(&mut self, mounts: &[Mount]) -> Result<()> {
        let obj = self
            .value
            .as_object_mut()
            .ok_or_else(|| SpecError::Invalid {
                path: self.path.clone(),
                message: "the top level is not a JSON object".into(),
            })?;
        let list = obj
            .entry("mounts")
            .or_insert_with(|| Value::Array(Vec::new()));
        if list.is_null() {
            *list = Value::Array(Vec::new());
        }
        let Value::Array(list) = list else {
            return Err(SpecError::Invalid {
                path: self.path.clone(),
                message: "mounts is not an array".into(),
            });
        };
        list.retain(|m| {
            let dest = m.get("destination").and_then(Value::as_str).map(Path::new);
            !mounts
                .iter()
                .any(|new| Some(new.destination().as_path()) == dest)
        });
        for m in mounts {
            list.push(serde_json::to_value(m).map_err(|e| SpecError::Invalid {
                path: self.path.clone(),
                message: e.to_string(),
            })?);
        }
        Ok(())
    }

    /// Writes the spec back atomically, synced off the start path (see [`crate::durable`]).
    /// A temporary file an earlier wrapper killed mid-write left beside it goes first.
    pub fn save(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            let _ = crate::util::remove_stale_temps(dir, false, false);
        }
        let text = serde_json::to_vec(&self.value).map_err(|e| SpecError::Invalid {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        crate::durable::write(&self.path, &text, "half-written-spec").map_err(|source| {
            SpecError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }
}

/// A bind mount of `source` on `destination` with the given mount flags.
pub fn bind_mount(source: &Path, destination: &Path, recursive: bool, flags: MountFlags) -> Mount {
    let mut opts = vec![if recursive { "rbind" } else { "bind" }.to_string()];
    opts.extend(flags.oci_options());
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(opts)
        .build()
        .expect("all fields of a bind mount are set")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "/old", "options": ["bind"]}
        ],
        "annotations": {"io.ocivol.volumes": "v:/data", "other": "x"},
        "linux": {"intelRdt": {"closID": "x", "futureKnob": 7}, "namespaces": []},
        "vendor.example/extension": {"keep": [1, 2, 3]}
    }"#;

    /// One parse tells what has_ocivol_key (the annotations alone, as runc reads them) tells,
    /// for specs that parse and for specs that do not, and refuses what it refuses.
    #[test]
    fn parse_if_ocivol_answers_as_has_ocivol_key() {
        let texts: &[&[u8]] = &[
            CONFIG.as_bytes(),
            br#"{"annotations": {"io.ocivol.volumes": "v:/v"}}"#,
            br#"{"Annotations": {"io\u002eocivol.volumes": "v:/v"}} trailing"#,
            br#"{"annotations": {"\u0069o.ocivol.volumes-from": "a"}}"#,
            br#"{"annotations": {"io.ocivol.volumes": "v:/v"}, "ANNOTATIONS": {"x": "y"}}"#,
            br#"{"annotations": {"other": "io.ocivol.volumes"}}"#,
            br#"{"process": {"env": ["io.ocivol.volumes=v:/v"]}}"#,
            br#"{"annotations": {"io.ocivol.volumes": "v:/v"}, "annotations": null}"#,
            br#"{"annotations": {"io.ocivol.volumes": 3}}"#,
            br#"{"annotations": {"io.ocivol.volumes": "v"}, "mounts": 7}"#,
            br#"{"annotations": {"x": "io.ocivol."}, "mounts": 7}"#,
            br#"[{"annotations": {"io.ocivol.volumes": "v"}}]"#,
            br#"{"annotations": {"\u0026": "x"}}"#,
            br#"{"annotations": {"io.ocivol.volumes": "v"#,
            b"not json at all \\u0069",
            b"",
        ];
        for text in texts {
            let shown = String::from_utf8_lossy(text);
            let got = BundleSpec::parse_if_ocivol("c".into(), text);
            match has_ocivol_key(text) {
                Ok(true) => {
                    let parsed = BundleSpec::parse("c".into(), text);
                    match (got, parsed) {
                        (Ok(Some(a)), Ok(b)) => assert_eq!(a.value, b.value, "{shown}"),
                        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{shown}"),
                        (got, parsed) => panic!("{shown}: {got:?} against {parsed:?}"),
                    }
                }
                Ok(false) => assert!(matches!(got, Ok(None)), "{shown}: {got:?}"),
                Err(e) => assert!(
                    got.as_ref().is_err_and(|g| g.to_string().contains(&e)),
                    "{shown}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn unknown_fields_survive_adding_mounts() {
        let mut spec = BundleSpec::parse("config.json".into(), CONFIG.as_bytes()).unwrap();
        assert!(spec.wants_ocivol());
        let m = bind_mount(
            Path::new("/vol"),
            Path::new("/data"),
            false,
            MountFlags {
                readonly: true,
                ..Default::default()
            },
        );
        spec.add_mounts(&[m]).unwrap();
        let out = spec.value;
        let before: Value = serde_json::from_str(CONFIG).unwrap();
        assert_eq!(out["linux"]["intelRdt"], before["linux"]["intelRdt"]);
        assert_eq!(
            out["vendor.example/extension"],
            before["vendor.example/extension"]
        );
        let mounts = out["mounts"].as_array().unwrap();
        assert_eq!(
            mounts.len(),
            2,
            "the old /data mount is replaced: {mounts:?}"
        );
        assert_eq!(mounts[0]["destination"], "/proc");
        assert_eq!(mounts[1]["source"], "/vol");
        assert_eq!(mounts[1]["options"], serde_json::json!(["bind", "ro"]));
    }

    #[test]
    fn a_spec_without_mounts_gets_some() {
        let mut spec = BundleSpec::parse("c".into(), br#"{"ociVersion":"1.0.2"}"#).unwrap();
        assert!(!spec.wants_ocivol());
        spec.add_mounts(&[bind_mount(
            Path::new("/a"),
            Path::new("/b"),
            true,
            MountFlags::default(),
        )])
        .unwrap();
        assert_eq!(
            spec.value["mounts"][0]["options"],
            serde_json::json!(["rbind", "rw"])
        );
    }

    #[test]
    fn bad_configs_are_refused() {
        for text in [&b"[]"[..], b"{", br#"{"mounts": 3}"#] {
            assert!(BundleSpec::parse("c".into(), text).is_err());
        }
    }
}
