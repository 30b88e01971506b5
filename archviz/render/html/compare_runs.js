// archviz compare (training) page: draws test accuracy against MACs and params, and the learning curves, from the
// JSON in #archviz-data. Tables are rendered by the server. Plotly reads a few HTML tags and entities in its text,
// so every name is escaped before it reaches plotly.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("archviz-data").textContent);
  const models = DATA.models;
  const COLORS = ["#4c8bf5", "#e8710a", "#34a853", "#b05cc4", "#d93025", "#1a3d7c", "#f5b400", "#12b5cb",
                  "#9aa0a6", "#795548"];
  const color = (i) => COLORS[i % COLORS.length];
  const escape = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const names = models.map((m) => escape(m.name));
  const CONFIG = { displaylogo: false, responsive: true };
  function human(n) {
    for (const [scale, suffix] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "K"]]) {
      if (Math.abs(n) >= scale) return (n / scale).toFixed(1) + " " + suffix;
    }
    return String(n);
  }
  const percent = (x) => (100 * x).toFixed(2) + "%";
  const layout = (title, extra) => Object.assign({
    title: { text: title, font: { size: 15 } }, margin: { l: 70, r: 20, t: 40, b: 60 }, height: 380,
    showlegend: true, legend: { orientation: "h", y: -0.2 },
  }, extra || {});
  // linear by default, as every chart of the reports; the #log-scale box switches the cost axes to log
  const axisFor = (title) => ({ title: { text: title }, type: "linear" });

  function accuracyAgainst(id, key, title) {
    Plotly.newPlot(id, models.map((m, i) => ({
      type: "scatter", mode: "markers+text", name: names[i], x: [m[key]], y: [100 * m.test_accuracy],
      text: [names[i]], textposition: "top center", marker: { size: 14, color: color(i) },
      hovertext: [`${names[i]}: ${percent(m.test_accuracy)} test accuracy, ${human(m.params)} params, ` +
                  `${human(m.macs)} MACs`], hoverinfo: "text",
    })), layout(`Test accuracy against ${title}`, {
      xaxis: axisFor(title), yaxis: { title: { text: "test accuracy (%)" } },
      showlegend: false,
    }), CONFIG);
  }
  accuracyAgainst("chart-accuracy-macs", "macs", "MACs per image");
  accuracyAgainst("chart-accuracy-params", "params", "parameters");
  const toggle = document.getElementById("log-scale");
  if (toggle) {
    toggle.addEventListener("change", () => {
      for (const id of ["chart-accuracy-macs", "chart-accuracy-params"]) {
        Plotly.relayout(id, { "xaxis.type": toggle.checked ? "log" : "linear", "xaxis.autorange": true });
      }
    });
  }

  const epochs = (m) => m.history.map((row) => row.epoch);
  Plotly.newPlot("chart-val-accuracy", models.map((m, i) => ({
    type: "scatter", mode: "lines+markers", name: names[i], x: epochs(m),
    y: m.history.map((row) => 100 * row.val_accuracy), line: { color: color(i) },
  })), layout("Validation accuracy per epoch", {
    xaxis: { title: { text: "epoch" }, dtick: 1 }, yaxis: { title: { text: "validation accuracy (%)" } },
  }), CONFIG);
  Plotly.newPlot("chart-loss", models.flatMap((m, i) => [
    { type: "scatter", mode: "lines+markers", name: `${names[i]} val`, x: epochs(m),
      y: m.history.map((row) => row.val_loss), line: { color: color(i) } },
    { type: "scatter", mode: "lines", name: `${names[i]} train`, x: epochs(m),
      y: m.history.map((row) => row.train_loss), line: { color: color(i), dash: "dot" } },
  ]), layout("Loss per epoch (solid: validation, dotted: training)", {
    xaxis: { title: { text: "epoch" }, dtick: 1 }, yaxis: { title: { text: "cross-entropy loss" } },
  }), CONFIG);
})();
