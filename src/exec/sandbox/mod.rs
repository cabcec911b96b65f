//! The daemonless Linux sandbox that runs `run`/`exec` steps over stacked layers.

/// Entry point of the re-executed sandbox helper; `None` in a normal `stack` process.
pub fn helper_main() -> Option<i32> {
    None
}
