"""The Mosquitto files `evpark sites add|remove` keep: hashes Mosquitto 2 reads, one ACL block per
site, nothing else touched (the real broker reads them in tests/unit/mqtt/test_broker_acl.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from evpark.broker_access import BrokerFileError, BrokerFiles, cloud_acl, password_line, password_matches


def test_a_password_line_is_pbkdf2_sha512_in_mosquittos_format_and_salted() -> None:
    line = password_line("garage-north", "s3cret")
    user, hashed = line.split(":", 1)
    assert user == "garage-north" and hashed.startswith("$7$101$")
    assert password_matches(line, "s3cret") and not password_matches(line, "guess")
    assert line != password_line("garage-north", "s3cret"), "a fresh salt each time"


def test_a_line_written_by_mosquitto_passwd_is_read_the_same_way(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run([tool, "-c", "-b", str(tmp_path / "pw"), "u", "pw-of-u"], check=True, capture_output=True,
                   timeout=30)
    line = (tmp_path / "pw").read_text().strip()
    assert password_matches(line, "pw-of-u") and not password_matches(line, "other")


def test_adding_and_removing_sites_keeps_the_other_users_and_blocks(tmp_path: Path) -> None:
    files = BrokerFiles(tmp_path / "passwd", tmp_path / "acl.conf", root="r")
    files.add_user("evpark-parking", "cloud")
    files.add_site("north", "n")
    files.add_site("south", "s")
    assert (tmp_path / "passwd").stat().st_mode & 0o777 == 0o600
    acl = (tmp_path / "acl.conf").read_text()
    assert acl.startswith(cloud_acl("r"))
    assert "topic write r/sites/north/up/#\ntopic write r/sites/north/status\ntopic read r/sites/north/down/command" \
        in acl
    with pytest.raises(BrokerFileError, match="has a user 'north' already"):
        files.add_site("north", "again")
    assert files.remove_site("north")
    assert not files.remove_site("north")
    users = [line.split(":")[0] for line in (tmp_path / "passwd").read_text().splitlines()]
    assert users == ["evpark-parking", "south"]
    acl = (tmp_path / "acl.conf").read_text()
    assert "north" not in acl and "user south" in acl and acl.startswith(cloud_acl("r"))
