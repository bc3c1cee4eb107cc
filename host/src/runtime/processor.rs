//! A connection's mapping processors (`processorPoolSize`): pipelines that run scripts or
//! WebAssembly run on blocking threads, at most `processorPoolSize` at once per connection, so
//! the I/O tasks never run a mapper and a slow mapper holds back only its own connection.

use crate::mapping::pipeline::Mapped;
use ferrule_protocol::ProtocolError;
use std::sync::Arc;
use tokio::sync::Semaphore;

pub struct Processor {
    permits: Arc<Semaphore>,
}

impl Processor {
    pub fn new(size: u32) -> Processor {
        Processor {
            permits: Arc::new(Semaphore::new(size.max(1) as usize)),
        }
    }

    /// Runs `map` on a processor when `blocking` (a pipeline with scripts), else right here.
    /// A mapper that panics fails the message instead of the connection.
    pub async fn map<T: Send + 'static>(
        &self,
        blocking: bool,
        map: impl FnOnce() -> Vec<Mapped<T>> + Send + 'static,
    ) -> Vec<Mapped<T>> {
        if !blocking {
            return map();
        }
        self.run(map).await.unwrap_or_else(panicked)
    }

    /// Runs `work` on a processor; `None` when it panicked (logged).
    pub async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let _permit = self.permits.acquire().await.ok()?;
        match tokio::task::spawn_blocking(work).await {
            Ok(done) => Some(done),
            Err(e) => {
                tracing::error!(error = %e, "a mapper panicked");
                None
            }
        }
    }
}

/// The outcome of a mapping whose mapper panicked.
pub fn panicked<T>() -> Vec<Mapped<T>> {
    vec![Mapped {
        mapper: "?".into(),
        result: Err(ProtocolError::mapping_failed(
            "The mapping failed unexpectedly.",
            "A mapper panicked; the service log has the details.",
        )),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_pool_size_mappings_run_at_once() {
        let processor = Arc::new(Processor::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (p, running, most) = (processor.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    p.map(true, move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                        vec![Mapped::<()> {
                            mapper: "m".into(),
                            result: Ok(vec![]),
                        }]
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().len(), 1);
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_panicking_mapper_fails_the_message() {
        let processor = Processor::new(1);
        let out = processor
            .map::<()>(true, || panic!("a bug in a mapper"))
            .await;
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].result.as_ref().unwrap_err().error,
            "connectivity:message.mapping.failed"
        );
        assert!(
            processor.map::<()>(true, Vec::new).await.is_empty(),
            "still usable"
        );
    }
}
