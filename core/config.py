"""Every setting Switchboard reads, in one pydantic-settings class.

The API, the workers, beat, Flower and the CLI all import the module-level
`settings`. Names match the configuration table of API.md.
"""

from __future__ import annotations

import json
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from cryptography.fernet import Fernet
from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.catalogue import (
    DEFAULT_MODEL_ALIASES,
    DEFAULT_MODELS,
    DEFAULT_PLANS,
    PLAN_ORDER,
    ModelSpec,
    PlanSpec,
)


class OAuthProviderSpec(BaseModel):
    """An OAuth2 authorization-code provider; a new provider is one more of these."""

    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    userinfo_url: str
    scope: str = ""
    # How the client authenticates at the token endpoint (RFC 6749 section 2.3.1).
    token_auth: Literal["basic", "post"] = "basic"
    subject_field: str = "id"
    email_field: str | None = "email"
    username_field: str | None = "username"
    name_field: str | None = "name"
    avatar_field: str | None = "avatar_url"
    # Profile fields that must be true (or false) for the account to be let in.
    require_true: list[str] = Field(default_factory=list)
    require_false: list[str] = Field(default_factory=list)
    # Whether the provider only hands out confirmed emails; only then do we link by email.
    emails_verified: bool = False


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    environment: Literal["development", "production"] = "development"
    database_url: str | None = None
    redis_url: str | None = None
    # The Celery broker; defaults to REDIS_URL (one Redis for everything).
    broker_url: str | None = None
    data_dir: Path = Path("./.data")
    host: str = "127.0.0.1"
    port: int = 8000
    flower_port: int = 5555
    flower_basic_auth: str | None = None
    # JSON lines for log shippers; text is easier to read in a terminal.
    log_format: Literal["json", "text"] = "text"

    secret_key: str | None = None
    encryption_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The integration document's key (seeds/004): one more Fernet key, see `fernet_keys`.
    plugin_api_encryption_key: str | None = None
    _encryption_keys_generated: bool = PrivateAttr(default=False)
    access_token_ttl_seconds: int = 3600
    refresh_token_ttl_seconds: int = 7 * 24 * 3600

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Peers whose X-Forwarded-Proto / X-Forwarded-For we believe.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"]
    )
    allow_private_model_urls: bool = False

    deepseek_api_key: str | None = None
    deepseek_base_url: str = "https://api.deepseek.com"
    kimi_api_key: str | None = None
    kimi_base_url: str = "https://api.moonshot.cn/v1"
    anthropic_api_key: str | None = None
    anthropic_base_url: str = "https://api.anthropic.com"

    plugin_api_base_url: str = "http://localhost:8045"
    plugin_api_admin_key: str | None = None
    # A slower or unreachable plug-in-api answers 503 rather than holding requests.
    plugin_api_timeout_seconds: float = 30.0
    # Provisioning retry n waits min(base * 2**n, max) seconds, jittered, up to max_attempts.
    plugin_provision_max_attempts: int = 8
    plugin_provision_backoff_seconds: float = 2.0
    plugin_provision_backoff_max_seconds: float = 300.0
    # Beat re-queues pending/failed accounts untouched this long (above the backoff cap).
    plugin_provision_stuck_seconds: int = 900

    apple_client_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    apple_jwks_url: str = "https://appleid.apple.com/auth/keys"
    apple_issuer: str = "https://appleid.apple.com"

    linuxdo_client_id: str | None = None
    linuxdo_client_secret: str | None = None
    linuxdo_authorize_url: str = "https://connect.linux.do/oauth2/authorize"
    linuxdo_token_url: str = "https://connect.linux.do/oauth2/token"
    linuxdo_userinfo_url: str = "https://connect.linux.do/api/user"
    # More OAuth2 providers as JSON: {"name": {OAuthProviderSpec fields}}.
    oauth_providers: dict[str, OAuthProviderSpec] = Field(default_factory=dict)

    login_max_attempts_per_account: int = 5
    login_max_attempts_per_ip: int = 50
    login_attempt_window_seconds: int = 900
    # Wrong redemption codes, on counters of their own (core/login_limits.py).
    redeem_max_attempts_per_account: int = 10
    redeem_max_attempts_per_ip: int = 50
    redeem_attempt_window_seconds: int = 900

    plans: dict[str, PlanSpec] = Field(default_factory=lambda: dict(DEFAULT_PLANS))
    models: dict[str, ModelSpec] = Field(default_factory=lambda: dict(DEFAULT_MODELS))
    # Old and client-built model names -> catalogue ids (core/catalogue.py).
    model_aliases: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_MODEL_ALIASES))

    # PostgreSQL connections per process (engine pool + overflow); keep
    # processes x (size + overflow) under the server's max_connections.
    db_pool_size: int = 10
    db_max_overflow: int = 20
    # Workers: threads per worker process for streaming chats.
    worker_concurrency: int = 100
    # Upper bound of one generation; the broker's visibility timeout sits above it.
    generation_timeout_seconds: int = 600
    # A stream with nothing to send gets an SSE comment (`: ping`) this often, so
    # proxies and load balancers do not close it while the provider is thinking.
    sse_ping_seconds: float = Field(default=15.0, gt=0)
    # Admission control: generations streaming at once in the chat pool (unset: the one
    # chat worker's WORKER_CONCURRENCY; set it to the sum over chat workers) and per user.
    # Past either, a new generation is refused at once instead of queueing behind busy threads.
    chat_max_streams: int | None = None
    chat_max_streams_per_user: int = 20
    # How long an API process trusts the pool's fill it saw at the last admission: while
    # it says full, new generations are refused before auth and parsing (api/shed.py).
    chat_shed_seconds: float = 0.1
    # A provider silent this long between two chunks fails the generation (partial kept).
    provider_read_timeout_seconds: float = 60.0

    # Request bodies: our own routes, and the AI routes whose bodies may carry images inline.
    # Enforced while the body streams in, so an oversized one is never held whole.
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_ai_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    # The largest image `POST /v1/attachments` takes: that route's body limit instead of
    # MAX_BODY_BYTES (plus the multipart envelope), checked again on the file itself.
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    # Slow clients: how long a request's line and headers, then its body, may take to
    # arrive, and how long a WebSocket may take to finish its handshake. Without these a
    # client that trickles bytes holds a connection (slow-loris); a reverse proxy in front
    # should enforce its own as well (README, "Production").
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator(
        "encryption_keys", "cors_origins", "trusted_proxies", "apple_client_ids", mode="before"
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @model_validator(mode="after")
    def _catalogue_is_whole(self) -> Settings:
        # A default or an alias naming no model would fail every request that uses it.
        for name, plan in self.plans.items():
            if plan.default_model not in self.models and plan.default_model not in (
                self.model_aliases
            ):
                raise ValueError(f"plan {name!r}: default model {plan.default_model!r} unknown")
        for alias, target in self.model_aliases.items():
            if target not in self.models:
                raise ValueError(f"model alias {alias!r} names no catalogue model {target!r}")
        return self

    @field_validator("encryption_keys")
    @classmethod
    def _fernet_keys_only(cls, keys: list[str]) -> list[str]:
        for key in keys:
            _check_fernet_key("ENCRYPTION_KEYS", key)
        return keys

    @field_validator("plugin_api_encryption_key")
    @classmethod
    def _fernet_key_or_unset(cls, key: str | None) -> str | None:
        if not key or not key.strip():
            return None
        return _check_fernet_key("PLUGIN_API_ENCRYPTION_KEY", key.strip())

    @model_validator(mode="after")
    def _require_or_generate_secrets(self) -> Settings:
        if self.environment == "production":
            missing = [
                name
                for name, value in (
                    ("SECRET_KEY", self.secret_key),
                    ("ENCRYPTION_KEYS", self.encryption_keys or self.plugin_api_encryption_key),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"{' and '.join(missing)} must be set when ENVIRONMENT=production "
                    "(development generates them under DATA_DIR; production never does; "
                    "PLUGIN_API_ENCRYPTION_KEY may stand in for ENCRYPTION_KEYS)"
                )
            return self
        if not self.secret_key or not self.encryption_keys or not self.flower_basic_auth:
            generated = _load_or_create_dev_secrets(self.data_dir)
            self.secret_key = self.secret_key or generated["secret_key"]
            if not self.encryption_keys:
                self.encryption_keys = generated["encryption_keys"]
                self._encryption_keys_generated = True
            self.flower_basic_auth = self.flower_basic_auth or generated["flower_basic_auth"]
        return self

    @property
    def fernet_keys(self) -> list[str]:
        """The keys of secrets at rest, the encrypting one first, every one decrypting.

        PLUGIN_API_ENCRYPTION_KEY comes after ENCRYPTION_KEYS when those are set (it only
        decrypts what the earlier system stored), and first when they are not: then it
        encrypts, and development's generated key (DATA_DIR) stays behind it so secrets
        stored before the key was configured still decrypt.
        """
        extra = [self.plugin_api_encryption_key] if self.plugin_api_encryption_key else []
        if self._encryption_keys_generated or not self.encryption_keys:
            keys = extra + self.encryption_keys
        else:
            keys = self.encryption_keys + extra
        return list(dict.fromkeys(keys))

    @cached_property
    def plan_names(self) -> tuple[str, ...]:
        return tuple(name for name in PLAN_ORDER if name in self.plans)

    def oauth_provider(self, name: str) -> OAuthProviderSpec | None:
        """The configured provider called `name`; Linux.do comes from its LINUXDO_* names."""
        if name == "linuxdo" and self.linuxdo_client_id and self.linuxdo_client_secret:
            return OAuthProviderSpec(
                client_id=self.linuxdo_client_id,
                client_secret=self.linuxdo_client_secret,
                authorize_url=self.linuxdo_authorize_url,
                token_url=self.linuxdo_token_url,
                userinfo_url=self.linuxdo_userinfo_url,
                avatar_field="avatar_url",
                # Linux.do (Discourse) lets in only accounts whose email was confirmed.
                require_true=["active"],
                require_false=["silenced"],
                emails_verified=True,
            )
        return self.oauth_providers.get(name)

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError(
                "DATABASE_URL is not set: start the stack with `make run` "
                "(it provides an embedded PostgreSQL) or set DATABASE_URL"
            )
        return self.database_url

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.require_redis_url()

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise RuntimeError(
                "REDIS_URL is not set: start the stack with `make run` "
                "(it provides an embedded Redis-protocol server) or set REDIS_URL"
            )
        return self.redis_url


def _check_fernet_key(name: str, key: str) -> str:
    try:
        Fernet(key.encode())
    except ValueError:
        raise ValueError(
            f"{name}: not a Fernet key (32 url-safe base64-encoded bytes; make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())'`)"
        ) from None
    return key


def _load_or_create_dev_secrets(data_dir: Path) -> dict:
    """Development secrets live in DATA_DIR so tokens and ciphertexts survive restarts."""
    path = data_dir / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    data_dir.mkdir(parents=True, exist_ok=True)
    generated = {
        "secret_key": secrets.token_urlsafe(48),
        "encryption_keys": [Fernet.generate_key().decode()],
        "flower_basic_auth": f"admin:{secrets.token_urlsafe(12)}",
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(generated, indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)
    return generated


settings = Settings()
