//! The scheduler: runs the DAG's nodes as soon as everything they read is done, at most
//! `jobs` at a time, earliest in plan order first, and stops starting work after the first
//! failure (unless keep-going) or when the build is cancelled.
//!
//! Steps run on a rayon pool of their own, sized by `--jobs` and built for one build: not on
//! rayon's global pool, which is kept for CPU work (hashing the context, store gc), because a
//! step may wait for a sandboxed process for minutes and must never starve that work. No task
//! on the step pool waits for another step: a finished node makes its dependents ready and
//! spawns one task per newly ready node, and the end of the pool's scope is the end of the
//! build. Each task takes the earliest ready node from a shared queue, so the order nodes start
//! in does not depend on the order rayon runs tasks in (LIFO per worker).
//!
//! CPU work inside a step that used rayon would run on the step pool, not the global one, and
//! a worker waiting in a `join` could pick up a minutes-long step meanwhile; no step code path
//! uses rayon today (`par_iter` is only in context selection, done before the build, and in
//! store gc). The pool is created when a build starts, never earlier: the rootless path must
//! enter its user namespace while the process has a single thread.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;

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
    if order.is_empty() {
        return Ok(());
    }
    let sched = Scheduler::new(order, inputs, keep_going, cancel, work);
    let first = sched.state.lock().expect("no panics while locked").ready.len();
    let threads = jobs.clamp(1, order.len());
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("stack-step-{i}"))
        .build()
    {
        Ok(pool) => pool.scope_fifo(|scope| {
            for _ in 0..first {
                spawn(&sched, scope);
            }
        }),
        // No threads to be had (a process or memory limit): the same order, one at a time on
        // this thread, rather than no build at all.
        Err(_) => while sched.step().is_some() {},
    }
    let mut s = sched.state.into_inner().expect("no panics while locked");
    if s.errors.is_empty() { Ok(()) } else { Err(s.errors.remove(0)) }
}

/// Spawns a task that runs the earliest ready node, then one task per node it made ready.
fn spawn<'s, E: Send>(sched: &'s Scheduler<'s, E>, scope: &rayon::ScopeFifo<'s>) {
    scope.spawn_fifo(move |scope| {
        for _ in 0..sched.step().unwrap_or(0) {
            spawn(sched, scope);
        }
    });
}

/// The graph as the scheduler sees it: nodes by their position in plan order.
struct Scheduler<'a, E> {
    order: &'a [NodeIndex],
    /// Each node's dependents, once each.
    dependents: Vec<Vec<usize>>,
    state: Mutex<State<E>>,
    keep_going: bool,
    cancel: &'a AtomicBool,
    work: &'a (dyn Fn(NodeIndex) -> Result<(), E> + Sync),
}

struct State<E> {
    /// How many of each node's inputs are not done yet.
    remaining: Vec<usize>,
    /// Nodes whose inputs are all done, earliest in plan order first.
    ready: BinaryHeap<Reverse<usize>>,
    errors: Vec<E>,
}

impl<'a, E> Scheduler<'a, E> {
    fn new(
        order: &'a [NodeIndex],
        inputs: impl Fn(NodeIndex) -> Vec<NodeIndex>,
        keep_going: bool,
        cancel: &'a AtomicBool,
        work: &'a (dyn Fn(NodeIndex) -> Result<(), E> + Sync),
    ) -> Self {
        let position: HashMap<NodeIndex, usize> =
            order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut dependents = vec![Vec::new(); order.len()];
        let mut remaining = vec![0; order.len()];
        for (i, &n) in order.iter().enumerate() {
            // Once per input, not per edge: a node can feed another through several edges (its
            // parent and a `bind from=` of the same stage).
            let distinct: HashSet<usize> =
                inputs(n).into_iter().filter_map(|d| position.get(&d).copied()).collect();
            remaining[i] = distinct.len();
            for d in distinct {
                dependents[d].push(i);
            }
        }
        let ready = (0..order.len()).filter(|&i| remaining[i] == 0).map(Reverse).collect();
        let state = Mutex::new(State { remaining, ready, errors: Vec::new() });
        Scheduler { order, dependents, state, keep_going, cancel, work }
    }

    /// Runs the earliest ready node, unless the build has stopped; returns how many nodes it
    /// made ready, or `None` when it ran nothing.
    fn step(&self) -> Option<usize> {
        let i = {
            let mut s = self.state.lock().expect("no panics while locked");
            let stop = (!self.keep_going && !s.errors.is_empty()) || self.cancel.load(SeqCst);
            if stop {
                return None;
            }
            s.ready.pop()?.0
        };
        let result = (self.work)(self.order[i]);
        let mut s = self.state.lock().expect("no panics while locked");
        match result {
            Ok(()) => {
                let mut newly = 0;
                for &d in &self.dependents[i] {
                    s.remaining[d] -= 1;
                    if s.remaining[d] == 0 {
                        s.ready.push(Reverse(d));
                        newly += 1;
                    }
                }
                Some(newly)
            }
            Err(e) => {
                if !self.keep_going {
                    // Running steps see this and are killed.
                    self.cancel.store(true, SeqCst);
                }
                s.errors.push(e);
                Some(0)
            }
        }
    }
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

    #[test]
    fn steps_run_on_the_step_pool() {
        let dag = Dag(vec![(0, vec![])]);
        let (result, _) = dag.run(2, false, |_| {
            let name = std::thread::current().name().map(str::to_owned);
            assert!(name.as_deref().is_some_and(|n| n.starts_with("stack-step-")), "{name:?}");
            assert!(rayon::current_thread_index().is_some());
            Ok(())
        });
        assert_eq!(result, Ok(()));
    }
}
