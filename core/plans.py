"""Plans as data: what each plan grants and which catalogue models it may use.

A higher plan includes every model of the lower plans (plan order is
free < pro < max); an alias is allowed where its target is. The catalogue and
the plan table live in settings (defaults in core/catalogue.py).
"""

from __future__ import annotations

from core.catalogue import PLAN_ORDER, ModelSpec, PlanSpec
from core.config import settings
from core.errors import Forbidden

# Plan names of the earlier systems (seeds 001 and 003): `enterprise` is our `max`.
PLAN_ALIASES = {"enterprise": "max"}


def plan_named(name: str) -> str:
    """Our plan called `name` (case ignored, an earlier system's name included), or
    ValueError naming the plans there are."""
    plan = PLAN_ALIASES.get(name.strip().lower(), name.strip().lower())
    if plan not in settings.plans or plan not in PLAN_ORDER:
        known = ", ".join([*PLAN_ORDER, *PLAN_ALIASES])
        raise ValueError(f"unknown plan {name!r} (plans: {known})")
    return plan


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


def listed_models_for_plan(plan: str) -> list[tuple[str, str]]:
    """(listed name, catalogue id) of everything the plan may name: the catalogue's models,
    then the aliases of those."""
    allowed = models_for_plan(plan)
    return [(name, name) for name in allowed] + [
        (alias, target) for alias, target in settings.model_aliases.items() if target in allowed
    ]


def canonical_model(model: str) -> str:
    """The catalogue id `model` names: itself, or an alias's target."""
    return settings.model_aliases.get(model, model)


def model_spec(model: str) -> ModelSpec | None:
    return settings.models.get(canonical_model(model))


def plan_allows(plan: str, model: str) -> bool:
    spec = model_spec(model)
    return spec is not None and plan_rank(spec.min_plan) <= plan_rank(plan)


def allowed_model(plan: str, model: str) -> ModelSpec:
    """The catalogue entry of `model`, or 403 `model_not_allowed` when the plan may not
    use it (an unknown model included): the one answer wherever a model is chosen."""
    spec = model_spec(model)
    if spec is None:
        raise Forbidden(f"Unknown model {model!r}.", code="model_not_allowed")
    if not plan_allows(plan, model):
        raise Forbidden(
            f"The {plan} plan does not include {model!r}; upgrade to {spec.min_plan}.",
            code="model_not_allowed",
        )
    return spec
