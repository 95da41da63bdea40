// The Training Lab's live chart (clipviz): the browser keeps the figure and plays it.
//
// The server streams the chart (clipviz/app/stream.py): a "full" payload with the
// whole figure when a run starts, then "delta" payloads with the points to append
// to each trace and the layout entries that changed. This module keeps the figure
// between payloads and animates what has arrived: up to `fps` chart updates a
// second, each showing `speed` more optimizer steps (the page's speed control).
//
// Pacing (clipviz/app/player.py): while playing, when fewer than about a tick's
// steps are left to show, the chart asks the server for more, saying which steps
// it holds (the "more" trigger, which reruns the page's live fragment alone); the
// server trains the next tick and sends it from there. One request at a time; a
// request unanswered for a few seconds is sent again. Since the server always
// goes on from what the chart says it holds, an update Streamlit skipped (it may
// draw only the last of two messages that arrive together) is simply sent again.
// While an answer is awaited, the steps left are spread over the time answers
// take, so the chart still moves smoothly when the server is slower than the
// chosen speed; when it falls behind by more than two ticks, it catches up.
// Paused, stepped or finished: everything that arrived is shown at once.
//
// Generic on purpose: any trace the figure builder adds is streamed and animated
// the same way (points revealed in the order of their x, the optimizer step).
// Drawing: a full Plotly.react on arrays grown in place costs 50 to 150 ms in a
// browser without a GPU, so while playing most chart updates only append the new
// points to each line's SVG path (`quickDraw`), and a full redraw comes when the
// axes must change and at least once a second (heatmap, markers, hover). The step
// axis grows by round numbers, so it rarely forces one. `uirevision` keeps the zoom.

const STORE = (window.clipvizLiveCharts = window.clipvizLiveCharts || {});
const REQUEST_AGAIN_MS = 8000; // an unanswered request for more steps is repeated
const LOW_TICKS = 1.5; // ask for more when fewer than this many ticks' steps are left
const FULL_EVERY_MS = 1000; // while playing, a full redraw at least this often
const FULL_SHARE = 0.3; // ... but full redraws take at most about this share of the time
const FULL_MIN_MS = 250; // and come at most this often for a line that left its axes

// ---- payloads -----------------------------------------------------------------

function decodeArray(value) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  if ("range" in value) {
    const [first, step, count] = value.range;
    return Array.from({ length: count }, (_, i) => first + step * i);
  }
  if ("f32" in value) {
    const binary = atob(value.f32);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    const flat = Array.from(new Float32Array(bytes.buffer));
    if (value.shape.length !== 2) return flat;
    const [rows, columns] = value.shape;
    return Array.from({ length: rows }, (_, r) => flat.slice(r * columns, (r + 1) * columns));
  }
  return value;
}

function decodeTrace(trace) {
  const out = {};
  for (const [key, value] of Object.entries(trace)) out[key] = decodeArray(value);
  return out;
}

function parse(data) {
  const text = typeof data === "string" ? data : new TextDecoder().decode(data);
  return JSON.parse(text);
}

// ---- the chart's state ----------------------------------------------------------

function reset(chart, payload) {
  chart.revision = payload.revision;
  chart.meta = payload.meta || {};
  chart.data = payload.data.map(decodeTrace);
  chart.layout = { ...payload.layout, datarevision: 0 };
  chart.have = payload.to; // steps received
  chart.shown = payload.to; // steps drawn
  chart.pending = new Map(); // trace index -> {key: points not drawn yet}
  chart.added = new Map(); // trace index -> {x, y, gap}: revealed since the last drawing
  chart.layouts = []; // [{at: step, layout}] layout changes not applied yet
  chart.asked = null;
  chart.fullDue = true;
  growSteps(chart);
}

function append(chart, payload) {
  for (const [index, points] of Object.entries(payload.traces || {})) {
    const queued = chart.pending.get(index) || {};
    for (const [key, value] of Object.entries(points)) {
      const decoded = decodeArray(value);
      if (!(key in queued)) queued[key] = Array.isArray(decoded[0]) ? decoded.map(() => []) : [];
      if (Array.isArray(decoded[0])) decoded.forEach((row, r) => moveAll(row, queued[key][r]));
      else moveAll(decoded, queued[key]);
    }
    chart.pending.set(index, queued);
  }
  if (payload.layout) chart.layouts.push({ at: payload.to, layout: payload.layout });
  if (payload.to > chart.have && chart.asked && chart.asked.seq < payload.seq) {
    // The answer to our request: remember how long answers take.
    const took = performance.now() - chart.asked.at;
    chart.rtt = chart.rtt === undefined ? took : 0.7 * chart.rtt + 0.3 * took;
  }
  chart.have = payload.to;
}

