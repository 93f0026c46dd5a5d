"""An agent's status as every reader must show it: the stored verdict seen through its lease.

The API, the CLI (through the API), token issuance and the dashboard all read agents through
``StatusReader``, so no reader can show a stored ``attested`` whose lease ran out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from verifier.core.lease import Lease, derive_lease
from verifier.engine.fleet import LeaseDefaults
from verifier.storage.sql import VerifiedAgentView, VerifierStore


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStatus:
    view: VerifiedAgentView
    lease: Lease
    max_age: dt.timedelta


class StatusReader:
    def __init__(self, store: VerifierStore, lease: LeaseDefaults) -> None:
        self._store = store
        self._lease = lease

    def one(self, agent_id: str, now: dt.datetime) -> AgentStatus:
        view = self._store.get_agent(agent_id)
        return self._status(view, self._store.policy_max_ages(), now)

    def all(self, now: dt.datetime) -> list[AgentStatus]:
        max_ages = self._store.policy_max_ages()
        return [self._status(view, max_ages, now) for view in self._store.list_agents()]

    def _status(
        self, view: VerifiedAgentView, max_ages: dict[str, float | None], now: dt.datetime
    ) -> AgentStatus:
        seconds = max_ages.get(view.policy_name)
        max_age = dt.timedelta(seconds=seconds) if seconds else self._lease.max_age
        lease = derive_lease(
            stored=view.state, last_passed_at=view.last_passed_at, max_age=max_age, now=now
        )
        return AgentStatus(view=view, lease=lease, max_age=max_age)
