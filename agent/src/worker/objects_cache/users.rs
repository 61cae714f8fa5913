//! Which registered pods use which objects, kubelet's reference counting of the objects its
//! watch-based ConfigMap and Secret managers follow: pure bookkeeping that says which watches
//! to start and which to stop.
//!
//! Invariant: after every call, the objects with users are exactly the union of what the
//! registered pods reference, and the returned [`WatchChanges`] are the difference from before,
//! so a caller that applies them keeps one watch per object that some pod uses.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::ObjectKey;

/// The watches to start and to stop after a registration changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct WatchChanges {
    /// Objects no registered pod referenced before, in key order.
    pub start: Vec<ObjectKey>,
    /// Objects no registered pod references any more, in key order.
    pub stop: Vec<ObjectKey>,
}

/// The objects each registered pod references, and the pods using each object.
#[derive(Debug, Default)]
pub(crate) struct ObjectUsers {
    /// By pod uid; a pod that references nothing is not kept.
    by_pod: HashMap<String, BTreeSet<ObjectKey>>,
    /// By object; an object nobody uses is not kept.
    by_object: BTreeMap<ObjectKey, BTreeSet<String>>,
}

impl ObjectUsers {
    /// Records that the pod `uid` references exactly `objects` now (replacing whatever it
    /// referenced before) and returns the watches that must start and stop.
    pub(crate) fn register(&mut self, uid: &str, objects: BTreeSet<ObjectKey>) -> WatchChanges {
        let before = self.by_pod.remove(uid).unwrap_or_default();
        let mut changes = WatchChanges::default();
        for key in before.difference(&objects) {
            let Some(users) = self.by_object.get_mut(key) else { continue };
            users.remove(uid);
            if users.is_empty() {
                self.by_object.remove(key);
                changes.stop.push(key.clone());
            }
        }
        for key in objects.difference(&before) {
            let users = self.by_object.entry(key.clone()).or_default();
            if users.is_empty() {
                changes.start.push(key.clone());
            }
            users.insert(uid.to_owned());
        }
        if !objects.is_empty() {
            self.by_pod.insert(uid.to_owned(), objects);
        }
        changes
    }

    /// Forgets the pod `uid` and returns the watches that must stop.
    pub(crate) fn unregister(&mut self, uid: &str) -> WatchChanges {
        self.register(uid, BTreeSet::new())
    }

    /// The uids of the pods that reference `key`.
    pub(crate) fn pods_using(&self, key: &ObjectKey) -> impl Iterator<Item = &str> {
        self.by_object.get(key).into_iter().flatten().map(String::as_str)
    }

    /// Every object some registered pod references.
    #[cfg(test)]
    pub(crate) fn used(&self) -> impl Iterator<Item = &ObjectKey> {
        self.by_object.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(name: &str) -> ObjectKey {
        ObjectKey::config_map("shop", name)
    }

    fn secret(name: &str) -> ObjectKey {
        ObjectKey::secret("shop", name)
    }

    enum Step {
        Register(&'static str, Vec<ObjectKey>),
        Unregister(&'static str),
    }

    #[test]
    fn watches_start_with_the_first_user_and_stop_with_the_last() {
        use Step::{Register, Unregister};
        let ca = || map("kube-root-ca.crt");
        // (what happens, the step, watches started, watches stopped)
        let cases: Vec<(&str, Step, Vec<ObjectKey>, Vec<ObjectKey>)> = vec![
            (
                "the first pod starts its objects",
                Register("a", vec![ca(), secret("db")]),
                vec![ca(), secret("db")],
                vec![],
            ),
            ("a second user of the CA starts nothing", Register("b", vec![ca()]), vec![], vec![]),
            (
                "registering again unchanged does nothing",
                Register("a", vec![ca(), secret("db")]),
                vec![],
                vec![],
            ),
            (
                "a changed reference starts and stops",
                Register("a", vec![ca(), map("settings")]),
                vec![map("settings")],
                vec![secret("db")],
            ),
            (
                "the CA keeps its watch while b uses it",
                Unregister("a"),
                vec![],
                vec![map("settings")],
            ),
            ("unregistering twice does nothing", Unregister("a"), vec![], vec![]),
            ("a pod that references nothing starts nothing", Register("c", vec![]), vec![], vec![]),
            ("the last user stops the CA", Unregister("b"), vec![], vec![ca()]),
            ("an unknown pod does nothing", Unregister("z"), vec![], vec![]),
            ("a new pod starts the CA again", Register("d", vec![ca()]), vec![ca()], vec![]),
        ];
        let mut users = ObjectUsers::default();
        let mut referenced: BTreeMap<&str, BTreeSet<ObjectKey>> = BTreeMap::new();
        for (name, step, start, stop) in cases {
            let changes = match step {
                Register(uid, objects) => {
                    let objects: BTreeSet<ObjectKey> = objects.into_iter().collect();
                    referenced.insert(uid, objects.clone());
                    users.register(uid, objects)
                }
                Unregister(uid) => {
                    referenced.remove(uid);
                    users.unregister(uid)
                }
            };
            let mut start = start;
            start.sort();
            assert_eq!(changes, WatchChanges { start, stop }, "{name}");
            let union: BTreeSet<&ObjectKey> = referenced.values().flatten().collect();
            assert_eq!(users.used().collect::<BTreeSet<_>>(), union, "{name}: watched objects");
        }
        assert_eq!(users.pods_using(&ca()).collect::<Vec<_>>(), ["d"]);
        assert_eq!(users.pods_using(&secret("db")).count(), 0);
    }

    #[test]
    fn pods_using_an_object_are_the_ones_referencing_it() {
        let mut users = ObjectUsers::default();
        users.register("a", BTreeSet::from([map("ca"), secret("db")]));
        users.register("b", BTreeSet::from([map("ca")]));
        users.register("c", BTreeSet::from([secret("other")]));
        assert_eq!(users.pods_using(&map("ca")).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(users.pods_using(&secret("db")).collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            users.pods_using(&ObjectKey::config_map("other-namespace", "ca")).count(),
            0,
            "objects are per namespace"
        );
    }
}
