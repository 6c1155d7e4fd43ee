//! Group commit for order creation: concurrent buy requests are created by one task in a single
//! transaction (a savepoint each, one disk flush for the batch); each caller is answered after
//! the commit. Bounded queue; a batch the database refuses is retried one order at a time.
//!
//! Start-up runs the writing task on the application runtime and stops it after the web
//! server: it then writes what is queued and ends; a caller that comes later writes its order
//! itself.

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{CreateOrderError, Order, OrderRequest, Store};
use crate::rt::AppRuntime;

/// Orders waiting to be written; callers beyond it wait for room.
const QUEUE: usize = 1024;
/// Most orders in one transaction.
const MAX_BATCH: usize = 128;

struct Request {
    order: OrderRequest,
    reply: oneshot::Sender<Result<Order, CreateOrderError>>,
}

/// Where orders are placed.
#[derive(Clone)]
pub struct OrderDesk {
    store: Store,
    requests: mpsc::Sender<Request>,
}

impl OrderDesk {
    /// Starts the writing task on `rt`; it ends once `shutdown` is cancelled and what was
    /// queued is written (or when the last desk handle is dropped).
    pub fn start(
        store: Store,
        rt: &AppRuntime,
        shutdown: CancellationToken,
    ) -> (OrderDesk, JoinHandle<()>) {
        let (requests, queue) = mpsc::channel(QUEUE);
        let task = rt.spawn(write(store.clone(), queue, shutdown));
        (OrderDesk { store, requests }, task)
    }

    /// Creates an order and reserves its stock; see [`Store::place_order`].
    pub async fn create(&self, order: OrderRequest) -> Result<Order, CreateOrderError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            order: order.clone(),
            reply,
        };
        if self.requests.send(request).await.is_ok() {
            if let Ok(result) = answer.await {
                return result;
            }
        }
        // The writer is gone (shutting down): write it directly.
        self.store.place_order(&order, chrono::Utc::now()).await
    }
}

async fn write(store: Store, mut queue: mpsc::Receiver<Request>, shutdown: CancellationToken) {
    loop {
        let first = tokio::select! {
            biased;
            request = queue.recv() => match request {
                Some(request) => request,
                None => return,
            },
            _ = shutdown.cancelled() => break,
        };
        write_batch(&store, first, &mut queue).await;
    }
    // Stopping: write what is queued; later callers write their own.
    queue.close();
    while let Some(first) = queue.recv().await {
        write_batch(&store, first, &mut queue).await;
    }
}

/// Writes `first` and whatever else is queued, up to [`MAX_BATCH`], in one transaction.
async fn write_batch(store: &Store, first: Request, queue: &mut mpsc::Receiver<Request>) {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    let now = chrono::Utc::now();
    let requests: Vec<&OrderRequest> = batch.iter().map(|r| &r.order).collect();
    match store.create_orders(&requests, now).await {
        Ok(results) => {
            for (request, result) in batch.into_iter().zip(results) {
                // A caller that went away leaves a pending order the job will expire.
                let _ = request.reply.send(result);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, orders = batch.len(), "order batch failed; one by one");
            for request in batch {
                let result = store.place_order(&request.order, now).await;
                let _ = request.reply.send(result);
            }
        }
    }
}
