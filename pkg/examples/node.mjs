// node examples/node.mjs <relay ws url> <agent id serving echo + echo.stream>
import WebSocket from "ws"; // Node 20 has no global WebSocket (Node ≥ 22 does)
import { Identity, MeshClient } from "agent-mesh";

const [relayUrl, peer] = process.argv.slice(2);
const me = Identity.generate();
const client = await MeshClient.connect(relayUrl, me, { WebSocket });

const answer = await client.request(peer, "echo", { hello: "from node" });
console.log("echo:", answer.json());

for await (const chunk of client.requestStream(peer, "echo.stream", "one two three")) {
  console.log("chunk:", new TextDecoder().decode(chunk));
}
await client.close();
