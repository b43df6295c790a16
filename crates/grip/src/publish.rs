//! Publishing items to one or several GRIP control endpoints.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::grip_url::{ControlAuth, GripUrl};
use crate::item::{Item, PublishBody};

/// Default time allowed to open a TCP (and TLS) connection to an endpoint.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for a whole publish request, response body included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest request body sent. Pushpin answers 400 above 1,000,000
/// bytes; catching it here gives a clearer error and saves a round trip.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1_000_000;

/// Lifetime of the JWTs sent to control endpoints (`exp` = now + this).
const JWT_LIFETIME: Duration = Duration::from_secs(3600);
/// A cached JWT is re-signed once it is this old, leaving ten minutes of
/// margin for clock skew and slow requests.
const JWT_REFRESH_AFTER: Duration = Duration::from_secs(50 * 60);
/// How much of an error response body is kept in [`EndpointErrorKind::Status`].
const MAX_ERROR_BODY_CHARS: usize = 512;

/// Why a [`Publisher`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PublisherBuildError {
    /// No control endpoint was given.
    #[error("no GRIP control endpoint configured")]
    NoEndpoints,
    /// The HTTP client could not be created (for instance no TLS backend).
    #[error("could not create the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// What went wrong with one endpoint. Never contains a key or token.
#[derive(Debug, thiserror::Error)]
pub enum EndpointErrorKind {
    /// The endpoint answered with a non-2xx status.
    #[error("HTTP {status}: {body:?}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the response body, lossily decoded and truncated.
        body: String,
    },
    /// The connect or request timeout ran out.
    #[error("timed out")]
    Timeout,
    /// No connection could be made (refused, DNS failure, TLS failure...).
    #[error("could not connect: {}", root_cause(.0))]
    Connect(#[source] reqwest::Error),
    /// The request failed after connecting (connection reset, bad response).
    #[error("request failed: {}", root_cause(.0))]
    Transport(#[source] reqwest::Error),
    /// The JWT for the `Authorization` header could not be signed.
    #[error("could not sign the auth token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// A publish that failed on one endpoint.
#[derive(Debug, thiserror::Error)]
#[error("publish to {control_uri} failed: {kind}")]
pub struct EndpointError {
    index: usize,
    control_uri: String,
    kind: EndpointErrorKind,
}

impl EndpointError {
    /// Position of the endpoint in the publisher's list, as used by
    /// [`Publisher::publish_to`].
    pub fn index(&self) -> usize {
        self.index
    }

    /// The endpoint's control URI (never holds secrets).
    pub fn control_uri(&self) -> &str {
        &self.control_uri
    }

    /// What went wrong.
    pub fn kind(&self) -> &EndpointErrorKind {
        &self.kind
    }

    /// The status code, when the endpoint answered with one.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            EndpointErrorKind::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: timeouts, connection
    /// failures, 5xx, 408 and 429. A 4xx means the request itself is wrong.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            EndpointErrorKind::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            EndpointErrorKind::Timeout
            | EndpointErrorKind::Connect(_)
            | EndpointErrorKind::Transport(_) => true,
            EndpointErrorKind::Sign(_) => false,
        }
    }
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The items could not be encoded as JSON.
    #[error("could not encode the items: {0}")]
    Encode(#[source] serde_json::Error),
    /// The encoded body is larger than the configured limit; split the batch.
    #[error("publish body is {size} bytes, more than the {max} allowed")]
    BodyTooLarge {
        /// Size of the encoded body.
        size: usize,
        /// The limit ([`PublisherBuilder::max_body_bytes`]).
        max: usize,
    },
    /// [`Publisher::publish_to`] was given an index past the last endpoint.
    #[error("there is no GRIP endpoint #{0}")]
    NoSuchEndpoint(usize),
    /// One or more endpoints failed; the others received the items.
    #[error("{}", describe_failures(failures, *succeeded))]
    Endpoints {
        /// One error per failed endpoint, in endpoint order.
        failures: Vec<EndpointError>,
        /// How many endpoints accepted the publish.
        succeeded: usize,
    },
}

/// The innermost error's message: reqwest's own top-level message ("error
/// sending request") says less than the OS error under it.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn describe_failures(failures: &[EndpointError], succeeded: usize) -> String {
    let total = failures.len() + succeeded;
    let list: Vec<String> = failures.iter().map(ToString::to_string).collect();
    format!(
        "publish failed on {} of {total} endpoint(s): {}",
        failures.len(),
        list.join("; ")
    )
}

