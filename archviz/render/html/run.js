// The training sections of a model report written with --run: learning curves and the confusion matrix (or for a
// pretext run, the pretext curves and the probe charts), from DATA.run in #archviz-data. Class names are escaped before they reach plotly, which reads some HTML in its text.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("archviz-data").textContent);
  const run = DATA.run;
  if (!run) return;
  const escape = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const CONFIG = { displaylogo: false, responsive: true };
  const layout = (title, extra) => Object.assign({
    title: { text: title, font: { size: 15 }, automargin: true, yref: "container", y: 1, yanchor: "top",
             pad: { t: 8 } },
    margin: { l: 70, r: 20, t: 30, b: 20 }, height: 400,
    legend: { orientation: "h", yref: "container", y: 0, yanchor: "bottom", x: 0 },  // in the margin, off the plot
  }, extra || {});
  // the curves' legends sit inside the plot where the lines are not (accuracy rises, loss falls), at any width
  const INSIDE_BOTTOM = { x: 1, xanchor: "right", y: 0.04, yanchor: "bottom", bgcolor: "rgba(255,255,255,0.8)" };
  const INSIDE_TOP = { x: 1, xanchor: "right", y: 1, yanchor: "top", bgcolor: "rgba(255,255,255,0.8)" };
  const epochs = run.history.map((row) => row.epoch);
  const line = (key, name, dash, scale) => ({
    type: "scatter", mode: dash ? "lines" : "lines+markers", name: name, x: epochs,
    y: run.history.map((row) => scale * row[key]), line: { dash: dash || "solid" },
  });
  Plotly.newPlot("chart-run-accuracy", [line("val_accuracy", "validation", null, 100),
    line("train_accuracy", "training", "dot", 100)], layout("Accuracy per epoch (%)", {
    xaxis: { title: { text: "epoch" }, dtick: 1, automargin: true },
    yaxis: { title: { text: "accuracy (%)" }, range: [0, 100] }, legend: INSIDE_BOTTOM }), CONFIG);
  Plotly.newPlot("chart-run-loss", [line("val_loss", "validation", null, 1), line("train_loss", "training", "dot", 1)],
    layout("Loss per epoch", { xaxis: { title: { text: "epoch" }, dtick: 1, automargin: true },
      yaxis: { title: { text: "cross-entropy loss" }, rangemode: "tozero" }, legend: INSIDE_TOP }), CONFIG);
  Object.entries(run.probes || {}).forEach(([kind, blocks]) => {
    const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
    const spread = (values) => values.length < 2 ? 0 : Math.sqrt(values.reduce(
      (a, b) => a + (b - mean(values)) ** 2, 0) / (values.length - 1));
    const BACKBONES = [["pretext", "pretext"], ["random", "random init"], ["supervised", "supervised"]];
    Plotly.newPlot(`chart-probe-${kind}`, BACKBONES.map(([key, name]) => ({
      type: "bar", name: name, x: blocks.map((b) => escape(b.block)),
      y: blocks.map((b) => 100 * mean(b.accuracy[key])),
      error_y: { type: "data", array: blocks.map((b) => 100 * spread(b.accuracy[key])), visible: true },
    })), layout(`${escape(kind)} probe: test accuracy per block (%)`, {
      barmode: "group", xaxis: { title: { text: "block" }, type: "category", automargin: true },
      yaxis: { title: { text: "test accuracy (%)" }, range: [0, 100] } }), CONFIG);  // bars from zero
  });
  if (!run.confusion) return;
  const names = run.classes.map(escape);
  Plotly.newPlot("chart-run-confusion", [{
    type: "heatmap", z: run.confusion, x: names, y: names, colorscale: "Blues", reversescale: true, hoverongaps: false,
    texttemplate: "%{z}", hovertemplate: "true %{y}, predicted %{x}: %{z} images<extra></extra>",
    colorbar: { title: { text: "images" } },
  }], layout("Confusion matrix (test images)", {
    xaxis: { title: { text: "predicted" }, type: "category", automargin: true },
    yaxis: { title: { text: "true" }, type: "category", autorange: "reversed" } }), CONFIG);
})();
