//! Deadlines for downloads: a transfer must keep making progress (at least
//! [`MIN_PROGRESS_BYTES`] per stall window, so a server trickling a byte every few seconds
//! fails like one that sends nothing) and must finish within an overall deadline, retries and
//! resumes included.
//!
//! Invariant: no download (a blob, an `add` URL) can hold a build longer than its overall
//! deadline plus one stall window.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Fewer bytes than this in one stall window counts as no progress.
pub(crate) const MIN_PROGRESS_BYTES: u64 = 1024;

/// The environment variable that sets the stall window, in seconds.
pub(crate) const STALL_ENV: &str = "STACK_DOWNLOAD_STALL_TIMEOUT";
/// The environment variable that sets the overall deadline of one download, in seconds.
pub(crate) const TOTAL_ENV: &str = "STACK_DOWNLOAD_TIMEOUT";

/// A duration in (possibly fractional) seconds from the environment variable `name`.
pub(crate) fn from_env(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(default, Duration::from_secs_f64)
}

/// When one download must be over, and how long it may go without progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub started: Instant,
    pub total: Duration,
    pub stall: Duration,
    /// `true` stops the transfer at once (Ctrl-C).
    pub cancelled: fn() -> bool,
}

fn never() -> bool {
    false
}

impl Deadline {
    pub(crate) fn new(total: Duration, stall: Duration) -> Self {
        Self { started: Instant::now(), total, stall, cancelled: never }
    }

    /// Whether the overall deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.started.elapsed() >= self.total
    }

    /// Why the download was given up, for error messages.
    pub(crate) fn expired_message(&self) -> String {
        format!(
            "the download did not finish within {} s (set {TOTAL_ENV} to allow longer)",
            self.total.as_secs_f64()
        )
    }

    /// Wraps a body reader so that it fails once the deadline passes or progress stalls.
    pub(crate) fn reader<R: Read>(&self, inner: R) -> Progress<R> {
        Progress { inner, deadline: *self, window_start: Instant::now(), window_bytes: 0 }
    }
}

/// A reader that fails with `TimedOut` when its [`Deadline`] passes, or when a stall window
/// goes by with fewer than [`MIN_PROGRESS_BYTES`] (the per-read timeout of the HTTP client
/// covers a server that sends nothing at all).
pub(crate) struct Progress<R> {
    inner: R,
    deadline: Deadline,
    window_start: Instant,
    window_bytes: u64,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if (self.deadline.cancelled)() {
            // Not `ErrorKind::Interrupted`: readers retry on that.
            return Err(io::Error::other("interrupted"));
        }
        if self.deadline.expired() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, self.deadline.expired_message()));
        }
        let n = self.inner.read(buf)?;
        self.window_bytes += n as u64;
        if self.window_start.elapsed() >= self.deadline.stall {
            if self.window_bytes < MIN_PROGRESS_BYTES && n > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the download stalled: fewer than {MIN_PROGRESS_BYTES} bytes in {} s \
                         (set {STALL_ENV} to wait longer)",
                        self.deadline.stall.as_secs_f64()
                    ),
                ));
            }
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields one byte per read, `gap` apart.
    struct Trickle {
        gap: Duration,
        left: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 || buf.is_empty() {
                return Ok(0);
            }
            std::thread::sleep(self.gap);
            buf[0] = b'x';
            self.left -= 1;
            Ok(1)
        }
    }

    #[test]
    fn a_trickle_counts_as_a_stall() {
        let d = Deadline::new(Duration::from_mins(1), Duration::from_millis(200));
        let mut r = d.reader(Trickle { gap: Duration::from_millis(30), left: 1000 });
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains(STALL_ENV), "{err}");
    }

    #[test]
    fn the_overall_deadline_ends_any_transfer() {
        let d = Deadline::new(Duration::from_millis(300), Duration::from_mins(1));
        let mut r = d.reader(Trickle { gap: Duration::from_millis(20), left: usize::MAX });
        let started = Instant::now();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(err.to_string().contains(TOTAL_ENV), "{err}");
    }

    #[test]
    fn a_steady_transfer_passes() {
        let d = Deadline::new(Duration::from_mins(1), Duration::from_millis(50));
        let data = vec![1u8; 1 << 20];
        let mut out = Vec::new();
        d.reader(data.as_slice()).read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), data.len());
    }

    #[test]
    fn durations_come_from_the_environment_in_seconds() {
        assert_eq!(from_env("STACK_TEST_UNSET_VARIABLE", Duration::from_secs(7)).as_secs(), 7);
    }
}
