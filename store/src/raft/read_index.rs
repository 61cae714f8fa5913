//! Shared read-index rounds for linearizable reads.
//!
//! A linearizable read needs a read index obtained after the read arrived: one round of leader
//! confirmation (a heartbeat to a quorum), and from a follower one more hop to the leader.
//! Readers that arrive while a round is in flight wait for the next round, and every reader
//! waiting when a round starts shares it — as etcd batches its read-index requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

type Reply = oneshot::Sender<Result<u64, StoreError>>;
type Round =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send>> + Send + Sync>;

/// The handle; the worker exits when every handle is dropped.
#[derive(Clone)]
pub struct ReadIndexBatcher {
    sender: mpsc::UnboundedSender<Reply>,
}

impl ReadIndexBatcher {
    /// Starts the worker; `round` obtains one read index. Must be called within a Tokio runtime.
    pub fn start(round: Round) -> Self {
        let (sender, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(round, queue));
        ReadIndexBatcher { sender }
    }

    /// Returns a read index obtained after this call began.
    pub async fn read_index(&self) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender.send(reply).map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

async fn run(round: Round, mut queue: mpsc::UnboundedReceiver<Reply>) {
    while let Some(first) = queue.recv().await {
        let mut waiting = vec![first];
        while let Ok(next) = queue.try_recv() {
            waiting.push(next);
        }
        // Every reader in `waiting` arrived before this round starts, so its index serves them.
        let result = round().await;
        for reply in waiting {
            let _ = reply.send(result.clone());
        }
    }
}
