//! The `diffuse` binary: parse flags, run the command, print any error as one line.

use std::process::ExitCode;

fn main() -> ExitCode {
    diffuse_cli::main()
}

#[path = "cli.rs"]
mod diffuse_cli;
