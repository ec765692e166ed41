from __future__ import annotations

# Chromium for the single-page app's test, as the page tests of tests/flows get it.
from tests.flows.conftest import chromium

__all__ = ["chromium"]
