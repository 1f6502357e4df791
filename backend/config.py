"""Settings read from the environment (and `.env`), validated once at start-up."""

import logging
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self

from limits import parse as parse_rate
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from backend.jwks import KEY_SHAPES

logger = logging.getLogger("todo_api")

MIN_SECRET_BYTES = 32
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset(KEY_SHAPES)
DEFAULT_JWKS_ALGORITHMS = ["EdDSA", "ES256", "RS256", "PS256"]
DEV_SECRET_FILE = Path(".todo-api-dev-secret")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///./todo.db"
    jwt_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("JWT_SECRET", "BETTER_AUTH_SECRET")
    )
    jwks_url: str | None = None
    jwks_cache_seconds: float = Field(default=300, gt=0)
    jwks_cooldown_seconds: float = Field(default=10, gt=0)
    jwks_stale_seconds: float = Field(default=86_400, ge=0)
    jwks_timeout_seconds: float = Field(default=3, gt=0)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: Annotated[list[str], NoDecode] = []
    """Empty means the mode's default: HS256 with a secret, EdDSA/ES256/RS256/PS256 with JWKS."""
    jwt_leeway_seconds: int = Field(default=30, ge=0)
    jwt_max_lifetime_seconds: int = Field(default=30 * 86_400, gt=0)
    """The longest `exp - iat` accepted: refuses tokens that never really expire."""
    jwt_max_age_seconds: int | None = Field(default=None, gt=0)
    """When set, tokens issued longer ago than this are refused whatever their `exp`."""
    token_cache_seconds: float = Field(default=60, ge=0)
    """How long a verified JWT is remembered (never past its own expiry, nor past
    `jwks_cache_seconds` with JWKS); 0 checks every request's signature again."""
    secret_key: SecretStr | None = None
    """Signs list cursors; defaults to the JWT secret (or the development secret)."""
    cors_origins: Annotated[list[str], NoDecode] = []
    cors_allow_credentials: bool = False
    """Only for cookie-authenticated browsers; bearer tokens need no credentials mode."""
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_seconds: float = Field(default=2, gt=0)
    """How long a request waits for a pooled connection before 503."""
    db_connect_timeout_seconds: int = Field(default=2, ge=2)
    """libpq's own minimum is 2 seconds."""
    db_statement_timeout_ms: int = Field(default=5_000, ge=0)
    db_lock_timeout_ms: int = Field(default=2_000, ge=0)
    db_idle_in_transaction_timeout_ms: int = Field(default=10_000, ge=0)
    db_prepared_statements: bool = True
    """False behind a transaction-pooling proxy (PgBouncer, Neon's pooled endpoint), which
    hands each transaction any server connection: psycopg then prepares no statements, and
    the limits above travel with each transaction instead of as start-up options, which
    such a proxy refuses."""
    request_deadline_seconds: float = Field(default=8, gt=0)
    """The most a request may take, database work included, before 503 `timeout`."""
    request_concurrency: int | None = Field(default=None, ge=1)
    """User requests a worker works on at once, each from the acceptance of its token
    (default: `db_pool_size`); the others wait their turn in order, at most
    `db_pool_timeout_seconds`, then 503 `db_unavailable` (`middleware.RequestConcurrency`)."""
    changes_retention_days: int = Field(default=30, ge=1)
    """How long a deletion stays in the change feed; an older sync token answers 410."""
    events_max_streams_per_user: int = Field(default=10, ge=1)
    """Event streams one user may hold open at once, per worker; 429 past it."""
    events_max_streams: int = Field(default=1000, ge=1)
    """Event streams a worker holds open at once; 503 past it."""
    events_check_seconds: float = Field(default=15, gt=0)
    """How often an idle stream checks that its client is still there and its token still
    accepted."""
    events_max_stream_seconds: float = Field(default=3600, gt=0)
    """A stream ends after this long; `EventSource` reconnects by itself with
    `Last-Event-ID`, perhaps to another worker, and nothing is lost."""
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = []
    """Hosts a webhook may reach over plain `http` and at any address, such as
    `localhost` (development and tests): every other must be `https` and public."""
    webhook_timeout_seconds: float = Field(default=10, gt=0)
    """How long a receiver has to answer a delivery."""
    webhook_delivery_retention_days: int = Field(default=30, ge=1)
    """How long a finished delivery stays listed."""
    run_worker: bool = False
    """Run the worker inside each server process (`todo-api serve --with-worker`)."""
    worker_concurrency: int = Field(default=16, ge=1)
    """Deliveries a worker sends at once."""
    worker_poll_seconds: float = Field(default=1, gt=0)
    """How often an idle worker looks for retries that came due."""
    worker_prune_seconds: float = Field(default=3600, gt=0)
    """How often a worker prunes what is no longer kept."""
    rate_limit_enabled: bool = True
    rate_limit_user: str = "600/minute"
    """Requests per token subject, counted after authentication (limits' notation)."""
    rate_limit_ip: str = "3000/minute"
    """Requests per client address, counted before authentication: above the per-user budget,
    so that a few users behind one NAT are not refused for each other's requests."""
    redis_url: str | None = None
    """Where rate-limit counters live so that workers and hosts share them; else memory."""
    redis_timeout_seconds: float = Field(default=0.25, gt=0)
    """Connect and read timeout of a rate-limit call; past it the limiter fails over."""
    rate_limit_key_prefix: str = "todo-api"
    log_format: Literal["json", "text"] | None = None
    """How the server logs: unset, as text where its standard error is a terminal (a person
    reads it) and as JSON lines elsewhere (a log collector reads them)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_token: SecretStr | None = None
    """When set, `/metrics` needs `Authorization: Bearer <token>`; else it is open."""

    @field_validator("database_url")
    @classmethod
    def use_async_driver(cls, url: str) -> str:
        """Accept the URLs that hosting providers hand out and pick the async driver."""
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url.removeprefix(prefix)
        if url.startswith("sqlite://"):
            return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
        return url

    @field_validator("jwt_algorithms", "cors_origins", "webhook_allowed_hosts", mode="before")
    @classmethod
    def split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("rate_limit_user", "rate_limit_ip")
    @classmethod
    def rate_limit_notation(cls, value: str) -> str:
        parse_rate(value)  # "600/minute", "10 per second", "1000/5 minutes"
        return value

    @field_validator("redis_url")
    @classmethod
    def redis_only(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://")):
            raise ValueError("REDIS_URL must be a redis:// or rediss:// URL")
        return url

    @field_validator("jwks_url")
    @classmethod
    def http_only(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("https://", "http://")):
            raise ValueError("JWKS_URL must be an http(s) URL")
        return url

    @model_validator(mode="after")
    def check_cors(self) -> Self:
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError(
                "CORS_ALLOW_CREDENTIALS needs explicit CORS_ORIGINS: a browser refuses '*' "
                "with credentials, and reflecting any origin would let every site act as the user"
            )
        return self

    @model_validator(mode="after")
    def check_auth(self) -> Self:
        """One consistent mode: a shared secret (HMAC) or a JWKS URL (public keys), not both."""
        for name, secret in (("JWT_SECRET", self.jwt_secret), ("SECRET_KEY", self.secret_key)):
            if secret is not None and len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"{name} must be at least {MIN_SECRET_BYTES} bytes long")
        if self.jwks_url is not None:
            if self.jwt_secret is not None:
                raise ValueError(
                    "set JWKS_URL (public keys) or JWT_SECRET/BETTER_AUTH_SECRET (HS256), not both"
                )
            allowed, mode = PUBLIC_KEY_ALGORITHMS, "with JWKS_URL"
            self.jwt_algorithms = self.jwt_algorithms or list(DEFAULT_JWKS_ALGORITHMS)
            if self.environment == "production" and self.secret_key is None:
                raise ValueError("with JWKS_URL in production, set SECRET_KEY (signs cursors)")
        else:
            if self.jwt_secret is None and self.environment == "production":
                raise ValueError("set JWT_SECRET (or BETTER_AUTH_SECRET) or JWKS_URL in production")
            allowed, mode = HMAC_ALGORITHMS, "with a shared secret"
            self.jwt_algorithms = self.jwt_algorithms or ["HS256"]
        if unknown := set(self.jwt_algorithms) - allowed:
            raise ValueError(
                f"JWT_ALGORITHMS {mode} may hold only {', '.join(sorted(allowed))}; "
                f"not {', '.join(sorted(unknown))}"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def driver_conninfo(self) -> str:
        """`DATABASE_URL` as psycopg itself takes it (for the event listener's own
        connection, outside SQLAlchemy's pool)."""
        url = make_url(self.database_url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    @property
    def uses_jwks(self) -> bool:
        return self.jwks_url is not None

    def signing_secret(self) -> str:
        """The HMAC secret: the configured one, else a development secret kept in a file."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return _development_secret()

    def cursor_secret(self) -> str:
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        return self.signing_secret()


@lru_cache
def _development_secret() -> str:
    if DEV_SECRET_FILE.exists():
        kept = DEV_SECRET_FILE.read_text().strip()
        if len(kept.encode()) < MIN_SECRET_BYTES:  # as short a JWT_SECRET is refused
            raise ConfigurationError(
                f"{DEV_SECRET_FILE.resolve()} holds fewer than {MIN_SECRET_BYTES} bytes: "
                "delete it to generate a new development secret"
            )
        return kept
    secret = secrets.token_urlsafe(48)
    DEV_SECRET_FILE.write_text(secret + "\n")
    DEV_SECRET_FILE.chmod(0o600)
    logger.warning(
        "No JWT_SECRET set: generated a development secret in %s. "
        "Set JWT_SECRET (or BETTER_AUTH_SECRET) for anything but local development.",
        DEV_SECRET_FILE.resolve(),
    )
    return secret


class ConfigurationError(Exception):
    """Settings that cannot work; the message names each problem, never a value."""


@lru_cache
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
