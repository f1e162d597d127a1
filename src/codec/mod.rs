//! Stream framings, independent of any provider: incremental, bounded, byte-exact.

pub mod base64;
pub mod sse;
