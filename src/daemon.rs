//! Becoming a daemon without losing the error: the parent waits on a pipe until the child
//! says the mount answers (exit 0) or why it failed (that line, exit 1).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

/// The child's end of the pipe: it tells the waiting parent how start-up went.
pub struct StartupReport {
    pipe: Option<File>,
}

impl StartupReport {
    /// For a process that stays in the foreground: nobody is waiting.
    pub fn foreground() -> StartupReport {
        StartupReport { pipe: None }
    }

    pub fn is_daemon(&self) -> bool {
        self.pipe.is_some()
    }

    pub fn mounted(mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"OK\n");
        }
    }

    /// Prints the failure (to stderr in the foreground, through the parent otherwise).
    pub fn failed(mut self, message: &str) {
        match self.pipe.take() {
            Some(mut p) => {
                let _ = p.write_all(format!("ERR {message}\n").as_bytes());
            }
            None => eprintln!("xosfs: {message}"),
        }
    }
}

/// Forks. Returns in the child (detached from the terminal) with its report; the parent
/// never returns: it exits with the child's outcome. Must run before any thread exists.
pub fn daemonize() -> std::io::Result<StartupReport> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptors are fresh and owned by nobody else.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded at this point (checked by the caller's contract), so the
    // child may go on running arbitrary code.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            drop(read_end);
            // SAFETY: setsid has no memory effects; failure only means we lead a group already.
            unsafe { libc::setsid() };
            Ok(StartupReport { pipe: Some(File::from(write_end)) })
        }
        _ => {
            drop(write_end);
            let mut reply = String::new();
            let _ = File::from(read_end).read_to_string(&mut reply);
            let code = match reply.lines().next() {
                Some("OK") => 0,
                Some(line) => {
                    eprintln!("xosfs: {}", line.strip_prefix("ERR ").unwrap_or(line));
                    1
                }
                None => {
                    eprintln!("xosfs: the daemon exited before the mount was ready (see --log-file)");
                    1
                }
            };
            std::process::exit(code)
        }
    }
}

/// Points stdin, stdout and stderr at /dev/null so a daemon holds no terminal.
pub fn detach_stdio() -> std::io::Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    use std::os::fd::AsRawFd;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where a daemon without --log-file logs: syslog(3), facility daemon, ident `xosfs`, one
/// message per event at the event's severity.
#[derive(Debug, Clone, Copy)]
pub struct Syslog;

impl Syslog {
    pub fn open() -> Syslog {
        // SAFETY: openlog keeps the ident pointer, so it must live forever: a static C string.
        unsafe { libc::openlog(c"xosfs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
        Syslog
    }
}

/// One event being formatted; it goes to syslog as one message when dropped.
pub struct SyslogMessage {
    priority: libc::c_int,
    text: Vec<u8>,
}

impl Write for SyslogMessage {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogMessage {
    fn drop(&mut self) {
        let text: Vec<u8> = self.text.iter().copied().filter(|&b| b != 0).collect();
        let text = String::from_utf8_lossy(&text);
        let Ok(message) = std::ffi::CString::new(text.trim_end()) else { return };
        // SAFETY: a "%s" format with one NUL-terminated string argument.
        unsafe { libc::syslog(self.priority, c"%s".as_ptr(), message.as_ptr()) };
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Syslog {
    type Writer = SyslogMessage;

    fn make_writer(&'a self) -> SyslogMessage {
        SyslogMessage { priority: libc::LOG_INFO, text: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> SyslogMessage {
        let priority = match *meta.level() {
            tracing::Level::ERROR => libc::LOG_ERR,
            tracing::Level::WARN => libc::LOG_WARNING,
            tracing::Level::INFO => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        SyslogMessage { priority, text: Vec::new() }
    }
}
