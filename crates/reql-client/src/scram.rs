//! SCRAM-SHA-256 (RFC 7677) as RethinkDB's V1_0 handshake uses it: the
//! primitives both sides compute, shared by this client and the dev server.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// HMAC-SHA-256 of `msg` under `key`.
pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(msg);
            m.finalize().into_bytes().into()
        }
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => [0u8; 32],
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The salted password, `Hi(password, salt, iterations)`: PBKDF2 with
/// HMAC-SHA-256.
pub fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    salted
}

/// `ClientKey = HMAC(SaltedPassword, "Client Key")`.
pub fn client_key(salted: &[u8; 32]) -> [u8; 32] {
    hmac(salted, b"Client Key")
}

/// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
pub fn server_key(salted: &[u8; 32]) -> [u8; 32] {
    hmac(salted, b"Server Key")
}

/// A fresh random nonce, base64.
pub fn nonce() -> String {
    let mut b = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// A SCRAM user name with `,` and `=` escaped.
pub fn escape_user(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The `k=value` attributes of a SCRAM message.
pub fn attributes(message: &str) -> Vec<(char, &str)> {
    message
        .split(',')
        .filter_map(|p| {
            let mut chars = p.chars();
            let k = chars.next()?;
            Some((k, chars.as_str().strip_prefix('=')?))
        })
        .collect()
}

/// The attribute `k` of a parsed SCRAM message.
pub fn attribute<'a>(attrs: &[(char, &'a str)], k: char) -> Option<&'a str> {
    attrs.iter().find(|(a, _)| *a == k).map(|(_, v)| *v)
}

/// The client's side of one exchange, from its first message to the check
/// of the server's signature.
pub struct ClientExchange {
    client_first_bare: String,
    nonce: String,
    password: String,
    auth_message: String,
    server_signature: [u8; 32],
}

impl ClientExchange {
    /// Starts an exchange for `user`.
    pub fn new(user: &str, password: &str) -> Self {
        let nonce = nonce();
        Self {
            client_first_bare: format!("n={},r={nonce}", escape_user(user)),
            nonce,
            password: password.to_owned(),
            auth_message: String::new(),
            server_signature: [0; 32],
        }
    }

    /// The client-first message: `n,,n=user,r=nonce`.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// The client-final message for the server-first message, with the proof.
    pub fn client_final(&mut self, server_first: &str) -> Result<String, String> {
        let attrs = attributes(server_first);
        let (Some(nonce), Some(salt), Some(iterations)) = (
            attribute(&attrs, 'r'),
            attribute(&attrs, 's'),
            attribute(&attrs, 'i'),
        ) else {
            return Err(format!("malformed SCRAM message {server_first:?}"));
        };
        if !nonce.starts_with(&self.nonce) {
            return Err("the server's SCRAM nonce does not extend the client's".into());
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| "the server's SCRAM salt is not base64".to_owned())?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| "the server's SCRAM iteration count is not a number".to_owned())?;
        let salted = salted_password(&self.password, &salt, iterations);
        let client_key = client_key(&salted);
        let stored_key = sha256(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        self.auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac(&stored_key, self.auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        self.server_signature = hmac(&server_key(&salted), self.auth_message.as_bytes());
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message `v=signature`, which proves that the
    /// server knows the password too.
    pub fn verify(&self, server_final: &str) -> Result<(), String> {
        let attrs = attributes(server_final);
        match attribute(&attrs, 'v').map(|v| B64.decode(v)) {
            Some(Ok(v)) if v == self.server_signature => Ok(()),
            _ => Err("the server's SCRAM signature is wrong".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_example() {
        // RFC 7677, section 3, with the client's nonce fixed.
        let mut exchange = ClientExchange::new("user", "pencil");
        exchange.nonce = "rOprNGfwEbeRWgbNEkqO".into();
        exchange.client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO".into();
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = exchange.client_final(server_first).unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        exchange
            .verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(exchange.verify("v=AAAA").is_err());
    }

    #[test]
    fn user_names_are_escaped() {
        assert_eq!(escape_user("a,b=c"), "a=2Cb=3Dc");
    }
}
