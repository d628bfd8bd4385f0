//! Error reporting the way runc does it: a line on stderr, and a line in the `--log` file in the
//! `--log-format` the caller asked for. containerd's shim and podman read the last error of that
//! file and show it to the user, so our refusal reaches `ctr run` as one readable line.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::args::RuntimeArgs;
use crate::commands::output::escape;

/// Prints `message` to stderr and appends it to the runtime log, if one was given, escaped (see
/// [`escape`]): containerd, podman and the kubelet show this line to people, and part of it may
/// come from a container's annotations.
pub fn report_error(args: &RuntimeArgs, message: &str) {
    let message = format!("ocivol: {}", escape(message));
    eprintln!("{message}");
    let Some(path) = args.log.as_deref() else {
        return;
    };
    let line = format_line(args.log_format.as_deref(), &message, SystemTime::now());
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("ocivol: cannot write the runtime log {path}: {e}");
    }
}

/// One log line: runc's JSON (`{"level","msg","time"}`) or logrus's text format.
pub fn format_line(format: Option<&str>, message: &str, now: SystemTime) -> String {
    let time = rfc3339(now);
    if format == Some("json") {
        let v = serde_json::json!({ "level": "error", "msg": message, "time": time });
        format!("{v}\n")
    } else {
        format!("time={time:?} level=error msg={message:?}\n")
    }
}

/// UTC time as RFC 3339 with nanoseconds, as Go's logrus writes it.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_795_305_600, 5); // 2026-11-22T00:00:00Z
        assert_eq!(rfc3339(t), "2026-11-22T00:00:00.000000005Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(rfc3339(leap).starts_with("2000-02-29T"));
    }

    #[test]
    fn json_lines_are_what_runc_writes() {
        let line = format_line(Some("json"), "ocivol: bad \"x\"", UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "ocivol: bad \"x\"");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let text = format_line(None, "ocivol: x", UNIX_EPOCH);
        assert!(
            text.starts_with("time=\"1970-01-01T")
                && text.contains("level=error msg=\"ocivol: x\"")
        );
    }
}
