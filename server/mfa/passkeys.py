"""Passkeys: WebAuthn credentials, as a second factor and for signing in without a password.

The ceremonies are py_webauthn's (Duo Labs); what this module adds is where the state lives
and what is checked beyond the signature:

- the relying party is the issuer: its host is the RP ID, its origin the only origin a
  response may come from, so a page elsewhere (a phishing site, even on another port of the
  same host) cannot use an answer it obtained;
- a challenge is 32 random bytes, kept server-side as SHA-256 for ``CHALLENGE_TTL`` and spent
  by the first answer (``storage.passkeys.take_challenge``), bound to the account
  (registration) or to the sign-in it was handed out for (authentication);
- the signature counter must move forward: a count that does not is the sign of a cloned
  authenticator, refused and audited (``passkey.clone_warning``);
- attestation ``none`` by default; ``OSTIARY_PASSKEY_AAGUIDS`` asks for attestation and
  accepts only authenticators of the listed models;
- signing in without a password needs user verification (a PIN or biometrics on the
  authenticator): with it, a passkey is two factors in one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ..i18n import N_
from ..settings import Settings
from ..storage import Session, audit, passkeys as store
from ..storage.base import utcnow
from ..storage.passkeys import StoredPasskey
from ..storage.users import StoredUser
from .errors import MfaError

log = logging.getLogger("ostiary.passkeys")

#: how long a browser has to answer a challenge (the ceremony's timeout too)
CHALLENGE_TTL = timedelta(minutes=5)
#: the longest JSON answer taken from a browser (an attestation with its certificates fits)
MAX_RESPONSE = 64 * 1024
MAX_NAME = 64
#: RFC 8176 amr values: a key bound to its hardware, or one a platform syncs (software)
AMR_HARDWARE_KEY = "hwk"
AMR_SOFTWARE_KEY = "swk"
#: the authenticator verified the user (a PIN or biometrics): RFC 8176 has no value for
#: "one of the two", and "pin" is the one every authenticator offers
AMR_VERIFIED = "pin"
#: a person was present (touched the key): every WebAuthn answer proves it
AMR_PRESENT = "user"

FAILED = N_("The passkey could not be checked. Try again, or use another way to sign in.")


class PasskeyError(MfaError):
    """A ceremony that failed; the message is for the user. ``owner``: the account of the
    passkey that answered, when it is known (its failures count toward its lockout)."""

    def __init__(self, message: str, owner: int | None = None) -> None:
        super().__init__(message)
        self.owner = owner


@dataclass(frozen=True)
class Assertion:
    """A passkey that just signed in."""

    passkey: StoredPasskey
    user_verified: bool

    @property
    def amr(self) -> list[str]:
        kind = AMR_SOFTWARE_KEY if self.passkey.device_type == "multi_device" else AMR_HARDWARE_KEY
        return [kind, AMR_PRESENT, *([AMR_VERIFIED] if self.user_verified else [])]


class Passkeys:
    def __init__(self, settings: Settings) -> None:
        issuer = urlsplit(settings.issuer)
        self.rp_id = issuer.hostname or "localhost"
        self.origin = f"{issuer.scheme}://{issuer.netloc}"
        self.rp_name = settings.brand_name
        self.aaguids = frozenset(settings.passkey_aaguids)

    # -- registration ------------------------------------------------------------------

    def registration_options(self, db: Session, user: StoredUser) -> str:
        """The options for ``navigator.credentials.create()`` (JSON), whose challenge is kept."""
        challenge = secrets.token_bytes(32)
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name=self.rp_name,
            user_name=user.username,
            user_id=user.sub.encode("utf-8"),
            user_display_name=user.name or user.username,
            challenge=challenge,
            timeout=int(CHALLENGE_TTL.total_seconds() * 1000),
            attestation=_ATTESTATION[bool(self.aaguids)],
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=_descriptors(store.list_passkeys(db, user.id)),
        )
        store.add_challenge(
            db, _digest(challenge), purpose=store.REGISTER, user_id=user.id, expires_at=utcnow() + CHALLENGE_TTL
        )
        return options_to_json(options)

    def register(self, db: Session, user: StoredUser, answer: str, name: str) -> StoredPasskey:
        """Verify the browser's answer to :meth:`registration_options` and keep the passkey."""
        name = " ".join(name.split())[:MAX_NAME] or "Passkey"
        try:
            credential = parse_registration_credential_json(_bounded(answer))
            challenge = parse_client_data_json(credential.response.client_data_json).challenge
            taken = store.take_challenge(db, _digest(challenge), store.REGISTER)
            if taken is None or taken.user_id != user.id:
                raise PasskeyError(N_("This passkey request has expired. Start again."))
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
            )
        except WebAuthnException as error:
            log.info("passkey registration refused: %s", error)
            raise PasskeyError(FAILED) from None
        if self.aaguids and verified.aaguid not in self.aaguids:
            raise PasskeyError(N_("This kind of security key is not accepted here."))
        if store.credential_taken(db, verified.credential_id):
            raise PasskeyError(N_("This passkey is already registered."))
        transports = [str(t.value) for t in credential.response.transports or []]
        passkey = store.add_passkey(
            db,
            user_id=user.id,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            aaguid=verified.aaguid,
            device_type=verified.credential_device_type.value,
            transports=transports,
            name=name,
        )
        audit.record(db, "passkey.registered", actor=user.sub, user=user.sub, details={"passkey": passkey.id})
        return passkey

    # -- authentication ----------------------------------------------------------------

    def authentication_options(self, db: Session, interaction: bytes, user: StoredUser | None) -> str:
        """The options for ``navigator.credentials.get()`` (JSON) in the sign-in whose digest
        is ``interaction``: for ``user``'s passkeys (the second factor), or for any
        discoverable one that verifies its user (no user yet: signing in without a password)."""
        challenge = secrets.token_bytes(32)
        options = generate_authentication_options(
            rp_id=self.rp_id,
            challenge=challenge,
            timeout=int(CHALLENGE_TTL.total_seconds() * 1000),
            allow_credentials=_descriptors(store.list_passkeys(db, user.id)) if user is not None else [],
            user_verification=UserVerificationRequirement.PREFERRED
            if user is not None
            else UserVerificationRequirement.REQUIRED,
        )
        store.add_challenge(
            db,
            _digest(challenge),
            purpose=store.AUTHENTICATE,
            user_id=user.id if user is not None else None,
            interaction=interaction,
            expires_at=utcnow() + CHALLENGE_TTL,
        )
        return options_to_json(options)

    def authenticate(self, db: Session, interaction: bytes, answer: str, user: StoredUser | None) -> Assertion:
        """Verify the browser's answer to :meth:`authentication_options` of this sign-in;
        the passkey must be ``user``'s when one is given, and must have verified its user
        when none is."""
        try:
            credential = parse_authentication_credential_json(_bounded(answer))
            challenge = parse_client_data_json(credential.response.client_data_json).challenge
        except WebAuthnException as error:
            log.info("passkey answer refused: %s", error)
            raise PasskeyError(FAILED) from None
        taken = store.take_challenge(db, _digest(challenge), store.AUTHENTICATE)
        if taken is None or taken.interaction != interaction:
            raise PasskeyError(N_("This passkey request has expired or was already answered. Try again."))
        passkey = store.get_by_credential(db, credential.raw_id)
        if passkey is None or (user is not None and passkey.user_id != user.id):
            raise PasskeyError(N_("This passkey is not registered for this account."))
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                credential_public_key=passkey.public_key,
                credential_current_sign_count=0,  # the counter is checked below, with an audit row
                require_user_verification=user is None,
            )
        except WebAuthnException as error:
            log.info("passkey answer refused: %s", error)
            raise PasskeyError(FAILED, owner=passkey.user_id) from None
        self._count(db, passkey, verified.new_sign_count)
        return Assertion(passkey, verified.user_verified)

    def _count(self, db: Session, passkey: StoredPasskey, count: int) -> None:
        """The signature counter moves forward, or the authenticator keeps none (0 and 0)."""
        cloned = (passkey.sign_count > 0 or count > 0) and count <= passkey.sign_count
        if cloned or not store.record_use(db, passkey.id, old_count=passkey.sign_count, new_count=count):
            details = {"passkey": passkey.id, "stored_count": passkey.sign_count, "count": count}
            audit.record(db, "passkey.clone_warning", actor="system", details=details)
            message = N_("This passkey looks copied and was refused. Use another way to sign in.")
            raise PasskeyError(message, owner=passkey.user_id)


def _descriptors(passkeys: list[StoredPasskey]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=passkey.credential_id,
            transports=[AuthenticatorTransport(t) for t in passkey.transports if t in _TRANSPORTS],
        )
        for passkey in passkeys
    ]


_TRANSPORTS = {t.value for t in AuthenticatorTransport}
#: attestation is asked for only when it is checked (OSTIARY_PASSKEY_AAGUIDS)
_ATTESTATION = {False: AttestationConveyancePreference.NONE, True: AttestationConveyancePreference.DIRECT}


def _digest(challenge: bytes) -> bytes:
    return hashlib.sha256(challenge).digest()


def _bounded(answer: str) -> str:
    if len(answer) > MAX_RESPONSE:
        raise PasskeyError(FAILED)
    try:
        parsed: Any = json.loads(answer)
    except ValueError:
        raise PasskeyError(FAILED) from None
    if not isinstance(parsed, dict):
        raise PasskeyError(FAILED)
    return answer
