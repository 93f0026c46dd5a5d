// The map: country outlines (shipped with the app), the zones policies name, and each node's
// last judged position with its accuracy circle, coloured by the zone decision. No tiles.
import * as L from "./vendor/leaflet/leaflet-src.esm.js";

export const DECISION_COLOURS = {
  inside: "#2e7d32",
  outside: "#c62828",
  uncertain: "#ef6c00",
  unknown: "#616161",
};

export class FleetMap {
  constructor(container, { onOpen }) {
    this.onOpen = onOpen;
    this.map = L.map(container, {
      attributionControl: false,
      worldCopyJump: true,
      minZoom: 1,
      maxZoom: 16,
      keyboard: true,
    }).setView([30, 10], 2);
    this.countries = L.geoJSON(null, {
      style: { color: "#8a8f98", weight: 0.7, fillColor: "#e9ecef", fillOpacity: 1 },
      interactive: false,
    }).addTo(this.map);
    this.zones = L.geoJSON(null, {
      style: { color: "#1565c0", weight: 2, fillColor: "#1565c0", fillOpacity: 0.08 },
      onEachFeature: (feature, layer) =>
        layer.bindTooltip(`zone ${feature.id} (${feature.properties?.name ?? ""})`),
    }).addTo(this.map);
    this.nodes = L.layerGroup().addTo(this.map);
    this.fitted = false;
  }

  showCountries(geojson) {
    this.countries.clearLayers();
    this.countries.addData(geojson);
  }

  showZones(geojson) {
    this.zones.clearLayers();
    this.zones.addData(geojson);
  }

  showAgents(agents) {
    this.nodes.clearLayers();
    const points = [];
    for (const agent of agents) {
      const position = agent.position;
      if (!position) continue;
      const colour = DECISION_COLOURS[position.decision] ?? DECISION_COLOURS.unknown;
      const at = [position.latitude, position.longitude];
      points.push(at);
      if (position.accuracy_m) {
        L.circle(at, {
          radius: position.accuracy_m,
          color: colour,
          weight: 1,
          fillOpacity: 0.15,
          interactive: false,
        }).addTo(this.nodes);
      }
      const failed = agent.state === "failed";
      const marker = L.circleMarker(at, {
        radius: 7,
        color: failed ? "#000" : "#fff",
        weight: failed ? 3 : 2,
        fillColor: colour,
        fillOpacity: 1,
        className: `node node-${agent.state} decision-${position.decision}`,
      });
      marker.bindTooltip(`${agent.agent_id}: ${agent.state}, ${position.decision}` +
        (position.zone ? ` ${position.zone}` : "") +
        (position.distance_m != null ? `, ${Math.round(position.distance_m)} m from its border` : "") +
        (position.accuracy_m ? ` (±${position.accuracy_m} m)` : ""));
      marker.on("click", () => this.onOpen(agent.agent_id));
      marker.addTo(this.nodes);
    }
    if (!this.fitted) this.fit(points);
  }

  fit(points) {
    const bounds = L.latLngBounds(points);
    const zones = this.zones.getBounds();
    if (zones.isValid()) bounds.extend(zones);
    if (bounds.isValid()) {
      this.map.fitBounds(bounds.pad(0.2), { maxZoom: 9 });
      this.fitted = true;
    }
  }

  resize() {
    this.map.invalidateSize();
  }
}
