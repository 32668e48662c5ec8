//! `wxlogin up`'s own nats-server has no users (it is for one machine): it must listen on
//! loopback only. Read from the kernel's table of listening sockets, not from its config.

use wxlogin::app::dev::start_private_nats;

/// The local addresses of the sockets listening on `port`, from `/proc/net/tcp{,6}`.
fn listening_on(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((addr, hex_port)) = local.rsplit_once(':') else {
                continue;
            };
            // 0A: LISTEN.
            if *state == "0A" && u16::from_str_radix(hex_port, 16) == Ok(port) {
                found.push(addr.to_string());
            }
        }
    }
    found
}

#[tokio::test]
async fn the_nats_server_that_up_starts_listens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_private_nats(&dir.path().join("nats")).await.unwrap();
    let addresses = listening_on(server.port());
    assert!(
        !addresses.is_empty(),
        "nothing listens on {}",
        server.port()
    );
    // 127.0.0.1 as /proc writes it (little-endian hex); IPv6 loopback is ::1.
    let loopback = ["0100007F", "00000000000000000000000001000000"];
    for addr in &addresses {
        assert!(
            loopback.contains(&addr.as_str()),
            "nats-server listens on {addr} (not loopback) port {}",
            server.port()
        );
    }
}
