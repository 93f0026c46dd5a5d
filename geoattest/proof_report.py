"""Wiring of ``geoattest report``: a bundle verified offline, rendered as HTML, PDF (WeasyPrint:
the HTML printed, fonts local, nothing fetched) or the per-round CSV."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from geofence import ZoneSet, load_zones
from verifier.export.report import render_csv, render_html
from verifier.export.results import BundleVerification

FORMATS = (".html", ".pdf", ".csv")


def zones_of(files: Mapping[str, bytes], repair: bool) -> dict[str, ZoneSet]:
    """The bundle's zones files (already held to their digests by the verification)."""
    found = {}
    for path, data in files.items():
        if path.startswith("zones/"):
            found[hashlib.sha256(data).hexdigest()] = load_zones(data.decode(), repair=repair)
    return found


def write_report(result: BundleVerification, files: Mapping[str, bytes], output: Path) -> int:
    """Write the report in the format ``output``'s suffix names; returns its size in bytes."""
    suffix = output.suffix.lower()
    if suffix == ".csv":
        output.write_text(render_csv(result), encoding="utf-8")
        return output.stat().st_size
    page = render_html(result, zones_of(files, result.manifest.zones_repair))
    if suffix == ".html":
        output.write_text(page, encoding="utf-8")
    else:
        import weasyprint  # only for PDF: it needs Pango

        weasyprint.HTML(string=page, base_url=str(output.parent)).write_pdf(output)
    return output.stat().st_size
