// practicum's run browser: plain JavaScript over the data files beside the pages (see report/site.py).
// Each page has <main data-view="runs|compare|studies|study|reproductions">; start() fills it.
(function () {
  "use strict";
  const S = (window.PRACTICUM_SITE = window.PRACTICUM_SITE || {});
  const CURVES = ["loss", "accuracy", "perplexity", "f1", "lr"]; // first, in this order, as the reports do
  const PLOT = { displaylogo: false, responsive: true };
  let root = ""; // the way from this page to the site's folder ("" or "../")

  // -- small helpers --------------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat(Infinity)) e.append(kid instanceof Node ? kid : document.createTextNode(kid == null ? "" : String(kid)));
    return e;
  }
  const isNum = (v) => typeof v === "number" && isFinite(v);
  function show(v) {
    if (v == null) return "";
    if (typeof v === "number") {
      if (!isFinite(v)) return String(v);
      if (Number.isInteger(v)) return Math.abs(v) >= 1000 ? v.toLocaleString("en") : String(v);
      return Math.abs(v) >= 1e-3 ? v.toFixed(4) : v.toPrecision(3);
    }
    return typeof v === "object" ? JSON.stringify(v) : String(v);
  }
  const value = (v) => (typeof v === "number" ? String(v) : show(v)); // a config value as written: 0.0001, 1
  function when(t) {
    if (!t) return "";
    const d = new Date(t * 1000), p = (x) => String(x).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
  }
  function secs(s) {
    if (s == null) return "";
    return s < 90 ? `${s.toFixed(1)} s` : s < 5400 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
  }
  function order(a, b) { // numbers as numbers, empty last, text as text
    const ea = a == null || a === "", eb = b == null || b === "";
    if (ea || eb) return ea - eb;
    if (typeof a === "number" && typeof b === "number") return a - b;
    return show(a).localeCompare(show(b), "en", { numeric: true });
  }
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  function meanStd(values) { // sample standard deviation (n - 1), as the reports give it
    const v = values.filter(isNum), n = v.length;
    if (!n) return { mean: NaN, std: NaN, n: 0 };
    const mean = v.reduce((s, x) => s + x, 0) / n;
    const std = n > 1 ? Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1)) : 0;
    return { mean, std, n };
  }
  const runLink = (row, text) => h("a", { href: row.report ? root + row.report : `${root}compare.html#${row.id}`,
    title: row.report ? "its report" : "no report.html yet: its data, in the comparison view" }, text);
  const byId = () => Object.fromEntries((S.runs || []).map((r) => [r.id, r]));

  // A table whose header cells sort it (click again: the other way). columns: {label, value(row), cell(row)}
  function table(columns, rows, state, redraw) {
    const head = h("tr", {}, columns.map((c, i) => h("th", {
      class: state.col === c.label ? (state.dir > 0 ? "asc" : "desc") : null, title: "sort",
      onclick: () => { state.dir = state.col === c.label ? -state.dir : (c.desc ? -1 : 1); state.col = c.label; redraw(); },
    }, c.label)));
    const col = columns.find((c) => c.label === state.col);
    const sorted = col ? [...rows].sort((a, b) => state.dir * order(col.value(a), col.value(b))) : rows;
    const body = sorted.map((r) => h("tr", {}, columns.map((c) => {
      const v = c.cell ? c.cell(r) : show(c.value(r));
      return h("td", { class: isNum(c.value(r)) ? "num" : null }, v);
    })));
    return h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), h("tbody", {}, body)));
  }
  function select(label, values, current, onchange) {
    return h("label", {}, label + " ", h("select", { id: `filter-${label.replace(/\W+/g, "-")}`, onchange: (e) => onchange(e.target.value) },
      h("option", { value: "" }, "all"), values.map((v) => h("option", { value: v, selected: v === current }, v))));
  }
  // How an axis of grid values is drawn: log where positive values span a decade or more, evenly
  // spaced categories where such values include 0 (a log axis has no 0) or are not numbers.
  function scale(xs) {
    if (!xs.every(isNum)) return "category";
    const pos = xs.filter((x) => x > 0), decades = pos.length > 1 && Math.max(...pos) / Math.min(...pos) >= 10;
    return decades ? (pos.length === xs.length ? "log" : "category") : "linear";
  }
  const distinct = (xs) => [...new Set(xs.filter((x) => x !== "" && x != null))].sort(order);

  // -- Runs -----------------------------------------------------------------------------------
  function runsView(main) {
    const rows = S.runs || [];
    const st = { col: "started", dir: -1, experiment: "", status: "", seed: "", tag: "", q: "", all: false, picked: [] };
    const controls = h("div", { class: "controls" });
    const info = h("p", { class: "info", id: "info" }), holder = h("div");
    const compare = h("button", { id: "compare", disabled: true, onclick: () => {
      location.href = `${root}compare.html#${st.picked.join(",")}`;
    } }, "Compare");
    controls.append(
      select("experiment", distinct(rows.map((r) => r.experiment)), "", (v) => { st.experiment = v; draw(); }),
      select("status", distinct(rows.map((r) => r.status)), "", (v) => { st.status = v; draw(); }),
      select("seed report", distinct(rows.map((r) => r.seed_report)), "", (v) => { st.seed = v; draw(); }),
      select("tag", distinct(rows.flatMap((r) => r.tags || [])), "", (v) => { st.tag = v; draw(); }),
      h("label", {}, "search ", h("input", { type: "search", id: "search", placeholder: "id, metric, config value…",
        oninput: (e) => { st.q = e.target.value.toLowerCase(); draw(); } })),
      h("label", {}, h("input", { type: "checkbox", id: "all-keys", onchange: (e) => { st.all = e.target.checked; draw(); } }),
        " every config key"),
      compare);
    main.append(h("h1", {}, "Runs"), controls, info, holder);

    function shown() {
      return rows.filter((r) => (!st.experiment || r.experiment === st.experiment) && (!st.status || r.status === st.status)
        && (!st.seed || r.seed_report === st.seed) && (!st.tag || (r.tags || []).includes(st.tag))
        && (!st.q || JSON.stringify([r.id, r.experiment, r.status, r.headline, r.host, r.tags, r.config]).toLowerCase().includes(st.q)));
    }
    function draw() {
      const visible = shown();
      const keys = [...new Set(visible.flatMap((r) => Object.keys(r.config || {})))];
      // a key varies when the rows that have it disagree on it (another experiment's keys are not variation)
      const varying = keys.filter((k) => new Set(visible.filter((r) => k in r.config).map((r) => JSON.stringify(r.config[k]))).size > 1);
      const cols = st.all ? keys : varying;
      const pick = (r) => h("input", { type: "checkbox", class: "pick", "data-id": r.id, checked: st.picked.includes(r.id),
        onchange: (e) => {
          st.picked = e.target.checked ? [...st.picked, r.id] : st.picked.filter((x) => x !== r.id);
          compare.disabled = st.picked.length < 2;
          compare.textContent = `Compare${st.picked.length ? ` ${st.picked.length}` : ""}`;
        } });
      const columns = [
        { label: "", value: () => "", cell: pick },
        { label: "run", value: (r) => r.id, cell: (r) => runLink(r, r.id) },
        { label: "experiment", value: (r) => r.experiment },
        { label: "status", value: (r) => r.status, cell: (r) => h("span", { class: `status ${r.status}` }, r.status) },
        { label: "started", value: (r) => r.started, cell: (r) => when(r.started), desc: true },
        { label: "duration", value: (r) => r.duration, cell: (r) => secs(r.duration), desc: true },
        { label: "headline", value: (r) => r.value, cell: (r) => r.value != null ? `${r.metric} ${show(r.value)}` : r.headline, desc: true },
        { label: "host", value: (r) => r.host },
        { label: "tags", value: (r) => (r.tags || []).join(" ") },
        ...cols.map((k) => ({ label: k, value: (r) => r.config[k], cell: (r) => value(r.config[k]) })),
      ];
      info.textContent = `${visible.length} of ${rows.length} runs. ` + (st.all ? `Every config key (${keys.length}).`
        : `${varying.length} config key${varying.length === 1 ? "" : "s"} vary among them; ${keys.length - varying.length} that do not are hidden.`);
      holder.replaceChildren(table(columns, visible, st, draw));
      holder.querySelector("table").id = "runs";
    }
    draw();
  }

  // -- Compare --------------------------------------------------------------------------------
  function load(ids, done) { // each run's data file as a <script> (file:// pages cannot fetch)
    const data = (S.run_data = S.run_data || {});
    let left = ids.length;
    const missing = [];
    if (!left) return done([], missing);
    ids.forEach((id) => {
      if (data[id]) { if (!--left) done(ids.filter((i) => data[i]).map((i) => data[i]), missing); return; }
      const s = h("script", { src: `${root}data/run/${encodeURIComponent(id)}.js` });
      s.onload = s.onerror = () => {
        if (!data[id]) missing.push(id);
        if (!--left) done(ids.filter((i) => data[i]).map((i) => data[i]), missing);
      };
      document.head.append(s);
    });
  }

  function compareView(main) {
    const ids = decodeURIComponent(location.hash.slice(1)).split(",").filter(Boolean);
    main.append(h("h1", {}, ids.length > 1 ? "Comparison" : "Run"));
    if (!ids.length) { main.append(h("p", {}, "Pick two runs on the Runs page, then Compare.")); return; }
    load(ids, (runs, missing) => {
      if (missing.length) main.append(h("p", { class: "warn" }, `No data for ${missing.join(", ")} (rebuild the site: practicum site).`));
      if (runs.length) compareRuns(main, runs);
    });
  }

  function compareRuns(main, runs) {
    const first = runs[0];
    main.append(h("ul", { class: "runs" }, runs.map((r) => h("li", {}, runLink(r, r.id), ` ${r.experiment} · ${r.status} · `,
      r.value != null ? `${r.metric} ${show(r.value)}` : r.headline, h("code", {}, r.command)))));
    // the config keys that differ; every key behind the box
    const keys = [...new Set(runs.flatMap((r) => Object.keys(r.config)))];
    const differ = keys.filter((k) => runs.some((r) => !same(r.config[k], first.config[k])));
    const cfg = h("div"), st = { col: null, dir: 1 };
    const drawConfig = (all) => cfg.replaceChildren(
      (all ? keys : differ).length ? table([{ label: "key", value: (k) => k },
        ...runs.map((r) => ({ label: r.id, value: (k) => r.config[k], cell: (k) => value(r.config[k]) }))], all ? keys : differ, st, () => drawConfig(all))
        : h("p", {}, runs.length > 1 ? "No config key differs." : "No config."));
    const box = h("input", { type: "checkbox", id: "all-keys", onchange: (e) => drawConfig(e.target.checked) });
    main.append(h("h2", {}, runs.length > 1 ? "Config: the keys that differ" : "Config"),
      h("label", {}, box, ` every key (${keys.length})`), cfg);
    drawConfig(runs.length < 2);
    if (runs.length < 2) box.checked = true;
    // final metrics side by side, each with its delta against the first run
    const metrics = [...new Set(runs.flatMap((r) => Object.keys(r.summary).filter((k) => isNum(r.summary[k]))))].sort();
    const mcols = [{ label: "metric", value: (m) => m }, ...runs.map((r, i) => ({ label: r.id, value: (m) => r.summary[m],
      cell: (m) => {
        const v = r.summary[m], f = first.summary[m];
        return i && isNum(v) && isNum(f) ? `${show(v)} (${v - f >= 0 ? "+" : ""}${(v - f).toFixed(4)})` : show(v);
      } }))];
    main.append(h("h2", {}, runs.length > 1 ? `Final metrics (Δ against ${first.id})` : "Final metrics"),
      table(mcols, metrics, { col: null, dir: 1 }, () => {}));
    // your own model: whether its source differs
    if (runs.some((r) => String(r.config["model.name"] || "").includes(":"))) {
      const shas = runs.map((r) => r.source);
      main.append(h("h2", {}, "Your model's source"), h("p", { id: "source" }, shas.some((s) => !s) ? "not recorded for every run"
        : new Set(shas).size === 1 ? `the same in every run (sha256 ${shas[0].slice(0, 12)})`
        : `differs: ${runs.map((r) => `${r.id} ${r.source.slice(0, 12)}`).join(", ")}`));
    }
    // the curves overlaid: one plot per metric, a line per run and split
    const names = [...new Set(runs.flatMap((r) => Object.keys(r.curves)))];
    names.sort((a, b) => ((CURVES.indexOf(a) + 1) || 99) - ((CURVES.indexOf(b) + 1) || 99) || order(a, b));
    if (names.length) main.append(h("h2", {}, "Curves"));
    const colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
    const dashes = ["solid", "dot", "dash", "dashdot", "longdash"];
    names.slice(0, 12).forEach((name) => {
      const div = h("div", { class: "plot" });
      main.append(div);
      const traces = [];
      runs.forEach((r, i) => Object.entries(r.curves[name] || {}).sort().forEach(([split, [x, y]], j) => traces.push({
        x, y, name: `${r.id.slice(-6)} ${split}`, mode: x.length < 30 ? "lines+markers" : "lines",
        line: { color: colors[i % colors.length], dash: dashes[j % dashes.length] } })));
      const ys = traces.flatMap((t) => t.y).filter((v) => isNum(v) && v > 0);
      const log = name === "loss" && ys.length && Math.max(...ys) / Math.min(...ys) > 50;
      plot(div, traces, { title: { text: name }, xaxis: { title: { text: "epoch" } }, yaxis: { type: log ? "log" : "linear" } });
    });
    // a unified diff of the resolved config.toml files, each against the first
    if (runs.length > 1) {
      main.append(h("h2", {}, "config.toml, unified diff"));
      runs.slice(1).forEach((r) => {
        const lines = unifiedDiff(first.toml, r.toml, `${first.id}/config.toml`, `${r.id}/config.toml`);
        main.append(h("pre", { class: "diff" }, lines.length ? lines.map((l) =>
          h("span", { class: l[0] === "+" && !l.startsWith("+++") ? "add" : l[0] === "-" && !l.startsWith("---") ? "del"
            : l.startsWith("@@") ? "hunk" : null }, l + "\n")) : "identical"));
      });
    }
  }

  function unifiedDiff(a, b, nameA, nameB, context = 3) { // LCS over lines, hunks as diff -u prints them
    const A = a.replace(/\n$/, "").split("\n"), B = b.replace(/\n$/, "").split("\n"), n = A.length, m = B.length;
    const L = new Int32Array((n + 1) * (m + 1)), at = (i, j) => i * (m + 1) + j;
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
      L[at(i, j)] = A[i] === B[j] ? L[at(i + 1, j + 1)] + 1 : Math.max(L[at(i + 1, j)], L[at(i, j + 1)]);
    const ops = []; // [kind, text, line in A, line in B]
    let i = 0, j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && A[i] === B[j]) { ops.push([" ", A[i], i++, j++]); }
      else if (j >= m || (i < n && L[at(i + 1, j)] >= L[at(i, j + 1)])) { ops.push(["-", A[i], i++, j]); }
      else { ops.push(["+", B[j], i, j++]); }
    }
    const changed = ops.map((o, k) => (o[0] === " " ? -1 : k)).filter((k) => k >= 0);
    if (!changed.length) return [];
    const out = [`--- ${nameA}`, `+++ ${nameB}`];
    let k = 0;
    while (k < changed.length) {
      let last = k;
      while (last + 1 < changed.length && changed[last + 1] - changed[last] <= 2 * context) last++;
      const lo = Math.max(0, changed[k] - context), hi = Math.min(ops.length, changed[last] + context + 1);
      const part = ops.slice(lo, hi);
      const na = part.filter((o) => o[0] !== "+").length, nb = part.filter((o) => o[0] !== "-").length;
      out.push(`@@ -${part[0][2] + (na ? 1 : 0)},${na} +${part[0][3] + (nb ? 1 : 0)},${nb} @@`);
      part.forEach((o) => out.push(o[0] + o[1]));
      k = last + 1;
    }
    return out;
  }

  function plot(div, traces, layout) {
    if (!window.Plotly) { div.append(h("p", { class: "warn" }, "vendor/plotly.min.js is missing: rebuild the site (practicum site).")); return; }
    window.Plotly.newPlot(div, traces, Object.assign({ margin: { t: 40, r: 20, b: 50, l: 60 }, height: 380,
      legend: { font: { size: 10 } } }, layout), PLOT);
  }

  // -- Studies --------------------------------------------------------------------------------
  function studiesView(main) {
    const rows = S.studies || [], st = { col: "study", dir: 1 }, holder = h("div");
    main.append(h("h1", {}, "Studies"), h("p", { class: "info" }, `${rows.length} stud${rows.length === 1 ? "y" : "ies"}.`), holder);
    const columns = [
      { label: "study", value: (s) => s.name, cell: (s) => h("a", { href: s.page }, s.name) },
      { label: "experiment", value: (s) => s.experiment },
      { label: "varied", value: (s) => s.varied.join(", ") },
      { label: "finished", value: (s) => s.finished, cell: (s) => `${s.finished} of ${s.trials}` },
      { label: "report", value: (s) => (s.report ? 1 : 0), cell: (s) => (s.report ? h("a", { href: s.report }, "report") : "—") },
    ];
    const draw = () => holder.replaceChildren(table(columns, rows, st, draw));
    draw();
  }

  function studyView(main) {
    const s = S.study, runs = byId();
    const done = s.trials.filter((t) => t.run);
    const metrics = [...new Set(done.flatMap((t) => Object.keys(t.summary).filter((k) => isNum(t.summary[k]))))].sort();
    const values = (a) => [...new Map(s.trials.map((t) => [JSON.stringify(t.point[a]), t.point[a]])).values()];
    const varied = s.axes.filter((a) => values(a).length > 1);
    const axes = varied.length ? varied : s.axes;
    let metric = [...(s.metrics || []), "test/accuracy", "val/accuracy"].find((m) => metrics.includes(m)) || metrics[0];
    main.append(h("h1", {}, `Study ${s.name}`), h("p", {}, s.description || ""),
      h("p", { class: "info" }, `Base experiment ${s.experiment}; ${done.length} of ${s.trials.length} trials finished; `,
        `varied: ${varied.join(", ") || "nothing"}. Mean ± sample std over ${s.folds ? "folds" : "seeds"} per point. `,
        s.report ? h("a", { href: s.report }, "The study's report") : ""));
    if (!metric) { main.append(h("p", {}, "No finished trial yet.")); return; }
    const holder = h("div");
    main.append(h("div", { class: "controls" }, select("metric", metrics, metric, (v) => { metric = v || metrics[0]; draw(); })), holder);

    function draw() {
      holder.replaceChildren();
      const groups = new Map(); // grid point -> its trials' values
      s.trials.forEach((t) => {
        const key = JSON.stringify(s.axes.map((a) => t.point[a]));
        if (!groups.has(key)) groups.set(key, { point: t.point, values: [], runs: [] });
        if (t.run) { groups.get(key).values.push(t.summary[metric]); groups.get(key).runs.push(t.run); }
      });
      const points = [...groups.values()].map((g) => Object.assign(g, meanStd(g.values)));
      axes.forEach((a) => {
        const xs = values(a), kind = scale(xs), numeric = kind !== "category", log = kind === "log";
        const others = axes.filter((b) => b !== a), series = new Map();
        points.filter((p) => p.n).forEach((p) => {
          const k = others.map((b) => `${b}=${value(p.point[b])}`).join(", ") || metric;
          if (!series.has(k)) series.set(k, []);
          series.get(k).push(p);
        });
        const traces = [...series].map(([name, ps]) => {
          ps.sort((p, q) => order(p.point[a], q.point[a]));
          return { name, x: ps.map((p) => (numeric ? p.point[a] : value(p.point[a]))), y: ps.map((p) => p.mean),
            error_y: { type: "data", array: ps.map((p) => p.std), visible: true }, mode: "lines+markers",
            text: ps.map((p) => `n=${p.n}`), hovertemplate: "%{x}: %{y:.4f} ± %{error_y.array:.4f} (%{text})" };
        });
        const div = h("div", { class: "plot" });
        holder.append(div);
        plot(div, traces, { title: { text: `${metric} against ${a}` },
          xaxis: { title: { text: a + (log ? " (log)" : "") }, type: kind, categoryorder: "array",
            categoryarray: xs.slice().sort(order).map(value) },
          yaxis: { title: { text: `${metric} (mean ± std)` } }, showlegend: traces.length > 1 });
      });
      if (varied.length >= 3) { // parallel coordinates, one line per finished trial; drag along an axis to filter
        const dims = varied.map((a) => {
          const xs = values(a).sort(order), kind = scale(xs);
          if (kind === "linear") return { label: a, values: done.map((t) => t.point[a]) };
          if (kind === "log") return { label: `${a} (log)`, values: done.map((t) => Math.log10(t.point[a])),
            tickvals: xs.map(Math.log10), ticktext: xs.map(value) };
          const ticks = xs.map(value); // categories, evenly spaced in their order
          return { label: a, values: done.map((t) => ticks.indexOf(value(t.point[a]))), tickvals: ticks.map((_, i) => i), ticktext: ticks };
        });
        const ys = done.map((t) => t.summary[metric]);
        dims.push({ label: metric, values: ys });
        const div = h("div", { class: "plot parcoords" });
        holder.append(h("h2", {}, "Parallel coordinates"),
          h("p", { class: "info" }, "One line per finished trial. Drag along an axis to keep only the lines that cross it there; click the axis off the range to clear."), div);
        plot(div, [{ type: "parcoords", dimensions: dims, line: { color: ys, colorscale: "Viridis", showscale: true } }],
          { height: 420, margin: { t: 60, r: 60, b: 30, l: 60 } });
      }
      const pst = { col: null, dir: 1 };
      const cols = [...s.axes.map((a) => ({ label: a, value: (p) => p.point[a], cell: (p) => value(p.point[a]) })),
        { label: "n", value: (p) => p.n },
        { label: `${metric} mean`, value: (p) => p.mean, cell: (p) => (p.n ? show(p.mean) : "—") },
        { label: "std", value: (p) => p.std, cell: (p) => (p.n > 1 ? show(p.std) : "—") },
        { label: "runs", value: (p) => p.runs.length, cell: (p) => p.runs.map((id, i) => [i ? " " : "", runs[id] ? runLink(runs[id], id.slice(-6)) : id.slice(-6)]) }];
      const tab = h("div");
      const redraw = () => tab.replaceChildren(table(cols, points, pst, redraw));
      holder.append(h("h2", {}, "Points"), tab);
      redraw();
    }
    draw();
  }

  // -- Reproductions --------------------------------------------------------------------------
  function reproductionsView(main) {
    const rows = S.reproductions || [], st = { col: "reproduction", dir: 1 }, holder = h("div");
    main.append(h("h1", {}, "Reproductions"), h("p", { class: "info" },
      "Each seed report's score: its numbers we reach (above the seed's, within our noise of it, or in its reported range) and its claims checked."), holder);
    const columns = [
      { label: "reproduction", value: (r) => r.name, cell: (r) => (r.report ? h("a", { href: r.report }, r.name) : r.name) },
      { label: "title", value: (r) => r.title },
      { label: "numbers reached", value: (r) => (r.numbers ? r.reached / r.numbers : null),
        cell: (r) => `${r.reached} of ${r.numbers}` + (r.not_run ? ` (${r.not_run} not run)` : "") },
      { label: "claims hold", value: (r) => r.holds },
      { label: "do not hold", value: (r) => r.fails },
      { label: "cannot tell", value: (r) => r.unsure },
      { label: "written", value: (r) => r.built, cell: (r) => when(r.built), desc: true },
    ];
    const draw = () => holder.replaceChildren(rows.length ? table(columns, rows, st, draw)
      : h("p", {}, "No reproduction yet: practicum reproduce 000 (or 002, 003, 004, all)."));
    draw();
  }

  window.PracticumSite = {
    unifiedDiff,
    start() {
      const main = document.getElementById("main");
      root = main.dataset.root || "";
      const meta = S.meta || {};
      document.getElementById("built").textContent = meta.built ? `built ${when(meta.built)} from ${meta.root} · ${meta.runs} runs` : "";
      ({ runs: runsView, compare: compareView, studies: studiesView, study: studyView, reproductions: reproductionsView })[main.dataset.view](main);
    },
  };
})();
