"""Settings read from the environment (and `.env`), validated once at start-up."""

import logging
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

logger = logging.getLogger("todo_api")

MIN_SECRET_BYTES = 32
DEV_SECRET_FILE = Path(".todo-api-dev-secret")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///./todo.db"
    jwt_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("JWT_SECRET", "BETTER_AUTH_SECRET")
    )
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: Annotated[list[str], NoDecode] = ["HS256"]
    jwt_leeway_seconds: int = 30
    jwt_max_lifetime_seconds: int = 30 * 86_400
    cors_origins: Annotated[list[str], NoDecode] = []
    db_pool_size: int = 10
    db_max_overflow: int = 10

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

    @field_validator("jwt_algorithms", "cors_origins", mode="before")
    @classmethod
    def split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def check_auth(self) -> Self:
        if self.jwt_secret is not None:
            if len(self.jwt_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long")
        elif self.environment == "production":
            raise ValueError("JWT_SECRET (or BETTER_AUTH_SECRET) is required in production")
        if any(not alg.startswith("HS") for alg in self.jwt_algorithms):
            raise ValueError("with a shared secret, JWT_ALGORITHMS may only hold HS256/384/512")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def signing_secret(self) -> str:
        """The HMAC secret: the configured one, else a development secret kept in a file."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return _development_secret()


@lru_cache
def _development_secret() -> str:
    if DEV_SECRET_FILE.exists():
        return DEV_SECRET_FILE.read_text().strip()
    secret = secrets.token_urlsafe(48)
    DEV_SECRET_FILE.write_text(secret + "\n")
    DEV_SECRET_FILE.chmod(0o600)
    logger.warning(
        "No JWT_SECRET set: generated a development secret in %s. "
        "Set JWT_SECRET (or BETTER_AUTH_SECRET) for anything but local development.",
        DEV_SECRET_FILE.resolve(),
    )
    return secret


@lru_cache
def get_settings() -> Settings:
    return Settings()
