//! CRI-O: a drop-in of ocivol's own, `crio.conf.d/99-ocivol.conf`, with the runtime handler
//! "ocivol". CRI-O reads every file of its drop-in directory after crio.conf, so nothing of the
//! admin's is edited; `--remove` deletes the drop-in. The hooks way (`--hooks`) writes ocivol's
//! createRuntime hooks file where CRI-O reads hooks instead: the two must not be used together
//! (both would prepare the volumes of the same container).

use std::path::Path;

pub const DEFAULT_CONFIG_DIR: &str = "/etc/crio/crio.conf.d";
pub const DROP_IN: &str = "99-ocivol.conf";
/// Where CRI-O reads hooks unless crio.conf's `hooks_dir` says otherwise.
pub const DEFAULT_HOOKS_DIR: &str = "/usr/share/containers/oci/hooks.d";

/// The drop-in, running ocivol-runtime at `runtime_path` (the shipped
/// packaging/crio/99-ocivol.conf for `/usr/local/bin/ocivol-runtime`).
pub fn drop_in(runtime_path: &Path) -> String {
    format!(
        r#"# CRI-O: a runtime handler "ocivol" that runs containers through ocivol-runtime.
# Install as /etc/crio/crio.conf.d/99-ocivol.conf; pods choose it with runtimeClassName: ocivol.
# CRI-O passes every pod annotation to the runtime; ocivol's policy decides what they may reach.
# The alternative without a runtime handler: the hooks file (docs/INSTALL.md, "CRI-O with hooks").
[crio.runtime.runtimes.ocivol]
runtime_path = "{}"
runtime_type = "oci"
runtime_root = "/run/runc"
allowed_annotations = ["io.ocivol.volumes", "io.ocivol.volumes-from"]
"#,
        runtime_path.display()
    )
}

/// The `runtime_path` of a drop-in's ocivol handler, if it has one.
pub fn runtime_path(text: &str) -> Option<String> {
    let doc = text.parse::<toml_edit::DocumentMut>().ok()?;
    doc.get("crio")?
        .get("runtime")?
        .get("runtimes")?
        .get(super::HANDLER)?
        .get("runtime_path")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_in_is_the_shipped_one_for_the_installed_path() {
        assert_eq!(
            drop_in(Path::new("/usr/local/bin/ocivol-runtime")),
            include_str!("../../packaging/crio/99-ocivol.conf")
        );
        assert_eq!(
            runtime_path(&drop_in(Path::new("/opt/x"))).as_deref(),
            Some("/opt/x")
        );
    }
}
