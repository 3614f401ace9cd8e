// selfadapt label review: the backend of the self-contained page (selfadapt review --static).
// The data (suspects with thumbnails as data: URIs) is embedded in the page; decisions live in
// localStorage, in decision order, and download as the review.csv that the server writes, with
// the same columns, versions, previous values and checks (store.normalise in Python).
"use strict";
window.selfadaptStaticBackend = function (data) {
  const key = "selfadapt-review:" + data.meta.id;
  const items = data.items;
  const byIndex = new Map(items.map((it) => [it.index, it]));
  const classes = data.meta.classes;
  const read = () => JSON.parse(localStorage.getItem(key) || '{"rows": {}, "order": [], "state": {}}');
  const write = (s) => localStorage.setItem(key, JSON.stringify(s));
  const statusOf = (rows, it) => (!rows[it.index] ? "todo" : rows[it.index].decision === "skip" ? "skipped" : "done");
  const counts = (rows) => {
    const c = { accept: 0, keep: 0, relabel: 0, skip: 0, total: items.length };
    Object.values(rows).forEach((r) => { if (byIndex.has(r.index)) c[r.decision] += 1; });
    c.todo = c.total - c.accept - c.keep - c.relabel - c.skip;
    return c;
  };
  const withDecision = (rows, it) => Object.assign({}, it, { decision: rows[it.index] || null,
    version: rows[it.index] ? rows[it.index].version : 0 });
  return {
    meta: async () => { const s = read(); return Object.assign({}, data.meta, { counts: counts(s.rows), state: s.state }); },
    items: async (q) => {
      const s = read();
      const match = items.filter((it) => (q.given === "" || it.given === Number(q.given))
        && (q.suggested === "" || it.suggested === Number(q.suggested))
        && (q.cls === "" || it.given === Number(q.cls) || it.suggested === Number(q.cls))
        && (q.status === "all" || statusOf(s.rows, it) === q.status));
      let offset = Number(q.offset || 0);
      if (q.around !== undefined && q.around !== "") {
        const at = q.around === "todo" ? match.findIndex((it) => !s.rows[it.index])
          : match.findIndex((it) => it.index === Number(q.around));
        offset = at >= 0 ? at - (at % q.limit) : 0;
      }
      return { total: match.length, offset, limit: q.limit, counts: counts(s.rows),
               items: match.slice(offset, offset + q.limit).map((it) => withDecision(s.rows, it)) };
    },
    decide: async (d) => {
      const s = read();
      const it = byIndex.get(d.index);
      const current = s.rows[d.index] || null;
      if (!it) return { status: 400, body: { error: "no sample " + d.index + " on this page" } };
      if ((current ? current.version : 0) !== d.version) {
        return { status: 409, body: { current, counts: counts(s.rows) } };
      }
      const n = normalise(it, d.decision, d.label);
      if (n.error) return { status: 400, body: { error: n.error } };
      let row = null;
      s.order = (s.order || []).filter((k) => k !== d.index);  // decision order, as review.csv keeps it
      if (n.decision === null) delete s.rows[d.index];
      else {
        s.order.push(d.index);
        row = { index: d.index, file: it.file, given: classes[it.given], suggested: classes[it.suggested],
                decision: n.decision, label: n.label, time: new Date().toISOString(),
                previous: current ? current.decision + ":" + current.label : "",
                version: (current ? current.version : 0) + 1 };
        s.rows[d.index] = row;
      }
      write(s);
      return { status: 200, body: { item: row, counts: counts(s.rows) } };
    },
    saveState: async (st) => { const s = read(); s.state = st; write(s); },
    flushState: (st) => { const s = read(); s.state = st; write(s); },
    thumb: (item) => item.thumb || null,
    original: () => null,
    download: () => {
      const columns = ["index", "file", "given", "suggested", "decision", "label", "time", "previous", "version"];
      const quote = (v) => { const t = String(v); return /[",\n\r]/.test(t) ? '"' + t.replace(/"/g, '""') + '"' : t; };
      const s = read();
      const rows = (s.order || []).map((k) => s.rows[k]);
      const lines = [columns.join(",")].concat(rows.map((r) => columns.map((c) => quote(r[c])).join(",")));
      const link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
      link.download = "review.csv";
      document.body.appendChild(link);
      link.click();
      link.remove();
    },
  };

  function normalise(it, decision, label) {  // as selfadapt.apps.review.store.normalise
    const given = classes[it.given], suggested = classes[it.suggested];
    if (decision === null) return { decision: null, label: "" };
    const implied = { accept: suggested, keep: given, skip: "" };
    if (decision in implied) {
      if (label !== null && label !== undefined && label !== implied[decision]) return { error: decision + " means " + implied[decision] };
      return { decision, label: implied[decision] };
    }
    if (decision !== "relabel" || classes.indexOf(label) < 0) return { error: "unknown decision or class" };
    if (label === suggested) return { decision: "accept", label };
    return { decision: label === given ? "keep" : "relabel", label };
  }
};
