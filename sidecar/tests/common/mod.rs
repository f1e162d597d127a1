//! Shared by the integration tests: a throwaway PostgreSQL server (Debian's binaries, as
//! `tools/postgres.py` starts one for the Python suite) and ledger record builders.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

use switchyard_sidecar::ledger::{Operation, SpendRecord, Usage};

/// A PostgreSQL cluster in a temporary directory, on 127.0.0.1 and an ephemeral port,
/// `fsync=off`; stopped and removed on drop. `None` when PostgreSQL is not installed.
pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_root: bool,
}

fn bindir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

impl Pg {
    pub fn start() -> Option<Pg> {
        let bin = bindir()?;
        let dir = tempfile::Builder::new().prefix("switchyard-pg-").tempdir().ok()?;
        // SAFETY-free check: the effective uid from /proc (no libc dependency).
        let as_root = std::fs::read_to_string("/proc/self/status")
            .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")))
            .unwrap_or(false);
        if as_root {
            let ok = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status().ok()?.success();
            if !ok {
                return None;
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let pg = Pg { dir, bin, port, as_root };
        let data = pg.data();
        pg.run(&[
            pg.bin.join("initdb").to_str()?,
            "-D",
            data.to_str()?,
            "-A",
            "trust",
            "-U",
            "sw",
            "--no-sync",
            "-E",
            "UTF8",
        ])
        .then_some(())?;
        pg.start_again().then_some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, args: &[&str]) -> bool {
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]);
            c.args(args);
            c
        } else {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        };
        cmd.current_dir(self.dir.path());
        match cmd.output() {
            Ok(o) if o.status.success() => true,
            Ok(o) => {
                eprintln!("{args:?}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
                false
            }
            Err(e) => {
                eprintln!("{args:?}: {e}");
                false
            }
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        let ctl = self.bin.join("pg_ctl");
        let data = self.data();
        let mut all = vec![ctl.to_str().unwrap_or_default(), "-D", data.to_str().unwrap_or_default()];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Starts the server (again, after [`Pg::stop_now`]) on the same directory and port.
    pub fn start_again(&self) -> bool {
        let opts = format!("-k {} -p {} -h 127.0.0.1 -c fsync=off", self.dir.path().display(), self.port);
        let log = self.dir.path().join("server.log");
        self.pg_ctl(&["-o", &opts, "-l", log.to_str().unwrap_or_default(), "-w", "start"])
    }

    /// Stops the server at once (`-m immediate`: like a crash).
    pub fn stop_now(&self) -> bool {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"])
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://sw@127.0.0.1:{}/{db}", self.port)
    }

    /// A new empty database; its URL.
    pub async fn create_database(&self, name: &str) -> String {
        use sqlx::Executor;
        let pool = sqlx::PgPool::connect(&self.url("postgres")).await.unwrap();
        pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).await.unwrap();
        pool.close().await;
        self.url(name)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}

/// 15:30 UTC yesterday, in unix milliseconds: records start from there.
pub fn t0() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    (now / 86_400_000 - 1) * 86_400_000 + 55_800_000
}

/// A 32-hex ledger id from a number.
pub fn rid(n: u64) -> String {
    format!("{n:032x}")
}

/// A 64-hex key hash from a name.
pub fn kh(name: &str) -> String {
    switchyard_sidecar::keys::hash_token(name)
}

/// A record of `cost` nano-dollars for `key`, team `t`, user `u`, end user `e`.
pub fn record(n: u64, key: Option<&str>, t: Option<&str>, u: Option<&str>, e: Option<&str>, cost: i64) -> SpendRecord {
    SpendRecord {
        id: rid(n),
        client_request_id: Some(format!("client-{n}")),
        key_hash: key.map(kh),
        team_id: t.map(str::to_owned),
        user_id: u.map(str::to_owned),
        end_user: e.map(str::to_owned),
        model_group: "gpt-4o".into(),
        provider: Some("openai".into()),
        model: Some("gpt-4o-2024-08-06".into()),
        operation: Operation::Chat,
        status: 200,
        stream: n.is_multiple_of(2),
        usage: Usage {
            input: 10 + n as i64 % 7,
            cache_read: 3,
            cache_write_5m: 1,
            cache_write_1h: 0,
            output: 5,
            reasoning: 1,
        },
        cost_nano: cost,
        estimated: n.is_multiple_of(5),
        attempts: 1,
        start_ms: t0() + n as i64 * 1000,
        end_ms: t0() + n as i64 * 1000 + 250,
    }
}

/// The record as the filter sends it.
pub fn record_json(r: &SpendRecord) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "client_request_id": r.client_request_id, "key_hash": r.key_hash, "team_id": r.team_id,
        "user_id": r.user_id, "end_user": r.end_user, "model_group": r.model_group, "provider": r.provider,
        "model": r.model, "operation": r.operation.as_str(), "status": r.status, "stream": r.stream,
        "usage": {"input": r.usage.input, "cache_read": r.usage.cache_read, "cache_write_5m": r.usage.cache_write_5m,
                  "cache_write_1h": r.usage.cache_write_1h, "output": r.usage.output, "reasoning": r.usage.reasoning},
        "cost_nano": r.cost_nano, "estimated": r.estimated, "attempts": r.attempts,
        "start_ms": r.start_ms, "end_ms": r.end_ms,
    })
}
