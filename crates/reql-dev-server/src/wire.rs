//! The connection handshake: protocol magic numbers, the V1_0 JSON handshake with
//! SCRAM-SHA-256, and the legacy V0_4 handshake, with the messages and error
//! codes a RethinkDB 2.4 server sends.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;
use reql_client::scram::{
    attribute as attr, attributes as parse_attrs, client_key, hmac, nonce, salted_password,
    server_key, sha256,
};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const V0_3: u32 = 0x5f75_e83e;
const V0_4: u32 = 0x400c_2d20;
const V1_0: u32 = 0x34c2_bdc3;
const PROTOCOL_JSON: u32 = 0x7e69_70c7;

const SERVER_INFO: &str =
    "{\"max_protocol_version\":0,\"min_protocol_version\":0,\"server_version\":\"2.4.4\",\"success\":true}";
const UNSUPPORTED: &str = "ERROR: Received an unsupported protocol version. This port is for RethinkDB queries. Does your client driver version not match the server?\n";

/// Longest handshake message accepted; real ones are a few hundred bytes.
const MAX_MESSAGE: u64 = 16 * 1024;

/// PBKDF2 iterations for a password set at start-up (RethinkDB's default).
const PASSWORD_ITERATIONS: u32 = 4096;

/// The `admin` user's SCRAM credentials.
pub struct Auth {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: [u8; 32],
    server_key: [u8; 32],
    empty_password: bool,
}

impl Auth {
    pub fn new(password: &str) -> Auth {
        let mut salt = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        // RethinkDB stores the empty password with a single iteration.
        let iterations = if password.is_empty() {
            1
        } else {
            PASSWORD_ITERATIONS
        };
        let salted = salted_password(password, &salt, iterations);
        let stored_key = sha256(&client_key(&salted));
        let server_key = server_key(&salted);
        Auth {
            salt,
            iterations,
            stored_key,
            server_key,
            empty_password: password.is_empty(),
        }
    }
}

/// How the handshake ended.
pub enum Handshake {
    /// The client may send queries now.
    Ready,
    /// The connection must be closed (an error was sent, or the client left).
    Close,
}

async fn read_message<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut limited = r.take(MAX_MESSAGE);
    limited.read_until(0, &mut buf).await?;
    if buf.last() != Some(&0) {
        return Ok(None);
    }
    buf.pop();
    Ok(Some(buf))
}

fn error_json(msg: &str, code: u32) -> Vec<u8> {
    let mut s = serde_json::json!({"error": msg, "error_code": code, "success": false}).to_string();
    s.push('\0');
    s.into_bytes()
}

pub async fn handshake<R, W>(r: &mut R, w: &mut W, auth: &Auth) -> std::io::Result<Handshake>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut magic = [0u8; 4];
    if r.read_exact(&mut magic).await.is_err() {
        return Ok(Handshake::Close);
    }
    match u32::from_le_bytes(magic) {
        V1_0 => scram(r, w, auth).await,
        V0_3 | V0_4 => legacy(r, w, auth).await,
        _ => {
            let mut msg = UNSUPPORTED.as_bytes().to_vec();
            msg.push(0);
            w.write_all(&msg).await?;
            w.flush().await?;
            Ok(Handshake::Close)
        }
    }
}

async fn legacy<R, W>(r: &mut R, w: &mut W, auth: &Auth) -> std::io::Result<Handshake>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as u64;
    if len > MAX_MESSAGE {
        return Ok(Handshake::Close);
    }
    let mut key = vec![0u8; len as usize];
    r.read_exact(&mut key).await?;
    let mut proto = [0u8; 4];
    r.read_exact(&mut proto).await?;
    let reply: &str = if u32::from_le_bytes(proto) != PROTOCOL_JSON {
        "ERROR: Received an unsupported protocol. Only the JSON protocol is supported.\n"
    } else if !key.is_empty() || !auth.empty_password {
        "ERROR: Incorrect authorization key.\n"
    } else {
        "SUCCESS"
    };
    let mut msg = reply.as_bytes().to_vec();
    msg.push(0);
    w.write_all(&msg).await?;
    w.flush().await?;
    Ok(if reply == "SUCCESS" {
        Handshake::Ready
    } else {
        Handshake::Close
    })
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

