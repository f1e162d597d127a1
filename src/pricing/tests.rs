use super::*;
use crate::providers::Provider;
use proptest::prelude::*;

fn provider(name: &str) -> Provider {
    Provider::from_name(name).unwrap()
}

fn usage(input: u64, cache_read: u64, cache_write_5m: u64, cache_write_1h: u64, output: u64, reasoning: u64) -> Usage {
    Usage { input, cache_read, cache_write_5m, cache_write_1h, output, reasoning }
}

fn catalog_prices(p: &str, model: &str) -> Prices {
    let p = provider(p);
    Prices::resolve(p, lookup(p, model), &Overrides::default()).unwrap()
}

/// 1 USD per million tokens, in femto-USD per token.
const PER_M: u64 = 1_000_000_000;

#[test]
fn catalog_is_sorted_unique_and_fits_the_engine() {
    let all = catalog();
    assert!(all.len() > 300, "{}", all.len());
    for pair in all.windows(2) {
        assert!((pair[0].provider, pair[0].model) < (pair[1].provider, pair[1].model), "{pair:?}");
    }
    for e in all {
        assert!(e.tiers.len() < MAX_TIERS, "{}: the metadata's tier needs a free slot", e.model);
        assert!(e.tiers.windows(2).all(|t| t[0].above < t[1].above), "{}", e.model);
        assert!(litellm_providers().contains(&(e.provider, e.litellm_provider)), "{}", e.model);
        assert!(Provider::from_name(e.provider).is_some(), "{}", e.provider);
        assert_eq!(lookup(provider(e.provider), e.model), Some(e));
        assert_eq!(lookup_litellm(&e.litellm_key()).map(|f| f.litellm_key()), Some(e.litellm_key()));
    }
    // Every provider Switchyard has is mapped (vllm, lmstudio: LiteLLM prices none of their models).
    for name in crate::endpoint::provider_names() {
        assert!(litellm_providers().iter().any(|(p, _)| *p == name), "{name}");
    }
}

#[test]
fn lookup_takes_litellm_key_forms() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("anthropic", "claude-sonnet-4-6", Some("claude-sonnet-4-6")),
        ("anthropic", "claude-opus-4-7-20260416", Some("claude-opus-4-7-20260416")),
        ("anthropic", "anthropic/claude-haiku-4-5", Some("claude-haiku-4-5")),
        ("gemini", "gemini-2.5-pro", Some("gemini/gemini-2.5-pro")),
        ("gemini", "gemini/gemini-2.5-pro", Some("gemini/gemini-2.5-pro")),
        // Both `gemini-flash-latest` and `gemini/gemini-flash-latest` exist: the prefixed one.
        ("gemini", "gemini-flash-latest", Some("gemini/gemini-flash-latest")),
        ("gemini", "gemini-embedding-001", Some("gemini/gemini-embedding-001")),
        ("openai", "gpt-4.1", Some("gpt-4.1")),
        ("openai", "openai/gpt-4o-mini", Some("gpt-4o-mini")),
        ("openai", "text-embedding-3-small", Some("text-embedding-3-small")),
        ("azure", "gpt-4.1", Some("azure/gpt-4.1")),
        ("azure", "azure/gpt-4o", Some("azure/gpt-4o")),
        ("mistral", "mistral-small-latest", Some("mistral/mistral-small-latest")),
        ("mistral", "mistral/mistral-small-latest", Some("mistral/mistral-small-latest")),
        ("deepseek", "deepseek-v4-pro", Some("deepseek/deepseek-v4-pro")),
        ("xai", "grok-4.3", Some("xai/grok-4.3")),
        // Groq's model names start with another provider's name: they are its own.
        ("groq", "openai/gpt-oss-120b", Some("groq/openai/gpt-oss-120b")),
        ("together", "together_ai/openai/gpt-oss-120b", Some("together_ai/openai/gpt-oss-120b")),
        ("together", "together/openai/gpt-oss-120b", Some("together_ai/openai/gpt-oss-120b")),
        ("fireworks", "accounts/fireworks/models/kimi-k3", Some("fireworks_ai/accounts/fireworks/models/kimi-k3")),
        // Not listed: unknown, not priced as a neighbour.
        ("anthropic", "claude-sonnet-4-6-20990101", None),
        ("openai", "gpt-4o-2099-05-13", None),
        // A recently deprecated snapshot is still priced, at its own price (not gpt-4o's).
        ("openai", "gpt-4o-2024-05-13", Some("gpt-4o-2024-05-13")),
        ("openai", "claude-sonnet-4-6", None),
        ("anthropic", "gemini/gemini-2.5-pro", None),
        ("vllm", "meta-llama/Llama-3.3-70B-Instruct", None),
        ("openai", "", None),
    ];
    for (p, model, key) in cases {
        assert_eq!(lookup(provider(p), model).map(|e| e.litellm_key()).as_deref(), *key, "{p} {model}");
    }
    assert_eq!(lookup_litellm("gpt-4o").map(|e| e.provider), Some("openai"));
    assert_eq!(lookup_litellm("azure/gpt-4o").map(|e| e.provider), Some("azure"));
    assert_eq!(lookup_litellm("anthropic/claude-opus-4-7").map(|e| e.model), Some("claude-opus-4-7"));
    assert_eq!(lookup_litellm("gemini/gemini-2.5-flash").map(|e| e.provider), Some("gemini"));
    assert_eq!(lookup_litellm("nonsense/gpt-4o"), None);
}

