#!/usr/bin/env python3
"""Generates src/pricing/catalog.rs, Switchyard's built-in price catalog, from LiteLLM's.

    python3 tools/gen_catalog.py            rewrite src/pricing/catalog.rs
    python3 tools/gen_catalog.py --check    exit 1 if the committed file is not what this writes

The source is the price map inside the pinned `litellm` wheel
(`litellm/model_prices_and_context_window_backup.json`, MIT-licensed like the rest of
LiteLLM outside `enterprise/`), installed in `.venv-litellm` by `make litellm-venv`. The
wheel's version and the file's SHA-256 are pinned below: a different file is an error, not
a silent change of prices. Updating the catalog is: bump LITELLM_VERSION in the Makefile
and here, `make litellm-venv`, update SOURCE_SHA256 and AS_OF, run this, review the diff of
catalog.rs, run the differential test (tests/pricing).

The selection ("the current models of every provider Switchyard supports") is the rule in
`select()`, in this order:

1. the entry's `litellm_provider` is one of PROVIDERS (each Switchyard provider and the
   LiteLLM provider(s) whose prices apply to it);
2. its `mode` is chat, completion or embedding (Switchyard serves no other operation;
   LiteLLM's `responses` mode are models only the Responses API serves);
3. it was not deprecated more than DEPRECATED_GRACE_DAYS before AS_OF (a deprecated model
   is often still served, and still billed, until its provider retires it; an unpriced
   answer would escape every budget);
4. it is priced per token: `input_cost_per_token` and `output_cost_per_token` are set (an
   embedding's output is 0), and it has no per-second or per-character price (LiteLLM
   bills those another way);
5. its model name does not match DENY (priced by things Switchyard's usage does not carry:
   audio, images, web searches…, or not a model at all);
6. it belongs to one of the provider's FAMILIES (first-party providers: an allow-list of
   current families) and, for hosts of open models, not to a LEGACY family.

Prices are kept as LiteLLM writes them; each must be a whole number of femto-USD (10⁻¹⁵)
per token, or the generation fails. How they combine (threshold tiers, fallbacks,
provider rules) is the cost engine's business, in src/pricing/mod.rs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "pricing" / "catalog.rs"
LITELLM_VENV = ROOT / ".venv-litellm"
LITELLM_VERSION = "1.106.2"
SOURCE_NAME = "litellm/model_prices_and_context_window_backup.json"
SOURCE_SHA256 = "66970be01c88f94618f9f69c1a1d29e400474f2d7b89973de7e373c110f455c2"
# Models deprecated more than DEPRECATED_GRACE_DAYS before this day are left out. Pinned, so
# that `--check` gives the same answer every day; move it forward when regenerating.
AS_OF = "2026-12-02"
DEPRECATED_GRACE_DAYS = 365

OLDEST_DEPRECATION = (__import__("datetime").date.fromisoformat(AS_OF)
                      - __import__("datetime").timedelta(days=DEPRECATED_GRACE_DAYS)).isoformat()

FEMTO = Decimal(10) ** 15
MODES = {"chat": "Chat", "completion": "Completion", "embedding": "Embedding"}

# Every Switchyard provider (src/providers: the adapters and the OpenAI-compatible presets
# of src/providers/openai/presets.rs) and the LiteLLM `litellm_provider` whose prices apply
# to it. A model name Switchyard looks up is the LiteLLM key without its `<provider>/`
# prefix. vllm and lmstudio serve whatever model the operator loads: LiteLLM prices none.
PROVIDERS: list[tuple[str, str]] = [
    ("anthropic", "anthropic"),
    ("gemini", "gemini"),
    ("openai", "openai"),
    ("openai", "text-completion-openai"),
    ("azure", "azure"),
    ("azure", "azure_text"),
    ("mistral", "mistral"),
    ("groq", "groq"),
    ("deepseek", "deepseek"),
    ("xai", "xai"),
    ("together", "together_ai"),
    ("fireworks", "fireworks_ai"),
    ("openrouter", "openrouter"),
    ("perplexity", "perplexity"),
    ("cerebras", "cerebras"),
    ("deepinfra", "deepinfra"),
    ("nvidia", "nvidia_nim"),
    ("ollama", "ollama"),
    ("vllm", "hosted_vllm"),
    ("lmstudio", "lm_studio"),
]

# Not priced by tokens alone, or not a model: left out whatever the provider.
DENY: list[tuple[str, str]] = [
    (r"audio|realtime|tts|transcri|voxtral", "audio tokens and seconds (Switchyard's usage has none)"),
    (r"search", "per-query web search fees"),
    (r"deep-research", "per-query web search fees"),
    (r"image|imagen|flux-|nano-banana", "image generation"),
    (r"lyria", "music generation"),
    (r"ocr", "priced per page"),
    (r"computer-use", "a Responses API tool model"),
    (r"(^|/)ft:", "fine-tunes: the model name is per organisation"),
    (r"^(container|model-router)$|(^|/)routers/", "not a model: a container or a router"),
    (r"^(together-ai|fireworks-ai)-", "LiteLLM's price buckets by model size, not model names"),
]

# OpenAI's current families (on OpenAI and on Azure OpenAI): GPT-4o, GPT-4.1, GPT-5 and 6,
# the o-series, and the text-embedding models. Left out: GPT-3.5 and GPT-4 (Turbo), whose
# OpenAI entries are deprecated (the instruct snapshot has no date, its alias does), and
# specialised products (daybreak-*, gpt-rosalind-*).
OPENAI_FAMILIES = r"gpt-4o|gpt-4\.1|gpt-5|gpt-6|(gpt-)?chat-latest|o1|o3|o4|text-embedding-"

# A regex the Switchyard model name must match at its start; absent: every family.
FAMILIES: dict[str, str] = {
    "anthropic": r"claude-",
    "openai": OPENAI_FAMILIES,
    "text-completion-openai": OPENAI_FAMILIES,
    "azure": OPENAI_FAMILIES,
    "azure_text": OPENAI_FAMILIES,
    # Gemini and Gemma generations; the embedding models; the -latest aliases. Left out:
    # experiments (gemini-exp-*, learnlm), Gemma 2, robotics and omni (non-text output).
    "gemini": r"gemini-(\d|flash-latest$|flash-lite-latest$|pro-latest$|embedding-)|gemma-[34]",
    # Sonar and the embeddings. Left out: pplx-*, the Llama/Mistral/CodeLlama models and
    # sonar-small/medium, which Perplexity retired (LiteLLM has no date on them).
    "perplexity": r"sonar(-pro|-reasoning|-reasoning-pro)?$|pplx-embed-",
}

# Hosts of open models (their LiteLLM lists carry every model they ever served, rarely
# with a deprecation date): the families superseded by at least two generations.
LEGACY_HOSTS = {"together_ai", "fireworks_ai", "deepinfra", "ollama"}
LEGACY: list[tuple[str, str]] = [
    (r"llama-?v?2|llama2|code-?llama|codellama|phind-code-llama", "Llama 2 and Code Llama"),
    (r"mistral-7b|mixtral-8x7b|mixtral-8x22b", "Mistral 7B and Mixtral"),
    (r"qwen1p5|qwen-?2-|qwen2-|qwen2p5|qwen2\.5|qwen-v2p5|code-qwen|qwq-32b-preview", "Qwen 1.5, 2 and 2.5"),
    (r"(^|/)yi-|llava-yi|nous-hermes-2-yi", "Yi"),
    (r"gemma-?2b|gemma-?7b|gemma2|codegemma", "Gemma 1 and 2"),
    (r"phi-2|phi-3", "Phi-2 and Phi-3"),
    (r"deepseek-coder|deepseek-v2", "DeepSeek Coder and DeepSeek-V2"),
    (r"anthropic/claude-(3|4-)", "Claude 3.x and 4.0 (retired by Anthropic)"),
    (r"starcoder|stablecode|pythia|dbrx|firellava|firefunction-v1", "2023 code and base models"),
    (r"mythomax|nous-hermes-llama2|nous-capybara|openhermes|zephyr|toppy|openorca|openchat|chronos-hermes|"
     r"dolphin|snorkel|llamaguard-7b|orca-mini|vicuna|llama2-uncensored|hermes-2-pro", "community fine-tunes of 2023"),
]


def source_path() -> Path:
    found = sorted(LITELLM_VENV.glob(f"lib/python3*/site-packages/{SOURCE_NAME}"))
    if not found:
        sys.exit(f"gen_catalog: {LITELLM_VENV}/lib/python3*/site-packages/{SOURCE_NAME} is missing: "
                 "run `make litellm-venv`")
    path = found[0]
    dist = path.parent.parent / f"litellm-{LITELLM_VERSION}.dist-info"
    if not dist.is_dir():
        sys.exit(f"gen_catalog: {path.parent.parent} does not hold litellm {LITELLM_VERSION}: run `make litellm-venv`")
    return path


def femto(key: str, field: str, value: object) -> int:
    """A USD-per-token price as a whole number of femto-USD, or the generation fails."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        sys.exit(f"gen_catalog: {key}.{field} = {value!r} is not a number")
    scaled = Decimal(value) * FEMTO
    if scaled != scaled.to_integral_value() or scaled < 0 or scaled >= 2**64:
        sys.exit(f"gen_catalog: {key}.{field} = {value} is not a whole number of femto-USD per token "
                 "(the catalog's unit): the cost engine cannot hold it exactly")
    return int(scaled)


