"""Quick start: stream a chat answer from a local model, then the same call through a Sipp
gateway (and an OpenAI-compatible server) when one is given.

    SIPP_MODEL=path/to/model.gguf python3 examples/quickstart.py
    SIPP_GATEWAY_URL=http://127.0.0.1:8080 SIPP_GATEWAY_TARGET=local SIPP_GATEWAY_TOKEN=... ...
    SIPP_REMOTE_URL=http://127.0.0.1:8080/v1 ...   # also ask an OpenAI-compatible server
"""
import os

import sipp

with sipp.Client() as client:
    local = client.add_local("local", os.environ.get("SIPP_MODEL", "model.gguf"))
    endpoints = [local]
    if os.environ.get("SIPP_GATEWAY_URL"):
        # the token comes from SIPP_GATEWAY_TOKEN unless token= or token_env= says otherwise
        endpoints.append(client.add_gateway("gateway", base_url=os.environ["SIPP_GATEWAY_URL"],
                                            target=os.environ.get("SIPP_GATEWAY_TARGET", "local")))
    if os.environ.get("SIPP_REMOTE_URL"):
        endpoints.append(client.add_provider("remote", kind="openai_compatible",
                                             base_url=os.environ["SIPP_REMOTE_URL"], model="any"))

    for ep in endpoints:  # the same call, whichever endpoint answers
        with ep.chat([{"role": "user", "content": "Do you like to play outside?"}],
                     max_tokens=48, temperature=0) as run:
            for piece in run:
                print(piece, end="", flush=True)
            r = run.result()
        print(f"\n[{ep.id}] finish: {r.finish_reason}, {r.usage.output_tokens} tokens")
