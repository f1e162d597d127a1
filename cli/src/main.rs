//! `switchyard`: the gateway's command line, a native binary beside the filter.
//!
//! It answers from the filter's own code, so tools outside Rust (the config lint,
//! `tools/gatewayconf.py`) never keep a copy of its rules:
//!
//! ```text
//! switchyard schema            the endpoint metadata schema and the providers, as JSON
//! switchyard check-endpoints   a JSON array of endpoint metadata objects on stdin; one JSON
//!                              line per endpoint on stdout, in order:
//!                              {"ok":true,"provider":…,"authority":…,"base_path":…}
//!                              or {"ok":false,"error":"…"}
//! switchyard cost --provider P --model M --usage '{"input":…,"cache_read":…,…}' [--metadata '{…}']
//!                              what an answer costs at the deployment's prices (the catalog's,
//!                              under the endpoint metadata's): {"nano_usd":…,"usd":"…",…}
//! switchyard cost --batch      the same for a JSON array of {"provider","model","usage",
//!                              "metadata"?} on stdin, one JSON line each, in order
//! switchyard catalog [--json]  the built-in price catalog: a table in USD per million
//!                              tokens, or JSON in femto-USD per token
//! ```
//!
//! Exit status: 0 when everything checked is valid, 1 when an endpoint is not (or has no
//! price), 2 for a usage error or input that is not a JSON array.

use std::io::{Read, Write};
use std::process::ExitCode;

use serde_json::{json, Value};
use switchyard::endpoint::{self, Endpoint};
use switchyard::pricing::{self, Entry, Tier};
use switchyard::usage::Usage;

const USAGE: &str = "usage: switchyard <command>

commands:
  schema            print the endpoint metadata schema and the providers as JSON
  check-endpoints   read a JSON array of endpoint metadata objects on stdin and print
                    one JSON result per endpoint (exit status 1 if any is invalid)
  cost --provider P --model M --usage JSON [--metadata JSON]
                    the cost of an answer with that usage (an object of token counts:
                    input, cache_read, cache_write_5m, cache_write_1h, output (reasoning
                    included), reasoning) at the deployment's prices: the catalog's, under
                    the endpoint metadata's (--metadata: more keys of it)
  cost --batch      the same for each element of a JSON array of objects with provider,
                    model, usage and metadata on stdin: one JSON line each
  catalog [--json]  the built-in price catalog (USD per million tokens; --json: every
                    field, prices in femto-USD per token)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    match run(&args, &mut input, &mut output) {
        Ok(status) => ExitCode::from(status),
        Err(message) => {
            eprintln!("switchyard: {message}");
            ExitCode::from(2)
        }
    }
}

#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Schema,
    CheckEndpoints,
    Cost(CostRequest),
    CostBatch,
    Catalog { json: bool },
}

/// One `switchyard cost`: the deployment and the usage, as given.
#[derive(Debug, PartialEq)]
struct CostRequest {
    provider: String,
    model: String,
    usage: Value,
    metadata: Option<Value>,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    match args {
        [command, rest @ ..] if command == "cost" => parse_cost(rest),
        [command, flag] if command == "catalog" && flag == "--json" => Ok(Command::Catalog { json: true }),
        [command] if command == "catalog" => Ok(Command::Catalog { json: false }),
        [command] => match command.as_str() {
            "schema" => Ok(Command::Schema),
            "check-endpoints" => Ok(Command::CheckEndpoints),
            "help" | "-h" | "--help" => Ok(Command::Help),
            other => Err(format!("unknown command {other:?}\n{USAGE}")),
        },
        [] => Err(USAGE.to_string()),
        [command, extra, ..] => Err(format!("{command} takes no arguments, not {extra:?}\n{USAGE}")),
    }
}

