//! The node ports' state: what every Service wants, what the table holds, and the update that
//! takes the one to the other. No IO: [`super::NodePortSync`] hands the updates to a table.
//!
//! Invariants: until the first complete listing nothing is asked of the table, so the rules an
//! earlier agent left keep serving while this one starts; the first update replaces the whole
//! table (removing what the earlier agent programmed for Services deleted since); every later
//! update names only the destinations whose rule changed, each with the rule the table holds,
//! so its cost is proportional to the change, never to the number of Services. A destination
//! two Services claim goes to the first in (namespace, name) order: for a node port only a
//! transient state (the API server allocates them uniquely), for an external IP and port a
//! mistake the API server lets through.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::plan::{Destination, Rule, Rules};
use crate::proxy::ServiceKey;

/// A change to one destination: the rule the table holds (`from`) and the one it must hold
/// (`to`); `None` is no rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub destination: Destination,
    pub from: Option<Rule>,
    pub to: Option<Rule>,
}

/// What the table is asked to do, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Hold exactly these rules, whatever it held before.
    Replace(Rules),
    /// Apply these changes to what the last update left.
    Changes(Vec<Change>),
}

/// What every Service wants and what the table holds.
#[derive(Debug, Default)]
pub struct NodePorts {
    wanted: HashMap<ServiceKey, Rules>,
    /// The Services claiming each destination.
    claims: BTreeMap<Destination, BTreeSet<ServiceKey>>,
    /// What the table holds; `None` until the first replacement succeeded.
    programmed: Option<Rules>,
    /// Destinations whose rule may differ from what the table holds.
    dirty: BTreeSet<Destination>,
    listed: bool,
}

impl NodePorts {
    /// Records the rules Service `key` wants now (empty: none, as for a deleted Service).
    pub fn set(&mut self, key: &ServiceKey, rules: Rules) {
        let previous = self.wanted.get(key);
        if previous.map_or(rules.is_empty(), |previous| *previous == rules) {
            return;
        }
        let previous = self.wanted.remove(key).unwrap_or_default();
        for destination in previous.keys().filter(|destination| !rules.contains_key(destination)) {
            if let Some(claimants) = self.claims.get_mut(destination) {
                claimants.remove(key);
                if claimants.is_empty() {
                    self.claims.remove(destination);
                }
            }
            self.dirty.insert(*destination);
        }
        for (destination, rule) in &rules {
            self.claims.entry(*destination).or_default().insert(key.clone());
            if previous.get(destination) != Some(rule) {
                self.dirty.insert(*destination);
            }
        }
        if !rules.is_empty() {
            self.wanted.insert(key.clone(), rules);
        }
    }

    /// Ends the first listing: from now on updates are asked for.
    pub fn listed(&mut self) {
        self.listed = true;
    }

    /// The update the table needs, if any: the whole table first, then only what changed.
    pub fn update(&self) -> Option<Update> {
        if !self.listed {
            return None;
        }
        let Some(programmed) = &self.programmed else {
            let all = self
                .claims
                .keys()
                .filter_map(|destination| Some((*destination, self.effective(destination)?)));
            return Some(Update::Replace(
                all.map(|(destination, rule)| (destination, rule.clone())).collect(),
            ));
        };
        let changes: Vec<Change> = self
            .dirty
            .iter()
            .filter_map(|destination| {
                let (from, to) = (programmed.get(destination), self.effective(destination));
                (from != to).then(|| Change {
                    destination: *destination,
                    from: from.cloned(),
                    to: to.cloned(),
                })
            })
            .collect();
        (!changes.is_empty()).then_some(Update::Changes(changes))
    }

    /// Records that the table applied `update` (one [`NodePorts::update`] returned).
    pub fn applied(&mut self, update: &Update) {
        match update {
            Update::Replace(rules) => self.programmed = Some(rules.clone()),
            Update::Changes(changes) => {
                let programmed = self.programmed.get_or_insert_with(Rules::new);
                for change in changes {
                    match &change.to {
                        Some(rule) => programmed.insert(change.destination, rule.clone()),
                        None => programmed.remove(&change.destination),
                    };
                }
            }
        }
        let programmed = self.programmed.as_ref();
        let still_differ: BTreeSet<Destination> = self
            .dirty
            .iter()
            .filter(|destination| {
                programmed.and_then(|rules| rules.get(destination)) != self.effective(destination)
            })
            .copied()
            .collect();
        self.dirty = still_differ;
    }