def threshold_tokens(text: str) -> int:
    """LiteLLM's `_parse_token_threshold`: `200k` → 200000, `1000` → 1000."""
    if not re.fullmatch(r"\d+k?", text):
        sys.exit(f"gen_catalog: threshold {text!r} is not <digits>[k]")
    return int(text.rstrip("k")) * (1000 if text.endswith("k") else 1)


# LiteLLM's threshold keys (`_get_token_base_cost`): a key counts when it starts with one
# of these, contains `_tokens`, does not end with a service-tier or batch suffix, and has a
# value. The rates of a crossed threshold are then read from the standard keys only.
THRESHOLD_PREFIXES = tuple(f"{p}_above_" for p in ("input_cost_per_token", "output_cost_per_token",
                                                      "cache_read_input_token_cost", "cache_creation_input_token_cost"))
NON_STANDARD_SUFFIXES = ("_ultrafast", "_priority", "_balanced", "_flex", "_fast", "_auto", "_batches")
TIER_FIELDS = [
    ("input", "input_cost_per_token_above_{t}_tokens"),
    ("output", "output_cost_per_token_above_{t}_tokens"),
    ("cache_read", "cache_read_input_token_cost_above_{t}_tokens"),
    ("cache_write_5m", "cache_creation_input_token_cost_above_{t}_tokens"),
    ("cache_write_1h", "cache_creation_input_token_cost_above_1hr_above_{t}_tokens"),
]
BASE_FIELDS = [
    ("cache_read", "cache_read_input_token_cost"),
    ("cache_write_5m", "cache_creation_input_token_cost"),
    ("cache_write_1h", "cache_creation_input_token_cost_above_1hr"),
    ("reasoning", "output_cost_per_reasoning_token"),
]


