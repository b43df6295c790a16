//! GRIP library (in progress).
