"""Responses API input as the chat request the workers run, and errors for what it
cannot translate."""

from __future__ import annotations

import pytest

from api.responses_format import chat_request, generation_id_of, input_messages
from api.schemas.responses import ResponseRequest
from core.errors import AppError


def test_items_become_chat_messages() -> None:
    items = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "https://example.com/a.png"},
            ],
        },
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": "two"},
    ]
    assert input_messages(items) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "hm",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]


def test_request_parameters() -> None:
    body = ResponseRequest.model_validate(
        {
            "model": "m",
            "input": "hi",
            "instructions": "be brief",
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "reasoning": {"effort": "minimal"},
            "max_output_tokens": 64,
        }
    )
    chat = chat_request(body, "m", [{"role": "assistant", "content": "before"}])
    assert [(m.role, m.content) for m in chat.messages] == [
        ("system", "be brief"),
        ("assistant", "before"),
        ("user", "hi"),
    ]
    assert chat.tools == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ]
    assert chat.tool_choice == {"type": "function", "function": {"name": "f"}}
    assert chat.reasoning_effort == "low" and chat.max_tokens == 64


@pytest.mark.parametrize(
    "body",
    [
        {"input": [{"type": "item_reference", "id": "x"}]},
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        {"input": "hi", "tools": [{"type": "web_search"}]},
        {"input": []},
    ],
)
def test_untranslatable_input_is_a_400(body: dict) -> None:
    with pytest.raises(AppError) as refused:
        chat_request(ResponseRequest.model_validate({"model": "m", **body}), "m", [])
    assert refused.value.status_code == 400


def test_only_issued_ids_name_a_generation() -> None:
    assert generation_id_of("resp_" + "0" * 32) is not None
    assert generation_id_of("resp_nothing") is None
    assert generation_id_of("chatcmpl-" + "0" * 32) is None
