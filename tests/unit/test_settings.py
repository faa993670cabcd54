"""Settings: environment over TOML file, one line per mistake, secrets never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.policy import Policy
from streamer.settings import DEFAULT_ROUTES, Delivery, SettingsError, load_settings

PASSWORD = "CANARY-pa55w0rd"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("STREAMER_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = load_settings()
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.delivery is Delivery.EXACTLY_ONCE
    assert s.routes == DEFAULT_ROUTES
    assert s.routes[0].raw == "conductor.workflow.raw"
    assert s.quarantine_topic == "conductor.quarantine"
    assert s.metrics_port == 9400
    assert s.keys.replaced_by(Policy.PUBLIC) == {"_secrets", "_masked"}
    assert s.keys.replaced_by(Policy.ARCHIVE) == {"_secrets"}


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "streamer.toml"
    config.write_text(
        'group_id = "from-file"\nbatch_size = 7\n[kafka]\n"security.protocol" = "SSL"\n'
    )
    monkeypatch.setenv("STREAMER_GROUP_ID", "from-env")
    s = load_settings(config)
    assert s.group_id == "from-env"
    assert s.batch_size == 7
    assert s.client_config()["security.protocol"] == "SSL"


def test_routes_and_keys_from_json_env(monkeypatch: pytest.MonkeyPatch) -> None:
    routes = [{"name": "w", "raw": "a.raw", "public": "a.pub", "archive": "a.arc"}]
    monkeypatch.setenv("STREAMER_ROUTES", json.dumps(routes))
    monkeypatch.setenv("STREAMER_SECRET_KEYS", '["_secrets", "password"]')
    s = load_settings()
    assert [r.raw for r in s.routes] == ["a.raw"]
    assert "password" in s.keys.secret_keys


def test_one_line_per_mistake_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMER_BATCH_SIZE", "0")
    monkeypatch.setenv("STREAMER_DELIVERY", "sometimes")
    monkeypatch.setenv("STREAMER_METRICS_PORT", "99999")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert any(line.startswith("setting batch_size (STREAMER_BATCH_SIZE)") for line in lines)
    assert any(line.startswith("setting delivery (STREAMER_DELIVERY)") for line in lines)
    assert any(line.startswith("setting metrics_port (STREAMER_METRICS_PORT)") for line in lines)


def test_topics_must_be_valid_and_distinct(monkeypatch: pytest.MonkeyPatch) -> None:
    routes = [{"name": "w", "raw": "same", "public": "same", "archive": "bad name!"}]
    monkeypatch.setenv("STREAMER_ROUTES", json.dumps(routes))
    with pytest.raises(SettingsError, match="routes"):
        load_settings()


def test_overlapping_keys_are_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMER_MASKED_KEYS", '["_secrets"]')
    with pytest.raises(SettingsError, match="both secret and masked"):
        load_settings()


def test_passwords_are_secrets_everywhere_but_the_client_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STREAMER_KAFKA", json.dumps({"sasl.password": PASSWORD}))
    s = load_settings()
    assert PASSWORD not in repr(s)
    assert PASSWORD not in str(s)
    assert PASSWORD not in s.model_dump_json()
    assert s.client_config()["sasl.password"] == PASSWORD
    monkeypatch.setenv("STREAMER_KAFKA", json.dumps({"sasl.password": [PASSWORD]}))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert PASSWORD not in str(caught.value)


def test_unreadable_config_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"config file .*missing\.toml"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(bad)
