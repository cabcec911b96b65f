//! `stack login`: checks registry credentials, then stores them in the Docker config file.

use std::io::Read;

use super::args::LoginArgs;
use super::load::error_chain;
use super::{Failure, fail};

pub(super) fn run(args: &LoginArgs) -> Result<(), Failure> {
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        std::env::var("STACK_REGISTRY_PASSWORD").map_err(|_| {
            fail(
                "no password given",
                Some("pipe it in with `--password-stdin`, or set STACK_REGISTRY_PASSWORD"),
            )
        })?
    };
    let client = crate::registry::Client::new(crate::registry::ClientOptions {
        insecure_registries: args.insecure_registries.clone(),
        ..Default::default()
    });
    // Like `docker login`: credentials the registry refuses (or cannot check) are not stored.
    let registry = crate::registry::login_registry(&args.registry);
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
