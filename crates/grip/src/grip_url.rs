//! GRIP_URL parsing: one or several control endpoints written as URLs.
//!
//! The conventions are those of the gripcontrol libraries: the query
//! parameters `iss`, `key`, `verify-iss` and `verify-key` are configuration,
//! not part of the endpoint, and `user:pass@` means Basic auth.

use std::fmt;
use std::str::FromStr;

use percent_encoding::percent_decode;
use url::Url;

use crate::key::{Key, KeyError};

/// The query parameters GRIP_URL understands.
const PARAM_ISS: &str = "iss";
const PARAM_KEY: &str = "key";
const PARAM_VERIFY_ISS: &str = "verify-iss";
const PARAM_VERIFY_KEY: &str = "verify-key";

/// Why a GRIP_URL was rejected. Messages never contain keys or passwords.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GripUrlError {
    /// The string was empty or only whitespace.
    #[error("GRIP URL is empty")]
    Empty,
    /// The string is not a URL.
    #[error("GRIP URL is not a valid URL: {0}")]
    InvalidUrl(#[from] url::ParseError),
    /// Only `http` and `https` control endpoints exist.
    #[error("GRIP URL has scheme `{0}`; only http and https are supported")]
    UnsupportedScheme(String),
    /// A configuration parameter appears twice, so which one wins is unclear.
    #[error("GRIP URL has the `{0}` parameter more than once")]
    DuplicateParameter(&'static str),
    /// A configuration parameter is present but empty.
    #[error("GRIP URL has an empty `{0}` parameter")]
    EmptyParameter(&'static str),
    /// A parameter (or the user name) is not valid UTF-8 after percent-decoding.
    #[error("GRIP URL `{0}` is not valid UTF-8 after percent-decoding")]
    NotUtf8(&'static str),
    /// `key` or `verify-key` could not be read.
    #[error("GRIP URL `{param}` parameter: {source}")]
    BadKey {
        /// `"key"` or `"verify-key"`.
        param: &'static str,
        /// What was wrong with it.
        source: KeyError,
    },
    /// `iss` without `key`: a JWT cannot be signed without a key.
    #[error("GRIP URL has `iss` but no `key` to sign with")]
    IssWithoutKey,
    /// Both `user:pass@` and `key` were given; only one kind of auth can be sent.
    #[error("GRIP URL has both user:pass@ and a `key`; use one kind of auth")]
    ConflictingAuth,
    /// The user name holds a `:`, which Basic auth cannot carry.
    #[error("GRIP URL user name contains `:`, which Basic auth cannot carry")]
    ColonInUser,
    /// A `key` without `iss` is sent as `Authorization: Bearer <key>` as is,
    /// so it must be visible ASCII.
    #[error("GRIP URL `key` without `iss` is sent as a Bearer token and must be visible ASCII")]
    InvalidBearerToken,
}

/// Why a comma-separated list of GRIP_URLs was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GripUrlListError {
    /// The list held no URL at all.
    #[error("no GRIP URL given")]
    Empty,
    /// One entry of the list was rejected.
    #[error("GRIP URL #{} in the list: {source}", index + 1)]
    Entry {
        /// Zero-based position of the entry in the list.
        index: usize,
        /// Why it was rejected.
        source: GripUrlError,
    },
}

/// How publishes to a control endpoint authenticate themselves.
#[derive(Clone, Debug)]
pub enum ControlAuth {
    /// No `Authorization` header (a local Pushpin checks none).
    None,
    /// `Authorization: Basic base64(user:pass)`, from `user:pass@` in the URL.
    Basic {
        /// User name, percent-decoded.
        user: String,
        /// Password bytes, percent-decoded; empty when the URL had none.
        pass: Key,
    },
    /// `Authorization: Bearer <key>`, from `key` without `iss` (a Fastly API
    /// token is sent this way).
    Bearer(Key),
    /// `Authorization: Bearer <JWT>`, an HS256 JWT with claims `iss` and `exp`
    /// signed with `key`.
    Jwt {
        /// The JWT issuer claim.
        iss: String,
        /// The HS256 signing key.
        key: Key,
    },
}

/// One parsed GRIP_URL: a control endpoint, how to authenticate to it, and
/// optionally how to verify `Grip-Sig` on requests that came through it.
///
/// `Debug` and `Display` show no key or password.
///
/// ```
/// use grip::{ControlAuth, GripUrl};
///
/// let g = GripUrl::parse("https://api.fanout.io/realm/r1/?iss=r1&key=base64:aGVsbG8%3D").unwrap();
/// assert_eq!(g.control_uri(), "https://api.fanout.io/realm/r1");
/// assert_eq!(g.publish_url().as_str(), "https://api.fanout.io/realm/r1/publish/");
/// assert!(matches!(g.auth(), ControlAuth::Jwt { iss, .. } if iss == "r1"));
/// assert!(!g.to_string().contains("aGVsbG8"));
/// ```
#[derive(Clone, Debug)]
pub struct GripUrl {
    control_uri: String,
    publish_url: Url,
    auth: ControlAuth,
    verify_iss: Option<String>,
    verify_key: Option<Key>,
}

#[derive(Default)]
struct Params {
    iss: Option<String>,
    key: Option<Key>,
    verify_iss: Option<String>,
    verify_key: Option<Key>,
}

impl GripUrl {
    /// Parses one GRIP_URL.
    ///
    /// - `iss`, `key`, `verify-iss` and `verify-key` are taken out of the
    ///   query; every other query parameter is dropped too (with a warning in
    ///   the log), because Pushpin answers 404 to any query on `/publish/`.
    /// - Query values are form-decoded: a raw `+` is a space, so a base64 key
    ///   must write `+` `/` `=` as `%2B` `%2F` `%3D`.
    /// - `key=base64:<data>` is base64-decoded after percent-decoding.
    /// - `user:pass@` becomes Basic auth and is removed from the URI.
    /// - One trailing `/` is stripped from the path.
    ///
    /// # Errors
    /// [`GripUrlError`] for anything malformed: not a URL, a scheme other than
    /// http(s), duplicate or empty parameters, a bad key, `iss` without `key`,
    /// or both `user:pass@` and `key`.
    pub fn parse(input: &str) -> Result<Self, GripUrlError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(GripUrlError::Empty);
        }
        let mut url = Url::parse(input)?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(GripUrlError::UnsupportedScheme(url.scheme().to_owned()));
        }

        let params = parse_query(url.query().unwrap_or(""))?;

        let user = if url.username().is_empty() {
            None
        } else {
            let user = percent_decode(url.username().as_bytes())
                .decode_utf8()
                .map_err(|_| GripUrlError::NotUtf8("user name"))?
                .into_owned();
            if user.contains(':') {
                return Err(GripUrlError::ColonInUser);
            }
            Some(user)
        };
        let pass = url
            .password()
            .map(|p| Key::from_bytes(percent_decode(p.as_bytes()).collect::<Vec<u8>>()));

        let auth = match (params.iss, params.key, user, pass) {
            (_, Some(_), Some(_), _) | (_, Some(_), None, Some(_)) => {
                return Err(GripUrlError::ConflictingAuth)
            }
            (Some(_), None, _, _) => return Err(GripUrlError::IssWithoutKey),
            (Some(iss), Some(key), None, None) => ControlAuth::Jwt { iss, key },
            (None, Some(key), None, None) => {
                if !key.expose_bytes().iter().all(|b| matches!(b, 0x21..=0x7e)) {
                    return Err(GripUrlError::InvalidBearerToken);
                }
                ControlAuth::Bearer(key)
            }
            (None, None, Some(user), pass) => ControlAuth::Basic {
                user,
                pass: pass.unwrap_or_else(|| Key::from_bytes(Vec::new())),
            },
            // A password with an empty user name: Basic auth with user "".
            (None, None, None, Some(pass)) => ControlAuth::Basic {
                user: String::new(),
                pass,
            },
            (None, None, None, None) => ControlAuth::None,
        };

        // These setters only fail on cannot-be-a-base URLs, which http(s)
        // URLs never are; ignoring the unit error keeps this path panic-free.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.set_fragment(None);

        let mut control_uri = url.as_str().to_owned();
        if control_uri.ends_with('/') {
            control_uri.pop();
        }
        let publish_url = Url::parse(&format!("{control_uri}/publish/"))?;

        Ok(Self {
            control_uri,
            publish_url,
            auth,
            verify_iss: params.verify_iss,
            verify_key: params.verify_key,
        })
    }

    /// Parses a comma-separated list of GRIP_URLs, as in
    /// `GRIP_URL=http://pushpin-a:5561,http://pushpin-b:5561`. Whitespace
    /// around entries is ignored; a comma inside a URL must be written `%2C`.
    ///
    /// # Errors
    /// [`GripUrlListError::Empty`] when there is no entry, or
    /// [`GripUrlListError::Entry`] naming the first bad one (empty entries
    /// such as in `a,,b` count as bad).
    pub fn parse_list(input: &str) -> Result<Vec<Self>, GripUrlListError> {
        if input.trim().is_empty() {
            return Err(GripUrlListError::Empty);
        }
        input
            .split(',')
            .enumerate()
            .map(|(index, part)| {
                Self::parse(part).map_err(|source| GripUrlListError::Entry { index, source })
            })
            .collect()
    }

    /// The control URI: no query, no user info, no trailing `/`.
    pub fn control_uri(&self) -> &str {
        &self.control_uri
    }

    /// Where publishes go: `<control_uri>/publish/`.
    pub fn publish_url(&self) -> &Url {
        &self.publish_url
    }

    /// How publishes authenticate.
    pub fn auth(&self) -> &ControlAuth {
        &self.auth
    }

    /// The expected `iss` of `Grip-Sig` tokens (`verify-iss`), if given.
    pub fn verify_iss(&self) -> Option<&str> {
        self.verify_iss.as_deref()
    }

    /// The key that signs `Grip-Sig` tokens (`verify-key`), if given.
    pub fn verify_key(&self) -> Option<&Key> {
        self.verify_key.as_ref()
    }
}

