"""Wiring of ``geoattest export``: settings → the database, the log and its keys, the registrar
→ a signed bundle on disk, with a progress bar on stderr."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from geoattest.db import make_engine, migrate, session_factory
from geoattest.errors import NotFound
from geoattest.registrar_client import verifier_registrar_client
from geoattest.settings import Settings
from geoattest.trust_files import load_trust_store_dir
from verifier.engine.runtime import lease_defaults_of, log_keyring, verifier_id_of
from verifier.export.archive import write_bundle
from verifier.export.bundle import (
    STEPS_PER_AGENT,
    ExportContext,
    ExportRequest,
    build_bundle,
)
from verifier.export.collect import BundleSources
from verifier.export.tokens import SqlTokenSource
from verifier.storage.documents import DocumentStore
from verifier.storage.log import TransparencyLog
from verifier.storage.sql import VerifierStore
from verifier.worker import sequence_and_sign

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportSpec:
    agents: Sequence[str]
    policy: str | None
    zone: str | None
    start: dt.datetime
    end: dt.datetime
    at: dt.datetime | None
    output: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportSummary:
    agents: int
    records: int
    files: int
    bytes: int
    kid: str


def run_export(
    settings: Settings, spec: ExportSpec, *, show_progress: bool = True
) -> ExportSummary:
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    store = VerifierStore(sessions)
    transparency = TransparencyLog(engine, origin=settings.log_origin)
    keys = log_keyring(settings)
    now = dt.datetime.now(dt.UTC)
    sequence_and_sign(transparency, keys, now)  # the window's entries made so far, proven
    registrar = verifier_registrar_client(settings)
    sources = BundleSources(
        engine=engine,
        log=transparency,
        documents=DocumentStore(sessions),
        registrar=registrar,
        tokens=SqlTokenSource(engine),
        ek_store=load_trust_store_dir(settings.ek_ca_dir) if settings.ek_ca_dir else None,
    )
    agents = list(spec.agents) or _fleet(store, sources, spec)
    if not agents:
        raise NotFound("no agent to export: the fleet selection is empty")
    request = ExportRequest(agents=agents, start=spec.start, end=spec.end, at=spec.at)
    context = ExportContext(
        verifier_id=verifier_id_of(settings),
        default_max_age=lease_defaults_of(settings).max_age,
        zones_repair=settings.zones_repair,
        now=now,
    )
    signer = keys.active()
    steps = len(agents) * STEPS_PER_AGENT
    try:
        stderr = sys.stderr
        bar = click.progressbar(
            length=steps, label="exporting", file=stderr, hidden=not show_progress, show_pos=True
        )
        with bar:
            files = build_bundle(
                request,
                sources=sources,
                log_store=transparency,
                signer=signer,
                context=context,
                progress=lambda _done: bar.update(1),
            )
        size = write_bundle(files, spec.output)
    finally:
        registrar.close()
        engine.dispose()
    records = sum(1 for path in files if "/records/" in path)
    return ExportSummary(
        agents=len(agents), records=records, files=len(files), bytes=size, kid=signer.kid
    )


def _fleet(store: VerifierStore, sources: BundleSources, spec: ExportSpec) -> list[str]:
    if spec.policy is not None:
        return sources.agents_of_policy(spec.policy)
    zones: dict[str, list[str]] = {}
    for policy in store.list_policies():
        location = policy.document.location or {}
        named = location.get("zones", [])
        zones[policy.name] = [str(z) for z in named] if isinstance(named, list) else []
    log.debug("policies and their zones: %s", json.dumps(zones))
    return sources.agents_of_zone(str(spec.zone), zones)
