//! `diffuse serve` over HTTP: every endpoint, the event stream's order and count, the final
//! images against `diffuse generate`, cancel on disconnect and on SIGTERM, attention maps,
//! and a bounded load of 50 concurrent runs (bad requests: `serve_errors.rs`).

mod common;

use base64::Engine as _;
use common::server::{respond, Events, Server};

fn png_of(data_url: &str) -> image::RgbImage {
    let b64 = data_url.split_once(";base64,").unwrap().1;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    image::load_from_memory(&bytes).unwrap().to_rgb8()
}

/// Submits a run and returns its id.
fn submit(server: &Server, body: &str) -> u64 {
    let (status, json) = Server::json(server.post("/api/generate", body));
    assert_eq!(status, 200, "{json}");
    json["id"].as_u64().unwrap()
}

#[test]
fn the_page_and_every_endpoint_answer() {
    let server = Server::start(&["--model", "shapes32"]);
    for (path, kind, needle) in [
        ("/", "text/html", "diffuse playground"),
        ("/app.js", "text/javascript", "/api/generate"),
        ("/run.js", "text/javascript", "EventSource"),
        ("/style.css", "text/css", ".cards"),
    ] {
        let r = server.get(path);
        assert!(r.content_type().starts_with(kind), "{path}");
        assert!(r.into_string().unwrap().contains(needle), "{path}");
    }
    let (_, model) = Server::json(server.get("/api/model"));
    assert_eq!(model["resolution"], 32);
    assert_eq!(model["example"], "a red circle");
    assert_eq!(
        model["samplers"],
        serde_json::json!(["ddpm", "ddim", "dpm++2m"])
    );
    assert_eq!(model["defaults"]["steps"], 20);
    assert_eq!(model["vocabulary"][0][0], "colour");

    // The schedule curves equal the library's.
    let (_, curves) = Server::json(server.get("/api/schedule?schedule=cosine"));
    let cfg = diffuse::schedule::ScheduleConfig {
        beta_schedule: diffuse::schedule::BetaSchedule::Cosine,
        ..Default::default()
    };
    let lib = diffuse::schedule::NoiseSchedule::new(cfg).unwrap();
    let a = curves["alphas_cumprod"].as_array().unwrap();
    assert_eq!(a.len(), 1000);
    assert_eq!(a[500].as_f64().unwrap(), lib.alphas_cumprod[500]);
    assert_eq!(curves["snr"][999].as_f64().unwrap(), lib.snr(999));

    // Forward noising: t = 0 keeps the picture, ᾱ as the schedule says; the same seed gives
    // the same x_t.
    let (_, n) = Server::json(server.post("/api/noise", r#"{"t": 0, "picture": "scene"}"#));
    assert!(n["alpha_cumprod"].as_f64().unwrap() > 0.9998);
    let (_, n1) = Server::json(server.post("/api/noise", r#"{"t": 600, "seed": 3}"#));
    let (_, n2) = Server::json(server.post("/api/noise", r#"{"t": 600, "seed": 3}"#));
    assert_eq!(n1["x_t"], n2["x_t"]);
    assert_ne!(n1["x_t"], n1["x0"]);
    let (w, h) = (
        n1["width"].as_u64().unwrap(),
        n1["height"].as_u64().unwrap(),
    );
    assert!(w.max(h) <= 256, "{w}x{h}");
    assert_eq!(
        png_of(n1["x_t"].as_str().unwrap()).dimensions(),
        (w as u32, h as u32)
    );
    // An uploaded picture (a 3x2 PNG) comes back at its own size.
    let png =
        diffuse::render::png_bytes(&image::RgbImage::from_pixel(3, 2, image::Rgb([9, 200, 30])))
            .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(png);
    let body = format!(r#"{{"t": 10, "image": "data:image/png;base64,{b64}"}}"#);
    let (status, up) = Server::json(server.post("/api/noise", &body));
    assert_eq!(status, 200, "{up}");
    assert_eq!(
        (up["width"].as_u64(), up["height"].as_u64()),
        (Some(3), Some(2))
    );

    let (_, st) = Server::json(server.get("/api/status"));
    assert_eq!(st["capacity"], 8);
}

#[test]
fn a_run_streams_every_step_in_order_and_ends_as_generate_does() {
    let server = Server::start(&["--model", "shapes32"]);
    let id = submit(
        &server,
        r#"{"prompt": "a red circle", "steps": 6, "seed": 5, "num_images": 2}"#,
    );
    let mut events = Events::open(&server.url, id);
    let mut names = Vec::new();
    let mut last = None;
    while let Some((name, data)) = events.next_event() {
        if name == "step" {
            let k = names.iter().filter(|n| *n == "step").count() + 1;
            assert_eq!(data["step"], k);
            assert_eq!(data["steps"], 6);
            let col = &data["columns"][0];
            for view in ["x_t", "x0", "eps"] {
                assert_eq!(col[view].as_array().unwrap().len(), 2, "{view}");
                assert_eq!(
                    png_of(col[view][1].as_str().unwrap()).dimensions(),
                    (32, 32)
                );
            }
        }
        names.push(name.clone());
        if name == "done" {
            last = Some(data);
        }
    }
    let mut want = vec!["queued", "start"];
    want.extend(["step"; 6]);
    want.push("done");
    assert_eq!(names, want);
    let done = last.unwrap();
    // The final images are those `diffuse generate` draws with the same settings.
    let dir = tempfile::tempdir().unwrap();
    let o = common::diffuse(&[
        "--threads",
        "2",
        "-q",
        "generate",
        "--model",
        "shapes32",
        "--prompt",
        "a red circle",
        "--steps",
        "6",
        "--seed",
        "5",
        "--num-images",
        "2",
        "--frames",
        "2",
        "--out",
        common::s(dir.path()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for k in 0..2 {
        let cli = image::open(dir.path().join(format!("sample_{k:02}.png")))
            .unwrap()
            .to_rgb8();
        assert_eq!(
            png_of(done["finals"][0][k].as_str().unwrap()),
            cli,
            "image {k}"
        );
    }
    assert!(done["gifs"][0]
        .as_str()
        .unwrap()
        .starts_with("data:image/gif;base64,R0lG"));
    // The stream is taken once.
    let (status, err) = Server::json(server.get(&format!("/api/jobs/{id}/events")));
    assert_eq!(status, 404, "{err}");
}

#[test]
fn a_comparison_steps_its_columns_in_lockstep() {
    let server = Server::start(&["--model", "shapes32"]);
    let id = submit(
        &server,
        r#"{"prompt": "a blue star", "steps": 3, "seed": 2, "compare": {"guidance": [1, 3, 7]}}"#,
    );
    let mut events = Events::open(&server.url, id);
    let mut steps = 0;
    while let Some((name, data)) = events.next_event() {
        if name == "step" {
            steps += 1;
            assert_eq!(data["columns"].as_array().unwrap().len(), 3);
        }
        if name == "done" {
            let f = &data["finals"];
            assert_ne!(f[0][0], f[2][0], "guidance 1 and 7 drew the same image");
        }
    }
    assert_eq!(steps, 3);
}

#[test]
fn a_run_stops_when_its_client_goes_away() {
    let server = Server::start(&["--model", "shapes32"]);
    let id = submit(
        &server,
        r#"{"prompt": "a red circle", "steps": 1000, "seed": 1}"#,
    );
    {
        let mut events = Events::open(&server.url, id);
        let mut steps = 0;
        while steps < 2 {
            let (name, _) = events.next_event().unwrap();
            steps += usize::from(name == "step");
        }
    } // the connection closes here
    let began = std::time::Instant::now();
    loop {
        let (_, st) = Server::json(server.get("/api/status"));
        if st["cancelled"] == 1 && st["running"] == 0 {
            assert_eq!(st["finished"], 0);
            break;
        }
        assert!(began.elapsed().as_secs() < 60, "not cancelled: {st}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// 50 concurrent clients each ask for a run and stream it: every request is answered (run,
/// or refused with 429), nothing crashes, and the server's memory stays bounded.
#[test]
fn fifty_concurrent_runs_are_served_or_refused() {
    let server = Server::start(&["--model", "shapes32"]);
    let url = server.url.clone();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = format!(r#"{{"prompt": "a green cross", "steps": 3, "seed": {i}}}"#);
                let r = ureq::post(&format!("{url}/api/generate"))
                    .set("Content-Type", "application/json")
                    .send_string(&body);
                let (status, json) = Server::json(respond(r));
                if status != 200 {
                    return status;
                }
                let mut events = Events::open(&url, json["id"].as_u64().unwrap());
                let mut done = false;
                while let Some((name, _)) = events.next_event() {
                    done |= name == "done";
                }
                assert!(done, "run {i} did not finish");
                200
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let served = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(served + refused, 50, "{statuses:?}");
    assert!(served >= 8, "{statuses:?}");
    // A run's "done" event goes out just before its worker returns and is counted: wait
    // (at most 10 s) until no run is left running or queued.
    let began = std::time::Instant::now();
    let st = loop {
        let (_, st) = Server::json(server.get("/api/status"));
        let busy = st["running"].as_u64().unwrap() + st["queued"].as_u64().unwrap();
        if busy == 0 || began.elapsed().as_secs() >= 10 {
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(st["finished"].as_u64().unwrap() as usize, served, "{st}");
    assert_eq!(st["refused"].as_u64().unwrap() as usize, refused, "{st}");
    let peak = server.peak_rss_kib().unwrap_or(0);
    eprintln!(
        "load: {served} served, {refused} refused (429), peak RSS {} MiB",
        peak / 1024
    );
    assert!(peak < 1 << 20, "peak RSS {peak} KiB");
}

#[test]
fn a_text_model_run_ends_with_attention_maps_per_word() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/emoji64.safetensors");
    let server = Server::start(&["--model", model]);
    let (_, info) = Server::json(server.get("/api/model"));
    assert_eq!(info["prompts"], "text");
    assert_eq!(info["example"], "a cat with a computer");
    let held_out = info["held_out"].as_array().unwrap();
    assert!(held_out.contains(&serde_json::json!(["cat", "computer"])));
    let id = submit(
        &server,
        r#"{"prompt": "a cat with a computer", "steps": 2, "seed": 1, "attention": true}"#,
    );
    let mut events = Events::open(&server.url, id);
    let mut done = None;
    while let Some((name, data)) = events.next_event() {
        if name == "done" {
            done = Some(data);
        }
    }
    let maps = done.unwrap()["attention"].as_array().unwrap().clone();
    let words: Vec<&str> = maps.iter().map(|m| m[0].as_str().unwrap()).collect();
    assert_eq!(words, ["a", "cat", "with", "a", "computer"]);
    assert_eq!(
        png_of(maps[1][1].as_str().unwrap()).dimensions(),
        (256, 256)
    );
    assert_ne!(
        maps[1][1], maps[4][1],
        "'cat' and 'computer' have the same map"
    );
}

/// SIGTERM during a long run: the run stops at its next step and the server exits.
#[cfg(unix)]
#[test]
fn the_server_exits_promptly_on_sigterm_during_a_run() {
    let mut server = Server::start(&["--model", "shapes32"]);
    let id = submit(&server, r#"{"prompt": "a red circle", "steps": 1000}"#);
    let mut events = Events::open(&server.url, id);
    while events.next_event().is_some_and(|(name, _)| name != "step") {}
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let began = std::time::Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            began.elapsed().as_secs() < 30,
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    // The stream ended before the run's 1000 steps.
    let mut steps = 1;
    while let Some((name, _)) = events.next_event() {
        assert_ne!(name, "done");
        steps += usize::from(name == "step");
    }
    assert!(steps < 1000, "{steps}");
}
