//! The HTTP side of the client: one `ureq` agent, per-registry authentication state, a token
//! cache keyed by scope, and a request loop that answers 401 challenges and retries transient
//! failures with exponential backoff.
//!
//! Invariant: request bodies are replayable ([`Payload`] reopens files), so an expired token
//! or a retried request never sends a truncated body.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::http::{self, Method, Response};

use super::auth::{self, Challenge, Credentials};
use super::reference::{api_host, is_loopback};
use super::trust::Trust;
use super::{ClientOptions, RegistryError};

/// A registry client; cheap to share across threads (`&Client` is `Sync`).
pub(crate) struct Client {
    /// One agent per URL authority (`host[:port]`): each trusts the system's CAs plus that
    /// host's own `certs.d` ones, and keeps its own connection pool.
    agents: Mutex<HashMap<String, ureq::Agent>>,
    trust: Trust,
    pub(super) opts: ClientOptions,
    hosts: Mutex<HashMap<String, HostAuth>>,
    tokens: Mutex<HashMap<(String, String), Token>>,
    /// Held while a token is fetched, so parallel transfers ask the token server once.
    token_fetch: Mutex<()>,
    /// Registries that have answered at least once: a connection that cannot even be made to
    /// one that never answered fails at once instead of being retried for seconds (an
    /// unreachable registry, e.g. offline, is not a flaky one).
    answered: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("opts", &self.opts).finish_non_exhaustive()
    }
}

/// What a registry asked for, and the credentials found for it (looked up once).
#[derive(Clone, Default)]
struct HostAuth {
    challenge: Option<Challenge>,
    /// Looked up once: `Lookup::Done(None)` means there are none.
    credentials: Lookup,
}

#[derive(Clone, Default)]
enum Lookup {
    #[default]
    Pending,
    Done(Option<Credentials>),
}

struct Token {
    value: String,
    expires: Instant,
}

/// What a request is about: names for errors, and the token scope it needs.
#[derive(Debug, Clone)]
pub(super) struct Ctx<'a> {
    pub registry: &'a str,
    pub repository: &'a str,
    /// `repository:NAME:ACTIONS` entries.
    pub scope: Vec<String>,
}

impl<'a> Ctx<'a> {
    pub(super) fn pull(registry: &'a str, repository: &'a str) -> Self {
        Self { registry, repository, scope: vec![format!("repository:{repository}:pull")] }
    }
}

/// A replayable request body.
#[derive(Debug, Clone)]
pub(super) enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of `path` from `offset`.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Payload<'_> {
    fn len(&self) -> u64 {
        match self {
            Payload::Empty => 0,
            Payload::Bytes(b) => b.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }
}

pub(super) struct Req<'a> {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Payload<'a>,
    /// Whether 5xx/429/transport failures are retried (not for upload steps whose session
    /// a partial attempt may have consumed; the caller restarts those).
    pub retry: bool,
    /// What the request does, for error messages (e.g. "fetching manifest 3.20").
    pub what: String,
}

/// Why a plain URL could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GetError {
    /// The client could not be set up for this URL (its TLS trust, say).
    #[error(transparent)]
    Client(Box<RegistryError>),
    #[error("interrupted")]
    Interrupted,
    #[error(
        "TLS failed ({0}); if the server's certificate comes from your own CA, add it to the \
         system's trust store or set SSL_CERT_FILE"
    )]
    Tls(ureq::Error),
    #[error("connection refused")]
    Refused,
    #[error("cannot resolve the host")]
    UnknownHost,
    #[error("{error} (after {attempts} attempts)")]
    Failed { attempts: u32, error: ureq::Error },
}

