//! Interop with the reference implementation: Debian's C `spiped` on the other end of the wire.
//!
//! Like rustls' `openssl-tests`, this is its own test target; CI installs `spiped` first.

mod common;

use common::*;
use testkit::payload;
use testkit::servers::Server;

const BULK: usize = 64 << 20;

fn require_spiped() {
    let found = std::process::Command::new("spiped")
        .arg("-v")
        .output()
        .is_ok();
    assert!(
        found,
        "C spiped is not installed: `apt-get install spiped` (CI's .ci/run does this)"
    );
}

async fn bulk_both_ways(e: Impl, d: Impl, flags: &[&str]) {
    require_spiped();
    let (_dir, key) = key_dir();
    let echo = Server::echo().await;
    let p = pair(e, d, echo.addr, &key, flags, flags).await;
    let data = payload(BULK, 0x5eed);
    // The echo server returns every byte: 64 MiB up through the tunnel, 64 MiB back down.
    let got = round_trip(p.e.addr, &data).await.unwrap();
    assert_eq!(
        got.len(),
        data.len(),
        "{e:?} -e → {d:?} -d {flags:?}: length differs"
    );
    assert!(got == data, "{e:?} -e → {d:?} -d {flags:?}: bytes differ");
}

#[tokio::test(flavor = "multi_thread")]
async fn georep_encrypts_for_spiped() {
    bulk_both_ways(Impl::Georep, Impl::Spiped, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spiped_encrypts_for_georep() {
    bulk_both_ways(Impl::Spiped, Impl::Georep, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn georep_encrypts_for_spiped_without_forward_secrecy() {
    bulk_both_ways(Impl::Georep, Impl::Spiped, &["-f"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spiped_encrypts_for_georep_without_forward_secrecy() {
    bulk_both_ways(Impl::Spiped, Impl::Georep, &["-f"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_secrecy_settings_mix_as_in_spiped() {
    require_spiped();
    let (_dir, key) = key_dir();
    let echo = Server::echo().await;
    // One side skipping Diffie-Hellman is fine unless the other requires it.
    for (e, d, e_flags, d_flags, works) in [
        (Impl::Georep, Impl::Spiped, &["-f"][..], &[][..], true),
        (Impl::Spiped, Impl::Georep, &["-f"][..], &[][..], true),
        (Impl::Georep, Impl::Spiped, &["-g"][..], &["-f"][..], false),
        (Impl::Spiped, Impl::Georep, &["-f"][..], &["-g"][..], false),
    ] {
        let p = pair(e, d, echo.addr, &key, e_flags, d_flags).await;
        let got = round_trip(p.e.addr, b"ping").await.unwrap_or_default();
        assert_eq!(
            got == b"ping",
            works,
            "{e:?} {e_flags:?} → {d:?} {d_flags:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn half_close_crosses_implementations() {
    require_spiped();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for (e, d) in [(Impl::Georep, Impl::Spiped), (Impl::Spiped, Impl::Georep)] {
        // A server that answers only after the client's EOF.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                if got.is_empty() {
                    continue; // a readiness probe
                }
                s.write_all(&payload(100_000, got.len() as u64))
                    .await
                    .unwrap();
                s.shutdown().await.unwrap();
                return got;
            }
        });
        let (_dir, key) = key_dir();
        let p = pair(e, d, target, &key, &[], &[]).await;
        let sent = payload(70_000, 3);
        let got = round_trip(p.e.addr, &sent).await.unwrap();
        assert!(
            server.await.unwrap() == sent,
            "{e:?} → {d:?}: request differs"
        );
        assert!(
            got == payload(100_000, 70_000),
            "{e:?} → {d:?}: reply after half-close lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_fails_against_spiped_too() {
    require_spiped();
    let dir = tempfile::tempdir().unwrap();
    let a = testkit::key_file(dir.path(), "a", 1, 32);
    let b = testkit::key_file(dir.path(), "b", 2, 32);
    let target = Server::recorder().await;
    let d = endpoint(Impl::Spiped, "-d", target.addr, &[&a], &["-o", "1"]).await;
    let e = endpoint(Impl::Georep, "-e", d.addr, &[&b], &["-o", "1"]).await;
    let got = round_trip(e.addr, b"secret").await.unwrap_or_default();
    assert!(got.is_empty());
    assert!(
        target.received().iter().all(Vec::is_empty),
        "bytes reached the target"
    );
    let m = e.metrics.unwrap();
    // spiped drops the connection on the bad MAC; our client sees it closed mid-handshake.
    metric_eventually(
        m,
        "georep_tunnel_handshake_failures_total{reason=\"closed\"}",
        |v| v >= 1.0,
    )
    .await;
}
