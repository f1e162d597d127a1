"""Runs inside the LiteLLM test virtualenv (.venv-litellm, `litellm[proxy]==1.106.2`):
validates JSON documents against LiteLLM's own pydantic response models.

Protocol: one JSON object per line on stdin, `{"model": "<name>", "data": <document>}`;
one line back, `{"ok": true}` or `{"ok": false, "error": "..."}`. Names are looked up in
`litellm.proxy._types` and then in the management-endpoint type modules; TypedDicts
(`KeyListResponseObject`, `TeamInfoResponseObject`) are validated with a TypeAdapter.

LiteLLM's table models declare their JSON columns as pydantic `Json` (`LiteLLM_SpendLogs`:
`metadata`, `request_tags`), i.e. the encoded string a row is written with, while its
endpoints return the Prisma rows, whose JSON columns are decoded values (what clients, the
UI included, read). Those fields are encoded before validating (`JSON_COLUMNS`).
"""

import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from pydantic import TypeAdapter  # noqa: E402

from litellm.proxy import _types  # noqa: E402
from litellm.types.proxy.management_endpoints import customer_endpoints, internal_user_endpoints  # noqa: E402

MODULES = (_types, customer_endpoints, internal_user_endpoints)


def find(name):
    for module in MODULES:
        if hasattr(module, name):
            return getattr(module, name)
    raise KeyError(name)


# Models whose `Json` columns the endpoints return decoded.
JSON_COLUMNS = {"LiteLLM_SpendLogs": ("metadata", "request_tags")}


def validate(name, data):
    model = find(name)
    if name in JSON_COLUMNS and isinstance(data, dict):
        data = dict(data)
        for field in JSON_COLUMNS[name]:
            if field in data and not isinstance(data[field], (str, type(None))):
                data[field] = json.dumps(data[field])
    if hasattr(model, "model_validate"):
        model.model_validate(data)
    else:
        TypeAdapter(model).validate_python(data)


print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    try:
        req = json.loads(line)
        validate(req["model"], req["data"])
        out = {"ok": True}
    except Exception as e:  # noqa: BLE001 - any failure is reported to the test
        out = {"ok": False, "error": f"{type(e).__name__}: {e}"[:4000]}
    print(json.dumps(out), flush=True)
