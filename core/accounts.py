"""Accounts: password hashing, creating users on every sign-up path, linking external identities.

Every path that creates a user goes through `_commit_new_user`, which commits
and then fires the "user created" hook exactly once.
"""

from __future__ import annotations

import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as aioredis
from anyio import to_thread
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.auth_sessions import revoke_user_sessions
from core.errors import Conflict
from core.quota import first_period
from core.security import dummy_password_hash, password_hasher
from core.user_events import user_created
from models import OAuthIdentity, User

USERNAME_MIN = 3
USERNAME_MAX = 50
USERNAME_RULE = (
    f"{USERNAME_MIN}-{USERNAME_MAX} characters of letters and digits (any script), "
    "'_', '.' and '-', a wide (CJK) character counting as two; NFKC-normalised, "
    "unique regardless of case"
)
_USERNAME_PUNCTUATION = frozenset("_.-")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _username_character(character: str) -> bool:
    category = unicodedata.category(character)
    return category[0] == "L" or category == "Nd" or character in _USERNAME_PUNCTUATION


def _username_length(name: str) -> int:
    # API.md wants both "3-50 characters" and `小明`: a wide character counts as two, as
    # the earlier systems' users expect (and as a terminal shows it).
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in name)


def normalize_username(username: str) -> str:
    """The username as stored, or ValueError: the one username rule (API.md), for every
    route, the CLI and generated names. NFKC makes fullwidth `ＡＢＣ` the `ABC` it looks
    like; uniqueness ignores case through the unique index on lower(username)."""
    name = unicodedata.normalize("NFKC", username)
    if not USERNAME_MIN <= _username_length(name) <= USERNAME_MAX:
        raise ValueError(f"a username has {USERNAME_MIN} to {USERNAME_MAX} characters")
    if not all(_username_character(character) for character in name):
        raise ValueError("a username has only letters, digits, '_', '.' and '-'")
    return name


async def hash_password(password: str) -> str:
    # Argon2id takes tens of milliseconds of CPU: keep it off the event loop.
    return await to_thread.run_sync(password_hasher.hash, password)


def _verify_and_update(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    if password_hash is None or not is_known_password_hash(password_hash):
        # No hash (unknown email, external-only account) costs the same as a wrong password.
        password_hasher.verify(password, dummy_password_hash())
        return False, None
    return password_hasher.verify_and_update(password, password_hash)


async def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """Return (valid, Argon2id rehash or None). A hash of the earlier systems (bcrypt) or of
    older Argon2 parameters that verifies comes back rehashed, for the caller to store."""
    return await to_thread.run_sync(_verify_and_update, password, password_hash)


def is_known_password_hash(password_hash: str) -> bool:
    """Whether some hasher of ours can verify `password_hash` (Argon2 or bcrypt)."""
    return any(hasher.identify(password_hash) for hasher in password_hasher.hashers)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == normalize_email(email)))


async def change_email(session: AsyncSession, user: User, email: str) -> User:
    """Give `user` the address `email` (normalised); 409 `email_taken` when another
    account has it. The caller has checked the user's right to change it."""
    email = normalize_email(email)
    if email == user.email:
        return user
    taken = Conflict("An account with that email already exists.", code="email_taken")
    if await get_user_by_email(session, email) is not None:
        raise taken
    user.email = email
    try:
        await session.commit()
    except IntegrityError:
        # A concurrent change took it between the check and the commit.
        await session.rollback()
        raise taken from None
    return user


async def change_password(
    session: AsyncSession,
    redis: aioredis.Redis,
    user: User,
    password: str,
    *,
    keep_session: uuid.UUID,
) -> None:
    """Set the password and end every other session of the account at once. The caller
    has checked the user's right to change it."""
    user.password_hash = await hash_password(password)
    await session.commit()
    await revoke_user_sessions(session, redis, user.id, "password_change", keep=keep_session)


async def username_taken(session: AsyncSession, username: str) -> bool:
    # lower() on both sides: the same folding as the unique index, whatever the locale.
    found = await session.scalar(
        select(User.id).where(func.lower(User.username) == func.lower(username))
    )
    return found is not None


async def _free_username(session: AsyncSession, hint: str) -> str:
    """A free username derived from `hint` (an email's local part or a provider's login)."""
    local = unicodedata.normalize("NFKC", hint.split("@")[0]).lower()
    safe = "".join(c if _username_character(c) else " " for c in local)
    base = "_".join(safe.split()).strip("_.-")[:40] or "user"
    if len(base) < USERNAME_MIN:
        base = f"{base}_user"
    candidate = base
    while await username_taken(session, candidate):
        candidate = f"{base}_{secrets.randbelow(1_000_000):06d}"
    return candidate


