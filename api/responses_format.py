"""The OpenAI Responses API over our chat-format pipeline: a Responses request as the
internal chat request the workers run, and a generation's `done` data as the
`response` object (its output items and usage). The stream's typed events are
api/streaming/response_events.py's; what is kept, api/responses_store.py's."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from api.schemas.openai import ChatCompletionRequest, ChatMessage
from api.schemas.responses import ResponseRequest
from core.errors import AppError

RESPONSE_PREFIX = "resp_"
# The Responses API's efforts our `reasoning_effort` lacks, and the nearest it has.
EFFORTS = {"minimal": "low", "xhigh": "high"}
# Response statuses from a `done` event's finish reason.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}
TEXT_PARTS = ("input_text", "output_text", "text")


def response_id(generation_id: uuid.UUID) -> str:
    return RESPONSE_PREFIX + generation_id.hex


def generation_id_of(rid: str) -> uuid.UUID | None:
    """The generation a `resp_...` id names; None for an id we never issued."""
    if not rid.startswith(RESPONSE_PREFIX):
        return None
    try:
        return uuid.UUID(hex=rid[len(RESPONSE_PREFIX) :])
    except ValueError:
        return None


def _unsupported(message: str, param: str) -> AppError:
    return AppError(f"{param}: {message}", code="unsupported_content", status_code=400)


def _parts(content: str | list[Any] | None, where: str) -> str | list[dict[str, Any]]:
    """A Responses message's content as chat content: text parts and `image_url` parts."""
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in TEXT_PARTS:
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise _unsupported("only images given by `image_url` are supported", where)
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal") or "")})
        else:
            raise _unsupported(f"content type {kind!r} is not supported", f"{where}.{index}")
    return parts


def _flat_text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


def input_messages(items: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses input as chat messages: consecutive `function_call` items (and an
    assistant message before them) become one assistant turn with `tool_calls`; a
    `reasoning` item's text goes with the assistant turn that follows it."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    reasoning: list[str] = []

    def assistant_turn() -> dict[str, Any]:
        last = messages[-1] if messages else None
        if last is None or last["role"] != "assistant":
            last = {"role": "assistant", "content": None}
            messages.append(last)
        if reasoning:
            last["reasoning_content"] = "".join(reasoning)
            reasoning.clear()
        return last

    for index, item in enumerate(items):
        where = f"input.{index}"
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise _unsupported(f"role {role!r} is not supported", where)
            content = _parts(item.get("content"), f"{where}.content")
            if role == "assistant":
                turn = assistant_turn()
                turn["content"] = (turn.get("content") or "") + _flat_text(content)
            else:
                messages.append({"role": role, "content": content})
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id") or item.get("id") or ""),
                "type": "function",
                "function": {
                    "name": str(item.get("name") or ""),
                    "arguments": str(item.get("arguments") or ""),
                },
            }
            assistant_turn().setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _flat_text(_parts(output, where))
            messages.append(
                {"role": "tool", "tool_call_id": str(item.get("call_id") or ""), "content": text}
            )
        elif kind == "reasoning":
            pieces = [*(item.get("content") or []), *(item.get("summary") or [])]
            reasoning.extend(str(p.get("text") or "") for p in pieces if isinstance(p, dict))
        else:
            raise _unsupported(f"input item type {kind!r} is not supported", where)
    return messages


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Responses' flat function tools as chat completions' nested ones."""
    if not tools:
        return None
    nested = []
    for index, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise _unsupported(
                f"tool type {tool.get('type')!r} is not supported; only function tools are",
                f"tools.{index}",
            )
        function = {"name": tool.get("name"), "parameters": tool.get("parameters") or {}}
        if tool.get("description"):
            function["description"] = tool["description"]
        nested.append({"type": "function", "function": function})
    return nested


def chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if isinstance(choice, dict):
        raise _unsupported("only function tool choices are supported", "tool_choice")
    return choice


def chat_request(
    body: ResponseRequest, model: str, history: list[dict[str, Any]]
) -> ChatCompletionRequest:
    """The chat completion the generation runs: instructions as the system message, the
    continued response's conversation, then this input."""
    messages: list[dict[str, Any]] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    messages += history
    messages += input_messages(body.input)
    if not messages:
        raise AppError("input: at least one input item is required", status_code=400)
    effort = body.reasoning.effort if body.reasoning else None
    return ChatCompletionRequest(
        model=model,
        messages=[ChatMessage.model_validate(m) for m in messages],
        max_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        user=body.user,
        tools=chat_tools(body.tools),
        tool_choice=chat_tool_choice(body.tool_choice),
        reasoning_effort=EFFORTS.get(effort, effort) if effort else None,  # type: ignore[arg-type]
    )


