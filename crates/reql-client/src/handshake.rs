//! The V1_0 handshake, client side: magic number, then SCRAM-SHA-256 in
//! null-terminated JSON messages. The first message goes with the magic
//! number, so the handshake costs two round trips.

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::scram::ClientExchange;

const V1_0: u32 = 0x34c2_bdc3;

/// Longest handshake message accepted; real ones are a few hundred bytes.
const MAX_MESSAGE: u64 = 16 * 1024;

/// Why a handshake failed: the stream failed, or the server said no.
pub(crate) enum Failure {
    Io(std::io::Error),
    Refused(String),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

async fn read_message<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Value, Failure> {
    let mut buf = Vec::new();
    (&mut *r).take(MAX_MESSAGE).read_until(0, &mut buf).await?;
    if buf.pop() != Some(0) {
        return Err(Failure::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection during the handshake",
        )));
    }
    let value: Value = serde_json::from_slice(&buf).map_err(|_| {
        // A server of another protocol, or a RethinkDB older than 2.3, answers
        // with a line of text.
        Failure::Refused(String::from_utf8_lossy(&buf).trim().to_owned())
    })?;
    if value.get("success").and_then(Value::as_bool) != Some(true) {
        let error = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("the server refused the handshake");
        return Err(Failure::Refused(error.to_owned()));
    }
    Ok(value)
}

fn authentication(message: &Value) -> Result<&str, Failure> {
    message
        .get("authentication")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::Refused("handshake message without `authentication`".into()))
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

pub(crate) async fn handshake<S>(stream: &mut S, user: &str, password: &str) -> Result<(), Failure>
where
    S: AsyncBufRead + AsyncWrite + Unpin,
{
    let mut exchange = ClientExchange::new(user, password);
    let mut first = V1_0.to_le_bytes().to_vec();
    serde_json::to_writer(
        &mut first,
        &json!({
            "protocol_version": 0,
            "authentication_method": "SCRAM-SHA-256",
            "authentication": exchange.client_first(),
        }),
    )
    .map_err(|e| Failure::Refused(e.to_string()))?;
    first.push(0);
    send(stream, &first).await?;

    let _server_info = read_message(stream).await?;
    let server_first = read_message(stream).await?;
    let client_final = exchange
        .client_final(authentication(&server_first)?)
        .map_err(Failure::Refused)?;
    let mut message = json!({ "authentication": client_final })
        .to_string()
        .into_bytes();
    message.push(0);
    send(stream, &message).await?;
    let server_final = read_message(stream).await?;
    exchange
        .verify(authentication(&server_final)?)
        .map_err(Failure::Refused)
}