async fn scram<R, W>(r: &mut R, w: &mut W, auth: &Auth) -> std::io::Result<Handshake>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut info = SERVER_INFO.as_bytes().to_vec();
    info.push(0);
    send(w, &info).await?;

    let Some(first) = read_message(r).await? else {
        return Ok(Handshake::Close);
    };
    let fail = |msg: &str, code: u32| error_json(msg, code);
    let first: serde_json::Value = match serde_json::from_slice(&first) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => {
            send(w, &fail("Invalid JSON object.", 8)).await?;
            return Ok(Handshake::Close);
        }
    };
    if first.get("protocol_version").and_then(|v| v.as_i64()) != Some(0) {
        send(w, &fail("Unsupported `protocol_version`.", 2)).await?;
        return Ok(Handshake::Close);
    }
    if first.get("authentication_method").and_then(|v| v.as_str()) != Some("SCRAM-SHA-256") {
        send(w, &fail("Unsupported `authentication_method`.", 4)).await?;
        return Ok(Handshake::Close);
    }
    let client_first = first
        .get("authentication")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let Some(bare) = client_first.strip_prefix("n,,") else {
        send(w, &fail("Invalid authentication message.", 3)).await?;
        return Ok(Handshake::Close);
    };
    let attrs = parse_attrs(bare);
    let (Some(user), Some(client_nonce)) = (attr(&attrs, 'n'), attr(&attrs, 'r')) else {
        send(w, &fail("Invalid authentication message.", 3)).await?;
        return Ok(Handshake::Close);
    };
    let user = user.replace("=2C", ",").replace("=3D", "=");
    let known = user == "admin";
    let (salt, iterations) = if known {
        (auth.salt.clone(), auth.iterations)
    } else {
        // An unknown user gets a made-up salt, so the exchange gives nothing away.
        let mut s = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut s);
        (s, PASSWORD_ITERATIONS)
    };
    let full_nonce = format!("{client_nonce}{}", nonce());
    let server_first = format!("r={full_nonce},s={},i={iterations}", B64.encode(&salt));
    let mut msg = serde_json::json!({"authentication": server_first, "success": true}).to_string();
    msg.push('\0');
    send(w, msg.as_bytes()).await?;

    let Some(final_msg) = read_message(r).await? else {
        return Ok(Handshake::Close);
    };
    let final_json: serde_json::Value = match serde_json::from_slice(&final_msg) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => {
            send(w, &fail("Invalid JSON object.", 8)).await?;
            return Ok(Handshake::Close);
        }
    };
    if !known {
        send(w, &fail("Unknown user", 17)).await?;
        return Ok(Handshake::Close);
    }
    let client_final = final_json
        .get("authentication")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let Some((without_proof, proof)) = client_final.rsplit_once(",p=") else {
        send(w, &fail("Wrong password", 12)).await?;
        return Ok(Handshake::Close);
    };
    let fattrs = parse_attrs(without_proof);
    let nonce_ok = attr(&fattrs, 'r') == Some(full_nonce.as_str());
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let client_signature = hmac(&auth.stored_key, auth_message.as_bytes());
    let proof_ok = match B64.decode(proof.as_bytes()) {
        Ok(p) if p.len() == 32 => {
            let client_key: Vec<u8> = p
                .iter()
                .zip(client_signature.iter())
                .map(|(a, b)| a ^ b)
                .collect();
            sha256(&client_key) == auth.stored_key
        }
        _ => false,
    };
    if !nonce_ok || !proof_ok {
        send(w, &fail("Wrong password", 12)).await?;
        return Ok(Handshake::Close);
    }
    let server_signature = hmac(&auth.server_key, auth_message.as_bytes());
    let mut ok = serde_json::json!({
        "authentication": format!("v={}", B64.encode(server_signature)),
        "success": true
    })
    .to_string();
    ok.push('\0');
    send(w, ok.as_bytes()).await?;
    Ok(Handshake::Ready)
}
