//! A PostgreSQL server of the test's own: a cluster made with `initdb` in a temporary
//! directory, on a free loopback port, so the harness can restart it without touching the
//! machine's server, which the rest of the suite uses at the same time.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// Makes a cluster (trust authentication, superuser `postgres`) and starts it. As
    /// root, which `initdb` refuses to be, the server runs as the `postgres` user.
    pub(crate) fn start() -> Self {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("chaos-postgres-")
            .tempdir()
            .unwrap();
        if is_root() {
            run(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let data = dir.path().join("data");
        run(as_owner(&bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&data));
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nmax_connections = 200\n",
            dir.path().display()
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&settings);
        std::fs::write(&conf, text).unwrap();
        let server = Self { dir, bin, port };
        server.pg_ctl(&["start"]);
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fast restart (`pg_ctl restart -m fast`): every connection is ended, the server is
    /// down for a moment and comes back with everything committed.
    pub(crate) fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "fast"]);
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        run(as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .arg("-w")
            .args(args))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["stop", "-m", "immediate"])
            .output();
    }
}

/// The server's programs: `EXPORT_CENTER_TEST_POSTGRES_BIN`, else the newest of Debian's
/// `/usr/lib/postgresql/<version>/bin`.
fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EXPORT_CENTER_TEST_POSTGRES_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|entry| entry.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|dir| dir.join("initdb").is_file());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "the chaos test restarts a PostgreSQL server of its own: no initdb under \
             /usr/lib/postgresql/*/bin (set EXPORT_CENTER_TEST_POSTGRES_BIN)"
        )
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
    })
}

/// `program`, run as `postgres` when we are root.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
