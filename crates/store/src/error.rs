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
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Whether a driver error means the connection itself can't be trusted any
/// more (so it must be discarded), as opposed to a query-level error on a
/// healthy connection.
pub(crate) fn is_connection_error(err: &unreql::Error) -> bool {
    match err {
        unreql::Error::Driver(d) => !matches!(d, unreql::Driver::NotFound),
        _ => false,
    }
}

impl From<unreql::Error> for StoreError {
    fn from(err: unreql::Error) -> Self {
        use unreql::{Availability, Error, Runtime};
        match &err {
            Error::Driver(_) if is_connection_error(&err) => {
                StoreError::Unavailable(err.to_string())
            }
            // OP_FAILED is what RethinkDB answers while a table has no
            // available primary replica, e.g. while it starts.
            Error::Runtime(Runtime::Availability(Availability::OpFailed(_)))
            | Error::Runtime(Runtime::Availability(Availability::OpIndeterminate(_))) => {
                StoreError::Unavailable(err.to_string())
            }
            _ => StoreError::Query(err.to_string()),
        }
    }
}
