//! Errors: the ReQL errors a query can end with (as the wire protocol reports them)
//! and the server's own start-up and I/O errors.

use std::fmt;

/// `ErrorType` values of `ql2.proto`, sent as the `e` field of a RUNTIME_ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Internal,
    ResourceLimit,
    QueryLogic,
    NonExistence,
    OpFailed,
    User,
}

impl ErrorType {
    pub fn code(self) -> u32 {
        match self {
            ErrorType::Internal => 1_000_000,
            ErrorType::ResourceLimit => 2_000_000,
            ErrorType::QueryLogic => 3_000_000,
            ErrorType::NonExistence => 3_100_000,
            ErrorType::OpFailed => 4_100_000,
            ErrorType::User => 5_000_000,
        }
    }
}

/// An error a query ends with, mapped onto the response types the protocol has.
#[derive(Debug, Clone, PartialEq)]
pub enum ReqlError {
    /// CLIENT_ERROR (16): the frame itself was wrong.
    Client(String),
    /// COMPILE_ERROR (17): the term tree is invalid before anything ran.
    Compile(String),
    /// RUNTIME_ERROR (18).
    Runtime(ErrorType, String),
}

pub type Result<T, E = ReqlError> = std::result::Result<T, E>;

impl ReqlError {
    pub fn logic(msg: impl Into<String>) -> Self {
        ReqlError::Runtime(ErrorType::QueryLogic, msg.into())
    }
    pub fn missing(msg: impl Into<String>) -> Self {
        ReqlError::Runtime(ErrorType::NonExistence, msg.into())
    }
    pub fn op_failed(msg: impl Into<String>) -> Self {
        ReqlError::Runtime(ErrorType::OpFailed, msg.into())
    }
    pub fn user(msg: impl Into<String>) -> Self {
        ReqlError::Runtime(ErrorType::User, msg.into())
    }
    pub fn resource(msg: impl Into<String>) -> Self {
        ReqlError::Runtime(ErrorType::ResourceLimit, msg.into())
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        ReqlError::Runtime(ErrorType::Internal, msg.into())
    }
    pub fn compile(msg: impl Into<String>) -> Self {
        ReqlError::Compile(msg.into())
    }
    pub fn client(msg: impl Into<String>) -> Self {
        ReqlError::Client(msg.into())
    }

    pub fn message(&self) -> &str {
        match self {
            ReqlError::Client(m) | ReqlError::Compile(m) | ReqlError::Runtime(_, m) => m,
        }
    }

    /// Errors RethinkDB raises only when a stream is read, not when the
    /// stream is made: a missing secondary index.
    pub fn is_read_time(&self) -> bool {
        matches!(self, ReqlError::Runtime(ErrorType::OpFailed, m)
            if m.starts_with("Index `") && m.contains("` was not found on table `"))
    }

    /// Errors that `default` and `filter`'s implicit default swallow.
    pub fn is_non_existence(&self) -> bool {
        matches!(self, ReqlError::Runtime(ErrorType::NonExistence, _))
    }
}

impl fmt::Display for ReqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ReqlError {}

/// Errors of the server process itself (not of a query).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The driver port could not be bound (in use, or not an address of
    /// this machine).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address and port asked for.
        addr: String,
        /// Why the system refused.
        source: std::io::Error,
    },
    /// The data directory could not be created, read or written.
    #[error("data directory {path}: {source}")]
    Directory {
        /// The directory, or the file in it, at fault.
        path: String,
        /// Why the system refused.
        source: std::io::Error,
    },
    /// Any other I/O failure while serving or writing the log.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
