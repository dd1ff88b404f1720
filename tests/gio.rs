//! GLib's file operations as GNOME Files (Nautilus) does them, through the `gio` tool
//! (package libglib2.0-bin): list, info, copy in and out, move and rename, mkdir, remove, and
//! trash, which on a mount other than the home directory's uses `$mount/.Trash-$UID`.
//!
//! gio runs without a session bus or gvfs (GIO_USE_VFS=local): file:// paths are handled by
//! GLib's local backend either way, which is what Nautilus uses for a FUSE mount.

mod common;

use std::process::{Command, Output};

use common::{ls, Server};
use xosfs_testserver::pseudo_random_bytes;

/// A gio command with an environment of its own: a private runtime dir and a home on the
/// local disk (so the home trash is not on the mount), no session bus.
struct Gio {
    home: tempfile::TempDir,
}

impl Gio {
    fn new() -> Gio {
        let home = tempfile::tempdir().unwrap();
        let runtime = home.path().join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        Gio { home }
    }

    fn run(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
        let mut cmd = Command::new("gio");
        cmd.args(args.iter().map(|a| a.as_ref()))
            .env("HOME", self.home.path())
            .env("XDG_RUNTIME_DIR", self.home.path().join("runtime"))
            .env("XDG_DATA_HOME", self.home.path().join(".local/share"))
            .env("GIO_USE_VFS", "local")
            .env("GIO_USE_VOLUME_MONITOR", "unix")
            .env("LC_ALL", "C.UTF-8")
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run gio ({e}): install libglib2.0-bin (scripts/test.sh does)"));
        let shown: Vec<String> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
        assert!(
            out.status.success(),
            "gio {} failed ({}):\n{}{}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn stdout(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
        String::from_utf8(self.run(args).stdout).unwrap()
    }
}

/// `key: value` lines of `gio info` output, attributes indented below "attributes:".
fn attribute(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| l.trim().strip_prefix(&format!("{name}: ")).map(str::to_string))
}

#[test]
fn gio_list_info_copy_move_and_mkdir() {
    let server = Server::memory();
    server.put("photos/a.jpg", "jpeg bytes");
    server.put("photos/sub/b.txt", "bee");
    server.put("notes.txt", "hello gio");
    let m = server.mount(&[]);
    let gio = Gio::new();

    // gio list: names, and with -l size and type as Nautilus's list view gets them.
    let listed = gio.stdout(&[&"list", &m.join("photos")]);
    let mut names: Vec<&str> = listed.lines().collect();
    names.sort();
    assert_eq!(names, ["a.jpg", "sub"]);
    let long = gio.stdout(&[&"list", &"-l", &m.path()]);
    assert!(long.lines().any(|l| l.starts_with("notes.txt\t9\t(regular)")), "gio list -l:\n{long}");
    assert!(long.lines().any(|l| l.starts_with("photos\t") && l.contains("(directory)")), "gio list -l:\n{long}");

    // gio info: type, size, content type sniffed from the name, permissions, owner.
    let info = gio.stdout(&[&"info", &m.join("notes.txt")]);
    assert_eq!(attribute(&info, "standard::type").as_deref(), Some("1"), "regular file:\n{info}");
    assert_eq!(attribute(&info, "standard::size").as_deref(), Some("9"), "{info}");
    assert_eq!(attribute(&info, "standard::content-type").as_deref(), Some("text/plain"), "{info}");
    assert_eq!(attribute(&info, "access::can-read").as_deref(), Some("TRUE"), "{info}");
    assert_eq!(attribute(&info, "access::can-write").as_deref(), Some("TRUE"), "{info}");
    assert_eq!(attribute(&info, "access::can-trash").as_deref(), Some("TRUE"), "{info}");
    assert_eq!(attribute(&info, "unix::mode").map(|m| m.parse::<u32>().unwrap() & 0o170777), Some(0o100644));
    let dir_info = gio.stdout(&[&"info", &"-a", &"standard::type", &m.join("photos")]);
    assert_eq!(attribute(&dir_info, "standard::type").as_deref(), Some("2"), "directory:\n{dir_info}");

    // gio copy in (local disk to the mount), within the mount, and out again.
    let local = tempfile::tempdir().unwrap();
    let data = pseudo_random_bytes(3 << 20, 7);
    std::fs::write(local.path().join("video.bin"), &data).unwrap();
    gio.run(&[&"copy", &local.path().join("video.bin"), &m.join("photos/video.bin")]);
    assert_eq!(server.stored("photos/video.bin").unwrap(), data, "copied in");
    gio.run(&[&"copy", &m.join("notes.txt"), &m.join("photos/notes-copy.txt")]);
    assert_eq!(server.stored("photos/notes-copy.txt").unwrap(), b"hello gio");
    gio.run(&[&"copy", &m.join("photos/video.bin"), &local.path().join("back.bin")]);
    assert_eq!(std::fs::read(local.path().join("back.bin")).unwrap(), data, "copied out");
    // -p (keep attributes, as Nautilus's copies do): mode and mtime come along.
    let stamped = local.path().join("stamped.txt");
    std::fs::write(&stamped, "old").unwrap();
    std::fs::set_permissions(&stamped, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::options().write(true).open(&stamped).unwrap().set_modified(old).unwrap();
    gio.run(&[&"copy", &"-p", &stamped, &m.join("stamped.txt")]);
    let meta = std::fs::metadata(m.join("stamped.txt")).unwrap();
    assert_eq!(meta.modified().unwrap(), old, "gio copy -p keeps the mtime");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600, "and the mode");

    // gio move within the mount is a rename; a file and a directory.
    gio.run(&[&"move", &m.join("photos/notes-copy.txt"), &m.join("moved.txt")]);
    assert_eq!(server.stored("moved.txt").unwrap(), b"hello gio");
    assert!(server.stored("photos/notes-copy.txt").is_none());
    gio.run(&[&"move", &m.join("photos/sub"), &m.join("sub-moved")]);
    assert_eq!(server.stored("sub-moved/b.txt").unwrap(), b"bee");
    assert!(!m.join("photos/sub").exists());
    // gio move from the local disk onto the mount copies and deletes the source.
    std::fs::write(local.path().join("in.txt"), "incoming").unwrap();
    gio.run(&[&"move", &local.path().join("in.txt"), &m.join("in.txt")]);
    assert_eq!(server.stored("in.txt").unwrap(), b"incoming");
    assert!(!local.path().join("in.txt").exists());
    // gio rename, mkdir, remove: Nautilus's F2, "New Folder" and Shift+Delete.
    gio.run(&[&"rename", &m.join("in.txt"), &"renamed.txt"]);
    assert_eq!(server.stored("renamed.txt").unwrap(), b"incoming");
    gio.run(&[&"mkdir", &m.join("New Folder")]);
    assert!(server.keys().contains(&"New Folder/".to_string()));
    gio.run(&[&"remove", &m.join("renamed.txt")]);
    assert!(server.stored("renamed.txt").is_none());
    assert_eq!(ls(m.path()), ["New Folder", "moved.txt", "notes.txt", "photos", "stamped.txt", "sub-moved"]);
}

