//! A map from a namespaced object's name to a value, grouped by namespace and looked up with
//! borrowed names, so that answering a query allocates nothing to find a Service.
//!
//! Invariants: namespaces and names are stored lowercased, and lookups compare
//! case-insensitively (an argument is lowercased only when it holds an uppercase letter; the
//! resolver's names are lowercase already). A name that fits in one DNS label, as every
//! Service name and namespace does, is stored inside the table, so a lookup compares it
//! without following a pointer. A namespace is present exactly while it holds at least one
//! entry, so whether it exists is one hash lookup; `len` counts every entry.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};

/// The longest name stored inside the table: one DNS label.
const INLINE_NAME: usize = 63;

/// Values keyed by (namespace, name), case-insensitively.
#[derive(Clone, Debug)]
pub(crate) struct NamespacedMap<V> {
    namespaces: HashMap<Key, HashMap<Key, V>>,
    len: usize,
}

impl<V> Default for NamespacedMap<V> {
    fn default() -> Self {
        Self { namespaces: HashMap::new(), len: 0 }
    }
}

impl<V> NamespacedMap<V> {
    /// Returns how many entries the map holds, over all namespaces.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Returns the value of `namespace`/`name`.
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<&V> {
        self.namespaces.get(key(namespace).as_ref())?.get(key(name).as_ref())
    }

    /// Returns true when `namespace` holds at least one entry.
    pub(crate) fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(key(namespace).as_ref())
    }

    /// Sets the value of `namespace`/`name`; returns the value it replaces.
    pub(crate) fn insert(&mut self, namespace: &str, name: &str, value: V) -> Option<V> {
        let names = self.namespaces.entry(Key::new(namespace)).or_default();
        let previous = names.insert(Key::new(name), value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Returns the value of `namespace`/`name`, inserting `V::default()` when it has none.
    pub(crate) fn get_or_default(&mut self, namespace: &str, name: &str) -> &mut V
    where
        V: Default,
    {
        let names = self.namespaces.entry(Key::new(namespace)).or_default();
        let name = Key::new(name);
        if !names.contains_key(&name) {
            self.len += 1;
        }
        names.entry(name).or_default()
    }

    /// Returns the value of `namespace`/`name` for changing it in place.
    pub(crate) fn get_mut(&mut self, namespace: &str, name: &str) -> Option<&mut V> {
        self.namespaces.get_mut(key(namespace).as_ref())?.get_mut(key(name).as_ref())
    }

    /// Removes `namespace`/`name`; returns its value. The namespace goes when it empties.
    pub(crate) fn remove(&mut self, namespace: &str, name: &str) -> Option<V> {
        let namespace = key(namespace);
        let names = self.namespaces.get_mut(namespace.as_ref())?;
        let removed = names.remove(key(name).as_ref())?;
        if names.is_empty() {
            self.namespaces.remove(namespace.as_ref());
        }
        self.len -= 1;
        Some(removed)
    }
}

/// Returns the bytes a name is looked up by: `name` in ASCII lowercase, borrowed when it is
/// already.
fn key(name: &str) -> Cow<'_, [u8]> {
    if name.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase().into_bytes())
    } else {
        Cow::Borrowed(name.as_bytes())
    }
}

/// A stored name, lowercase; inside the table when it fits in one label. Hashes and compares
/// as its bytes, so the table is searched with a borrowed `[u8]`.
#[derive(Clone)]
enum Key {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Long(Box<[u8]>),
}

impl Key {
    fn new(name: &str) -> Self {
        let name = name.to_ascii_lowercase().into_bytes();
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE_NAME => {
                let mut bytes = [0; INLINE_NAME];
                bytes[..name.len()].copy_from_slice(&name);
                Self::Inline { len, bytes }
            }
            _ => Self::Long(name.into_boxed_slice()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Long(bytes) => bytes,
        }
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), formatter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case() {
        let mut map = NamespacedMap::default();
        assert_eq!(map.insert("Default", "Web", 1), None);
        assert_eq!(map.get("default", "web"), Some(&1));
        assert_eq!(map.get("DEFAULT", "wEb"), Some(&1));
        assert!(map.has_namespace("default") && map.has_namespace("DeFault"));
        assert_eq!(map.insert("default", "WEB", 2), Some(1), "the same key, replaced");
        assert_eq!(map.len(), 1);
        assert_eq!(map.get("default", "other"), None);
        assert_eq!(map.get("other", "web"), None);
    }

    #[test]
    fn names_longer_than_a_label_are_kept_too() {
        let mut map = NamespacedMap::default();
        let long = format!("Slice-{}", "x".repeat(100));
        let label = "y".repeat(INLINE_NAME);
        map.insert("default", &long, 1);
        map.insert("default", &label, 2);
        assert_eq!(map.get("default", &long.to_ascii_lowercase()), Some(&1));
        assert_eq!(map.get("DEFAULT", &long), Some(&1));
        assert_eq!(map.get("default", &label), Some(&2));
        assert_eq!(map.get("default", &long[..INLINE_NAME]), None);
        assert_eq!(map.remove("default", &long), Some(1));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn a_namespace_exists_while_it_holds_an_entry() {
        let mut map = NamespacedMap::default();
        map.insert("a", "one", ());
        map.insert("a", "two", ());
        map.insert("b", "one", ());
        assert_eq!(map.len(), 3);

        // --- removing one of two keeps the namespace
        assert_eq!(map.remove("A", "ONE"), Some(()));
        assert!(map.has_namespace("a"));
        assert_eq!(map.remove("a", "one"), None, "already removed");
        assert_eq!(map.len(), 2);

        // --- removing the last one drops it
        assert_eq!(map.remove("a", "two"), Some(()));
        assert!(!map.has_namespace("a"));
        assert!(map.has_namespace("b"));
        assert_eq!(map.len(), 1);
        assert_eq!(map.remove("missing", "one"), None);
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn entries_are_created_on_demand_and_changed_in_place() {
        let mut map: NamespacedMap<Vec<u32>> = NamespacedMap::default();
        map.get_or_default("ns", "svc").push(1);
        map.get_or_default("NS", "SVC").push(2);
        assert_eq!(map.get("ns", "svc"), Some(&vec![1, 2]));
        assert_eq!(map.len(), 1);
        map.get_mut("Ns", "Svc").unwrap().retain(|value| *value != 1);
        assert_eq!(map.get("ns", "svc"), Some(&vec![2]));
        assert_eq!(map.get_mut("ns", "other"), None);
        assert_eq!(map.remove("ns", "svc"), Some(vec![2]));
        assert!(!map.has_namespace("ns"));
        assert_eq!(map.len(), 0);
    }
}
