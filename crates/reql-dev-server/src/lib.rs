//! RethinkDB-compatible development server (in progress).
