//! Cluster membership by gossip: masters and agents form one SWIM membership (foca) over UDP,
//! so a dead node is noticed in about two seconds and an idle cluster writes nothing to the
//! store to show that its nodes are alive.
//!
//! Every member probes one other member per probe period; a member that answers neither the
//! probe nor the indirect probes sent through others becomes suspect, and down when it has
//! not refuted the suspicion within the suspicion time. One slow link therefore raises no
//! alarm (the indirect probes go around it), and a member wrongly suspected refutes it as soon
//! as the rumour reaches it. Verdicts spread piggybacked on the probes.
//!
//! Masters gossip on their API server's address and port (UDP beside the API's TCP), so an
//! agent needs no other address than the API servers it already has to join: it announces
//! itself to them until some member answers.

mod peer;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use foca::{AccumulatingRuntime, Config, Foca, OwnedNotification, PeriodicParams, Timer};
use rand_foca::rngs::SmallRng;
use rand_foca::SeedableRng;
use tokio::net::UdpSocket;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use peer::{view, BincodeCodec};
pub use peer::{MemberState, Members, Peer, Role};

/// The largest datagram sent; below common MTUs, so no datagram is fragmented.
const MAX_PACKET: usize = 1400;
/// How long a start waits for its port to be released by a previous process.
const BIND_WAIT: Duration = Duration::from_secs(5);
/// How often a member that knows no other member announces itself to the seeds again.
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// How fast failures are detected. The defaults declare a dead member down in about one and a
/// half seconds: up to a probe period until someone probes it, the probe period itself, then
/// the suspicion time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often each member probes another.
    pub probe_period: Duration,
    /// How long a direct probe waits for its answer before asking others to probe.
    pub probe_rtt: Duration,
    /// How long a suspect member has to refute the suspicion.
    pub suspicion: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            probe_period: Duration::from_millis(400),
            probe_rtt: Duration::from_millis(150),
            suspicion: Duration::from_millis(750),
        }
    }
}

/// One member's setup.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub name: String,
    pub role: Role,
    /// The UDP address to receive on.
    pub bind: SocketAddr,
    /// The address other members send to; port 0 takes the port bound.
    pub advertise: SocketAddr,
    /// Members to announce this one to until it knows another (for agents: the masters).
    pub seeds: Vec<SocketAddr>,
    pub timing: Timing,
}

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("binding the gossip socket {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("invalid gossip timing: {0}")]
    Timing(String),
}

