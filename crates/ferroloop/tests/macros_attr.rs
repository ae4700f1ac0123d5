//! `#[ferroloop::main]` and `#[ferroloop::test]`: an async fn on a new loop.

use std::time::Duration;

#[ferroloop::test]
async fn an_async_test_runs_on_a_loop() {
    let t = ferroloop::spawn(async { 21 * 2 });
    ferroloop::sleep(Duration::from_millis(1)).await;
    assert_eq!(t.await.unwrap(), 42);
}

#[ferroloop::test]
async fn a_test_may_return_a_result() -> Result<(), std::io::Error> {
    let listener = ferroloop::TcpListener::bind("127.0.0.1:0").await?;
    listener.local_addr()?;
    Ok(())
}

#[ferroloop::test]
#[should_panic(expected = "inside the loop")]
async fn other_attributes_are_kept() {
    ferroloop::yield_now().await;
    panic!("inside the loop");
}

mod as_main {
    #[ferroloop::main]
    pub async fn main() -> u32 {
        ferroloop::sleep(std::time::Duration::from_millis(1)).await;
        7
    }
}

#[test]
fn main_becomes_a_plain_function() {
    assert_eq!(as_main::main(), 7);
}
