"""`meshctl mcp` driven by the official MCP Python SDK, over stdio and over
streamable HTTP, in both protocol eras the SDK speaks: the default
("auto", which settles on 2026-07-28 with rmcp) and "legacy" (the
`initialize` handshake of 2025-11-25).

Every test talks to the live relay and echo agent (see mesh_fixture.py) and
starts its own `meshctl mcp` with a fresh identity.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import anyio
import httpx
import httpx2
import mcp.types as types
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mesh_fixture import (
    ECHO,
    HERE,
    MESHCTL,
    ROOT,
    RELAY,
    REFRESH_SECONDS,
    STEP_TIMEOUT,
    MeshTestCase,
    Process,
    agent_log_match,
    short_id,
)

ECHO_SHORT = short_id(ECHO)
ECHO_TOOL = f"{ECHO_SHORT}__echo"
STREAM_TOOL = f"{ECHO_SHORT}__echo_stream"


@dataclass
class Session:
    """A connected MCP client and what it is connected to."""

    client: Client
    did: str
    log: Path
    changes: anyio.abc.ObjectReceiveStream | None = None

    @property
    def short(self) -> str:
        return short_id(self.did)

    async def tools(self) -> dict[str, types.Tool]:
        listed = await self.client.list_tools()
        return {t.name: t for t in listed.tools}

    async def call(self, name: str, arguments: dict[str, Any] | None = None, **kw: Any) -> types.CallToolResult:
        with anyio.fail_after(STEP_TIMEOUT):
            return await self.client.call_tool(name, arguments or {}, **kw)

    async def wait_for_tools(self, predicate, timeout: float = 4 * REFRESH_SECONDS) -> dict[str, types.Tool]:
        """Waits, through tools/list_changed, until the listing satisfies `predicate`."""
        assert self.changes is not None, "open the session with watch_changes=True"
        with anyio.fail_after(timeout):
            while True:
                tools = await self.tools()
                if predicate(tools):
                    return tools
                await self.changes.receive()


def text_of(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


class McpCases:
    """The cases; subclasses choose the transport and the protocol era."""

    transport = "stdio"
    mode = "auto"

    # -- connecting ---------------------------------------------------------

    @asynccontextmanager
    async def connect(self, *extra: str, watch_changes: bool = False) -> AsyncIterator[Session]:
        name, did = self.mesh.new_identity("mcp")
        send, receive = anyio.create_memory_object_stream[object](100)
        with send, receive:
            async with self._connected(name, did, extra, send, receive, watch_changes) as session:
                yield session

    @asynccontextmanager
    async def _connected(self, name, did, extra, send, receive, watch_changes) -> AsyncIterator[Session]:
        """The session over this class's transport; list changes go to `send`."""

        async def on_message(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                    send.send_nowait(message)

        if self.transport == "stdio":
            log = self.mesh.dir / f"{name}-mcp-stdio.log"
            params = StdioServerParameters(
                command=MESHCTL, args=self.mesh.args(name, "mcp", *extra)[1:]
            )
            with open(log, "w") as errlog:
                transport = stdio_client(params, errlog=errlog)
                async with Client(transport, mode=self.mode, message_handler=on_message) as client:
                    async with self._watching(client, Session(client, did, log, receive), send, watch_changes) as s:
                        yield s
        else:
            server = self.mesh.spawn(name, "mcp", "--listen", "127.0.0.1:0", *extra)
            url, token = await http_endpoint(server)
            async with httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {token}"}, timeout=STEP_TIMEOUT
            ) as http:
                transport = streamable_http_client(url, http_client=http)
                async with Client(transport, mode=self.mode, message_handler=on_message) as client:
                    async with self._watching(client, Session(client, did, server.log, receive), send, watch_changes) as s:
                        yield s

    @asynccontextmanager
    async def _watching(self, client: Client, session: Session, send, watch: bool) -> AsyncIterator[Session]:
        """In the 2026-07-28 era, list changes come through subscriptions/listen."""
        if not watch or client.protocol_version != "2026-07-28":
            yield session
            return
        async with anyio.create_task_group() as tg:
            async with client.listen(tools_list_changed=True) as sub:
                async def forward() -> None:
                    async for event in sub:
                        with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                            send.send_nowait(event)

                tg.start_soon(forward)
                yield session
                tg.cancel_scope.cancel()

    # -- the cases ----------------------------------------------------------

    async def test_lists_each_skill_of_live_agents_as_a_tool(self) -> None:
        async with self.connect() as s:
            if self.mode == "auto":
                self.assertEqual(s.client.protocol_version, "2026-07-28")
            else:
                self.assertEqual(s.client.protocol_version, "2025-11-25")
            self.assertTrue(s.client.server_capabilities.tools.list_changed)
            tools = await s.tools()
            self.assertIn(ECHO_TOOL, tools)
            self.assertIn(STREAM_TOOL, tools, "dots in skill ids become underscores")
            echo = tools[ECHO_TOOL]
            self.assertIn(ECHO, echo.description)
            self.assertIn("`echo`", echo.description)
            self.assertEqual(echo.input_schema["type"], "object")
            self.assertIn("body", echo.input_schema["properties"])
            for builtin in ("mesh__search", "mesh__request", "mesh__send_message"):
                self.assertIn(builtin, tools)
            self.assertNotIn("mesh__inbox", tools, "only with --receive")
            for name in tools:
                self.assertRegex(name, r"^[A-Za-z0-9_-]{1,64}$")
            self.assertFalse(any(short_id(s.did) in n for n in tools), "never our own tools")

    async def test_calls_a_live_agent_end_to_end(self) -> None:
        async with self.connect() as s:
            result = await s.call(ECHO_TOOL, {"body": "hello from the MCP Python SDK"})
            self.assertFalse(result.is_error, text_of(result))
            self.assertEqual(text_of(result), "hello from the MCP Python SDK")
            result = await s.call(ECHO_TOOL, {"body": {"question": 42}})
            self.assertEqual(json.loads(text_of(result)), {"question": 42})
            await agent_log_match(rf"^{s.short} echo \d+ B -> ok")

    async def test_streams_arrive_as_progress_then_as_the_result(self) -> None:
        async with self.connect() as s:
            progress: list[tuple[float, str | None]] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append((value, message))

            result = await s.call(STREAM_TOOL, {"body": "one two three"}, progress_callback=on_progress)
            self.assertFalse(result.is_error, text_of(result))
            self.assertEqual(text_of(result), "onetwothree")
            self.assertEqual(progress, [(1.0, "one"), (2.0, "two"), (3.0, "three")])

    async def test_cancelling_a_streaming_call_cancels_it_at_the_agent(self) -> None:
        async with self.connect() as s:
            words = " ".join(f"word{i}" for i in range(200))
            first = anyio.Event()

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                first.set()

            finished: list[types.CallToolResult] = []
            with anyio.fail_after(STEP_TIMEOUT):
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        finished.append(await s.client.call_tool(STREAM_TOOL, {"body": words}, progress_callback=on_progress))

                    tg.start_soon(call)
                    await first.wait()
                    tg.cancel_scope.cancel()
            self.assertEqual(finished, [], "the call was cancelled before it ended")
            size = len(words.encode())
            await agent_log_match(rf"^{s.short} echo\.stream {size} B -> cancelled after \d+ chunks")
            # The session is still good.
            result = await s.call(ECHO_TOOL, {"body": "still here"})
            self.assertEqual(text_of(result), "still here")

    async def test_search_finds_agents_and_names_their_tools(self) -> None:
        async with self.connect() as s:
            result = await s.call("mesh__search", {"capability": "echo", "online": True})
            self.assertFalse(result.is_error, text_of(result))
            items = result.structured_content["items"]
            echo = next(i for i in items if i["agentId"] == ECHO)
            self.assertTrue(echo["online"])
            tools = {skill["id"]: skill["tool"] for skill in echo["skills"]}
            self.assertEqual(tools, {"echo": ECHO_TOOL, "echo.stream": STREAM_TOOL})
            self.assertEqual(json.loads(text_of(result))["items"], items)

    async def test_request_reaches_any_capability(self) -> None:
        async with self.connect() as s:
            result = await s.call("mesh__request", {"peer": ECHO, "capability": "echo", "body": "via mesh__request"})
            self.assertEqual(text_of(result), "via mesh__request")
            # A listed agent may be named by its short id.
            result = await s.call("mesh__request", {"peer": ECHO_SHORT, "capability": "echo.stream", "body": "x y"})
            self.assertEqual(text_of(result), "xy")
            # The echo agent's ACL allows only what it serves: anything else
            # is denied before its handlers are even looked at.
            result = await s.call("mesh__request", {"peer": ECHO, "capability": "no-such-skill"})
            self.assertTrue(result.is_error)
            self.assertTrue(text_of(result).startswith("denied: "), text_of(result))
            self.assertEqual(result.structured_content["error"]["code"], "denied")

    async def test_unknown_tool_is_a_protocol_error(self) -> None:
        async with self.connect() as s:
            with self.assertRaises(MCPError) as caught:
                await s.call("000000000000__nothing")
            self.assertEqual(caught.exception.error.code, types.INVALID_PARAMS)
            self.assertIn("unknown tool", caught.exception.error.message)
            with self.assertRaises(MCPError):
                await s.call("mesh__inbox", {})  # not receiving
            # Still serving.
            self.assertIn(ECHO_TOOL, await s.tools())

    async def test_malformed_arguments_are_tool_errors(self) -> None:
        async with self.connect() as s:
            cases = [
                (ECHO_TOOL, {"text": "the body goes in `body`"}, "unexpected argument"),
                ("mesh__request", {"capability": "echo"}, "missing field `peer`"),
                ("mesh__request", {"peer": "not-a-did", "capability": "echo"}, "not an agent id"),
                ("mesh__request", {"peer": ECHO, "capability": "bad name!"}, "invalid capability"),
                ("mesh__search", {"limit": 0}, "limit"),
                ("mesh__search", {"colour": "red"}, "unknown field"),
                ("mesh__send_message", {"peer": ECHO, "text": 5}, "invalid arguments"),
            ]
            for tool, arguments, expected in cases:
                result = await s.call(tool, arguments)
                self.assertTrue(result.is_error, f"{tool} {arguments}")
                self.assertTrue(text_of(result).startswith("bad_request: "), text_of(result))
                self.assertIn(expected, text_of(result))
                self.assertEqual(result.structured_content["error"]["code"], "bad_request")

    async def test_tools_follow_presence_and_an_offline_agent_is_unreachable(self) -> None:
        async with self.connect(watch_changes=True) as s:
            agent, did = await self.mesh.echo_agent(label="comes and goes")
            tool = f"{short_id(did)}__echo"
            tools = await s.wait_for_tools(lambda t: tool in t)
            self.assertIn("comes and goes", tools[tool].title)
            result = await s.call(tool, {"body": "are you there?"})
            self.assertEqual(text_of(result), "are you there?")

            agent.kill()
            await s.wait_for_tools(lambda t: tool not in t)
            result = await s.call(tool, {"body": "and now?"})
            self.assertTrue(result.is_error)
            self.assertRegex(text_of(result), r"^unreachable: .*offline")

            # An agent the relay never saw cannot be reached either.
            _, stranger = self.mesh.new_identity("stranger")
            result = await s.call("mesh__request", {"peer": stranger, "capability": "echo", "timeout_ms": 10000})
            self.assertTrue(result.is_error)
            self.assertRegex(text_of(result), r"^(unreachable|timeout): ")

    async def test_an_agent_that_denies_us_is_a_clear_error(self) -> None:
        _, somebody = self.mesh.new_identity("friend")
        await self.mesh.echo_agent(allow=somebody, label="picky")
        async with self.connect(watch_changes=True) as s:
            tools = await s.wait_for_tools(lambda t: any(n.endswith("__echo") and n != ECHO_TOOL and "picky" in (t[n].title or "") for n in t))
            picky = next(n for n, t in tools.items() if "picky" in (t.title or "") and n.endswith("__echo"))
            result = await s.call(picky, {"body": "let me in"})
            self.assertTrue(result.is_error)
            self.assertTrue(text_of(result).startswith("denied: "), text_of(result))
            self.assertEqual(result.structured_content["error"]["code"], "denied")

    async def test_capability_and_agent_filters(self) -> None:
        async with self.connect("--capability", "echo.stream") as s:
            tools = await s.tools()
            self.assertIn(STREAM_TOOL, tools)
            self.assertNotIn(ECHO_TOOL, tools)
        async with self.connect("--agent", ECHO) as s:
            agent_tools = [n for n in await s.tools() if not n.startswith("mesh__")]
            self.assertEqual(sorted(agent_tools), [ECHO_TOOL, STREAM_TOOL])
        contacts = self.mesh.dir / "contacts.txt"
        contacts.write_text(f"# the live echo agent\n{ECHO}  echo\n")
        async with self.connect("--contacts", str(contacts), "--capability", "echo") as s:
            agent_tools = [n for n in await s.tools() if not n.startswith("mesh__")]
            self.assertEqual(agent_tools, [ECHO_TOOL])

    async def test_send_message_is_delivered(self) -> None:
        name, did = self.mesh.new_identity("listener")
        listener = self.mesh.spawn(name, "listen", "--anyone")
        await listener.wait_for(r"^listening as ")
        async with self.connect() as s:
            result = await s.call("mesh__send_message", {"peer": did, "text": "hello from an assistant"})
            self.assertFalse(result.is_error, text_of(result))
            self.assertEqual(result.structured_content["status"], "delivered")
            with anyio.fail_after(STEP_TIMEOUT):
                while f"{s.short}: hello from an assistant" not in (line := await anyio.to_thread.run_sync(listener.proc.stdout.readline)):
                    self.assertTrue(line, "the listener ended")

    async def test_inbox_and_reply_round_trip(self) -> None:
        async with self.connect("--receive", "--allow", "*", "--serve", "ask") as s:
            tools = await s.tools()
            self.assertIn("mesh__inbox", tools)
            self.assertIn("mesh__reply", tools)
            empty = await s.call("mesh__inbox", {})
            self.assertEqual(empty.structured_content["requests"], [])

            caller, caller_did = self.mesh.new_identity("caller")
            async with anyio.create_task_group() as tg:
                answers: list[Any] = []

                async def ask() -> None:
                    answers.append(await self.mesh.run_async(caller, "request", s.did, "ask", "what is 6 x 7?"))

                tg.start_soon(ask)
                inbox = await s.call("mesh__inbox", {"wait_ms": 20000})
                [request] = inbox.structured_content["requests"]
                self.assertEqual(request["from"], caller_did)
                self.assertEqual(request["capability"], "ask")
                self.assertEqual(request["body"], "what is 6 x 7?")
                self.assertGreater(request["expiresInMs"], 0)
                reply = await s.call("mesh__reply", {"id": request["id"], "body": "42"})
                self.assertFalse(reply.is_error, text_of(reply))
            [answer] = answers
            self.assertEqual(answer.returncode, 0, answer.stderr)
            self.assertEqual(answer.stdout, "42")

            # Answered requests are gone; a second reply is an error.
            again = await s.call("mesh__reply", {"id": request["id"], "body": "43"})
            self.assertTrue(again.is_error)
            self.assertIn("no request", text_of(again))

            # A refusal reaches the caller as handler_failed.
            async with anyio.create_task_group() as tg:
                answers.clear()

                async def ask_again() -> None:
                    answers.append(await self.mesh.run_async(caller, "request", s.did, "ask", "secret?"))

                tg.start_soon(ask_again)
                inbox = await s.call("mesh__inbox", {"wait_ms": 20000})
                [request] = inbox.structured_content["requests"]
                await s.call("mesh__reply", {"id": request["id"], "error": "I cannot say"})
            [answer] = answers
            self.assertNotEqual(answer.returncode, 0)
            self.assertIn("I cannot say", answer.stderr)

            # Chat from an allowed agent shows up once.
            sent = await self.mesh.run_async(caller, "send", s.did, "a note for the assistant")
            self.assertEqual(sent.returncode, 0, sent.stderr)
            inbox = await s.call("mesh__inbox", {"wait_ms": 5000})
            self.assertEqual([m["text"] for m in inbox.structured_content["messages"]], ["a note for the assistant"])
            inbox = await s.call("mesh__inbox", {})
            self.assertEqual(inbox.structured_content["messages"], [])

    async def test_unanswered_requests_time_out_and_the_acl_is_enforced(self) -> None:
        allowed, allowed_did = self.mesh.new_identity("allowed")
        async with self.connect("--receive", "--allow", allowed_did, "--reply-timeout", "1500") as s:
            answer = await self.mesh.run_async(allowed, "request", s.did, "ask", "anyone home?")
            self.assertNotEqual(answer.returncode, 0)
            self.assertRegex(answer.stderr, r"^error: .*timeout.*did not answer within 1500 ms")
            inbox = await s.call("mesh__inbox", {})
            self.assertEqual(inbox.structured_content["requests"], [], "the expired request is gone")
            late = await s.call("mesh__reply", {"id": "r1", "body": "sorry, late"})
            self.assertTrue(late.is_error)

            stranger, _ = self.mesh.new_identity("stranger")
            denied = await self.mesh.run_async(stranger, "request", s.did, "ask", "let me in")
            self.assertNotEqual(denied.returncode, 0)
            self.assertIn("denied", denied.stderr)
            inbox = await s.call("mesh__inbox", {})
            self.assertEqual(inbox.structured_content["requests"], [])

            other = await self.mesh.run_async(allowed, "request", s.did, "not-served", "?")
            self.assertNotEqual(other.returncode, 0)
            self.assertIn("denied", other.stderr, "only the served capabilities are allowed")


