// selfadapt label review: keyboard-first review of suspected label errors.
// Two backends with one interface: the local server (selfadapt review RUN_DIR, below) or data
// embedded in a self-contained page (selfadapt review --static; static-backend.js). No framework,
// no build step.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const embedded = $("review-data");
  const backend = embedded ? window.selfadaptStaticBackend(JSON.parse(embedded.textContent)) : httpBackend();
  const stats = (window.reviewStats = { firstRenderMs: null, saveMs: [], ready: false });
  const ui = { meta: null, page: { items: [], offset: 0, total: 0, limit: 50 }, cursor: 0,
               filters: { given: "", suggested: "", cls: "", status: "all" }, undo: [] };
  let queue = Promise.resolve();
  let stateTimer = null;

  // ---------------------------------------------------------------- backends
  function httpBackend() {
    async function call(url, body) {
      const init = body === undefined ? { cache: "no-store" }
        : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
      const res = await fetch(url, init);
      let data = null;
      try { data = await res.json(); } catch (e) { data = null; }
      return { status: res.status, body: data };
    }
    const ok = (r) => { if (r.status !== 200) throw new Error((r.body && r.body.error) || "HTTP " + r.status); return r.body; };
    return {
      meta: () => call("api/meta").then(ok),
      items: (q) => call("api/items?" + new URLSearchParams(q)).then(ok),
      decide: (d) => call("api/decision", d),
      saveState: (s) => call("api/state", s),
      flushState: (s) => fetch("api/state", { method: "POST", keepalive: true,
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(s) }),
      thumb: (item) => "thumb/" + item.index + ".png",
      original: (item) => (ui.meta.originals ? "image/" + item.index : null),
      download: null,
    };
  }

  // ---------------------------------------------------------------- rendering
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const className = (c) => { const name = ui.meta.classes[c]; return name === String(c) ? name : name + " [" + c + "]"; };
  const stateOf = (it) => (!it.decision ? "todo" : it.decision.decision === "skip" ? "skipped" : "done");
  const describeRow = (row) => (!row ? "undecided" : row.decision === "skip" ? "skipped"
    : row.decision + " \u2192 " + row.label);

  function card(it, pos) {
    const node = el("article", "card");
    node.dataset.index = it.index;
    node.dataset.pos = pos;
    const state = stateOf(it);
    if (state === "done") node.classList.add("decided");
    if (state === "skipped") node.classList.add("skipped");
    if (pos === ui.cursor) node.classList.add("current");
    const thumb = el("div", "thumb");
    const src = backend.thumb(it);
    if (ui.meta.kind === "image" && src) {
      const img = el("img");
      img.loading = "lazy";
      img.alt = "sample " + it.index;
      img.src = src;
      thumb.appendChild(img);
    } else {
      thumb.appendChild(el("div", "features", it.file || "row " + it.index));
    }
    node.appendChild(thumb);
    const info = el("div", "info");
    info.appendChild(el("div", "rank", "#" + it.rank + " \u00b7 sample " + it.index + " \u00b7 score " + it.score.toFixed(3)));
    if (it.file) {
      const original = backend.original(it);
      const file = el(original ? "a" : "div", "file", it.file);
      if (original) { file.href = original; file.target = "_blank"; file.rel = "noopener"; }
      info.appendChild(file);
    }
    const labels = el("div", "labels");
    labels.append("given ", el("span", "given", className(it.given)), " \u2192 suggested ",
                  el("span", "suggested", className(it.suggested)), " (" + it.confidence.toFixed(2) + ")");
    info.appendChild(labels);
    info.appendChild(el("div", "likely", "likely: " + it.top.map((t) => className(t[0]) + " " + t[1].toFixed(2)).join(" \u00b7 ")));
    Object.entries(it.text || {}).forEach(([k, v]) => info.appendChild(el("div", "text", k + ": " + v)));
    info.appendChild(el("div", "state " + (it.decision ? it.decision.decision : ""), describeRow(it.decision)));
    node.appendChild(info);
    node.appendChild(buttons(pos));
    node.addEventListener("click", (e) => { if (!e.target.closest("button, select, a")) setCursor(pos); });
    return node;
  }

  function buttons(pos) {
    const box = el("div", "buttons");
    const add = (label, decision) => {
      const b = el("button", "", label);
      b.type = "button";
      b.addEventListener("click", () => { b.blur(); setCursor(pos); act(decision); });  // Enter must not click it again
      box.appendChild(b);
    };
    add("accept (a)", "accept");
    add("keep given (k)", "keep");
    const other = el("select");
    other.appendChild(el("option", "", "other class (c)"));
    ui.meta.classes.forEach((name, c) => { const o = el("option", "", c + " " + name); o.value = c; other.appendChild(o); });
    other.addEventListener("change", () => { setCursor(pos); relabel(Number(other.value)); other.blur(); });
    box.appendChild(other);
    add("skip (s)", "skip");
    return box;
  }

  function render() {
    const list = $("list");
    list.replaceChildren(...ui.page.items.map(card));
    const p = ui.page;
    $("range").textContent = p.total ? (p.offset + 1) + "\u2013" + (p.offset + p.items.length) + " of " + p.total : "nothing matches";
    $("prev").disabled = p.offset === 0;
    $("next").disabled = p.offset + p.items.length >= p.total;
    if (!p.items.length) list.appendChild(el("p", "", "No suspect matches these filters."));
    scrollToCursor();
  }

  function renderCard(pos) {
    const old = $("list").querySelector('[data-pos="' + pos + '"]');
    if (old) old.replaceWith(card(ui.page.items[pos], pos));
  }

  function showCounts(c) {
    const done = c.accept + c.keep + c.relabel;
    $("counter").textContent = done + " of " + c.total + " decided (" + c.accept + " accepted, " + c.keep + " kept, "
      + c.relabel + " relabelled) \u00b7 " + c.skip + " skipped \u00b7 " + c.todo + " to do";
  }

  function say(text) {
    const m = $("message");
    m.textContent = text;
    m.hidden = !text;
  }

  // ---------------------------------------------------------------- moving
  function setCursor(pos) {
    const cards = $("list").querySelectorAll(".card");
    if (!cards.length) return;
    pos = Math.max(0, Math.min(pos, cards.length - 1));
    if (cards[ui.cursor]) cards[ui.cursor].classList.remove("current");
    ui.cursor = pos;
    cards[pos].classList.add("current");
    scrollToCursor();
    scheduleState();
  }

  function scrollToCursor() {
    const current = $("list").querySelector(".card.current");
    if (current) current.scrollIntoView({ block: "nearest" });
  }

  async function load(q) {
    const query = Object.assign({}, ui.filters, { limit: ui.page.limit || 50 }, q);
    const page = await backend.items(query);
    ui.page = page;
    ui.cursor = 0;
    if (q.around !== undefined && q.around !== "todo") {
      ui.cursor = Math.max(0, page.items.findIndex((it) => it.index === Number(q.around)));
    } else if (q.around === "todo") {
      ui.cursor = Math.max(0, page.items.findIndex((it) => !it.decision));
    } else if (q.last) {
      ui.cursor = Math.max(0, page.items.length - 1);
    }
    showCounts(page.counts);
    render();
    scheduleState();
  }

  async function move(delta) {
    const p = ui.page;
    const next = ui.cursor + delta;
    if (next >= 0 && next < p.items.length) return setCursor(next);
    if (delta > 0) return turn(1);
    if (delta < 0 && p.offset > 0) return turn(-1, true);
  }

  async function turn(direction, last) {
    const p = ui.page;
    const status = ui.filters.status;
    const gone = status === "all" ? 0 : p.items.filter((it) => stateOf(it) !== status).length;  // no longer match
    if (direction > 0 && p.offset + p.items.length - gone < p.total - gone) {
      await load({ offset: p.offset + p.items.length - gone });
    } else if (direction < 0 && p.offset > 0) {
      await load({ offset: Math.max(0, p.offset - p.limit), last: !!last });
    }
  }

  function currentKey() {
    const it = ui.page.items[ui.cursor];
    return it ? it.index : null;
  }

  function scheduleState() {
    clearTimeout(stateTimer);
    stateTimer = setTimeout(() => backend.saveState({ cursor: currentKey(), filters: ui.filters }), 250);
  }

  // ---------------------------------------------------------------- deciding
  function enqueue(task) {  // one at a time, in key order: fast typing never races
    queue = queue.then(task).catch((err) => say(String((err && err.message) || err)));
    return queue;
  }

  async function post(body) {
    const start = performance.now();
    const res = await backend.decide(body);
    stats.saveMs.push(performance.now() - start);
    return res;
  }

  function applyResult(index, res, before) {
    const pos = ui.page.items.findIndex((x) => x.index === index);
    const it = pos >= 0 ? ui.page.items[pos] : null;
    if (res.status === 200 || res.status === 409) {
      const row = res.status === 200 ? res.body.item : res.body.current;
      if (it) { it.decision = row; it.version = row ? row.version : 0; renderCard(pos); }
      showCounts(res.body.counts);
    }
    if (res.status === 200) {
      if (before !== undefined) ui.undo.push({ index, before, version: res.body.item ? res.body.item.version : 0 });
      say("");
      return true;
    }
    if (res.status === 409) {
      say("Sample " + index + " was changed in another tab (now " + describeRow(res.body.current)
          + "); this card shows it now: decide again to change it.");
      return false;
    }
    say((res.body && res.body.error) || "saving failed (HTTP " + res.status + ")");
    return false;
  }

  function decideCurrent(decision, label) {
    return enqueue(async () => {
      const it = ui.page.items[ui.cursor];
      if (!it) return;
      const before = it.decision;
      const res = await post({ index: it.index, decision, label: label === undefined ? null : label, version: it.version });
      if (applyResult(it.index, res, before)) await move(1);
    });
  }

  const act = (decision) => decideCurrent(decision);
  function relabel(c) {
    if (c >= 0 && c < ui.meta.classes.length) decideCurrent("relabel", ui.meta.classes[c]);
  }

  function undo() {
    return enqueue(async () => {
      const last = ui.undo.pop();
      if (!last) return say("Nothing to undo.");
      const b = last.before;
      const res = await post({ index: last.index, decision: b ? b.decision : null, label: b ? b.label : null,
                               version: last.version });
      applyResult(last.index, res, undefined);
      const pos = ui.page.items.findIndex((x) => x.index === last.index);
      if (pos >= 0) setCursor(pos);
      else await load({ around: String(last.index) });
    });
  }

  // ---------------------------------------------------------------- picker and filters
  function openPicker() {
    const dialog = $("picker");
    const input = $("picker-filter");
    input.value = "";
    fillPicker("");
    dialog.showModal();
    input.focus();
  }

  function fillPicker(text) {
    const list = $("picker-list");
    const wanted = text.trim().toLowerCase();
    const shown = ui.meta.classes.map((name, c) => [c, name])
      .filter(([c, name]) => !wanted || name.toLowerCase().includes(wanted) || String(c) === wanted);
    list.replaceChildren(...shown.map(([c, name], k) => {
      const li = el("li", k === 0 ? "first" : "", c + "  " + name);
      li.dataset.cls = c;
      li.addEventListener("click", () => pick(c));
      return li;
    }));
  }

  function pick(c) {
    $("picker-filter").blur();  // the next key goes to the page at once, not to the closed picker's input
    $("picker").close();
    relabel(Number(c));
  }

  function setupFilters() {
    const pair = $("filter-pair"), cls = $("filter-class"), status = $("filter-status");
    ui.meta.pairs.forEach(([g, s, n]) => {
      const o = el("option", "", className(g) + " \u2192 " + className(s) + " (" + n + ")");
      o.value = g + "," + s;
      pair.appendChild(o);
    });
    ui.meta.classes.forEach((name, c) => { const o = el("option", "", className(c)); o.value = c; cls.appendChild(o); });
    pair.value = ui.filters.given === "" ? "" : ui.filters.given + "," + ui.filters.suggested;
    if (pair.value === "") { ui.filters.given = ""; ui.filters.suggested = ""; }
    cls.value = String(ui.filters.cls);
    status.value = ui.filters.status;
    const changed = () => enqueue(async () => {
      const [g, s] = pair.value ? pair.value.split(",") : ["", ""];
      Object.assign(ui.filters, { given: g, suggested: s, cls: cls.value, status: status.value });
      await load({ offset: 0 });
    });
    [pair, cls, status].forEach((select) => select.addEventListener("change", () => { select.blur(); changed(); }));
  }

  function onKey(e) {
    if ($("picker").open) return;
    if (e.target.closest && e.target.closest("select")) return;  // the picker's input is handled above
    if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); undo(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const keys = {
      a: () => act("accept"), Enter: () => act("accept"), k: () => act("keep"), s: () => act("skip"),
      c: openPicker, u: undo, Backspace: undo,
      ArrowDown: () => enqueue(() => move(1)), ArrowRight: () => enqueue(() => move(1)), j: () => enqueue(() => move(1)),
      ArrowUp: () => enqueue(() => move(-1)), ArrowLeft: () => enqueue(() => move(-1)),
      PageDown: () => enqueue(() => turn(1)), PageUp: () => enqueue(() => turn(-1)),
    };
    if (keys[e.key]) keys[e.key]();
    else if (/^[0-9]$/.test(e.key)) relabel(Number(e.key));
    else return;
    e.preventDefault();
  }

  async function start() {
    ui.meta = await backend.meta();
    $("run").textContent = ui.meta.run + " \u00b7 " + ui.meta.dataset + " \u00b7 " + ui.meta.suspects + " suspects";
    ui.page.limit = ui.meta.page_size || 50;
    const saved = ui.meta.state || {};
    Object.assign(ui.filters, saved.filters || {});
    setupFilters();
    await load({ around: saved.cursor !== undefined && saved.cursor !== null ? String(saved.cursor) : "todo" });
    stats.firstRenderMs = performance.now();
    stats.ready = true;
    document.addEventListener("keydown", onKey);
    $("prev").addEventListener("click", () => enqueue(() => turn(-1)));
    $("next").addEventListener("click", () => enqueue(() => turn(1)));
    $("picker-filter").addEventListener("input", (e) => fillPicker(e.target.value));
    $("picker-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const first = $("picker-list").querySelector("li");
      if (first) pick(first.dataset.cls); else $("picker").close();
    });
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    if (backend.download) $("download").addEventListener("click", (e) => { e.preventDefault(); backend.download(); });
    window.addEventListener("pagehide", () => backend.flushState({ cursor: currentKey(), filters: ui.filters }));
  }

  start().catch((err) => say("Cannot load the review: " + ((err && err.message) || err)));
})();
