use zoho_token_operator::config::{Action, parse_args};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args(std::env::args_os()) {
        Action::Crd(args) => {
            return match zoho_token_operator::write_crds(args.output_dir.as_deref()) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("zoho-token-operator crd: {err}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Action::Bootstrap(args) => return zoho_token_operator::bootstrap::run(*args).await,
        Action::Run(args) => *args,
    };
    zoho_token_operator::telemetry::init(args.log_format);
    match zoho_token_operator::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "zoho-token-operator stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
