//! `diffuse serve`: the web playground on this machine. Parses the flags, loads the model,
//! starts tokio and the server, and prints the address.

use std::io::Write;

use anyhow::Result;
use clap::Args;

use diffuse::serve::{self, Limits, ServeOptions};

use super::flags::{DeviceFlag, ModelFlag};
use super::Context;

/// The most runs `--queue` may allow.
const MAX_QUEUE: usize = 256;

#[derive(Args)]
pub struct ServeArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = serve::DEFAULT_PORT)]
    port: u16,
    /// Address to listen on; the default, loopback, keeps the playground on this machine.
    #[arg(long, default_value = serve::DEFAULT_HOST)]
    host: String,
    #[command(flatten)]
    model: ModelFlag,
    #[command(flatten)]
    device: DeviceFlag,
    /// Open the page in a web browser, where one exists.
    #[arg(long)]
    open: bool,
    /// Runs accepted and not yet finished; more are refused with 429.
    #[arg(long, default_value_t = Limits::default().queue)]
    queue: usize,
    /// Seconds an accepted run waits for its event stream before it expires.
    #[arg(long, default_value_t = Limits::default().claim_seconds)]
    claim_seconds: u64,
    /// Do not index the model's training scenes at start-up (a background job of about half a
    /// minute on 2 cores for emoji64); the "Is it new?" button then says it is off.
    #[arg(long)]
    no_nearest_index: bool,
}

/// The longest `--claim-seconds`.
const MAX_CLAIM_SECONDS: u64 = 3600;

/// Resolves on Ctrl-C or SIGTERM; a second Ctrl-C while the server closes exits at once.
async fn shutdown_signal() {
    first_signal().await;
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}

async fn first_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Opens `url` with the system's opener, its output hidden; says so in one line when there
/// is none or it fails.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    use std::process::{Command, Stdio};
    let note = format!("note: --open: no browser opened ({opener}); open {url} yourself");
    let child = Command::new(opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Err(_) => eprintln!("{note}"),
        // Reaped on its own thread; a failed opener says so in one line.
        Ok(mut child) => {
            std::thread::spawn(move || {
                if !child.wait().is_ok_and(|s| s.success()) {
                    eprintln!("{note}");
                }
            });
        }
    }
}

pub fn run(args: &ServeArgs, ctx: &Context) -> Result<()> {
    if !(1..=MAX_QUEUE).contains(&args.queue) {
        super::usage!("--queue {} is out of range 1..={MAX_QUEUE}", args.queue);
    }
    if !(1..=MAX_CLAIM_SECONDS).contains(&args.claim_seconds) {
        let n = args.claim_seconds;
        super::usage!("--claim-seconds {n} is out of range 1..={MAX_CLAIM_SECONDS}");
    }
    let model = ctx.model(&args.device, &args.model)?;
    let name = model.name.clone();
    let opts = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        limits: Limits {
            queue: args.queue,
            claim_seconds: args.claim_seconds,
            ..Limits::default()
        },
        nearest_index: !args.no_nearest_index,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (open, quiet) = (args.open, !ctx.bars.visible);
    runtime.block_on(serve::serve(
        model,
        &opts,
        |addr| {
            let url = format!("http://{addr}/");
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "diffuse serve: {url}");
            let _ = out.flush();
            if !quiet {
                eprintln!("model: {name}; Ctrl-C stops the server");
            }
            if open {
                open_browser(&url);
            }
        },
        shutdown_signal(),
    ))?;
    Ok(())
}
