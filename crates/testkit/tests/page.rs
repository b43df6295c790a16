//! The live page in headless Chromium through Pushpin: the stack is started
//! here, and the browser test in `e2e/` (node's test runner driving Debian's
//! Chromium with playwright-core) runs against it. `scripts/setup-debian`
//! installs Chromium and the test's npm packages.

use std::path::PathBuf;
use std::process::Command;

use testkit::Stack;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_a_board_live_and_its_buttons_work() {
    let root = repo_root();
    let e2e = root.join("e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "e2e/node_modules is missing: run scripts/setup-debian (or `cd e2e && npm ci`)"
    );
    let stack = Stack::start().await.unwrap();
    let url = stack.url("");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-reporter=spec"])
            .arg("page.test.mjs")
            .arg("model.test.mjs")
            .current_dir(&e2e)
            .env("LEADERBOARD_URL", url)
            .output()
    })
    .await
    .unwrap()
    .expect("run node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    // The runner's summary: every test passed and there were some.
    assert!(stdout.contains("ℹ fail 0"), "{stdout}");
    assert!(!stdout.contains("ℹ pass 0"), "{stdout}");
    assert!(
        root.join("e2e/artifacts/board-desktop.png").exists(),
        "no screenshot was kept"
    );
}
