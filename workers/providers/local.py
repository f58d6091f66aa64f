"""The built-in `local` provider: deterministic text, used when a provider has no key,
so a fresh install streams end to end without any account anywhere."""

from __future__ import annotations

import asyncio

from workers.providers.base import Emit, ProviderCall, Usage

# Slow enough that a person running `curl -N` sees the tokens arrive.
TOKEN_DELAY_SECONDS = 0.03


def _reply(call: ProviderCall) -> str:
    question = next((m["content"] for m in reversed(call.messages) if m["role"] == "user"), "")
    if any(m["role"] == "system" and "short title" in m["content"] for m in call.messages):
        # The title job sends "User: <question>\n\nAssistant: <reply>": name it by the question.
        asked = question.removeprefix("User:").split("\n\nAssistant:")[0]
        return " ".join(asked.split()[:6])
    excerpt = " ".join(question.split()[:30])
    return (
        f"[local provider] No API key is configured for {call.model}, so Switchboard's "
        f"built-in local provider answers. You said: {excerpt}"
    )


class Local:
    name = "local"

    async def stream(self, call: ProviderCall, emit: Emit) -> None:
        words = _reply(call).split(" ")
        for index, word in enumerate(words):
            emit(word if index == 0 else " " + word)
            await asyncio.sleep(TOKEN_DELAY_SECONDS)
        emit(Usage())

    def complete(self, call: ProviderCall) -> tuple[str, Usage]:
        return _reply(call), Usage()