function moveAll(from, to) {
  for (let i = 0; i < from.length; i++) to.push(from[i]);
}

// Move the queued points with x <= step into the figure; apply layouts due by then.
// What each trace got is kept in `chart.added` for the next frame's quick drawing.
function reveal(chart, step) {
  for (const [index, queued] of chart.pending) {
    const xs = queued.x || [];
    let count = 0;
    while (count < xs.length && xs[count] <= step) count++;
    if (!count) continue;
    const trace = chart.data[Number(index)];
    const ys = Array.isArray(trace.y) ? trace.y : [];
    const added = chart.added.get(Number(index)) || {
      x: [],
      y: [],
      gap: !ys.length || !Number.isFinite(ys[ys.length - 1]),
    };
    if (Array.isArray(queued.y) && !Array.isArray(queued.y[0])) {
      added.x.push(...xs.slice(0, count));
      added.y.push(...queued.y.slice(0, count));
    } else {
      added.other = true; // a heatmap's columns: drawn by the next full redraw
    }
    chart.added.set(Number(index), added);
    for (const [key, values] of Object.entries(queued)) {
      if (Array.isArray(values[0])) {
        if (!Array.isArray(trace[key])) trace[key] = values.map(() => []);
        values.forEach((row, r) => moveAll(row.splice(0, count), trace[key][r]));
      } else {
        if (!Array.isArray(trace[key])) trace[key] = [];
        moveAll(values.splice(0, count), trace[key]);
      }
    }
    if (!(queued.x || []).length) chart.pending.delete(index);
  }
  while (chart.layouts.length && chart.layouts[0].at <= step) {
    for (const [key, value] of Object.entries(chart.layouts.shift().layout)) {
      if (value === null) delete chart.layout[key];
      else chart.layout[key] = value;
    }
    chart.fullDue = true; // the axes, shapes or notes changed
  }
  chart.shown = step;
  growSteps(chart);
}

// The step axis (and the axes matching it) spans a round number of steps just
// above the last one shown (10, 20, 50, 100, ..., at most the run's length), so
// it changes a few times per run instead of at every update.
function growSteps(chart) {
  const total = chart.meta.steps;
  const axis = chart.layout.xaxis;
  if (!total || !axis) return;
  let bound = 10;
  for (let i = 0; bound < Math.min(chart.shown, total) && i < 60; i++) {
    bound *= String(bound)[0] === "2" ? 2.5 : 2; // 10, 20, 50, 100, 200, 500, ...
  }
  bound = Math.min(total, bound);
  const range = axis.range;
  if (!range || range[1] !== bound || axis.autorange !== false) {
    chart.layout.xaxis = { ...axis, range: [0, bound], autorange: false };
    chart.fullDue = true;
  }
}

// Steps to show in the next chart update: the chosen speed; while an answer is
// awaited, what is left is spread over the time answers take (so the chart keeps
// moving smoothly when the server is slower than the speed asks); far behind
// (a slow frame rate, a burst of data), it catches up.
function stepsForNextUpdate(chart, now) {
  const waiting = chart.have - chart.shown;
  if (!chart.playing) return waiting;
  const framesPerTick = Math.max(1, chart.fps * chart.tick);
  if (waiting > 2 * chart.speed * framesPerTick) return Math.ceil(waiting / framesPerTick);
  if (!awaiting(chart)) return Math.min(chart.speed, waiting);
  const answer = chart.asked.at + (chart.rtt === undefined ? chart.tick * 1000 : chart.rtt);
  const framesLeft = Math.max(1, Math.round(((answer - now) / 1000) * chart.fps));
  return Math.max(1, Math.min(chart.speed, Math.ceil(waiting / framesLeft)));
}

function awaiting(chart) {
  return Boolean(chart.asked) && chart.asked.seq === chart.seq;
}

// ---- drawing ----------------------------------------------------------------------

// A full redraw: Plotly.react on the grown arrays (a `datarevision` bump tells
// plotly.js they changed). It redraws every axis, label and trace: about 50 to
// 150 ms in a browser drawing without a GPU, too slow for every update.
function draw(chart) {
  const start = performance.now();
  chart.layout.datarevision += 1;
  window.Plotly.react(chart.element, chart.data, chart.layout, chart.meta.config || {});
  const took = performance.now() - start;
  chart.fullCost = chart.fullCost === undefined ? took : 0.7 * chart.fullCost + 0.3 * took;
  chart.lastFull = performance.now();
  chart.fullDue = false;
  chart.added.clear();
  frameDrawn(chart, true);
}

