// The package inside workerd (the Cloudflare Workers runtime, via
// Miniflare): a module Worker imports it, connects to the live relay and
// requests from the live native agent within one `fetch`; the test asserts
// the answers. The relay and agent come from `cargo xtask test` (MESH_TEST_*).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { need } from "./harness.mjs";

const RELAY = need("MESH_TEST_RELAY_URL");
const ECHO = need("MESH_TEST_ECHO_AGENT");
let mf;

before(async () => {
  mf = new Miniflare({
    modules: true,
    scriptPath: fileURLToPath(new URL("./worker/worker.js", import.meta.url)),
    modulesRoot: fileURLToPath(new URL("..", import.meta.url)),
    modulesRules: [
      { type: "ESModule", include: ["**/*.js"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: "2026-04-01",
    bindings: { RELAY_URL: RELAY, ECHO_AGENT: ECHO },
  });
  await mf.ready;
});

after(async () => {
  await mf?.dispose();
});

async function get(path) {
  const res = await mf.dispatchFetch(`http://worker.test${path}`);
  const body = await res.json();
  assert.equal(res.status, 200, `worker answered ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

test("a Worker requests from the native agent end to end, inside one fetch", async () => {
  const body = await get(`/echo?text=${encodeURIComponent("hello from workerd")}`);
  assert.equal(body.echo, "hello from workerd");
  assert.match(body.agentId, /^did:key:z6Mk/);
});

test("a Worker reads a streamed answer", async () => {
  const body = await get("/stream?text=red%20green%20blue");
  assert.deepEqual(body.chunks, ["red", "green", "blue"]);
});

test("a Worker searches the registry (fetch from workerd)", async () => {
  const body = await get("/search");
  assert.ok(body.agents.includes(ECHO), `echo agent not found in ${JSON.stringify(body)}`);
  assert.equal(body.rejected, 0);
});

test("the README's Worker example (examples/worker.js) runs as written", async () => {
  const root = fileURLToPath(new URL("..", import.meta.url));
  // The module list a bundler such as wrangler would produce: the example,
  // the package under its name (resolved through the `workerd` export
  // condition), and the package's files.
  const example = new Miniflare({
    modulesRoot: root,
    modules: [
      { type: "ESModule", path: `${root}/examples/worker.js` },
      { type: "ESModule", path: `${root}/examples/agent-mesh`, contents: 'export * from "../entry/workerd.js";' },
      { type: "ESModule", path: `${root}/entry/workerd.js` },
      { type: "ESModule", path: `${root}/lib.js` },
      { type: "ESModule", path: `${root}/dist/mesh_wasm.js` },
      { type: "CompiledWasm", path: `${root}/dist/mesh_wasm_bg.wasm` },
    ],
    compatibilityDate: "2026-04-01",
    bindings: { RELAY_URL: RELAY, ECHO_AGENT: ECHO },
  });
  try {
    const res = await example.dispatchFetch("http://worker.test/?text=hello%20example");
    assert.equal(await res.text(), "hello example");
    assert.equal(res.status, 200);
  } finally {
    await example.dispose();
  }
});
