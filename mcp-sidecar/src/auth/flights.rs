//! One request per question at a time: whoever asks what is already being
//! asked waits for that answer instead of asking again.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// Requests in flight (to the apiserver, to an identity provider), by question: whoever asks a
/// question already being asked waits for that answer (errors included)
/// instead of asking again, so that concurrent requests with one new token,
/// or one caller's parallel `tools/list`, make one review each.
pub(crate) struct Flights<K, V: Clone> {
    pending: Mutex<HashMap<K, Shared<BoxFuture<'static, V>>>>,
}

impl<K, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone + Send + Sync + 'static> Flights<K, V> {
    /// Joins the flight for `key`, or starts one with what `start` gives
    /// (or returns its refusal without asking anything).
    pub(crate) async fn join_or_start<F>(&self, key: K, start: impl FnOnce() -> Result<F, V>) -> V
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (flight, _landing) = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            match pending.get(&key) {
                Some(flight) => (flight.clone(), None),
                None => {
                    let flight = match start() {
                        Ok(asking) => asking.boxed().shared(),
                        Err(refused) => return refused,
                    };
                    pending.insert(key.clone(), flight.clone());
                    (flight, Some(Landing { flights: self, key }))
                }
            }
        };
        flight.await
    }
}

/// Takes a flight off the board when its starter is done with it, answered
/// or dropped (a caller that hangs up): those who joined keep their copy,
/// and the next caller finds the answer in the caches, or asks anew.
struct Landing<'a, K: Hash + Eq, V: Clone> {
    flights: &'a Flights<K, V>,
    key: K,
}

impl<K: Hash + Eq, V: Clone> Drop for Landing<'_, K, V> {
    fn drop(&mut self) {
        let mut pending = self
            .flights
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        pending.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_askers_of_one_question_share_one_answer() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let flights = Flights::<&str, Result<u32, String>>::default();
        let asked = Arc::new(AtomicUsize::new(0));
        let (open, gate) = tokio::sync::watch::channel(false);
        let ask = |answer: Result<u32, String>| {
            let (asked, mut gate) = (Arc::clone(&asked), gate.clone());
            flights.join_or_start("q", move || {
                Ok(async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.wait_for(|open| *open).await;
                    answer
                })
            })
        };
        let waiting = futures::future::join_all((0..10).map(|_| ask(Err("down".into()))));
        let released = async {
            tokio::task::yield_now().await;
            let _ = open.send(true);
        };
        let (answers, ()) = tokio::join!(waiting, released);
        assert!(
            answers.iter().all(|a| *a == Err("down".to_string())),
            "errors are shared too"
        );
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        // Landed: the next asker asks again.
        assert_eq!(ask(Ok(7)).await, Ok(7));
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        // A refusal before asking starts no flight.
        let refused = flights
            .join_or_start("q", || Err::<std::future::Ready<_>, _>(Err("busy".into())))
            .await;
        assert_eq!(refused, Err("busy".to_string()));
        assert!(flights.pending.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_flight_whose_starter_hangs_up_is_taken_off_the_board() {
        let flights = Flights::<&str, u32>::default();
        let never = flights.join_or_start("q", || Ok(std::future::pending::<u32>()));
        assert!(
            tokio::time::timeout(Duration::from_millis(10), never)
                .await
                .is_err()
        );
        assert!(flights.pending.lock().unwrap().is_empty());
        assert_eq!(flights.join_or_start("q", || Ok(async { 3 })).await, 3);
    }
}
