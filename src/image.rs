//! `flotilla image import`: image archives loaded into a node's containerd, where its pods
//! find them without a registry.

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use flotilla_agent::containerd::import_into_running;
use flotilla_agent::Layout;

#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Load OCI or Docker image archives (`*.tar`) into a node's containerd (namespace
    /// `k8s.io`), as `ctr -n k8s.io images import` does; the images keep their names.
    Import(ImportArgs),
}

#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("target").required(true).args(["data_dir", "container_runtime_endpoint", "dir"])
))]
struct ImportArgs {
    /// The archives.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The data directory of the node's agent (`flotilla agent --data-dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The gRPC socket of the containerd the node's agent uses
    /// (`flotilla agent --container-runtime-endpoint`).
    #[arg(long)]
    container_runtime_endpoint: Option<PathBuf>,
    /// A local cluster's directory (`flotilla up --dir`): every agent of it.
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub async fn run(args: ImageArgs) -> anyhow::Result<()> {
    let ImageCommand::Import(args) = args.command;
    // Where to import: (label shown before each line, containerd socket).
    let targets: Vec<(Option<String>, PathBuf)> = if let Some(data_dir) = &args.data_dir {
        vec![(None, Layout::socket_of(data_dir))]
    } else if let Some(socket) = &args.container_runtime_endpoint {
        vec![(None, socket.clone())]
    } else if let Some(dir) = &args.dir {
        let agents = crate::up::local_agents(dir)
            .with_context(|| format!("reading the local cluster {}", dir.display()))?;
        anyhow::ensure!(
            !agents.is_empty(),
            "{} holds no agents of a local cluster (flotilla up --agents M --dir DIR)",
            dir.display()
        );
        agents.into_iter().map(|(name, data)| (Some(name), Layout::socket_of(&data))).collect()
    } else {
        anyhow::bail!("name the node: --data-dir, --container-runtime-endpoint or --dir");
    };
    for (label, socket) in &targets {
        for file in &args.files {
            let names = import_into_running(socket, file).await?;
            for name in names {
                match label {
                    Some(label) => println!("{label}: imported {name}"),
                    None => println!("imported {name}"),
                }
            }
        }
    }
    Ok(())
}
