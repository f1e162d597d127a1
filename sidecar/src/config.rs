//! Settings, all from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SWITCHYARD_SIDECAR_ADDR` | `127.0.0.1:4001` | listen address |
//! | `DATABASE_URL` | `sqlite://<data dir>/switchyard.db` | `sqlite:…` or `postgres://…` |
//! | `SWITCHYARD_DATA_DIR` | the working directory | where the default SQLite file lives |
//! | `SWITCHYARD_MASTER_KEY` (or `LITELLM_MASTER_KEY`) | unset: admin API refused | admin API key |
//! | `SWITCHYARD_INTERNAL_SECRET` | unset: internal API refused | `x-switchyard-internal` value |
//! | `SWITCHYARD_LOG` | `info` | `error`, `warn`, `info`, `debug`, `trace` |
//! | `SPEND_LOG_RETENTION_DAYS` | `90` | ledger rows older than this many days are deleted (`0`: kept) |

use std::net::SocketAddr;
use std::path::PathBuf;

use tracing::level_filters::LevelFilter;

pub struct Config {
    pub addr: SocketAddr,
    pub database_url: String,
    pub master_key: Option<String>,
    pub internal_secret: Option<String>,
    pub log_level: LevelFilter,
    pub spend_retention_days: i64,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        let addr = var("SWITCHYARD_SIDECAR_ADDR").unwrap_or_else(|| "127.0.0.1:4001".to_owned());
        let addr: SocketAddr =
            addr.parse().map_err(|_| format!("SWITCHYARD_SIDECAR_ADDR={addr:?} is not an ip:port address"))?;
        let database_url = match var("DATABASE_URL") {
            Some(url) => url,
            None => {
                let dir = var("SWITCHYARD_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
                format!("sqlite://{}", dir.join("switchyard.db").display())
            }
        };
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err("DATABASE_URL must start with sqlite: or postgres://".to_owned());
        }
        let log_level = match var("SWITCHYARD_LOG").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("info") => LevelFilter::INFO,
            Some("error") => LevelFilter::ERROR,
            Some("warn") => LevelFilter::WARN,
            Some("debug") => LevelFilter::DEBUG,
            Some("trace") => LevelFilter::TRACE,
            Some("off") => LevelFilter::OFF,
            Some(other) => return Err(format!("SWITCHYARD_LOG={other:?}: use error, warn, info, debug or trace")),
        };
        let spend_retention_days = match var("SPEND_LOG_RETENTION_DAYS") {
            None => crate::api::DEFAULT_SPEND_RETENTION_DAYS,
            Some(v) => v.parse::<i64>().ok().filter(|d| (0..=36_500).contains(d)).ok_or_else(|| {
                format!("SPEND_LOG_RETENTION_DAYS={v:?}: a number of days from 0 (keep forever) to 36500")
            })?,
        };
        Ok(Config {
            spend_retention_days,
            addr,
            database_url,
            master_key: var("SWITCHYARD_MASTER_KEY").or_else(|| var("LITELLM_MASTER_KEY")),
            internal_secret: var("SWITCHYARD_INTERNAL_SECRET"),
            log_level,
        })
    }
}
