//! diffuse's own pixel models as diffusers `UNet2DModel` folders: the same network under
//! diffusers' names (the fused q/k/v 1×1 convolution split into `to_q`/`to_k`/`to_v`, 1×1
//! convolutions as linear layers), the prompt slots folded into one class table
//! (`num_class_embeds` = the product of the slot sizes, each row the sum of its slots'
//! embeddings, so class = Σ id_i·Π_{j>i} n_j), and a `DDPMScheduler` config with the model's
//! schedule.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::json;

use super::config::UNet2DConfig;
use crate::error::{Error, Result};
use crate::io::{fs, safetensors};
use crate::schedule::{BetaSchedule, ScheduleConfig};
use crate::unet::UNetConfig;

fn refuse(reason: String) -> Error {
    Error::Unsupported(format!("cannot export to diffusers: {reason}"))
}

/// The `UNet2DModel` config of a diffuse UNet.
pub fn config_of(u: &UNetConfig) -> Result<UNet2DConfig> {
    if u.text.is_some() {
        return Err(refuse("a text model's prompts go through diffuse's own text encoder, which diffusers' UNet2DModel cannot take and UNet2DConditionModel would need as a separate CLIP-like encoder; only the UNet could be written, without its prompts. Slot models export: the built-in shapes32 (--model shapes32) and models trained on shapes or on a folder of pictures".into()));
    }
    let chans: Vec<usize> = u.channel_mult.iter().map(|m| u.base_channels * m).collect();
    let n = chans.len();
    let px = |level: usize| u.image_size >> level;
    let attn = |level: usize| u.attention_resolutions.contains(&px(level));
    // diffusers has one channels-per-head for every attention block: the middle one, and
    // every level with attention, must agree.
    let head_dim = chans[n - 1] / u.num_heads;
    if let Some(l) = (0..n).find(|&l| attn(l) && chans[l] / u.num_heads != head_dim) {
        return Err(refuse(format!("attention at {} px has {} channels per head, the middle block {head_dim}; diffusers needs one attention_head_dim", px(l), chans[l] / u.num_heads)));
    }
    let classes: usize = u.vocab.slots.iter().map(|s| s.words.len() + 1).product();
    let kind = |l: usize, down: bool| {
        match (attn(l), down) {
            (true, true) => "AttnDownBlock2D",
            (false, true) => "DownBlock2D",
            (true, false) => "AttnUpBlock2D",
            (false, false) => "UpBlock2D",
        }
        .to_string()
    };
    Ok(UNet2DConfig {
        sample_size: Some(u.image_size),
        in_channels: u.in_channels,
        out_channels: u.in_channels,
        down_block_types: (0..n).map(|l| kind(l, true)).collect(),
        up_block_types: (0..n).rev().map(|l| kind(l, false)).collect(),
        block_out_channels: chans,
        layers_per_block: u.num_res_blocks,
        attention_head_dim: Some(head_dim),
        norm_num_groups: u.groups,
        num_class_embeds: (!u.vocab.slots.is_empty()).then_some(classes),
        time_embedding_dim: Some(u.temb_dim()),
        ..UNet2DConfig::default()
    })
}

/// diffusers' name of one of diffuse's UNet weights (q/k/v are split by the caller).
fn rename(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    // The module path, block by block.
    let (mut path, rest): (Vec<String>, &[&str]) = match parts.as_slice() {
        ["time_in", rest @ ..] => (vec!["time_embedding.linear_1".into()], rest),
        ["time_out", rest @ ..] => (vec!["time_embedding.linear_2".into()], rest),
        ["norm_out", rest @ ..] => (vec!["conv_norm_out".into()], rest),
        ["mid", "res1", rest @ ..] => (vec!["mid_block.resnets.0".into()], rest),
        ["mid", "res2", rest @ ..] => (vec!["mid_block.resnets.1".into()], rest),
        ["mid", "attn", rest @ ..] => (vec!["mid_block.attentions.0".into()], rest),
        [dir @ ("down" | "up"), level, "stages", r, kind @ ("res" | "attn"), rest @ ..] => {
            let group = if *kind == "res" {
                "resnets"
            } else {
                "attentions"
            };
            (vec![format!("{dir}_blocks.{level}.{group}.{r}")], rest)
        }
        [dir @ ("down" | "up"), level, sampler @ ("downsample" | "upsample"), rest @ ..] => {
            (vec![format!("{dir}_blocks.{level}.{sampler}rs.0")], rest)
        }
        _ => (Vec::new(), &parts[..]),
    };
    let in_attention = path.first().is_some_and(|p| p.contains("attentions"));
    for (i, part) in rest.iter().enumerate() {
        let last_module = i + 2 == rest.len();
        path.push(match (*part, last_module, in_attention) {
            ("emb_proj", true, _) => "time_emb_proj".into(),
            ("skip", true, _) => "conv_shortcut".into(),
            ("norm", true, true) => "group_norm".into(),
            ("proj", true, true) => "to_out.0".into(),
            (other, _, _) => other.to_string(),
        });
    }
    path.join(".")
}