#[test]
fn catalog_prices_are_litellms() {
    // GOVERNANCE §1.5: claude-sonnet-4-5 input 3e-6, output 1.5e-5, cache read 3e-7, cache
    // write 3.75e-6 (6e-6 for 1 h), max output 64000; claude-sonnet-4-6 has the same prices.
    let e = lookup(Provider::Anthropic, "claude-sonnet-4-6").unwrap();
    assert_eq!(
        (e.input, e.output, e.cache_read, e.cache_write_5m, e.cache_write_1h),
        (3 * PER_M, 15 * PER_M, Some(300_000_000), Some(3_750_000_000), Some(6 * PER_M))
    );
    assert_eq!(e.mode, Mode::Chat);
    let e = lookup(Provider::Gemini, "gemini-2.5-pro").unwrap();
    assert_eq!(e.tiers.len(), 1);
    assert_eq!(
        e.tiers[0],
        Tier {
            above: 200_000,
            input: Some(2_500_000_000),
            output: Some(15 * PER_M),
            cache_read: Some(250_000_000),
            cache_write_5m: None,
            cache_write_1h: None
        }
    );
    assert_eq!((e.max_input_tokens, e.max_output_tokens), (Some(1_048_576), Some(65_536)));
    assert_eq!(lookup(provider("openai"), "text-embedding-3-small").unwrap().mode, Mode::Embedding);
}

