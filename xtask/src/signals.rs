//! Ctrl-C and SIGTERM of xtask itself, for the commands that run servers (`cluster`,
//! `bench`): both are handled the same way, by a closure on a thread of its own.

use tokio::signal::unix::{SignalKind, signal};

/// Runs `then` on a thread of its own at the first SIGINT or SIGTERM. The handlers are
/// registered before this returns, so that no signal in between is lost. Call once, early.
pub fn on_interrupt(then: impl FnOnce() + Send + 'static) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|error| format!("cannot start the signal handler: {error}"))?;
    let (mut interrupt, mut terminate) = runtime
        .block_on(async {
            Ok::<_, std::io::Error>((signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?))
        })
        .map_err(|error| format!("cannot handle SIGINT and SIGTERM: {error}"))?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        });
        then();
    });
    Ok(())
}
