// archviz report page: reads the JSON in #archviz-data and builds the table, charts, cross-check and explanations.
// Every string from a spec is set with textContent, never as HTML.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("archviz-data").textContent);
  const KIND_COLORS = {
    conv: "#4c8bf5", linear: "#b05cc4", pool: "#34a853", norm: "#f5b400", activation: "#9aa0a6",
    join: "#1a3d7c", reshape: "#c0c4cc", regularization: "#c0c4cc",
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

  // ---- explanation panel ---------------------------------------------------------------------------------------
  function explain(model, layerName) {
    const panel = document.getElementById("explain-panel");
    const info = model.explanations[layerName];
    if (!info) return;
    const layer = model.layers.find((l) => l.name === layerName);
    panel.replaceChildren();
    const close = el("button", { class: "close", "aria-label": "close", text: "×" });
    close.addEventListener("click", () => { panel.hidden = true; });
    panel.append(close, el("h3", { text: `${model.model} / ${layerName}` }),
      el("div", { class: "muted", text: `${layer.type} ${layer.summary}  ·  input from ${info.inputs.join(", ")}` }));
    const table = el("table");
    table.append(el("thead", {}, el("tr", {}, el("th", { text: "Quantity" }), el("th", { text: "Arithmetic" }),
      el("th", { class: "num", text: "Value" }))));
    const body = el("tbody");
    for (const [quantity, arithmetic, value] of info.steps) {
      body.append(el("tr", {}, el("td", { text: quantity }), el("td", { text: arithmetic }),
        el("td", { class: "num", text: value })));
    }
    table.append(body);
    panel.append(table);
    if (info.note) panel.append(el("div", { class: "note", text: "Note: " + info.note }));
    panel.append(el("pre", { text: info.doc }));
    panel.hidden = false;
    document.querySelectorAll("#layer-table tbody tr").forEach((row) => {
      row.classList.toggle("selected", row.dataset.layer === layerName);
    });
  }

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
      fieldCard(model.layers[model.layers.length - 1].receptive_field),
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
      row.addEventListener("click", () => explain(model, layer.name));
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
      const needle = filter.value.trim().toLowerCase();
      let shown = 0;
      for (const row of body.rows) {
        const match = !needle || row.textContent.toLowerCase().includes(needle);
        row.hidden = !match;
        shown += match ? 1 : 0;
      }
      document.getElementById("layer-count").textContent = `${shown} of ${model.layers.length} layers`;
    });
    document.getElementById("layer-count").textContent = `${model.layers.length} layers`;
  }

  // ---- charts ------------------------------------------------------------------------------------------------
  const PLOT_CONFIG = { displaylogo: false, responsive: true };
  const layout = (title, extra) => Object.assign({
    title: { text: title, font: { size: 15 } }, margin: { l: 60, r: 20, t: 40, b: 90 }, height: 340,
    xaxis: { tickangle: -60, automargin: true }, showlegend: false,
  }, extra || {});
  function bars(id, model, key, title, format) {
    const layers = model.layers.filter((l) => l[key] > 0);
    Plotly.newPlot(id, [{
      type: "bar", x: layers.map((l) => l.name), y: layers.map((l) => l[key]),
      marker: { color: layers.map((l) => KIND_COLORS[l.kind] || "#ccc") },
      hovertext: layers.map((l) => `${l.name}: ${format(l[key])}`), hoverinfo: "text",
    }], layout(title), PLOT_CONFIG);
  }
  function cumulative(id, model) {
    const names = model.layers.map((l) => l.name);
    const series = [["params", "parameters"], ["macs", "MACs"], ["activation_bytes", "output memory"]].map(([key, label]) => {
      let running = 0;
      const total = model.layers.reduce((sum, l) => sum + l[key], 0) || 1;
      return { type: "scatter", mode: "lines", name: label, x: names,
               y: model.layers.map((l) => (running += l[key]) / total * 100) };
    });
    Plotly.newPlot(id, series, layout("Cumulative share (%) from input to output",
      { showlegend: true, legend: { orientation: "h", y: 1.12 }, yaxis: { range: [0, 101], ticksuffix: "%" } }),
      PLOT_CONFIG);
  }
  function fieldCard(field) {  // null where the input is not a C x H x W image (tokens, sequences)
    return field === null ? ["Receptive field", "not tracked", "the input is not a C x H x W image"]
      : ["Receptive field", shape(field), "pixels at the output"];
  }
  function receptive(id, model) {
    if (model.layers.some((l) => l.receptive_field === null)) {
      document.getElementById(id).textContent = "Receptive field: not tracked (the input is not a C x H x W image).";
      return;
    }
    const names = model.layers.map((l) => l.name);
    const input = Math.max(model.input[1] || 1, model.input[2] || 1);
    Plotly.newPlot(id, [
      { type: "scatter", mode: "lines+markers", name: "receptive field", x: names,
        y: model.layers.map((l) => Math.max(...l.receptive_field)) },
      { type: "scatter", mode: "lines", name: `input size (${input})`, x: [names[0], names[names.length - 1]],
        y: [input, input], line: { dash: "dash", color: "#b3261e" } },
    ], layout("Receptive field (pixels) against the input size",
      { showlegend: true, legend: { orientation: "h", y: 1.12 } }), PLOT_CONFIG);
  }
  function charts(model) {
    if (!document.getElementById("chart-params")) return;
    bars("chart-params", model, "params", "Parameters per layer", fmtInt);
    bars("chart-macs", model, "macs", "MACs per layer", human);
    bars("chart-memory", model, "activation_bytes", "Output memory per layer (bytes)", bytes);
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
      showlegend: true, legend: { orientation: "h", y: 1.12 },
      xaxis: { type: "log", title: { text: "FLOPs per byte moved" } },
      yaxis: { type: "log", title: { text: "FLOP/s (predicted)" } } }), PLOT_CONFIG);
  }

  // ---- cross-check ------------------------------------------------------------------------------------------------
  const PEER_TITLES = { module: "the module itself", torchinfo: "torchinfo", flop_counter: "torch FlopCounterMode",
    fvcore: "fvcore" };  // as archviz/render/crosscheck.py PEER_TITLES
  function crosscheck(model) {
    const container = document.getElementById("crosscheck-body");
    if (!container) return;
    const check = model.crosscheck;
    if (!check) { container.append(el("p", { text: "Not run (--no-crosscheck): every figure here is by formula." })); return; }
    if (check.skipped) { container.append(el("p", { text: check.message })); return; }
    // the module itself (archviz/crosscheck/module_peer.py) compares the whole model's totals strictly
    const module = check.peers.find((p) => p.peer === "module");
    const wrong = module ? module.totals.filter((f) => !f.agrees) : [];
    container.append(el("p", { class: check.agrees ? "verdict-ok" : "verdict-bad",
      text: check.agrees ? "Every peer agrees with the formulas, after the conversions below."
          : wrong.length ? "archviz's totals are not the model's: " + wrong.map((f) => f.reason + ".").join(" ")
          : check.peers.some((p) => p.differences.some((f) => !f.agrees))
            ? "Unexplained differences: see the peers marked ✗."
          : "Not confirmed: " + check.peers.filter((p) => p.skipped).map((p) => PEER_TITLES[p.peer] || p.peer).join(", ") +
            " skipped (below)." }));
    for (const peer of check.peers) {
      const details = el("details", { open: "" });
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
      container.append(details);
    }
  }

  // ---- diagram: one pre-rendered view per fold state; clicking a block switches views ----------------------------
  function diagram(model) {
    const views = document.querySelectorAll(".diagram-view");
    if (!views.length) return;
    const toggles = DATA.diagram_toggles || {};
    function show(viewId) {
      views.forEach((v) => { v.hidden = v.dataset.view !== viewId; });
      document.getElementById("diagram").dataset.current = viewId;
    }
    views.forEach((view) => {
      view.querySelectorAll("g.node, g.cluster").forEach((item) => {
        const id = item.id.replace(/^(node|cluster):/, "");
        const target = (toggles[view.dataset.view] || {})[id];
        if (target) item.classList.add("clickable");
        item.addEventListener("click", (event) => {
          event.preventDefault();
          event.stopPropagation();
          if (target) show(target);
          else if (model.explanations[id]) explain(model, id);
        });
      });
    });
    const reset = document.getElementById("diagram-reset");
    if (reset) reset.addEventListener("click", () => show(DATA.diagram_default));
  }

  function start() {
    const models = DATA.models;
    if (DATA.kind === "model") {
      const model = models[0];
      cards(model); layerTable(model); charts(model); crosscheck(model); diagram(model);
    } else if (window.ArchvizCompare) {
      window.ArchvizCompare(DATA, { el, human, bytes, fmtInt, shape, KIND_COLORS, PLOT_CONFIG, layout });
    }
  }
  window.ArchvizReport = { el, human, bytes, fmtInt, shape, KIND_COLORS, PLOT_CONFIG, layout };
  start();
})();
