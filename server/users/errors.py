from __future__ import annotations


class UserError(ValueError):
    """A user value is invalid; ``field`` names the option or form field it came from."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class AccountError(Exception):
    """An account action that cannot be done as asked; ``str()`` is shown to the user."""


class NothingToEnd(AccountError):
    """The session or application named is not one of the account's (any more): ended
    already, or someone else's. The page answers 404 and ends nothing."""


class Unknown(UserError):
    """Nothing answers to the name given (``field`` says what was looked for: ``USER``,
    ``SID``, ``GRANT``): the CLI prints one line for it, the admin API answers 404 rather
    than a validation error."""


class UnknownUser(Unknown):
    """No account answers to the username or ``sub`` given (``field`` is ``"USER"``)."""


class LastAdministrator(UserError):
    """The change would leave no enabled administrator (the admin API answers 409)."""
