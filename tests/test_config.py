from __future__ import annotations

from pathlib import Path

import pytest

from supplychain.config import ConfigError, load_settings


def test_defaults_use_embedded_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({"SUPPLYCHAIN_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'supplychain.db'}"
    assert settings.is_sqlite
    assert settings.registries == frozenset()
    assert settings.webhook_token is None
    assert settings.trivy_cache_dir == tmp_path / "trivy"


def test_registries_are_a_normalised_allowlist(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "SUPPLYCHAIN_DATA_DIR": str(tmp_path),
            "SUPPLYCHAIN_REGISTRIES": " Ghcr.io, 127.0.0.1:5000 ,",
        }
    )
    assert settings.registries == frozenset({"ghcr.io", "127.0.0.1:5000"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WORKERS", "many"),
        ("REGISTRIES", "https://ghcr.io"),
        ("DATABASE_URL", "mysql://x"),
        ("WEBHOOK_TOKEN", "short"),
        ("TRIVY_OFFLINE", "maybe"),
        ("TRIVY_TIMEOUT", "0"),
        ("LISTEN", "nowhere"),
        ("JOB_MAX_ATTEMPTS", "0"),
        ("VERIFY_KEYS", "/nonexistent/cosign.pub"),
        ("SIGN_MODE", "sideways"),
        ("CERTIFICATE_IDENTITY_REGEXP", "(unclosed"),
        ("SIGN_AFTER_ALLOW", "true"),
        ("CERTIFICATE_OIDC_ISSUER", "https://token.actions.githubusercontent.com"),
    ],
)
def test_bad_values_stop_with_the_variable_named(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"SUPPLYCHAIN_{variable}"):
        load_settings({"SUPPLYCHAIN_DATA_DIR": str(tmp_path), f"SUPPLYCHAIN_{variable}": value})


def test_config_file_mirrors_variables_and_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("registries: [ghcr.io, quay.io]\nworkers: 3\n")
    env = {
        "SUPPLYCHAIN_DATA_DIR": str(tmp_path),
        "SUPPLYCHAIN_CONFIG": str(config),
        "SUPPLYCHAIN_WORKERS": "5",
    }
    settings = load_settings(env)
    assert settings.registries == frozenset({"ghcr.io", "quay.io"})
    assert settings.workers == 5


def test_unknown_key_in_config_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("registrys: ghcr.io\n")
    with pytest.raises(ConfigError, match="SUPPLYCHAIN_CONFIG: unknown setting 'registrys'"):
        load_settings({"SUPPLYCHAIN_DATA_DIR": str(tmp_path), "SUPPLYCHAIN_CONFIG": str(config)})
