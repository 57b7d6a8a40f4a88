//! The `diffuse` binary: parse flags, run the command, print any error as one line.

use std::process::ExitCode;

// mimalloc reuses freed memory instead of returning large tensor buffers to the OS, which
// removes most of the page faults a CPU training step otherwise takes. `Counting` tracks the
// heap's peak for `diffuse bench`.
#[global_allocator]
static GLOBAL: diffuse::alloc::Counting<mimalloc::MiMalloc> =
    diffuse::alloc::Counting(mimalloc::MiMalloc);

fn main() -> ExitCode {
    diffuse_cli::main()
}

#[path = "cli.rs"]
mod diffuse_cli;
