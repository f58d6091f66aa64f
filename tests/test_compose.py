"""docker-compose.yml declares the whole stack; no Docker engine runs here, so we
check the file itself: services, health checks, configuration names, and that
every command it runs exists in the project."""

from __future__ import annotations

import importlib
import importlib.util
import re

import yaml

from cli.stack import api_command
from core.config import Settings
from tests.conftest import ROOT

REQUIRED = {"postgres", "redis", "api", "worker", "beat", "flower"}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_role_is_declared_with_a_health_check() -> None:
    services = _compose()["services"]
    assert REQUIRED <= set(services)
    for name in REQUIRED:
        assert "healthcheck" in services[name], f"{name} has no health check"
        assert services[name]["healthcheck"]["test"], name


def test_commands_exist_in_the_project() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        command = service.get("command")
        if not command or service.get("image", "").startswith(("postgres", "redis")):
            continue
        if command[0] == "uvicorn":
            module, attr = command[1].split(":")
            assert importlib.util.find_spec(module), command
            assert hasattr(importlib.import_module(module), attr), command
            # The server options `make run` and the tests use (the header timeout lives in
            # the --http protocol class), so the containers serve the same way.
            local = api_command("0.0.0.0", 8000)
            for option in ("--loop", "--http", "--no-access-log", "--no-proxy-headers"):
                assert option in command, (name, option)
                if option in ("--loop", "--http"):
                    value = command[command.index(option) + 1]
                    assert value == local[local.index(option) + 1], (name, option)
        elif command[0] == "celery":
            app_module = command[command.index("-A") + 1]
            assert importlib.util.find_spec(app_module), command
            assert command[command.index("-A") + 2] in {"worker", "beat", "flower"}
            if "--queues" in " ".join(command):
                queues = re.search(r"--queues=([\w,]+)", " ".join(command)).group(1).split(",")
                assert set(queues) <= {"chat", "default", "maintenance"}, queues
        elif command[:3] == ["python", "-m", "cli"]:
            from cli.__main__ import build_parser

            build_parser().parse_args(command[3:])
        else:
            raise AssertionError(f"{name}: unknown command {command}")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --locked" in dockerfile


def test_environment_names_are_settings() -> None:
    known = {name.upper() for name in Settings.model_fields}
    app_env = _compose()["x-app"]["environment"]
    unknown = set(app_env) - known
    assert not unknown, f"compose sets names the settings do not read: {unknown}"
