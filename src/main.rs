//! The `flotilla` binary: command-line wiring only.

mod agent;
mod master;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: the API server allocates and frees many small JSON
/// values per request, which glibc's allocator spends much of a large list's time on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "A Kubernetes-compatible container orchestrator in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one master: the replicated store (etcd v3 API) and the Kubernetes API of a cluster.
    Master(Box<master::MasterArgs>),
    /// Run a node's agent: register the machine as a Node, report its status and run the
    /// pods bound to it.
    Agent(Box<agent::AgentArgs>),
    /// Remove everything a node's agent ran: its pods' containers and sandboxes, their network
    /// leftovers and cgroups; then stop its containerd.
    Reset(agent::ResetArgs),
    /// Start a local cluster on this machine, each member its own process, and stay in the
    /// foreground until interrupted.
    Up(up::UpArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("flotilla: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Master(args) => master::run(*args).await,
            Command::Agent(args) => agent::run(*args).await,
            Command::Reset(args) => agent::reset(args).await,
            Command::Up(args) => up::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flotilla: {e:#}");
            ExitCode::FAILURE
        }
    }
}
