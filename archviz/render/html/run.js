// The training sections of a model report written with --run: learning curves and the confusion matrix, from
// DATA.run in #archviz-data. Class names are escaped before they reach plotly, which reads some HTML in its text.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("archviz-data").textContent);
  const run = DATA.run;
  if (!run) return;
  const escape = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const CONFIG = { displaylogo: false, responsive: true };
  const layout = (title, extra) => Object.assign({
    title: { text: title, font: { size: 15 } }, margin: { l: 70, r: 20, t: 40, b: 60 }, height: 380,
    legend: { orientation: "h", y: -0.2 },
  }, extra || {});
  const epochs = run.history.map((row) => row.epoch);
  const line = (key, name, dash, scale) => ({
    type: "scatter", mode: dash ? "lines" : "lines+markers", name: name, x: epochs,
    y: run.history.map((row) => scale * row[key]), line: { dash: dash || "solid" },
  });
  Plotly.newPlot("chart-run-accuracy", [line("val_accuracy", "validation", null, 100),
    line("train_accuracy", "training", "dot", 100)], layout("Accuracy per epoch (%)", {
    xaxis: { title: { text: "epoch" }, dtick: 1 }, yaxis: { title: { text: "accuracy (%)" } } }), CONFIG);
  Plotly.newPlot("chart-run-loss", [line("val_loss", "validation", null, 1), line("train_loss", "training", "dot", 1)],
    layout("Loss per epoch", { xaxis: { title: { text: "epoch" }, dtick: 1 },
      yaxis: { title: { text: "cross-entropy loss" } } }), CONFIG);
  const names = run.classes.map(escape);
  Plotly.newPlot("chart-run-confusion", [{
    type: "heatmap", z: run.confusion, x: names, y: names, colorscale: "Blues", reversescale: true, hoverongaps: false,
    hovertemplate: "true %{y}, predicted %{x}: %{z}<extra></extra>",
  }], layout("Confusion matrix (rows: true class)", {
    xaxis: { title: { text: "predicted" }, type: "category" },
    yaxis: { title: { text: "true" }, type: "category", autorange: "reversed" } }), CONFIG);
})();
