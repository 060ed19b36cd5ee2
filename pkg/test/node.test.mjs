// The package in Node (node --test), against a live mesh-relay and a live
// native agent (`meshctl serve --echo`) that `cargo xtask test` starts and
// describes in MESH_TEST_* variables. Node 20 has no global WebSocket: the
// `ws` package is passed in, as the README shows.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import {
  Identity,
  MeshClient,
  MeshResponse,
  errorCodes,
  isMeshError,
  version,
} from "agent-mesh";
import { need } from "./harness.mjs";

const RELAY = need("MESH_TEST_RELAY_URL");
const ECHO = need("MESH_TEST_ECHO_AGENT");
const AGENT_LOG = need("MESH_TEST_AGENT_LOG");
const text = (bytes) => new TextDecoder().decode(bytes);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function connect(options = {}) {
  const identity = Identity.generate();
  const client = await MeshClient.connect(RELAY, identity, { WebSocket, ...options });
  return { identity, client };
}

/** Resolves with the first value `poll` returns that is not undefined. */
async function eventually(what, poll, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await poll();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

test("identity: generate, export, import, safety number", () => {
  const a = Identity.generate();
  const b = Identity.generate();
  assert.match(a.agentId, /^did:key:z6Mk/);
  assert.notEqual(a.agentId, b.agentId);
  assert.equal(Identity.fromSecret(a.exportSecret()).agentId, a.agentId);
  assert.equal(Identity.fromSecret(a.exportSecretBytes()).agentId, a.agentId);
  assert.equal(a.safetyNumber(b.agentId), b.safetyNumber(a.agentId));
  assert.match(a.safetyNumber(b.agentId), /^(\d{5} ){11}\d{5}$/);
  assert.ok(!String(a).includes(a.exportSecret()), "toString must not reveal the secret");
  assert.throws(() => Identity.fromSecret("nonsense"), (e) => e.code === "invalid_argument");
  assert.throws(() => a.safetyNumber("did:key:nope"), (e) => e.code === "invalid_argument");
  assert.equal(typeof version(), "string");
  assert.ok(errorCodes().includes("denied"));
});

test("identity storage needs IndexedDB, which Node lacks: a clear error", async () => {
  await assert.rejects(Identity.load(), (e) => e.code === "storage" && /IndexedDB/.test(e.message));
});

test("connect, then request/response with the native agent over Noise", async () => {
  const { client, identity } = await connect();
  try {
    assert.equal(client.agentId, identity.agentId);
    assert.equal(client.state.state, "online");
    const r1 = await client.request(ECHO, "echo", "hello from node");
    assert.ok(r1 instanceof MeshResponse);
    assert.equal(r1.text(), "hello from node");
    const r2 = await client.request(ECHO, "echo", { n: 1, list: [1, 2, "three"] });
    assert.deepEqual(r2.json(), { n: 1, list: [1, 2, "three"] });
    const bytes = new Uint8Array(256 * 1024).map((_, i) => i % 251);
    const r3 = await client.request(ECHO, "echo", bytes, { timeoutMs: 20000 });
    assert.deepEqual(r3.body, bytes);
    // Many at once over one connection and one session.
    const many = await Promise.all(
      Array.from({ length: 20 }, (_, i) => client.request(ECHO, "echo", `n${i}`)),
    );
    assert.deepEqual(many.map((r) => r.text()), Array.from({ length: 20 }, (_, i) => `n${i}`));
  } finally {
    await client.close();
  }
});

test("streaming: chunks arrive in order, as an async iterable and as a ReadableStream", async () => {
  const { client } = await connect();
  try {
    const chunks = [];
    for await (const chunk of client.requestStream(ECHO, "echo.stream", "one two three four")) {
      chunks.push(text(chunk));
    }
    assert.deepEqual(chunks, ["one", "two", "three", "four"]);

    const readable = client.requestStream(ECHO, "echo.stream", "five six").toReadableStream();
    const got = [];
    for await (const chunk of readable) got.push(text(chunk));
    assert.deepEqual(got, ["five", "six"]);

    // A request after a stream still works.
    assert.equal((await client.request(ECHO, "echo", "after")).text(), "after");
  } finally {
    await client.close();
  }
});

test("cancel: leaving `for await` early cancels the native agent's handler", async () => {
  const { client, identity } = await connect();
  try {
    const words = Array.from({ length: 200 }, (_, i) => `w${i}`).join(" ");
    let seen = 0;
    for await (const chunk of client.requestStream(ECHO, "echo.stream", words)) {
      seen += 1;
      assert.ok(chunk.length > 0);
      if (seen === 2) break;
    }
    // The agent logs each request's outcome with the caller's short id;
    // ours must end "cancelled" after a few of the 200 chunks.
    const line = await eventually("the agent to log the cancellation", () =>
      readFileSync(AGENT_LOG, "utf8")
        .split("\n")
        .find((l) => l.startsWith(`${identity.short} echo.stream`)),
    );
    assert.match(line, /-> cancelled after [2-9] chunks/);
  } finally {
    await client.close();
  }
});

test("an AbortSignal cancels a request, and the cancel reaches the remote JS handler", async () => {
  const server = await connect();
  const caller = await connect();
  try {
    let handlerAborted = false;
    let started;
    const startedP = new Promise((r) => (started = r));
    server.client.setAcl({ rule: [{ source: caller.identity.agentId, capabilities: ["slow", "ticks"], action: "allow" }] });
    server.client.handle("slow", (req) => {
      started();
      return new Promise((resolve) => {
        req.signal.addEventListener("abort", () => {
          handlerAborted = true;
          resolve("too late");
        });
      });
    });
    const controller = new AbortController();
    const pending = caller.client.request(server.identity.agentId, "slow", "x", { signal: controller.signal });
    await startedP;
    controller.abort();
    await assert.rejects(pending, (e) => isMeshError(e) && e.code === "cancelled");
    await eventually("the handler's signal to abort", () => (handlerAborted ? true : undefined));

    // Streams: an async generator handler; the generator's finally runs on cancel.
    let finalized = false;
    server.client.handleStream("ticks", async function* (req) {
      try {
        for (let i = 0; ; i++) {
          yield `tick ${i}`;
          await sleep(20);
          if (req.signal.aborted) return;
        }
      } finally {
        finalized = true;
      }
    });
    const streamAbort = new AbortController();
    const stream = caller.client.requestStream(server.identity.agentId, "ticks", "", { signal: streamAbort.signal });
    const first = await stream.next();
    assert.equal(text(first.value), "tick 0");
    streamAbort.abort();
    await assert.rejects(stream.next(), (e) => e.code === "cancelled");
    await eventually("the generator to finish", () => (finalized ? true : undefined));
  } finally {
    await server.client.close();
    await caller.client.close();
  }
});

test("handle an incoming request: JSON in, JSON out, thrown errors typed; ACL default deny", async () => {
  const server = await connect();
  const caller = await connect();
  const stranger = await connect();
  try {
    server.client.handle("sum", (req) => {
      assert.equal(req.from, caller.identity.agentId);
      const { a, b } = req.json();
      if (typeof a !== "number") {
        const e = new Error("a must be a number");
        e.code = "bad_request";
        throw e;
      }
      return { sum: a + b };
    });
    server.client.handle("boom", async () => {
      throw new Error("kaboom");
    });
    // Default deny: nobody is allowed yet.
    await assert.rejects(
      caller.client.request(server.identity.agentId, "sum", { a: 1, b: 2 }),
      (e) => e.code === "denied",
    );
    server.client.setAcl({ rule: [{ source: caller.identity.agentId, capabilities: ["sum", "boom", "nothing"], action: "allow" }] });
    assert.equal(server.client.acl.rule.length, 1);
    const r = await caller.client.request(server.identity.agentId, "sum", { a: 40, b: 2 });
    assert.deepEqual(r.json(), { sum: 42 });
    await assert.rejects(
      caller.client.request(server.identity.agentId, "sum", { a: "x" }),
      (e) => e.code === "bad_request" && /a must be a number/.test(e.message),
    );
    await assert.rejects(
      caller.client.request(server.identity.agentId, "boom", null),
      (e) => e.code === "handler_failed" && /kaboom/.test(e.message),
    );
    await assert.rejects(
      caller.client.request(server.identity.agentId, "nothing", null),
      (e) => e.code === "unknown_capability",
    );
    await assert.rejects(
      stranger.client.request(server.identity.agentId, "sum", { a: 1, b: 2 }),
      (e) => e.code === "denied",
    );
  } finally {
    await Promise.all([server.client.close(), caller.client.close(), stranger.client.close()]);
  }
});

test("timeouts, bad arguments and bad options are typed errors", async () => {
  const server = await connect();
  const { client, identity } = await connect();
  try {
    server.client.setAcl({ rule: [{ source: identity.agentId, capabilities: ["never"], action: "allow" }] });
    server.client.handle("never", () => new Promise(() => {}));
    await assert.rejects(
      client.request(server.identity.agentId, "never", "", { timeoutMs: 300 }),
      (e) => e.code === "timeout",
    );
    await assert.rejects(client.request("did:key:nope", "echo", ""), (e) => e.code === "invalid_argument");
    await assert.rejects(client.request(ECHO, "echo", "", { timeoutMs: -1 }), (e) => e.code === "invalid_argument");
    await assert.rejects(client.request(ECHO, "echo", 10n), (e) => e.code === "invalid_argument");
    assert.throws(() => client.setAcl({ rule: "everyone" }), (e) => e.code === "invalid_argument");
    assert.throws(() => client.handle("x", "not a function"), (e) => e.code === "invalid_argument");
  } finally {
    await client.close();
    await server.client.close();
  }
});

test("without a WebSocket implementation Node 20 fails clearly; a dead relay is `unreachable`", async () => {
  const identity = Identity.generate();
  if (typeof globalThis.WebSocket !== "function") {
    await assert.rejects(
      MeshClient.connect(RELAY, identity, { WebSocket: undefined, connectTimeoutMs: 2000 }),
      (e) => e.code === "unreachable" && /no global WebSocket/.test(e.message),
    );
  }
  await assert.rejects(
    MeshClient.connect("ws://127.0.0.1:9/v1/ws", identity, { WebSocket, connectTimeoutMs: 2000 }),
    (e) => e.code === "unreachable",
  );
});

test("chat: send, receive, receipts; a first message to an offline peer is delivered when it returns", async () => {
  const alice = await connect();
  // Bob connects once so the relay knows him, then goes offline.
  const bobIdentity = Identity.generate();
  const bobSecret = bobIdentity.exportSecret();
  const acl = { rule: [{ source: alice.identity.agentId, capabilities: ["mesh.chat"], action: "allow" }] };
  const bob1 = await MeshClient.connect(RELAY, bobIdentity, { WebSocket, acl });
  await bob1.close();
  // Let the relay see Bob go. (A handshake that reaches a client in the
  // middle of closing is acknowledged but never answered; the sender then
  // waits for the handshake's own timeout instead of hearing `queued`.)
  await sleep(300);
  try {
    const events = [];
    const unsubscribe = alice.client.onMessage((e) => events.push(e));
    const msgId = alice.client.sendMessage(bobIdentity.agentId, "are you there?");
    assert.match(msgId, /^\d+$/);
    // First contact: the relay holds only the handshake, not the chat, so
    // there is no `queued` news; the chat is sealed when Bob answers.
    await sleep(500);
    assert.deepEqual(events, []);

    const bob = await MeshClient.connect(RELAY, Identity.fromSecret(bobSecret), { WebSocket, acl });
    const received = [];
    bob.onMessage((e) => received.push(e));
    const chat = await eventually("bob to get the chat", () => received.find((e) => e.type === "chat"), 10000);
    assert.equal(chat.text, "are you there?");
    assert.equal(chat.from, alice.identity.agentId);
    assert.equal(chat.allowed, true);
    bob.sendReadReceipt(chat.from, chat.msgId);
    await eventually("the read receipt", () => events.find((e) => e.type === "receipt" && e.kind === "read"));
    await sleep(200);
    assert.equal(received.filter((e) => e.type === "chat").length, 1, "delivered exactly once");
    unsubscribe();
    await bob.close();
  } finally {
    await alice.client.close();
  }
});

test("state changes are observable", async () => {
  const { client } = await connect();
  const states = [];
  const stop = client.onStateChange((s) => states.push(s.state));
  await eventually("the current state", () => (states.length ? true : undefined));
  await client.close();
  await eventually("closed", () => (states.includes("closed") ? true : undefined));
  stop();
  assert.equal(states[0], "online");
});

test("registry: publish a signed card, search by capability and text, fetch and verify it", async () => {
  const { client, identity } = await connect();
  try {
    const tag = `nodetest${Date.now().toString(36)}`;
    const seq = await client.publishCard({
      name: `Node test agent ${tag}`,
      description: "An agent from the npm package's Node tests",
      skills: [{ id: `${tag}.sum`, name: "Sum", description: "Adds two numbers", tags: [tag] }],
    });
    assert.ok(seq > 0);
    const byCapability = await client.search({ capability: tag });
    assert.deepEqual(byCapability.items.map((i) => i.agentId), [identity.agentId]);
    assert.equal(byCapability.items[0].online, true);
    assert.equal(byCapability.rejected, 0);
    const byText = await client.search({ text: tag, online: true });
    assert.equal(byText.items[0].card.name, `Node test agent ${tag}`);
    const card = await client.getCard(identity.agentId);
    assert.equal(card.card.skills[0].id, `${tag}.sum`);
    const echo = await client.getCard(ECHO);
    assert.equal(echo.agentId, ECHO);
    assert.equal(await client.getCard(Identity.generate().agentId), null);
    await client.unpublishCard();
    assert.equal(await client.getCard(identity.agentId), null);
    await assert.rejects(client.publishCard({ description: "no name" }), (e) => e.code === "invalid_argument");
  } finally {
    await client.close();
  }
});

test("the READMEs show the examples verbatim, and examples/node.mjs runs as written", async () => {
  const pkgReadme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const rootReadme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  for (const name of ["browser.html", "node.mjs", "deno.ts", "worker.js"]) {
    const example = readFileSync(new URL(`../examples/${name}`, import.meta.url), "utf8");
    assert.ok(pkgReadme.includes(example), `pkg/README.md does not show examples/${name} as it is`);
    assert.ok(rootReadme.includes(example), `README.md does not show examples/${name} as it is`);
  }
  const example = fileURLToPath(new URL("../examples/node.mjs", import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, [example, RELAY, ECHO], { timeout: 30000 });
  assert.equal(stdout, "echo: { hello: 'from node' }\nchunk: one\nchunk: two\nchunk: three\n");
});

test("cancel() ends a next() that is waiting for a chunk, and the handler sees it", async () => {
  const server = await connect();
  const caller = await connect();
  try {
    let handlerAborted = false;
    server.client.setAcl({ rule: [{ source: caller.identity.agentId, capabilities: ["one.then.wait"], action: "allow" }] });
    server.client.handleStream("one.then.wait", async function* (req) {
      yield "first";
      await new Promise((resolve) => req.signal.addEventListener("abort", resolve));
      handlerAborted = true;
    });
    const stream = caller.client.requestStream(server.identity.agentId, "one.then.wait", "", { timeoutMs: 30000 });
    assert.equal(text((await stream.next()).value), "first");
    const pending = stream.next();
    await sleep(100);
    const started = Date.now();
    await stream.cancel();
    assert.deepEqual(await pending, { done: true, value: undefined });
    assert.ok(Date.now() - started < 2000, "cancel waited for the next chunk");
    await eventually("the handler's signal to abort", () => (handlerAborted ? true : undefined));
    assert.throws(() => server.client.handle("x", 42), (e) => e.name === "MeshError" && e.code === "invalid_argument");
  } finally {
    await server.client.close();
    await caller.client.close();
  }
});
