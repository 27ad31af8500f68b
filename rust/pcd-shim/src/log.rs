//! Log lines in logrus's text format, on stderr: containerd copies a shim's stderr (the `log` FIFO
//! of the bundle) into its own log, so the format matches the one it prints.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Turns debug lines on (the `-debug` flag).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Whether debug lines are written.
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Writes one line at `level`; a failed write is dropped (the daemon may be gone).
pub fn write(level: &str, msg: &str) {
    if level == "debug" && !debug_enabled() {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let line = format!(
        "time=\"{}\" level={} msg={:?} runtime=io.containerd.pycontainerd.v2 pid={}\n",
        rfc3339(now),
        level,
        msg,
        std::process::id()
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Logs at info level.
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write("info", &format!($($arg)*)) };
}
/// Logs at warning level.
macro_rules! warning {
    ($($arg:tt)*) => { $crate::log::write("warning", &format!($($arg)*)) };
}
/// Logs at debug level (only with `-debug`).
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write("debug", &format!($($arg)*)) };
}
pub(crate) use {debug, info, warning};

/// `d` since the Unix epoch as RFC 3339 UTC with nanoseconds, as logrus writes times.
pub fn rfc3339(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(
            super::rfc3339(Duration::ZERO),
            "1970-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            super::rfc3339(Duration::new(951_782_400, 5)),
            "2000-02-29T00:00:00.000000005Z"
        );
        assert_eq!(
            super::rfc3339(Duration::new(1_795_949_249, 0)),
            "2026-11-29T10:47:29.000000000Z"
        );
    }
}
