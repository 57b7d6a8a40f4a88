//! Where a benchmark ran and what was measured: the CPU, cores, threads and device, and the
//! build's version, profile and features (every `diffuse bench` report carries both).

use candle_core::Device;
use serde::Serialize;

/// Where the suite ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub threads: usize,
    pub device: String,
    pub os: &'static str,
    pub arch: &'static str,
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Build {
    pub version: &'static str,
    pub profile: &'static str,
    pub features: Vec<&'static str>,
}

/// The CPU's model name, from `/proc/cpuinfo` where there is one.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn machine(device: &Device) -> Machine {
    Machine {
        cpu: cpu_name(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads: rayon::current_num_threads(),
        device: crate::device::device_name(device),
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
    }
}

pub fn build() -> Build {
    Build {
        version: env!("CARGO_PKG_VERSION"),
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        features: crate::device::compiled_features(),
    }
}
