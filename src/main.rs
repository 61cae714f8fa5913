//! The `flotilla` binary: command-line wiring only.

mod agent;
mod hollow;
mod image;
mod lan;
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
    /// Run many simulated nodes in this process, for scale tests: each registers a Node,
    /// reports its status, gossips and runs its pods over an in-memory runtime.
    Hollow(Box<hollow::HollowArgs>),
    /// Load image archives into a node's containerd.
    Image(image::ImageArgs),
    /// Start a local cluster on this machine, each member its own process, and stay in the
    /// foreground until interrupted.
    Up(up::UpArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A one-shot command says what it did on stdout; only its warnings go to the log.
    let default_filter = match cli.command {
        Command::Image(_) => "warn",
        // Each of a thousand hollow nodes would log every other one joining and leaving.
        Command::Hollow(_) => "info,flotilla_net::gossip=error",
        _ => "info,openraft=warn,sled=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    // A network namespace is joined before the runtime starts any thread: each thread keeps
    // the namespace it started in.
    let netns = match &cli.command {
        Command::Agent(args) => args.netns.as_deref(),
        Command::Reset(args) => args.netns.as_deref(),
        _ => None,
    };
    if let Command::Agent(_) = &cli.command {
        agent::return_freed_memory_at_once();
    }
    if let Some(path) = netns {
        if let Err(e) = agent::join_network_namespace(path) {
            eprintln!("flotilla: {}", one_line(&e));
            return ExitCode::FAILURE;
        }
    }
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
            Command::Hollow(args) => hollow::run(*args).await,
            Command::Reset(args) => agent::reset(args).await,
            Command::Image(args) => image::run(args).await,
            Command::Up(args) => up::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flotilla: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `outer: inner: …`, each said once: many errors already
/// end with their cause's message, which the chain would otherwise repeat.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn causes_already_in_the_message_are_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let wrapped = anyhow::Error::new(io).context("reading f: no such file").context("starting");
        assert_eq!(one_line(&wrapped), "starting: reading f: no such file");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&plain), "outer: inner");
    }
}
