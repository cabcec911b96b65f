//! The scheduler: runs the DAG's nodes as soon as everything they read is done, at most
//! `jobs` at a time, and stops starting work after the first failure (unless keep-going).
//!
//! Steps run on plain threads, not rayon workers: a step may wait for a sandboxed process for
//! minutes, and rayon's pool is kept for CPU work (hashing, compression).

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;

use super::build::BuildError;
use crate::plan::Plan;

/// The nodes the requested images need, in a valid topological order.
pub(super) fn order(plan: &Plan) -> Vec<NodeIndex> {
    let mut needed: HashSet<NodeIndex> = HashSet::new();
    let mut todo: Vec<NodeIndex> = plan.images.iter().map(|i| i.node).collect();
    while let Some(n) = todo.pop() {
        if needed.insert(n) {
            todo.extend(plan.graph.neighbors_directed(n, Direction::Incoming));
        }
    }
    let topo = petgraph::algo::toposort(&plan.graph, None).expect("the planner rejects cycles");
    topo.into_iter().filter(|n| needed.contains(n)).collect()
}

struct State {
    remaining: HashMap<NodeIndex, usize>,
    ready: Vec<NodeIndex>,
    running: usize,
    done: usize,
    errors: Vec<BuildError>,
}

/// Runs `work` on every node of `order`, in parallel where the graph allows.
pub(super) fn run(
    plan: &Plan,
    order: &[NodeIndex],
    jobs: usize,
    keep_going: bool,
    cancel: &std::sync::atomic::AtomicBool,
    work: &(dyn Fn(NodeIndex) -> Result<(), BuildError> + Sync),
) -> Result<(), BuildError> {
    let in_order: HashSet<NodeIndex> = order.iter().copied().collect();
    let mut remaining = HashMap::new();
    let mut ready = Vec::new();
    for &n in order {
        let deps = plan
            .graph
            .neighbors_directed(n, Direction::Incoming)
            .filter(|d| in_order.contains(d))
            .collect::<HashSet<_>>()
            .len();
        remaining.insert(n, deps);
        if deps == 0 {
            ready.push(n);
        }
    }
    // Start in plan order (reverse so pop() takes the earliest).
    ready.reverse();
    let state = Mutex::new(State { remaining, ready, running: 0, done: 0, errors: Vec::new() });
    let cv = Condvar::new();
    let total = order.len();
    let jobs = jobs.max(1);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(total.max(1)) {
            scope.spawn(|| {
                loop {
                    let node = {
                        let mut s = state.lock().expect("no panics while locked");
                        loop {
                            let stop = (!keep_going && !s.errors.is_empty())
                                || cancel.load(std::sync::atomic::Ordering::SeqCst);
                            if s.done == total || (stop && s.running == 0) {
                                cv.notify_all();
                                return;
                            }
                            if !stop && let Some(n) = s.ready.pop() {
                                s.running += 1;
                                break n;
                            }
                            if s.running == 0 && s.ready.is_empty() {
                                // Everything left depends on a failed node.
                                cv.notify_all();
                                return;
                            }
                            s = cv.wait(s).expect("no panics while locked");
                        }
                    };
                    let result = work(node);
                    let mut s = state.lock().expect("no panics while locked");
                    s.running -= 1;
                    match result {
                        Ok(()) => {
                            s.done += 1;
                            let mut newly: Vec<NodeIndex> = Vec::new();
                            // Once per dependent, as counted: a node can feed another through
                            // several edges (its parent and a `bind from=` of the same stage).
                            let dependents: HashSet<NodeIndex> =
                                plan.graph.neighbors_directed(node, Direction::Outgoing).collect();
                            for next in dependents {
                                if let Some(r) = s.remaining.get_mut(&next) {
                                    *r -= 1;
                                    if *r == 0 {
                                        newly.push(next);
                                    }
                                }
                            }
                            newly.sort();
                            newly.reverse();
                            s.ready.extend(newly);
                        }
                        Err(e) => {
                            if !keep_going {
                                // Running steps see this and are killed.
                                cancel.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                            s.errors.push(e);
                        }
                    }
                    cv.notify_all();
                }
            });
        }
    });
    let mut s = state.into_inner().expect("no panics while locked");
    if s.errors.is_empty() { Ok(()) } else { Err(s.errors.remove(0)) }
}
