"""Keyed pseudonyms: stable, unlinkable without the key, rotating when asked."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edge_runtime.errors import ConfigError
from edge_runtime.pseudonym import Pseudonymiser, load_or_create_secret

KEY = bytes(range(32))


def test_a_device_keeps_its_pseudonym_and_the_pseudonym_hides_the_id() -> None:
    p = Pseudonymiser(KEY)
    first = p("00000000deadbeef")
    assert first == p("00000000deadbeef") and first.startswith("s-") and len(first) == 18
    assert "deadbeef" not in first
    assert p("00000000deadbeee") != first


def test_another_key_gives_unrelated_pseudonyms() -> None:
    assert Pseudonymiser(KEY)("wearer-1") != Pseudonymiser(bytes(reversed(KEY)))("wearer-1")


def test_the_pseudonym_is_the_published_hmac() -> None:
    import hashlib
    import hmac

    expected = "s-" + hmac.new(KEY, b"0:wearer-1", hashlib.sha256).hexdigest()[:16]
    assert Pseudonymiser(KEY)("wearer-1") == expected


def test_rotation_changes_the_pseudonym_at_each_period() -> None:
    now = [86400.0 * 100 + 10]
    p = Pseudonymiser(KEY, rotation_s=86400, clock=lambda: now[0])
    day1 = p("wearer-1")
    now[0] += 3600
    assert p("wearer-1") == day1
    now[0] += 86400
    assert p("wearer-1") != day1
    now[0] -= 86400  # a clock set back a day gives that day's pseudonym again, as a fresh start would
    assert p("wearer-1") == day1 == Pseudonymiser(KEY, rotation_s=86400, clock=lambda: now[0])("wearer-1")


def test_the_secret_is_created_private_once_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "pseudonym.key"
    key = load_or_create_secret(path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == key


def test_a_damaged_secret_file_says_how_to_recover(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_text("not hex at all")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="delete it to make a new one"):
        load_or_create_secret(path)
    path.write_text("abcd")
    with pytest.raises(ConfigError, match="at least 16"):
        load_or_create_secret(path)