#[test]
fn cost_of_answers_as_litellm_computes_them() {
    // (provider, model, usage, nano-USD): the checks of GOVERNANCE §1.5 made with LiteLLM's
    // cost_per_token, and the rules of generic_cost_per_token one by one.
    let cases: &[(&str, &str, Usage, NanoUsd)] = &[
        // gpt-4o-mini, 1200 prompt tokens of which 1000 cached, 300 out: 1.05e-4 + 1.8e-4.
        ("openai", "gpt-4o-mini", usage(200, 1000, 0, 0, 300, 0), 285_000),
        // 100 uncached + 1000 read + 100 written (5 min) at 3e-6 / 3e-7 / 3.75e-6: 9.75e-4.
        ("anthropic", "claude-sonnet-4-6", usage(100, 1000, 100, 0, 0, 0), 975_000),
        // 1 h writes at 6e-6.
        ("anthropic", "claude-sonnet-4-6", usage(0, 0, 0, 100, 0, 0), 600_000),
        // gemini-2.5-flash: 500 out of which 400 reasoning, at 2.5e-6: 1.25e-3.
        ("gemini", "gemini-2.5-flash", usage(0, 0, 0, 0, 500, 400), 1_250_000),
        // gemini-2.5-pro at 200 000 prompt tokens: below the tier (`> 200k`).
        ("gemini", "gemini-2.5-pro", usage(200_000, 0, 0, 0, 0, 0), 250_000_000),
        // One more: every token of the answer at the tier, output included (2.5e-6, 1.5e-5).
        ("gemini", "gemini-2.5-pro", usage(200_001, 0, 0, 0, 1, 0), 500_002_500 + 15_000),
        // Cache reads count towards the threshold and switch tier too (1.25e-7 → 2.5e-7).
        ("gemini", "gemini-2.5-pro", usage(1, 200_000, 0, 0, 0, 0), 2_500 + 50_000_000),
        // Embeddings: input only.
        ("openai", "text-embedding-3-small", usage(1_000_000, 0, 0, 0, 0, 0), 20_000_000),
    ];
    for (p, model, u, nano) in cases {
        assert_eq!(cost(&catalog_prices(p, model), u), *nano, "{p} {model} {u:?}");
    }
}

fn tiered() -> Prices {
    // 1, 10, cache read 0.1, writes 1.25 / 2 USD per million; above 100 tokens 2, 20, read
    // 0.2 (writes not tiered); reasoning none.
    let mut p = Prices::flat(PER_M, 10 * PER_M);
    p.cache_read = Some(PER_M / 10);
    p.cache_write_5m = Some(1_250_000_000);
    p.cache_write_1h = Some(2 * PER_M);
    p.tiers[0] = Some(Tier {
        above: 100,
        input: Some(2 * PER_M),
        output: Some(20 * PER_M),
        cache_read: Some(PER_M / 5),
        cache_write_5m: None,
        cache_write_1h: None,
    });
    p
}

