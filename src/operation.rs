//! The API operations the gateway serves.

use serde::de::IgnoredAny;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Operation {
    #[default]
    Chat,
    Embeddings,
    /// Legacy text completions (`/v1/completions`).
    Completions,
}

impl Operation {
    /// The OpenAI path suffix (after `/v1`).
    pub fn path(self) -> &'static str {
        match self {
            Operation::Chat => "/chat/completions",
            Operation::Embeddings => "/embeddings",
            Operation::Completions => "/completions",
        }
    }

    /// The operation's name in the spend ledger (docs/ledger.md).
    pub fn ledger_name(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Embeddings => "embeddings",
            Operation::Completions => "completions",
        }
    }

    /// The field only this operation's requests have.
    pub fn defining_field(self) -> &'static str {
        match self {
            Operation::Chat => "messages",
            Operation::Embeddings => "input",
            Operation::Completions => "prompt",
        }
    }

    /// Tells the operation from a request body the downstream filter already validated
    /// for its path: exactly one defining field is present. The upstream filter uses
    /// this instead of a host call to read `:path`.
    pub fn of_body(body: &[u8]) -> Option<Operation> {
        match Self::present(body)?.as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    }

    /// The operations whose defining field a body has.
    pub fn present(body: &[u8]) -> Option<Vec<Operation>> {
        #[derive(Deserialize)]
        struct Shape {
            #[serde(default)]
            messages: Option<IgnoredAny>,
            #[serde(default)]
            input: Option<IgnoredAny>,
            #[serde(default)]
            prompt: Option<IgnoredAny>,
        }
        let shape: Shape = serde_json::from_slice(body).ok()?;
        let found = [
            (shape.messages.is_some(), Operation::Chat),
            (shape.input.is_some(), Operation::Embeddings),
            (shape.prompt.is_some(), Operation::Completions),
        ];
        Some(found.into_iter().filter(|(present, _)| *present).map(|(_, op)| op).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let cases: [(&[u8], Option<Operation>); 7] = [
            (br#"{"model":"m","messages":[]}"#, Some(Operation::Chat)),
            (br#"{"model":"m","input":"x"}"#, Some(Operation::Embeddings)),
            (br#"{"model":"m","prompt":["a"]}"#, Some(Operation::Completions)),
            (br#"{"model":"m","messages":[],"input":"x"}"#, None),
            (br#"{"model":"m"}"#, None),
            (b"not json", None),
            (br#"{"messages":"shape only, values unchecked"}"#, Some(Operation::Chat)),
        ];
        for (body, expected) in cases {
            assert_eq!(Operation::of_body(body), expected, "{}", String::from_utf8_lossy(body));
        }
    }
}