impl Client {
    /// Creates a client. No connection is made until the first request.
    pub(crate) fn new(opts: ClientOptions) -> Self {
        Self {
            agents: Mutex::new(HashMap::new()),
            trust: Trust::new(opts.trust.clone()),
            opts,
            hosts: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            token_fetch: Mutex::new(()),
            answered: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// The agent for `url`'s host, made on first use (plain HTTP needs no roots).
    pub(super) fn agent_for(&self, url: &str) -> Result<ureq::Agent, RegistryError> {
        let (https, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.strip_prefix("http://").unwrap_or(url)),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        let key = format!("{}://{authority}", if https { "https" } else { "http" });
        if let Some(agent) = self.agents.lock().expect("lock").get(&key) {
            return Ok(agent.clone());
        }
        let roots =
            if https { self.trust.roots_for(authority)? } else { ureq::tls::RootCerts::WebPki };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(self.opts.user_agent.as_str())
            .timeout_connect(Some(self.opts.connect_timeout))
            .timeout_recv_response(Some(self.opts.read_timeout))
            .timeout_per_read(Some(self.opts.read_timeout))
            .max_idle_connections_per_host(self.opts.parallel.max(1) * 2)
            .max_redirects(8)
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        Ok(self.agents.lock().expect("lock").entry(key).or_insert(agent).clone())
    }

    /// The deadline of one download that starts now (see [`super::deadline`]).
    pub(crate) fn download_deadline(&self) -> super::deadline::Deadline {
        super::deadline::Deadline {
            cancelled: self.opts.cancelled,
            ..super::deadline::Deadline::new(self.opts.transfer_timeout, self.opts.read_timeout)
        }
    }

    /// GETs a plain URL (`add "https://…"`) with the TLS trust and retries of registry
    /// requests; redirects are followed and any final status is returned. The error says what
    /// went wrong and keeps the transport's error (the URL is the caller's to add).
    pub(crate) fn get_url(
        &self,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<Response<ureq::Body>, GetError> {
        let agent = self.agent_for(url).map_err(|e| GetError::Client(Box::new(e)))?;
        let mut attempt = 0;
        loop {
            if (self.opts.cancelled)() {
                return Err(GetError::Interrupted);
            }
            let mut req = agent.get(url);
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            match req.call() {
                Ok(resp) => {
                    if retryable(&resp) && attempt < self.opts.retries {
                        self.backoff(attempt, retry_after(&resp));
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
                Err(e) if is_transient(&e) && attempt < self.opts.retries => {
                    self.backoff(attempt, None);
                    attempt += 1;
                }
                Err(e) if is_tls_failure(&e) => {
                    return Err(GetError::Tls(e));
                }
                Err(ureq::Error::Io(io)) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(GetError::Refused);
                }
                Err(ureq::Error::HostNotFound) => return Err(GetError::UnknownHost),
                Err(error) => return Err(GetError::Failed { attempts: attempt + 1, error }),
            }
        }
    }

    /// `http://` for loopback and insecure registries, else `https://`.
    pub(super) fn base_url(&self, registry: &str) -> String {
        let host = api_host(registry);
        let plain = is_loopback(registry)
            || self.opts.insecure_registries.iter().any(|r| r == registry || r == host);
        format!("{}://{host}", if plain { "http" } else { "https" })
    }

    /// Makes a `Location` header absolute.
    pub(super) fn absolute(&self, registry: &str, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base_url(registry))
        } else {
            format!("{}/{location}", self.base_url(registry))
        }
    }

    /// Checks that the stored credentials (if any) are accepted by `registry`: `GET /v2/`,
    /// answering its challenge.
    pub(crate) fn check_credentials(&self, registry: &str) -> Result<(), RegistryError> {
        let ctx = Ctx { registry, repository: "", scope: Vec::new() };
        let req = Req {
            method: Method::GET,
            url: format!("{}/v2/", self.base_url(registry)),
            headers: Vec::new(),
            body: Payload::Empty,
            retry: true,
            what: "the API check".into(),
        };
        let resp = self.send(&ctx, &req)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(&ctx, &req.what, "", resp))
        }
    }

    /// Checks that `registry` accepts `creds` (and only those: stored ones are not looked
    /// up), so `stack login` never stores credentials the registry refuses.
    pub(crate) fn check_login(
        &self,
        registry: &str,
        creds: &Credentials,
    ) -> Result<(), RegistryError> {
        self.hosts.lock().expect("lock").entry(registry.to_owned()).or_default().credentials =
            Lookup::Done(Some(creds.clone()));
        self.check_credentials(registry)
    }

    fn credentials(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        if let Some(Lookup::Done(c)) =
            self.hosts.lock().expect("lock").get(registry).map(|h| h.credentials.clone())
        {
            return Ok(c);
        }
        let found =
            auth::find_credentials(&self.opts.credentials, registry).map_err(|e| match e {
                RegistryError::Credentials { problem, .. } => {
                    RegistryError::Credentials { registry: registry.to_owned(), problem }
                }
                other => other,
            })?;
        self.hosts.lock().expect("lock").entry(registry.to_owned()).or_default().credentials =
            Lookup::Done(found.clone());
        Ok(found)
    }

