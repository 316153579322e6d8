// progcodec web viewer: one PNG per refinement arrives as a server-sent event and replaces the
// image in place; the status line tracks layer k/N, bytes, bpp and elapsed time. Page state is
// mirrored in <body data-state data-layer data-shown data-total> (tests read it).
"use strict";
(function () {
  const script = document.currentScript;
  const img = document.getElementById("image");
  const status = document.getElementById("status");
  const body = document.body;
  const t0 = performance.now();
  let last = null;   // last refinement received: {layer, total, bytes, bpp, ...}
  let total = Number(body.dataset.total) || 0;
  let finished = false;
  let pending = null;   // newest PNG waiting for the previous one to be decoded (latest wins)
  let busy = false;

  const kB = (n) => (n < 1000 ? n + " B" : (n / 1000).toFixed(1) + " kB");
  const secs = () => ((performance.now() - t0) / 1000).toFixed(2) + " s";
  const where = () => (last ? "after layer " + last.layer + "/" + last.total : "before the first layer");

  function setStatus(text, state) {
    status.textContent = text;
    if (state) body.dataset.state = state;
  }

  function show(step) {
    if (busy) { pending = step; return; }
    busy = true;
    img.src = step.png;
    img.decode().catch(() => {}).then(() => {
      body.dataset.shown = step.layer;
      busy = false;
      if (pending) { const next = pending; pending = null; show(next); }
    });
  }

  function end(text, state) {
    finished = true;
    source.close();
    setStatus(text, state);
  }

  const source = new EventSource(script.dataset.events);
  source.addEventListener("step", (e) => {
    last = JSON.parse(e.data);
    total = last.total;
    body.dataset.layer = last.layer;
    body.dataset.total = last.total;
    show(last);
    setStatus("layer " + last.layer + "/" + last.total + " · " + kB(last.bytes) + " · " +
              last.bpp.toFixed(3) + " bpp · " + secs(), last.layer === last.total ? "done" : "loading");
  });
  source.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    const head = last ? "layer " + last.layer + "/" + last.total : "waiting for the first layer";
    setStatus(head + " · receiving " + kB(p.received) + " · " + secs(), "loading");
  });
  source.addEventListener("done", (e) => {
    const d = JSON.parse(e.data);
    end("layer " + d.layer + "/" + d.total + " · " + kB(d.bytes) + " · " + d.bpp.toFixed(3) +
        " bpp · " + secs() + " · done", "done");
  });
  source.addEventListener("fail", (e) => {
    const d = JSON.parse(e.data);
    if (d.kind === "lost") end("connection lost " + where() + ": " + d.reason, "lost");
    else end("error " + where() + ": " + d.reason, "error");
  });
  source.onerror = () => {
    if (finished) return;
    end("connection lost " + where() + ": the server closed the connection", "lost");
  };
})();
