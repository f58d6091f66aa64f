"""`python -m cli import-users FILE`: accounts of the earlier systems, one JSON object a line.

Fields: `email`, and optionally `username`, `hashed_password` (bcrypt as passlib wrote it,
or Argon2; rehashed to Argon2id at the first sign-in), `full_name`, `plan` (`enterprise`
is `max`), `created_at`; other fields are ignored. Nobody is invited or signed up again.

All or nothing: every line is checked first (with the registration's email and username
rules) and, if any is bad, each bad line is reported with its number and nothing is
written; otherwise the new users go in one transaction. Emails already here are skipped
and counted, so a second run changes nothing. Each new user gets a quota period and a
`pending` plug-in-api account in that transaction, then a provisioning job.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from kombu.exceptions import OperationalError as BrokerError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.exceptions import RedisError
from sqlalchemy import func, select

from core.accounts import (
    add_existing_user,
    is_known_password_hash,
    normalize_email,
    normalize_username,
)
from core.celery_app import celery_app
from core.db import async_engine, async_session_factory
from core.plans import plan_named
from core.plugin_accounts import insert_pending_accounts
from models import User

log = logging.getLogger("switchboard.cli")


class ImportedUser(BaseModel):
    """One line of the file, with the registration's rules."""

    model_config = ConfigDict(extra="ignore")

    email: str = Field(max_length=320)
    username: str | None = None
    hashed_password: str | None = Field(default=None, max_length=255)
    full_name: str | None = Field(default=None, max_length=200)
    plan: str = "free"
    created_at: datetime | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        try:
            return normalize_email(validate_email(value, check_deliverability=False).normalized)
        except EmailNotValidError as error:
            raise ValueError(str(error)) from None

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        return normalize_username(value) if value else None

    @field_validator("hashed_password")
    @classmethod
    def _hash(cls, value: str | None) -> str | None:
        if value and not is_known_password_hash(value):
            raise ValueError("not a bcrypt ($2a$/$2b$) or Argon2 hash")
        return value or None

    @field_validator("plan", mode="before")
    @classmethod
    def _plan(cls, value: object) -> object:
        return plan_named(value) if isinstance(value, str) else value

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # The earlier systems wrote naive UTC (datetime.utcnow()).
        return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value


@dataclass
class ImportReport:
    imported: int = 0
    skipped: list[str] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)


def _describe(error: ValidationError) -> str:
    parts = []
    for issue in error.errors(include_url=False):
        where = ".".join(str(part) for part in issue["loc"])
        message = issue["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def parse_lines(text: str) -> tuple[list[tuple[int, ImportedUser]], list[tuple[int, str]]]:
    """Lines read as users, and (line number, reason) for each one that is not."""
    users: list[tuple[int, ImportedUser]] = []
    errors: list[tuple[int, str]] = []
    first_email: dict[str, int] = {}
    first_username: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            errors.append((number, f"not JSON ({error.msg})"))
            continue
        if not isinstance(record, dict):
            errors.append((number, "not a JSON object"))
            continue
        try:
            user = ImportedUser.model_validate(record)
        except ValidationError as error:
            errors.append((number, _describe(error)))
            continue
        if user.email in first_email:
            errors.append((number, f"email {user.email} again (line {first_email[user.email]})"))
            continue
        first_email[user.email] = number
        if user.username:
            folded = user.username.lower()
            if folded in first_username:
                errors.append(
                    (number, f"username {user.username} again (line {first_username[folded]})")
                )
                continue
            first_username[folded] = number
        users.append((number, user))
    return users, errors


async def _import(users: list[tuple[int, ImportedUser]], report: ImportReport) -> list[str]:
    """Write the new users in one transaction; return their ids, or none on any error."""
    try:
        async with async_session_factory()() as session:
            emails = [user.email for _, user in users]
            existing = set(
                (await session.scalars(select(User.email).where(User.email.in_(emails)))).all()
            )
            new = [(number, user) for number, user in users if user.email not in existing]
            report.skipped = sorted(existing)
            usernames = [user.username.lower() for _, user in new if user.username]
            taken = set(
                (
                    await session.scalars(
                        select(func.lower(User.username)).where(
                            func.lower(User.username).in_(usernames)
                        )
                    )
                ).all()
            )
            for number, user in new:
                if user.username and user.username.lower() in taken:
                    report.errors.append((number, f"username {user.username} is taken"))
            if report.errors:
                return []
            ids = []
            for _, user in new:
                added = await add_existing_user(
                    session,
                    email=user.email,
                    username=user.username,
                    password_hash=user.hashed_password,
                    full_name=user.full_name,
                    plan=user.plan,
                    created_at=user.created_at,
                )
                ids.append(added.id)
            if ids:
                await session.execute(insert_pending_accounts(User.id.in_(ids)))
            await session.commit()
            report.imported = len(ids)
            return [str(user_id) for user_id in ids]
    finally:
        await async_engine().dispose()


def _queue_provisioning(user_ids: list[str]) -> None:
    try:
        for user_id in user_ids:
            celery_app.send_task("workers.plugin.provision", args=[user_id])
    except (BrokerError, RedisError, OSError) as error:
        # The accounts are `pending`: the beat re-queue picks them up.
        log.warning("provisioning left to the beat re-queue: %s", type(error).__name__)


def import_users(path: Path) -> ImportReport:
    report = ImportReport()
    users, report.errors = parse_lines(path.read_text(encoding="utf-8-sig"))
    if report.errors or not users:
        return report
    created = asyncio.run(_import(users, report))
    _queue_provisioning(created)
    return report
