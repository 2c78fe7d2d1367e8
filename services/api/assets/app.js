// SKYNET dashboard: live updates over Server-Sent Events, and "select all".
// Every element with data-live opens a stream; each message carries parts
// rendered (and escaped) by the server: {id, html, inner?, created_at?}.
// A part replaces the element with its id (or removes it: `remove`); on the
// first jobs page a row not shown yet and newer than the newest is added on top.
"use strict";

function fragment(html) {
  const t = document.createElement("template");
  t.innerHTML = html.trim();
  return t.content.firstElementChild;
}

function openDetails(root) {
  return Array.from(root.querySelectorAll("details")).map((d) => d.open);
}

function apply(container, part) {
  const old = document.getElementById(part.id);
  if (part.remove) {
    // The row no longer matches this page's filters.
    if (old) old.remove();
    return;
  }
  if (part.inner && old) {
    // Keep expanded timeline entries expanded across a refresh.
    const open = openDetails(old);
    const next = document.createElement("div");
    next.innerHTML = part.html;
    old.replaceChildren(...next.childNodes);
    old.querySelectorAll("details").forEach((d, i) => { if (open[i]) d.open = true; });
    return;
  }
  const fresh = fragment(part.html);
  if (!fresh) return;
  if (old) {
    old.replaceWith(fresh);
    return;
  }
  if (container.dataset.prepend !== "true") return;
  const first = container.querySelector("tr[data-created]");
  const newest = first ? Date.parse(first.dataset.created) : 0;
  if (!part.created_at || Date.parse(part.created_at) >= newest) {
    container.prepend(fresh);
    const empty = document.querySelector(".no-jobs");
    if (empty) empty.remove();
  }
}

function follow(el) {
  const source = new EventSource(el.dataset.live);
  source.onmessage = (e) => {
    let msg;
    try { msg = JSON.parse(e.data); } catch { return; }
    (msg.parts || []).forEach((p) => apply(el, p));
    document.body.dataset.liveUpdates = String(Number(document.body.dataset.liveUpdates || 0) + 1);
  };
  // EventSource reconnects by itself; nothing to do on error.
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(follow);
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      document.querySelectorAll('input[name="job"][form="bulk"]').forEach((c) => { c.checked = all.checked; });
    });
  }
});
