//! Decodes a binary `google.protobuf.Struct` into a JSON value.
//!
//! Envoy hands a Wasm plugin its `configuration` as the serialized bytes of the `Any`'s
//! payload; for a `Struct` that is protobuf, not JSON. Decoding it here lets operators
//! write the filter configuration as plain YAML in the Envoy config.
//!
//! Wire format (proto3): `Struct { map<string, Value> fields = 1; }`,
//! `Value { oneof { NullValue null_value = 1; double number_value = 2; string string_value = 3;
//! bool bool_value = 4; Struct struct_value = 5; ListValue list_value = 6; } }`,
//! `ListValue { repeated Value values = 1; }`.

use serde_json::{Map, Number, Value};

/// Nesting beyond this is refused rather than risking the VM's stack.
const MAX_DEPTH: usize = 64;

pub fn decode_struct(bytes: &[u8]) -> Result<Value, String> {
    decode_struct_at(bytes, 0).map(Value::Object)
}

fn decode_struct_at(bytes: &[u8], depth: usize) -> Result<Map<String, Value>, String> {
    if depth > MAX_DEPTH {
        return Err("configuration nested too deeply".into());
    }
    let mut map = Map::new();
    for field in Fields::new(bytes) {
        let (number, payload) = field?;
        if number == 1 {
            let Payload::Bytes(entry) = payload else {
                return Err("Struct.fields entry is not length-delimited".into());
            };
            let (key, value) = decode_entry(entry, depth)?;
            map.insert(key, value);
        }
    }
    Ok(map)
}

fn decode_entry(bytes: &[u8], depth: usize) -> Result<(String, Value), String> {
    let mut key = String::new();
    let mut value = Value::Null;
    for field in Fields::new(bytes) {
        match field? {
            (1, Payload::Bytes(k)) => {
                key = String::from_utf8(k.to_vec()).map_err(|_| "map key is not UTF-8".to_string())?;
            }
            (2, Payload::Bytes(v)) => value = decode_value(v, depth + 1)?,
            _ => {}
        }
    }
    Ok((key, value))
}

fn decode_value(bytes: &[u8], depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("configuration nested too deeply".into());
    }
    let mut value = Value::Null;
    for field in Fields::new(bytes) {
        value = match field? {
            (1, _) => Value::Null,
            (2, Payload::Fixed64(bits)) => number(f64::from_bits(bits)),
            (3, Payload::Bytes(s)) => {
                Value::String(String::from_utf8(s.to_vec()).map_err(|_| "string value is not UTF-8".to_string())?)
            }
            (4, Payload::Varint(b)) => Value::Bool(b != 0),
            (5, Payload::Bytes(s)) => Value::Object(decode_struct_at(s, depth + 1)?),
            (6, Payload::Bytes(list)) => {
                let mut items = Vec::new();
                for item in Fields::new(list) {
                    if let (1, Payload::Bytes(v)) = item? {
                        items.push(decode_value(v, depth + 1)?);
                    }
                }
                Value::Array(items)
            }
            _ => value,
        };
    }
    Ok(value)
}

/// Struct numbers are doubles; integral ones become JSON integers so that config
/// fields typed as integers (`max_tokens: 4096`) deserialize.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

enum Payload<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

/// Iterates the top-level fields of one protobuf message.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes, pos: 0, failed: false }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut result = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.pos)?;
            self.pos += 1;
            result |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(result);
            }
        }
        None
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.pos..self.pos.checked_add(len)?)?;
        self.pos += len;
        Some(slice)
    }

    fn next_field(&mut self) -> Option<(u32, Payload<'a>)> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).ok()?;
        let payload = match key & 7 {
            0 => Payload::Varint(self.varint()?),
            1 => Payload::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                Payload::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Payload::Fixed32
            }
            _ => return None,
        };
        Some((number, payload))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Payload<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        match self.next_field() {
            Some(field) => Some(Ok(field)),
            None => {
                self.failed = true;
                Some(Err("configuration is not a valid protobuf Struct".into()))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A minimal protobuf encoder for Struct, so tests can build what Envoy sends.
    pub(crate) fn encode_struct(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        if let Value::Object(map) = value {
            for (k, v) in map {
                let mut entry = Vec::new();
                put_bytes(&mut entry, 1, k.as_bytes());
                put_bytes(&mut entry, 2, &encode_value(v));
                put_bytes(&mut out, 1, &entry);
            }
        }
        out
    }

    fn encode_value(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        match v {
            Value::Null => out.extend_from_slice(&[0x08, 0x00]),
            Value::Number(n) => {
                out.push(0x11);
                out.extend_from_slice(&n.as_f64().unwrap().to_le_bytes());
            }
            Value::String(s) => put_bytes(&mut out, 3, s.as_bytes()),
            Value::Bool(b) => out.extend_from_slice(&[0x20, u8::from(*b)]),
            Value::Object(_) => put_bytes(&mut out, 5, &encode_struct(v)),
            Value::Array(items) => {
                let mut list = Vec::new();
                for item in items {
                    put_bytes(&mut list, 1, &encode_value(item));
                }
                put_bytes(&mut out, 6, &list);
            }
        }
        out
    }

    fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
        out.push((field << 3) | 2);
        let mut len = bytes.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(bytes);
    }

    #[test]
    fn roundtrips_nested_values() {
        let v = json!({
            "stage": "downstream",
            "models": [{"id": "demo", "created": 1700000000, "weight": 0.25}, {"id": "b"}],
            "flag": true,
            "nothing": null,
            "long": "x".repeat(300),
        });
        assert_eq!(decode_struct(&encode_struct(&v)).unwrap(), v);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(decode_struct(&[0x0a, 0xff]).is_err());
        assert!(decode_struct(&[0x0f]).is_err());
        assert_eq!(decode_struct(&[]).unwrap(), json!({}));
    }

    #[test]
    fn refuses_excessive_nesting() {
        let mut v = json!(1);
        for _ in 0..100 {
            v = json!({ "a": v });
        }
        assert!(decode_struct(&encode_struct(&v)).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in any::<Vec<u8>>()) {
            let _ = decode_struct(&bytes);
        }
    }
}
