"""Settings.from_env: every documented variable is read and typed; bad values fail fast, named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stageflow.config import SETTINGS_DOC, Settings, SettingsError

# variable -> (what is set, what the attribute holds); a non-default value for each
SAMPLES: dict[str, tuple[str, Any]] = {
    "STAGEFLOW_HOST": ("0.0.0.0", "0.0.0.0"),
    "STAGEFLOW_PORT": ("9090", 9090),
    "STAGEFLOW_WORKERS": ("3", 3),
    "STAGEFLOW_THREADS": ("4", 4),
    "STAGEFLOW_DATA_DIR": ("/srv/stageflow", Path("/srv/stageflow")),
    "STAGEFLOW_DATABASE_URL": (
        "postgresql+psycopg://sf:pw@db.internal/stageflow",
        "postgresql+psycopg://sf:pw@db.internal/stageflow",
    ),
    "STAGEFLOW_GIT_URL": (
        "https://git.example.com/acme/gitops.git",
        "https://git.example.com/acme/gitops.git",
    ),
    "STAGEFLOW_GIT_BRANCH": ("release/v2", "release/v2"),
    "STAGEFLOW_GIT_HEAD_TTL": ("2.5", 2.5),
    "STAGEFLOW_GIT_PUSH_ATTEMPTS": ("7", 7),
    # any existing file stands for a key and a known_hosts file here
    "STAGEFLOW_GIT_SSH_KEY": ("/etc/passwd", "/etc/passwd"),
    "STAGEFLOW_GIT_SSH_KNOWN_HOSTS": ("/etc/passwd", "/etc/passwd"),
    "STAGEFLOW_GIT_TOKEN": ("glpat-secret", "glpat-secret"),
    "STAGEFLOW_GIT_USERNAME": ("oauth2", "oauth2"),
    "STAGEFLOW_MIN_FREE_DISK_MB": ("5", 5),
    "STAGEFLOW_KUSTOMIZE": ("kubectl kustomize", "kubectl kustomize"),
    "STAGEFLOW_RENDER_TIMEOUT": ("30", 30.0),
    "STAGEFLOW_ADMIN_TOKEN": ("a-long-admin-secret-0123456789", "a-long-admin-secret-0123456789"),
    "STAGEFLOW_PROMETHEUS_URL": ("http://127.0.0.1:9090", "http://127.0.0.1:9090"),
    "STAGEFLOW_FLUX_WEBHOOK_SECRET": ("hmac-key", "hmac-key"),
    "STAGEFLOW_REEVALUATE_INTERVAL": ("30", 30.0),
    "STAGEFLOW_LOG_LEVEL": ("debug", "DEBUG"),
    "STAGEFLOW_SEED_DIR": ("/srv/starter", Path("/srv/starter")),
    "STAGEFLOW_MAX_BODY_BYTES": ("2048", 2048),
    "STAGEFLOW_OFREP_RATE_LIMIT": ("50", 50),
    "STAGEFLOW_FLUX_WEBHOOK_APPS": ("demo, shop", ("demo", "shop")),
    "STAGEFLOW_FLUX_WEBHOOK_STAGES": ("production", ("production",)),
    "STAGEFLOW_AUTH_FAILURES_PER_MINUTE": ("5", 5),
    "STAGEFLOW_FLAGD_FRACTIONAL": ("CBOR", "cbor"),
    "STAGEFLOW_PUBLIC_URL": ("https://stageflow.example.com", "https://stageflow.example.com"),
    "STAGEFLOW_STREAM_URL": ("https://flags.example.com", "https://flags.example.com"),
    "STAGEFLOW_STREAM_PORT": ("9091", 9091),
}


def sample(name: str, default: str) -> tuple[str, Any]:
    if name in SAMPLES:
        return SAMPLES[name]
    # a variable added since: its documented default must at least parse
    for kind in (int, float):
        try:
            return default, kind(default)
        except ValueError:
            continue
    raise AssertionError(f"add a sample value for {name} to SAMPLES")


def test_every_documented_variable_is_read():
    env = {name: sample(name, default)[0] for _, name, default, _ in SETTINGS_DOC}

    settings = Settings.from_env(env)

    for attr, name, default, _ in SETTINGS_DOC:
        expected = sample(name, default)[1]
        assert getattr(settings, attr) == expected, name


def test_every_documented_variable_is_a_setting():
    fields = set(Settings.__dataclass_fields__)
    documented = {attr for attr, *_ in SETTINGS_DOC}
    assert documented <= fields
    assert all(name == f"STAGEFLOW_{attr.upper()}" for attr, name, *_ in SETTINGS_DOC)


@pytest.mark.parametrize(("attr", "name", "default", "_help"), SETTINGS_DOC)
def test_each_variable_alone(attr: str, name: str, default: str, _help: str):
    raw, expected = sample(name, default)

    settings = Settings.from_env({name: f"  {raw}  "})  # surrounding blanks are ignored

    assert getattr(settings, attr) == expected


def test_an_empty_environment_gives_the_documented_defaults(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    settings = Settings.from_env({})

    documented = {attr: default for attr, _, default, _ in SETTINGS_DOC}
    for attr in ("host", "port", "workers", "threads", "git_branch", "log_level"):
        assert str(getattr(settings, attr)) == documented[attr], attr
    for attr in ("git_head_ttl", "render_timeout", "git_push_attempts", "max_body_bytes"):
        assert getattr(settings, attr) == float(documented[attr]), attr
    assert settings.data_dir == tmp_path / "var"
    assert settings.database_url == f"sqlite:///{tmp_path / 'var' / 'stageflow.db'}"
    assert settings.git_url == str(tmp_path / "var" / "gitops.git")
    assert settings.embedded_remote
    assert settings.admin_token is None and settings.prometheus_url is None
    assert (settings.seed_dir / "stageflow.yaml").is_file()


def test_blank_values_count_as_unset():
    settings = Settings.from_env({"STAGEFLOW_PORT": "  ", "STAGEFLOW_ADMIN_TOKEN": ""})
    assert settings.port == 8080 and settings.admin_token is None


def test_overrides_win_over_the_environment(tmp_path: Path):
    settings = Settings.from_env({"STAGEFLOW_PORT": "9000"}, port=9100, data_dir=tmp_path)
    assert settings.port == 9100
    assert settings.git_url == str(tmp_path / "gitops.git")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STAGEFLOW_PORT", "0"),
        ("STAGEFLOW_PORT", "99999"),
        ("STAGEFLOW_PORT", "abc"),
        ("STAGEFLOW_PORT", "80.5"),
        ("STAGEFLOW_PORT", "-1"),
        ("STAGEFLOW_WORKERS", "0"),
        ("STAGEFLOW_THREADS", "1000"),
        ("STAGEFLOW_GIT_HEAD_TTL", "-1"),
        ("STAGEFLOW_GIT_HEAD_TTL", "nan"),
        ("STAGEFLOW_GIT_HEAD_TTL", "soon"),
        ("STAGEFLOW_GIT_PUSH_ATTEMPTS", "0"),
        ("STAGEFLOW_RENDER_TIMEOUT", "inf"),
        ("STAGEFLOW_MAX_BODY_BYTES", "12"),
        ("STAGEFLOW_ADMIN_TOKEN", "short"),
        ("STAGEFLOW_LOG_LEVEL", "LOUD"),
        ("STAGEFLOW_LOG_LEVEL", "10"),
        ("STAGEFLOW_GIT_BRANCH", "-x"),
        ("STAGEFLOW_GIT_BRANCH", "a b"),
        ("STAGEFLOW_GIT_BRANCH", "a..b"),
        ("STAGEFLOW_DATABASE_URL", "not a url"),
        ("STAGEFLOW_DATABASE_URL", "nosuchdb://host/db"),
        ("STAGEFLOW_PROMETHEUS_URL", "prometheus:9090"),
        ("STAGEFLOW_FLAGD_FRACTIONAL", "murmur"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})

    assert name in str(raised.value)


def test_a_refused_secret_is_not_echoed():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"STAGEFLOW_ADMIN_TOKEN": "tiny-secret"})
    assert "tiny-secret" not in str(raised.value)

    with pytest.raises(SettingsError) as database:
        Settings.from_env({"STAGEFLOW_DATABASE_URL": "postgresql+nodriver://u:hunter2@db/x"})
    assert "hunter2" not in str(database.value)
