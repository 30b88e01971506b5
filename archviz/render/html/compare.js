// archviz comparison page: charts for N models (scatter of params against MACs, bars per metric) and, for two
// models, per-stage bars. Tables are rendered by the server; this script only draws. Every axis is linear and titled
// with its unit, bars start at zero (a bar's height is its value), and #log-scale switches every chart to log axes.
window.ArchvizCompare = function (DATA, h) {
  "use strict";
  const models = DATA.models;
  const names = models.map((m) => m.model);
  const metric = (key) => models.map((m) => m.totals[key]);
  const memory = metric("peak_activation_bytes");
  const largest = Math.max(...memory, 1);
  const margin = { l: 70, r: 20, t: 30, b: 20 };
  const BAR_AXIS = { rangemode: "tozero" };
  Plotly.newPlot("chart-scatter", [{
    type: "scatter", mode: "markers+text", x: metric("params"), y: metric("macs"), text: names,
    textposition: "top center",
    marker: { size: memory.map((m) => 12 + 38 * Math.sqrt(m / largest)), color: "#4c8bf5", opacity: 0.7 },
    hovertext: models.map((m) => `${m.model}: ${h.human(m.totals.params)} params, ${h.human(m.totals.macs)} MACs, ` +
      `${h.bytes(m.totals.peak_activation_bytes)} peak activations`), hoverinfo: "text",
  }], h.layout("Params against MACs (area: peak memory)", {
    xaxis: h.axis("parameters", { rangemode: "tozero" }), yaxis: h.axis("MACs per batch", { rangemode: "tozero" }),
    margin, height: 420,
  }), h.PLOT_CONFIG);
  const bar = (id, key, title, unit, format) => Plotly.newPlot(id, [{ type: "bar", x: names, y: metric(key),
    marker: { color: "#4c8bf5" }, hovertext: models.map((m) => `${m.model}: ${format(m.totals[key])}`),
    hoverinfo: "text" }], h.layout(title, { margin, xaxis: h.axis("model"), yaxis: h.axis(unit, BAR_AXIS) }),
    h.PLOT_CONFIG);
  bar("chart-params", "params", "Parameters", "parameters", h.human);
  bar("chart-macs", "macs", "MACs", "MACs per batch", h.human);
  bar("chart-memory", "peak_activation_bytes", "Peak activation memory", "bytes", h.bytes);
  bar("chart-depth", "depth", "Depth", "weight layers", String);
  const charts = ["chart-scatter", "chart-params", "chart-macs", "chart-memory", "chart-depth"];
  if (DATA.stages) {
    const labels = DATA.stages.map((pair, i) => {
      const stage = pair[0] || pair[1];
      const sizes = `${(pair[0] || {}).size || "-"} / ${(pair[1] || {}).size || "-"}`;
      return stage.size === "head" ? "head" : `stage ${i}: ${sizes}`;
    });
    for (const [id, key, title, unit] of [["chart-stage-params", "params", "Parameters per stage", "parameters"],
                                          ["chart-stage-macs", "macs", "MACs per stage", "MACs per batch"]]) {
      const series = [0, 1].map((side) => DATA.stages.map((pair) => (pair[side] ? pair[side][key] : 0)));
      Plotly.newPlot(id, [0, 1].map((side) => ({ type: "bar", name: names[side], x: labels, y: series[side],
        hovertext: series[side].map((v) => `${names[side]}: ${h.human(v)}`), hoverinfo: "text" })),
        h.layout(title, { barmode: "group", ...h.LEGEND,
                          xaxis: h.axis("stage (output size)"), yaxis: h.axis(unit, BAR_AXIS) }), h.PLOT_CONFIG);
      charts.push(id);
    }
  }
  const toggle = document.getElementById("log-scale");
  if (toggle) {
    toggle.addEventListener("change", () => {
      const type = toggle.checked ? "log" : "linear";
      for (const id of charts) {
        const both = id === "chart-scatter";
        Plotly.relayout(id, Object.assign({ "yaxis.type": type, "yaxis.autorange": true },
          both ? { "xaxis.type": type, "xaxis.autorange": true } : {}));
      }
    });
  }
};
