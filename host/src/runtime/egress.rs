//! Guests' outgoing requests past the allow-list: the destination's name is
//! resolved once, every address checked against the private-address guard,
//! and the connection made to the address that was checked, for plain HTTP
//! and for HTTPS alike. A name that resolves to a public address when
//! checked and to an internal one a moment later (DNS rebinding) therefore
//! never reaches the internal one. HTTPS verifies the server's certificate
//! against the name, as it would without pinning.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use std::net::IpAddr;

/// What finishes a request's connection in the background.
pub type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// A future a [`Resolve`] returns.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Name lookups for the guard: the system's resolver, or a test's.
pub trait Resolve: Send + Sync {
    /// The addresses of `host`.
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a>;
}

/// The system's resolver.
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.map(|a| a.ip()).collect()) })
    }
}

/// How guests' requests leave the host: the resolver, the private
/// addresses the operator exempted, and the TLS roots.
pub struct Egress {
    resolver: Arc<dyn Resolve>,
    exempt: Arc<[IpAddr]>,
    tls: tokio_rustls::TlsConnector,
}

impl Egress {
    /// The system resolver and the web's public roots (built once, not per
    /// request).
    pub fn new(exempt: Arc<[IpAddr]>) -> Self {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        Self::with(Arc::new(SystemResolver), exempt, roots)
    }

    /// A resolver and roots of the caller's choosing (tests).
    pub fn with(resolver: Arc<dyn Resolve>, exempt: Arc<[IpAddr]>, roots: rustls::RootCertStore) -> Self {
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            resolver,
            exempt,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// Resolves the request's host once and refuses it if any address is
    /// private and not exempted; otherwise the address to connect to.
    pub async fn check(&self, uri: &http::Uri) -> Result<IpAddr, Error> {
        let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<IpAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self
                .resolver
                .lookup(bare, port_of(uri))
                .await
                .map_err(|_| Error::DnsError {
                    rcode: None,
                    info_code: None,
                })?,
        };
        let Some(first) = addresses.first().copied() else {
            return Err(Error::DestinationNotFound);
        };
        if addresses.iter().any(|ip| is_private(*ip) && !self.exempt.contains(ip)) {
            return Err(Error::DestinationIpProhibited);
        }
        Ok(first)
    }

    /// Checks the destination and sends the request to the checked address.
    pub async fn send(
        &self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
        let ip = self.check(request.uri()).await?;
        if request.uri().scheme_str() == Some("https") {
            return self.send_tls(request, ip, options.unwrap_or_default()).await;
        }
        if let Some(uri) = pinned(request.uri(), ip) {
            *request.uri_mut() = uri;
        }
        let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
        Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as IoFuture))
    }

    /// HTTPS to `ip`, the certificate checked against the request's name.
    async fn send_tls(
        &self,
        mut request: http::Request<WasiBody>,
        ip: IpAddr,
        options: RequestOptions,
    ) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
        const DEFAULT: Duration = Duration::from_secs(600);
        let uri = request.uri().clone();
        let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = match bare.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => {
                rustls::pki_types::ServerName::try_from(bare.to_string()).map_err(|_| Error::HttpRequestUriInvalid)?
            }
        };
        let connect_timeout = options.connect_timeout.unwrap_or(DEFAULT);
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((ip, port_of(&uri)))
                .await
                .map_err(Error::Connect)?;
            let _ = tcp.set_nodelay(true);
            let tls = self.tls.connect(name, tcp).await.map_err(Error::Tls)?;
            hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(tls))
                .await
                .map_err(Error::from)
        };
        let (mut sender, connection) = tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| Error::ConnectionTimeout)??;
        // On the wire only the path: scheme and authority are for proxies.
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
        let first_byte = options.first_byte_timeout.unwrap_or(DEFAULT);
        let between_bytes = options.between_bytes_timeout.unwrap_or(DEFAULT);
        // The connection is driven while the request is sent and its answer
        // read; the guest's side waits on it through the returned future.
        let driver = tokio::spawn(async move { connection.await.map_err(Error::from) });
        let response = tokio::time::timeout(first_byte, sender.send_request(request)).await;
        let response = match response {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => {
                driver.abort();
                return Err(Error::from(err));
            }
            Err(_) => {
                driver.abort();
                return Err(Error::ConnectionReadTimeout);
            }
        };
        let io: IoFuture = Box::new(async move { driver.await.unwrap_or(Ok(())) });
        let response = response.map(|body| IdleTimeout::new(body, between_bytes).boxed_unsync());
        Ok((response, io))
    }
}

