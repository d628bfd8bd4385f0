//! Docker's daemon.json: `runtimes.ocivol.path`. Every other key is kept, in its order (serde_json
//! with `preserve_order`), and the file is written with two-space indentation as Docker's docs
//! show it. JSON has no comments, and dockerd refuses keys it does not know, so nothing marks
//! what setup added: `--remove` takes out `runtimes.ocivol` (and `runtimes` if that leaves it
//! empty), and restores the backup byte for byte when the file is still what setup made of it.

use std::path::Path;

use serde_json::{Map, Value};

use super::{HANDLER, Result, SetupError};

pub const DEFAULT_CONFIG: &str = "/etc/docker/daemon.json";

fn parse(path: &Path, text: &str) -> Result<Map<String, Value>> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(SetupError::Refused(format!(
            "{} is not a JSON object; dockerd would not start with it either: fix it by hand",
            path.display()
        ))),
        Err(e) => Err(SetupError::Refused(format!(
            "{} is not valid JSON ({e}); dockerd would not start with it either: fix it by hand, then run `ocivol setup docker` again",
            path.display()
        ))),
    }
}

fn render(m: &Map<String, Value>) -> String {
    let mut s = serde_json::to_string_pretty(m).unwrap_or_default();
    s.push('\n');
    s
}

/// `before` with `runtimes.ocivol = {"path": runtime_path}`; `before` itself when it has that.
pub fn add(path: &Path, before: Option<&str>, runtime_path: &Path) -> Result<String> {
    let mut m = parse(path, before.unwrap_or(""))?;
    let runtimes = m
        .entry("runtimes")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(runtimes) = runtimes else {
        return Err(SetupError::Refused(format!(
            "{}: \"runtimes\" is not an object; fix it by hand",
            path.display()
        )));
    };
    let wanted = serde_json::json!({ "path": runtime_path });
    match runtimes.get_mut(HANDLER) {
        Some(Value::Object(existing)) => {
            // Keep runtimeArgs or anything else the admin gave it; only the path is ours.
            if existing.get("path") == Some(&wanted["path"]) {
                return Ok(before.unwrap_or("").to_string());
            }
            existing.insert("path".into(), wanted["path"].clone());
        }
        _ => {
            runtimes.insert(HANDLER.into(), wanted);
        }
    }
    Ok(render(&m))
}

/// `before` without `runtimes.ocivol` (and without `runtimes` if nothing else is in it); `None`
/// when nothing at all is left (the file goes).
pub fn remove(path: &Path, before: &str) -> Result<Option<String>> {
    let mut m = parse(path, before)?;
    let Some(Value::Object(runtimes)) = m.get_mut("runtimes") else {
        return Ok(Some(before.to_string()));
    };
    if runtimes.shift_remove(HANDLER).is_none() {
        return Ok(Some(before.to_string()));
    }
    if runtimes.is_empty() {
        m.shift_remove("runtimes");
    }
    Ok(if m.is_empty() { None } else { Some(render(&m)) })
}

/// The path of the ocivol runtime daemon.json names, if any.
pub fn runtime_path(path: &Path, text: &str) -> Result<Option<String>> {
    let m = parse(path, text)?;
    Ok(m.get("runtimes")
        .and_then(|r| r.get(HANDLER))
        .and_then(|o| o.get("path"))
        .and_then(Value::as_str)
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAEMON: &str = r#"{
  "log-driver": "json-file",
  "log-opts": {
    "max-size": "10m"
  },
  "runtimes": {
    "nvidia": {
      "args": [],
      "path": "nvidia-container-runtime"
    }
  },
  "default-runtime": "runc",
  "data-root": "/srv/docker"
}
"#;

    fn p() -> &'static Path {
        Path::new("/etc/docker/daemon.json")
    }

    #[test]
    fn docker_setup_adds_the_runtime_keeping_every_key_in_order() {
        let bin = Path::new("/usr/local/bin/ocivol-runtime");
        let after = add(p(), Some(DAEMON), bin).unwrap();
        assert_eq!(
            after,
            DAEMON.replace(
                "      \"path\": \"nvidia-container-runtime\"\n    }\n  },",
                "      \"path\": \"nvidia-container-runtime\"\n    },\n    \"ocivol\": {\n      \"path\": \"/usr/local/bin/ocivol-runtime\"\n    }\n  },"
            )
        );
        assert_eq!(add(p(), Some(&after), bin).unwrap(), after, "idempotent");
        assert_eq!(remove(p(), &after).unwrap().as_deref(), Some(DAEMON));
        assert_eq!(
            runtime_path(p(), &after).unwrap().as_deref(),
            Some("/usr/local/bin/ocivol-runtime")
        );

        // No runtimes yet: added at the end; removed with it.
        let plain = "{\n  \"data-root\": \"/srv/docker\"\n}\n";
        let after = add(p(), Some(plain), bin).unwrap();
        assert_eq!(
            after,
            "{\n  \"data-root\": \"/srv/docker\",\n  \"runtimes\": {\n    \"ocivol\": {\n      \"path\": \"/usr/local/bin/ocivol-runtime\"\n    }\n  }\n}\n"
        );
        assert_eq!(remove(p(), &after).unwrap().as_deref(), Some(plain));
        // No file: created, and removed again.
        let created = add(p(), None, bin).unwrap();
        assert_eq!(remove(p(), &created).unwrap(), None);
    }

    #[test]
    fn docker_setup_refuses_what_is_not_a_json_object() {
        for bad in ["{\"a\": ", "[1]", "{\"runtimes\": 3}"] {
            let e = add(p(), Some(bad), Path::new("/x")).unwrap_err();
            assert!(e.to_string().contains("fix it by hand"), "{e}");
        }
    }
}
