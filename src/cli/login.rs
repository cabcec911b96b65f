//! `stack login`: checks registry credentials, then stores them in the Docker config file.

use std::io::{IsTerminal, Read};

use super::args::LoginArgs;
use super::load::error_chain;
use super::{Failure, fail, output};

pub(super) fn run(args: &LoginArgs) -> Result<(), Failure> {
    let registry = crate::registry::login_registry(&args.registry);
    let password = password(args, registry)?;
    let client = crate::registry::Client::new(crate::registry::ClientOptions {
        insecure_registries: args.insecure_registries.clone(),
        ..Default::default()
    });
    // Like `docker login`: credentials the registry refuses (or cannot check) are not stored.
    let creds = crate::registry::Credentials {
        username: args.username.clone(),
        password: password.clone(),
    };
    client.check_login(registry, &creds).map_err(|e| match e {
        crate::registry::RegistryError::Unauthorized { status, .. } => fail(
            format!("{registry} refused the credentials of `{}` (HTTP {status})", args.username),
            Some("nothing was stored; check the user name and the password (or token)"),
        ),
        other => fail(
            format!("cannot check the credentials with {registry}: {}", error_chain(&other)),
            Some("nothing was stored"),
        ),
    })?;
    crate::registry::login(registry, &args.username, &password)
        .map_err(|e| fail(error_chain(&e), None))?;
    eprintln!("logged in to {registry}");
    Ok(())
}

/// The password: `--password`, standard input (`--password-stdin`),
/// `STACK_REGISTRY_PASSWORD`, else asked on the terminal without echo, as `docker login` does.
fn password(args: &LoginArgs, registry: &str) -> Result<String, Failure> {
    if let Some(p) = &args.password {
        output::note(
            "warning: a password on the command line can be read by other users (process list, \
             shell history); prefer `--password-stdin`",
        );
        return Ok(p.clone());
    }
    if args.password_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Ok(p) = std::env::var("STACK_REGISTRY_PASSWORD") {
        return Ok(p);
    }
    ask(&format!("Password for {}@{registry}: ", args.username))
}

/// Asks for a password on the terminal, without echo.
fn ask(prompt: &str) -> Result<String, Failure> {
    let term = console::Term::stderr();
    if !term.is_term() || !std::io::stdin().is_terminal() {
        return Err(fail(
            "no password given, and there is no terminal to ask for one",
            Some(
                "pipe it in with `--password-stdin` (`echo \"$TOKEN\" | stack login REGISTRY -u USER \
                 --password-stdin`), or set STACK_REGISTRY_PASSWORD",
            ),
        ));
    }
    term.write_str(prompt)?;
    let password = term.read_secure_line()?;
    // Ctrl-C does not end the read (the handler only sets a flag); it ends the login.
    if crate::exec::cancel::interrupted() {
        return Err(Failure::Interrupted);
    }
    if password.is_empty() {
        return Err(fail(
            "no password given",
            Some("type the password, or use `--password-stdin`"),
        ));
    }
    Ok(password)
}
