//! Hugging Face diffusers' pixel-space `UNet2DModel`, built from its `config.json` with
//! diffusers' weight names, on diffuse's fast CPU kernels: [`config`] reads and checks the
//! configuration (an unsupported key or block type is an error that names it), [`blocks`]
//! holds the ResNet, attention and resampling blocks, [`unet2d`] the network, [`folder`] reads
//! a model folder (flat or pipeline layout), [`scheduler`] maps its scheduler config.

pub mod blocks;
pub mod config;
pub mod export;
pub mod folder;
pub mod scheduler;
pub mod unet2d;

pub use config::UNet2DConfig;
pub use folder::{load_folder, DiffusersModel};
pub use scheduler::SchedulerConfig;
pub use unet2d::UNet2DModel;
