//! `reql-dev-server`: a RethinkDB-compatible server for development and tests.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use reql_dev_server::{listening_line, Config, Server};

const USAGE: &str = "Usage: reql-dev-server [--bind ADDR|all] [--driver-port N] [--port-offset N] \
[--directory DIR] [--initial-password PW] [--server-name NAME]";

fn parse_args(args: impl Iterator<Item = String>) -> Result<(Config, Vec<String>), String> {
    let mut config = Config::default();
    let mut offset: u16 = 0;
    let mut ignored = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--bind" => {
                let v = value()?;
                config.bind = if v == "all" {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else {
                    v.parse()
                        .map_err(|_| format!("--bind: not an IP address: {v}"))?
                };
            }
            "--driver-port" => {
                let v = value()?;
                config.port = v
                    .parse()
                    .map_err(|_| format!("--driver-port: not a port: {v}"))?;
            }
            "--directory" | "-d" => config.directory = Some(PathBuf::from(value()?)),
            "--initial-password" => config.initial_password = Some(value()?),
            "--server-name" | "-n" => config.server_name = value()?,
            "--port-offset" => {
                let v = value()?;
                offset = v
                    .parse()
                    .map_err(|_| format!("--port-offset: not a number: {v}"))?;
            }
            // RethinkDB options that mean nothing here; accepted so the same
            // command line works for both servers.
            "--no-http-admin" | "--no-update-check" => ignored.push(flag.clone()),
            "--http-port"
            | "--cluster-port"
            | "--cache-size"
            | "--io-threads"
            | "--cores"
            | "--canonical-address"
            | "--join" => {
                value()?;
                ignored.push(flag.clone());
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if config.port != 0 {
        config.port = config
            .port
            .checked_add(offset)
            .ok_or_else(|| "--port-offset: port out of range".to_string())?;
    }
    Ok((config, ignored))
}

async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (config, ignored) = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(msg) => {
            if msg.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("reql-dev-server: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    for flag in ignored {
        log::info!("ignoring {flag}: it has no meaning for reql-dev-server");
    }
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
    match server.run_until_stopped(stop_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
