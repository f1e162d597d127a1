//! Switchyard: an LLM gateway inside Envoy.
//!
//! The crate is two things. Natively, it is a pure library: OpenAI-format request and
//! response types, one adapter per provider, configuration, and the per-request state
//! machines, all unit-tested without Envoy. Compiled for `wasm32-wasip1`, the `wasm`
//! module adds the proxy-wasm glue and the result is the Envoy filter
//! (`switchyard.wasm`), loaded twice: as a downstream HTTP filter (auth, validation,
//! routing by model) and as an upstream HTTP filter on each model-group cluster
//! (per-attempt provider translation).

#![deny(unsafe_code)]

pub mod callouts;
pub mod codec;
pub mod config;
pub mod customers;
pub mod downstream;
pub mod endpoint;
pub mod error;
pub mod feed;
pub mod handoff;
pub mod headers;
pub mod host;
pub mod json;
pub mod keys;
pub mod ledger;
pub mod legacy;
pub mod limits;
pub mod operation;
pub mod pairs;
pub mod pricing;
pub mod providers;
pub mod tokens;
pub mod upstream;
pub mod usage;
pub mod validate;

#[cfg(test)]
mod testing;

pub mod schema {
    //! Wire types, one module per API format.
    pub mod anthropic;
    pub mod gemini;
    pub mod openai;
}

#[cfg(target_arch = "wasm32")]
mod wasm;
