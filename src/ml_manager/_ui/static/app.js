/* The runs page of ml_manager: the runs table, charts of the selected runs, live while they run.
   Served by `ml-manager ui` (data from its JSON API) or inlined by `ml-manager report` (data in
   window.ML_MANAGER_DATA, no network at all).  Plain script, no build step; charts are uPlot. */
(function () {
  "use strict";
  var ROW = 24;
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
  var embedded = window.ML_MANAGER_DATA || null;
  var state = readHash();
  var table = { columns: [], rows: [], metrics: [], config: [] };
  var view = [];
  var sort = { column: -1, desc: false };
  var charts = {};          // metric -> uPlot
  var drawn = {};           // metric -> what was drawn: [{label, x, y, smoothed}]
  var busy = false;
  var zoom = {};            // metric -> [min, max] of x the user zoomed to
  window.mlCharts = charts;
  window.mlDrawn = drawn;

  function $(id) { return document.getElementById(id); }

  function readHash() {
    var p = new URLSearchParams(location.hash.slice(1));
    return {
      q: p.get("q") || "",
      sel: p.getAll("sel").filter(Boolean),
      x: p.get("x") || "step",
      log: p.get("log") === "1",
      smooth: Math.min(0.99, Math.max(0, parseFloat(p.get("smooth") || "0") || 0)),
      group: p.get("group") || "",
      hide: p.getAll("hide").filter(Boolean)
    };
  }

  function writeHash() {
    var p = new URLSearchParams();
    if (state.q) p.set("q", state.q);
    state.sel.forEach(function (key) { p.append("sel", key); });
    if (state.x !== "step") p.set("x", state.x);
    if (state.log) p.set("log", "1");
    if (state.smooth) p.set("smooth", String(state.smooth));
    if (state.group) p.set("group", state.group);
    state.hide.forEach(function (name) { p.append("hide", name); });
    history.replaceState(null, "", "#" + p.toString());
  }

  function fetchJSON(url) {
    return fetch(url, { cache: "no-store" }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(body.error || r.statusText);
        return body;
      });
    });
  }

  // -- the runs table ----------------------------------------------------------------------------------

  function keyOf(row) { return row[0] + "/" + row[1]; }

  function loadRuns() {
    if (embedded) {
      table = embedded.table;
      return Promise.resolve(renderTable());
    }
    return fetchJSON("api/runs?q=" + encodeURIComponent(state.q)).then(function (t) {
      table = t;
      $("query-error").textContent = "";
      renderTable();
    }, function (e) { $("query-error").textContent = e.message; });
  }

  function renderTable() {
    view = table.rows.slice();
    if (sort.column >= 0) {
      var c = sort.column;
      view.sort(function (a, b) {
        var x = a[c], y = b[c];
        var r = x === y ? 0 : x === null ? 1 : y === null ? -1 : x < y ? -1 : 1;
        return sort.desc ? -r : r;
      });
    }
    var head = $("table-head");
    head.innerHTML = "";
    head.appendChild(cell("", "div"));
    renderColumnMenu();
    table.columns.forEach(function (name, i) {
      if (state.hide.indexOf(name) >= 0) return;
      var h = cell(name + (sort.column === i ? (sort.desc ? " \u25BC" : " \u25B2") : ""));
      h.onclick = function () { sort.desc = sort.column === i ? !sort.desc : false; sort.column = i; renderTable(); };
      head.appendChild(h);
    });
    $("count").textContent = view.length + " run" + (view.length === 1 ? "" : "s");
    var group = $("group-by");
    var options = [""].concat(table.config || []);
    if (group.options.length !== options.length) {
      group.innerHTML = "";
      options.forEach(function (name) {
        var o = document.createElement("option");
        o.value = name;
        o.textContent = name || "(none)";
        group.appendChild(o);
      });
      group.value = state.group;
    }
    $("table-spacer").style.height = view.length * ROW + "px";
    $("table-body").style.height = Math.min(280, Math.max(3, view.length) * ROW + 2) + "px";
    renderRows();
  }

  var menuFor = "";
  function renderColumnMenu() {
    // The columns the user chose to see: every one of the table's, shown unless unticked here.  Made again
    // only when the columns change, not at every refresh (it would lose its scroll and the user's click).
    var list = $("column-list");
    if (menuFor === table.columns.join("\u0000")) return;
    menuFor = table.columns.join("\u0000");
    list.innerHTML = "";
    table.columns.forEach(function (name) {
      if (name === "run_id") return;
      var label = document.createElement("label");
      var box = document.createElement("input");
      box.type = "checkbox";
      box.checked = state.hide.indexOf(name) < 0;
      box.dataset.column = name;
      box.onchange = function () {
        if (box.checked) state.hide = state.hide.filter(function (h) { return h !== name; });
        else state.hide.push(name);
        writeHash();
        renderTable();
      };
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + name));
      list.appendChild(label);
    });
  }

  function cell(text) {
    var d = document.createElement("div");
    d.textContent = text === null || text === undefined ? "" : String(text);
    d.title = d.textContent;
    return d;
  }

  function renderRows() {
    // Only the rows in sight are in the page: ten thousand runs stay as quick as ten.
    var body = $("table-body");
    var first = Math.max(0, Math.floor(body.scrollTop / ROW) - 5);
    var last = Math.min(view.length, first + Math.ceil(body.clientHeight / ROW) + 10);
    var rows = $("table-rows");
    rows.style.top = first * ROW + "px";
    rows.innerHTML = "";
    var status = table.columns.indexOf("status");
    for (var i = first; i < last; i++) {
      var row = view[i], key = keyOf(row);
      var line = document.createElement("div");
      line.className = "row" + (state.sel.indexOf(key) >= 0 ? " selected" : "");
      line.dataset.key = key;
      var box = document.createElement("input");
      box.type = "checkbox";
      box.checked = state.sel.indexOf(key) >= 0;
      box.onchange = toggle.bind(null, key);
      var holder = document.createElement("div");
      holder.appendChild(box);
      line.appendChild(holder);
      row.forEach(function (value, c) {
        if (state.hide.indexOf(table.columns[c]) >= 0) return;
        var d = cell(value);
        if (c === 1) {
          d.className = "run-link";
          d.onclick = showRun.bind(null, row[0], row[1]);
        }
        if (c === status) d.className = "status-" + value;
        line.appendChild(d);
      });
      rows.appendChild(line);
    }
  }

  function toggle(key) {
    var at = state.sel.indexOf(key);
    if (at >= 0) state.sel.splice(at, 1); else state.sel.push(key);
    writeHash();
    renderRows();
    drawCharts();
  }

  // -- charts --------------------------------------------------------------------------------------------

  function selectedRows() {
    return state.sel.map(function (key) {
      return table.rows.filter(function (r) { return keyOf(r) === key; })[0];
    }).filter(Boolean);
  }

  function metricsOf(rows) {
    var names = [];
    table.metrics.forEach(function (m) {
      var c = table.columns.indexOf(m);
      if (rows.some(function (r) { return typeof r[c] === "number"; })) names.push(m);
    });
    return names;
  }

  function seriesOf(row, metric, width) {
    if (embedded) {
      var runs = embedded.histories[keyOf(row)] || {};
      return Promise.resolve(runs[metric] || []);
    }
    var url = "api/history?project=" + encodeURIComponent(row[0]) + "&run=" + encodeURIComponent(row[1]) +
      "&metric=" + encodeURIComponent(metric) + "&x=" + encodeURIComponent(state.x) + "&width=" + width;
    var range = zoom[metric];
    if (range) url += "&start=" + range[0] + "&end=" + range[1];  // the zoomed range, at full resolution
    return fetchJSON(url).then(function (body) { return body.series; });
  }

  function label(v) {
    if (v === null || v === undefined) return "";
    var a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(0) : String(+v.toPrecision(4));
  }

  function smooth(y, weight) {
    // An exponential moving average corrected for its start (as TensorBoard's "debiased" smoothing).
    var out = new Array(y.length), last = 0, n = 0;
    for (var i = 0; i < y.length; i++) {
      if (y[i] === null || y[i] === undefined) { out[i] = null; continue; }
      last = weight * last + (1 - weight) * y[i];
      n += 1;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }

  function drawCharts() {
    var rows = selectedRows();
    var metrics = metricsOf(rows);
    var holder = $("charts");
    Object.keys(charts).forEach(function (m) {
      if (metrics.indexOf(m) < 0) { charts[m].destroy(); delete charts[m]; delete drawn[m]; }
    });
    Array.prototype.slice.call(holder.children).forEach(function (panel) {
      if (metrics.indexOf(panel.dataset.metric) < 0) holder.removeChild(panel);
    });
    var width = Math.max(300, Math.floor((holder.clientWidth || 900) / Math.max(1, Math.floor((holder.clientWidth || 900) / 470))) - 12);
    return Promise.all(metrics.map(function (metric) { return drawMetric(metric, rows, width); }));
  }

  function drawMetric(metric, rows, width) {
    return Promise.all(rows.map(function (row) { return seriesOf(row, metric, width); })).then(function (all) {
      var lines = [];
      var column = state.group ? table.columns.indexOf(state.group) : -1;
      if (column >= 0) {
        // One line per value of the config key: the mean of its runs, and a band from their min to max.
        var groups = {};
        all.forEach(function (series, r) {
          var value = String(rows[r][column]);
          (groups[value] = groups[value] || []).push.apply(groups[value], series);
        });
        Object.keys(groups).sort().forEach(function (value, g) {
          var members = groups[value];
          var joined = uPlot.join(members.map(function (s) { return [s.x, s.y]; }));
          var mean = [], low = [], high = [];
          for (var i = 0; i < joined[0].length; i++) {
            var ys = [];
            for (var m = 1; m < joined.length; m++) if (joined[m][i] !== null && joined[m][i] !== undefined) ys.push(joined[m][i]);
            mean.push(ys.length ? ys.reduce(function (a, b) { return a + b; }, 0) / ys.length : null);
            low.push(ys.length ? Math.min.apply(null, ys) : null);
            high.push(ys.length ? Math.max.apply(null, ys) : null);
          }
          lines.push({ label: state.group + "=" + value + " (" + members.length + ")", x: joined[0], y: mean,
                       low: low, high: high, color: PALETTE[g % PALETTE.length] });
        });
      } else {
        all.forEach(function (series, r) {
          series.forEach(function (s) {
            var label = rows[r][1] + (series.length > 1 ? " " + s.writer : "");
            lines.push({ label: label, x: s.x, y: s.y, color: PALETTE[r % PALETTE.length] });
          });
        });
      }
      plot(metric, lines, width);
    });
  }

  function redraw() {
    // The series change in number and kind: the charts are made again.
    Object.keys(charts).forEach(function (m) { charts[m].destroy(); delete charts[m]; });
    $("charts").innerHTML = "";
    return drawCharts();
  }

  function zoomTo(metric, u, range) {
    // A drag on the chart zooms x: that range is fetched again at full resolution; a double click undoes it.
    zoom[metric] = range;
    return drawMetric(metric, selectedRows(), u.width);
  }

  function selected(metric, u) {
    if (!u.select.width) return;
    var range = [u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x")];
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    if (embedded) { u.setScale("x", { min: range[0], max: range[1] }); return; }
    zoomTo(metric, u, range);
  }

  function plot(metric, lines, width) {
    lines = lines.filter(function (l) { return l.x.length > 0; });
    if (!lines.length) return;  // logged without a step (add_metrics): in the table, not on a step axis
    var tables = lines.map(function (l) {
      var y = state.log ? l.y.map(function (v) { return v !== null && v > 0 ? v : null; }) : l.y;
      return [l.x, y];
    });
    var joined = tables.length ? uPlot.join(tables) : [[]];
    var data = [joined[0]];
    var series = [{ label: state.x }];
    var record = [];
    var bands = [];
    lines.forEach(function (l, i) {
      var y = joined[i + 1];
      if (l.low) {
        // The group's min-max band: two invisible series, filled between.
        var at = {};
        l.x.forEach(function (x, k) { at[x] = k; });
        var pick = function (values) { return joined[0].map(function (x) { return at[x] === undefined ? null : values[at[x]]; }); };
        data.push(pick(l.high));
        series.push({ label: l.label + " max", stroke: l.color + "00", width: 0, spanGaps: true, show: true });
        data.push(pick(l.low));
        series.push({ label: l.label + " min", stroke: l.color + "00", width: 0, spanGaps: true, show: true });
        bands.push({ series: [data.length - 2, data.length - 1], fill: l.color + "22" });
      }
      if (state.smooth > 0) {
        data.push(y);
        series.push({ label: l.label + " (raw)", stroke: l.color + "40", width: 1, spanGaps: true });
        var s = smooth(y, state.smooth);
        data.push(s);
        series.push({ label: l.label, stroke: l.color, width: 1.5, spanGaps: true });
        record.push({ label: l.label, raw: y, smoothed: s });
      } else {
        data.push(y);
        series.push({ label: l.label, stroke: l.color, width: 1.5, spanGaps: true });
        record.push({ label: l.label, raw: y, smoothed: null });
      }
    });
    drawn[metric] = record;
    var panel = document.querySelector('.panel[data-metric="' + CSS.escape(metric) + '"]');
    if (!panel) {
      panel = document.createElement("div");
      panel.className = "panel";
      panel.dataset.metric = metric;
      var title = document.createElement("h2");
      title.textContent = metric;
      panel.appendChild(title);
      $("charts").appendChild(panel);
    }
    var old = charts[metric];
    if (old && old.series.length === series.length && old.scales.y.distr === (state.log ? 3 : 1) &&
        old._mlX === state.x) {
      old.setData(data);
      return;
    }
    if (old) old.destroy();
    var chart = new uPlot({
      width: width,
      height: 240,
      scales: { x: { time: state.x === "time" }, y: { distr: state.log ? 3 : 1 } },
      series: series,
      bands: bands,
      axes: [{}, { values: function (u, ticks) { return ticks.map(label); } }],
      legend: { live: false },
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: { setSelect: [function (u) { selected(metric, u); }] }
    }, data, panel);
    chart._mlX = state.x;
    chart.over.addEventListener("dblclick", function () {
      if (embedded) { chart.setData(chart.data); return; }
      if (zoom[metric]) zoomTo(metric, chart, null);
    });
    charts[metric] = chart;
  }

  // -- one run -------------------------------------------------------------------------------------------

  function showRun(project, run) {
    var page = $("run-page");
    var render = function (info) {
      page.hidden = false;
      page.innerHTML = "";
      var h = document.createElement("h2");
      h.textContent = project + " / " + run + (info.wandb_url ? "" : "");
      page.appendChild(h);
      if (/^https?:\/\//i.test(info.wandb_url || "")) {  // a link, never a script
        var a = document.createElement("a");
        a.href = info.wandb_url;
        a.textContent = info.wandb_url;
        a.rel = "noopener noreferrer";
        page.appendChild(a);
      }
      ["config", "metrics", "meta"].forEach(function (part) {
        var t = document.createElement("h3");
        t.textContent = part;
        var pre = document.createElement("pre");
        pre.textContent = JSON.stringify(info[part], null, 2);
        page.appendChild(t);
        page.appendChild(pre);
      });
      if (info.history) {
        var th = document.createElement("h3");
        th.textContent = "history (last " + info.history.length + " of " + info.records + " records)";
        var hp = document.createElement("pre");
        hp.textContent = info.history.map(function (r) { return JSON.stringify(r); }).join("\n");
        page.appendChild(th);
        page.appendChild(hp);
      }
    };
    if (embedded) {
      render((embedded.runs || {})[project + "/" + run] || {});
      return;
    }
    fetchJSON("api/run?project=" + encodeURIComponent(project) + "&run=" + encodeURIComponent(run)).then(render, function (e) {
      page.hidden = false;
      page.textContent = e.message;
    });
  }

  // -- live ----------------------------------------------------------------------------------------------

  function tick() {
    if (embedded || document.hidden || busy) return;  // a hidden tab asks nothing
    busy = true;
    loadRuns().then(function () {
      var status = table.columns.indexOf("status");
      var running = selectedRows().some(function (r) { return r[status] === "running"; });
      return running ? drawCharts() : null;
    }).then(function () { busy = false; }, function () { busy = false; });
  }

  // -- wiring --------------------------------------------------------------------------------------------

  function start() {
    $("query").value = state.q;
    $("x-axis").value = state.x;
    $("y-scale").value = state.log ? "log" : "linear";
    $("smoothing").value = String(state.smooth);
    $("smoothing-value").textContent = String(state.smooth);
    var timer = null;
    $("query").oninput = function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.q = $("query").value.trim(); writeHash(); loadRuns().then(drawCharts); }, 250);
    };
    if (embedded) {
      $("query").disabled = true;
      $("query").value = embedded.query ? "filtered when the report was made: " + embedded.query : "every run";
      $("x-axis").disabled = true;
    }
    $("x-axis").onchange = function () { state.x = this.value; zoom = {}; writeHash(); drawCharts(); };
    $("group-by").onchange = function () { state.group = this.value; writeHash(); redraw(); };
    $("y-scale").onchange = function () { state.log = this.value === "log"; writeHash(); drawCharts(); };
    $("smoothing").oninput = function () {
      state.smooth = parseFloat(this.value) || 0;
      $("smoothing-value").textContent = String(state.smooth);
      writeHash();
      drawCharts();
    };
    $("table-body").onscroll = renderRows;
    window.mlReady = loadRuns().then(drawCharts);
    setInterval(tick, 1000);
  }

  start();
})();
