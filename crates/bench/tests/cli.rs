//! The benchmark's command line: `--help` and `--version` answer and exit
//! without starting a stack; an unknown argument is refused.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `bench` with `args`; fails if it has not exited within 20 s (it
/// started a scenario instead of answering).
fn bench(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bench");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bench {args:?} did not exit: it started a scenario");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn help_and_version_answer_and_exit() {
    let help = bench(&["--help"]);
    assert!(help.status.success(), "{help:?}");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Usage: bench"), "{text}");
    assert!(
        text.contains("Benchmarks the leaderboard's real stack"),
        "{text}"
    );
    assert!(text.contains("smoke"), "{text}");

    let version = bench(&["--version"]);
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("bench {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_argument_is_refused() {
    for args in [
        &["--bogus"][..],
        &["smoke", "--bogus"],
        &["no-such-scenario"],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("unexpected argument") || err.contains("unrecognized subcommand"),
            "{args:?}: {err}"
        );
    }
}
