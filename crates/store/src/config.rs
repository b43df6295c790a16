use std::fmt;

use percent_encoding::percent_decode_str;
use url::Url;

/// Where the database is: `rethinkdb://[user[:password]@]host[:port]/dbname`.
///
/// The port defaults to 28015 and the user to `admin` (with an empty
/// password), as in RethinkDB itself. `Debug` and `Display` never show the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    pub host: String,
    pub port: u16,
    pub user: String,
    password: String,
    pub db: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    #[error("not a URL ({0}); expected rethinkdb://[user[:password]@]host[:port]/dbname")]
    Syntax(String),
    #[error("scheme must be rethinkdb://, not {0}://")]
    Scheme(String),
    #[error("TLS (rethinkdbs://) is not supported by the driver; reach the database over a private network or a tunnel")]
    Tls,
    #[error("a host is required")]
    Host,
    #[error("a database name is required as the path, e.g. rethinkdb://localhost/leaderboard")]
    MissingDb,
    #[error("database name {0:?} may contain only letters, digits and '_' (at most 64)")]
    DbName(String),
    #[error("user name or password is not valid UTF-8 after percent-decoding")]
    Encoding,
    #[error("query parameters are not supported")]
    Query,
}

impl DatabaseUrl {
    pub const DEFAULT_PORT: u16 = 28015;

    pub fn parse(raw: &str) -> Result<Self, DatabaseUrlError> {
        let url = Url::parse(raw.trim()).map_err(|e| DatabaseUrlError::Syntax(e.to_string()))?;
        match url.scheme() {
            "rethinkdb" => {}
            "rethinkdbs" | "rethinkdb+ssl" => return Err(DatabaseUrlError::Tls),
            other => return Err(DatabaseUrlError::Scheme(other.to_owned())),
        }
        if url.query().is_some() {
            return Err(DatabaseUrlError::Query);
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(DatabaseUrlError::Host),
        };
        let db = url.path().trim_start_matches('/').trim_end_matches('/');
        if db.is_empty() {
            return Err(DatabaseUrlError::MissingDb);
        }
        // RethinkDB's own rule for database names.
        if db.len() > 64 || !db.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(DatabaseUrlError::DbName(db.to_owned()));
        }
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| DatabaseUrlError::Encoding)
        };
        let user = match url.username() {
            "" => "admin".to_owned(),
            u => decode(u)?,
        };
        let password = decode(url.password().unwrap_or(""))?;
        Ok(Self {
            host,
            port: url.port().unwrap_or(Self::DEFAULT_PORT),
            user,
            password,
            db: db.to_owned(),
        })
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The same place with another database name, as tests use to isolate
    /// themselves on one server.
    pub fn with_db(&self, db: &str) -> Self {
        Self {
            db: db.to_owned(),
            ..self.clone()
        }
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = DatabaseUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.password.is_empty() { "" } else { ":***" };
        write!(
            f,
            "rethinkdb://{}{}@{}:{}/{}",
            self.user, password, self.host, self.port, self.db
        )
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults() {
        let u = DatabaseUrl::parse("rethinkdb://localhost/leaderboard").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.user.as_str(),
                u.password(),
                u.db.as_str()
            ),
            ("localhost", 28015, "admin", "", "leaderboard")
        );
    }

    #[test]
    fn full_form_with_encoded_password() {
        let u = DatabaseUrl::parse("rethinkdb://bob:p%40ss%2Fw@10.0.0.5:29015/lb_1/").unwrap();
        assert_eq!((u.user.as_str(), u.password()), ("bob", "p@ss/w"));
        assert_eq!(
            (u.host.as_str(), u.port, u.db.as_str()),
            ("10.0.0.5", 29015, "lb_1")
        );
    }

    #[test]
    fn ipv6_host() {
        let u = DatabaseUrl::parse("rethinkdb://[::1]:28016/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 28016));
    }

    #[test]
    fn password_never_shown() {
        let u = DatabaseUrl::parse("rethinkdb://admin:hunter2@db/x").unwrap();
        assert!(!format!("{u} {u:?}").contains("hunter2"));
    }

    #[test]
    fn errors_name_the_problem() {
        use DatabaseUrlError::*;
        let cases: &[(&str, DatabaseUrlError)] = &[
            ("postgres://h/x", Scheme("postgres".into())),
            ("rethinkdbs://h/x", Tls),
            ("rethinkdb://h", MissingDb),
            ("rethinkdb://h/", MissingDb),
            ("rethinkdb://h/a-b", DbName("a-b".into())),
            ("rethinkdb://h/x?ssl=1", Query),
        ];
        for (raw, want) in cases {
            assert_eq!(&DatabaseUrl::parse(raw).unwrap_err(), want, "{raw}");
        }
        assert!(matches!(DatabaseUrl::parse("not a url"), Err(Syntax(_))));
        assert!(matches!(
            DatabaseUrl::parse("rethinkdb://h:99999/x"),
            Err(Syntax(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(raw in ".{0,100}") {
            let _ = DatabaseUrl::parse(&raw);
        }

        #[test]
        fn round_trips_credentials(user in "[a-z]{1,8}", pw in "\\PC{0,16}", db in "[a-z_]{1,10}") {
            let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
            let raw = format!("rethinkdb://{}:{}@localhost:1234/{}", enc(&user), enc(&pw), db);
            let u = DatabaseUrl::parse(&raw).unwrap();
            prop_assert_eq!(&u.user, &user);
            prop_assert_eq!(u.password(), pw.as_str());
            prop_assert_eq!(&u.db, &db);
            prop_assert_eq!(u.port, 1234);
        }
    }
}
