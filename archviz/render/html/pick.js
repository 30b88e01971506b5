// archviz pick page: published top-1 against MACs (and against predicted latency when the page has a device), the
// Pareto front as a line, every point named, from the JSON in #archviz-data (render/pick.py's pick_dict). The table
// is rendered by the server. Plotly reads a few HTML tags and entities in its text, so every name is escaped first.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("archviz-data").textContent);
  const escape = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const CONFIG = { displaylogo: false, responsive: true };
  const ranked = DATA.fitting.filter((m) => m.top1 !== null);
  const over = DATA.over_budget.filter((m) => m.top1 !== null);
  const input = DATA.input.join("x");
  function human(n) {
    for (const [scale, suffix] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "K"]]) {
      if (Math.abs(n) >= scale) return (n / scale).toFixed(1) + " " + suffix;
    }
    return String(n);
  }
  const ms = (seconds) => (1000 * seconds).toPrecision(3) + " ms";
  function hover(m) {
    const cite = m.citation ? `torchvision ${m.citation.weights}` + (m.eval_crop ? ` (crop ${m.eval_crop})` : "") : "";
    const note = m.accuracy_note ? `<br>${escape(m.accuracy_note)}` : "";
    const latency = m.latency_s !== null ? `, ${ms(m.latency_s)}` : "";
    return `<b>${escape(m.model)}</b>: top-1 ${m.top1.toFixed(3)}%, ${human(m.params)} params, ` +
           `${human(m.macs)} MACs${latency}<br>${escape(cite)}${note}`;
  }
  // the cost axes: MACs as counted, latency in milliseconds
  const COST = { macs: (m) => m.macs, latency_s: (m) => 1000 * m.latency_s };
  function points(models, key, name, style) {
    return Object.assign({
      type: "scatter", mode: "markers+text", name: name, x: models.map(COST[key]), y: models.map((m) => m.top1),
      text: models.map((m) => escape(m.model.replace(/^torchvision:/, "tv:"))), textposition: "top center",
      textfont: { size: 10 }, hovertext: models.map(hover), hoverinfo: "text",
    }, style);
  }
  function chart(id, key, frontKey, title, axisTitle) {
    const front = ranked.filter((m) => m[frontKey]).sort((a, b) => a[key] - b[key]);
    const traces = [
      points(ranked.filter((m) => !m[frontKey]), key, "within budget", { marker: { size: 9, color: "#4c8bf5" } }),
      Object.assign(points(front, key, "Pareto front", { marker: { size: 11, color: "#e8710a" } }),
                    { mode: "lines+markers+text", line: { color: "#e8710a", shape: "hv" } }),
    ];
    if (over.length && key === "macs") {
      traces.push(points(over, key, "over budget", { marker: { size: 7, color: "#9aa0a6" }, visible: "legendonly" }));
    }
    Plotly.newPlot(id, traces, {
      title: { text: title, font: { size: 15 } }, margin: { l: 70, r: 20, t: 40, b: 60 }, height: 520,
      xaxis: { title: { text: axisTitle }, type: "log", exponentformat: "SI", automargin: true },
      yaxis: { title: { text: "ImageNet-1K top-1 (%, published)" } },
      legend: { orientation: "h", y: -0.15 },
    }, CONFIG);
  }
  const charts = [["chart-accuracy-macs", "macs", "on_front", "Published top-1 against MACs",
                   `MACs per image at ${input} (multiply-accumulates)`]];
  if (DATA.device) {
    charts.push(["chart-accuracy-latency", "latency_s", "on_latency_front",
                 `Published top-1 against predicted latency on ${escape(DATA.device)}`,
                 `predicted forward pass of a batch of ${DATA.batch} (ms)`]);
  }
  for (const args of charts) chart(...args);
  const toggle = document.getElementById("log-scale");
  if (toggle) {
    toggle.addEventListener("change", () => {
      for (const [id] of charts) {
        Plotly.relayout(id, { "xaxis.type": toggle.checked ? "log" : "linear", "xaxis.autorange": true });
      }
    });
  }
})();
