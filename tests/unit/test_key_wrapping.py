"""Private keys at rest: ``KeyWrapper`` (AES-256-GCM bound to the kid) and where its secret comes from."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path
from typing import Any

import pytest

from server.keys.errors import KeyMaterialError
from server.keys.secret import resolve_secret
from server.keys.wrapping import KeyWrapper
from server.settings import Settings

SECRET = "the-first-key-encryption-secret-0123456789"
OTHER_SECRET = "the-second-key-encryption-secret-987654321"
PRIVATE_KEY = b"-----BEGIN PRIVATE KEY-----\nnot really a key, but bytes all the same\n-----END PRIVATE KEY-----\n"
KID = "kid-2024-01-a"


# KeyWrapper.


def test_a_wrapped_key_unwraps_to_the_same_bytes() -> None:
    wrapper = KeyWrapper(SECRET)

    blob = wrapper.wrap(PRIVATE_KEY, associated=KID)

    assert PRIVATE_KEY not in blob
    assert wrapper.unwrap(blob, associated=KID) == PRIVATE_KEY


def test_a_wrapper_built_from_the_same_secret_unwraps_it() -> None:
    blob = KeyWrapper(SECRET).wrap(PRIVATE_KEY, associated=KID)

    assert KeyWrapper(SECRET).unwrap(blob, associated=KID) == PRIVATE_KEY


def test_another_secret_does_not_unwrap_and_the_error_names_the_kid() -> None:
    blob = KeyWrapper(SECRET).wrap(PRIVATE_KEY, associated=KID)

    with pytest.raises(KeyMaterialError, match=KID) as caught:
        KeyWrapper(OTHER_SECRET).unwrap(blob, associated=KID)

    assert "secret" in str(caught.value)


def test_a_blob_copied_to_another_kid_does_not_unwrap() -> None:
    wrapper = KeyWrapper(SECRET)
    blob = wrapper.wrap(PRIVATE_KEY, associated="kid-a")

    with pytest.raises(KeyMaterialError, match="kid-b"):
        wrapper.unwrap(blob, associated="kid-b")


@pytest.mark.parametrize(
    "position", [1, 12, 13, 20, -1], ids=["nonce-start", "nonce-end", "ciphertext", "middle", "tag"]
)
def test_a_tampered_blob_does_not_unwrap(position: int) -> None:
    wrapper = KeyWrapper(SECRET)
    blob = bytearray(wrapper.wrap(PRIVATE_KEY, associated=KID))
    blob[position] ^= 0x01

    with pytest.raises(KeyMaterialError, match=KID):
        wrapper.unwrap(bytes(blob), associated=KID)


@pytest.mark.parametrize("length", [0, 1, 13, 28], ids=lambda n: f"{n}-bytes")
def test_a_truncated_blob_is_corrupt(length: int) -> None:
    wrapper = KeyWrapper(SECRET)
    blob = wrapper.wrap(PRIVATE_KEY, associated=KID)

    with pytest.raises(KeyMaterialError, match=f"{KID} is corrupt"):
        wrapper.unwrap(blob[:length], associated=KID)


@pytest.mark.parametrize("version", [b"\x00", b"\x02", b"\xff"])
def test_a_blob_of_another_version_is_corrupt(version: bytes) -> None:
    wrapper = KeyWrapper(SECRET)
    blob = wrapper.wrap(PRIVATE_KEY, associated=KID)

    with pytest.raises(KeyMaterialError, match=f"{KID} is corrupt"):
        wrapper.unwrap(version + blob[1:], associated=KID)


def test_two_wraps_of_the_same_key_differ() -> None:
    wrapper = KeyWrapper(SECRET)

    first = wrapper.wrap(PRIVATE_KEY, associated=KID)
    second = wrapper.wrap(PRIVATE_KEY, associated=KID)

    assert first != second
    assert first[1:13] != second[1:13]  # a fresh nonce each time
    assert wrapper.unwrap(first, associated=KID) == wrapper.unwrap(second, associated=KID) == PRIVATE_KEY


def test_the_key_id_is_stable_for_a_secret() -> None:
    assert KeyWrapper(SECRET).key_id == KeyWrapper(SECRET).key_id


def test_the_key_id_differs_between_secrets() -> None:
    assert KeyWrapper(SECRET).key_id != KeyWrapper(OTHER_SECRET).key_id


def test_the_key_id_does_not_reveal_the_secret() -> None:
    key_id = KeyWrapper(SECRET).key_id

    assert SECRET not in key_id
    assert key_id not in SECRET
    assert SECRET[:8] not in key_id


# resolve_secret: the explicit secret, the embedded file, or an error.


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    return dataclasses.replace(Settings(), keys_dir=tmp_path / "keys", **changes)


def write_secret_file(settings: Settings, value: str) -> Path:
    settings.keys_dir.mkdir(parents=True, exist_ok=True)
    path = settings.keys_dir / "secret"
    path.write_text(value, encoding="utf-8")
    return path


@pytest.mark.parametrize("keys_exist", [False, True])
def test_an_explicit_secret_wins(tmp_path: Path, keys_exist: bool) -> None:
    settings = settings_for(tmp_path, keys_secret=SECRET)
    write_secret_file(settings, OTHER_SECRET + "\n")

    assert resolve_secret(settings, keys_exist=keys_exist) == SECRET


def test_an_explicit_secret_creates_no_file(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, keys_secret=SECRET)

    resolve_secret(settings, keys_exist=False)

    assert not settings.keys_dir.exists()


def test_without_a_secret_or_keys_one_is_generated_with_mode_0600(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)

    secret = resolve_secret(settings, keys_exist=False)

    path = tmp_path / "keys" / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8").strip() == secret
    assert len(secret) >= 32


def test_the_generated_secret_is_used_again_on_the_next_start(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    first = resolve_secret(settings, keys_exist=False)

    assert resolve_secret(settings, keys_exist=True) == first
    assert resolve_secret(settings, keys_exist=False) == first


def test_generated_secrets_differ_between_installations(tmp_path: Path) -> None:
    first = resolve_secret(settings_for(tmp_path / "a"), keys_exist=False)
    second = resolve_secret(settings_for(tmp_path / "b"), keys_exist=False)

    assert first != second


def test_an_existing_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    write_secret_file(settings, f"{SECRET}\n")

    assert resolve_secret(settings, keys_exist=True) == SECRET


def test_keys_without_a_secret_are_an_error_not_a_new_secret(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)

    with pytest.raises(KeyMaterialError, match="OSTIARY_KEYS_SECRET"):
        resolve_secret(settings, keys_exist=True)

    assert not (tmp_path / "keys" / "secret").exists()


@pytest.mark.parametrize("keys_exist", [False, True])
def test_a_too_short_secret_file_is_refused_and_kept(tmp_path: Path, keys_exist: bool) -> None:
    settings = settings_for(tmp_path)
    path = write_secret_file(settings, "short\n")

    with pytest.raises(KeyMaterialError, match="32"):
        resolve_secret(settings, keys_exist=keys_exist)

    assert path.read_text(encoding="utf-8") == "short\n"
