//! The command lines of the crate's binaries, `reql-dev-server` and
//! `differential`: `--help` and `--version` answer and exit without starting
//! a server or a workload; an unknown argument is refused.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs a binary with `args`; fails if it has not exited within 20 s (it
/// started serving, or a workload, instead of answering).
fn run(binary: &str, args: &[&str]) -> Output {
    let mut child = Command::new(binary)
        .args(args)
        // No real RethinkDB to start, should `differential` try.
        .env("RETHINKDB_BIN", "/nonexistent/rethinkdb")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{binary} {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn answers_help_and_version(binary: &str, name: &str, about: &str) {
    let help = run(binary, &["--help"]);
    assert!(help.status.success(), "{help:?}");
    let text = stdout(&help);
    assert!(text.contains(&format!("Usage: {name}")), "{text}");
    assert!(text.contains(about), "{text}");

    let version = run(binary, &["--version"]);
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        stdout(&version).trim(),
        format!("{name} {}", env!("CARGO_PKG_VERSION"))
    );
}

fn refuses_an_unknown_argument(binary: &str) {
    let out = run(binary, &["--bogus"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unexpected argument '--bogus'"), "{err}");
    assert!(stdout(&out).is_empty(), "it started: {}", stdout(&out));
}

#[test]
fn reql_dev_server_answers_help_and_version_and_exits() {
    let binary = env!("CARGO_BIN_EXE_reql-dev-server");
    answers_help_and_version(binary, "reql-dev-server", "RethinkDB-compatible server");
    let help = stdout(&run(binary, &["--help"]));
    for flag in ["--bind", "--driver-port", "--directory", "--driver-tls-key"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn reql_dev_server_refuses_an_unknown_argument() {
    refuses_an_unknown_argument(env!("CARGO_BIN_EXE_reql-dev-server"));
}

#[test]
fn differential_answers_help_and_version_and_exits() {
    answers_help_and_version(
        env!("CARGO_BIN_EXE_differential"),
        "differential",
        "Compares the dev server with a real RethinkDB 2.4.4",
    );
}

#[test]
fn differential_refuses_an_unknown_argument() {
    refuses_an_unknown_argument(env!("CARGO_BIN_EXE_differential"));
}