def tiers(key: str, info: dict) -> list[dict]:
    found: dict[int, str] = {}
    for field, value in info.items():
        if (field.startswith(THRESHOLD_PREFIXES) and "_tokens" in field and not field.endswith(NON_STANDARD_SUFFIXES)
                and value is not None):
            text = field.rsplit("_above_", 1)[1].split("_tokens")[0]
            tokens = threshold_tokens(text)
            if found.setdefault(tokens, text) != text:
                sys.exit(f"gen_catalog: {key} spells threshold {tokens} two ways")
    out = []
    for tokens, text in sorted(found.items()):
        rates = {name: femto(key, f.format(t=text), info[f.format(t=text)])
                 for name, f in TIER_FIELDS if info.get(f.format(t=text)) is not None}
        if rates:  # a threshold with no standard rate changes nothing
            out.append({"above": tokens, **rates})
    return out


def limit(key: str, info: dict, field: str) -> int | None:
    value = info.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**32:
        sys.exit(f"gen_catalog: {key}.{field} = {value!r} is not a token count")
    return value


def refusal(name: str, litellm_provider: str) -> str | None:
    """Why rules 5 and 6 leave the model out, or None."""
    for pattern, reason in DENY:
        if re.search(pattern, name, re.IGNORECASE):
            return reason
    family = FAMILIES.get(litellm_provider)
    if family is not None and not re.match(family, name):
        return "not a current family"
    if litellm_provider in LEGACY_HOSTS:
        for pattern, reason in LEGACY:
            if re.search(pattern, name, re.IGNORECASE):
                return f"legacy: {reason}"
    return None


