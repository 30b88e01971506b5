// archviz comparison page: charts for N models (scatter of params against MACs, bars per metric) and, for two
// models, per-stage bars. Tables are rendered by the server; this script only draws.
window.ArchvizCompare = function (DATA, h) {
  "use strict";
  const models = DATA.models;
  const names = models.map((m) => m.model);
  const metric = (key) => models.map((m) => m.totals[key]);
  const memory = metric("peak_activation_bytes");
  const largest = Math.max(...memory, 1);
  Plotly.newPlot("chart-scatter", [{
    type: "scatter", mode: "markers+text", x: metric("params"), y: metric("macs"), text: names,
    textposition: "top center",
    marker: { size: memory.map((m) => 12 + 38 * Math.sqrt(m / largest)), color: "#4c8bf5", opacity: 0.7 },
    hovertext: models.map((m) => `${m.model}: ${h.human(m.totals.params)} params, ${h.human(m.totals.macs)} MACs, ` +
      `${h.bytes(m.totals.peak_activation_bytes)} peak activations`), hoverinfo: "text",
  }], h.layout("Parameters against MACs (marker area: peak activation memory)", {
    xaxis: { type: "log", title: "parameters" }, yaxis: { type: "log", title: "MACs" }, margin: { l: 70, r: 20, t: 40, b: 60 },
    height: 420,
  }), h.PLOT_CONFIG);
  // a log axis when the values span more than two orders of magnitude (LeNet beside VGG16)
  const axisFor = (values) => {
    const positive = values.filter((v) => v > 0);
    return positive.length && Math.max(...positive) / Math.min(...positive) > 100 ? { type: "log" } : {};
  };
  const bar = (id, key, title) => Plotly.newPlot(id, [{ type: "bar", x: names, y: metric(key),
    marker: { color: "#4c8bf5" } }], h.layout(title, { margin: { l: 70, r: 20, t: 40, b: 60 },
    yaxis: axisFor(metric(key)) }), h.PLOT_CONFIG);
  bar("chart-params", "params", "Parameters");
  bar("chart-macs", "macs", "MACs");
  bar("chart-memory", "peak_activation_bytes", "Peak activation memory (bytes)");
  bar("chart-depth", "depth", "Depth (weight layers)");
  if (DATA.stages) {
    const labels = DATA.stages.map((pair, i) => {
      const stage = pair[0] || pair[1];
      return stage.size === "head" ? "head" : `stage ${i}: ${(pair[0] || {}).size || "-"} / ${(pair[1] || {}).size || "-"}`;
    });
    for (const [id, key, title] of [["chart-stage-params", "params", "Parameters per stage"],
                                    ["chart-stage-macs", "macs", "MACs per stage"]]) {
      const series = [0, 1].map((side) => DATA.stages.map((pair) => (pair[side] ? pair[side][key] : 0)));
      Plotly.newPlot(id, [0, 1].map((side) => ({ type: "bar", name: names[side], x: labels, y: series[side] })),
        h.layout(title, { barmode: "group", showlegend: true, legend: { orientation: "h", y: 1.12 },
                          yaxis: axisFor(series.flat()) }), h.PLOT_CONFIG);
    }
  }
};
