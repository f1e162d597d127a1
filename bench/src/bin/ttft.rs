//! Time to first chunk of streamed responses, at a fixed request rate.
//!
//! Requests are sent on a fixed schedule (open loop) and every latency is measured from
//! the request's scheduled start, not from when it was actually sent, so a stalled proxy
//! cannot hide latency by slowing the client down (coordinated omission).
//!
//! Usage: ttft --url URL --body FILE [--header 'name: value']... [--rate R] [--duration S]
//! Prints one JSON object: counts, achieved rate, and percentiles (µs) of the time to the
//! first body chunk and to the end of the response.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

struct Sample {
    first_chunk: Duration,
    total: Duration,
}

fn args(name: &str) -> Vec<String> {
    let all: Vec<String> = std::env::args().collect();
    all.windows(2).filter(|w| w[0] == name).map(|w| w[1].clone()).collect()
}

fn arg(name: &str) -> Option<String> {
    args(name).into_iter().next()
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut values: Vec<u128>) -> serde_json::Value {
    values.sort_unstable();
    serde_json::json!({
        "p50": percentile(&values, 50.0),
        "p90": percentile(&values, 90.0),
        "p99": percentile(&values, 99.0),
        "p99.9": percentile(&values, 99.9),
        "max": values.last().copied().unwrap_or(0),
    })
}

fn main() {
    let (Some(url), Some(body_file)) = (arg("--url"), arg("--body")) else {
        eprintln!("usage: ttft --url URL --body FILE [--header 'k: v']... [--rate R] [--duration S]");
        std::process::exit(2);
    };
    let body = match std::fs::read(&body_file) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            eprintln!("ttft: {body_file}: {e}");
            std::process::exit(2);
        }
    };
    let headers: Vec<(String, String)> = args("--header")
        .iter()
        .filter_map(|h| h.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect();
    let rate: f64 = arg("--rate").and_then(|r| r.parse().ok()).unwrap_or(50.0);
    let duration: f64 = arg("--duration").and_then(|d| d.parse().ok()).unwrap_or(5.0);
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() else {
        std::process::exit(1);
    };
    runtime.block_on(async move {
        let client: Client<_, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http();
        let total = (rate * duration).round() as usize;
        let interval = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now() + Duration::from_millis(50);
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            let scheduled = start + interval * i as u32;
            tokio::time::sleep_until(scheduled.into()).await;
            let client = client.clone();
            let mut request = Request::post(url.as_str()).header("content-type", "application/json");
            for (k, v) in &headers {
                request = request.header(k.as_str(), v.as_str());
            }
            let Ok(request) = request.body(Full::new(body.clone())) else { continue };
            tasks.push(tokio::spawn(async move {
                let response = client.request(request).await.ok()?;
                if !response.status().is_success() {
                    return None;
                }
                let mut body = response.into_body();
                let mut first_chunk = None;
                while let Some(frame) = body.frame().await {
                    let frame = frame.ok()?;
                    if first_chunk.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                        first_chunk = Some(scheduled.elapsed());
                    }
                }
                Some(Sample { first_chunk: first_chunk?, total: scheduled.elapsed() })
            }));
        }
        let wall = start.elapsed();
        let mut samples = Vec::with_capacity(tasks.len());
        let mut errors = 0usize;
        for task in tasks {
            match task.await.ok().flatten() {
                Some(s) => samples.push(s),
                None => errors += 1,
            }
        }
        let report = serde_json::json!({
            "requests": total,
            "ok": samples.len(),
            "errors": errors,
            "target_rps": rate,
            "achieved_rps": samples.len() as f64 / wall.as_secs_f64().max(1e-9),
            "first_chunk_us": summary(samples.iter().map(|s| s.first_chunk.as_micros()).collect()),
            "total_us": summary(samples.iter().map(|s| s.total.as_micros()).collect()),
        });
        println!("{report}");
    });
}
