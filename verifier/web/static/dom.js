// Small DOM and formatting helpers. Text goes in through textContent only: nothing the API
// returns is ever parsed as HTML.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function $(selector) {
  return document.querySelector(selector);
}

export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  if (seconds < 2) return "just now";
  if (seconds < 120) return `${seconds} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

export function time(iso) {
  return iso ? new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "–";
}

export function leaseLeft(agent, now = Date.now()) {
  if (agent.state !== "attested" || !agent.lease_expires_at) return 0;
  return Math.max(0, (Date.parse(agent.lease_expires_at) - now) / 1000);
}

// The states that are not a verdict yet.
export const STARTING = new Set(["registered", "attesting"]);
