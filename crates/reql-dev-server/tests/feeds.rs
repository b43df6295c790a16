//! Changefeed behaviour beyond the transcripts: a client that stops reading, and
//! feeds that end when their table goes away.

mod common;

use common::{InProcess, Raw};
use reql_dev_server::Config;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_nobody_reads_overflows_instead_of_growing_forever() -> anyhow::Result<()> {
    let server = InProcess::start(Config::default()).await?;
    let mut writer = Raw::connect(server.port).await?;
    let mut reader = Raw::connect(server.port).await?;
    writer.query(1, &json!([1, [60, ["t"]], {}])).await?;
    let first = reader
        .query(
            7,
            &json!([1, [152, [[15, ["t"]]], {"changefeed_queue_size": 10}], {}]),
        )
        .await?;
    assert_eq!(first, json!({"t": 3, "r": [], "n": [1]}));
    for i in 0..20 {
        writer
            .query(10 + i, &json!([1, [56, [[15, ["t"]], {"id": i}]], {}]))
            .await?;
    }
    reader.send(7, &json!([2])).await?;
    let (_, v) = reader.recv().await?;
    // Either the ten queued changes and then the error, or the error at once.
    let v = if v["t"] == 3 {
        reader.send(7, &json!([2])).await?;
        reader.recv().await?.1
    } else {
        v
    };
    assert_eq!(v["t"], 18, "{v}");
    assert_eq!(v["e"], 2_000_000, "{v}");
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_table_ends_its_feeds() -> anyhow::Result<()> {
    let server = InProcess::start(Config::default()).await?;
    let mut writer = Raw::connect(server.port).await?;
    let mut reader = Raw::connect(server.port).await?;
    writer.query(1, &json!([1, [60, ["doomed"]], {}])).await?;
    writer
        .query(
            2,
            &json!([1, [56, [[15, ["doomed"]], {"id": "a", "score": 1}]], {}]),
        )
        .await?;
    let top = json!([1, [152, [[71, [[41, [[15, ["doomed"]]], {"index": [74, ["id"]]}], 2]]], {"include_states": true}], {}]);
    let first = reader.query(5, &top).await?;
    assert_eq!(
        first,
        json!({"t": 3, "r": [{"state": "ready"}], "n": [3, 5]})
    );
    reader.send(5, &json!([2])).await?;
    writer
        .query(
            3,
            &json!([1, [56, [[15, ["doomed"]], {"id": "b", "score": 2}]], {}]),
        )
        .await?;
    let (_, change) = reader.recv().await?;
    assert_eq!(
        change,
        json!({"t": 3, "r": [{"new_val": {"id": "b", "score": 2}, "old_val": null}], "n": [3, 5]})
    );
    reader.send(5, &json!([2])).await?;
    writer.query(4, &json!([1, [58, ["test"]], {}])).await?;
    let (_, end) = reader.recv().await?;
    assert_eq!(
        end,
        json!({"t": 18, "e": 4_100_000, "r": ["Changefeed aborted (unavailable)."], "b": []})
    );
    // The token is gone afterwards.
    let v = reader.query(5, &json!([2])).await?;
    assert_eq!(v["t"], 16);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_all_feeds_follow_their_keys() -> anyhow::Result<()> {
    let server = InProcess::start(Config::default()).await?;
    let mut writer = Raw::connect(server.port).await?;
    let mut reader = Raw::connect(server.port).await?;
    writer.query(1, &json!([1, [60, ["players"]], {}])).await?;
    writer
        .query(2, &json!([1, [75, [[15, ["players"]], "board"]], {}]))
        .await?;
    writer
        .query(
            3,
            &json!([1, [56, [[15, ["players"]], {"id": "a", "board": "b1", "score": 1}]], {}]),
        )
        .await?;
    let feed = json!([1, [152, [[78, [[15, ["players"]], "b1"], {"index": "board"}]], {"include_initial": true}], {}]);
    let first = reader.query(4, &feed).await?;
    assert_eq!(
        first,
        json!({"t": 3, "r": [{"new_val": {"id": "a", "board": "b1", "score": 1}}], "n": [1]})
    );
    reader.send(4, &json!([2])).await?;
    writer
        .query(
            5,
            &json!([1, [56, [[15, ["players"]], {"id": "x", "board": "b2", "score": 9}]], {}]),
        )
        .await?;
    writer
        .query(
            6,
            &json!([1, [53, [[16, [[15, ["players"]], "a"]], {"board": "b2"}]], {}]),
        )
        .await?;
    let (_, change) = reader.recv().await?;
    assert_eq!(
        change,
        json!({"t": 3, "r": [{"new_val": null, "old_val": {"id": "a", "board": "b1", "score": 1}}], "n": [1]})
    );
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outstanding_continue_gets_its_own_answer() -> anyhow::Result<()> {
    let server = InProcess::start(Config::default()).await?;
    let mut writer = Raw::connect(server.port).await?;
    let mut reader = Raw::connect(server.port).await?;
    writer.query(1, &json!([1, [60, ["t"]], {}])).await?;
    let first = reader
        .query(3, &json!([1, [152, [[15, ["t"]]]], {}]))
        .await?;
    assert_eq!(first["t"], 3);
    reader.send(3, &json!([2])).await?;
    reader.send(3, &json!([2])).await?;
    for id in ["a", "b"] {
        writer
            .query(2, &json!([1, [56, [[15, ["t"]], {"id": id}]], {}]))
            .await?;
        let (_, v) = reader.recv().await?;
        assert_eq!(v["r"][0]["new_val"]["id"], id, "{v}");
    }
    // A STOP with nothing outstanding ends the feed.
    let v = reader.query(3, &json!([3])).await?;
    assert_eq!(v, json!({"t": 2, "r": [], "n": []}));
    server.stop().await;
    Ok(())
}
