//! The proxy-wasm "pairs" encoding Envoy uses for header maps and for map-valued
//! properties (such as an endpoint's `filter_metadata` struct):
//! `u32 count | count × (u32 key_len, u32 value_len) | key\0 value\0 …`, little-endian.
//!
//! Decoding is total: malformed input yields `None`, never a panic, because the bytes
//! come from the host and a panic would trap the VM.

/// Decodes a pairs buffer into borrowed (key, value) byte slices.
pub fn decode(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(bytes, 0)? as usize;
    let sizes_end = 4usize.checked_add(count.checked_mul(8)?)?;
    if sizes_end > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut data = sizes_end;
    for i in 0..count {
        let key_len = read_u32(bytes, 4 + i * 8)? as usize;
        let value_len = read_u32(bytes, 8 + i * 8)? as usize;
        let key = bytes.get(data..data.checked_add(key_len)?)?;
        data = data.checked_add(key_len)?.checked_add(1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len)?.checked_add(1)?;
        if data > bytes.len() {
            return None;
        }
        out.push((key, value));
    }
    Some(out)
}

/// Encodes (key, value) pairs in the same format.
pub fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let data_len: usize = pairs.iter().map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 2).sum();
    let mut out = Vec::with_capacity(4 + pairs.len() * 8 + data_len);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// A metadata value as Envoy serialises it inside a map property: strings as their
/// bytes, numbers as an 8-byte little-endian IEEE double, booleans as one byte.
/// Numbers written as YAML strings (`"3.5"`) are accepted too.
pub fn metadata_number(value: &[u8]) -> Option<f64> {
    if let Some(n) = std::str::from_utf8(value).ok().and_then(|s| s.trim().parse::<f64>().ok()) {
        return n.is_finite().then_some(n);
    }
    let raw: [u8; 8] = value.try_into().ok()?;
    let n = f64::from_le_bytes(raw);
    n.is_finite().then_some(n)
}

pub fn metadata_bool(value: &[u8]) -> Option<bool> {
    match value {
        [0] | b"false" => Some(false),
        [1] | b"true" => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_typed_metadata_values() {
        // The shape Envoy 1.40 sent for {model, price: "3.5", provider, n: 4096, flag: true}.
        let bytes = encode(&[
            (&b"model"[..], &b"claude-x"[..]),
            (b"price", b"3.5"),
            (b"provider", b"anthropic"),
            (b"n", &4096f64.to_le_bytes()),
            (b"flag", &[1]),
        ]);
        let pairs = decode(&bytes).unwrap();
        assert_eq!(pairs.len(), 5);
        assert_eq!(pairs[0], (&b"model"[..], &b"claude-x"[..]));
        assert_eq!(metadata_number(pairs[1].1), Some(3.5));
        assert_eq!(metadata_number(pairs[3].1), Some(4096.0));
        assert_eq!(metadata_bool(pairs[4].1), Some(true));
    }

    #[test]
    fn matches_envoy_bytes_exactly() {
        let captured: Vec<u8> = [
            &2u32.to_le_bytes()[..],
            &5u32.to_le_bytes(),
            &8u32.to_le_bytes(),
            &8u32.to_le_bytes(),
            &9u32.to_le_bytes(),
            b"model\0claude-x\0provider\0anthropic\0",
        ]
        .concat();
        assert_eq!(encode(&[("model", "claude-x"), ("provider", "anthropic")]), captured);
        assert_eq!(decode(&captured).unwrap()[1], (&b"provider"[..], &b"anthropic"[..]));
    }

    #[test]
    fn rejects_truncated_and_lying_buffers() {
        let good = encode(&[("a", "b")]);
        for cut in 1..good.len() {
            assert!(decode(&good[..cut]).is_none(), "cut at {cut}");
        }
        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_none());
        assert_eq!(decode(&[]).unwrap().len(), 0);
    }

    proptest! {
        #[test]
        fn roundtrips(pairs in proptest::collection::vec((any::<Vec<u8>>(), any::<Vec<u8>>()), 0..8)) {
            let bytes = encode(&pairs);
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(back.len(), pairs.len());
            for ((k, v), (bk, bv)) in pairs.iter().zip(back) {
                prop_assert_eq!(&k[..], bk);
                prop_assert_eq!(&v[..], bv);
            }
        }

        #[test]
        fn never_panics(bytes in any::<Vec<u8>>()) {
            let _ = decode(&bytes);
        }
    }
}
