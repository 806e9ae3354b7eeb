"""Event-stream tickets: the credential an OFREP event-stream URL carries.

A browser opens the bulk answer's ``eventStreams`` with ``new EventSource(url)``, which sends no
``Authorization`` header (and ``@openfeature/ofrep-web-provider`` sends none either). ADR-0008
makes the URL opaque so that it may carry a credential: ours is ``ticket``, the id of the token
that asked for the bulk answer and an HMAC-SHA256 of that id with the app and stage, under a key
every process shares (``ServerKeys``: made by whichever process needed it first, kept in the
ledger).

- A ticket is not the token: it opens one app stage's event stream and nothing else, and it
  cannot be turned back into the token.
- It lives as long as the token: it is checked against the ledger when a stream opens (and by
  the open stream every so often, ``streams.app``), so revoking or expiring the token ends its
  tickets. It carries no expiry of its own because the provider keeps one URL for as long as the
  answers name the same one; a ticket that expired would stop a browser's stream for good.
- It is the same for every answer of one token in one app stage, so the URL set a provider
  compares between answers does not change and the connection is kept.
- The token still needs the ``client`` role and a scope that covers the app and stage when the
  stream opens: a ticket widens nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from stageflow.domain.errors import Unauthenticated, Unavailable
from stageflow.domain.identity import ApiToken
from stageflow.services import tokens
from stageflow.services.context import Stageflow

KEY_NAME: Final = "ofrep-event-stream-tickets"
_SEPARATOR: Final = "."
_MAC_LENGTH: Final = 43  # unpadded base64url of 32 bytes
_MAX_LENGTH: Final = 200


def issue(sf: Stageflow, token_id: str, app: str, stage: str) -> str | None:
    """The ticket of ``token_id`` for one app stage; None when the key cannot be read now."""
    key = _key(sf)
    if key is None:
        return None
    return f"{token_id}{_SEPARATOR}{_mac(key, token_id, app, stage)}"


def redeem(
    sf: Stageflow, ticket: str, app: str | None, stage: str | None, *, client: str | None
) -> ApiToken:
    """The active token a ticket stands for, when it was issued for this app and stage.

    Raises Unauthenticated otherwise (and counts the failure against ``client``, as a bad token
    is counted), or TooManyRequests while ``client`` is past its limit.
    """
    tokens.refuse_while_limited(sf, client)
    token_id, _, mac = ticket.rpartition(_SEPARATOR)
    key = _key(sf)
    if key is None:
        raise Unavailable(
            "the database is unreachable, so event-stream tickets cannot be checked; retry "
            "shortly (or send `Authorization: Bearer <token>`)",
            code="database_unavailable",
        )
    if (
        not token_id
        or app is None
        or stage is None
        or len(ticket) > _MAX_LENGTH
        or len(mac) != _MAC_LENGTH
        or not hmac.compare_digest(mac.encode(), _mac(key, token_id, app, stage).encode())
    ):
        tokens.note_failure(sf, client)
        raise Unauthenticated(
            f"this event-stream ticket was not issued for app {app!r} stage {stage!r}; open the "
            "URL the bulk answer's eventStreams name (POST /ofrep/v1/evaluate/flags) unchanged",
            code="ticket_invalid",
        )
    token = tokens.find_token(sf, token_id)
    if token is None or not token.active(sf.clock()):
        tokens.note_failure(sf, client)
        state = "unknown" if token is None else ("revoked" if token.revoked_at else "expired")
        raise Unauthenticated(
            f"this event-stream ticket's token is {state}; evaluate again with an active token "
            "(POST /ofrep/v1/evaluate/flags) and open the stream its answer names",
            code="token_inactive",
        )
    return token


def _mac(key: bytes, token_id: str, app: str, stage: str) -> str:
    message = "\0".join(("ofrep-event-stream", token_id, app, stage)).encode("utf-8")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _key(sf: Stageflow) -> bytes | None:
    """The shared key, read (or made) once per process; None while the ledger is down."""
    found = sf.server_keys.get(KEY_NAME)
    if found is None:
        try:
            with sf.uow() as uow:
                found = uow.server_keys.claim(KEY_NAME, secrets.token_urlsafe(32), sf.clock())
                uow.commit()
        except Unavailable:  # the answer goes without eventStreams meanwhile
            return None
        sf.server_keys[KEY_NAME] = found
    return found.encode("ascii")
