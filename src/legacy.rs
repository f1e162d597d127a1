//! OpenAI's deprecated function-calling interface, which OpenAI still accepts: request
//! `functions` and `function_call`, assistant messages with one `function_call`, and
//! `role: "function"` messages carrying its result (docs/providers/openai.md).
//!
//! [`normalize`] rewrites a parsed request into the `tools` interface before an adapter
//! reads it, so every provider serves legacy clients with its ordinary tool translation;
//! the answer goes back in the legacy shape (`message.function_call`, finish reason
//! `function_call`) when the request used `functions`.

use std::borrow::Cow;

use crate::providers::minted_call_id;
use crate::schema::openai::{ChatRequest, FunctionCall, Role, Tool, ToolCall};

/// Rewrites the legacy fields of `req` into their `tools` equivalents. Returns true when
/// the client declared `functions` (and no `tools`): it then expects the legacy answer.
///
/// Legacy calls have no ids; each gets one derived from its message's position, and the
/// `function` message answering it (the next one with the call's name) gets the same,
/// so calls and results pair up for providers that match them by id.
pub fn normalize(req: &mut ChatRequest<'_>) -> bool {
    let legacy_answer = req.functions.is_some() && req.tools.is_none();
    if let Some(functions) = req.functions.take() {
        let tools = req.tools.get_or_insert_with(Vec::new);
        for function in functions {
            if !tools.iter().filter_map(|t| t.function.as_ref()).any(|f| f.name == function.name) {
                tools.push(Tool { kind: Cow::Borrowed("function"), function: Some(function) });
            }
        }
    }
    if let Some(choice) = req.function_call.take() {
        req.tool_choice.get_or_insert(choice);
    }
    // (name, id) of legacy calls not yet answered, oldest first.
    let mut pending: Vec<(String, String)> = Vec::new();
    for (i, message) in req.messages.iter_mut().enumerate() {
        match message.role {
            Role::Assistant => {
                if let Some(call) = message.function_call.take() {
                    let id = minted_call_id("legacy-function-call", i);
                    pending.push((call.name.to_string(), id.clone()));
                    message.tool_calls.get_or_insert_with(Vec::new).push(ToolCall {
                        id: Cow::Owned(id),
                        kind: Some(Cow::Borrowed("function")),
                        function: FunctionCall { name: call.name, arguments: call.arguments },
                    });
                }
            }
            Role::Function => {
                let name = message.name.as_deref().unwrap_or_default();
                let id = match pending.iter().position(|(n, _)| n == name) {
                    Some(at) => pending.remove(at).1,
                    None => minted_call_id("legacy-function-result", i),
                };
                message.role = Role::Tool;
                message.tool_call_id = Some(Cow::Owned(id));
            }
            _ => {}
        }
    }
    legacy_answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_request;
    use serde_json::json;

    fn normalized(body: serde_json::Value) -> (bool, serde_json::Value) {
        let bytes = body.to_string().into_bytes();
        let mut req: ChatRequest = parse_request(&bytes).unwrap();
        let legacy = normalize(&mut req);
        let messages: Vec<_> = req
            .messages
            .iter()
            .map(|m| {
                json!({
                    "role": format!("{:?}", m.role),
                    "tool_call_id": m.tool_call_id.as_deref(),
                    "calls": m.tool_calls.iter().flatten().map(|c| json!([c.id, c.function.name, c.function.arguments])).collect::<Vec<_>>(),
                })
            })
            .collect();
        let tools: Vec<_> =
            req.tools.iter().flatten().filter_map(|t| t.function.as_ref()).map(|f| f.name.to_string()).collect();
        (legacy, json!({"messages": messages, "tools": tools, "choice": format!("{:?}", req.tool_choice)}))
    }

    #[test]
    fn functions_become_tools_and_calls_pair_with_results() {
        let (legacy, out) = normalized(json!({
            "model": "m",
            "functions": [{"name": "get_weather", "parameters": {"type": "object"}}, {"name": "get_time"}],
            "function_call": {"name": "get_weather"},
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "function_call": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"role": "function", "name": "get_weather", "content": "sunny"},
                {"role": "assistant", "content": null, "function_call": {"name": "get_time", "arguments": "{}"}},
                {"role": "function", "name": "get_time", "content": "noon"}
            ]
        }));
        assert!(legacy);
        assert_eq!(out["tools"], json!(["get_weather", "get_time"]));
        assert_eq!(out["choice"], json!("Some(Function(\"get_weather\"))"));
        let m = &out["messages"];
        let first_id = m[1]["calls"][0][0].as_str().unwrap();
        assert!(first_id.starts_with("call_"));
        assert_eq!(m[1]["calls"][0][1], "get_weather");
        assert_eq!(m[2]["role"], "Tool");
        assert_eq!(m[2]["tool_call_id"], first_id);
        let second_id = m[3]["calls"][0][0].as_str().unwrap();
        assert_ne!(first_id, second_id);
        assert_eq!(m[4]["tool_call_id"], second_id);
    }

    #[test]
    fn choices_and_mixed_requests() {
        for (choice, expected) in [
            (json!("none"), "Some(None)"),
            (json!("auto"), "Some(Auto)"),
            (json!({"name": "f"}), "Some(Function(\"f\"))"),
        ] {
            let (_, out) = normalized(json!({"model": "m", "functions": [{"name": "f"}], "function_call": choice,
                "messages": [{"role": "user", "content": "x"}]}));
            assert_eq!(out["choice"], json!(expected));
        }
        // tools given too: the answer uses tool_calls, and a tool_choice wins.
        let (legacy, out) = normalized(json!({"model": "m", "functions": [{"name": "f"}], "tools": [
            {"type": "function", "function": {"name": "g"}}], "tool_choice": "required", "function_call": "none",
            "messages": [{"role": "user", "content": "x"}]}));
        assert!(!legacy);
        assert_eq!(out["tools"], json!(["g", "f"]));
        assert_eq!(out["choice"], json!("Some(Required)"));
        // Nothing legacy: untouched.
        let (legacy, out) = normalized(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
        assert!(!legacy);
        assert_eq!(out["choice"], json!("None"));
        // A function result with no call before it still gets an id.
        let (_, out) = normalized(json!({"model": "m", "messages": [{"role": "user", "content": "x"},
            {"role": "function", "name": "f", "content": "r"}]}));
        assert!(out["messages"][1]["tool_call_id"].as_str().unwrap().starts_with("call_"));
    }
}
