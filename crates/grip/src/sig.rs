//! `Grip-Sig` validation: proof that a request came through a trusted proxy.
//!
//! Pushpin signs each proxied request with an HS256 JWT carrying `iss` and
//! `exp`. A request whose token does not verify should be treated as if the
//! header were absent, that is, as a request straight from a client.

use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::grip_url::GripUrl;
use crate::key::Key;

/// Why a `Grip-Sig` token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The token's `exp` is in the past.
    #[error("Grip-Sig token has expired")]
    Expired,
    /// The signature does not match the key.
    #[error("Grip-Sig token has a bad signature")]
    BadSignature,
    /// The token's `iss` is not the expected issuer.
    #[error("Grip-Sig token has the wrong issuer")]
    WrongIssuer,
    /// A required claim (`exp`, or `iss` when an issuer is expected) is missing.
    #[error("Grip-Sig token lacks the `{0}` claim")]
    MissingClaim(String),
    /// The token is signed with another algorithm than HS256.
    #[error("Grip-Sig token is not signed with HS256")]
    WrongAlgorithm,
    /// The token is not a well-formed JWT.
    #[error("Grip-Sig token is malformed")]
    Malformed,
}

/// The claims of a verified `Grip-Sig` token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigClaims {
    /// The issuer, when the token has one.
    pub iss: Option<String>,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
}

/// What is read from the token before validation; `exp` is optional here so
/// that a token without it is reported as such rather than as malformed.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    exp: Option<u64>,
}

/// Checks `Grip-Sig` tokens against one key and, optionally, one issuer.
///
/// `Debug` does not show the key.
#[derive(Clone)]
pub struct SigVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for SigVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigVerifier")
            .field("key", &"<redacted>")
            .field("iss", &self.validation.iss)
            .field("leeway_secs", &self.validation.leeway)
            .finish()
    }
}

impl SigVerifier {
    /// A verifier for HS256 tokens signed with `key`. When `expected_iss` is
    /// given, tokens must carry exactly that `iss`. No clock leeway is
    /// allowed unless set with [`SigVerifier::with_leeway`].
    pub fn new(key: &Key, expected_iss: Option<&str>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        // Pushpin's tokens carry no audience; one that does was not meant
        // for us as a Grip-Sig.
        validation.validate_aud = false;
        match expected_iss {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                // jsonwebtoken checks `iss` only when present; make it required
                // so a token without one cannot slip past the issuer check.
                validation.set_required_spec_claims(&["exp", "iss"]);
            }
            None => validation.set_required_spec_claims(&["exp"]),
        }
        Self {
            key: DecodingKey::from_secret(key.expose_bytes()),
            validation,
        }
    }

    /// The verifier a GRIP_URL describes with `verify-key` and `verify-iss`,
    /// or `None` when it has no `verify-key`.
    pub fn from_grip_url(url: &GripUrl) -> Option<Self> {
        url.verify_key().map(|key| Self::new(key, url.verify_iss()))
    }

    /// Accepts tokens that expired up to `secs` seconds ago, to allow for
    /// clock skew between proxy and origin.
    #[must_use]
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.validation.leeway = secs;
        self
    }

    /// Verifies a `Grip-Sig` header value.
    ///
    /// # Errors
    /// [`SigError`] saying why the token is not acceptable.
    pub fn verify(&self, token: &str) -> Result<SigClaims, SigError> {
        let data = jsonwebtoken::decode::<RawClaims>(token.trim(), &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => SigError::Expired,
                ErrorKind::InvalidSignature => SigError::BadSignature,
                ErrorKind::InvalidIssuer => SigError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(c) => SigError::MissingClaim(c.clone()),
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                    SigError::WrongAlgorithm
                }
                _ => SigError::Malformed,
            })?;
        // The validation requires `exp`, so this only guards against a
        // change in the JWT library's behaviour.
        let exp = data
            .claims
            .exp
            .ok_or_else(|| SigError::MissingClaim("exp".into()))?;
        Ok(SigClaims {
            iss: data.claims.iss,
            exp,
        })
    }
}

