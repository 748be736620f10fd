"""The worker refuses to start with faust-streaming or aiokafka versions that streams/recovery.py (which patches
their private internals) was not verified with: one line, exit 2, before anything starts."""

from __future__ import annotations

import pytest

from elderwatch.worker import UNVERIFIED_VERSIONS_ENV, check_versions, refuse_unverified_versions
from streams.recovery import VERIFIED_WITH

VERIFIED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


def installed(versions: dict[str, str]):
    def version(package: str) -> str:
        from importlib.metadata import PackageNotFoundError

        if package not in versions:
            raise PackageNotFoundError(package)
        return versions[package]
    return version


def test_the_verified_versions_are_the_installed_ones():
    # the venv is installed from requirements.lock: if this fails, the lock and VERIFIED_WITH disagree
    assert check_versions() is None
    assert VERIFIED_WITH == VERIFIED


def test_matching_versions_pass():
    assert check_versions(VERIFIED, installed=installed(dict(VERIFIED))) is None


@pytest.mark.parametrize("versions, named", [
    ({"faust-streaming": "0.16.0", "aiokafka": "0.14.0"}, "faust-streaming 0.16.0 (verified: 0.15.3)"),
    ({"faust-streaming": "0.15.3", "aiokafka": "0.12.0"}, "aiokafka 0.12.0 (verified: 0.14.0)"),
    ({"faust-streaming": "0.15.3"}, "aiokafka not installed (verified: 0.14.0)"),
])
def test_another_version_is_named_in_one_line(versions, named):
    problem = check_versions(VERIFIED, installed=installed(versions))
    assert problem is not None and named in problem and "\n" not in problem
    assert "requirements.lock" in problem and UNVERIFIED_VERSIONS_ENV in problem


def test_the_worker_refuses_to_start_with_exit_2_and_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        refuse_unverified_versions({}, verified=VERIFIED,
                                   installed=installed({"faust-streaming": "0.16.0", "aiokafka": "0.14.0"}))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("elderwatch worker: faust-streaming 0.16.0")


def test_the_override_starts_with_a_warning(capsys, caplog):
    refuse_unverified_versions({UNVERIFIED_VERSIONS_ENV: "1"}, verified=VERIFIED,
                               installed=installed({"faust-streaming": "0.16.0", "aiokafka": "0.14.0"}))
    assert capsys.readouterr().err == ""
    assert "unverified versions" in caplog.text


def test_only_1_overrides():
    with pytest.raises(SystemExit):
        refuse_unverified_versions({UNVERIFIED_VERSIONS_ENV: "yes"}, verified=VERIFIED,
                                   installed=installed({"faust-streaming": "0.16.0", "aiokafka": "0.14.0"}))
