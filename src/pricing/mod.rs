//! Prices and cost: the built-in catalog, a deployment's prices, and what an answer costs.
//!
//! - [`catalog`] and [`lookup`]: the price of every current model of every provider
//!   Switchyard supports, generated from LiteLLM's price map by `tools/gen_catalog.py`
//!   (`catalog.rs`; docs/pricing.md says which models and why);
//! - [`Prices`]: what one deployment charges, a catalog entry overridden field by field by
//!   the endpoint metadata (LiteLLM's names, [`Overrides`]), with its provider's billing
//!   rules ([`Billing`]);
//! - [`cost`]: an answer's cost, by LiteLLM's `generic_cost_per_token` (and its xAI and
//!   Perplexity variants) exactly, so Switchyard's spend equals LiteLLM's for the same usage;
//! - [`worst_case`]: the most a request can cost, for budget reservations.
//!
//! Money is integers: prices are femto-USD (10⁻¹⁵) per token, which holds every catalog
//! price exactly; a cost is summed in u128 femto-USD and rounded half up to [`NanoUsd`] once.
//! Every operation saturates instead of overflowing: nothing here can trap the Wasm VM.

#[rustfmt::skip]
mod catalog;
#[cfg(test)]
mod tests;

use crate::providers::Provider;
use crate::usage::Usage;

/// USD in billionths: the unit of every cost, spend and budget.
pub type NanoUsd = u64;

/// Femto-USD in a nano-USD.
const FEMTO_PER_NANO: u128 = 1_000_000;

/// Threshold tiers a deployment's prices may have: the catalog's (at most
/// `MAX_TIERS - 1`, a unit test checks) and one the endpoint metadata may add.
pub const MAX_TIERS: usize = 3;

/// The prompt size of the long-context tier the metadata can set
/// (`input_cost_per_token_above_200k_tokens`, …).
pub const METADATA_TIER: u64 = 200_000;

/// What the model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Chat,
    /// Legacy `/v1/completions`.
    Completion,
    Embedding,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Chat => "chat",
            Mode::Completion => "completion",
            Mode::Embedding => "embedding",
        }
    }
}

/// Rates for prompts above a size: LiteLLM's `*_above_<N>_tokens` keys. Once an answer's
/// prompt (every input token, cached or not) is above `above`, each rate set here replaces
/// the one below it, for every token of the answer; a rate not set keeps the one below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// Prompt tokens (LiteLLM: `prompt_tokens > above`; xAI: `>=`).
    pub above: u64,
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cache_read: Option<u64>,
    pub cache_write_5m: Option<u64>,
    pub cache_write_1h: Option<u64>,
}

/// One model of the catalog. Rates in femto-USD per token; an absent cache rate means
/// what it means to LiteLLM (see [`cost`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// Switchyard's provider name (`provider:` in the endpoint metadata).
    pub provider: &'static str,
    /// The model name as the provider takes it: LiteLLM's key without its `<provider>/`.
    pub model: &'static str,
    /// LiteLLM's `litellm_provider`.
    pub litellm_provider: &'static str,
    /// LiteLLM's key is `<litellm_provider>/<model>` (else just `<model>`).
    pub prefixed: bool,
    pub mode: Mode,
    /// `input_cost_per_token`.
    pub input: u64,
    /// `output_cost_per_token`.
    pub output: u64,
    /// `cache_read_input_token_cost`.
    pub cache_read: Option<u64>,
    /// `cache_creation_input_token_cost`.
    pub cache_write_5m: Option<u64>,
    /// `cache_creation_input_token_cost_above_1hr`.
    pub cache_write_1h: Option<u64>,
    /// `output_cost_per_reasoning_token`.
    pub reasoning: Option<u64>,
    /// Ascending by threshold.
    pub tiers: &'static [Tier],
    pub max_input_tokens: Option<u32>,
    pub max_output_tokens: Option<u32>,
}

impl Entry {
    /// The entry's key in LiteLLM's price map (`claude-sonnet-4-6`, `gemini/gemini-2.5-pro`).
    pub fn litellm_key(&self) -> String {
        match self.prefixed {
            true => format!("{}/{}", self.litellm_provider, self.model),
            false => self.model.to_string(),
        }
    }
}

/// The whole catalog, sorted by (provider, model).
pub fn catalog() -> &'static [Entry] {
    &catalog::CATALOG
}

