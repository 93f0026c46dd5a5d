// The dashboard: log in with an API key, read the fleet, follow its events live.
import { ApiError, api, followEvents, forgetKey, saveKey, savedKey } from "./api.js";
import { FleetCharts } from "./charts.js";
import { AgentDetail } from "./detail.js";
import { $ } from "./dom.js";
import { FleetTable } from "./fleet.js";

const FULL_REFRESH_MS = 15000;
let role = null;
let stopEvents = null;
let map = null;
let table = null;
let detail = null;
let pending = null;
let charts = null;
const CHARTS_REFRESH_MS = 10000;

async function loadMap() {
  try {
    const { FleetMap } = await import("./map.js");
    map = new FleetMap($("#map"), { onOpen: (id) => detail.open(id) });
    const countries = await fetch("countries.geojson", { cache: "force-cache" }).then((r) => r.json());
    map.showCountries(countries);
    map.showZones(await api("/zones"));
  } catch (error) {
    console.error(error);
    $("#map").textContent = "The map library is not built: run deploy/build-dashboard.";
  }
}

async function refreshFleet() {
  const fleet = await api("/fleet");
  table.replaceAll(fleet.agents);
  map?.showAgents(fleet.agents);
  charts?.showLeases(fleet.agents);
}

// Many events in a burst make one read of the fleet.
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    await refreshFleet().catch(report);
    if (detail.agentId) await detail.refresh().catch(report);
  }, 250);
}

function report(error) {
  if (error instanceof ApiError && error.status === 401) return logout("The key was refused: log in again.");
  console.error(error);
}

function setLive(state) {
  const live = $("#live");
  live.dataset.live = state;
  live.textContent = { live: "live", retrying: "reconnecting…", unauthorized: "key refused", off: "offline" }[state];
  if (state === "unauthorized") logout("The key was refused: log in again.");
}

async function start() {
  const who = await api("/whoami");
  role = who.role;
  $("#whoami").textContent = `${who.name} (${who.role})`;
  $("#login").hidden = true;
  $("#fleet").hidden = false;
  $("#charts").hidden = false;
  charts = new FleetCharts($("#charts"));
  $("#logout").hidden = false;
  table = new FleetTable({
    table: $("#agents"), empty: $("#empty"), search: $("#search"), stateFilter: $("#state-filter"),
    counts: $("#counts"), onOpen: (id) => detail.open(id).catch(report),
  });
  detail = new AgentDetail({ isAdmin: () => role === "admin", onChanged: refreshSoon });
  await loadMap();
  await refreshFleet();
  map?.resize();
  stopEvents = followEvents({
    onEvent: (event) => {
      table.applyEvent(event);
      refreshSoon();
    },
    onState: setLive,
    onResync: refreshSoon,
  });
  setInterval(() => refreshFleet().catch(report), FULL_REFRESH_MS);
  charts.refresh().catch(report);
  setInterval(() => charts.refresh().catch(report), CHARTS_REFRESH_MS);
  setInterval(() => table.render(), 1000); // lease left and "ago" tick
}

function logout(message = "") {
  forgetKey();
  stopEvents?.();
  location.hash = "";
  $("#login-error").textContent = message;
  if (!message) location.reload();
  else {
    $("#fleet").hidden = true;
    $("#charts").hidden = true;
    $("#detail").hidden = true;
    $("#login").hidden = false;
  }
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("#api-key");
  saveKey(input.value.trim());
  input.value = "";
  try {
    await start();
  } catch (error) {
    forgetKey();
    $("#login-error").textContent = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
  }
});
$("#logout").addEventListener("click", () => logout());

if (savedKey()) start().catch((error) => { forgetKey(); report(error); $("#login").hidden = false; });
