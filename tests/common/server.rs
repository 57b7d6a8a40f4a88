//! A `diffuse serve` process for the HTTP tests: started on a free loopback port, stopped
//! when dropped; and a reader of its Server-Sent Events.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    /// Starts `diffuse -q serve --port 0` with `extra` flags and reads its address; without
    /// the start-up index of the training scenes, which only [`Server::start_indexed`]'s
    /// tests need (it would take the cores from the other tests).
    pub fn start(extra: &[&str]) -> Server {
        let mut args = extra.to_vec();
        args.push("--no-nearest-index");
        Self::start_indexed(&args)
    }

    /// Starts `diffuse -q serve --port 0` with `extra` flags, indexing as a user's server does.
    pub fn start_indexed(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_diffuse"))
            .args(["--threads", "2", "-q", "serve", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start diffuse serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("diffuse serve: ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Server { child, url }
    }

    /// GET `path`; any status.
    pub fn get(&self, path: &str) -> ureq::Response {
        respond(ureq::get(&format!("{}{path}", self.url)).call())
    }

    /// POST a JSON `body` to `path`; any status.
    pub fn post(&self, path: &str, body: &str) -> ureq::Response {
        respond(
            ureq::post(&format!("{}{path}", self.url))
                .set("Content-Type", "application/json")
                .send_string(body),
        )
    }

    /// The status and JSON body of a response.
    pub fn json(resp: ureq::Response) -> (u16, serde_json::Value) {
        let status = resp.status();
        let body: serde_json::Value = resp.into_json().expect("a JSON body");
        (status, body)
    }

    /// Peak resident memory of the server process in KiB (Linux).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The response of a request, whatever its status (a transport error panics).
pub fn respond(r: Result<ureq::Response, ureq::Error>) -> ureq::Response {
    match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    }
}

/// Reads SSE events (name, data) from a response body, one at a time.
pub struct Events {
    reader: BufReader<Box<dyn Read + Send + Sync>>,
}

impl Events {
    /// Opens run `id`'s stream on the server at `url`.
    pub fn open(url: &str, id: u64) -> Events {
        let r = ureq::get(&format!("{url}/api/jobs/{id}/events"))
            .call()
            .expect("event stream");
        assert!(r.content_type().starts_with("text/event-stream"));
        Events {
            reader: BufReader::new(r.into_reader()),
        }
    }

    /// The next event, or None at the end of the stream.
    pub fn next_event(&mut self) -> Option<(String, serde_json::Value)> {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() {
                    return Some((name, serde_json::from_str(&data).expect("JSON data")));
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
}
