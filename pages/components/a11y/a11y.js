// Accessibility for every page of clipviz, mounted by the router (app.py) in the
// sidebar as a component without HTML of its own.
//
// Once per browser tab it starts a check, repeated every second (live charts redraw
// in place), that
// * gives every Plotly chart a text alternative: role="figure" and an aria-label
//   saying what the chart shows now, read off the drawn figure: its title, the
//   panels' titles and notes ("exploded at step 12"), its series and its axes (and
//   which are logarithmic). A figure builder may set its own one-line summary as
//   layout.meta.summary; it is used instead. Screen readers announce the label;
//   axe-core accepts it as the chart's name.
// * makes a display formula that is too wide for its column focusable (KaTeX lets
//   it scroll sideways), so a keyboard can reach and scroll it: axe-core's rule
//   scrollable-region-focusable, serious when it fails.
//
// Labels are set with setAttribute, never as HTML, and the figure's text has its
// tags stripped, so nothing in a chart can become markup here.
// Its stylesheet, a11y.css, darkens what Streamlit draws too light to read.
// tests/e2e/test_a11y.py checks both in Chromium.

const MAX_SERIES = 8; // series named in a chart's label; more are counted
const MAX_NOTES = 6; // panel titles and notes named

const plain = (value) => {
  const text = value && typeof value === "object" ? value.text : value;
  return String(text || "").replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim();
};
const unique = (items) => [...new Set(items.filter((item) => item))];

function chartLabel(gd) {
  // The figure as the app sent it (gd.layout), not plotly.js's filled-in copy, whose
  // empty titles read "Click to enter X axis title"; axis types from the filled-in one.
  const layout = gd.layout || {};
  const full = gd._fullLayout || {};
  if (layout.meta && layout.meta.summary) return plain(layout.meta.summary);
  const parts = [];
  const title = plain(layout.title);
  parts.push(title ? `Chart: ${title}.` : "Chart.");
  const notes = unique((layout.annotations || []).map((a) => plain(a.text)));
  if (notes.length) parts.push(`Panels and notes: ${notes.slice(0, MAX_NOTES).join("; ")}.`);
  const series = unique(
    (gd._fullData || gd.data || [])
      .filter((t) => t.visible !== false && t.showlegend !== false)
      .map((t) => plain(t.name))
  );
  if (series.length) {
    const more = series.length > MAX_SERIES ? ` and ${series.length - MAX_SERIES} more` : "";
    parts.push(`Series: ${series.slice(0, MAX_SERIES).join(", ")}${more}.`);
  }
  const axes = Object.keys(layout)
    .filter((key) => /^[xy]axis[0-9]*$/.test(key) && layout[key] && layout[key].visible !== false)
    .sort()
    .map((key) => {
      const name = plain(layout[key].title);
      if (!name) return "";
      const type = (full[key] || layout[key]).type;
      return `${key[0]}: ${name}${type === "log" ? " (log scale)" : ""}`;
    });
  const named = unique(axes);
  if (named.length) parts.push(`Axes: ${named.join("; ")}.`);
  return parts.join(" ");
}

function check() {
  document.querySelectorAll(".js-plotly-plot").forEach((gd) => {
    const label = chartLabel(gd);
    if (gd.getAttribute("aria-label") !== label) {
      gd.setAttribute("role", "figure");
      gd.setAttribute("aria-label", label);
    }
  });
  document.querySelectorAll(".katex-display").forEach((formula) => {
    if (formula.scrollWidth > formula.clientWidth + 1 && !formula.hasAttribute("tabindex")) {
      formula.tabIndex = 0;
      formula.setAttribute("role", "region");
      formula.setAttribute("aria-label", "formula (scroll sideways to read all of it)");
    }
  });
}

export default function () {
  if (window.clipvizA11y) return;
  window.clipvizA11y = true;
  check();
  window.setInterval(check, 1000);
}
