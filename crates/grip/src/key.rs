//! Secret key material that never prints itself.

use std::fmt;

use base64::Engine as _;

/// Why a key string could not be turned into a [`Key`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key (after any `base64:` prefix) was empty.
    #[error("key is empty")]
    Empty,
    /// The part after `base64:` is not valid base64.
    ///
    /// The message never repeats the key itself.
    #[error("key after `base64:` is not valid base64{hint}")]
    BadBase64 {
        /// Extra advice, such as the `+`-became-a-space trap in URLs.
        hint: &'static str,
    },
}

/// A shared secret, such as a GRIP_URL `key` or Pushpin's `sig_key`.
///
/// Holds raw bytes. `Debug` prints only `Key(<redacted>)`, and there is no
/// `Display`, so a key cannot leak through logging by accident.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// Reads a key written the way Pushpin's configuration and GRIP_URL write
    /// them: `base64:<data>` is base64-decoded (standard or URL-safe alphabet,
    /// padding optional), anything else is taken as the UTF-8 bytes of the
    /// string.
    ///
    /// ```
    /// use grip::Key;
    /// let k = Key::parse("base64:aGVsbG8=").unwrap();
    /// assert_eq!(k.expose_bytes(), b"hello");
    /// assert_eq!(Key::parse("changeme").unwrap().expose_bytes(), b"changeme");
    /// assert!(Key::parse("").is_err());
    /// ```
    ///
    /// # Errors
    /// [`KeyError::Empty`] for an empty key, [`KeyError::BadBase64`] when the
    /// `base64:` part does not decode.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let bytes = match s.strip_prefix("base64:") {
            Some(b64) => decode_base64(b64)?,
            None => s.as_bytes().to_vec(),
        };
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self(bytes))
    }

    /// The raw key bytes. The name is a reminder that they are secret.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes in the key.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key has no bytes. [`Key::parse`] never returns such a key,
    /// but [`Key::from_bytes`] can.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Decodes base64 in either alphabet, with or without padding.
///
/// Both alphabets are accepted because keys get pasted from tools that use
/// either; they agree on 62 of 64 symbols and never conflict.
fn decode_base64(s: &str) -> Result<Vec<u8>, KeyError> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;

    if s.contains(' ') {
        // Query-string decoding turns a raw `+` into a space, which is the
        // usual way a GRIP_URL key gets mangled.
        return Err(KeyError::BadBase64 {
            hint: " (it contains a space: a raw `+` in a URL query reads as a space, so write `+` as %2B, `/` as %2F and `=` as %3D)",
        });
    }
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, config);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);
    let engine = if s.contains(['-', '_']) {
        &url_safe
    } else {
        &standard
    };
    engine
        .decode(s)
        .map_err(|_| KeyError::BadBase64 { hint: "" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use proptest::prelude::*;

    #[test]
    fn debug_hides_bytes() {
        let k = Key::from_bytes(b"supersecret".to_vec());
        let shown = format!("{k:?}");
        assert!(!shown.contains("supersecret"));
        assert_eq!(shown, "Key(<redacted>)");
    }

    #[test]
    fn base64_variants() {
        // 0xfb 0xff encodes as "+/8=" (standard) or "-_8" (URL-safe).
        assert_eq!(
            Key::parse("base64:+/8=").unwrap().expose_bytes(),
            &[0xfb, 0xff]
        );
        assert_eq!(
            Key::parse("base64:+/8").unwrap().expose_bytes(),
            &[0xfb, 0xff]
        );
        assert_eq!(
            Key::parse("base64:-_8").unwrap().expose_bytes(),
            &[0xfb, 0xff]
        );
        assert_eq!(
            Key::parse("base64:-_8=").unwrap().expose_bytes(),
            &[0xfb, 0xff]
        );
    }

    #[test]
    fn base64_errors() {
        assert!(matches!(Key::parse("base64:"), Err(KeyError::Empty)));
        assert!(matches!(
            Key::parse("base64:!!!"),
            Err(KeyError::BadBase64 { .. })
        ));
        assert!(matches!(
            Key::parse("base64:+-"),
            Err(KeyError::BadBase64 { .. })
        ));
        let err = Key::parse("base64: /8=").unwrap_err();
        assert!(err.to_string().contains("%2B"), "{err}");
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip_through_either_alphabet(bytes in proptest::collection::vec(any::<u8>(), 1..64)) {
            let std = format!("base64:{}", STANDARD.encode(&bytes));
            let k = Key::parse(&std).unwrap();
            prop_assert_eq!(k.expose_bytes(), bytes.as_slice());
            let url = format!("base64:{}", URL_SAFE_NO_PAD.encode(&bytes));
            let k = Key::parse(&url).unwrap();
            prop_assert_eq!(k.expose_bytes(), bytes.as_slice());
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = Key::parse(&s);
            let _ = Key::parse(&format!("base64:{s}"));
        }
    }
}