async def http_endpoint(server: Process) -> tuple[str, str]:
    """The URL and token a `meshctl mcp --listen` prints."""
    url = (await server.wait_for(r" at (http://\S+/mcp) as ")).group(1)
    token = (await server.wait_for(r"^token: ([0-9a-f]{64})$")).group(1)
    return url, token


class StdioTests(McpCases, MeshTestCase):
    transport = "stdio"
    mode = "auto"


class StdioLegacyTests(McpCases, MeshTestCase):
    transport = "stdio"
    mode = "legacy"


class HttpTests(McpCases, MeshTestCase):
    transport = "http"
    mode = "auto"

    async def test_the_token_is_required(self) -> None:
        name, _ = self.mesh.new_identity("mcp")
        server = self.mesh.spawn(name, "mcp", "--listen", "127.0.0.1:0")
        url, token = await http_endpoint(server)
        hello = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
        }
        headers = {"Accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient(timeout=STEP_TIMEOUT) as http:
            # A page that rebinds its own name to 127.0.0.1 is turned away.
            r = await http.post(url, json=hello, headers={**headers, "Host": "evil.example", "Authorization": f"Bearer {token}"})
            self.assertEqual(r.status_code, 403, r.text)
            for auth in (None, "Bearer " + "0" * 64, f"Basic {token}", f"Bearer {token}x"):
                h = dict(headers)
                if auth:
                    h["Authorization"] = auth
                r = await http.post(url, json=hello, headers=h)
                self.assertEqual(r.status_code, 401, auth)
                self.assertEqual(r.json()["error"]["code"], "not_authenticated")
                self.assertIn("Bearer", r.headers["www-authenticate"])
            ok = await http.post(url, json=hello, headers={**headers, "Authorization": f"Bearer {token}"})
            self.assertEqual(ok.status_code, 200, ok.text)

            # Garbage with the right token is refused, not a crash.
            session = ok.headers["mcp-session-id"]
            auth = {
                **headers,
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Mcp-Session-Id": session,
                "MCP-Protocol-Version": "2025-11-25",
            }
            bad = await http.post(url, content=b"{not json", headers=auth)
            self.assertEqual(bad.status_code // 100, 4, bad.text)
            done = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=auth)
            self.assertEqual(done.status_code // 100, 2, done.text)
            wrong_shape = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": ECHO_TOOL, "arguments": "oops"}}
            bad = await http.post(url, json=wrong_shape, headers=auth)
            self.assertLess(bad.status_code, 500, bad.text)
            self.assertRegex(bad.text, r'"error":\{"code":-326\d\d')
            listed = await http.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers=auth)
            self.assertIn(ECHO_TOOL, listed.text, "the session still works")
        # A token given by the operator is used instead.
        name, _ = self.mesh.new_identity("mcp")
        chosen = "my-own-token-of-at-least-32-characters"
        server = self.mesh.spawn(name, "mcp", "--listen", "127.0.0.1:0", "--token", chosen)
        url = (await server.wait_for(r" at (http://\S+/mcp) as ")).group(1)
        await server.wait_for(r"^token: as given")
        self.assertNotIn(chosen, server.text())
        async with httpx.AsyncClient(timeout=STEP_TIMEOUT) as http:
            r = await http.post(url, json=hello, headers={**headers, "Authorization": f"Bearer {chosen}"})
            self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(server.stop(), 0, server.text())

    async def test_a_second_process_with_our_identity_ends_us_with_the_reason(self) -> None:
        name, _ = self.mesh.new_identity("mcp")
        server = self.mesh.spawn(name, "mcp", "--listen", "127.0.0.1:0")
        await http_endpoint(server)
        usurper = self.mesh.spawn(name, "listen", "--anyone")
        await usurper.wait_for(r"^listening as ")
        with anyio.fail_after(STEP_TIMEOUT):
            while server.proc.poll() is None:
                await anyio.sleep(0.05)
        self.assertEqual(server.proc.returncode, 1)
        self.assertRegex(server.text(), r"(?m)^error: the mesh connection closed: replaced by another connection using this identity")

    async def test_refuses_to_listen_beyond_loopback(self) -> None:
        name, _ = self.mesh.new_identity("mcp")
        out = self.mesh.run(name, "mcp", "--listen", "0.0.0.0:0")
        self.assertNotEqual(out.returncode, 0)
        self.assertRegex(out.stderr, r"^error: refusing --listen 0\.0\.0\.0:0: only loopback")
        out = self.mesh.run(name, "mcp", "--listen", "127.0.0.1:0", "--token", "short")
        self.assertRegex(out.stderr, r"^error: the token is too short")


class HttpLegacyTests(McpCases, MeshTestCase):
    transport = "http"
    mode = "legacy"


class ReadmeExampleTests(MeshTestCase):
    """The `.mcp.json` in the README, run as an assistant would run it."""

    async def test_the_readme_mcp_json_runs_as_written(self) -> None:
        text = (HERE / "mcp.json").read_text()
        readme = (ROOT / "README.md").read_text()
        self.assertTrue(
            f"```json\n{text}```" in readme,
            "README.md must show crates/meshctl/tests/mcp/mcp.json verbatim in a ```json block",
        )
        entry = json.loads(text)["mcpServers"]["agent-mesh"]

        # The identity at the default path of a home directory, as after
        # `meshctl keygen`; `meshctl` found on PATH.
        home = self.mesh.dir / "home"
        out = subprocess_run([MESHCTL, "keygen"], env={"HOME": str(home), "PATH": os.environ["PATH"]})
        did = out.splitlines()[0]
        saved = {k: os.environ.get(k) for k in ("HOME", "PATH", "MESH_RELAY")}
        os.environ["HOME"] = str(home)
        os.environ["PATH"] = f"{Path(MESHCTL).parent}{os.pathsep}{os.environ['PATH']}"
        os.environ["MESH_RELAY"] = RELAY
        try:
            params = StdioServerParameters(
                command=entry["command"],
                args=[expand(a) for a in entry.get("args", [])],
                env={k: expand(v) for k, v in entry.get("env", {}).items()},
            )
            with open(self.mesh.dir / "readme-mcp.log", "w") as errlog:
                async with Client(stdio_client(params, errlog=errlog)) as client:
                    tools = {t.name for t in (await client.list_tools()).tools}
                    self.assertIn(ECHO_TOOL, tools)
                    result = await client.call_tool(ECHO_TOOL, {"body": "hi from .mcp.json"})
                    self.assertEqual(text_of(result), "hi from .mcp.json")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        await agent_log_match(rf"^{short_id(did)} echo \d+ B -> ok")


def expand(value: str) -> str:
    """`${VAR}` and `${VAR:-default}`, as Claude Code expands .mcp.json."""
    def one(m: re.Match[str]) -> str:
        return os.environ.get(m.group(1)) or (m.group(3) or "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", one, value)


def subprocess_run(args: list[str], env: dict[str, str]) -> str:
    import subprocess

    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=STEP_TIMEOUT, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    return out.stdout

