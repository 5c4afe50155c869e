/// The one-page viewer served at `/`: subscribes to `/events` with the
/// browser's EventSource and shows each alert as it arrives, newest first,
/// coloured by severity. No build step, no external files.
enum Viewer {
    static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <title>secureops alerts</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <style>
      body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
      header { display: flex; gap: 1.5rem; align-items: center; padding: .8rem 1.2rem; background: #1d2330; color: #fff; }
      header h1 { font-size: 1.1rem; margin: 0; }
      #state { padding: .15rem .6rem; border-radius: 1rem; background: #666; }
      #state.live { background: #1f8a4c; }
      #state.down { background: #b3261e; }
      .counts span { margin-right: .8rem; }
      table { border-collapse: collapse; width: 100%; }
      th, td { text-align: left; padding: .35rem .8rem; border-bottom: 1px solid #e2e5ea; vertical-align: top; }
      th { background: #eceef2; position: sticky; top: 0; }
      td.details { font-family: ui-monospace, monospace; font-size: 12px; color: #555; }
      .severity { display: inline-block; min-width: 4.5rem; text-align: center; border-radius: .3rem; padding: 0 .4rem; font-weight: 600; color: #fff; }
      .sev-info { background: #6b7280; } .sev-low { background: #2563eb; } .sev-medium { background: #d97706; }
      .sev-high { background: #dc2626; } .sev-critical { background: #7f1d1d; }
      tr.notice td { background: #fff7d6; font-style: italic; }
      tr.fresh td { animation: flash 1.5s ease-out; }
      @keyframes flash { from { background: #fff3a0; } to { background: transparent; } }
    </style>
    </head>
    <body>
    <header>
      <h1>secureops alerts</h1>
      <span id="state">connecting…</span>
      <span class="counts" id="counts"></span>
    </header>
    <table>
      <thead><tr><th>#</th><th>time</th><th>severity</th><th>source</th><th>message</th><th>details</th></tr></thead>
      <tbody id="alerts"></tbody>
    </table>
    <script>
    "use strict";
    const rows = document.getElementById("alerts");
    const state = document.getElementById("state");
    const counts = { info: 0, low: 0, medium: 0, high: 0, critical: 0 };
    const MAX_ROWS = 1000;

    function cell(text, className) {
      const td = document.createElement("td");
      td.textContent = text;
      if (className) td.className = className;
      return td;
    }

    function insert(tr) {
      rows.insertBefore(tr, rows.firstChild);
      while (rows.childElementCount > MAX_ROWS) rows.removeChild(rows.lastChild);
    }

    function showCounts() {
      document.getElementById("counts").innerHTML = Object.entries(counts)
        .map(([name, n]) => `<span class="severity sev-${name}">${name} ${n}</span>`).join("");
    }

    function notice(text) {
      const tr = document.createElement("tr");
      tr.className = "notice";
      const td = cell(text);
      td.colSpan = 6;
      tr.appendChild(td);
      insert(tr);
    }

    const source = new EventSource("events");
    source.onopen = () => { state.textContent = "live"; state.className = "live"; };
    source.onerror = () => { state.textContent = "reconnecting…"; state.className = "down"; };
    source.addEventListener("alert", (event) => {
      const alert = JSON.parse(event.data);
      const tr = document.createElement("tr");
      tr.className = "fresh alert sev-row-" + alert.severity;
      tr.dataset.sequence = alert.sequence;
      tr.appendChild(cell(alert.sequence));
      tr.appendChild(cell(new Date(alert.timestamp).toLocaleTimeString()));
      const severity = document.createElement("td");
      const badge = document.createElement("span");
      badge.className = "severity sev-" + alert.severity;
      badge.textContent = alert.severity;
      severity.appendChild(badge);
      tr.appendChild(severity);
      tr.appendChild(cell(alert.source));
      tr.appendChild(cell(alert.message, "message"));
      tr.appendChild(cell(alert.details === null ? "" : JSON.stringify(alert.details), "details"));
      insert(tr);
      counts[alert.severity] = (counts[alert.severity] || 0) + 1;
      showCounts();
    });
    source.addEventListener("lagged", (event) => {
      const lag = JSON.parse(event.data);
      notice(`fell behind: ${lag.skipped} alerts skipped, continuing at #${lag.resumeAt}`);
    });
    source.addEventListener("reconnected", () => notice("reconnected to secureopsd"));
    source.addEventListener("restarted", () => notice("secureopsd restarted: its alerts are numbered from 1 again"));
    showCounts();
    </script>
    </body>
    </html>
    """#
}
