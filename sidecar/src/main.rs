//! `switchyard-sidecar` — serve (the default), `migrate`, or `import-litellm <source>`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use switchyard_sidecar::api::{router, AppState};
use switchyard_sidecar::config::Config;
use switchyard_sidecar::{import, store};

const USAGE: &str =
    "usage: switchyard-sidecar [serve | migrate | import-litellm <file.json|file.csv|postgres://…> | period]
Settings come from the environment: SWITCHYARD_SIDECAR_ADDR, DATABASE_URL, SWITCHYARD_DATA_DIR,
SWITCHYARD_MASTER_KEY (or LITELLM_MASTER_KEY), SWITCHYARD_INTERNAL_SECRET, SWITCHYARD_LOG,
SPEND_LOG_RETENTION_DAYS.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("period") {
        return period();
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchyard-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    // JSON lines on stderr; nothing logged carries a key, a hash, a secret or the database URL.
    tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_max_level(config.log_level)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let cmd: Vec<&str> = args.iter().map(String::as_str).collect();
    runtime.block_on(async move {
        match cmd.as_slice() {
            [] | ["serve"] => serve(config).await,
            ["migrate"] => match store::open(&config.database_url).await {
                Ok(s) => {
                    tracing::info!(backend = s.backend(), "schema up to date");
                    s.close().await;
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the database");
                    ExitCode::FAILURE
                }
            },
            ["import-litellm", source] => import_litellm(config, source).await,
            ["-h" | "--help" | "help"] => {
                println!("{USAGE}");
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        }
    })
}

/// `switchyard-sidecar period`: the budget period arithmetic, for checking it against
/// LiteLLM's own functions (tests/sidecar/test_budgets.py). One JSON object per line on
/// stdin, `{"duration": "7d", "anchor": <unix s>, "first_reset": <unix s>|null, "t": [<unix s>, …]}`;
/// one line back per line: `{"periods": [[start, end] | null, …], "next_reset": [<LiteLLM's
/// get_next_standardized_reset_time(duration, t)>, …], "seconds": [<duration_in_seconds at t>, …]}`
/// or `{"error": "…"}`. Needs no database or settings.
fn period() -> ExitCode {
    use std::io::{BufRead, Write};
    use switchyard_sidecar::{duration, period::Schedule};
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = (|| -> Result<serde_json::Value, String> {
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            let text = v.get("duration").and_then(|d| d.as_str()).ok_or("duration must be a string")?;
            let d = duration::parse(text)?;
            let anchor = v.get("anchor").and_then(serde_json::Value::as_i64).ok_or("anchor must be an integer")?;
            let first = v.get("first_reset").and_then(serde_json::Value::as_i64);
            let ts: Vec<i64> = v
                .get("t")
                .and_then(|t| t.as_array())
                .ok_or("t must be a list")?
                .iter()
                .map(|x| x.as_i64().ok_or("t must hold integers"))
                .collect::<Result<_, _>>()?;
            let sched = Schedule::new(d, anchor, first).ok_or("this duration cannot reset")?;
            let periods: Vec<serde_json::Value> = ts
                .iter()
                .map(|t| sched.period(*t).map_or(serde_json::Value::Null, |(a, b)| serde_json::json!([a, b])))
                .collect();
            let next: Vec<serde_json::Value> =
                ts.iter().map(|t| d.next_reset(*t).map_or(serde_json::Value::Null, serde_json::Value::from)).collect();
            let seconds: Vec<i64> = ts.iter().map(|t| d.seconds_from(*t)).collect();
            Ok(serde_json::json!({"periods": periods, "next_reset": next, "seconds": seconds}))
        })()
        .unwrap_or_else(|e| serde_json::json!({"error": e}));
        if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

async fn import_litellm(config: Config, source: &str) -> ExitCode {
    let store = match store::open(&config.database_url).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the database");
            return ExitCode::FAILURE;
        }
    };
    let result = import::run(store.as_ref(), source).await;
    store.close().await;
    match result {
        Ok(summary) => {
            println!("{}", serde_json::to_string(&summary).unwrap_or_default());
            tracing::info!(
                keys = summary.keys,
                teams = summary.teams,
                users = summary.users,
                end_users = summary.end_users,
                skipped = summary.skipped.len(),
                "import finished"
            );
            if summary.skipped.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "import failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    let store = match store::open(&config.database_url).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the database");
            return ExitCode::FAILURE;
        }
    };
    let backend = store.backend();
    if config.master_key.is_none() {
        tracing::warn!("no SWITCHYARD_MASTER_KEY: the admin API refuses every call");
    }
    if config.internal_secret.is_none() {
        tracing::warn!("no SWITCHYARD_INTERNAL_SECRET: the internal API refuses every call");
    }
    let listener = match tokio::net::TcpListener::bind(config.addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %config.addr, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(config.addr);
    let state = AppState::with_retention(store, config.master_key, config.internal_secret, config.spend_retention_days);
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let retention = tokio::spawn(switchyard_sidecar::api::spend::retention_task(state.clone()));
    tracing::info!(addr = %addr, backend, "listening");
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let signal = shutdown_signal().await;
        tracing::info!(signal, "shutting down");
        let _ = tx.send(true);
    });
    let mut graceful = rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|stop| *stop).await;
    });
    let mut deadline = rx;
    let result = tokio::select! {
        r = server => r.map_err(|e| e.to_string()),
        // Requests still running 10 s after the signal are cut off.
        _ = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        } => Err("requests still running 10 s after the signal".to_owned()),
    };
    retention.abort();
    state.store.close().await;
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::warn!(error = %e, "stopped");
            ExitCode::SUCCESS
        }
    }
}

/// SIGTERM or SIGINT; its name.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
