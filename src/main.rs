//! The `smelt` command line.

mod commands;
mod model;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "smelt",
    version,
    about = "smelt: an ML compiler and graph optimizer for custom accelerators",
    long_about = "smelt imports a model (ONNX) into its tensor IR, and runs it on the reference \
                  interpreter. Every command accepts an ONNX file or an IR text file (.smelt) as MODEL.",
    after_help = "Examples:\n  smelt import model.onnx -o model.smelt\n  smelt run model.onnx --input x.npy --output-dir out/\n  smelt conformance .cache/onnx-node --json results.json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Import(commands::import::Args),
    Run(commands::run::Args),
    Conformance(commands::conformance::Args),
    Compile(commands::compile::Args),
    Explain(commands::explain::Args),
    Disasm(commands::disasm::Args),
    Simulate(commands::simulate::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Import(a) => commands::import::main(a),
        Command::Run(a) => commands::run::main(a),
        Command::Conformance(a) => commands::conformance::main(a),
        Command::Compile(a) => commands::compile::main(a),
        Command::Explain(a) => commands::explain::main(a),
        Command::Disasm(a) => commands::disasm::main(a),
        Command::Simulate(a) => commands::simulate::main(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: the chain of causes joined, never a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
