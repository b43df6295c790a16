//! `reql-dev-server`: a RethinkDB-compatible server for development and tests.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use reql_dev_server::{listening_line, Config, Server};

/// A RethinkDB-compatible server for development and tests. It takes
/// RethinkDB's own options, so one command line starts either server.
#[derive(Debug, Parser)]
#[command(name = "reql-dev-server", version, about)]
struct Args {
    /// Address to listen on, or `all` for every interface [default: 127.0.0.1]
    #[arg(long, value_name = "ADDR|all", value_parser = parse_bind)]
    bind: Option<IpAddr>,
    /// Port for client drivers; 0 picks a free one. The port is printed on
    /// stdout either way [default: 28015]
    #[arg(long, value_name = "N")]
    driver_port: Option<u16>,
    /// Added to the driver port (unless it is 0)
    #[arg(long, value_name = "N", default_value_t = 0)]
    port_offset: u16,
    /// Keep the data in this directory; without it, data lives in memory
    #[arg(short = 'd', long, value_name = "DIR")]
    directory: Option<PathBuf>,
    /// Password of the `admin` user (empty by default, as on a new RethinkDB)
    #[arg(long, value_name = "PW")]
    initial_password: Option<String>,
    /// The name the server reports [default: reql_dev_server]
    #[arg(short = 'n', long, value_name = "NAME")]
    server_name: Option<String>,
    /// How long a `tableCreate` stays invisible to a concurrent creation of
    /// the same name, which then also succeeds and leaves two tables, as on
    /// RethinkDB 2.4.4; 0 turns that hazard off [default: 10]
    #[arg(long, value_name = "MS")]
    table_create_window_ms: Option<u64>,
    /// Serve the driver port over TLS with this private key (PEM); needs
    /// --driver-tls-cert
    #[arg(long, value_name = "FILE", requires = "driver_tls_cert")]
    driver_tls_key: Option<PathBuf>,
    /// The certificate (chain) of the driver port, PEM; needs --driver-tls-key
    #[arg(long, value_name = "FILE", requires = "driver_tls_key")]
    driver_tls_cert: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM); needs the two above
    #[arg(long, value_name = "FILE", requires = "driver_tls_cert")]
    driver_tls_ca: Option<PathBuf>,
    /// Print a shell completion script and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,

    #[command(flatten)]
    ignored: RethinkDbOnly,
}

/// RethinkDB options that mean nothing here: accepted, logged and ignored.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "RethinkDB options, accepted and ignored")]
struct RethinkDbOnly {
    #[arg(long)]
    no_http_admin: bool,
    #[arg(long)]
    no_update_check: bool,
    #[arg(long, value_name = "PORT")]
    http_port: Option<String>,
    #[arg(long, value_name = "PORT")]
    cluster_port: Option<String>,
    #[arg(long, value_name = "MB")]
    cache_size: Option<String>,
    #[arg(long, value_name = "N")]
    io_threads: Option<String>,
    #[arg(long, value_name = "N")]
    cores: Option<String>,
    #[arg(long, value_name = "ADDR")]
    canonical_address: Option<String>,
    #[arg(long, value_name = "HOST:PORT")]
    join: Vec<String>,
}

