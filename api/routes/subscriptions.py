"""Plans on offer, the plan a user holds, and redemption codes spent on it.

The rules are core/subscriptions.py's; these routes run them in the request's session
(`run_sync`), commit, then drop the user's cached API keys so a plan change is seen at
once by every API process.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from api.deps import CurrentUser, RedisDep, SessionDep
from api.schemas.subscriptions import PlanOffer, Redeem, SubscriptionOut
from core.api_keys import forget_user_keys
from core.config import settings
from core.errors import AppError
from core.login_limits import REDEEM, forget_attempts, reserve_attempt
from core.plans import listed_models_for_plan, plan_spec
from core.subscriptions import cancel_subscription, current_subscription, redeem_code
from models import Subscription

router = APIRouter(tags=["subscriptions"])


def subscription_out(subscription: Subscription | None) -> SubscriptionOut:
    """The subscription as shown; a user with none is on free, from `default`."""
    if subscription is not None:
        return SubscriptionOut.model_validate(subscription)
    spec = plan_spec("free")
    return SubscriptionOut(
        plan="free",
        status="active",
        price=float(spec.price),
        currency=spec.currency,
        billing_cycle=spec.billing_cycle,
        started_at=None,
        current_period_start=None,
        current_period_end=None,
        cancelled_at=None,
        cancel_at_period_end=False,
        source="default",
    )


@router.get(
    "/v1/plans",
    response_model=list[PlanOffer],
    status_code=200,
    operation_id="subscriptions-list-plans",
    summary="The plans on offer, with prices and limits (no sign-in needed)",
)
async def list_plans() -> list[PlanOffer]:
    return [
        PlanOffer(
            name=name,
            price=float(spec.price),
            currency=spec.currency,
            billing_cycle=spec.billing_cycle,
            monthly_quota=spec.monthly_requests,
            rpm=spec.rpm,
            max_api_keys=spec.max_api_keys,
            models=[listed for listed, _ in listed_models_for_plan(name)],
        )
        for name in settings.plan_names
        for spec in (settings.plans[name],)
    ]


@router.get(
    "/v1/user/subscription",
    response_model=SubscriptionOut,
    status_code=200,
    operation_id="subscriptions-get",
)
async def get_subscription(user: CurrentUser, session: SessionDep) -> SubscriptionOut:
    return subscription_out(await session.run_sync(current_subscription, user.id))


@router.post(
    "/v1/user/subscription/cancel",
    response_model=SubscriptionOut,
    status_code=200,
    operation_id="subscriptions-cancel",
    summary="Cancel at the period's end: the plan stays until then, then free",
)
async def cancel(user: CurrentUser, session: SessionDep) -> SubscriptionOut:
    cancelled = await session.run_sync(cancel_subscription, user.id, datetime.now(UTC))
    await session.commit()
    return subscription_out(cancelled)


@router.post(
    "/v1/user/redeem",
    response_model=SubscriptionOut,
    status_code=200,
    operation_id="subscriptions-redeem",
    summary="Spend a redemption code on a plan",
)
async def redeem(
    body: Redeem, user: CurrentUser, session: SessionDep, redis: RedisDep, request: Request
) -> SubscriptionOut:
    ip_address = request.client.host if request.client else None
    account = str(user.id)
    # Counted before the code is looked at, so concurrent guesses cannot pass the limit.
    await reserve_attempt(redis, REDEEM, account, ip_address)
    try:
        granted = await session.run_sync(redeem_code, user.id, body.code, datetime.now(UTC))
    except AppError:
        await session.rollback()
        raise
    await session.commit()
    await forget_attempts(redis, REDEEM, account, ip_address)
    await forget_user_keys(session, redis, user.id)
    return subscription_out(granted)