def usage_of(data: dict[str, Any]) -> dict[str, Any]:
    """The Responses usage from a `done` event's."""
    usage = data.get("usage") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(usage.get("cached_tokens") or 0)},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(usage.get("reasoning_tokens") or 0)},
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
        "status": status,
    }


def message_item(item_id: str, text: str | None, status: str = "completed") -> dict[str, Any]:
    content = [] if text is None else [output_text(text)]
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


@dataclass
class ResponseDraft:
    """One response's fixed fields, shared by its stream, its answer and what is kept."""

    generation_id: uuid.UUID
    model: str
    body: ResponseRequest
    created_at: int = field(default_factory=lambda: int(time.time()))

    @property
    def id(self) -> str:
        return response_id(self.generation_id)

    def item_id(self, prefix: str, index: int | None = None) -> str:
        suffix = "" if index is None else f"_{index}"
        return f"{prefix}_{self.generation_id.hex}{suffix}"

    def output_of(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """The output items of a `done` event's data: reasoning, text, function calls."""
        items = []
        if data.get("reasoning"):
            items.append(reasoning_item(self.item_id("rs"), data["reasoning"]))
        calls = data.get("tool_calls") or []
        if data.get("content") or not calls:
            items.append(message_item(self.item_id("msg"), data.get("content") or ""))
        for index, call in enumerate(calls):
            function = call.get("function") or {}
            items.append(
                function_call_item(
                    self.item_id("fc", index),
                    str(call.get("id") or ""),
                    str(function.get("name") or ""),
                    str(function.get("arguments") or ""),
                )
            )
        return items

    def response(
        self,
        status: str,
        output: list[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        incomplete: str | None = None,
    ) -> dict[str, Any]:
        body = self.body
        answer: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "model": self.model,
            "output": output or [],
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": body.previous_response_id,
            "reasoning": {
                "effort": body.reasoning.effort if body.reasoning else None,
                "summary": None,
            },
            "store": body.store,
            "temperature": body.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": body.tool_choice or "auto",
            "tools": body.tools or [],
            "top_p": body.top_p,
            "truncation": "disabled",
            "usage": usage,
            "user": body.user,
            "metadata": body.metadata or {},
        }
        # Only a failed response carries `error`: a body whose `error` is an object is
        # what clients (and our own checks) take for an error answer.
        if error is not None:
            answer["error"] = error
        return answer

    def finished(self, data: dict[str, Any]) -> dict[str, Any]:
        """The response a `done` event's data ends as: completed, or incomplete when the
        provider stopped at the token limit."""
        incomplete = INCOMPLETE_REASONS.get(data.get("finish_reason") or "")
        return self.response(
            "incomplete" if incomplete else "completed",
            self.output_of(data),
            usage_of(data),
            incomplete=incomplete,
        )

    def failed(self, code: str, message: str, status: str = "failed") -> dict[str, Any]:
        # The SDK knows a fixed list of codes; ours is in the message.
        error_code = "rate_limit_exceeded" if code == "rate_limited" else "server_error"
        return self.response(status, error={"code": error_code, "message": message})


def assistant_message(data: dict[str, Any]) -> dict[str, Any]:
    """A `done` event's reply as the chat assistant turn a continuation sends back, with
    the reasoning and signed thinking blocks providers need with tool calls."""
    message: dict[str, Any] = {"role": "assistant", "content": data.get("content") or None}
    if data.get("tool_calls"):
        message["tool_calls"] = data["tool_calls"]
    if data.get("reasoning"):
        message["reasoning_content"] = data["reasoning"]
    if data.get("thinking_blocks"):
        message["thinking_blocks"] = data["thinking_blocks"]
    if message["content"] is None and "tool_calls" not in message:
        message["content"] = ""
    return message
