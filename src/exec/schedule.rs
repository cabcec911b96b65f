//! The scheduler: runs the DAG's nodes as soon as everything they read is done, at most
//! `jobs` at a time, and stops starting work after the first failure (unless keep-going) or
//! when the build is cancelled. Nodes ready at the start begin in plan order; nodes a finished
//! node makes ready begin next, earliest first.
//!
//! Steps run on `jobs` plain threads, not rayon workers: a step may wait for a sandboxed
//! process for minutes, and rayon's global pool is kept for CPU work (hashing the context,
//! store gc). No step code path uses rayon today (`par_iter` is only in context selection, done
//! before the build, and in store gc); if one did, it would run on the global pool. The threads
//! start when a build starts, never earlier: the rootless path must enter its user namespace
//! while the process has a single thread.
//!
//! A dedicated rayon pool sized by `--jobs` (`scope_fifo`, one task per newly ready node, the
//! earliest ready node taken from a shared queue) was tried and measured slower, so these
//! threads stay. Cold builds of the shared benchmark, release binaries, 2 cores (default jobs
//! is 4 here), 7 runs each, alternating which goes first; medians threads vs rayon:
//! `w2-parallel` --jobs 4 2.66 s vs 2.77 s (+4%), default 2.68 s vs 2.79 s (+4%);
//! `w4-monorepo` --jobs 4 1.47 s vs 1.72 s (+17%), default 1.46 s vs 1.93 s (+32%). An earlier
//! round on a busier machine gave +3%, +3%, -23%, +9%: `w4-monorepo` is noisy, `w2-parallel`
//! is consistently about 0.1 s slower with the pool.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
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

/// Runs `work` on every node of `order`, in parallel where the graph allows; returns the first
/// error.
pub(super) fn run(
    plan: &Plan,
    order: &[NodeIndex],
    jobs: usize,
    keep_going: bool,
    cancel: &AtomicBool,
    work: &(dyn Fn(NodeIndex) -> Result<(), BuildError> + Sync),
) -> Result<(), BuildError> {
    run_graph(
        order,
        |n| plan.graph.neighbors_directed(n, Direction::Incoming).collect(),
        jobs,
        keep_going,
        cancel,
        work,
    )
}

