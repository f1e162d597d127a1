//! Small JSON helpers shared by the wire types and adapters.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::error::GatewayError;

/// A string that borrows from the input whenever it has no escapes.
///
/// serde's own `Cow<str>` impl always allocates outside derived structs; map keys and
/// fields read by hand-written visitors use this instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// Deserialises a request body, turning serde's errors into OpenAI-style 400s that
/// name the offending parameter by its path (`messages[2].role`).
pub fn parse_request<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, GatewayError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        request_error(e.into_inner(), &path)
    })?;
    de.end().map_err(|e| GatewayError::InvalidJson { detail: strip_position(&e) })?;
    Ok(value)
}

fn request_error(e: serde_json::Error, path: &str) -> GatewayError {
    use serde_json::error::Category;
    let text = strip_position(&e);
    if matches!(e.classify(), Category::Syntax | Category::Eof | Category::Io) {
        return GatewayError::InvalidJson { detail: text };
    }
    let at_root = path == "." || path.is_empty();
    if let Some(field) = between(&text, "missing field `", "`") {
        let param = if at_root { field.to_string() } else { format!("{path}.{field}") };
        return GatewayError::InvalidRequest {
            message: format!("Missing required parameter: '{param}'."),
            param: Some(param),
            code: "missing_required_parameter",
        };
    }
    if at_root {
        return GatewayError::InvalidRequest {
            message: format!("The request body must be a JSON object: {text}"),
            param: None,
            code: "invalid_type",
        };
    }
    let (message, code) = if let Some(rest) = text.strip_prefix("invalid type: ") {
        match rest.split_once(", expected ") {
            Some((got, expected)) => {
                (format!("Invalid type for '{path}': expected {expected}, but got {got} instead."), "invalid_type")
            }
            None => (format!("Invalid type for '{path}': {rest}"), "invalid_type"),
        }
    } else {
        (format!("Invalid value for '{path}': {text}"), "invalid_value")
    };
    GatewayError::InvalidRequest { message, param: Some(path.to_string()), code }
}

/// serde_json appends " at line L column C"; positions mean little to API clients.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).map(str::to_string).unwrap_or(text)
}

fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let rest = text.strip_prefix(start)?;
    rest.split_once(end).map(|(inside, _)| inside)
}

/// Removes insignificant whitespace from valid JSON text. Providers' tool inputs are
/// forwarded as OpenAI argument strings, which clients expect compact.
pub fn compact(json: &str) -> Cow<'_, str> {
    if !json.bytes().any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t')) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_string_contents() {
        assert_eq!(compact(r#"{"a":1}"#), Cow::Borrowed(r#"{"a":1}"#));
        assert_eq!(compact("{ \"a b\" : [ 1, \"x \\\" y\" ],\n \"c\":{} }"), "{\"a b\":[1,\"x \\\" y\"],\"c\":{}}");
    }

    #[test]
    fn str_borrows_unless_escaped() {
        let s: Str = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(s.0, Cow::Borrowed("plain")));
        let s: Str = serde_json::from_str(r#""esc\"aped""#).unwrap();
        assert_eq!(s.0, "esc\"aped");
    }
}
