//! Publishing against endpoints of our own that record requests and check
//! auth (a real Pushpin checks no publish auth at all).

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{dead_addr, spawn, Answer};
use grip::{ChannelName, EndpointErrorKind, GripUrl, Item, ItemId, PublishError, Publisher};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

fn channel(s: &str) -> ChannelName {
    ChannelName::parse(s).unwrap()
}

fn items() -> Vec<Item> {
    vec![
        Item::stream(channel("board:1"), "event: update\ndata: {}\n\n")
            .with_id(ItemId::parse("2").unwrap())
            .with_prev_id(ItemId::parse("1").unwrap()),
        Item::close(channel("board:2")).with_no_seq(true),
    ]
}

fn expected_body() -> serde_json::Value {
    json!({"items":[
        {"channel":"board:1","id":"2","prev-id":"1",
         "formats":{"http-stream":{"content":"event: update\ndata: {}\n\n"}}},
        {"channel":"board:2","no-seq":true,"formats":{"http-stream":{"action":"close"}}}
    ]})
}

fn publisher(grip_url: &str) -> Publisher {
    Publisher::new(GripUrl::parse_list(grip_url).unwrap()).unwrap()
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    exp: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn no_auth_request_shape() {
    let ep = spawn(Answer::Status(200, "Published\n".into())).await;
    publisher(&format!("{}/", ep.url()))
        .publish(&items())
        .await
        .unwrap();

    let reqs = ep.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/publish/");
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Pushpin answers 411 to chunked bodies.
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert!(r.header("transfer-encoding").is_none());
    assert!(r.header("authorization").is_none());
    assert_eq!(r.json(), expected_body());
}

#[tokio::test]
async fn jwt_auth_with_base64_key() {
    let ep = spawn(Answer::Status(200, "Published\n".into())).await;
    let key = b"\xfb\xff binary realm key \x00\x01";
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    let encoded: String = url::form_urlencoded::byte_serialize(b64.as_bytes()).collect();
    let grip_url = format!(
        "{}/realm/myrealm/?iss=myrealm&key=base64:{encoded}",
        ep.url()
    );
    let p = publisher(&grip_url);
    p.publish(&items()).await.unwrap();
    p.publish(&items()).await.unwrap();

    let reqs = ep.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].target, "/realm/myrealm/publish/");
    let auth = reqs[0].header("authorization").unwrap();
    let token = auth.strip_prefix("Bearer ").expect("bearer JWT");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["myrealm"]);
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
        .expect("JWT verifies with the decoded key");
    assert_eq!(data.claims.iss, "myrealm");
    let exp = data.claims.exp;
    assert!((now() + 3590..=now() + 3610).contains(&exp), "exp {exp}");
    // The token is cached, not re-signed per publish.
    assert_eq!(reqs[1].header("authorization"), Some(auth));
    // A wrong key does not verify it.
    assert!(jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(b"other"),
        &Validation::new(Algorithm::HS256)
    )
    .is_err());
}

#[tokio::test]
async fn raw_bearer_key() {
    let ep = spawn(Answer::Status(200, "ok".into())).await;
    publisher(&format!(
        "{}/service/abc?key=tok-123_XYZ&verify-iss=fastly:abc",
        ep.url()
    ))
    .publish(&items())
    .await
    .unwrap();
    let r = &ep.requests()[0];
    assert_eq!(r.target, "/service/abc/publish/");
    assert_eq!(r.header("authorization"), Some("Bearer tok-123_XYZ"));
}

#[tokio::test]
async fn basic_auth() {
    let ep = spawn(Answer::Status(200, "ok".into())).await;
    let url = ep.url().replace("http://", "http://pub%40user:s3cr%3At@");
    publisher(&url).publish(&items()).await.unwrap();
    let r = &ep.requests()[0];
    let expected = base64::engine::general_purpose::STANDARD.encode("pub@user:s3cr:t");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Basic {expected}").as_str())
    );
    assert_eq!(r.target, "/publish/");
}

#[tokio::test]
async fn every_endpoint_receives_the_items() {
    let a = spawn(Answer::Status(200, "ok".into())).await;
    let b = spawn(Answer::Status(200, "ok".into())).await;
    let c = spawn(Answer::Status(200, "ok".into())).await;
    let list = format!("{}, {}/x/?key=t ,{}?iss=i&key=k", a.url(), b.url(), c.url());
    let p = publisher(&list);
    assert_eq!(p.endpoints().len(), 3);
    p.publish(&items()).await.unwrap();
    for (ep, target) in [(&a, "/publish/"), (&b, "/x/publish/"), (&c, "/publish/")] {
        let reqs = ep.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].target, target);
        assert_eq!(reqs[0].json(), expected_body());
    }
    assert_eq!(b.requests()[0].header("authorization"), Some("Bearer t"));
    assert!(c.requests()[0]
        .header("authorization")
        .unwrap()
        .starts_with("Bearer ey"));
}

