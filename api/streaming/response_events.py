"""A generation's events as the Responses API streams them: `response.created`, the
output items opened, filled by their deltas and closed (reasoning text, the reply's
text, function call arguments), and `response.completed` (or `.incomplete` /
`.failed`), each numbered by `sequence_number` as the `openai` SDK accumulates them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from api.responses_format import (
    ResponseDraft,
    function_call_item,
    message_item,
    output_text,
    reasoning_item,
)
from api.streaming.sse import PING_FRAME, frame
from api.streaming.start import StartedGeneration
from core.streams import CANCELLED, DELTA, DONE, ERROR, REASONING, START

TERMINAL_TYPES = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
}


class _Item:
    """An output item being streamed: its index, kind and what it holds so far."""

    def __init__(self, index: int, kind: str, item_id: str) -> None:
        self.index = index
        self.kind = kind
        self.id = item_id
        self.text = ""
        self.call_id = ""
        self.name = ""

    def snapshot(self, status: str) -> dict[str, Any]:
        if self.kind == "reasoning":
            return reasoning_item(self.id, self.text, status)
        if self.kind == "message":
            return message_item(self.id, self.text if status == "completed" else None, status)
        return function_call_item(self.id, self.call_id, self.name, self.text, status)


class _Events:
    """The numbered event frames of one response."""

    def __init__(self, draft: ResponseDraft) -> None:
        self.draft = draft
        self.sequence = 0
        self.items: list[_Item] = []
        self.open: _Item | None = None
        # Tool-call fragment index -> the function_call item it streams into.
        self.calls: dict[int, _Item] = {}

    def emit(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return frame(orjson.dumps(payload), kind)

    def opened(self, kind: str, item_id: str, call_id: str = "", name: str = "") -> list[bytes]:
        frames = self.close()
        item = _Item(len(self.items), kind, item_id)
        item.call_id, item.name = call_id, name
        self.items.append(item)
        self.open = item
        frames.append(
            self.emit(
                "response.output_item.added",
                output_index=item.index,
                item=item.snapshot("in_progress"),
            )
        )
        where = {"item_id": item.id, "output_index": item.index, "content_index": 0}
        if kind == "message":
            part = output_text("")
            frames.append(self.emit("response.content_part.added", **where, part=part))
        elif kind == "reasoning":
            part = {"type": "reasoning_text", "text": ""}
            frames.append(self.emit("response.content_part.added", **where, part=part))
        return frames

    def close(self) -> list[bytes]:
        """The events that end the open item."""
        item, self.open = self.open, None
        if item is None:
            return []
        where = {"item_id": item.id, "output_index": item.index}
        frames = []
        if item.kind == "message":
            frames += [
                self.emit(
                    "response.output_text.done",
                    **where,
                    content_index=0,
                    text=item.text,
                    logprobs=[],
                ),
                self.emit(
                    "response.content_part.done",
                    **where,
                    content_index=0,
                    part=output_text(item.text),
                ),
            ]
        elif item.kind == "reasoning":
            part = {"type": "reasoning_text", "text": item.text}
            frames += [
                self.emit("response.reasoning_text.done", **where, content_index=0, text=item.text),
                self.emit("response.content_part.done", **where, content_index=0, part=part),
            ]
        else:
            frames.append(
                self.emit("response.function_call_arguments.done", **where, arguments=item.text)
            )
        frames.append(
            self.emit(
                "response.output_item.done",
                output_index=item.index,
                item=item.snapshot("completed"),
            )
        )
        return frames

    def reasoning(self, text: str) -> list[bytes]:
        frames = []
        if self.open is None or self.open.kind != "reasoning":
            frames += self.opened("reasoning", self.draft.item_id("rs"))
        assert self.open is not None
        self.open.text += text
        frames.append(
            self.emit(
                "response.reasoning_text.delta",
                item_id=self.open.id,
                output_index=self.open.index,
                content_index=0,
                delta=text,
            )
        )
        return frames

    def text(self, text: str) -> list[bytes]:
        frames = []
        if self.open is None or self.open.kind != "message":
            frames += self.opened("message", self.draft.item_id("msg"))
        assert self.open is not None
        self.open.text += text
        frames.append(
            self.emit(
                "response.output_text.delta",
                item_id=self.open.id,
                output_index=self.open.index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return frames

    def tool_call(self, fragment: dict[str, Any]) -> list[bytes]:
        frames = []
        index = int(fragment.get("index") or 0)
        function = fragment.get("function") or {}
        call_id, name = fragment.get("id") or "", function.get("name") or ""
        item = self.calls.get(index)
        if item is None:
            # The first fragment of a call names it: its item opens with id and name.
            frames += self.opened("function_call", self.draft.item_id("fc", index), call_id, name)
            item = self.calls[index] = self.items[-1]
        elif item is not self.open:
            # Fragments of an earlier call after another item opened: the final
            # response carries the whole call.
            return frames
        else:
            item.call_id += call_id
            item.name += name
        arguments = function.get("arguments") or ""
        if arguments:
            item.text += arguments
            frames.append(
                self.emit(
                    "response.function_call_arguments.delta",
                    item_id=item.id,
                    output_index=item.index,
                    delta=arguments,
                )
            )
        return frames


async def response_events(
    started: StartedGeneration, draft: ResponseDraft, kept: asyncio.Task[None] | None
) -> AsyncIterator[bytes]:
    """The generation's events as Responses stream events. `kept`: the task storing the
    response, awaited before the terminal event so a retrieve right after finds it."""
    events = _Events(draft)
    async for event in started.events():
        if event.is_ping:
            yield PING_FRAME
        elif event.event == START:
            created = draft.response("in_progress")
            yield events.emit("response.created", response=created)
            yield events.emit("response.in_progress", response=created)
        elif event.event == REASONING:
            if event.data.get("content"):
                for piece in events.reasoning(event.data["content"]):
                    yield piece
        elif event.event == DELTA:
            if event.data.get("content"):
                for piece in events.text(event.data["content"]):
                    yield piece
            for fragment in event.data.get("tool_calls") or []:
                for piece in events.tool_call(fragment):
                    yield piece
        elif event.event in (DONE, ERROR, CANCELLED):
            for piece in events.close():
                yield piece
            if event.event == DONE:
                final = draft.finished(event.data)
            elif event.event == ERROR:
                code = event.data.get("code", "upstream_error")
                final = draft.failed(code, event.data.get("message", "The generation failed."))
            else:
                final = draft.failed("cancelled", "The response was cancelled.", "cancelled")
            if kept is not None:
                # Shielded: a client gone now must not cancel the keeping.
                await asyncio.shield(kept)
            kind = TERMINAL_TYPES.get(final["status"], "response.failed")
            yield events.emit(kind, response=final)
