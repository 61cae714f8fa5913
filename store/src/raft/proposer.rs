//! Group commit for proposals, on every member.
//!
//! openraft 0.9 turns every `client_write` into its own log append and waits for that append's
//! fsync before taking the next one, so concurrent writers would pay one fsync each. The
//! proposer collects the commands that arrive while earlier batches are in flight and hands
//! them on as one [`Command::Batch`]: on the leader one log entry (one append, one fsync, one
//! replication round for all), on a follower one forwarded request to the leader.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::TypeConfig;
use crate::store::command_size;
use crate::types::{Command, CommandResponse, MAX_REQUEST_BYTES};
use crate::StoreError;

/// How many commands one batch holds at most.
const MAX_BATCH_COMMANDS: usize = 512;
/// How many batches may be in flight at once: one being made durable while the next fills.
const MAX_IN_FLIGHT: usize = 2;

/// A command's outcome and the index of the log entry that carried it.
pub type Proposed = (CommandResponse, u64);

type Reply = oneshot::Sender<Result<Proposed, StoreError>>;

/// Carries one command (a batch or a single one) to the log: written on the leader, forwarded
/// from a follower.
pub type Executor = Arc<
    dyn Fn(Command) -> Pin<Box<dyn Future<Output = Result<Proposed, StoreError>> + Send>>
        + Send
        + Sync,
>;

/// The handle: a typed sender to the worker. The worker exits when every handle is dropped.
#[derive(Clone)]
pub struct Proposer {
    sender: mpsc::UnboundedSender<(Command, Reply)>,
}

impl Proposer {
    /// Starts the worker. Must be called within a Tokio runtime.
    pub fn start(executor: Executor) -> Self {
        let (sender, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(executor, queue));
        Proposer { sender }
    }

    /// Proposes a command; returns its outcome and log index once applied on this replica.
    pub async fn propose(&self, command: Command) -> Result<Proposed, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender.send((command, reply)).map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

async fn run(executor: Executor, mut queue: mpsc::UnboundedReceiver<(Command, Reply)>) {
    let in_flight = std::sync::Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        // Waiting for a free slot first lets the batch grow while earlier ones are in flight.
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let mut bytes = command_size(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS && bytes < MAX_REQUEST_BYTES {
            match queue.try_recv() {
                Ok(next) => {
                    bytes += command_size(&next.0);
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let executor = executor.clone();
        tokio::spawn(async move {
            propose_batch(&executor, batch).await;
            drop(permit);
        });
    }
}

async fn propose_batch(executor: &Executor, mut batch: Vec<(Command, Reply)>) {
    if batch.len() == 1 {
        if let Some((command, reply)) = batch.pop() {
            let _ = reply.send(executor(command).await);
        }
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
    match executor(Command::Batch(commands)).await {
        Ok((CommandResponse::Batch(results), index)) if results.len() == replies.len() => {
            for (reply, result) in replies.into_iter().zip(results) {
                // The caller may have gone away; its command was applied all the same.
                let _ = reply.send(result.map(|response| (response, index)));
            }
        }
        Ok(other) => {
            let err = StoreError::Storage(format!("a batch was answered with {other:?}"));
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

/// Writes one command to the log of `raft`, which must lead.
pub async fn write(raft: &Raft<TypeConfig>, command: Command) -> Result<Proposed, StoreError> {
    let written = tokio::time::timeout(super::REQUEST_TIMEOUT, raft.client_write(command)).await;
    // Without a quorum the entry never commits; etcd answers such a request with a time-out
    // (the entry may still commit later, so the outcome is unknown to the client).
    let Ok(written) = written else { return Err(StoreError::Timeout) };
    match written {
        Ok(response) => match response.data {
            Ok(Some(answer)) => Ok((answer, response.log_id.index)),
            Ok(None) => Err(StoreError::Storage("a command produced no response".into())),
            Err(err) => Err(err),
        },
        // The entry was accepted by this leader, which then lost leadership: it may or may
        // not commit, so the caller must not blindly retry.
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            Err(StoreError::LeaderChanged)
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(err))) => {
            Err(StoreError::InvalidArgument(err.to_string()))
        }
        Err(RaftError::Fatal(_)) => Err(StoreError::Stopped),
    }
}
