// The sipp-gateway admin dashboard. Served by the gateway itself (no third-party code). The
// session cookie is HttpOnly; the CSRF token lives only in this page's memory and goes in the
// x-sipp-admin-csrf header of every POST. All text is inserted with textContent (no HTML).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let csrf = null;
  let timer = null;
  let settingsLoaded = false;

  async function api(method, path, body) {
    const headers = { "content-type": "application/json" };
    headers["x-sipp-admin-csrf"] = csrf || "login";
    const r = await fetch("api/" + path, {
      method, headers: method === "GET" ? {} : headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    return { status: r.status, data };
  }

  function show(loggedIn) {
    $("login-view").hidden = loggedIn;
    $("dash-view").hidden = !loggedIn;
    $("logout").hidden = !loggedIn;
    if (timer) clearInterval(timer);
    timer = null;
    if (loggedIn) { refresh(); timer = setInterval(refresh, 1000); }
  }

  function fmt(x, digits) {
    if (x === null || x === undefined) return "–";
    return typeof x === "number" && digits !== undefined ? x.toFixed(digits) : String(x);
  }

  function fill(tableId, rows, cols, rowClass) {
    const tb = $(tableId).tBodies[0];
    const frag = document.createDocumentFragment();
    for (const row of rows) {
      const tr = document.createElement("tr");
      if (rowClass) tr.className = rowClass(row);
      for (const c of cols) {
        const td = document.createElement("td");
        td.textContent = typeof c === "function" ? c(row) : fmt(row[c]);
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    tb.replaceChildren(frag);
  }

  function pct(p) { return p.n ? `${fmt(p.p50, 1)} / ${fmt(p.p90, 1)} / ${fmt(p.p99, 1)}` : "–"; }

  function loadSettings(s) {
    $("rl-enabled").checked = s.rate_limit.enabled;
    $("rl-rpm").value = s.rate_limit.requests_per_minute;
    $("rl-burst").value = s.rate_limit.burst;
    $("rl-tpm").value = s.rate_limit.tokens_per_minute;
    $("max-concurrent").value = s.max_concurrent_requests;
    $("blocklist").value = s.ip_blocklist.join("\n");
    const fs = $("caller-limits");
    fs.querySelectorAll("div").forEach((d) => d.remove());
    for (const c of s.callers) {
      const d = document.createElement("div");
      d.dataset.caller = c.caller;
      const name = document.createElement("b");
      name.textContent = c.caller + " ";
      d.appendChild(name);
      for (const [key, label] of [["requests_per_minute", "requests / minute"], ["tokens_per_minute", "tokens / minute"]]) {
        const l = document.createElement("label");
        l.textContent = label + " ";
        const i = document.createElement("input");
        i.type = "number"; i.min = "0"; i.value = c[key]; i.dataset.key = key;
        l.appendChild(i);
        d.appendChild(l);
      }
      fs.appendChild(d);
    }
    $("store-note").textContent = s.redis
      ? "Limit counters are shared through Redis; these settings apply to this gateway process."
      : "Limit counters are kept in this process's memory.";
  }

  async function refresh() {
    const r = await api("GET", "state");
    if (r.status === 401) { csrf = null; show(false); return; }
    if (r.status !== 200 || !r.data) return;
    const s = r.data;
    $("total-requests").textContent = s.total.requests;
    $("total-errors").textContent = s.total.errors;
    $("total-in").textContent = s.total.input_tokens;
    $("total-out").textContent = s.total.output_tokens;
    $("active").textContent = s.active;
    $("lat").textContent = pct(s.latency_ms);
    $("ttft").textContent = pct(s.ttft_ms);
    fill("live", s.live, ["id", "caller", "target", "operation", "stream", "output_tokens", (x) => fmt(x.age_ms, 0)]);
    fill("recent", s.recent, [(x) => new Date(x.time * 1000).toLocaleTimeString(), "id", "caller", "target", "operation", "status", "code",
      (x) => fmt(x.latency_ms, 1), (x) => fmt(x.ttft_ms, 1), "input_tokens", "output_tokens"],
      (x) => (x.status >= 400 ? "err" : ""));
    fill("targets", s.targets, ["target", "type", "requests", "errors", "input_tokens", "output_tokens"]);
    fill("callers", s.callers, ["caller", "requests", "errors", "input_tokens", "output_tokens"]);
    fill("replicas", s.replicas || [], ["target", "replica", "state", "outstanding", "requests", "errors", "ejections",
      (x) => (x.state === "out" ? fmt(x.retry_in_s, 1) : "–")], (x) => (x.state === "out" ? "err" : ""));
    fill("models", s.models || [], ["target", "status", "in_flight", (x) => fmt(x.footprint_bytes / 1048576, 1),
      "loads", "unloads_idle", "unloads_budget", "refused"]);
    const rl = s.settings && s.settings.reload;
    $("reload-status").textContent = rl ? (rl.ok ? "Last reload applied: " : "Last reload refused: ") + rl.message : "";
    if (!settingsLoaded) { loadSettings(s.settings); settingsLoaded = true; }
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    const r = await api("POST", "login", { password: $("password").value });
    $("password").value = "";
    if (r.status === 200 && r.data && r.data.csrf) { csrf = r.data.csrf; settingsLoaded = false; show(true); }
    else $("login-error").textContent = (r.data && r.data.error && r.data.error.message) || "login failed";
  });

  $("logout").addEventListener("click", async () => {
    await api("POST", "logout", {});
    csrf = null;
    show(false);
  });

  $("settings-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const num = (id) => Number($(id).value || 0);
    const callers = {};
    document.querySelectorAll("#caller-limits div").forEach((d) => {
      const c = {};
      d.querySelectorAll("input").forEach((i) => { c[i.dataset.key] = Number(i.value || 0); });
      callers[d.dataset.caller] = c;
    });
    const body = {
      rate_limit: { enabled: $("rl-enabled").checked, requests_per_minute: num("rl-rpm"),
                    burst: num("rl-burst"), tokens_per_minute: num("rl-tpm") },
      max_concurrent_requests: num("max-concurrent"),
      callers,
      ip_blocklist: $("blocklist").value.split("\n").map((x) => x.trim()).filter((x) => x),
    };
    const r = await api("POST", "settings", body);
    if (r.status === 200) { loadSettings(r.data); $("settings-status").textContent = "Saved."; }
    else $("settings-status").textContent = "Not saved: " + ((r.data && r.data.error && r.data.error.message) || r.status);
  });

  $("reload").addEventListener("click", async () => {
    const r = await api("POST", "reload", {});
    $("reload-status").textContent = r.status === 200 ? "Reloaded."
      : "Refused: " + ((r.data && r.data.error && r.data.error.message) || r.status);
    settingsLoaded = false; /* show what the file set */
  });

  (async () => {
    const r = await api("GET", "session");
    if (r.status === 200 && r.data) { csrf = r.data.csrf; show(true); } else show(false);
  })();
})();
