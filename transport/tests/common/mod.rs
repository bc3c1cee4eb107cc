//! Helpers shared by the transport's integration tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Mosquitto of the test's own on a free port, killed when dropped.
pub struct Mosquitto {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Child,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a Mosquitto of the test's own: no persistence, unlimited queues, plus `extra`
/// configuration lines.
pub async fn mosquitto(extra: &str) -> Mosquitto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("ferrule-loopback-{port}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 0\nmax_queued_bytes 0\nlog_dest none\n{extra}\n"
        ),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is installed (scripts/brokers installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Mosquitto { port, dir, child }
}
