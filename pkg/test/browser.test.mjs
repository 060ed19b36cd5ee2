// The package in a real browser: Debian's Chromium, headless, driven by
// playwright-core. The package directory is served over HTTP from
// 127.0.0.1 (another origin than the relay's, as for any site embedding
// the package), and the page talks to the live relay and native agent that
// `cargo xtask test` starts (MESH_TEST_*).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, need } from "./harness.mjs";

const RELAY = need("MESH_TEST_RELAY_URL");
const ECHO = need("MESH_TEST_ECHO_AGENT");
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };

let server;
let origin;
let browser;

before(async () => {
  server = createServer(async (req, res) => {
    const file = path.normalize(path.join(ROOT, decodeURIComponent(new URL(req.url, "http://x").pathname)));
    if (!file.startsWith(ROOT) || file.includes(`${path.sep}node_modules${path.sep}`)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve()));
});

async function outText(page) {
  await page.waitForFunction(() => document.getElementById("out")?.textContent !== "working…", null, {
    timeout: 20000,
  });
  return page.textContent("#out");
}

test("the README's browser example (examples/browser.html) runs as written; the identity survives a reload", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const url = `${origin}/examples/browser.html?relay=${encodeURIComponent(RELAY)}&peer=${encodeURIComponent(ECHO)}`;
    await page.goto(url);
    const first = await outText(page);
    assert.match(first, /^[0-9a-f]{12} got: hello from the browser$/, first);
    await page.reload();
    const second = await outText(page);
    assert.equal(second.split(" ")[0], first.split(" ")[0], "the same identity after a reload (IndexedDB)");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("in a page on another origin: streams, AbortSignal, registry search (CORS), typed errors", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${origin}/examples/browser.html?relay=${encodeURIComponent(RELAY)}&peer=${encodeURIComponent(ECHO)}`);
    await outText(page);
    const result = await page.evaluate(
      async ({ relay, echo }) => {
        const mesh = await import("/entry/browser.js");
        await mesh.init();
        const client = await mesh.MeshClient.connect(relay, mesh.Identity.generate());
        try {
          const chunks = [];
          for await (const c of client.requestStream(echo, "echo.stream", "north east south west")) {
            chunks.push(new TextDecoder().decode(c));
          }
          const controller = new AbortController();
          const pending = client.request(echo, "echo", "x".repeat(10), { signal: controller.signal });
          controller.abort();
          const aborted = await pending.then(
            () => "resolved",
            (e) => e.code,
          );
          const page1 = await client.search({ capability: "echo" });
          const denied = await client.request(echo, "not.served", "").then(
            () => "resolved",
            (e) => `${e.name}:${e.code}`,
          );
          return { chunks, aborted, found: page1.items.map((i) => i.agentId), denied };
        } finally {
          await client.close();
        }
      },
      { relay: RELAY, echo: ECHO },
    );
    assert.deepEqual(result.chunks, ["north", "east", "south", "west"]);
    assert.equal(result.aborted, "cancelled");
    assert.ok(result.found.includes(ECHO), JSON.stringify(result.found));
    assert.equal(result.denied, "MeshError:denied");
  } finally {
    await context.close();
  }
});
