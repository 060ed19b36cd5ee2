// deno run --allow-read --allow-net examples/deno.ts <relay ws url> <agent id>
import { Identity, MeshClient } from "agent-mesh";

const [relayUrl, peer] = Deno.args;
const client = await MeshClient.connect(relayUrl, Identity.generate());

const answer = await client.request(peer, "echo", "hello from deno");
console.log("echo:", answer.text());
await client.close();
