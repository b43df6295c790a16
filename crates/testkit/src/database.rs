use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{binary, Binary, ManagedProcess};

/// The database a stack runs on.
///
/// By default a `reql-dev-server` process of its own, in memory or, with
/// [`Database::start_persistent`], in a directory. With
/// `TEST_DATABASE=rethinkdb` (`scripts/test --real`), a real RethinkDB
/// instead: the server at `RETHINKDB_URL`
/// (`rethinkdb://[user[:password]@]host[:port]`), where each stack works in a
/// database of its own, or else a `rethinkdb` process of its own started from
/// `RETHINKDB_BIN` or the `rethinkdb` on `PATH`. `RETHINKDB_URL` alone also
/// selects the server there.
#[derive(Debug)]
pub struct Database {
    process: Option<ManagedProcess>,
    /// `rethinkdb://user:password@host:port` without a database name.
    base: String,
    port: u16,
    dir: PathBuf,
    data_dir: Option<PathBuf>,
    password: Option<String>,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but unreserved characters, for userinfo.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Which server the tests run on, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerKind {
    /// `reql-dev-server`, the default and what CI runs.
    DevServer,
    /// A real RethinkDB process per database, from this binary.
    RethinkDbBinary(PathBuf),
    /// The real RethinkDB at `RETHINKDB_URL`.
    External(String),
}

impl ServerKind {
    /// What the environment asks for. Asking for a real server where none can
    /// be found runs on the dev server, and says so once.
    pub fn from_env() -> ServerKind {
        static KIND: std::sync::OnceLock<ServerKind> = std::sync::OnceLock::new();
        KIND.get_or_init(|| {
            if let Some(url) = Database::external_url() {
                return ServerKind::External(url);
            }
            let wanted = std::env::var("TEST_DATABASE").unwrap_or_default();
            if wanted != "rethinkdb" {
                return ServerKind::DevServer;
            }
            match rethinkdb_binary() {
                Some(bin) => ServerKind::RethinkDbBinary(bin),
                None => {
                    eprintln!(
                        "TEST_DATABASE=rethinkdb, but there is no RETHINKDB_URL, RETHINKDB_BIN or rethinkdb on PATH: running on reql-dev-server"
                    );
                    ServerKind::DevServer
                }
            }
        })
        .clone()
    }

    /// Whether this is a real RethinkDB rather than the dev server.
    pub fn is_real(&self) -> bool {
        !matches!(self, ServerKind::DevServer)
    }
}

/// A real RethinkDB server binary: `RETHINKDB_BIN`, or `rethinkdb` on `PATH`.
pub fn rethinkdb_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("RETHINKDB_BIN").filter(|b| !b.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("rethinkdb"))
        .find(|p| p.is_file())
}

impl Database {
    /// The external server's base URL, if `RETHINKDB_URL` is set.
    pub fn external_url() -> Option<String> {
        let raw = std::env::var("RETHINKDB_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())?;
        let rest = raw.trim().trim_start_matches("rethinkdb://");
        let authority = rest.split('/').next().unwrap_or(rest);
        Some(format!("rethinkdb://{authority}"))
    }

    /// Whether the server was started by someone else (`RETHINKDB_URL`),
    /// so the tests must not stop or restart it.
    pub fn is_external(&self) -> bool {
        self.process.is_none()
    }

    /// An in-memory dev server (or the external server).
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::launch(dir, None, 0, None)
    }

    /// A dev server that keeps its data in `data_dir`.
    pub fn start_persistent(dir: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        Self::launch(dir, Some(data_dir.to_path_buf()), 0, None)
    }

    /// The server (or cluster) at `base`, `rethinkdb://[user@]h1:p1,h2:p2`,
    /// started by someone else. Its URLs, sessions and
    /// [`Database::host_port`] use the first host.
    pub fn at(dir: &Path, base: &str) -> Self {
        Self {
            process: None,
            base: base.trim_end_matches('/').to_owned(),
            port: 0,
            dir: dir.to_path_buf(),
            data_dir: None,
            password: None,
        }
    }

