//! `contract-stack`: starts the whole stack on free loopback ports (the dev
//! server, the origin, the worker and Pushpin in front), as the integration
//! tests do, for `scripts/contract` to run Schemathesis against.
//!
//! Writes need `Authorization: Bearer $CONTRACT_WRITE_KEY`. The board `demo`
//! is created with the players `alice` to `eve`, which the document's
//! examples name. Prints `contract-stack ready <Pushpin's URL>` and keeps
//! the stack up until its standard input closes, or SIGINT or SIGTERM.

use anyhow::Context;
use std::io::Read;
use testkit::{Stack, StackOptions};

use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let key = std::env::var("CONTRACT_WRITE_KEY")
        .context("set CONTRACT_WRITE_KEY, the write key (at least 16 characters)")?;
    let stack = Stack::start_with(StackOptions {
        web_env: vec![("WRITE_API_KEYS".into(), key.clone())],
        ..StackOptions::default()
    })
    .await?;
    seed(&stack, &key).await?;
    eprintln!("contract-stack: logs in {}", stack.dir().display());
    println!("contract-stack ready {}", stack.url(""));

    let mut term = signal(SignalKind::terminate())?;
    let input_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    });
    tokio::select! {
        _ = input_closed => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(stack);
    Ok(())
}

/// The board and players the document's examples name.
async fn seed(stack: &Stack, key: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut writes = vec![(
        "/boards/".to_owned(),
        serde_json::json!({ "id": "demo", "name": "Demo board" }),
    )];
    for (i, (id, name)) in [
        ("alice", "Alice"),
        ("bob", "Bob"),
        ("carol", "Carol"),
        ("dave", "Dave"),
        ("eve", "Eve"),
    ]
    .into_iter()
    .enumerate()
    {
        writes.push((
            "/boards/demo/players/".to_owned(),
            serde_json::json!({ "id": id, "name": name }),
        ));
        writes.push((
            format!("/boards/demo/players/{id}/score-add/"),
            serde_json::json!({ "value": 10 * (i + 1) }),
        ));
    }
    for (path, body) in writes {
        let resp = client
            .post(stack.url(&path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "seeding: POST {path}: {}",
            resp.status()
        );
    }
    Ok(())
}
