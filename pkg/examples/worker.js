// A Cloudflare Worker (module syntax). Bindings: RELAY_URL, ECHO_AGENT.
import { Identity, MeshClient } from "agent-mesh";

export default {
  async fetch(request, env) {
    const text = new URL(request.url).searchParams.get("text") ?? "hello";
    const client = await MeshClient.connect(env.RELAY_URL, Identity.generate());
    try {
      const answer = await client.request(env.ECHO_AGENT, "echo", text);
      return new Response(answer.text());
    } finally {
      await client.close();
    }
  },
};
