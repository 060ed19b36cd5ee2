// The package in Deno (`deno test`, type-checked against index.d.ts),
// against the live mesh-relay and native echo agent that `cargo xtask test`
// starts and describes in MESH_TEST_* variables. Deno has a global
// WebSocket, so no implementation is passed in.
// @ts-types="../index.d.ts"
import { Identity, isMeshError, MeshClient, type MeshError } from "../entry/deno.js";

function need(name: string): string {
  const value = Deno.env.get(name);
  if (!value) {
    throw new Error(`${name} is not set: run this through \`cargo xtask test\``);
  }
  return value;
}

const RELAY = need("MESH_TEST_RELAY_URL");
const ECHO = need("MESH_TEST_ECHO_AGENT");

function assertEquals<T>(actual: T, expected: T, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

Deno.test("connect and request/response with the native agent over Noise", async () => {
  const identity = Identity.generate();
  const client = await MeshClient.connect(RELAY, identity, { requestTimeoutMs: 10_000 });
  try {
    assertEquals(client.agentId, identity.agentId, "agent id");
    assertEquals(client.state.state, "online", "state");
    const text = await client.request(ECHO, "echo", "hello from deno");
    assertEquals(text.text(), "hello from deno", "text echo");
    const json = await client.request(ECHO, "echo", { runtime: "deno", n: [1, 2, 3] });
    assertEquals(json.json<{ runtime: string; n: number[] }>(), { runtime: "deno", n: [1, 2, 3] }, "json echo");
    const bytes = new Uint8Array(70_000).map((_, i) => (i * 7) % 256);
    const back = await client.request(ECHO, "echo", bytes);
    assertEquals(back.body.length, bytes.length, "bytes length");
    assertEquals(Array.from(back.body.subarray(0, 16)), Array.from(bytes.subarray(0, 16)), "bytes");
  } finally {
    await client.close();
  }
});

Deno.test("a stream arrives in order; an AbortSignal cancels the next one", async () => {
  const client = await MeshClient.connect(RELAY, Identity.generate());
  try {
    const words: string[] = [];
    for await (const chunk of client.requestStream(ECHO, "echo.stream", "alpha beta gamma")) {
      words.push(new TextDecoder().decode(chunk));
    }
    assertEquals(words, ["alpha", "beta", "gamma"], "chunks");

    const controller = new AbortController();
    const stream = client.requestStream(ECHO, "echo.stream", "a b c d e f g h i j", { signal: controller.signal });
    const first = await stream.next();
    assertEquals(first.done, false, "first chunk");
    controller.abort();
    let code = "";
    try {
      await stream.next();
    } catch (e) {
      if (isMeshError(e)) code = (e as MeshError).code;
    }
    assertEquals(code, "cancelled", "error code after abort");
  } finally {
    await client.close();
  }
});

Deno.test("typed errors: a capability the agent's ACL does not allow, a bad agent id", async () => {
  const client = await MeshClient.connect(RELAY, Identity.generate());
  try {
    const codeOf = async (p: Promise<unknown>): Promise<string> => {
      try {
        await p;
        return "resolved";
      } catch (e) {
        return isMeshError(e) ? e.code : `not a MeshError: ${e}`;
      }
    };
    // The echo agent allows only what it serves: its ACL answers first.
    assertEquals(await codeOf(client.request(ECHO, "no.such.capability", "")), "denied", "not allowed");
    assertEquals(await codeOf(client.request("did:key:bogus", "echo", "")), "invalid_argument", "bad id");
  } finally {
    await client.close();
  }
});

Deno.test("examples/deno.ts runs as written", async () => {
  const example = new URL("../examples/deno.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-net", example, RELAY, ECHO],
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 0, `exit code (stderr: ${new TextDecoder().decode(out.stderr)})`);
  assertEquals(stdout, "echo: hello from deno\n", "output");
});
