"""A lean fake OpenAI upstream for the bench: `python -m bench.upstream --port P`.

The test fake's reply (tests/fakes/openai_protocol.py: `w{i}-{tag} ` tokens driven
by `[[tokens= delay= tag=]]` in the last user message, after `reasoning=<n>` pieces of
thinking `r{i}-{tag} ` as today's reasoning models stream them: `delta.reasoning_content`
chunks first, usage with `completion_tokens_details.reasoning_tokens`) from a bare ASGI
app with no request log, so the baseline spends as little CPU as possible: on two cores
every cycle it uses is taken from the system under test.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
import uvicorn

from tests.fakes.openai_protocol import (
    chunk_line,
    expected_reasoning_tokens,
    expected_tokens,
    knobs_of,
    last_user_text,
)


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
    text = last_user_text(body)
    knobs = knobs_of(text)
    tokens = expected_tokens(text)
    reasoning = expected_reasoning_tokens(text)
    delay = float(knobs.get("delay", "0"))
    model = body.get("model", "fake")
    completion_id = "chatcmpl-bench"
    usage: dict = {
        "prompt_tokens": len(text) // 4 + 3,
        "completion_tokens": len(reasoning) + len(tokens),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": len(reasoning)}

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return chunk_line(completion_id, model, [choice])

    if not body.get("stream"):
        reply = {
            "id": completion_id,
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(tokens),
                        **({"reasoning_content": "".join(reasoning)} if reasoning else {}),
                    },
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
    # DeepSeek's shape: the thinking as `reasoning_content` with `content: null`, then the reply.
    deltas = [{"content": None, "reasoning_content": piece} for piece in reasoning]
    deltas += [{"content": token} for token in tokens]
    for index, delta in enumerate(deltas):
        if index and delay:
            await asyncio.sleep(max(0.0, started + index * delay - time.monotonic()))
        await part(chunk(delta))
    await part(chunk({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        await part(chunk_line(completion_id, model, [], usage=usage))
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
