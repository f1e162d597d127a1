//! A request header map read from Envoy in one host call.
//!
//! Reads are the expensive host calls (each calls back into the VM to allocate its
//! result), so the downstream filter reads the whole map once and looks things up here.

/// Header names are lower case in Envoy's maps; lookups here assume it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Headers(pairs)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let h = Headers::new(vec![("a".into(), "1".into()), ("b".into(), "2".into()), ("a".into(), "3".into())]);
        assert_eq!(h.get("a"), Some("1"));
        assert!(h.contains("b") && !h.contains("c"));
        assert_eq!(h.get("c"), None);
    }
}
