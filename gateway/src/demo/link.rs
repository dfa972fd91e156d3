//! The kiosks' network link to the broker, as a TCP relay that can be cut.
//!
//! Kiosks connect to the relay; the relay connects each of them to the
//! broker and copies bytes both ways. [`Link::cut`] closes every relayed
//! connection and refuses new ones (the kiosk sees its broker vanish, as
//! with a pulled cable or a dead access point); [`Link::restore`] lets
//! connections through again. The broker and the bridge are untouched.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Shared state of the relay.
#[derive(Default)]
struct State {
    up: AtomicBool,
    closing: AtomicBool,
    /// Both ends of every live relayed connection, to close them on a cut.
    live: Mutex<Vec<TcpStream>>,
    /// Connections refused while cut.
    refused: AtomicU64,
}

impl State {
    fn close_all(&self) {
        if let Ok(mut live) = self.live.lock() {
            for s in live.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

/// A running relay; dropping it closes everything and joins its threads.
pub struct Link {
    addr: SocketAddr,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

impl Link {
    /// Listen on an ephemeral loopback port and relay to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        state.up.store(true, Ordering::SeqCst);
        let acceptor = {
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name("demo-link".into())
                .spawn(move || accept(&listener, upstream, &state))?
        };
        Ok(Link {
            addr,
            state,
            acceptor: Some(acceptor),
        })
    }

    /// Where kiosks connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether connections pass.
    pub fn is_up(&self) -> bool {
        self.state.up.load(Ordering::SeqCst)
    }

    /// Close every relayed connection and refuse new ones.
    pub fn cut(&self) {
        self.state.up.store(false, Ordering::SeqCst);
        self.state.close_all();
    }

    /// Let connections through again.
    pub fn restore(&self) {
        self.state.up.store(true, Ordering::SeqCst);
    }

    /// Connections refused while the link was cut.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.state.closing.store(true, Ordering::SeqCst);
        self.state.close_all();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept(listener: &TcpListener, upstream: SocketAddr, state: &Arc<State>) {
    let mut pumps: Vec<JoinHandle<()>> = Vec::new();
    while !state.closing.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if !state.up.load(Ordering::SeqCst) {
                    state.refused.fetch_add(1, Ordering::Relaxed);
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                match relay(client, upstream, state) {
                    Ok(mut threads) => pumps.append(&mut threads),
                    Err(e) => log::warn!("demo link: relaying to {upstream}: {e}"),
                }
                pumps.retain(|t| !t.is_finished());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                log::warn!("demo link: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    state.close_all();
    for t in pumps {
        let _ = t.join();
    }
}

fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    state: &Arc<State>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect_timeout(&upstream, Duration::from_secs(2))?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
    }
    if let Ok(mut live) = state.live.lock() {
        live.push(client.try_clone()?);
        live.push(server.try_clone()?);
    }
    let up = pump(client.try_clone()?, server.try_clone()?, "demo-link-up")?;
    let down = pump(server, client, "demo-link-down")?;
    Ok(vec![up, down])
}

/// Copy `from` to `to` until either end closes, then close both.
fn pump(mut from: TcpStream, mut to: TcpStream, name: &str) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> (SocketAddr, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            for s in l.incoming().take(2) {
                let mut s = s.unwrap();
                std::thread::spawn(move || {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, t)
    }

    fn roundtrip(s: &mut TcpStream, text: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(text)?;
        let mut got = vec![0u8; text.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn relays_until_cut_refuses_while_cut_and_relays_again_after_restore() {
        let (upstream, _server) = echo_server();
        let link = Link::start(upstream).unwrap();
        let mut a = TcpStream::connect(link.addr()).unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(roundtrip(&mut a, b"hello").unwrap(), b"hello");

        link.cut();
        assert!(!link.is_up());
        // The live connection is closed...
        let mut b = [0u8; 8];
        let after_cut = a.write_all(b"x").and_then(|_| a.read(&mut b));
        assert!(matches!(after_cut, Ok(0) | Err(_)), "{after_cut:?}");
        // ...and a new one is closed on arrival.
        let mut c = TcpStream::connect(link.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
        assert_eq!(link.refused(), 1);

        link.restore();
        let mut d = TcpStream::connect(link.addr()).unwrap();
        d.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(roundtrip(&mut d, b"again").unwrap(), b"again");
        let port = link.addr();
        drop(link);
        // The relay's port is released.
        assert!(TcpListener::bind(port).is_ok());
    }
}
