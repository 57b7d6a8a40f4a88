//! `UNet2DModel`'s `config.json`: the keys diffuse supports, with diffusers' defaults. Keys
//! diffusers writes for bookkeeping (`_class_name`, `_diffusers_version`, `_name_or_path`) are
//! skipped; any other key diffuse does not know, or a value it cannot run, is an error that
//! names it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The down blocks diffuse runs.
pub const DOWN_BLOCKS: [&str; 3] = ["DownBlock2D", "AttnDownBlock2D", "ResnetDownsampleBlock2D"];
/// The up blocks diffuse runs.
pub const UP_BLOCKS: [&str; 3] = ["UpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D"];

/// The supported subset of diffusers' `UNet2DModel` configuration, diffusers' names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UNet2DConfig {
    #[serde(rename = "_class_name", skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    #[serde(rename = "_diffusers_version", skip_serializing)]
    pub diffusers_version: Option<String>,
    #[serde(rename = "_name_or_path", skip_serializing)]
    pub name_or_path: Option<String>,
    pub sample_size: Option<usize>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub time_embedding_type: String,
    pub freq_shift: f64,
    pub flip_sin_to_cos: bool,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub mid_block_scale_factor: f64,
    pub downsample_padding: usize,
    pub downsample_type: String,
    pub upsample_type: String,
    pub dropout: f64,
    pub act_fn: String,
    /// Channels per attention head; None means one head.
    pub attention_head_dim: Option<usize>,
    pub norm_num_groups: usize,
    pub attn_norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub resnet_time_scale_shift: String,
    pub add_attention: bool,
    pub class_embed_type: Option<String>,
    pub num_class_embeds: Option<usize>,
    pub time_embedding_dim: Option<usize>,
    pub mid_block_type: Option<String>,
    pub num_train_timesteps: Option<usize>,
}

impl Default for UNet2DConfig {
    /// diffusers' defaults.
    fn default() -> Self {
        Self {
            class_name: Some("UNet2DModel".into()),
            diffusers_version: None,
            name_or_path: None,
            sample_size: None,
            in_channels: 3,
            out_channels: 3,
            center_input_sample: false,
            time_embedding_type: "positional".into(),
            freq_shift: 0.0,
            flip_sin_to_cos: true,
            down_block_types: [
                "DownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
            ]
            .map(String::from)
            .to_vec(),
            up_block_types: [
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "UpBlock2D",
            ]
            .map(String::from)
            .to_vec(),
            block_out_channels: vec![224, 448, 672, 896],
            layers_per_block: 2,
            mid_block_scale_factor: 1.0,
            downsample_padding: 1,
            downsample_type: "conv".into(),
            upsample_type: "conv".into(),
            dropout: 0.0,
            act_fn: "silu".into(),
            attention_head_dim: Some(8),
            norm_num_groups: 32,
            attn_norm_num_groups: None,
            norm_eps: 1e-5,
            resnet_time_scale_shift: "default".into(),
            add_attention: true,
            class_embed_type: None,
            num_class_embeds: None,
            time_embedding_dim: None,
            mid_block_type: Some("UNetMidBlock2D".into()),
            num_train_timesteps: None,
        }
    }
}

/// A configuration problem in a diffusers `config.json`.
fn config_err(reason: String) -> Error {
    Error::Config {
        what: "diffusers UNet2DModel",
        reason,
    }
}

fn unsupported(key: &str, value: impl std::fmt::Display, supported: &str) -> Error {
    config_err(format!(
        "{key} = {value} is not supported (diffuse runs {supported})"
    ))
}

impl UNet2DConfig {
    /// Reads `config.json` text; `name` names the file in errors.
    pub fn from_json(text: &str, name: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text)
            .map_err(|e| config_err(format!("{name}: {}", e.to_string().replace('\n', " "))))?;
        config.validate()?;
        Ok(config)
    }

    /// The time embedding width: `time_embedding_dim`, else 4 × the first block's channels.
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim
            .unwrap_or(4 * self.block_out_channels[0])
    }

    /// Channels per head for a block of `channels` (one head when `attention_head_dim` is null).
    pub fn head_dim(&self, channels: usize) -> usize {
        self.attention_head_dim.unwrap_or(channels)
    }

    /// Refuses what diffuse cannot run, naming the key.
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = self.class_name.as_deref().filter(|c| *c != "UNet2DModel") {
            return Err(unsupported("_class_name", c, "UNet2DModel"));
        }
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(config_err(format!(
                "block_out_channels ({n}), down_block_types ({}) and up_block_types ({}) must have the same length",
                self.down_block_types.len(),
                self.up_block_types.len()
            )));
        }
        for b in &self.down_block_types {
            if !DOWN_BLOCKS.contains(&b.as_str()) {
                return Err(unsupported("down_block_types", b, &DOWN_BLOCKS.join(", ")));
            }
        }
        for b in &self.up_block_types {
            if !UP_BLOCKS.contains(&b.as_str()) {
                return Err(unsupported("up_block_types", b, &UP_BLOCKS.join(", ")));
            }
        }
        self.validate_time_embedding()?;
        let fixed: [(&str, &str, &str); 4] = [
            ("act_fn", &self.act_fn, "silu"),
            ("downsample_type", &self.downsample_type, "conv"),
            ("upsample_type", &self.upsample_type, "conv"),
            (
                "mid_block_type",
                self.mid_block_type.as_deref().unwrap_or("null"),
                "UNetMidBlock2D",
            ),
        ];
        for (key, value, want) in fixed {
            if value != want {
                return Err(unsupported(key, value, want));
            }
        }
        if !["default", "scale_shift"].contains(&self.resnet_time_scale_shift.as_str()) {
            return Err(unsupported(
                "resnet_time_scale_shift",
                &self.resnet_time_scale_shift,
                "default, scale_shift",
            ));
        }
        if let Some(t) = &self.class_embed_type {
            return Err(unsupported(
                "class_embed_type",
                t,
                "null with num_class_embeds",
            ));
        }
        let groups = self.norm_num_groups;
        for &c in &self.block_out_channels {
            if groups == 0 || c % groups != 0 || c % self.head_dim(c).max(1) != 0 {
                return Err(config_err(format!(
                    "block_out_channels {c} must divide by norm_num_groups {groups} and attention_head_dim"
                )));
            }
        }
        Ok(())
    }

    /// The time embedding diffuse can build: positional, or learned with its table's size.
    fn validate_time_embedding(&self) -> Result<()> {
        match (self.time_embedding_type.as_str(), self.num_train_timesteps) {
            ("positional", _) | ("learned", Some(1..)) => Ok(()),
            ("learned", _) => {
                Err(config_err(
                    "time_embedding_type = learned needs num_train_timesteps (its table's rows)"
                        .into(),
                ))
            }
            // diffusers builds these only for score-SDE (VE) models: the embedding takes
            // log σ and the output is divided by σ, which no DDPM-style sampler supplies.
            ("fourier", _) => {
                Err(unsupported(
                    "time_embedding_type",
                    "fourier",
                    "positional, learned; fourier features take the noise level σ of a score-SDE (VE) model, whose sampler diffuse does not have",
                ))
            }
            (other, _) => {
                Err(unsupported(
                    "time_embedding_type",
                    other,
                    "positional, learned",
                ))
            }
        }
    }
}
