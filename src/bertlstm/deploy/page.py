"""The page ``bertlstm serve`` answers ``GET /`` with: a text box to try the model. One HTML file with its style and
script inline (no build step, nothing fetched from elsewhere); it calls the server's own ``/metadata`` and
``/predict``. A classifier's answer shows as its label and a bar per class probability; a tagger's as the text
with its entities marked; a classifier's page also shows why, each word shaded green (for the label) or red
(against it) by its score (``"explain": true``). Where the server needs an API key, the page asks for it and
keeps it in the page only.
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bertlstm</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
textarea { width: 100%; min-height: 7rem; font: inherit; padding: 0.5rem; box-sizing: border-box; }
button { font: inherit; padding: 0.4rem 1.2rem; margin-top: 0.5rem; }
#key-row { display: none; margin: 0.5rem 0; }
#label { font-size: 1.4rem; font-weight: 600; margin: 1rem 0 0.5rem; }
.bar-row { display: grid; grid-template-columns: 10rem 1fr 4rem; gap: 0.5rem; align-items: center; margin: 0.2rem 0; }
.bar { background: #e4e8f0; height: 1rem; border-radius: 3px; overflow: hidden; }
.bar > div { background: #3a6fd8; height: 100%; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
mark { padding: 0 0.15rem; border-radius: 3px; background: #ffe08a; }
mark small { font-size: 0.7rem; font-weight: 600; margin-left: 0.2rem; color: #7a5a00; }
#why { margin-top: 1rem; line-height: 2; }
#why span.word { padding: 0.1rem 0.15rem; border-radius: 3px; }
#explain-row { display: none; margin-left: 1rem; }
#error { color: #b00020; }
#about { color: #666; font-size: 0.9rem; }
</style>
</head>
<body>
<h1>bertlstm</h1>
<p id="about">Loading the model's description ...</p>
<form id="form">
  <div id="key-row"><label>API key <input id="key" type="password" autocomplete="off"></label></div>
  <textarea id="text" placeholder="Type a text to try the model"></textarea>
  <button id="submit" type="submit">Predict</button>
  <label id="explain-row"><input id="explain" type="checkbox" checked> show why (words for or against)</label>
</form>
<p id="error" role="alert"></p>
<div id="label" aria-live="polite"></div>
<div id="result"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);

function headers() {
  const h = {"Content-Type": "application/json"};
  if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
  return h;
}

async function call(path, body) {
  const response = await fetch(path, body === undefined ? {headers: headers()} :
    {method: "POST", headers: headers(), body: JSON.stringify(body)});
  if (response.status === 401) {
    $("key-row").style.display = "block";
    throw new Error("this server needs an API key: enter it above");
  }
  let data;
  try {
    data = await response.json();
  } catch {
    throw new Error(`the server answered ${response.status} ${response.statusText}`);
  }
  if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail));
  return data;
}

let task = null;

async function describe() {
  try {
    const meta = await call("metadata");
    task = meta.task;
    if (task === "classification" || task === "student") $("explain-row").style.display = "inline";
    const labels = Array.isArray(meta.labels) ? meta.labels : (meta.labels.names || Object.keys(meta.labels));
    const made = meta.teacher ? `distilled from ${meta.teacher}, no encoder`
      : `${meta.encoder} encoder, ${meta.mode} recipe`;
    $("about").textContent = `A ${meta.task} model: ${made}, ` +
      `${labels.length} ${meta.task === "tagging" ? "tags" : "labels"}, ${meta.backend} back end.`;
  } catch (err) {
    $("about").textContent = err.message;
  }
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function showClasses(answer) {
  const chosen = answer.label !== undefined ? answer.label : answer.labels.join(", ") || "(no label)";
  $("label").textContent = chosen;
  const rows = Object.entries(answer.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of rows) {
    const row = element("div", undefined, "bar-row");
    const bar = element("div", undefined, "bar");
    const fill = element("div");
    fill.style.width = (100 * p).toFixed(1) + "%";
    bar.appendChild(fill);
    row.append(element("span", name), bar, element("span", p.toFixed(3), "num"));
    $("result").appendChild(row);
  }
}

function showWhy(text, answer) {
  // Each word of the explanation, found in order in the text: green for the label, red against it.
  const words = answer.explanation;
  if (!Array.isArray(words) || !words.length) return;
  const top = Math.max(...words.map((w) => Math.abs(w.score))) || 1;
  const shown = element("p");
  shown.id = "why";
  shown.appendChild(element("small", `why "${answer.explained}": `));
  let at = 0;
  for (const w of words) {
    const start = text.indexOf(w.word, at);
    if (start < 0) continue;
    shown.appendChild(document.createTextNode(text.slice(at, start)));
    const span = element("span", w.word, "word");
    const alpha = (0.15 + 0.6 * Math.abs(w.score) / top).toFixed(2);
    span.style.background = w.score >= 0 ? `rgba(40, 160, 70, ${alpha})` : `rgba(210, 50, 50, ${alpha})`;
    span.title = w.score.toFixed(4);
    span.dataset.score = w.score;
    shown.appendChild(span);
    at = start + w.word.length;
  }
  shown.appendChild(document.createTextNode(text.slice(at)));
  $("result").appendChild(shown);
}

function showEntities(text, answer) {
  const entities = answer.entities;
  $("label").textContent = entities.length ? entities.map((e) => `${e.text} (${e.type})`).join(", ") :
    "no entities";
  const shown = element("p");
  let at = 0;
  for (const e of entities) {
    shown.appendChild(document.createTextNode(text.slice(at, e.start)));
    const mark = element("mark", text.slice(e.start, e.end));
    mark.appendChild(element("small", e.type));
    shown.appendChild(mark);
    at = e.end;
  }
  shown.appendChild(document.createTextNode(text.slice(at)));
  $("result").appendChild(shown);
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value;
  $("error").textContent = "";
  $("label").textContent = "";
  $("result").replaceChildren();
  if (!text.trim()) { $("error").textContent = "type a text first"; return; }
  $("submit").disabled = true;
  try {
    const explain = task === "classification" && $("explain").checked;
    const answer = (await call("predict", {texts: [text], explain: explain})).predictions[0];
    if (answer.entities !== undefined) showEntities(text, answer); else showClasses(answer);
    if (explain) showWhy(text, answer);
  } catch (err) {
    $("error").textContent = err.message;
  } finally {
    $("submit").disabled = false;
  }
});
$("key").addEventListener("change", describe);
describe();
</script>
</body>
</html>
"""
