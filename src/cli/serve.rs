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
}

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

/// Opens `url` with the system's opener; says so when there is none.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if std::process::Command::new(opener).arg(url).spawn().is_err() {
        eprintln!("note: --open: no browser opener ({opener}) here; open {url} yourself");
    }
}

pub fn run(args: &ServeArgs, ctx: &Context) -> Result<()> {
    if !(1..=MAX_QUEUE).contains(&args.queue) {
        super::usage!("--queue {} is out of range 1..={MAX_QUEUE}", args.queue);
    }
    let model = ctx.model(&args.device, &args.model)?;
    let name = model.name.clone();
    let opts = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        limits: Limits {
            queue: args.queue,
            ..Limits::default()
        },
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
