//! TLS to the database: `rethinkdbs://` on the dev server always, and on a
//! real RethinkDB (2.4.4: `--driver-tls-key`, `--driver-tls-cert`,
//! `--driver-tls-ca`) whenever a `rethinkdb` binary is there (RETHINKDB_BIN or
//! on PATH), whatever server the rest of the suite runs on. A certificate
//! that fails verification, and a missing client certificate, are refused
//! with one line naming the host and the reason, before any query is sent:
//! the database the refused store would have created never appears.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use reql_client::{ConnectOptions, Connection, TlsSettings};
use serde_json::{json, Value};
use store::{DatabaseUrl, PoolOptions, Store};
use testkit::{rethinkdb_binary, CertFiles, Database, ServerKind, TempDir, TestCa};

fn servers() -> Vec<ServerKind> {
    let mut kinds = vec![ServerKind::DevServer];
    match rethinkdb_binary() {
        Some(bin) => kinds.push(ServerKind::RethinkDbBinary(bin)),
        None => eprintln!(
            "no rethinkdb binary (RETHINKDB_BIN or PATH): TLS tested on reql-dev-server only"
        ),
    }
    kinds
}

fn tls_args(server: &CertFiles, client_ca: Option<&Path>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--driver-tls-key".into(),
        server.key.clone().into(),
        "--driver-tls-cert".into(),
        server.cert.clone().into(),
    ];
    if let Some(ca) = client_ca {
        args.push("--driver-tls-ca".into());
        args.push(ca.into());
    }
    args
}

fn store(url: &str) -> Store {
    let url = DatabaseUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    Store::new(
        url,
        PoolOptions {
            max_connections: 2,
            query_timeout: Duration::from_secs(20),
            ..PoolOptions::default()
        },
    )
}

/// A store on `url` sets up its schema and answers a ping.
async fn works(url: &str, kind: &ServerKind) {
    let store = store(url);
    store
        .ensure_schema()
        .await
        .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    store.ping().await.expect("ping");
}

/// The databases on the server, through a good TLS connection.
async fn databases(port: u16, ca: &Path, client: &CertFiles) -> Vec<Value> {
    let tls = TlsSettings::load(Some(ca), Some(&client.cert), Some(&client.key)).expect("settings");
    let conn = Connection::connect(&ConnectOptions {
        tls: Some(tls.client_config().expect("config")),
        ..ConnectOptions::new("localhost", port)
    })
    .await
    .expect("a good TLS connection");
    // r.dbList()
    conn.run(&json!([59, []]), &json!({}))
        .await
        .expect("dbList")
}

