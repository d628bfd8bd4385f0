//! runc's command line, as much of it as the wrapper needs: the global flags (`--root`, `--log`,
//! `--log-format`), the subcommand, and for `create`/`run`/`delete` the bundle, the container ID
//! and the flags that change when volumes are released. Everything else is kept verbatim and
//! handed to the real runtime: a flag we do not know is never an error.
//!
//! runc (urfave/cli) accepts `-flag` and `--flag`, `--flag value` and `--flag=value`; a flag
//! that takes a value swallows the next argument even if it looks like a subcommand (a bundle
//! named `create`). Before parsing a subcommand's flags, urfave/cli 1.22 (runc 1.1) moves every
//! argument that starts with `-`, with the argument after it unless that one starts with `-`
//! too, in front of the others, up to a `--`: `create c1 --bundle /b` is `create --bundle /b
//! c1`, and `run c1 -h` asks for help. The same is done here, so that the wrapper reads the
//! bundle and the ID runc will use, and sees every `-h`/`--help` that makes runc print its help.

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
    /// Where the subcommand is in `raw`.
    command_at: Option<usize>,
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
    /// `-h`/`--help` (or `-help`, `--h`) among the flags: runc prints its help and does nothing
    /// else, so the wrapper hands the command over untouched.
    pub help: bool,
}

/// Whether a flag is urfave/cli's help flag (`help, h`), with no value or a true one.
fn is_help(name: &str, inline: Option<&str>) -> bool {
    matches!(name, "h" | "help") && inline.is_none_or(|v| v != "false")
}

/// urfave/cli 1.22's reordering of a subcommand's arguments (its `reorderArgs`): every argument
/// that starts with `-` (but is not `-`), and the one after it if that does not start with `-`
/// and the flag has no `=value`, goes first, in order; the rest follow; a `--` and everything
/// after it stay last.
fn reorder(args: &[String]) -> Vec<String> {
    let (mut flags, mut others) = (Vec::new(), Vec::new());
    let mut value_may_follow = false;
    for (i, arg) in args.iter().enumerate() {
        if arg == "--" {
            others.extend_from_slice(&args[i..]);
            break;
        }
        if value_may_follow && !arg.starts_with('-') {
            value_may_follow = false;
            flags.push(arg.clone());
            continue;
        }
        value_may_follow = false;
        if arg != "-" && arg.starts_with('-') {
            flags.push(arg.clone());
            value_may_follow = !arg.contains('=');
        } else {
            others.push(arg.clone());
        }
    }
    flags.extend(others);
    flags
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

impl RuntimeArgs {
    /// The arguments with `--pid-file PATH` added as the subcommand's first flag (where runc,
    /// crun and youki all read it), or `None` if there is no subcommand to add it to.
    pub fn with_pid_file(&self, path: &std::path::Path) -> Option<Vec<OsString>> {
        let at = self.command_at? + 1;
        let mut out = Vec::with_capacity(self.raw.len() + 2);
        out.extend_from_slice(&self.raw[..at]);
        out.push("--pid-file".into());
        out.push(path.into());
        out.extend_from_slice(&self.raw[at..]);
        Some(out)
    }
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
                out.command_at = Some(i - 1);
            }
            break;
        };
        if is_help(name, inline) {
            out.help = true;
        }
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
    // runc's `exec` alone skips the reordering; the wrapper reads no other command's flags.
    let args = if matches!(command.as_str(), "create" | "run" | "delete") {
        reorder(&args[i..])
    } else {
        args[i..].to_vec()
    };
    let mut i = 0;
    // Subcommand flags, then the ID (Go's flag package stops at the first positional argument).
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
        if is_help(name, inline) {
            out.help = true;
        }
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

    /// runc reorders a subcommand's arguments before parsing them: flags after the ID count.
    #[test]
    fn flags_after_the_id_count_as_runc_reorders_them() {
        // line, id, bundle, pid file
        type Case = (
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            ("create c1 --bundle /b", Some("c1"), Some("/b"), None),
            (
                "create c1 -b=/b --pid-file /p",
                Some("c1"),
                Some("/b"),
                Some("/p"),
            ),
            ("run c1 --bundle /b -d", Some("c1"), Some("/b"), None),
            // `-d` takes the next word along, which stays the ID after it.
            ("run -d c1", Some("c1"), None, None),
            // Nothing after a `--` moves.
            ("create -- c1 --bundle /b", Some("c1"), None, None),
        ];
        for (line, id, bundle, pid_file) in cases {
            let a = p(line);
            assert_eq!(a.id.as_deref(), *id, "{line}");
            assert_eq!(a.bundle.as_deref(), *bundle, "{line}");
            assert_eq!(a.pid_file.as_deref(), *pid_file, "{line}");
        }
        assert!(p("run c1 -d").detach);
    }

    #[test]
    fn help_is_seen_wherever_runc_sees_it() {
        for line in [
            "--help",
            "-h",
            "--root /r -help create c1",
            "run -h",
            "create --help",
            "run c1 -h",
            "create --bundle /b c1 --help",
            "delete -h",
            "run --help=true c1",
        ] {
            assert!(p(line).help, "{line} asks for help");
        }
        for line in [
            "run c1",
            "create --help=false c1",
            // The value of --bundle, not a flag.
            "create --bundle -h c1",
            "create -- -h",
            "--root -h list",
        ] {
            assert!(!p(line).help, "{line} does not ask for help");
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

    #[test]
    fn a_pid_file_goes_right_after_the_subcommand() {
        let show = |a: Option<Vec<OsString>>| {
            a.map(|v| {
                v.iter()
                    .map(|s| s.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        };
        let p_file = std::path::Path::new("/run/ocivol/mnt/k/pid");
        for (line, want) in [
            (
                "--root /r create --bundle /b c1",
                Some("--root /r create --pid-file /run/ocivol/mnt/k/pid --bundle /b c1"),
            ),
            (
                "--log=/l run -d c2 --bundle /b",
                Some("--log=/l run --pid-file /run/ocivol/mnt/k/pid -d c2 --bundle /b"),
            ),
            // A global flag's value that looks like a subcommand is not one.
            (
                "--root create create c3",
                Some("--root create create --pid-file /run/ocivol/mnt/k/pid c3"),
            ),
            ("--root /r", None),
        ] {
            let a = p(line);
            assert_eq!(show(a.with_pid_file(p_file)).as_deref(), want, "{line}");
        }
    }
}
