"""Runs inside the LiteLLM virtualenv (.venv-litellm, `litellm==1.106.2`): LiteLLM's own cost
for each case on stdin, by its public `litellm.cost_per_token` with a usage object shaped the
way LiteLLM's provider transformations shape it.

stdin: a JSON array of {"model", "litellm_provider", "mode", "usage": {input, cache_read,
cache_write_5m, cache_write_1h, output, reasoning}, "overrides"?: {LiteLLM price key: USD}}.
stdout: a JSON array of [prompt cost, completion cost] as repr() of the floats LiteLLM returns.

With "overrides", the model is registered under a new name with its price map entry merged
with the overrides (what LiteLLM's router does for a deployment's prices over its base model).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import litellm  # noqa: E402
from litellm._internal_context import pinned_billing_time  # noqa: E402
from litellm.llms.anthropic.chat.transformation import AnthropicConfig  # noqa: E402
from litellm.types.utils import (  # noqa: E402
    CacheCreationTokenDetails,
    CompletionTokensDetailsWrapper,
    PromptTokensDetailsWrapper,
    Usage,
)

# A Wednesday, 02:00 UTC: outside every off_peak_pricing window of the catalog (DeepSeek V4's
# are 00:00-01:00, 04:00-06:00 and 10:00-24:00 on weekdays), so LiteLLM bills the standard
# rates Switchyard bills. See docs/pricing.md.
PEAK = datetime(2026, 12, 2, 2, 0, tzinfo=timezone.utc)


def usage_object(provider: str, u: dict) -> Usage:
    writes = u["cache_write_5m"] + u["cache_write_1h"]
    if provider == "anthropic":
        # Anthropic's native usage through LiteLLM's own translation of it.
        native = {
            "input_tokens": u["input"],
            "output_tokens": u["output"],
            "cache_read_input_tokens": u["cache_read"],
            "cache_creation_input_tokens": writes,
            "cache_creation": {"ephemeral_5m_input_tokens": u["cache_write_5m"],
                               "ephemeral_1h_input_tokens": u["cache_write_1h"]},
        }
        return AnthropicConfig().calculate_usage(usage_object=native, reasoning_content=None)
    # OpenAI's shape (OpenAI, Azure, Gemini, DeepSeek and the OpenAI-compatible providers as
    # LiteLLM translates them): prompt_tokens includes cached tokens, completion_tokens
    # includes reasoning.
    prompt = u["input"] + u["cache_read"] + writes
    details = PromptTokensDetailsWrapper(
        cached_tokens=u["cache_read"],
        cache_creation_tokens=writes or None,
        cache_creation_token_details=CacheCreationTokenDetails(
            ephemeral_5m_input_tokens=u["cache_write_5m"], ephemeral_1h_input_tokens=u["cache_write_1h"])
        if writes else None,
    )
    completion = CompletionTokensDetailsWrapper(reasoning_tokens=u["reasoning"]) if u["reasoning"] else None
    return Usage(prompt_tokens=prompt, completion_tokens=u["output"], total_tokens=prompt + u["output"],
                 prompt_tokens_details=details, completion_tokens_details=completion)


def main() -> None:
    cases = json.load(sys.stdin)
    out = []
    for n, case in enumerate(cases):
        provider, model = case["litellm_provider"], case["model"]
        if case.get("overrides"):
            key = case["key"]
            name = f"switchyard-differential-{n}"
            merged = {**litellm.model_cost[key], **{k: float(v) for k, v in case["overrides"].items()}}
            litellm.register_model({f"{provider}/{name}": merged})
            model = name
        with pinned_billing_time(PEAK):
            prompt, completion = litellm.cost_per_token(
                model=model, custom_llm_provider=provider, usage_object=usage_object(provider, case["usage"]),
                call_type="embedding" if case["mode"] == "embedding" else "completion")
        out.append([repr(float(prompt)), repr(float(completion))])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