// A quick update between full redraws: the new points of each line are appended
// to the SVG path plotly.js drew for it, placed with the axes' own conversion
// from data to pixels. Returns false (a full redraw is needed) when a point
// falls outside an axis that follows the data, or a line has no path yet.
// Markers and the heatmap's new columns wait for the next full redraw (at most
// FULL_EVERY_MS away); so do hover labels for the newest points.
function quickDraw(chart, strict) {
  chart.whyFull = "";
  const element = chart.element;
  const full = element._fullLayout;
  const traces = element._fullData;
  if (!full || !traces) return why(chart, "no figure");
  const groups = new Map();
  element.querySelectorAll(".scatterlayer .trace").forEach((group) => {
    const calc = group.__data__;
    const trace = calc && calc[0] && calc[0].trace;
    if (trace) groups.set(trace.index, group);
  });
  const edits = [];
  for (const [index, added] of chart.added) {
    const trace = traces[index];
    if (!trace || trace.visible !== true || added.other || !added.x.length) continue;
    if (trace.type !== "scatter") return why(chart, `type ${trace.type}`);
    if (!String(trace.mode).includes("lines")) continue; // markers alone: next full redraw
    if ((trace.line && trace.line.shape && trace.line.shape !== "linear") || trace.fill !== "none") {
      return why(chart, "shape");
    }
    const xa = full[`xaxis${trace.xaxis.slice(1)}`];
    const ya = full[`yaxis${trace.yaxis.slice(1)}`];
    const paths = groups.has(index) ? groups.get(index).querySelectorAll("path.js-line") : [];
    if (!xa || !ya || !paths.length) return why(chart, `no path ${index}`);
    const path = paths[paths.length - 1];
    let d = "";
    let gap = added.gap || !path.getAttribute("d");
    for (let i = 0; i < added.x.length; i++) {
      const y = added.y[i];
      if (typeof y !== "number" || !Number.isFinite(y) || (ya.type === "log" && y <= 0)) {
        gap = true; // a NaN or infinite loss: the line breaks, as in a full redraw
        continue;
      }
      const px = xa.c2p(added.x[i]);
      const py = ya.c2p(y);
      if (!Number.isFinite(px) || !Number.isFinite(py)) return why(chart, "pixel");
      if (strict && xa.autorange && (px < 0 || px > xa._length)) return why(chart, "x out");
      if (strict && ya.autorange && (py < 0 || py > ya._length)) return why(chart, "y out");
      d += `${gap ? "M" : "L"}${px.toFixed(2)},${py.toFixed(2)}`;
      gap = false;
    }
    if (d) edits.push([path, d]);
  }
  for (const [path, d] of edits) path.setAttribute("d", path.getAttribute("d") + d);
  chart.added.clear();
  frameDrawn(chart, false);
  return true;
}

function why(chart, reason) {
  chart.whyFull = reason;
  return false;
}

// Every chart update (full or quick) is counted and announced on the element:
// `clipviz-frame` events, which the browser tests count.
function frameDrawn(chart, full) {
  chart.frames = (chart.frames || 0) + 1;
  chart.element.dispatchEvent(new CustomEvent("clipviz-frame", { detail: { full } }));
}

// While playing, a full redraw when something besides lines changed, when a
// line leaves its axes, and at least every FULL_EVERY_MS (but taking at most
// FULL_SHARE of the time); quick updates in between.
function update(chart, now) {
  const since = now - (chart.lastFull || 0);
  const spacing = Math.max(FULL_MIN_MS, (chart.fullCost || 0) / FULL_SHARE);
  const every = Math.max(FULL_EVERY_MS, spacing);
  // A point outside an axis that follows the data forces a full redraw only once
  // the last one is `spacing` old; until then it is drawn clipped at the edge.
  const strict = since >= spacing;
  if (chart.fullDue || !chart.playing || since >= every || !quickDraw(chart, strict)) {
    debug("full", chart.fullDue, chart.playing, Math.round(since), chart.whyFull);
    draw(chart);
  }
}

function schedule(chart) {
  if (!chart.frame) chart.frame = requestAnimationFrame((now) => animate(chart, now));
}

function animate(chart, now) {
  chart.frame = 0;
  if (!chart.element.isConnected) return;
  askForMore(chart, now);
  if (chart.shown >= chart.have) {
    if (chart.playing) schedule(chart); // keep watching: the next steps are on their way
    return;
  }
  if (now - chart.lastDraw < 1000 / chart.fps - 4) {
    schedule(chart); // not yet: at most `fps` chart updates a second
    return;
  }
  chart.lastDraw = now;
  reveal(chart, Math.min(chart.have, chart.shown + stepsForNextUpdate(chart, now)));
  update(chart, now);
  schedule(chart);
}

