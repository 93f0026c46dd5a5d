"""``geoattest.db`` on real databases: timestamps come back in UTC whatever the server's zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from geoattest.db import as_utc, make_engine
from tests.support.postgres_server import SERVER_TIMEZONE, PostgresServer

MOMENT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.postgresql
def test_postgresql_sessions_run_in_utc_on_a_server_that_does_not(
    postgres_server: PostgresServer,
) -> None:
    with postgres_server.database() as url:
        engine = make_engine(url)
        with engine.connect() as connection:
            zone = connection.execute(text("SELECT current_setting('TimeZone')")).scalar_one()
            read = connection.execute(
                text("SELECT CAST(:moment AS timestamptz)"), {"moment": MOMENT}
            ).scalar_one()
        engine.dispose()
        plain = create_engine(url)  # what any other client of this server sees
        with plain.connect() as connection:
            server = connection.execute(text("SHOW TimeZone")).scalar_one()
        plain.dispose()
    assert server == SERVER_TIMEZONE
    assert zone == "UTC"
    assert read.utcoffset() == timedelta(0)
    assert read == MOMENT


def test_as_utc_makes_every_moment_utc() -> None:
    kathmandu = timezone(timedelta(hours=5, minutes=45))
    assert as_utc(MOMENT.replace(tzinfo=None)) == MOMENT
    converted = as_utc(MOMENT.astimezone(kathmandu))
    assert (converted, converted.utcoffset()) == (MOMENT, timedelta(0))


@pytest.mark.postgresql
def test_libpq_options_in_the_url_are_kept(postgres_server: PostgresServer) -> None:
    with postgres_server.database() as url:
        engine = make_engine(f"{url}?options=-c%20application_name%3Dgeo-test")
        with engine.connect() as connection:
            name = connection.execute(text("SHOW application_name")).scalar_one()
            zone = connection.execute(text("SHOW TimeZone")).scalar_one()
        engine.dispose()
    assert (name, zone) == ("geo-test", "UTC")
