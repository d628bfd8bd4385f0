//! runc's command line, as much of it as the wrapper needs: the global flags (`--root`, `--log`,
//! `--log-format`), the subcommand, and for `create`/`run`/`delete` the bundle, the container ID
//! and the flags that change when volumes are released. Everything else is kept verbatim and
//! handed to the real runtime: a flag we do not know is never an error.
//!
//! runc (urfave/cli) accepts `-flag` and `--flag`, `--flag value` and `--flag=value`; a flag
//! that takes a value swallows the next argument even if it looks like a subcommand (a bundle
//! named `create`).

use std::ffi::OsString;

/// Global flags of runc and crun that take a value.
const GLOBAL_WITH_VALUE: &[&str] = &[
    "root",
    "log",
    "log-format",
    "log-level",
    "criu",
    "rootless",
    "cgroup-manager",
];
/// Flags of `create` and `run` that take a value.
const CREATE_WITH_VALUE: &[&str] = &["bundle", "b", "console-socket", "pid-file", "preserve-fds"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeArgs {
    /// The arguments exactly as given, for the real runtime.
    pub raw: Vec<OsString>,
    pub root: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    /// The subcommand (`create`, `run`, `delete`, …), if any.
    pub command: Option<String>,
    /// The container ID: the first positional argument after the subcommand.
    pub id: Option<String>,
    /// `--bundle`/`-b` of create and run.
    pub bundle: Option<String>,
    /// `--pid-file` of create and run: where the runtime writes the container's init pid.
    pub pid_file: Option<String>,
    /// `run --detach`.
    pub detach: bool,
    /// `run --keep`: runc keeps the stopped container, so volumes go on `delete`.
    pub keep: bool,
}

/// Splits `--name=value` / `-name=value` into the bare name and the inline value.
fn flag_name(arg: &str) -> Option<(&str, Option<&str>)> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    if body.is_empty() {
        return None;
    }
    Some(match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    })
}

pub fn parse(raw: Vec<OsString>) -> RuntimeArgs {
    let args: Vec<String> = raw
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut out = RuntimeArgs {
        raw,
        ..Default::default()
    };
    let mut i = 0;
    // Global flags, up to the subcommand.
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some((name, inline)) = flag_name(arg) else {
            if arg != "--" {
                out.command = Some(arg.clone());
            }
            break;
        };
        if !GLOBAL_WITH_VALUE.contains(&name) {
            continue;
        }
        let value = match inline {
            Some(v) => Some(v.to_string()),
            None => {
                i += 1;
                args.get(i - 1).cloned()
            }
        };
        match name {
            "root" => out.root = value,
            "log" => out.log = value,
            "log-format" => out.log_format = value,
            _ => {}
        }
    }
    let Some(command) = out.command.clone() else {
        return out;
    };
    let with_value: &[&str] = match command.as_str() {
        "create" | "run" => CREATE_WITH_VALUE,
        _ => &[],
    };
    // Subcommand flags, then the ID (urfave/cli stops at the first positional argument).
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            out.id = args.get(i).cloned();
            break;
        }
        let Some((name, inline)) = flag_name(arg) else {
            out.id = Some(arg.clone());
            break;
        };
        let value = if with_value.contains(&name) && inline.is_none() {
            i += 1;
            args.get(i - 1).cloned()
        } else {
            inline.map(str::to_string)
        };
        let truthy = || value.as_deref().is_none_or(|v| v != "false");
        match (command.as_str(), name) {
            ("create" | "run", "bundle" | "b") => out.bundle = value.clone(),
            ("create" | "run", "pid-file") => out.pid_file = value.clone(),
            ("run", "detach" | "d") => out.detach = truthy(),
            ("run", "keep") => out.keep = truthy(),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> RuntimeArgs {
        parse(line.split_whitespace().map(OsString::from).collect())
    }

    #[test]
    fn table_of_command_lines() {
        struct Case {
            line: &'static str,
            command: Option<&'static str>,
            id: Option<&'static str>,
            bundle: Option<&'static str>,
            root: Option<&'static str>,
        }
        let cases = [
            Case {
                line: "create --bundle /b c1",
                command: Some("create"),
                id: Some("c1"),
                bundle: Some("/b"),
                root: None,
            },
            Case {
                line: "create --bundle=/b c1",
                command: Some("create"),
                id: Some("c1"),
                bundle: Some("/b"),
                root: None,
            },
            Case {
                line: "create -b /b c1",
                command: Some("create"),
                id: Some("c1"),
                bundle: Some("/b"),
                root: None,
            },
            Case {
                line: "create -bundle /b c1",
                command: Some("create"),
                id: Some("c1"),
                bundle: Some("/b"),
                root: None,
            },
            Case {
                line: "create c1",
                command: Some("create"),
                id: Some("c1"),
                bundle: None,
                root: None,
            },
            // A bundle literally named "create" is a value, not a subcommand.
            Case {
                line: "create --bundle create run",
                command: Some("create"),
                id: Some("run"),
                bundle: Some("create"),
                root: None,
            },
            Case {
                line: "--root /r --log /b/log.json --log-format json create --bundle /b --pid-file /b/pid c1",
                command: Some("create"),
                id: Some("c1"),
                bundle: Some("/b"),
                root: Some("/r"),
            },
            Case {
                line: "--root=/r --systemd-cgroup run -d --bundle /b c2",
                command: Some("run"),
                id: Some("c2"),
                bundle: Some("/b"),
                root: Some("/r"),
            },
            // Unknown flags pass; a boolean unknown flag does not eat the ID.
            Case {
                line: "--future-flag create --no-pivot --new-thing=1 c3",
                command: Some("create"),
                id: Some("c3"),
                bundle: None,
                root: None,
            },
            Case {
                line: "--root /r delete --force c4",
                command: Some("delete"),
                id: Some("c4"),
                bundle: None,
                root: Some("/r"),
            },
            Case {
                line: "state c5",
                command: Some("state"),
                id: Some("c5"),
                bundle: None,
                root: None,
            },
            Case {
                line: "--version",
                command: None,
                id: None,
                bundle: None,
                root: None,
            },
            Case {
                line: "",
                command: None,
                id: None,
                bundle: None,
                root: None,
            },
            Case {
                line: "create -- c6",
                command: Some("create"),
                id: Some("c6"),
                bundle: None,
                root: None,
            },
        ];
        for c in cases {
            let a = p(c.line);
            assert_eq!(a.command.as_deref(), c.command, "{}", c.line);
            assert_eq!(a.id.as_deref(), c.id, "{}", c.line);
            assert_eq!(a.bundle.as_deref(), c.bundle, "{}", c.line);
            assert_eq!(a.root.as_deref(), c.root, "{}", c.line);
            assert_eq!(
                a.raw.len(),
                c.line.split_whitespace().count(),
                "raw args are kept: {}",
                c.line
            );
        }
    }

    #[test]
    fn flags_that_change_release() {
        assert!(p("run -d c").detach);
        assert!(p("run --detach c").detach);
        assert!(!p("run c").detach);
        assert!(p("run --keep c").keep);
        let a = p("--log /l --log-format=json create c");
        assert_eq!(
            (a.log.as_deref(), a.log_format.as_deref()),
            (Some("/l"), Some("json"))
        );
    }
}
