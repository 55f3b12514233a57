//! Runs the tests' local control plane in the foreground until SIGTERM or SIGINT, for a person or
//! for `scripts/dev-cluster`.
//!
//! Usage: control-plane [--kubeconfig PATH]

use std::{fs, path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use testkit::control_plane::ControlPlane;
use tokio::signal::unix::{SignalKind, signal};

fn kubeconfig_arg() -> Result<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    let mut kubeconfig = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kubeconfig" => kubeconfig = Some(args.next().context("--kubeconfig needs a path")?),
            _ => match arg.strip_prefix("--kubeconfig=") {
                Some(path) => kubeconfig = Some(path.to_owned()),
                None => bail!("unknown argument {arg:?}; usage: control-plane [--kubeconfig PATH]"),
            },
        }
    }
    Ok(kubeconfig.map(PathBuf::from))
}

#[tokio::main]
async fn main() -> Result<()> {
    let kubeconfig = kubeconfig_arg()?;
    // Installed before the start, so that a signal during it still tears everything down.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let plane = tokio::select! {
        plane = ControlPlane::start() => plane?,
        _ = terminate.recv() => return Ok(()),
        _ = interrupt.recv() => return Ok(()),
    };

    let kubeconfig = match kubeconfig {
        Some(path) => {
            // Renamed into place, so whoever waits for the file never reads half of it.
            let partial = path.with_extension("partial");
            fs::copy(plane.kubeconfig_path(), &partial).with_context(|| format!("write {}", partial.display()))?;
            fs::rename(&partial, &path)?;
            path
        }
        None => plane.kubeconfig_path().to_owned(),
    };
    println!("export KUBECONFIG={}", kubeconfig.display());

    let mut health = tokio::time::interval(Duration::from_secs(1));
    let outcome = loop {
        tokio::select! {
            _ = terminate.recv() => break Ok(()),
            _ = interrupt.recv() => break Ok(()),
            _ = health.tick() => if let Err(error) = plane.check_running() {
                break Err(error);
            },
        }
    };
    if kubeconfig != plane.kubeconfig_path() {
        let _ = fs::remove_file(&kubeconfig);
    }
    eprintln!("stopping the control plane");
    plane.stop().await?;
    outcome
}