    /// How many destinations (node ports and external addresses) the Services want.
    pub fn len(&self) -> usize {
        self.claims.len()
    }

    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// The rule `destination` must have: that of the first Service claiming it.
    fn effective(&self, destination: &Destination) -> Option<&Rule> {
        let owner = self.claims.get(destination)?.first()?;
        self.wanted.get(owner)?.get(destination)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use flotilla_ebpf::Protocol;

    use super::super::plan::{ExternalAddress, NodePort, Verdict};
    use super::*;

    fn key(name: &str) -> ServiceKey {
        ("default".to_owned(), name.to_owned())
    }

    fn port(number: u16) -> Destination {
        NodePort { protocol: Protocol::Tcp, port: number }.into()
    }

    fn forward(service: &str, last: u8) -> Rule {
        let backends = vec![SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), 8080)];
        Rule {
            service: service.to_owned(),
            verdict: Verdict::Forward { backends, masquerade: true, affinity: None },
        }
    }

    fn rules(entries: &[(u16, Rule)]) -> Rules {
        entries.iter().map(|(number, rule)| (port(*number), rule.clone())).collect()
    }

    /// Applies whatever update is due and returns it.
    fn sync(state: &mut NodePorts) -> Option<Update> {
        let update = state.update()?;
        state.applied(&update);
        Some(update)
    }

    #[test]
    fn nothing_is_asked_before_the_listing_then_the_whole_table() {
        let mut state = NodePorts::default();
        state.set(&key("web"), rules(&[(30080, forward("default/web", 1))]));
        assert_eq!(state.update(), None, "an earlier agent's table keeps serving");
        state.listed();
        assert_eq!(
            sync(&mut state),
            Some(Update::Replace(rules(&[(30080, forward("default/web", 1))])))
        );
        assert_eq!(state.update(), None);
        state.set(&key("web"), Rules::new());
        assert_eq!(
            sync(&mut state),
            Some(Update::Changes(vec![Change {
                destination: port(30080),
                from: Some(forward("default/web", 1)),
                to: None
            }]))
        );
    }

    #[test]
    fn an_update_names_only_the_node_ports_that_changed() {
        let mut state = NodePorts::default();
        state.listed();
        for (name, number) in [("a", 30001), ("b", 30002), ("c", 30003)] {
            state.set(&key(name), rules(&[(number, forward(name, 1))]));
        }
        sync(&mut state);
        let cases = [
            // (step, service, its new rules, expected changes as (port, from, to))
            (
                "a backend changes",
                "b",
                rules(&[(30002, forward("b", 2))]),
                vec![(30002, Some(forward("b", 1)), Some(forward("b", 2)))],
            ),
            ("the same again", "b", rules(&[(30002, forward("b", 2))]), vec![]),
            (
                "the node port moves",
                "c",
                rules(&[(30004, forward("c", 1))]),
                vec![(30003, Some(forward("c", 1)), None), (30004, None, Some(forward("c", 1)))],
            ),
            ("the Service goes", "a", Rules::new(), vec![(30001, Some(forward("a", 1)), None)]),
            ("an unknown Service goes", "z", Rules::new(), vec![]),
        ];
        for (step, name, wanted, expected) in cases {
            state.set(&key(name), wanted);
            let expected: Vec<Change> = expected
                .into_iter()
                .map(|(number, from, to)| Change { destination: port(number), from, to })
                .collect();
            let got = match sync(&mut state) {
                Some(Update::Changes(changes)) => changes,
                None => Vec::new(),
                Some(other) => panic!("{step}: {other:?}"),
            };
            assert_eq!(got, expected, "{step}");
        }
        assert_eq!(state.len(), 2);
    }

    #[test]
    fn a_node_port_claimed_twice_goes_to_the_first_service_then_the_other() {
        let mut state = NodePorts::default();
        state.listed();
        state.set(&key("b"), rules(&[(30080, forward("b", 2))]));
        state.set(&key("a"), rules(&[(30080, forward("a", 1))]));
        assert_eq!(sync(&mut state), Some(Update::Replace(rules(&[(30080, forward("a", 1))]))));
        state.set(&key("a"), Rules::new());
        assert_eq!(
            sync(&mut state),
            Some(Update::Changes(vec![Change {
                destination: port(30080),
                from: Some(forward("a", 1)),
                to: Some(forward("b", 2)),
            }]))
        );
    }

    #[test]
    fn an_external_address_two_services_list_goes_to_the_first_and_sits_beside_node_ports() {
        let address: Destination =
            ExternalAddress { ip: Ipv4Addr::new(192, 0, 2, 7), protocol: Protocol::Tcp, port: 80 }
                .into();
        let mut state = NodePorts::default();
        state.listed();
        state.set(&key("b"), Rules::from([(address, forward("b", 2))]));
        state
            .set(&key("a"), Rules::from([(address, forward("a", 1)), (port(80), forward("a", 1))]));
        assert_eq!(
            sync(&mut state),
            Some(Update::Replace(Rules::from([
                (port(80), forward("a", 1)),
                (address, forward("a", 1)),
            ]))),
            "node port 80 and the external address's port 80 are two destinations"
        );
        state.set(&key("a"), Rules::new());
        assert_eq!(
            sync(&mut state),
            Some(Update::Changes(vec![
                Change { destination: port(80), from: Some(forward("a", 1)), to: None },
                Change {
                    destination: address,
                    from: Some(forward("a", 1)),
                    to: Some(forward("b", 2)),
                },
            ]))
        );
        assert_eq!(state.len(), 1);
    }

    #[test]
    fn a_failed_update_is_asked_for_again_with_later_changes() {
        let mut state = NodePorts::default();
        state.listed();
        sync(&mut state);
        state.set(&key("a"), rules(&[(30001, forward("a", 1))]));
        let failed = state.update();
        assert!(failed.is_some());
        // The table refused it: nothing is recorded, and the next update carries both changes.
        state.set(&key("b"), rules(&[(30002, forward("b", 1))]));
        let Some(Update::Changes(changes)) = sync(&mut state) else { panic!("no changes") };
        let destinations: Vec<Destination> = changes.iter().map(|c| c.destination).collect();
        assert_eq!(destinations, [port(30001), port(30002)]);
        assert_eq!(state.update(), None);
    }
}
