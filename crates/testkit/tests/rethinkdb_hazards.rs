//! Behaviours of RethinkDB 2.4.4 that code written against it must survive,
//! checked on whichever server the suite runs on: the dev server, which
//! reproduces them, or a real RethinkDB (`scripts/test --real`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{Database, TempDir};
use unreql::{r, rjson, Session};

/// A session on `server`, in database `db` (created here).
async fn session(server: &Database, db: &str) -> Session {
    let session = connect(server, db).await;
    let _: Value = r
        .db_create(db.to_owned())
        .exec(&session)
        .await
        .expect("dbCreate");
    session
}

async fn connect(server: &Database, db: &str) -> Session {
    server.session(db).await.expect("connect")
}

fn scratch_db() -> String {
    format!("hazard_{:08x}", rand::random::<u32>())
}

/// The message of a query's error, or a panic if it succeeded.
async fn error_of(query: unreql::Command, session: &Session) -> String {
    match query.exec::<_, Value>(session).await {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.to_string(),
    }
}

/// `rethinkdb.table_config` rows of table `name` in `db`.
async fn config_rows(session: &Session, db: &str, name: &str) -> Vec<Value> {
    r.db("rethinkdb")
        .table("table_config")
        .filter(rjson!({ "db": db.to_owned(), "name": name.to_owned() }))
        .exec_to_vec(session)
        .await
        .expect("read table_config")
}

/// Two connections create `name` at the same instant, as two processes
/// starting together do.
async fn create_twice(server: &Database, db: &str, name: &str) -> (Session, Session) {
    let a = connect(server, db).await;
    let b = connect(server, db).await;
    let (ra, rb) = tokio::join!(
        r.db(db.to_owned())
            .table_create(name.to_owned())
            .exec::<_, Value>(&a),
        r.db(db.to_owned())
            .table_create(name.to_owned())
            .exec::<_, Value>(&b),
    );
    ra.expect("the first creation succeeds");
    rb.expect("the second creation succeeds too");
    (a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_and_nth_refuse_integers_from_2_to_the_31() {
    let dir = TempDir::new("hazard").unwrap();
    let server = Database::start(dir.path()).unwrap();
    let db = scratch_db();
    let s = session(&server, &db).await;

    let all: Vec<Value> = r
        .expr(json!([1, 2, 3]))
        .limit(i32::MAX)
        .exec_to_vec(&s)
        .await
        .unwrap();
    assert_eq!(all, vec![json!(1), json!(2), json!(3)]);
    for n in [1_i64 << 31, (1 << 52) - 1] {
        let err = error_of(r.expr(json!([1, 2, 3])).limit(n), &s).await;
        assert!(err.contains(&format!("Integer too large: {n}")), "{err}");
        let err = error_of(r.expr(json!([1, 2, 3])).nth(n), &s).await;
        assert!(err.contains(&format!("Integer too large: {n}")), "{err}");
        // skip takes a 64-bit integer.
        let none: Vec<Value> = r
            .expr(json!([1, 2, 3]))
            .skip(n)
            .exec_to_vec(&s)
            .await
            .unwrap();
        assert!(none.is_empty(), "{none:?}");
    }
    let _: Value = r.db_drop(db).exec(&s).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_table_creations_leave_two_tables_until_one_row_is_deleted() {
    let dir = TempDir::new("hazard").unwrap();
    let server = Database::start(dir.path()).unwrap();
    let db = scratch_db();
    let admin = session(&server, &db).await;
    let (a, _b) = create_twice(&server, &db, "boards").await;

    // tableList names it once, the catalog holds two rows, and every query
    // on the name is refused.
    let names: Vec<String> = r.db(db.clone()).table_list().exec_to_vec(&a).await.unwrap();
    assert_eq!(names, vec!["boards".to_owned()]);
    let rows = config_rows(&admin, &db, "boards").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let err = error_of(r.db(db.clone()).table("boards").count(()), &a).await;
    assert!(
        err.contains(&format!(
            "Table `{db}.boards` is ambiguous; there are multiple tables with that name."
        )),
        "{err}"
    );
    // db_config is there too, and filterable.
    let dbs: Vec<Value> = r
        .db("rethinkdb")
        .table("db_config")
        .filter(rjson!({ "name": db.clone() }))
        .exec_to_vec(&admin)
        .await
        .unwrap();
    assert_eq!(dbs.len(), 1);
    assert_eq!(dbs[0]["name"], db.as_str());

    // Deleting one row of the two repairs the name.
    let id = rows[0]["id"].as_str().unwrap().to_owned();
    let deleted: Value = r
        .db("rethinkdb")
        .table("table_config")
        .get(id)
        .delete(())
        .exec(&admin)
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], 1, "{deleted}");
    assert_eq!(config_rows(&admin, &db, "boards").await.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match r
            .db(db.clone())
            .table("boards")
            .count(())
            .exec::<_, Value>(&a)
            .await
        {
            Ok(n) => {
                assert_eq!(n, json!(0));
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet usable: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the repaired table stays unusable: {e}"),
        }
    }
    let _: Value = r.db_drop(db).exec(&admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_set_up_repairs_a_database_an_earlier_version_left_doubled() {
    let dir = TempDir::new("hazard").unwrap();
    let server = Database::start(dir.path()).unwrap();
    let db = scratch_db();
    let admin = session(&server, &db).await;
    create_twice(&server, &db, "boards").await;
    create_twice(&server, &db, "players").await;
    assert_eq!(config_rows(&admin, &db, "players").await.len(), 2);

    let url = store::DatabaseUrl::parse(&server.url(&db)).unwrap();
    let store = store::Store::new(url, store::PoolOptions::default());
    store
        .ensure_schema()
        .await
        .expect("the set-up repairs the schema");

    for table in ["boards", "players"] {
        assert_eq!(config_rows(&admin, &db, table).await.len(), 1, "{table}");
    }
    let players = config_rows(&admin, &db, "players").await;
    let mut indexes: Vec<String> = serde_json::from_value(players[0]["indexes"].clone()).unwrap();
    indexes.sort();
    assert_eq!(
        indexes,
        vec!["board", "board_prev", "board_rank", "board_score", "slot"]
    );
    // And the store works on it.
    let board = domain::BoardId::parse("b1").unwrap();
    store
        .create_board(store::NewBoard {
            id: Some(board.clone()),
            name: Some(domain::Name::parse("B1").unwrap()),
            rules: domain::Rules::default(),
        })
        .await
        .unwrap();
    assert!(store.board_exists(&board).await.unwrap());
    let _: Value = r.db_drop(db).exec(&admin).await.unwrap();
}
