"""LiteLLM proxy as the comparison: installed into its own venv (`bench/.litellm-venv`,
never a project dependency), run without a database, pointed at the same fake upstream."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.stack import Child, wait_until
from cli.embedded import free_port

VENV = Path(__file__).resolve().parent / ".litellm-venv"
INSTALL_TIMEOUT_SECONDS = 900
START_TIMEOUT_SECONDS = 120
MODEL = "deepseek-chat"


@dataclass
class LiteLLMProxy:
    child: Child
    url: str
    master_key: str
    version: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.master_key}"}

    def stop(self) -> None:
        self.child.stop()


def _executable() -> Path:
    return VENV / "bin" / "litellm"


def install() -> None:
    """Creates the venv on the first run; later runs reuse it."""
    if _executable().exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"],
        check=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )


def version() -> str:
    answer = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-c",
            "from importlib.metadata import version as v; print(v('litellm'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return answer.stdout.strip()


def start(workdir: Path, upstream_url: str, workers: int) -> LiteLLMProxy:
    master_key = "sk-bench-" + secrets.token_urlsafe(16)
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream_url}/v1\n"
        "      api_key: sk-bench\n"
        "general_settings:\n"
        f"  master_key: {master_key}\n"
    )
    port = free_port()
    env = {
        **os.environ,
        # Otherwise every start downloads a price list and waits on retries.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
    }
    env.pop("DATABASE_URL", None)
    log_path = workdir / "litellm.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                str(_executable()),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                str(workers),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    child = Child("litellm", process, log_path)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {master_key}"}
    try:
        wait_until(
            lambda: httpx.get(url + "/v1/models", headers=headers, timeout=2).status_code == 200,
            "LiteLLM proxy",
            START_TIMEOUT_SECONDS,
            process,
        )
    except RuntimeError:
        child.stop()
        raise RuntimeError(f"LiteLLM proxy did not start: {child.log_tail(800)}") from None
    # One warm request: its first call imports and builds the provider client.
    time.sleep(0.5)
    return LiteLLMProxy(child, url, master_key, version())
