//! The real `meshctl` binary against a real relay on 127.0.0.1:0: every
//! command a person would type, as separate processes, with identities in a
//! temporary directory. Long-running commands (`serve`, `listen`) run as
//! child processes that are killed when the test ends, pass or fail.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use mesh_relay::config::Config;
use mesh_relay::RunningRelay;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// Longest wait for any one thing a child process prints.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// A relay and a directory of identity files.
struct Mesh {
    relay: RunningRelay,
    dir: tempfile::TempDir,
}

impl Mesh {
    async fn start() -> Mesh {
        Mesh {
            relay: mesh_relay::start(Config::for_tests())
                .await
                .expect("relay starts"),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn identity(&self, name: &str) -> PathBuf {
        self.dir.path().join("keys").join(name)
    }

    /// `meshctl --relay … --identity <name> args…`, isolated from the
    /// caller's environment and home directory.
    fn command(&self, name: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshctl"));
        cmd.arg("--relay")
            .arg(self.relay.ws_url())
            .arg("--identity")
            .arg(self.identity(name))
            .args(["--timeout", "10000"])
            .args(args)
            .env_remove("MESH_RELAY")
            .env_remove("MESH_IDENTITY")
            .env_remove("MESH_TIMEOUT_MS")
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, name: &str, args: &[&str]) -> Output {
        self.run_with_stdin(name, args, None).await
    }

    async fn run_with_stdin(&self, name: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = self.command(name, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("meshctl starts");
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(data).await.expect("stdin written");
        }
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("meshctl {args:?} did not finish"))
            .expect("meshctl ran")
    }

    /// Runs and insists on success; returns stdout.
    async fn ok(&self, name: &str, args: &[&str]) -> String {
        let out = self.run(name, args).await;
        assert!(
            out.status.success(),
            "meshctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs and insists on a failure reported as one `error:` line;
    /// returns that line.
    async fn fails(&self, name: &str, args: &[&str]) -> String {
        let out = self.run(name, args).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "meshctl {args:?} should fail; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let line = stderr.trim_end();
        assert!(
            line.starts_with("error: ") && !line.contains('\n'),
            "expected one error line, got {stderr:?}"
        );
        line.to_string()
    }

    /// Creates identity `name`; returns its did.
    async fn keygen(&self, name: &str) -> String {
        let out = self.ok(name, &["keygen"]).await;
        out.lines().next().expect("did line").to_string()
    }

    /// Starts a long-running `meshctl` (killed when the guard drops).
    fn spawn(&self, name: &str, args: &[&str]) -> Running {
        let mut child = self
            .command(name, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("meshctl starts");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        Running {
            child,
            stdout,
            stderr,
        }
    }
}

/// A background `meshctl`, killed on drop.
struct Running {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Lines<BufReader<ChildStderr>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Running {
    async fn stdout_line(&mut self) -> String {
        tokio::time::timeout(LINE_TIMEOUT, self.stdout.next_line())
            .await
            .expect("a line on stdout in time")
            .expect("stdout readable")
            .expect("stdout still open")
    }

    /// Reads stderr until a line contains `needle`; returns that line.
    async fn stderr_until(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout(LINE_TIMEOUT, self.stderr.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} on stderr; saw {seen:?}"))
                .expect("stderr readable");
            match line {
                Some(l) if l.contains(needle) => return l,
                Some(l) => seen.push(l),
                None => panic!("stderr closed before {needle:?}; saw {seen:?}"),
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn keygen_id_and_fingerprint() {
    let mesh = Mesh::start().await;
    let alice = mesh.keygen("alice").await;
    assert!(alice.starts_with("did:key:z6Mk"), "{alice}");
    #[cfg(unix)]
    {
        assert_eq!(mode(&mesh.identity("alice")), 0o600);
        assert_eq!(mode(&mesh.dir.path().join("keys")), 0o700);
    }

    // Never silently replaced; --force does replace it.
    let refused = mesh.fails("alice", &["keygen"]).await;
    assert!(
        refused.contains("already exists") && refused.contains("--force"),
        "{refused}"
    );
    assert_eq!(
        mesh.ok("alice", &["id"]).await.lines().next(),
        Some(alice.as_str())
    );
    let replaced = mesh.ok("alice", &["keygen", "--force"]).await;
    let alice = replaced.lines().next().expect("did").to_string();
    #[cfg(unix)]
    assert_eq!(mode(&mesh.identity("alice")), 0o600);

    let id: Value = serde_json::from_str(&mesh.ok("alice", &["id", "--json"]).await).expect("json");
    assert_eq!(id["agentId"], alice.as_str());
    let short = id["short"].as_str().expect("short").to_string();
    assert_eq!(short.len(), 12);
    assert!(mesh.ok("alice", &["id"]).await.contains(&short));

    // The safety number is the same from both sides.
    let bob = mesh.keygen("bob").await;
    let from_alice = mesh.ok("alice", &["fingerprint", &bob]).await;
    let from_bob = mesh.ok("bob", &["fingerprint", &alice]).await;
    assert_eq!(from_alice, from_bob);
    let digits: Vec<&str> = from_alice.split_whitespace().collect();
    assert_eq!(digits.len(), 12);
    assert!(digits
        .iter()
        .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
    let json: Value =
        serde_json::from_str(&mesh.ok("bob", &["fingerprint", "--json", &alice]).await)
            .expect("json");
    assert_eq!(json["safetyNumber"], digits.join(" "));

    // Errors are one readable line.
    let no_key = mesh.fails("nobody", &["id"]).await;
    assert!(no_key.contains("meshctl keygen"), "{no_key}");
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_search_and_unpublish() {
    let mesh = Mesh::start().await;
    let alice = mesh.keygen("alice").await;
    let bob = mesh.keygen("bob").await;
    mesh.ok(
        "alice",
        &[
            "publish",
            "--name",
            "Echo bot",
            "--description",
            "Says it back",
            "--skill",
            "echo:test,demo",
            "--skill",
            "echo.stream",
            "--streaming",
        ],
    )
    .await;
    let card = mesh.dir.path().join("card.toml");
    std::fs::write(
        &card,
        "name = \"Summarizer\"\n[[skills]]\nid = \"summarize\"\ntags = [\"text\"]\n\
         inputSchema = { type = \"object\" }\n",
    )
    .expect("card written");
    mesh.ok(
        "bob",
        &["publish", "--card", card.to_str().expect("utf-8 path")],
    )
    .await;

    let found: Value = serde_json::from_str(
        &mesh
            .ok("bob", &["search", "--capability", "echo", "--json"])
            .await,
    )
    .expect("json");
    let items = found["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{found}");
    assert_eq!(items[0]["card"]["mesh"]["agentId"], alice.as_str());
    assert_eq!(items[0]["card"]["name"], "Echo bot");
    assert_eq!(
        items[0]["card"]["skills"][0]["tags"],
        json!(["test", "demo"])
    );
    assert_eq!(items[0]["presence"]["online"], false);

    // Tag search, free text, paging through everything, the table.
    let by_tag: Value = serde_json::from_str(
        &mesh
            .ok("bob", &["discover", "--capability", "text", "--json"])
            .await,
    )
    .expect("json");
    assert_eq!(by_tag["items"][0]["card"]["mesh"]["agentId"], bob.as_str());
    let all: Value = serde_json::from_str(
        &mesh
            .ok("bob", &["search", "--limit", "1", "--all", "--json"])
            .await,
    )
    .expect("json");
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2), "{all}");
    let table = mesh.ok("bob", &["search", "--query", "summar"]).await;
    assert!(
        table.contains("Summarizer") && table.contains("summarize"),
        "{table}"
    );
    assert!(!table.contains("Echo bot"), "{table}");

    // A bad card file is refused with the reason.
    std::fs::write(&card, "name = \"x\"\nnmae = \"typo\"\n").expect("written");
    let err = mesh
        .fails(
            "bob",
            &["publish", "--card", card.to_str().expect("utf-8 path")],
        )
        .await;
    assert!(err.contains("nmae"), "{err}");
    // So is a number the card verifier would refuse, before anything is sent.
    std::fs::write(
        &card,
        "name = \"x\"\n[[skills]]\nid = \"s\"\ninputSchema = { type = \"number\", maximum = 0.30000000000000004 }\n",
    )
    .expect("written");
    let err = mesh
        .fails(
            "bob",
            &["publish", "--card", card.to_str().expect("utf-8 path")],
        )
        .await;
    assert!(
        err.contains("inputSchema") && err.contains("15 significant digits"),
        "{err}"
    );

    mesh.ok("alice", &["unpublish"]).await;
    let after: Value = serde_json::from_str(
        &mesh
            .ok("bob", &["search", "--capability", "echo", "--json"])
            .await,
    )
    .expect("json");
    assert_eq!(after["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_echo_answers_requests_and_streams() {
    let mesh = Mesh::start().await;
    let _alice = mesh.keygen("alice").await;
    let bob = mesh.keygen("bob").await;
    let mut server = mesh.spawn("bob", &["serve", "--echo", "--allow", "*"]);
    let banner = server.stderr_until("serving").await;
    assert!(banner.contains("echo, echo.stream"), "{banner}");

    assert_eq!(
        mesh.ok("alice", &["request", &bob, "echo", "hello mesh"])
            .await,
        "hello mesh"
    );
    let piped = mesh
        .run_with_stdin(
            "alice",
            &["request", &bob, "echo", "-"],
            Some(b"from\nstdin\0"),
        )
        .await;
    assert!(piped.status.success());
    assert_eq!(piped.stdout, b"from\nstdin\0");
    let logged = server.stderr_until("echo").await;
    assert!(logged.contains("ok"), "{logged}");

    let streamed = mesh
        .ok("alice", &["stream", &bob, "echo.stream", "one two three"])
        .await;
    assert_eq!(streamed, "one\ntwo\nthree\n");
    let json_lines = mesh
        .ok("alice", &["stream", "--json", &bob, "echo.stream", "a b"])
        .await;
    let chunks: Vec<Value> = json_lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        chunks,
        vec![
            json!({"seq": 0, "body": "a"}),
            json!({"seq": 1, "body": "b"})
        ]
    );

    // A capability the ACL does not allow: one error line, non-zero exit.
    let denied = mesh.fails("alice", &["request", &bob, "secret", "x"]).await;
    assert!(denied.contains("denied"), "{denied}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_on_a_stream_cancels_it_at_the_peer() {
    let mesh = Mesh::start().await;
    let _alice = mesh.keygen("alice").await;
    let bob = mesh.keygen("bob").await;
    let mut server = mesh.spawn("bob", &["serve", "--echo", "--allow", "*"]);
    server.stderr_until("serving").await;
    let words = vec!["word"; 400].join(" ");
    let mut stream = mesh.spawn("alice", &["stream", &bob, "echo.stream", &words]);
    assert_eq!(stream.stdout_line().await, "word");
    let sent = std::process::Command::new("kill")
        .args(["-INT", &stream.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = tokio::time::timeout(LINE_TIMEOUT, stream.child.wait())
        .await
        .expect("exits after Ctrl-C")
        .expect("exit status");
    assert_eq!(status.code(), Some(130));
    let logged = server.stderr_until("echo.stream").await;
    assert!(logged.contains("cancelled after"), "{logged}");
}

#[tokio::test(flavor = "multi_thread")]
async fn send_and_listen_round_trip() {
    let mesh = Mesh::start().await;
    let alice = mesh.keygen("alice").await;
    let bob = mesh.keygen("bob").await;
    let mut listener = mesh.spawn("bob", &["listen", "--anyone", "--json"]);
    listener.stderr_until("listening").await;

    let sent = mesh.ok("alice", &["send", &bob, "hi bob"]).await;
    assert!(sent.starts_with("delivered"), "{sent}");
    let got: Value = serde_json::from_str(&listener.stdout_line().await).expect("json line");
    assert_eq!(got["type"], "message");
    assert_eq!(got["from"], alice.as_str());
    assert_eq!(got["text"], "hi bob");
    assert_eq!(got["allowed"], true);
    // 63-bit ids travel as strings, exact in every JSON reader.
    let id = got["msgId"].as_str().expect("msgId is a string");
    assert!(id.parse::<u64>().is_ok(), "{id}");

    let sent: Value =
        serde_json::from_str(&mesh.ok("alice", &["send", "--json", &bob, "again"]).await)
            .expect("json");
    assert_eq!(sent["status"], "delivered");
    let got: Value = serde_json::from_str(&listener.stdout_line().await).expect("json line");
    assert_eq!(got["text"], "again");

    // Listening needs a rule: chat is default-deny.
    let err = mesh.fails("bob", &["listen"]).await;
    assert!(err.contains("--anyone") || err.contains("--from"), "{err}");
}

/// A tiny HTTP service: answers each POST with a JSON echo of what it got
/// (`{"received": <body>, "contentType": <header>}`), or a 500 when the
/// forwarded capability is `boom`.
async fn http_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body_at, len) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let len = header(&head, "content-length").parse().unwrap_or(0);
                        break (head, i + 4, len);
                    }
                };
                while buf.len() < body_at + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let received: Value =
                    serde_json::from_slice(&buf[body_at..body_at + len]).unwrap_or(Value::Null);
                let (status, reply) = if received["capability"] == "boom" {
                    ("500 Internal Server Error", "backend exploded".to_string())
                } else {
                    let ct = header(&head, "content-type");
                    (
                        "200 OK",
                        json!({"received": received, "contentType": ct}).to_string(),
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

fn header(head: &str, name: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_forward_posts_to_a_local_http_service() {
    let mesh = Mesh::start().await;
    let alice = mesh.keygen("alice").await;
    let bob = mesh.keygen("bob").await;
    let _carol = mesh.keygen("carol").await;
    let backend = http_backend().await;
    let url = format!("http://{backend}/mesh");
    let mut server = mesh.spawn(
        "bob",
        &[
            "serve",
            "--forward",
            &url,
            "--capability",
            "summarize",
            "--capability",
            "boom",
            "--allow",
            &alice,
        ],
    );
    server.stderr_until("serving").await;

    let answer: Value = serde_json::from_str(
        &mesh
            .ok(
                "alice",
                &["request", &bob, "summarize", r#"{"text": "long story"}"#],
            )
            .await,
    )
    .expect("the backend's JSON, verbatim");
    assert_eq!(
        answer,
        json!({
            "received": {"from": alice, "capability": "summarize", "body": {"text": "long story"}},
            "contentType": "application/json",
        })
    );
    let plain: Value = serde_json::from_str(
        &mesh
            .ok("alice", &["request", &bob, "summarize", "not json"])
            .await,
    )
    .expect("json");
    assert_eq!(plain["received"]["body"], "not json");

    let failed = mesh.fails("alice", &["request", &bob, "boom", "{}"]).await;
    assert!(
        failed.contains("HTTP 500") && failed.contains("backend exploded"),
        "{failed}"
    );
    // Only alice is allowed.
    let denied = mesh
        .fails("carol", &["request", &bob, "summarize", "{}"])
        .await;
    assert!(denied.contains("denied"), "{denied}");
    let logged = server.stderr_until("boom").await;
    assert!(logged.contains("HTTP 500"), "{logged}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_publishes_the_capabilities_a_card_can_list_and_serves_all() {
    let mesh = Mesh::start().await;
    let alice = mesh.keygen("alice").await;
    let bob = mesh.keygen("bob").await;
    let url = format!("http://{}/mesh", http_backend().await);
    // A valid capability name, but too long for a skill id (64).
    let long = "l".repeat(70);
    let mut server = mesh.spawn(
        "bob",
        &[
            "serve",
            "--forward",
            &url,
            "--capability",
            "short",
            "--capability",
            &long,
            "--allow",
            &alice,
            "--publish-card",
        ],
    );
    let warning = server.stderr_until("not a valid skill id").await;
    assert!(warning.contains(&long), "{warning}");
    server.stderr_until("published our card").await;
    let found: Value = serde_json::from_str(
        &mesh
            .ok("alice", &["search", "--capability", "short", "--json"])
            .await,
    )
    .expect("json");
    assert_eq!(
        found["items"][0]["card"]["mesh"]["agentId"],
        bob.as_str(),
        "{found}"
    );
    assert_eq!(
        found["items"][0]["card"]["skills"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    let answer: Value =
        serde_json::from_str(&mesh.ok("alice", &["request", &bob, &long, "{}"]).await)
            .expect("the backend's JSON");
    assert_eq!(answer["received"]["capability"], long.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_forward_reports_an_unreachable_backend_and_acl_files_work() {
    let mesh = Mesh::start().await;
    let alice = mesh.keygen("alice").await;
    let bob = mesh.keygen("bob").await;
    mesh.keygen("carol").await;
    // A port that was free a moment ago: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", closed.local_addr().expect("addr"));
    drop(closed);
    let acl = mesh.dir.path().join("acl.toml");
    std::fs::write(
        &acl,
        format!("[[rule]]\nsource = \"{alice}\"\ncapabilities = [\"ask\"]\naction = \"allow\"\n"),
    )
    .expect("acl written");
    let mut server = mesh.spawn(
        "bob",
        &[
            "serve",
            "--forward",
            &url,
            "--capability",
            "ask",
            "--acl",
            acl.to_str().expect("utf-8"),
        ],
    );
    server.stderr_until("serving").await;
    let err = mesh.fails("alice", &["request", &bob, "ask", "hi"]).await;
    assert!(err.contains("backend unreachable"), "{err}");
    let err = mesh.fails("carol", &["request", &bob, "ask", "hi"]).await;
    assert!(err.contains("denied"), "{err}");

    // The file is watched: allowing carol takes effect without a restart.
    std::fs::write(
        &acl,
        "[[rule]]\nsource = \"*\"\ncapabilities = [\"ask\"]\naction = \"allow\"\n",
    )
    .expect("acl rewritten");
    server.stderr_until("ACL reloaded").await;
    let err = mesh.fails("carol", &["request", &bob, "ask", "hi"]).await;
    assert!(err.contains("backend unreachable"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_to_start_without_access_rules() {
    let mesh = Mesh::start().await;
    mesh.keygen("bob").await;
    let err = mesh.fails("bob", &["serve", "--echo"]).await;
    assert!(
        err.contains("denied by default") && err.contains("--allow"),
        "{err}"
    );
    let err = mesh
        .fails(
            "bob",
            &["serve", "--forward", "http://127.0.0.1:9/", "--allow", "*"],
        )
        .await;
    assert!(err.contains("--capability"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_revoke() {
    let mesh = Mesh::start().await;
    let alice = mesh.keygen("alice").await;
    let bob = mesh.keygen("bob").await;
    let status: Value =
        serde_json::from_str(&mesh.ok("alice", &["status", "--json"]).await).expect("json");
    assert_eq!(
        status["relay"]["relayId"],
        mesh.relay.state.relay_id.to_did().as_str()
    );
    assert_eq!(status["agentId"], alice.as_str());
    assert_eq!(status["card"], Value::Null);
    mesh.ok("alice", &["publish", "--name", "Alice"]).await;
    let human = mesh.ok("alice", &["status"]).await;
    assert!(human.contains("\"Alice\""), "{human}");

    let mut server = mesh.spawn("bob", &["serve", "--echo", "--allow", "*"]);
    server.stderr_until("serving").await;
    let refused = mesh.fails("alice", &["revoke", "--reason", "test"]).await;
    assert!(
        refused.contains("--yes") && refused.contains("permanent"),
        "{refused}"
    );
    // Nothing was revoked: the key still works.
    assert_eq!(mesh.ok("alice", &["request", &bob, "echo", "x"]).await, "x");

    mesh.ok("alice", &["revoke", "--reason", "test", "--yes"])
        .await;
    let err = mesh.fails("alice", &["request", &bob, "echo", "x"]).await;
    assert!(err.contains("revoked"), "{err}");
}
