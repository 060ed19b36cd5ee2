// A module Worker that uses the package the way a Cloudflare Worker would:
// each `fetch` connects to the relay as a fresh agent, talks end-to-end
// encrypted to the native echo agent, and answers with what it got back.
import { Identity, MeshClient, isMeshError } from "../../entry/workerd.js";

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const identity = Identity.generate();
    let client;
    try {
      client = await MeshClient.connect(env.RELAY_URL, identity, { connectTimeoutMs: 10000 });
      if (url.pathname === "/echo") {
        const text = url.searchParams.get("text") ?? "";
        const answer = await client.request(env.ECHO_AGENT, "echo", text, { timeoutMs: 10000 });
        return Response.json({ agentId: identity.agentId, echo: answer.text() });
      }
      if (url.pathname === "/stream") {
        const chunks = [];
        for await (const chunk of client.requestStream(env.ECHO_AGENT, "echo.stream", url.searchParams.get("text") ?? "")) {
          chunks.push(new TextDecoder().decode(chunk));
        }
        return Response.json({ chunks });
      }
      if (url.pathname === "/search") {
        const page = await client.search({ capability: "echo" });
        return Response.json({ agents: page.items.map((i) => i.agentId), rejected: page.rejected });
      }
      return new Response("not found", { status: 404 });
    } catch (e) {
      return Response.json(
        { error: String(e?.message ?? e), code: isMeshError(e) ? e.code : null },
        { status: 500 },
      );
    } finally {
      await client?.close();
    }
  },
};