/// Each Switchyard provider name and the LiteLLM `litellm_provider` whose prices apply to it.
pub fn litellm_providers() -> &'static [(&'static str, &'static str)] {
    &catalog::PROVIDERS
}

fn find(provider: &str, model: &str) -> Option<&'static Entry> {
    let i = catalog::CATALOG.binary_search_by(|e| e.provider.cmp(provider).then_with(|| e.model.cmp(model))).ok()?;
    catalog::CATALOG.get(i)
}

/// The catalog entry for `model` served by `provider`: the provider's own name for it
/// (`claude-sonnet-4-6`, `gemini-2.5-pro`, `accounts/fireworks/models/kimi-k3`), or the
/// same with the provider's prefix, Switchyard's or LiteLLM's (`gemini/gemini-2.5-pro`,
/// `azure/gpt-4.1`, `together_ai/…`, `mistral/mistral-small-latest`). Names are exact:
/// a dated snapshot the catalog does not list is unknown, not priced as its alias (prices
/// of snapshots differ: `gpt-4o-2024-05-13` is twice `gpt-4o`).
pub fn lookup(provider: Provider, model: &str) -> Option<&'static Entry> {
    let name = provider.name();
    find(name, model).or_else(|| {
        let litellm = catalog::PROVIDERS.iter().filter(|(p, _)| *p == name).map(|(_, l)| *l);
        std::iter::once(name)
            .chain(litellm)
            .find_map(|prefix| model.strip_prefix(prefix)?.strip_prefix('/').and_then(|rest| find(name, rest)))
    })
}

/// The entry whose LiteLLM key is `key`, whatever its provider: `gpt-4o` (OpenAI),
/// `azure/gpt-4o`, `anthropic/claude-opus-4-7`, `gemini/gemini-2.5-flash`. For
/// `base_model`, which names LiteLLM's model rather than the deployment's provider's.
pub fn lookup_litellm(key: &str) -> Option<&'static Entry> {
    let prefixed = key.split_once('/').and_then(|(prefix, rest)| {
        catalog::PROVIDERS
            .iter()
            .filter(|(switchyard, litellm)| *litellm == prefix || *switchyard == prefix)
            .find_map(|(switchyard, _)| find(switchyard, rest))
    });
    prefixed.or_else(|| catalog::CATALOG.iter().find(|e| !e.prefixed && e.model == key))
}

/// How a provider's answers are billed, where LiteLLM departs from its generic formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    /// `generic_cost_per_token`: Anthropic, OpenAI, Azure, Gemini, DeepSeek, Fireworks and
    /// every other OpenAI-compatible provider.
    Standard,
    /// xAI (`llms/xai/cost_calculator.py`): a tier applies from its threshold on (`>=`),
    /// and reasoning tokens are billed as output.
    Xai,
    /// Perplexity (`llms/perplexity/cost_calculator.py`): every prompt token at the input
    /// rate (no cache prices, no tiers), reasoning at the reasoning rate if there is one.
    Perplexity,
}

impl Billing {
    pub fn of(provider: Provider) -> Billing {
        match provider.name() {
            "xai" => Billing::Xai,
            "perplexity" => Billing::Perplexity,
            _ => Billing::Standard,
        }
    }
}

/// Prices from the endpoint metadata, in femto-USD per token, by LiteLLM's names; each
/// replaces the catalog's (LiteLLM merges a deployment's prices over its base model's the
/// same way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `input_cost_per_token`
    pub input: Option<u64>,
    /// `output_cost_per_token`
    pub output: Option<u64>,
    /// `cache_read_input_token_cost`
    pub cache_read: Option<u64>,
    /// `cache_creation_input_token_cost`
    pub cache_write_5m: Option<u64>,
    /// `cache_creation_input_token_cost_above_1hr`
    pub cache_write_1h: Option<u64>,
    /// `output_cost_per_reasoning_token`
    pub reasoning: Option<u64>,
    /// `input_cost_per_token_above_200k_tokens`
    pub input_above_200k: Option<u64>,
    /// `output_cost_per_token_above_200k_tokens`
    pub output_above_200k: Option<u64>,
    /// `cache_read_input_token_cost_above_200k_tokens`
    pub cache_read_above_200k: Option<u64>,
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }

    fn tier(&self) -> Option<Tier> {
        let tier = Tier {
            above: METADATA_TIER,
            input: self.input_above_200k,
            output: self.output_above_200k,
            cache_read: self.cache_read_above_200k,
            cache_write_5m: None,
            cache_write_1h: None,
        };
        (tier.input.is_some() || tier.output.is_some() || tier.cache_read.is_some()).then_some(tier)
    }
}

