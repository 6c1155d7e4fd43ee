//! Shared sockets belong to the application's runtime, not to a web worker's.
//!
//! actix-web runs every worker on its own single-threaded tokio runtime, and a tokio socket (or
//! timer, or spawned task) stays tied to the runtime that created it. A pooled database
//! connection or an HTTP connection to WeChat opened while serving a request on worker A dies
//! with A's runtime — and A's runtime ends in every graceful shutdown as soon as A is idle, while
//! worker B may still be finishing a request that borrows that very connection (it then fails
//! with "A Tokio 1.x context was found, but it is being shutdown").
//!
//! [`AppRuntime::run`] polls a future inside the application runtime's context: whatever the
//! future opens, spawns or arms lives on the application runtime, which outlives every worker,
//! while the calling task still does the waiting; [`AppRuntime::spawn`] starts a task there.
//!
//! The rule holds by construction: start-up (`startup.rs`) captures the runtime once and passes it to
//! every constructor of something that owns sockets or tasks — the store, the WeChat Pay client,
//! the built-in sandbox, the order desk, the payments consumer and the reconciliation job. None
//! of them picks up whatever runtime happens to be current.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::Handle;

/// The runtime that owns shared I/O.
#[derive(Debug, Clone)]
pub struct AppRuntime(Handle);

impl AppRuntime {
    /// The runtime of the calling context, captured once at start-up (and by tests that build
    /// parts of the application themselves).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn current() -> AppRuntime {
        AppRuntime(Handle::current())
    }

    /// Starts `task` on this runtime.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.spawn(task)
    }

    /// This runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.0
    }

    /// Polls `future` inside this runtime's context, and drops it there too: a request that is
    /// cancelled half-way still hands its pooled connection back on the application runtime.
    pub fn run<F: Future>(&self, future: F) -> InRuntime<'_, F> {
        InRuntime {
            handle: &self.0,
            future: Some(future),
        }
    }
}

pin_project_lite::pin_project! {
    /// A future polled and dropped inside a runtime's context; see [`AppRuntime::run`].
    pub struct InRuntime<'a, F> {
        handle: &'a Handle,
        // None once finished or dropped.
        #[pin]
        future: Option<F>,
    }

    impl<'a, F> PinnedDrop for InRuntime<'a, F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let _entered = this.handle.enter();
            this.future.set(None);
        }
    }
}

impl<F: Future> Future for InRuntime<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let _entered = this.handle.enter();
        let future = this
            .future
            .as_mut()
            .as_pin_mut()
            .expect("InRuntime polled after it finished");
        let output = std::task::ready!(future.poll(cx));
        this.future.set(None);
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A socket opened through `run` on a short-lived runtime keeps working after that runtime
    /// is gone — the situation of an idle actix worker stopping during a graceful shutdown.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn io_opened_through_run_outlives_the_runtime_that_polled_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        let open = |app: Option<AppRuntime>| {
            std::thread::spawn(move || {
                let worker = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let connect = tokio::net::TcpStream::connect(addr);
                match app {
                    Some(app) => worker.block_on(app.run(connect)),
                    None => worker.block_on(connect),
                }
            })
            .join()
            .unwrap()
            .unwrap()
        };
        let echo = |mut socket: tokio::net::TcpStream| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            socket.write_all(b"ping").await?;
            let mut answer = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut answer))
                .await
                .map_err(std::io::Error::other)??;
            Ok::<_, std::io::Error>(answer)
        };

        let ours = open(Some(AppRuntime::current()));
        assert_eq!(&echo(ours).await.unwrap(), b"ping");
        // The same socket opened in the worker's own context dies with the worker.
        let theirs = open(None);
        assert!(echo(theirs).await.is_err());
    }

    /// What a cancelled future spawns from its destructor (sqlx hands a pooled connection back
    /// that way) runs on the application runtime, not on the worker that gave up on it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_future_dropped_half_way_is_dropped_inside_the_runtime() {
        struct SpawnsOnDrop(Option<tokio::sync::oneshot::Sender<Option<String>>>);
        impl Drop for SpawnsOnDrop {
            fn drop(&mut self) {
                let done = self.0.take().unwrap();
                tokio::spawn(async move {
                    let _ = done.send(std::thread::current().name().map(str::to_owned));
                });
            }
        }
        let app = AppRuntime::current();
        let (done, ran_on) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("web-worker".into())
            .spawn(move || {
                let worker = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                worker.block_on(async {
                    let guard = SpawnsOnDrop(Some(done));
                    let request = app.run(async move {
                        let _guard = guard;
                        std::future::pending::<()>().await
                    });
                    // The shopper goes away.
                    let _ = tokio::time::timeout(Duration::from_millis(10), request).await;
                });
            })
            .unwrap()
            .join()
            .unwrap();
        let ran_on = tokio::time::timeout(Duration::from_secs(5), ran_on)
            .await
            .expect("the task spawned on drop ran")
            .unwrap();
        assert_ne!(ran_on.as_deref(), Some("web-worker"));
    }
}
