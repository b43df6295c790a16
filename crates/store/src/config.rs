use std::fmt;

use percent_encoding::percent_decode_str;
use url::Url;

/// Where the database is:
/// `rethinkdb://[user[:password]@]host[:port][,host[:port]...]/dbname`, or
/// `rethinkdbs://...` for TLS, optionally with `?ca=FILE` (trust this CA
/// instead of the system's roots) and `cert=FILE&key=FILE` (a client
/// certificate, for a server started with `--driver-tls-ca`).
///
/// The port defaults to 28015 and the user to `admin` (with an empty
/// password), as in RethinkDB itself. Several comma-separated hosts name the
/// servers of one cluster (an IPv6 address goes in brackets); the pool spreads
/// its connections over them. `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    /// The first host, as [`DatabaseUrl::hosts`]`[0]` (kept for callers
    /// that reach one server only).
    pub host: String,
    /// The first host's port.
    pub port: u16,
    /// Every host, in the order given; never empty.
    pub hosts: Vec<Endpoint>,
    /// The user to log in as, percent-decoded; `admin` when the URL names none.
    pub user: String,
    password: String,
    /// The database name, from the URL's path.
    pub db: String,
    /// TLS, for `rethinkdbs://`: the files named, read when the URL was
    /// parsed so that a wrong path or file is refused at start.
    pub tls: Option<reql_client::TlsSettings>,
}

/// One server of the cluster: a host name or address and a driver port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// A host name, or an IP address (IPv6 without brackets).
    pub host: String,
    /// The driver port (28015 unless the URL names another).
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a database URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    /// Not a URL at all; the parser's message.
    #[error("not a URL ({0}); expected rethinkdb://[user[:password]@]host[:port]/dbname")]
    Syntax(String),
    /// A scheme other than `rethinkdb` or `rethinkdbs`.
    #[error("scheme must be rethinkdb://, not {0}://")]
    Scheme(String),
    /// A file named by `ca=`, `cert=` or `key=` could not be read or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// A query parameter other than `ca`, `cert` and `key`.
    #[error("unknown parameter {0:?}; rethinkdbs:// takes ca=, cert= and key=")]
    Parameter(String),
    /// No host, or an empty item in a host list.
    #[error("a host is required")]
    Host,
    /// The same host and port appear twice in a host list.
    #[error("host {0} is listed twice")]
    DuplicateHost(String),
    /// The URL has no path to name the database.
    #[error("a database name is required as the path, e.g. rethinkdb://localhost/leaderboard")]
    MissingDb,
    /// A database name RethinkDB would refuse.
    #[error("database name {0:?} may contain only letters, digits and '_' (at most 64)")]
    DbName(String),
    /// The user name or password does not percent-decode to UTF-8.
    #[error("user name or password is not valid UTF-8 after percent-decoding")]
    Encoding,
    /// TLS parameters on a plain `rethinkdb://` URL.
    #[error("query parameters (ca=, cert=, key=) are for TLS: use rethinkdbs://")]
    Query,
}

impl DatabaseUrl {
    /// RethinkDB's driver port, used when the URL names none.
    pub const DEFAULT_PORT: u16 = 28015;

