//! The worker's command line: `--help` and `--version` answer and exit
//! without starting a worker; an unknown argument is refused.

use std::process::Command;
use std::time::Duration;

fn dblistener(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dblistener"))
        .args(args)
        // A database nobody listens on: a worker that started anyway would
        // keep retrying it rather than exit.
        .env("DATABASE_URL", "rethinkdb://127.0.0.1:1/none")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start dblistener");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("dblistener {args:?} did not exit: it started a worker");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn help_and_version_answer_and_exit() {
    let help = dblistener(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Usage: dblistener"), "{text}");
    assert!(text.contains("shards whose leases it holds"), "{text}");

    let version = dblistener(&["--version"]);
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("dblistener {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_argument_is_refused() {
    let out = dblistener(&["--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument '--bogus'"));
}
