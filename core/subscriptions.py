"""Subscriptions: the rules that grant, extend, cancel and end the plan a user holds,
and the redemption codes that grant one.

`users.plan` stays the one cached plan that quotas, rate limits, model rules and the
API-key auth cache read: every rule here locks the user's row first (so a redemption,
a cancel, an admin change and the expiry job of one user run one after another and see
each other's result) and sets `users.plan` in the same transaction as the subscription
change. After the commit the caller drops the user's cached API-key entries
(core/api_keys.py `forget_user_keys` / `user_key_cache_entries`).

Sync, on a `Session`: workers call the rules directly, the API through
`AsyncSession.run_sync`. No FastAPI or Celery here.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.api_keys import user_key_cache_entries
from core.db import worker_session
from core.errors import Conflict, NotFound
from core.plans import plan_rank, plan_spec
from core.redis import sync_redis
from core.security import hash_token
from models import RedemptionCode, Subscription, SubscriptionSource, SubscriptionStatus, User

FREE = "free"
DEFAULT_ADMIN_DAYS = 30
EXPIRE_BATCH = 500

# Codes: `SBR-` and five groups of five symbols from a 32-symbol alphabet without the
# look-alikes 0/O and 1/I: 125 random bits; the first group (25 bits) is the display
# prefix, which leaves 100 secret bits.
CODE_PREFIX = "SBR"
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_GROUPS = 5
CODE_GROUP_LEN = 5
_SEPARATORS = re.compile(r"[\s\-_]+")


def generate_code() -> str:
    groups = (
        "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUP_LEN))
        for _ in range(CODE_GROUPS)
    )
    return "-".join((CODE_PREFIX, *groups))


def normalize_code(code: str) -> str:
    """What is hashed: case, spaces and dashes as typed do not matter."""
    return _SEPARATORS.sub("", code).upper()


def hash_code(code: str) -> str:
    return hash_token(normalize_code(code))


def code_display_prefix(code: str) -> str:
    return code[: len(CODE_PREFIX) + 1 + CODE_GROUP_LEN]


def create_codes(
    session: Session,
    *,
    plan: str,
    days: int,
    count: int,
    created_by: uuid.UUID | None,
    now: datetime,
    expires_in_days: int | None = None,
    note: str | None = None,
) -> list[str]:
    """Store `count` new codes (hashed) and answer them: the only time they are seen."""
    codes = [generate_code() for _ in range(count)]
    expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
    session.add_all(
        RedemptionCode(
            code_hash=hash_code(code),
            prefix=code_display_prefix(code),
            plan=plan,
            days=days,
            note=note,
            created_by=created_by,
            created_at=now,
            expires_at=expires_at,
        )
        for code in codes
    )
    return codes


def lock_user(session: Session, user_id: uuid.UUID) -> User:
    """The user's row, locked for the rest of the transaction and read afresh."""
    user = session.scalar(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if user is None:
        raise NotFound("User not found.")
    return user


def current_subscription(session: Session, user_id: uuid.UUID) -> Subscription | None:
    """The subscription in force (at most one: a partial unique index)."""
    return session.scalar(
        select(Subscription)
        .where(Subscription.user_id == user_id, Subscription.status == SubscriptionStatus.ACTIVE)
        .execution_options(populate_existing=True)
    )


def pending_subscriptions(session: Session, user_id: uuid.UUID) -> Sequence[Subscription]:
    """What waits for the current one to end, in the order it will start."""
    return session.scalars(
        select(Subscription)
        .where(Subscription.user_id == user_id, Subscription.status == SubscriptionStatus.PENDING)
        .order_by(Subscription.current_period_start)
        .execution_options(populate_existing=True)
    ).all()


def new_subscription(
    user_id: uuid.UUID,
    plan: str,
    start: datetime,
    length: timedelta,
    status: SubscriptionStatus,
    source: SubscriptionSource,
    code_id: uuid.UUID | None = None,
) -> Subscription:
    spec = plan_spec(plan)
    return Subscription(
        user_id=user_id,
        plan=plan,
        status=status,
        price=spec.price,
        currency=spec.currency,
        billing_cycle=spec.billing_cycle,
        started_at=start,
        current_period_start=start,
        current_period_end=start + length,
        cancel_at_period_end=False,
        source=source,
        redemption_code_id=code_id,
    )


def _shift(subscriptions: Sequence[Subscription], by: timedelta) -> None:
    for sub in subscriptions:
        sub.current_period_start += by
        sub.current_period_end += by
        sub.started_at = sub.current_period_start


def _settle(session: Session, user: User, now: datetime) -> bool:
    """End what is over at `now` and start what waited for it; set `users.plan` if any
    subscription ended or started. A user whose plan came from before subscriptions (no
    subscription at all) keeps it. True when the plan changed."""
    active = current_subscription(session, user.id)
    moved = False
    while active is not None and active.current_period_end <= now:
        active.status = (
            SubscriptionStatus.CANCELLED
            if active.cancel_at_period_end
            else SubscriptionStatus.EXPIRED
        )
        # The unique "one active" index: the ended row is written before the next starts.
        session.flush()
        moved = True
        waiting = pending_subscriptions(session, user.id)
        following = waiting[0] if waiting else None
        if following is not None:
            length = following.current_period_end - following.current_period_start
            following.current_period_start = active.current_period_end
            following.current_period_end = active.current_period_end + length
            following.started_at = min(following.started_at, following.current_period_start)
            following.status = SubscriptionStatus.ACTIVE
            session.flush()
        active = following
    if not moved:
        return False
    plan = active.plan if active is not None else FREE
    if user.plan == plan:
        return False
    user.plan = plan
    return True


def _grant(
    session: Session,
    user: User,
    plan: str,
    days: int,
    now: datetime,
    source: SubscriptionSource,
    code_id: uuid.UUID | None = None,
) -> Subscription:
    """Place `days` of `plan` on the user's timeline: the same plan as the current one
    extends it; a higher one starts now (the rest of the current one, and everything
    after it, moves to after it); a lower one waits until the last one ends."""
    length = timedelta(days=days)
    active = current_subscription(session, user.id)
    waiting = pending_subscriptions(session, user.id)
    if active is None:
        granted = new_subscription(
            user.id, plan, now, length, SubscriptionStatus.ACTIVE, source, code_id
        )
        session.add(granted)
    elif active.plan == plan:
        active.current_period_end += length
        # Adding time to a cancelled plan means wanting it after all.
        active.cancel_at_period_end = False
        active.cancelled_at = None
        _shift(waiting, length)
        granted = active
    elif plan_rank(plan) > plan_rank(active.plan):
        active.status = SubscriptionStatus.PENDING
        active.current_period_start = now + length
        active.current_period_end += length
        _shift(waiting, length)
        session.flush()
        granted = new_subscription(
            user.id, plan, now, length, SubscriptionStatus.ACTIVE, source, code_id
        )
        session.add(granted)
    else:
        last = waiting[-1] if waiting else active
        granted = new_subscription(
            user.id,
            plan,
            last.current_period_end,
            length,
            SubscriptionStatus.PENDING,
            source,
            code_id,
        )
        session.add(granted)
    session.flush()
    in_force = current_subscription(session, user.id)
    user.plan = in_force.plan if in_force is not None else FREE
    return granted


def redeem_code(session: Session, user_id: uuid.UUID, code: str, now: datetime) -> Subscription:
    """Spend a code on the user's plan: the subscription it created or extended, or
    404 `not_found` (no such code), 409 `code_used` (used or expired)."""
    user = lock_user(session, user_id)
    _settle(session, user, now)
    code_hash = hash_code(code)
    # One statement claims the code: of two concurrent redemptions the second waits for
    # the first's row lock, then finds `redeemed_at` set and claims nothing.
    claimed = session.execute(
        update(RedemptionCode)
        .where(
            RedemptionCode.code_hash == code_hash,
            RedemptionCode.redeemed_at.is_(None),
            or_(RedemptionCode.expires_at.is_(None), RedemptionCode.expires_at > now),
        )
        .values(redeemed_at=now, redeemed_by=user.id)
        .returning(RedemptionCode.id, RedemptionCode.plan, RedemptionCode.days)
    ).one_or_none()
    if claimed is None:
        known = session.scalar(
            select(RedemptionCode.id).where(RedemptionCode.code_hash == code_hash)
        )
        if known is None:
            raise NotFound("Unknown redemption code.")
        raise Conflict("This code has been used or has expired.", code="code_used")
    code_id, plan, days = claimed
    return _grant(session, user, plan, days, now, SubscriptionSource.CODE, code_id)


def cancel_subscription(session: Session, user_id: uuid.UUID, now: datetime) -> Subscription:
    """Keep the current plan to its period's end, then free: what waited after it is
    cancelled too. Cancelling twice changes nothing more. 404 without a subscription."""
    user = lock_user(session, user_id)
    _settle(session, user, now)
    active = current_subscription(session, user.id)
    if active is None:
        raise NotFound("There is no subscription to cancel.")
    if not active.cancel_at_period_end:
        active.cancel_at_period_end = True
        active.cancelled_at = now
    for waiting in pending_subscriptions(session, user.id):
        waiting.status = SubscriptionStatus.CANCELLED
        waiting.cancelled_at = now
    return active


def admin_set_plan(
    session: Session, user_id: uuid.UUID, plan: str, days: int | None, now: datetime
) -> User:
    """An operator's word: what the user held ends now; a paid plan starts now for
    `days` (default 30); `free` leaves no subscription."""
    user = lock_user(session, user_id)
    _settle(session, user, now)
    active = current_subscription(session, user.id)
    for held in [*([active] if active else []), *pending_subscriptions(session, user.id)]:
        held.status = SubscriptionStatus.CANCELLED
        held.cancelled_at = now
    session.flush()
    if plan != FREE:
        session.add(
            new_subscription(
                user.id,
                plan,
                now,
                timedelta(days=days or DEFAULT_ADMIN_DAYS),
                SubscriptionStatus.ACTIVE,
                SubscriptionSource.ADMIN,
            )
        )
        session.flush()
    user.plan = plan
    return user


def expire_user(session: Session, user_id: uuid.UUID, now: datetime) -> bool:
    """The expiry rule for one user; True when their plan changed."""
    return _settle(session, lock_user(session, user_id), now)


def due_user_ids(session: Session, now: datetime, limit: int) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(Subscription.user_id)
            .where(
                Subscription.status == SubscriptionStatus.ACTIVE,
                Subscription.current_period_end <= now,
            )
            .order_by(Subscription.current_period_end)
            .limit(limit)
        ).all()
    )


def expire_subscriptions(now: datetime) -> int:
    """End every subscription whose period is over at `now`, start what waited for it,
    and put users with nothing left on free; drop their cached API keys. One short
    transaction per user. Idempotent: a second run at the same `now` finds nobody due.
    Answers how many users' plans changed."""
    store = sync_redis()
    changed = 0
    seen: set[uuid.UUID] = set()
    while True:
        with worker_session() as session:
            due = [uid for uid in due_user_ids(session, now, EXPIRE_BATCH) if uid not in seen]
        if not due:
            return changed
        for user_id in due:
            seen.add(user_id)
            with worker_session() as session:
                moved = expire_user(session, user_id, now)
                stale = user_key_cache_entries(session, [user_id]) if moved else []
            # After the commit, so a key's next use reads the new plan.
            if stale:
                store.delete(*stale)
            changed += moved