fn parse_cost(args: &[String]) -> Result<Command, String> {
    if let [flag] = args {
        if flag == "--batch" {
            return Ok(Command::CostBatch);
        }
    }
    let (mut provider, mut model, mut usage, mut metadata) = (None, None, None, None);
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let slot = match flag.as_str() {
            "--provider" => &mut provider,
            "--model" => &mut model,
            "--usage" => &mut usage,
            "--metadata" => &mut metadata,
            other => return Err(format!("cost: unknown argument {other:?}\n{USAGE}")),
        };
        let value = rest.next().ok_or_else(|| format!("cost: {flag} needs a value\n{USAGE}"))?;
        if slot.replace(value.clone()).is_some() {
            return Err(format!("cost: {flag} given twice"));
        }
    }
    let json = |name: &str, text: String| {
        serde_json::from_str::<Value>(&text).map_err(|e| format!("cost: {name} is not JSON: {e}"))
    };
    Ok(Command::Cost(CostRequest {
        provider: provider.ok_or(format!("cost: --provider is required\n{USAGE}"))?,
        model: model.ok_or(format!("cost: --model is required\n{USAGE}"))?,
        usage: json("--usage", usage.ok_or(format!("cost: --usage is required\n{USAGE}"))?)?,
        metadata: metadata.map(|m| json("--metadata", m)).transpose()?,
    }))
}

/// Runs one command; `Ok` carries the exit status.
fn run(args: &[String], input: &mut dyn Read, output: &mut dyn Write) -> Result<u8, String> {
    let write_err = |e: std::io::Error| format!("cannot write the output: {e}");
    match parse_args(args)? {
        Command::Help => {
            writeln!(output, "{USAGE}").map_err(write_err)?;
            Ok(0)
        }
        Command::Schema => {
            let text = serde_json::to_string_pretty(&endpoint::schema_json()).map_err(|e| e.to_string())?;
            writeln!(output, "{text}").map_err(write_err)?;
            Ok(0)
        }
        Command::CheckEndpoints => {
            let mut text = String::new();
            input.read_to_string(&mut text).map_err(|e| format!("cannot read stdin: {e}"))?;
            let results = check_endpoints(&text)?;
            let all_ok = results.iter().all(|r| r["ok"] == true);
            for result in results {
                writeln!(output, "{result}").map_err(write_err)?;
            }
            Ok(if all_ok { 0 } else { 1 })
        }
        Command::Cost(request) => match cost(&request) {
            Ok(result) => {
                writeln!(output, "{result}").map_err(write_err)?;
                Ok(0)
            }
            Err(error) => {
                writeln!(output, "{}", json!({"ok": false, "error": error})).map_err(write_err)?;
                Ok(1)
            }
        },
        Command::CostBatch => {
            let mut text = String::new();
            input.read_to_string(&mut text).map_err(|e| format!("cannot read stdin: {e}"))?;
            let list: Value = serde_json::from_str(&text).map_err(|e| format!("stdin is not JSON: {e}"))?;
            let list = list.as_array().ok_or("stdin must hold a JSON array of {provider, model, usage, metadata}")?;
            let mut all_ok = true;
            for item in list {
                let result = cost_request(item).and_then(|request| cost(&request));
                let line = result.unwrap_or_else(|error| {
                    all_ok = false;
                    json!({"ok": false, "error": error})
                });
                writeln!(output, "{line}").map_err(write_err)?;
            }
            Ok(if all_ok { 0 } else { 1 })
        }
        Command::Catalog { json } => {
            if json {
                let entries: Vec<Value> = pricing::catalog().iter().map(entry_json).collect();
                let text = serde_json::to_string_pretty(&entries).map_err(|e| e.to_string())?;
                writeln!(output, "{text}").map_err(write_err)?;
            } else {
                write!(output, "{}", catalog_table()).map_err(write_err)?;
            }
            Ok(0)
        }
    }
}

fn cost_request(item: &Value) -> Result<CostRequest, String> {
    let text = |name: &str| {
        item.get(name).and_then(Value::as_str).map(str::to_string).ok_or(format!("{name} must be a string"))
    };
    Ok(CostRequest {
        provider: text("provider")?,
        model: text("model")?,
        usage: item.get("usage").cloned().ok_or("usage is missing")?,
        metadata: item.get("metadata").cloned(),
    })
}

