//! `landfall run` and `landfall check-config`: load the config, then run the daemon or print
//! the effective config.

use crate::cli::ConfigArgs;
use crate::commands::CliError;
use crate::config::{Config, ConfigError};

fn load(args: &ConfigArgs) -> Result<Config, CliError> {
    Config::load(args.config.as_deref()).map_err(|e| match e {
        ConfigError::Invalid { .. } | ConfigError::Read { .. } => CliError::usage(e.to_string()),
    })
}

/// Validates the config and prints it with every default filled in.
pub fn check_config(args: &ConfigArgs) -> Result<(), CliError> {
    let config = load(args)?;
    print!("{}", config.to_toml());
    Ok(())
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(args: &ConfigArgs) -> Result<(), CliError> {
    let config = load(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("landfall")
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        crate::daemon::run(config, shutdown)
            .await
            .map_err(|e| CliError::runtime(e.to_string()))
    })
}

/// Resolves on the first SIGTERM (systemd stop) or SIGINT (Ctrl-C).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| CliError::runtime(format!("cannot listen for {name}: {e}")))
    };
    let mut term = listen(SignalKind::terminate(), "SIGTERM")?;
    let mut int = listen(SignalKind::interrupt(), "SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
