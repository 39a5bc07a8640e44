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
    long_about = "smelt imports a model into its tensor IR, optimizes it for a target with an \
                  e-graph, and runs it on the reference interpreter or compiles it for the host CPU (LLVM JIT). MODEL is an ONNX file, an IR \
                  text file (.smelt) or a Hugging Face checkpoint folder (config.json + \
                  *.safetensors).",
    after_help = "Examples:\n  smelt import model.onnx -o model.smelt\n  smelt run model.onnx --input x.npy --output-dir out/\n  smelt run examples/checkpoints/llama --tokens 1,5,9 --generate 8\n  smelt explain model.onnx --target maia100\n  smelt compile model.onnx --target cpu -o model.smc\n  smelt run model.smc --input x.npy\n  smelt bench .cache/models/bert_base --threads 2\n  smelt conformance .cache/onnx-node --json results.json\n  smelt simulate examples/maia/matmul.smx --report --trace trace.json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Import(commands::import::Args),
    Bench(commands::bench::Args),
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
        Command::Bench(a) => commands::bench::main(a),
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
