//! `ferroloop::sync::mpsc` on the ferroloop runtime: producers and a consumer on one loop,
//! a producer on another thread, cancellation by timeout, the `Stream` view.

use std::time::Duration;

use ferroloop::sync::mpsc;
use futures::StreamExt;

#[test]
fn three_producers_one_consumer_every_value_once() {
    let got = ferroloop::run(async {
        let (tx, mut rx) = mpsc::channel::<(u32, u32)>(2);
        for p in 0..3 {
            let tx = tx.clone();
            ferroloop::spawn(async move {
                for n in 0..100 {
                    tx.send((p, n)).await.unwrap();
                    if n % 7 == 0 {
                        ferroloop::yield_now().await;
                    }
                }
            });
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(v) = rx.recv().await {
            got.push(v);
        }
        got
    });
    assert_eq!(got.len(), 300);
    for p in 0..3 {
        let mine: Vec<u32> = got.iter().filter(|v| v.0 == p).map(|v| v.1).collect();
        assert_eq!(
            mine,
            (0..100).collect::<Vec<_>>(),
            "producer {p}'s values in order"
        );
    }
}

#[test]
fn a_receive_cancelled_by_timeout_loses_no_value() {
    ferroloop::run(async {
        let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
        // nothing comes within the timeout: the receive is dropped
        let r = ferroloop::timeout(Duration::from_millis(5), rx.recv()).await;
        assert!(r.is_err());
        let sender = ferroloop::spawn(async move {
            for n in 0..5 {
                tx.send(n).unwrap();
                ferroloop::sleep(Duration::from_millis(1)).await;
            }
        });
        let mut got = Vec::new();
        loop {
            // each receive raced against a short timeout: a lost race must not lose a value
            match ferroloop::timeout(Duration::from_micros(300), rx.recv()).await {
                Ok(Some(v)) => got.push(v),
                Ok(None) => break,
                Err(_) => continue,
            }
        }
        sender.await.unwrap();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    });
}

#[test]
fn a_sender_cancelled_by_timeout_frees_its_turn() {
    ferroloop::run(async {
        let (tx, mut rx) = mpsc::channel::<u32>(1);
        tx.send(0).await.unwrap();
        // full: this send waits, then is dropped by its timeout
        assert!(ferroloop::timeout(Duration::from_millis(5), tx.send(1))
            .await
            .is_err());
        let tx2 = tx.clone();
        let waiting = ferroloop::spawn(async move { tx2.send(2).await });
        ferroloop::yield_now().await;
        assert_eq!(rx.recv().await, Some(0));
        waiting.await.unwrap().unwrap();
        assert_eq!(rx.recv().await, Some(2));
    });
}

#[test]
fn a_thread_sends_to_a_loop() {
    let sum = ferroloop::run(async {
        let (tx, rx) = mpsc::channel::<u64>(8);
        let thread = std::thread::spawn(move || {
            for n in 1..=1000 {
                tx.blocking_send(n).unwrap();
            }
        });
        let sum = rx.fold(0u64, |acc, v| async move { acc + v }).await;
        thread.join().unwrap();
        sum
    });
    assert_eq!(sum, 500_500);
}

#[test]
fn a_loop_sends_to_a_thread() {
    let (tx, mut rx) = mpsc::channel::<u32>(4);
    let thread = std::thread::spawn(move || {
        let mut got = Vec::new();
        while let Some(v) = rx.blocking_recv() {
            got.push(v);
        }
        got
    });
    ferroloop::run(async move {
        for n in 0..50 {
            tx.send(n).await.unwrap();
        }
    });
    assert_eq!(thread.join().unwrap(), (0..50).collect::<Vec<_>>());
}

#[test]
fn dropping_the_receiver_wakes_a_waiting_sender_with_its_value() {
    ferroloop::run(async {
        let (tx, mut rx) = mpsc::channel::<String>(1);
        tx.send("first".into()).await.unwrap();
        let waiting = ferroloop::spawn(async move { tx.send("second".into()).await });
        ferroloop::yield_now().await;
        assert_eq!(rx.recv().await.as_deref(), Some("first"));
        // the waiting sender got the room: its value arrives
        assert_eq!(rx.recv().await.as_deref(), Some("second"));
        waiting.await.unwrap().unwrap();
        let (tx, rx) = mpsc::channel::<String>(1);
        tx.send("kept".into()).await.unwrap();
        let waiting = ferroloop::spawn(async move { tx.send("refused".into()).await });
        ferroloop::yield_now().await;
        drop(rx);
        let err = waiting.await.unwrap().unwrap_err();
        assert_eq!(err.0, "refused");
    });
}
