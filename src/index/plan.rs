//! The filtered-search planner, one for every index kind (as qdrant's `hnsw_index` decides
//! between its graph and a plain scan): an exact scan while the index has no graph or a
//! filter leaves few vectors, a graph walk otherwise, and the exact scan again when a
//! filtered walk strands itself short of what exists.

use std::collections::HashSet;

use super::Plan;

/// What an index offers the planner for one query.
pub(super) trait Searcher {
    /// A vector's place in the index.
    type Slot: Copy;
    /// A scored hit.
    type Hit;
    /// Whether the index has a graph to walk (it may scan only while small).
    fn has_graph(&self) -> bool;
    /// The slots of these hotels' vectors, live or not.
    fn slots_of(&self, hotels: &[i64]) -> Vec<Self::Slot>;
    /// Whether a slot holds a live vector.
    fn is_live(&self, slot: Self::Slot) -> bool;
    /// The best live hits among `slots`, exactly.
    fn scan(&self, slots: Vec<Self::Slot>) -> Vec<Self::Hit>;
    /// The best live hits among all slots, exactly.
    fn scan_all(&self) -> Vec<Self::Hit>;
    /// The best live hits by a graph walk, only of `hotels` when given.
    fn walk(&self, hotels: Option<&HashSet<i64>>) -> Vec<Self::Hit>;
}

/// The `k` best hits (only from `hotels`, when given) and how they were found.
pub(super) fn search<S: Searcher>(s: &S, k: usize, hotels: Option<&[i64]>, exact_max: usize) -> (Vec<S::Hit>, Plan) {
    let Some(hs) = hotels else {
        return if s.has_graph() { (s.walk(None), Plan::Graph) } else { (s.scan_all(), Plan::Exact) };
    };
    let allowed = s.slots_of(hs);
    if !s.has_graph() || allowed.len() <= exact_max {
        return (s.scan(allowed), Plan::ExactFiltered);
    }
    let set: HashSet<i64> = hs.iter().copied().collect();
    let found = s.walk(Some(&set));
    let live = allowed.iter().filter(|&&slot| s.is_live(slot)).count();
    if found.len() >= k.min(live) {
        (found, Plan::Graph)
    } else {
        // The walk can strand itself in a sparse filter: k exist, so find them.
        (s.scan(allowed), Plan::ExactFiltered)
    }
}