#[test]
fn gio_trash_uses_the_mounts_own_trash_directory() {
    let server = Server::memory();
    server.put("docs/report.pdf", "pdf bytes");
    server.put("docs/old/one.txt", "one");
    let m = server.mount(&[]);
    let gio = Gio::new();
    let uid = unsafe { libc::geteuid() };
    let trash = m.join(&format!(".Trash-{uid}"));

    gio.run(&[&"trash", &m.join("docs/report.pdf")]);
    assert!(!m.join("docs/report.pdf").exists(), "gone from its place");
    assert!(server.stored("docs/report.pdf").is_none());
    // GLib's trash spec for a mount's top directory: files/NAME and info/NAME.trashinfo,
    // Path relative to the mount, both directories mode 0700.
    assert_eq!(std::fs::read(trash.join("files/report.pdf")).unwrap(), b"pdf bytes");
    assert_eq!(server.stored(&format!(".Trash-{uid}/files/report.pdf")).unwrap(), b"pdf bytes");
    let info = std::fs::read_to_string(trash.join("info/report.pdf.trashinfo")).unwrap();
    assert!(info.starts_with("[Trash Info]\n"), "{info}");
    assert!(info.lines().any(|l| l == "Path=docs/report.pdf"), "{info}");
    assert!(info.lines().any(|l| l.starts_with("DeletionDate=")), "{info}");
    for sub in ["", "files", "info"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(trash.join(sub)).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o700, "{}", trash.join(sub).display());
    }
    // Nothing went to the home trash.
    assert!(!gio.home.path().join(".local/share/Trash/files/report.pdf").exists());

    // A directory goes to the trash whole; a second file of the same name gets a new name.
    gio.run(&[&"trash", &m.join("docs/old")]);
    assert!(!m.join("docs/old").exists());
    assert_eq!(std::fs::read(trash.join("files/old/one.txt")).unwrap(), b"one");
    std::fs::write(m.join("report.pdf"), "second").unwrap();
    gio.run(&[&"trash", &m.join("report.pdf")]);
    let trashed = ls(&trash.join("files"));
    assert_eq!(trashed.len(), 3, "{trashed:?}");
    let second = trashed.iter().find(|n| n.starts_with("report") && *n != "report.pdf").unwrap();
    assert_eq!(std::fs::read(trash.join("files").join(second)).unwrap(), b"second");
    assert!(trash.join(format!("info/{second}.trashinfo")).exists());
}
