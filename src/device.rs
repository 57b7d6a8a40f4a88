//! The one place that creates a candle `Device`: `--device auto|cpu|cuda|metal`.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{Error, Result};

/// What the user asked for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA if built in and present, else Metal if built in and present, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
    Metal,
}

impl FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            "metal" => Ok(DeviceChoice::Metal),
            _ => Err(Error::unknown(
                "device",
                s,
                &["auto", "cpu", "cuda", "metal"],
            )),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Metal => "metal",
        })
    }
}

/// A resolved device, plus a hint for the user when `auto` fell back to the CPU.
pub struct ResolvedDevice {
    pub device: Device,
    /// Set when `auto` chose the CPU because no GPU backend is compiled in or available.
    pub hint: Option<String>,
}

/// A short name for a device, for reports: `cpu`, `cuda:0`, `metal:0`.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(_) => "cuda:0".to_string(),
        Device::Metal(_) => "metal:0".to_string(),
    }
}

/// The GPU backends compiled into this build.
pub fn compiled_features() -> Vec<&'static str> {
    let mut f = Vec::new();
    if cfg!(feature = "cuda") {
        f.push("cuda");
    }
    if cfg!(feature = "metal") {
        f.push("metal");
    }
    f
}

fn cuda() -> Result<Device> {
    if !cfg!(feature = "cuda") {
        return Err(Error::Device(
            "--device cuda: this build has no CUDA support (rebuild with `--features cuda`)".into(),
        ));
    }
    Device::new_cuda(0).map_err(|e| Error::Device(format!("--device cuda: {e}")))
}

fn metal() -> Result<Device> {
    if !cfg!(feature = "metal") {
        return Err(Error::Device(
            "--device metal: this build has no Metal support (rebuild with `--features metal`)"
                .into(),
        ));
    }
    Device::new_metal(0).map_err(|e| Error::Device(format!("--device metal: {e}")))
}

/// Turns a `--device` choice into a candle device.
pub fn resolve(choice: DeviceChoice) -> Result<ResolvedDevice> {
    let plain = |device| ResolvedDevice { device, hint: None };
    match choice {
        DeviceChoice::Cpu => Ok(plain(Device::Cpu)),
        DeviceChoice::Cuda => cuda().map(plain),
        DeviceChoice::Metal => metal().map(plain),
        DeviceChoice::Auto => {
            if cfg!(feature = "cuda") {
                if let Ok(d) = cuda() {
                    return Ok(plain(d));
                }
            }
            if cfg!(feature = "metal") {
                if let Ok(d) = metal() {
                    return Ok(plain(d));
                }
            }
            let hint = if compiled_features().is_empty() {
                "using the CPU (this build has no GPU backend; rebuild with `--features cuda` or `--features metal` to use one)"
            } else {
                "using the CPU (no GPU was found)"
            };
            Ok(ResolvedDevice {
                device: Device::Cpu,
                hint: Some(hint.to_string()),
            })
        }
    }
}