#[test]
fn tiers_fallbacks_and_billing_rules() {
    let xai = |p: Prices| Prices { billing: Billing::Xai, ..p };
    let perplexity = |p: Prices| Prices { billing: Billing::Perplexity, ..p };
    let no_cache = |p: Prices| Prices { cache_read: None, cache_write_5m: None, cache_write_1h: None, ..p };
    let reasoning = |p: Prices| Prices { reasoning: Some(30 * PER_M), ..p };
    // (prices, usage, femto-USD)
    let cases: Vec<(Prices, Usage, u128)> = vec![
        // At the threshold: base rates; above: the tier's, for every kind of token.
        (tiered(), usage(100, 0, 0, 0, 1, 0), 100 * 1_000_000_000 + 10_000_000_000),
        (tiered(), usage(101, 0, 0, 0, 1, 0), 101 * 2_000_000_000 + 20_000_000_000),
        (tiered(), usage(0, 101, 0, 0, 0, 0), 101 * 200_000_000),
        // Writes keep their base rates when the tier has none for them.
        (
            tiered(),
            usage(1, 50, 25, 25, 0, 0),
            2 * PER_M as u128 + 50 * 200_000_000 + 25 * 1_250_000_000 + 25 * 2 * PER_M as u128,
        ),
        // xAI: the tier applies from the threshold on.
        (xai(tiered()), usage(100, 0, 0, 0, 0, 0), 100 * 2_000_000_000),
        // Reasoning at the output rate without a reasoning rate; at the reasoning rate (not
        // tiered) with one; xAI bills it as output whatever.
        (tiered(), usage(101, 0, 0, 0, 10, 4), 101 * 2_000_000_000 + 10 * 20_000_000_000),
        (
            reasoning(tiered()),
            usage(101, 0, 0, 0, 10, 4),
            101 * 2_000_000_000 + 6 * 20_000_000_000 + 4 * 30 * PER_M as u128,
        ),
        (xai(reasoning(tiered())), usage(10, 0, 0, 0, 10, 4), 10 * PER_M as u128 + 10 * 10 * PER_M as u128),
        // No cache prices: reads and writes at the input rate, of the tier.
        (no_cache(tiered()), usage(1, 2, 3, 4, 0, 0), 10 * PER_M as u128),
        // Above the tier: the tier's input rate, and its read rate (it has one).
        (no_cache(tiered()), usage(1, 100, 3, 4, 0, 0), 8 * 2 * PER_M as u128 + 100 * 200_000_000),
        // A 1-hour write without its own rate: the 5-minute rate.
        (Prices { cache_write_1h: None, ..tiered() }, usage(0, 0, 0, 8, 0, 0), 8 * 1_250_000_000),
        // Perplexity: every prompt token at the input rate, no tiers; reasoning apart only
        // with a reasoning rate.
        (perplexity(tiered()), usage(1, 200, 3, 4, 10, 4), 208 * PER_M as u128 + 10 * 10 * PER_M as u128),
        (
            perplexity(reasoning(tiered())),
            usage(1, 0, 0, 0, 10, 4),
            PER_M as u128 + 6 * 10 * PER_M as u128 + 4 * 30 * PER_M as u128,
        ),
        // Reasoning above the output (a provider's inconsistent usage): LiteLLM bills the
        // reasoning tokens and no text.
        (reasoning(tiered()), usage(0, 0, 0, 0, 2, 5), 5 * 30 * PER_M as u128),
        (Prices::flat(0, 0), usage(u64::MAX, u64::MAX, u64::MAX, u64::MAX, u64::MAX, u64::MAX), 0),
    ];
    for (prices, u, femto) in cases {
        assert_eq!(cost_femto(&prices, &u), femto, "{prices:?} {u:?}");
    }
    // Rounded half up to the nano-USD, once.
    let p = Prices::flat(500_000, 1);
    assert_eq!((cost(&p, &usage(1, 0, 0, 0, 0, 0)), cost(&p, &usage(1, 0, 0, 0, 1, 0))), (1, 1));
    assert_eq!(cost(&Prices::flat(499_999, 0), &usage(1, 0, 0, 0, 0, 0)), 0);
    let huge = Prices::flat(u64::MAX, u64::MAX);
    assert_eq!(cost(&huge, &usage(u64::MAX, u64::MAX, u64::MAX, u64::MAX, u64::MAX, 0)), u64::MAX);
}

#[test]
fn overrides_replace_field_by_field() {
    let openai = provider("openai");
    let entry = lookup(openai, "gpt-5.4");
    let base = Prices::resolve(openai, entry, &Overrides::default()).unwrap();
    assert_eq!(base.tiers[0].map(|t| t.above), Some(272_000));
    let o = Overrides { input: Some(7), cache_read: Some(0), input_above_200k: Some(9), ..Overrides::default() };
    let p = Prices::resolve(openai, entry, &o).unwrap();
    assert_eq!((p.input, p.output, p.cache_read, p.cache_write_5m), (7, base.output, Some(0), base.cache_write_5m));
    // The metadata's 200k tier goes before the catalog's 272k one.
    assert_eq!(
        p.tiers.map(|t| t.map(|t| (t.above, t.input))),
        [Some((200_000, Some(9))), Some((272_000, base.tiers[0].and_then(|t| t.input))), None]
    );
    // Onto a catalog 200k tier, it replaces only what it sets.
    let gemini = Prices::resolve(
        Provider::Gemini,
        lookup(Provider::Gemini, "gemini-2.5-pro"),
        &Overrides { output_above_200k: Some(1), ..Overrides::default() },
    )
    .unwrap();
    assert_eq!(
        gemini.tiers[0].map(|t| (t.input, t.output, t.cache_read)),
        Some((Some(2_500_000_000), Some(1), Some(250_000_000)))
    );
    assert_eq!(gemini.tiers[1], None);
    // Without a catalog entry: only what the metadata sets; nothing set, no prices.
    let azure = provider("azure");
    assert_eq!(Prices::resolve(azure, None, &Overrides::default()), None);
    let p = Prices::resolve(azure, None, &Overrides { input: Some(3), ..Overrides::default() }).unwrap();
    assert_eq!((p.input, p.output, p.cache_read, p.tiers), (3, 0, None, [None; MAX_TIERS]));
    assert_eq!(
        Prices::resolve(provider("xai"), None, &Overrides { output: Some(1), ..Overrides::default() }).unwrap().billing,
        Billing::Xai
    );
    // Fireworks reads a model's cache at half its input rate unless it has a cache price.
    let fw = provider("fireworks");
    let p = Prices::resolve(fw, None, &Overrides { input: Some(900), ..Overrides::default() }).unwrap();
    assert_eq!(p.cache_read, Some(450));
    let p = Prices::resolve(fw, None, &Overrides { input: Some(900), cache_read: Some(1), ..Overrides::default() })
        .unwrap();
    assert_eq!(p.cache_read, Some(1));
}

