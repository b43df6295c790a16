//! dblistener (in progress).