#[tokio::test]
async fn failing_endpoint_is_named() {
    let good = spawn(Answer::Status(200, "ok".into())).await;
    let bad = spawn(Answer::Status(500, "internal trouble".into())).await;
    let list = format!("{},{}/realm/r?iss=r&key=sekrit-key", good.url(), bad.url());
    let p = publisher(&list);
    let err = p.publish(&items()).await.unwrap_err();

    let PublishError::Endpoints {
        failures,
        succeeded,
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(*succeeded, 1);
    assert_eq!(failures.len(), 1);
    let f = &failures[0];
    assert_eq!(f.index(), 1);
    assert_eq!(f.control_uri(), format!("{}/realm/r", bad.url()));
    assert_eq!(f.status(), Some(500));
    assert!(
        matches!(f.kind(), EndpointErrorKind::Status { body, .. } if body == "internal trouble")
    );
    assert!(f.is_retryable() && err.is_retryable());

    let shown = format!("{err} {err:?}");
    assert!(shown.contains(&bad.url()), "{shown}");
    assert!(shown.contains("500"), "{shown}");
    assert!(!shown.contains("sekrit"), "{shown}");
    assert_eq!(good.requests().len(), 1);

    // Retry only the failed endpoint.
    let again = p.publish_to(f.index(), &items()).await.unwrap_err();
    assert_eq!(again.failures()[0].status(), Some(500));
    assert_eq!(good.requests().len(), 1);
    assert_eq!(bad.requests().len(), 2);
    assert!(matches!(
        p.publish_to(7, &items()).await,
        Err(PublishError::NoSuchEndpoint(7))
    ));
}

#[tokio::test]
async fn client_errors_are_not_retryable() {
    let ep = spawn(Answer::Status(400, "Invalid JSON".into())).await;
    let err = publisher(&ep.url()).publish(&items()).await.unwrap_err();
    assert_eq!(err.failures()[0].status(), Some(400));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn echoed_token_is_redacted() {
    let ep = spawn(Answer::EchoAuth).await;
    let err = publisher(&format!("{}?key=echo-me-token", ep.url()))
        .publish(&items())
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("echo-me-token"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[tokio::test]
async fn long_error_bodies_are_truncated() {
    let ep = spawn(Answer::Status(503, "x".repeat(100_000))).await;
    let err = publisher(&ep.url()).publish(&items()).await.unwrap_err();
    let EndpointErrorKind::Status { body, .. } = err.failures()[0].kind() else {
        panic!("{err:?}");
    };
    assert!(body.chars().count() <= 513, "{}", body.len());
    assert!(body.ends_with('…'));
}

#[tokio::test]
async fn endpoint_down_is_an_error_not_a_hang() {
    let addr = dead_addr().await;
    let start = Instant::now();
    let err = publisher(&format!("http://{addr}"))
        .publish(&items())
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    let f = &err.failures()[0];
    assert!(
        matches!(f.kind(), EndpointErrorKind::Connect(_)),
        "{:?}",
        f.kind()
    );
    assert!(f.is_retryable());
    let shown = err.to_string();
    assert!(shown.contains(&addr.to_string()), "{shown}");
    // The OS-level cause is shown, not only reqwest's generic message.
    assert!(shown.to_lowercase().contains("refused"), "{shown}");
}

#[tokio::test]
async fn silent_endpoint_times_out() {
    let ep = spawn(Answer::Hang).await;
    let p = Publisher::builder(GripUrl::parse_list(&ep.url()).unwrap())
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = p.publish(&items()).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(err.failures()[0].kind(), EndpointErrorKind::Timeout),
        "{err:?}"
    );
    assert_eq!(ep.requests().len(), 1);
}

#[tokio::test]
async fn oversized_batch_is_refused_before_sending() {
    let ep = spawn(Answer::Status(200, "ok".into())).await;
    let p = Publisher::builder(GripUrl::parse_list(&ep.url()).unwrap())
        .max_body_bytes(100)
        .build()
        .unwrap();
    let big = vec![Item::stream(channel("c"), "x".repeat(200))];
    assert!(matches!(
        p.publish(&big).await,
        Err(PublishError::BodyTooLarge { max: 100, .. })
    ));
    assert!(ep.requests().is_empty());
}

#[tokio::test]
async fn empty_publish_is_a_reachability_check() {
    let ep = spawn(Answer::Status(200, "ok".into())).await;
    publisher(&ep.url()).publish(&[]).await.unwrap();
    assert_eq!(ep.requests()[0].json(), json!({"items":[]}));
}
