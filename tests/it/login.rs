//! `stack login` asks for the password on the terminal when none is given, like `docker
//! login`, and says how to give one when there is no terminal.

use crate::support::{Tmux, have, skip, stack, stderr};

#[test]
fn login_without_a_password_or_a_terminal_says_how_to_give_one() {
    let out = stack()
        .env_remove("STACK_REGISTRY_PASSWORD")
        .args(["login", "localhost:1", "-u", "bob"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(err.contains("no terminal to ask for one"), "{err}");
    assert!(err.contains("--password-stdin"), "{err}");
}

#[test]
fn login_asks_for_the_password_without_echo() {
    if !have("tmux") {
        return skip("tmux is missing (apt-get install tmux)");
    }
    let command = format!(
        "env -u STACK_REGISTRY_PASSWORD {} login localhost:1 -u bob; echo EXIT=$?; sleep 60",
        env!("CARGO_BIN_EXE_stack")
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("the prompt", |s| s.iter().any(|r| r.contains("Password for bob@localhost:1:")));
    tmux.command().args(["send-keys", "s3cret-word", "Enter"]).status().unwrap();
    let screen = tmux.wait_for("the end", |s| s.iter().any(|r| r.starts_with("EXIT=")));
    let text = screen.join("\n");
    assert!(!text.contains("s3cret"), "the password was echoed:\n{text}");
    // The password was taken: the login went on to check it with the (absent) registry.
    assert!(text.contains("cannot check the credentials"), "{text}");
    assert!(text.contains("EXIT=4"), "{text}");
}