#[test]
fn worst_case_bounds() {
    let p = tiered();
    // Below the tier: the highest input-side rate is the 1 h write (2), output 10.
    assert_eq!(worst_case(&p, 100, 10), (100 * 2 * PER_M + 10 * 10 * PER_M) / 1_000_000);
    // Above: the tier's input (2) and output (20).
    assert_eq!(worst_case(&p, 1000, 10), (1000 * 2 * PER_M + 10 * 20 * PER_M) / 1_000_000);
    let r = Prices { reasoning: Some(30 * PER_M), ..p };
    assert_eq!(worst_case(&r, 10, 10), (10 * 2 * PER_M + 10 * 30 * PER_M) / 1_000_000);
    let x = Prices { billing: Billing::Xai, ..r };
    assert_eq!(worst_case(&x, 100, 10), (100 * 2 * PER_M + 10 * 20 * PER_M) / 1_000_000);
    assert_eq!(worst_case(&Prices::flat(u64::MAX, u64::MAX), u64::MAX, u64::MAX), u64::MAX);
    assert_eq!(worst_case(&p, 0, 0), 0);
}

#[test]
fn prices_in_decimal_text() {
    let cases: &[(&str, Option<u64>)] = &[
        ("0.000003", Some(3_000_000_000)),
        ("3e-6", Some(3_000_000_000)),
        ("3E-06", Some(3_000_000_000)),
        ("+3.75e-6", Some(3_750_000_000)),
        (" 1.5e-05 ", Some(15_000_000_000)),
        ("0", Some(0)),
        ("0.0", Some(0)),
        ("1", Some(1_000_000_000_000_000)),
        ("1.", Some(1_000_000_000_000_000)),
        (".5e-14", Some(5)),
        ("1e-15", Some(1)),
        ("4e-16", Some(0)),
        ("5e-16", Some(1)),
        ("1.23456789e-9", Some(1_234_568)),
        ("1e-400", Some(0)),
        ("18446.744073709551615", Some(u64::MAX)),
        ("18446.744073709551616", None),
        ("1e300", None),
        ("-1e-6", None),
        ("", None),
        (".", None),
        ("e5", None),
        ("1e", None),
        ("0x10", None),
        ("inf", None),
        ("NaN", None),
        ("1,5", None),
        ("3e-6e1", None),
    ];
    for (text, femto) in cases {
        assert_eq!(femto_from_usd(text), *femto, "{text:?}");
    }
    assert_eq!(femto_from_f64(3e-6), Some(3_000_000_000));
    assert_eq!(femto_from_f64(3.75e-6), Some(3_750_000_000));
    assert_eq!(femto_from_f64(1.25e-7), Some(125_000_000));
    assert_eq!(femto_from_f64(-0.0), Some(0));
    assert_eq!(femto_from_f64(-1.0), None);
    assert_eq!(femto_from_f64(f64::NAN), None);
    assert_eq!(femto_from_f64(1e20), None);
    // Every catalog price survives a trip through a double (a YAML number in Envoy).
    for e in catalog() {
        assert_eq!(femto_from_f64(e.input as f64 / 1e15), Some(e.input), "{}", e.model);
    }
    assert_eq!(
        (usd(0), usd(150_000), usd(1_000_000_000), usd(1_234_567_890)),
        ("0".into(), "0.00015".into(), "1".into(), "1.23456789".into())
    );
}

