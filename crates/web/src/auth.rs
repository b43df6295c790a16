//! Write authorization. Reads are public; score-adds, creations and
//! deletions can require a Bearer credential: one of the static API keys, or
//! an HS256 JWT signed with the write key. With neither configured, writes
//! are open, which suits local runs only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// What a write must present. `Debug` shows how many keys, never a key.
#[derive(Clone, Default)]
pub struct WriteAuth {
    /// SHA-256 of each API key: compared in constant time, and the keys
    /// themselves are not kept in memory.
    api_key_digests: Vec<[u8; 32]>,
    jwt: Option<JwtAuth>,
}

#[derive(Clone)]
struct JwtAuth {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    issuer: Option<String>,
}

/// The claims of a write token.
#[derive(Debug, Serialize, Deserialize)]
pub struct WriteClaims {
    /// Who holds the token, e.g. a game server's name.
    pub sub: String,
    /// When the token was issued, in seconds since the epoch.
    pub iat: u64,
    /// When it expires, in seconds since the epoch.
    pub exp: u64,
    /// Who issued it; required to match `WRITE_JWT_ISS` when that is set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iss: Option<String>,
    /// Must be `write`.
    pub scope: String,
}

impl std::fmt::Debug for WriteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteAuth")
            .field("api_keys", &self.api_key_digests.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl WriteAuth {
    /// Write access for holders of `api_keys` and of JWTs signed with
    /// `jwt_key` (and, when given, issued by `issuer`).
    pub fn new(api_keys: &[String], jwt_key: Option<&[u8]>, issuer: Option<String>) -> Self {
        let jwt = jwt_key.map(|key| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.leeway = 5;
            validation.validate_aud = false;
            match &issuer {
                Some(iss) => {
                    validation.set_issuer(&[iss]);
                    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
                }
                None => validation.set_required_spec_claims(&["exp", "sub"]),
            }
            JwtAuth {
                decoding: DecodingKey::from_secret(key),
                encoding: EncodingKey::from_secret(key),
                validation,
                issuer: issuer.clone(),
            }
        });
        Self {
            api_key_digests: api_keys.iter().map(|k| digest(k)).collect(),
            jwt,
        }
    }

    /// Whether any credential is configured (API keys or a JWT key).
    pub fn is_enabled(&self) -> bool {
        !self.api_key_digests.is_empty() || self.jwt.is_some()
    }

    /// Checks a request's `Authorization: Bearer <credential>`.
    pub fn authorize(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if !self.is_enabled() {
            return Ok(());
        }
        let value = req
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "this write needs an Authorization: Bearer credential",
            ))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <credential>`",
            ))?;
        self.check(token)
    }

    fn check(&self, token: &str) -> Result<(), ApiError> {
        let presented = digest(token);
        // Every key is compared, so the time taken says nothing about which
        // (if any) matched.
        let matched = self
            .api_key_digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&presented));
        if bool::from(matched) {
            return Ok(());
        }
        if let Some(jwt) = &self.jwt {
            if let Ok(data) =
                jsonwebtoken::decode::<WriteClaims>(token, &jwt.decoding, &jwt.validation)
            {
                if data.claims.scope == "write" {
                    return Ok(());
                }
            }
        }
        Err(ApiError::InvalidCredential)
    }

    /// Mints a write token for `subject`, valid for `ttl` (the
    /// `leaderboard-web token` command). `None` when no JWT key is set.
    pub fn mint(
        &self,
        subject: &str,
        ttl: Duration,
    ) -> Option<Result<String, jsonwebtoken::errors::Error>> {
        let jwt = self.jwt.as_ref()?;
        let iat = now();
        let claims = WriteClaims {
            sub: subject.to_owned(),
            iat,
            exp: iat + ttl.as_secs(),
            iss: jwt.issuer.clone(),
            scope: "write".into(),
        };
        Some(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &jwt.encoding,
        ))
    }
}

/// Proof that a request may write: the extractor checks the request
/// against the [`WriteAuth`] registered as app data. Handlers take it as
/// their first argument, so a refused write is refused before its body is
/// read.
#[derive(Debug)]
pub struct WriteAccess;

impl FromRequest for WriteAccess {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Without the app data nothing can be checked: refuse, never open.
        let result = match req.app_data::<WriteAuth>() {
            Some(auth) => auth.authorize(req).map(|()| WriteAccess),
            None => Err(ApiError::Internal(anyhow::anyhow!(
                "write authorization is not registered with the app"
            ))),
        };
        ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn req(auth: Option<&str>) -> HttpRequest {
        let mut r = TestRequest::post();
        if let Some(a) = auth {
            r = r.insert_header((header::AUTHORIZATION, a));
        }
        r.to_http_request()
    }

    #[test]
    fn open_when_unconfigured() {
        assert!(WriteAuth::default().authorize(&req(None)).is_ok());
    }

    #[test]
    fn api_keys() {
        let auth = WriteAuth::new(
            &["k-one-0123456789".into(), "k-two-0123456789".into()],
            None,
            None,
        );
        assert!(auth
            .authorize(&req(Some("Bearer k-two-0123456789")))
            .is_ok());
        assert!(matches!(
            auth.authorize(&req(None)),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            auth.authorize(&req(Some("Basic abc"))),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            auth.authorize(&req(Some("Bearer nope"))),
            Err(ApiError::InvalidCredential)
        ));
        assert!(!format!("{auth:?}").contains("k-one"));
    }

    #[test]
    fn minted_tokens_verify_and_others_do_not() {
        let auth = WriteAuth::new(&[], Some(b"a-long-write-secret"), Some("game".into()));
        let token = auth
            .mint("server-1", Duration::from_secs(60))
            .unwrap()
            .unwrap();
        assert!(auth
            .authorize(&req(Some(&format!("Bearer {token}"))))
            .is_ok());

        let other = WriteAuth::new(&[], Some(b"another-secret"), Some("game".into()));
        let forged = other
            .mint("server-1", Duration::from_secs(60))
            .unwrap()
            .unwrap();
        assert!(auth
            .authorize(&req(Some(&format!("Bearer {forged}"))))
            .is_err());

        let wrong_iss = WriteAuth::new(&[], Some(b"a-long-write-secret"), Some("else".into()));
        let t = wrong_iss
            .mint("x", Duration::from_secs(60))
            .unwrap()
            .unwrap();
        assert!(auth.authorize(&req(Some(&format!("Bearer {t}")))).is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let auth = WriteAuth::new(&[], Some(b"secret-secret"), None);
        let claims = WriteClaims {
            sub: "x".into(),
            iat: 1,
            exp: 2,
            iss: None,
            scope: "write".into(),
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"secret-secret"),
        )
        .unwrap();
        assert!(matches!(
            auth.authorize(&req(Some(&format!("Bearer {t}")))),
            Err(ApiError::InvalidCredential)
        ));
    }
}
