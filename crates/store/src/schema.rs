use serde_json::Value;
use unreql::{func, r};

use crate::{Store, StoreError, BOARDS, BOARD_INDEX, BOARD_SCORE_INDEX, PLAYERS};

/// RethinkDB's answer when a concurrent creator won the race.
fn already_exists(err: &StoreError) -> bool {
    err.to_string().contains("already exists")
}

fn names(values: Vec<Value>) -> Vec<String> {
    values
        .into_iter()
        .flat_map(|v| match v {
            Value::Array(items) => items,
            other => vec![other],
        })
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

impl Store {
    /// Creates the database, the `boards` and `players` tables and the
    /// players' `board_score` and `board` indexes, whichever are missing,
    /// then waits until the indexes are ready.
    ///
    /// Safe to run from several processes at the same moment: losing a
    /// creation race ("already exists") counts as success.
    pub async fn ensure_schema(&self) -> Result<(), StoreError> {
        let db = self.url().db.clone();
        if !names(self.run(r.db_list()).await?).contains(&db) {
            tolerate(self.run(r.db_create(db.clone())).await)?;
        }
        let tables = names(self.run(r.db(db.clone()).table_list()).await?);
        for table in [BOARDS, PLAYERS] {
            if !tables.iter().any(|t| t == table) {
                tolerate(self.run(r.db(db.clone()).table_create(table)).await)?;
            }
            self.run(r.db(db.clone()).table(table).wait(())).await?;
        }
        let indexes = names(
            self.run(r.db(db.clone()).table(PLAYERS).index_list())
                .await?,
        );
        if !indexes.iter().any(|i| i == BOARD_SCORE_INDEX) {
            let create = r.db(db.clone()).table(PLAYERS).index_create(r.args((
                BOARD_SCORE_INDEX,
                func!(|doc| [doc.clone().g("board"), doc.g("score")]),
            )));
            tolerate(self.run(create).await)?;
        }
        if !indexes.iter().any(|i| i == BOARD_INDEX) {
            tolerate(
                self.run(r.db(db.clone()).table(PLAYERS).index_create(BOARD_INDEX))
                    .await,
            )?;
        }
        self.run(r.db(db.clone()).table(PLAYERS).index_wait(()))
            .await?;
        Ok(())
    }
}

fn tolerate(result: Result<Vec<Value>, StoreError>) -> Result<(), StoreError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if already_exists(&e) => Ok(()),
        Err(e) => Err(e),
    }
}
