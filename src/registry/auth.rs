//! Registry credentials and authentication challenges: `REGISTRY_AUTH_FILE`, Docker's
//! `config.json` (`auths`, `credHelpers`, `credsStore`), credential helpers, and parsing of
//! `WWW-Authenticate`.
//!
//! Invariant: secrets never reach a `Debug`, `Display` or error message; [`Credentials`] prints
//! as `Credentials { username, password: <redacted> }` and helper failures quote only their
//! exit status and the helper's name.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::RegistryError;
use super::reference::{DOCKER_HUB, DOCKER_HUB_CONFIG_KEY};

/// A username and password (or `<token>` and an identity token).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub(crate) fn basic_header(&self) -> String {
        format!("Basic {}", B64.encode(format!("{}:{}", self.username, self.password)))
    }

    /// Whether the secret is an identity (refresh) token rather than a password.
    pub(crate) fn is_identity_token(&self) -> bool {
        self.username == "<token>"
    }
}

/// Where credentials are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialSources {
    /// A containers-auth.json file (`REGISTRY_AUTH_FILE`), read first.
    pub auth_file: Option<PathBuf>,
    /// Docker's `config.json`.
    pub docker_config: PathBuf,
}

impl CredentialSources {
    /// `REGISTRY_AUTH_FILE`, and `$DOCKER_CONFIG/config.json` else `~/.docker/config.json`.
    pub(crate) fn from_env() -> Self {
        let auth_file =
            std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()).map(PathBuf::from);
        let docker_config =
            if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
                PathBuf::from(dir).join("config.json")
            } else {
                let home =
                    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
                home.join(".docker").join("config.json")
            };
        Self { auth_file, docker_config }
    }

    /// Only the Docker config in folder `dir` (as `DOCKER_CONFIG=dir` would say).
    #[cfg(test)] // used by the registry tests only
    pub(crate) fn docker_config_dir(dir: &std::path::Path) -> Self {
        Self { auth_file: None, docker_config: dir.join("config.json") }
    }
}

/// Reduces a config key (`https://index.docker.io/v1/`, `registry.example.com/ns`) to the
/// registry it is about.
fn key_registry(key: &str) -> &str {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB,
        other => other,
    }
}

/// What a `config.json`-like file says about a registry.
#[derive(Debug, Default, serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthEntry(<redacted>)")
    }
}

impl AuthEntry {
    fn credentials(
        &self,
        path: &std::path::Path,
        key: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        if let Some(token) = self.identity_token.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials { username: "<token>".into(), password: token.clone() }));
        }
        if let Some(auth) = self.auth.as_ref().filter(|a| !a.is_empty()) {
            let bad = || RegistryError::Credentials {
                registry: key.to_owned(),
                problem: format!(
                    "the `auth` entry for `{key}` in `{}` is not base64 of `user:password`",
                    path.display()
                ),
            };
            let decoded = B64.decode(auth.trim()).map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (u, p) = decoded.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Credentials { username: u.to_owned(), password: p.to_owned() }));
        }
        match (&self.username, &self.password) {
            (Some(u), Some(p)) => {
                Ok(Some(Credentials { username: u.clone(), password: p.clone() }))
            }
            _ => Ok(None),
        }
    }
}

fn read_config(path: &std::path::Path) -> Result<Option<ConfigFile>, RegistryError> {
    match fs_err::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| RegistryError::Credentials {
                registry: String::new(),
                problem: format!("`{}` is not valid JSON: {e}", path.display()),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryError::Credentials {
            registry: String::new(),
            problem: format!("cannot read `{}`: {}", path.display(), e.kind()),
        }),
    }
}

/// Finds credentials for `registry` (as written in references, e.g. `docker.io`,
/// `localhost:5000`): `REGISTRY_AUTH_FILE` first, then the Docker config's `credHelpers`,
/// `auths` and `credsStore`, in that order.
pub(super) fn find_credentials(
    sources: &CredentialSources,
    registry: &str,
) -> Result<Option<Credentials>, RegistryError> {
    if let Some(path) = &sources.auth_file
        && let Some(file) = read_config(path)?
        && let Some(c) = from_auths(&file, path, registry)?
    {
        return Ok(Some(c));
    }
    let path = &sources.docker_config;
    let Some(file) = read_config(path)? else { return Ok(None) };
    if let Some((_, helper)) = file.cred_helpers.iter().find(|(k, _)| key_registry(k) == registry) {
        return helper_get(helper, registry, path);
    }
    if let Some(c) = from_auths(&file, path, registry)? {
        return Ok(Some(c));
    }
    match &file.creds_store {
        Some(store) if !store.is_empty() => helper_get(store, registry, path),
        _ => Ok(None),
    }
}

fn from_auths(
    file: &ConfigFile,
    path: &std::path::Path,
    registry: &str,
) -> Result<Option<Credentials>, RegistryError> {
    // An exact key wins over a normalised one (`https://index.docker.io/v1/` vs `docker.io`).
    let entry = file.auths.get(registry).map(|e| (registry, e)).or_else(|| {
        file.auths.iter().find(|(k, _)| key_registry(k) == registry).map(|(k, e)| (k.as_str(), e))
    });
    match entry {
        Some((key, e)) => e.credentials(path, key),
        None => Ok(None),
    }
}