/// Runs `work` on every node of `order` (a topological order), given each node's inputs.
fn run_graph<E: Send>(
    order: &[NodeIndex],
    inputs: impl Fn(NodeIndex) -> Vec<NodeIndex>,
    jobs: usize,
    keep_going: bool,
    cancel: &AtomicBool,
    work: &(dyn Fn(NodeIndex) -> Result<(), E> + Sync),
) -> Result<(), E> {
    let in_order: HashSet<NodeIndex> = order.iter().copied().collect();
    let mut remaining = HashMap::new();
    let mut dependents: HashMap<NodeIndex, Vec<NodeIndex>> = HashMap::new();
    let mut ready = Vec::new();
    for &n in order {
        // Once per input, not per edge: a node can feed another through several edges (its
        // parent and a `bind from=` of the same stage).
        let distinct: HashSet<NodeIndex> =
            inputs(n).into_iter().filter(|d| in_order.contains(d)).collect();
        remaining.insert(n, distinct.len());
        if distinct.is_empty() {
            ready.push(n);
        }
        for d in distinct {
            dependents.entry(d).or_default().push(n);
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
                            let stop = (!keep_going && !s.errors.is_empty()) || cancel.load(SeqCst);
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
                            for &next in dependents.get(&node).into_iter().flatten() {
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
                                cancel.store(true, SeqCst);
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

struct State<E> {
    /// How many of each node's inputs are not done yet.
    remaining: HashMap<NodeIndex, usize>,
    /// Nodes whose inputs are all done; `pop` takes the next to start.
    ready: Vec<NodeIndex>,
    running: usize,
    done: usize,
    errors: Vec<E>,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// A graph given as `(node, inputs)` in plan order.
    struct Dag(Vec<(usize, Vec<usize>)>);

    impl Dag {
        /// a -> b, a -> c, b -> d, c -> d (and a second a -> b edge, like `bind from=`).
        fn diamond_and_chain() -> Self {
            // 0: a, 1: b, 2: c, 3: d; an independent chain 4 -> 5 -> 6.
            Dag(vec![
                (0, vec![]),
                (1, vec![0, 0]),
                (2, vec![0]),
                (3, vec![1, 2]),
                (4, vec![]),
                (5, vec![4]),
                (6, vec![5]),
            ])
        }

        fn order(&self) -> Vec<NodeIndex> {
            self.0.iter().map(|(n, _)| NodeIndex::new(*n)).collect()
        }

        fn inputs(&self, n: NodeIndex) -> Vec<NodeIndex> {
            let (_, inputs) = self.0.iter().find(|(m, _)| *m == n.index()).unwrap();
            inputs.iter().map(|&i| NodeIndex::new(i)).collect()
        }

        fn run(
            &self,
            jobs: usize,
            keep_going: bool,
            work: impl Fn(usize) -> Result<(), String> + Sync,
        ) -> (Result<(), String>, Vec<usize>) {
            let log = Mutex::new(Vec::new());
            let cancel = AtomicBool::new(false);
            let result =
                run_graph(&self.order(), |n| self.inputs(n), jobs, keep_going, &cancel, &|n| {
                    log.lock().unwrap().push(n.index());
                    work(n.index())
                });
            (result, log.into_inner().unwrap())
        }
    }

    fn pos(log: &[usize], n: usize) -> usize {
        log.iter().position(|&m| m == n).unwrap()
    }

    #[test]
    fn runs_every_node_once_after_its_inputs() {
        let dag = Dag::diamond_and_chain();
        for jobs in [1, 2, 4] {
            let (result, log) = dag.run(jobs, false, |_| {
                std::thread::sleep(Duration::from_millis(5));
                Ok(())
            });
            assert_eq!(result, Ok(()));
            let mut sorted = log.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3, 4, 5, 6], "jobs {jobs}: {log:?}");
            for (n, inputs) in &dag.0 {
                for i in inputs {
                    assert!(pos(&log, *i) < pos(&log, *n), "jobs {jobs}: {i} before {n}: {log:?}");
                }
            }
        }
    }

    #[test]
    fn one_job_starts_ready_nodes_in_plan_order() {
        let (result, log) = Dag::diamond_and_chain().run(1, false, |_| Ok(()));
        assert_eq!(result, Ok(()));
        assert_eq!(log, [0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn runs_at_most_jobs_at_once() {
        let dag = Dag((0..12).map(|n| (n, vec![])).collect());
        for jobs in [1, 3] {
            let running = AtomicUsize::new(0);
            let most = AtomicUsize::new(0);
            let (result, log) = dag.run(jobs, false, |_| {
                let now = running.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, SeqCst);
                Ok(())
            });
            assert_eq!(result, Ok(()));
            assert_eq!(log.len(), 12);
            assert!(most.load(SeqCst) <= jobs, "jobs {jobs}: {} at once", most.load(SeqCst));
            assert!(jobs == 1 || most.load(SeqCst) > 1, "jobs {jobs}: never in parallel");
        }
    }

    #[test]
    fn stops_after_the_first_failure() {
        // One job: b fails, so nothing after it starts, and its error is the one returned.
        let (result, log) = Dag::diamond_and_chain()
            .run(1, false, |n| if n == 1 { Err(format!("{n} failed")) } else { Ok(()) });
        assert_eq!(result, Err("1 failed".to_owned()));
        assert_eq!(log, [0, 1]);
    }

    #[test]
    fn returns_the_first_error() {
        let dag = Dag((0..4).map(|n| (n, vec![])).collect());
        let (result, log) = dag.run(1, true, |n| Err(format!("{n} failed")));
        assert_eq!(result, Err("0 failed".to_owned()));
        assert_eq!(log, [0, 1, 2, 3]);
    }

    #[test]
    fn keep_going_runs_what_does_not_depend_on_the_failure() {
        for jobs in [1, 3] {
            let (result, mut log) = Dag::diamond_and_chain()
                .run(jobs, true, |n| if n == 1 { Err(format!("{n} failed")) } else { Ok(()) });
            assert_eq!(result, Err("1 failed".to_owned()));
            log.sort_unstable();
            // d needs b: it never runs; c and the chain do.
            assert_eq!(log, [0, 1, 2, 4, 5, 6], "jobs {jobs}");
        }
    }

    #[test]
    fn cancel_stops_starting_work() {
        let dag = Dag::diamond_and_chain();
        let cancel = AtomicBool::new(false);
        let ran = AtomicUsize::new(0);
        let result: Result<(), String> =
            run_graph(&dag.order(), |n| dag.inputs(n), 1, true, &cancel, &|_| {
                ran.fetch_add(1, SeqCst);
                cancel.store(true, SeqCst);
                Ok(())
            });
        assert_eq!(result, Ok(()));
        assert_eq!(ran.load(SeqCst), 1);
    }
}
