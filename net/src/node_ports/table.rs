//! The boundary between the node ports' state and the kernel: a table that applies
//! [`Update`]s, and an in-memory one for tests.

use std::future::Future;

use super::plan::Rules;
use super::state::Update;

/// Where node ports and external addresses are programmed.
///
/// Contract: an update is applied whole or not at all, and is in effect for the next packet
/// once the call returns. After a failure the table holds what it held before, so the same
/// changes (and any later ones) can be asked for again.
pub trait NodePortTable: Send {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies `update`: [`Update::Replace`] whatever the table held (an earlier agent's rules
    /// included); [`Update::Changes`] only to the destinations named, each holding its `from`.
    fn apply(&mut self, update: &Update) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A node-port table in memory that checks each change against what it holds, as nftables
/// does; it fails every update while `broken` is set.
#[derive(Debug, Default, Clone)]
pub struct MemoryNodePortTable {
    /// What it holds; `None` before the first replacement.
    pub rules: Option<Rules>,
    /// Every update applied, in order.
    pub applied: Vec<Update>,
    pub broken: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemoryTableError {
    #[error("the table is broken")]
    Broken,
    #[error("a change to {destination} expects a rule the table does not hold")]
    Mismatch { destination: String },
}

impl NodePortTable for MemoryNodePortTable {
    type Error = MemoryTableError;

    async fn apply(&mut self, update: &Update) -> Result<(), MemoryTableError> {
        if self.broken {
            return Err(MemoryTableError::Broken);
        }
        match update {
            Update::Replace(rules) => self.rules = Some(rules.clone()),
            Update::Changes(changes) => {
                let mut rules = self.rules.clone().unwrap_or_default();
                for change in changes {
                    if rules.get(&change.destination) != change.from.as_ref() {
                        return Err(MemoryTableError::Mismatch {
                            destination: format!("{:?}", change.destination),
                        });
                    }
                    match &change.to {
                        Some(rule) => rules.insert(change.destination, rule.clone()),
                        None => rules.remove(&change.destination),
                    };
                }
                self.rules = Some(rules);
            }
        }
        self.applied.push(update.clone());
        Ok(())
    }
}