/// The usage object: token counts by kind, absent ones 0.
fn parse_usage(value: &Value) -> Result<Usage, String> {
    let object = value.as_object().ok_or("usage must be a JSON object")?;
    let mut usage = Usage::default();
    for (name, count) in object {
        let slot = match name.as_str() {
            "input" => &mut usage.input,
            "cache_read" => &mut usage.cache_read,
            "cache_write_5m" => &mut usage.cache_write_5m,
            "cache_write_1h" => &mut usage.cache_write_1h,
            "output" => &mut usage.output,
            "reasoning" => &mut usage.reasoning,
            other => {
                return Err(format!(
                    "unknown usage field {other:?} (known: input, cache_read, cache_write_5m, cache_write_1h, output, \
                     reasoning)"
                ))
            }
        };
        *slot = count.as_u64().ok_or(format!("usage {name} must be a whole number of tokens, not {count}"))?;
    }
    Ok(usage)
}

fn cost(request: &CostRequest) -> Result<Value, String> {
    let mut metadata = match &request.metadata {
        None => serde_json::Map::new(),
        Some(Value::Object(object)) => object.clone(),
        Some(_) => return Err("metadata must be a JSON object".into()),
    };
    for (key, value) in [("provider", &request.provider), ("model", &request.model)] {
        if metadata.insert(key.into(), json!(value)).is_some() {
            return Err(format!("give {key} with --{key}, not in the metadata"));
        }
    }
    let endpoint = Endpoint::from_json(&Value::Object(metadata))?;
    let usage = parse_usage(&request.usage)?;
    let prices = endpoint.prices().ok_or_else(|| {
        format!(
            "no price for {} model {:?}: the catalog does not list it and the metadata sets no price (base_model, \
             input_cost_per_token, …)",
            request.provider, request.model
        )
    })?;
    let nano = pricing::cost(&prices, &usage);
    Ok(json!({
        "ok": true,
        "nano_usd": nano,
        "usd": pricing::usd(nano),
        "femto_usd": pricing::cost_femto(&prices, &usage).to_string(),
        "catalog": endpoint.catalog_entry().map(Entry::litellm_key),
    }))
}

fn tier_json(t: &Tier) -> Value {
    json!({"above": t.above, "input": t.input, "output": t.output, "cache_read": t.cache_read,
           "cache_write_5m": t.cache_write_5m, "cache_write_1h": t.cache_write_1h})
}

fn entry_json(e: &Entry) -> Value {
    json!({
        "provider": e.provider, "model": e.model, "litellm_provider": e.litellm_provider,
        "litellm_key": e.litellm_key(), "mode": e.mode.name(), "input": e.input, "output": e.output,
        "cache_read": e.cache_read, "cache_write_5m": e.cache_write_5m, "cache_write_1h": e.cache_write_1h,
        "reasoning": e.reasoning, "tiers": e.tiers.iter().map(tier_json).collect::<Vec<_>>(),
        "max_input_tokens": e.max_input_tokens, "max_output_tokens": e.max_output_tokens,
    })
}

/// Femto-USD per token as USD per million tokens.
fn per_million(femto: u64) -> String {
    pricing::decimal(u128::from(femto), 9)
}

