"""A worker's fleet reload parses only the policies that changed (a whole-system policy is tens
of MB and seconds to parse; adding an agent must not make every pool process parse it again),
and still never keeps a policy past its change or its deletion."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import update

from geoattest.db import make_engine, migrate, session_factory, transaction
from geoattest.wire import PolicyDocument
from verifier.core.policy import canonical_document, document_digest
from verifier.engine.fleet import load_fleet
from verifier.storage.models import PolicyRecord
from verifier.storage.sql import VerifierStore

NOW = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)


def _put(store: VerifierStore, name: str, document: dict[str, object]) -> None:
    canonical = canonical_document(PolicyDocument.model_validate(document))
    store.put_policy(name, canonical, document_digest(canonical), NOW)


@pytest.fixture
def store(tmp_path: Path) -> VerifierStore:
    engine = make_engine(f"sqlite:///{tmp_path / 'verifier.sqlite'}")
    migrate(engine)
    return VerifierStore(session_factory(engine))


def test_unchanged_policies_are_kept_and_changed_ones_parsed_again(store: VerifierStore) -> None:
    _put(store, "big", {"runtime_policy": {"version": 2, "digests": {}}})
    _put(store, "small", {"max_age_seconds": 30})
    first = load_fleet(store, None, 1)
    second = load_fleet(store, None, 2, first)
    assert second.policies["big"] is first.policies["big"]  # not parsed again
    assert second.policies["small"] is first.policies["small"]

    _put(store, "small", {"max_age_seconds": 60})
    third = load_fleet(store, None, 3, second)
    assert third.policies["big"] is first.policies["big"]
    assert third.policies["small"] is not second.policies["small"]
    assert third.policies["small"].version == 2
    assert third.policies["small"].max_age == dt.timedelta(seconds=60)


def test_a_deleted_policy_leaves_the_fleet(store: VerifierStore) -> None:
    _put(store, "gone", {})
    first = load_fleet(store, None, 1)
    store.delete_policy("gone")
    assert "gone" not in load_fleet(store, None, 2, first).policies


def test_an_unusable_policy_stays_unusable_until_it_changes(store: VerifierStore) -> None:
    _put(store, "geo", {"location": {"zones": ["DEU"]}})  # needs zones this verifier lacks
    first = load_fleet(store, None, 1)
    assert "geo" in first.unusable
    assert "geo" not in first.policies
    assert load_fleet(store, None, 2, first).unusable == first.unusable
    _put(store, "geo", {})
    assert "geo" in load_fleet(store, None, 3, first).policies


def test_rows_from_before_digests_are_always_parsed_again(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'verifier.sqlite'}")
    migrate(engine)
    sessions = session_factory(engine)
    store = VerifierStore(sessions)
    _put(store, "old", {})
    first = load_fleet(store, None, 1)
    with transaction(sessions) as session:
        session.execute(update(PolicyRecord).values(sha256=None))
    assert load_fleet(store, None, 2, first).policies["old"] is not first.policies["old"]


def test_a_document_that_does_not_match_its_digest_is_never_judged_under(tmp_path: Path) -> None:
    """Records name the policy digest they were judged under; bytes edited outside the API
    (the digest left as it was) make the policy unusable instead."""
    engine = make_engine(f"sqlite:///{tmp_path / 'verifier.sqlite'}")
    migrate(engine)
    sessions = session_factory(engine)
    store = VerifierStore(sessions)
    _put(store, "edited", {"max_age_seconds": 30})
    with transaction(sessions) as session:
        row = session.get(PolicyRecord, "edited")
        assert row is not None
        row.document = row.document.replace("30", "90")  # same size, same stored digest
    fleet = load_fleet(store, None, 1)
    assert "edited" not in fleet.policies
    assert "does not match its digest" in fleet.unusable["edited"]
