//! `stack login`: stores registry credentials in the Docker config file.

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
    crate::registry::login(&args.registry, &args.username, &password)
        .map_err(|e| fail(error_chain(&e), None))?;
    match client.check_credentials(&args.registry) {
        Ok(()) => eprintln!("logged in to {}", args.registry),
        Err(e) => eprintln!(
            "credentials saved, but {} did not accept them: {}",
            args.registry,
            error_chain(&e)
        ),
    }
    Ok(())
}
