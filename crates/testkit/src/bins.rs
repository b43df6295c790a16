use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The project's binaries that tests run as real processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `leaderboard-web`, the origin.
    Web,
    /// `dblistener`, the worker that publishes board changes.
    Worker,
    /// `reql-dev-server`, the database when no real RethinkDB is used.
    DevServer,
}

impl Binary {
    fn name(self) -> &'static str {
        match self {
            Binary::Web => "leaderboard-web",
            Binary::Worker => "dblistener",
            Binary::DevServer => "reql-dev-server",
        }
    }
}

/// The directory of this test executable's profile (`target/debug`), where
/// cargo puts the workspace's binaries.
fn profile_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("LEADERBOARD_BIN_DIR") {
        // Absolute: the processes are started in directories of their own.
        let dir = PathBuf::from(dir);
        return std::path::absolute(&dir).unwrap_or(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    let deps = exe.parent().expect("exe dir");
    if deps.ends_with("deps") {
        deps.parent().expect("profile dir").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The path of a project binary, built first if needed.
///
/// `cargo test` builds only the binaries of the package under test, so the
/// first call runs `cargo build` for the three binaries (a no-op when they are
/// up to date), in the same profile as this test.
pub fn binary(which: Binary) -> PathBuf {
    let dir = BUILT
        .get_or_init(|| {
            let dir = profile_dir();
            if std::env::var_os("LEADERBOARD_BIN_DIR").is_some() {
                return Ok(dir);
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args([
                "build",
                "--bins",
                "-p",
                "web",
                "-p",
                "dblistener",
                "-p",
                "reql-dev-server",
            ]);
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            match cmd.status() {
                Ok(s) if s.success() => Ok(dir),
                Ok(s) => Err(format!("cargo build of the binaries failed: {s}")),
                Err(e) => Err(format!("cannot run cargo: {e}")),
            }
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(which.name());
    assert!(
        path.exists(),
        "{} not found at {}",
        which.name(),
        path.display()
    );
    path
}
