// The try-it page: drop, paste or pick images; each is sent on its own (a broken file does
// not hide the others' results) to /classify, or to /features?normalize=true in compare mode.
// No framework, no build step, nothing from another origin (the server's CSP forbids it).
"use strict";

const state = { key: null, models: [], defaultModel: null, waiting: [], curl: "" };
const $ = (id) => document.getElementById(id);

function authHeaders() {
  return state.key ? { Authorization: `Bearer ${state.key}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders() });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (response.status === 401) askForKey();
  return { response, body };
}

function errorText(body, response) {
  const error = body && body.error;
  if (error && typeof error === "object") return `${error.code}: ${error.message}`;
  return `HTTP ${response.status}`;
}

function askForKey() {
  const form = $("key-form");
  if (!form.hidden) return;
  form.hidden = false;
  $("status").textContent = "This server needs an API key: enter it above (it stays in this page).";
  $("api-key").focus();
}

async function loadModels() {
  const { response, body } = await api("/v1/models");
  const fields = $("card-fields");
  if (!response.ok) {
    fields.replaceChildren(term("Unavailable", errorText(body, response)));
    return false;
  }
  state.models = body.models.filter((m) => m.state === "ready" && m.card);
  state.defaultModel = body.default_model;
  const names = [...new Set(state.models.map((m) => m.name))];
  const select = $("model");
  select.replaceChildren(...names.map((name) => new Option(name, name)));
  select.value = state.defaultModel || names[0] || "";
  $("model-field").hidden = names.length < 2;
  showCard();
  return true;
}

function selectedModel() {
  return $("model").value || null;
}

function term(name, value) {
  const fragment = document.createDocumentFragment();
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = name;
  dd.textContent = value;
  fragment.append(dt, dd);
  return fragment;
}

function showCard() {
  const name = selectedModel();
  const entry = state.models.find((m) => m.name === name);
  const fields = $("card-fields");
  if (!entry) {
    fields.replaceChildren(term("Model", "none ready"));
    return;
  }
  const card = entry.card;
  const rows = [
    ["Model", `${card.name} version ${card.version}`],
    ["Architecture", card.arch],
    ["Weights", card.weights],
    ["Input", `${card.input_size[0]}×${card.input_size[1]}, ${card.resize.mode}`],
    ["Precision", card.precision],
    ["Classes", String(card.num_classes)],
    ["Features", `${card.num_features}-d`],
    ["Provider", entry.runtime ? entry.runtime.provider : "?"],
  ];
  for (const [key, value] of Object.entries(card.metrics || {})) {
    if (typeof value === "number") rows.push([key, value.toFixed(4)]);
  }
  fields.replaceChildren(...rows.map(([k, v]) => term(k, v)));
  $("top-k").max = String(card.num_classes);
}

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function resultCard(file) {
  const article = document.createElement("article");
  article.className = "result";
  article.dataset.state = "pending";
  article.dataset.filename = file.name;
  const image = document.createElement("img");
  image.alt = `thumbnail of ${file.name}`;
  // Browsers show no TIFF (or a corrupt file): an empty box rather than a broken icon.
  image.addEventListener("error", () => { image.alt = ""; image.removeAttribute("src"); });
  image.src = URL.createObjectURL(file);
  const body = document.createElement("div");
  const title = document.createElement("h3");
  title.textContent = file.name;
  const meta = document.createElement("p");
  meta.className = "meta";
  meta.textContent = "sending…";
  body.append(title, meta);
  article.append(image, body);
  $("results").append(article);
  return article;
}

function remember(path, file) {
  const key = state.key ? ` -H "Authorization: Bearer $XCEPTION_API_KEY"` : "";
  state.curl = `curl -s -F 'file=@${file.name}' '${location.origin}${path}'${key}`;
  $("curl").textContent = state.curl;
  $("copy-curl").disabled = false;
}

async function send(path, file, article) {
  const form = new FormData();
  form.append("file", file, file.name);
  const started = performance.now();
  const { response, body } = await api(path, { method: "POST", body: form });
  remember(path, file);
  const meta = article.querySelector(".meta");
  const ms = Math.round(performance.now() - started);
  if (response.status === 401) {
    state.waiting.push(file);
    article.remove();
    return null;
  }
  if (!response.ok) {
    article.dataset.state = "error";
    meta.className = "meta error";
    meta.textContent = errorText(body, response);
    return null;
  }
  article.dataset.state = "done";
  meta.textContent = `${body.model.name} version ${body.model.version} · ${ms} ms`;
  return body;
}

function query(extra) {
  const params = new URLSearchParams(extra);
  const model = selectedModel();
  if (model) params.set("model", model);
  return params.toString();
}

async function classify(file) {
  const article = resultCard(file);
  const body = await send(`/classify?${query({ top_k: $("top-k").value })}`, file, article);
  if (!body) return false;
  const list = document.createElement("ol");
  list.className = "bars";
  for (const prediction of body.results[0].predictions) {
    const item = document.createElement("li");
    item.dataset.label = prediction.label;
    item.dataset.score = String(prediction.score);
    const label = document.createElement("span");
    label.textContent = prediction.label;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-label", `score of ${prediction.label}`);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "1");
    bar.setAttribute("aria-valuenow", String(prediction.score));
    const fill = document.createElement("span");
    fill.style.width = `${Math.max(0.5, prediction.score * 100)}%`;
    bar.append(fill);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `${(prediction.score * 100).toFixed(2)}%`;
    item.append(label, bar, score);
    list.append(item);
  }
  article.querySelector("div").append(list);
  return true;
}

async function embed(file) {
  const article = resultCard(file);
  const body = await send(`/features?${query({ normalize: "true" })}`, file, article);
  return body ? { name: file.name, vector: body.results[0].features } : null;
}

function showMatrix(items) {
  const table = $("matrix");
  const header = document.createElement("tr");
  header.append(document.createElement("th"));
  for (const item of items) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = item.name;
    header.append(th);
  }
  const rows = items.map((a) => {
    const row = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = a.name;
    row.append(th);
    for (const b of items) {
      const cosine = a.vector.reduce((sum, x, i) => sum + x * b.vector[i], 0);
      const cell = document.createElement("td");
      cell.dataset.value = String(cosine);
      cell.textContent = cosine.toFixed(2);
      row.append(cell);
    }
    return row;
  });
  table.replaceChildren(header, ...rows);
  $("compare").hidden = items.length < 2;
}

async function addFiles(fileList) {
  const files = [...fileList].filter((f) => f.type.startsWith("image/") || f.type === "" || /\.(tiff?|webp|avif|heic)$/i.test(f.name));
  if (!files.length) return;
  $("results").replaceChildren();
  $("compare").hidden = true;
  $("status").textContent = `sending ${files.length} image(s)…`;
  if (mode() === "compare") {
    const items = (await Promise.all(files.map(embed))).filter(Boolean);
    showMatrix(items);
    $("status").textContent = `${items.length} of ${files.length} image(s) embedded`;
  } else {
    const done = (await Promise.all(files.map(classify))).filter(Boolean).length;
    $("status").textContent = `${done} of ${files.length} image(s) classified`;
  }
  if (state.waiting.length) askForKey();
}

function wire() {
  const drop = $("drop");
  const input = $("files");
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    addFiles(event.dataTransfer.files);
  });
  document.addEventListener("paste", (event) => addFiles(event.clipboardData.files));
  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = "";
  });
  $("model").addEventListener("change", showCard);
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.key = $("api-key").value.trim();
    $("key-form").hidden = true;
    $("status").textContent = "";
    if (await loadModels()) {
      const retry = state.waiting.splice(0);
      if (retry.length) addFiles(retry);
    }
  });
  $("copy-curl").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(state.curl);
      $("status").textContent = "copied";
    } catch (_) {
      getSelection().selectAllChildren($("curl"));
      $("status").textContent = "selected: press Ctrl+C to copy";
    }
  });
}

wire();
loadModels();
