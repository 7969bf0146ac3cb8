"""Settings: environment variables, defaults, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, describe_error


def test_defaults_are_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_PATH", "m.onnx")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.model_path == Path("m.onnx")
    assert settings.ort_intra_op_threads == 1
    assert settings.host == "127.0.0.1"
    assert settings.api_token is None
    assert settings.cors_origin_list == []
    assert settings.workers == 1


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "MODEL_PATH": "x.onnx",
        "MAX_BATCH_SIZE": "8",
        "MAX_BODY_BYTES": "4096",
        "LOG_LEVEL": "DEBUG",
        "API_TOKEN": "s" * 20,
        "CORS_ORIGINS": "https://a, https://b",
        "HOST": "0.0.0.0",
        "PORT": "9000",
        "WORKERS": "2",
        "ACCESS_LOG": "true",
        "DOCS_ACCESS": "Public",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # type: ignore[call-arg]
    assert settings.max_batch_size == 8
    assert settings.max_body_bytes == 4096
    assert settings.log_level == "debug"
    assert settings.cors_origin_list == ["https://a", "https://b"]
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 9000, 2)
    assert settings.access_log is True
    assert settings.docs_access == "public"
    assert "s" * 20 not in repr(settings)  # the token never shows in logs


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"api_token": "short"}, "API_TOKEN"),
        ({"ort_intra_op_threads": 10_000}, "ORT_INTRA_OP_THREADS"),
        ({"max_batch_size": 0}, "MAX_BATCH_SIZE"),
        ({"max_body_bytes": 10}, "MAX_BODY_BYTES"),
        ({"port": 70000}, "PORT"),
        ({"log_level": "loud"}, "LOG_LEVEL"),
        ({"docs_access": "open"}, "DOCS_ACCESS"),
        ({"api_token": "t" * 16, "cors_origins": "*"}, "CORS_ORIGINS"),
        ({"max_connections": 64}, "MAX_CONNECTIONS (64) must exceed MAX_CONCURRENCY (64)"),
        ({"model_digest": "27d6d9c5"}, "MODEL_DIGEST"),  # shorter than a version
        ({"model_digest": "z" * 12}, "MODEL_DIGEST"),
        ({"max_header_bytes": 100}, "MAX_HEADER_BYTES"),
        ({"max_headers": 2}, "MAX_HEADERS"),
        ({"max_model_bytes": 3 << 30}, "MAX_MODEL_BYTES"),
        ({"timeout_keep_alive": 0}, "TIMEOUT_KEEP_ALIVE"),
        ({"timeout_headers": -1}, "TIMEOUT_HEADERS"),
        ({"timeout_body": 1e9}, "TIMEOUT_BODY"),
        ({"timeout_shutdown": 0}, "TIMEOUT_SHUTDOWN"),
        ({"error_backoff": -1}, "ERROR_BACKOFF"),
    ],
)
def test_unsafe_values_are_refused(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(model_path=Path("m.onnx"), **changes)  # type: ignore[arg-type]
    assert fragment in describe_error(info.value) or fragment in str(info.value)


def test_limits_have_safe_defaults_and_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODEL_PATH", "m.onnx")
    defaults = Settings()  # type: ignore[call-arg]
    assert defaults.max_header_bytes == 16384 and defaults.max_headers == 100
    assert defaults.max_concurrency < defaults.max_connections
    assert 0 < defaults.timeout_keep_alive < defaults.timeout_headers < defaults.timeout_body
    assert defaults.timeout_shutdown + 5 < 30  # preStop 5 s within Kubernetes' default 30 s
    assert defaults.model_digest is None
    monkeypatch.setenv("MODEL_DIGEST", " 27D6D9C56CC7 ")
    monkeypatch.setenv("TIMEOUT_BODY", "2.5")
    monkeypatch.setenv("MAX_CONCURRENCY", "8")
    changed = Settings()  # type: ignore[call-arg]
    assert changed.model_digest == "27d6d9c56cc7"
    assert changed.timeout_body == 2.5 and changed.max_concurrency == 8
    assert changed.model_options()["expected_digest"] == "27d6d9c56cc7"


def test_missing_model_path_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL_PATH", raising=False)
    with pytest.raises(ValidationError) as info:
        Settings()  # type: ignore[call-arg]
    assert describe_error(info.value) == "MODEL_PATH is not set"


def test_monitor_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_PATH", "m.onnx")
    defaults = Settings()  # type: ignore[call-arg]
    assert (defaults.monitor, defaults.monitor_window, defaults.out_of_range) == (True, 256, "warn")
    for key, value in {
        "MONITOR": "off",
        "MONITOR_WINDOW": "1024",
        "OUT_OF_RANGE": "REJECT",
    }.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # type: ignore[call-arg]
    assert (settings.monitor, settings.monitor_window, settings.out_of_range) == (
        False,
        1024,
        "reject",
    )


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"monitor_window": 8}, "MONITOR_WINDOW"),
        ({"monitor_window": 1 << 20}, "MONITOR_WINDOW"),
        ({"out_of_range": "drop"}, "OUT_OF_RANGE"),
    ],
)
def test_bad_monitor_settings_name_the_variable(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(model_path=Path("m.onnx"), **changes)  # type: ignore[arg-type]
    assert fragment in describe_error(info.value)


def test_model_poll_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_PATH", "m.onnx")
    assert Settings().model_poll_seconds == 0  # type: ignore[call-arg]  # off: SIGHUP only
    monkeypatch.setenv("MODEL_POLL_SECONDS", "2.5")
    assert Settings().model_poll_seconds == 2.5  # type: ignore[call-arg]
    for bad in ("0.01", "-1", "7200"):
        monkeypatch.setenv("MODEL_POLL_SECONDS", bad)
        with pytest.raises(ValidationError) as info:
            Settings()  # type: ignore[call-arg]
        assert describe_error(info.value).startswith("MODEL_POLL_SECONDS")
