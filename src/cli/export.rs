//! `diffuse export --diffusers DIR`: a diffuse model as a diffusers `UNet2DModel` folder.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::flags::{ModelFlag, OutputFlags};

#[derive(Args)]
pub struct ExportArgs {
    /// The folder to write (config.json, diffusion_pytorch_model.safetensors,
    /// scheduler_config.json).
    #[arg(long)]
    diffusers: PathBuf,
    #[command(flatten)]
    model: ModelFlag,
    #[command(flatten)]
    output: OutputFlags,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    let cpu = candle_core::Device::Cpu;
    let model = diffuse::model::load(args.model.model.as_deref(), &cpu)?;
    let weights = diffuse::model::weights(args.model.model.as_deref())?;
    let config =
        diffuse::model::folder::export_folder(&model, weights, &args.diffusers, args.output.force)?;
    args.output.print(&config, || {
        format!(
            "{} -> {} (UNet2DModel, {} classes)",
            model.name,
            args.diffusers.display(),
            config.num_class_embeds.unwrap_or(0)
        )
    })
}
