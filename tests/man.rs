//! The manual pages keep up with the binary: every option `xosfs --help` lists (and every
//! subcommand with its options) is documented in man/xosfs.1, and man/mount.xosfs.8 names
//! every s3fs option name that `-o` accepts.

use std::path::Path;
use std::process::Command;

/// s3fs's names that `-o` understands, so that s3fs fstab lines keep working.
const S3FS_ALIASES: &[&str] = &[
    "url",
    "passwd_file",
    "use_path_request_style",
    "default_acl",
    "uid",
    "gid",
    "umask",
    "mp_umask",
    "allow_other",
    "allow_root",
    "ro",
];

/// A page's text with the roff escapes that split words taken out: `\-` becomes `-`, and
/// font changes (`\fB`, `\fI`, `\fR`, `\fP`, `\f(XX`, `\f[...]`) and `\&` disappear.
fn page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(name);
    let roff = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut text = String::with_capacity(roff.len());
    let mut chars = roff.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('-') => text.push('-'),
            Some('&') => {}
            Some('f') => match chars.next() {
                Some('[') => {
                    chars.by_ref().find(|&c| c == ']');
                }
                Some('(') => {
                    chars.next();
                    chars.next();
                }
                _ => {}
            },
            Some(other) => {
                text.push('\\');
                text.push(other);
            }
            None => text.push('\\'),
        }
    }
    text
}

/// Whether `word` occurs in `text` as a whole token, not as part of a longer name.
fn mentions(text: &str, word: &str) -> bool {
    let in_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(in_name)
            && !text[i + word.len()..].chars().next().is_some_and(in_name)
    })
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xosfs")).args(args).output().expect("run xosfs");
    assert!(out.status.success(), "xosfs {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// Every `--long` option in a help text, and the short options that begin an option line
/// (`-f, --foreground`, `-o <OPTIONS>`).
fn options(help: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in help.lines() {
        let l = line.trim_start().as_bytes();
        if l.len() >= 2 && l[0] == b'-' && l[1].is_ascii_alphanumeric() && matches!(l.get(2), None | Some(b',' | b' '))
        {
            found.push(String::from_utf8_lossy(&l[..2]).into_owned());
        }
        for (i, _) in line.match_indices("--") {
            let name: String = line[i + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            let glued = line[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
            if !name.is_empty() && !glued {
                found.push(format!("--{}", name.trim_end_matches('-')));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The names in the help's `Commands:` section, without clap's own `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn xosfs_1_documents_every_option_and_subcommand() {
    let man = page("xosfs.1");
    let main = help(&["--help"]);
    let mut missing = Vec::new();
    let commands = subcommands(&main);
    for command in &commands {
        if !mentions(&man, command) {
            missing.push(command.clone());
        }
    }
    let mut all = options(&main);
    for command in &commands {
        all.extend(options(&help(&[command.as_str(), "--help"])));
    }
    all.sort();
    all.dedup();
    assert!(all.iter().any(|o| o == "--endpoint") && all.iter().any(|o| o == "-o"), "no options found in:\n{main}");
    missing.extend(all.into_iter().filter(|o| !mentions(&man, o)));
    assert!(missing.is_empty(), "man/xosfs.1 does not mention: {}", missing.join(" "));
}

#[test]
fn mount_xosfs_8_names_every_s3fs_alias() {
    let man = page("mount.xosfs.8");
    let missing: Vec<&str> = S3FS_ALIASES.iter().copied().filter(|a| !mentions(&man, a)).collect();
    assert!(missing.is_empty(), "man/mount.xosfs.8 does not mention: {}", missing.join(" "));
}
