//! One shutdown signal for every long-lived loop (in the manner of mini-redis's `Shutdown`).

use tokio::sync::watch;

/// Turns true once; every clone sees it. Converts from and into the `watch::Receiver<bool>` the
/// tunnel crate takes.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending side: [`ShutdownTrigger::trigger`] stops everything holding a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    /// A signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Self) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Self(rx))
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has begun (at once if it already has, or if the trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// The underlying receiver, for APIs that take one (`tunnel::run`).
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }
}

impl From<watch::Receiver<bool>> for Shutdown {
    fn from(rx: watch::Receiver<bool>) -> Self {
        Self(rx)
    }
}

impl ShutdownTrigger {
    /// Begins shutdown.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Another receiver of this signal.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let (trigger, mut a) = Shutdown::new();
        let mut b = a.clone();
        assert!(!a.is_triggered());
        trigger.trigger();
        a.wait().await;
        b.wait().await;
        assert!(trigger.subscribe().is_triggered());
    }
}
