//! Events kubelet records on a pod, returned by the decisions for the caller to post.

/// An event to record against the pod (`involvedObject` is the pod; `fieldPath` names the
/// container when [`PodEvent::container`] is set, as `spec.containers{name}` or
/// `spec.initContainers{name}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// The event reason (`BackOff`, `Killing`, `DNSConfigForming`, ...).
    pub reason: &'static str,
    /// The event message.
    pub message: String,
    /// The container the event is about, if any.
    pub container: Option<String>,
}

impl PodEvent {
    pub(crate) fn warning(reason: &'static str, message: String) -> Self {
        PodEvent { warning: true, reason, message, container: None }
    }

    pub(crate) fn normal(reason: &'static str, message: String) -> Self {
        PodEvent { warning: false, reason, message, container: None }
    }

    pub(crate) fn on(mut self, container: &str) -> Self {
        self.container = Some(container.to_owned());
        self
    }
}