/// What one deployment charges: femto-USD per token, LiteLLM's model info after the
/// deployment's overrides, with its provider's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prices {
    pub input: u64,
    pub output: u64,
    /// Absent: the input rate (LiteLLM: a provider without a cache price bills cached
    /// tokens as input).
    pub cache_read: Option<u64>,
    /// Absent: the input rate.
    pub cache_write_5m: Option<u64>,
    /// Absent: the 5-minute write rate.
    pub cache_write_1h: Option<u64>,
    /// Absent: the output rate (of the tier). A reasoning rate is not tiered (LiteLLM).
    pub reasoning: Option<u64>,
    /// Ascending by threshold, then `None`s.
    pub tiers: [Option<Tier>; MAX_TIERS],
    pub billing: Billing,
}

impl Prices {
    /// Flat prices, no tiers, standard billing (tests, callers that set prices by hand).
    pub fn flat(input: u64, output: u64) -> Prices {
        Prices {
            input,
            output,
            cache_read: None,
            cache_write_5m: None,
            cache_write_1h: None,
            reasoning: None,
            tiers: [None; MAX_TIERS],
            billing: Billing::Standard,
        }
    }

    /// A deployment's prices: `entry` (if the catalog knows the model) overridden field by
    /// field by `overrides`, billed by `provider`'s rules. `None` when neither prices it.
    /// Without a catalog entry a rate the metadata does not set is 0, as in LiteLLM.
    pub fn resolve(provider: Provider, entry: Option<&Entry>, overrides: &Overrides) -> Option<Prices> {
        if entry.is_none() && overrides.is_empty() {
            return None;
        }
        let mut prices = Prices { billing: Billing::of(provider), ..Prices::flat(0, 0) };
        if let Some(e) = entry {
            prices.input = e.input;
            prices.output = e.output;
            prices.cache_read = e.cache_read;
            prices.cache_write_5m = e.cache_write_5m;
            prices.cache_write_1h = e.cache_write_1h;
            prices.reasoning = e.reasoning;
            for (slot, tier) in prices.tiers.iter_mut().zip(e.tiers) {
                *slot = Some(*tier);
            }
        }
        let o = overrides;
        prices.input = o.input.unwrap_or(prices.input);
        prices.output = o.output.unwrap_or(prices.output);
        prices.cache_read = o.cache_read.or(prices.cache_read);
        prices.cache_write_5m = o.cache_write_5m.or(prices.cache_write_5m);
        prices.cache_write_1h = o.cache_write_1h.or(prices.cache_write_1h);
        prices.reasoning = o.reasoning.or(prices.reasoning);
        if let Some(tier) = o.tier() {
            prices.set_tier(tier);
        }
        // Fireworks (`llms/fireworks_ai/cache_pricing.py`): a model without a cache read
        // price reads at half its input rate (FIREWORKS_AI_DEFAULT_CACHE_READ_RATE_RATIO).
        if provider.name() == "fireworks" && prices.cache_read.is_none() {
            prices.cache_read = Some(prices.input / 2);
        }
        Some(prices)
    }

    /// Sets the rates `tier` has on the tier of its threshold, adding it if there is none.
    fn set_tier(&mut self, tier: Tier) {
        let merge = |new: Tier, old: Tier| Tier {
            above: old.above,
            input: new.input.or(old.input),
            output: new.output.or(old.output),
            cache_read: new.cache_read.or(old.cache_read),
            cache_write_5m: new.cache_write_5m.or(old.cache_write_5m),
            cache_write_1h: new.cache_write_1h.or(old.cache_write_1h),
        };
        let mut pending = Some(tier);
        for slot in self.tiers.iter_mut() {
            match (*slot, pending) {
                (Some(old), Some(new)) if old.above == new.above => {
                    *slot = Some(merge(new, old));
                    pending = None;
                }
                (Some(old), Some(new)) if old.above > new.above => {
                    *slot = Some(new);
                    pending = Some(old);
                }
                (None, Some(new)) => {
                    *slot = Some(new);
                    pending = None;
                }
                _ => {}
            }
        }
        // All MAX_TIERS taken by higher thresholds: the highest is dropped (never with the
        // catalog, whose entries leave a slot free).
    }

