//! Work over a list on a few threads, stopping at the first failure: the shape of every
//! parallel pull and push (blobs are independent; the first error is what the user sees).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `work` on every item of `items`, in order of the list, on at most `workers` threads;
/// no item is started after one failed, and that first error is returned.
pub(super) fn try_each_parallel<T: Sync, E: Send>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    if failure.lock().expect("no panics while locked").is_some() {
                        return;
                    }
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    if let Err(e) = work(item) {
                        failure.lock().expect("no panics while locked").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failure.into_inner().expect("no panics while locked") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_and_the_first_failure_stops_the_rest() {
        let seen = Mutex::new(Vec::new());
        let items: Vec<u32> = (0..50).collect();
        try_each_parallel(&items, 4, |i| {
            seen.lock().unwrap().push(*i);
            Ok::<(), ()>(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, items);

        let started = AtomicUsize::new(0);
        let err = try_each_parallel(&items, 1, |i| {
            started.fetch_add(1, Ordering::Relaxed);
            if *i == 3 { Err(*i) } else { Ok(()) }
        });
        assert_eq!(err, Err(3));
        assert_eq!(started.into_inner(), 4, "nothing starts after the failure");
    }
}
