use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Barrier;

use super::*;

/// Long enough that no follower gives up during a test that does not want it to.
const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn one_leader_and_every_follower_gets_its_outcome() {
    let coalescer: Arc<Coalescer<&str, u32>> = Arc::new(Coalescer::new());
    let barrier = Arc::new(Barrier::new(51));
    let leaders = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (coalescer, barrier, leaders) = (
            Arc::clone(&coalescer),
            Arc::clone(&barrier),
            Arc::clone(&leaders),
        );
        tasks.push(tokio::spawn(async move {
            let flight = coalescer.join("k");
            barrier.wait().await;
            match flight {
                Flight::Leader(guard) => {
                    leaders.fetch_add(1, Ordering::SeqCst);
                    guard.finish(7);
                    7
                }
                Flight::Follower(waiter) => match waiter.wait(PATIENCE).await {
                    Waited::Done(v) => v,
                    Waited::Lead(_) => panic!("no follower should lead"),
                },
            }
        }));
    }
    barrier.wait().await;
    for task in tasks {
        assert_eq!(task.await.unwrap(), 7);
    }
    assert_eq!(leaders.load(Ordering::SeqCst), 1);
    assert_eq!(coalescer.in_flight(), 0);
}

#[tokio::test]
async fn a_dropped_leader_hands_the_fill_to_one_follower() {
    let coalescer: Arc<Coalescer<&str, u32>> = Arc::new(Coalescer::new());
    let Flight::Leader(first) = coalescer.join("k") else {
        panic!("first join leads")
    };
    let mut followers = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let Flight::Follower(waiter) = coalescer.join("k") else {
            panic!("later joins follow")
        };
        followers.spawn(waiter.wait(PATIENCE));
    }
    drop(first);
    // The first follower to wake leads; the others follow the new flight.
    let Waited::Lead(new_leader) = followers.join_next().await.unwrap().unwrap() else {
        panic!("the first follower to finish waiting leads")
    };
    new_leader.finish(9);
    while let Some(waited) = followers.join_next().await {
        match waited.unwrap() {
            Waited::Done(v) => assert_eq!(v, 9),
            Waited::Lead(_) => panic!("only one follower takes over"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn at_the_deadline_one_follower_takes_over_and_the_rest_keep_waiting() {
    let coalescer: Arc<Coalescer<&str, u32>> = Arc::new(Coalescer::new());
    let Flight::Leader(stuck) = coalescer.join("k") else {
        panic!("first join leads")
    };
    let followers: Vec<_> = (0..4)
        .map(|i| match coalescer.join("k") {
            // Staggered patience: follower 0 gives up first.
            Flight::Follower(w) => tokio::spawn(w.wait(Duration::from_secs(10 + i))),
            Flight::Leader(_) => panic!("second join follows"),
        })
        .collect();
    let mut followers = followers.into_iter();
    let first = followers.next().unwrap().await.unwrap();
    let Waited::Lead(new_leader) = first else {
        panic!("the first follower at its deadline leads")
    };
    new_leader.finish(3);
    for follower in followers {
        match follower.await.unwrap() {
            Waited::Done(v) => assert_eq!(v, 3),
            Waited::Lead(_) => panic!("only one follower takes over"),
        }
    }
    // The stuck leader finishing late changes nothing for the new flight's followers.
    stuck.finish(1);
    assert_eq!(coalescer.in_flight(), 0);
}

#[tokio::test]
async fn after_an_outcome_the_next_join_leads_again() {
    let coalescer: Arc<Coalescer<&str, u32>> = Arc::new(Coalescer::new());
    let Flight::Leader(guard) = coalescer.join("k") else {
        panic!()
    };
    guard.finish(1);
    assert!(matches!(coalescer.join("k"), Flight::Leader(_)));
    assert!(matches!(coalescer.join("other"), Flight::Leader(_)));
}
