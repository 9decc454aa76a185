// The codemode console: remember the approver, check edited arguments before submit, and live updates
// over server-sent events. Plain JavaScript, no dependencies; every page also works without it.
"use strict";

document.documentElement.classList.add("js");  // the header's "Deciding as" replaces each form's name field

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const approver = document.getElementById("approver");

function syncApprover() {
  const name = approver.value.trim();
  localStorage.setItem("codemode-approver", name);
  document.querySelectorAll("input.by").forEach((input) => { input.value = name; });
}

if (approver) {
  if (!approver.value) approver.value = localStorage.getItem("codemode-approver") || "";
  approver.addEventListener("input", syncApprover);
  syncApprover();
}

async function checkArgs(form) {
  const area = form.querySelector("textarea[name=args]");
  const out = form.querySelector(".validation");
  const response = await fetch("/api/validate", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify({ execution_id: form.dataset.execution, seq: Number(form.dataset.seq), args: area.value }),
  });
  const answer = await response.json();
  out.textContent = answer.ok ? "" : answer.error;
  form.classList.toggle("invalid", !answer.ok);
  return answer;
}

function wire(root) {
  root.querySelectorAll("form.action").forEach((form) => {
    if (form.dataset.wired) return;
    form.dataset.wired = "1";
    const area = form.querySelector("textarea[name=args]");
    let timer = null;
    area.addEventListener("input", () => {
      form.dataset.dirty = "1";
      clearTimeout(timer);
      timer = setTimeout(() => checkArgs(form), 300);
    });
    form.querySelectorAll("input[name=reason]").forEach((i) => i.addEventListener("input", () => { form.dataset.dirty = "1"; }));
    form.addEventListener("submit", async (event) => {
      const button = event.submitter;
      syncApprover();
      if (!approver.value.trim()) {
        event.preventDefault();
        form.querySelector(".validation").textContent = "Enter your name (Deciding as, at the top) first.";
        approver.focus();
        return;
      }
      if (!button || button.value !== "approve" || form.dataset.checked === "1") return;
      event.preventDefault();
      const answer = await checkArgs(form);
      if (answer.ok || answer.stale) {  // a stale action goes to the server, which says who decided it
        form.dataset.checked = "1";
        form.requestSubmit(button);
      }
    });
  });
  root.querySelectorAll("form[data-confirm]").forEach((form) => {
    if (form.dataset.wired) return;
    form.dataset.wired = "1";
    form.addEventListener("submit", (event) => {
      syncApprover();
      if (!approver.value.trim()) {
        event.preventDefault();
        alert("Enter your name (Deciding as, at the top) first.");
        return;
      }
      if (!confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
}

// Merge a fresh rendering of the live region: add what is new, drop what is gone (unless the approver is
// editing it: then it is marked as decided elsewhere), replace what changed.
function merge(live, fresh) {
  const current = new Map([...live.children].filter((c) => c.dataset.key).map((c) => [c.dataset.key, c]));
  const wanted = [...fresh.children].filter((c) => c.dataset.key);
  const keys = new Set(wanted.map((c) => c.dataset.key));
  for (const [key, node] of current) {
    if (keys.has(key)) continue;
    if (node.querySelector("form[data-dirty]")) {
      node.classList.add("gone");
      node.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      if (!node.querySelector(".gone-note")) {
        const note = document.createElement("p");
        note.className = "gone-note";
        note.textContent = "Decided elsewhere, or the run moved on: this action is no longer pending.";
        node.prepend(note);
      }
    } else {
      node.remove();
    }
  }
  let previous = null;
  for (const node of wanted) {
    const key = node.dataset.key;
    let existing = current.get(key);
    if (existing && existing.isConnected && existing.dataset.rev !== node.dataset.rev && !existing.querySelector("form[data-dirty]")) {
      existing.replaceWith(node);
      existing = node;
    } else if (!existing || !existing.isConnected) {
      if (previous) previous.after(node); else live.prepend(node);
      existing = node;
    }
    previous = existing;
  }
  wire(live);
}

async function refresh(version) {
  const live = document.getElementById("live");
  if (!live || document.body.dataset.version === version) return;
  const response = await fetch(location.href, { headers: { "X-Partial": "1" } });
  if (!response.ok) return;
  const holder = document.createElement("template");  // parses rows (<tr>) as well as sections
  holder.innerHTML = await response.text();
  merge(live, holder.content);
  document.body.dataset.version = response.headers.get("X-Version");
  const pending = response.headers.get("X-Pending");
  const count = document.getElementById("pending-count");
  count.textContent = pending;
  count.classList.toggle("zero", pending === "0");
}

wire(document);
if (window.EventSource && document.getElementById("live")) {
  const status = document.getElementById("live-status");
  const source = new EventSource("/events");
  source.addEventListener("open", () => { status.classList.add("on"); });
  source.addEventListener("error", () => { status.classList.remove("on"); });
  source.addEventListener("change", (event) => { refresh(JSON.parse(event.data).version); });
}
