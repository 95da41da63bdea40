// plotly.js for a server without serve.py's asset routes (`streamlit run app.py`):
// the page mounts this module once per session, with plotly.min.js (the copy in
// the plotly package) placed before these lines; it then wakes every live chart
// that is waiting for window.Plotly (live_chart.js, plotlyReady).
export default function () {
  (window.clipvizWaiting || []).splice(0).forEach((ready) => ready());
}
