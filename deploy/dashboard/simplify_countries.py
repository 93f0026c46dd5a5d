"""Make the dashboard's base layer: country outlines from the project's own Natural Earth copy.

    .venv/bin/python deploy/dashboard/simplify_countries.py

reads tests/vectors/zones/ne_110m_admin_0_countries.geojson (public domain, Natural Earth; see
tests/vectors/PROVENANCE.md), keeps each country's ISO A3 code and name, simplifies the outlines
(0.05 degrees, topology kept) and rounds coordinates to 3 decimals (about 100 m), and writes
verifier/web/static/countries.geojson. The map is drawn from it: no tile server, no request out.
"""

from __future__ import annotations

import json
from pathlib import Path

import shapely
import shapely.geometry

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "vectors" / "zones" / "ne_110m_admin_0_countries.geojson"
TARGET = ROOT / "verifier" / "web" / "static" / "countries.geojson"
TOLERANCE = 0.05
DIGITS = 3


def main() -> None:
    source = json.loads(SOURCE.read_text(encoding="utf-8"))
    features = []
    for feature in source["features"]:
        props = feature["properties"]
        shape = shapely.make_valid(shapely.geometry.shape(feature["geometry"]))
        simple = shapely.set_precision(shape.simplify(TOLERANCE), 10**-DIGITS)
        if simple.is_empty:
            continue
        features.append(
            {
                "type": "Feature",
                "properties": {"id": props["ADM0_A3"], "name": props["NAME"]},
                "geometry": shapely.geometry.mapping(simple),
            }
        )
    text = json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":"))
    TARGET.write_text(text + "\n", encoding="utf-8")
    print(f"{TARGET.relative_to(ROOT)}: {len(features)} countries, {len(text)} bytes")


if __name__ == "__main__":
    main()
