use clap::Parser;
use zoho_token_operator::config::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        print!("{}", zoho_token_operator::crd_yaml());
        return std::process::ExitCode::SUCCESS;
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
