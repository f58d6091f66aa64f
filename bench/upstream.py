"""A lean fake OpenAI upstream for the bench: `python -m bench.upstream --port P`.

Same reply as the test fake (`tests/fakes/llm.py`: `w{i}-{tag} ` tokens driven by
`[[tokens= delay= tag=]]` in the last user message) but a bare ASGI app with no
request log, so the baseline spends as little CPU as possible: on two cores
every cycle it uses is taken from the system under test.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time

import orjson
import uvicorn

KNOBS = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)


def knobs_of(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for block in KNOBS.findall(text):
        for pair in block.split():
            name, _, value = pair.partition("=")
            found[name] = value
    return found


def expected_tokens(content: str) -> list[str]:
    knobs = knobs_of(content)
    tag = knobs.get("tag", "x")
    return [f"w{i}-{tag} " for i in range(int(knobs.get("tokens", "12")))]


def _last_user_text(body: dict) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content or ""
    return ""


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["method"] != "POST":
        # The readiness probe.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    body = orjson.loads(await _read_body(receive))
    text = _last_user_text(body)
    knobs = knobs_of(text)
    tokens = expected_tokens(text)
    delay = float(knobs.get("delay", "0"))
    model = body.get("model", "fake")
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": model}
    usage = {"prompt_tokens": len(text) // 4 + 3, "completion_tokens": len(tokens)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

    if not body.get("stream"):
        reply = {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(tokens)},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps(reply)})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )

    async def part(data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    await part(chunk({"role": "assistant", "content": ""}))
    # Paced against a deadline, not sleep after sleep, so a busy loop does not stretch replies.
    started = time.monotonic()
    for index, token in enumerate(tokens):
        if index and delay:
            await asyncio.sleep(max(0.0, started + index * delay - time.monotonic()))
        await part(chunk({"content": token}))
    await part(chunk({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        await part(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