    /// Parses a URL with one host or a comma-separated list of them.
    ///
    /// The `url` crate reads one host only, so a list is split here and each
    /// host is read as its own single-host URL with the same credentials and
    /// path: every host then gets exactly the checks (and error messages) a
    /// single host gets.
    pub fn parse(raw: &str) -> Result<Self, DatabaseUrlError> {
        let raw = raw.trim();
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Self::parse_one(raw);
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, host_list) = match authority.rfind('@') {
            Some(at) => authority.split_at(at + 1),
            None => ("", authority),
        };
        if !host_list.contains(',') {
            return Self::parse_one(raw);
        }
        let mut first: Option<Self> = None;
        let mut hosts: Vec<Endpoint> = Vec::new();
        for item in host_list.split(',') {
            if item.trim().is_empty() {
                return Err(DatabaseUrlError::Host);
            }
            let one = Self::parse_one(&format!("{scheme}://{userinfo}{}{tail}", item.trim()))?;
            let endpoint = one.hosts[0].clone();
            if hosts.contains(&endpoint) {
                return Err(DatabaseUrlError::DuplicateHost(endpoint.to_string()));
            }
            hosts.push(endpoint);
            first.get_or_insert(one);
        }
        let mut url = first.ok_or(DatabaseUrlError::Host)?;
        url.hosts = hosts;
        Ok(url)
    }

    /// The TLS settings of a `rethinkdbs://` URL's query, files read.
    fn tls(url: &Url) -> Result<reql_client::TlsSettings, DatabaseUrlError> {
        let (mut ca, mut cert, mut key) = (None, None, None);
        for (name, value) in url.query_pairs() {
            let slot = match name.as_ref() {
                "ca" => &mut ca,
                "cert" => &mut cert,
                "key" => &mut key,
                other => return Err(DatabaseUrlError::Parameter(other.to_owned())),
            };
            *slot = Some(std::path::PathBuf::from(value.as_ref()));
        }
        reql_client::TlsSettings::load(ca.as_deref(), cert.as_deref(), key.as_deref())
            .map_err(DatabaseUrlError::Tls)
    }

    fn parse_one(raw: &str) -> Result<Self, DatabaseUrlError> {
        let url = Url::parse(raw.trim()).map_err(|e| DatabaseUrlError::Syntax(e.to_string()))?;
        let tls = match url.scheme() {
            "rethinkdb" if url.query().is_some() => return Err(DatabaseUrlError::Query),
            "rethinkdb" => None,
            "rethinkdbs" => Some(Self::tls(&url)?),
            other => return Err(DatabaseUrlError::Scheme(other.to_owned())),
        };
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
        let port = url.port().unwrap_or(Self::DEFAULT_PORT);
        Ok(Self {
            hosts: vec![Endpoint {
                host: host.clone(),
                port,
            }],
            host,
            port,
            user,
            password,
            db: db.to_owned(),
            tls,
        })
    }

    /// The password, percent-decoded; empty when the URL gives none.
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
        let scheme = if self.tls.is_some() {
            "rethinkdbs"
        } else {
            "rethinkdb"
        };
        write!(f, "{scheme}://{}{}@", self.user, password)?;
        for (i, endpoint) in self.hosts.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            write!(f, "{comma}{endpoint}")?;
        }
        write!(f, "/{}", self.db)?;
        if let Some(tls) = &self.tls {
            let mut params = url::form_urlencoded::Serializer::new(String::new());
            if let Some(ca) = &tls.ca {
                params.append_pair("ca", &ca.path.to_string_lossy());
            }
            if let Some((cert, key)) = &tls.client {
                params.append_pair("cert", &cert.path.to_string_lossy());
                params.append_pair("key", &key.path.to_string_lossy());
            }
            let params = params.finish();
            if !params.is_empty() {
                write!(f, "?{params}")?;
            }
        }
        Ok(())
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
            (
                "rethinkdbs://h/x?ca=/nonexistent/ca.pem",
                Tls(
                    "cannot read /nonexistent/ca.pem: No such file or directory (os error 2)"
                        .into(),
                ),
            ),
            ("rethinkdbs://h/x?ssl=1", Parameter("ssl".into())),
            (
                "rethinkdbs://h/x?cert=/c.pem",
                Tls("cert= needs key= (the client certificate's key)".into()),
            ),
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

    fn endpoints(u: &DatabaseUrl) -> Vec<String> {
        u.hosts.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn one_host_is_a_list_of_one() {
        let u = DatabaseUrl::parse("rethinkdb://[::1]:28016/x").unwrap();
        assert_eq!(endpoints(&u), ["[::1]:28016"]);
        assert_eq!(u.to_string(), "rethinkdb://admin@[::1]:28016/x");
    }

    #[test]
    fn several_hosts_with_default_ports_and_ipv6() {
        let u = DatabaseUrl::parse("rethinkdb://bob:p%2Cw@h1:28015,h2:29015,h3,[::1]/lb").unwrap();
        assert_eq!(
            endpoints(&u),
            ["h1:28015", "h2:29015", "h3:28015", "[::1]:28015"]
        );
        assert_eq!((u.host.as_str(), u.port), ("h1", 28015), "the first host");
        assert_eq!(
            (u.user.as_str(), u.password(), u.db.as_str()),
            ("bob", "p,w", "lb")
        );
        assert_eq!(
            u.to_string(),
            "rethinkdb://bob:***@h1:28015,h2:29015,h3:28015,[::1]:28015/lb"
        );
        assert!(!format!("{u:?}").contains("p,w"));
        assert_eq!(u.with_db("other").hosts, u.hosts);
        // Spaces around the commas are forgiven, as in the other lists.
        let spaced = DatabaseUrl::parse("rethinkdb://h1, h2/lb").unwrap();
        assert_eq!(endpoints(&spaced), ["h1:28015", "h2:28015"]);
    }

    #[test]
    fn a_password_may_hold_an_unencoded_comma_or_at() {
        let u = DatabaseUrl::parse("rethinkdb://bob:a,b@c@h1,h2/lb").unwrap();
        assert_eq!(u.password(), "a,b@c");
        assert_eq!(endpoints(&u), ["h1:28015", "h2:28015"]);
    }

    #[test]
    fn host_list_errors_name_the_problem() {
        use DatabaseUrlError::*;
        let cases: &[(&str, DatabaseUrlError)] = &[
            ("rethinkdb://h1,,h2/x", Host),
            ("rethinkdb://h1,/x", Host),
            ("rethinkdb://,h1/x", Host),
            ("rethinkdb://h1,h2", MissingDb),
            ("rethinkdb://h1,h2/a-b", DbName("a-b".into())),
            ("rethinkdb://h1,h2/x?ssl=1", Query),
            (
                "rethinkdbs://h1,h2/x?key=/k.pem",
                Tls("key= needs cert= (the client certificate)".into()),
            ),
            ("http://h1,h2/x", Scheme("http".into())),
            (
                "rethinkdb://h1,h1:28015/x",
                DuplicateHost("h1:28015".into()),
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(&DatabaseUrl::parse(raw).unwrap_err(), want, "{raw}");
        }
        for raw in [
            "rethinkdb://h1,h2:99999/x",
            "rethinkdb://h1,h2:port/x",
            "rethinkdb://h1,[::1/x",
        ] {
            assert!(matches!(DatabaseUrl::parse(raw), Err(Syntax(_))), "{raw}");
        }
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

        #[test]
        fn host_lists_round_trip(
            hosts in proptest::collection::btree_set(("[a-z][a-z0-9]{0,8}", proptest::option::of(1u16..)), 1..5),
            db in "[a-z_]{1,10}",
        ) {
            // Distinct names, so that no two entries are the same host.
            let mut seen = std::collections::BTreeSet::new();
            let hosts: Vec<_> = hosts.into_iter().filter(|(h, _)| seen.insert(h.clone())).collect();
            let list: Vec<String> = hosts
                .iter()
                .map(|(h, p)| p.map_or(h.clone(), |p| format!("{h}:{p}")))
                .collect();
            let u = DatabaseUrl::parse(&format!("rethinkdb://{}/{db}", list.join(","))).unwrap();
            let want: Vec<Endpoint> = hosts
                .iter()
                .map(|(h, p)| Endpoint { host: h.clone(), port: p.unwrap_or(DatabaseUrl::DEFAULT_PORT) })
                .collect();
            prop_assert_eq!(&u.hosts, &want);
            prop_assert_eq!((&u.host, u.port), (&want[0].host, want[0].port));
            // Display reads back as the same place.
            prop_assert_eq!(DatabaseUrl::parse(&u.to_string()).unwrap(), u);
        }
    }
}
