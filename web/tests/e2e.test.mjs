// The PWA end to end, in Debian's Chromium (headless, playwright-core),
// against a relay and a demo agent this file starts itself (so that it may
// stop the relay, and read its database). `cargo xtask test` runs it after
// `cargo xtask web`, with:
//   MESH_RELAY_BIN, MESHCTL_BIN  the debug binaries
//   MESH_WEB_DIST                the built PWA (web/dist)
//   MESH_SHOTS_DIR               where the screenshots go
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, need } from "../../pkg/test/harness.mjs";

const RELAY_BIN = need("MESH_RELAY_BIN");
const MESHCTL = need("MESHCTL_BIN");
const DIST = need("MESH_WEB_DIST");
const SHOTS = need("MESH_SHOTS_DIR");
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const tag = Date.now().toString(36);

const dir = mkdtempSync(path.join(tmpdir(), "mesh-web-e2e-"));
const db = path.join(dir, "relay.db");
let relay;
let agent;
let url;
let browser;
let echoId;
const metrics = {};

function waitForLine(child, marker, what) {
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`${what} not ready in 30 s:\n${seen}`)), 30000);
    const onData = (chunk) => {
      seen += chunk;
      const line = seen.split("\n").find((l) => l.includes(marker));
      if (line) {
        clearTimeout(timer);
        resolve(line);
      }
    };
    child.stdout?.setEncoding("utf8").on("data", onData);
    child.stderr?.setEncoding("utf8").on("data", onData);
    child.on("exit", (code) => reject(new Error(`${what} exited (${code}):\n${seen}`)));
  });
}

/** Starts the relay; on the same port as before when `port` is given. */
async function startRelay(port = 0) {
  relay = spawn(RELAY_BIN, ["--listen", `127.0.0.1:${port}`, "--db", db, "--web-root", DIST], {
    env: { ...process.env, RUST_LOG: "warn" },
  });
  const line = await waitForLine(relay, "mesh-relay is running", "mesh-relay");
  return line.match(/http:\/\/[0-9.:]+\//)[0];
}

async function stopRelay() {
  const exited = new Promise((resolve) => relay.once("exit", resolve));
  relay.kill("SIGTERM");
  await exited;
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  url = await startRelay();
  const ws = `ws://${new URL(url).host}/v1/ws`;
  const identity = path.join(dir, "echo.identity");
  echoId = execFileSync(MESHCTL, ["--identity", identity, "keygen"], { encoding: "utf8" }).split("\n")[0].trim();
  agent = spawn(MESHCTL, ["--relay", ws, "--identity", identity, "serve", "--echo", "--allow", "*", "--publish-card", "--name", `Echo bot ${tag}`]);
  await waitForLine(agent, "serving ", "the echo agent");
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  agent?.kill("SIGTERM");
  relay?.kill("SIGTERM");
  writeFileSync(path.join(SHOTS, "metrics.json"), JSON.stringify(metrics, null, 2));
  console.log(`screenshots and metrics in ${SHOTS}`);
});

const by = (id) => `[data-testid="${id}"]`;

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

async function online(page) {
  await page.waitForSelector(`${by("conn-state")}:text-is("online")`, { timeout: 20000 });
}

/** A fresh profile (its own IndexedDB and service worker) that onboards as `name`. */
async function onboard(name, topics = "", viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const started = Date.now();
  await page.goto(url);
  await page.waitForSelector(by("onboard-name"), { timeout: 20000 });
  if (metrics.timeToInteractiveMs === undefined) {
    metrics.timeToInteractiveMs = Date.now() - started;
    await shot(page, "0-onboarding");
    await page.setViewportSize(PHONE);
    await shot(page, "0b-onboarding-phone");
    await page.setViewportSize(viewport);
  }
  await page.fill(by("onboard-name"), name);
  await page.fill(by("onboard-topics"), topics);
  await page.click(by("onboard-create"));
  await online(page);
  const short = (await page.textContent(by("my-id"))).trim();
  return { context, page, errors, short };
}

async function search(page, text, capability = "") {
  await page.click(by("nav-discover"));
  await page.fill(by("search-text"), text);
  await page.fill(by("search-capability"), capability);
  await page.click(by("search-go"));
}

async function cardOf(page, name) {
  const card = page.locator(by("card"), { has: page.locator(`${by("card-name")}:text-is("${name}")`) });
  await card.first().waitFor({ timeout: 15000 });
  return card.first();
}

