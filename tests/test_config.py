"""Settings: the signing secret's rules, the algorithms a secret allows, the database URL."""

import pytest
from pydantic import ValidationError

from backend.config import Settings
from tests.conftest import SECRET


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("short", id="5-bytes"),
        pytest.param("x" * 31, id="31-bytes"),
        pytest.param("", id="empty"),
    ],
)
def test_settings_refuse_a_short_secret(clean_env: pytest.MonkeyPatch, secret: str) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, jwt_secret=secret)


@pytest.mark.parametrize("secret", ["x" * 32, "\u00e9" * 16])
def test_settings_accept_a_secret_of_32_bytes(clean_env: pytest.MonkeyPatch, secret: str) -> None:
    assert Settings(_env_file=None, jwt_secret=secret).signing_secret() == secret


@pytest.mark.parametrize("algorithms", ["RS256", "HS256,RS256", "EdDSA", "none"])
def test_settings_refuse_public_key_algorithms_with_a_secret(
    clean_env: pytest.MonkeyPatch, algorithms: str
) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, jwt_secret=SECRET, jwt_algorithms=algorithms)


def test_settings_refuse_public_key_algorithms_from_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("JWT_SECRET", SECRET)
    clean_env.setenv("JWT_ALGORITHMS", "RS256")

    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_settings_accept_better_auth_secret_alias(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BETTER_AUTH_SECRET", SECRET)

    assert Settings(_env_file=None).signing_secret() == SECRET


def test_settings_refuse_a_short_better_auth_secret(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BETTER_AUTH_SECRET", "short")

    with pytest.raises(ValidationError):
        Settings(_env_file=None)


@pytest.mark.parametrize(
    "url",
    ["postgres://u:p@db:5432/todo", "postgresql://u:p@db:5432/todo"],
)
def test_database_url_maps_to_psycopg(clean_env: pytest.MonkeyPatch, url: str) -> None:
    from_argument = Settings(_env_file=None, database_url=url)
    clean_env.setenv("DATABASE_URL", url)
    from_env = Settings(_env_file=None)

    assert from_argument.database_url == "postgresql+psycopg://u:p@db:5432/todo"
    assert from_env.database_url == "postgresql+psycopg://u:p@db:5432/todo"