    /// The `Authorization` header to send, fetching a token when the registry wants one.
    fn authorization(&self, ctx: &Ctx<'_>) -> Result<Option<String>, RegistryError> {
        let challenge =
            self.hosts.lock().expect("lock").get(ctx.registry).and_then(|h| h.challenge.clone());
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials(ctx.registry)?.map(|c| c.basic_header())),
            Some(Challenge::Bearer { realm, service, scope }) => {
                let mut scopes = ctx.scope.clone();
                if let Some(s) = scope
                    && !scopes.contains(&s)
                    && ctx.scope.is_empty()
                {
                    scopes.push(s);
                }
                let key = (ctx.registry.to_owned(), scopes.join(" "));
                let cached = || {
                    self.tokens
                        .lock()
                        .expect("lock")
                        .get(&key)
                        .filter(|t| t.expires > Instant::now())
                        .map(|t| format!("Bearer {}", t.value))
                };
                if let Some(h) = cached() {
                    return Ok(Some(h));
                }
                let _single_flight = self.token_fetch.lock().expect("lock");
                if let Some(h) = cached() {
                    return Ok(Some(h));
                }
                let token = self.fetch_token(ctx, &realm, service.as_deref(), &scopes)?;
                let header = format!("Bearer {}", token.value);
                self.tokens.lock().expect("lock").insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// Asks the token server for a token (Docker token spec; `OAuth2` refresh-token grant when
    /// the secret is an identity token).
    fn fetch_token(
        &self,
        ctx: &Ctx<'_>,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Token, RegistryError> {
        let creds = self.credentials(ctx.registry)?;
        let agent = self.agent_for(realm)?;
        let mut attempt = 0;
        loop {
            let result = if let Some(c) = creds.as_ref().filter(|c| c.is_identity_token()) {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("client_id", "stack".to_owned()),
                    ("refresh_token", c.password.clone()),
                ];
                if let Some(s) = service {
                    form.push(("service", s.to_owned()));
                }
                if !scopes.is_empty() {
                    form.push(("scope", scopes.join(" ")));
                }
                agent.post(realm).send_form(form.iter().map(|(k, v)| (*k, v.as_str())))
            } else {
                let mut url = realm.to_owned();
                let mut sep = if url.contains('?') { '&' } else { '?' };
                if let Some(s) = service {
                    let _ = write!(url, "{sep}service={}", query_escape(s));
                    sep = '&';
                }
                for s in scopes {
                    let _ = write!(url, "{sep}scope={}", query_escape(s));
                    sep = '&';
                }
                let mut req = agent.get(&url);
                if let Some(c) = &creds {
                    req = req.header("Authorization", c.basic_header());
                }
                req.call()
            };
            let what = "the token request".to_owned();
            match result {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    if (status == 429 || status >= 500) && attempt < self.opts.retries {
                        self.backoff(attempt, retry_after(&resp));
                        attempt += 1;
                        continue;
                    }
                    if status == 401 || status == 403 {
                        return Err(RegistryError::Unauthorized {
                            registry: ctx.registry.to_owned(),
                            repository: ctx.repository.to_owned(),
                            status,
                            had_credentials: creds.is_some(),
                        });
                    }
                    if !resp.status().is_success() {
                        return Err(self.status_error(ctx, &what, "", resp));
                    }
                    let body = resp
                        .body_mut()
                        .with_config()
                        .limit(1 << 20)
                        .read_to_vec()
                        .map_err(|e| self.transport_error(ctx, &what, attempt + 1, e))?;
                    let parsed: TokenResponse =
                        serde_json::from_slice(&body).map_err(|_| RegistryError::Invalid {
                            registry: ctx.registry.to_owned(),
                            repository: ctx.repository.to_owned(),
                            problem: format!(
                                "the token server `{}` answered something that is not a token",
                                strip_query(realm)
                            ),
                        })?;
                    let value =
                        parsed.token.or(parsed.access_token).filter(|t| !t.is_empty()).ok_or_else(
                            || RegistryError::Invalid {
                                registry: ctx.registry.to_owned(),
                                repository: ctx.repository.to_owned(),
                                problem: format!(
                                    "the token server `{}` answered without a token",
                                    strip_query(realm)
                                ),
                            },
                        )?;
                    // Spec default is 60 s; refresh a little early.
                    let secs = parsed.expires_in.unwrap_or(60).max(10);
                    return Ok(Token {
                        value,
                        expires: Instant::now() + Duration::from_secs(secs * 9 / 10),
                    });
                }
                Err(e) if is_transient(&e) && attempt < self.opts.retries => {
                    self.backoff(attempt, None);
                    attempt += 1;
                }
                Err(e) => return Err(self.transport_error(ctx, &what, attempt + 1, e)),
            }
        }
    }

    /// Records a 401's challenge; returns whether another attempt can succeed: when nothing
    /// was sent, or when a (possibly expired) token was sent and a fresh one may work.
    fn learn(&self, ctx: &Ctx<'_>, resp: &Response<ureq::Body>, sent: Option<&str>) -> bool {
        let Some(challenge) = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(auth::parse_challenge)
        else {
            return false;
        };
        let bearer = matches!(challenge, Challenge::Bearer { .. });
        self.hosts.lock().expect("lock").entry(ctx.registry.to_owned()).or_default().challenge =
            Some(challenge);
        if bearer {
            // A rejected token is dropped so the next attempt asks for a fresh one (only that
            // one: a parallel request's newer token stays).
            if let Some(sent) = sent {
                self.tokens.lock().expect("lock").retain(|(reg, _), t| {
                    reg != ctx.registry || sent.strip_prefix("Bearer ") != Some(t.value.as_str())
                });
            }
            return true;
        }
        sent.is_none()
    }

    /// Sends a request, answering auth challenges and retrying transient failures. Any
    /// status is returned as a response; transport failures become errors.
    pub(super) fn send(
        &self,
        ctx: &Ctx<'_>,
        req: &Req<'_>,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let agent = self.agent_for(&req.url)?;
        let mut attempt = 0u32;
        let mut auth_rounds = 0u32;
        loop {
            let authorization = self.authorization(ctx)?;
            match Self::send_once(&agent, req, authorization.clone()) {
                Ok(resp) => {
                    self.answered
                        .lock()
                        .expect("no panics while locked")
                        .insert(ctx.registry.to_owned());
                    let status = resp.status().as_u16();
                    if status == 401 && auth_rounds < 2 {
                        auth_rounds += 1;
                        if self.learn(ctx, &resp, authorization.as_deref()) {
                            continue;
                        }
                    }
                    if req.retry && retryable(&resp) && attempt < self.opts.retries {
                        self.backoff(attempt, retry_after(&resp));
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
                Err(e)
                    if req.retry
                        && is_transient(&e)
                        && attempt < self.opts.retries
                        && !self.never_reached(ctx.registry, &e) =>
                {
                    self.backoff(attempt, None);
                    attempt += 1;
                }
                Err(e) => return Err(self.transport_error(ctx, &req.what, attempt + 1, e)),
            }
        }
    }

    /// Whether `e` is a connection that could not be made to a registry that has never
    /// answered in this run.
    fn never_reached(&self, registry: &str, e: &ureq::Error) -> bool {
        let cannot_connect = matches!(e, ureq::Error::ConnectionFailed | ureq::Error::HostNotFound)
            || matches!(e, ureq::Error::Io(io) if matches!(
                io.kind(),
                std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable
            // The resolver's "no such name" comes as a plain I/O error.
            ) || io.to_string().contains("failed to lookup address"));
        cannot_connect && !self.answered.lock().expect("no panics while locked").contains(registry)
    }

    fn send_once(
        agent: &ureq::Agent,
        req: &Req<'_>,
        authorization: Option<String>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let mut builder = http::Request::builder().method(req.method.clone()).uri(req.url.as_str());
        for (k, v) in &req.headers {
            builder = builder.header(*k, v.as_str());
        }
        if let Some(a) = authorization {
            builder = builder.header("Authorization", a);
        }
        let has_body = !matches!(req.body, Payload::Empty)
            || req.method == Method::PUT
            || req.method == Method::PATCH
            || req.method == Method::POST;
        if has_body {
            builder = builder.header("Content-Length", req.body.len().to_string());
        }
        match &req.body {
            Payload::Empty if has_body => agent.run(builder.body(ureq::SendBody::none())?),
            Payload::Empty => agent.run(builder.body(())?),
            Payload::Bytes(b) => agent.run(builder.body(*b)?),
            Payload::File { path, offset, len } => {
                let mut file = fs_err::File::open(path).map_err(ureq::Error::Io)?;
                file.seek(SeekFrom::Start(*offset)).map_err(ureq::Error::Io)?;
                let reader = std::io::BufReader::with_capacity(1 << 20, file).take(*len);
                agent.run(builder.body(ureq::SendBody::from_owned_reader(reader))?)
            }
        }
    }

    /// Sleeps before retry `attempt` (0-based): `backoff * 2^attempt` with ±25 % jitter,
    /// capped, or what `Retry-After` asked for.
    pub(super) fn backoff(&self, attempt: u32, retry_after: Option<Duration>) {
        let base =
            self.opts.backoff.saturating_mul(1 << attempt.min(16)).min(self.opts.max_backoff);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter = f64::from(nanos % 1000) / 1000.0 * 0.5 + 0.75;
        let delay = retry_after.unwrap_or_else(|| base.mul_f64(jitter)).min(MAX_RETRY_AFTER);
        // In short naps, so that Ctrl-C does not wait for the end of a long pause.
        let until = std::time::Instant::now() + delay;
        while !(self.opts.cancelled)() {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    pub(super) fn transport_error(
        &self,
        ctx: &Ctx<'_>,
        what: &str,
        attempts: u32,
        e: ureq::Error,
    ) -> RegistryError {
        let registry = ctx.registry.to_owned();
        match e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                RegistryError::ConnectionRefused { url: self.base_url(&registry), registry }
            }
            ureq::Error::HostNotFound => {
                RegistryError::HostNotFound { host: api_host(&registry).to_owned(), registry }
            }
            ureq::Error::Tls(detail) => RegistryError::Tls { registry, detail: detail.to_owned() },
            e if is_tls_failure(&e) => RegistryError::Tls { registry, detail: e.to_string() },
            // A plain-HTTP answer on an HTTPS port (or the reverse) shows up as a protocol error.
            other => RegistryError::Transport {
                registry,
                repository: ctx.repository.to_owned(),
                what: what.to_owned(),
                attempts,
                detail: other.to_string(),
            },
        }
    }

    /// Turns a non-success response into the error that explains it.
    pub(super) fn status_error(
        &self,
        ctx: &Ctx<'_>,
        what: &str,
        reference: &str,
        mut resp: Response<ureq::Body>,
    ) -> RegistryError {
        let status = resp.status().as_u16();
        let after = retry_after(&resp);
        let body = resp.body_mut().with_config().limit(64 * 1024).read_to_vec().unwrap_or_default();
        let (code, message) = error_body(&body);
        let code_part = code.as_ref().map(|c| format!(" {c}")).unwrap_or_default();
        let registry = ctx.registry.to_owned();
        let repository = ctx.repository.to_owned();
        match status {
            404 => RegistryError::NotFound {
                registry,
                repository,
                reference: reference.to_owned(),
                status,
                code: code_part,
            },
            401 => RegistryError::Unauthorized {
                had_credentials: self
                    .hosts
                    .lock()
                    .expect("lock")
                    .get(ctx.registry)
                    .is_some_and(|h| matches!(h.credentials, Lookup::Done(Some(_)))),
                registry,
                repository,
                status,
            },
            403 => RegistryError::Denied { registry, repository, status, code: code_part },
            429 => RegistryError::RateLimited { registry, repository, retry_after: after },
            _ => RegistryError::Http {
                registry,
                repository,
                what: what.to_owned(),
                status,
                code: code_part,
                message: message.map(|m| format!(": {m}")).unwrap_or_default(),
            },
        }
    }
}

/// A token server's answer.
#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Whether a transport error is worth retrying (resets, timeouts, truncated responses).
/// Whether the TLS handshake failed (a certificate, a protocol mismatch): retrying cannot help.
fn is_tls_failure(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => true,
        ureq::Error::Io(io) => {
            let text = io.to_string().to_lowercase();
            text.contains("tls") || text.contains("certificate")
        }
        _ => false,
    }
}