impl PublishError {
    /// The per-endpoint failures (empty for the other variants).
    pub fn failures(&self) -> &[EndpointError] {
        match self {
            Self::Endpoints { failures, .. } => failures,
            _ => &[],
        }
    }

    /// Whether publishing the same items again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Endpoints { failures, .. } => failures.iter().all(EndpointError::is_retryable),
            Self::Encode(_) | Self::BodyTooLarge { .. } | Self::NoSuchEndpoint(_) => false,
        }
    }
}

#[derive(Serialize)]
struct JwtClaims<'a> {
    iss: &'a str,
    exp: u64,
}

/// Signs and caches the JWT for one endpoint.
struct JwtSigner {
    iss: String,
    key: EncodingKey,
    refresh_after: Duration,
    cache: Mutex<Option<(String, Instant)>>,
}

impl JwtSigner {
    fn new(iss: String, key: &[u8]) -> Self {
        Self {
            iss,
            key: EncodingKey::from_secret(key),
            refresh_after: JWT_REFRESH_AFTER,
            cache: Mutex::new(None),
        }
    }

    /// The `Authorization` header value, re-signed when the cached one is old.
    fn header_value(&self) -> Result<String, jsonwebtoken::errors::Error> {
        // A panic while holding this lock cannot leave the cache half
        // written, so a poisoned lock is safe to keep using.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((value, signed_at)) = cache.as_ref() {
            if signed_at.elapsed() < self.refresh_after {
                return Ok(value.clone());
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let claims = JwtClaims {
            iss: &self.iss,
            exp: (now + JWT_LIFETIME).as_secs(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)?;
        let value = format!("Bearer {token}");
        *cache = Some((value.clone(), Instant::now()));
        Ok(value)
    }
}

enum Auth {
    None,
    Fixed(String),
    Jwt(JwtSigner),
}

impl Auth {
    fn from_config(auth: &ControlAuth) -> Self {
        match auth {
            ControlAuth::None => Self::None,
            ControlAuth::Basic { user, pass } => {
                let mut creds = user.as_bytes().to_vec();
                creds.push(b':');
                creds.extend_from_slice(pass.expose_bytes());
                let encoded = base64::engine::general_purpose::STANDARD.encode(creds);
                Self::Fixed(format!("Basic {encoded}"))
            }
            // GripUrl::parse only accepts visible-ASCII bearer keys, so the
            // lossy conversion never changes anything.
            ControlAuth::Bearer(key) => Self::Fixed(format!(
                "Bearer {}",
                String::from_utf8_lossy(key.expose_bytes())
            )),
            ControlAuth::Jwt { iss, key } => {
                Self::Jwt(JwtSigner::new(iss.clone(), key.expose_bytes()))
            }
        }
    }

    fn header_value(&self) -> Result<Option<String>, jsonwebtoken::errors::Error> {
        match self {
            Self::None => Ok(None),
            Self::Fixed(v) => Ok(Some(v.clone())),
            Self::Jwt(signer) => signer.header_value().map(Some),
        }
    }
}

struct Endpoint {
    config: GripUrl,
    auth: Auth,
}

struct Inner {
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    request_timeout: Duration,
    max_body_bytes: usize,
}

/// Publishes items to every configured control endpoint.
///
/// Cheap to clone: clones share one HTTP client (and its connection pool)
/// and one JWT cache per endpoint.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use grip::{ChannelName, GripUrl, Item, Publisher};
///
/// let publisher = Publisher::new(GripUrl::parse_list("http://localhost:5561")?)?;
/// let channel = ChannelName::parse("board:1")?;
/// publisher.publish(&[Item::stream(channel, "data: hello\n\n")]).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field(
                "endpoints",
                &self
                    .inner
                    .endpoints
                    .iter()
                    .map(|e| e.config.to_string())
                    .collect::<Vec<_>>(),
            )
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

/// Options for a [`Publisher`].
#[derive(Debug)]
pub struct PublisherBuilder {
    endpoints: Vec<GripUrl>,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_body_bytes: usize,
    client: Option<reqwest::Client>,
}

impl PublisherBuilder {
    /// Time allowed to connect (default [`DEFAULT_CONNECT_TIMEOUT`]). Ignored
    /// when a client is supplied with [`PublisherBuilder::client`].
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for each publish request from start to the end of the
    /// response (default [`DEFAULT_REQUEST_TIMEOUT`]).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Largest request body to send (default [`DEFAULT_MAX_BODY_BYTES`]).
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// Uses an existing client instead of building one. The request timeout
    /// still applies per request; the connect timeout is the client's own.
    /// The client should not follow redirects: a redirect from a publish
    /// endpoint means a misconfigured URL.
    #[must_use]
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Builds the publisher.
    ///
    /// # Errors
    /// [`PublisherBuildError::NoEndpoints`] for an empty endpoint list,
    /// [`PublisherBuildError::Client`] if the HTTP client cannot be created.
    pub fn build(self) -> Result<Publisher, PublisherBuildError> {
        if self.endpoints.is_empty() {
            return Err(PublisherBuildError::NoEndpoints);
        }
        let client = match self.client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .timeout(self.request_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("grip-rs/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(PublisherBuildError::Client)?,
        };
        let endpoints = self
            .endpoints
            .into_iter()
            .map(|config| Endpoint {
                auth: Auth::from_config(config.auth()),
                config,
            })
            .collect();
        Ok(Publisher {
            inner: Arc::new(Inner {
                client,
                endpoints,
                request_timeout: self.request_timeout,
                max_body_bytes: self.max_body_bytes,
            }),
        })
    }
}

impl Publisher {
    /// A publisher for these endpoints with default timeouts.
    ///
    /// # Errors
    /// See [`PublisherBuilder::build`].
    pub fn new(endpoints: impl IntoIterator<Item = GripUrl>) -> Result<Self, PublisherBuildError> {
        Self::builder(endpoints).build()
    }

