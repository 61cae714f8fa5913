//! Node ports, external IPs and load balancer IPs for clients on other machines: packet-level
//! rules in nftables, beside the eBPF socket load balancer (which serves the node's own
//! processes and pods, and whose translation happens before a packet exists, so the two never
//! translate the same connection).
//!
//! [`plan`] decides, per Service, what a connection to each of those destinations meets;
//! [`NodePorts`] keeps what every Service wants and what the table holds, and derives the
//! smallest update; [`script`] writes it as an `nft` transaction; [`NftTable`] runs it;
//! [`NodePortSync`] ties them together for the node's networking. Each node has one table
//! (`ip flotilla-<hash of the node name>`), left in place when the agent stops and replaced
//! whole at its next first sync.

pub mod plan;
pub mod script;

mod error;
mod nft;
mod state;
mod sync;
mod table;

pub use error::NodePortError;
pub use nft::NftTable;
pub use plan::{Destination, ExternalAddress, NodePort, Rule, Rules, Verdict};
pub use state::{Change, NodePorts, Update};
pub use sync::NodePortSync;
pub use table::{MemoryNodePortTable, MemoryTableError, NodePortTable};