async fn refused(url: &str, db: &str, reason: &str, port: u16) {
    let err = store(&url.replace("/DB", &format!("/{db}")))
        .ensure_schema()
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(err.is_unavailable(), "{text}");
    assert!(text.contains(&format!(":{port}")), "names the host: {text}");
    assert!(text.contains(reason), "says why ({reason}): {text}");
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_and_its_refusals() {
    for kind in servers() {
        let dir = TempDir::new("tls").expect("dir");
        let ca = TestCa::new(dir.path(), "good").expect("CA");
        let other = TestCa::new(dir.path(), "other").expect("CA");
        let server_cert = ca.server("server", &["localhost"], false).expect("cert");
        let client = ca.client("client").expect("cert");
        let stranger = other.client("client").expect("cert");
        let db = Database::start_on(
            kind.clone(),
            dir.path(),
            &tls_args(&server_cert, Some(&ca.ca_path())),
        )
        .expect("a TLS server");
        let port = db.port();
        let p = |f: &Path| f.display().to_string();
        let with = |host: &str, ca_file: &Path, client: Option<&CertFiles>| {
            let mut url = format!("rethinkdbs://{host}:{port}/DB?ca={}", p(ca_file));
            if let Some(c) = client {
                url += &format!("&cert={}&key={}", p(&c.cert), p(&c.key));
            }
            url
        };

        // The CA the server's certificate is signed by, and a client
        // certificate: works, schema and all.
        works(
            &with("localhost", &ca.ca_path(), Some(&client)).replace("/DB", "/tls_ok"),
            &kind,
        )
        .await;

        refused(
            &with("localhost", &other.ca_path(), Some(&client)),
            "wrong_ca",
            "UnknownIssuer",
            port,
        )
        .await;
        refused(
            &with("127.0.0.1", &ca.ca_path(), Some(&client)),
            "wrong_name",
            "not valid for name",
            port,
        )
        .await;
        refused(
            &with("localhost", &ca.ca_path(), None),
            "no_client_cert",
            "client certificate",
            port,
        )
        .await;
        refused(
            &with("localhost", &ca.ca_path(), Some(&stranger)),
            "stranger",
            "client certificate",
            port,
        )
        .await;

        let names = databases(port, &ca.ca_path(), &client).await;
        assert!(names.contains(&json!("tls_ok")), "{kind:?}: {names:?}");
        for db in ["wrong_ca", "wrong_name", "no_client_cert", "stranger"] {
            assert!(
                !names.contains(&json!(db)),
                "{kind:?}: a query of {db} got through: {names:?}"
            );
        }
        drop(db);

        // A certificate that expired.
        let expired = ca.server("expired", &["localhost"], true).expect("cert");
        let db = Database::start_on(kind.clone(), dir.path(), &tls_args(&expired, None))
            .expect("a TLS server");
        let url = format!(
            "rethinkdbs://localhost:{}/DB?ca={}",
            db.port(),
            p(&ca.ca_path())
        );
        refused(&url, "expired", "expired", db.port()).await;
    }
}

#[tokio::test]
async fn tls_without_client_certificates_through_several_hosts() {
    for kind in servers() {
        let dir = TempDir::new("tls-hosts").expect("dir");
        let ca = TestCa::new(dir.path(), "good").expect("CA");
        let server_cert = ca
            .server("server", &["localhost", "127.0.0.1"], false)
            .expect("cert");
        let db = Database::start_on(kind.clone(), dir.path(), &tls_args(&server_cert, None))
            .expect("a TLS server");
        // A port where nothing listens first: the store moves on to the
        // server that answers.
        let closed = testkit::free_port();
        let url = format!(
            "rethinkdbs://127.0.0.1:{closed},localhost:{}/several?ca={}",
            db.port(),
            ca.ca_path().display()
        );
        works(&url, &kind).await;
    }
}

/// The files `scripts/cluster-certs` makes (docker-compose.cluster.yml's
/// `certs` service runs it) are accepted as they are deployed: the server
/// starts with them and asks for the client certificate, and the store
/// checks the server's against the CA and its host name. Needs `openssl`.
#[tokio::test]
async fn the_cluster_certificate_script_makes_files_server_and_store_accept() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster-certs");
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("no openssl on PATH: the cluster certificate script is not tested");
        return;
    }
    for kind in servers() {
        let dir = TempDir::new("cluster-certs").expect("dir");
        let certs = dir.path().join("certs");
        let out = std::process::Command::new(&script)
            .arg(&certs)
            .args(["localhost", "other-node"])
            .output()
            .expect("run scripts/cluster-certs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = |name: &str| certs.join(name);
        let server = CertFiles {
            cert: file("server.pem"),
            key: file("server-key.pem"),
        };
        let db = Database::start_on(
            kind.clone(),
            dir.path(),
            &tls_args(&server, Some(&file("ca.pem"))),
        )
        .expect("a TLS server");
        let p = |name: &str| file(name).display().to_string();
        let url = format!(
            "rethinkdbs://localhost:{}/cluster_certs?ca={}&cert={}&key={}",
            db.port(),
            p("ca.pem"),
            p("client.pem"),
            p("client-key.pem")
        );
        works(&url, &kind).await;
        // Without the client certificate the server refuses.
        let url = url.split("&cert=").next().expect("a URL").to_owned();
        refused(
            &url.replace("/cluster_certs", "/DB"),
            "no_client_cert",
            "client certificate",
            db.port(),
        )
        .await;
    }
}
