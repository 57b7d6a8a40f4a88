//! `diffuse serve`'s refusals: every kind of bad request gets a 4xx with a JSON error naming
//! the field (bad JSON, unknown fields and words, out-of-range numbers, a body over the limit,
//! corrupt uploads, unknown runs and paths), another origin gets 403, a full queue 429, and
//! the server keeps serving; bad flags are one-line errors.

mod common;

use base64::Engine as _;
use common::server::{respond, Server};

/// A raw HTTP/1.1 request to the server with the given head lines and body; the status and
/// the JSON body of the reply.
fn raw(
    server: &Server,
    request_line: &str,
    headers: &[String],
    body: &str,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let addr = server.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut head = format!("{request_line} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    let status = reply.split(' ').nth(1).unwrap().parse().unwrap();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn the_server_trusts_only_loopback_and_json() {
    let server = Server::start(&["--model", "shapes32"]);
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let ok = r#"{"prompt": "a red circle", "steps": 2}"#;
    let json = "Content-Type: application/json".to_string();
    // A page rebound to 127.0.0.1 sends its own name as Host, with a matching Origin.
    let evil = format!("evil.example:{port}");
    let (status, body) = raw(
        &server,
        "POST /api/generate",
        &[
            format!("Host: {evil}"),
            format!("Origin: http://{evil}"),
            json.clone(),
        ],
        ok,
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("evil.example"),
        "{body}"
    );
    for host in ["127.0.0.1", "localhost", "LOCALHOST"] {
        let (status, body) = raw(
            &server,
            "GET /api/model",
            &[format!("Host: {host}:{port}")],
            "",
        );
        assert_eq!(status, 200, "{host}: {body}");
    }
    // Only JSON bodies are read.
    let (status, body) = raw(
        &server,
        "POST /api/generate",
        &[
            format!("Host: 127.0.0.1:{port}"),
            "Content-Type: text/plain".into(),
        ],
        ok,
    );
    assert_eq!(status, 415, "{body}");
    assert!(body["error"].as_str().unwrap().contains("application/json"));
    // A known path with another method is a JSON 405.
    let (status, body) = raw(
        &server,
        "GET /api/generate",
        &[format!("Host: 127.0.0.1:{port}")],
        "",
    );
    assert_eq!(status, 405);
    assert!(body["error"].as_str().unwrap().contains("POST"), "{body}");
    // Type errors name their field.
    let gen = |body: &str| Server::json(server.post("/api/generate", body));
    for (body, field) in [
        (r#"{"prompt": "a red circle", "seed": -1}"#, "seed"),
        (
            r#"{"prompt": "a red circle", "seed": 18446744073709551616}"#,
            "seed",
        ),
        (
            r#"{"prompt": "a red circle", "guidance": "NaN"}"#,
            "guidance",
        ),
        (r#"{"prompt": 7}"#, "prompt"),
    ] {
        let (status, reply) = gen(body);
        assert_eq!(
            (status, reply["field"].as_str()),
            (400, Some(field)),
            "{body}: {reply}"
        );
    }
}

#[test]
fn runs_never_streamed_are_counted_when_they_expire() {
    let server = Server::start(&["--model", "shapes32", "--claim-seconds", "1"]);
    let (status, _) =
        Server::json(server.post("/api/generate", r#"{"prompt": "red", "steps": 2}"#));
    assert_eq!(status, 200);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (_, s) = Server::json(server.get("/api/status"));
    assert_eq!(
        (s["expired"].as_u64(), s["unclaimed"].as_u64()),
        (Some(1), Some(0)),
        "{s}"
    );
}

/// A POST to /api/noise that declares a `len`-byte body and sends only its start: a body over
/// the limit is refused from its headers, without being read.
fn declared_too_large(server: &Server, len: usize) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let addr = server.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /api/noise HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n{{\"t\": 1, \"image\": \"AAAA"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    let status = reply.split(' ').nth(1).unwrap().parse().unwrap();
    let body = reply.split("\r\n\r\n").nth(1).unwrap();
    (status, serde_json::from_str(body).unwrap())
}

#[test]
fn bad_requests_get_a_4xx_naming_the_field_and_the_server_keeps_serving() {
    let server = Server::start(&["--model", "shapes32", "--queue", "2"]);
    let gen = |body: &str| Server::json(server.post("/api/generate", body));
    let noise = |body: &str| Server::json(server.post("/api/noise", body));
    let corrupt = format!(
        r#"{{"t": 1, "image": "data:image/png;base64,{}"}}"#,
        base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nnot really")
    );
    let cases: Vec<((u16, serde_json::Value), u16, &str)> = vec![
        (gen("{not json"), 400, "body"),
        (gen(r#"{"prompt": "a purple cat"}"#), 400, "prompt"),
        (
            gen(r#"{"prompt": "a red circle", "steps": 0}"#),
            400,
            "steps",
        ),
        (
            gen(r#"{"prompt": "a red circle", "steps": 1001}"#),
            400,
            "steps",
        ),
        (
            gen(r#"{"prompt": "a red circle", "num_images": 5}"#),
            400,
            "num_images",
        ),
        (
            gen(r#"{"prompt": "a red circle", "guidance": -1}"#),
            400,
            "guidance",
        ),
        (
            gen(r#"{"prompt": "a red circle", "sampler": "euler"}"#),
            400,
            "sampler",
        ),
        (
            gen(r#"{"prompt": "a red circle", "colour": "red"}"#),
            400,
            "colour",
        ),
        (
            gen(r#"{"prompt": "a red circle", "attention": true}"#),
            400,
            "attention",
        ),
        (
            gen(r#"{"prompt": "a red circle", "compare": {"seed": [1]}}"#),
            400,
            "compare",
        ),
        (gen(r#"{"steps": 3}"#), 400, "prompt"),
        (declared_too_large(&server, 9 << 20), 413, ""),
        (noise(&corrupt), 400, "image"),
        (noise(r#"{"t": 1, "image": "%%%"}"#), 400, "image"),
        (noise(r#"{"t": 1000}"#), 400, "t"),
        (noise(r#"{"t": 1, "picture": "moon"}"#), 400, "picture"),
        (noise(r#"{"t": 1, "schedule": "zigzag"}"#), 400, "schedule"),
        (Server::json(server.get("/api/jobs/123/events")), 404, ""),
        (Server::json(server.get("/api/jobs/x/events")), 404, ""),
        (Server::json(server.get("/../../etc/passwd")), 404, ""),
    ];
    for (i, ((status, body), want, field)) in cases.into_iter().enumerate() {
        assert_eq!(status, want, "case {i}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "case {i}: {body}"
        );
        if !field.is_empty() {
            assert_eq!(body["field"], field, "case {i}: {body}");
        }
    }
    // Another origin is refused.
    let r = ureq::get(&format!("{}/api/model", server.url))
        .set("Origin", "http://example.com")
        .call();
    assert_eq!(Server::json(respond(r)).0, 403);
    // A full queue answers 429.
    let ok = r#"{"prompt": "a red circle", "steps": 2}"#;
    assert_eq!(gen(ok).0, 200);
    assert_eq!(gen(ok).0, 200);
    let (status, body) = gen(ok);
    assert_eq!(status, 429, "{body}");
    // Still serving.
    assert_eq!(Server::json(server.get("/api/model")).0, 200);
}

#[test]
fn bad_serve_flags_are_one_line_errors() {
    let o = common::diffuse(&["serve", "--model", "shapes32", "--queue", "0"]);
    common::assert_fails_with(&o, "--queue 0");
    let o = common::diffuse(&[
        "serve",
        "--model",
        "shapes32",
        "--host",
        "256.1.1.1",
        "--port",
        "0",
    ]);
    common::assert_fails_with(&o, "--host 256.1.1.1");
    // A port another server holds.
    let server = Server::start(&["--model", "shapes32"]);
    let port = server.url.rsplit(':').next().unwrap();
    let o = common::diffuse(&["serve", "--model", "shapes32", "--port", port]);
    common::assert_fails_with(&o, &format!("--port {port}"));
    let o = common::diffuse(&[
        "serve",
        "--model",
        "no-such-model.safetensors",
        "--port",
        "0",
    ]);
    common::assert_fails_with(&o, "no-such-model.safetensors");
}
