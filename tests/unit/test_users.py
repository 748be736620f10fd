"""Users file, passwords, tokens, the access rule and `elderwatch users`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from dispatch.access import may_see
from dispatch.desk import HouseholdDesk
from dispatch.tickets import open_ticket
from elderwatch.users import UserStore, UsersError
from schemas.households import Household
from schemas.users import User

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "a long enough password"


def test_password_and_tokens_are_stored_as_hashes_only(tmp_path):
    store = UserStore(tmp_path / "users.json")
    store.add(User(user_id="w-1", role="staff"), password=PASSWORD)
    token = store.issue_token("w-1")
    text = (tmp_path / "users.json").read_text()
    assert PASSWORD not in text and token not in text and "$argon2id$" in text
    assert os.stat(tmp_path / "users.json").st_mode & 0o077 == 0  # nobody else may read it
    assert store.check_password("w-1", PASSWORD).user_id == "w-1"
    assert store.check_password("w-1", PASSWORD + "x") is None
    assert store.check_password("nobody", PASSWORD) is None
    assert store.by_token(token).user_id == "w-1" and store.by_token(token[:-1]) is None


def test_a_second_store_sees_changes_without_restart(tmp_path):
    path = tmp_path / "users.json"
    worker_view = UserStore(path)
    assert worker_view.get("s-1") is None
    UserStore(path).add(User(user_id="s-1", role="supervisor", communities=("north",)), password=PASSWORD)
    assert worker_view.get("s-1").communities == ("north",)
    UserStore(path).add(User(user_id="s-1", role="supervisor", communities=("north",), disabled=True), replace=True)
    assert worker_view.get("s-1") is None and worker_view.check_password("s-1", PASSWORD) is None


def test_refusals(tmp_path):
    store = UserStore(tmp_path / "users.json")
    store.add(User(user_id="w-1", role="staff"), password=PASSWORD)
    with pytest.raises(UsersError, match="exists"):
        store.add(User(user_id="w-1", role="staff"), password=PASSWORD)
    with pytest.raises(UsersError, match="at least 10"):
        store.add(User(user_id="w-2", role="staff"), password="short")
    with pytest.raises(UsersError, match="no user"):
        store.issue_token("w-9")
    with pytest.raises(ValidationError, match="utility_id"):
        User(user_id="water-co", role="utility")
    with pytest.raises(ValidationError, match="only a supervisor"):
        User(user_id="w-3", role="staff", communities=("north",))
    (tmp_path / "bad.json").write_text('{"users": [{"user_id": "x y", "role": "staff"}]}')
    with pytest.raises(UsersError, match="not a users file"):
        UserStore(tmp_path / "bad.json").get("x")
    replaced = store.add(User(user_id="w-1", role="staff", language="en"), replace=True)  # keeps the password
    assert replaced is None and store.check_password("w-1", PASSWORD).language == "en"


def _desk(community: str, *, primary: str = "w-1", supervisor: str | None = None, chain=()) -> HouseholdDesk:
    roster = Household(household_id="hh-1", community=community,
                       staff={"primary_worker": primary, "supervisor": supervisor})
    tickets = {}
    if chain:
        from datetime import datetime, timezone
        t = open_ticket("hh-1/inactivity/x", household_id="hh-1", kind="inactivity", severity="high", chain=chain,
                        at=datetime(2026, 3, 1, tzinfo=timezone.utc))
        tickets = {t.ticket_id: t}
    return HouseholdDesk(household_id="hh-1", roster=roster, tickets=tickets)


@pytest.mark.parametrize(("user", "desk", "allowed"), [
    (User(user_id="w-1", role="staff"), _desk("north"), True),                       # named primary
    (User(user_id="w-2", role="staff"), _desk("north"), False),                      # a colleague elsewhere
    (User(user_id="duty-desk", role="staff"), _desk("north", chain=("duty-desk",)), True),  # a ticket was sent to them
    (User(user_id="s-1", role="supervisor"), _desk("north", supervisor="s-1"), True),
    (User(user_id="s-2", role="supervisor", communities=("north",)), _desk("north"), True),
    (User(user_id="s-3", role="supervisor", communities=("south",)), _desk("north"), False),
    (User(user_id="w-1", role="operator"), _desk("north"), False),                   # the role decides, not the id
    (User(user_id="w-1", role="utility", utility_id="u"), _desk("north"), False),
    (User(user_id="w-1", role="staff", disabled=True), _desk("north"), False),
], ids=["primary", "other-staff", "duty-desk-chain", "named-supervisor", "community-supervisor",
        "other-community-supervisor", "operator", "utility", "disabled"])
def test_who_may_see_a_household(user, desk, allowed):
    assert may_see(user, desk) is allowed


def test_users_command(tmp_path):
    path = tmp_path / "users.json"

    def run(*args, stdin=""):
        return subprocess.run([sys.executable, "-m", "elderwatch.cli", "users", "--file", str(path), *args],
                              cwd=REPO, input=stdin, capture_output=True, text=True)

    assert run("add", "w-1", "--role", "staff", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    assert run("add", "s-1", "--role", "supervisor", "--community", "north", "--community", "east",
               "--language", "en", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    assert run("add", "water-co", "--role", "utility", "--utility", "water-co", "--no-password").returncode == 0
    token = run("token", "water-co").stdout.strip()
    assert UserStore(path).by_token(token).utility_id == "water-co"
    bad = run("add", "x", "--role", "utility", "--no-password")
    assert bad.returncode == 2 and "utility_id" in bad.stderr and "Traceback" not in bad.stderr
    listing = run("list").stdout
    assert "north,east" in listing and "$argon2" not in listing and token not in listing
    assert run("remove", "w-1").returncode == 0 and UserStore(path).get("w-1") is None
    assert json.loads(path.read_text())["schema_version"] == 1


def test_with_a_users_file_the_development_header_means_nothing(tmp_path):
    from elderwatch.settings import Settings
    from streams.staff_api import StaffAuth

    store = UserStore(tmp_path / "users.json")
    store.add(User(user_id="s-1", role="supervisor", communities=("north",)), password=PASSWORD)
    token = store.issue_token("s-1")
    auth = StaffAuth.from_settings(Settings(users_file=tmp_path / "users.json"))
    assert auth.caller({"X-Staff-Id": "s-1"}) is None
    assert auth.caller({"Authorization": f"Bearer {token}"}).communities == ("north",)
    assert StaffAuth.from_settings(Settings()).caller({"X-Staff-Id": "s-1"}).role == "staff"  # development, no files


@pytest.mark.parametrize(("variable", "content", "message"), [
    ("ELDERWATCH_USERS_FILE", '{"users": [{"user_id": "w 1", "role": "staff"}]}', "bad ELDERWATCH_USERS_FILE: .*users.0.user_id"),
    ("ELDERWATCH_CHANNELS_FILE", '{"channels": {"a": {"type": "carrier-pigeon"}}}', "bad ELDERWATCH_CHANNELS_FILE"),
], ids=["users", "channels"])
def test_the_worker_refuses_a_bad_people_file_in_one_line(tmp_path, variable, content, message):
    import re

    (tmp_path / "file.json").write_text(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERWATCH_")}
    result = subprocess.run([sys.executable, "-m", "elderwatch.cli", "worker"], cwd=REPO, capture_output=True,
                            text=True, env={**env, variable: str(tmp_path / "file.json")}, timeout=60)
    assert result.returncode == 2 and re.search(message, result.stderr) and len(result.stderr.splitlines()) == 1, \
        result.stderr
