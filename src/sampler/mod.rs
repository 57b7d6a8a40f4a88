//! Reverse-diffusion samplers. Scalars follow diffusers' schedulers; samples are tensors.

pub mod ddpm;