function outgoing(page, text) {
  return page.locator(`${by("msg")}[data-dir="out"]`, { has: page.locator(`${by("msg-text")}:text-is("${text}")`) });
}

function incoming(page, text) {
  return page.locator(`${by("msg")}[data-dir="in"]`, { has: page.locator(`${by("msg-text")}:text-is("${text}")`) });
}

async function waitState(locator, state, timeout = 15000) {
  await locator.first().waitFor({ timeout });
  await locator.page().waitForFunction(
    ([el, want]) => el?.getAttribute("data-state") === want,
    [await locator.first().elementHandle(), state],
    { timeout },
  );
}

let alice;
let bob;
let aliceDid;
let bobDid;
const convWith = (page, did) => page.locator(`${by("conv")}[data-peer="${did}"]`);

test("two profiles onboard, find each other, accept first contact and chat both ways", async () => {
  alice = await onboard(`Alice ${tag}`, `gardening, topic${tag}`);
  await shot(alice.page, "1-home-after-onboarding");
  bob = await onboard(`Bob ${tag}`);

  // Chrome's installability criteria (manifest, icons, service worker).
  const cdp = await alice.context.newCDPSession(alice.page);
  await alice.page.waitForFunction(() => navigator.serviceWorker?.controller != null, null, { timeout: 15000 });
  const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
  // Playwright's contexts are incognito profiles, where Chrome never offers
  // to install; every other criterion must hold.
  const errors = installabilityErrors.map((e) => e.errorId).filter((id) => id !== "in-incognito");
  assert.deepEqual(errors, [], "the PWA meets Chrome's installability criteria");

  // Bob finds Alice by one of her topics (a tag on her card).
  await search(bob.page, "", `topic${tag}`);
  await cardOf(bob.page, `Alice ${tag}`);

  // Alice finds Bob by name and writes first.
  await search(alice.page, `Bob ${tag}`);
  const card = await cardOf(alice.page, `Bob ${tag}`);
  await shot(alice.page, "2-discover");
  bobDid = await card.getAttribute("data-agent");
  await card.locator(by("card-chat")).click();
  assert.equal(await alice.page.getAttribute(by("thread"), "data-peer"), bobDid);
  await alice.page.fill(by("composer-input"), "hello bob, it is alice");
  await alice.page.click(by("composer-send"));
  await outgoing(alice.page, "hello bob, it is alice").first().waitFor();

  // Bob sees a contact request (default deny) and accepts it.
  await bob.page.click(by("nav-chats"));
  const request = bob.page.locator(by("contact-request"));
  await request.first().waitFor({ timeout: 15000 });
  await shot(bob.page, "3-first-contact-request");
  aliceDid = await request.first().getAttribute("data-peer");
  await request.first().locator(by("contact-accept")).click();
  await convWith(bob.page, aliceDid).click();
  await incoming(bob.page, "hello bob, it is alice").first().waitFor({ timeout: 15000 });

  // Bob answers; Alice gets it; both see it delivered.
  await bob.page.fill(by("composer-input"), "hi alice, bob here");
  await bob.page.click(by("composer-send"));
  await incoming(alice.page, "hi alice, bob here").first().waitFor({ timeout: 15000 });
  await waitState(outgoing(bob.page, "hi alice, bob here"), "read").catch(() =>
    waitState(outgoing(bob.page, "hi alice, bob here"), "delivered"),
  );
  // Safety numbers agree on both sides.
  const a = (await alice.page.textContent(by("safety-number"))).replace(/\s+/g, " ").trim();
  const b = (await bob.page.textContent(by("safety-number"))).replace(/\s+/g, " ").trim();
  assert.match(a, /^(\d{5} ){11}\d{5}$/);
  assert.equal(a, b);
  await alice.page.click(by("mark-verified"));
  await shot(alice.page, "4-chat-thread");
  await alice.page.setViewportSize(PHONE);
  await shot(alice.page, "4b-chat-thread-phone");
  await alice.page.setViewportSize(DESKTOP);
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
});

