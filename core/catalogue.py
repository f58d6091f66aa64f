"""The model catalogue: what each provider serves today, what each model can do and cost.

Data, not code branches: the plan table and the catalogue are settings defaults
(`PLANS`, `MODELS`, `MODEL_ALIASES` can replace them). Figures come from the
providers' public documentation as of 2026-12 (README, "Models"); prices are USD
per million tokens, DeepSeek's at its peak-hour rate (off-peak is half, not
modelled: the recorded cost is an upper bound). Providers retire names, so the
names clients were built with stay accepted as aliases of the current model of
the same family; `python -m cli check-models` names the catalogue models a
provider no longer lists.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel

PlanName = Literal["free", "pro", "max"]
PLAN_ORDER: tuple[PlanName, ...] = ("free", "pro", "max")
BillingCycle = Literal["monthly", "yearly"]

# What a later turn must send back of a model's reasoning: nothing; the reasoning text of
# assistant turns with tool calls (DeepSeek and Kimi answer 400 without it); or Anthropic's
# signed thinking blocks, unchanged, in tool-use turns.
ReasoningReplay = Literal["none", "tool_calls", "anthropic_blocks"]


class PlanSpec(BaseModel):
    """What a plan grants; plans are data so operators can retune them."""

    default_model: str
    monthly_requests: int
    rpm: int
    max_api_keys: int
    # What the plan costs per billing cycle (shown to people; codes and admins grant it).
    price: Decimal = Decimal("0")
    currency: str = "USD"
    billing_cycle: BillingCycle = "monthly"


class ModelSpec(BaseModel):
    """One model of the platform catalogue: who may use it, what it can do, its prices."""

    provider: str
    min_plan: PlanName
    display_name: str = ""
    context_window: int = 32_000
    # The provider's ceiling on output tokens (thinking counts towards it).
    max_output: int | None = None
    vision: bool = False
    reasoning: bool = False
    # Thinking runs when the request says nothing about it.
    thinking_default: bool = False
    tools: bool = True
    # The provider refuses a non-default temperature (and top_p): never forwarded.
    fixed_sampling: bool = False
    reasoning_replay: ReasoningReplay = "none"
    # USD per million tokens, used for `usage_records.cost`. A cache price left unset
    # bills those tokens at the input price.
    input_price: Decimal = Decimal("0")
    output_price: Decimal = Decimal("0")
    cache_read_price: Decimal | None = None
    cache_write_price: Decimal | None = None


DEFAULT_PLANS: dict[str, PlanSpec] = {
    "free": PlanSpec(
        default_model="deepseek-flash",
        monthly_requests=10_000,
        rpm=20,
        max_api_keys=5,
        price=Decimal("0"),
    ),
    "pro": PlanSpec(
        default_model="kimi-k2.6",
        monthly_requests=100_000,
        rpm=60,
        max_api_keys=20,
        price=Decimal("29"),
    ),
    "max": PlanSpec(
        default_model="claude-sonnet-5-5",
        monthly_requests=1_000_000,
        rpm=300,
        max_api_keys=20,
        price=Decimal("299"),
    ),
}

DEFAULT_MODELS: dict[str, ModelSpec] = {
    # DeepSeek: api-docs.deepseek.com, "Models & Pricing" and "Thinking Mode".
    "deepseek-flash": ModelSpec(
        provider="deepseek",
        min_plan="free",
        display_name="DeepSeek V4.1 Flash",
        context_window=1_048_576,
        max_output=393_216,
        vision=True,
        reasoning=True,
        thinking_default=True,
        reasoning_replay="tool_calls",
        input_price=Decimal("0.30"),
        output_price=Decimal("1.20"),
        cache_read_price=Decimal("0.006"),
    ),
    "deepseek-v4-pro": ModelSpec(
        provider="deepseek",
        min_plan="pro",
        display_name="DeepSeek V4 Pro",
        context_window=1_048_576,
        max_output=393_216,
        reasoning=True,
        thinking_default=True,
        reasoning_replay="tool_calls",
        input_price=Decimal("1.32"),
        output_price=Decimal("3.96"),
        cache_read_price=Decimal("0.044"),
    ),
    # Kimi (Moonshot): platform.kimi.ai, "Models" and "Pricing".
    "kimi-k2.6": ModelSpec(
        provider="kimi",
        min_plan="pro",
        display_name="Kimi K2.6",
        context_window=262_144,
        max_output=262_144,
        vision=True,
        reasoning=True,
        thinking_default=True,
        fixed_sampling=True,
        reasoning_replay="tool_calls",
        input_price=Decimal("0.95"),
        output_price=Decimal("4.00"),
        cache_read_price=Decimal("0.16"),
    ),
    # Anthropic: platform.claude.com, "Models overview" and "Pricing".
    "claude-sonnet-5-5": ModelSpec(
        provider="anthropic",
        min_plan="max",
        display_name="Claude Sonnet 5.5",
        context_window=1_000_000,
        max_output=128_000,
        vision=True,
        reasoning=True,
        thinking_default=True,
        fixed_sampling=True,
        reasoning_replay="anthropic_blocks",
        input_price=Decimal("2.00"),
        output_price=Decimal("10.00"),
        cache_read_price=Decimal("0.10"),
        cache_write_price=Decimal("2.50"),
    ),
    "claude-opus-5-5": ModelSpec(
        provider="anthropic",
        min_plan="max",
        display_name="Claude Opus 5.5",
        context_window=1_000_000,
        max_output=128_000,
        vision=True,
        reasoning=True,
        thinking_default=True,
        fixed_sampling=True,
        reasoning_replay="anthropic_blocks",
        input_price=Decimal("4.00"),
        output_price=Decimal("20.00"),
        cache_read_price=Decimal("0.20"),
        cache_write_price=Decimal("5.00"),
    ),
    "claude-haiku-5-5": ModelSpec(
        provider="anthropic",
        min_plan="max",
        display_name="Claude Haiku 5.5",
        context_window=1_000_000,
        max_output=128_000,
        vision=True,
        reasoning=True,
        thinking_default=True,
        fixed_sampling=True,
        reasoning_replay="anthropic_blocks",
        input_price=Decimal("0.10"),
        output_price=Decimal("0.50"),
        cache_read_price=Decimal("0.01"),
        cache_write_price=Decimal("0.125"),
    ),
}

# Names clients were built with, and names providers retired -> the current model of the
# same family. The upstream always receives the current id.
DEFAULT_MODEL_ALIASES: dict[str, str] = {
    "deepseek-chat": "deepseek-flash",
    "deepseek-reasoner": "deepseek-flash",
    "deepseek-v4-flash": "deepseek-flash",
    "moonshot-v1-8k": "kimi-k2.6",
    "moonshot-v1-32k": "kimi-k2.6",
    "moonshot-v1-128k": "kimi-k2.6",
    "kimi-latest": "kimi-k2.6",
    "kimi-k2.5": "kimi-k2.6",
    "claude-3-5-sonnet-latest": "claude-sonnet-5-5",
    "claude-3-7-sonnet-latest": "claude-sonnet-5-5",
    "claude-3-5-haiku-latest": "claude-haiku-5-5",
    "claude-3-opus-latest": "claude-opus-5-5",
}
