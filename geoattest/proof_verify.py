"""Wiring of ``geoattest verify-bundle``: the auditor's trust read from files, the result of
``verifier.export.verify`` printed (the same text for the same bundle, every time)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import BundleUnreadable, ConfigurationError, SignatureInvalid
from geoattest.trust_files import load_trust_store_dir
from verifier.core.jwk import parse_public_keys
from verifier.export.results import AgentVerification, BundleVerification
from verifier.export.verify import Trust

Echo = Callable[[str], object]


def load_trust(ek_ca: Path, verifier_key: Path, registrar_key: Path | None) -> Trust:
    """Raises ``BundleUnreadable`` / ``ConfigurationError`` naming the file that cannot be read."""
    if not ek_ca.is_dir():
        raise ConfigurationError(f"--ek-ca {ek_ca} is not a directory of CA certificates")
    store = load_trust_store_dir(ek_ca)
    return Trust(
        verifier_keys=_keys(verifier_key),
        ek_store=store,
        registrar_keys=_keys(registrar_key) if registrar_key else None,
    )


def _keys(path: Path) -> dict[str, ec.EllipticCurvePublicKey]:
    try:
        return parse_public_keys(path.read_bytes())
    except OSError as e:
        raise BundleUnreadable(f"{path}: {e.strerror or e}") from e
    except SignatureInvalid as e:
        raise BundleUnreadable(f"{path}: {e.message}") from e


def print_verification(result: BundleVerification, echo: Echo) -> None:
    manifest = result.manifest
    echo(f"bundle: {result.files} files, manifest signed by the verifier's log key")
    echo(
        f"log: {result.checkpoint.origin}, checkpoint of {result.checkpoint.size} entries "
        f"signed {_t(result.checkpoint.time)}"
    )
    if result.logged_by is not None:
        echo(f"      every proven entry was in the log by {_t(result.logged_by.time)}")
    echo(f"window: {_t(manifest.window_from)} to {_t(manifest.window_to)}")
    for agent in result.agents:
        echo("")
        _agent(agent, echo)
    echo("")
    echo("verification: the bundle verifies (signatures, digests, inclusion, chains, records)")
    echo("not checked:")
    for item in result.not_checked:
        echo(f"  - {item}")
    if result.clean:
        echo("result: attested (and inside its zones) for the whole window")
    else:
        echo("result: the window holds failures, gaps or zone decisions other than inside")


def _agent(agent: AgentVerification, echo: Echo) -> None:
    echo(f"agent {agent.agent_id} (policy {agent.policy})")
    identity = agent.identity
    if identity is not None:
        vendor = " ".join(v for v in (identity.tpm_manufacturer, identity.tpm_model) if v)
        chain = " -> ".join(identity.chain) or "(no chain)"
        echo(f"  EK: {vendor or 'TPM'}, sha256 {identity.ek_fingerprint[:16]}…, chain {chain}")
        echo(f"  AK: {', '.join(n[:20] + '…' for n in identity.ak_names)}")
        if identity.location_key:
            echo(f"  location key: {identity.location_key[:20]}… (certified by the AK)")
    echo("  day         rounds  passed  failed  unreach  gap (s)  inside  outside  uncertain")
    for day in agent.days:
        echo(
            f"  {day.day}  {day.rounds:6d}  {day.passed:6d}  {day.failed:6d}  "
            f"{day.unreachable:7d}  {day.gap_seconds:7.0f}  {day.inside:6d}  {day.outside:7d}  "
            f"{day.uncertain:9d}"
        )
    failures = agent.failures
    if failures:
        echo("  failures:")
        for link in failures:
            echo(f"    #{link.first_seq} {_t(link.ended_at)} {link.reason}: {link.message[:120]}")
    if agent.gaps:
        echo("  not attested:")
        for gap in agent.gaps:
            echo(f"    {_t(gap.start)} to {_t(gap.end)} ({gap.seconds:.0f} s)")
    if agent.unplaced_gap_seconds:
        echo(f"    and {agent.unplaced_gap_seconds:.0f} s inside folded rounds (not placed)")
    if agent.at is not None:
        answer = agent.at
        verdict = "attested" if answer.attested else f"NOT attested ({answer.state})"
        echo(f"  at {_t(answer.at)}: {verdict}; {answer.why}")
        if answer.fix is not None and answer.fix_at is not None:
            fix = answer.fix
            echo(
                f"    last fix: {fix.latitude:.6f}, {fix.longitude:.6f} ± {fix.accuracy_m:.0f} m, "
                f"{fix.decision} {fix.zone_id} (record #{answer.fix_seq}, {_t(answer.fix_at)})"
            )
    rounds = sum(d.rounds for d in agent.days)
    passed = sum(d.passed for d in agent.days)
    window = sum(g.seconds for g in agent.attested) + sum(g.seconds for g in agent.gaps)
    share = 100 * sum(s.seconds for s in agent.attested) / window if window else 0.0
    decisions = agent.decisions
    echo(
        f"  summary: attested {share:.2f}% of the window; {rounds} rounds ({passed} passed, "
        f"{len(failures)} failed); {len(agent.gaps)} gap(s); zone decisions: inside "
        f"{decisions['inside']}, outside {decisions['outside']}, uncertain "
        f"{decisions['uncertain']}; {agent.records_verified} records re-verified"
    )


def _t(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def verification_json(result: BundleVerification) -> dict[str, object]:
    """The result as JSON (the same for the same bundle): totals, days, gaps, not checked."""
    agents = []
    for agent in result.agents:
        failures = agent.failures
        agents.append(
            {
                "agent_id": agent.agent_id,
                "policy": agent.policy,
                "clean": agent.clean,
                "rounds": sum(d.rounds for d in agent.days),
                "passed": sum(d.passed for d in agent.days),
                "failed": sum(d.failed for d in agent.days),
                "unreachable": sum(d.unreachable for d in agent.days),
                "other": sum(d.other for d in agent.days),
                "records_verified": agent.records_verified,
                "decisions": agent.decisions,
                "failures": [
                    {"seq": f.first_seq, "at": _t(f.ended_at), "reason": f.reason} for f in failures
                ],
                "gaps": [
                    {"from": _t(g.start), "to": _t(g.end), "seconds": round(g.seconds, 3)}
                    for g in agent.gaps
                ],
                "unplaced_gap_seconds": round(agent.unplaced_gap_seconds, 3),
                "days": [
                    {
                        "day": str(d.day),
                        "rounds": d.rounds,
                        "passed": d.passed,
                        "failed": d.failed,
                        "unreachable": d.unreachable,
                        "gap_seconds": round(d.gap_seconds, 3),
                        "inside": d.inside,
                        "outside": d.outside,
                        "uncertain": d.uncertain,
                    }
                    for d in agent.days
                ],
                "not_checked": list(agent.not_checked),
                "at": _at_json(agent),
            }
        )
    return {
        "verified": True,
        "clean": result.clean,
        "log": {"origin": result.checkpoint.origin, "size": result.checkpoint.size},
        "window": {"from": _t(result.manifest.window_from), "to": _t(result.manifest.window_to)},
        "agents": agents,
        "not_checked": list(result.not_checked),
    }


def _at_json(agent: AgentVerification) -> dict[str, object] | None:
    answer = agent.at
    if answer is None:
        return None
    fix = answer.fix
    return {
        "at": _t(answer.at),
        "attested": answer.attested,
        "state": answer.state,
        "why": answer.why,
        "fix": (
            {
                "latitude": fix.latitude,
                "longitude": fix.longitude,
                "accuracy_m": fix.accuracy_m,
                "decision": fix.decision,
                "zone": fix.zone_id,
                "seq": answer.fix_seq,
            }
            if fix is not None
            else None
        ),
    }
