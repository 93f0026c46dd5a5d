"""What a round hands its verdict to (the group committer) and tells the world through."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from verifier.storage.verdicts import CommitResult, Committed, VerdictDraft


class Committer(Protocol):
    """Commits verdicts (``GroupCommitter`` in production)."""

    def commit(self, draft: VerdictDraft, *, timeout: float) -> CommitResult:
        """Commit and wait; raises when it could not."""
        ...

    def submit(
        self,
        draft: VerdictDraft,
        then: Callable[[CommitResult | BaseException], None],
        *,
        timeout: float,
    ) -> None:
        """Commit without waiting: ``then`` is called once with the result or the error."""
        ...


# Tells the world about a committed verdict (revocation channel, webhooks): ``EventPublisher``.
Publisher = Callable[[Committed], None]