test("a message to a closed profile waits at the relay as ciphertext and arrives exactly once", async () => {
  const secret = `offline secret ${tag} ${Math.random().toString(36).slice(2)}`;
  await bob.page.close();
  await alice.page.fill(by("composer-input"), secret);
  await alice.page.click(by("composer-send"));
  await waitState(outgoing(alice.page, secret), "queued", 20000);
  // The relay stores it: nowhere in its database is the text.
  for (const file of [db, `${db}-wal`]) {
    if (existsSync(file)) {
      assert.ok(!readFileSync(file).includes(Buffer.from(secret)), `${path.basename(file)} holds the plaintext`);
    }
  }
  bob.page = await bob.context.newPage();
  await bob.page.goto(url);
  await online(bob.page);
  await bob.page.click(by("nav-chats"));
  await convWith(bob.page, aliceDid).click();
  await incoming(bob.page, secret).first().waitFor({ timeout: 20000 });
  await bob.page.waitForTimeout(1000);
  assert.equal(await incoming(bob.page, secret).count(), 1, "delivered exactly once");
  await waitState(outgoing(alice.page, secret), "read").catch(() => waitState(outgoing(alice.page, secret), "delivered"));
});

test("a streamed request shows chunks as they arrive, and cancel stops it", async () => {
  await search(alice.page, "", "echo.stream");
  const card = await cardOf(alice.page, `Echo bot ${tag}`);
  await card.locator(`${by("card-request")}[data-skill="echo.stream"]`).click();
  const words = Array.from({ length: 80 }, (_, i) => `word${i}`).join(" ");
  await alice.page.fill(by("req-body"), words);
  await alice.page.click(by("req-send"));
  const result = alice.page.locator(by("req-result")).last();
  await result.locator(by("req-chunk")).nth(2).waitFor({ timeout: 15000 });
  await shot(alice.page, "5-streaming-request");
  await alice.page.click(by("req-cancel"));
  await alice.page.waitForFunction((el) => el.getAttribute("data-status") === "cancelled", await result.elementHandle(), {
    timeout: 10000,
  });
  const after = await result.locator(by("req-chunk")).count();
  await alice.page.waitForTimeout(500);
  assert.equal(await result.locator(by("req-chunk")).count(), after, "no chunks after cancel");
  assert.ok(after < 80, `the stream was not cancelled (${after} chunks)`);

  // A unary request to the same agent.
  await alice.page.fill(by("req-capability"), "echo");
  await alice.page.fill(by("req-body"), "ping");
  await alice.page.click(by("req-send"));
  const unary = alice.page.locator(by("req-result")).last();
  await alice.page.waitForFunction((el) => el.getAttribute("data-status") === "done", await unary.elementHandle(), {
    timeout: 15000,
  });
  assert.equal((await unary.locator(by("req-chunk")).first().textContent()).trim(), "ping");
});

test("settings: the ACL is shown and validated", async () => {
  await alice.page.click(by("nav-settings"));
  const acl = await alice.page.inputValue(by("acl-editor"));
  assert.ok(JSON.parse(acl).rule.length >= 1, acl);
  await alice.page.fill(by("acl-editor"), "{ not json");
  await alice.page.click(by("acl-save"));
  await alice.page.waitForSelector(by("acl-error"));
  await shot(alice.page, "6-settings");
  await alice.page.fill(by("acl-editor"), acl);
  await alice.page.click(by("acl-save"));
});

test("a reload keeps identity and history; with the relay stopped the service worker serves the app", async () => {
  const page = alice.page;
  await page.click(by("nav-chats"));
  const me = (await page.textContent(by("my-id"))).trim();
  await page.reload();
  await online(page);
  assert.equal((await page.textContent(by("my-id"))).trim(), me);
  await convWith(page, bobDid).click();
  await outgoing(page, "hello bob, it is alice").first().waitFor({ timeout: 10000 });

  // The service worker controls the page by now.
  await page.waitForFunction(() => navigator.serviceWorker?.controller != null, null, { timeout: 15000 });
  const port = new URL(url).port;
  await stopRelay();
  await page.reload();
  await page.waitForSelector(by("my-id"), { timeout: 15000 });
  assert.equal((await page.textContent(by("my-id"))).trim(), me);
  await convWith(page, bobDid).click();
  await outgoing(page, "hello bob, it is alice").first().waitFor({ timeout: 10000 });
  assert.notEqual((await page.textContent(by("conn-state"))).trim(), "online");
  await shot(page, "7-offline-from-service-worker");
  url = await startRelay(Number(port));
  await online(page);
});