def select(data: dict) -> list[dict]:
    switchyard_of = {lp: sp for sp, lp in PROVIDERS}
    chosen: dict[tuple[str, str], dict] = {}
    for key, info in data.items():
        if not isinstance(info, dict) or info.get("litellm_provider") not in switchyard_of:  # rule 1
            continue
        litellm_provider = info["litellm_provider"]
        if info.get("mode") not in MODES:  # rule 2
            continue
        deprecation = info.get("deprecation_date")
        if deprecation is not None and str(deprecation) < OLDEST_DEPRECATION:  # rule 3
            continue
        if info.get("input_cost_per_token") is None or info.get("output_cost_per_token") is None:  # rule 4
            continue
        if any(info.get(f) is not None for f in ("input_cost_per_second", "output_cost_per_second",
                                                  "input_cost_per_character", "tiered_pricing")):
            continue
        prefix = f"{litellm_provider}/"
        prefixed = key.startswith(prefix)
        name = key[len(prefix):] if prefixed else key
        if refusal(name, litellm_provider) is not None:  # rules 5 and 6
            continue
        if litellm_provider == "azure" and "/" in name:
            continue  # azure/<region>/<model>: regional prices (uplifts are not priced)
        if not name.isascii() or not name.isprintable() or " " in name:
            sys.exit(f"gen_catalog: model name {name!r} ({key}) is not printable ASCII")
        entry = {
            "provider": switchyard_of[litellm_provider],
            "model": name,
            "litellm_provider": litellm_provider,
            "prefixed": prefixed,
            "mode": MODES[info["mode"]],
            "input": femto(key, "input_cost_per_token", info["input_cost_per_token"]),
            "output": femto(key, "output_cost_per_token", info["output_cost_per_token"]),
            **{name_: femto(key, field, info[field]) for name_, field in BASE_FIELDS if info.get(field) is not None},
            "tiers": tiers(key, info),
            "max_input_tokens": limit(key, info, "max_input_tokens"),
            "max_output_tokens": limit(key, info, "max_output_tokens"),
        }
        slot = (entry["provider"], name)
        previous = chosen.get(slot)
        # Both `gemini-flash-latest` and `gemini/gemini-flash-latest`: LiteLLM's cost_per_token
        # with the provider named tries `<provider>/<model>` first.
        if previous is None or (prefixed and not previous["prefixed"]):
            chosen[slot] = entry
        elif previous["prefixed"] == prefixed:
            sys.exit(f"gen_catalog: two entries for {slot}")
    return [chosen[slot] for slot in sorted(chosen)]


def rust_option(value: int | None) -> str:
    return "None" if value is None else f"Some({value})"


TIER_RATES = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
ENTRY_FIELDS = 14


def rust_tier(t: dict) -> str:
    fields = [f"above: {t['above']}"] + [f"{k}: Some({t[k]})" for k in TIER_RATES if k in t]
    rest = "" if len(fields) == 1 + len(TIER_RATES) else ", ..NO_TIER"  # clippy: needless_update
    return "Tier { " + ", ".join(fields) + rest + " }"


