//! domain (in progress).
