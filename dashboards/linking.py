"""Linked views for the dashboards (static pages and the live app), as a script string.

Kept in Python (not a .js file) so it ships with the package without package data.

- A figure whose ``layout.meta.xlinks`` maps an x axis name to ``[key, seconds per unit]``
  shares its x range with every axis of the same key in every figure on the page (zoom, pan,
  double-click reset), converted through the seconds per unit.
- Clicking a round in the figure with ``meta.role == "round-time"`` opens the nearest sampled
  round in the figure with ``meta.role == "timeline"`` and scrolls to it.
"""

LINKING_JS = """/* FedFleet dashboards: linked views (static pages and the live app).
 *
 * A figure whose layout.meta.xlinks maps an x axis to [key, seconds per unit] shares its x
 * range with every axis of the same key in every figure on the page: zoom or pan one and the
 * others follow; a double click (autorange) resets them all. Ranges are converted through the
 * seconds per unit, so a panel in minutes and one in hours stay aligned.
 * Clicking a round in the figure with meta.role "round-time" opens the nearest sampled round
 * in the figure with meta.role "timeline" (its slider) and scrolls to it.
 */
(function () {
  "use strict";
  function plots() { return Array.from(document.querySelectorAll(".js-plotly-plot")); }
  function meta(gd) { return (gd.layout && gd.layout.meta) || {}; }
  var busy = false;

  function changed(ev, ax) {
    if (ev[ax + ".autorange"]) return { auto: true };
    if (ev[ax + ".range[0]"] !== undefined) {
      return { range: [ev[ax + ".range[0]"], ev[ax + ".range[1]"]] };
    }
    if (ev[ax + ".range"]) return { range: ev[ax + ".range"].slice() };
    return null;
  }

  function onRelayout(gd, ev) {
    if (busy || !window.Plotly || !ev) return;
    var src = meta(gd).xlinks;
    if (!src) return;
    var moves = {};  // link key -> {auto} or {range in seconds (or rounds)}
    Object.keys(src).forEach(function (ax) {
      var c = changed(ev, ax), key = src[ax][0], per = src[ax][1] || 1;
      if (!c) return;
      moves[key] = c.auto ? { auto: true } : { range: [c.range[0] * per, c.range[1] * per] };
    });
    if (!Object.keys(moves).length) return;
    busy = true;
    var jobs = [];
    plots().forEach(function (other) {
      var links = meta(other).xlinks;
      if (!links) return;
      var upd = {};
      Object.keys(links).forEach(function (ax) {
        var key = links[ax][0], per = links[ax][1] || 1, m = moves[key];
        if (!m || (other === gd && changed(ev, ax))) return;
        if (m.auto) upd[ax + ".autorange"] = true;
        else upd[ax + ".range"] = [m.range[0] / per, m.range[1] / per];
      });
      // as a GUI edit (when plotly.js offers it), so uirevision keeps it across live updates
      var relayout = window.Plotly._guiRelayout || window.Plotly.relayout;
      if (Object.keys(upd).length) jobs.push(relayout(other, upd));
    });
    Promise.all(jobs).then(function () { busy = false; }, function () { busy = false; });
  }

  function onClick(gd, ev) {
    if (meta(gd).role !== "round-time" || !ev || !ev.points || !ev.points.length) return;
    var r = Number(ev.points[0].x);
    var tl = plots().find(function (g) { return meta(g).role === "timeline"; });
    if (!tl) return;
    var rounds = meta(tl).timeline_rounds || [];
    var sl = tl.layout.sliders && tl.layout.sliders[0];
    if (!rounds.length) return;
    var best = 0;
    rounds.forEach(function (v, i) { if (Math.abs(v - r) < Math.abs(rounds[best] - r)) best = i; });
    if (sl && sl.steps && sl.steps[best]) {
      var st = sl.steps[best], lay = Object.assign({}, st.args[1] || {});
      lay["sliders[0].active"] = best;
      window.Plotly.update(tl, st.args[0], lay);
    }
    tl.setAttribute("data-round", String(rounds[best]));
    tl.scrollIntoView({ block: "center" });
  }

  function attach() {
    plots().forEach(function (gd) {
      if (gd._fedfleetLinked || typeof gd.on !== "function") return;
      gd._fedfleetLinked = true;
      gd.on("plotly_relayout", function (ev) { onRelayout(gd, ev); });
      gd.on("plotly_click", function (ev) { onClick(gd, ev); });
    });
  }
  window.fedfleetLinking = { attach: attach };
  attach();
  setInterval(attach, 500);  // the live app draws new graphs as runs are chosen
})();
"""
