// archviz report page: reads the JSON in #archviz-data and builds the table, charts, cross-check and explanations.
// Every string from a spec is set with textContent, never as HTML.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("archviz-data").textContent);
  const KIND_COLORS = {
    conv: "#4c8bf5", linear: "#b05cc4", pool: "#34a853", norm: "#f5b400", activation: "#9aa0a6",
    join: "#1a3d7c", reshape: "#c0c4cc", regularization: "#c0c4cc", block: "#6b7a99",
  };
  const fmtInt = (n) => Number(n).toLocaleString("en-US");
  function human(n) {
    const units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "K"]];
    for (const [scale, suffix] of units) if (Math.abs(n) >= scale) return (n / scale).toFixed(1) + " " + suffix;
    return String(n);
  }
  function bytes(n) {
    const units = [[1e12, "TB"], [1e9, "GB"], [1e6, "MB"], [1e3, "KB"]];
    for (const [scale, suffix] of units) if (n >= scale) return (n / scale).toFixed(2) + " " + suffix;
    return n + " B";
  }
  const shape = (dims) => dims.join("x");
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  // ---- explanation panel: beside the page (the page narrows), closed by Escape, a click outside, or its x -------
  function closePanel() {
    const panel = document.getElementById("explain-panel");
    if (!panel || panel.hidden) return;
    panel.hidden = true;
    document.body.classList.remove("panel-open");
    window.dispatchEvent(new Event("resize"));  // the charts take back the panel's width
    document.querySelectorAll("#layer-table tbody tr.selected").forEach((row) => row.classList.remove("selected"));
  }
  // A layer's arithmetic as `archviz explain` prints it: the table's panel and the diagram's panel both show it.
  function arithmetic(model, layerName) {
    const info = model.explanations[layerName];
    const layer = model.layers.find((l) => l.name === layerName);
    const inputs = `${layer.type} ${layer.summary}  ·  input from ${info.inputs.join(", ")}`;
    const nodes = [el("div", { class: "muted", text: inputs })];
    const table = el("table");
    table.append(el("thead", {}, el("tr", {}, el("th", { text: "Quantity" }), el("th", { text: "Arithmetic" }),
      el("th", { class: "num", text: "Value" }))));
    const body = el("tbody");
    for (const [quantity, arithmetic, value] of info.steps) {
      body.append(el("tr", {}, el("td", { text: quantity }), el("td", { class: "wrap", text: arithmetic }),
        el("td", { class: "num", text: value })));
    }
    table.append(body);
    nodes.push(table);
    if (info.note) nodes.push(el("div", { class: "note", text: "Note: " + info.note }));
    nodes.push(el("pre", { text: info.doc }));
    return nodes;
  }
  function explain(model, layerName, source) {
    const panel = document.getElementById("explain-panel");
    if (!model.explanations[layerName]) return;
    panel.replaceChildren();
    const close = el("button", { class: "close", "aria-label": "close (Escape)", title: "close (Escape)", text: "×" });
    close.addEventListener("click", closePanel);
    panel.append(close, el("h3", { text: `${model.model} / ${layerName}` }), ...arithmetic(model, layerName));
    panel.hidden = false;
    document.body.classList.add("panel-open");
    window.dispatchEvent(new Event("resize"));  // the charts fit the narrower page
    document.querySelectorAll("#layer-table tbody tr").forEach((row) => {
      row.classList.toggle("selected", row.dataset.layer === layerName);
    });
    if (source) keepVisible(source, panel);
  }
  // On a narrow screen the panel is a sheet at the bottom: scroll the page so it does not hide what was clicked.
  function keepVisible(source, panel) {
    const box = source.getBoundingClientRect(), sheet = panel.getBoundingClientRect();
    const overlaps = box.bottom > sheet.top && box.top < sheet.bottom
      && box.right > sheet.left && box.left < sheet.right;
    if (overlaps) window.scrollBy(0, box.bottom - sheet.top + 12);
  }
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") closePanel(); });
  document.addEventListener("click", (event) => {
    if (!event.target.closest("#explain-panel, #layer-table tbody tr")) closePanel();
  });

  // ---- summary cards -------------------------------------------------------------------------------------------
  function cards(model) {
    const t = model.totals;
    const container = document.getElementById("cards");
    if (!container) return;
    const items = [
      ["Parameters", human(t.params), fmtInt(t.params) + (t.buffers ? ` + ${fmtInt(t.buffers)} buffers` : "")],
      ["Parameter memory", bytes(t.param_bytes), model.dtype],
      ["MACs", human(t.macs), fmtInt(t.macs) + macsCaveat(t)],
      ["FLOPs", human(t.flops), "2 x MACs"],
      ["Peak activation memory", bytes(t.peak_activation_bytes), "inference, at " + t.peak_at],
      ["Depth", String(t.depth), `weight layers (${t.layers} layers in all)`],
      ["Input", shape(model.input), "batch " + model.batch],
      fieldCard(model),
    ];
    for (const [label, value, exact] of items) {
      container.append(el("div", { class: "card" }, el("div", { class: "label", text: label }),
        el("div", { class: "value", text: value }), el("div", { class: "exact", text: exact })));
    }
  }

  function macsCaveat(t) {
    const said = [];
    if (t.measured && t.measured.length) said.push(`${t.measured.length} layers measured by FlopCounterMode, no formula`);
    if (t.uncounted && t.uncounted.length) said.push(`${t.uncounted.length} layers not counted`);
    return said.length ? ` (${said.join("; ")})` : "";
  }

  // ---- layer table: sortable, filterable ----------------------------------------------------------------------
  const COLUMNS = [
    ["name", "Layer", false], ["type", "Type", false], ["output_shape", "Output shape", true],
    ["params", "Params", true], ["macs", "MACs", true], ["flops", "FLOPs", true],
    ["activation_bytes", "Output memory", true], ["predicted_seconds", "Predicted time", true],
    ["receptive_field", "RF", true],
  ];
  const seconds = (s) => s === null || s === undefined ? "?" : s >= 1 ? `${s.toFixed(2)} s`
    : s >= 1e-3 ? `${(s * 1e3).toPrecision(3)} ms` : `${(s * 1e6).toPrecision(3)} µs`;
  function cellText(layer, key) {
    const value = layer[key];
    if (key === "type") return `${layer.type} ${layer.summary}`.trim();
    if (key === "receptive_field" && value === null) return "not tracked";
    if (key === "output_shape" || key === "receptive_field") return shape(value);
    if (key === "activation_bytes") return bytes(value);
    if (key === "predicted_seconds") return seconds(value);
    if ((key === "macs" || key === "flops") && layer.counted === false) {
      return layer.measured ? `${value ? fmtInt(value) : "0"} (measured)` : "? (not counted)";
    }
    if (typeof value === "number") return value ? fmtInt(value) : "-";
    return String(value);
  }
  function sortKey(layer, key) {
    const value = layer[key];
    if (Array.isArray(value)) return value.reduce((a, b) => a * b, 1);
    return value;
  }
  // "conv2" matches names (layer1.0.conv2), never the type conv2d; "type:conv2d" (or op:) matches the type, "kind:pool"
  // the family; every word must match.
  const FILTER_FIELDS = { type: (l) => l.type, op: (l) => l.type, kind: (l) => l.kind, name: (l) => l.name };
  function layerMatcher(text) {
    const tests = text.trim().toLowerCase().split(/\s+/).filter(Boolean).map((word) => {
      const [, prefix, needle] = word.match(/^(?:(type|op|kind|name):)?(.*)$/);
      const field = FILTER_FIELDS[prefix || "name"];
      return (layer) => field(layer).toLowerCase().includes(needle);
    });
    return (layer) => tests.every((test) => test(layer));
  }
  function layerTable(model) {
    const table = document.getElementById("layer-table");
    if (!table) return;
    const headRow = el("tr");
    const columns = COLUMNS.filter(([key]) => key !== "predicted_seconds" || model.latency);
    columns.forEach(([key, title, numeric]) => {
      const th = el("th", { class: numeric ? "num" : "", "data-key": key, text: title });
      th.addEventListener("click", () => sortBy(key, th));
      headRow.append(th);
    });
    table.append(el("thead", {}, headRow));
    const body = el("tbody");
    model.layers.forEach((layer, index) => {
      const row = el("tr", { "data-layer": layer.name, "data-index": String(index) });
      columns.forEach(([key, , numeric]) => {
        const td = el("td", { class: numeric ? "num" : "" });
        if (key === "name") {
          td.append(el("span", { class: "kind", style: `background:${KIND_COLORS[layer.kind] || "#ccc"}` }));
          td.style.paddingLeft = 8 + 12 * layer.name.split(".").length - 12 + "px";
        }
        td.append(cellText(layer, key));
        row.append(td);
      });
      row.addEventListener("click", () => explain(model, layer.name, row));
      body.append(row);
    });
    table.append(body);
    let current = { key: null, descending: false };
    function sortBy(key, th) {
      const descending = current.key === key ? !current.descending : key !== "name" && key !== "type";
      current = { key, descending };
      table.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const la = model.layers[+a.dataset.index], lb = model.layers[+b.dataset.index];
        const ka = sortKey(la, key), kb = sortKey(lb, key);
        const order = ka < kb ? -1 : ka > kb ? 1 : 0;
        return (descending ? -order : order) || (+a.dataset.index) - (+b.dataset.index);  // ties in layer order
      });
      body.append(...rows);
    }
    const filter = document.getElementById("layer-filter");
    filter.addEventListener("input", () => {
      const matches = layerMatcher(filter.value);
      let shown = 0;
      for (const row of body.rows) {
        const match = matches(model.layers[+row.dataset.index]);
        row.hidden = !match;
        shown += match ? 1 : 0;
      }
      document.getElementById("layer-count").textContent = `${shown} of ${model.layers.length} layers`;
    });
    document.getElementById("layer-count").textContent = `${model.layers.length} layers`;
  }

  // ---- charts: every axis titled with its unit; bars from zero; numbers as human() writes them (G, not B) --------
  const PLOT_CONFIG = { displaylogo: false, responsive: true };
  const axis = (title, extra) => Object.assign({ title: { text: title }, exponentformat: "SI", automargin: true },
    extra || {});
  // the title and the legend push the margins (automargin), so neither covers the plot at any width
  const layout = (title, extra) => Object.assign({
    title: { text: title, font: { size: 15 }, automargin: true, yref: "container", y: 1, yanchor: "top",
             pad: { t: 8 } },
    margin: { l: 60, r: 20, t: 30, b: 20 }, height: 400,
    xaxis: axis("layer", { tickangle: -60 }), yaxis: axis(""), showlegend: false,
  }, extra || {});
  const LEGEND = { showlegend: true, legend: { orientation: "h", yref: "container", y: 0, yanchor: "bottom", x: 0 } };
  const KIND_TITLES = { block: "block (its layers summed)" };

  // The x positions of a per-layer chart: every layer, or for a deep model (chart_groups) its blocks, each the sum
  // of its layers, or the layers of one block. #chart-scope picks which.
  function chartItems(model, scope) {
    const groups = model.chart_groups;
    const byName = Object.fromEntries(model.layers.map((l) => [l.name, l]));
    if (!groups || scope === "layers") return model.layers;
    if (scope && scope !== "blocks") return groups.find((g) => g.name === scope).layers.map((name) => byName[name]);
    return groups.map((g) => {
      const layers = g.layers.map((name) => byName[name]);
      if (layers.length === 1) return layers[0];
      const sum = (key) => layers.reduce((total, l) => total + (l[key] || 0), 0);
      return { name: g.name, kind: "block", params: sum("params"), macs: sum("macs"),
               activation_bytes: sum("activation_bytes"), layers: layers.length };
    });
  }
  // one trace per kind of layer, so the legend says what each colour is; the x axis keeps the layers' order
  function bars(id, items, key, title, unit, format) {
    const shown = items.filter((l) => l[key] > 0);
    const kinds = [...new Set(shown.map((l) => l.kind))];
    const traces = kinds.map((kind) => {
      const these = shown.filter((l) => l.kind === kind);
      return { type: "bar", name: KIND_TITLES[kind] || kind, x: these.map((l) => l.name), y: these.map((l) => l[key]),
        marker: { color: KIND_COLORS[kind] || "#ccc" }, hoverinfo: "text",
        hovertext: these.map((l) => `${l.name}${l.layers ? ` (${l.layers} layers)` : ""}: ${format(l[key])}`) };
    });
    Plotly.newPlot(id, traces, layout(title, Object.assign({}, LEGEND, {
      xaxis: axis(xTitle(items), { tickangle: -60, categoryorder: "array", categoryarray: shown.map((l) => l.name) }),
      yaxis: axis(unit, { rangemode: "tozero" }) })), PLOT_CONFIG);
  }
  const xTitle = (items) => items.some((l) => l.layers) ? "block or layer" : "layer";
  function cumulative(id, model) {
    const names = model.layers.map((l) => l.name);
    const series = [["params", "parameters"], ["macs", "MACs"], ["activation_bytes", "output memory"]].map(([key, label]) => {
      let running = 0;
      const total = model.layers.reduce((sum, l) => sum + l[key], 0) || 1;
      return { type: "scatter", mode: "lines", name: label, x: names,
               y: model.layers.map((l) => (running += l[key]) / total * 100) };
    });
    Plotly.newPlot(id, series, layout("Cumulative share from input to output", Object.assign({}, LEGEND, {
      xaxis: layerAxis(names), yaxis: axis("share of the model's total (%)", { range: [0, 101], ticksuffix: "%" }) })),
      PLOT_CONFIG);
  }
  // more than CHART_LAYERS names cannot be read on an axis: the hover names each point
  const layerAxis = (names) => names.length > 40
    ? axis(`layer, input to output (${names.length}; hover for names)`, { showticklabels: false })
    : axis("layer", { tickangle: -60 });
  function fieldCard(model) {  // the last spatial layer's field: after global pooling a field only says "all of it"
    const spatial = model.totals.last_spatial_field;
    if (spatial) return ["Receptive field", shape(spatial.size.length === 2 && spatial.size[0] === spatial.size[1]
      ? [spatial.size[0]] : spatial.size) + " px", model.field_headline.replace(/^\S+ px /, "")];
    const field = model.layers[model.layers.length - 1].receptive_field;
    return field === null ? ["Receptive field", "not tracked", "the input is not a C x H x W image"]
      : ["Receptive field", shape(field) + " px", model.field_headline];
  }
  // The field of a layer is the largest over the paths into it; a branch's or a shortcut's layer has a smaller one
  // than the layer above it in the table. The line follows one path, the main one (receptive_field_via back from the
  // last spatial layer); the layers on other paths are points of their own.
  function mainPath(model) {
    const byName = Object.fromEntries(model.layers.map((l) => [l.name, l]));
    const spatial = model.totals.last_spatial_field;
    const path = new Set();
    let name = spatial ? spatial.layer : model.layers[model.layers.length - 1].name;
    while (name && byName[name] && !path.has(name)) { path.add(name); name = byName[name].receptive_field_via; }
    return path;
  }
  function receptive(id, model) {
    if (model.layers.some((l) => l.receptive_field === null)) {
      document.getElementById(id).textContent = "Receptive field: not tracked (the input is not a C x H x W image).";
      return;
    }
    const spatial = model.totals.last_spatial_field;
    const end = spatial ? model.layers.findIndex((l) => l.name === spatial.layer) : model.layers.length - 1;
    const layers = model.layers.slice(0, end + 1);
    const names = layers.map((l) => l.name);
    const path = mainPath(model);
    const widest = (l) => Math.max(...l.receptive_field);
    const onPath = layers.filter((l) => path.has(l.name)), off = layers.filter((l) => !path.has(l.name));
    const input = Math.max(model.input[1] || 1, model.input[2] || 1);
    const traces = [
      { type: "scatter", mode: "lines+markers", name: "main path", x: onPath.map((l) => l.name), y: onPath.map(widest),
        hovertext: onPath.map((l) => `${l.name}: ${shape(l.receptive_field)} px (main path)`), hoverinfo: "text" },
      { type: "scatter", mode: "lines", name: `input size (${input} px)`, x: [names[0], names[names.length - 1]],
        y: [input, input], line: { dash: "dash", color: "#b3261e" }, hoverinfo: "name" },
    ];
    if (off.length) traces.splice(1, 0, { type: "scatter", mode: "markers", name: "other paths (shortcuts, branches)",
      x: off.map((l) => l.name), y: off.map(widest), marker: { color: "#9aa0a6", size: 5 }, hoverinfo: "text",
      hovertext: off.map((l) => `${l.name}: ${shape(l.receptive_field)} px, on another path (from ` +
        `${l.receptive_field_via}), not the main one` ) });
    const title = "Receptive field along the main path, to the last map";
    Plotly.newPlot(id, traces, layout(title, Object.assign({}, LEGEND, {
      xaxis: Object.assign(layerAxis(names), { categoryorder: "array", categoryarray: names }),
      yaxis: axis("receptive field (px)", { rangemode: "tozero" }) })), PLOT_CONFIG);
  }
  function perLayerCharts(model, scope) {
    const items = chartItems(model, scope);
    const what = model.chart_groups && scope !== "layers" && (!scope || scope === "blocks") ? "block" : "layer";
    bars("chart-params", items, "params", `Parameters per ${what}`, "parameters", fmtInt);
    bars("chart-macs", items, "macs", `MACs per ${what}`, "MACs", human);
    bars("chart-memory", items, "activation_bytes", `Output memory per ${what}`, "bytes", bytes);
  }
  function scopeControl(model) {
    const select = document.getElementById("chart-scope");
    if (!select) return;
    if (!model.chart_groups) { select.parentElement.hidden = true; return; }
    const blocks = `${model.chart_groups.length} blocks (as the diagram folds them)`;
    select.append(el("option", { value: "blocks", text: blocks }),
      el("option", { value: "layers", text: `every layer (${model.layers.length})` }));
    for (const group of model.chart_groups.filter((g) => g.layers.length > 1)) {
      select.append(el("option", { value: group.name, text: `open ${group.name} (${group.layers.length} layers)` }));
    }
    select.addEventListener("change", () => perLayerCharts(model, select.value));
  }
  function charts(model) {
    if (!document.getElementById("chart-params")) return;
    scopeControl(model);
    perLayerCharts(model, "blocks");
    cumulative("chart-cumulative", model);
    receptive("chart-rf", model);
    if (model.latency) roofline("chart-roofline", model);
  }
  function roofline(id, model) {  // each layer at its intensity and the FLOP/s its predicted time gives it
    const l = model.latency;
    const timed = model.layers.filter((x) => x.predicted_seconds && x.flops > 0 && x.intensity);
    if (!timed.length) return;
    const xs = timed.map((x) => x.intensity);
    const low = Math.min(...xs) / 2, high = Math.max(...xs) * 2;
    const roofs = Object.entries(l.peak_flops).map(([precision, peak]) => ({
      type: "scatter", mode: "lines", name: `${precision} roof`, hoverinfo: "name",
      x: [low, peak / l.memory_bandwidth, high],
      y: [low * l.memory_bandwidth, peak, peak], line: { dash: "dash" } }));
    Plotly.newPlot(id, [...roofs, {
      type: "scatter", mode: "markers", name: "layers", x: xs,
      y: timed.map((x) => x.flops / x.predicted_seconds),
      marker: { color: timed.map((x) => KIND_COLORS[x.kind] || "#ccc"), size: 8 },
      hovertext: timed.map((x) => `${x.name}: ${x.intensity.toFixed(1)} FLOPs/byte, ${seconds(x.predicted_seconds)}` +
        (x.memory_bound ? ", memory-bound" : "")), hoverinfo: "text",
    }], layout(`Roofline on ${l.device_name}: FLOP/s against FLOPs per byte`, {
      ...LEGEND,
      xaxis: axis("arithmetic intensity (FLOPs per byte moved)", { type: "log" }),
      yaxis: axis("FLOP/s (predicted)", { type: "log" }) }), PLOT_CONFIG);
  }

  // ---- cross-check ------------------------------------------------------------------------------------------------
  const PEER_TITLES = { module: "the module itself", torchinfo: "torchinfo", flop_counter: "torch FlopCounterMode",
    fvcore: "fvcore" };  // as archviz/render/crosscheck.py PEER_TITLES
  // One verdict line (peers, agreement, time); every peer's figures folded under it, opened by a click.
  function crosscheckVerdict(check) {
    const module = check.peers.find((p) => p.peer === "module");
    const wrong = module ? module.totals.filter((f) => !f.agrees) : [];
    const ran = check.peers.filter((p) => !p.skipped);
    const seconds = ran.reduce((total, p) => total + (p.seconds || 0), 0);
    const peers = `${ran.length} peers (${ran.map((p) => PEER_TITLES[p.peer] || p.peer).join(", ")}; ` +
      `${seconds.toFixed(1)} s)`;
    if (check.agrees) return `✓ ${peers}: every peer agrees with the formulas, after the conversions in the detail.`;
    if (wrong.length) return "✗ archviz's totals are not the model's: " + wrong.map((f) => f.reason + ".").join(" ");
    if (check.peers.some((p) => p.differences.some((f) => !f.agrees))) {
      return `✗ ${peers}: unexplained differences, see the peers marked ✗.`;
    }
    return `? ${peers}: not confirmed, ` + check.peers.filter((p) => p.skipped)
      .map((p) => PEER_TITLES[p.peer] || p.peer).join(", ") + " skipped.";
  }
  function crosscheck(model) {
    const container = document.getElementById("crosscheck-body");
    if (!container) return;
    const check = model.crosscheck;
    if (!check) { container.append(el("p", { text: "Not run (--no-crosscheck): every figure here is by formula." })); return; }
    if (check.skipped) { container.append(el("p", { text: check.message })); return; }
    const folded = el("details", { id: "crosscheck-detail" });
    folded.append(el("summary", { class: check.agrees ? "verdict-ok" : "verdict-bad", text: crosscheckVerdict(check) }));
    container.append(folded);
    for (const peer of check.peers) {
      const details = el("details", { open: "" });  // open inside the folded detail
      details.append(el("summary", { text: `${peer.agrees ? "✓" : "✗"} ${PEER_TITLES[peer.peer] || peer.peer} ${peer.version}` +
        (peer.skipped ? ` — skipped: ${peer.message}` : ` — ${peer.method} (${peer.seconds} s)`) }));
      for (const note of peer.notes) details.append(el("div", { class: "muted", text: "note: " + note }));
      if (peer.differences.length) {
        const table = el("table");
        table.append(el("thead", {}, el("tr", {}, ...["Layer", "Quantity", "Ours", "Peer reported", "Converted", "Status", "Reason"]
          .map((t) => el("th", { text: t })))));
        const body = el("tbody");
        for (const f of peer.differences) {
          const show = (v) => (v === null ? "—" : Array.isArray(v) ? v.join("x") : typeof v === "number" ? fmtInt(v) : String(v));
          body.append(el("tr", {}, el("td", { text: f.layer }), el("td", { text: f.quantity }),
            el("td", { class: "num", text: show(f.ours) }), el("td", { class: "num", text: show(f.reported) }),
            el("td", { class: "num", text: show(f.converted) }), el("td", { text: f.status }),
            el("td", { text: f.reason })));
        }
        table.append(body);
        details.append(el("div", { class: "table-wrap" }, table));
      } else {
        details.append(el("div", { text: "Every figure is the same as ours." }));
      }
      folded.append(details);
    }
  }

  function start() {
    const models = DATA.models;
    if (DATA.kind === "model") {
      const model = models[0];
      cards(model); layerTable(model); charts(model); crosscheck(model);
      if (window.ArchvizDiagram && DATA.diagram) {
        window.ArchvizDiagram(DATA.diagram, model, { el, human, bytes, fmtInt, shape, seconds, arithmetic });
      }
    } else if (window.ArchvizCompare) {
      window.ArchvizCompare(DATA, { el, human, bytes, fmtInt, shape, KIND_COLORS, PLOT_CONFIG, layout, axis, LEGEND });
    }
  }
  window.ArchvizReport = { el, human, bytes, fmtInt, shape, KIND_COLORS, PLOT_CONFIG, layout, axis };
  start();
})();
