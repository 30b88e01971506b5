// archviz report: the diagram as a tool. Zoom (wheel once pressed in or with Ctrl, + and -, Fit) and pan (drag; pinch on a phone) by moving each
// view's SVG viewBox; find a layer by name (it opens the view where it is drawn, or says which folded block holds
// it); the selected layer's figures and arithmetic in a panel beside the diagram; boxes recoloured by a cost from
// fills computed at build time (render/html/diagrams.py). No library: a viewBox is four numbers.
(function () {
  "use strict";
  const NATURAL = 4 / 3;  // px per SVG unit at the size Graphviz drew it (its units are points)
  const STEP = 1.25;  // one click of + or -
  const DRAG = 4;  // px a pointer moves before a press becomes a drag rather than a click

  // One view's viewport: its top-left corner (SVG units) and its scale (px per unit); the viewBox always has the
  // frame's aspect, so a unit is as wide as it is tall.
  function camera(svg, frame) {
    const b = svg.viewBox.baseVal, full = { x: b.x, y: b.y, w: b.width, h: b.height };
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
    let x = full.x, y = full.y, scale = NATURAL;
    const size = () => [frame.clientWidth || 1, frame.clientHeight || 1];
    const fitScale = () => Math.min(size()[0] / full.w, size()[1] / full.h);
    const clamp = (s) => Math.min(Math.max(s, Math.min(fitScale(), NATURAL) / 2), NATURAL * 6);
    function apply() {
      const [w, h] = size();
      svg.setAttribute("viewBox", `${x} ${y} ${w / scale} ${h / scale}`);
    }
    function centre(ux, uy) {
      const [w, h] = size();
      x = ux - w / 2 / scale;
      y = uy - h / 2 / scale;
      apply();
    }
    return {
      full, apply,
      get scale() { return scale; },
      started: false,
      // the top of the diagram, as wide as the frame allows up to the size Graphviz drew it
      start() {
        this.started = true;
        scale = Math.min(size()[0] / full.w, NATURAL);
        x = full.x + (full.w - size()[0] / scale) / 2;
        y = full.y;
        apply();
      },
      fit() { scale = fitScale(); centre(full.x + full.w / 2, full.y + full.h / 2); },
      zoom(factor, px, py) {  // px, py: the point that stays put, in px from the frame's top-left corner
        const [w, h] = size();
        if (px === undefined) [px, py] = [w / 2, h / 2];
        const ux = x + px / scale, uy = y + py / scale;
        scale = clamp(scale * factor);
        x = ux - px / scale;
        y = uy - py / scale;
        apply();
      },
      pan(dx, dy) { x -= dx / scale; y -= dy / scale; apply(); },
      // centre an element, at `wanted` px per unit (at least readable), smaller if the element would not fit
      show(element, wanted) {
        const box = element.getBoundingClientRect(), at = frame.getBoundingClientRect();
        const ux = x + (box.left + box.width / 2 - at.left) / scale;
        const uy = y + (box.top + box.height / 2 - at.top) / scale;
        const [w, h] = size(), units = [box.width / scale, box.height / scale];
        scale = clamp(Math.min(Math.max(wanted || scale, NATURAL * 0.75), 0.9 * w / units[0], 0.9 * h / units[1]));
        centre(ux, uy);
      },
    };
  }

  window.ArchvizDiagram = function (data, model, h) {
    const section = document.getElementById("diagram"), frame = document.getElementById("diagram-frame");
    const panel = document.getElementById("diagram-panel"), found = document.getElementById("diagram-found");
    const views = Object.fromEntries([...frame.querySelectorAll(".diagram-view")].map((v) => [v.dataset.view, v]));
    const order = [data.default, ...Object.keys(views).filter((v) => v !== data.default)];
    const elements = {};  // view -> {SVG id -> its <g>}
    for (const [view, div] of Object.entries(views)) {
      elements[view] = new Map([...div.querySelectorAll("g.node, g.cluster")].map((g) => [g.id, g]));
      for (const [id, g] of elements[view]) if ((data.toggles[view] || {})[strip(id)]) g.classList.add("clickable");
    }
    const cameras = {};
    let current = data.default, colouring = "kind";
    function strip(id) { return id.replace(/^(node|cluster):/, ""); }
    function cameraOf(view) {
      return cameras[view] || (cameras[view] = camera(views[view].querySelector("svg"), frame));
    }
    function show(view) {
      for (const [id, div] of Object.entries(views)) div.hidden = id !== view;
      section.dataset.current = current = view;
      const cam = cameraOf(view);
      if (!cam.started) cam.start();
      showKey();
      return cam;
    }
    fitFrameHeight();
    show(data.default);
    new ResizeObserver(() => cameraOf(current).apply()).observe(frame);

    // A short diagram (lenet) does not need a tall frame: as tall as its tallest view at its starting scale.
    function fitFrameHeight() {
      const width = frame.clientWidth || 1;
      const tallest = Math.max(...Object.values(views).map((div) => {
        const b = div.querySelector("svg").viewBox.baseVal;
        return b.height * Math.min(width / b.width, NATURAL);
      }));
      if (tallest + 8 < frame.clientHeight) frame.style.height = `${Math.max(tallest + 8, 240)}px`;
    }

    // ---- what holds a name: the box or frame drawn for it, or the folded box it is inside -------------------------
    const holds = (nodeId, name) => [nodeId, ...(data.merged[nodeId] || [])]
      .some((group) => name === group || name.startsWith(group + "."));
    function drawn(view, name) {
      return elements[view].get("node:" + name) || elements[view].get("cluster:" + name);
    }
    function holder(view, name) {
      for (const [id, g] of elements[view]) if (id.startsWith("node:") && holds(strip(id), name)) return g;
      return null;
    }
    // where to go for `name`: here; else the first rendered view that draws it; else the folded box holding it here
    function locate(name) {
      const here = drawn(current, name);
      if (here) return { view: current, element: here, how: "here" };
      for (const view of order) {
        const element = drawn(view, name);
        if (element) return { view, element, how: "opened" };
      }
      const box = holder(current, name);
      return box ? { view: current, element: box, how: "folded" } : null;
    }

    // ---- clicks: open or fold a block (the view its toggle names), or select a layer ------------------------------
    let dragged = false;
    frame.addEventListener("click", (event) => {
      if (dragged) { dragged = false; event.stopPropagation(); event.preventDefault(); return; }
      const item = event.target.closest("g.node, g.cluster");
      if (!item || !item.id.match(/^(node|cluster):/)) return;
      event.preventDefault();
      event.stopPropagation();
      const id = strip(item.id), target = (data.toggles[current] || {})[id];
      if (target) return switchTo(target, id);
      if (item.id.startsWith("node:") && id !== "input") select(id, item);
    }, true);
    function switchTo(view, id) {
      const scale = cameraOf(current).scale;
      const cam = show(view);
      const element = drawn(view, id) || drawn(view, (data.merged[id] || [])[0]) || holder(view, id);
      if (element) cam.show(element, scale);
    }
    const reset = document.getElementById("diagram-reset");
    reset.addEventListener("click", () => switchTo(data.default, ""));

    // ---- zoom and pan: wheel, buttons, drag, two fingers ----------------------------------------------------------
    const offset = (event) => {
      const at = frame.getBoundingClientRect();
      return [event.clientX - at.left, event.clientY - at.top];
    };
    // the wheel zooms once the diagram is engaged (pressed in, until the pointer leaves it) or with Ctrl/Cmd held;
    // otherwise it scrolls the page, as on any page with an embedded map, and a note says how to zoom
    let engaged = false;
    const hint = document.getElementById("diagram-wheel-hint");
    frame.addEventListener("pointerdown", () => { engaged = true; if (hint) hint.hidden = true; });
    frame.addEventListener("pointerleave", () => { engaged = false; });
    frame.addEventListener("wheel", (event) => {
      if (!engaged && !event.ctrlKey && !event.metaKey) {
        if (hint) hint.hidden = false;
        return;
      }
      event.preventDefault();
      const lines = event.deltaMode === 1 ? 20 : 1;
      cameraOf(current).zoom(Math.exp(-event.deltaY * lines * 0.0015), ...offset(event));
    }, { passive: false });
    document.getElementById("diagram-zoom-in").addEventListener("click", () => cameraOf(current).zoom(STEP));
    document.getElementById("diagram-zoom-out").addEventListener("click", () => cameraOf(current).zoom(1 / STEP));
    document.getElementById("diagram-fit").addEventListener("click", () => cameraOf(current).fit());
    const pointers = new Map();  // pointer id -> {start, last} positions in px from the frame's corner
    frame.addEventListener("pointerdown", (event) => {
      if (event.pointerType === "mouse" && event.button !== 0) return;
      dragged = false;
      const at = offset(event);
      pointers.set(event.pointerId, { start: at, last: at });
    });
    frame.addEventListener("pointermove", (event) => {
      const pointer = pointers.get(event.pointerId);
      if (!pointer) return;
      const at = offset(event), cam = cameraOf(current);
      if (!dragged && Math.hypot(at[0] - pointer.start[0], at[1] - pointer.start[1]) < DRAG) return;
      if (!dragged) { dragged = true; frame.setPointerCapture(event.pointerId); frame.classList.add("panning"); }
      const other = [...pointers.entries()].find(([id]) => id !== event.pointerId);
      if (other) {  // a pinch: scale by the change of the fingers' distance, about their midpoint
        const fixed = other[1].last, mid = (p) => [(p[0] + fixed[0]) / 2, (p[1] + fixed[1]) / 2];
        const spread = (p) => Math.hypot(p[0] - fixed[0], p[1] - fixed[1]) || 1;
        cam.zoom(spread(at) / spread(pointer.last), ...mid(pointer.last));
        cam.pan(mid(at)[0] - mid(pointer.last)[0], mid(at)[1] - mid(pointer.last)[1]);
      } else {
        cam.pan(at[0] - pointer.last[0], at[1] - pointer.last[1]);
      }
      pointer.last = at;
    });
    const release = (event) => {
      pointers.delete(event.pointerId);
      if (!pointers.size) frame.classList.remove("panning");
    };
    frame.addEventListener("pointerup", release);
    frame.addEventListener("pointercancel", release);

    // ---- the selected layer (or block): its figures and arithmetic beside the diagram ----------------------------
    const layersOf = (name) => model.layers.filter((l) => holds(name, l.name) && l.name !== name);
    function figures(name) {
      const layer = model.layers.find((l) => l.name === name);
      const inside = layer ? [layer] : layersOf(name);
      if (!inside.length) return null;
      const sum = (key) => inside.reduce((total, l) => total + (l[key] || 0), 0);
      const last = inside[inside.length - 1];
      const rows = [
        ["Type", layer ? `${layer.type} ${layer.summary}`.trim() : `block of ${inside.length} layers`],
        ["Output shape", h.shape(last.output_shape)],
        ["Params", h.fmtInt(sum("params"))],
        ["MACs", h.fmtInt(sum("macs")) + (inside.some((l) => l.counted === false) ? " (some not counted)" : "")],
        ["Output memory", h.bytes(sum("activation_bytes"))],
        ["Receptive field", last.receptive_field ? h.shape(last.receptive_field) + " px" : "not tracked"],
      ];
      if (model.latency) rows.push(["Predicted time", h.seconds(sum("predicted_seconds"))]);
      return h.el("dl", { class: "figures" }, ...rows.flatMap(([term, value]) =>
        [h.el("dt", { text: term }), h.el("dd", { text: value })]));
    }
    function select(name, element) {
      const facts = figures(name);
      if (!facts) return;
      const close = h.el("button", { class: "close", "aria-label": "close (Escape)", title: "close (Escape)",
        text: "×" });
      close.addEventListener("click", closePanel);
      panel.replaceChildren(close, h.el("h3", { text: name }), facts,
        ...(model.explanations[name] ? h.arithmetic(model, name) : []));
      panel.hidden = false;
      section.classList.add("with-panel");
      mark(element);
      const cam = cameraOf(current);
      cam.apply();  // the frame narrowed: keep the selected box in it
      if (element && !inside(element.getBoundingClientRect(), frame.getBoundingClientRect())) cam.show(element);
    }
    const inside = (box, at) => box.left >= at.left && box.right <= at.right && box.top >= at.top
      && box.bottom <= at.bottom;
    function closePanel() {
      if (panel.hidden) return;
      panel.hidden = true;
      section.classList.remove("with-panel");
      cameraOf(current).apply();
    }
    document.addEventListener("keydown", (event) => { if (event.key === "Escape") closePanel(); });
    function mark(element) {
      frame.querySelectorAll("g.found").forEach((g) => g.classList.remove("found"));
      if (element) element.classList.add("found");
    }

    // ---- find a layer by name: typing jumps to the first match, Enter to the next (Shift+Enter back) -------------
    const names = new Set();  // every layer and every group above it, in layer order
    for (const layer of model.layers) {
      const parts = layer.name.split(".");
      parts.forEach((_, i) => names.add(parts.slice(0, i + 1).join(".")));
    }
    const search = document.getElementById("diagram-search");
    let matches = [], index = 0;
    function matching(text) {
      const q = text.trim().toLowerCase();
      if (!q) return [];
      const rank = (n) => (n.toLowerCase() === q ? 0 : n.toLowerCase().startsWith(q) ? 1 : 2);
      return [...names].filter((n) => n.toLowerCase().includes(q)).sort((a, b) => rank(a) - rank(b));
    }
    function go() {
      if (!matches.length) {
        mark(null);
        found.textContent = search.value.trim() ? "no layer by that name" : "";
        return;
      }
      const name = matches[index], place = locate(name), count = `${index + 1} of ${matches.length}: `;
      if (!place) { found.textContent = count + name + " is not drawn"; return; }
      const scale = cameraOf(current).scale;
      const cam = show(place.view);
      select(name, place.element);
      cam.show(place.element, scale);
      found.textContent = count + name + (place.how === "folded" ? folded(name, strip(place.element.id)) : "");
    }
    // where a name inside a folded box is, and how to see it open: a click, or the CLI for a view not rendered
    function folded(name, boxId) {
      const said = ` is inside the folded block ${boxId.replace("..", " ... ")} (marked)`;
      if ((data.toggles[current] || {})[boxId]) return said + ": click it to open";
      const group = [...(data.merged[boxId] || []), boxId].find((g) => name === g || name.startsWith(g + "."));
      return said + `; archviz diagram ${model.model} --unfold ${group} draws it open`;
    }
    search.addEventListener("input", () => { matches = matching(search.value); index = 0; go(); });
    search.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || !matches.length) return;
      event.preventDefault();
      index = (index + (event.shiftKey ? matches.length - 1 : 1)) % matches.length;
      go();
    });

    // ---- colour by a cost: swap the boxes' fills, hide the SVG's key of kinds, show the cost's key ----------------
    const fill = (g) => g.querySelector("path, polygon, ellipse");
    for (const div of Object.values(views)) {
      div.querySelectorAll('g.node[id^="node:"]').forEach((g) => {
        const shape = fill(g);
        if (shape) g.dataset.kindFill = shape.getAttribute("fill");
      });
    }
    const colourControl = document.getElementById("diagram-colour");
    colourControl.addEventListener("change", () => { colouring = colourControl.value; recolour(); showKey(); });
    function recolour() {
      for (const [view, div] of Object.entries(views)) {
        const fills = colouring === "kind" ? null : data.costs[colouring].views[view].fills;
        div.querySelectorAll('g.node[id^="node:"]').forEach((g) => {
          const shape = fill(g);
          if (shape) shape.setAttribute("fill", fills ? fills[strip(g.id)] || "#ffffff" : g.dataset.kindFill);
        });
        const kinds = div.querySelector('g[id="diagram:legend"]');  // the key of kinds drawn in the SVG
        if (kinds) kinds.style.display = fills ? "none" : "";
      }
    }
    function showKey() {
      const key = document.getElementById("diagram-key");
      if (colouring === "kind") { key.hidden = true; return; }
      const view = data.costs[colouring].views[current];
      key.replaceChildren(h.el("span", { class: "title", text: view.title }), ...view.key.map(([colour, text]) =>
        h.el("span", { class: "step", style: `background:${colour}`, text })));
      key.hidden = false;
    }
  };
})();
