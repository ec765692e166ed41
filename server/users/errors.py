from __future__ import annotations


class UserError(ValueError):
    """A user value is invalid; ``field`` names the option or form field it came from."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class AccountError(Exception):
    """An account action that cannot be done as asked; ``str()`` is shown to the user."""
