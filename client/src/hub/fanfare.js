// fanfare.js: the browser client of a Fanfare hub. Dependency-free ES module.
//
//   import { connect } from "/fanfare.js";
//   const ff = connect({ onGap: (g) => console.warn("lost", g) });
//   const sub = ff.subscribe("chat.#", (data, ev) => console.log(ev.topic, data));
//   ff.publish("chat.lobby", { text: "hi" });
//   sub.unsubscribe();
//
// It reconnects with exponential backoff and jitter, tracks its position
// (per origin broadcaster: epoch and seq) and resumes with `since` on the
// next connection, whichever worker that lands on: the hub replays exactly
// what was missed, or says `gap`. Duplicates are dropped by position.
// The protocol is documented in PROTOCOL.md ("Browser protocol").

/** Does `topic` match the AMQP-style `pattern` (`*` one word, `#` zero or more)? */
export function matches(pattern, topic) {
  const p = pattern.split(".");
  const t = topic.split(".");
  const go = (i, j) => {
    if (i === p.length) return j === t.length;
    if (p[i] === "#") {
      for (let k = j; k <= t.length; k++) if (go(i + 1, k)) return true;
      return false;
    }
    if (j === t.length) return false;
    return (p[i] === "*" || p[i] === t[j]) && go(i + 1, j + 1);
  };
  return go(0, 0);
}

