//! `mito server` as users run it: a real process on 127.0.0.1 with a port it chose, spoken
//! to over HTTP, stopped by its PID (SIGTERM for a clean stop, SIGKILL for a crash), its data
//! directory then read by `mito sql`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests assert by panicking"
)]

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::mito;
use test_util::http::{get, post, request};
use test_util::server::ServerProcess;

fn start(dir: &Path, args: &[&str]) -> ServerProcess {
    ServerProcess::start(Path::new(env!("CARGO_BIN_EXE_mito")), dir, args).unwrap()
}

fn sql(dir: &Path, query: &str) -> String {
    let o = mito(dir, &["sql", "--format", "csv", query]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    // The `gzip` tool, as a client would compress.
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    out
}

#[test]
fn writes_and_queries_over_http_then_a_clean_stop_keeps_everything() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("data");
    let server = start(&dir, &["--max-body", "64KiB"]);
    let a = server.addr;

    // 1.x write, second precision; 204 and nothing in the body.
    let r = post(
        a,
        "/write?db=mito&precision=s",
        &[],
        b"cpu,host=a usage=1 1\ncpu,host=b usage=2 1\n",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    // 2.x write of a gzip body.
    let r = post(
        a,
        "/api/v2/write?bucket=b&org=o&precision=ms",
        &[("Content-Encoding", "gzip")],
        &gzip(b"cpu,host=c usage=3 1000\n"),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    // Bad lines: 400 with their numbers and reasons; the valid line lands.
    let r = post(
        a,
        "/write?precision=s",
        &[],
        b"cpu,host=d usage=4 1\nnot a line\ncpu,host=e usage=\"text\" 1\n",
    );
    assert_eq!(r.status, 400);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let lines: Vec<u64> = body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3], "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("partial write"),
        "{body}"
    );
    // Strict: one bad line, nothing written.
    let r = post(
        a,
        "/write?precision=s&strict=true",
        &[],
        b"cpu,host=f usage=6 1\nbad\n",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("nothing written"), "{}", r.text());
    // Bad input of every kind gets a clear error, never a dropped connection.
    let big = vec![b'x'; 70 * 1024];
    assert_eq!(post(a, "/write", &[], &big).status, 413);
    let bomb = gzip(&vec![b'#'; 1 << 20]);
    assert_eq!(
        post(a, "/write", &[("Content-Encoding", "gzip")], &bomb).status,
        413
    );
    let r = post(a, "/write", &[("Content-Encoding", "gzip")], b"not gzip");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("gzip"), "{}", r.text());
    assert_eq!(
        post(a, "/write", &[("Content-Encoding", "br")], b"x").status,
        415
    );
    assert_eq!(post(a, "/write?precision=h", &[], b"").status, 400);
    let r = post(
        a,
        "/api/v1/prom/write",
        &[("Content-Encoding", "snappy")],
        b"\xff\xff\xff\xff\xff",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("snappy"), "{}", r.text());
    assert_eq!(get(a, "/nope").status, 404);

    // SQL: JSON by default, CSV, NDJSON, Arrow IPC; errors are 400 with the message.
    let r = get(
        a,
        "/v1/sql?sql=SELECT%20host,%20usage%20FROM%20cpu%20ORDER%20BY%20host",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let rows: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([
            {"host": "a", "usage": 1.0},
            {"host": "b", "usage": 2.0},
            {"host": "c", "usage": 3.0},
            {"host": "d", "usage": 4.0}
        ])
    );
    let r = post(
        a,
        "/v1/sql?format=csv",
        &[("Content-Type", "text/plain")],
        b"SELECT count(*) AS n FROM cpu",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "n\n4\n"));
    let r = post(
        a,
        "/v1/sql",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"sql=SELECT+host+FROM+cpu+WHERE+host+%3D+%27b%27&format=ndjson",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "{\"host\":\"b\"}\n"));
    let r = get(a, "/v1/sql?sql=SELECT%20*%20FROM%20cpu&format=arrow");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apache.arrow.stream")
    );
    // An IPC stream starts with the continuation marker and ends with the end-of-stream one.
    assert_eq!(r.body.get(..4), Some(&[0xff, 0xff, 0xff, 0xff][..]));
    assert_eq!(
        r.body.get(r.body.len() - 8..),
        Some(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0][..])
    );
    for bad in [
        "/v1/sql?sql=SELEC",
        "/v1/sql?sql=SELECT%20*%20FROM%20nope",
        "/v1/sql?sql=DROP%20TABLE%20cpu",
        "/v1/sql?sql=INSERT%20INTO%20cpu%20VALUES%20(1)",
        "/v1/sql",
        "/v1/sql?sql=SELECT%201&format=xml",
    ] {
        let r = get(a, bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(body["error"].is_string(), "{bad}: {body}");
    }

    // Metrics and liveness.
    let m = get(a, "/metrics");
    assert_eq!(m.status, 200);
    let text = m.text();
    for name in [
        "mito_write_rows_total{op=\"put\"} 4",
        "mito_wal_append_seconds_bucket",
        "mito_http_requests_total{route=\"/write\",status=\"204\"} 1",
        "mito_open_regions 1",
        "mito_query_seconds_count",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert_eq!(get(a, "/health").status, 200);
    assert_eq!(request(a, "HEAD", "/ping", &[], b"").unwrap().status, 204);

    // A second process on the same directory is refused, naming the lock.
    let second = ServerProcess::start(Path::new(env!("CARGO_BIN_EXE_mito")), &dir, &[]);
    let e = second.unwrap_err();
    assert!(e.contains("LOCK"), "{e}");

    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    // Flushed at the stop: the rows are in SST files, and every one is there.
    assert_eq!(sql(&dir, "SELECT count(*) FROM cpu"), "count(*)\n4\n");
    let o = mito(&dir, &["tables", "--format", "csv"]);
    let tables = String::from_utf8_lossy(&o.stdout).into_owned();
    let memtable_bytes = tables.lines().nth(1).unwrap().split(',').nth(4).unwrap();
    assert_eq!(memtable_bytes, "0", "{tables}");
}

#[test]
fn unsafe_or_bad_options_are_refused_before_anything_opens() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("data");
    let exe = env!("CARGO_BIN_EXE_mito");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(exe)
            .arg("--data-dir")
            .arg(&dir)
            .arg("server")
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--http", "0.0.0.0:0"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("without authentication"), "{err}");
    let config = work.path().join("mito.toml");
    std::fs::write(&config, "[http]\nadress = \"127.0.0.1:0\"\n").unwrap();
    let (code, err) = run(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("adress"), "{err}");
    let users = work.path().join("users");
    std::fs::write(&users, "alice:plain-password\n").unwrap();
    let (code, err) = run(&["--http", "127.0.0.1:0", "--users", users.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("line 1"), "{err}");
    assert!(!dir.exists(), "a refused start created the data directory");
}

#[test]
fn with_a_users_file_only_the_right_credentials_write_or_read() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("data");
    let mut add = std::process::Command::new(env!("CARGO_BIN_EXE_mito"))
        .args(["user", "add", "alice"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"wonder land\n")
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with("alice:SCRAM-SHA-256$4096:"), "{line}");
    assert!(!line.contains("wonder"), "the password is stored: {line}");
    let users = work.path().join("users");
    std::fs::write(&users, &line).unwrap();
    let server = start(&dir, &["--users", users.to_str().unwrap()]);
    let a = server.addr;
    let lp = b"m,t=x v=1 1\n";
    // No credentials, a wrong password, an unknown user: 401, nothing written.
    for auth in [
        None,
        Some("Basic YWxpY2U6d3Jvbmc="),
        Some("Token bob:wonder land"),
        Some("Bearer alice:wonder"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|v| ("Authorization", v)).into_iter().collect();
        let r = post(a, "/write", &headers, lp);
        assert_eq!(r.status, 401, "{auth:?}");
        assert!(r.header("www-authenticate").is_some());
    }
    assert_eq!(post(a, "/write?u=alice&p=nope", &[], lp).status, 401);
    assert_eq!(get(a, "/v1/sql?sql=SELECT%201").status, 401);
    assert_eq!(get(a, "/metrics").status, 401);
    assert_eq!(get(a, "/health").status, 200);
    // Basic (alice:wonder land), Token, and the 1.x query parameters.
    let basic = "Basic YWxpY2U6d29uZGVyIGxhbmQ=";
    assert_eq!(
        post(a, "/write", &[("Authorization", basic)], lp).status,
        204
    );
    assert_eq!(
        post(
            a,
            "/api/v2/write",
            &[("Authorization", "Token alice:wonder land")],
            b"m,t=y v=2 1\n"
        )
        .status,
        204
    );
    assert_eq!(
        post(a, "/write?u=alice&p=wonder+land", &[], b"m,t=z v=3 1\n").status,
        204
    );
    let r = request(
        a,
        "GET",
        "/v1/sql?sql=SELECT%20count(*)%20AS%20n%20FROM%20m&format=csv",
        &[("Authorization", basic)],
        b"",
    )
    .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "n\n3\n"));
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_query_past_its_timeout_gets_503_and_the_server_goes_on() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work.path().join("data"), &["--query-timeout", "300ms"]);
    let a = server.addr;
    let lines: String = (0..300).map(|i| format!("t,h=h{i} v={i} {i}\n")).collect();
    let r = post(a, "/write?precision=s", &[], lines.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    // 27 million joined rows: stopped by the timeout, a resource limit, so 503 (retry
    // later), not 400 (the statement is fine).
    let r = post(
        a,
        "/v1/sql",
        &[],
        b"SELECT sum(x.v * y.v * z.v) FROM t x, t y, t z",
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("timeout"), "{}", r.text());
    let r = post(a, "/write?precision=s", &[], b"t,h=late v=1 1000\n");
    assert_eq!(r.status, 204, "{}", r.text());
    let r = post(a, "/v1/sql?format=csv", &[], b"SELECT count(*) AS n FROM t");
    assert_eq!((r.status, r.text()), (200, "n\n301\n".to_string()));
    let (status, err) = server.terminate();
    assert!(status.success(), "{err}");
}