/// The weights under diffusers' names: 1×1 convolutions of attention as linear layers, the
/// fused q/k/v split, the slot tables summed into one class table.
fn weights_of(named: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    let mut slots: Vec<(usize, Tensor)> = Vec::new();
    for (name, t) in named {
        let t = t.to_device(&Device::Cpu)?;
        if let Some(i) = name
            .strip_prefix("cond_embed.")
            .and_then(|r| r.split('.').next())
        {
            slots.push((i.parse().map_err(|_| refuse(format!("weight {name}")))?, t));
            continue;
        }
        let new = rename(&name);
        if new.contains(".qkv.") {
            let c = t.dim(0)? / 3;
            for (k, part) in ["to_q", "to_k", "to_v"].iter().enumerate() {
                let piece = t.narrow(0, k * c, c)?;
                let piece = if piece.rank() == 4 {
                    piece.flatten_from(1)?
                } else {
                    piece
                };
                out.insert(new.replace("qkv", part), piece.contiguous()?);
            }
            continue;
        }
        let linear = new.contains(".to_out.0.") && t.rank() == 4;
        out.insert(
            new,
            if linear {
                t.flatten_from(1)?.contiguous()?
            } else {
                t
            },
        );
    }
    if !slots.is_empty() {
        slots.sort_by_key(|(i, _)| *i);
        let mut table = slots[0].1.clone(); // [n0, temb]
        for (_, next) in &slots[1..] {
            let (a, b) = (table.dim(0)?, next.dim(0)?);
            // Row i·b + j = table[i] + next[j].
            table = table
                .unsqueeze(1)?
                .broadcast_add(&next.unsqueeze(0)?)?
                .reshape((a * b, next.dim(1)?))?;
        }
        out.insert("class_embedding.weight".into(), table);
    }
    Ok(out)
}

/// diffusers' name of a β schedule.
fn beta_schedule_name(b: BetaSchedule) -> &'static str {
    match b {
        BetaSchedule::Linear => "linear",
        BetaSchedule::ScaledLinear => "scaled_linear",
        BetaSchedule::Cosine => "squaredcos_cap_v2",
        BetaSchedule::Sigmoid => "sigmoid",
    }
}

/// Writes a model of `unet` and `schedule`, its weights `named` by diffuse's names, as a
/// diffusers folder in `dir` (config.json,
/// diffusion_pytorch_model.safetensors, scheduler_config.json); returns its config.
pub fn export(
    unet: &UNetConfig,
    schedule: &ScheduleConfig,
    named: HashMap<String, Tensor>,
    dir: &Path,
    force: bool,
) -> Result<UNet2DConfig> {
    let config = config_of(unet)?;
    let weights = weights_of(named)?;
    let _lock = fs::prepare_output_dir(dir, force)?;
    let text = serde_json::to_vec_pretty(&config).map_err(|e| Error::Encode {
        format: "JSON",
        reason: e.to_string(),
    })?;
    fs::write_atomic(&dir.join("config.json"), &text)?;
    safetensors::save(&dir.join(super::folder::WEIGHTS), &weights)?;
    let s = schedule;
    let prediction = match unet.prediction {
        crate::unet::Prediction::Epsilon => "epsilon",
        crate::unet::Prediction::VPrediction => "v_prediction",
    };
    let scheduler = json!({
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": s.train_timesteps,
        "beta_start": s.beta_start,
        "beta_end": s.beta_end,
        "beta_schedule": beta_schedule_name(s.beta_schedule),
        "variance_type": "fixed_small",
        "clip_sample": true,
        "prediction_type": prediction,
    });
    let text = serde_json::to_vec_pretty(&scheduler).map_err(|e| Error::Encode {
        format: "JSON",
        reason: e.to_string(),
    })?;
    fs::write_atomic(&dir.join("scheduler_config.json"), &text)?;
    Ok(config)
}