impl RethinkDbOnly {
    /// The options that were given, as `--name`.
    fn given(&self) -> Vec<&'static str> {
        [
            ("--no-http-admin", self.no_http_admin),
            ("--no-update-check", self.no_update_check),
            ("--http-port", self.http_port.is_some()),
            ("--cluster-port", self.cluster_port.is_some()),
            ("--cache-size", self.cache_size.is_some()),
            ("--io-threads", self.io_threads.is_some()),
            ("--cores", self.cores.is_some()),
            ("--canonical-address", self.canonical_address.is_some()),
            ("--join", !self.join.is_empty()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }
}

fn parse_bind(value: &str) -> Result<IpAddr, String> {
    if value == "all" {
        return Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    value
        .parse()
        .map_err(|_| format!("not an IP address: {value}"))
}

impl Args {
    fn config(self) -> Result<Config, String> {
        let defaults = Config::default();
        let mut port = self.driver_port.unwrap_or(defaults.port);
        if port != 0 {
            port = port
                .checked_add(self.port_offset)
                .ok_or("--port-offset: port out of range")?;
        }
        let tls = match (&self.driver_tls_cert, &self.driver_tls_key) {
            (Some(cert), Some(key)) => Some(reql_dev_server::tls_config(
                cert,
                key,
                self.driver_tls_ca.as_deref(),
            )?),
            _ => None,
        };
        Ok(Config {
            tls,
            bind: self.bind.unwrap_or(defaults.bind),
            port,
            directory: self.directory,
            initial_password: self.initial_password,
            server_name: self.server_name.unwrap_or(defaults.server_name),
            table_create_window: self.table_create_window_ms.map_or(
                defaults.table_create_window,
                std::time::Duration::from_millis,
            ),
            ..defaults
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(shell) = args.completions {
        let mut command = Args::command();
        clap_complete::generate(
            shell,
            &mut command,
            "reql-dev-server",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    for flag in args.ignored.given() {
        log::info!("ignoring {flag}: it has no meaning for reql-dev-server");
    }
    let config = match args.config() {
        Ok(c) => c,
        Err(msg) => Args::command()
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit(),
    };
    log::info!("starting with {config:?}");
    let server = match Server::bind(config).await {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{}", listening_line(server.local_addr().port()));
    let _ = stdout.flush();
    match server.run_until_stopped(service::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, String> {
        let args = std::iter::once("reql-dev-server").chain(args.iter().copied());
        Args::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .config()
    }

    #[test]
    fn the_table_create_window_is_set_in_milliseconds() {
        let c = config(&[]).unwrap();
        assert_eq!(c.table_create_window, std::time::Duration::from_millis(10));
        let c = config(&["--table-create-window-ms", "0"]).unwrap();
        assert!(c.table_create_window.is_zero());
    }

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_invocations_in_use_still_work() {
        let c = config(&["--bind", "127.0.0.1", "--driver-port", "0"]).unwrap();
        assert_eq!((c.bind, c.port), (IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
        let c = config(&[
            "--bind",
            "127.0.0.1",
            "--driver-port",
            "28015",
            "--directory",
            "./data",
            "--initial-password",
            "pw",
        ])
        .unwrap();
        assert_eq!(c.port, 28015);
        assert_eq!(c.directory, Some(PathBuf::from("./data")));
        assert_eq!(c.initial_password.as_deref(), Some("pw"));
        let c = config(&[
            "--bind=all",
            "--driver-port=28015",
            "--port-offset=1",
            "-n",
            "x",
        ])
        .unwrap();
        assert_eq!(c.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!((c.port, c.server_name.as_str()), (28016, "x"));
        let c = config(&[]).unwrap();
        let d = Config::default();
        assert_eq!(
            (c.bind, c.port, c.server_name),
            (d.bind, d.port, d.server_name)
        );
    }

    #[test]
    fn rethinkdb_options_are_accepted() {
        let args = Args::try_parse_from([
            "reql-dev-server",
            "--no-http-admin",
            "--cache-size",
            "512",
            "--join",
            "a:29015",
            "--join",
            "b:29015",
        ])
        .unwrap();
        assert_eq!(
            args.ignored.given(),
            vec!["--no-http-admin", "--cache-size", "--join"]
        );
    }

    #[test]
    fn tls_options_go_together_and_name_a_bad_file() {
        assert!(config(&["--driver-tls-key", "k.pem"]).is_err());
        assert!(config(&["--driver-tls-cert", "c.pem"]).is_err());
        assert!(config(&["--driver-tls-ca", "ca.pem"]).is_err());
        let err = config(&[
            "--driver-tls-key",
            "/nonexistent/k.pem",
            "--driver-tls-cert",
            "/nonexistent/c.pem",
        ])
        .expect_err("no such files");
        assert!(err.contains("/nonexistent/c.pem"), "{err}");
        assert!(config(&[]).unwrap().tls.is_none());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(config(&["--bind", "localhost"]).is_err());
        assert!(config(&["--driver-port", "70000"]).is_err());
        assert!(config(&["--driver-port", "65535", "--port-offset", "1"]).is_err());
        assert!(config(&["--unknown"]).is_err());
    }
}
