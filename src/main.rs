//! The `landfall` binary: parse the command line, set up logging, run the command, map its
//! error to the contract's exit code (1 runtime, 2 bad usage/config/input) as one line.

use std::process::ExitCode;

use clap::Parser;
use landfall::cli::{BenchCommand, Cli, Command, ModelsCommand};
use landfall::commands::{self, CliError};

fn main() -> ExitCode {
    // Before anything allocates: the allocator's thresholds for tensors of a few MiB per layer.
    landfall::models::heap::keep_tensor_memory();
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Run(_)));
    let result: Result<(), CliError> = match &cli.command {
        Command::Classify(args) => commands::classify::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Caption(args) => commands::caption::caption(args),
        Command::Ask(args) => commands::caption::ask(args),
        Command::Quantize(args) => commands::quantize::run(args),
        Command::Bench(BenchCommand::Classify(args)) => commands::bench::run(args),
        Command::Bench(BenchCommand::Caption(args)) => commands::bench_caption::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::CheckConfig(args) => commands::run::check_config(args),
        Command::Models(ModelsCommand::Pull(args)) => commands::models::pull(args),
        Command::Models(ModelsCommand::Pin(args)) => commands::models::pin(args),
        Command::Adapter(cmd) => commands::adapter::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // check-config's errors start with FILE:LINE:COL, as editors and CI expect.
        Err(e) if matches!(cli.command, Command::CheckConfig(_)) => {
            eprintln!("{e}");
            ExitCode::from(e.code)
        }
        Err(e) => {
            eprintln!("landfall: {e}");
            ExitCode::from(e.code)
        }
    }
}

/// The daemon logs what it does (info, to the journal under systemd); commands only warn.
fn init_logging(daemon: bool) {
    // The MQTT crates narrate every connection at info; the daemon's own lines say what matters.
    let filter = if daemon {
        "info,rumqttd=warn,rumqttc=warn"
    } else {
        "warn"
    };
    landfall::logging::init(filter);
}
