//! Sets of completion indexes kept as ordered, non-adjacent intervals, in the compact text form
//! of `status.completedIndexes` and `status.failedIndexes` (`"1,3-5,7"`).
//!
//! Invariant: intervals are sorted, disjoint and never adjacent (`[1,2]` and `[3,4]` merge),
//! except that parsing keeps a stored string's gaps as they are.

use std::fmt;

/// An ordered set of indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Intervals {
    /// Inclusive `(first, last)` pairs.
    spans: Vec<(usize, usize)>,
}

impl Intervals {
    /// Parses a stored index string, ignoring malformed parts and indexes at or above
    /// `completions` (upstream's `parseIndexesFromString`).
    pub(super) fn parse(text: &str, completions: usize) -> Intervals {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for part in text.split(',').filter(|part| !part.is_empty()) {
            let mut ends = part.split('-');
            let Some(Ok(first)) = ends.next().map(str::parse::<usize>) else { continue };
            if first >= completions {
                break;
            }
            let last = match ends.next() {
                None => first,
                Some(last) => match last.parse::<usize>() {
                    Ok(last) => last.min(completions.saturating_sub(1)),
                    Err(_) => continue,
                },
            };
            match spans.last_mut() {
                Some(previous) if previous.1 + 1 == first => previous.1 = last,
                _ => spans.push((first, last)),
            }
        }
        Intervals { spans }
    }

    /// Returns the union with `other`.
    pub(super) fn merge(&self, other: &Intervals) -> Intervals {
        let mut all: Vec<(usize, usize)> =
            self.spans.iter().chain(other.spans.iter()).copied().collect();
        all.sort_unstable();
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(all.len());
        for (first, last) in all {
            match spans.last_mut() {
                Some(previous) if first <= previous.1 + 1 => previous.1 = previous.1.max(last),
                _ => spans.push((first, last)),
            }
        }
        Intervals { spans }
    }

    /// Returns the union with the given indexes.
    pub(super) fn with_indexes(&self, indexes: impl IntoIterator<Item = usize>) -> Intervals {
        self.merge(&Intervals { spans: indexes.into_iter().map(|index| (index, index)).collect() })
    }

    /// How many indexes the set holds.
    pub(super) fn total(&self) -> usize {
        self.spans.iter().map(|(first, last)| last - first + 1).sum()
    }

    pub(super) fn has(&self, index: usize) -> bool {
        self.spans.iter().any(|(first, last)| (*first..=*last).contains(&index))
    }

    /// The first `count` indexes below `completions` not in the set.
    pub(super) fn first_missing(&self, count: usize, completions: usize) -> Vec<usize> {
        (0..completions).filter(|index| !self.has(*index)).take(count).collect()
    }
}

impl fmt::Display for Intervals {
    /// Writes `"1,3-5,7"`; a pair of neighbours is written `"3,4"`, as upstream does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, (first, last)) in self.spans.iter().enumerate() {
            if position > 0 {
                f.write_str(",")?;
            }
            write!(f, "{first}")?;
            if last == &(first + 1) {
                write!(f, ",{last}")?;
            } else if last > first {
                write!(f, "-{last}")?;
            }
        }
        Ok(())
    }
}
