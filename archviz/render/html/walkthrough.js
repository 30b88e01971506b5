// The report's "one value, step by step" section (render/html/walkthrough_section.py): pick a convolution and click a
// position of its output map; the patch its kernel covers, the kernel, the products, their sum, the bias and the value
// are recomputed here from the layer's input and weights that archviz captured at report time (DATA.run.walkthrough),
// beside the value torch computed there. No torch in the browser: only this arithmetic. Under node (the test suite)
// the file exports compute() and touches no page.
(function () {
  "use strict";
  const SHOWN_CHANNELS = 4;  // more input channels: their products summed per kernel position, as in the terminal
  const MAP_SIDE = 224;  // px: the output map and the input picture are drawn at least this large

  const flat = (shape, i, j, k) => (i * shape[1] + j) * shape[2] + k;
  const range = (n) => Array.from({ length: n }, (_, i) => i);

  // The arithmetic of output (c, y, x): taps at out * stride - padding + i * dilation, zero outside the input.
  function compute(layer, c, y, x) {
    const [, height, width] = layer.in_shape;
    const perGroup = layer.in_shape[0] / layer.groups;
    const group = Math.floor(c / (layer.out_shape[0] / layer.groups));
    const [kh, kw] = layer.kernel;
    const rows = range(kh).map((i) => y * layer.stride[0] - layer.padding[0] + i * layer.dilation[0]);
    const cols = range(kw).map((j) => x * layer.stride[1] - layer.padding[1] + j * layer.dilation[1]);
    const channels = range(perGroup).map((i) => group * perGroup + i);
    const inside = (r, q) => r >= 0 && r < height && q >= 0 && q < width;
    const patch = channels.map((ch) => rows.map((r) => cols.map((q) => (
      inside(r, q) ? layer.inputs[flat(layer.in_shape, ch, r, q)] : null))));
    const kernel = channels.map((_, i) => range(kh).map((a) => range(kw).map((b) => (
      layer.weights[((c * perGroup + i) * kh + a) * kw + b]))));
    const products = patch.map((p, i) => p.map((row, a) => row.map((v, b) => (v === null ? 0 : v) * kernel[i][a][b])));
    let total = 0;
    products.forEach((p) => p.forEach((row) => row.forEach((v) => { total += v; })));
    const bias = layer.bias.length ? layer.bias[c] : null;
    return { group, channels, rows, cols, patch, kernel, products, total, bias, value: total + (bias || 0),
             torch: layer.outputs[flat(layer.out_shape, c, y, x)] };
  }

  if (typeof document === "undefined") {
    module.exports = { compute };
    return;
  }
  const DATA = JSON.parse(document.getElementById("archviz-data").textContent);
  const layers = DATA.run && DATA.run.walkthrough;
  if (!layers || !layers.length) return;
  const $ = (id) => document.getElementById(id);
  const escape = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const figure = (v) => String(Number(v.toPrecision(6)));
  const state = { layer: 0, c: 0, y: 0, x: 0 };

  function decimals(values) {
    const largest = Math.max(0, ...values.filter((v) => v !== null).map(Math.abs));
    return largest === 0 ? 1 : Math.max(0, Math.min(5, 2 - Math.floor(Math.log10(largest))));
  }

  function grid(title, values) {
    const d = decimals(values.flat());
    const body = values.map((row) => "<tr>" + row.map((v) => (
      `<td>${v === null ? "--" : v.toFixed(d)}</td>`)).join("") + "</tr>").join("");
    return `<figure class="walk-grid"><figcaption>${escape(title)}</figcaption><table>${body}</table></figure>`;
  }

  function arithmetic(layer, step) {
    const n = step.channels.length;
    let grids;
    if (n <= SHOWN_CHANNELS) {
      grids = step.channels.map((ch, i) => `<div class="walk-row">${grid(`channel ${ch}: input patch`, step.patch[i])}` +
        `${grid("kernel", step.kernel[i])}${grid("products", step.products[i])}</div>`).join("");
    } else {
      const summed = step.rows.map((_, a) => step.cols.map((_, b) => (
        step.products.reduce((sum, p) => sum + p[a][b], 0))));
      grids = `<div class="walk-row">${grid(`products summed over the ${n} channels`, summed)}</div>` +
        `<p class="walk-note">${n} input channels are too many to show one by one: each number is the sum over the ` +
        "channels of patch × kernel at that kernel position.</p>";
    }
    const count = n * step.rows.length * step.cols.length;
    const bias = step.bias === null ? "<td>no bias</td><td></td>" : `<td>+ bias</td><td>${figure(step.bias)}</td>`;
    const difference = Math.abs(step.value - step.torch).toExponential(1);
    return `<p>Filter ${state.c} reads input ${n === 1 ? "channel" : "channels"} ${escape(step.channels.join(", "))} ` +
      `of ${layer.source === "input" ? "the input image" : escape(layer.source)} (--: outside the input, zero ` +
      `padding).</p>${grids}` +
      `<table class="walk-sum"><tr><td>sum of the ${count} products</td><td>${figure(step.total)}</td></tr>` +
      `<tr>${bias}</tr><tr><td>= value (recomputed here)</td><td>` +
      `${figure(step.value)}</td></tr><tr><td>value torch computed</td><td>${figure(step.torch)}` +
      ` (difference ${difference})</td></tr></table>`;
  }

  function colour(v, peak) {  // blue (negative), white (0), red (positive)
    const t = Math.max(-1, Math.min(1, v / (peak || 1)));
    const fade = Math.round(255 * (1 - Math.abs(t)));
    return t >= 0 ? `rgb(255,${fade},${fade})` : `rgb(${fade},${fade},255)`;
  }

  function drawMap(layer) {
    const [, h, w] = layer.out_shape;
    const scale = Math.max(1, Math.floor(MAP_SIDE / Math.max(h, w)));
    const canvas = $("walk-map");
    canvas.width = w * scale;
    canvas.height = h * scale;
    const context = canvas.getContext("2d");
    const values = range(h * w).map((i) => layer.outputs[state.c * h * w + i]);
    const peak = Math.max(...values.map(Math.abs));
    values.forEach((v, i) => {
      context.fillStyle = colour(v, peak);
      context.fillRect((i % w) * scale, Math.floor(i / w) * scale, scale, scale);
    });
    context.strokeStyle = "#111";
    context.lineWidth = 2;
    context.strokeRect(state.x * scale + 1, state.y * scale + 1, scale - 2, scale - 2);
    return scale;
  }

  function placeWindow(layer) {
    const [height, width] = DATA.run.walkthrough_input;
    const span = (index, axis, limit) => {
      const centre = layer.field_start[axis] + index * layer.field_jump[axis];
      const low = Math.max(0, Math.floor(centre - layer.field_size[axis] / 2));
      const high = Math.min(limit, Math.ceil(centre + layer.field_size[axis] / 2));
      return [low, high];
    };
    const [top, bottom] = span(state.y, 0, height);
    const [left, right] = span(state.x, 1, width);
    const box = $("walk-box").style;
    box.top = `${100 * top / height}%`;
    box.height = `${100 * (bottom - top) / height}%`;
    box.left = `${100 * left / width}%`;
    box.width = `${100 * (right - left) / width}%`;
    return `rows ${top}-${bottom - 1}, columns ${left}-${right - 1}`;
  }

  function update() {
    const layer = layers[state.layer];
    drawMap(layer);
    const seen = placeWindow(layer);
    const step = compute(layer, state.c, state.y, state.x);
    $("walk-position").textContent = `${layer.layer} at channel ${state.c}, row ${state.y}, column ${state.x}; ` +
      `it sees ${seen} of the input (receptive field ${layer.field_size.join("x")}). Output size, ` +
      `([W-F+2P]/S)+1: ${layer.sizes.map((s) => `${s.axis} ${s.arithmetic}`).join(", ")}`;
    $("walk-arithmetic").innerHTML = arithmetic(layer, step);
  }

  function chooseLayer(index) {
    const layer = layers[index];
    Object.assign(state, { layer: index, c: 0, y: Math.floor(layer.out_shape[1] / 2),
                           x: Math.floor(layer.out_shape[2] / 2) });
    $("walk-channel").innerHTML = range(layer.out_shape[0]).map((c) => `<option value="${c}">${c}</option>`).join("");
    update();
  }

  $("walk-layer").innerHTML = layers.map((l, i) => `<option value="${i}">${escape(l.layer)}</option>`).join("");
  $("walk-layer").addEventListener("change", (event) => chooseLayer(Number(event.target.value)));
  $("walk-channel").addEventListener("change", (event) => { state.c = Number(event.target.value); update(); });
  $("walk-map").addEventListener("click", (event) => {
    const layer = layers[state.layer];
    const canvas = $("walk-map");
    const rect = canvas.getBoundingClientRect();
    state.x = Math.min(layer.out_shape[2] - 1, Math.floor((event.clientX - rect.left) / rect.width * layer.out_shape[2]));
    state.y = Math.min(layer.out_shape[1] - 1, Math.floor((event.clientY - rect.top) / rect.height * layer.out_shape[1]));
    update();
  });
  chooseLayer(0);
})();
