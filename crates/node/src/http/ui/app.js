// raftq's web page: views chosen by the URL fragment (#/, #/jobs?…, #/job/KEY, #/cluster),
// live state from /events (server-sent events), lists and jobs from /rest/v1. Everything the
// queue says is put in the page as text (textContent), never as HTML.
"use strict";

const STATES = ["dependent", "delayed", "ready", "reserved", "running", "lost", "buried", "complete"];
const PAGE_JOBS = 50;
// A list or job page re-reads the REST API at most this often while events come in.
const REFRESH_MS = 1000;

// ---- the login page ------------------------------------------------------------------
if (document.getElementById("login")) {
  if (new URLSearchParams(location.search).get("login") === "failed") {
    document.getElementById("login-failed").hidden = false;
  }
} else {
  main();
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function main() {
  let live = null; // the last `state` event
  let renderLive = null; // the current view's hook for a new event
  let lastRefresh = 0;
  let refreshTimer = null;

  const view = document.getElementById("view");
  const flash = (text, bad) => {
    const f = document.getElementById("flash");
    f.textContent = text;
    f.className = bad ? "flash error" : "flash";
    f.hidden = false;
    clearTimeout(flash.t);
    flash.t = setTimeout(() => { f.hidden = true; }, 6000);
  };

  async function api(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    if (r.status === 401) { location.href = "/"; throw new Error("logged out"); }
    const text = await r.text();
    let v = null;
    try { v = text ? JSON.parse(text) : null; } catch (_) { v = { error: text }; }
    if (!r.ok) throw new Error((v && v.error) || r.statusText);
    return { body: v, headers: r.headers };
  }

  function confirmThen(text, action) {
    const d = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    d.returnValue = "";
    d.onclose = async () => {
      if (d.returnValue !== "ok") return;
      try { flash(await action()); } catch (e) { flash(e.message, true); }
    };
    d.showModal();
  }

  for (const b of document.querySelectorAll(".queue-mode button")) {
    b.addEventListener("click", () => {
      const mode = b.dataset.mode;
      const what = { paused: "Pause the queue: runners get no new jobs until it is resumed.",
        draining: "Drain the queue: runners get no new jobs and idle ones exit.",
        open: "Resume the queue: runners get jobs again." }[mode];
      confirmThen(what, async () => {
        await api("PUT", "/rest/v1/queue", { mode });
        return "queue " + mode;
      });
    });
  }

  // ---- live state --------------------------------------------------------------------
  function connect() {
    const es = new EventSource("/events");
    const badge = document.getElementById("live");
    es.addEventListener("state", (ev) => {
      live = JSON.parse(ev.data);
      badge.textContent = "live · node " + live.node + (live.leading ? " (leader)" : " (follower: counts may lag)");
      badge.className = live.leading ? "live on" : "live stale";
      if (renderLive) renderLive(live);
    });
    es.onerror = () => {
      badge.textContent = "reconnecting…";
      badge.className = "live off";
    };
  }

  // A view that reads the REST API re-reads it when events say something moved.
  function refreshSoon(fn) {
    const now = Date.now();
    clearTimeout(refreshTimer);
    const wait = Math.max(0, REFRESH_MS - (now - lastRefresh));
    refreshTimer = setTimeout(() => { lastRefresh = Date.now(); fn(); }, wait);
  }

  // ---- views -------------------------------------------------------------------------
  function parseHash() {
    const h = location.hash.replace(/^#/, "") || "/";
    const [path, query] = h.split("?");
    return { path, params: new URLSearchParams(query || "") };
  }

  function route() {
    const { path, params } = parseHash();
    renderLive = null;
    clearTimeout(refreshTimer);
    view.replaceChildren();
    for (const a of document.querySelectorAll("nav a")) a.classList.remove("here");
    if (path.startsWith("/job/")) {
      showJob(decodeURIComponent(path.slice(5)));
    } else if (path === "/jobs") {
      document.getElementById("nav-jobs").classList.add("here");
      showJobs(params);
    } else if (path === "/cluster") {
      document.getElementById("nav-cluster").classList.add("here");
      showCluster();
    } else {
      document.getElementById("nav-counts").classList.add("here");
      showCounts();
    }
  }

  function jobsLink(params, text) {
    return el("a", { href: "#/jobs?" + new URLSearchParams(params).toString() }, text);
  }

  // Counts per rep group × state, updated by every event.
  function showCounts() {
    const table = el("table", { id: "counts", class: "counts" });
    view.append(el("h1", {}, "Jobs by rep group and state"), table,
      el("p", { class: "hint" }, "Counts are pushed by the server as jobs move; click a number to list those jobs."));
    const draw = (s) => {
      if (!s) return;
      const c = s.counts;
      if (c.error) { table.replaceChildren(el("tr", {}, el("td", { class: "error" }, c.error))); return; }
      const head = el("tr", {}, el("th", {}, "rep group"), STATES.map((st) => el("th", { class: "st-" + st }, st)));
      const rows = Object.entries(c.rep_groups).map(([g, counts]) =>
        el("tr", {}, el("td", {}, jobsLink({ rep_grp: g }, g)),
          STATES.map((st) => el("td", { "data-grp": g, "data-state": st, class: counts[st] ? "n st-" + st : "n zero" },
            counts[st] ? jobsLink({ rep_grp: g, state: st }, counts[st]) : "0"))));
      const total = el("tr", { class: "total" }, el("td", {}, "total"),
        STATES.map((st) => el("td", { id: "total-" + st, class: "n" },
          c.states[st] ? jobsLink({ state: st }, c.states[st]) : "0")));
      table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows, total));
    };
    draw(live);
    renderLive = draw;
  }

  // A page of jobs, filtered by rep group (exact, prefix, substring) and state.
  function showJobs(params) {
    const grp = params.get("rep_grp") || "";
    const how = params.get("match") || "exact";
    const state = params.get("state") || "";
    const page = Math.max(0, parseInt(params.get("page") || "0", 10) || 0);
    const similar = params.get("similar") === "1";
    const form = el("form", { class: "filters", id: "filters" },
      el("label", {}, "rep group ", el("input", { name: "rep_grp", value: grp, id: "f-grp" })),
      el("select", { name: "match", id: "f-match" },
        ["exact", "prefix", "substring"].map((m) => el("option", { value: m, selected: m === how }, m))),
      el("label", {}, " state ", el("select", { name: "state", id: "f-state" },
        el("option", { value: "" }, "any (incomplete)"),
        STATES.map((st) => el("option", { value: st, selected: st === state }, st)))),
      el("label", {}, el("input", { type: "checkbox", name: "similar", value: "1", checked: similar }), " group similar"),
      el("button", { type: "submit", id: "f-apply" }, "Show"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const p = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v) p.set(k, v);
      location.hash = "#/jobs?" + p.toString();
    });
    const sel = {};
    if (grp) { sel.rep_grp = grp; sel.match = how; }
    if (state) sel.state = state;
    const actions = el("p", { class: "actions" },
      el("button", { id: "act-kill-all", onclick: () => bulk("kill", "POST", "/rest/v1/jobs/kill") }, "Kill running"),
      el("button", { id: "act-retry-all", onclick: () => bulk("retry", "POST", "/rest/v1/jobs/retry") }, "Retry buried"),
      el("button", { id: "act-remove-all", class: "danger", onclick: () => bulk("remove", "DELETE", "/rest/v1/jobs") }, "Remove waiting/buried"));
    function bulk(verb, method, path) {
      if (!grp && !state) { flash("choose a rep group or a state first", true); return; }
      const what = (grp ? "rep group " + grp + (how !== "exact" ? " (" + how + ")" : "") : "every rep group") +
        (state ? ", state " + state : "");
      confirmThen(verb + " the jobs of " + what + "?", async () => {
        const r = await api(method, path + "?" + new URLSearchParams(sel).toString());
        const n = r.body.count !== undefined ? r.body.count : r.body.deleted;
        refreshSoon(load);
        return verb + ": " + n + " job(s)";
      });
    }
    const table = el("table", { id: "jobs", class: "jobs" });
    const pager = el("p", { class: "pager" });
    view.append(el("h1", {}, "Jobs"), form, actions, table, pager);
    async function load() {
      const q = new URLSearchParams(sel);
      if (similar) q.set("limit", "1");
      q.set("offset", String(page * PAGE_JOBS));
      q.set("count", String(PAGE_JOBS));
      try {
        const r = await api("GET", "/rest/v1/jobs?" + q.toString());
        const total = parseInt(r.headers.get("x-total-count") || "0", 10);
        const head = el("tr", {}, ["key", "state", "rep group", "exit", "fail reason", "attempts", "command"].map((h) => el("th", {}, h)),
          similar ? el("th", {}, "similar") : null);
        const rows = r.body.map((j) => el("tr", { "data-key": j.key },
          el("td", { class: "key" }, el("a", { href: "#/job/" + j.key }, j.key.slice(0, 8))),
          el("td", { class: "st-" + j.state }, j.state),
          el("td", {}, j.rep_grp),
          el("td", {}, j.exited ? j.exit_code : ""),
          el("td", {}, j.fail_reason),
          el("td", {}, j.attempts),
          el("td", { class: "cmd" }, j.cmd),
          similar ? el("td", {}, j.similar ? "+" + j.similar : "") : null));
        table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
        const last = Math.max(0, Math.ceil(total / PAGE_JOBS) - 1);
        const to = (p) => { const n = new URLSearchParams(params); n.set("page", String(p)); return "#/jobs?" + n.toString(); };
        pager.replaceChildren(
          page > 0 ? el("a", { href: to(page - 1), id: "page-prev" }, "‹ previous") : "",
          " page " + (page + 1) + " of " + (last + 1) + " (" + total + " jobs) ",
          page < last ? el("a", { href: to(page + 1), id: "page-next" }, "next ›") : "");
      } catch (e) {
        table.replaceChildren(el("tr", {}, el("td", { class: "error" }, e.message)));
      }
    }
    load();
    renderLive = () => refreshSoon(load);
  }

  const ms = (v) => (v / 1000).toFixed(1) + " s";
  const when = (v) => (v ? new Date(v).toISOString().replace("T", " ").replace(/\..*/, " UTC") : "");

  // One job: what it is, its last run, its output, and the actions that fit its state.
  function showJob(key) {
    const box = el("div", { id: "job" });
    view.append(box);
    async function load() {
      let j;
      try { j = (await api("GET", "/rest/v1/jobs/" + encodeURIComponent(key))).body; } catch (e) {
        box.replaceChildren(el("p", { class: "error" }, e.message));
        return;
      }
      const req = (r) => r.ram_mb + " MB RAM, " + r.time_s + " s, " + r.cores + " cores, " + r.disk_gb + " GB disk";
      const why = ["learned values win", "learned values if higher", "the values asked win"][j.override] || "";
      const facts = [
        ["key", j.key], ["command", j.cmd], ["cwd", j.cwd + (j.cwd_matters ? " (matters)" : "")],
        ["actual cwd", j.actual_cwd], ["state", j.state], ["rep group", j.rep_grp], ["req group", j.req_grp],
        ["attempts", j.attempts + (j.until_buried ? " (" + j.until_buried + " before buried)" : "")],
        ["host", j.host], ["pid", j.pid || ""], ["exit code", j.exited ? j.exit_code : ""],
        ["fail reason", j.fail_reason], ["peak RAM", j.peak_ram_mb + " MB"], ["peak disk", j.peak_disk_mb + " MB"],
        ["CPU time", ms(j.cpu_ms)], ["wall time", ms(j.wall_ms)],
        ["started", when(j.started_ms)], ["ended", when(j.ended_ms)], ["added", when(j.added_ms)],
        ["requirements asked", req(j.asked)], ["requirements in force", req(j.requirements) + " (" + why + ")"],
        ["priority", j.priority], ["retries", j.retries],
        ["dep groups", (j.dep_grps || []).join(", ")],
        ["depends on", (j.deps || []).map((d) => d.dep_grp ? "group " + d.dep_grp : "job " + d.key).join(", ")],
        ["limit groups", (j.limit_grps || []).join(", ")],
        ["environment", (j.env || []).join(" ")],
      ];
      const dl = el("table", { class: "facts" }, facts.map(([k, v]) =>
        el("tr", {}, el("th", {}, k), el("td", { id: "job-" + k.replace(/ /g, "-") }, v))));
      const act = (id, verb, method, path, states) => states.includes(j.state)
        ? el("button", { id, class: verb === "remove" ? "danger" : "", onclick: () =>
          confirmThen(verb + " job " + j.key.slice(0, 8) + " (" + j.cmd + ")?", async () => {
            await api(method, path + "?key=" + j.key);
            refreshSoon(load);
            return verb + ": asked";
          }) }, verb) : null;
      box.replaceChildren(
        el("h1", {}, "Job ", el("span", { class: "st-" + j.state, id: "job-badge" }, j.state)),
        el("p", { class: "actions" },
          act("act-kill", "kill", "POST", "/rest/v1/jobs/kill", ["reserved", "running", "lost"]),
          act("act-retry", "retry", "POST", "/rest/v1/jobs/retry", ["buried"]),
          act("act-remove", "remove", "DELETE", "/rest/v1/jobs", ["dependent", "delayed", "ready", "buried"])),
        dl,
        el("h2", {}, "stdout"), el("pre", { id: "job-stdout" }, j.stdout || "(none)"),
        el("h2", {}, "stderr"), el("pre", { id: "job-stderr" }, j.stderr || "(none)"));
    }
    load();
    renderLive = () => refreshSoon(load);
  }

  // The cluster as the answering node sees it, from each event.
  function showCluster() {
    const head = el("div", { id: "cluster-head" });
    const table = el("table", { id: "nodes", class: "nodes" });
    view.append(el("h1", {}, "Cluster"), head, table,
      el("p", { class: "hint" }, "The leader's view (a follower asks the leader); it updates as the cluster changes."));
    const draw = (s) => {
      if (!s) return;
      const c = s.cluster;
      if (c.error) { head.replaceChildren(el("p", { class: "error" }, c.error)); return; }
      head.replaceChildren(el("p", {},
        "leader: ", el("b", { id: "leader" }, c.leader ? "node " + c.leader : "none"),
        " · term ", el("b", { id: "term" }, c.term),
        " · as seen by node " + c.answered_by + (c.answered_by === c.leader ? " (the leader)" : "")),
        ...(c.stale ? [el("p", { class: "error", id: "cluster-stale" }, "stale: " + (c.stale_reason || "no leader known"))] : []));
      const h = el("tr", {}, ["node", "address", "role", "voter", "term", "last log", "applied", "lag", "snapshot", "store errors"].map((x) => el("th", {}, x)));
      const rows = c.nodes.map((n) => el("tr", { "data-node": n.id, class: n.role === "leader" ? "leader" : "" },
        el("td", {}, n.id), el("td", {}, n.addr), el("td", { class: "role" }, n.role), el("td", {}, n.voter ? "yes" : "learner"),
        el("td", {}, n.term || ""), el("td", {}, n.last_log_index || ""), el("td", {}, n.applied_index || ""),
        el("td", {}, n.role === "leader" || n.role === "unknown" ? "" : n.lag),
        el("td", {}, n.snapshot_index || ""), el("td", {}, n.id === c.answered_by ? n.store_errors : "")));
      table.replaceChildren(el("thead", {}, h), el("tbody", {}, rows));
    };
    draw(live);
    renderLive = draw;
  }

  window.addEventListener("hashchange", route);
  connect();
  route();
}
