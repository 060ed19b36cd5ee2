//! Nothing acknowledged for storage is lost, even when the relay process is
//! killed with SIGKILL; revocation takes effect everywhere at once.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use mesh_core::frame::DeliveryStatus;
use mesh_core::revocation::Revocation;
use mesh_core::ErrorCode;

/// Starts the real `mesh-relay` binary on an ephemeral port; returns the
/// child and its ws URL (read from the line it prints).
fn spawn_relay(db: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mesh-relay"))
        .args(["--listen", "127.0.0.1:0", "--db", db, "--log", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("mesh-relay starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reads banner");
    let http = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    (
        child,
        format!("{}/v1/ws", http.replacen("http://", "ws://", 1)),
    )
}

#[tokio::test]
async fn sigkill_loses_no_frame_that_was_reported_queued() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db").to_string_lossy().to_string();
    let (mut child, url) = spawn_relay(&db);
    drop(Client::connect(&url, ident(2)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b_id = ident(2).agent_id();
    let mut a = Client::connect(&url, ident(1)).await;
    let mut queued = Vec::new();
    for i in 0..200u32 {
        let id = a.send_to(b_id, &i.to_be_bytes()).await;
        queued.push(id);
    }
    for id in &queued {
        assert_eq!(a.status_of(*id).await, DeliveryStatus::Queued);
    }
    // No graceful anything: SIGKILL right after the last "queued".
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let (mut child, url) = spawn_relay(&db);
    let mut b = Client::connect(&url, ident(2)).await;
    let mut got = Vec::new();
    while got.len() < queued.len() {
        let d = b.next_deliver().await;
        got.push(d.msg_id);
        b.ack(d.peer, d.msg_id).await;
    }
    assert_eq!(got, queued, "every queued frame, in order");
    child.kill().ok();
    child.wait().ok();
}

#[tokio::test]
async fn revocation_disconnects_refuses_purges_and_withdraws() {
    let r = relay().await;
    let url = r.ws_url();
    let victim = ident(5);
    let mut v = Client::connect(&url, victim.clone()).await;
    // A frame forwarded to the victim and not acknowledged when it is
    // revoked: it must not go to the (purged) inbox, and its sender hears
    // `refused revoked`, not `queued`.
    let mut a = Client::connect(&url, ident(1)).await;
    let pending = a.send_to(victim.agent_id(), b"in flight").await;
    assert_eq!(a.status_of(pending).await, DeliveryStatus::Forwarded);
    let _ = v.next_deliver().await;
    let card = mesh_core::AgentCard::builder(victim.agent_id(), &url, "Victim")
        .issued_at(1)
        .sign(&victim)
        .unwrap();
    let path = format!("/v1/agents/{}", victim.agent_id());
    let (status, body) = http(
        r.addr,
        "PUT",
        &path,
        &[("content-type", "application/json")],
        &card.to_json(),
    )
    .await;
    assert!(status == 201 || status == 200, "{status} {body}");
    let rev = Revocation::new(&victim, 2, "key compromised").unwrap();
    let (status, body) = http(
        r.addr,
        "POST",
        "/v1/revocations",
        &[("content-type", "application/json")],
        rev.to_json().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(v.closed().await, code(ErrorCode::Revoked));
    let err = Client::connect_with(&url, victim.clone(), None)
        .await
        .err()
        .unwrap();
    assert_eq!(err.code, ErrorCode::Revoked);
    let (status, _) = http(r.addr, "GET", &path, &[], b"").await;
    assert_eq!(status, 404, "card withdrawn");
    assert_eq!(
        a.status_of(pending).await,
        DeliveryStatus::Refused(ErrorCode::Revoked)
    );
    let id = a.send_to(victim.agent_id(), b"x").await;
    assert_eq!(
        a.status_of(id).await,
        DeliveryStatus::Refused(ErrorCode::Revoked)
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn registry_writes_are_rate_limited_per_address_but_reads_are_not() {
    let mut config = mesh_relay::config::Config::for_tests();
    config.http_writes_per_ip_per_sec = 1;
    config.http_writes_per_ip_burst = 2;
    let r = relay_with(config).await;
    let mut statuses = Vec::new();
    for n in 0..3u8 {
        let id = ident(100 + n);
        let card = mesh_core::AgentCard::builder(id.agent_id(), r.ws_url(), "Writer")
            .issued_at(1)
            .sign(&id)
            .unwrap();
        let path = format!("/v1/agents/{}", id.agent_id());
        statuses.push(http(r.addr, "PUT", &path, &[], &card.to_json()).await);
    }
    assert_eq!(statuses[0].0, 201);
    assert_eq!(statuses[1].0, 201);
    assert_eq!(statuses[2].0, 429, "{:?}", statuses[2]);
    assert!(statuses[2].1.contains("\"rate_limited\""));
    for _ in 0..5 {
        assert_eq!(http(r.addr, "GET", "/v1/agents", &[], b"").await.0, 200);
    }
    r.shutdown().await.unwrap();
}
