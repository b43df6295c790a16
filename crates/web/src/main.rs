//! `leaderboard-web`: the HTTP origin. `leaderboard-web seed` writes the demo
//! board and exits; `leaderboard-web token` prints a write token;
//! `leaderboard-web reconfigure` sets the tables' replicas and shards;
//! `leaderboard-web migrate` gives existing boards and players their slot;
//! `leaderboard-web openapi` prints the API's OpenAPI document.

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use web::{Application, Settings};

/// The leaderboard's HTTP origin. Configuration comes from the environment
/// and `.env` (see docs/configuration.md).
#[derive(Debug, Parser)]
#[command(name = "leaderboard-web", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API on HOST:PORT until SIGINT or SIGTERM (the default).
    Serve,
    /// Write the demo board (`demo`, players Alice to Eve) where missing.
    Seed,
    /// Print a write token signed with WRITE_JWT_KEY, for a game server to
    /// send as `Authorization: Bearer <token>`.
    Token {
        /// Who holds the token.
        #[arg(default_value = "game-server")]
        subject: String,
        /// How long the token is valid, in seconds (default 30 days).
        #[arg(value_name = "TTL_SECONDS", default_value_t = 30 * 24 * 3600)]
        ttl: u64,
    },
    /// Set the replicas and shards of every table to TABLE_REPLICAS and
    /// TABLE_SHARDS (on a cluster; RethinkDB moves the data itself), and
    /// print RethinkDB's answer for each table.
    Reconfigure,
    /// Give every board and player of an existing database its `slot` (the
    /// field the workers' shard changefeeds follow). Idempotent, safe while
    /// the stack runs; workers also do it once at start.
    Migrate,
    /// Print the API's OpenAPI 3.1 document (JSON), as `GET /openapi.json`
    /// serves it; `docs/openapi.json` is this output.
    Openapi,
    /// Print a shell completion script for this command.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Completions { shell }) = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "leaderboard-web",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Openapi) = cli.command {
        print!("{}", web::openapi::document());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = service::config::load_dotenv() {
        eprintln!("leaderboard-web: {e}");
        return ExitCode::from(2);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("leaderboard-web: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = actix_web::rt::System::new().block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings).await,
            Command::Seed => seed(settings).await,
            Command::Reconfigure => reconfigure(settings).await,
            Command::Migrate => migrate(settings).await,
            Command::Token { subject, ttl } => token(&settings, &subject, ttl),
            Command::Completions { .. } | Command::Openapi => {
                unreachable!("handled before the configuration")
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leaderboard-web: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    log::info!("starting with {settings:?}");
    let host = settings.host.clone();
    let app = Application::build(settings)?;
    // One line on stdout that scripts and the test harness read the port from.
    println!("leaderboard-web listening on {host}:{}", app.port());
    app.run_until_stopped(service::shutdown_signal()).await?;
    log::info!("stopped");
    Ok(())
}

fn token(settings: &Settings, subject: &str, ttl: u64) -> anyhow::Result<()> {
    let token = settings
        .write_auth
        .mint(subject, Duration::from_secs(ttl))
        .ok_or_else(|| {
            anyhow::anyhow!("WRITE_JWT_KEY is not set, so no write token can be signed")
        })??;
    println!("{token}");
    Ok(())
}

fn store_of(settings: Settings) -> store::Store {
    store::Store::new(
        settings.database_url,
        store::PoolOptions {
            schema: settings.table_layout,
            ..store::PoolOptions::default()
        },
    )
}

async fn reconfigure(settings: Settings) -> anyhow::Result<()> {
    let layout = settings.table_layout;
    let db = settings.database_url.db.clone();
    let answers = store_of(settings).reconfigure(layout).await?;
    println!(
        "reconfigured database {db:?} to {} replica(s) of {} shard(s):",
        layout.replicas, layout.shards
    );
    for answer in answers {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    }
    Ok(())
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let db = settings.database_url.db.clone();
    let store = store_of(settings);
    store.ensure_schema().await?;
    let report = store.migrate_slots(true).await?;
    println!(
        "database {db:?}: {} boards and {} players given their slot",
        report.boards, report.players
    );
    Ok(())
}

async fn seed(settings: Settings) -> anyhow::Result<()> {
    let store = store_of(settings);
    let created = web::seed::seed(&store).await?;
    println!(
        "seeded board {:?}: {created} records created",
        web::seed::DEMO_BOARD
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn existing_invocations_still_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.command);
        assert!(matches!(parse(&["leaderboard-web"]), Ok(None)));
        assert!(matches!(
            parse(&["leaderboard-web", "serve"]),
            Ok(Some(Command::Serve))
        ));
        assert!(matches!(
            parse(&["leaderboard-web", "seed"]),
            Ok(Some(Command::Seed))
        ));
        match parse(&["leaderboard-web", "token", "game-server-7", "60"]) {
            Ok(Some(Command::Token { subject, ttl })) => {
                assert_eq!((subject.as_str(), ttl), ("game-server-7", 60))
            }
            other => panic!("{other:?}"),
        }
        match parse(&["leaderboard-web", "token"]) {
            Ok(Some(Command::Token { subject, ttl })) => {
                assert_eq!((subject.as_str(), ttl), ("game-server", 2_592_000))
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["leaderboard-web", "token", "x", "soon"]).is_err());
        assert!(matches!(
            parse(&["leaderboard-web", "reconfigure"]),
            Ok(Some(Command::Reconfigure))
        ));
        assert!(matches!(
            parse(&["leaderboard-web", "migrate"]),
            Ok(Some(Command::Migrate))
        ));
        assert!(matches!(
            parse(&["leaderboard-web", "openapi"]),
            Ok(Some(Command::Openapi))
        ));
        assert!(parse(&["leaderboard-web", "bogus"]).is_err());
    }
}