    /// Starts configuring a publisher for these endpoints.
    pub fn builder(endpoints: impl IntoIterator<Item = GripUrl>) -> PublisherBuilder {
        PublisherBuilder {
            endpoints: endpoints.into_iter().collect(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            client: None,
        }
    }

    /// The configured endpoints, in order.
    pub fn endpoints(&self) -> impl ExactSizeIterator<Item = &GripUrl> {
        self.inner.endpoints.iter().map(|e| &e.config)
    }

    /// Publishes `items` in one request to every endpoint, all endpoints at
    /// once, and waits for every answer.
    ///
    /// An empty slice still sends `{"items":[]}`, which makes a cheap
    /// reachability check.
    ///
    /// # Errors
    /// [`PublishError::Endpoints`] lists each endpoint that failed; the others
    /// did receive the items, so a retry can target only the failed ones with
    /// [`Publisher::publish_to`].
    pub async fn publish(&self, items: &[Item]) -> Result<(), PublishError> {
        let body = self.encode(items)?;
        let results = futures::future::join_all(
            self.inner
                .endpoints
                .iter()
                .enumerate()
                .map(|(index, endpoint)| self.send(index, endpoint, body.clone())),
        )
        .await;
        let total = results.len();
        let failures: Vec<EndpointError> = results.into_iter().filter_map(Result::err).collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(PublishError::Endpoints {
                succeeded: total - failures.len(),
                failures,
            })
        }
    }

    /// Publishes `items` to the endpoint at `index` only (see
    /// [`EndpointError::index`]).
    ///
    /// # Errors
    /// As for [`Publisher::publish`], plus [`PublishError::NoSuchEndpoint`]
    /// when `index` is out of range.
    pub async fn publish_to(&self, index: usize, items: &[Item]) -> Result<(), PublishError> {
        let Some(endpoint) = self.inner.endpoints.get(index) else {
            return Err(PublishError::NoSuchEndpoint(index));
        };
        let body = self.encode(items)?;
        self.send(index, endpoint, body)
            .await
            .map_err(|e| PublishError::Endpoints {
                failures: vec![e],
                succeeded: 0,
            })
    }

    fn encode(&self, items: &[Item]) -> Result<Vec<u8>, PublishError> {
        let body = serde_json::to_vec(&PublishBody { items }).map_err(PublishError::Encode)?;
        if body.len() > self.inner.max_body_bytes {
            return Err(PublishError::BodyTooLarge {
                size: body.len(),
                max: self.inner.max_body_bytes,
            });
        }
        Ok(body)
    }

