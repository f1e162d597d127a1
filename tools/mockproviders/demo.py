"""The offline demo provider behind ``make run``.

A strict ``AnthropicMock`` that answers every valid request with a friendly, deterministic reply,
so a newcomer's first curl through the gateway works without network access or a real key:

    PYTHONPATH=tools python -m mockproviders.demo --port 0 --api-key-env DEMO_PROVIDER_API_KEY \\
        [--port-file PATH]

The key the gateway must send is read from the named environment variable (never from the
command line, where it would show up in process listings). Once listening, the provider prints
``demo provider listening on 127.0.0.1:PORT`` and, with ``--port-file``, writes the port there.
SIGTERM or SIGINT stops it cleanly.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .anthropic import AnthropicMock, last_user_text


class DemoProvider(AnthropicMock):
    def compose_reply(self, body: dict) -> str:
        said = last_user_text(body["messages"])
        return f"Hello from the Switchyard demo provider (Anthropic Messages format). You said: {said}"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mockproviders.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick a free one)")
    parser.add_argument("--api-key-env", default="DEMO_PROVIDER_API_KEY",
                        help="environment variable holding the API key clients must present")
    parser.add_argument("--port-file", help="write the listening port to this file")
    return parser.parse_args(argv)


def _write_port_file(path: str, port: int) -> None:
    # Write then rename, so a launcher polling for the file never reads a half-written port.
    partial = f"{path}.partial"
    with open(partial, "w") as file:
        file.write(f"{port}\n")
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    api_key = os.environ.get(args.api_key_env)
    if not api_key:
        print(f"demo provider: environment variable {args.api_key_env} is not set; set it to the API key the "
              "gateway is configured to send", file=sys.stderr)
        return 2
    # Block the stop signals before the server threads start (they inherit the mask), then take
    # them synchronously: a handler would only run once the kernel happened to pick the main thread.
    # SIG_DFL first, because a shell starts background jobs with SIGINT ignored (and an ignored
    # signal is discarded rather than left pending for sigwait).
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    for signum in stop_signals:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with DemoProvider(api_key=api_key, port=args.port) as provider:
        if args.port_file:
            _write_port_file(args.port_file, provider.port)
        print(f"demo provider listening on 127.0.0.1:{provider.port}", flush=True)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
