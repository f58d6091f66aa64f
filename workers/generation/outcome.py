"""What a generation's reply came to, and the exceptions that carry a reply cut short."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from workers.providers.base import ProviderError, Usage


@dataclass
class Outcome:
    text: str
    usage: Usage
    first_token_at: datetime | None
    # Whole tool calls in `message.tool_calls` shape, and the provider's end reason.
    tool_calls: list[dict] = field(default_factory=list)
    finish_reason: str | None = None
    # The thinking text relayed as `reasoning` events, and Anthropic's whole thinking
    # blocks (signed), which a later tool-use turn must send back unchanged.
    reasoning: str = ""
    thinking_blocks: list[dict] = field(default_factory=list)

    @classmethod
    def empty(cls) -> Outcome:
        """No reply: the generation failed before its first token."""
        return cls("", Usage(), None)

    @property
    def produced(self) -> bool:
        """Whether the provider generated anything the client received (and is billed for)."""
        return bool(self.text or self.reasoning or self.tool_calls)


class Cancelled(Exception):
    """The client cancelled mid-stream; `partial` is what it was sent (and is stored)."""

    def __init__(self, partial: Outcome) -> None:
        super().__init__()
        self.partial = partial


class ReplyFailed(ProviderError):
    """The provider failed during the reply; `partial` is what the client was sent
    before it (and is stored)."""

    def __init__(self, error: ProviderError, partial: Outcome) -> None:
        super().__init__(error.message, retryable=error.retryable)
        self.partial = partial