/// `uri` addressed to `ip` instead of its host name, for plain HTTP: the
/// `Host` header, already set from the name, is left alone.
pub fn pinned(uri: &http::Uri, ip: IpAddr) -> Option<http::Uri> {
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let authority = std::net::SocketAddr::new(ip, port_of(uri)).to_string();
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(authority.parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

/// A response body that fails when no frame comes for `idle`.
struct IdleTimeout {
    inner: hyper::body::Incoming,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimeout {
    fn new(inner: hyper::body::Incoming, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl Body for IdleTimeout {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.idle;
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Error::from(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// The port a request for `uri` goes to.
pub(crate) fn port_of(uri: &http::Uri) -> u16 {
    uri.port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 })
}

/// Whether `ip` is an address a guest must not reach by default: loopback,
/// private (RFC 1918, unique-local), link-local (cloud metadata lives
/// there), carrier-grade NAT, unspecified, broadcast, multicast or
/// documentation ranges.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32
            // bits: as private as that address.
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = [seg[6].to_be_bytes(), seg[7].to_be_bytes()];
                return is_private(IpAddr::V4(std::net::Ipv4Addr::new(a[0], a[1], b[0], b[1])));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                // IPv4-compatible `::a.b.c.d` (deprecated; the whole ::/96).
                || seg[..6] == [0; 6]
                // IPv4-translated `::ffff:0:a.b.c.d` (SIIT).
                || seg[..6] == [0, 0, 0, 0, 0xffff, 0]
                // Local-use NAT64 (64:ff9b:1::/48) translates to anything.
                || seg[..3] == [0x64, 0xff9b, 1]
                // 6to4 and Teredo embed IPv4 addresses that may be private.
                || seg[0] == 0x2002
                || seg[..2] == [0x2001, 0]
                // Documentation, site-local (deprecated), discard-only.
                || seg[..2] == [0x2001, 0x0db8]
                || seg[0] & 0xffc0 == 0xfec0
                || seg[..4] == [0x100, 0, 0, 0]
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;

    const CA: &[u8] = include_bytes!("testdata/ca.pem");
    const CERT: &[u8] = include_bytes!("testdata/api.pem");
    const KEY: &[u8] = include_bytes!("testdata/api.key");

    /// Answers each lookup with the next address of its list (the last one
    /// from then on): a name that rebinds between lookups.
    struct Rebinding(Mutex<Vec<IpAddr>>);

    impl Resolve for Rebinding {
        fn lookup<'a>(&'a self, _host: &'a str, _port: u16) -> Lookup<'a> {
            let mut answers = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let next = if answers.len() > 1 {
                answers.remove(0)
            } else {
                answers[0]
            };
            Box::pin(async move { Ok(vec![next]) })
        }
    }

    /// An HTTPS server on 127.0.0.1 with the `api.test` certificate of the
    /// test CA, answering `pinned`; its port.
    async fn tls_server() -> u16 {
        let certs = vec![CertificateDer::from_pem_slice(CERT).unwrap_or_else(|e| panic!("{e}"))];
        let key = PrivateKeyDer::from_pem_slice(KEY).unwrap_or_else(|e| panic!("{e}"));
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap_or_else(|e| panic!("{e}"));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                            Bytes::from_static(b"pinned"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        port
    }

    fn egress(answers: Vec<IpAddr>) -> Egress {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(CA).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        let loopback: IpAddr = "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
        Egress::with(Arc::new(Rebinding(Mutex::new(answers))), Arc::new([loopback]), roots)
    }

    fn get(url: &str) -> http::Request<WasiBody> {
        let body = http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        http::Request::get(url).body(body).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn https_connects_to_the_checked_address_and_checks_the_name() {
        let port = tls_server().await;
        let checked: IpAddr = "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
        // Rebound after the check to an address where nothing listens: a
        // second lookup would fail the request.
        let rebound: IpAddr = "192.0.2.1".parse().unwrap_or_else(|e| panic!("{e}"));
        let egress = egress(vec![checked, rebound]);
        let (response, _io) = egress
            .send(get(&format!("https://api.test:{port}/")), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&body.to_bytes()[..], b"pinned");

        // The same server for a name its certificate does not carry.
        let egress = self::egress(vec![checked]);
        let refused = egress.send(get(&format!("https://other.test:{port}/")), None).await;
        assert!(matches!(refused, Err(Error::Tls(_))), "{:?}", refused.err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_private_address_is_refused_before_connecting() {
        let private: IpAddr = "10.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
        let egress = egress(vec![private]);
        let refused = egress.send(get("https://api.test/"), None).await;
        assert!(
            matches!(refused, Err(Error::DestinationIpProhibited)),
            "{:?}",
            refused.err()
        );
    }

    #[test]
    fn plain_http_is_pinned_to_the_checked_address() {
        let uri: http::Uri = "http://api.example/v1?x=1".parse().unwrap_or_else(|e| panic!("{e}"));
        let to = |ip: &str| pinned(&uri, ip.parse().unwrap_or_else(|e| panic!("{e}"))).map(|u| u.to_string());
        assert_eq!(to("93.184.216.34").as_deref(), Some("http://93.184.216.34:80/v1?x=1"));
        assert_eq!(
            to("2606:4700::1111").as_deref(),
            Some("http://[2606:4700::1111]:80/v1?x=1")
        );
        let tls: http::Uri = "https://api.example:8443/".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            pinned(&tls, "93.184.216.34".parse().unwrap_or_else(|e| panic!("{e}"))),
            None
        );
    }

    #[test]
    fn private_ranges_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::5db8:d822",
            "::10.0.0.1",
            "::93.184.216.34",
            "::ffff:0:10.0.0.1",
            "::ffff:0:93.184.216.34",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2002:a00:1::1",
            "fec0::1",
            "feff::1",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "2001:db8::1",
        ] {
            assert!(
                is_private(private.parse().unwrap_or_else(|e| panic!("{e}"))),
                "{private}"
            );
        }
        // NAT64 to a public address is how IPv6-only networks reach the
        // IPv4 internet; so is an ordinary global address near the ranges.
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "64:ff9b::5db8:d822",
            "2001:4860::8888",
            "101::1",
        ] {
            assert!(
                !is_private(public.parse().unwrap_or_else(|e| panic!("{e}"))),
                "{public}"
            );
        }
    }
}