fn any_usage(max: u64) -> impl Strategy<Value = Usage> {
    (0..=max, 0..=max, 0..=max, 0..=max, 0..=max, 0..=max)
        .prop_map(|(i, r, w5, w1, o, re)| usage(i, r, w5, w1, o, re.min(o)))
}

fn any_entry() -> impl Strategy<Value = &'static Entry> {
    (0..catalog().len()).prop_map(|i| &catalog()[i])
}

fn any_rate() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![Just(None), (0u64..=100 * PER_M).prop_map(Some), Just(Some(u64::MAX))]
}

fn any_prices() -> impl Strategy<Value = Prices> {
    let tier = (0u64..2_000_000, any_rate(), any_rate(), any_rate(), any_rate(), any_rate()).prop_map(
        |(above, input, output, cache_read, cache_write_5m, cache_write_1h)| Tier {
            above,
            input,
            output,
            cache_read,
            cache_write_5m,
            cache_write_1h,
        },
    );
    (
        any::<u64>(),
        any::<u64>(),
        (any_rate(), any_rate(), any_rate(), any_rate()),
        proptest::collection::vec(tier, 0..=MAX_TIERS),
        prop_oneof![Just(Billing::Standard), Just(Billing::Xai), Just(Billing::Perplexity)],
    )
        .prop_map(
            |(input, output, (cache_read, cache_write_5m, cache_write_1h, reasoning), mut tiers, billing)| {
                tiers.sort_by_key(|t| t.above);
                tiers.dedup_by_key(|t| t.above);
                let mut p = Prices {
                    cache_read,
                    cache_write_5m,
                    cache_write_1h,
                    reasoning,
                    billing,
                    ..Prices::flat(input, output)
                };
                for (slot, t) in p.tiers.iter_mut().zip(tiers) {
                    *slot = Some(t);
                }
                p
            },
        )
}

fn with_catalog_billing(e: &Entry) -> Prices {
    Prices::resolve(provider(e.provider), Some(e), &Overrides::default()).unwrap()
}

proptest! {
    #[test]
    fn never_panics_and_worst_case_is_an_upper_bound(p in any_prices(), u in any_usage(u64::MAX), slack in 0u64..1000) {
        let c = cost(&p, &u);
        let bound = worst_case(&p, u.prompt_tokens().saturating_add(slack), u.output.saturating_add(slack));
        prop_assert!(bound >= c, "{bound} < {c}");
        let _ = worst_case(&p, u.input, u.reasoning);
    }

    #[test]
    fn catalog_costs_grow_with_every_count(e in any_entry(), u in any_usage(2_000_000), kind in 0usize..6, more in 1u64..300_000) {
        let p = with_catalog_billing(e);
        let mut bigger = u;
        match kind {
            0 => bigger.input += more,
            1 => bigger.cache_read += more,
            2 => bigger.cache_write_5m += more,
            3 => bigger.cache_write_1h += more,
            4 => bigger.output += more,
            _ => { bigger.output += more; bigger.reasoning += more; }
        }
        prop_assert!(cost_femto(&p, &bigger) >= cost_femto(&p, &u), "{} {u:?} → {bigger:?}", e.model);
        prop_assert!(worst_case(&p, u.prompt_tokens(), u.output) >= cost(&p, &u));
    }

    #[test]
    fn prices_text_never_panics(text in "[-+0-9.eE ]{0,30}") {
        let _ = femto_from_usd(&text);
    }

    #[test]
    fn f64_prices_round_trip(femto in 0u64..1_000_000_000_000_000) {
        prop_assert_eq!(femto_from_f64(femto as f64 / 1e15), Some(femto));
    }
}