/** Decodes the `data` of an event flagged `binary` (base64) to bytes. */
export function decodeBinary(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Parses a position string `origin:epoch:seq,…` into a Map. */
export function parsePosition(text) {
  const m = new Map();
  if (!text) return m;
  for (const entry of text.split(",")) {
    const parts = entry.split(":");
    if (parts.length < 3) continue;
    const seq = BigInt(parts.pop());
    const epoch = BigInt(parts.pop());
    m.set(parts.join(":"), { epoch, seq });
  }
  return m;
}

function formatPosition(map) {
  return [...map.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([o, { epoch, seq }]) => `${o}:${epoch}:${seq}`)
    .join(",");
}

function defaultUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/ws`;
}

/**
 * Opens a connection that stays open until `close()`.
 *
 * Options: `url` (default: `/ws` of this page's host), `token` (sent as
 * `?token=`, or with `tokenInFirstFrame: true` as `{"op":"auth"}` right after
 * `welcome`, for hubs set up with `auth_in_first_frame`), `since` (a position to start from), `minBackoff` (ms, 250),
 * `maxBackoff` (ms, 10000), `outbox` (publishes kept while disconnected, 256),
 * and callbacks `onGap(gap)`, `onError(error)`, `onStatus(status, info)`,
 * `onEvent(data, event)` (every event).
 */
export function connect(options = {}) {
  const o = {
    minBackoff: 250,
    maxBackoff: 10000,
    outbox: 256,
    pingInterval: 25000,
    ...options,
  };
  const handlers = new Map(); // pattern -> Set<handler>
  const position = parsePosition(o.since || "");
  const outbox = [];
  const stats = { events: 0, duplicates: 0, gaps: 0, reconnects: 0, errors: 0, published: 0, dropped: 0 };
  let ws = null;
  let ready = false;
  let closedByUser = false;
  let attempt = 0;
  let timer = null;
  let pinger = null;
  let lastHeard = 0;
  let worker = null;
  let conn = null;

  const status = (s, info = {}) => o.onStatus && o.onStatus(s, { worker, conn, ...info });

  function send(obj) {
    if (ws && ready && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  function open() {
    clearTimeout(timer);
    let url = o.url || defaultUrl();
    if (o.token && !o.tokenInFirstFrame) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(o.token);
    status("connecting", { attempt });
    ws = new WebSocket(url);
    ready = false;
    ws.onmessage = (m) => onFrame(m.data);
    ws.onclose = (e) => onClose(e);
    ws.onerror = () => {};
  }

  function onFrame(text) {
    lastHeard = Date.now();
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    switch (f.op) {
      case "welcome": {
        worker = f.worker;
        conn = f.conn;
        ready = true;
        attempt = 0;
        if (o.token && o.tokenInFirstFrame) ws.send(JSON.stringify({ op: "auth", token: o.token }));
        const topics = [...handlers.keys()];
        if (topics.length) {
          const req = { op: "subscribe", topics };
          const since = formatPosition(position);
          if (since) req.since = since;
          ws.send(JSON.stringify(req));
        }
        while (outbox.length) ws.send(outbox.shift());
        clearInterval(pinger);
        pinger = setInterval(() => {
          if (Date.now() - lastHeard > 2 * o.pingInterval) ws.close(4000, "no answer");
          else send({ op: "ping" });
        }, o.pingInterval);
        status("open", { worker, conn });
        break;
      }
      case "event":
        onEvent(f);
        break;
      case "gap":
        stats.gaps++;
        if (o.onGap) o.onGap(f);
        break;
      case "error":
        stats.errors++;
        if (o.onError) o.onError(f);
        break;
      case "subscribed":
        // A resume (`since`) answers `subscribed` with `resuming`, streams
        // what was missed, then says `resumed` with the figures.
        if (!f.resuming) status("subscribed", { topics: f.topics, recovered: f.recovered, replayed: f.replayed });
        break;
      case "resumed":
        status("subscribed", { topics: f.topics, recovered: f.recovered, replayed: f.replayed });
        break;
      default:
        break;
    }
  }

  function onEvent(f) {
    const [origin, epochText, seqText] = splitPos(f.pos);
    if (origin !== null) {
      const epoch = BigInt(epochText);
      const seq = BigInt(seqText);
      const have = position.get(origin);
      if (have && (epoch < have.epoch || (epoch === have.epoch && seq <= have.seq))) {
        stats.duplicates++;
        return;
      }
      position.set(origin, { epoch, seq });
    }
    stats.events++;
    const ev = { topic: f.topic, pos: f.pos, ts: f.ts, from: f.from, fromUnverified: f.from_unverified, binary: !!f.binary, worker };
    if (o.onEvent) o.onEvent(f.data, ev);
    for (const [pattern, set] of handlers) {
      if (!matches(pattern, f.topic)) continue;
      for (const h of set) {
        try {
          h(f.data, ev);
        } catch (e) {
          console.error("fanfare handler failed", e);
        }
      }
    }
  }

  function splitPos(pos) {
    if (typeof pos !== "string") return [null];
    const parts = pos.split(":");
    if (parts.length < 3) return [null];
    const seq = parts.pop();
    const epoch = parts.pop();
    return [parts.join(":"), epoch, seq];
  }

  function onClose(e) {
    ready = false;
    clearInterval(pinger);
    status("closed", { code: e.code, reason: e.reason });
    if (closedByUser) return;
    stats.reconnects++;
    // A slow consumer (4008) comes back at once; anything else backs off.
    const base = e.code === 4008 ? o.minBackoff : Math.min(o.maxBackoff, o.minBackoff * 2 ** attempt);
    attempt++;
    const delay = base / 2 + Math.random() * (base / 2);
    timer = setTimeout(open, delay);
  }

  open();

  return {
    /** Calls `handler(data, event)` for every event whose topic matches `pattern`. */
    subscribe(pattern, handler) {
      let set = handlers.get(pattern);
      if (!set) {
        set = new Set();
        handlers.set(pattern, set);
        send({ op: "subscribe", topics: [pattern] });
      }
      set.add(handler);
      return {
        unsubscribe: () => {
          set.delete(handler);
          if (set.size === 0 && handlers.get(pattern) === set) {
            handlers.delete(pattern);
            send({ op: "unsubscribe", topics: [pattern] });
          }
        },
      };
    },
    /** Publishes JSON `data` on `topic`; kept in a bounded outbox while disconnected. */
    publish(topic, data) {
      const text = JSON.stringify({ op: "publish", topic, data });
      stats.published++;
      if (send({ op: "publish", topic, data })) return true;
      if (outbox.length >= o.outbox) {
        stats.dropped++;
        return false;
      }
      outbox.push(text);
      return true;
    },
    /** The position (`origin:epoch:seq,…`): resume from it with `connect({since})`. */
    get position() {
      return formatPosition(position);
    },
    /** The worker this connection is served by (from `welcome`). */
    get worker() {
      return worker;
    },
    /** This connection's id (from `welcome`). */
    get conn() {
      return conn;
    },
    /** Counters: events, duplicates, gaps, reconnects, errors, published, dropped. */
    stats,
    /** Drops the connection now; it reconnects and resumes (for demos and tests). */
    reconnect() {
      if (ws) ws.close(4001, "reconnect");
    },
    /** Closes for good. */
    close() {
      closedByUser = true;
      clearTimeout(timer);
      clearInterval(pinger);
      if (ws) ws.close(1000, "bye");
    },
  };
}
