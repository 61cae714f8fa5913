//! The service proxy: programs the node's dataplane from Services and EndpointSlices.

pub mod plan;
mod state;

pub use plan::NodeView;
pub use state::{Changes, Proxy, ServiceKey, SERVICE_NAME_LABEL};
