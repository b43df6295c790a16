//! `leaderboard-web`: the HTTP origin. `leaderboard-web seed` writes the demo
//! board and exits.

use std::process::ExitCode;

use web::{Application, Settings};

fn main() -> ExitCode {
    // A missing .env is normal (Heroku, Docker); a broken one is not.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("leaderboard-web: cannot read .env: {e}");
            return ExitCode::from(2);
        }
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("leaderboard-web: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let command = std::env::args().nth(1);
    let result = actix_web::rt::System::new().block_on(async move {
        match command.as_deref() {
            None | Some("serve") => serve(settings).await,
            Some("seed") => seed(settings).await,
            Some("token") => token(settings, std::env::args().skip(2).collect()),
            Some(other) => Err(anyhow::anyhow!(
                "unknown command {other:?}; expected `serve`, `seed` or `token`"
            )),
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
    app.run_until_stopped().await?;
    log::info!("stopped");
    Ok(())
}

/// `leaderboard-web token [SUBJECT] [TTL_SECONDS]`: prints a write token
/// signed with WRITE_JWT_KEY, for a game server to send as
/// `Authorization: Bearer <token>`.
fn token(settings: Settings, args: Vec<String>) -> anyhow::Result<()> {
    let subject = args.first().map(String::as_str).unwrap_or("game-server");
    let ttl = match args.get(1) {
        Some(t) => t
            .parse::<u64>()
            .map_err(|_| anyhow::anyhow!("TTL must be a number of seconds, got {t:?}"))?,
        None => 30 * 24 * 3600,
    };
    let token = settings
        .write_auth
        .mint(subject, std::time::Duration::from_secs(ttl))
        .ok_or_else(|| {
            anyhow::anyhow!("WRITE_JWT_KEY is not set, so no write token can be signed")
        })??;
    println!("{token}");
    Ok(())
}

async fn seed(settings: Settings) -> anyhow::Result<()> {
    let store = store::Store::new(settings.database_url, store::PoolOptions::default());
    let created = web::seed::seed(&store).await?;
    println!(
        "seeded board {:?}: {created} records created",
        web::seed::DEMO_BOARD
    );
    Ok(())
}
