//! `bench <scenario>`: see the library's documentation, or `bench --help`.

use std::process::ExitCode;

use bench::cli::{Cli, Command, Config};
use clap::{CommandFactory, Parser};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(scenario) = cli.command.scenario() else {
        if let Command::Completions { shell } = cli.command {
            clap_complete::generate(shell, &mut Cli::command(), "bench", &mut std::io::stdout());
        }
        return ExitCode::SUCCESS;
    };
    let mut config = Config::from_cli(scenario, cli.options);
    if let Command::Chaos {
        seconds,
        seed,
        clients,
    } = cli.command
    {
        config.chaos = Some(bench::cli::Chaos {
            seconds,
            seed: seed.unwrap_or_else(rand::random),
            clients: clients as usize,
        });
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // On Ctrl-C or SIGTERM the run is dropped, and with it the stack, whose
    // handles stop every process it started.
    let outcome = tokio::select! {
        outcome = bench::run(&config, &args) => outcome,
        signal = stop_signal() => Err(anyhow::anyhow!("stopped by {signal}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
