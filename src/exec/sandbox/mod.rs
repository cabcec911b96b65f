//! The daemonless Linux sandbox that runs `run`/`exec` steps over stacked layers.
