// The verifier's /v1 API with the operator's key, and the live event stream.
// The key lives in sessionStorage (this tab only) and travels as "Authorization: Bearer"; the
// stream is read with fetch() because EventSource cannot send that header.

const KEY = "geoattest.api_key";

export function savedKey() {
  return sessionStorage.getItem(KEY);
}

export function saveKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${savedKey() ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(response.status, error.code ?? "http_error", error.message ?? response.statusText);
  }
  return data;
}

// Follow /v1/events/stream: onEvent(event) for each agent event, onState("live"|"retrying").
// Reconnects after a break and resumes from the last event id it saw. Returns a stop function.
export function followEvents({ onEvent, onState, onResync }) {
  let stopped = false;
  let lastId = 0;
  let controller = null;

  async function once() {
    controller = new AbortController();
    const headers = { Authorization: `Bearer ${savedKey() ?? ""}`, Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = String(lastId);
    const response = await fetch("/v1/events/stream", { headers, signal: controller.signal, cache: "no-store" });
    if (!response.ok) throw new ApiError(response.status, "stream_refused", response.statusText);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        handle(frame);
      }
    }
  }

  function handle(frame) {
    const fields = { event: "message", data: "" };
    for (const line of frame.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (name === "data") fields.data += value;
      else fields[name] = value;
    }
    if (fields.event === "ready") {
      onState("live");
      if (lastId === 0) onResync();
      return;
    }
    if (fields.event !== "agent_event") return;
    if (fields.id) lastId = Math.max(lastId, Number(fields.id));
    try {
      onEvent(JSON.parse(fields.data));
    } catch (error) {
      console.error("bad event frame", error);
    }
  }

  (async () => {
    while (!stopped) {
      try {
        await once();
      } catch (error) {
        if (stopped) return;
        if (error instanceof ApiError && error.status === 401) {
          onState("unauthorized");
          return;
        }
      }
      if (stopped) return;
      onState("retrying");
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();

  return () => {
    stopped = true;
    controller?.abort();
  };
}