impl FromStr for GripUrl {
    type Err = GripUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for GripUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.control_uri)?;
        match &self.auth {
            ControlAuth::None => {}
            ControlAuth::Basic { user, .. } => write!(f, " (basic auth as {user:?})")?,
            ControlAuth::Bearer(_) => f.write_str(" (bearer token)")?,
            ControlAuth::Jwt { iss, .. } => write!(f, " (jwt, iss {iss:?})")?,
        }
        if let Some(iss) = &self.verify_iss {
            write!(f, " (verify-iss {iss:?})")?;
        }
        Ok(())
    }
}

/// Percent-decodes one query component, with `+` meaning a space as in
/// application/x-www-form-urlencoded.
fn form_decode(raw: &str) -> Vec<u8> {
    let spaced = raw.replace('+', " ");
    percent_decode(spaced.as_bytes()).collect()
}

fn parse_query(query: &str) -> Result<Params, GripUrlError> {
    let mut params = Params::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_decode(raw_name);
        let value = form_decode(raw_value);
        match name.as_slice() {
            b"iss" => set_once(&mut params.iss, PARAM_ISS, text_param(PARAM_ISS, value)?)?,
            b"verify-iss" => set_once(
                &mut params.verify_iss,
                PARAM_VERIFY_ISS,
                text_param(PARAM_VERIFY_ISS, value)?,
            )?,
            b"key" => set_once(&mut params.key, PARAM_KEY, key_param(PARAM_KEY, value)?)?,
            b"verify-key" => set_once(
                &mut params.verify_key,
                PARAM_VERIFY_KEY,
                key_param(PARAM_VERIFY_KEY, value)?,
            )?,
            other => {
                log::warn!(
                    "ignoring unknown GRIP URL parameter {:?}",
                    String::from_utf8_lossy(other)
                );
            }
        }
    }
    Ok(params)
}

