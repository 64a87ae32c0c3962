//! etcd's own command-line client, etcdctl (v3 API), against d-engine-kv over a
//! single-process replica. Skipped, with a message, when etcdctl is not installed.

mod common;

use std::process::Stdio;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Runs `etcdctl <args>` against `server` with `stdin`; returns (success, stdout, stderr).
async fn etcdctl(server: &Server, args: &[&str], stdin: &str) -> (bool, String, String) {
    etcdctl_at(&format!("http://{}", server.address), args, stdin).await
}

/// Runs `etcdctl --endpoints=<endpoint> <args>` with `stdin`.
async fn etcdctl_at(endpoint: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["--dial-timeout=10s", "--command-timeout=10s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn etcdctl");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.expect("write stdin");
    drop(input);
    let output = child.wait_with_output().await.expect("etcdctl output");
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (output.status.success(), text(output.stdout), text(output.stderr))
}

async fn ok(server: &Server, args: &[&str]) -> String {
    ok_with_input(server, args, "").await
}

async fn ok_with_input(server: &Server, args: &[&str], stdin: &str) -> String {
    let (success, stdout, stderr) = etcdctl(server, args, stdin).await;
    assert!(success, "etcdctl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}");
    stdout
}

fn etcdctl_installed() -> bool {
    let found = std::process::Command::new("etcdctl").arg("version").output().is_ok_and(|out| out.status.success());
    if !found {
        eprintln!(
            "SKIPPED: etcdctl is not installed (Debian: apt-get install etcd-client); the etcdctl tests did not run"
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_put_get_del_and_prefix() {
    if !etcdctl_installed() {
        return;
    }
    let server = start_server().await;
    assert_eq!(ok(&server, &["put", "foo", "bar"]).await, "OK\n");
    assert_eq!(ok(&server, &["get", "foo"]).await, "foo\nbar\n");
    assert_eq!(ok(&server, &["put", "foo/a", "1"]).await, "OK\n");
    assert_eq!(ok(&server, &["put", "foo/b", "2"]).await, "OK\n");
    assert_eq!(ok(&server, &["get", "--prefix", "foo/"]).await, "foo/a\n1\nfoo/b\n2\n");
    assert_eq!(ok(&server, &["get", "--prefix", "--keys-only", "foo"]).await, "foo\n\nfoo/a\n\nfoo/b\n\n");
    let json = ok(&server, &["get", "--prefix", "--write-out=json", "foo"]).await;
    assert!(json.contains("\"count\":3"), "{json}");
    assert_eq!(ok(&server, &["get", "missing"]).await, "");
    assert_eq!(ok(&server, &["del", "foo"]).await, "1\n");
    assert_eq!(ok(&server, &["del", "--prefix", "foo/"]).await, "2\n");
    assert_eq!(ok(&server, &["get", "--from-key", ""]).await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_txn_runs_the_branch_its_compare_chooses() {
    if !etcdctl_installed() {
        return;
    }
    let server = start_server().await;
    assert_eq!(ok(&server, &["put", "foo", "bar"]).await, "OK\n");
    let script = "value(\"foo\") = \"bar\"\n\nput foo baz\nget foo\n\nput foo lost\n\n";
    assert_eq!(ok_with_input(&server, &["txn"], script).await, "SUCCESS\n\nOK\n\nfoo\nbaz\n");
    // The value is now "baz": the same script takes the failure branch.
    assert_eq!(ok_with_input(&server, &["txn"], script).await, "FAILURE\n\nOK\n");
    assert_eq!(ok(&server, &["get", "foo"]).await, "foo\nlost\n");
    let by_version = "version(\"foo\") > \"1\"\nmod(\"foo\") = \"3\"\ncreate(\"foo\") < \"2\"\n\ndel foo\n\n\n";
    assert_eq!(ok_with_input(&server, &["txn"], by_version).await, "SUCCESS\n\n1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_endpoint_status_and_member_list() {
    if !etcdctl_installed() {
        return;
    }
    let server = start_server().await;
    let (success, status, stderr) = etcdctl_at(&server.address.to_string(), &["endpoint", "status"], "").await;
    assert!(success, "{stderr}");
    let expected = format!(
        "{}, {:x}, {}, 4.1 kB, true, false, 1, 0, 0, \n",
        server.address,
        MEMBER_ID,
        d_engine_kv::SERVER_VERSION
    );
    assert_eq!(status, expected);
    let members = ok(&server, &["member", "list"]).await;
    assert_eq!(
        members,
        format!("{MEMBER_ID:x}, started, n1, http://127.0.0.1:2380, http://{}, false\n", server.address)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_reports_unsupported_commands_as_errors() {
    if !etcdctl_installed() {
        return;
    }
    let server = start_server().await;
    let (success, _, stderr) = etcdctl(&server, &["lease", "grant", "10"], "").await;
    assert!(!success);
    assert!(stderr.contains("LeaseGrant is not supported by d-engine-kv"), "stderr: {stderr}");
    let (success, _, stderr) = etcdctl(&server, &["put", "", "x"], "").await;
    assert!(!success);
    assert!(stderr.contains("key is not provided"), "stderr: {stderr}");
}
