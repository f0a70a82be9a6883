//! `stratus-bench raw-hello`: the throughput ceiling. A plain hyper 1 server
//! answering every request with `200 hello from stratus`, with no wasm, no
//! routing and no credentials: what this machine's kernel, tokio and hyper
//! give for the same answer. It runs as a process of its own, started by the
//! throughput benchmark, so it does not share a runtime with the bench.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

/// Options of the raw hello server.
#[derive(Debug, clap::Args)]
pub struct RawHello {
    /// Address to listen on; port 0 picks a free one. The address bound is
    /// printed as `raw-hello listening on http://ADDR`.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

impl RawHello {
    /// Serves until killed.
    pub fn run(&self) -> anyhow::Result<()> {
        // The same runtime `stratus serve` builds: multi-threaded, one
        // worker per core.
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(self.serve())
    }

    async fn serve(&self) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "raw-hello listening on http://{}", listener.local_addr()?)?;
        stdout.flush()?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of descriptors and the like: keep serving.
                Err(_) => continue,
            };
            // As the host does: small answers must not wait on delayed ACKs.
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                // The same answer as the `hello` example: body and content type.
                let service = hyper::service::service_fn(|_request| async {
                    let mut response = http::Response::new(Full::new(Bytes::from_static(b"hello from stratus")));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    Ok::<_, Infallible>(response)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}