// While playing, ask for the next tick when what is left to show runs low.
function askForMore(chart, now) {
  if (!chart.playing || !chart.ask) return;
  const waiting = chart.have - chart.shown;
  const tickSteps = chart.speed * chart.fps * chart.tick;
  if (waiting >= LOW_TICKS * tickSteps) return;
  if (awaiting(chart) && now - chart.asked.at < REQUEST_AGAIN_MS) return;
  chart.asked = { at: now, seq: chart.seq };
  chart.ask("more", { revision: chart.revision, have: chart.have });
  debug("ask", chart.have, chart.shown);
}

// `window.clipvizDebug = true` in the browser's console logs the stream's events.
function debug(...args) {
  if (window.clipvizDebug) console.log("clipviz live chart:", ...args);
}

function drawKey(container, key) {
  container.replaceChildren();
  container.style.display = key && key.length ? "block" : "none";
  (key || []).forEach(([colour, label, opacity], i) => {
    if (i) container.append(" \u00a0·\u00a0 ");
    const swatch = document.createElement("span");
    swatch.textContent = "\u25a0";
    swatch.style.color = colour;
    swatch.style.opacity = String(opacity);
    container.append(swatch, ` ${label}`);
  });
}

function plotlyReady(url) {
  if (window.Plotly) return Promise.resolve();
  if (!window.clipvizPlotly) {
    window.clipvizPlotly = new Promise((resolve, reject) => {
      if (!url) {
        // No static copy served: the page's loader component brings plotly.js.
        const waiting = (window.clipvizWaiting = window.clipvizWaiting || []);
        waiting.push(resolve);
        return;
      }
      const script = document.createElement("script");
      script.src = url; // a versioned URL, cached by the browser for a year
      script.onload = () => resolve();
      script.onerror = () => reject(new Error(`plotly.js did not load from ${url}`));
      document.head.appendChild(script);
    });
  }
  return window.clipvizPlotly;
}

// ---- the component ----------------------------------------------------------------

export default function ({ data, parentElement, setTriggerValue, key }) {
  const payload = parse(data);
  const chart = (STORE[key] = STORE[key] || { seq: 0, revision: null, frame: 0, lastDraw: 0 });
  const element = parentElement.querySelector(".clipviz-live-chart");
  const moved = chart.element !== element; // first payload, or Streamlit mounted us anew
  chart.element = element;
  chart.playing = Boolean(payload.playing);
  chart.speed = Math.max(1, payload.speed || 1);
  chart.fps = payload.fps || 25;
  chart.tick = payload.tick || 0.2;
  chart.ask = setTriggerValue;

  // Streamlit may hand us a payload again (a redraw of the page): seen ones are
  // skipped. A new run's figure is always taken (a new session counts afresh).
  const repeated = payload.seq <= chart.seq && payload.revision === chart.revision;
  debug("payload", payload.kind, payload.seq, payload.from, payload.to, "have", chart.have, repeated);
  if (!repeated) {
    chart.seq = payload.seq;
    if (payload.kind === "full") {
      reset(chart, payload);
    } else if (payload.revision === chart.revision && payload.from === chart.have) {
      append(chart, payload);
    } else if (payload.revision === chart.revision && payload.from < chart.have) {
      return; // steps we hold already (an answer to a repeated request)
    } else {
      // An update went missing (or this chart holds another run): ask again at
      // once, saying what we hold; the server goes on from there.
      chart.asked = null;
      if (chart.playing || payload.to > chart.have) {
        const held = payload.revision === chart.revision ? chart.have : null;
        chart.asked = { at: performance.now(), seq: chart.seq };
        setTriggerValue("more", { revision: chart.revision, have: held });
      }
      return;
    }
  }
  if (!chart.data) return;
  if (!chart.playing) reveal(chart, chart.have); // paused or stepped: show it all now

  plotlyReady(chart.meta.plotly).then(() => {
    element.style.height = `${chart.layout.height}px`;
    drawKey(parentElement.querySelector(".clipviz-live-key"), chart.meta.key);
    // While playing, the animation draws; a payload draws at once only when it
    // replaced the figure, moved the chart, or arrived paused (shown whole).
    if (moved || (!repeated && (payload.kind === "full" || !chart.playing))) draw(chart);
    if (!element.clipvizResize) {
      element.clipvizResize = new ResizeObserver(() => window.Plotly.Plots.resize(element));
      element.clipvizResize.observe(element);
    }
    schedule(chart);
  });
}
