// Render a pyprof flamegraph (SVG) and an annotate page (HTML) in headless Chromium and
// print, as JSON, what a viewer sees once the page's own script has run:
//   {"svg":  [{label, text, rectWidth, textWidth, charWidth}, ...],   one per frame
//    "html": [{text, left, right, viewport, scrollWidth, clientWidth}, ...]}  one per <h2>
// Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: fd 3
// to the browser, fd 4 from it, NUL-separated JSON), so nothing listens on a port.
//
// usage: node check_rendered.mjs CHROMIUM USER_DATA_DIR PAGE.svg PAGE.html [SCREENSHOT_PREFIX]
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [chrome, profileDir, svgPath, htmlPath, shots] = process.argv.slice(2);
if (!htmlPath) {
  console.error("usage: check_rendered.mjs CHROMIUM USER_DATA_DIR PAGE.svg PAGE.html [SCREENSHOT_PREFIX]");
  process.exit(2);
}

const browser = spawn(
  chrome,
  [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    `--user-data-dir=${profileDir}`,
    "--remote-debugging-pipe",
    "--window-size=1280,1000",
    "about:blank",
  ],
  { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] },
);
let stderr = "";
browser.stderr.on("data", (d) => (stderr += d));
const timer = setTimeout(() => {
  console.error("timed out; chromium said:\n" + stderr);
  browser.kill("SIGKILL");
  process.exit(1);
}, 90000);

const toBrowser = browser.stdio[3];
const fromBrowser = browser.stdio[4];
let buf = Buffer.alloc(0);
let nextId = 1;
const pending = new Map();
const waiters = [];
fromBrowser.on("data", (d) => {
  buf = Buffer.concat([buf, d]);
  let i;
  while ((i = buf.indexOf(0)) >= 0) {
    const msg = JSON.parse(buf.subarray(0, i).toString());
    buf = buf.subarray(i + 1);
    if (msg.id && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    } else if (msg.method) {
      for (const w of waiters.splice(0)) {
        if (!w(msg)) waiters.push(w);
      }
    }
  }
});

function send(method, params = {}, sessionId) {
  const id = nextId++;
  const msg = { id, method, params };
  if (sessionId) msg.sessionId = sessionId;
  toBrowser.write(JSON.stringify(msg) + "\0");
  return new Promise((resolve, reject) =>
    pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${JSON.stringify(m.error)}`)) : resolve(m.result))),
  );
}

function event(method, sessionId) {
  return new Promise((resolve) =>
    waiters.push((m) => {
      if (m.method === method && m.sessionId === sessionId) {
        resolve(m.params);
        return true;
      }
      return false;
    }),
  );
}

async function open(path) {
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  await send("Page.enable", {}, sessionId);
  await send("Emulation.setDeviceMetricsOverride", { width: 1280, height: 1000, deviceScaleFactor: 1, mobile: false }, sessionId);
  const loaded = event("Page.loadEventFired", sessionId);
  await send("Page.navigate", { url: pathToFileURL(path).href }, sessionId);
  await loaded;
  return sessionId;
}

async function evaluate(sessionId, expression) {
  const r = await send("Runtime.evaluate", { expression, returnByValue: true }, sessionId);
  if (r.exceptionDetails) throw new Error(JSON.stringify(r.exceptionDetails));
  return r.result.value;
}

async function shot(sessionId, name) {
  if (!shots) return;
  const r = await send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true }, sessionId);
  writeFileSync(`${shots}-${name}.png`, Buffer.from(r.data, "base64"));
}

const SVG_PROBE = `(() => {
  const cw = (typeof known_font_width === "number" && known_font_width > 0) ? known_font_width : 7;
  const out = [];
  for (const g of document.getElementById("frames").querySelectorAll("g")) {
    const t = g.querySelector("text"), r = g.querySelector("rect"), title = g.querySelector("title");
    if (!t || !r || !title) continue;
    out.push({
      label: title.textContent.replace(/ \\([^(]*\\)$/, ""),
      text: t.textContent,
      rectWidth: r.getBoundingClientRect().width,
      textWidth: t.textContent ? t.getComputedTextLength() : 0,
      charWidth: cw,
    });
  }
  return out;
})()`;

const HTML_PROBE = `Array.from(document.querySelectorAll("h2")).map((h) => {
  const r = h.getBoundingClientRect();
  const name = h.querySelector(".name") || h;
  return {
    text: name.textContent,
    left: r.left,
    right: r.right,
    viewport: document.documentElement.clientWidth,
    scrollWidth: h.scrollWidth,
    clientWidth: h.clientWidth,
  };
})`;

try {
  const s = await open(svgPath);
  const svg = await evaluate(s, SVG_PROBE);
  await shot(s, "svg");
  const h = await open(htmlPath);
  const html = await evaluate(h, HTML_PROBE);
  await shot(h, "html");
  console.log(JSON.stringify({ svg, html }));
  await send("Browser.close").catch(() => {});
} catch (e) {
  console.error(String(e) + "\n" + stderr);
  browser.kill("SIGKILL");
  process.exit(1);
}
clearTimeout(timer);
setTimeout(() => {
  browser.kill("SIGKILL");
  process.exit(0);
}, 500);