    /// The rates that apply to an answer of `prompt` input tokens.
    fn rates_at(&self, prompt: u64) -> Rates {
        let inclusive = self.billing == Billing::Xai;
        let crossed = |t: &Tier| if inclusive { prompt >= t.above } else { prompt > t.above };
        let (_, rates) = self
            .cumulative()
            .take_while(|(tier, _)| tier.is_none_or(crossed))
            .last()
            .unwrap_or((None, self.base_rates()));
        rates.resolved(self)
    }

    fn base_rates(&self) -> RawRates {
        RawRates {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write_5m: self.cache_write_5m,
            cache_write_1h: self.cache_write_1h,
        }
    }

    /// The base rates, then those after each tier in turn (LiteLLM walks the thresholds in
    /// ascending order, each crossed one replacing the rates it sets).
    fn cumulative(&self) -> impl Iterator<Item = (Option<&Tier>, RawRates)> + '_ {
        let tiers: &[Option<Tier>] = match self.billing {
            Billing::Perplexity => &[],
            _ => &self.tiers,
        };
        std::iter::once((None, self.base_rates())).chain(tiers.iter().flatten().scan(self.base_rates(), |rates, t| {
            *rates = RawRates {
                input: t.input.unwrap_or(rates.input),
                output: t.output.unwrap_or(rates.output),
                cache_read: t.cache_read.or(rates.cache_read),
                cache_write_5m: t.cache_write_5m.or(rates.cache_write_5m),
                cache_write_1h: t.cache_write_1h.or(rates.cache_write_1h),
            };
            Some((Some(t), *rates))
        }))
    }
}

/// One tier's rates before LiteLLM's fallbacks.
#[derive(Debug, Clone, Copy)]
struct RawRates {
    input: u64,
    output: u64,
    cache_read: Option<u64>,
    cache_write_5m: Option<u64>,
    cache_write_1h: Option<u64>,
}

impl RawRates {
    fn resolved(self, prices: &Prices) -> Rates {
        let write_5m = self.cache_write_5m.unwrap_or(self.input);
        let (cache_read, cache_write_5m, cache_write_1h, reasoning) = match prices.billing {
            Billing::Standard => (
                self.cache_read.unwrap_or(self.input),
                write_5m,
                self.cache_write_1h.unwrap_or(write_5m),
                prices.reasoning.unwrap_or(self.output),
            ),
            Billing::Xai => {
                (self.cache_read.unwrap_or(self.input), write_5m, self.cache_write_1h.unwrap_or(write_5m), self.output)
            }
            Billing::Perplexity => (self.input, self.input, self.input, prices.reasoning.unwrap_or(self.output)),
        };
        Rates { input: self.input, output: self.output, cache_read, cache_write_5m, cache_write_1h, reasoning }
    }
}

/// The rate of every kind of token for one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rates {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write_5m: u64,
    cache_write_1h: u64,
    reasoning: u64,
}

fn times(tokens: u64, rate: u64) -> u128 {
    u128::from(tokens).saturating_mul(u128::from(rate))
}

fn to_nano(femto: u128) -> NanoUsd {
    u64::try_from(femto.saturating_add(FEMTO_PER_NANO / 2) / FEMTO_PER_NANO).unwrap_or(u64::MAX)
}

/// The cost of `usage` in femto-USD, unrounded.
///
/// LiteLLM's `generic_cost_per_token`, exactly: the tier is chosen by the prompt (every
/// input token: uncached, read and written); uncached input at the input rate, cache reads
/// at the read rate (absent: input), 5-minute writes at the write rate (absent: input),
/// 1-hour writes at the 1-hour rate (absent: the 5-minute one), all of the tier; output
/// not spent reasoning at the tier's output rate, reasoning at the reasoning rate (not
/// tiered; absent: the tier's output rate). Embeddings are the same with no output.
pub fn cost_femto(prices: &Prices, usage: &Usage) -> u128 {
    let r = prices.rates_at(usage.prompt_tokens());
    let input = times(usage.input, r.input)
        .saturating_add(times(usage.cache_read, r.cache_read))
        .saturating_add(times(usage.cache_write_5m, r.cache_write_5m))
        .saturating_add(times(usage.cache_write_1h, r.cache_write_1h));
    let output = match prices.billing {
        // xAI bills completion tokens (reasoning included) at the output rate.
        Billing::Xai => times(usage.output, r.output),
        // Perplexity prices reasoning apart only when the model has a reasoning rate.
        Billing::Perplexity if prices.reasoning.is_none() => times(usage.output, r.output),
        Billing::Standard | Billing::Perplexity => times(usage.output.saturating_sub(usage.reasoning), r.output)
            .saturating_add(times(usage.reasoning, r.reasoning)),
    };
    input.saturating_add(output)
}

