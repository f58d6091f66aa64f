"""Plans as data: what each plan grants and which catalogue models it may use.

A higher plan includes every model of the lower plans (plan order is
free < pro < max); the catalogue and the plan table live in settings.
"""

from __future__ import annotations

from core.config import PLAN_ORDER, ModelSpec, PlanSpec, settings


def plan_spec(plan: str) -> PlanSpec:
    return settings.plans[plan]


def plan_rank(plan: str) -> int:
    return PLAN_ORDER.index(plan)


def models_for_plan(plan: str) -> list[str]:
    """Catalogue models the plan may use, cheapest tier first."""
    rank = plan_rank(plan)
    return [
        name
        for name, spec in sorted(settings.models.items(), key=lambda kv: plan_rank(kv[1].min_plan))
        if plan_rank(spec.min_plan) <= rank
    ]


def model_spec(model: str) -> ModelSpec | None:
    return settings.models.get(model)


def plan_allows(plan: str, model: str) -> bool:
    spec = model_spec(model)
    return spec is not None and plan_rank(spec.min_plan) <= plan_rank(plan)