/// Verifies a `Grip-Sig` token: HS256 signature with `key`, `exp` present and
/// not past, and `iss` equal to `expected_iss` when given.
///
/// ```
/// use grip::{validate_sig, Key, SigError};
/// let key = Key::from_bytes(b"changeme".to_vec());
/// assert_eq!(validate_sig("not.a.jwt", &key, Some("pushpin")), Err(SigError::Malformed));
/// ```
///
/// # Errors
/// [`SigError`] saying why the token is not acceptable.
pub fn validate_sig(
    token: &str,
    key: &Key,
    expected_iss: Option<&str>,
) -> Result<SigClaims, SigError> {
    SigVerifier::new(key, expected_iss).verify(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;
    use std::time::{SystemTime, UNIX_EPOCH};

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(claims: serde_json::Value, key: &[u8], alg: Algorithm) -> String {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key)).unwrap()
    }

    fn hs(claims: serde_json::Value) -> String {
        token(claims, b"changeme", Algorithm::HS256)
    }

    fn key() -> Key {
        Key::from_bytes(b"changeme".to_vec())
    }

    #[test]
    fn valid_pushpin_token() {
        let exp = now() + 3600;
        let claims = validate_sig(
            &hs(json!({"iss":"pushpin","exp":exp})),
            &key(),
            Some("pushpin"),
        )
        .unwrap();
        assert_eq!(
            claims,
            SigClaims {
                iss: Some("pushpin".into()),
                exp
            }
        );
        // Without an expected issuer any issuer is fine.
        assert!(validate_sig(&hs(json!({"iss":"other","exp":exp})), &key(), None).is_ok());
        assert!(validate_sig(&hs(json!({"exp":exp})), &key(), None).is_ok());
    }

    #[test]
    fn rejections() {
        let exp = now() + 3600;
        let cases = [
            (
                hs(json!({"iss":"pushpin","exp":now() - 10})),
                SigError::Expired,
            ),
            (
                token(
                    json!({"iss":"pushpin","exp":exp}),
                    b"wrong",
                    Algorithm::HS256,
                ),
                SigError::BadSignature,
            ),
            (hs(json!({"iss":"evil","exp":exp})), SigError::WrongIssuer),
            (hs(json!({"exp":exp})), SigError::MissingClaim("iss".into())),
            (
                hs(json!({"iss":"pushpin"})),
                SigError::MissingClaim("exp".into()),
            ),
            (
                token(
                    json!({"iss":"pushpin","exp":exp}),
                    b"changeme",
                    Algorithm::HS512,
                ),
                SigError::WrongAlgorithm,
            ),
            ("".to_owned(), SigError::Malformed),
            ("a.b.c".to_owned(), SigError::Malformed),
        ];
        for (t, expected) in cases {
            assert_eq!(validate_sig(&t, &key(), Some("pushpin")), Err(expected));
        }
    }

    #[test]
    fn unsigned_token_is_rejected() {
        // {"alg":"none"} . {"iss":"pushpin","exp":9999999999} . (no signature)
        let t = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJwdXNocGluIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(validate_sig(t, &key(), Some("pushpin")).is_err());
    }

    #[test]
    fn leeway() {
        let t = hs(json!({"iss":"pushpin","exp":now() - 10}));
        let v = SigVerifier::new(&key(), Some("pushpin"));
        assert_eq!(v.verify(&t), Err(SigError::Expired));
        assert!(v.with_leeway(60).verify(&t).is_ok());
    }

    #[test]
    fn from_grip_url() {
        let g =
            GripUrl::parse("http://localhost:5561?verify-iss=pushpin&verify-key=changeme").unwrap();
        let v = SigVerifier::from_grip_url(&g).unwrap();
        assert!(v
            .verify(&hs(json!({"iss":"pushpin","exp":now() + 60})))
            .is_ok());
        assert!(!format!("{v:?}").contains("changeme"));
        let g = GripUrl::parse("http://localhost:5561").unwrap();
        assert!(SigVerifier::from_grip_url(&g).is_none());
    }
}