/// The cost of `usage` at `prices`, rounded half up to the nano-USD.
pub fn cost(prices: &Prices, usage: &Usage) -> NanoUsd {
    to_nano(cost_femto(prices, usage))
}

/// The most a request can cost: `input_tokens` of prompt at the highest input-side rate
/// (uncached, cache read or cache write) and `max_output_tokens` at the higher of the
/// output and reasoning rates, each the highest of the base rates and of every tier the
/// prompt reaches. Never less than [`cost`] of a usage whose prompt is at most
/// `input_tokens` and whose output (reasoning included) is at most `max_output_tokens`.
pub fn worst_case(prices: &Prices, input_tokens: u64, max_output_tokens: u64) -> NanoUsd {
    let inclusive = prices.billing == Billing::Xai;
    let reached = |above: u64| if inclusive { input_tokens >= above } else { input_tokens > above };
    let (input_rate, output_rate) = prices
        .cumulative()
        .take_while(|(tier, _)| tier.is_none_or(|t| reached(t.above)))
        .map(|(_, raw)| {
            let r = raw.resolved(prices);
            let output = match prices.billing {
                Billing::Xai => r.output,
                _ => r.output.max(r.reasoning),
            };
            (r.input.max(r.cache_read).max(r.cache_write_5m).max(r.cache_write_1h), output)
        })
        .fold((0, 0), |(i, o), (ri, ro)| (u64::max(i, ri), u64::max(o, ro)));
    to_nano(times(input_tokens, input_rate).saturating_add(times(max_output_tokens, output_rate)))
}

/// `nano` USD as a decimal number of dollars, without trailing zeros (`0.00015`).
pub fn usd(nano: NanoUsd) -> String {
    decimal(u128::from(nano), 9)
}

/// `value / 10^scale` in decimal, without trailing zeros.
pub fn decimal(value: u128, scale: u32) -> String {
    let unit = 10u128.saturating_pow(scale);
    let fraction = format!("{:0width$}", value % unit, width = scale as usize);
    let fraction = fraction.trim_end_matches('0');
    match fraction.is_empty() {
        true => format!("{}", value / unit),
        false => format!("{}.{fraction}", value / unit),
    }
}

/// A price in USD per token, written in decimal (`0.000003`, `3e-6`, `3.75E-06`), as a
/// whole number of femto-USD, rounded half up. `None` if it is not a number of that form,
/// is negative, or is above `u64::MAX` femto-USD (18 446 USD a token).
pub fn femto_from_usd(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (text.get(..i)?, text.get(i + 1..)?.parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (whole.is_empty() && fraction.is_empty()) || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    // value = digits × 10^shift femto-USD
    let shift = exponent.checked_sub(i64::try_from(fraction.len()).ok()?)?.checked_add(15)?;
    if shift >= 0 {
        let zeros = usize::try_from(shift).ok().filter(|z| digits.len().checked_add(*z).is_some_and(|n| n <= 20))?;
        return format!("{digits}{}", "0".repeat(zeros)).parse::<u64>().ok();
    }
    let cut = usize::try_from(shift.unsigned_abs()).ok()?;
    if cut > digits.len() {
        return Some(0); // below half a femto-USD
    }
    let (kept, dropped) = digits.split_at(digits.len() - cut);
    let kept = if kept.is_empty() { 0 } else { kept.parse::<u64>().ok()? };
    let round_up = dropped.bytes().next().is_some_and(|b| b >= b'5');
    kept.checked_add(u64::from(round_up))
}

/// [`femto_from_usd`] for a price given as a double (a YAML number in Envoy's metadata).
pub fn femto_from_f64(usd: f64) -> Option<u64> {
    if !usd.is_finite() || usd < 0.0 {
        return None;
    }
    // `{}` writes the shortest decimal that reads back as the same double: 3e-6 is
    // "0.000003", not 0.00000299999999999999992.
    femto_from_usd(&format!("{}", usd.abs()))
}