fn set_once<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), GripUrlError> {
    if slot.is_some() {
        return Err(GripUrlError::DuplicateParameter(name));
    }
    *slot = Some(value);
    Ok(())
}

fn text_param(name: &'static str, value: Vec<u8>) -> Result<String, GripUrlError> {
    if value.is_empty() {
        return Err(GripUrlError::EmptyParameter(name));
    }
    String::from_utf8(value).map_err(|_| GripUrlError::NotUtf8(name))
}

fn key_param(name: &'static str, value: Vec<u8>) -> Result<Key, GripUrlError> {
    if value.is_empty() {
        return Err(GripUrlError::EmptyParameter(name));
    }
    match value.strip_prefix(b"base64:") {
        Some(b64) => {
            let b64 = std::str::from_utf8(b64).map_err(|_| GripUrlError::BadKey {
                param: name,
                source: KeyError::BadBase64 { hint: "" },
            })?;
            Key::parse(&format!("base64:{b64}")).map_err(|source| GripUrlError::BadKey {
                param: name,
                source,
            })
        }
        // A raw key is taken byte for byte, so a binary key percent-encoded
        // in the URL survives even when it is not UTF-8.
        None => Ok(Key::from_bytes(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    fn jwt_parts(g: &GripUrl) -> (&str, &[u8]) {
        match g.auth() {
            ControlAuth::Jwt { iss, key } => (iss.as_str(), key.expose_bytes()),
            other => panic!("expected jwt auth, got {other:?}"),
        }
    }

    #[test]
    fn plain_local_pushpin() {
        let g = GripUrl::parse("http://localhost:5561").unwrap();
        assert_eq!(g.control_uri(), "http://localhost:5561");
        assert_eq!(g.publish_url().as_str(), "http://localhost:5561/publish/");
        assert!(matches!(g.auth(), ControlAuth::None));
        assert!(g.verify_iss().is_none() && g.verify_key().is_none());
    }

    #[test]
    fn strips_exactly_one_trailing_slash() {
        let g = GripUrl::parse("http://localhost:5561/").unwrap();
        assert_eq!(g.control_uri(), "http://localhost:5561");
        let g = GripUrl::parse("http://h/realm/x/").unwrap();
        assert_eq!(g.publish_url().as_str(), "http://h/realm/x/publish/");
        let g = GripUrl::parse("http://h/realm/x//").unwrap();
        assert_eq!(g.control_uri(), "http://h/realm/x/");
    }

    #[test]
    fn fanout_realm_with_jwt() {
        let key = [0xfbu8, 0xff, 0x00, 0x10];
        let b64 = base64::engine::general_purpose::STANDARD.encode(key); // "+/8AEA=="
        let enc: String = url::form_urlencoded::byte_serialize(b64.as_bytes()).collect();
        let g = GripUrl::parse(&format!(
            "https://api.fanout.io/realm/myrealm?iss=myrealm&key=base64:{enc}"
        ))
        .unwrap();
        assert_eq!(g.control_uri(), "https://api.fanout.io/realm/myrealm");
        assert_eq!(jwt_parts(&g), ("myrealm", &key[..]));
    }

    #[test]
    fn raw_plus_in_key_is_a_clear_error() {
        let err = GripUrl::parse("https://h/realm/r?iss=r&key=base64:+/8AEA==").unwrap_err();
        assert!(matches!(err, GripUrlError::BadKey { param: "key", .. }));
        assert!(err.to_string().contains("%2B"), "{err}");
        assert!(!err.to_string().contains("8AEA"), "{err}");
    }

    #[test]
    fn fastly_token_with_verify_iss() {
        let g =
            GripUrl::parse("https://api.fastly.com/service/SID?key=TOKEN123&verify-iss=fastly:SID")
                .unwrap();
        assert_eq!(g.control_uri(), "https://api.fastly.com/service/SID");
        assert!(matches!(g.auth(), ControlAuth::Bearer(k) if k.expose_bytes() == b"TOKEN123"));
        assert_eq!(g.verify_iss(), Some("fastly:SID"));
    }

    #[test]
    fn verify_key_is_kept() {
        let g =
            GripUrl::parse("http://localhost:5561?verify-iss=pushpin&verify-key=changeme").unwrap();
        assert_eq!(g.verify_iss(), Some("pushpin"));
        assert_eq!(g.verify_key().unwrap().expose_bytes(), b"changeme");
        assert_eq!(g.publish_url().query(), None);
        let g = GripUrl::parse("http://localhost:5561?verify-key=base64:Y2hhbmdlbWU%3D").unwrap();
        assert_eq!(g.verify_key().unwrap().expose_bytes(), b"changeme");
    }

    #[test]
    fn basic_auth_is_removed_from_uri() {
        let g = GripUrl::parse("https://us%40er:p%3Ass@example.com:8443/base/").unwrap();
        assert_eq!(g.control_uri(), "https://example.com:8443/base");
        match g.auth() {
            ControlAuth::Basic { user, pass } => {
                assert_eq!(user, "us@er");
                assert_eq!(pass.expose_bytes(), b"p:ss");
            }
            other => panic!("{other:?}"),
        }
        let g = GripUrl::parse("http://user@h").unwrap();
        assert!(
            matches!(g.auth(), ControlAuth::Basic { user, pass } if user == "user" && pass.is_empty())
        );
    }

    #[test]
    fn all_query_parameters_are_dropped() {
        let g = GripUrl::parse("http://h:1/p?foo=bar&iss=a&key=k#frag").unwrap();
        assert_eq!(g.control_uri(), "http://h:1/p");
        assert_eq!(g.publish_url().as_str(), "http://h:1/p/publish/");
    }

    #[test]
    fn malformed_inputs() {
        use GripUrlError as E;
        type Check = fn(&E) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, E::Empty)),
            ("   ", |e| matches!(e, E::Empty)),
            ("localhost:5561", |e| matches!(e, E::UnsupportedScheme(_))),
            ("not a url", |e| matches!(e, E::InvalidUrl(_))),
            (
                "ftp://h",
                |e| matches!(e, E::UnsupportedScheme(s) if s == "ftp"),
            ),
            ("http://", |e| matches!(e, E::InvalidUrl(_))),
            ("http://h?key=", |e| matches!(e, E::EmptyParameter("key"))),
            ("http://h?key=base64:", |e| {
                matches!(
                    e,
                    E::BadKey {
                        source: KeyError::Empty,
                        ..
                    }
                )
            }),
            ("http://h?key=base64:%25%25", |e| {
                matches!(e, E::BadKey { .. })
            }),
            ("http://h?iss=a", |e| matches!(e, E::IssWithoutKey)),
            ("http://h?iss=&key=k", |e| {
                matches!(e, E::EmptyParameter("iss"))
            }),
            ("http://h?key=a&key=b", |e| {
                matches!(e, E::DuplicateParameter("key"))
            }),
            ("http://u:p@h?key=k", |e| matches!(e, E::ConflictingAuth)),
            ("http://u%3Ax:p@h", |e| matches!(e, E::ColonInUser)),
            ("http://h?key=a%20b", |e| matches!(e, E::InvalidBearerToken)),
            ("http://h?iss=%FF&key=k", |e| matches!(e, E::NotUtf8("iss"))),
        ];
        for (input, check) in cases {
            let err = GripUrl::parse(input).unwrap_err();
            assert!(check(&err), "{input:?} gave {err:?}");
        }
    }

    #[test]
    fn secrets_never_shown() {
        let g = GripUrl::parse("https://user:hunter2@h/x?verify-key=sigsecret").unwrap();
        let g2 = GripUrl::parse("https://h/x?iss=i&key=jwtsecret&verify-iss=v").unwrap();
        let g3 = GripUrl::parse("https://h/x?key=bearersecret").unwrap();
        for shown in [
            format!("{g} {g:?}"),
            format!("{g2} {g2:?}"),
            format!("{g3} {g3:?}"),
        ] {
            for secret in ["hunter2", "sigsecret", "jwtsecret", "bearersecret"] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
        assert_eq!(
            g2.to_string(),
            "https://h/x (jwt, iss \"i\") (verify-iss \"v\")"
        );
    }

    #[test]
    fn list_of_urls() {
        let list = GripUrl::parse_list(" http://a:5561 ,http://b:5561/?key=t\n").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].control_uri(), "http://a:5561");
        assert_eq!(list[1].control_uri(), "http://b:5561");
        assert!(matches!(
            GripUrl::parse_list(" "),
            Err(GripUrlListError::Empty)
        ));
        let err = GripUrl::parse_list("http://a,,http://b").unwrap_err();
        assert!(matches!(
            err,
            GripUrlListError::Entry {
                index: 1,
                source: GripUrlError::Empty
            }
        ));
        assert!(err.to_string().contains("#2"));
    }

    fn enc(bytes: &[u8]) -> String {
        percent_encoding::percent_encode(bytes, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = GripUrl::parse(&s);
            let _ = GripUrl::parse_list(&s);
        }

        #[test]
        fn parse_never_panics_on_url_like_input(
            s in "(https?://)?[a-z0-9:@%/?&=+#.,;-]{0,60}"
        ) {
            let _ = GripUrl::parse(&s);
            let _ = GripUrl::parse_list(&s);
        }

        #[test]
        fn round_trip_jwt_config(
            host in "[a-z][a-z0-9]{0,10}",
            port in 1u16..,
            // No "." or ".." segments: URL parsing resolves those away.
            segments in proptest::collection::vec("[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,7}", 0..4),
            trailing_slash in any::<bool>(),
            iss in "\\PC{1,20}",
            key in proptest::collection::vec(any::<u8>(), 1..48),
            b64 in any::<bool>(),
            verify_iss in proptest::option::of("\\PC{1,20}"),
            verify_key in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..48)),
        ) {
            let mut path: String = segments.iter().map(|s| format!("/{s}")).collect();
            let expected_uri = format!("http://{host}:{port}{path}");
            if trailing_slash { path.push('/'); }
            let key_param = if b64 {
                enc(format!("base64:{}", base64::engine::general_purpose::STANDARD.encode(&key)).as_bytes())
            } else {
                enc(&key)
            };
            let mut s = format!("http://{host}:{port}{path}?iss={}&key={key_param}", enc(iss.as_bytes()));
            if let Some(v) = &verify_iss { s.push_str(&format!("&verify-iss={}", enc(v.as_bytes()))); }
            if let Some(v) = &verify_key { s.push_str(&format!("&verify-key={}", enc(v))); }

            let key_is_raw_base64_prefixed = !b64 && key.starts_with(b"base64:");
            let g = GripUrl::parse(&s);
            prop_assume!(!key_is_raw_base64_prefixed);
            let g = g.unwrap();
            // Url normalises a default port away.
            let expected_uri = if port == 80 { expected_uri.replace(":80", "") } else { expected_uri };
            prop_assert_eq!(g.control_uri(), expected_uri.as_str());
            prop_assert_eq!(g.publish_url().as_str(), format!("{expected_uri}/publish/"));
            prop_assert_eq!(jwt_parts(&g), (iss.as_str(), key.as_slice()));
            prop_assert_eq!(g.verify_iss(), verify_iss.as_deref());
            prop_assert_eq!(g.verify_key().map(|k| k.expose_bytes().to_vec()), verify_key);
        }

        #[test]
        fn round_trip_basic_auth(
            user in "[^:]{1,12}",
            pass in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            let s = format!("https://{}:{}@example.org/x/", enc(user.as_bytes()), enc(&pass));
            let g = GripUrl::parse(&s).unwrap();
            prop_assert_eq!(g.control_uri(), "https://example.org/x");
            match g.auth() {
                ControlAuth::Basic { user: u, pass: p } => {
                    prop_assert_eq!(u, &user);
                    prop_assert_eq!(p.expose_bytes(), pass.as_slice());
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
