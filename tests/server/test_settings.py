"""Settings: environment, settings files, precedence, validation, secrets kept out of sight."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragzip.core.errors import ConfigError
from ragzip.server import Settings, create_app
from ragzip.server.builders import build_counter


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGZIP_UPSTREAM_BASE_URL", "http://upstream:9000/v1/")
    monkeypatch.setenv("RAGZIP_MAX_RETRIES", "5")
    monkeypatch.setenv("RAGZIP_FALLBACK_TO_PASSTHROUGH", "true")
    monkeypatch.setenv("RAGZIP_COMPRESSORS", '["identity", "mig"]')
    s = Settings()
    assert s.upstream_base_url == "http://upstream:9000/v1"
    assert s.max_retries == 5 and s.fallback_to_passthrough
    assert s.compressors == ["identity", "mig"]


def test_toml_file_with_environment_and_arguments_on_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "proxy.toml"
    file.write_text(
        '[server]\nupstream_base_url = "http://from-file/v1"\ndefault_budget = "256"\n'
        "max_retries = 1\nread_timeout = 7.5\n"
    )
    monkeypatch.setenv("RAGZIP_MAX_RETRIES", "3")
    s = Settings.load(file, read_timeout=1.0)
    assert s.upstream_base_url == "http://from-file/v1"
    assert s.default_budget == "256" and s.budget.max_tokens == 256
    assert s.max_retries == 3  # the environment outranks the file
    assert s.read_timeout == 1.0  # arguments outrank both
    monkeypatch.setenv("RAGZIP_SETTINGS_FILE", str(file))
    assert Settings.load().upstream_base_url == "http://from-file/v1"


def test_json_and_env_files(tmp_path: Path) -> None:
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"default_compressor": "truncate", "port": 9001}))
    assert Settings.load(js).port == 9001
    env = tmp_path / "proxy.env"
    env.write_text("RAGZIP_PORT=9002\nRAGZIP_AUTH_TOKEN=tok\n")
    loaded = Settings.load(env)
    assert loaded.port == 9002
    assert loaded.auth_token is not None and loaded.auth_token.get_secret_value() == "tok"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('upstream_base_url = "ftp://x"', "http"),
        ('default_budget = "lots"', "cannot parse budget"),
        ("no_such_setting = 1", "no_such_setting"),
        ("retry_statuses = [404]", "5xx"),
        ("max_request_bytes = 3", "max_request_bytes"),
        ("this is not toml", "cannot read"),
    ],
)
def test_invalid_files_raise_config_error(tmp_path: Path, content: str, message: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(content)
    with pytest.raises(ConfigError, match=message):
        Settings.load(file)


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml")
    other = tmp_path / "s.yaml"
    other.write_text("port: 1")
    with pytest.raises(ConfigError, match=r"\.toml, \.json or \.env"):
        Settings.load(other)


def test_secrets_never_shown() -> None:
    s = Settings(
        upstream_api_key="sk-upstream-secret",
        auth_token="proxy-secret",
        feature_cache_redis_url="redis://:redis-secret@cache:6379/0",
    )
    for text in (repr(s), str(s), json.dumps(s.public_dict())):
        assert "sk-upstream-secret" not in text and "proxy-secret" not in text
        assert "redis-secret" not in text
    assert s.public_dict()["upstream_api_key"] == "set"
    assert s.public_dict()["feature_cache_redis_url"] == "set"
    assert "redis://:redis-secret@cache:6379/0" in s.secret_values()


def test_unknown_default_compressor_fails_at_create() -> None:
    with pytest.raises(KeyError, match="unknown compressor 'nope'"):
        create_app(Settings(default_compressor="nope"))


def test_tokenizer_folder_builds_a_counter(tmp_path: Path) -> None:
    from ragzip.weights import minilm_dir

    counter = build_counter(Settings(tokenizer=str(minilm_dir())))
    assert counter.count("hello world") == 2
    with pytest.raises(ConfigError, match="cannot load a tokenizer"):
        build_counter(Settings(tokenizer=str(tmp_path)))


def test_package_imports_without_the_server_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = None\n"
        "sys.modules['uvicorn'] = None\n"
        "import ragzip.server\n"
        "print(ragzip.server.Settings().port)\n"
        "try:\n"
        "    ragzip.server.create_app\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "8080",
        "the proxy needs 'fastapi': pip install 'ragzip[server]'",
    ]
