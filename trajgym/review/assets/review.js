"use strict";
// trajgym review: keyboard-first. Every text from the data goes in with textContent, never as markup.
(() => {
  const TOKEN = new URLSearchParams(location.search).get("token") || "";
  const $ = (s) => document.querySelector(s);
  const KEYS = {
    queue: "j/k move · Enter open · / filter · Esc clear focus",
    episode: "a accept · r reject · f simulator was wrong · s skip · u undo · [ ] pick a turn · e edit it · c compare · j/k next/prev · Esc queue",
    compare: "Esc back · a/r/f/s label the left episode",
  };
  const FILTERS = [
    ["f-scenario", "scenario", (r) => [r.scenario_id]],
    ["f-domain", "domain", (r) => [r.domain]],
    ["f-blame", "blame", (r) => [r.blame || "none"]],
    ["f-fault", "fault kind", (r) => (r.faults.length ? r.faults : ["no fault"])],
    ["f-persona", "persona", (r) => Object.entries(r.persona).map(([k, v]) => `${k}: ${v}`)],
    ["f-policy", "policy / weights", (r) => [`${r.agent || "?"} ${r.weights_id || r.policy}`]],
    ["f-status", "review status", (r) => [r.status]],
  ];
  const S = { rows: [], shown: [], sel: 0, view: "queue", ep: null, turn: -1, reasons: [], pick: -1, busy: false };

  function el(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") n.className = v; else if (k === "text") n.textContent = v; else n.setAttribute(k, v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) n.append(k instanceof Node ? k : String(k));
    return n;
  }
  function toast(msg, ok) {
    const t = $("#toast");
    t.textContent = msg; t.className = ok ? "ok" : ""; t.hidden = false;
    clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.hidden = true; }, ok ? 1500 : 8000);
  }
  async function api(path, body) {
    const opts = { headers: { "X-Review-Token": TOKEN } };
    if (body !== undefined) {
      opts.method = "POST"; opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify({ ...body, reviewer: reviewer() });
    }
    const res = await fetch(path, opts);
    const data = await res.json().catch(() => ({ error: `the server answered ${res.status}` }));
    if (!res.ok) { const e = new Error(data.error || `error ${res.status}`); e.status = res.status; throw e; }
    return data;
  }
  function reviewer() { return $("#reviewer").value.trim() || "reviewer"; }
  const fmt = (x) => (x === null || x === undefined ? "–" : typeof x === "number" ? x.toFixed(2) : String(x));
  const json = (x) => (typeof x === "string" ? x : JSON.stringify(x, null, 1));

  // -- the queue -------------------------------------------------------------------------------------
  async function loadQueue(keep) {
    const data = await api("/api/episodes");
    const current = S.shown[S.sel] && S.shown[S.sel].episode_id;
    S.rows = data.rows; S.reasons = data.reasons;
    if (!$("#reviewer").value) $("#reviewer").value = localStorage.getItem("trajgym-reviewer") || data.reviewer;
    const notes = $("#notes");
    notes.hidden = !data.notes.length; notes.textContent = data.notes.join(" · ");
    for (const [id, name, values] of FILTERS) {
      const sel = $("#" + id), was = sel.value;
      const seen = [...new Set(S.rows.flatMap(values))].sort();
      sel.replaceChildren(el("option", { value: "", text: `${name}: all` }), ...seen.map((v) => el("option", { value: v, text: v })));
      sel.value = seen.includes(was) ? was : "";
    }
    const tbody = $("#agreement-table tbody");
    tbody.replaceChildren(...data.agreement.map((a) => el("tr", {}, el("td", { text: a.scorer }),
      el("td", { class: "num", text: a.episodes }), el("td", { class: "num", text: a.agreement === null ? "–" : `${Math.round(a.agreement * 100)}%` }),
      el("td", { class: "num", text: a.kappa === null ? "–" : a.kappa.toFixed(2) }))));
    if (!data.agreement.length) tbody.append(el("tr", {}, el("td", { colspan: 4, class: "muted", text: "accept or reject episodes to compare the scorers with people" })));
    applyFilters(keep ? current : null);
  }
  function applyFilters(keepId) {
    const text = $("#filter-text").value.toLowerCase();
    const min = parseFloat($("#f-min").value), max = parseFloat($("#f-max").value);
    S.shown = S.rows.filter((r) => {
      for (const [id, , values] of FILTERS) { const v = $("#" + id).value; if (v && !values(r).includes(v)) return false; }
      if (!isNaN(min) && !(r.total !== null && r.total >= min)) return false;
      if (!isNaN(max) && !(r.total !== null && r.total <= max)) return false;
      return !text || JSON.stringify(r).toLowerCase().includes(text);
    });
    const at = keepId ? S.shown.findIndex((r) => r.episode_id === keepId) : -1;
    S.sel = at >= 0 ? at : Math.min(S.sel, Math.max(0, S.shown.length - 1));
    renderQueue();
  }
  function renderQueue() {
    const tbody = $("#queue-table tbody");
    tbody.replaceChildren(...S.shown.map((r, i) => {
      const tr = el("tr", { class: i === S.sel ? "selected" : "", "data-id": r.episode_id },
        el("td", { class: "st-" + r.status, text: r.status.replace("_", " ") + (r.edited_turns.length ? " ✎" : "") }),
        el("td", { text: r.episode_id }), el("td", { text: r.scenario_id }), el("td", { text: r.seed }),
        el("td", { text: r.trial }), el("td", { text: r.agent || "" }), el("td", { text: r.success === null ? "–" : r.success ? "yes" : "no" }),
        el("td", { class: "num", text: fmt(r.total) }), el("td", { text: r.blame || "" }), el("td", { text: r.faults.join(", ") }),
        el("td", { text: Object.values(r.persona).join(", ") }), el("td", { text: (r.weights_id || r.policy).slice(0, 20) }));
      tr.addEventListener("click", () => { S.sel = i; openEpisode(); });
      return tr;
    }));
    const counts = {};
    for (const r of S.rows) counts[r.status] = (counts[r.status] || 0) + 1;
    $("#counts").textContent = `${S.shown.length} of ${S.rows.length} episodes shown · ` +
      ["unreviewed", "accept", "reject", "flag_simulator", "skip"].map((k) => `${k.replace("_", " ")} ${counts[k] || 0}`).join(" · ");
    const row = tbody.children[S.sel]; if (row && S.view === "queue") row.scrollIntoView({ block: "nearest" });
  }
  function show(view) {
    S.view = view;
    for (const v of ["queue", "episode", "compare"]) $("#" + v).hidden = v !== view;
    $("#keys").textContent = KEYS[view];
  }

  // -- an episode ------------------------------------------------------------------------------------
  async function openEpisode() {
    const row = S.shown[S.sel];
    if (!row) return;
    S.ep = await api(`/api/episodes/${encodeURIComponent(row.episode_id)}`);
    S.turn = -1;
    renderEpisode(); show("episode"); window.scrollTo(0, 0);
  }
  function stepNode(s) {
    const badges = [];
    if (s.edit) badges.push(el("span", { class: "badge edited", text: `edited v${s.edit.version} by ${s.edit.reviewer}` }));
    if (s.stale) badges.push(el("span", { class: "badge stale-badge", text: "stale: after an edited turn" }));
    const body = [];
    const shown = s.edit ? s.edit.payload : null;
    const content = shown ? shown.content : s.content;
    const calls = shown ? (shown.tool_calls || []).map((c) => ({ name: c.function.name, arguments: c.function.arguments })) : s.tool_calls;
    if (s.observation && s.observation.length) {
      body.push(el("details", {}, el("summary", { text: "what the learner was told first" }),
        ...s.observation.map((m) => el("div", { class: "text" }, el("b", { text: `[${m.role}] ` }), json(m.content)))));
    }
    if (content) body.push(el("div", { class: "text", text: content }));
    else if (s.message && !calls.length) body.push(el("div", { class: "text", text: s.message }));
    calls.forEach((c) => body.push(el("code", { class: "call", text: `${c.name}(${c.arguments})` })));
    if (s.error) body.push(el("div", { class: "error", text: `malformed: ${s.error}` }));
    if (s.edit && s.results.length) body.push(el("div", { class: "muted", text: "what the original call returned:" }));
    for (const r of s.results) {
      body.push(el("code", { class: "result" + (r.ok ? "" : " failed"), text: `→ ${r.name}: ${json(r.content)}` }));
      for (const f of r.faults) body.push(el("span", { class: "badge fault", text: `fault: ${f.kind}${f.applied ? " (applied)" : ""}` }));
      for (const v of r.violations) body.push(el("span", { class: "badge violation", text: `violation ${v.rule}: ${v.message}` }));
    }
    for (const f of s.findings) body.push(el("div", {}, el("span", { class: "badge finding", text: `${f.scorer}: ${f.kind}` }), " " + f.message));
    return el("div", { class: `step role-${s.role}` + (s.stale ? " stale" : ""), "data-turn": s.turn, "data-learner": s.learner ? "1" : "" },
      el("div", { class: "who" }, `turn ${s.turn} · ${s.role} `, ...badges), ...body);
  }
  function renderEpisode() {
    const e = S.ep, r = e.row;
    const st = e.status ? e.status.action : "unreviewed";
    $("#ep-head").replaceChildren(el("b", { text: r.episode_id }), el("span", { text: `${r.scenario_id} · seed ${r.seed} · trial ${r.trial}` }),
      el("span", { class: "st-" + st, id: "ep-status", text: st.replace("_", " ") + (e.status && e.status.reason ? `: ${e.status.reason}` : "") }),
      el("span", { text: `total ${fmt(r.total)} · ${r.success ? "success" : "failure"}${r.blame ? " · blame " + r.blame : ""}` }),
      el("span", { class: "muted", text: `${S.sel + 1} of ${S.shown.length} · ${r.source}` }));
    $("#steps").replaceChildren(...e.steps.map(stepNode));
    const side = [];
    side.push(el("section", {}, el("h3", { text: "Scores" }), el("table", {}, ...e.scores.map((s) =>
      el("tr", {}, el("td", { text: s.name }), el("td", { class: "num", text: fmt(s.score) }), el("td", { text: s.passed === null ? "" : s.passed ? "passed" : "failed" }))))));
    if (e.episode_findings.length) side.push(el("section", {}, el("h3", { text: "Findings" }), ...e.episode_findings.map((f) => el("div", { text: `${f.scorer}: ${f.message}` }))));
    side.push(el("section", {}, el("h3", { text: `Outcome: ${e.outcome.success ? "goal met" : "goal missed"} (${e.outcome.termination})` }),
      ...e.outcome.conditions.map((c) => el("div", { class: c.ok ? "" : "error", text: `${c.ok ? "✓" : "✗"} ${c.path} ${c.operator} ${json(c.expected)} (got ${json(c.actual)})` }))));
    const diff = e.world_diff.length ? el("table", { class: "diff" }, el("tr", {}, el("th", { text: "where" }), el("th", { text: "this episode" }), el("th", { text: "reference" })),
      ...e.world_diff.map((d) => el("tr", {}, el("td", { text: d.path }), el("td", { text: json(d.episode) }), el("td", { text: json(d.reference) }))))
      : el("p", { class: "muted", text: e.reference && e.reference.error ? e.reference.error : "the world ends as the reference's does" });
    side.push(el("section", { id: "world-diff" }, el("h3", { text: "World against the reference" }), diff));
    side.push(el("section", {}, el("h3", { text: "Review history" }), ...(e.history.length ? e.history.map((h) =>
      el("div", { text: `${h.time.slice(0, 19)} ${h.reviewer}: ${h.action}${h.turn !== null ? " turn " + h.turn : ""}${h.reason ? " (" + h.reason + ")" : ""}` }))
      : [el("p", { class: "muted", text: "not reviewed yet" })])));
    if (e.siblings.length) side.push(el("section", {}, el("h3", { text: "Same variation" }), el("p", { text: `${e.siblings.length} other episode(s): c compares with ${e.siblings[0]}` })));
    $("#side").replaceChildren(...side);
    markTurn();
  }
  function learnerSteps() { return [...document.querySelectorAll('#steps .step[data-learner="1"]')]; }
  function markTurn() {
    learnerSteps().forEach((n, i) => n.classList.toggle("turn-selected", i === S.turn));
    const n = learnerSteps()[S.turn]; if (n) n.scrollIntoView({ block: "nearest" });
  }
  async function verdict(action, reason) {
    const id = S.ep.row.episode_id;
    try {
      await api(`/api/episodes/${encodeURIComponent(id)}/label`, { action, reason });
    } catch (err) { toast(err.message); return; }
    toast(`${action.replace("_", " ")}: ${id}`, true);
    await loadQueue(true);
    const at = S.shown.findIndex((r) => r.episode_id === id);
    const from = at >= 0 ? at + 1 : S.sel;  // a status filter may have taken the episode out of the queue
    const next = S.shown.findIndex((r, i) => i >= from && r.status === "unreviewed");
    if (next >= 0) { S.sel = next; await openEpisode(); } else { show("queue"); renderQueue(); }
  }
  async function undo() {
    const id = (S.view === "queue" ? S.shown[S.sel] : S.ep.row).episode_id;
    try {
      const res = await api(`/api/episodes/${encodeURIComponent(id)}/undo`, {});
      toast(res.undone ? `undone: ${res.undone.action} of ${id}` : `nothing of yours to undo on ${id}`, !!res.undone);
    } catch (err) { toast(err.message); return; }
    await loadQueue(true);
    if (S.view === "episode") await openEpisode();
  }

  // -- dialogs ---------------------------------------------------------------------------------------
  function openReasons() {
    S.pick = -1;
    $("#reasons").replaceChildren(...S.reasons.map((r, i) => el("li", { "data-i": i, text: r })));
    $("#reason-text").value = ""; $("#reason-dialog").hidden = false; $("#reason-text").focus();
  }
  function pickReason(i) {
    S.pick = i;
    [...$("#reasons").children].forEach((li, j) => li.classList.toggle("picked", j === i));
  }
  async function saveReason() {
    const more = $("#reason-text").value.trim();
    const reason = [S.pick >= 0 ? S.reasons[S.pick] : null, more || null].filter(Boolean).join(": ");
    if (!reason) { toast("pick a reason (1-6) or write one"); return; }
    $("#reason-dialog").hidden = true;
    await verdict("reject", reason);
  }
  function openEditor() {
    const s = S.ep.steps.filter((x) => x.learner)[S.turn];
    if (!s) { toast("pick a learner turn first: [ and ] move between them"); return; }
    const current = s.edit ? s.edit.payload : null;
    const calls = current ? (current.tool_calls || []).map((c) => ({ name: c.function.name, arguments: c.function.arguments })) : s.tool_calls;
    S.editing = { turn: s.turn, base: s.edit ? s.edit.version : 0, calls, kind: calls.length ? "tool_call" : "message" };
    $("#edit-title").textContent = `Edit turn ${s.turn}: ` + (calls.length ? "the tool call's arguments (JSON)" : "the message");
    const pick = $("#edit-call");
    pick.hidden = calls.length < 2;
    pick.replaceChildren(...calls.map((c, i) => el("option", { value: i, text: `${i}: ${c.name}` })));
    $("#edit-text").value = calls.length ? prettyArgs(calls[0].arguments) : (current ? current.content : s.content) || "";
    $("#edit-error").textContent = "";
    $("#edit-dialog").hidden = false; $("#edit-text").focus();
  }
  function prettyArgs(text) { try { return JSON.stringify(JSON.parse(text), null, 1); } catch (e) { return text; } }
  async function saveEdit() {
    const ed = S.editing, text = $("#edit-text").value;
    const body = { turn: ed.turn, base_version: ed.base, kind: ed.kind };
    if (ed.kind === "tool_call") { body.index = parseInt($("#edit-call").value || "0", 10); body.arguments = text; } else body.content = text;
    try {
      await api(`/api/episodes/${encodeURIComponent(S.ep.row.episode_id)}/edit`, body);
    } catch (err) {
      $("#edit-error").textContent = err.status === 409 ? `${err.message} (your text is kept: copy it before reloading)` : err.message;
      return;
    }
    $("#edit-dialog").hidden = true;
    toast(`turn ${ed.turn} edited`, true);
    const turn = S.turn; await openEpisode(); S.turn = turn; markTurn(); loadQueue(true);
  }
  async function compare() {
    const e = S.ep;
    if (!e.siblings.length) { toast("no other episode of this variation to compare with"); return; }
    const other = await api(`/api/episodes/${encodeURIComponent(e.siblings[0])}`);
    const col = (x) => [el("h3", { text: `${x.row.episode_id} · total ${fmt(x.row.total)} · ${x.status ? x.status.action : "unreviewed"}` }), ...x.steps.map(stepNode)];
    $("#compare-head").replaceChildren(el("b", { text: `${e.row.group}: side by side` }));
    $("#left").replaceChildren(...col(e)); $("#right").replaceChildren(...col(other));
    show("compare");
  }

  // -- keys ------------------------------------------------------------------------------------------
  document.addEventListener("keydown", async (ev) => {
    if (S.busy) return;
    const k = ev.key;
    if (!$("#reason-dialog").hidden) {
      if (k === "Escape") { $("#reason-dialog").hidden = true; ev.preventDefault(); }
      else if (k === "Enter") { ev.preventDefault(); await guard(saveReason); }
      else if (/^[1-9]$/.test(k) && parseInt(k, 10) <= S.reasons.length && !$("#reason-text").value) { ev.preventDefault(); pickReason(parseInt(k, 10) - 1); }
      return;
    }
    if (!$("#edit-dialog").hidden) {
      if (k === "Escape") { $("#edit-dialog").hidden = true; ev.preventDefault(); }
      else if (k === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); await guard(saveEdit); }
      return;
    }
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (typing) { if (k === "Escape" || k === "Enter") { document.activeElement.blur(); ev.preventDefault(); } return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const acts = { a: () => verdict("accept"), r: openReasons, f: () => verdict("flag_simulator"), s: () => verdict("skip"), u: undo };
    if (S.view === "queue") {
      if (k === "j" || k === "ArrowDown") { S.sel = Math.min(S.sel + 1, S.shown.length - 1); renderQueue(); }
      else if (k === "k" || k === "ArrowUp") { S.sel = Math.max(S.sel - 1, 0); renderQueue(); }
      else if (k === "Enter" || k === "o") await guard(openEpisode);
      else if (k === "/") $("#filter-text").focus();
      else if (k === "u") await guard(undo);
      else return;
    } else if (S.view === "episode") {
      if (acts[k]) await guard(acts[k]);
      else if (k === "]" || k === "ArrowRight") { S.turn = Math.min(S.turn + 1, learnerSteps().length - 1); markTurn(); }
      else if (k === "[" || k === "ArrowLeft") { S.turn = Math.max(S.turn - 1, 0); markTurn(); }
      else if (k === "e") openEditor();
      else if (k === "c") await guard(compare);
      else if (k === "j") { S.sel = Math.min(S.sel + 1, S.shown.length - 1); await guard(openEpisode); }
      else if (k === "k") { S.sel = Math.max(S.sel - 1, 0); await guard(openEpisode); }
      else if (k === "Escape") { show("queue"); renderQueue(); }
      else return;
    } else if (S.view === "compare") {
      if (k === "Escape") show("episode");
      else if (acts[k] && k !== "u") await guard(acts[k]);
      else return;
    }
    ev.preventDefault();
  });
  async function guard(fn) {
    S.busy = true;
    try { await fn(); } catch (err) { toast(err.message); } finally { S.busy = false; }
  }
  for (const id of ["filter-text", "f-min", "f-max", ...FILTERS.map((f) => f[0])]) $("#" + id).addEventListener("input", () => applyFilters(null));
  $("#reviewer").addEventListener("change", () => localStorage.setItem("trajgym-reviewer", reviewer()));
  $("#edit-call").addEventListener("change", () => { $("#edit-text").value = prettyArgs(S.editing.calls[parseInt($("#edit-call").value, 10)].arguments); });
  show("queue");
  loadQueue(false).then(() => { document.body.dataset.ready = "1"; }, (err) => toast(err.message));
})();
