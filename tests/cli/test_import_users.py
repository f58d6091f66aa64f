"""`python -m cli import-users FILE` as an operator runs it: all lines or none, existing
emails skipped (a second run changes nothing), bad lines named by number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bcrypt
import httpx
from sqlalchemy import select

from core.db import worker_session
from models import PluginAccount, User
from tests.api.test_plugin_api import wait_for_account
from tests.conftest import ROOT, ServiceProcess
from tests.fakes.plugin_api import FakePluginApi

PASSWORD = "correct horse battery staple"


def run_import(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "import-users", str(path)],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_lines(path: Path, *records: dict | str) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def stored_users() -> list[dict]:
    with worker_session() as session:
        users = session.scalars(select(User).order_by(User.email)).all()
        return [
            {c.key: getattr(user, c.key) for c in User.__mapper__.column_attrs} for user in users
        ]


def legacy_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


async def test_import_twice_changes_nothing_the_second_time(
    tmp_path: Path,
    client: httpx.AsyncClient,
    celery_worker: ServiceProcess,
    fake_plugin_api: FakePluginApi,
) -> None:
    source = write_lines(
        tmp_path / "users.jsonl",
        {
            "email": "XiaoMing@Example.com",
            "username": "小明",
            "hashed_password": legacy_hash(PASSWORD),
            "full_name": "王小明",
            "plan": "enterprise",
            "created_at": "2024-03-01T08:00:00",
            "is_active": True,
        },
        "",
        {"email": "ada@example.com", "username": "ＡＤＡ", "plan": "pro"},
        {"email": "grace.hopper@example.com"},
    )

    first = run_import(source)
    assert first.returncode == 0, first.stderr
    assert "imported 3 users, skipped 0" in first.stdout
    users = {user["email"]: user for user in stored_users()}
    assert set(users) == {"xiaoming@example.com", "ada@example.com", "grace.hopper@example.com"}
    ming = users["xiaoming@example.com"]
    assert (ming["username"], ming["plan"], ming["full_name"]) == ("小明", "max", "王小明")
    assert ming["created_at"].isoformat() == "2024-03-01T08:00:00+00:00"
    assert ming["password_hash"].startswith("$2b$")
    assert (users["ada@example.com"]["username"], users["ada@example.com"]["plan"]) == (
        "ADA",
        "pro",
    )
    grace = users["grace.hopper@example.com"]
    assert grace["username"] == "grace.hopper" and grace["password_hash"] is None
    assert grace["plan"] == "free"
    assert all(u["quota_period_start_at"] and u["quota_reset_at"] for u in users.values())

    # Every imported user gets a plug-in-api account, as after a sign-up.
    for user in users.values():
        await wait_for_account(user["id"], "active")
    assert len(fake_plugin_api.seen_at("POST", "/api/users")) == 3

    before = stored_users()
    second = run_import(source)
    assert second.returncode == 0, second.stderr
    assert "imported 0 users, skipped 3 already here" in second.stdout
    assert "skipped xiaoming@example.com" in second.stdout
    assert stored_users() == before
    with worker_session() as session:
        assert len(session.scalars(select(PluginAccount)).all()) == 3

    # The earlier system's password signs in, and the hash becomes Argon2id.
    login = await client.post(
        "/v1/auth/login", json={"email": "xiaoming@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    with worker_session() as session:
        stored = session.scalar(select(User.password_hash).where(User.id == ming["id"]))
    assert stored is not None and stored.startswith("$argon2id$")


def test_bad_lines_are_named_and_nothing_is_imported(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "users.jsonl",
        {"email": "fine@example.com", "username": "fine"},
        "{not json",
        {"email": "not-an-email"},
        {"email": "plan@example.com", "plan": "platinum"},
        {"email": "name@example.com", "username": "a b"},
        {"email": "hash@example.com", "hashed_password": "5f4dcc3b5aa765d61d8327deb882cf99"},
        {"email": "FINE@example.com"},
        {"email": "case@example.com", "username": "FINE"},
        "[1, 2]",
        {"username": "nomail"},
    )
    result = run_import(source)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if ": line " in line]
    assert [line.split(":")[1].strip() for line in errors] == [f"line {n}" for n in range(2, 11)]
    assert "line 2: not JSON" in result.stderr
    assert "line 3: email:" in result.stderr
    assert "line 4: plan: unknown plan 'platinum'" in result.stderr
    assert "line 5: username:" in result.stderr
    assert "line 6: hashed_password: not a bcrypt" in result.stderr
    assert "line 7: email fine@example.com again (line 1)" in result.stderr
    assert "line 8: username FINE again (line 1)" in result.stderr
    assert "line 9: not a JSON object" in result.stderr
    assert "line 10: email: Field required" in result.stderr
    assert "nothing imported" in result.stderr
    assert stored_users() == []


def test_a_username_taken_here_stops_the_whole_file(tmp_path: Path, make_user) -> None:
    existing = make_user(email="owner@example.com")
    with worker_session() as session:
        taken = session.scalar(select(User.username).where(User.id == existing.id))
    assert taken is not None
    source = write_lines(
        tmp_path / "users.jsonl",
        {"email": "new@example.com"},
        {"email": "clash@example.com", "username": taken.upper()},
    )
    result = run_import(source)
    assert result.returncode == 1
    assert f"line 2: username {taken.upper()} is taken" in result.stderr
    assert [user["email"] for user in stored_users()] == ["owner@example.com"]