    /// A dev server on `port` (0: any), keeping data in `data_dir` if given,
    /// with `password` for `admin` if given; or the external server.
    pub fn launch(
        dir: &Path,
        data_dir: Option<PathBuf>,
        port: u16,
        password: Option<String>,
    ) -> anyhow::Result<Self> {
        Self::launch_on(ServerKind::from_env(), dir, data_dir, port, password, &[])
    }

    /// A server of `kind` (not an external one) on a free port with
    /// `extra_args`, e.g. the `--driver-tls-*` options, whatever the suite
    /// runs on.
    pub fn start_on(
        kind: ServerKind,
        dir: &Path,
        extra_args: &[std::ffi::OsString],
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !matches!(kind, ServerKind::External(_)),
            "an external server cannot be started"
        );
        Self::launch_on(kind, dir, None, 0, None, extra_args)
    }

    fn launch_on(
        kind: ServerKind,
        dir: &Path,
        data_dir: Option<PathBuf>,
        port: u16,
        password: Option<String>,
        extra_args: &[std::ffi::OsString],
    ) -> anyhow::Result<Self> {
        let (name, mut cmd) = match kind {
            ServerKind::External(base) => {
                return Ok(Self {
                    process: None,
                    base,
                    port: 0,
                    dir: dir.to_path_buf(),
                    data_dir,
                    password: None,
                })
            }
            ServerKind::DevServer => {
                let mut cmd = Command::new(binary(Binary::DevServer));
                if let Some(data) = &data_dir {
                    cmd.arg("--directory").arg(data);
                }
                ("reql-dev-server", cmd)
            }
            ServerKind::RethinkDbBinary(bin) => {
                let mut cmd = Command::new(bin);
                // A real server always keeps its data on disk; without a
                // directory of the test's own, a scratch one that a restart
                // keeps, as the dev server's memory would not.
                let data = data_dir
                    .clone()
                    .unwrap_or_else(|| dir.join("rethinkdb_data"));
                cmd.arg("--directory")
                    .arg(data)
                    .args(["--cluster-port", "0", "--no-http-admin"])
                    .args(["--no-update-check", "--cache-size", "256"]);
                ("rethinkdb", cmd)
            }
        };
        cmd.args(["--bind", "127.0.0.1", "--driver-port", &port.to_string()]);
        cmd.args(extra_args);
        if let Some(pw) = &password {
            cmd.arg("--initial-password").arg(pw);
        }
        let mut process = ManagedProcess::spawn(name, cmd, dir)?;
        let port = process.wait_for_line(Duration::from_secs(60), |line| {
            line.strip_prefix("Listening for client driver connections on port ")
                .and_then(|p| p.trim().parse::<u16>().ok())
        })?;
        let creds = match &password {
            Some(pw) => format!("admin:{}", percent_encode(pw)),
            None => "admin".to_owned(),
        };
        Ok(Self {
            process: Some(process),
            base: format!("rethinkdb://{creds}@127.0.0.1:{port}"),
            port,
            dir: dir.to_path_buf(),
            data_dir,
            password,
        })
    }

    /// A driver session straight to this server, with `db` as its default
    /// database, for a test's own queries and checks.
    #[cfg(feature = "unreql")]
    pub async fn session(&self, db: &str) -> anyhow::Result<unreql::Session> {
        use unreql::cmd::connect::Options;
        let (host, port) = self.host_port();
        let (user, password) = self.credentials();
        let options = Options::new()
            .host(host)
            .port(port)
            .user(user)
            .password(password)
            .db(db.to_owned());
        Ok(unreql::r.connect(options).await?)
    }

    /// A connection straight to this server, with `db` as its default
    /// database.
    pub async fn open_session(&self, db: &str) -> anyhow::Result<crate::DbSession> {
        let (host, port) = self.host_port();
        let (user, password) = self.credentials();
        crate::DbSession::connect(&host, port, &user, &password, Some(db)).await
    }

    /// `DATABASE_URL` for database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("{}/{db}", self.base)
    }

    /// Host and port of the server.
    pub fn host_port(&self) -> (String, u16) {
        let (host, port, _, _) = split_base(&self.base);
        (host, port)
    }

    /// User and password.
    pub fn credentials(&self) -> (String, String) {
        let (_, _, user, password) = split_base(&self.base);
        (user, password)
    }

    /// `host:port` of the server.
    pub fn address(&self) -> String {
        let (host, port, _, _) = split_base(&self.base);
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// `DATABASE_URL` for database `db` reached through a local port (a
    /// [`crate::NetProxy`]) instead of the server's own address.
    pub fn url_via(&self, port: u16, db: &str) -> String {
        let (_, _, user, password) = split_base(&self.base);
        let creds = if password.is_empty() {
            user
        } else {
            format!("{user}:{password}")
        };
        format!("rethinkdb://{creds}@127.0.0.1:{port}/{db}")
    }

    /// The driver port (0 for an external server).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the dev server (SIGKILL when `hard`), as an outage would.
    pub fn stop(&mut self, hard: bool) -> anyhow::Result<()> {
        let process = self.process.as_mut().ok_or_else(|| {
            anyhow::anyhow!("an external RethinkDB (RETHINKDB_URL) cannot be stopped by the tests")
        })?;
        if hard {
            process.kill_hard();
        } else {
            process.stop(Duration::from_secs(5));
        }
        Ok(())
    }

    /// Starts the dev server again on the same port (and directory).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.process.is_none() {
            anyhow::bail!("an external RethinkDB (RETHINKDB_URL) cannot be restarted by the tests");
        }
        let fresh = Self::launch(
            &self.dir,
            self.data_dir.clone(),
            self.port,
            self.password.clone(),
        )?;
        *self = fresh;
        Ok(())
    }

    /// Drops database `db` (used for external servers, where databases
    /// outlive the test).
    pub fn drop_database(&self, db: &str) {
        if !self.is_external() {
            return;
        }
        let (host, port, user, password) = split_base(&self.base);
        let db = db.to_owned();
        // Runs on a thread of its own: this is called from Drop, possibly
        // inside a runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let session = crate::DbSession::connect(&host, port, &user, &password, None)
                    .await
                    .ok()?;
                session.run(&reql_terms::r.db_drop(db)).await.ok()?;
                Some(())
            })
        })
        .join();
    }
}

