// The genrecall search page: POST /bundle once, then POST /search and POST /bm25 per query.
// Plain JS, no build step, no dependencies. Text from the API is always set with textContent.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const page = { limits: null, k: 100 };
  // read by the browser tests and benchmarks/bench_page.py: time from navigation start to the first
  // rendered result, and from the last search's start to its rendered result (ms)
  window.genrecall = { firstResultMs: null, lastSearchMs: null, searches: 0 };

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  async function post(path, body) {
    const start = performance.now();
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    } catch (err) {
      return { ok: false, status: 0, data: { error: `no answer from the server (${err})` }, ms: 0 };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = { error: `HTTP ${response.status} ${response.statusText}` };
    }
    return { ok: response.ok, status: response.status, data, ms: performance.now() - start };
  }

  // The API's own wording: pydantic's per-field messages, else its "error" string.
  function apiMessage(res) {
    const d = res.data || {};
    const lines = [];
    if (Array.isArray(d.detail)) {
      for (const item of d.detail) {
        const where = (item.loc || []).filter((p) => p !== "body").join(".");
        lines.push(where ? `${where}: ${item.msg}` : String(item.msg));
      }
    }
    if (!lines.length) lines.push(d.error || d.detail || `HTTP ${res.status}`);
    return lines;
  }

  function showError(res) {
    const box = $("error");
    box.replaceChildren(el("strong", null, `The server answered ${res.status || "nothing"}:`));
    const list = el("ul");
    for (const line of apiMessage(res)) list.append(el("li", null, line));
    box.append(list);
    box.hidden = false;
  }

  function clearResults() {
    $("error").hidden = true;
    for (const id of ["clusters", "bm25-items"]) $(id).replaceChildren();
    for (const id of ["gen-stats", "bm25-stats", "gen-note"]) $(id).textContent = "";
  }

  const fmt = (x, digits) => (typeof x === "number" ? x.toFixed(digits) : "-");

  function itemRow(item) {
    const li = el("li", "item");
    li.dataset.itemId = item.item_id;
    li.append(el("span", "title", item.title), el("span", "meta", `#${item.item_id}`),
      el("span", "score", fmt(item.score, 3)));
    return li;
  }

  // Items arrive SID by SID in beam order; group them under their SID, keeping that order.
  function renderClusters(body, ms) {
    const groups = new Map(body.sids.map((sid) => [sid, []]));
    for (const item of body.items) {
      if (!groups.has(item.sid)) groups.set(item.sid, []);
      groups.get(item.sid).push(item);
    }
    const out = $("clusters");
    let rank = 0;
    let filled = 0;
    for (const [sid, items] of groups) {
      rank += 1;
      if (!items.length) continue;
      filled += 1;
      const card = el("article", "cluster");
      card.dataset.sid = sid;
      const head = el("header");
      head.append(el("span", "rank", `#${rank}`), el("code", "sid", sid),
        el("span", "count", `${items.length} item${items.length === 1 ? "" : "s"}`),
        el("span", "score", `log p ${fmt(items[0].score, 3)}`));
      const list = el("ol", "items");
      for (const item of items) list.append(itemRow(item));
      card.append(head, list);
      out.append(card);
    }
    const personal = body.personalized ? " · personalised" : "";
    $("gen-stats").textContent =
      `${body.sids.length} SIDs · ${body.items.length} items · ${Math.round(ms)} ms${personal}`;
    const rest = body.sids.length - filled;
    $("gen-note").textContent = body.items.length ? (rest > 0 ?
      `${filled} clusters shown; ${rest} more generated SIDs lie past the first ${page.k} items.` : "")
      : "No items: the generated SIDs hold no listed item.";
  }

  function renderBM25(res) {
    if (!res.ok) {
      $("bm25-stats").textContent = apiMessage(res).join("; ");
      return;
    }
    const list = $("bm25-items");
    for (const item of res.data.items) list.append(itemRow(item));
    $("bm25-stats").textContent = `${res.data.items.length} items · ${Math.round(res.ms)} ms`;
    if (!res.data.items.length) list.append(el("li", "note", "No title shares a word with the query."));
  }

  // Items both channels found get a mark; the BM25 header says how many.
  function markShared() {
    const lexical = new Set([...$("bm25-items").querySelectorAll(".item")].map((li) => li.dataset.itemId));
    const generative = new Set([...$("clusters").querySelectorAll(".item")].map((li) => li.dataset.itemId));
    let shared = 0;
    for (const li of document.querySelectorAll(".item")) {
      const both = lexical.has(li.dataset.itemId) && generative.has(li.dataset.itemId);
      li.classList.toggle("shared", both);
      if (both && li.closest("#bm25-items")) shared += 1;
    }
    if (lexical.size) $("bm25-stats").textContent += ` · ${shared} also in generative recall (\u25CF)`;
  }

  function numberOrRaw(text) {
    const trimmed = text.trim();
    if (trimmed === "") return undefined; // the server's default
    const n = Number(trimmed);
    return Number.isFinite(n) ? n : trimmed; // not a number: let the API say so
  }

  async function search() {
    const started = performance.now();
    const query = $("query").value;
    const user = $("user").value.trim();
    const beam = numberOrRaw($("beam").value);
    const body = { query, user_id: user || null, k: page.k };
    if (beam !== undefined) body.beam_size = beam;
    const params = new URLSearchParams({ q: query });
    if (user) params.set("user", user);
    if (beam !== undefined) params.set("beam", String(beam));
    history.replaceState(null, "", `?${params}`);

    document.body.dataset.state = "loading";
    $("go").disabled = true;
    const [gen, lex] = await Promise.all([
      post("search", body),
      post("bm25", { query, k: Math.min(page.k, 50) }),
    ]);
    clearResults();
    $("go").disabled = false;
    window.genrecall.searches += 1;
    if (!gen.ok) {
      showError(gen);
      document.body.dataset.state = "error";
      return;
    }
    renderClusters(gen.data, gen.ms);
    renderBM25(lex);
    markShared();
    if (window.genrecall.firstResultMs === null) window.genrecall.firstResultMs = performance.now();
    window.genrecall.lastSearchMs = performance.now() - started;
    document.body.dataset.state = "done";
  }

  function renderInfo(info) {
    $("bundle").textContent = info.bundle;
    $("data-version").textContent = info.data_version || "unknown";
    $("promoted").textContent = info.promoted_at || "never (served directly, not the production pointer)";
    $("sizes").textContent = `${info.items} items in ${info.sids} SIDs` +
      (info.personalized ? " · user features on" : " · user features off");
    page.limits = info.limits;
    page.k = Math.min(100, info.limits.max_k);
    const beam = $("beam");
    beam.max = info.limits.max_beam_size;
    if (!beam.value) beam.value = info.limits.default_beam_size;
    const users = $("known-users");
    for (const u of info.examples.users) users.append(Object.assign(el("option"), { value: u }));
    const examples = $("examples");
    for (const q of info.examples.queries) {
      const chip = el("button", "chip", q);
      chip.type = "button";
      chip.addEventListener("click", () => { $("query").value = q; search(); });
      examples.append(chip);
    }
    examples.hidden = !info.examples.queries.length;
    if (!info.bm25) $("lexical").hidden = true;
  }

  async function start() {
    const url = new URLSearchParams(location.search);
    if (url.has("q")) $("query").value = url.get("q");
    if (url.has("user")) $("user").value = url.get("user");
    if (url.has("beam")) $("beam").value = url.get("beam");
    $("search-form").addEventListener("submit", (event) => { event.preventDefault(); search(); });
    const info = await post("bundle", {});
    if (!info.ok) {
      showError(info);
      document.body.dataset.state = "error";
      return;
    }
    renderInfo(info.data);
    document.body.dataset.state = "ready";
    if (url.has("q")) search();
  }

  start();
})();
