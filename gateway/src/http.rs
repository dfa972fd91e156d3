//! A minimal HTTP/1.1 endpoint for `/health` and `/metrics`: one thread,
//! one short response per connection. Enough for Prometheus and probes,
//! without pulling an HTTP stack into the gateway.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a component serves: a health verdict and a metrics page.
pub trait Observable: Send + Sync + 'static {
    /// `(healthy, JSON detail)`; unhealthy answers 503.
    fn health(&self) -> (bool, String);
    /// Prometheus text exposition.
    fn metrics(&self) -> String;
}

/// A running endpoint; stops when dropped.
pub struct HttpEndpoint {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpEndpoint {
    /// Bind `addr` and serve `what` on a background thread.
    pub fn start(addr: &str, what: Arc<dyn Observable>) -> std::io::Result<HttpEndpoint> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("http".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                if let Err(e) = serve(stream, what.as_ref()) {
                                    log::debug!("http: {e}");
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            Err(e) => {
                                log::warn!("http accept: {e}");
                                std::thread::sleep(Duration::from_millis(200));
                            }
                        }
                    }
                })?
        };
        log::info!("serving /health and /metrics on http://{addr}");
        Ok(HttpEndpoint {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for HttpEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, what: &dyn Observable) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = match path {
        "/health" => {
            let (ok, detail) = what.health();
            let status = if ok {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            (status, "application/json", detail)
        }
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", what.metrics()),
        _ => (
            "404 Not Found",
            "text/plain",
            "try /health or /metrics\n".into(),
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// GET `path` from `addr` and return `(status code, body)`. For tests and the demo.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Read;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    Ok((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Observable for Fixed {
        fn health(&self) -> (bool, String) {
            (false, "{\"mqtt\":false}".into())
        }
        fn metrics(&self) -> String {
            "x_total 1\n".into()
        }
    }

    #[test]
    fn serves_health_and_metrics_on_port_0() {
        let ep = HttpEndpoint::start("127.0.0.1:0", Arc::new(Fixed)).unwrap();
        assert_eq!(
            get(ep.addr, "/metrics").unwrap(),
            (200, "x_total 1\n".into())
        );
        assert_eq!(
            get(ep.addr, "/health").unwrap(),
            (503, "{\"mqtt\":false}".into())
        );
        assert_eq!(get(ep.addr, "/nope").unwrap().0, 404);
    }
}