fn is_transient(e: &ureq::Error) -> bool {
    if is_tls_failure(e) {
        return false;
    }
    match e {
        ureq::Error::Io(io) => !matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::NotFound
                | std::io::ErrorKind::PermissionDenied
        ),
        ureq::Error::Timeout(_) | ureq::Error::Protocol(_) | ureq::Error::ConnectionFailed => true,
        _ => false,
    }
}

/// The longest `Retry-After` pause stack waits for; a server asking for more gets its answer
/// returned as an error instead of stalling the build.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Whether an answer may be different on a retry: rate limits, timeouts and server errors
/// (not 501/505, which will not change), unless the server asks for a pause over
/// [`MAX_RETRY_AFTER`], in which case its answer is returned rather than blocking the build.
fn retryable(resp: &Response<ureq::Body>) -> bool {
    let status = resp.status().as_u16();
    let transient =
        status == 429 || status == 408 || (status >= 500 && status != 501 && status != 505);
    let long_pause = retry_after(resp).is_some_and(|d| d > MAX_RETRY_AFTER);
    transient && !long_pause
}

/// `Retry-After` in seconds (HTTP dates are treated as absent).
pub(super) fn retry_after(resp: &Response<ureq::Body>) -> Option<Duration> {
    resp.headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The first `{code, message}` of a distribution-spec error body.
fn error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(e) => {
            e.errors.into_iter().next().map_or((None, None), |e| {
                (e.code, e.message.map(|m| m.chars().take(300).collect()))
            })
        }
        Err(_) => (None, None),
    }
}

fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
pub(super) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