    async fn send(
        &self,
        index: usize,
        endpoint: &Endpoint,
        body: Vec<u8>,
    ) -> Result<(), EndpointError> {
        let fail = |kind| EndpointError {
            index,
            control_uri: endpoint.config.control_uri().to_owned(),
            kind,
        };
        let auth = endpoint
            .auth
            .header_value()
            .map_err(|e| fail(EndpointErrorKind::Sign(e)))?;
        let mut request = self
            .inner
            .client
            .post(endpoint.config.publish_url().clone())
            .timeout(self.inner.request_timeout)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(auth) = &auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.map_err(|e| fail(classify(e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = read_error_body(response).await;
        let body = match &auth {
            // A misbehaving endpoint could echo the request back; make sure
            // the token does not travel on into logs.
            Some(auth) => redact(body, auth),
            None => body,
        };
        log::debug!(
            "publish to {} answered {}",
            endpoint.config.control_uri(),
            status.as_u16()
        );
        Err(fail(EndpointErrorKind::Status {
            status: status.as_u16(),
            body,
        }))
    }
}

fn classify(e: reqwest::Error) -> EndpointErrorKind {
    let e = e.without_url();
    if e.is_timeout() {
        EndpointErrorKind::Timeout
    } else if e.is_connect() {
        EndpointErrorKind::Connect(e)
    } else {
        EndpointErrorKind::Transport(e)
    }
}

/// Reads the start of an error body; a failure to read just shortens it.
async fn read_error_body(mut response: reqwest::Response) -> String {
    let limit = MAX_ERROR_BODY_CHARS * 4;
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut out: String = text.chars().take(MAX_ERROR_BODY_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

fn redact(body: String, auth_header: &str) -> String {
    let secret = auth_header
        .split_once(' ')
        .map_or(auth_header, |(_, credentials)| credentials);
    if secret.is_empty() || !body.contains(secret) {
        return body;
    }
    body.replace(secret, "<redacted>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[derive(serde::Deserialize)]
    struct Claims {
        iss: String,
        exp: u64,
    }

    #[test]
    fn jwt_is_cached_then_resigned() {
        let mut signer = JwtSigner::new("realm".into(), b"k3y");
        let first = signer.header_value().unwrap();
        assert_eq!(signer.header_value().unwrap(), first);

        let token = first.strip_prefix("Bearer ").unwrap();
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(b"k3y"),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(data.claims.iss, "realm");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(data.claims.exp >= now + 3590 && data.claims.exp <= now + 3610);

        signer.refresh_after = Duration::ZERO;
        std::thread::sleep(Duration::from_millis(5));
        let again = signer.header_value().unwrap();
        assert!(again.starts_with("Bearer "));
        // Re-signing within the same second may give the same token; what
        // matters is that the cache entry was refreshed.
        let cache = signer.cache.lock().unwrap();
        assert!(cache.as_ref().unwrap().1.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn basic_header() {
        let g = GripUrl::parse("http://Aladdin:open%20sesame@h").unwrap();
        match Auth::from_config(g.auth()) {
            Auth::Fixed(v) => assert_eq!(v, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            _ => panic!("expected basic"),
        }
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("saw Bearer abc.def".into(), "Bearer abc.def"),
            "saw Bearer <redacted>"
        );
        assert_eq!(redact("nothing".into(), "Bearer abc"), "nothing");
    }

    #[test]
    fn retryable_classification() {
        let e = |status| EndpointError {
            index: 0,
            control_uri: "http://h".into(),
            kind: EndpointErrorKind::Status {
                status,
                body: String::new(),
            },
        };
        assert!(e(500).is_retryable());
        assert!(e(503).is_retryable());
        assert!(e(429).is_retryable());
        assert!(!e(400).is_retryable());
        assert!(!e(404).is_retryable());
        assert_eq!(e(404).status(), Some(404));
    }

    #[test]
    fn publisher_and_its_futures_can_cross_threads() {
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        fn assert_send<T: Send>(_: &T) {}
        let p = Publisher::new(GripUrl::parse_list("http://h?iss=i&key=k").unwrap()).unwrap();
        assert_send_sync(&p);
        let fut = p.publish(&[]);
        assert_send(&fut);
        let fut = p.publish_to(0, &[]);
        assert_send(&fut);
    }

    #[test]
    fn empty_endpoint_list_is_an_error() {
        assert!(matches!(
            Publisher::new(Vec::new()),
            Err(PublisherBuildError::NoEndpoints)
        ));
    }
}