def render(entries: list[dict], digest: str) -> str:
    tier_lines: list[str] = []
    tier_names: dict[str, str] = {}
    for entry in entries:
        if not entry["tiers"]:
            continue
        body = ", ".join(rust_tier(t) for t in entry["tiers"])
        if body not in tier_names:
            tier_names[body] = f"T{len(tier_names)}"
            tier_lines.append(f"static {tier_names[body]}: [Tier; {len(entry['tiers'])}] = [{body}];")
        entry["tier_ref"] = tier_names[body]
    lines = [
        "// @generated by tools/gen_catalog.py: do not edit. Regenerate with `python3 tools/gen_catalog.py`;",
        "// `python3 tools/gen_catalog.py --check` fails when this file is not what it writes.",
        "//",
        f"// Source: LiteLLM {LITELLM_VERSION} (https://github.com/BerriAI/litellm), the `litellm` wheel's",
        f"// {SOURCE_NAME}, SHA-256 {digest}.",
        "// That data is MIT-licensed: Copyright (c) 2023 Berri AI; permission is hereby granted, free of",
        "// charge, to deal in it without restriction, provided the copyright and permission notices are",
        "// included (the full MIT License text ships in the wheel, litellm-*.dist-info/licenses/LICENSE).",
        "//",
        f"// Selection (tools/gen_catalog.py, `select`): chat, completion and embedding models of every",
        f"// provider Switchyard supports, priced per token, not deprecated before {OLDEST_DEPRECATION},",
        "// of a current family. Prices in femto-USD (10^-15) per token, exactly LiteLLM's.",
        "",
        "use super::{Entry, Mode, Tier};",
        "",
        "const NO_TIER: Tier =",
        "    Tier { above: 0, input: None, output: None, cache_read: None, cache_write_5m: None, cache_write_1h: None };",
        "",
        "const E: Entry = Entry {",
        '    provider: "",',
        '    model: "",',
        '    litellm_provider: "",',
        "    prefixed: false,",
        "    mode: Mode::Chat,",
        "    input: 0,",
        "    output: 0,",
        "    cache_read: None,",
        "    cache_write_5m: None,",
        "    cache_write_1h: None,",
        "    reasoning: None,",
        "    tiers: &[],",
        "    max_input_tokens: None,",
        "    max_output_tokens: None,",
        "};",
        "",
        "/// Each Switchyard provider and the LiteLLM providers whose prices apply to it.",
        f"pub(super) static PROVIDERS: [(&str, &str); {len(PROVIDERS)}] = [",
        *[f'    ("{s}", "{lp}"),' for s, lp in PROVIDERS],
        "];",
        "",
        *tier_lines,
        "",
        "/// Sorted by (provider, model), byte order: binary-searchable.",
        f"pub(super) static CATALOG: [Entry; {len(entries)}] = [",
    ]
    for e in entries:
        fields = [f'provider: "{e["provider"]}"', f'model: "{e["model"]}"',
                  f'litellm_provider: "{e["litellm_provider"]}"']
        if e["prefixed"]:
            fields.append("prefixed: true")
        if e["mode"] != "Chat":
            fields.append(f"mode: Mode::{e['mode']}")
        fields += [f"input: {e['input']}", f"output: {e['output']}"]
        fields += [f"{k}: Some({e[k]})" for k in ("cache_read", "cache_write_5m", "cache_write_1h", "reasoning") if k in e]
        if e["tiers"]:
            fields.append(f"tiers: &{e['tier_ref']}")
        fields += [f"{k}: {rust_option(e[k])}" for k in ("max_input_tokens", "max_output_tokens") if e[k] is not None]
        rest = "" if len(fields) == ENTRY_FIELDS else ", ..E"  # clippy: needless_update
        lines.append("    Entry { " + ", ".join(fields) + rest + " },")
    lines.append("];")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed catalog.rs differs")
    args = parser.parse_args()
    path = source_path()
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        sys.exit(f"gen_catalog: {path} has SHA-256 {digest}, not the pinned {SOURCE_SHA256}")
    # Decimal keeps each price exactly as written (3.75e-06), not as the nearest double.
    data = json.loads(raw, parse_float=Decimal)
    text = render(select(data), digest)
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"gen_catalog: {OUT.relative_to(ROOT)} is not what tools/gen_catalog.py writes: "
                  "run `python3 tools/gen_catalog.py` and review the diff", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