def _conflict_from(error: IntegrityError) -> Conflict:
    text = str(error.orig)
    if "uq_users_username" in text:
        return Conflict("That username is already taken.", code="username_taken")
    if "uq_users_email" in text:
        return Conflict("An account with that email already exists.", code="email_taken")
    raise error


async def _commit_new_user(session: AsyncSession, user: User) -> User:
    try:
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        raise _conflict_from(error) from None
    await user_created(user.id)
    return user


def _new_user(**fields) -> User:
    start, reset_at = first_period()
    return User(id=uuid.uuid4(), quota_period_start_at=start, quota_reset_at=reset_at, **fields)


async def register_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    username: str | None = None,
    full_name: str | None = None,
    is_superuser: bool = False,
) -> User:
    email = normalize_email(email)
    if await get_user_by_email(session, email) is not None:
        raise Conflict("An account with that email already exists.", code="email_taken")
    if username is not None:
        username = normalize_username(username)
    if username is not None and await username_taken(session, username):
        raise Conflict("That username is already taken.", code="username_taken")
    user = _new_user(
        email=email,
        username=username or await _free_username(session, email),
        password_hash=await hash_password(password),
        full_name=full_name,
        is_superuser=is_superuser,
    )
    session.add(user)
    return await _commit_new_user(session, user)


async def add_existing_user(
    session: AsyncSession,
    *,
    email: str,
    username: str | None,
    password_hash: str | None,
    full_name: str | None = None,
    plan: str = "free",
    created_at: datetime | None = None,
) -> User:
    """Add (and flush, not commit) an account an earlier system made: its hash as it is
    (verified and rehashed at its first sign-in), a username of the one rule or a free one
    from the email, a fresh quota period. The caller commits, in one transaction for a batch,
    and the "user created" hook does not fire (nobody is signed up again)."""
    user = _new_user(
        email=normalize_email(email),
        username=normalize_username(username) if username else await _free_username(session, email),
        password_hash=password_hash,
        full_name=full_name,
        plan=plan,
        **({"created_at": created_at} if created_at else {}),
    )
    session.add(user)
    # Flushed so the next generated username (and the unique indexes) see this one.
    await session.flush()
    return user


@dataclass(frozen=True, slots=True)
class ExternalProfile:
    """What an identity provider tells us about a person."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    username_hint: str | None = None
    full_name: str | None = None
    avatar_url: str | None = None


def _placeholder_email(provider: str, subject: str) -> str:
    # Unique and never deliverable (RFC 2606 `.invalid`): the account has no usable email yet.
    return f"{provider}-{uuid.uuid5(uuid.NAMESPACE_URL, f'{provider}:{subject}').hex}@users.invalid"


async def sign_in_external(session: AsyncSession, profile: ExternalProfile) -> User:
    """The user behind an external identity: the linked one, one with the same verified email,
    or a new account."""
    identity = await session.scalar(
        select(OAuthIdentity)
        .where(OAuthIdentity.provider == profile.provider, OAuthIdentity.subject == profile.subject)
        .options(selectinload(OAuthIdentity.user))
    )
    if identity is not None:
        return identity.user

    email = normalize_email(profile.email) if profile.email else None
    existing = None
    if email and profile.email_verified:
        existing = await get_user_by_email(session, email)
    if existing is not None:
        session.add(
            OAuthIdentity(
                provider=profile.provider,
                subject=profile.subject,
                user_id=existing.id,
                email=email,
            )
        )
        try:
            await session.commit()
        except IntegrityError:
            # A concurrent first sign-in with the same identity linked it first.
            await session.rollback()
            return await sign_in_external(session, profile)
        return existing

    # An unverified (or already used) email must not claim the address for this account.
    if not email or not profile.email_verified or await get_user_by_email(session, email):
        email = _placeholder_email(profile.provider, profile.subject)
    user = _new_user(
        email=email,
        username=await _free_username(session, profile.username_hint or email),
        full_name=profile.full_name[:200] if profile.full_name else None,
        avatar_url=profile.avatar_url if len(profile.avatar_url or "") <= 2048 else None,
    )
    session.add(user)
    session.add(
        OAuthIdentity(
            provider=profile.provider,
            subject=profile.subject,
            user_id=user.id,
            email=normalize_email(profile.email) if profile.email else None,
        )
    )
    try:
        return await _commit_new_user(session, user)
    except IntegrityError:
        await session.rollback()
        return await sign_in_external(session, profile)
