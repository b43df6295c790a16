/// Error codes of RethinkDB's RUNTIME_ERROR answers (`e`).
pub mod codes {
    /// An internal error of the server.
    pub const INTERNAL: i64 = 1_000_000;
    /// A resource limit, such as the array size limit.
    pub const RESOURCE_LIMIT: i64 = 2_000_000;
    /// The query cannot be run as written.
    pub const QUERY_LOGIC: i64 = 3_000_000;
    /// A missing field or element.
    pub const NON_EXISTENCE: i64 = 3_100_000;
    /// The operation failed, e.g. no primary replica is available.
    pub const OP_FAILED: i64 = 4_100_000;
    /// The operation may or may not have happened.
    pub const OP_INDETERMINATE: i64 = 4_200_000;
    /// `r.error` in the query.
    pub const USER: i64 = 5_000_000;
    /// The user lacks a permission.
    pub const PERMISSION: i64 = 6_000_000;
}

/// What can go wrong on a connection or with one query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The connection could not be opened: TCP, TLS or the handshake. The
    /// text is one line that says why.
    #[error("{0}")]
    Connect(String),
    /// The connection broke (or was closed) while the query waited for it.
    #[error("connection broken: {0}")]
    Broken(String),
    /// The server refused the query frame itself (CLIENT_ERROR).
    #[error("ReqlDriverError: {0}")]
    Client(String),
    /// The query did not compile (COMPILE_ERROR).
    #[error("ReqlCompileError: {0}")]
    Compile(String),
    /// The query failed while it ran (RUNTIME_ERROR); `code` is one of
    /// [`codes`].
    #[error("{}: {message}", runtime_name(*code))]
    Runtime {
        /// RethinkDB's error type.
        code: i64,
        /// The server's message.
        message: String,
    },
    /// An answer this client cannot read.
    #[error("cannot read the server's answer: {0}")]
    Decode(String),
}

fn runtime_name(code: i64) -> &'static str {
    match code {
        codes::INTERNAL => "ReqlInternalError",
        codes::RESOURCE_LIMIT => "ReqlResourceLimitError",
        codes::QUERY_LOGIC => "ReqlQueryLogicError",
        codes::NON_EXISTENCE => "ReqlNonExistenceError",
        codes::OP_FAILED => "ReqlOpFailedError",
        codes::OP_INDETERMINATE => "ReqlOpIndeterminateError",
        codes::USER => "ReqlUserError",
        codes::PERMISSION => "ReqlPermissionError",
        _ => "ReqlRuntimeError",
    }
}

impl Error {
    /// Whether the connection itself failed, rather than one query on a
    /// working connection.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Error::Connect(_) | Error::Broken(_))
    }

    /// Whether the database said it cannot serve the query for now: no
    /// primary replica, or an outcome it cannot tell.
    pub fn is_availability_error(&self) -> bool {
        match self {
            Error::Runtime {
                code: codes::OP_FAILED | codes::OP_INDETERMINATE,
                ..
            } => true,
            // RethinkDB 2.4 lets the table-configuration client's exceptions
            // escape as "Unexpected exception: ..." with the INTERNAL code
            // when a node of a cluster is gone or cut off (seen with the
            // primary of a table killed). They say the cluster cannot be
            // reached, not that the query is wrong.
            Error::Runtime {
                code: codes::INTERNAL,
                message,
            } => UNREACHABLE_CLUSTER_WORDINGS
                .iter()
                .any(|wording| message.contains(wording)),
            _ => false,
        }
    }
}

/// The texts of RethinkDB's `failed_table_op_exc_t` and
/// `maybe_failed_table_op_exc_t` (clustering/table_manager/table_meta_client.hpp),
/// the two table-configuration failures that mean "no server could be
/// reached" rather than a fault of the query.
const UNREACHABLE_CLUSTER_WORDINGS: &[&str] = &[
    "failed because none of the servers were accessible",
    "failed because we lost contact with the servers",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(code: i64, message: &str) -> Error {
        Error::Runtime {
            code,
            message: message.into(),
        }
    }

    #[test]
    fn an_unreachable_cluster_is_an_availability_error() {
        // The exact answer RethinkDB 2.4.4 gave with the primary of a table
        // killed on a three-node cluster.
        let none_accessible = runtime(
            codes::INTERNAL,
            "Unexpected exception: The attempt to read or modify the table's \
             configuration failed because none of the servers were accessible.  If it \
             was an attempt to modify, the modification did not take place.",
        );
        assert!(none_accessible.is_availability_error());
        let lost_contact = runtime(
            codes::INTERNAL,
            "Unexpected exception: The attempt to modify the table's configuration \
             failed because we lost contact with the servers after initiating the \
             modification, or the Raft leader lost contact with its followers.",
        );
        assert!(lost_contact.is_availability_error());
        assert!(runtime(
            codes::OP_FAILED,
            "Cannot perform write: primary replica for shard [\"\", +inf) not available"
        )
        .is_availability_error());
    }

    #[test]
    fn other_internal_errors_are_not_availability_errors() {
        assert!(
            !runtime(codes::INTERNAL, "Unexpected exception: std::bad_alloc")
                .is_availability_error()
        );
        assert!(
            !runtime(codes::QUERY_LOGIC, "none of the servers were accessible")
                .is_availability_error()
        );
    }
}
