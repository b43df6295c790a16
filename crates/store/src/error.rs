/// What can go wrong talking to the database, sorted by what the caller
/// should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached, or the connection broke or timed
    /// out. The caller answers 503 and tries again later; the pool reconnects
    /// on its own.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The query reached the database and was refused. This is a bug or a
    /// schema problem, never the client's fault.
    #[error("database query failed: {0}")]
    Query(String),
    /// A write of a document whose primary key already exists.
    #[error("already exists")]
    Conflict,
    /// A score increment whose result would leave the exactly-representable
    /// range of a double.
    #[error("the resulting score would be out of range")]
    ScoreOutOfRange,
    /// A rank would have to count more index entries than
    /// [`crate::ranks::LIVE_CAP`]: the board's rank digest is behind (its
    /// keeper is starting, or far behind a burst). The caller answers 503
    /// and the client tries again shortly.
    #[error("the board's ranks are being brought up to date")]
    RanksBehind,
    /// The database answered with something this code cannot read.
    #[error("unexpected answer from the database: {0}")]
    Decode(String),
}

impl StoreError {
    /// Whether this is [`StoreError::Unavailable`]: worth trying again later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<reql_client::Error> for StoreError {
    fn from(err: reql_client::Error) -> Self {
        // A broken connection, a refused query frame (CLIENT_ERROR), and
        // OP_FAILED/OP_INDETERMINATE (what RethinkDB answers while a table
        // has no available primary replica, e.g. while it starts) are all
        // "try again later".
        if err.is_connection_error()
            || err.is_availability_error()
            || matches!(err, reql_client::Error::Client(_))
        {
            StoreError::Unavailable(err.to_string())
        } else {
            StoreError::Query(err.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_with_no_reachable_server_is_unavailable() {
        let err = StoreError::from(reql_client::Error::Runtime {
            code: reql_client::codes::INTERNAL,
            message: "Unexpected exception: The attempt to read or modify the table's \
                      configuration failed because none of the servers were accessible.  \
                      If it was an attempt to modify, the modification did not take place."
                .into(),
        });
        assert!(err.is_unavailable(), "{err}");
    }
}
