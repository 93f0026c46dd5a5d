"""Group NMEA sentences into epochs (one per UTC time of day) and turn each into a :class:`Fix`.

Epoch rule: a sentence that carries a time (RMC, GGA, GNS, GST, ZDA, GLL with a non-empty time
field) and whose time differs from the open epoch's closes that epoch and opens a new one.
Sentences without a time (GSA, GSV, VTG, TXT, and RMC/GGA with empty time) join the open
epoch; those seen before the first timed sentence join the first epoch. Receivers that send
their GSV burst *before* the cycle's first timed sentence (Quectel) thus have satellite data
attributed one epoch late; it changes slowly, and the checks that use it look at spreads, not at
single epochs.

An epoch yields a fix only when it has a position: GGA with quality != 0, else GNS with a mode
other than all ``N``, else RMC with status ``A`` (as gpsd does; quality and mode are kept on
the fix so that plausibility can reject simulated or estimated ones). The date comes from the
epoch's RMC or ZDA, else is carried from earlier epochs (rolled over at midnight); an RMC with
an invalid date field gives ``utc=None`` rather than a guessed date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from geofence.fix import (
    CONSTELLATIONS,
    DEFAULT_UERE_M,
    KNOTS_TO_MPS,
    SYSTEM_IDS,
    Fix,
    ReceiverIdentity,
    SatelliteSignal,
    horizontal_accuracy,
    nmea_digest,
    vertical_accuracy,
)
from geofence.nmea import NmeaParser, ParseStats, Sentence
from geofence.sentences import Gga, Gll, Gns, Gsa, Gst, Gsv, Proprietary, Rmc, Txt, Vtg, Zda

# Banner texts that identify the receiver (u-blox, ST, SiRF...); status lines are not identity.
_IDENTITY_MARKERS = ("U-BLOX", "HW ", "ROM ", "FW", "PROTVER", "SW ", "LLC ", "LIC ", "MOD", "OTP")
_MAX_IDENTITY_TEXTS = 16
_HALF_DAY = dt.timedelta(hours=12)


class _Epoch:
    __slots__ = ("gga", "gns", "gsa", "gst", "gsv", "rmc", "texts", "time", "vtg", "zda")

    def __init__(self, time: dt.time | None) -> None:
        self.time = time
        self.texts: list[str] = []
        self.rmc: Rmc | None = None
        self.gga: Gga | None = None
        self.gns: Gns | None = None
        self.gst: Gst | None = None
        self.zda: Zda | None = None
        self.vtg: Vtg | None = None
        self.gsa: list[tuple[str, Gsa]] = []
        self.gsv: list[tuple[str, Gsv]] = []

    def add(self, s: Sentence) -> None:
        self.texts.append(s.text)
        b = s.body
        if isinstance(b, Rmc):
            self.rmc = b
        elif isinstance(b, Gga):
            self.gga = b
        elif isinstance(b, Gns):
            self.gns = b
        elif isinstance(b, Gsa):
            self.gsa.append((s.talker, b))
        elif isinstance(b, Gsv):
            self.gsv.append((s.talker, b))
        elif isinstance(b, Vtg):
            self.vtg = b
        elif isinstance(b, Gst):
            self.gst = b
        elif isinstance(b, Zda):
            self.zda = b

    def position(self) -> tuple[float, float] | None:
        for src in (self.gga, self.gns, self.rmc):
            if src is None or src.latitude is None or src.longitude is None:
                continue
            if isinstance(src, Gga) and src.quality == 0:
                continue
            if isinstance(src, Gns) and set(src.mode) <= {"N"}:
                continue
            if isinstance(src, Rmc) and src.status != "A":
                continue
            return src.latitude, src.longitude
        return None


def _sentence_time(body: object) -> dt.time | None:
    if isinstance(body, Rmc | Gga | Gns | Gst | Zda | Gll):
        return body.time
    return None


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


class EpochAssembler:
    """Streaming assembler: :meth:`feed` sentences in order, get a :class:`Fix` per closed epoch."""

    def __init__(self, *, uere_m: float = DEFAULT_UERE_M) -> None:
        self._uere_m = uere_m
        self._epoch: _Epoch | None = None
        self._date: dt.date | None = None
        self._last_time: dt.time | None = None
        self._identity: list[str] = []

    def feed(self, s: Sentence) -> Fix | None:
        """Add one sentence; returns the fix of the epoch it closed, if that epoch had one.

        The sentence's fields are converted here (:meth:`Sentence.checked_body`): one with a
        malformed field is skipped, counted as rejected by its parser, and never reaches a fix.
        """
        if s.checked_body() is None:
            return None
        self._note_identity(s)
        time = _sentence_time(s.body)
        done: Fix | None = None
        if self._epoch is None:
            self._epoch = _Epoch(time)
        elif time is not None and time != self._epoch.time:
            if self._epoch.time is None:  # untimed lines seen before the first timed sentence
                self._epoch.time = time
            else:
                done = self._close(self._epoch)
                self._epoch = _Epoch(time)
        self._epoch.add(s)
        if self._epoch.time is None:
            self._epoch.time = time
        return done

    def flush(self) -> Fix | None:
        """Close the open epoch (end of input)."""
        epoch, self._epoch = self._epoch, None
        return self._close(epoch) if epoch is not None else None

    def _note_identity(self, s: Sentence) -> None:
        text: str | None = None
        if isinstance(s.body, Txt) and any(m in s.body.text.upper() for m in _IDENTITY_MARKERS):
            text = s.body.text.strip()
        elif isinstance(s.body, Proprietary) and s.text.startswith("$PSTMVER,"):
            text = "PSTMVER " + s.text[9:].rsplit("*", 1)[0]
        if text and text not in self._identity and len(self._identity) < _MAX_IDENTITY_TEXTS:
            self._identity.append(text)

    def _date_for(self, e: _Epoch) -> dt.date | None:
        if e.time is None:
            return None
        if e.rmc is not None and e.rmc.date_invalid:
            return None  # never guess past a broken date (GPS week rollover)
        date = (e.rmc.date if e.rmc is not None else None) or (
            e.zda.date if e.zda is not None else None
        )
        if date is None and self._date is not None and self._last_time is not None:
            date = self._date
            elapsed = dt.datetime.combine(date, self._last_time) - dt.datetime.combine(date, e.time)
            if elapsed > _HALF_DAY:  # time of day wrapped past midnight
                date += dt.timedelta(days=1)
        if date is not None:
            self._date = date
        self._last_time = e.time
        return date

    def _close(self, e: _Epoch) -> Fix | None:
        date = self._date_for(e)
        pos = e.position()
        if pos is None or e.time is None:
            return None
        gga, gns, rmc = e.gga, e.gns, e.rmc
        used: set[tuple[str, int]] = set()
        for talker, gsa in e.gsa:
            system = SYSTEM_IDS.get(gsa.system_id or 0) or CONSTELLATIONS.get(talker, talker)
            used.update((system, prn) for prn in gsa.prns)
        counts = [
            n
            for n in (
                (gga.satellites if gga else None),
                (gns.satellites if gns else None),
                len(used),
            )
            if n
        ]
        signals = tuple(
            SatelliteSignal(
                constellation=CONSTELLATIONS.get(talker, talker),
                prn=sat.prn,
                signal_id=gsv.signal_id,
                elevation_deg=sat.elevation_deg,
                azimuth_deg=sat.azimuth_deg,
                cn0_dbhz=sat.cn0_dbhz,
            )
            for talker, gsv in e.gsv
            for sat in gsv.satellites
        )
        in_view = len({(s.constellation, s.prn) for s in signals})
        hdop = _first(
            (gga.hdop if gga else None), (gns.hdop if gns else None), *(g.hdop for _, g in e.gsa)
        )
        accuracy, source = horizontal_accuracy(
            sigma_lat_m=e.gst.sigma_lat_m if e.gst else None,
            sigma_lon_m=e.gst.sigma_lon_m if e.gst else None,
            hdop=hdop,
            uere_m=self._uere_m,
        )
        vdop = _first(*(g.vdop for _, g in e.gsa))
        knots = _first((rmc.speed_knots if rmc else None), (e.vtg.speed_knots if e.vtg else None))
        return Fix(
            utc=dt.datetime.combine(date, e.time, tzinfo=dt.UTC) if date else None,
            time_of_day=e.time,
            latitude=pos[0],
            longitude=pos[1],
            altitude_m=_first((gga.altitude_m if gga else None), (gns.altitude_m if gns else None)),
            quality=gga.quality if gga else None,
            rmc_status=rmc.status if rmc else None,
            rmc_mode=rmc.mode if rmc else None,
            gns_mode=gns.mode if gns else None,
            fix_type=max((g.fix_type or 0 for _, g in e.gsa), default=None),
            satellites_used=max(counts) if counts else None,
            satellites_in_view=in_view or None,
            hdop=hdop,
            pdop=_first(*(g.pdop for _, g in e.gsa)),
            vdop=vdop,
            horizontal_accuracy_m=accuracy,
            accuracy_source=source,
            vertical_accuracy_m=vertical_accuracy(
                sigma_alt_m=e.gst.sigma_alt_m if e.gst else None, vdop=vdop, uere_m=self._uere_m
            ),
            speed_mps=knots * KNOTS_TO_MPS if knots is not None else None,
            course_deg=_first(
                (rmc.course_deg if rmc else None), (e.vtg.course_deg if e.vtg else None)
            ),
            signals=signals,
            receiver=ReceiverIdentity(texts=tuple(self._identity)) if self._identity else None,
            nmea_digest=nmea_digest(e.texts),
            sentence_count=len(e.texts),
        )


def fixes_from_lines(
    lines: Iterable[bytes | str], *, uere_m: float = DEFAULT_UERE_M
) -> tuple[list[Fix], ParseStats]:
    """Parse raw NMEA lines (bytes or str, any line endings) into fixes plus parse statistics.

    Never raises on bad input: bad sentences are counted in the returned :class:`ParseStats`.
    """
    parser = NmeaParser()
    assembler = EpochAssembler(uere_m=uere_m)
    fixes: list[Fix] = []
    for line in lines:
        sentence = parser.parse(line)
        if sentence is not None and (fix := assembler.feed(sentence)) is not None:
            fixes.append(fix)
    if (last := assembler.flush()) is not None:
        fixes.append(last)
    return fixes, parser.stats()
