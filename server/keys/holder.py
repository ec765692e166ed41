"""The process's current key ring, swapped whole when the key set changes."""

from __future__ import annotations

from .ring import KeyRing


class KeyRingHolder:
    def __init__(self, ring: KeyRing) -> None:
        self.current = ring
