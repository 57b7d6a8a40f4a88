//! The `diffuse` binary: the counting allocator, then [`cli::main`], which parses flags, runs
//! the command and prints any error as one line.

use std::process::ExitCode;

mod cli;

// mimalloc reuses freed memory instead of returning large tensor buffers to the OS, which
// removes most of the page faults a CPU training step otherwise takes. `Counting` tracks the
// heap's peak for `diffuse bench`.
#[global_allocator]
static GLOBAL: diffuse::alloc::Counting<mimalloc::MiMalloc> =
    diffuse::alloc::Counting(mimalloc::MiMalloc);

fn main() -> ExitCode {
    cli::main()
}
