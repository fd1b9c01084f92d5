//! The daemon reaches a broker over TLS ([mqtt.tls] ca_file), with a certificate chain made here
//! by the openssl command (the test says so and passes if that command is absent).

mod mqtt_support;

use std::path::Path;
use std::process::Command;

use mqtt_support::*;

/// A CA and a server certificate for localhost, signed by it; `false` without openssl.
fn make_certs(dir: &Path) -> bool {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=landfall test CA",
        ],
    ]
    .concat())
        && run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat())
        && run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifies_over_a_tls_connection() {
    let tls_port = free_port();
    let mut have_certs = false;
    let broker = Mosquitto::start_with(|dir| {
        have_certs = make_certs(dir);
        for f in ["ca.pem", "server.pem", "server.key"] {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644));
        }
        if !have_certs {
            return String::new();
        }
        format!(
            "listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
            d = dir.display()
        )
    });
    if !have_certs {
        eprintln!("skipped: the openssl command is needed to make test certificates");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let tls = format!(
        "[mqtt.tls]\nca_file = \"{}/ca.pem\"",
        broker.dir.path().display()
    );
    let toml = config(tls_port, "tlsdev", state.path(), "", "")
        .replace("host = \"127.0.0.1\"", "host = \"localhost\"")
        .replace("\n[health]", &format!("{tls}\n\n[health]"));
    let daemon = Daemon::start(&toml);
    // The test client uses the plain listener of the same broker.
    let mut client = Client5::connect(broker.port, "tls-tester", false).await;
    client.wait_ready("landfall/tlsdev").await;
    let (text, label) = &reference()[1];
    client.subscribe("replies/tls").await;
    client
        .request(
            "landfall/tlsdev/classify/request",
            request_body("t1", text, None),
            "replies/tls",
            b"t",
        )
        .await;
    let v = client.next_on("replies/tls").await.json();
    assert_eq!(v["label"], label.as_str(), "{v}");
    daemon.stop().await;
}
