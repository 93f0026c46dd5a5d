"""geofence: pure GNSS → fix → plausibility → zone decision → location evidence.

No I/O here: callers pass lines, bytes, GeoJSON text and ``now``.
"""

from geofence.epochs import EpochAssembler, fixes_from_lines
from geofence.evidence import (
    LocationEvidence,
    SourceKind,
    decode_evidence,
    encode_evidence,
    evidence_digest,
)
from geofence.fix import AccuracySource, Fix, ReceiverIdentity, SatelliteSignal, nmea_digest
from geofence.nmea import NmeaParser, ParseStats, Rejection, RejectReason, parse_lines
from geofence.plausibility import (
    Failure,
    LocationPolicy,
    LocationReason,
    PlausibilityResult,
    check_fix,
    policy_from_mapping,
)
from geofence.receiver import GnssReceiver
from geofence.zones import (
    DECISION_BY_CODE,
    Zone,
    ZoneDecision,
    ZoneMatch,
    ZoneRepair,
    ZoneSet,
    ZoneVerdict,
    load_zones,
)

__all__ = [
    "DECISION_BY_CODE",
    "AccuracySource",
    "EpochAssembler",
    "Failure",
    "Fix",
    "GnssReceiver",
    "LocationEvidence",
    "LocationPolicy",
    "LocationReason",
    "NmeaParser",
    "ParseStats",
    "PlausibilityResult",
    "ReceiverIdentity",
    "RejectReason",
    "Rejection",
    "SatelliteSignal",
    "SourceKind",
    "Zone",
    "ZoneDecision",
    "ZoneMatch",
    "ZoneRepair",
    "ZoneSet",
    "ZoneVerdict",
    "check_fix",
    "decode_evidence",
    "encode_evidence",
    "evidence_digest",
    "fixes_from_lines",
    "load_zones",
    "nmea_digest",
    "parse_lines",
    "policy_from_mapping",
]
