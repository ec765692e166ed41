"""Where the key-encryption secret comes from.

``OSTIARY_KEYS_SECRET`` or ``OSTIARY_KEYS_SECRET_FILE`` when set. Otherwise, the embedded
default keeps one in ``<keys_dir>/secret`` (mode 0600), generated at first start, and
only while the database holds no key yet: a missing secret for existing keys is an error,
never a reason to make new keys.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from ..settings import Settings
from .errors import KeyMaterialError

log = logging.getLogger("ostiary.keys")


def secret_path(settings: Settings) -> Path:
    return settings.keys_dir / "secret"


def resolve_secret(settings: Settings, *, keys_exist: bool) -> str:
    """The key-encryption secret, generating the embedded one when that is safe."""
    if settings.keys_secret is not None:
        return settings.keys_secret
    path = secret_path(settings)
    existing = _read(path)
    if existing is not None:
        return existing
    if keys_exist:
        raise KeyMaterialError(
            f"signing keys exist in the database but there is no key-encryption secret: "
            f"set OSTIARY_KEYS_SECRET or OSTIARY_KEYS_SECRET_FILE to the secret they were "
            f"created with, or restore {path}"
        )
    return _generate(path, settings)


def _read(path: Path) -> str | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyMaterialError(f"cannot read the key-encryption secret {path}: {exc}") from None
    if len(value) < 32:
        raise KeyMaterialError(f"the key-encryption secret in {path} is shorter than 32 characters")
    return value


def _generate(path: Path, settings: Settings) -> str:
    value = secrets.token_urlsafe(32)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
        # Linked into place whole: a process starting at the same moment never reads half a file.
        os.link(draft, path)
    except FileExistsError:
        # Another process of this server generated it first: use theirs.
        existing = _read(path)
        assert existing is not None
        return existing
    except OSError as exc:
        raise KeyMaterialError(
            f"cannot create the key-encryption secret {path}: {exc.strerror}; "
            f"set OSTIARY_KEYS_DIR to a writable folder or set OSTIARY_KEYS_SECRET_FILE"
        ) from None
    finally:
        draft.unlink(missing_ok=True)
    if settings.shared_database:
        log.warning(
            "generated a key-encryption secret in %s; with PostgreSQL every server machine needs "
            "the same one: set OSTIARY_KEYS_SECRET_FILE in production",
            path,
        )
    else:
        log.info("generated a key-encryption secret in %s (back it up with the database)", path)
    return value