#[test]
fn a_slow_client_is_cut_off_and_others_are_served() {
    let work = tempfile::tempdir().unwrap();
    let server = start(&work.path().join("data"), &["--read-timeout", "1s"]);
    // Half a request line, then silence: the server closes the connection.
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"POST /write HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut rest = Vec::new();
    let closed = slow.read_to_end(&mut rest);
    assert!(closed.is_ok(), "{closed:?}");
    // A body that stops coming: 408.
    let mut stalled = std::net::TcpStream::connect(server.addr).unwrap();
    stalled
        .write_all(b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\ncpu,h=a")
        .unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stalled.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(get(server.addr, "/health").status, 200);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// Several writers post TSBS-like batches of 5,000 lines each while the server is killed
/// with SIGKILL at a random moment; after a restart every row of every batch that got a 204
/// is there, and nothing that was never sent.
#[test]
fn kill_9_during_writes_loses_no_acknowledged_row() {
    const WRITERS: usize = 3;
    const LINES: usize = 5_000;
    let seed: u64 = std::env::var("MITO_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    eprintln!("MITO_CRASH_SEED={seed}");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("data");
    let mut rng = seed;
    let mut next = || {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        rng >> 33
    };
    let mut acknowledged: HashSet<(usize, u64)> = HashSet::new();
    let mut sent: HashSet<(usize, u64)> = HashSet::new();
    for round in 0..3u64 {
        let server = start(&dir, &[]);
        let addr = server.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    let mut tried = Vec::new();
                    for batch in 0u64.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        // Batch timestamps are unique per writer, round and batch.
                        let base = (round * 1_000_000 + batch) * LINES as u64;
                        let mut body = String::new();
                        for i in 0..LINES as u64 {
                            body.push_str(&format!(
                                "cpu,hostname=host_{w},region=eu-west-1,datacenter=eu-west-1a,rack=42 usage_user={i}i,usage_system=0.5,usage_idle=99.5 {}\n",
                                base + i
                            ));
                        }
                        tried.push(base);
                        match request(addr, "POST", "/write", &[], body.as_bytes()) {
                            Ok(r) if r.status == 204 => acked.push(base),
                            Ok(r) => panic!("writer {w}: {} {}", r.status, r.text()),
                            Err(_) => break,
                        }
                    }
                    (w, acked, tried)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + next() % 2_000));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for h in writers {
            let (w, acked, tried) = h.join().unwrap();
            acknowledged.extend(acked.into_iter().map(|b| (w, b)));
            sent.extend(tried.into_iter().map(|b| (w, b)));
        }
    }
    // Every acknowledged batch whole; no row outside what was sent; no row twice.
    let out = sql(&dir, "SELECT hostname, CAST(time AS BIGINT) AS t FROM cpu");
    let mut rows: HashSet<(usize, u64)> = HashSet::new();
    let mut per_batch: std::collections::HashMap<(usize, u64), usize> = Default::default();
    let mut total = 0usize;
    for line in out.lines().skip(1) {
        let (h, t) = line.split_once(',').unwrap();
        let w: usize = h.strip_prefix("host_").unwrap().parse().unwrap();
        let t: u64 = t.parse().unwrap();
        let base = t - t % LINES as u64;
        assert!(sent.contains(&(w, base)), "row {line} was never sent");
        rows.insert((w, t));
        *per_batch.entry((w, base)).or_default() += 1;
        total += 1;
    }
    assert_eq!(rows.len(), total, "duplicated rows");
    for (w, base) in &acknowledged {
        assert_eq!(
            per_batch.get(&(*w, *base)).copied().unwrap_or(0),
            LINES,
            "acknowledged batch {base} of writer {w} is not whole (seed {seed})"
        );
    }
    assert!(!acknowledged.is_empty(), "no write was acknowledged");
    eprintln!(
        "{} acknowledged batches of {LINES} lines from {WRITERS} writers over 3 kills, all there ({total} rows)",
        acknowledged.len()
    );
}