/// A running member. Shut down, it tells the others it leaves; dropped, it goes silent as a
/// crashed process would and the others find it dead.
pub struct Gossip {
    /// The membership view, built by the member's task only while someone holds a receiver.
    view: Arc<watch::Sender<Members>>,
    /// Asks the member's task for a fresh view (a new subscriber).
    refresh: Arc<Notify>,
    advertise: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Drop for Gossip {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gossip {
    /// Binds the socket and joins. Must be called within a Tokio runtime.
    pub async fn start(config: GossipConfig) -> Result<Gossip, GossipError> {
        let socket = bind(config.bind).await?;
        let mut advertise = config.advertise;
        if advertise.port() == 0 {
            let bound = socket
                .local_addr()
                .map_err(|source| GossipError::Bind { addr: config.bind, source })?;
            advertise.set_port(bound.port());
        }
        let own = Peer {
            name: config.name.clone(),
            role: config.role,
            addr: advertise,
            generation: generation(),
        };
        let foca = Foca::new(
            own.clone(),
            foca_config(&config.timing, 0)?,
            SmallRng::seed_from_u64(rand::random()),
            BincodeCodec,
        );
        let view = Arc::new(watch::Sender::new(Members::new()));
        let refresh = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let member = Member {
            foca,
            own,
            runtime: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            sequence: 0,
            socket,
            seeds: config.seeds.into_iter().filter(|seed| *seed != advertise).collect(),
            publish: view.clone(),
            refresh: refresh.clone(),
            known: 0,
            stale: true,
            timing: config.timing,
            others: 0,
        };
        let task = tokio::spawn(member.run(stop.clone()));
        Ok(Gossip { view, refresh, advertise, stop, task })
    }

    /// Where the others send to this member (the bound port when `advertise` gave port 0).
    pub fn advertise(&self) -> SocketAddr {
        self.advertise
    }

    /// The membership as this member sees it, updated as it changes. The view is built only
    /// while someone holds a receiver (an agent's member, one of a thousand hollow nodes in a
    /// process, never looks at it), so a new receiver may start with an older view: the
    /// current one follows at once, as a change.
    pub fn members(&self) -> watch::Receiver<Members> {
        let receiver = self.view.subscribe();
        self.refresh.notify_one();
        receiver
    }

    /// Tells the others this member leaves (so they need not wait to find it dead) and stops.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

/// Binds `addr`, waiting up to [`BIND_WAIT`] while it is taken: a member restarted right after
/// its previous process was killed finds the port held until that process has exited.
async fn bind(addr: SocketAddr) -> Result<UdpSocket, GossipError> {
    let deadline = Instant::now() + BIND_WAIT;
    loop {
        match UdpSocket::bind(addr).await {
            Err(err)
                if err.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            bound => return bound.map_err(|source| GossipError::Bind { addr, source }),
        }
    }
}

/// This start's generation: the wall clock in milliseconds, larger at every restart.
fn generation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// How often a member passes on what it learnt, and to how many others.
const GOSSIP_EVERY: Duration = Duration::from_millis(200);
const GOSSIP_FANOUT: usize = 3;

/// How long a suspected member has to refute the suspicion when the membership holds `others`
/// members besides this one: `timing.suspicion`, or longer in a large membership. A suspicion
/// reaches its member, and the refutation comes back, by gossip, in about log₃(n) rounds each;
/// SWIM's suspicion time grows with the logarithm of the membership for that reason. With a
/// fixed 750 ms, a thousand members declare down every member one probe missed, as the
/// suspicion cannot reach it in time. Small memberships (up to about eight) keep
/// `timing.suspicion`.
fn suspicion_for(timing: &Timing, others: usize) -> Duration {
    let rounds = (others as f64 + 1.0).log(GOSSIP_FANOUT as f64);
    timing.suspicion.max(GOSSIP_EVERY.mul_f64(2.0 * rounds))
}

/// foca's configuration for `timing` in a membership of `others` besides this member.
fn foca_config(timing: &Timing, others: usize) -> Result<Config, GossipError> {
    if timing.probe_rtt >= timing.probe_period || timing.probe_rtt.is_zero() {
        return Err(GossipError::Timing(format!(
            "the probe round trip ({:?}) must be shorter than the probe period ({:?})",
            timing.probe_rtt, timing.probe_period
        )));
    }
    let mut config = Config::new_lan(NonZeroU32::MIN.saturating_add(31));
    config.probe_period = timing.probe_period;
    config.probe_rtt = timing.probe_rtt;
    config.suspect_to_down_after = suspicion_for(timing, others);
    config.max_packet_size = NonZeroUsize::MIN.saturating_add(MAX_PACKET - 1);
    // A member that missed a verdict (it just started, or a datagram was lost) catches up from
    // another's full membership within seconds.
    config.periodic_announce =
        Some(PeriodicParams { frequency: Duration::from_secs(2), num_members: NonZeroUsize::MIN });
    config.periodic_gossip = Some(PeriodicParams {
        frequency: GOSSIP_EVERY,
        num_members: NonZeroUsize::MIN.saturating_add(GOSSIP_FANOUT - 1),
    });
    Ok(config)
}

/// The member's state, owned by its task.
struct Member {
    foca: Foca<Peer, BincodeCodec, SmallRng, foca::NoCustomBroadcast>,
    own: Peer,
    runtime: AccumulatingRuntime<Peer>,
    /// Timers foca asked for, soonest first; `sequence` keeps equal deadlines in order.
    timers: BinaryHeap<Reverse<(Instant, u64, TimerEntry)>>,
    sequence: u64,
    socket: UdpSocket,
    seeds: Vec<SocketAddr>,
    publish: Arc<watch::Sender<Members>>,
    refresh: Arc<Notify>,
    /// How many identities the membership held when the view was last published.
    known: usize,
    /// Whether the membership may have changed since the view was last published (it is not
    /// built while nobody watches it).
    stale: bool,
    timing: Timing,
    /// How many other members foca's configuration was last made for.
    others: usize,
}

/// A timer in the heap, ordered by deadline and sequence only.
struct TimerEntry(Timer<Peer>);

impl PartialEq for TimerEntry {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Member {
    async fn run(mut self, stop: CancellationToken) {
        tracing::info!(name = %self.own.name, addr = %self.own.addr, "gossip member started");
        let mut buf = vec![0u8; MAX_PACKET];
        let mut join = tokio::time::interval(JOIN_RETRY);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
            tokio::select! {
                () = stop.cancelled() => break,
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((len, _)) = received {
                        if let Err(err) = self.foca.handle_data(&buf[..len], &mut self.runtime) {
                            tracing::debug!(error = %err, "dropped a gossip datagram");
                        }
                    }
                }
                () = sleep_until(next_timer) => self.fire_due_timers(),
                _ = join.tick() => self.announce_if_alone(),
                () = self.refresh.notified() => self.stale = true,
            }
            self.drain().await;
        }
        if let Err(err) = self.foca.leave_cluster(&mut self.runtime) {
            tracing::debug!(error = %err, "leaving the gossip membership");
        }
        self.drain().await;
        tracing::info!(name = %self.own.name, "gossip member stopped");
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, TimerEntry(timer)))) = self.timers.pop() else { break };
            if let Err(err) = self.foca.handle_timer(timer, &mut self.runtime) {
                tracing::debug!(error = %err, "gossip timer");
            }
        }
    }

    /// Gives foca the suspicion time of the membership's current size.
    fn follow_membership_size(&mut self) {
        let others = self.foca.num_members();
        if others == self.others {
            return;
        }
        let before = suspicion_for(&self.timing, self.others);
        self.others = others;
        if suspicion_for(&self.timing, others) == before {
            return;
        }
        let applied = foca_config(&self.timing, others).and_then(|config| {
            self.foca.set_config(config).map_err(|err| GossipError::Timing(err.to_string()))
        });
        if let Err(err) = applied {
            tracing::debug!(error = %err, "rescaling the suspicion time");
        }
    }

    /// Announces this member to every seed while it knows no other member.
    fn announce_if_alone(&mut self) {
        if self.foca.num_members() > 0 {
            return;
        }
        for seed in &self.seeds {
            // An announcement is accepted by whoever has the address, whatever its identity.
            let target =
                Peer { name: String::new(), role: Role::Master, addr: *seed, generation: 0 };
            if let Err(err) = self.foca.announce(target, &mut self.runtime) {
                tracing::debug!(error = %err, seed = %seed, "announcing to a seed");
            }
        }
    }

    /// Sends what foca wrote, schedules what it asked for, logs and publishes what changed
    /// (the view is rebuilt only then, not for every datagram).
    async fn drain(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            if let Err(err) = self.socket.send_to(&data, to.addr).await {
                tracing::debug!(error = %err, to = %to.addr, "sending gossip");
            }
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.sequence += 1;
            self.timers.push(Reverse((now + after, self.sequence, TimerEntry(timer))));
        }
        while let Some(notification) = self.runtime.to_notify() {
            log(&notification);
            self.stale = true;
        }
        self.follow_membership_size();
        // Building the view costs a pass over the whole membership; a thousand members in one
        // process (hollow nodes) would spend their time on views nobody reads.
        if self.publish.receiver_count() == 0 {
            return;
        }
        // Liveness and generations change only with a notification; a member first heard of
        // already down comes without one, but grows the membership.
        let known = self.foca.iter_membership_state().len();
        if !self.stale && known == self.known {
            return;
        }
        self.known = known;
        self.stale = false;
        let next = view(self.foca.iter_membership_state(), &self.own);
        self.publish.send_if_modified(|members| {
            let changed = *members != next;
            *members = next;
            changed
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn log(notification: &OwnedNotification<Peer>) {
    match notification {
        OwnedNotification::MemberUp(peer) => {
            tracing::info!(member = %peer.name, generation = peer.generation, "gossip: member up");
        }
        OwnedNotification::MemberDown(peer) => {
            tracing::warn!(member = %peer.name, generation = peer.generation, "gossip: member down");
        }
        OwnedNotification::Defunct => {
            tracing::warn!("gossip: this member was declared down");
        }
        OwnedNotification::Rejoin(peer) => {
            tracing::info!(generation = peer.generation, "gossip: rejoined under a new generation");
        }
        OwnedNotification::Rename(..) | OwnedNotification::Active | OwnedNotification::Idle => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suspicion_time_grows_with_the_logarithm_of_the_membership() {
        let timing = Timing::default();
        let cases = [
            (0, 750),
            (2, 750),
            // A local cluster: 5 masters and 2 agents.
            (6, 750),
            (8, 800),
            (100, 1680),
            (1_000, 2515),
            (10_000, 3353),
        ];
        for (others, millis) in cases {
            let suspicion = suspicion_for(&timing, others);
            assert_eq!(suspicion.as_millis(), millis, "{others} others");
            let config = foca_config(&timing, others).unwrap();
            assert_eq!(config.suspect_to_down_after, suspicion);
        }
        let slow = Timing { suspicion: Duration::from_secs(3), ..timing };
        assert_eq!(suspicion_for(&slow, 1_000), Duration::from_secs(3));
    }
}
