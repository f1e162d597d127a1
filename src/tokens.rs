//! A quick, deliberately generous estimate of a request's input tokens, for routing
//! before a provider sees the request (context-window fallback). No tokenizer ships in
//! the filter: vocabularies are megabytes and differ per provider, and the decision
//! only needs to know whether a request clearly fits.
//!
//! The estimate errs high, because erring low sends a request to a model that then
//! rejects it: English prose averages about four characters per token in current
//! vocabularies (code and JSON fewer, hence rounding up per string), and most non-ASCII
//! scripts are close to one token per character (CJK) or fewer, so each non-ASCII
//! character counts as a whole token.

use crate::schema::openai::{ChatRequest, Content, PartKind};

/// Framing tokens each message costs (role, separators) in chat templates.
const PER_MESSAGE: u64 = 4;
/// An image's cost without decoding it: the largest any major provider charges for one
/// image at its default resolution (Anthropic, ~1,600 for 1568 px on the long side).
const PER_IMAGE: u64 = 1_600;

/// Tokens of plain text.
pub fn text(s: &str) -> u64 {
    let ascii = s.bytes().filter(u8::is_ascii).count() as u64;
    let other = s.chars().filter(|c| !c.is_ascii()).count() as u64;
    ascii.div_ceil(4) + other
}

/// Input tokens of a chat request: messages, tool calls, tool definitions and the
/// response schema (all of which providers put in the prompt).
pub fn chat(req: &ChatRequest) -> u64 {
    let mut total = 0u64;
    for message in &req.messages {
        total += PER_MESSAGE;
        match &message.content {
            Some(Content::Text(s)) => total += text(s),
            Some(Content::Parts(parts)) => {
                for part in parts {
                    total += match part.kind {
                        PartKind::Text => part.text.as_deref().map_or(0, text),
                        PartKind::Refusal => part.refusal.as_deref().map_or(0, text),
                        PartKind::ImageUrl | PartKind::File | PartKind::InputAudio => PER_IMAGE,
                    };
                }
            }
            None => {}
        }
        for call in message.tool_calls.iter().flatten() {
            total += text(&call.function.name) + text(&call.function.arguments);
        }
    }
    for tool in req.tools.iter().flatten() {
        if let Some(function) = &tool.function {
            total += text(&function.name)
                + function.description.as_deref().map_or(0, text)
                + function.parameters.map_or(0, |p| text(p.get()));
        }
    }
    if let Some(schema) = req.response_format.as_ref().and_then(|f| f.json_schema.as_ref()).and_then(|s| s.schema) {
        total += text(schema.get());
    }
    total
}

/// Input tokens of a legacy completions prompt (a string, strings, or token arrays,
/// which count exactly).
pub fn prompt(raw: &serde_json::value::RawValue) -> u64 {
    match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(value) => value_tokens(&value),
        Err(_) => text(raw.get()),
    }
}

fn value_tokens(value: &serde_json::Value) -> u64 {
    match value {
        serde_json::Value::String(s) => text(s),
        serde_json::Value::Number(_) => 1,
        serde_json::Value::Array(items) => items.iter().map(value_tokens).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_request;

    #[test]
    fn text_estimates() {
        let cases: [(&str, u64); 6] =
            [("", 0), ("a", 1), ("four", 1), ("Hello, world!", 4), ("日本語のテキスト", 8), ("naïve café", 2 + 2)];
        for (input, expected) in cases {
            assert_eq!(text(input), expected, "{input:?}");
        }
    }

    #[test]
    fn chat_counts_every_part_of_the_prompt() {
        let body = br#"{"model":"m","messages":[
            {"role":"system","content":"Be brief."},
            {"role":"user","content":[{"type":"text","text":"What is this?"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
                "function":{"name":"look","arguments":"{\"q\":\"x\"}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"a cat"}],
            "tools":[{"type":"function","function":{"name":"look","description":"Looks.",
                "parameters":{"type":"object"}}}]}"#;
        let req: ChatRequest = parse_request(body).expect("valid");
        let messages = 4 * PER_MESSAGE;
        let content = text("Be brief.") + text("What is this?") + PER_IMAGE + text("a cat");
        let calls = text("look") + text(r#"{"q":"x"}"#);
        let tools = text("look") + text("Looks.") + text(r#"{"type":"object"}"#);
        assert_eq!(chat(&req), messages + content + calls + tools);
    }

    #[test]
    fn a_long_prompt_grows_linearly() {
        let long = "word ".repeat(40_000);
        let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": long}]}).to_string();
        let req: ChatRequest = parse_request(body.as_bytes()).expect("valid");
        assert_eq!(chat(&req), PER_MESSAGE + 50_000);
    }

    #[test]
    fn prompts_of_every_shape() {
        let cases: [(&str, u64); 4] =
            [(r#""abcdefgh""#, 2), (r#"["abcd","efgh"]"#, 2), ("[1,2,3]", 3), ("[[1,2],[3]]", 3)];
        for (raw, expected) in cases {
            let raw: Box<serde_json::value::RawValue> = serde_json::from_str(raw).expect("json");
            assert_eq!(prompt(&raw), expected, "{raw}");
        }
    }
}
