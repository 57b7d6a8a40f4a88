//! `diffuse models`: the built-in models with their vocabulary, resolution and size.

use std::io::Write;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct ModelsArgs {
    /// Print one JSON array instead of the list.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &ModelsArgs) -> Result<()> {
    let models = diffuse::model::builtin_summaries()?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&models)?)?;
        return Ok(());
    }
    for m in &models {
        let default = if m.default { " (default)" } else { "" };
        writeln!(out, "{}{default}: {}", m.name, m.about)?;
        writeln!(
            out,
            "  {} x {} px, {:.2} M parameters, {:.1} MB ({}), trained {}",
            m.resolution,
            m.resolution,
            m.parameters as f64 / 1e6,
            m.bytes as f64 / 1e6,
            m.file,
            diffuse::jobs::count(m.trained_steps, "step")
        )?;
        for (slot, words) in &m.vocabulary {
            writeln!(out, "  {slot}: {}", words.join(", "))?;
        }
        writeln!(out, "  use it with --model {}", m.name)?;
    }
    Ok(())
}