fn catalog_table() -> String {
    let rate = |r: Option<u64>| r.map_or_else(|| "-".to_string(), per_million);
    let count = |n: Option<u32>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
    let mut rows = vec![[
        "provider",
        "model",
        "mode",
        "input",
        "output",
        "cache read",
        "write 5m",
        "write 1h",
        "reasoning",
        "max in",
        "max out",
        "above a prompt of N tokens",
    ]
    .map(String::from)];
    for e in pricing::catalog() {
        let tiers: Vec<String> = e
            .tiers
            .iter()
            .map(|t| {
                let parts: Vec<String> = [
                    ("input", t.input),
                    ("output", t.output),
                    ("read", t.cache_read),
                    ("write 5m", t.cache_write_5m),
                    ("write 1h", t.cache_write_1h),
                ]
                .into_iter()
                .filter_map(|(name, r)| r.map(|r| format!("{name} {}", per_million(r))))
                .collect();
                format!("{}: {}", t.above, parts.join(", "))
            })
            .collect();
        rows.push([
            e.provider.to_string(),
            e.model.to_string(),
            e.mode.name().to_string(),
            per_million(e.input),
            per_million(e.output),
            rate(e.cache_read),
            rate(e.cache_write_5m),
            rate(e.cache_write_1h),
            rate(e.reasoning),
            count(e.max_input_tokens),
            count(e.max_output_tokens),
            tiers.join("; "),
        ]);
    }
    let widths: Vec<usize> =
        (0..12).map(|i| rows.iter().map(|r| r.get(i).map_or(0, String::len)).max().unwrap_or(0)).collect();
    let mut out = String::from("Prices in USD per million tokens (LiteLLM's, see docs/pricing.md).\n");
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One result per element of the JSON array `text`.
fn check_endpoints(text: &str) -> Result<Vec<Value>, String> {
    let list: Value = serde_json::from_str(text).map_err(|e| format!("stdin is not JSON: {e}"))?;
    let list = list.as_array().ok_or("stdin must hold a JSON array of endpoint metadata objects")?;
    Ok(list
        .iter()
        .map(|metadata| match Endpoint::from_json(metadata) {
            Ok(ep) => json!({"ok": true, "provider": ep.provider.name(), "authority": ep.authority,
                             "base_path": ep.base_path}),
            Err(error) => json!({"ok": false, "error": error}),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(args: &[&str], stdin: &str) -> (Result<u8, String>, String) {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut output = Vec::new();
        let status = run(&args, &mut stdin.as_bytes(), &mut output);
        (status, String::from_utf8(output).unwrap())
    }

    #[test]
    fn arguments() {
        let cases: &[(&[&str], Result<Command, &str>)] = &[
            (&["schema"], Ok(Command::Schema)),
            (&["check-endpoints"], Ok(Command::CheckEndpoints)),
            (&["--help"], Ok(Command::Help)),
            (&[], Err("usage: switchyard")),
            (&["render"], Err("unknown command \"render\"")),
            (&["schema", "--pretty"], Err("schema takes no arguments, not \"--pretty\"")),
            (&["catalog"], Ok(Command::Catalog { json: false })),
            (&["catalog", "--json"], Ok(Command::Catalog { json: true })),
            (&["cost", "--batch"], Ok(Command::CostBatch)),
            (
                &["cost", "--model", "m", "--provider", "openai", "--usage", "{}"],
                Ok(Command::Cost(CostRequest {
                    provider: "openai".into(),
                    model: "m".into(),
                    usage: json!({}),
                    metadata: None,
                })),
            ),
            (&["cost", "--provider", "openai", "--usage", "{}"], Err("cost: --model is required")),
            (&["cost", "--provider", "openai", "--model"], Err("cost: --model needs a value")),
            (&["cost", "--provider", "a", "--provider", "b"], Err("cost: --provider given twice")),
            (&["cost", "--model", "m", "--provider", "p", "--usage", "{"], Err("cost: --usage is not JSON")),
            (&["cost", "--colour"], Err("cost: unknown argument \"--colour\"")),
        ];
        for (args, expected) in cases {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            match (parse_args(&args), expected) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{args:?}: {got}"),
                (got, want) => panic!("{args:?}: {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn check_endpoints_prints_one_line_per_endpoint() {
        let stdin = r#"[{"provider": "anthropic"}, {"provider": "nonsense"}, {"provider": "openai", "colour": "red"}]"#;
        let (status, out) = run_with(&["check-endpoints"], stdin);
        assert_eq!(status, Ok(1));
        let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            json!({"ok": true, "provider": "anthropic", "authority": "api.anthropic.com", "base_path": ""})
        );
        assert_eq!(lines[1], json!({"ok": false, "error": "unknown provider \"nonsense\""}));
        assert!(lines[2]["error"].as_str().unwrap().starts_with("unknown metadata key \"colour\""));

        assert_eq!(run_with(&["check-endpoints"], r#"[{"provider": "gemini"}]"#).0, Ok(0));
        assert_eq!(run_with(&["check-endpoints"], "[]"), (Ok(0), String::new()));
        assert!(run_with(&["check-endpoints"], "{").0.unwrap_err().starts_with("stdin is not JSON"));
        assert!(run_with(&["check-endpoints"], "{}").0.unwrap_err().contains("JSON array"));
    }

    #[test]
    fn cost_prints_nano_usd_and_dollars() {
        let args = [
            "cost",
            "--provider",
            "openai",
            "--model",
            "gpt-4o-mini",
            "--usage",
            r#"{"input": 200, "cache_read": 1000, "output": 300}"#,
        ];
        let (status, out) = run_with(&args, "");
        assert_eq!(status, Ok(0));
        let result: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            result,
            json!({"ok": true, "nano_usd": 285000, "usd": "0.000285", "femto_usd": "285000000000",
                   "catalog": "gpt-4o-mini"})
        );
        // The metadata's prices over the catalog's; an unknown model priced by them alone.
        let metadata = r#"{"input_cost_per_token": "0.000001", "api_base": "https://example.com"}"#;
        let args =
            ["cost", "--provider", "azure", "--model", "prod", "--usage", r#"{"input": 3}"#, "--metadata", metadata];
        let (status, out) = run_with(&args, "");
        assert_eq!((status, serde_json::from_str::<Value>(&out).unwrap()["nano_usd"].clone()), (Ok(0), json!(3000)));
        let (status, out) = run_with(&["cost", "--provider", "azure", "--model", "prod", "--usage", "{}"], "");
        assert_eq!(status, Ok(1));
        assert!(out.contains("no price for azure model"), "{out}");

        let stdin = r#"[{"provider": "anthropic", "model": "claude-sonnet-4-6", "usage": {"cache_write_1h": 100}},
                        {"provider": "gemini", "model": "gemini-2.5-pro", "usage": {"input": 1, "tokens": 2}},
                        {"provider": "openai", "model": "gpt-4.1", "usage": {"input": 1}, "metadata": {"model": "x"}},
                        {"provider": "openai", "model": "gpt-4.1", "usage": {"output": -1}}]"#;
        let (status, out) = run_with(&["cost", "--batch"], stdin);
        assert_eq!(status, Ok(1));
        let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["nano_usd"], 600_000);
        assert!(lines[1]["error"].as_str().unwrap().starts_with("unknown usage field \"tokens\""));
        assert_eq!(lines[2]["error"], "give model with --model, not in the metadata");
        assert_eq!(lines[3]["error"], "usage output must be a whole number of tokens, not -1");
    }

    #[test]
    fn catalog_lists_every_entry() {
        let (status, out) = run_with(&["catalog", "--json"], "");
        assert_eq!(status, Ok(0));
        let entries: Vec<Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(entries.len(), pricing::catalog().len());
        let pro = entries.iter().find(|e| e["litellm_key"] == "gemini/gemini-2.5-pro").unwrap();
        assert_eq!((pro["provider"].clone(), pro["model"].clone()), (json!("gemini"), json!("gemini-2.5-pro")));
        assert_eq!(pro["tiers"][0]["above"], 200_000);
        let (status, table) = run_with(&["catalog"], "");
        assert_eq!(status, Ok(0));
        assert_eq!(table.lines().count(), pricing::catalog().len() + 2);
        let sonnet = table.lines().find(|l| l.starts_with("anthropic ") && l.contains(" claude-sonnet-4-6 ")).unwrap();
        assert!(sonnet.contains(" 3 ") && sonnet.contains(" 15 ") && sonnet.contains(" 0.3 "), "{sonnet}");
    }

    #[test]
    fn schema_is_json_with_keys_and_providers() {
        let (status, out) = run_with(&["schema"], "");
        assert_eq!(status, Ok(0));
        let schema: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(schema, endpoint::schema_json());
        assert!(schema["keys"].as_array().unwrap().iter().any(|k| k["name"] == "provider" && k["required"] == true));
        assert!(schema["providers"].as_array().unwrap().iter().any(|p| p["name"] == "mistral"));
    }
}