/// (host, port, user, password) of `rethinkdb://[user[:password]@]host[:port]`.
fn split_base(base: &str) -> (String, u16, String, String) {
    let rest = base.trim_start_matches("rethinkdb://");
    let (creds, hosts) = rest.rsplit_once('@').unwrap_or(("admin", rest));
    // A cluster's base lists several hosts: the first one stands for it.
    let hostport = hosts.split(',').next().unwrap_or(hosts);
    let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || p.parse::<u16>().is_ok() => {
            (h.to_owned(), p.parse().unwrap_or(28015))
        }
        _ => (hostport.to_owned(), 28015),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let user = if user.is_empty() { "admin" } else { user };
    (host, port, user.to_owned(), percent_decode(password))
}

#[cfg(test)]
mod tests {
    use super::split_base;

    #[test]
    fn passwords_round_trip() {
        let enc = super::percent_encode("p@ss:w/rd%");
        assert_eq!(
            split_base(&format!("rethinkdb://admin:{enc}@h:1")).3,
            "p@ss:w/rd%"
        );
    }

    #[test]
    fn splits_base_urls() {
        assert_eq!(
            split_base("rethinkdb://admin@127.0.0.1:1234"),
            ("127.0.0.1".into(), 1234, "admin".into(), "".into())
        );
        assert_eq!(
            split_base("rethinkdb://u:p@db"),
            ("db".into(), 28015, "u".into(), "p".into())
        );
    }
}
