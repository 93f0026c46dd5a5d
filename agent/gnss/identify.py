"""Which GNSS receiver this node reads: its identity at enrolment (``agent enrol --gnss``).

``identify_receiver`` reads the source until the first fix, as ``LocationProvider`` would, and
takes the identity banners that fix carries (``Fix.receiver``: ``$--TXT`` model/firmware lines,
``$PSTMVER``), the source's kind and the device it is read from. A receiver that sent no banner
before its first fix, or no fix within the time allowed, is *unidentified*: enrolment goes on
and says so (a warning), because a node must be able to enrol before its antenna sees the sky.
"""

from __future__ import annotations

import logging
import threading
import time

from agent.gnss.source import GnssSource
from agent.gnss.spec import SourceSpec, open_source, parse_source_spec
from geoattest.errors import GnssUnavailable
from geoattest.wire import GnssReceiverWire
from geofence import EpochAssembler, GnssReceiver, NmeaParser, SourceKind

__all__ = ["device_of", "identify_configured", "identify_receiver", "receiver_wire"]

log = logging.getLogger(__name__)


def device_of(spec: SourceSpec) -> str:
    """Where the receiver is read: the serial path or URL, gpsd's ``host:port``, the capture."""
    if spec.kind == "gpsd":
        host = f"[{spec.target}]" if ":" in spec.target else spec.target
        return f"{host}:{spec.port}"
    return spec.target


def identify_receiver(
    source: GnssSource, *, device: str | None, timeout_s: float = 10.0
) -> GnssReceiver:
    """The receiver behind ``source`` (see the module docstring); closes ``source``.

    Never raises for a silent or failing source: the receiver is then unidentified."""
    parser, assembler = NmeaParser(), EpochAssembler()
    found: list[GnssReceiver] = []
    timer = threading.Timer(timeout_s, source.close)  # a blocked read ends with the source
    timer.start()
    deadline = time.monotonic() + timeout_s
    try:
        for line in source.lines():
            sentence = parser.parse(line)
            fix = assembler.feed(sentence) if sentence is not None else None
            if fix is not None:
                texts = fix.receiver.texts if fix.receiver is not None else ()
                found.append(GnssReceiver(source=source.kind, texts=texts, device=device))
                break
            if time.monotonic() > deadline:
                break
    except GnssUnavailable as e:
        log.warning("GNSS receiver not identified: %s", e.message)
    except (OSError, ValueError) as e:  # a read cut short by the timer closing the source
        log.warning("GNSS receiver not identified: %s", e)
    finally:
        timer.cancel()
        source.close()
    if not found:
        log.warning("no GNSS fix within %.0f s: enrolling the receiver as unidentified", timeout_s)
        return GnssReceiver(source=source.kind, device=device)
    if not found[0].identified:
        log.warning("the GNSS receiver sent no identity banner: enrolled as unidentified")
    return found[0]


def identify_configured(spec: str, *, timeout_s: float = 10.0) -> GnssReceiver:
    """The receiver the ``gnss_source`` setting names. Raises ConfigurationError for a spec that
    does not parse; a port that cannot be opened leaves the receiver unidentified."""
    parsed = parse_source_spec(spec)
    try:
        source = open_source(spec)
    except GnssUnavailable as e:
        log.warning("GNSS receiver not identified: %s", e.message)
        return GnssReceiver(source=SourceKind(parsed.kind), device=device_of(parsed))
    return identify_receiver(source, device=device_of(parsed), timeout_s=timeout_s)


def receiver_wire(receiver: GnssReceiver) -> GnssReceiverWire:
    """``receiver`` as the enrolment request carries it."""
    return GnssReceiverWire(
        source=receiver.source.value, texts=list(receiver.texts), device=receiver.device
    )
