from __future__ import annotations


class KeyMaterialError(Exception):
    """Key material is missing, wrong or corrupt; the message tells the operator what to do."""
