from __future__ import annotations


class ClientRegistrationError(ValueError):
    """A registration value is invalid; ``field`` names the option it came from."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class UnknownClient(ClientRegistrationError):
    """No client has the id an administrator named."""

    def __init__(self, client_id: str) -> None:
        super().__init__("CLIENT_ID", f"no client {client_id!r}")
