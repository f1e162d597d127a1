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
//! ```
//!
//! Exit status: 0 when everything checked is valid, 1 when an endpoint is not, 2 for a
//! usage error or input that is not a JSON array.

use std::io::{Read, Write};
use std::process::ExitCode;

use serde_json::{json, Value};
use switchyard::endpoint::{self, Endpoint};

const USAGE: &str = "usage: switchyard <command>

commands:
  schema            print the endpoint metadata schema and the providers as JSON
  check-endpoints   read a JSON array of endpoint metadata objects on stdin and print
                    one JSON result per endpoint (exit status 1 if any is invalid)";

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
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    match args {
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
    }
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
    fn schema_is_json_with_keys_and_providers() {
        let (status, out) = run_with(&["schema"], "");
        assert_eq!(status, Ok(0));
        let schema: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(schema, endpoint::schema_json());
        assert!(schema["keys"].as_array().unwrap().iter().any(|k| k["name"] == "provider" && k["required"] == true));
        assert!(schema["providers"].as_array().unwrap().iter().any(|p| p["name"] == "mistral"));
    }
}
