"""Whether the tokens of open streams are still active: both kinds of stream ask here."""

from __future__ import annotations

import time

from starlette.concurrency import run_in_threadpool

from stageflow.domain.errors import Unavailable
from stageflow.services import tokens
from stageflow.services.context import Stageflow


class TokenRecheck:
    """Asks the ledger about a token at most every ``every`` seconds (one stream asks; the
    token's other streams go on meanwhile), so a revoked or expired token's streams hear of
    nothing within two intervals. While the ledger is down, streams go on, as reads do."""

    def __init__(self, sf: Stageflow, *, every: float) -> None:
        self.sf = sf
        self.every = every
        self.checked: dict[str, float] = {}

    def seen(self, token_id: str) -> None:
        """The token was found active just now (its stream opened)."""
        self.checked[token_id] = time.monotonic()

    async def still_active(self, token_id: str) -> bool:
        now = time.monotonic()
        if now - self.checked.get(token_id, float("-inf")) < self.every:
            return True
        self.checked = {k: at for k, at in self.checked.items() if now - at < self.every}
        self.checked[token_id] = now
        try:
            token = await run_in_threadpool(tokens.find_token, self.sf, token_id)
        except Unavailable:
            return True
        if token is None or not token.active(self.sf.clock()):
            self.checked.pop(token_id, None)
            return False
        return True
