use clap::Parser;
use zoho_token_operator::config::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Crd(args)) = &cli.command {
        return match zoho_token_operator::write_crds(args.output_dir.as_deref()) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("zoho-token-operator crd: {err}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    zoho_token_operator::telemetry::init(cli.log_format());
    let args = match cli.command {
        Some(Command::Run(args)) => *args,
        _ => cli.run,
    };
    match zoho_token_operator::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "zoho-token-operator stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