/// The server name a credential helper is asked about.
fn helper_server(registry: &str) -> &str {
    if registry == DOCKER_HUB { DOCKER_HUB_CONFIG_KEY } else { registry }
}

/// A credential helper's answer to `get`.
#[derive(serde::Deserialize)]
struct HelperOut {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the server on stdin.
fn helper_get(
    helper: &str,
    registry: &str,
    config: &std::path::Path,
) -> Result<Option<Credentials>, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let fail =
        |problem: String| RegistryError::Credentials { registry: registry.to_owned(), problem };
    #[allow(
        clippy::disallowed_methods,
        reason = "credential helpers are run as docker runs them (ARCHITECTURE.md)"
    )]
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(format!(
                "cannot run credential helper `{program}`: {e}; install it or remove it from `{}`",
                config.display()
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(helper_server(registry).as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("credential helper `{program}` failed: {e}")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase()
            + &String::from_utf8_lossy(&out.stderr).to_lowercase();
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("credential helper `{program}` exited with {}", out.status)));
    }
    let parsed: HelperOut = serde_json::from_slice(&out.stdout).map_err(|_| {
        fail(format!("credential helper `{program}` printed something that is not its JSON answer"))
    })?;
    Ok(Some(Credentials { username: parsed.username, password: parsed.secret }))
}

/// Stores credentials for `registry` in the Docker config file (through its `credsStore` or
/// `credHelpers` entry when one is set, else base64 in `auths`), keeping every other field.
pub(super) fn store_credentials(
    sources: &CredentialSources,
    registry: &str,
    creds: &Credentials,
) -> Result<PathBuf, RegistryError> {
    let path = sources.docker_config.clone();
    let fail =
        |problem: String| RegistryError::Credentials { registry: registry.to_owned(), problem };
    let mut doc: serde_json::Map<String, serde_json::Value> = match fs_err::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| fail(format!("`{}` is not valid JSON: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Map::new(),
        Err(e) => return Err(fail(format!("cannot read `{}`: {}", path.display(), e.kind()))),
    };
    let key = helper_server(registry).to_owned();
    let helper = doc
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| {
            h.iter().find(|(k, _)| key_registry(k) == registry).and_then(|(_, v)| v.as_str())
        })
        .or_else(|| doc.get("credsStore").and_then(|s| s.as_str()))
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if let Some(helper) = helper {
        let program = format!("docker-credential-{helper}");
        let input = serde_json::json!({"ServerURL": key, "Username": creds.username, "Secret": creds.password});
        #[allow(
            clippy::disallowed_methods,
            reason = "credential helpers are run as docker runs them (ARCHITECTURE.md)"
        )]
        let mut child = Command::new(&program)
            .arg("store")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot run credential helper `{program}`: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.to_string().as_bytes());
        }
        let status =
            child.wait().map_err(|e| fail(format!("credential helper `{program}` failed: {e}")))?;
        if !status.success() {
            return Err(fail(format!("credential helper `{program}` exited with {status}")));
        }
        return Ok(path);
    }
    let auths =
        doc.entry("auths").or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    if !auths.is_object() {
        *auths = serde_json::Value::Object(serde_json::Map::new());
    }
    let auths = auths.as_object_mut().expect("made an object above");
    // Replace any older spelling of the same registry.
    auths.retain(|k, _| key_registry(k) != registry);
    let encoded = B64.encode(format!("{}:{}", creds.username, creds.password));
    auths.insert(key, serde_json::json!({ "auth": encoded }));
    let dir = path.parent().map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
    fs_err::create_dir_all(&dir)
        .map_err(|e| fail(format!("cannot create `{}`: {}", dir.display(), e.kind())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json")
        .tempfile_in(&dir)
        .map_err(|e| fail(format!("cannot write in `{}`: {}", dir.display(), e.kind())))?;
    // The file holds secrets: owner-only, like Docker.
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600));
    }
    let text = serde_json::to_string_pretty(&doc).expect("a JSON map serialises");
    tmp.write_all(text.as_bytes())
        .map_err(|e| fail(format!("cannot write `{}`: {}", path.display(), e.kind())))?;
    tmp.persist(&path)
        .map_err(|e| fail(format!("cannot write `{}`: {}", path.display(), e.error.kind())))?;
    Ok(path)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

/// `key=value` or `key="quoted, \"escaped\""` pairs separated by commas.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .clone_into(&mut value);
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(r#"bearer realm=http://127.0.0.1:1/t, service="a \"b\"""#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: Some("a \"b\"".into()),
                scope: None
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn config_keys_name_registries() {
        assert_eq!(key_registry("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(key_registry("registry-1.docker.io"), "docker.io");
        assert_eq!(key_registry("http://localhost:5000"), "localhost:5000");
        assert_eq!(key_registry("quay.io/org"), "quay.io");
    }

    #[test]
    fn credentials_never_print_secrets() {
        let c = Credentials { username: "u".into(), password: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic_header(), "Basic dTpodW50ZXIy");
    }
}
