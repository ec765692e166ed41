"""The second factor: TOTP (RFC 6238) with a replay guard, and single-use backup codes."""
