"""`meshctl gateway` over real HTTP (httpx and curl) against the live relay
and echo agent: requests, server-sent-event streams, search, the bearer
token, bad input, and each mesh error as its HTTP status.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import anyio
import httpx

from mesh_fixture import (
    ECHO,
    HERE,
    ROOT,
    STEP_TIMEOUT,
    MeshTestCase,
    Process,
    agent_log_match,
    short_id,
)


async def gateway_endpoint(server: Process) -> tuple[str, str]:
    url = (await server.wait_for(r"^meshctl gateway: (http://[0-9.:]+)/v1/ ")).group(1)
    token = (await server.wait_for(r"^token: ([0-9a-f]{64})$")).group(1)
    return url, token


def sse_events(text: str) -> list[tuple[str, Any]]:
    """(event, data as JSON) pairs of a text/event-stream body."""
    events = []
    for block in text.strip().split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[len("event:"):].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:"):].strip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


class GatewayTests(MeshTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        name, self.did = self.mesh.new_identity("gateway")
        self.server = self.mesh.spawn(name, "gateway", "--listen", "127.0.0.1:0")
        self.url, self.token = await gateway_endpoint(self.server)
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=STEP_TIMEOUT,
        )

    async def asyncTearDown(self) -> None:
        await self.http.aclose()
        code = self.server.stop()
        self.assertEqual(code, 0, self.server.text())
        await super().asyncTearDown()

    def assert_error(self, response: httpx.Response, status: int, code: str) -> dict[str, str]:
        self.assertEqual(response.status_code, status, response.text)
        self.assertEqual(response.headers["content-type"], "application/json")
        error = response.json()["error"]
        self.assertEqual(error["code"], code, error)
        self.assertTrue(error["message"])
        return error

    async def test_request_answers_with_the_agents_body(self) -> None:
        r = await self.http.post("/v1/request", json={"peer": ECHO, "capability": "echo", "body": "hello, gateway"})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.text, "hello, gateway")
        self.assertTrue(r.headers["content-type"].startswith("text/plain"))
        r = await self.http.post("/v1/request", json={"peer": ECHO, "capability": "echo", "body": {"n": [1, 2]}, "timeout_ms": 5000})
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertEqual(r.json(), {"n": [1, 2]})
        await agent_log_match(rf"^{short_id(self.did)} echo \d+ B -> ok")

    async def test_stream_is_server_sent_events(self) -> None:
        r = await self.http.post("/v1/stream", json={"peer": ECHO, "capability": "echo.stream", "body": "one two three"})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertTrue(r.headers["content-type"].startswith("text/event-stream"))
        self.assertEqual(
            sse_events(r.text),
            [
                ("chunk", {"seq": 0, "body": "one"}),
                ("chunk", {"seq": 1, "body": "two"}),
                ("chunk", {"seq": 2, "body": "three"}),
                ("end", {"chunks": 3}),
            ],
        )

    async def test_closing_a_stream_cancels_it_at_the_agent(self) -> None:
        words = " ".join(f"gw{i}" for i in range(200))
        with anyio.fail_after(STEP_TIMEOUT):
            async with self.http.stream("POST", "/v1/stream", json={"peer": ECHO, "capability": "echo.stream", "body": words}) as r:
                self.assertEqual(r.status_code, 200)
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        self.assertEqual(json.loads(line[5:]), {"seq": 0, "body": "gw0"})
                        break
        size = len(words.encode())
        await agent_log_match(rf"^{short_id(self.did)} echo\.stream {size} B -> cancelled after \d+ chunks")

    async def test_search_lists_verified_cards_with_presence(self) -> None:
        r = await self.http.get("/v1/search", params={"capability": "echo", "online": "true"})
        self.assertEqual(r.status_code, 200, r.text)
        page = r.json()
        echo = next(i for i in page["items"] if i["card"]["mesh"]["agentId"] == ECHO)
        self.assertTrue(echo["presence"]["online"])
        self.assertEqual({s["id"] for s in echo["card"]["skills"]}, {"echo", "echo.stream"})
        self.assertIn("signature", echo["card"])
        self.assertEqual(page["rejected"], 0)
        r = await self.http.get("/v1/search", params={"q": "nothing-matches-this-xyzzy"})
        self.assertEqual(r.json()["items"], [])

    async def test_the_token_is_required(self) -> None:
        # A page that rebinds its own name to 127.0.0.1 is turned away, token or not.
        r = await self.http.get("/v1/search", headers={"Host": "evil.example:8790"})
        self.assert_error(r, 403, "denied")
        async with httpx.AsyncClient(base_url=self.url, timeout=STEP_TIMEOUT) as bare:
            for headers in ({}, {"Authorization": "Bearer " + "f" * 64}, {"Authorization": self.token}):
                for method, path in (("GET", "/v1/search"), ("POST", "/v1/request"), ("POST", "/v1/stream"), ("GET", "/")):
                    r = await bare.request(method, path, headers=headers, json={"peer": ECHO, "capability": "echo"})
                    self.assert_error(r, 401, "not_authenticated")
                    self.assertIn("Bearer", r.headers["www-authenticate"])
                    # The body was not read, so the connection is not reused.
                    self.assertEqual(r.headers["connection"], "close")

    async def test_bad_input_is_a_400(self) -> None:
        cases = [
            b"{not json",
            b'{"peer": "did:key:z6Mk", "capability": "echo"}',
            json.dumps({"capability": "echo"}).encode(),
            json.dumps({"peer": ECHO, "capability": "bad name!"}).encode(),
            json.dumps({"peer": ECHO, "capability": "echo", "colour": "red"}).encode(),
            json.dumps({"peer": ECHO, "capability": "echo", "timeout_ms": 0}).encode(),
            json.dumps([1, 2]).encode(),
        ]
        for body in cases:
            for path in ("/v1/request", "/v1/stream"):
                r = await self.http.post(path, content=body, headers={"content-type": "application/json"})
                self.assert_error(r, 400, "bad_request")
        for params in ({"limit": "lots"}, {"limit": "0"}, {"online": "maybe"}):
            r = await self.http.get("/v1/search", params=params)
            self.assert_error(r, 400, "bad_request")
        self.assert_error(await self.http.get("/v1/nothing"), 404, "bad_request")
        self.assert_error(await self.http.get("/v1/request"), 405, "bad_request")
        # Still serving.
        r = await self.http.post("/v1/request", json={"peer": ECHO, "capability": "echo", "body": "ok"})
        self.assertEqual(r.text, "ok")

    async def test_a_body_over_the_limit_is_a_typed_413(self) -> None:
        # Over a raw socket: the gateway answers before reading the whole
        # body, which an HTTP client still uploading may see as a reset.
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        size = 8 * 1024 * 1024 + 1
        reader, writer = await asyncio.open_connection(host, int(port))
        head = (
            f"POST /v1/request HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n"
        )
        writer.write(head.encode())

        async def upload() -> None:
            try:
                for _ in range(size // 65536 + 1):
                    writer.write(b" " * 65536)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass  # refused before the end: expected

        sending = asyncio.create_task(upload())
        answer = await asyncio.wait_for(reader.read(), STEP_TIMEOUT)
        sending.cancel()
        writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        self.assertEqual(status_line.split()[1], b"413", answer[:300])
        headers, _, body = rest.partition(b"\r\n\r\n")
        self.assertIn(b"connection: close", headers.lower())
        self.assertIn(b"application/json", headers.lower())
        error = json.loads(body)["error"]
        self.assertEqual(error["code"], "payload_too_large", error)

    async def test_mesh_errors_keep_their_codes(self) -> None:
        _, friend = self.mesh.new_identity("friend")
        _, picky = await self.mesh.echo_agent(allow=friend, label="picky")
        for path in ("/v1/request", "/v1/stream"):
            r = await self.http.post(path, json={"peer": picky, "capability": "echo", "body": "let me in"})
            self.assert_error(r, 403, "denied")

        acl = self.mesh.dir / "open.toml"
        acl.write_text('[[rule]]\nsource = "*"\ncapabilities = ["*"]\naction = "allow"\n')
        name, open_did = self.mesh.new_identity("open")
        agent = self.mesh.spawn(name, "serve", "--echo", "--acl", str(acl))
        await agent.wait_for(r"^serving ")
        r = await self.http.post("/v1/request", json={"peer": open_did, "capability": "translate"})
        self.assert_error(r, 404, "unknown_capability")

        _, stranger = self.mesh.new_identity("stranger")
        r = await self.http.post("/v1/request", json={"peer": stranger, "capability": "echo", "timeout_ms": 10000})
        self.assert_error(r, 502, "unreachable")

        # An agent that went away: the relay keeps the request for it, and
        # no answer comes in time.
        agent.kill()
        r = await self.http.post("/v1/request", json={"peer": open_did, "capability": "echo", "timeout_ms": 1000})
        self.assert_error(r, 504, "timeout")

    async def test_readme_curl_examples_run_as_written(self) -> None:
        script = (HERE / "gateway_examples.sh").read_text()
        readme = (ROOT / "README.md").read_text()
        self.assertTrue(
            f"```sh\n{script}```" in readme,
            "README.md must show crates/meshctl/tests/mcp/gateway_examples.sh verbatim in a ```sh block",
        )
        env = {"PATH": "/usr/bin:/bin", "GATEWAY": self.url, "TOKEN": self.token, "ECHO": ECHO}
        out = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                ["bash", "-e", str(HERE / "gateway_examples.sh")],
                capture_output=True, text=True, env=env, timeout=STEP_TIMEOUT, stdin=subprocess.DEVNULL,
            )
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(out.stdout.startswith("hello, mesh"), out.stdout)
        self.assertIn('event: chunk\ndata: {"body":"one","seq":0}', out.stdout)
        self.assertIn('event: end\ndata: {"chunks":3}', out.stdout)
        self.assertIn(f'"agentId":"{ECHO}"', out.stdout)

    async def test_refuses_to_listen_beyond_loopback_or_with_a_weak_token(self) -> None:
        name, _ = self.mesh.new_identity("gw")
        out = self.mesh.run(name, "gateway", "--listen", "0.0.0.0:0")
        self.assertNotEqual(out.returncode, 0)
        self.assertRegex(out.stderr, r"^error: refusing --listen 0\.0\.0\.0:0: only loopback")
        out = self.mesh.run(name, "gateway", "--listen", "127.0.0.1:0", "--token", "abc")
        self.assertRegex(out.stderr, r"^error: the token is too short")
